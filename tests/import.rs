//! `kots-bundle import` end to end: an exported app pushed to a TLS + htpasswd registry, the
//! app directory rendered by kubectl 1.32 and 1.20, digests checked with skopeo, re-import
//! and update behaviour, and failures that must leave nothing half done.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::app::{app_dir, bin, ok, output_with_stdin, rendered_images, Source};
use common::synth::{self, ImageSpec};
use common::TestRegistry;

const USER: &str = "importer";
const PASS: &str = "s3cret-Pa55word";

fn export(src: &Source, app: &Path, out: &Path) {
    ok(
        bin()
            .arg("export")
            .arg(app)
            .arg("-o")
            .arg(out)
            .args(["--registry-mirror", &src.mirror()])
            .output()
            .unwrap(),
        "export",
    );
}

fn import(
    dest: &TestRegistry,
    archive: &Path,
    dir: &Path,
    password: &str,
    extra: &[&str],
) -> Output {
    import_with(bin(), dest, archive, dir, password, extra)
}

/// [`import`] as `cmd` (the binary with an environment of its own).
fn import_with(
    mut cmd: Command,
    dest: &TestRegistry,
    archive: &Path,
    dir: &Path,
    password: &str,
    extra: &[&str],
) -> Output {
    output_with_stdin(
        cmd.arg("import")
            .arg(archive)
            .args([
                "--registry-endpoint",
                &dest.addr,
                "--image-namespace",
                "myapp",
            ])
            .args(["--registry-username", USER, "--registry-password-stdin"])
            .arg("--registry-ca")
            .arg(dest.ca_pem.as_ref().expect("TLS registry"))
            .arg("--dest")
            .arg(dir)
            .args(extra),
        &format!("{password}\n"),
    )
}

/// kubectl binaries to render with: the installed one (kustomize v5) and 1.20 (kustomize 2.0.3).
fn kubectls() -> Vec<PathBuf> {
    let old = std::env::var_os("KUBECTL_1_20")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kubectl-1.20/usr/bin/kubectl"));
    assert!(
        old.exists(),
        "kubectl 1.20 not found at {}: run scripts/install-kubectl-1.20 (scripts/test does)",
        old.display()
    );
    vec![PathBuf::from("kubectl"), old]
}

fn skopeo_digest(dest: &TestRegistry, r: &str) -> String {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASS}"),
        ])
        .arg(format!("docker://{}/{r}", dest.addr))
        .output()
        .unwrap();
    synth::sha256(ok(out, r).as_bytes())
}

struct World {
    src: Source,
    dest: TestRegistry,
    work: tempfile::TempDir,
    archive: PathBuf,
}

fn world() -> World {
    let src = Source::start(Source::default_specs());
    let dest = TestRegistry::start_tls_htpasswd(USER, PASS);
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.airgap");
    export(&src, app.path(), &archive);
    World {
        src,
        dest,
        work,
        archive,
    }
}

