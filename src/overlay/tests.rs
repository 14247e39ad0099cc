//! Unit tests for the app directory writer: failures and crashes at every swap step.

use std::collections::BTreeMap;
use std::path::Path;

use super::release::{Fault, Step, FAULT};
use super::*;
use crate::reference::Reference;
use crate::rewrite::{plan, Endpoint};
use crate::upstream::ManifestFile;

fn upstream(version: &str, extra: bool) -> Upstream {
    let mut files = vec![ManifestFile {
        path: "deploy.yaml".into(),
        data: format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: a, image: \"nginx:{version}\"}}\n"
        )
        .into_bytes(),
    }];
    if extra {
        files.push(ManifestFile {
            path: "extra.yaml".into(),
            data: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n".to_vec(),
        });
    }
    Upstream {
        source: "test".into(),
        name: Some("app".into()),
        version: Some(version.into()),
        files,
        release: None,
    }
}

fn state(version: &str) -> State {
    State {
        app: "app".into(),
        version: Some(version.into()),
        source: "test".into(),
        tool_version: "0".into(),
        images: vec![],
        release: None,
        destination: None,
    }
}

fn write(dir: &Path, version: &str, extra: bool) -> Result<(), OverlayError> {
    let src = Reference::parse(&format!("nginx:{version}")).unwrap();
    let rewrites = plan(
        &[src],
        &Endpoint::parse("reg.local").unwrap(),
        Some("ns"),
        false,
    )
    .unwrap();
    write_app_dir(
        dir,
        &upstream(version, extra),
        &rewrites,
        &state(version),
        &WriteOptions::default(),
    )
}

/// Every file an operator sees under `dir` (through the links), with its contents;
/// kots-bundle's own bookkeeping is left out.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.file_name() != META_DIR)
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Releases on disk (complete or not).
fn releases(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(META_DIR).join(release::RELEASES))
        .map(|e| e.count())
        .unwrap_or(0)
}

const STEPS: [Step; 3] = [Step::Staged, Step::Released, Step::Switched];

/// The nginx tag `kubectl kustomize overlays/midstream` deploys: proof that what kustomize
/// reads at that instant is one whole release.
fn rendered_version(dir: &Path) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.join("overlays/midstream"))
        .output()
        .expect("kubectl is installed (scripts/install-deps)");
    assert!(
        out.status.success(),
        "midstream does not render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let image = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("- image: "))
        .expect("an image");
    assert!(image.starts_with("reg.local/ns/nginx:"), "{image}");
    image.rsplit(':').next().unwrap().to_string()
}

#[test]
fn failure_at_any_step_leaves_a_whole_release() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(&dir, "1", true).unwrap();
    let before = snapshot(&dir);
    assert!(before.contains_key("upstream/extra.yaml"));
    for step in STEPS {
        FAULT.with(|f| f.set(Some(Fault::FailAt(step))));
        let err = write(&dir, "2", false).unwrap_err();
        FAULT.with(|f| f.set(None));
        assert!(err.to_string().contains("injected"), "{err}");
        // Before the switch the old release is whole; after it, the new one is.
        let now = snapshot(&dir);
        let version = read_state(&dir).unwrap().unwrap().version.unwrap();
        if step == Step::Switched {
            assert_eq!(version, "2");
            assert!(!now.contains_key("upstream/extra.yaml"));
            write(&dir, "1", true).unwrap();
        } else {
            assert_eq!(now, before, "after a failure at {step:?}");
            assert_eq!(version, "1");
        }
    }
    write(&dir, "2", false).unwrap();
    let after = snapshot(&dir);
    assert!(!after.contains_key("upstream/extra.yaml"));
    assert_eq!(
        read_state(&dir).unwrap().unwrap().version.as_deref(),
        Some("2")
    );
    assert_eq!(releases(&dir), 1, "old releases are pruned");
}

#[test]
fn crash_at_any_step_leaves_old_or_new_and_the_next_write_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(&dir, "1", true).unwrap();
    let before = snapshot(&dir);
    for step in STEPS {
        FAULT.with(|f| f.set(Some(Fault::CrashAt(step))));
        assert!(write(&dir, "2", false).is_err());
        FAULT.with(|f| f.set(None));
        let version = read_state(&dir).unwrap().unwrap().version.unwrap();
        if step == Step::Switched {
            assert_eq!(version, "2");
        } else {
            assert_eq!(snapshot(&dir), before, "after a crash at {step:?}");
            assert_eq!(version, "1");
        }
        assert_eq!(rendered_version(&dir), version, "after a crash at {step:?}");
        assert_eq!(releases(&dir), 2, "a crash leaves its release behind");
        write(&dir, "1", true).unwrap();
        assert_eq!(snapshot(&dir), before);
        assert_eq!(releases(&dir), 1);
    }
}

#[test]
fn crash_during_first_write_leaves_no_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    FAULT.with(|f| f.set(Some(Fault::CrashAt(Step::Released))));
    assert!(write(&dir, "1", false).is_err());
    FAULT.with(|f| f.set(None));
    assert!(dir.join(META_DIR).is_dir(), "a crash cleans nothing up");
    assert_eq!(read_state(&dir).unwrap(), None);
    // The next write recovers and succeeds, as if the first never happened.
    write(&dir, "1", false).unwrap();
    assert!(dir.join("overlays/downstream/kustomization.yaml").is_file());
    assert_eq!(read_state(&dir).unwrap().unwrap(), state("1"));
}

#[test]
fn failed_first_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    FAULT.with(|f| f.set(Some(Fault::FailAt(Step::Staged))));
    assert!(write(&dir, "1", false).is_err());
    FAULT.with(|f| f.set(None));
    assert!(
        !dir.exists(),
        "a failed first write removes what it created"
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(&dir, "1", false).unwrap();
    let held = AppDir::open(&dir).unwrap();
    let err = write(&dir, "2", false).unwrap_err();
    assert!(matches!(err, OverlayError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(held);
    write(&dir, "2", false).unwrap();
}

#[test]
fn refuses_a_directory_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("upstream")).unwrap();
    let err = write(tmp.path(), "1", false).unwrap_err();
    assert!(matches!(err, OverlayError::NotOurs { .. }), "{err}");
}

#[test]
fn pull_secret_debug_hides_credentials() {
    let s = PullSecret {
        name: "n".into(),
        registry: "r".into(),
        username: "user-x".into(),
        password: "hunter2".into(),
    };
    let d = format!("{s:?}");
    assert!(!d.contains("hunter2") && !d.contains("user-x"), "{d}");
}
