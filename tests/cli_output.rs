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
        .args(["export", "--app-name", "x", "--exclude-image", "nginx:1"])
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