#[test]
fn import_pushes_everything_and_the_overlay_renders_on_old_and_new_kubectl() {
    let w = world();
    let dir = w.work.path().join("app");
    let out = import(&w.dest, &w.archive, &dir, PASS, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains(PASS),
        "the password never appears in output"
    );

    let a = w.src.image("a:v1").digest.clone();
    let expected = {
        let mut v = vec![
            format!("{}/myapp/a@{a}", w.dest.addr),
            format!("{}/myapp/b:v1", w.dest.addr),
            format!("{}/myapp/multi:1", w.dest.addr),
        ];
        v.sort();
        v
    };
    for kubectl in kubectls() {
        assert_eq!(
            rendered_images(&kubectl, &dir.join("overlays/midstream")),
            expected,
            "{}",
            kubectl.display()
        );
        assert_eq!(
            rendered_images(&kubectl, &dir.join("overlays/downstream")),
            expected
        );
    }

    // What was pushed is byte for byte the source: same manifest digests (index included).
    assert_eq!(
        skopeo_digest(&w.dest, "myapp/multi:1"),
        w.src.image("multi:1").digest
    );
    assert_eq!(skopeo_digest(&w.dest, &format!("myapp/a@{a}")), a);
    assert_eq!(
        skopeo_digest(&w.dest, "myapp/b:v1"),
        w.src.image("b:v1").digest
    );
    assert!(dir.join("upstream/app.yaml").exists());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".kots-bundle/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["images"].as_array().unwrap().len(), 3);
    for entry in walk(&dir) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(PASS),
            "{} holds the password",
            entry.display()
        );
    }

    // A second import pushes nothing.
    let before = w.dest.count_writes();
    let out = import(&w.dest, &w.archive, &dir, PASS, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        w.dest.count_writes(),
        before,
        "re-import wrote to the registry"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn update_keeps_operator_edits_and_pushes_only_the_new_image() {
    let mut w = world();
    let dir = w.work.path().join("app");
    let out = import(&w.dest, &w.archive, &dir, PASS, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The operator's edits: an extra key in midstream, their own downstream overlay.
    let mid = dir.join("overlays/midstream/kustomization.yaml");
    let mut text = std::fs::read_to_string(&mid).unwrap();
    text.push_str(
        "# payments team: labels for the cost report\ncommonLabels:\n  team: payments # owner\n",
    );
    std::fs::write(&mid, &text).unwrap();
    let down = dir.join("overlays/downstream/kustomization.yaml");
    let down_text = std::fs::read_to_string(&down).unwrap() + "# operator note\n";
    std::fs::write(&down, &down_text).unwrap();

    // Version 2 of the app moves b to a new image.
    w.src.add(ImageSpec::new("b:v2", 33));
    let app2 = tempfile::tempdir().unwrap();
    let a = w.src.image("a:v1").digest.clone();
    std::fs::write(
        app2.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      initContainers:\n      - {{name: init, image: \"quay.io/org/a@{a}\"}}\n      containers:\n      - {{name: m, image: quay.io/org/multi:1}}\n      - {{name: b, image: quay.io/org/b:v2}}\n"
        ),
    )
    .unwrap();
    let archive2 = w.work.path().join("app-v2.airgap");
    export(&w.src, app2.path(), &archive2);

    let before = w.dest.count_image_writes();
    let out = import(&w.dest, &archive2, &dir, PASS, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let writes = w.dest.count_image_writes() - before;
    // b:v2 has its own layer, config and manifest; the shared base and everything else exist.
    assert!(
        writes > 0 && writes <= 4,
        "only the new image is pushed, saw {writes} writes"
    );

    let mid_after = std::fs::read_to_string(&mid).unwrap();
    assert_eq!(
        mid_after, text,
        "the operator's midstream kustomization, keys and comments, as they wrote it"
    );
    assert_eq!(
        std::fs::read_to_string(&down).unwrap(),
        down_text,
        "downstream untouched"
    );
    let rendered = rendered_images(Path::new("kubectl"), &dir.join("overlays/downstream"));
    assert!(
        rendered.contains(&format!("{}/myapp/b:v2", w.dest.addr)),
        "{rendered:?}"
    );
    assert!(
        !rendered.iter().any(|i| i.ends_with("b:v1")),
        "{rendered:?}"
    );
    let upstream = std::fs::read_to_string(dir.join("upstream/app.yaml")).unwrap();
    assert!(upstream.contains("b:v2"));
}

/// `--dest app`, relative to where the operator stands: the overlay check runs kubectl from a
/// directory of its own, so the app directory must reach it as an absolute path.
#[test]
fn a_relative_app_directory_is_written_and_checked_where_the_operator_is() {
    let w = world();
    let mut cmd = bin();
    cmd.current_dir(w.work.path());
    let out = import_with(cmd, &w.dest, &w.archive, Path::new("app"), PASS, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let midstream = w.work.path().join("app/overlays/midstream");
    assert!(midstream.join("kustomization.yaml").is_file());
    for kubectl in kubectls() {
        let images = rendered_images(&kubectl, &midstream);
        assert!(
            !images.is_empty() && images.iter().all(|i| i.starts_with(&w.dest.addr)),
            "{}: {images:?}",
            kubectl.display()
        );
    }
}

#[test]
fn wrong_password_fails_before_any_push() {
    let w = world();
    let dir = w.work.path().join("app");
    let wrong = "not-the-password";
    let out = import(&w.dest, &w.archive, &dir, wrong, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.to_lowercase().contains("credentials"),
        "says what is wrong: {stderr}"
    );
    assert!(
        stderr.contains(&w.dest.addr),
        "names the registry: {stderr}"
    );
    assert!(
        !stderr.contains(wrong),
        "never echoes the password: {stderr}"
    );
    assert_eq!(w.dest.count_writes(), 0, "nothing pushed");
    assert!(!dir.exists(), "no app directory written");
}

#[test]
fn an_import_failing_midway_writes_no_overlay() {
    let w = world();
    // Corrupt the last blob's content in a copy of the archive: some images push, one fails.
    let bad = w.work.path().join("bad.airgap");
    let mut data = std::fs::read(&w.archive).unwrap();
    let n = data.len();
    // The last entries of a zstd bundle are blobs; flipping inside the last data frame breaks one.
    data[n * 9 / 10] ^= 0x5a;
    std::fs::write(&bad, data).unwrap();
    let dir = w.work.path().join("app");
    let out = import(&w.dest, &bad, &dir, PASS, &[]);
    assert!(!out.status.success(), "a corrupt blob must fail the import");
    assert!(
        !dir.join("overlays/midstream").exists(),
        "no overlay may point at images that were never pushed"
    );
}

/// Secrets stay secret: a password flag is refused outright, and a debug-level run (`-vv`, HTTP
/// traffic logged) shows neither the password nor the Basic header made from it.
#[test]
fn passwords_are_refused_on_the_command_line_and_never_logged() {
    let w = world();
    let dir = w.work.path().join("app");
    let out = bin()
        .arg("import")
        .arg(&w.archive)
        .args([
            "--registry-endpoint",
            &w.dest.addr,
            "--image-namespace",
            "myapp",
        ])
        .args(["--registry-username", USER, "--registry-password", PASS])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused flag is a command-line error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--registry-password-stdin"), "{err}");
    assert!(!err.contains(PASS), "{err}");
    assert!(!dir.exists());

    let out = import(&w.dest, &w.archive, &dir, PASS, &["-vv"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("DEBUG"), "debug logging was on");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    assert!(
        !err.contains(PASS) && !err.contains(&basic),
        "a secret in the debug log"
    );
}

/// The last plain progress line, as (done, total).
fn final_progress(stderr: &str) -> Option<(String, String)> {
    let line = stderr
        .lines()
        .rfind(|l| l.ends_with(')') && l.contains("% ("))?;
    let inner = line.split_once(" (")?.1.strip_suffix(')')?;
    let (done, total) = inner.split_once(" of ")?;
    assert!(line.starts_with("100% "), "progress ends at 100%: {line}");
    Some((done.to_string(), total.to_string()))
}

/// Progress counts only bytes that are sent: each blob once, not the mounts of the shared
/// base layer, and nothing on a re-import where every image is there; export's total is
/// the same distinct blobs, and neither passes its total.
#[test]
fn progress_totals_count_only_bytes_to_send() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("app.airgap");
    let out = bin()
        .arg("export")
        .arg(app.path())
        .arg("-o")
        .arg(&archive)
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    let (done, exported) = final_progress(&e).expect("export prints progress");
    assert_eq!(done, exported, "export ends exactly at its total:\n{e}");

    let dest = TestRegistry::start_tls_htpasswd(USER, PASS);
    let dir = work.path().join("app");
    let out = import(&dest, &archive, &dir, PASS, &[]);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    let (done, total) = final_progress(&e).expect("import prints progress");
    assert_eq!(done, total, "import ends exactly at its total:\n{e}");
    assert_eq!(
        total, exported,
        "each blob sent once, mounts not counted:\n{e}"
    );
    assert!(
        !e.contains(" 0 mounted"),
        "the shared base layer is mounted:\n{e}"
    );

    let out = import(&dest, &archive, &dir, PASS, &[]);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{e}");
    assert_eq!(final_progress(&e), None, "nothing to send:\n{e}");
}

/// A re-import that changes nothing does not build the overlay again (kustomize takes
/// seconds on an app of hundreds of images); with another kustomize it does.
#[test]
fn a_reimport_that_changes_nothing_does_not_build_the_overlay_again() {
    let w = world();
    let dir = w.work.path().join("app");
    // The real kubectl behind a wrapper that notes each build.
    let real = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "kubectl on PATH");
    let log = w.work.path().join("builds.log");
    let wrapper = w.work.path().join("kubectl");
    let write_wrapper = |extra: &str| {
        let script = format!(
            "#!/bin/sh\n{extra}echo \"$@\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        );
        std::fs::write(&wrapper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let builds = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("kustomize"))
            .count()
    };
    let run = || {
        let mut cmd = bin();
        cmd.env("KOTS_BUNDLE_KUBECTL", &wrapper);
        let out = import_with(cmd, &w.dest, &w.archive, &dir, PASS, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    write_wrapper("");
    run();
    assert_eq!(builds(), 1, "the first import builds the overlay");
    run();
    assert_eq!(builds(), 1, "the same release again is not built again");
    write_wrapper("# another kustomize\n");
    run();
    assert_eq!(builds(), 2, "another tool builds it again");
}
