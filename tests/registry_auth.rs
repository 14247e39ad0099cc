//! Registry authentication end to end, against real registries: TLS + htpasswd (a CA only the
//! test knows), bearer tokens from a token server with a push policy, and credentials taken
//! from docker's config (`auths` and a credential helper). The `harness_*` tests check the
//! harness itself with skopeo, an independent client; the rest drive `registry::Client` and
//! the `kots-bundle` binary.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use common::app::{app_dir, bin, ok, output_with_stdin, Source};
use common::docker_config::{docker_config, DockerConfig, HostCreds};
use common::synth::{self, ImageSpec};
use common::token::{TokenPolicy, TokenServer};
use common::TestRegistry;
use futures_util::StreamExt;
use kots_bundle::copy::BlobStream;
use kots_bundle::digest::Digest;
use kots_bundle::registry::{Client, Credentials, RegistryOptions};

const USER: &str = "kb-user";
const PASS: &str = "Tok3n-s3cret-Pw";
const WRONG: &str = "not-the-Pw-42";

// ---------------------------------------------------------------------------------------
// Helpers

fn skopeo(args: &[&str]) -> Output {
    common::require_tools(&["skopeo"]);
    Command::new("skopeo").args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One small synthetic image in an OCI layout, as `x:1`.
fn small_layout(seed: u64) -> (tempfile::TempDir, synth::SynthImage) {
    let dir = tempfile::tempdir().unwrap();
    let img = synth::write_layout(dir.path(), &[ImageSpec::new("x:1", seed)])
        .pop()
        .unwrap();
    (dir, img)
}

fn oci(layout: &Path, name: &str) -> String {
    format!("oci:{}:{name}", layout.display())
}

/// A directory skopeo (containers/image) reads as "trust this CA": `ca.crt` inside.
fn cert_dir(ca_pem: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(ca_pem, d.path().join("ca.crt")).unwrap();
    d
}

/// The registry's storage holds this repository (something was written to it).
fn repo_exists(reg: &TestRegistry, repo: &str) -> bool {
    reg.storage()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .exists()
}

fn any_blob_stored(reg: &TestRegistry) -> bool {
    let blobs = reg.storage().join("docker/registry/v2/blobs");
    blobs.exists() && walk(&blobs).iter().any(|p| p.ends_with("data"))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Display of an error and all its sources: what a user would read.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn options(reg: &TestRegistry, ca: bool, password: &str) -> RegistryOptions {
    RegistryOptions {
        ca_files: if ca {
            reg.ca_pem.iter().cloned().collect()
        } else {
            Vec::new()
        },
        credentials: Some((
            reg.addr.clone(),
            Credentials {
                username: USER.to_string(),
                password: password.to_string(),
            },
        )),
        ..RegistryOptions::default()
    }
}

fn stream_of(data: Bytes) -> BlobStream {
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

/// An empty DOCKER_CONFIG so CLI runs never see the developer's own credentials.
fn empty_docker_config() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn export(src: &Source, app: &Path, out: &Path, cfg: Option<&DockerConfig>) -> Output {
    let empty = empty_docker_config();
    let mut cmd = bin();
    cmd.arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--compression", "none"])
        .args(["--registry-mirror", &src.mirror()])
        .env("DOCKER_CONFIG", empty.path());
    if let Some(cfg) = cfg {
        cfg.apply(&mut cmd);
    }
    cmd.output().unwrap()
}

/// An exported archive of the default source app (anonymous source registry).
fn exported_app(work: &Path) -> (Source, PathBuf) {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let archive = work.join("app.airgap");
    ok(export(&src, app.path(), &archive, None), "export");
    (src, archive)
}

/// `kots-bundle import` into `dest`; with `password`, the credential flags (password on
/// stdin), else whatever `cfg` (docker config) provides.
fn import(
    dest: &TestRegistry,
    archive: &Path,
    app: &Path,
    namespace: &str,
    password: Option<&str>,
    cfg: Option<&DockerConfig>,
) -> Output {
    let empty = empty_docker_config();
    let mut cmd = bin();
    cmd.arg("import")
        .arg(archive)
        .args(["--registry-endpoint", &dest.addr])
        .args(["--image-namespace", namespace])
        .arg("--dest")
        .arg(app)
        .env("DOCKER_CONFIG", empty.path());
    if let Some(ca) = &dest.ca_pem {
        cmd.arg("--registry-ca").arg(ca);
    }
    if password.is_some() {
        cmd.args(["--registry-username", USER, "--registry-password-stdin"]);
    }
    if let Some(cfg) = cfg {
        cfg.apply(&mut cmd);
    }
    output_with_stdin(
        &mut cmd,
        &password.map(|p| format!("{p}\n")).unwrap_or_default(),
    )
}

fn assert_no_secret(out: &Output, app: &Path, secret: &str) {
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "stdout holds the password"
    );
    assert!(!stderr(out).contains(secret), "stderr holds the password");
    for f in walk(app) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the password",
            f.display()
        );
    }
}

