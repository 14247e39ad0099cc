//! The app directory, checked with real kustomize: `kubectl kustomize` of today's kubectl
//! (kustomize v5) and of kubectl 1.20 (kustomize 2.0.3; install it with
//! `scripts/install-kubectl-1.20`, or point `KUBECTL_1_20` at one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kots_bundle::overlay::{
    read_state, write_app_dir, PullSecret, State, StateImage, WriteOptions,
};
use kots_bundle::reference::Reference;
use kots_bundle::rewrite::{plan, Endpoint, ImageRewrite, RewriteError};
use kots_bundle::upstream::{load_path, ManifestFile, Upstream};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

const REGISTRY: &str = "registry.example.com:5000";
const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/overlay/app")
}

/// Every image the fixture's pod specs use (what discovery would report).
fn fixture_sources() -> Vec<Reference> {
    [
        "busybox:1.36".to_string(),
        "nginx".into(),
        "nginx:1.25".into(),
        format!("quay.io/org/app:1.0@{A}"),
        "quay.io/org/app:1.0".into(),
        format!("ghcr.io/acme/fetch@{B}"),
        "ghcr.io/acme/report:3".into(),
        "localhost:5000/tools/debug:1".into(),
        "redis:7".into(),
        format!("quay.io/org/agent:2@{B}"),
    ]
    .iter()
    .map(|s| Reference::parse(s).unwrap())
    .collect()
}

/// (kind/name, container) -> image, as both kustomize versions must render the midstream.
fn expected_images() -> BTreeMap<(String, String), String> {
    let t = |s: &str| format!("{REGISTRY}/acme/{s}");
    let mut m = BTreeMap::new();
    let mut put = |obj: &str, c: &str, img: String| {
        m.insert((obj.to_string(), c.to_string()), img);
    };
    put("Deployment/web", "init", t("busybox:1.36"));
    put("Deployment/web", "bare", t("nginx"));
    for c in ["library", "hub", "hub-library", "legacy-hub"] {
        put("Deployment/web", c, t("nginx:1.25"));
    }
    put("Deployment/web", "pinned", t(&format!("app:1.0@{A}")));
    put("CronJob/report", "fetch", t(&format!("fetch@{B}")));
    put("CronJob/report", "report", t("report:3"));
    put("Pod/debug", "main", t("debug:1"));
    put("Pod/debug", "shell", t("busybox:1.36"));
    put("StatefulSet/cache", "redis", t("redis:7"));
    put("DaemonSet/agent", "agent", t(&format!("agent:2@{B}")));
    put("Job/migrate", "migrate", t("app:1.0"));
    m
}

fn rewrites() -> Vec<ImageRewrite> {
    plan(
        &fixture_sources(),
        &Endpoint::parse(&format!("https://{REGISTRY}")).unwrap(),
        Some("acme"),
        false,
    )
    .unwrap()
}

fn state_for(up: &Upstream, rw: &[ImageRewrite]) -> State {
    State {
        app: up.name.clone().unwrap(),
        version: up.version.clone(),
        source: up.source.clone(),
        release: None,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        images: rw
            .iter()
            .map(|r| StateImage {
                source: r.source.to_string(),
                target: r.target.to_string(),
                digest: A.to_string(),
            })
            .collect(),
        destination: None,
    }
}

fn write(dir: &Path, up: &Upstream, opts: &WriteOptions) {
    let rw = rewrites();
    write_app_dir(dir, up, &rw, &state_for(up, &rw), opts).unwrap();
}

fn new_app(opts: &WriteOptions) -> (tempfile::TempDir, PathBuf, Upstream) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let up = load_path(&fixture(), &Default::default()).unwrap();
    write(&dir, &up, opts);
    (tmp, dir, up)
}

#[derive(Clone, Copy, Debug)]
enum Kubectl {
    Current,
    V1_20,
}

