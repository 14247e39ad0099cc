//! The registry client against a real CNCF distribution registry: push and read back
//! (checked independently with skopeo and raw HTTP), cross-repository mounts, mirrors, and
//! faults injected by a loopback HTTP proxy written here (503s, 429 + Retry-After, a blob
//! body cut mid-way, a Range request ignored, error bodies, a Bearer token service).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use kots_bundle::copy::BlobStream;
use kots_bundle::digest::Digest;
use kots_bundle::manifest::OCI_MANIFEST;
use kots_bundle::registry::{
    Client, Credentials, Mirror, RegistryError, RegistryOptions, RetryPolicy,
};

use common::faulty::{self, Fault, FaultyProxy};
use common::tls::TestCa;
use common::token::BearerGate;
use common::TestRegistry;

/// The 503 a registry answers while it is unavailable.
const UNAVAILABLE: Fault = Fault::Answer(
    503,
    r#"{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}"#,
);

/// A rule for blob GETs only: `fault(n)` for the n-th of them (from 0).
fn blob_gets(
    fault: impl Fn(u32) -> Option<Fault> + Send + Sync + 'static,
) -> impl Fn(&str, &str, usize) -> Option<Fault> + Send + Sync + 'static {
    let n = AtomicU32::new(0);
    move |method, path, _| {
        (method == "GET" && path.contains("/blobs/sha256:"))
            .then(|| fault(n.fetch_add(1, Ordering::SeqCst)))
            .flatten()
    }
}

const LAYER_SIZE: usize = 8 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// Short delays so fault tests stay fast; the attempts are the defaults'.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

fn client() -> Client {
    client_with(RegistryOptions::default())
}

fn client_with(mut opts: RegistryOptions) -> Client {
    opts.retry = quick_retry();
    // Never pick up the machine's own docker login.
    if opts.docker_config_dir.is_none() {
        opts.docker_config_dir = Some(std::env::temp_dir().join("kots-bundle-no-docker-config"));
    }
    Client::new(opts).unwrap()
}

/// A layer streamed in chunks from one buffer, counting how often the upload opened it.
struct Blob {
    data: Bytes,
    digest: Digest,
    opens: Arc<AtomicUsize>,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::of(&data),
            data: Bytes::from(data),
            opens: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn open(&self) -> impl Fn() -> BlobStream + Send + Sync {
        let data = self.data.clone();
        let opens = self.opens.clone();
        move || {
            opens.fetch_add(1, Ordering::SeqCst);
            let data = data.clone();
            let chunks = (0..data.len().div_ceil(CHUNK)).map(move |i| {
                Ok::<_, std::io::Error>(data.slice(i * CHUNK..((i + 1) * CHUNK).min(data.len())))
            });
            Box::pin(futures_util::stream::iter(chunks))
        }
    }
}

struct Pushed {
    layer: Blob,
    config: Blob,
    manifest: Bytes,
    digest: Digest,
}

fn image(seed: u64) -> Pushed {
    let layer = Blob::new(common::synth::noise(seed, LAYER_SIZE));
    let config = Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
            "config": {"Labels": {"seed": seed.to_string()}}
        }))
        .unwrap(),
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest.to_string(), "size": config.data.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.digest.to_string(), "size": layer.data.len()}]
    }))
    .unwrap();
    Pushed {
        digest: Digest::of(&manifest),
        manifest: Bytes::from(manifest),
        layer,
        config,
    }
}

async fn push(c: &Client, registry: &str, repo: &str, tag: &str, img: &Pushed) {
    for b in [&img.layer, &img.config] {
        c.put_blob(registry, repo, &b.digest, b.data.len() as u64, &b.open())
            .await
            .unwrap();
    }
    let d = c
        .put_manifest(registry, repo, tag, OCI_MANIFEST, img.manifest.clone())
        .await
        .unwrap();
    assert_eq!(d, img.digest);
}