/// The command failed on purpose, with a message, not by crashing.
fn assert_failed_cleanly(out: &Output) {
    assert!(!out.status.success(), "must fail");
    assert_ne!(
        out.status.code(),
        Some(101),
        "a panic is no answer: {}",
        stderr(out)
    );
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

fn skopeo_digest_with_creds(reg: &TestRegistry, reference: &str) -> String {
    let creds = format!("{USER}:{PASS}");
    let target = format!("docker://{}/{reference}", reg.addr);
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &target,
    ]);
    synth::sha256(ok(out, &format!("skopeo inspect {target}")).as_bytes())
}

/// A token server (user USER, push under `push_prefix`) and a plain-HTTP registry using it.
fn token_registry(push_prefix: &str) -> (TokenServer, TestRegistry) {
    let ts = TokenServer::start(TokenPolicy::new(USER, PASS, &[push_prefix]));
    let reg = TestRegistry::start_token(&ts);
    (ts, reg)
}

/// A token for `scope` straight from `server` (GET with Basic auth), as a client would.
fn fetch_token(server: &TokenServer, scope: &str) -> String {
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{PASS}")
        )
    );
    let (status, body) = common::raw_http(
        &server.addr,
        "GET",
        &format!("/token?service={}&scope={scope}", common::token::SERVICE),
        &[("Authorization", &basic)],
        &[],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert_eq!(v["expires_in"], common::token::EXPIRES_IN);
    v["token"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// The harness itself, checked with skopeo

#[test]
fn harness_tls_htpasswd_registry_needs_the_ca_and_the_password() {
    let reg = TestRegistry::start_tls_htpasswd(USER, PASS);
    assert!(reg.tls);
    let ca = reg.ca_pem.clone().expect("a TLS registry has a CA file");
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let certs = cert_dir(&ca);
    let (layout, img) = small_layout(7);
    let dest = format!("docker://{}/myapp/x:1", reg.addr);
    let creds = format!("{USER}:{PASS}");
    let cert_arg = format!("--dest-cert-dir={}", certs.path().display());

    // Verified TLS with our CA (SAN 127.0.0.1) and the right password: works.
    let out = skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        &cert_arg,
        "--dest-creds",
        &creds,
        &oci(layout.path(), "x:1"),
        &dest,
    ]);
    ok(out, "skopeo copy with CA and password");

    // Verified TLS without the CA: refused (the CA is nobody's but ours).
    let out = skopeo(&[
        "copy",
        "-q",
        "--dest-creds",
        &creds,
        &oci(layout.path(), "x:1"),
        &format!("docker://{}/myapp/y:1", reg.addr),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("certificate"),
        "fails on the certificate: {}",
        stderr(&out)
    );

    // The right CA via `localhost` (the other SAN) reads it back, same digest.
    let src_cert = format!("--cert-dir={}", certs.path().display());
    let port = reg.addr.rsplit(':').next().unwrap();
    let out = skopeo(&[
        "inspect",
        "--raw",
        &src_cert,
        "--creds",
        &creds,
        &format!("docker://localhost:{port}/myapp/x:1"),
    ]);
    assert_eq!(
        synth::sha256(ok(out, "inspect via localhost").as_bytes()),
        img.digest
    );

    // Wrong password or none: refused.
    for c in [Some(format!("{USER}:{WRONG}")), None] {
        let mut args = vec!["inspect", "--raw", &src_cert];
        if let Some(c) = &c {
            args.extend(["--creds", c.as_str()]);
        }
        let target = format!("docker://{}/myapp/x:1", reg.addr);
        args.push(&target);
        let out = skopeo(&args);
        assert!(!out.status.success(), "{c:?} must be refused");
        assert!(
            stderr(&out).contains("401") || stderr(&out).to_lowercase().contains("unauthorized"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn harness_token_server_grants_push_only_under_myapp() {
    let (ts, reg) = token_registry("myapp/");
    let (layout, img) = small_layout(8);
    let creds = format!("{USER}:{PASS}");
    let src = oci(layout.path(), "x:1");

    let out = skopeo(&[
        "copy",
        "-q",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &src,
        &format!("docker://{}/myapp/x:1", reg.addr),
    ]);
    ok(out, "push to myapp/x");
    assert_eq!(skopeo_digest_with_creds(&reg, "myapp/x:1"), img.digest);
    assert!(ts.granted("push").contains(&"myapp/x".to_string()));

    let out = skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &src,
        &format!("docker://{}/other/x:1", reg.addr),
    ]);
    assert!(!out.status.success(), "push to other/x must be refused");
    assert!(
        ts.requested("push").contains(&"other/x".to_string()),
        "skopeo asked for push on other/x: {:?}",
        ts.requests()
    );
    assert_eq!(ts.granted("push"), vec!["myapp/x".to_string()]);
    assert!(
        !repo_exists(&reg, "other/x"),
        "the registry stored nothing for other/x"
    );
    // Pull is granted anywhere (the policy), and every request named the registry's service.
    assert!(ts.granted("pull").contains(&"other/x".to_string()));
    assert!(ts
        .requests()
        .iter()
        .all(|r| r.service.as_deref() == Some(common::token::SERVICE)));

    // The registry checks the signature against its rootcertbundle: a token from another
    // issuer (its own CA) is refused, one from ours is accepted.
    let stranger = TokenServer::start(TokenPolicy::new(USER, PASS, &["myapp/"]));
    let manifest_path = "/v2/myapp/x/manifests/1";
    let accept = "application/vnd.oci.image.manifest.v1+json";
    for (server, status) in [(&stranger, 401), (&ts, 200)] {
        let token = fetch_token(server, "repository:myapp/x:pull");
        let bearer = format!("Bearer {token}");
        let (got, _) = common::raw_http(
            &reg.addr,
            "GET",
            manifest_path,
            &[("Authorization", &bearer), ("Accept", accept)],
            &[],
        );
        assert_eq!(got, status, "token from {}", server.addr);
    }
    let (got, _) = common::raw_http(&reg.addr, "GET", manifest_path, &[("Accept", accept)], &[]);
    assert_eq!(got, 401, "no token, no read");

    // Wrong credentials: the token server answers 401 and the inspect fails.
    let before = ts.requests().len();
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{WRONG}"),
        &format!("docker://{}/myapp/x:1", reg.addr),
    ]);
    assert!(!out.status.success());
    let later = &ts.requests()[before..];
    assert!(
        !later.is_empty()
            && later
                .iter()
                .all(|r| !r.authenticated && r.granted.is_empty())
    );
    assert_eq!(later[0].user.as_deref(), Some(USER));
}

#[test]
fn harness_docker_config_helper_and_auths_work_for_skopeo() {
    let (ts, reg) = token_registry("myapp/");
    let (layout, img) = small_layout(9);
    ok(
        skopeo(&[
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{USER}:{PASS}"),
            &oci(layout.path(), "x:1"),
            &format!("docker://{}/myapp/x:1", reg.addr),
        ]),
        "push",
    );
    let target = format!("docker://{}/myapp/x:1", reg.addr);

    // containers/image reads both `credHelpers` and `auths` from an auth file.
    let helper = docker_config(&[], &[HostCreds::new(&reg.addr, USER, PASS)]);
    let auths = docker_config(&[HostCreds::new(&reg.addr, USER, PASS)], &[]);
    for (what, cfg) in [("credHelpers", &helper), ("auths", &auths)] {
        let before = ts.requests().len();
        let authfile = cfg.path().join("config.json");
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(&target);
        cfg.apply(&mut cmd);
        let out = cmd.output().unwrap();
        assert_eq!(
            synth::sha256(ok(out, what).as_bytes()),
            img.digest,
            "{what}"
        );
        assert!(
            ts.requests()[before..]
                .iter()
                .any(|r| r.authenticated && r.user.as_deref() == Some(USER)),
            "{what}: the token server saw the user"
        );
    }
    let calls = helper.helper_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("get") && c.contains(&reg.addr)),
        "helper called with the host: {calls:?}"
    );
    assert!(
        auths.helper_calls().is_empty(),
        "no helper configured there"
    );
    // The helper's log never holds the secret.
    assert!(!std::fs::read_to_string(&helper.helper_log)
        .unwrap()
        .contains(PASS));

    // The helper answers only for its host.
    let mut cmd = Command::new(helper.path_entry.join("docker-credential-kbtest"));
    let mut child = cmd
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"127.0.0.1:1")
        .unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
}

