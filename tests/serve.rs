//! `kots-bundle serve` end to end: the real binary serves a synthetic archive (one multi-arch
//! index, images sharing a layer), and independent clients read it: skopeo copies every image
//! by tag and by digest into a real docker-registry and reads back the same digests, a
//! distribution registry configured as a pull-through cache of serve serves an image, a raw
//! HTTP client checks headers, ranges, errors and refused writes, and a blob corrupted in the
//! archive is cut short instead of served.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::app::{bin, ok};
use common::bundle::archive_of;
use common::synth::{self, ImageSpec, SynthImage};
use common::{RegistryConfig, TestRegistry};
use kots_bundle::archive::Compression;

/// `serve` as a subprocess on a free port (it binds port 0 and says where), killed on drop.
struct Serve {
    addr: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(archive: &Path, extra: &[&str]) -> Serve {
        let mut child = bin()
            .arg("serve")
            .arg(archive)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("http://").or(w.strip_prefix("https://")))
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.to_string());
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start: {}", log.lock().unwrap());
            }
        };
        Serve { addr, child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.0 exchange (independent of the code under test): status, headers
/// (lowercased names), body as received (possibly short).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    try_http(addr, method, path, headers).expect("an HTTP response head")
}

/// [`http`], or `None` when the connection closed before a whole response head came.
fn try_http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    // A cut connection is an error for some kernels and an EOF for others: keep what came.
    let _ = s.read_to_end(&mut resp);
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: resp[split + 4..].to_vec(),
    })
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).output().unwrap()
}

/// The sha256 of what `skopeo inspect --raw` reads at `reference` (plain HTTP).
fn raw_digest(reference: &str) -> String {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]);
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    synth::sha256(&out.stdout)
}

fn copy(from: &str, to: &str) -> std::process::Output {
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ])
}

/// The synthetic app: `quay.io/org/multi:1` (an index of two platforms),
/// `quay.io/org/a:v1` and `docker.io/library/b:v1`, all sharing a base layer.
fn specs() -> Vec<ImageSpec> {
    let mut multi = ImageSpec::new("quay.io/org/multi:1", 1);
    multi.multiarch = true;
    multi.layers = 2;
    // Larger than one read of the server (256 KiB): a corrupt copy is cut mid-body.
    let mut a = ImageSpec::new("quay.io/org/a:v1", 2);
    a.layer_size = 1024 * 1024;
    vec![multi, a, ImageSpec::new("docker.io/library/b:v1", 3)]
}

struct Fixture {
    dir: tempfile::TempDir,
    archive: PathBuf,
    images: Vec<SynthImage>,
}

