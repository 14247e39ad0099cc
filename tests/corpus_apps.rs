//! The real KOTS apps of `../shared/corpus` and `../shared/corpus-helm`, end to end: export
//! (their images served by a loopback registry under the names they use, through
//! `--registry-mirror`), import with answers for their required config items, and the
//! midstream rendered by kubectl 1.32 and 1.20: no template delimiter anywhere, every Secret's
//! data valid base64, excluded documents absent, charts' workloads present, every image from
//! the private registry (and there: skopeo). `template` prints the same documents.
//!
//! Skips with a message when the corpus folders, helm (for chart apps) or kubectl 1.20 are
//! absent; `scripts/install-deps` installs the tools.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::app::{bin, ok};
use common::synth::{self, ImageSpec};
use common::TestRegistry;
use kots_bundle::reference::Reference;
use serde::Deserialize as _;
use serde_yaml_ng::Value;

const NS: &str = "corpus";

fn shared(folder: &str, app: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(folder)
        .join(app);
    if p.join("manifests").is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

fn helm() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KOTS_BUNDLE_HELM").map(PathBuf::from),
        Some(PathBuf::from("/opt/helm-4/helm")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipping chart app: no helm (scripts/install-helm installs one)");
    }
    found
}

fn kubectls() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("kubectl")];
    let old = PathBuf::from(
        std::env::var("KUBECTL_1_20")
            .unwrap_or_else(|_| "/opt/kubectl-1.20/usr/bin/kubectl".into()),
    );
    if old.is_file() {
        v.push(old);
    } else {
        eprintln!(
            "kubectl 1.20 is absent: checking with today's kubectl only (scripts/install-deps)"
        );
    }
    v
}

/// EXPECTED.txt: every image (required, then after `# non-podspec` the optional ones).
fn expected(app: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(app.join("EXPECTED.txt")).unwrap();
    let (mut required, mut optional) = (BTreeSet::new(), BTreeSet::new());
    let mut past = false;
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with("# non-podspec") {
            past = true;
        } else if !l.starts_with('#') {
            if past {
                optional.insert(l.to_string());
            } else {
                required.insert(l.to_string());
            }
        }
    }
    (required, optional)
}

/// A loopback registry serving a small synthetic image under each name the app uses
/// (`HOST/REPO:TAG` as `127.0.0.1:P/HOST/REPO:TAG`), and the mirror flags that point there.
struct Source {
    // Kept alive (the registry stops when dropped).
    _reg: TestRegistry,
    _layout: tempfile::TempDir,
    mirrors: Vec<String>,
}

fn source_for(images: &BTreeSet<String>) -> Source {
    common::require_tools(&["skopeo"]);
    let reg = TestRegistry::start();
    let layout = tempfile::tempdir().unwrap();
    let specs: Vec<ImageSpec> = (0..images.len())
        .map(|i| ImageSpec::new(&format!("img-{i}:t"), 100 + i as u64))
        .collect();
    synth::write_layout(layout.path(), &specs);
    let mut hosts = BTreeSet::new();
    for (i, image) in images.iter().enumerate() {
        let r = Reference::parse(image).unwrap();
        assert!(r.digest().is_none(), "corpus app pins {image} by digest");
        hosts.insert(r.registry().to_string());
        synth::skopeo_push(
            layout.path(),
            &format!("img-{i}:t"),
            &format!(
                "{}/{}/{}:{}",
                reg.addr,
                r.registry(),
                r.repository(),
                r.tag().unwrap_or("latest")
            ),
        );
    }
    let mirrors = hosts
        .iter()
        .map(|h| format!("{h}={}/{h}", reg.addr))
        .collect();
    Source {
        _reg: reg,
        _layout: layout,
        mirrors,
    }
}

