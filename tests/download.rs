//! `import` stores the app directory in the private registry and `download` brings it back:
//! an app directory deleted after import is recovered on another path, and an update
//! imported into it keeps the operator's edits. The stored copy holds no secret: password
//! config values and base's Secrets are left out (checked in the layer with `tar`), and the
//! update asks for the withheld value instead of generating a new one. The stored artifact
//! is read with skopeo, independently of our client.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::app::{bin, ok, Source};
use common::synth::ImageSpec;
use common::TestRegistry;

const CONFIG: &str = r#"apiVersion: kots.io/v1beta1
kind: Config
metadata: {name: shop}
spec:
  groups:
  - name: main
    items:
    - {name: password, type: password, hidden: true, default: 'repl{{ RandomString 20 }}'}
"#;

fn app_files(dir: &Path, version: &str, b_tag: &str) {
    std::fs::write(dir.join("config.yaml"), CONFIG).unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        format!(
            "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {{name: shop}}\nspec: {{title: Shop, version: \"{version}\"}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: settings}}\nstringData:\n  password: 'repl{{{{ ConfigOption \"password\" }}}}'\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: shop}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: m, image: quay.io/org/multi:1}}\n      - {{name: b, image: \"quay.io/org/b:{b_tag}\"}}\n"
        ),
    )
    .unwrap();
}

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

fn import(reg: &TestRegistry, archive: &Path, dir: &Path) -> Output {
    import_with(reg, archive, dir, &[])
}

fn import_with(reg: &TestRegistry, archive: &Path, dir: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("import")
        .arg(archive)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

/// Every file of the stored app directory's layer, as `tar` reads it.
fn stored_layer_text(reg: &TestRegistry, work: &Path) -> String {
    let out = work.join("stored-artifact");
    ok(
        Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{}/ns/shop-app:latest", reg.addr))
            .arg(format!("dir:{}", out.display()))
            .output()
            .unwrap(),
        "skopeo copy of the app artifact",
    );
    let mut text = String::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let listed = Command::new("tar").arg("-tzf").arg(&p).output().unwrap();
        if !listed.status.success() {
            continue; // the manifest, the config, the version file
        }
        let all = Command::new("tar").arg("-xzOf").arg(&p).output().unwrap();
        text.push_str(&String::from_utf8_lossy(&all.stdout));
    }
    std::fs::remove_dir_all(&out).unwrap();
    assert!(text.contains("kind: Deployment"), "the layer was read");
    text
}

fn download(reg: &TestRegistry, dest: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("download")
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .args(["--app", "shop", "--dest"])
        .arg(dest)
        .args(extra)
        .output()
        .unwrap()
}

fn kustomize(dir: &Path) -> String {
    ok(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap(),
        "kubectl kustomize",
    )
}

/// The generated password as the midstream renders it.
fn password(dir: &Path) -> String {
    let out = kustomize(&dir.join("overlays/midstream"));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password in:\n{out}"))
        .trim_matches(['"', '\''])
        .to_string()
}