// ---------------------------------------------------------------------------------------
// registry::Client against TLS + htpasswd

/// A one-layer OCI image: (layer, config, manifest) bytes.
fn tiny_image() -> (Bytes, Bytes, Bytes) {
    let layer = Bytes::from(synth::layer(42, 200 * 1024));
    let config = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": synth::OCI_MANIFEST,
        "config": {"mediaType": synth::OCI_CONFIG, "digest": synth::sha256(&config), "size": config.len()},
        "layers": [{"mediaType": synth::OCI_LAYER, "digest": synth::sha256(&layer), "size": layer.len()}],
    });
    (
        layer,
        config,
        Bytes::from(serde_json::to_vec(&manifest).unwrap()),
    )
}

#[test]
fn client_pushes_and_reads_over_tls_with_the_ca() {
    let reg = TestRegistry::start_tls_htpasswd(USER, PASS);
    let client = Client::new(options(&reg, true, PASS)).expect("client");
    let (layer, config, manifest) = tiny_image();
    let repo = "myapp/tiny";
    let manifest_digest = runtime().block_on(async {
        client
            .check_push(&reg.addr, repo)
            .await
            .expect("check_push");
        for blob in [&layer, &config] {
            let digest = Digest::of(blob);
            let data = blob.clone();
            client
                .put_blob(&reg.addr, repo, &digest, blob.len() as u64, &move || {
                    stream_of(data.clone())
                })
                .await
                .expect("put_blob");
            assert!(client.blob_exists(&reg.addr, repo, &digest).await.unwrap());
        }
        let d = client
            .put_manifest(&reg.addr, repo, "v1", synth::OCI_MANIFEST, manifest.clone())
            .await
            .expect("put_manifest");
        assert_eq!(d, Digest::of(&manifest));

        let got = client.get_manifest(&reg.addr, repo, "v1").await.unwrap();
        assert_eq!(got.bytes, manifest);
        assert_eq!(got.digest, d);
        assert_eq!(got.media_type, synth::OCI_MANIFEST);
        assert_eq!(
            client.head_manifest(&reg.addr, repo, "v1").await.unwrap(),
            Some(d.clone())
        );
        let mut stream = client
            .get_blob(&reg.addr, repo, &Digest::of(&layer), layer.len() as u64)
            .await
            .unwrap();
        let mut read = Vec::new();
        while let Some(chunk) = stream.next().await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(read, layer);
        d
    });

    // An independent client (skopeo, verifying TLS with the same CA) sees the same image.
    let certs = cert_dir(reg.ca_pem.as_ref().unwrap());
    let out = skopeo(&[
        "inspect",
        "--raw",
        &format!("--cert-dir={}", certs.path().display()),
        "--creds",
        &format!("{USER}:{PASS}"),
        &format!("docker://{}/{repo}:v1", reg.addr),
    ]);
    assert_eq!(
        synth::sha256(ok(out, "skopeo inspect").as_bytes()),
        manifest_digest.to_string()
    );
}

