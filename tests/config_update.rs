//! Config across updates: values generated at install (`RandomString`) are saved in the app
//! directory (0600) and reused, so a generated password never changes under a running app;
//! `--config-values` on an update replaces the answers it names and keeps the rest; a
//! required item without an answer stops the import before anything is pushed.

mod common;

use std::path::Path;
use std::process::Command;

use common::app::{bin, ok};
use common::TestRegistry;
use serde::Deserialize as _;
use serde_yaml_ng::Value;

const CONFIG: &str = r#"apiVersion: kots.io/v1beta1
kind: Config
metadata: {name: shop}
spec:
  groups:
  - name: main
    items:
    - {name: host, type: text, required: true}
    - {name: replicas, type: text, default: "1"}
    - {name: password, type: password, hidden: true, default: 'repl{{ RandomString 20 }}'}
"#;

const APP: &str = r#"apiVersion: kots.io/v1beta1
kind: Application
metadata: {name: shop}
spec: {title: Shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  host: 'repl{{ ConfigOption "host" }}'
  replicas: '{{repl ConfigOption "replicas" }}'
  password: 'repl{{ ConfigOption "password" }}'
"#;

fn values(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata: {name: v}\nspec:\n  values:\n",
    );
    for (k, v) in pairs {
        s.push_str(&format!("    {k}: {{value: \"{v}\"}}\n"));
    }
    s
}

fn import(
    archive: &Path,
    reg: &TestRegistry,
    dir: &Path,
    values: Option<&Path>,
) -> std::process::Output {
    let mut c = bin();
    c.arg("import")
        .arg(archive)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(dir);
    if let Some(v) = values {
        c.arg("--config-values").arg(v);
    }
    c.output().unwrap()
}

/// The ConfigMap as `kubectl kustomize overlays/midstream` renders it.
fn settings(dir: &Path) -> Value {
    let out = ok(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(dir.join("overlays/midstream"))
            .output()
            .unwrap(),
        "kubectl kustomize",
    );
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    docs.into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the ConfigMap deploys")["data"]
        .clone()
}

#[test]
fn generated_values_survive_updates_and_answers_merge() {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("shop");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("config.yaml"), CONFIG).unwrap();
    std::fs::write(app.join("app.yaml"), APP).unwrap();
    let archive = work.path().join("shop.airgap");
    ok(
        bin()
            .arg("export")
            .arg(&app)
            .arg("-o")
            .arg(&archive)
            .output()
            .unwrap(),
        "export",
    );
    let reg = TestRegistry::start();
    let dir = work.path().join("installed");

    // No answer for the required item: refused before anything is written.
    let res = import(&archive, &reg, &dir, None);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("host") && err.contains("--config-values"),
        "{err}"
    );
    assert!(!dir.exists(), "a refused import leaves no app directory");

    let v1 = work.path().join("v1.yaml");
    std::fs::write(&v1, values(&[("host", "db.internal")])).unwrap();
    ok(import(&archive, &reg, &dir, Some(&v1)), "first import");
    let first = settings(&dir);
    assert_eq!(first["host"], "db.internal");
    assert_eq!(first["replicas"], "1");
    let password = first["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 20, "{password:?}");
    let saved = dir.join(".kots-bundle/config-values.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "saved config values hold passwords");
    }

    // An update with no answers: the same values, the same generated password.
    ok(import(&archive, &reg, &dir, None), "update without answers");
    assert_eq!(settings(&dir), first);

    // An update naming one answer: it changes, the others stay.
    let v2 = work.path().join("v2.yaml");
    std::fs::write(&v2, values(&[("replicas", "3")])).unwrap();
    ok(
        import(&archive, &reg, &dir, Some(&v2)),
        "update with one answer",
    );
    let second = settings(&dir);
    assert_eq!(second["replicas"], "3");
    assert_eq!(second["host"], "db.internal");
    assert_eq!(second["password"], password.as_str());

    // `template` of the app directory renders with what it saved.
    let text = ok(
        bin().arg("template").arg(&dir).output().unwrap(),
        "template",
    );
    assert!(
        text.contains(&password) && text.contains("db.internal"),
        "{text}"
    );
}
