//! `pull` re-run in a kept app directory: without the destination flags it pushes where the
//! last run did (and says so) instead of dropping the rewrite; a different destination given
//! explicitly is used, and said.

mod common;

use std::path::Path;

use common::app::{app_dir, bin, ok, rendered_images, Source};
use common::TestRegistry;

fn pull(app: &Path, dir: &Path, mirror: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .arg("pull")
        .arg(app)
        .arg("--dest")
        .arg(dir)
        .args(["--registry-mirror", mirror])
        .args(extra)
        .output()
        .unwrap()
}

fn all_at(dir: &Path, prefix: &str) {
    for kubectl in [
        Path::new("kubectl"),
        Path::new("/opt/kubectl-1.20/usr/bin/kubectl"),
    ] {
        if !kubectl.exists() && kubectl != Path::new("kubectl") {
            eprintln!(
                "skipping {}: not installed (scripts/install-deps)",
                kubectl.display()
            );
            continue;
        }
        let images = rendered_images(kubectl, &dir.join("overlays/midstream"));
        assert!(!images.is_empty());
        assert!(
            images.iter().all(|i| i.starts_with(prefix)),
            "{}: {images:?}",
            kubectl.display()
        );
    }
}

#[test]
fn a_rerun_without_destination_flags_pushes_where_the_last_run_did() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    let (r1, r2) = (TestRegistry::start(), TestRegistry::start());
    ok(
        pull(
            app.path(),
            &dir,
            &src.mirror(),
            &[
                "--rewrite-images",
                "--registry-endpoint",
                &r1.addr,
                "--image-namespace",
                "ns",
            ],
        ),
        "first pull",
    );
    all_at(&dir, &format!("{}/ns/", r1.addr));

    // The update, as the seed runs it, but without the flags: still rewritten to r1.
    let out = pull(app.path(), &dir, &src.mirror(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "pull without flags");
    assert!(
        err.contains(&format!("pushing to {}/ns again", r1.addr)),
        "{err}"
    );
    all_at(&dir, &format!("{}/ns/", r1.addr));

    // An explicit different destination is used, and said.
    let out = pull(
        app.path(),
        &dir,
        &src.mirror(),
        &[
            "--rewrite-images",
            "--registry-endpoint",
            &r2.addr,
            "--image-namespace",
            "team",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "pull to another registry");
    assert!(
        err.contains(&format!("pushing to {}/team", r2.addr)) && err.contains(&r1.addr),
        "{err}"
    );
    all_at(&dir, &format!("{}/team/", r2.addr));
    assert!(
        r2.count_writes() > 0,
        "the images were pushed to the new registry"
    );
}