#[test]
fn client_without_the_ca_fails_and_points_at_registry_ca() {
    let reg = TestRegistry::start_tls_htpasswd(USER, PASS);
    let client = Client::new(options(&reg, false, PASS)).expect("client");
    let err = runtime()
        .block_on(client.get_manifest(&reg.addr, "myapp/tiny", "v1"))
        .expect_err("an unknown CA must be refused");
    let msg = chain(&err);
    assert!(msg.contains("--registry-ca"), "says what to do: {msg}");
    assert!(msg.contains(&reg.addr), "names the registry: {msg}");
}

#[test]
fn client_with_a_wrong_password_names_the_registry_not_the_password() {
    let reg = TestRegistry::start_tls_htpasswd(USER, PASS);
    let client = Client::new(options(&reg, true, WRONG)).expect("client");
    let rt = runtime();
    let errors = [
        rt.block_on(client.check_push(&reg.addr, "myapp/tiny"))
            .err(),
        rt.block_on(client.get_manifest(&reg.addr, "myapp/tiny", "v1"))
            .err(),
    ];
    for err in errors {
        let err = err.expect("a wrong password must be refused");
        let msg = chain(&err);
        assert!(msg.to_lowercase().contains("credentials"), "{msg}");
        assert!(msg.contains(&reg.addr), "names the registry: {msg}");
        assert!(!msg.contains(WRONG), "never the password: {msg}");
        assert!(!format!("{err:?}").contains(WRONG), "not in Debug either");
    }
    assert!(!repo_exists(&reg, "myapp/tiny"));
}

