//! Untrusted manifests: YAML that does not parse never stalls a command, and no name from a
//! manifest or a release can place a file outside the app directory.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::app::bin;
use kots_bundle::overlay::{write_app_dir, State, WriteOptions};
use kots_bundle::upstream::{ManifestFile, Upstream};

/// Runs `cmd`, killing it after `limit`: a hang is a test failure, not a stuck suite.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "did not finish in {limit:?}; stderr so far: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn unparseable_yaml_is_reported_once_with_file_and_line_and_the_rest_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("shop");
    // A tab indent, an unterminated quote, a Helm template outside any chart, and a KOTS
    // Application (what the app-name lookup reads), then a good manifest after each.
    write(
        &app,
        "a-tab.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec: {containers: [{name: c, image: 'redis:7'}]}\n",
    );
    write(
        &app,
        "b-quote.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"open\nspec: {}\n",
    );
    write(
        &app,
        "c-template.yaml",
        "{{- if .Values.x }}\nkind: Pod\n{{- end }}\n",
    );
    write(
        &app,
        "d-app.yaml",
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: shop}\nspec: {additionalImages: ['nginx:1.25']}\n",
    );
    let out = run_with_limit(bin().arg("images").arg(&app), Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["docker.io/library/nginx:1.25", "docker.io/library/redis:7"],
        "{stderr}"
    );
    // The tab-indented ConfigMap is a Kubernetes manifest that hides nothing we can see: it
    // is reported once, with its file and the line the parser stopped at.
    let tab: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("a-tab.yaml"))
        .collect();
    assert_eq!(tab.len(), 1, "{stderr}");
    assert!(tab[0].contains("line 4"), "{stderr}");
    let quote: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("b-quote.yaml"))
        .collect();
    assert_eq!(quote.len(), 1, "{stderr}");
}

#[test]
fn export_names_the_app_after_its_kots_application_not_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("vendor").join("manifests");
    write(
        &app,
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n",
    );
    write(
        &app,
        "app.yaml",
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: shop}\n",
    );
    // No image at all: export writes an archive with only the manifests, quickly, and the
    // file is named after the Application.
    let out = run_with_limit(
        bin().current_dir(tmp.path()).arg("export").arg(&app),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("shop.airgap").exists());
    assert!(!tmp.path().join("manifests.airgap").exists());

    // Without an Application, the folder above a generic `manifests` names it.
    std::fs::remove_file(app.join("app.yaml")).unwrap();
    let out = run_with_limit(
        bin().current_dir(tmp.path()).arg("export").arg(&app),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("vendor.airgap").exists());

    // --app-name wins, and is checked rather than altered.
    let out = run_with_limit(
        bin()
            .current_dir(tmp.path())
            .args(["export", "--app-name", "../evil"])
            .arg(&app),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--app-name"));
    assert!(!tmp.path().join("evil.airgap").exists());
    assert!(!tmp.path().parent().unwrap().join("evil.airgap").exists());
}

#[test]
fn kinds_names_and_namespaces_cannot_place_files_outside_the_app_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inner").join("app");
    let doc = "apiVersion: v1\nkind: ../../../../outside/x\nmetadata:\n  name: ../../../../outside/y\n  namespace: /tmp/z\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: 'nginx:1.25'}]\n";
    let up = Upstream {
        source: "test".into(),
        name: Some("app".into()),
        version: None,
        files: vec![ManifestFile {
            path: "evil.yaml".into(),
            data: doc.as_bytes().to_vec(),
        }],
    };
    let rewrites = kots_bundle::rewrite::plan(
        &[kots_bundle::reference::Reference::parse("nginx:1.25").unwrap()],
        &kots_bundle::rewrite::Endpoint::parse("registry.example.com").unwrap(),
        Some("ns"),
        false,
    )
    .unwrap();
    let state = State {
        app: "app".into(),
        version: None,
        source: "test".into(),
        tool_version: "test".into(),
        images: vec![],
    };
    write_app_dir(&dir, &up, &rewrites, &state, &WriteOptions::default()).unwrap();
    // Everything written is inside DIR; nothing appeared beside it or above it.
    for entry in walkdir::WalkDir::new(tmp.path()) {
        let entry = entry.unwrap();
        assert!(
            entry.path() == tmp.path()
                || entry.path() == tmp.path().join("inner")
                || entry.path().starts_with(&dir),
            "written outside the app directory: {}",
            entry.path().display()
        );
    }
}