async fn read_all(s: BlobStream) -> std::io::Result<Vec<u8>> {
    s.try_fold(Vec::new(), |mut v, c| async move {
        v.extend_from_slice(&c);
        Ok(v)
    })
    .await
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn push_then_read_back_checked_by_skopeo() {
    common::require_tools(&["skopeo"]);
    let reg = TestRegistry::start();
    let c = client();
    c.ping(&reg.addr).await.unwrap();
    c.check_push(&reg.addr, "team/app").await.unwrap();
    let img = image(1);
    push(&c, &reg.addr, "team/app", "v1", &img).await;
    assert_eq!(img.layer.opens.load(Ordering::SeqCst), 1);

    // Independent checks: skopeo reads the manifest, plain HTTP reads the layer.
    let raw = skopeo_raw(&format!("{}/team/app:v1", reg.addr));
    assert_eq!(Digest::of(&raw), img.digest);
    let (status, body) = reg.http_get(&format!("/v2/team/app/blobs/{}", img.layer.digest));
    assert_eq!(status, 200);
    assert_eq!(Digest::of(&body), img.layer.digest);

    // Manifest by tag and by digest; HEAD; missing tag.
    let m = c.get_manifest(&reg.addr, "team/app", "v1").await.unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.bytes, img.manifest);
    let m = c
        .get_manifest(&reg.addr, "team/app", img.digest.as_str())
        .await
        .unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(
        c.head_manifest(&reg.addr, "team/app", "v1").await.unwrap(),
        Some(img.digest.clone())
    );
    assert_eq!(
        c.head_manifest(&reg.addr, "team/app", "nope")
            .await
            .unwrap(),
        None
    );
    let e = c
        .get_manifest(&reg.addr, "team/app", "nope")
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(e.to_string().contains("manifest nope"), "{e}");

    // Blobs: existence, a verified stream, and a wrong expectation caught while streaming.
    assert!(c
        .blob_exists(&reg.addr, "team/app", &img.layer.digest)
        .await
        .unwrap());
    let absent = Digest::of(b"never pushed");
    assert!(!c.blob_exists(&reg.addr, "team/app", &absent).await.unwrap());
    let s = c
        .get_blob(&reg.addr, "team/app", &img.layer.digest, LAYER_SIZE as u64)
        .await
        .unwrap();
    assert_eq!(read_all(s).await.unwrap(), img.layer.data);
    let s = c
        .get_blob(&reg.addr, "team/app", &absent, LAYER_SIZE as u64)
        .await;
    assert!(s.is_err(), "a blob the registry lacks must fail");
    // A size that does not match is caught while streaming (digest mismatches: see the
    // proxy test that corrupts a byte).
    let cfg_size = img.config.data.len() as u64;
    let s = c
        .get_blob(&reg.addr, "team/app", &img.config.digest, cfg_size + 1)
        .await
        .unwrap();
    let err = read_all(s).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("expected {} bytes", cfg_size + 1)),
        "{err}"
    );

    // Pushing the same image again is fine (blobs are content-addressed).
    push(&c, &reg.addr, "team/app", "v1", &img).await;
}