/// `kind: ConfigValues` answering every required item that has no default (the first
/// option of a select, else "1", which every corpus item accepts).
fn answers(manifests: &Path, extra: &[(&str, &str)]) -> String {
    let mut values: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for entry in walkdir::WalkDir::new(manifests) {
        let entry = entry.unwrap();
        let path = entry.path();
        if !path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let Ok(v) = Value::deserialize(doc) else {
                break;
            };
            if v["kind"] != "Config" {
                continue;
            }
            let config = kots_bundle::render::config::Config::from_document(&v).unwrap();
            for item in config.items() {
                if item.required
                    && item.default.is_empty()
                    && item.value.is_empty()
                    && !values.contains_key(&item.name)
                {
                    let answer = item
                        .items
                        .first()
                        .map_or("1".to_string(), |c| c.name.clone());
                    values.insert(item.name.clone(), answer);
                }
            }
        }
    }
    let mut s = String::from("apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata: {name: answers}\nspec:\n  values:\n");
    for (k, v) in &values {
        s.push_str(&format!("    {k}: {{value: \"{v}\"}}\n"));
    }
    if values.is_empty() {
        s = "apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata: {name: answers}\nspec: {values: {}}\n".into();
    }
    s
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Every string under a key named `image` (pod specs and custom resources alike).
fn image_strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if k.as_str() == Some("image") {
                    if let Some(s) = child.as_str() {
                        out.insert(s.to_string());
                    }
                }
                image_strings(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| image_strings(c, out)),
        _ => {}
    }
}

fn check_rendered(what: &str, text: &str, dest: &str) -> Vec<Value> {
    assert!(
        !text.contains("repl{{") && !text.contains("{{repl"),
        "{what}: template delimiters left:\n{text}"
    );
    let docs = documents(text);
    assert!(!docs.is_empty(), "{what}: nothing rendered");
    use base64::Engine as _;
    for d in &docs {
        let annotations = &d["metadata"]["annotations"];
        assert!(
            annotations["kots.io/exclude"] != "true" && annotations["kots.io/when"] != "false",
            "{what}: an excluded document deploys: {d:?}"
        );
        if d["kind"] == "Secret" {
            if let Some(data) = d["data"].as_mapping() {
                for (k, v) in data {
                    let s = v.as_str().unwrap_or("");
                    // As Kubernetes decodes it (Go's base64 skips line breaks: folded
                    // scalars such as postgres-snapshots' `>-` blocks keep one).
                    let s: String = s.chars().filter(|c| *c != '\n' && *c != '\r').collect();
                    assert!(
                        base64::engine::general_purpose::STANDARD.decode(&s).is_ok(),
                        "{what}: Secret {:?} data {k:?} is not base64: {s:?}",
                        d["metadata"]["name"]
                    );
                }
            }
        }
    }
    let mut images = BTreeSet::new();
    docs.iter().for_each(|d| image_strings(d, &mut images));
    for i in &images {
        assert!(
            i.starts_with(&format!("{dest}/{NS}/")),
            "{what}: image {i} is not from the private registry"
        );
    }
    docs
}