/// Pushes `tiny_image()` as `repo:v1` with `client`; returns the manifest digest.
async fn push_tiny(client: &Client, registry: &str, repo: &str) -> Result<Digest, String> {
    let (layer, config, manifest) = tiny_image();
    client
        .check_push(registry, repo)
        .await
        .map_err(|e| chain(&e))?;
    for blob in [layer, config] {
        let digest = Digest::of(&blob);
        let len = blob.len() as u64;
        client
            .put_blob(registry, repo, &digest, len, &move || {
                stream_of(blob.clone())
            })
            .await
            .map_err(|e| chain(&e))?;
    }
    client
        .put_manifest(registry, repo, "v1", synth::OCI_MANIFEST, manifest)
        .await
        .map_err(|e| chain(&e))
}

#[test]
fn client_uses_scoped_tokens_over_tls_and_names_the_repository_it_may_not_push() {
    let ts = TokenServer::start(TokenPolicy::new(USER, PASS, &["myapp/"]));
    let reg = TestRegistry::start_token_tls(&ts);
    let client = Client::new(options(&reg, true, PASS)).expect("client");
    let rt = runtime();

    let digest = rt
        .block_on(push_tiny(&client, &reg.addr, "myapp/tiny"))
        .expect("push under myapp/");
    assert_eq!(
        rt.block_on(client.head_manifest(&reg.addr, "myapp/tiny", "v1"))
            .unwrap(),
        Some(digest)
    );
    assert_eq!(ts.granted("push"), vec!["myapp/tiny".to_string()]);

    // No push right on other/: refused before any blob, naming the repository.
    let msg = rt
        .block_on(push_tiny(&client, &reg.addr, "other/tiny"))
        .expect_err("push outside myapp/ must be refused");
    assert!(msg.contains("other/tiny"), "names the repository: {msg}");
    assert!(!msg.contains(PASS), "{msg}");
    assert!(ts.requested("push").contains(&"other/tiny".to_string()));
    assert!(
        !repo_exists(&reg, "other/tiny"),
        "nothing stored for other/tiny"
    );
}

// ---------------------------------------------------------------------------------------
// The CLI against a token-auth registry

#[test]
fn token_import_pushes_under_myapp_with_scoped_tokens() {
    let work = tempfile::tempdir().unwrap();
    let (src, archive) = exported_app(work.path());
    let (ts, reg) = token_registry("myapp/");
    let app = work.path().join("app");

    let out = import(&reg, &archive, &app, "myapp", Some(PASS), None);
    assert!(out.status.success(), "import: {}", stderr(&out));
    assert_no_secret(&out, &app, PASS);

    let pushed = ts.granted("push");
    assert!(
        !pushed.is_empty(),
        "push tokens issued: {:?}",
        ts.requests()
    );
    let requested = ts.requested("push");
    assert!(
        requested.iter().all(|r| r.starts_with("myapp/")),
        "push asked only under myapp/: {requested:?}"
    );
    for name in ["myapp/a", "myapp/b", "myapp/multi"] {
        assert!(pushed.contains(&name.to_string()), "{name}: {pushed:?}");
    }
    assert!(!ts.requested("pull").is_empty(), "pull scopes asked for");
    for r in ts.requests() {
        assert!(
            r.authenticated,
            "every token request carried the credentials: {r:?}"
        );
        assert_eq!(r.user.as_deref(), Some(USER));
    }

    // skopeo, with its own token exchange, reads what was pushed: the source's digests.
    assert_eq!(
        skopeo_digest_with_creds(&reg, "myapp/b:v1"),
        src.image("b:v1").digest
    );
    assert_eq!(
        skopeo_digest_with_creds(&reg, "myapp/multi:1"),
        src.image("multi:1").digest
    );
    let a = &src.image("a:v1").digest;
    assert_eq!(skopeo_digest_with_creds(&reg, &format!("myapp/a@{a}")), *a);
}

