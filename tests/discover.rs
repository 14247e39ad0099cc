//! `kots-bundle images`, driven as a user would: the real binary on real public manifests
//! (the shared corpus, when present), on the project's own fixtures (every shape section 3
//! of the product spec names), on tarballs, Helm chart archives and an `.airgap` file.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::bundle;
use common::synth::ImageSpec;
use kots_bundle::archive::Compression;
use kots_bundle::reference::Reference;

/// `images --no-helm`: these tests check discovery's own reading, charts' values included
/// (tests/helm.rs renders charts with a real helm).
fn images(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kots-bundle"))
        .args(["images", "--no-helm"])
        .args(args)
        .output()
        .expect("run kots-bundle")
}

fn images_ok(path: &Path) -> (Vec<String>, String) {
    let out = images(&[path.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "images {} failed ({}): {stderr}",
        path.display(),
        out.status
    );
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    (stdout.lines().map(str::to_string).collect(), stderr)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discover")
}

#[test]
fn corpus_matches_expected() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if !corpus.is_dir() {
        eprintln!(
            "skipping: no corpus at {} (it lives beside the repo, not in it)",
            corpus.display()
        );
        return;
    }
    let mut apps: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("EXPECTED.txt").is_file())
        .collect();
    apps.sort();
    assert!(!apps.is_empty(), "corpus at {} is empty", corpus.display());
    for app in apps {
        let expected = std::fs::read_to_string(app.join("EXPECTED.txt")).unwrap();
        let mut required = BTreeSet::new();
        let mut optional = BTreeSet::new();
        let mut past_marker = false;
        for line in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with("# non-podspec") {
                past_marker = true;
            } else if !line.starts_with('#') {
                if past_marker {
                    optional.insert(line.to_string());
                } else {
                    required.insert(line.to_string());
                }
            }
        }
        let (got, _warnings) = images_ok(&app.join("manifests"));
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            got_set.len(),
            got.len(),
            "{}: duplicates in {got:?}",
            app.display()
        );
        let missing: Vec<_> = required.difference(&got_set).collect();
        let extra: Vec<_> = got_set
            .iter()
            .filter(|r| !required.contains(*r) && !optional.contains(*r))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, not expected {extra:?}",
            app.display()
        );
        // The required part exactly: anything beyond it is an optional (non-podspec) one.
        let got_required: BTreeSet<String> = got_set.intersection(&required).cloned().collect();
        assert_eq!(got_required, required, "{}", app.display());
    }
}

/// Every image the fixture app needs, normalized. Left out on purpose: the templated and
/// invalid references (warned about), `notes.yaml` (not Kubernetes), the chart templates'
/// templated images (a literal one in a template is found), chart values without a tag
/// (warned about: only helm knows what their templates make of them), and
/// `example/unwanted:9` (the KOTS Application excludes it).
const FIXTURE_EXPECTED: &[&str] = &[
    "docker.io/argoproj/rollouts-demo:blue",
    "docker.io/example/extra-tool:1.0",
    "docker.io/example/fine:1",
    "docker.io/example/from-list-app:2",
    "docker.io/example/kept:9",
    "docker.io/example/legacy-run:2",
    "docker.io/example/must-exist:5",
    "docker.io/example/netutils:1",
    "docker.io/example/packed-global:3",
    "docker.io/example/packed-literal:1",
    "docker.io/example/sidecar:1.5",
    "docker.io/example/upper-ext:1",
    "docker.io/library/alpine:3.19",
    "docker.io/library/busybox:1.36",
    // `repl{{ LocalImageName "nginx:1.25" }}`, rendered as export renders it.
    "docker.io/library/nginx:1.25",
    "docker.io/library/redis:7.2",
    "docker.io/nicolaka/netshoot:v0.12",
    "ghcr.io/example/backup:2024.1",
    "ghcr.io/example/checker:0.3",
    "ghcr.io/example/crlf-web:1.0",
    "ghcr.io/example/dirchart:10",
    "ghcr.io/example/json-api:2.1@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "localhost:5000/legacy/rc:latest",
    "quay.io/example/addon@sha256:2222222222222222222222222222222222222222222222222222222222222222",
    "quay.io/example/agent:v3",
    "quay.io/example/pinned@sha256:3333333333333333333333333333333333333333333333333333333333333333",
    "registry.example.com/team/migrate:7",
    "registry.example.com/team/worker:7",
    "registry.k8s.io/pause:3.9",
];

/// Copies the fixture app to a temp dir and packs `packed-chart/` into
/// `charts/packed-0.2.0.tgz` inside it, as `helm package` lays it out (`packed/...`).
fn fixture_app() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("app");
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&src).unwrap();
        let to = tmp.path().join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let charts = tmp.path().join("charts");
    std::fs::create_dir_all(&charts).unwrap();
    tgz_dir(
        &fixtures().join("packed-chart"),
        "packed",
        &charts.join("packed-0.2.0.tgz"),
    );
    tmp
}

