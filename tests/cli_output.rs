//! What a person or a script reads: no colour codes when stderr is not a terminal, an error
//! chain that says each cause once, and exit codes as README says.

mod common;

use common::app::bin;

#[test]
fn warnings_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'redis:7'}]}\n",
    )
    .unwrap();
    // A warning logged through tracing (what printed ANSI codes before); the export then
    // fails fast on a closed port.
    let out = bin()
        .args([
            "-v",
            "export",
            "--app-name",
            "x",
            "--exclude-image",
            "nginx:1",
        ])
        .args(["--registry-mirror", "docker.io=127.0.0.1:1", "-o"])
        .arg(dir.path().join("x.airgap"))
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN") && err.contains("--exclude-image nginx:1"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes in {err:?}");
}

#[test]
fn an_error_says_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("images")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn strict_turns_warnings_into_a_failure_before_anything_is_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: '{{ .Values.image }}'}\n  - {name: b, image: 'redis:7'}\n",
    )
    .unwrap();
    let out_file = dir.path().join("x.airgap");
    let export = |strict: bool| {
        let mut c = bin();
        if strict {
            c.arg("--strict");
        }
        c.args(["export", "--app-name", "x"])
            // A closed port: a download attempt fails fast, and says so.
            .args(["--registry-mirror", "docker.io=127.0.0.1:1", "-o"])
            .arg(&out_file)
            .arg(dir.path().join("pod.yaml").parent().unwrap());
        c.output().unwrap()
    };
    let strict = export(true);
    let err = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(1), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("templated"),
        "{err}"
    );
    assert!(
        err.contains("--strict") && err.contains("nothing was downloaded"),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1:1"), "no download was tried: {err}");
    // Without --strict the same warning is shown and the export goes on (to the closed port).
    let lax = export(false);
    let err = String::from_utf8_lossy(&lax.stderr);
    assert!(
        err.contains("templated") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    assert!(!out_file.exists());
}

#[test]
fn completions_and_man_pages_come_from_the_same_definitions_as_help() {
    let bash = bin().args(["completions", "bash"]).output().unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    // bash itself loads it and registers the completion.
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{script}\ncomplete -p kots-bundle"))
        .output()
        .unwrap();
    assert!(
        loaded.status.success() && String::from_utf8_lossy(&loaded.stdout).contains("kots-bundle"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        for sub in ["export", "import", "pull", "images", "inspect", "verify"] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    assert_eq!(
        bin()
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );

    let page = String::from_utf8(bin().arg("man").output().unwrap().stdout).unwrap();
    assert!(
        page.starts_with(".ie") && page.contains(".TH kots-bundle 1"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    assert!(bin()
        .args(["man", "--dir"])
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    let export = std::fs::read_to_string(dir.path().join("kots-bundle-export.1")).unwrap();
    assert!(export.contains("registry\\-mirror"), "{export}");
}

#[test]
fn an_app_with_a_chart_and_no_helm_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("web");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: web\nversion: 1.2.3\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        "image: {repository: quay.io/acme/web, tag: '2.0'}\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/deploy.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: '{{ .Values.image.repository }}:{{ .Values.image.tag }}'}]}\n",
    )
    .unwrap();
    // A PATH without any helm on it.
    let out = bin()
        .env("PATH", "/usr/bin:/bin")
        .arg("images")
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in ["web 1.2.3", "helm", "--helm", "--no-helm"] {
        assert!(err.contains(want), "no {want:?} in {err}");
    }
    let out = bin()
        .env("PATH", "/usr/bin:/bin")
        .args(["images", "--no-helm"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "quay.io/acme/web:2.0\n"
    );
    assert!(err.contains("may") || err.contains("missed"), "{err}");
}