#[test]
fn token_import_into_a_namespace_without_push_fails_before_any_blob() {
    let work = tempfile::tempdir().unwrap();
    let (_src, archive) = exported_app(work.path());
    let (ts, reg) = token_registry("myapp/");
    let app = work.path().join("app");

    let out = import(&reg, &archive, &app, "other", Some(PASS), None);
    assert_failed_cleanly(&out);
    let err = stderr(&out);
    assert!(
        err.contains("other/") || err.contains("`other`"),
        "names the repository or namespace: {err}"
    );
    assert_no_secret(&out, work.path(), PASS);
    assert!(
        ts.requested("push").iter().any(|r| r.starts_with("other/")),
        "push on other/ was asked for: {:?}",
        ts.requests()
    );
    assert!(ts.granted("push").is_empty(), "and never granted");
    assert!(!repo_exists(&reg, "other"), "nothing written under other/");
    assert!(!any_blob_stored(&reg), "no blob pushed");
    assert!(!app.exists(), "no app directory written");
}

#[test]
fn import_takes_credentials_from_a_docker_credential_helper() {
    let work = tempfile::tempdir().unwrap();
    let (src, archive) = exported_app(work.path());
    let (ts, reg) = token_registry("myapp/");
    let cfg = docker_config(&[], &[HostCreds::new(&reg.addr, USER, PASS)]);
    let app = work.path().join("app");

    let out = import(&reg, &archive, &app, "myapp", None, Some(&cfg));
    assert!(out.status.success(), "import: {}", stderr(&out));
    assert_no_secret(&out, &app, PASS);
    let calls = cfg.helper_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("get ") && c.contains(&reg.addr)),
        "the helper was asked for the registry's host: {calls:?}"
    );
    assert!(ts
        .requests()
        .iter()
        .any(|r| r.authenticated && r.user.as_deref() == Some(USER)));
    assert_eq!(
        skopeo_digest_with_creds(&reg, "myapp/b:v1"),
        src.image("b:v1").digest
    );
}

#[test]
fn import_takes_credentials_from_docker_config_auths() {
    let work = tempfile::tempdir().unwrap();
    let (src, archive) = exported_app(work.path());
    let (ts, reg) = token_registry("myapp/");
    let cfg = docker_config(&[HostCreds::new(&reg.addr, USER, PASS)], &[]);
    let app = work.path().join("app");

    let out = import(&reg, &archive, &app, "myapp", None, Some(&cfg));
    assert!(out.status.success(), "import: {}", stderr(&out));
    assert_no_secret(&out, &app, PASS);
    assert!(!ts.granted("push").is_empty());
    assert!(ts
        .requests()
        .iter()
        .all(|r| r.authenticated && r.user.as_deref() == Some(USER)));
    assert_eq!(
        skopeo_digest_with_creds(&reg, "myapp/multi:1"),
        src.image("multi:1").digest
    );
}