#[tokio::test]
async fn mount_links_blobs_into_another_repository() {
    common::require_tools(&["skopeo"]);
    let reg = TestRegistry::start();
    let c = client();
    let img = image(2);
    push(&c, &reg.addr, "src/app", "v1", &img).await;
    for b in [&img.layer, &img.config] {
        assert!(
            c.mount_blob(&reg.addr, "dst/app", &b.digest, "src/app")
                .await
                .unwrap(),
            "mount of {}",
            b.digest
        );
        assert!(c
            .blob_exists(&reg.addr, "dst/app", &b.digest)
            .await
            .unwrap());
    }
    // A blob the source repository lacks is not mounted; the upload it opened is cancelled.
    let absent = Digest::of(b"absent");
    assert!(!c
        .mount_blob(&reg.addr, "dst/app", &absent, "src/app")
        .await
        .unwrap());
    c.put_manifest(
        &reg.addr,
        "dst/app",
        "v1",
        OCI_MANIFEST,
        img.manifest.clone(),
    )
    .await
    .unwrap();
    // skopeo copies the image out of the mounted repository, verifying every blob.
    let out = tempfile::tempdir().unwrap();
    let st = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/dst/app:v1", reg.addr))
        .arg(format!("dir:{}", out.path().display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let layer = std::fs::read(out.path().join(img.layer.digest.hex())).unwrap();
    assert_eq!(Digest::of(&layer), img.layer.digest);
    // Nothing was uploaded for the mounts: the layer was opened once, for src/app.
    assert_eq!(img.layer.opens.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn mirror_serves_reads_for_its_prefix() {
    let reg = TestRegistry::start();
    let img = image(3);
    push(&client(), &reg.addr, "quay.io/org/x", "v1", &img).await;

    let c = client_with(RegistryOptions {
        mirrors: vec![Mirror::parse(&format!("quay.io={}/quay.io", reg.addr)).unwrap()],
        ..RegistryOptions::default()
    });
    // quay.io itself is never reached (there is no network): the mirror answers.
    let m = c.get_manifest("quay.io", "org/x", "v1").await.unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(
        c.head_manifest("quay.io", "org/x", "v1").await.unwrap(),
        Some(img.digest.clone())
    );
    assert!(c
        .blob_exists("quay.io", "org/x", &img.layer.digest)
        .await
        .unwrap());
    let s = c
        .get_blob("quay.io", "org/x", &img.layer.digest, LAYER_SIZE as u64)
        .await
        .unwrap();
    assert_eq!(Digest::of(&read_all(s).await.unwrap()), img.layer.digest);

    // A primary that is down, with the mirror missing the tag: the error names the image
    // and what each location said.
    let down = format!("127.0.0.1:{}", common::free_port());
    let c = client_with(RegistryOptions {
        mirrors: vec![Mirror::parse(&format!("{down}={}/quay.io", reg.addr)).unwrap()],
        ..RegistryOptions::default()
    });
    assert_eq!(
        c.get_manifest(&down, "org/x", "v1").await.unwrap().digest,
        img.digest
    );
    let e = c.get_manifest(&down, "org/x", "v2").await.err().unwrap();
    let s = e.to_string();
    assert!(matches!(e, RegistryError::AllLocationsFailed { .. }), "{s}");
    assert!(s.contains(&format!("{down}/org/x:v2")), "{s}");
    assert!(s.contains(&format!("{}/quay.io/org/x", reg.addr)), "{s}");
    assert!(s.contains("manifest v2 not found"), "{s}");
    assert!(s.contains("cannot reach registry"), "{s}");
}

#[tokio::test]
async fn ping_of_a_closed_port_names_the_registry() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let e = client().ping(&addr).await.err().unwrap().to_string();
    assert!(
        e.contains("cannot reach registry") && e.contains(&addr),
        "{e}"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn retries_through_503_and_honours_429_retry_after() {
    let reg = TestRegistry::start();
    let c = client();
    // The ping and the first pushes meet three 503s.
    let proxy = FaultyProxy::start(&reg.addr, faulty::first(3, "", UNAVAILABLE));
    let img = image(4);
    push(&c, &proxy.addr, "team/app", "v1", &img).await;
    assert_eq!(
        Digest::of(&skopeo_raw(&format!("{}/team/app:v1", reg.addr))),
        img.digest
    );
    assert_eq!(proxy.faults().len(), 3, "all 503s were met");

    // 429 with Retry-After: 1 is honoured (not the 20 ms backoff).
    proxy.set_rule(faulty::first(1, "", Fault::TooMany(1)));
    let t = Instant::now();
    let m = c.get_manifest(&proxy.addr, "team/app", "v1").await.unwrap();
    assert_eq!(m.digest, img.digest);
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );

    // When the 503s outlast the budget, the error says so.
    proxy.set_rule(faulty::first(100, "", UNAVAILABLE));
    let before = proxy.log().len();
    let e = c
        .get_manifest(&proxy.addr, "team/app", "v1")
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), Some(503), "{e}");
    assert!(e.to_string().contains("UNAVAILABLE"), "{e}");
    assert_eq!(
        proxy.log().len() - before,
        RetryPolicy::default().attempts as usize
    );
    // 501 is not retried.
    proxy.set_rule(faulty::first(100, "", Fault::Status(501)));
    let before = proxy.log().len();
    assert!(c.get_manifest(&proxy.addr, "team/app", "v1").await.is_err());
    assert_eq!(proxy.log().len() - before, 1);
}

#[tokio::test]
async fn failed_upload_restarts_with_a_fresh_stream() {
    let reg = TestRegistry::start();
    let proxy = FaultyProxy::start(&reg.addr, |_, _, _| None);
    let c = client();
    c.ping(&proxy.addr).await.unwrap();
    let img = image(5);
    // The first PUT of the blob fails: the upload restarts from a new POST and re-opens.
    proxy.set_rule(faulty::first(
        1,
        "PUT /v2/team/app/blobs/uploads/",
        Fault::Status(500),
    ));
    let b = &img.layer;
    c.put_blob(
        &proxy.addr,
        "team/app",
        &b.digest,
        LAYER_SIZE as u64,
        &b.open(),
    )
    .await
    .unwrap();
    assert_eq!(b.opens.load(Ordering::SeqCst), 2);
    let posts = proxy
        .log()
        .iter()
        .filter(|l| l.starts_with("POST /v2/team/app/blobs/uploads/"))
        .count();
    assert_eq!(posts, 2, "{:?}", proxy.log());
    let (status, body) = reg.http_get(&format!("/v2/team/app/blobs/{}", b.digest));
    assert_eq!(status, 200);
    assert_eq!(Digest::of(&body), b.digest);
}

#[tokio::test]
async fn blob_download_resumes_with_range_after_a_cut() {
    let reg = TestRegistry::start();
    let img = image(6);
    push(&client(), &reg.addr, "team/app", "v1", &img).await;
    let c = client();
    const MIB: usize = 1024 * 1024;
    // Cut the first GET and the first resumed GET after 1 MiB each.
    let proxy = FaultyProxy::start(
        &reg.addr,
        blob_gets(move |n| (n < 2).then_some(Fault::CutBody(MIB))),
    );
    let s = c
        .get_blob(
            &proxy.addr,
            "team/app",
            &img.layer.digest,
            LAYER_SIZE as u64,
        )
        .await
        .unwrap();
    let data = read_all(s).await.unwrap();
    assert_eq!(Digest::of(&data), img.layer.digest);
    let gets: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.starts_with("GET") && l.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert!(!gets[0].contains("bytes="), "{gets:?}");
    assert!(gets[1].ends_with(&format!("bytes={MIB}-")), "{gets:?}");
    assert!(
        gets[2].ends_with(&format!("bytes={}-", 2 * MIB)),
        "{gets:?}"
    );

    // A registry that ignores Range (answers 200) cannot be resumed: a clear error.
    proxy.set_rule(blob_gets(move |n| {
        Some(if n == 0 {
            Fault::CutBody(MIB)
        } else {
            Fault::NoRange
        })
    }));
    let s = c
        .get_blob(
            &proxy.addr,
            "team/app",
            &img.layer.digest,
            LAYER_SIZE as u64,
        )
        .await
        .unwrap();
    let e = read_all(s).await.unwrap_err().to_string();
    assert!(e.contains("ignored the Range request"), "{e}");

    // A flipped byte is caught by the digest check.
    proxy.set_rule(blob_gets(|_| Some(Fault::Corrupt)));
    let s = c
        .get_blob(
            &proxy.addr,
            "team/app",
            &img.layer.digest,
            LAYER_SIZE as u64,
        )
        .await
        .unwrap();
    let e = read_all(s).await.unwrap_err().to_string();
    assert!(e.contains("content has digest"), "{e}");
}

#[tokio::test]
async fn check_push_maps_registry_errors_to_what_to_fix() {
    let reg = TestRegistry::start();
    let proxy = FaultyProxy::start(&reg.addr, |_, _, _| None);
    let c = client_with(RegistryOptions {
        credentials: Some((
            proxy.addr.clone(),
            Credentials {
                username: "bob".into(),
                password: "pw-secret".into(),
            },
        )),
        ..RegistryOptions::default()
    });
    c.check_push(&proxy.addr, "proj/app").await.unwrap();
    // The probe's upload session was cancelled.
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.starts_with("DELETE /v2/proj/app/blobs/uploads/")),
        "{:?}",
        proxy.log()
    );

    proxy.set_rule(faulty::first(
        1,
        "POST",
        Fault::Answer(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        ),
    ));
    let e = c
        .check_push(&proxy.addr, "proj/app")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("create the project proj"), "{e}");

    proxy.set_rule(faulty::first(
        1,
        "POST",
        Fault::Answer(
            403,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        ),
    ));
    let e = c
        .check_push(&proxy.addr, "proj/app")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("denied push access to proj/app") && e.contains("developer"),
        "{e}"
    );

    proxy.set_rule(faulty::first(
        1,
        "POST",
        Fault::Answer(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ),
    ));
    let e = c
        .check_push(&proxy.addr, "proj/app")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("credentials for user bob") && e.contains(&proxy.addr),
        "{e}"
    );
    assert!(!e.contains("pw-secret"), "{e}");
}

