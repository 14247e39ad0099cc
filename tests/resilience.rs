//! Flaky networks and interrupted runs: import and export through a loopback proxy that
//! injects 5xx, 429 with Retry-After, cut connections and stalls in front of a real registry.
//! They survive within the retry budget; past it they stop with a clear error, and running
//! the same command again finishes the job, moving only what is missing.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::app::{app_dir, app_dir_using, bin, ok, Source};
use common::faulty::{Fault, FaultyProxy};
use common::synth::{self, ImageSpec};
use common::TestRegistry;

fn export(src_mirror: &str, app: &Path, out: &Path) -> Output {
    bin()
        .arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--registry-mirror", src_mirror])
        .output()
        .unwrap()
}

fn import_cmd(endpoint: &str, archive: &Path, dir: &Path) -> Command {
    let mut c = bin();
    c.arg("import")
        .arg(archive)
        .args(["--registry-endpoint", endpoint, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(dir);
    c
}

fn skopeo_digest(reg: &TestRegistry, r: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{r}", reg.addr))
        .output()
        .unwrap();
    synth::sha256(ok(out, r).as_bytes())
}

/// Every image is in the real registry with its source digest.
fn all_there(src: &Source, reg: &TestRegistry) {
    let a = &src.image("a:v1").digest;
    assert_eq!(skopeo_digest(reg, &format!("ns/a@{a}")), *a);
    assert_eq!(
        skopeo_digest(reg, "ns/multi:1"),
        src.image("multi:1").digest
    );
    assert_eq!(skopeo_digest(reg, "ns/b:v1"), src.image("b:v1").digest);
}

/// A request without its upload session id, so each retry of the same upload has one key.
fn request_key(method: &str, path: &str) -> String {
    match path.split_once("/blobs/uploads/") {
        Some((repo, rest)) => {
            let digest = rest.split("digest=").nth(1).unwrap_or("");
            format!("{method} {repo} upload {digest}")
        }
        None => format!("{method} {path}"),
    }
}

fn is_blob_put(method: &str, path: &str) -> bool {
    (method == "PUT" || method == "PATCH") && path.contains("/blobs/uploads/")
}

struct World {
    src: Source,
    work: tempfile::TempDir,
    archive: std::path::PathBuf,
}

fn world() -> World {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.airgap");
    ok(export(&src.mirror(), app.path(), &archive), "export");
    World { src, work, archive }
}

#[test]
fn import_survives_5xx_429_and_stalls() {
    let w = world();
    let dest = TestRegistry::start();
    // Each distinct request fails once, in turn with 503, 429, 502 or a stall, then goes
    // through: every request meets a fault, and none exhausts the retry budget however the
    // concurrent requests interleave.
    let first_seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let proxy = FaultyProxy::start(&dest.addr, move |method, path, _| {
        let key = request_key(method, path);
        let mut seen = first_seen.lock().unwrap();
        if !seen.insert(key) {
            return None;
        }
        Some(match seen.len() % 4 {
            0 => Fault::Status(503),
            1 => Fault::TooMany(1),
            2 => Fault::Status(502),
            _ => Fault::Delay(Duration::from_millis(300)),
        })
    });
    let dir = w.work.path().join("app");
    let out = import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap();
    ok(out, "import through a flaky proxy");
    let faults = proxy.faults();
    assert!(
        faults.iter().any(|f| f.fault == Some(Fault::TooMany(1)))
            && faults.iter().any(|f| f.fault == Some(Fault::Status(503))),
        "the proxy injected 429s and 503s: {faults:?}"
    );
    all_there(&w.src, &dest);
    assert!(dir.join("overlays/midstream/kustomization.yaml").exists());
}

#[test]
fn past_the_retry_budget_import_stops_clearly_and_a_rerun_pushes_only_what_is_missing() {
    let w = world();
    let dest = TestRegistry::start();
    // The shared base layer's hex (the query carries the digest URL-encoded).
    let base = w.src.images[0].shared_base.clone().unwrap()["sha256:".len()..].to_string();
    let b = base.clone();
    let proxy = FaultyProxy::start(&dest.addr, move |method, path, _| {
        (method == "PUT" && path.contains(&b)).then_some(Fault::Status(503))
    });
    let dir = w.work.path().join("app");
    let out = import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("503"),
        "says what the registry answered: {err}"
    );
    assert!(err.contains(&proxy.addr), "names the registry: {err}");
    assert!(!dir.exists(), "no app directory after a failed import");
    let attempts = proxy
        .faults()
        .iter()
        .filter(|f| f.path.contains(&base))
        .count();
    assert!(
        attempts > 1,
        "the failing upload was retried ({attempts} attempts)"
    );

    // The network heals; the same command finishes, uploading only the blob that was missing.
    proxy.set_rule(|_, _, _| None);
    let mark = proxy.seen.lock().unwrap().len();
    ok(
        import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap(),
        "re-run",
    );
    let seen = proxy.seen.lock().unwrap()[mark..].to_vec();
    // Image blobs only: the app directory import stores beside them (`<app>-app`) is new.
    let uploads: Vec<_> = seen
        .iter()
        .filter(|s| {
            s.method == "PUT" && s.path.contains("/blobs/uploads/") && !s.path.contains("-app/")
        })
        .collect();
    assert_eq!(
        uploads.len(),
        1,
        "only the missing blob is uploaded: {uploads:?}"
    );
    assert!(uploads[0].path.contains(&base));
    all_there(&w.src, &dest);
}

#[test]
fn export_survives_a_cut_blob_and_server_errors() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    // The first download of each blob is cut mid-body (headers and part of the body, then a
    // reset: the client resumes with Range), the first fetch of each manifest gets a 500.
    let first_seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let proxy = FaultyProxy::start(&src.reg.addr, move |method, path, _| {
        if !first_seen.lock().unwrap().insert(request_key(method, path)) {
            None
        } else if method == "GET" && path.contains("/blobs/sha256:") {
            Some(Fault::Cut(20_000))
        } else if path.contains("/manifests/") {
            Some(Fault::Status(500))
        } else {
            None
        }
    });
    let out = work.path().join("app.airgap");
    ok(
        export(&format!("quay.io={}/quay.io", proxy.addr), app.path(), &out),
        "export through a flaky proxy",
    );
    assert!(
        proxy
            .faults()
            .iter()
            .any(|f| matches!(f.fault, Some(Fault::Cut(_)))),
        "a blob download was cut"
    );
    let v = ok(bin().arg("verify").arg(&out).output().unwrap(), "verify");
    assert!(v.starts_with("OK"), "{v}");
}