fn tgz_dir(dir: &Path, top: &str, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(top, dir).unwrap();
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn fixture_app_lists_every_shape_and_warns_about_the_rest() {
    let crlf = std::fs::read(fixtures().join("app/crlf.yaml")).unwrap();
    assert!(
        crlf.windows(2).any(|w| w == b"\r\n"),
        "crlf.yaml lost its CRLF line ends (check .gitattributes)"
    );
    let app = fixture_app();
    let (got, stderr) = images_ok(app.path());
    assert_eq!(got, FIXTURE_EXPECTED, "stderr:\n{stderr}");

    let warnings: Vec<&str> = stderr.lines().collect();
    for want in [
        "warning: chart/values.yaml: metrics.image: image \"example/exporter\" in chart values has no tag or digest",
        "warning: charts/packed-0.2.0.tgz!/values.yaml: image: image \"example/packed\" in chart values has no tag or digest",
        "warning: --no-helm: charts dirchart 0.1.0 (chart/), packed 0.2.0 (charts/packed-0.2.0.tgz) are not rendered",
        "warning: templated.yaml: Deployment/templated: spec.template.spec.containers[1].image: templated image \"{{ .Values.image }}\"",
        "warning: templated.yaml: Deployment/templated: spec.template.spec.containers[2].image: invalid image reference \"Example/UPPER:1\": repository name must be lowercase",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(want)),
            "no warning starting with {want:?} in:\n{stderr}"
        );
    }
    // Only those: non-Kubernetes YAML and chart templates are not warned about.
    assert_eq!(warnings.len(), 5, "unexpected stderr:\n{stderr}");
}

#[test]
fn tarball_of_the_app_lists_the_same() {
    let app = fixture_app();
    let out_dir = tempfile::tempdir().unwrap();
    let tgz = out_dir.path().join("app-1.0.tar.gz");
    tgz_dir(app.path(), "app-1.0", &tgz);
    let (got, _) = images_ok(&tgz);
    assert_eq!(got, FIXTURE_EXPECTED);
}

#[test]
fn json_output_has_locations() {
    let app = fixture_app();
    let out = images(&["--json".as_ref(), app.path().as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let list = v.as_array().expect("an array");
    let refs: Vec<&str> = list
        .iter()
        .map(|e| e["reference"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = FIXTURE_EXPECTED.to_vec();
    want.sort_by_key(|s| Reference::parse(s).unwrap());
    assert_eq!(refs, want);
    for e in list {
        // Pod specs, KOTS, collectors and chart values: all required, none asked about.
        assert_eq!(e["kind"], "required", "{e}");
        assert!(e.get("confirmed").is_none(), "{e}");
        let locs = e["locations"].as_array().unwrap();
        assert!(!locs.is_empty(), "{e}");
        for l in locs {
            assert!(l["file"].is_string() && l["path"].is_string(), "{l}");
        }
    }
    let locations = |r: &str| -> Vec<(String, String)> {
        list.iter()
            .find(|e| e["reference"] == r)
            .unwrap_or_else(|| panic!("{r} not listed"))["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["file"].as_str().unwrap().to_string(),
                    l["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let loc = |f: &str, p: &str| (f.to_string(), p.to_string());
    assert_eq!(
        locations("ghcr.io/example/crlf-web:1.0"),
        [loc(
            "crlf.yaml",
            "Deployment/crlf-web: spec.template.spec.containers[0].image"
        )]
    );
    // Merged from an anchor into two containers, plus the anchor's own initContainer.
    assert_eq!(
        locations("registry.example.com/team/migrate:7"),
        [
            loc(
                "anchors.yaml",
                "StatefulSet/anchored: spec.template.spec.initContainers[0].image"
            ),
            loc(
                "anchors.yaml",
                "StatefulSet/anchored: spec.template.spec.containers[0].image"
            ),
        ]
    );
    assert_eq!(
        locations("docker.io/library/alpine:3.19"),
        [
            loc(
                "multi.yaml",
                "Job/multi-job (document 2): spec.template.spec.containers[0].image"
            ),
            loc(
                "support-bundle.yaml",
                "SupportBundle/fixture (document 1): spec.collectors[2].copyFromHost.image"
            ),
        ]
    );
    assert_eq!(
        locations("docker.io/example/from-list-app:2"),
        [loc("list.yaml", "List: items[2].spec.additionalImages[0]")]
    );
    assert_eq!(
        locations("docker.io/example/packed-global:3"),
        [loc("charts/packed-0.2.0.tgz!/values.yaml", "global.image")]
    );
    assert_eq!(
        locations("docker.io/example/sidecar:1.5"),
        [loc("chart/values.yaml", "sidecar.image")]
    );
}

#[test]
fn single_manifest_file() {
    let (got, stderr) = images_ok(&fixtures().join("app/cronjob.yaml"));
    assert_eq!(
        got,
        [
            "docker.io/library/busybox:1.36",
            "ghcr.io/example/backup:2024.1"
        ]
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn missing_path_fails_naming_it() {
    let missing = Path::new("/nonexistent/kots-bundle-app-dir");
    let out = images(&[missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&*missing.to_string_lossy()),
        "{stderr}"
    );
}

#[test]
fn unreadable_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("not-an-archive.bin");
    std::fs::write(&junk, b"neither a tarball nor an airgap file").unwrap();
    let out = images(&[junk.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&*junk.to_string_lossy()) && stderr.contains(".airgap"),
        "{stderr}"
    );
}

/// An `.airgap` archive lists the images it holds, read from its metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airgap_archive_lists_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![
        ImageSpec::new("quay.io/example/one:v1", 1),
        ImageSpec::new("example/two:v2", 2),
    ];
    let path = dir.path().join("app.airgap");
    bundle::archive_of(dir.path(), &specs, &[], &path, Compression::Zstd).await;

    let (got, stderr) = tokio::task::spawn_blocking(move || images_ok(&path))
        .await
        .unwrap();
    assert_eq!(
        got,
        ["docker.io/example/two:v2", "quay.io/example/one:v1"],
        "{stderr}"
    );
}