/// `extra`: config answers beyond the required ones (to turn on optional parts).
fn run_app(folder: &str, name: &str, with_helm: bool, extra: &[(&str, &str)]) {
    let Some(app) = shared(folder, name) else {
        return;
    };
    let helm = if with_helm {
        match helm() {
            Some(h) => Some(h),
            None => return,
        }
    } else {
        None
    };
    let (required, optional) = expected(&app);
    let all: BTreeSet<String> = required.union(&optional).cloned().collect();
    let src = source_for(&all);
    let work = tempfile::tempdir().unwrap();
    let manifests = work.path().join(name).join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    for entry in walkdir::WalkDir::new(app.join("manifests")) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(app.join("manifests")).unwrap();
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(manifests.join(rel)).unwrap();
        } else {
            std::fs::copy(entry.path(), manifests.join(rel)).unwrap();
        }
    }
    let helm_args: Vec<String> = match &helm {
        Some(h) => vec!["--helm".into(), h.display().to_string()],
        None => Vec::new(),
    };
    let mirror_args: Vec<String> = src
        .mirrors
        .iter()
        .flat_map(|m| ["--registry-mirror".to_string(), m.clone()])
        .collect();

    let archive = work.path().join("app.airgap");
    ok(
        bin()
            .arg("export")
            .arg(&manifests)
            .arg("-o")
            .arg(&archive)
            .args(&mirror_args)
            .args(&helm_args)
            .output()
            .unwrap(),
        &format!("{name}: export"),
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&archive)
            .output()
            .unwrap(),
        "inspect",
    ))
    .unwrap();
    let bundled: BTreeSet<String> = meta["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = required.difference(&bundled).collect();
    assert!(missing.is_empty(), "{name}: export left out {missing:?}");
    let unexpected: Vec<_> = bundled.difference(&all).collect();
    assert!(
        unexpected.is_empty(),
        "{name}: export bundled {unexpected:?}, not in EXPECTED"
    );

    let dest = TestRegistry::start();
    let values = work.path().join("values.yaml");
    std::fs::write(&values, answers(&manifests, extra)).unwrap();
    let dir = work.path().join("app");
    ok(
        bin()
            .arg("import")
            .arg(&archive)
            .args(["--registry-endpoint", &dest.addr, "--image-namespace", NS])
            .arg("--config-values")
            .arg(&values)
            .arg("--dest")
            .arg(&dir)
            .args(&helm_args)
            .output()
            .unwrap(),
        &format!("{name}: import"),
    );

    let mut renders = Vec::new();
    for kubectl in kubectls() {
        let text = ok(
            Command::new(&kubectl)
                .arg("kustomize")
                .arg(dir.join("overlays/midstream"))
                .output()
                .unwrap(),
            &format!("{name}: {} kustomize", kubectl.display()),
        );
        let docs = check_rendered(
            &format!("{name} ({})", kubectl.display()),
            &text,
            &dest.addr,
        );
        renders.push(docs);
    }
    if renders.len() == 2 {
        let ids = |docs: &[Value]| -> BTreeSet<String> {
            docs.iter()
                .map(|d| format!("{:?}/{:?}", d["kind"], d["metadata"]["name"]))
                .collect()
        };
        assert_eq!(
            ids(&renders[0]),
            ids(&renders[1]),
            "{name}: kubectl 1.32 and 1.20 render different objects"
        );
    }
    if helm.is_some() {
        let from_charts = renders[0].iter().any(|d| {
            let labels = &d["metadata"]["labels"];
            labels["app.kubernetes.io/managed-by"] == "Helm" || labels["heritage"] == "Helm"
        });
        assert!(from_charts, "{name}: no chart workload in the midstream");
    }
    // Every image the midstream deploys is in the private registry.
    let mut images = BTreeSet::new();
    renders[0]
        .iter()
        .for_each(|d| image_strings(d, &mut images));
    for i in &images {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{i}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {i} is not in the private registry: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `template` of the app directory prints what deploys, and only that, on stdout.
    let out = bin()
        .arg("template")
        .arg(&dir)
        .args(&helm_args)
        .output()
        .unwrap();
    let text = ok(out, &format!("{name}: template"));
    assert!(
        !text.contains("repl{{") && !text.contains("{{repl"),
        "{text}"
    );
    let docs = documents(&text);
    assert!(
        docs.iter().all(|d| d["kind"].is_string()
            && !d["apiVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("kots.io/")
            && !d["apiVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("troubleshoot")),
        "{name}: template printed a non-deployable document"
    );
    assert_eq!(
        docs.len(),
        renders[0].len(),
        "{name}: template and the midstream disagree on what deploys"
    );
    drop(src);
}

#[test]
fn kotsapps_postgres_snapshots() {
    run_app("corpus", "kotsapps-postgres-snapshots", false, &[]);
}

#[test]
fn kotsapps_kudo_nginx_operator() {
    run_app("corpus", "kotsapps-kudo-nginx-operator", false, &[]);
}

#[test]
fn kotsapps_reloader() {
    run_app("corpus", "kotsapps-reloader", false, &[]);
}

#[test]
fn kotsapps_mongodb_mtools_without_its_chart() {
    run_app("corpus", "kotsapps-mongodb-mtools", false, &[]);
}

#[test]
fn kotsapps_helm_grafana_without_its_chart() {
    // Its chart is not shipped in this folder: with embedded redis on, the redis half deploys.
    run_app(
        "corpus",
        "kotsapps-helm-grafana",
        false,
        &[("embedded_redis", "1")],
    );
}

#[test]
fn helm_kotsapps_helm_grafana() {
    run_app(
        "corpus-helm",
        "kotsapps-helm-grafana",
        true,
        &[("embedded_redis", "1")],
    );
}

#[test]
fn helm_kotsapps_mongodb_mtools() {
    run_app("corpus-helm", "kotsapps-mongodb-mtools", true, &[]);
}

#[test]
fn helm_kotsapps_fairwinds_polaris() {
    run_app("corpus-helm", "kotsapps-fairwinds-polaris", true, &[]);
}