impl Kubectl {
    fn path(self) -> PathBuf {
        match self {
            Kubectl::Current => PathBuf::from("kubectl"),
            Kubectl::V1_20 => {
                let p = std::env::var_os("KUBECTL_1_20")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/opt/kubectl-1.20/usr/bin/kubectl"));
                assert!(
                    p.is_file(),
                    "kubectl 1.20 not found at {}; run scripts/install-kubectl-1.20 (or set KUBECTL_1_20)",
                    p.display()
                );
                p
            }
        }
    }

    /// `kubectl kustomize DIR`, parsed into documents; panics with kustomize's stderr on failure.
    fn render(self, dir: &Path) -> Vec<Value> {
        let out = Command::new(self.path())
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{self:?} kustomize {} failed:\n{stderr}",
            dir.display()
        );
        let text = String::from_utf8(out.stdout).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect()
    }
}

const BOTH: [Kubectl; 2] = [Kubectl::Current, Kubectl::V1_20];

fn obj_id(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap(),
        doc["metadata"]["name"].as_str().unwrap()
    )
}

/// (kind/name, container) -> image for every container list at any depth.
fn rendered_images(docs: &[Value]) -> BTreeMap<(String, String), String> {
    fn walk(v: &Value, id: &str, out: &mut BTreeMap<(String, String), String>) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let key = k.as_str().unwrap_or("");
                    if matches!(key, "containers" | "initContainers" | "ephemeralContainers") {
                        for c in child.as_sequence().unwrap() {
                            let name = c["name"].as_str().unwrap().to_string();
                            let image = c["image"].as_str().unwrap().to_string();
                            assert!(out.insert((id.to_string(), name), image).is_none());
                        }
                    }
                    walk(child, id, out);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|c| walk(c, id, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for d in docs {
        walk(d, &obj_id(d), &mut out);
    }
    out
}

/// Pod specs (maps holding `containers`) of every rendered object.
fn pod_specs(docs: &[Value]) -> Vec<(String, Value)> {
    fn walk(v: &Value, id: &str, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Mapping(m) => {
                if m.contains_key("containers") {
                    out.push((id.to_string(), v.clone()));
                }
                m.values().for_each(|c| walk(c, id, out));
            }
            Value::Sequence(s) => s.iter().for_each(|c| walk(c, id, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for d in docs {
        walk(d, &obj_id(d), &mut out);
    }
    out
}

fn assert_no_kots_kinds(docs: &[Value]) {
    for d in docs {
        let api = d["apiVersion"].as_str().unwrap();
        assert!(
            !api.starts_with("kots.io/") && !api.starts_with("troubleshoot."),
            "{api} {} must not be deployed",
            obj_id(d)
        );
    }
}

fn ids(docs: &[Value]) -> BTreeSet<String> {
    docs.iter().map(obj_id).collect()
}

fn expected_ids() -> BTreeSet<String> {
    [
        "Deployment/web",
        "CronJob/report",
        "Pod/debug",
        "Service/web",
        "Service/api",
        "StatefulSet/cache",
        "DaemonSet/agent",
        "Job/migrate",
        "ConfigMap/settings",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn check_render(k: Kubectl, overlay: &Path) -> Vec<Value> {
    let docs = k.render(overlay);
    assert_eq!(
        rendered_images(&docs),
        expected_images(),
        "{k:?} {}",
        overlay.display()
    );
    assert_no_kots_kinds(&docs);
    assert_eq!(ids(&docs), expected_ids(), "{k:?}");
    docs
}

#[test]
fn midstream_renders_every_image_from_private_registry_with_kubectl_current() {
    let (_tmp, dir, _) = new_app(&WriteOptions::default());
    check_render(Kubectl::Current, &dir.join("overlays/midstream"));
}

#[test]
fn midstream_renders_every_image_from_private_registry_with_kubectl_1_20() {
    let (_tmp, dir, _) = new_app(&WriteOptions::default());
    check_render(Kubectl::V1_20, &dir.join("overlays/midstream"));
}

#[test]
fn downstream_renders_with_both_versions() {
    let (_tmp, dir, _) = new_app(&WriteOptions::default());
    let k = std::fs::read_to_string(dir.join("overlays/downstream/kustomization.yaml")).unwrap();
    assert!(k.contains("../midstream"), "{k}");
    for kc in BOTH {
        check_render(kc, &dir.join("overlays/downstream"));
    }
}

#[test]
fn upstream_is_kept_as_shipped_and_base_is_the_deployable_subset() {
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    for f in &up.files {
        assert_eq!(
            std::fs::read(dir.join("upstream").join(&f.path)).unwrap(),
            f.data,
            "{}",
            f.path
        );
    }
    for gone in [
        "kots-app.yaml",
        "kots-config.yaml",
        "preflight.yaml",
        "values.yaml",
        "README.md",
    ] {
        assert!(
            !dir.join("base").join(gone).exists(),
            "{gone} must not be in base"
        );
    }
    let multi = std::fs::read_to_string(dir.join("base/more/multi.yaml")).unwrap();
    assert!(
        !multi.contains("kots.io") && multi.contains("StatefulSet"),
        "{multi}"
    );
    // Files with only deployable documents are copied byte for byte.
    assert_eq!(
        std::fs::read(dir.join("base/deployment.yaml")).unwrap(),
        std::fs::read(fixture().join("deployment.yaml")).unwrap()
    );
    let state = read_state(&dir).unwrap().unwrap();
    assert_eq!(state.app, "fixture-app");
    assert_eq!(state.images.len(), fixture_sources().len());
}

#[test]
fn helm_chart_archives_stay_in_upstream_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let mut up = load_path(&fixture(), &Default::default()).unwrap();
    up.files.push(ManifestFile {
        path: "charts/thing-0.1.0.tgz".into(),
        data: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
    });
    write(&dir, &up, &WriteOptions::default());
    assert!(dir.join("upstream/charts/thing-0.1.0.tgz").is_file());
    assert!(!dir.join("base/charts").exists());
    let base = std::fs::read_to_string(dir.join("base/kustomization.yaml")).unwrap();
    assert!(!base.contains(".tgz"), "{base}");
}

#[test]
fn nothing_deployable_still_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let up = Upstream {
        source: "test".into(),
        release: None,
        name: Some("only-kots".into()),
        version: None,
        files: vec![ManifestFile {
            path: "app.yaml".into(),
            data: std::fs::read(fixture().join("kots-app.yaml")).unwrap(),
        }],
    };
    write(&dir, &up, &WriteOptions::default());
    for k in BOTH {
        assert!(
            k.render(&dir.join("overlays/midstream")).is_empty(),
            "{k:?}"
        );
    }
}

#[test]
fn image_pull_secret_patches_render_with_both_versions() {
    let opts = WriteOptions {
        image_pull_secret: Some("private-registry".into()),
        write_pull_secret: None,
    };
    let (_tmp, dir, _) = new_app(&opts);
    for k in BOTH {
        let docs = check_render(k, &dir.join("overlays/midstream"));
        let specs = pod_specs(&docs);
        assert_eq!(specs.len(), 6, "{k:?}: one pod spec per workload");
        for (id, spec) in specs {
            let names: Vec<&str> = spec["imagePullSecrets"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{k:?} {id}: no imagePullSecrets"))
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            if id == "CronJob/report" {
                assert_eq!(names, ["existing", "private-registry"], "{k:?}");
            } else {
                assert_eq!(names, ["private-registry"], "{k:?} {id}");
            }
        }
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .map(|e| e.path().canonicalize().unwrap())
        .collect()
}

#[test]
fn pull_secret_is_written_only_when_asked() {
    let password = "s3cret-Pa55word";
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    assert!(files_containing(&dir, password.as_bytes()).is_empty());
    for k in BOTH {
        assert!(!k
            .render(&dir.join("overlays/midstream"))
            .iter()
            .any(|d| d["kind"] == "Secret"));
    }

    let opts = WriteOptions {
        image_pull_secret: None,
        write_pull_secret: Some(PullSecret {
            name: "regcred".into(),
            registry: REGISTRY.into(),
            username: "importer".into(),
            password: password.into(),
        }),
    };
    write(&dir, &up, &opts);
    let secret_file = dir.join("overlays/midstream/kots-bundle/pull-secret.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "pull secret must be private, mode {mode:o}"
        );
    }
    for k in BOTH {
        let docs = check_render_with_secret(k, &dir);
        let secret = docs
            .iter()
            .find(|d| d["kind"] == "Secret")
            .expect("secret rendered");
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        use base64::Engine as _;
        let raw = secret["data"][".dockerconfigjson"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(config["auths"][REGISTRY]["password"], password);
        // Pod specs reference the written secret.
        for (id, spec) in pod_specs(&docs) {
            let names: Vec<&str> = spec["imagePullSecrets"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"regcred"), "{k:?} {id}: {names:?}");
        }
        // Credentials are in that one file only (base64 in it, plain nowhere).
        let encoded = raw.as_bytes();
        assert_eq!(
            files_containing(&dir, encoded),
            vec![secret_file.canonicalize().unwrap()]
        );
        assert!(files_containing(&dir, password.as_bytes()).is_empty());
    }

    // Not asked again: the secret goes away.
    write(&dir, &up, &WriteOptions::default());
    assert!(!secret_file.exists());
    let k = std::fs::read_to_string(dir.join("overlays/midstream/kots-bundle/kustomization.yaml"))
        .unwrap();
    assert!(!k.contains("pull-secret"), "{k}");
    assert!(k.contains("patchesJson6902"), "{k}");
}

fn check_render_with_secret(k: Kubectl, dir: &Path) -> Vec<Value> {
    let docs = k.render(&dir.join("overlays/midstream"));
    assert_eq!(rendered_images(&docs), expected_images(), "{k:?}");
    assert_no_kots_kinds(&docs);
    docs
}

/// What an operator sees under `dir` (through the links into the current release), without
/// kots-bundle's own bookkeeping.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".kots-bundle")
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn update_keeps_operator_changes_and_replaces_upstream() {
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    let mid = dir.join("overlays/midstream");
    let down = dir.join("overlays/downstream");
    assert!(mid.join("kots-bundle/cronjob-report.yaml").is_file());

    // The operator's edits: keys in midstream, a patch file of theirs, and the downstream.
    let mut k: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(mid.join("kustomization.yaml")).unwrap())
            .unwrap();
    k["commonLabels"] = serde_yaml_ng::from_str("{owner: ops}").unwrap();
    k["namespace"] = "staging".into();
    k["patchesStrategicMerge"] = serde_yaml_ng::from_str("[ops-replicas.yaml]").unwrap();
    std::fs::write(
        mid.join("kustomization.yaml"),
        serde_yaml_ng::to_string(&k).unwrap(),
    )
    .unwrap();
    std::fs::write(
        mid.join("ops-replicas.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n",
    )
    .unwrap();
    std::fs::write(
        down.join("kustomization.yaml"),
        "bases:\n- ../midstream\nnamespace: prod # mine\n",
    )
    .unwrap();
    std::fs::write(down.join("notes.txt"), "operator notes\n").unwrap();
    let down_before = snapshot(&down);

    // New release: the CronJob is gone, a ConfigMap is new.
    let mut up2 = up.clone();
    up2.files.retain(|f| f.path != "cronjob.yaml");
    up2.files.push(ManifestFile {
        path: "new.yaml".into(),
        data: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: new}\n".to_vec(),
    });
    up2.version = Some("2.0".into());
    write(&dir, &up2, &WriteOptions::default());

    assert!(!dir.join("upstream/cronjob.yaml").exists() && !dir.join("base/cronjob.yaml").exists());
    assert!(dir.join("upstream/new.yaml").is_file());
    assert!(
        !mid.join("kots-bundle/cronjob-report.yaml").exists(),
        "stale patch left behind"
    );
    assert_eq!(snapshot(&down), down_before, "downstream must not change");
    assert!(mid.join("ops-replicas.yaml").is_file());
    let k: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(mid.join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(k["commonLabels"]["owner"], "ops");
    assert_eq!(k["namespace"], "staging");
    assert_eq!(k["patchesStrategicMerge"][0], "ops-replicas.yaml");
    assert_eq!(
        read_state(&dir).unwrap().unwrap().version.as_deref(),
        Some("2.0")
    );

    let mut want = expected_images();
    want.retain(|(id, _), _| id != "CronJob/report");
    for kc in BOTH {
        for overlay in [&mid, &down] {
            let docs = kc.render(overlay);
            assert_eq!(rendered_images(&docs), want, "{kc:?} {}", overlay.display());
            let web = docs.iter().find(|d| obj_id(d) == "Deployment/web").unwrap();
            assert_eq!(web["spec"]["replicas"], 5, "{kc:?}: operator's patch");
            assert_eq!(
                web["metadata"]["labels"]["owner"], "ops",
                "{kc:?}: operator's labels"
            );
            assert!(ids(&docs).contains("ConfigMap/new"));
            let ns = if overlay == &down { "prod" } else { "staging" };
            assert_eq!(web["metadata"]["namespace"], ns, "{kc:?}");
        }
    }
}

#[test]
fn failed_write_leaves_previous_directory_intact() {
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    let before = snapshot(&dir);
    // A file and a directory with the same name cannot both be staged: the write fails midway.
    let mut bad = up.clone();
    bad.files.retain(|f| f.path != "cronjob.yaml");
    bad.files.push(ManifestFile {
        path: "zz.yaml".into(),
        data: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n".to_vec(),
    });
    bad.files.push(ManifestFile {
        path: "zz.yaml/inner.yaml".into(),
        data: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n".to_vec(),
    });
    let rw = rewrites();
    let err = write_app_dir(
        &dir,
        &bad,
        &rw,
        &state_for(&bad, &rw),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("zz.yaml"), "{err}");
    assert_eq!(snapshot(&dir), before);
    // Only the current release is left: the failed one removed itself.
    let releases: Vec<_> = std::fs::read_dir(dir.join(".kots-bundle/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(releases.len(), 1, "{releases:?}");
    check_render(Kubectl::Current, &dir.join("overlays/midstream"));
}

#[test]
fn midstream_update_refuses_an_unparseable_kustomization() {
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    std::fs::write(
        dir.join("overlays/midstream/kustomization.yaml"),
        "bases: [unclosed\n",
    )
    .unwrap();
    let before = snapshot(&dir);
    let rw = rewrites();
    let err = write_app_dir(
        &dir,
        &up,
        &rw,
        &state_for(&up, &rw),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("overlays/midstream/kustomization.yaml"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn plan_naming_collision_and_preserve_paths() {
    let ep = Endpoint::parse("https://registry.somebigbank.com").unwrap();
    let rw = plan(&fixture_sources(), &ep, Some("application-name"), false).unwrap();
    let targets: BTreeMap<String, String> = rw
        .iter()
        .map(|r| (r.source.to_string(), r.target.to_string()))
        .collect();
    assert_eq!(
        targets["docker.io/library/nginx:latest"],
        "registry.somebigbank.com/application-name/nginx:latest"
    );
    assert_eq!(
        targets[&format!("quay.io/org/app:1.0@{A}")],
        format!("registry.somebigbank.com/application-name/app:1.0@{A}")
    );
    let ecr = plan(
        &fixture_sources(),
        &Endpoint::parse("1234.dkr.ecr.us-east-1.amazonaws.com").unwrap(),
        None,
        false,
    )
    .unwrap();
    assert!(ecr
        .iter()
        .all(|r| r.target.repository() == r.source.last_component()));

    let clash = [
        Reference::parse("quay.io/a/agent:1").unwrap(),
        Reference::parse("quay.io/org/agent:2").unwrap(),
    ];
    match plan(&clash, &ep, Some("ns"), false) {
        Err(e @ RewriteError::Collision { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("quay.io/a/agent")
                    && msg.contains("quay.io/org/agent")
                    && msg.contains("--preserve-paths")
            );
        }
        other => panic!("expected a collision, got {other:?}"),
    }
    let kept = plan(&clash, &ep, Some("ns"), true).unwrap();
    let names: Vec<String> = kept.iter().map(|r| r.target.name()).collect();
    assert_eq!(
        names,
        [
            "registry.somebigbank.com/ns/quay.io/a/agent",
            "registry.somebigbank.com/ns/quay.io/org/agent"
        ]
    );
}

#[test]
fn preserve_paths_targets_render_with_both_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let up = load_path(&fixture(), &Default::default()).unwrap();
    let rw = plan(
        &fixture_sources(),
        &Endpoint::parse(REGISTRY).unwrap(),
        Some("acme"),
        true,
    )
    .unwrap();
    write_app_dir(
        &dir,
        &up,
        &rw,
        &state_for(&up, &rw),
        &WriteOptions::default(),
    )
    .unwrap();
    for k in BOTH {
        let got = rendered_images(&k.render(&dir.join("overlays/midstream")));
        assert_eq!(got.len(), expected_images().len());
        assert_eq!(
            got[&("Deployment/web".into(), "hub".into())],
            format!("{REGISTRY}/acme/docker.io/library/nginx:1.25")
        );
        assert_eq!(
            got[&("Deployment/web".into(), "pinned".into())],
            format!("{REGISTRY}/acme/quay.io/org/app:1.0@{A}")
        );
        assert_eq!(
            got[&("Pod/debug".into(), "main".into())],
            format!("{REGISTRY}/acme/localhost_5000/tools/debug:1")
        );
        assert!(
            got.values()
                .all(|i| i.starts_with(&format!("{REGISTRY}/acme/"))),
            "{k:?} {got:?}"
        );
    }
}

#[test]
fn existing_and_written_pull_secrets_both_render() {
    let opts = WriteOptions {
        image_pull_secret: Some("site-wide".into()),
        write_pull_secret: Some(PullSecret {
            name: "regcred".into(),
            registry: REGISTRY.into(),
            username: "u".into(),
            password: "p".into(),
        }),
    };
    let (_tmp, dir, _) = new_app(&opts);
    for k in BOTH {
        for (id, spec) in pod_specs(&k.render(&dir.join("overlays/midstream"))) {
            let names: Vec<&str> = spec["imagePullSecrets"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            let want: &[&str] = if id == "CronJob/report" {
                &["existing", "site-wide", "regcred"]
            } else {
                &["site-wide", "regcred"]
            };
            assert_eq!(names, want, "{k:?} {id}");
        }
    }
}

#[test]
fn the_operators_midstream_kustomization_survives_updates_byte_for_byte() {
    let (_tmp, dir, up) = new_app(&WriteOptions::default());
    let k = dir.join("overlays/midstream/kustomization.yaml");
    let mine = "# Ops: keep the prod namespace here (ticket OPS-42)\n\
                apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                bases:\n- kots-bundle   # the app as imported\n\
                namespace: prod # not staging\n\
                commonLabels:\n  owner: ops\n";
    std::fs::write(&k, mine).unwrap();
    let mut up2 = up.clone();
    up2.version = Some("2.0".into());
    write(&dir, &up2, &WriteOptions::default());
    assert_eq!(std::fs::read_to_string(&k).unwrap(), mine);
    for kc in BOTH {
        let docs = kc.render(&dir.join("overlays/midstream"));
        assert_eq!(rendered_images(&docs), expected_images(), "{kc:?}");
        let web = docs.iter().find(|d| obj_id(d) == "Deployment/web").unwrap();
        assert_eq!(web["metadata"]["namespace"], "prod", "{kc:?}");
        assert_eq!(web["metadata"]["labels"]["owner"], "ops", "{kc:?}");
    }
}