#[test]
fn ctrl_c_mid_import_leaves_registry_and_app_dir_consistent() {
    let w = world();
    let dest = TestRegistry::start();
    // Slow uploads, so the interrupt lands mid-push.
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        is_blob_put(method, path).then_some(Fault::Delay(Duration::from_millis(400)))
    });
    let dir = w.work.path().join("app");
    let child = import_cmd(&proxy.addr, &w.archive, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until uploads are under way, then interrupt.
    for _ in 0..100 {
        if proxy
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| is_blob_put(&s.method, &s.path))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "interrupted import must not report success"
    );
    // Nothing half-written: no app directory (it is only written after every push).
    assert!(
        !dir.exists(),
        "an interrupted import wrote {}",
        dir.display()
    );
    // No tag points at an incomplete image: whatever is tagged is complete.
    for (repo, tag) in [("ns/multi", "1"), ("ns/b", "v1")] {
        let (_, body) = dest.http_get(&format!("/v2/{repo}/tags/list"));
        if !String::from_utf8_lossy(&body).contains(&format!("\"{tag}\"")) {
            continue;
        }
        ok(
            Command::new("skopeo")
                .args(["copy", "--all", "--src-tls-verify=false"])
                .arg(format!("docker://{}/{repo}:{tag}", dest.addr))
                .arg(format!("oci:{}:x", w.work.path().join("check").display()))
                .output()
                .unwrap(),
            &format!("{repo}:{tag} is tagged, so it must be complete"),
        );
    }
    proxy.set_rule(|_, _, _| None);
    ok(
        import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap(),
        "re-run after Ctrl-C",
    );
    all_there(&w.src, &dest);
}