#[test]
fn an_app_directory_removed_after_import_comes_back_and_updates_keep_its_edits() {
    common::require_tools(&["skopeo", "kubectl"]);
    let mut src = Source::start(Source::default_specs());
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let v1 = work.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    app_files(&v1, "1.0.0", "v1");
    let archive1 = work.path().join("shop-1.airgap");
    export(&src, &v1, &archive1);

    let dir = work.path().join("shop");
    ok(import(&reg, &archive1, &dir), "import v1");
    let generated = password(&dir);
    assert_eq!(generated.len(), 20, "{generated}");

    // The operator's edits: a key in midstream, a file beside it, their downstream overlay.
    let mid = dir.join("overlays/midstream/kustomization.yaml");
    let mut text = std::fs::read_to_string(&mid).unwrap();
    text.push_str("commonLabels:\n  team: payments\n");
    std::fs::write(&mid, &text).unwrap();
    std::fs::write(
        dir.join("overlays/midstream/notes.txt"),
        "ask payments before upgrading\n",
    )
    .unwrap();
    let down = dir.join("overlays/downstream/kustomization.yaml");
    let down_text = std::fs::read_to_string(&down).unwrap() + "# operator note\n";
    std::fs::write(&down, &down_text).unwrap();
    // Stored again by a re-import (nothing else changes).
    ok(import(&reg, &archive1, &dir), "re-import v1");

    // The artifact, as skopeo sees it: version tag and latest, our artifact type.
    for tag in ["1.0.0", "latest"] {
        let raw = ok(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}/ns/shop-app:{tag}", reg.addr))
                .output()
                .unwrap(),
            "skopeo inspect the app artifact",
        );
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(m["artifactType"], "application/vnd.kots-bundle.app.v1");
        assert_eq!(
            m["layers"][0]["mediaType"],
            "application/vnd.kots-bundle.app.layer.v1.tar+gzip"
        );
    }

    // The registry's copy holds no secret of the app's.
    let stored = stored_layer_text(&reg, work.path());
    assert!(
        !stored.contains(&generated),
        "the password is in the registry's copy"
    );
    assert!(
        stored.contains("kots-bundle.io/withheld: password"),
        "{stored}"
    );

    // The workstation is gone.
    std::fs::remove_dir_all(&dir).unwrap();

    // A non-empty destination is refused, and left as it was.
    let occupied = work.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("mine.txt"), "keep").unwrap();
    let out = download(&reg, &occupied, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);

    let back = work.path().join("elsewhere/shop");
    let out = download(&reg, &back, &[]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "download");
    assert!(
        said.contains("the values of password are not in it") && said.contains("--config-values"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("overlays/midstream/kustomization.yaml")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read_to_string(back.join("overlays/downstream/kustomization.yaml")).unwrap(),
        down_text
    );
    assert!(back.join("overlays/midstream/notes.txt").exists());
    // Renders as it is, without the Secret it was not given.
    let rendered = kustomize(&back.join("overlays/downstream"));
    assert!(!rendered.contains("kind: Secret"), "{rendered}");
    assert!(rendered.contains("team: payments"), "{rendered}");
    assert!(
        rendered.contains(&format!("{}/ns/b:v1", reg.addr)),
        "{rendered}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(back.join(".kots-bundle/config-values.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "config values readable by others: {mode:o}"
        );
        // ...and the rest keeps its ordinary mode (compared with a file the test wrote).
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode_of(&back.join("upstream/app.yaml")),
            mode_of(&v1.join("app.yaml")),
            "upstream/app.yaml"
        );
    }
    // Nothing half-built left beside it.
    let siblings: Vec<_> = std::fs::read_dir(work.path().join("elsewhere"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, [std::ffi::OsString::from("shop")]);

    // Version 2 moves b to a new image; imported into the downloaded directory.
    src.add(ImageSpec::new("b:v2", 33));
    let v2 = work.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    app_files(&v2, "2.0.0", "v2");
    let archive2 = work.path().join("shop-2.airgap");
    export(&src, &v2, &archive2);
    // Without the withheld value the update stops, naming it, rather than generating a new
    // password; nothing of the directory changes.
    let before = std::fs::read_link(back.join(".kots-bundle/current")).unwrap();
    let out = import(&reg, &archive2, &back);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("password") && said.contains("left out of the registry's copy"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_link(back.join(".kots-bundle/current")).unwrap(),
        before
    );
    // The operator gives it, as the cluster has it.
    let answers = work.path().join("answers.yaml");
    std::fs::write(
        &answers,
        format!(
            "apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata: {{name: shop}}\nspec:\n  values:\n    password: {{value: \"{generated}\"}}\n"
        ),
    )
    .unwrap();
    ok(
        import_with(
            &reg,
            &archive2,
            &back,
            &["--config-values", answers.to_str().unwrap()],
        ),
        "import v2 into the downloaded directory",
    );

    assert_eq!(
        std::fs::read_to_string(back.join("overlays/midstream/kustomization.yaml")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read_to_string(back.join("overlays/downstream/kustomization.yaml")).unwrap(),
        down_text
    );
    assert_eq!(password(&back), generated, "the generated password changed");
    let rendered = kustomize(&back.join("overlays/downstream"));
    assert!(rendered.contains("team: payments"), "{rendered}");
    assert!(
        rendered.contains(&format!("{}/ns/b:v2", reg.addr)),
        "{rendered}"
    );
    assert!(!rendered.contains("b:v1"), "{rendered}");

    // The stored copy follows: latest is 2.0.0, and 1.0.0 is still there.
    let v2_back = work.path().join("v2-back");
    ok(download(&reg, &v2_back, &[]), "download latest");
    let state = std::fs::read_to_string(v2_back.join(".kots-bundle/state.json")).unwrap();
    assert!(state.contains("\"2.0.0\""), "{state}");
    let v1_back = work.path().join("v1-back");
    ok(
        download(&reg, &v1_back, &["--version", "1.0.0"]),
        "download 1.0.0",
    );
    let state = std::fs::read_to_string(v1_back.join(".kots-bundle/state.json")).unwrap();
    assert!(state.contains("\"1.0.0\""), "{state}");
}

#[test]
fn download_refuses_what_import_did_not_store() {
    common::require_tools(&["skopeo"]);
    let src = Source::start(Source::default_specs());
    let reg = TestRegistry::start();
    // An ordinary image where the app's artifact would be.
    common::synth::skopeo_push(
        src.layout.path(),
        "a:v1",
        &format!("{}/ns/shop-app:latest", reg.addr),
    );
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("shop");
    let out = download(&reg, &dest, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not an app directory stored by kots-bundle"),
        "{stderr}"
    );
    assert!(!dest.exists());
    let out = download(&reg, &dest, &["--version", "9.9"]);
    assert!(!out.status.success());
    assert!(!dest.exists());
}

#[test]
fn import_with_no_store_app_stores_nothing() {
    common::require_tools(&["skopeo"]);
    let src = Source::start(Source::default_specs());
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let v1 = work.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    app_files(&v1, "1.0.0", "v1");
    let archive = work.path().join("shop.airgap");
    export(&src, &v1, &archive);
    let dir = work.path().join("shop");
    ok(
        bin()
            .arg("import")
            .arg(&archive)
            .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
            .arg("--dest")
            .arg(&dir)
            .arg("--no-store-app")
            .output()
            .unwrap(),
        "import --no-store-app",
    );
    let inspect = |r: &str| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{r}", reg.addr))
            .output()
            .unwrap()
    };
    assert!(
        inspect("ns/b:v1").status.success(),
        "the images were pushed"
    );
    assert!(!inspect("ns/shop-app:latest").status.success());
    let out = download(&reg, &work.path().join("back"), &[]);
    assert!(!out.status.success());
}
