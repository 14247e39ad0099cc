//! Interrupted and concurrent runs, and where output goes by default: SIGINT/SIGTERM during
//! export leave no partial file, a partial left by a killed export is removed by the next
//! one, a second import into a directory being written fails at once, and the default app
//! directory is never someone else's folder or the upstream itself.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{app_dir, bin, ok, Source};
use common::faulty::{Fault, FaultyProxy};
use common::TestRegistry;

fn is_blob_get(method: &str, path: &str) -> bool {
    method == "GET" && path.contains("/blobs/sha256:")
}

/// A source whose blob downloads are slow, so a signal lands mid-export.
fn slow_source() -> (Source, FaultyProxy) {
    let src = Source::start(Source::default_specs());
    let proxy = FaultyProxy::start(&src.reg.addr, |method, path, _| {
        is_blob_get(method, path).then_some(Fault::Delay(Duration::from_millis(700)))
    });
    (src, proxy)
}

fn export_cmd(mirror: &str, app: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--registry-mirror", mirror]);
    c
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect()
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigint_and_sigterm_during_export_remove_the_partial_archive() {
    let (src, proxy) = slow_source();
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("app.airgap");
    let mirror = format!("quay.io={}/quay.io", proxy.addr);
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let child = spawn(&mut export_cmd(&mirror, app.path(), &out));
        wait_for("a partial archive", || !partials(work.path()).is_empty());
        wait_for("a blob download", || {
            proxy
                .seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| is_blob_get(&s.method, &s.path))
        });
        signal(&child, sig);
        let res = child.wait_with_output().unwrap();
        assert_eq!(
            res.status.code(),
            Some(code),
            "{sig}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.contains("interrupted"), "{err}");
        assert!(!err.contains("panicked"), "{sig}: {err}");
        assert!(!out.exists(), "{sig}: no archive");
        assert_eq!(partials(work.path()), Vec::<String>::new(), "{sig}");
    }
}

#[test]
fn a_partial_left_by_a_killed_export_is_removed_by_the_next_export() {
    let (src, proxy) = slow_source();
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("app.airgap");
    let mirror = format!("quay.io={}/quay.io", proxy.addr);
    let mut child = spawn(&mut export_cmd(&mirror, app.path(), &out));
    wait_for("a partial archive", || !partials(work.path()).is_empty());
    child.kill().unwrap(); // SIGKILL: nothing runs, the partial stays
    child.wait().unwrap();
    assert_eq!(partials(work.path()).len(), 1);

    // A partial of another file in the same folder is not ours to remove.
    let other = work.path().join(".other.airgap.x.partial");
    std::fs::write(&other, b"not ours").unwrap();
    proxy.set_rule(|_, _, _| None);
    ok(
        export_cmd(&mirror, app.path(), &out).output().unwrap(),
        "export after a killed one",
    );
    assert!(out.is_file());
    assert_eq!(partials(work.path()), [".other.airgap.x.partial"]);
    let v = ok(bin().arg("verify").arg(&out).output().unwrap(), "verify");
    assert!(v.starts_with("OK"), "{v}");
}

#[test]
fn a_second_import_into_the_same_directory_fails_at_once() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.airgap");
    ok(
        export_cmd(&src.mirror(), app.path(), &archive)
            .output()
            .unwrap(),
        "export",
    );
    let dest = TestRegistry::start();
    // Slow pushes keep the first import inside its lock.
    let proxy = FaultyProxy::start(&dest.addr, |method, path, _| {
        ((method == "PUT" || method == "PATCH") && path.contains("/blobs/uploads/"))
            .then_some(Fault::Delay(Duration::from_millis(500)))
    });
    let dir = work.path().join("app");
    let import = |endpoint: &str| {
        let mut c = bin();
        c.arg("import")
            .arg(&archive)
            .args(["--registry-endpoint", endpoint, "--image-namespace", "ns"])
            .arg("--dest")
            .arg(&dir);
        c
    };
    let first = spawn(&mut import(&proxy.addr));
    wait_for("the first import's lock", || {
        dir.join(".kots-bundle/lock").exists()
    });
    let started = Instant::now();
    let second = import(&dest.addr).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another kots-bundle"), "{err}");
    assert!(
        !proxy.seen.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(20),
        "the second import must not wait for the first"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(dir.join("overlays/midstream/kustomization.yaml").is_file());
}

#[test]
fn the_default_app_directory_is_never_someone_elses_folder() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    std::fs::write(
        app.path().join("kots-app.yaml"),
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: shop}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("shop.airgap");
    ok(
        export_cmd(&src.mirror(), app.path(), &archive)
            .output()
            .unwrap(),
        "export",
    );
    let dest = TestRegistry::start();
    // The operator's own ./shop folder is refused before anything is pushed.
    std::fs::create_dir(work.path().join("shop")).unwrap();
    std::fs::write(work.path().join("shop/notes.txt"), "mine\n").unwrap();
    let res = bin()
        .current_dir(work.path())
        .arg("import")
        .arg(&archive)
        .args(["--registry-endpoint", &dest.addr, "--image-namespace", "ns"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not an app directory") && err.contains("--dest"),
        "{err}"
    );
    assert_eq!(dest.count_writes(), 0, "nothing pushed");
    assert_eq!(
        std::fs::read_dir(work.path().join("shop")).unwrap().count(),
        1,
        "the operator's folder is untouched"
    );

    // Without it, ./shop is created; run again, it is updated in place.
    std::fs::remove_dir_all(work.path().join("shop")).unwrap();
    for _ in 0..2 {
        ok(
            bin()
                .current_dir(work.path())
                .arg("import")
                .arg(&archive)
                .args(["--registry-endpoint", &dest.addr, "--image-namespace", "ns"])
                .output()
                .unwrap(),
            "import into the default directory",
        );
        assert!(work.path().join("shop/.kots-bundle/state.json").is_file());
    }
}

#[test]
fn pull_never_writes_into_the_upstream_it_reads() {
    let src = Source::start(Source::default_specs());
    let work = tempfile::tempdir().unwrap();
    // An app folder without a KOTS Application: its own name names it.
    let upstream = work.path().join("web");
    std::fs::create_dir(&upstream).unwrap();
    let app = app_dir(&src);
    std::fs::copy(app.path().join("app.yaml"), upstream.join("app.yaml")).unwrap();
    let dest = TestRegistry::start();
    let res = bin()
        .current_dir(work.path())
        .args(["pull", "./web", "--rewrite-images"])
        .args(["--registry-endpoint", &dest.addr, "--image-namespace", "ns"])
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("upstream being read"), "{err}");
    assert_eq!(
        std::fs::read_dir(&upstream).unwrap().count(),
        1,
        "the upstream folder is untouched"
    );
}