/// A tag that the registry keeps immutable (Harbor answers 412) already holds another image:
/// the import stops with a message that says so, names the tag, and writes no app directory.
#[test]
fn an_immutable_tag_conflict_is_explained() {
    let w = world();
    let dest = TestRegistry::start();
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        (method == "PUT" && path.ends_with("/manifests/v1")).then_some(Fault::Answer(
            412,
            r#"{"errors":[{"code":"UNKNOWN","message":"Failed to process request due to 'b:v1' configured as immutable."}]}"#,
        ))
    });
    let dir = w.work.path().join("app");
    let out = import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/v2/ns/b/manifests/v1"),
        "names the tag: {err}"
    );
    assert!(
        err.contains("does not let tags be overwritten"),
        "explains: {err}"
    );
    assert_eq!(
        proxy.faults().len(),
        1,
        "a conflict is not retried: {:?}",
        proxy.faults()
    );
    assert!(!dir.exists());
}

/// Runs `cmd` to its end, or kills it after `limit` and fails: a hang guard, not a
/// timing assertion (the limit is many times what a working run takes).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let guard = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Only the child this test started, by its id.
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        true
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = guard.join().unwrap();
    assert!(
        !killed,
        "still running after {limit:?}, killed; stderr so far:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_registry_that_trickles_blob_bytes_does_not_keep_export_silent_for_ever() {
    let src = Source::start(vec![synth::ImageSpec::new("a:v1", 41)]);
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("m");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/a:v1}\n",
    )
    .unwrap();
    // Never two seconds without a byte, so a per-read timeout never fires; yet 2 bytes a
    // second would take days for one layer.
    let proxy = FaultyProxy::start(&src.reg.addr, |method, path, _| {
        (method == "GET" && path.contains("/blobs/sha256:"))
            .then_some(Fault::Trickle(Duration::from_millis(500)))
    });
    let out = run_bounded(
        bin()
            .arg("export")
            .arg(&app)
            .arg("-o")
            .arg(work.path().join("a.airgap"))
            .args([
                "--registry-mirror",
                &format!("quay.io={}/quay.io", proxy.addr),
            ])
            .args(["--idle-timeout", "2"]),
        Duration::from_secs(240),
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains(&proxy.addr), "names the registry: {e}");
    assert!(e.contains("blob sha256:"), "names the request: {e}");
    assert!(e.contains("stalled"), "says what happened: {e}");
    assert!(
        e.contains("WARN") && e.find("WARN") < e.find("error:"),
        "says something before giving up: {e}"
    );
    assert!(!work.path().join("a.airgap").exists());
}

#[test]
fn a_registry_that_accepts_connections_and_never_answers_is_given_up_on() {
    let w = world();
    // Accepts, reads nothing, answers nothing (the TLS handshake and the HTTP answer wait).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = w.work.path().join("app");
    let out = run_bounded(
        import_cmd(&addr, &w.archive, &dir)
            .env("KOTS_BUNDLE_CONNECT_TIMEOUT", "1")
            .env("KOTS_BUNDLE_IDLE_TIMEOUT", "1"),
        Duration::from_secs(120),
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("registry {addr}")),
        "names the registry: {e}"
    );
    assert!(e.contains("/v2/"), "names the request: {e}");
    assert!(
        e.contains("timed out") || e.contains("no answer within"),
        "says it waited: {e}"
    );
    assert!(!dir.exists());
}