#[test]
fn export_from_a_token_source_uses_docker_config_credentials() {
    // The source registry stands in for quay.io behind a mirror, and wants tokens for reads.
    let (ts, reg) = token_registry("quay.io/");
    let layout = tempfile::tempdir().unwrap();
    let images = synth::write_layout(layout.path(), &Source::default_specs());
    let creds = format!("{USER}:{PASS}");
    for img in &images {
        ok(
            skopeo(&[
                "copy",
                "-q",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &oci(layout.path(), &img.name),
                &format!("docker://{}/quay.io/org/{}", reg.addr, img.name),
            ]),
            &img.name,
        );
    }
    let src = Source {
        reg,
        layout,
        images,
    };
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();

    // Without credentials the source refuses, and export says which registry.
    let out = export(&src, app.path(), &work.path().join("none.airgap"), None);
    assert_failed_cleanly(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&src.reg.addr) || err.contains("quay.io"),
        "names the registry: {err}"
    );
    assert!(
        err.contains("docker login"),
        "says where a source's credentials come from: {err}"
    );

    let cfg = docker_config(&[], &[HostCreds::new(&src.reg.addr, USER, PASS)]);
    let archive = work.path().join("app.airgap");
    let before = ts.requests().len();
    let out = export(&src, app.path(), &archive, Some(&cfg));
    assert!(out.status.success(), "export: {}", stderr(&out));
    assert!(!stderr(&out).contains(PASS) && !String::from_utf8_lossy(&out.stdout).contains(PASS));
    assert!(cfg
        .helper_calls()
        .iter()
        .any(|c| c.starts_with("get ") && c.contains(&src.reg.addr)));
    let reqs = &ts.requests()[before..];
    assert!(reqs.iter().any(|r| r.authenticated));
    assert!(
        reqs.iter()
            .all(|r| r.requested.iter().all(|s| !s.has("push"))),
        "export never asks to push to a source: {reqs:?}"
    );

    // The archive holds the source's images, digest for digest (read by skopeo).
    for (r, name) in [
        ("quay.io/org/multi:1".to_string(), "multi:1"),
        ("quay.io/org/b:v1".to_string(), "b:v1"),
        (
            format!("quay.io/org/a@{}", src.image("a:v1").digest),
            "a:v1",
        ),
    ] {
        let out = skopeo(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:{r}", archive.display()),
        ]);
        assert_eq!(
            synth::sha256(ok(out, &r).as_bytes()),
            src.image(name).digest,
            "{r}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Where credentials may go, and what a hostile or broken token service cannot do

/// A client with the credential flags' USER/`password` for `reg`, no docker config.
fn token_client(reg: &TestRegistry, password: &str) -> (Client, tempfile::TempDir) {
    let cfg = empty_docker_config();
    let client = Client::new(RegistryOptions {
        docker_config_dir: Some(cfg.path().to_path_buf()),
        retry: kots_bundle::registry::RetryPolicy {
            base_delay: std::time::Duration::from_millis(10),
            ..Default::default()
        },
        ..options(reg, false, password)
    })
    .unwrap();
    (client, cfg)
}

#[test]
fn credentials_are_not_sent_to_a_plain_http_realm_on_another_host() {
    let mut ts = TokenServer::start(TokenPolicy::new(USER, PASS, &["myapp/"]));
    // The same token server, named by another host name, over plain HTTP.
    let port = ts.addr.rsplit_once(':').unwrap().1.to_string();
    ts.set_realm(format!("http://localhost:{port}/token"));
    let reg = TestRegistry::start_token(&ts);
    assert!(reg.addr.starts_with("127.0.0.1:"));

    let work = tempfile::tempdir().unwrap();
    let (_src, archive) = exported_app(work.path());
    let app = work.path().join("app");
    let out = import(&reg, &archive, &app, "myapp", Some(PASS), None);
    let e = stderr(&out);
    assert_failed_cleanly(&out);
    assert!(e.contains("did not send the credentials"), "says so: {e}");
    assert!(
        e.contains(&format!("http://localhost:{port}/token")),
        "names the realm: {e}"
    );
    assert!(
        ts.requests().iter().all(|r| r.user.is_none()),
        "no credentials reached the realm: {:?}",
        ts.requests()
    );
    assert_no_secret(&out, work.path(), PASS);
    assert!(!app.exists());
}

#[test]
fn a_huge_token_or_manifest_answer_is_refused_without_being_read() {
    const HUGE: u64 = 256 * 1024 * 1024;
    let rt = runtime();
    for (status, declared) in [(200, false), (200, true), (401, false)] {
        let mut ts = TokenServer::start(TokenPolicy::new(USER, PASS, &["myapp/"]));
        let proxy = common::faulty::FaultyProxy::start(&ts.addr, move |_, path, _| {
            path.starts_with("/token")
                .then_some(common::faulty::Fault::Huge(status, HUGE, declared))
        });
        ts.set_realm(format!("http://{}/token", proxy.addr));
        let reg = TestRegistry::start_token(&ts);
        let (client, _cfg) = token_client(&reg, PASS);
        let err = rt
            .block_on(client.check_push(&reg.addr, "myapp/x"))
            .expect_err("a 256 MiB token answer is refused");
        let msg = chain(&err);
        assert!(msg.contains(&reg.addr), "names the registry: {msg}");
        if status == 200 {
            assert!(
                msg.contains("token answer") && msg.contains("larger than"),
                "{msg}"
            );
        } else {
            assert!(msg.contains("rejected the credentials"), "{msg}");
        }
        let read = proxy.huge_sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read < 32 * 1024 * 1024, "read {read} bytes of the answer");
    }

    // A manifest answer without a length, streaming on past the cap.
    let plain = TestRegistry::start();
    let proxy = common::faulty::FaultyProxy::start(&plain.addr, |_, path, _| {
        path.contains("/manifests/")
            .then_some(common::faulty::Fault::Huge(200, HUGE, false))
    });
    let client = Client::new(RegistryOptions::default()).unwrap();
    let Err(err) = rt.block_on(client.get_manifest(&proxy.addr, "x/y", "v1")) else {
        panic!("a 256 MiB manifest must be refused");
    };
    let msg = chain(&err);
    assert!(
        msg.contains("manifest v1") && msg.contains("larger than"),
        "{msg}"
    );
    assert!(proxy.huge_sent.load(std::sync::atomic::Ordering::Relaxed) < 64 * 1024 * 1024);
}