fn fixture(compression: Compression) -> Fixture {
    common::require_tools(&["skopeo", common::REGISTRY_BIN]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.airgap");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (archive, images) = rt.block_on(archive_of(dir.path(), &specs(), &[], &path, compression));
    Fixture {
        dir,
        archive,
        images,
    }
}

impl Fixture {
    fn image(&self, name: &str) -> &SynthImage {
        self.images.iter().find(|i| i.name == name).unwrap()
    }
    /// A blob's bytes as the generator wrote them.
    fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(
            self.dir
                .path()
                .join("layout/blobs/sha256")
                .join(&digest["sha256:".len()..]),
        )
        .unwrap()
    }
    /// The platform manifests of an index (digests), from the generator's own files.
    fn children(&self, img: &SynthImage) -> Vec<String> {
        let index: serde_json::Value = serde_json::from_slice(&self.blob(&img.digest)).unwrap();
        index["manifests"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|d| d["digest"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The largest layer of an image (not the shared base).
    fn own_layer(&self, img: &SynthImage) -> String {
        img.blobs
            .iter()
            .filter(|b| Some(*b) != img.shared_base.as_ref())
            .max_by_key(|b| self.blob(b).len())
            .unwrap()
            .clone()
    }
}

/// Each image: (source name under serve, import name under serve with --image-namespace
/// myns, whole name), and its tag.
fn served_names(img: &SynthImage) -> (Vec<String>, String) {
    let (name, tag) = img.name.rsplit_once(':').unwrap();
    let (registry, repo) = name.split_once('/').unwrap();
    let last = repo.rsplit('/').next().unwrap();
    (
        vec![
            repo.to_string(),
            format!("myns/{last}"),
            format!("{registry}/{repo}"),
        ],
        tag.to_string(),
    )
}

#[test]
fn skopeo_copies_every_image_by_tag_and_by_digest_with_the_same_digests() {
    let f = fixture(Compression::Zstd);
    let serve = Serve::start(&f.archive, &["--image-namespace", "myns"]);
    let dest = TestRegistry::start();

    let catalog = http(&serve.addr, "GET", "/v2/_catalog", &[]).json();
    let mut expected: Vec<String> = f.images.iter().flat_map(|i| served_names(i).0).collect();
    expected.sort();
    let got: Vec<String> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected);

    for (n, img) in f.images.iter().enumerate() {
        let (names, tag) = served_names(img);
        for (k, name) in names.iter().enumerate() {
            let by_tag = format!("docker://{}/{name}:{tag}", serve.addr);
            let target = format!("{}/copied/i{n}-{k}", dest.addr);
            ok(copy(&by_tag, &format!("docker://{target}:{tag}")), &by_tag);
            assert_eq!(
                raw_digest(&format!("docker://{target}:{tag}")),
                img.digest,
                "{by_tag}"
            );
            let by_digest = format!("docker://{}/{name}@{}", serve.addr, img.digest);
            ok(
                copy(&by_digest, &format!("docker://{target}:pinned")),
                &by_digest,
            );
            assert_eq!(
                raw_digest(&format!("docker://{target}:pinned")),
                img.digest,
                "{by_digest}"
            );
            // Multi-arch kept: every platform manifest is in the destination, byte for byte.
            for child in f.children(img) {
                assert_eq!(raw_digest(&format!("docker://{target}@{child}")), child);
            }
        }
        let tags = http(
            &serve.addr,
            "GET",
            &format!("/v2/{}/tags/list", names[0]),
            &[],
        )
        .json();
        assert_eq!(tags["tags"], serde_json::json!([tag]));
    }
    assert_eq!(f.children(f.image("quay.io/org/multi:1")).len(), 2);
    // The layers really came out of serve: the destination has them with the right bytes.
    let a = f.image("quay.io/org/a:v1");
    let layer = f.own_layer(a);
    let (status, body) = dest.http_get(&format!("/v2/copied/i1-0/blobs/{layer}"));
    assert_eq!(status, 200);
    assert_eq!(body, f.blob(&layer));
}

#[test]
fn manifests_and_blobs_have_the_right_headers_ranges_and_errors() {
    let f = fixture(Compression::Zstd);
    let serve = Serve::start(&f.archive, &[]);
    let multi = f.image("quay.io/org/multi:1");
    let a = f.image("quay.io/org/a:v1");

    let v2 = http(&serve.addr, "GET", "/v2/", &[]);
    assert_eq!(v2.status, 200);
    assert_eq!(
        v2.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    for method in ["GET", "HEAD"] {
        let m = http(&serve.addr, method, "/v2/org/multi/manifests/1", &[]);
        assert_eq!(m.status, 200, "{method}");
        assert_eq!(m.header("content-type"), Some(synth::OCI_INDEX));
        assert_eq!(
            m.header("docker-content-digest"),
            Some(multi.digest.as_str())
        );
        let bytes = f.blob(&multi.digest);
        assert_eq!(
            m.header("content-length"),
            Some(bytes.len().to_string().as_str())
        );
        if method == "GET" {
            assert_eq!(m.body, bytes);
        } else {
            assert!(m.body.is_empty());
        }
    }
    let child = &f.children(multi)[1];
    let m = http(
        &serve.addr,
        "GET",
        &format!("/v2/org/multi/manifests/{child}"),
        &[],
    );
    assert_eq!(m.status, 200);
    assert_eq!(m.header("content-type"), Some(synth::OCI_MANIFEST));
    assert_eq!(synth::sha256(&m.body), *child);

    let layer = f.own_layer(a);
    let bytes = f.blob(&layer);
    let path = format!("/v2/org/a/blobs/{layer}");
    let whole = http(&serve.addr, "GET", &path, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bytes);
    assert_eq!(whole.header("docker-content-digest"), Some(layer.as_str()));
    let head = http(&serve.addr, "HEAD", &path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    let part = http(&serve.addr, "GET", &path, &[("Range", "bytes=100-1123")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, bytes[100..1124]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1123/{}", bytes.len()).as_str())
    );
    let tail = http(&serve.addr, "GET", &path, &[("Range", "bytes=-7")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, bytes[bytes.len() - 7..]);
    let past = http(
        &serve.addr,
        "GET",
        &path,
        &[("Range", &format!("bytes={}-", bytes.len()))],
    );
    assert_eq!(past.status, 416);

    // Unknown things: the distribution error codes.
    let r = http(&serve.addr, "GET", "/v2/org/nope/manifests/1", &[]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
    let r = http(&serve.addr, "GET", "/v2/org/a/manifests/v2", &[]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = http(&serve.addr, "GET", "/v2/org/a/tags/list", &[]);
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    // A blob of another image is not in this repository.
    let other = f.own_layer(f.image("docker.io/library/b:v1"));
    let r = http(&serve.addr, "GET", &format!("/v2/org/a/blobs/{other}"), &[]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "BLOB_UNKNOWN"));
    let r = http(&serve.addr, "GET", "/v2/library/b/blobs/sha256:nothex", &[]);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));

    // Writes: 405 with an error body, whatever the route.
    for (method, path) in [
        ("POST", "/v2/org/a/blobs/uploads/".to_string()),
        ("PUT", "/v2/org/a/manifests/v1".to_string()),
        ("PATCH", "/v2/org/a/blobs/uploads/x".to_string()),
        ("DELETE", format!("/v2/org/a/manifests/{}", a.digest)),
        ("DELETE", format!("/v2/org/a/blobs/{layer}")),
    ] {
        let r = http(&serve.addr, method, &path, &[]);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.error_code(), "UNSUPPORTED", "{method} {path}");
    }
    // Still there.
    assert_eq!(http(&serve.addr, "HEAD", &path, &[]).status, 200);
    // And skopeo agrees a push is refused.
    let out = copy(
        &format!("docker://{}/org/a:v1", serve.addr),
        &format!("docker://{}/org/a:pushed", serve.addr),
    );
    assert!(!out.status.success());
}

#[test]
fn a_blob_corrupted_in_the_archive_is_cut_short_not_served() {
    let f = fixture(Compression::None);
    let a = f.image("quay.io/org/a:v1");
    let layer = f.own_layer(a);
    // Flip one byte of the layer where it sits in the (uncompressed) archive.
    let bytes = f.blob(&layer);
    let mut file = std::fs::read(&f.archive).unwrap();
    let at = file
        .windows(bytes.len())
        .position(|w| w == bytes)
        .expect("the layer's bytes in the tar");
    file[at + bytes.len() / 2] ^= 0x01;
    std::fs::write(&f.archive, &file).unwrap();

    let serve = Serve::start(&f.archive, &[]);
    let dest = TestRegistry::start();
    let out = copy(
        &format!("docker://{}/org/a:v1", serve.addr),
        &format!("docker://{}/org/a:v1", dest.addr),
    );
    assert!(
        !out.status.success(),
        "skopeo copied an image with a corrupt layer"
    );
    let r = http(&serve.addr, "GET", &format!("/v2/org/a/blobs/{layer}"), &[]);
    assert_eq!(
        r.status, 200,
        "the head goes out before the digest is known"
    );
    let declared: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(declared, bytes.len());
    assert!(
        r.body.len() < declared,
        "all {} bytes were sent for a corrupt blob",
        r.body.len()
    );
    // A range of it is refused too (the whole blob is checked): the connection is cut,
    // before the head when the blob fits in one read.
    let r = try_http(
        &serve.addr,
        "GET",
        &format!("/v2/org/a/blobs/{layer}"),
        &[("Range", "bytes=0-9")],
    );
    assert!(
        r.is_none_or(|r| r.body.len() < 10),
        "a range of a corrupt blob was served"
    );
    // The registry never got the layer; the others still copy.
    let (status, _) = dest.http_get(&format!("/v2/org/a/blobs/{layer}"));
    assert_eq!(status, 404);
    ok(
        copy(
            &format!("docker://{}/library/b:v1", serve.addr),
            &format!("docker://{}/library/b:v1", dest.addr),
        ),
        "copy of an intact image",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serve.log().contains(&layer) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = serve.log();
    assert!(
        log.contains(&layer) && log.contains("content has digest"),
        "serve's log does not name the corrupt blob: {log}"
    );
}

#[test]
fn a_distribution_pull_through_cache_of_serve_serves_its_images() {
    let f = fixture(Compression::Zstd);
    let serve = Serve::start(&f.archive, &["--image-namespace", "myns"]);
    let cache = TestRegistry::start_with(RegistryConfig {
        proxy_remote_url: Some(format!("http://{}", serve.addr)),
        ..RegistryConfig::default()
    });
    let multi = f.image("quay.io/org/multi:1");
    assert_eq!(
        raw_digest(&format!("docker://{}/myns/multi:1", cache.addr)),
        multi.digest
    );
    let out = tempfile::tempdir().unwrap();
    let oci = out.path().join("oci");
    ok(
        copy(
            &format!("docker://{}/org/a:v1", cache.addr),
            &format!("oci:{}:a", oci.display()),
        ),
        "copy from the pull-through cache",
    );
    let a = f.image("quay.io/org/a:v1");
    let layer = f.own_layer(a);
    let stored = std::fs::read(oci.join("blobs/sha256").join(&layer["sha256:".len()..])).unwrap();
    assert_eq!(stored, f.blob(&layer));
    // The cache fetched it from serve (its storage was empty), and keeps it.
    assert!(
        walk_contains(&cache.storage(), &layer["sha256:".len()..]),
        "the cache did not store the layer"
    );
}

fn walk_contains(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy() == name
            || (e.file_type().is_ok_and(|t| t.is_dir()) && walk_contains(&e.path(), name))
    })
}

#[test]
fn https_with_the_given_certificate_is_trusted_by_skopeo() {
    let f = fixture(Compression::Zstd);
    let certs = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new("kots-bundle serve test CA");
    let (cert, key) = ca.issue_server().write(certs.path(), "serve");
    let cert_dir = certs.path().join("trust");
    std::fs::create_dir_all(&cert_dir).unwrap();
    ca.write_cert(&cert_dir.join("ca.crt"));
    let serve = Serve::start(
        &f.archive,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let multi = f.image("quay.io/org/multi:1");
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        &format!("docker://{}/org/multi:1", serve.addr),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(synth::sha256(&out.stdout), multi.digest);
    // Without the CA, the certificate is refused (so TLS is really on).
    let out = skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/org/multi:1", serve.addr),
    ]);
    assert!(!out.status.success());
}

#[test]
fn concurrent_clients_get_whole_blobs_and_memory_stays_flat() {
    common::require_tools(&[common::REGISTRY_BIN]);
    let dir = tempfile::tempdir().unwrap();
    // One 96 MiB layer, stored uncompressed (quick to write); served to 6 clients at once.
    let mut big = ImageSpec::new("quay.io/org/big:1", 7);
    big.layer_size = 96 * 1024 * 1024;
    big.uncompressed = true;
    big.shared_base = false;
    let path = dir.path().join("big.airgap");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (archive, images) = rt.block_on(archive_of(
        dir.path(),
        std::slice::from_ref(&big),
        &[],
        &path,
        Compression::None,
    ));
    let layer = images[0]
        .blobs
        .iter()
        .max_by_key(|b| {
            std::fs::metadata(dir.path().join("layout/blobs/sha256").join(&b[7..]))
                .unwrap()
                .len()
        })
        .unwrap()
        .clone();
    let size = std::fs::metadata(dir.path().join("layout/blobs/sha256").join(&layer[7..]))
        .unwrap()
        .len() as usize;
    assert!(size > 96 * 1024 * 1024);
    let serve = Serve::start(&archive, &[]);
    let pid = serve.child.id();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let addr = serve.addr.clone();
            let layer = layer.clone();
            std::thread::spawn(move || {
                let r = http(&addr, "GET", &format!("/v2/org/big/blobs/{layer}"), &[]);
                (r.status, synth::sha256(&r.body), r.body.len())
            })
        })
        .collect();
    for t in threads {
        let (status, digest, len) = t.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(len, size, "a short body");
        assert_eq!(digest, layer);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    // 6 x 96 MiB went out; a server holding blobs in memory would peak far above this.
    assert!(
        peak_kib < 80 * 1024,
        "serve peaked at {} MiB",
        peak_kib / 1024
    );
}

#[test]
fn sigterm_stops_serve_cleanly_and_a_busy_port_is_an_error() {
    let f = fixture(Compression::Zstd);
    let mut serve = Serve::start(&f.archive, &[]);
    // The same address again: refused, naming it.
    let out = bin()
        .arg("serve")
        .arg(&f.archive)
        .args(["--listen", &serve.addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&serve.addr), "{stderr}");
    assert_eq!(http(&serve.addr, "GET", "/v2/", &[]).status, 200);
    let pid = serve.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    assert!(TcpStream::connect(&serve.addr).is_err(), "still listening");
}