#[test]
fn an_upload_slower_than_the_idle_timeout_but_moving_goes_through() {
    let w = world();
    let dest = TestRegistry::start();
    // 256 KiB/s: every layer takes longer than the 1 s idle timeout, and keeps moving.
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        is_blob_put(method, path).then_some(Fault::SlowUpload(256 * 1024))
    });
    let dir = w.work.path().join("app");
    let out = run_bounded(
        import_cmd(&proxy.addr, &w.archive, &dir).env("KOTS_BUNDLE_IDLE_TIMEOUT", "1"),
        Duration::from_secs(300),
    );
    ok(out, "import through a slow link");
    assert!(proxy
        .faults()
        .iter()
        .any(|f| f.fault == Some(Fault::SlowUpload(256 * 1024))));
    all_there(&w.src, &dest);
}

#[test]
fn a_registry_that_answers_201_and_stores_nothing_fails_the_import() {
    let w = world();
    let dest = TestRegistry::start();
    // Manifest pushes are swallowed: the body is read, 201 comes back, nothing is stored.
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        (method == "PUT" && path.contains("/manifests/")).then_some(Fault::Status(201))
    });
    let dir = w.work.path().join("app");
    let out = import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap();
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("nothing was stored"), "{e}");
    assert!(
        e.contains(&format!("{}/ns/", proxy.addr)),
        "names the image: {e}"
    );
    assert!(
        !dir.exists(),
        "no app directory points at images that are not there"
    );
    // Independently: the registry indeed has no manifest.
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/ns/b:v1", dest.addr))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_refused_connection_is_said_once_and_the_error_names_the_registry() {
    let closed = format!("127.0.0.1:{}", common::free_port());
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("m");
    std::fs::create_dir(&app).unwrap();
    let mut pod =
        String::from("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n");
    for i in 0..6 {
        pod.push_str(&format!(
            "  - {{name: c{i}, image: {closed}/org/img{i}:v1}}\n"
        ));
    }
    std::fs::write(app.join("pod.yaml"), pod).unwrap();
    let out = run_bounded(
        bin()
            .arg("export")
            .arg(&app)
            .arg("-o")
            .arg(work.path().join("a.airgap"))
            .args(["--concurrency", "4"]),
        Duration::from_secs(120),
    );
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    let warnings = e.lines().filter(|l| l.contains("WARN")).count();
    assert_eq!(
        warnings, 1,
        "one warning, not one per retry per image:\n{e}"
    );
    assert!(
        e.contains(&format!("cannot reach registry {closed}")),
        "{e}"
    );
}

#[test]
fn a_read_only_registry_is_said_to_refuse_pushes() {
    let w = world();
    let dest = TestRegistry::start_with(common::RegistryConfig {
        read_only: true,
        ..common::RegistryConfig::default()
    });
    let dir = w.work.path().join("app");
    let out = import_cmd(&dest.addr, &w.archive, &dir).output().unwrap();
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("registry {} refuses pushes to ns/", dest.addr)),
        "{e}"
    );
    assert!(e.contains("read-only"), "{e}");
    assert!(!dir.exists());
}