#[test]
fn credentials_echoed_by_a_server_or_held_in_a_realm_url_never_reach_a_message() {
    const BASIC: &str = "a2ItdXNlcjpUb2szbi1zM2NyZXQtUHc="; // kb-user:Tok3n-s3cret-Pw
    assert_eq!(
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{PASS}")
        ),
        BASIC
    );
    // A token service whose refusal repeats what it was sent.
    let mut ts = TokenServer::start(TokenPolicy::new(USER, PASS, &["myapp/"]));
    let proxy = common::faulty::FaultyProxy::start(&ts.addr, |_, path, _| {
        path.starts_with("/token").then_some(common::faulty::Fault::Answer(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad login kb-user:Tok3n-s3cret-Pw (Authorization: Basic a2ItdXNlcjpUb2szbi1zM2NyZXQtUHc=)"}]}"#,
        ))
    });
    // Userinfo in the realm is the registry operator's, and no business of any message.
    ts.set_realm(format!(
        "http://realmuser:realm-s3cret@{}/token",
        proxy.addr
    ));
    let reg = TestRegistry::start_token(&ts);

    let work = tempfile::tempdir().unwrap();
    let (_src, archive) = exported_app(work.path());
    let app = work.path().join("app");
    let empty = empty_docker_config();
    let mut cmd = bin();
    cmd.arg("-vv")
        .arg("import")
        .arg(&archive)
        .args([
            "--registry-endpoint",
            &reg.addr,
            "--image-namespace",
            "myapp",
        ])
        .arg("--dest")
        .arg(&app)
        .args(["--registry-username", USER, "--registry-password-stdin"])
        .env("DOCKER_CONFIG", empty.path());
    let out = output_with_stdin(&mut cmd, &format!("{PASS}\n"));
    let e = stderr(&out);
    assert_failed_cleanly(&out);
    assert!(e.contains("rejected the credentials"), "{e}");
    assert!(
        e.contains("<redacted>"),
        "the echo is kept, the secret is not: {e}"
    );
    for secret in [PASS, BASIC, "realm-s3cret", "realmuser"] {
        assert!(!e.contains(secret), "{secret} in the output: {e}");
    }
    assert_no_secret(&out, work.path(), PASS);
    assert!(
        !proxy.seen.lock().unwrap().is_empty(),
        "the realm was asked"
    );
}

#[test]
fn each_commands_help_describes_only_the_registry_flags_it_has() {
    let help = |cmd: &str| ok(bin().args([cmd, "--help"]).output().unwrap(), cmd);
    let export = help("export");
    for absent in [
        "destination registry",
        "--registry-username",
        "--registry-cert-dir",
    ] {
        assert!(
            !export.contains(absent),
            "export --help has {absent:?}:\n{export}"
        );
    }
    for present in [
        "--source-cert-dir",
        "--registry-ca",
        "--idle-timeout",
        "--connect-timeout",
    ] {
        assert!(
            export.contains(present),
            "export --help lacks {present}:\n{export}"
        );
    }
    let import = help("import");
    for present in [
        "--registry-username",
        "--registry-password-stdin",
        "--registry-cert-dir",
        "--idle-timeout",
    ] {
        assert!(
            import.contains(present),
            "import --help lacks {present}:\n{import}"
        );
    }
    assert!(!import.contains("--source-cert-dir"), "{import}");
    let pull = help("pull");
    for present in [
        "--registry-cert-dir",
        "--source-cert-dir",
        "--registry-username",
    ] {
        assert!(
            pull.contains(present),
            "pull --help lacks {present}:\n{pull}"
        );
    }
}
