//! Vendor kustomizations: an upstream that ships its own `kustomization.yaml` deploys what
//! it renders. Its `images:` overrides decide which images are listed, bundled and pushed;
//! its resources, `patches:` (which kustomize 2.0.3 does not know) and namespace are in
//! what `kubectl kustomize overlays/midstream` renders on 1.32 and 1.20 alike, with every
//! image at the private registry; a file under it that it does not list does not deploy.
//! A remote base is refused before anything is fetched, and an app whose base does not
//! render is refused by import with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::app::{bin, export_cmd, import_cmd, ok, Source};
use common::synth::ImageSpec;
use common::TestRegistry;
use serde_json::Value;

const NS: &str = "vendor";

fn kubectl_1_20() -> Option<PathBuf> {
    let p = std::env::var_os("KUBECTL_1_20")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kubectl-1.20/usr/bin/kubectl"));
    p.is_file().then_some(p)
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let to = dir.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, text).unwrap();
    }
}

/// A vendor app: a kustomization over a base, with image overrides (a new tag, a new name),
/// a namespace, a `patches:` entry, a plain resource, and an example it does not list.
fn vendor_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop\n\
                 resources:\n- base\n- extra.yaml\n\
                 images:\n- name: quay.io/org/a\n  newTag: v2\n- name: quay.io/org/old\n  newName: quay.io/org/b\n  newTag: v1\n\
                 patches:\n- path: replicas.yaml\n",
            ),
            ("base/kustomization.yaml", "resources:\n- deploy.yaml\n"),
            (
                "base/deploy.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: \"quay.io/org/a:v1\"}\n      - {name: side, image: quay.io/org/old}\n",
            ),
            (
                "replicas.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 3}\n",
            ),
            (
                "extra.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {k: v}\n",
            ),
            (
                "examples/demo.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: demo}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: demo, image: \"quay.io/org/demo:v9\"}\n",
            ),
        ],
    );
    dir
}

/// `kubectl kustomize DIR` as JSON documents.
fn render(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = ok(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap(),
        &format!("{} kustomize", kubectl.display()),
    );
    serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

#[test]
fn a_vendor_kustomization_decides_what_is_bundled_and_deployed() {
    common::require_tools(&["skopeo", "kubectl"]);
    // Only what the vendor's `images:` overrides name exists at the source: listing,
    // exporting or pushing the images as the base writes them would fail.
    let src = Source::start(vec![ImageSpec::new("a:v2", 11), ImageSpec::new("b:v1", 12)]);
    let app = vendor_app();

    let listed = ok(
        bin().arg("images").arg(app.path()).output().unwrap(),
        "images",
    );
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(listed, ["quay.io/org/a:v2", "quay.io/org/b:v1"]);

    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("shop.airgap");
    ok(
        export_cmd(&src, app.path(), &archive, &["--app-name", "shop"])
            .output()
            .unwrap(),
        "export",
    );

    let dest = TestRegistry::start();
    let dir = work.path().join("shop");
    ok(
        import_cmd(&dest, NS, &archive, &dir).output().unwrap(),
        "import",
    );
    for name in ["a:v2", "b:v1"] {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{NS}/{name}", dest.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} was not pushed");
    }
    // upstream/ keeps the vendor's files as shipped.
    let shipped = std::fs::read_to_string(dir.join("upstream/kustomization.yaml")).unwrap();
    assert!(shipped.contains("newName: quay.io/org/b"), "{shipped}");

    let mut kubectls = vec![PathBuf::from("kubectl")];
    match kubectl_1_20() {
        Some(k) => kubectls.push(k),
        None => eprintln!(
            "kubectl 1.20 missing (scripts/install-deps): checked on the installed kubectl only"
        ),
    }
    let r = format!("{}/{NS}", dest.addr);
    for kubectl in &kubectls {
        let docs = render(kubectl, &dir.join("overlays/midstream"));
        let what = kubectl.display();
        let ids: Vec<String> = docs
            .iter()
            .map(|d| {
                format!(
                    "{}/{}.{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap(),
                    d["metadata"]["namespace"].as_str().unwrap_or("")
                )
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["ConfigMap/extra.shop", "Deployment/web.shop"],
            "{what}: the vendor's resources in its namespace, and nothing it does not list"
        );
        let web = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(web["spec"]["replicas"], 3, "{what}: the vendor's patch");
        let images: Vec<&str> = web["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["image"].as_str().unwrap())
            .collect();
        assert_eq!(
            images,
            [format!("{r}/a:v2"), format!("{r}/b:v1")],
            "{what}: the vendor's overrides, from the private registry"
        );
    }
}

#[test]
fn a_remote_base_is_refused_before_anything_is_fetched() {
    let app = tempfile::tempdir().unwrap();
    write(
        app.path(),
        &[(
            "deploy/kustomization.yaml",
            "resources:\n- github.com/example/app//config?ref=v1\n",
        )],
    );
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("x.airgap");
    let out = bin()
        .arg("export")
        .arg(app.path())
        .args(["--app-name", "x", "-o"])
        .arg(&archive)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("deploy/kustomization.yaml") && stderr.contains("remote base"),
        "{stderr}"
    );
    assert!(!archive.exists());
}

#[test]
fn import_refuses_an_app_whose_base_does_not_render() {
    common::require_tools(&["skopeo", "kubectl"]);
    let src = Source::start(vec![ImageSpec::new("a:v1", 21)]);
    // The same ConfigMap in two files: kustomize refuses the base ("already registered id").
    let app = tempfile::tempdir().unwrap();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n";
    write(
        app.path(),
        &[
            ("one.yaml", cm),
            ("two.yaml", cm),
            (
                "pod.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: \"quay.io/org/a:v1\"}\n",
            ),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("dup.airgap");
    ok(
        export_cmd(&src, app.path(), &archive, &["--app-name", "dup"])
            .output()
            .unwrap(),
        "export",
    );
    let dest = TestRegistry::start();
    let dir = work.path().join("dup");
    let out = import_cmd(&dest, NS, &archive, &dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not render"), "{stderr}");
    assert!(!dir.exists(), "nothing is left of a refused app directory");
}

#[test]
fn a_kots_app_with_a_kustomization_is_templated_first_and_keeps_its_config() {
    common::require_tools(&["kubectl"]);
    let app = tempfile::tempdir().unwrap();
    write(
        app.path(),
        &[
            (
                "kustomization.yaml",
                "namePrefix: v-\nresources: [config.yaml, settings.yaml]\n",
            ),
            (
                "config.yaml",
                "apiVersion: kots.io/v1beta1\nkind: Config\nmetadata: {name: c}\nspec:\n  groups:\n  - name: g\n    items:\n    - {name: color, type: text, default: blue}\n",
            ),
            (
                "settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  color: '{{repl ConfigOption \"color\" }}'\n",
            ),
        ],
    );
    let out = bin().arg("template").arg(app.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = ok(out, "template");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 1, "{text}");
    assert_eq!(docs[0]["metadata"]["name"], "v-settings", "{text}");
    assert_eq!(docs[0]["data"]["color"], "blue", "{text}");
    assert!(!stderr.contains("second kots.io Config"), "{stderr}");
}
