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

/// Every blob file of the OCI layout at `dir/images`.
fn layout_blobs(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir.join("images/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_image_cache_keeps_what_the_current_version_needs() {
    use common::synth::ImageSpec;
    let mut src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    ok(pull(app.path(), &dir, &src.mirror(), &[]), "first pull");
    let before = layout_blobs(&dir);
    let b = src.image("b:v1").clone();

    // The update swaps b:v1 for c:v1.
    let c = src.add(ImageSpec::new("c:v1", 40));
    let text = std::fs::read_to_string(app.path().join("app.yaml")).unwrap();
    std::fs::write(
        app.path().join("app.yaml"),
        text.replace("quay.io/org/b:v1", "quay.io/org/c:v1"),
    )
    .unwrap();
    ok(pull(app.path(), &dir, &src.mirror(), &[]), "update");

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("images/index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(names.iter().any(|n| n.ends_with("/c:v1")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with("/b:v1")), "{names:?}");

    let after = layout_blobs(&dir);
    let b_manifest = b.digest.trim_start_matches("sha256:").to_string();
    assert!(before.contains(&b_manifest));
    assert!(!after.contains(&b_manifest), "b's manifest was pruned");
    let c_manifest = c.digest.trim_start_matches("sha256:").to_string();
    assert!(after.contains(&c_manifest));
    // What is left is whole: skopeo reads every kept image from the layout.
    for n in &names {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{n}", dir.join("images").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing unreachable is left: every blob is a kept manifest, config or layer.
    let mut reachable = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    while let Some(d) = todo.pop() {
        let hex = d.trim_start_matches("sha256:").to_string();
        if !reachable.insert(hex.clone()) {
            continue;
        }
        let Ok(data) = std::fs::read(dir.join("images/blobs/sha256").join(&hex)) else {
            continue;
        };
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
            for key in ["manifests", "layers"] {
                for x in v[key].as_array().into_iter().flatten() {
                    todo.push(x["digest"].as_str().unwrap().to_string());
                }
            }
            if let Some(c) = v["config"]["digest"].as_str() {
                todo.push(c.to_string());
            }
        }
    }
    let unreachable: Vec<&String> = after.difference(&reachable).collect();
    assert!(unreachable.is_empty(), "left behind: {unreachable:?}");
}