/// Round trips a far registry would pay for: no blob of an image is HEADed (a shared blob's
/// mount answers for itself, and a blob's first copy asks with a mount from its own
/// repository, which answers "there" or opens the upload), and a re-import where every
/// image is there asks for no upload session at all (the push check runs only for images
/// to push).
#[test]
fn import_mounts_without_a_head_and_a_complete_reimport_opens_no_upload() {
    let w = world();
    let dest = TestRegistry::start();
    let proxy = FaultyProxy::start(&dest.addr, |_, _, _| None);
    let dir = w.work.path().join("app");
    ok(
        import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap(),
        "import",
    );
    let seen = proxy.seen.lock().unwrap().clone();
    let mounts: Vec<(String, String)> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .filter_map(|s| {
            let (repo, query) = s.path.split_once("/blobs/uploads/")?;
            let digest = query.split("mount=").nth(1)?.split('&').next()?;
            Some((repo.to_string(), digest.replace("%3A", ":")))
        })
        .collect();
    let cross = seen.iter().filter(|s| {
        s.method == "POST"
            && s.path
                .split_once("/blobs/uploads/")
                .is_some_and(|(repo, query)| {
                    query.split("from=").nth(1).is_some_and(|from| {
                        from.replace("%2F", "/") != repo.trim_start_matches("/v2/")
                    })
                })
    });
    assert!(
        cross.count() > 0,
        "the shared base layer is mounted from another repository: {seen:?}"
    );
    // The stored app directory (`-app`) is not an image: it asks with HEADs.
    let blob_heads: Vec<&String> = seen
        .iter()
        .filter(|s| s.method == "HEAD" && s.path.contains("/blobs/") && !s.path.contains("-app/"))
        .map(|s| &s.path)
        .collect();
    assert!(
        blob_heads.is_empty(),
        "no image blob is HEADed: {blob_heads:?}"
    );
    for (repo, digest) in &mounts {
        let head = format!("{repo}/blobs/{digest}");
        assert!(
            !seen.iter().any(|s| s.method == "HEAD" && s.path == head),
            "no HEAD before the mount of {digest} into {repo}"
        );
    }
    all_there(&w.src, &dest);

    proxy.seen.lock().unwrap().clear();
    ok(
        import_cmd(&proxy.addr, &w.archive, &dir).output().unwrap(),
        "re-import",
    );
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.method == "GET" || s.method == "HEAD"),
        "a re-import of images all there only reads: {seen:?}"
    );
}

/// An import that stopped after its blobs went up, resumed against a registry that answers
/// every mount with a new upload session (no cross-repository mounts): a large blob the
/// repository already holds is found by a HEAD and not sent again.
#[test]
fn a_resumed_import_does_not_send_a_large_blob_again_to_a_registry_without_mounts() {
    let mut specs = Source::default_specs();
    let mut big = ImageSpec::new("big:1", 7);
    big.layer_size = 33 * 1024 * 1024;
    big.uncompressed = true;
    big.shared_base = false;
    specs.push(big);
    let src = Source::start(specs);
    let app = app_dir_using(&src, &["multi:1", "b:v1", "big:1"]);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.airgap");
    ok(export(&src.mirror(), app.path(), &archive), "export");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/quay.io/org/big:1", src.reg.addr))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let uploads_of_layer = |proxy: &FaultyProxy| {
        let encoded = layer.replace(':', "%3A");
        proxy
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PUT" && (s.path.contains(&encoded) || s.path.contains(&layer)))
            .count()
    };

    let dest = TestRegistry::start();
    // First run: every manifest PUT refused, so the blobs land and the images do not.
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        (method == "PUT" && path.contains("/manifests/")).then_some(Fault::Status(400))
    });
    let dir = work.path().join("app");
    let out = import_cmd(&proxy.addr, &archive, &dir).output().unwrap();
    assert!(
        !out.status.success(),
        "the first import fails at its manifests"
    );
    assert_eq!(uploads_of_layer(&proxy), 1, "the large layer went up once");

    proxy.seen.lock().unwrap().clear();
    proxy.set_rule(|method, path, _| {
        (method == "POST" && path.contains("mount=")).then_some(Fault::NoQuery)
    });
    ok(
        import_cmd(&proxy.addr, &archive, &dir).output().unwrap(),
        "resumed import",
    );
    assert_eq!(
        uploads_of_layer(&proxy),
        0,
        "the large layer the repository holds is not sent again"
    );
    assert_eq!(skopeo_digest(&dest, "ns/big:1"), src.image("big:1").digest);
    all_there(&src, &dest);
}