fn write_docker_config(dir: &Path, host: &str, user: &str, pass: &str) {
    let cfg =
        serde_json::json!({"auths": {host: {"auth": base64_encode(&format!("{user}:{pass}"))}}});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[tokio::test]
async fn bearer_tokens_from_docker_config_are_scoped_cached_and_refreshed() {
    let reg = TestRegistry::start();
    let proxy = FaultyProxy::start(&reg.addr, |_, _, _| None);
    let gate = BearerGate::new("alice", "wonderland", "tok-1");
    proxy.set_gate(gate.clone());
    let cfg = tempfile::tempdir().unwrap();
    write_docker_config(
        cfg.path(),
        &format!("http://{}", proxy.addr),
        "alice",
        "wonderland",
    );
    let c = client_with(RegistryOptions {
        docker_config_dir: Some(cfg.path().to_path_buf()),
        ..RegistryOptions::default()
    });
    c.ping(&proxy.addr).await.unwrap();
    let img = image(7);
    push(&c, &proxy.addr, "team/app", "v1", &img).await;
    let requests = || gate.token_requests();
    let reqs = requests();
    assert!(
        reqs.iter()
            .all(|q| q.contains("service=test-registry") && q.contains("account=alice")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|q| q.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")),
        "{reqs:?}"
    );
    // Cached: one token for the ping, one for the push scope, not one per request.
    assert!(reqs.len() <= 3, "{reqs:?}");

    // The registry rotates its tokens: the cached one gets a 401 and is replaced.
    gate.rotate("tok-2");
    let before = requests().len();
    assert_eq!(
        c.get_manifest(&proxy.addr, "team/app", "v1")
            .await
            .unwrap()
            .digest,
        img.digest
    );
    assert!(requests().len() > before);
    assert!(
        requests()
            .last()
            .unwrap()
            .contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "{:?}",
        requests()
    );

    // Wrong credentials fail at ping, naming the registry and the user, never the password.
    let bad = client_with(RegistryOptions {
        credentials: Some((
            proxy.addr.clone(),
            Credentials {
                username: "alice".into(),
                password: "not-the-password".into(),
            },
        )),
        ..RegistryOptions::default()
    });
    let e = bad.ping(&proxy.addr).await.err().unwrap();
    let s = e.to_string();
    assert!(matches!(e, RegistryError::Credentials { .. }), "{s}");
    assert!(
        s.contains("credentials") && s.contains(&proxy.addr) && s.contains("alice"),
        "{s}"
    );
    assert!(!s.contains("not-the-password"), "{s}");
    // Without credentials, a pull asks for a login.
    let anon = client();
    let e = anon
        .get_manifest(&proxy.addr, "team/app", "v1")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("requires credentials") || e.contains("credentials"),
        "{e}"
    );
}

/// A CA and a 127.0.0.1 server certificate signed by it, as PEM files in `dir`.
fn tls_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca = TestCa::new("kots-bundle test CA");
    let ca_pem = ca.write_cert(&dir.join("ca.pem"));
    let (cert_pem, key_pem) = ca.issue_server().write(dir, "server");
    (ca_pem, cert_pem, key_pem)
}

