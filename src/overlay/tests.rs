//! Unit tests for the app directory writer: failures and crashes at every swap step.

use std::collections::BTreeMap;
use std::path::Path;

use super::commit::{Fault, FAULT};
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
    }
}

fn state(version: &str) -> State {
    State {
        app: "app".into(),
        version: Some(version.into()),
        source: "test".into(),
        tool_version: "0".into(),
        images: vec![],
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

/// Every file under `dir` except staging leftovers, with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
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

fn staging_left(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(META_DIR))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("staging-")
        })
        .count()
}

/// Swaps in an update with a midstream present: upstream, base, generated, kustomization, state.
const UPDATE_SWAPS: usize = 5;

#[test]
fn failure_at_any_swap_leaves_previous_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(&dir, "1", true).unwrap();
    let before = snapshot(&dir);
    assert!(before.contains_key("upstream/extra.yaml"));
    for step in 0..UPDATE_SWAPS {
        FAULT.with(|f| f.set(Some(Fault::FailAt(step))));
        let err = write(&dir, "2", false).unwrap_err();
        FAULT.with(|f| f.set(None));
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(snapshot(&dir), before, "after a failure at swap {step}");
        assert_eq!(staging_left(&dir), 0);
    }
    write(&dir, "2", false).unwrap();
    let after = snapshot(&dir);
    assert!(!after.contains_key("upstream/extra.yaml"));
    assert_eq!(
        read_state(&dir).unwrap().unwrap().version.as_deref(),
        Some("2")
    );
}

#[test]
fn crash_at_any_swap_is_rolled_back_by_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(&dir, "1", true).unwrap();
    let before = snapshot(&dir);
    for step in 0..UPDATE_SWAPS {
        FAULT.with(|f| f.set(Some(Fault::CrashAt(step))));
        assert!(write(&dir, "2", false).is_err());
        FAULT.with(|f| f.set(None));
        assert_eq!(staging_left(&dir), 1);
        commit::recover(&dir).unwrap();
        assert_eq!(snapshot(&dir), before, "after a crash at swap {step}");
        assert_eq!(staging_left(&dir), 0);
    }
}

#[test]
fn crash_during_first_write_leaves_no_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    FAULT.with(|f| f.set(Some(Fault::CrashAt(2))));
    assert!(write(&dir, "1", false).is_err());
    FAULT.with(|f| f.set(None));
    // The next write recovers and succeeds, as if the first never happened.
    write(&dir, "1", false).unwrap();
    assert!(dir.join("overlays/downstream/kustomization.yaml").is_file());
    assert_eq!(read_state(&dir).unwrap().unwrap(), state("1"));
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