#[tokio::test]
async fn loopback_tls_registry_uses_https_with_the_given_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(certs.path());
    let reg = TestRegistry::start_with(common::RegistryConfig {
        tls: Some((cert, key)),
        ..Default::default()
    });
    // With the CA: HTTPS on 127.0.0.1, no fall back to plain HTTP.
    let c = client_with(RegistryOptions {
        ca_files: vec![ca],
        ..RegistryOptions::default()
    });
    c.ping(&reg.addr).await.unwrap();
    let img = image(8);
    push(&c, &reg.addr, "tls/app", "v1", &img).await;
    assert_eq!(
        c.head_manifest(&reg.addr, "tls/app", "v1").await.unwrap(),
        Some(img.digest.clone())
    );
    // Without it: the TLS failure is reported with what to pass, not hidden by the plain
    // HTTP fall back (which a TLS server answers with 400).
    let e = client().ping(&reg.addr).await.err().unwrap().to_string();
    assert!(e.contains(&reg.addr), "{e}");
    assert!(e.contains("--registry-ca") && e.contains("https://"), "{e}");
    // Skipping verification works too.
    let c = client_with(RegistryOptions {
        insecure_skip_tls_verify: true,
        ..RegistryOptions::default()
    });
    assert_eq!(
        c.get_manifest(&reg.addr, "tls/app", "v1")
            .await
            .unwrap()
            .digest,
        img.digest
    );
}

#[tokio::test]
async fn identity_token_is_exchanged_with_the_oauth2_refresh_grant() {
    let reg = TestRegistry::start();
    let img = image(9);
    push(&client(), &reg.addr, "team/app", "v1", &img).await;
    let proxy = FaultyProxy::start(&reg.addr, |_, _, _| None);
    let gate = BearerGate::new("unused", "refresh-123", "tok-r");
    proxy.set_gate(gate.clone());
    let cfg = tempfile::tempdir().unwrap();
    let config =
        serde_json::json!({"auths": {proxy.addr.clone(): {"identitytoken": "refresh-123"}}});
    std::fs::write(cfg.path().join("config.json"), config.to_string()).unwrap();
    let c = client_with(RegistryOptions {
        docker_config_dir: Some(cfg.path().to_path_buf()),
        ..RegistryOptions::default()
    });
    c.ping(&proxy.addr).await.unwrap();
    assert_eq!(
        c.get_manifest(&proxy.addr, "team/app", "v1")
            .await
            .unwrap()
            .digest,
        img.digest
    );
    let reqs = gate.token_requests();
    assert!(
        !reqs.is_empty()
            && reqs
                .iter()
                .all(|r| r.starts_with("POST ") && r.contains("service=test-registry")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.contains("scope=repository%3Ateam%2Fapp%3Apull")),
        "{reqs:?}"
    );
}
