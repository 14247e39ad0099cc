//! Operator-shaped apps (tests/fixtures/operator): images named outside pod specs (custom
//! resources' `image` strings and maps, operator args and env) are found as candidates,
//! confirmed against the source registry at export, pushed, and rewritten by the midstream
//! so that `kubectl kustomize` (1.32 and 1.20) names no source image anywhere; CRDs with
//! `containers` in their schema render on kustomize 2.0.3; pull secrets reach every
//! namespace and the custom resources that take them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::app::{bin, ok, Source};
use common::synth::ImageSpec;
use common::TestRegistry;
use kots_bundle::overlay::{write_app_dir, PullSecret, State, WriteOptions};
use kots_bundle::reference::Reference;
use kots_bundle::rewrite::{plan, Endpoint, ImageRewrite};
use kots_bundle::upstream::{load_path, Upstream};
use serde_json::Value;

const REGISTRY: &str = "registry.example.com:5000";
const NS: &str = "ops";
const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/operator")
}

/// Every image of the fixture and how it is found: (reference, kind, [(path, site)]).
type Found = (String, &'static str, Vec<(String, Option<&'static str>)>);

fn expected_found() -> Vec<Found> {
    let op = "Deployment/example-operator (document 2): spec.template.spec.containers[0]";
    let e = |r: &str, kind, locs| (r.to_string(), kind, locs);
    vec![
        e(
            "quay.io/org/alertmanager:v0",
            "candidate",
            vec![(
                "Alertmanager/main (document 2): spec.image".into(),
                Some("image"),
            )],
        ),
        e(
            &format!("quay.io/org/exporter@{ZERO_DIGEST}"),
            "candidate",
            vec![(format!("{op}.env[0].value"), Some("env"))],
        ),
        e(
            "quay.io/org/gadget:v1",
            "candidate",
            vec![("Gadget/g (document 2): spec.image".into(), Some("image"))],
        ),
        e(
            "quay.io/org/helper:v1",
            "candidate",
            vec![(format!("{op}.args[2]"), Some("arg"))],
        ),
        e(
            "quay.io/org/job:v1",
            "required",
            vec![(
                "Job/setup: spec.template.spec.containers[0].image".into(),
                None,
            )],
        ),
        e(
            "quay.io/org/missing:v1",
            "candidate",
            vec![(format!("{op}.env[2].value"), Some("env"))],
        ),
        e(
            "quay.io/org/operand:v1",
            "candidate",
            vec![(format!("{op}.env[6].value"), Some("env"))],
        ),
        e(
            "quay.io/org/operand:v2",
            "candidate",
            vec![(format!("{op}.env[6].value"), Some("env"))],
        ),
        e(
            "quay.io/org/operator:v1",
            "required",
            vec![(format!("{op}.image"), None)],
        ),
        e(
            "quay.io/org/prometheus:v2",
            "candidate",
            vec![(
                "Prometheus/k8s (document 1): spec.image".into(),
                Some("image"),
            )],
        ),
        e(
            "quay.io/org/reloader:v1",
            "candidate",
            vec![(format!("{op}.args[0]"), Some("arg"))],
        ),
        e(
            "quay.io/org/sidecar:v1",
            "candidate",
            vec![(format!("{op}.env[1].value"), Some("env"))],
        ),
        e(
            "quay.io/org/widget:v3",
            "candidate",
            vec![(
                "Widget/w (document 1): spec.image".into(),
                Some("image-map"),
            )],
        ),
        e(
            "quay.io/org/widget-agent:1.0",
            "candidate",
            vec![(
                "Widget/w (document 1): spec.agent.image".into(),
                Some("image-map"),
            )],
        ),
    ]
}

const PARTIAL_WARNING: &str =
    "warning: widgets.yaml: Widget/w (document 1): spec.extra.image: image map names \"quay.io/org/partial\" without a tag or digest";

/// `kots-bundle images --json` output as (reference, kind, confirmed, [(path, site)]).
type Listed = Vec<(String, String, Option<bool>, Vec<(String, Option<String>)>)>;

fn parse_listing(stdout: &str) -> Listed {
    let v: Value = serde_json::from_str(stdout).expect("images --json prints JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let locs = e["locations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["path"].as_str().unwrap().to_string(),
                        l["site"].as_str().map(str::to_string),
                    )
                })
                .collect();
            (
                e["reference"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
                e["confirmed"].as_bool(),
                locs,
            )
        })
        .collect()
}

#[test]
fn discovery_finds_every_operator_image_with_its_kind_and_place() {
    let out = bin()
        .args(["images", "--json"])
        .arg(fixture())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let got = parse_listing(&ok(out, "images --json"));
    let want: Listed = expected_found()
        .into_iter()
        .map(|(r, kind, locs)| {
            let locs = locs
                .into_iter()
                .map(|(p, s)| (p, s.map(str::to_string)))
                .collect();
            (r, kind.to_string(), None, locs)
        })
        .collect();
    assert_eq!(got, want, "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "only the incomplete map is warned about:\n{stderr}"
    );
    assert!(lines[0].starts_with(PARTIAL_WARNING), "{stderr}");

    // Plain output lists every image found, required and candidate alike.
    let out = bin().arg("images").arg(fixture()).output().unwrap();
    let plain: Vec<String> = ok(out, "images").lines().map(str::to_string).collect();
    let mut refs: Vec<String> = want.iter().map(|(r, ..)| r.clone()).collect();
    refs.sort();
    assert_eq!(plain, refs);
}

// ---- the overlay, rendered by real kustomize ----

#[derive(Clone, Copy, Debug)]
enum Kubectl {
    Current,
    V1_20,
}

const BOTH: [Kubectl; 2] = [Kubectl::Current, Kubectl::V1_20];

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

    fn kustomize(self, dir: &Path) -> std::process::Output {
        Command::new(self.path())
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap()
    }

    /// The rendered documents as JSON values, keyed `Kind/name[.namespace]`.
    fn render(self, dir: &Path) -> BTreeMap<String, Value> {
        let out = self.kustomize(dir);
        assert!(
            out.status.success(),
            "{self:?} kustomize {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut docs = BTreeMap::new();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            if v.is_null() {
                continue;
            }
            let mut id = format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            );
            if let Some(ns) = v["metadata"]["namespace"].as_str() {
                id.push('.');
                id.push_str(ns);
            }
            assert!(docs.insert(id.clone(), v).is_none(), "{id} twice");
        }
        docs
    }
}

/// Every string in `v` with its JSON pointer.
fn strings(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((at.to_string(), s.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings(x, &format!("{at}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                strings(x, &format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// The images the fixture names that are mirrored (all but the unconfirmable one).
fn mirrored(digest: &str) -> Vec<Reference> {
    expected_found()
        .into_iter()
        .map(|(r, ..)| r.replace(ZERO_DIGEST, digest))
        .filter(|r| r != "quay.io/org/missing:v1")
        .map(|r| Reference::parse(&r).unwrap())
        .collect()
}

fn state(up: &Upstream, rw: &[ImageRewrite]) -> State {
    State {
        app: up.name.clone().unwrap(),
        version: None,
        source: up.source.clone(),
        release: None,
        tool_version: "test".into(),
        images: rw
            .iter()
            .map(|r| kots_bundle::overlay::StateImage {
                source: r.source.to_string(),
                target: r.target.to_string(),
                digest: ZERO_DIGEST.into(),
            })
            .collect(),
        destination: None,
    }
}

fn write_fixture_app(opts: &WriteOptions) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    let up = load_path(&fixture(), &Default::default()).unwrap();
    let rw = plan(
        &mirrored(ZERO_DIGEST),
        &Endpoint::parse(REGISTRY).unwrap(),
        Some(NS),
        false,
    )
    .unwrap();
    write_app_dir(&dir, &up, &rw, &state(&up, &rw), opts).unwrap();
    (tmp, dir)
}

/// What every site of the fixture must render to, with `r` = `R/NS`.
fn check_sites(docs: &BTreeMap<String, Value>, r: &str, digest: &str, what: &str) {
    let op = &docs["Deployment/example-operator.monitoring"]["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(op["image"], format!("{r}/operator:v1"), "{what}");
    let args: Vec<&str> = op["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            format!("--x-image={r}/reloader:v1").as_str(),
            "--y-image",
            &format!("{r}/helper:v1"),
            "--web.listen-address=:8080",
            "--config-file=/etc/operator/config.yaml",
            "--upstream=https://quay.io/org/not-an-image:v1",
            "--kubelet-service=kube-system/kubelet",
            "--alertmanager-url=alertmanager.monitoring.svc:9093",
        ],
        "{what}: only the reference part of an arg changes, and only in image args"
    );
    let env: BTreeMap<&str, &str> = op["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(
        env["RELATED_IMAGE_EXPORTER"],
        format!("{r}/exporter@{digest}")
    );
    assert_eq!(env["SIDECAR_IMAGE"], format!("{r}/sidecar:v1"));
    assert_eq!(
        env["EXTRA_IMAGE"], "quay.io/org/missing:v1",
        "{what}: not mirrored, so left alone"
    );
    assert_eq!(env["HTTPS_PROXY"], "http://proxy.example.com:3128");
    assert_eq!(
        env["OPERAND_IMAGES"],
        format!("1.0={r}/operand:v1\n2.0={r}/operand:v2\n"),
        "{what}: every reference in a list of them"
    );
    assert_eq!(
        docs["Job/setup"]["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{r}/job:v1")
    );
    assert_eq!(
        docs["Prometheus/k8s.monitoring"]["spec"]["image"],
        format!("{r}/prometheus:v2")
    );
    assert_eq!(
        docs["Alertmanager/main.monitoring"]["spec"]["image"],
        format!("{r}/alertmanager:v0")
    );
    assert_eq!(docs["Gadget/g"]["spec"]["image"], format!("{r}/gadget:v1"));
    let w = &docs["Widget/w.monitoring"]["spec"];
    let (host, ns) = r.split_once('/').unwrap();
    assert_eq!(w["image"]["registry"], host, "{what}");
    assert_eq!(w["image"]["repository"], format!("{ns}/widget"), "{what}");
    assert_eq!(w["image"]["tag"], "v3");
    assert_eq!(
        w["agent"]["image"]["repository"],
        format!("{r}/widget-agent"),
        "{what}: a map without a registry field gets the whole name"
    );
    assert_eq!(w["agent"]["image"]["tag"], "1.0");
    assert_eq!(w["extra"]["image"]["repository"], "quay.io/org/partial");

    // No rendered string names a mirrored source image: only the sites left alone on
    // purpose still say quay.io.
    let mut all = Vec::new();
    for (id, d) in docs {
        strings(d, id, &mut all);
    }
    let sources: BTreeSet<String> = mirrored(digest).iter().map(Reference::name).collect();
    for (at, s) in &all {
        for src in &sources {
            assert!(
                !s.contains(src.as_str()),
                "{what}: {at} still names {src}: {s:?}"
            );
        }
    }
    let left: BTreeSet<&str> = all
        .iter()
        .filter(|(_, s)| s.contains("quay.io/"))
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([
            "--upstream=https://quay.io/org/not-an-image:v1",
            "quay.io/org/missing:v1",
            "quay.io/org/partial",
            // The CRD's description of its own default.
            "Image to run; default quay.io/prometheus/prometheus",
        ]),
        "{what}"
    );
}

#[test]
fn midstream_rewrites_every_site_on_kubectl_1_32_and_1_20_alike() {
    let (_tmp, dir) = write_fixture_app(&WriteOptions::default());
    let mid = dir.join("overlays/midstream");
    let r = format!("{REGISTRY}/{NS}");
    let mut rendered = Vec::new();
    for k in BOTH {
        let docs = k.render(&mid);
        check_sites(&docs, &r, ZERO_DIGEST, &format!("{k:?}"));
        check_sites(
            &k.render(&dir.join("overlays/downstream")),
            &r,
            ZERO_DIGEST,
            &format!("{k:?} downstream"),
        );
        rendered.push(docs);
    }
    // The same result from both versions.
    assert_eq!(
        rendered[0].keys().collect::<Vec<_>>(),
        rendered[1].keys().collect::<Vec<_>>()
    );
    for (id, doc) in &rendered[0] {
        assert_eq!(
            doc, &rendered[1][id],
            "{id} differs between kubectl versions"
        );
    }
}

/// The CRDs' `containers` schema properties stop kustomize 2.0.3's `images:` transformer, so
/// the midstream leaves `images:` out for this app; the same base under an `images:` list
/// fails on 1.20 (which is why) and renders on 1.32.
#[test]
fn crd_with_containers_in_its_schema_renders_on_kustomize_2_0_3() {
    let (_tmp, dir) = write_fixture_app(&WriteOptions::default());
    let k = std::fs::read_to_string(dir.join("overlays/midstream/kustomization.yaml")).unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&k).unwrap();
    assert!(parsed.get("images").is_none(), "{k}");

    let probe = dir.join("overlays/probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(
        probe.join("kustomization.yaml"),
        "bases: [../../base]\nimages: [{name: quay.io/org/job, newName: example.com/job}]\n",
    )
    .unwrap();
    let out = Kubectl::V1_20.kustomize(&probe);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("containers path is not of type"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Kubectl::Current.kustomize(&probe).status.success());
}

fn secret_names(v: &Value) -> Vec<&str> {
    v["imagePullSecrets"]
        .as_array()
        .map(|a| a.iter().map(|s| s["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn pull_secrets_reach_every_namespace_and_custom_resources_that_take_them() {
    let opts = WriteOptions {
        image_pull_secret: Some("site-wide".into()),
        write_pull_secret: Some(PullSecret {
            name: "regcred".into(),
            registry: REGISTRY.into(),
            username: "u".into(),
            password: "p".into(),
        }),
    };
    let (_tmp, dir) = write_fixture_app(&opts);
    for k in BOTH {
        let docs = k.render(&dir.join("overlays/midstream"));
        let secrets: Vec<&String> = docs.keys().filter(|id| id.starts_with("Secret/")).collect();
        assert_eq!(
            secrets,
            ["Secret/regcred", "Secret/regcred.monitoring"],
            "{k:?}: one Secret per namespace the app's pods and resources use"
        );
        for id in secrets {
            assert_eq!(docs[id]["type"], "kubernetes.io/dockerconfigjson", "{k:?}");
        }
        let pod = |id: &str| &docs[id]["spec"]["template"]["spec"];
        assert_eq!(
            secret_names(pod("Deployment/example-operator.monitoring")),
            ["site-wide", "regcred"],
            "{k:?}"
        );
        assert_eq!(secret_names(pod("Job/setup")), ["site-wide", "regcred"]);
        assert_eq!(
            secret_names(&docs["Prometheus/k8s.monitoring"]["spec"]),
            ["site-wide", "regcred"],
            "{k:?}: a well-known custom resource that takes imagePullSecrets"
        );
        assert_eq!(
            secret_names(&docs["Alertmanager/main.monitoring"]["spec"]),
            ["existing", "site-wide", "regcred"],
            "{k:?}: appended to the existing list"
        );
        assert_eq!(
            secret_names(&docs["Widget/w.monitoring"]["spec"]),
            ["site-wide", "regcred"],
            "{k:?}: its CRD has spec.imagePullSecrets"
        );
        assert!(
            docs["Gadget/g"]["spec"].get("imagePullSecrets").is_none(),
            "{k:?}: its CRD has no such field"
        );
        check_sites(
            &docs,
            &format!("{REGISTRY}/{NS}"),
            ZERO_DIGEST,
            &format!("{k:?}"),
        );
    }

    // The operator puts everything in one namespace: one Secret there (two of the same
    // name would collide in kustomize v5), and the next import keeps it that way.
    let k = dir.join("overlays/midstream/kustomization.yaml");
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(&k, format!("{text}namespace: prod\n")).unwrap();
    let up = load_path(&fixture(), &Default::default()).unwrap();
    let rw = plan(
        &mirrored(ZERO_DIGEST),
        &Endpoint::parse(REGISTRY).unwrap(),
        Some(NS),
        false,
    )
    .unwrap();
    write_app_dir(&dir, &up, &rw, &state(&up, &rw), &opts).unwrap();
    for k in BOTH {
        let docs = k.render(&dir.join("overlays/midstream"));
        let secrets: Vec<&String> = docs.keys().filter(|id| id.starts_with("Secret/")).collect();
        assert_eq!(secrets, ["Secret/regcred.prod"], "{k:?}");
        assert_eq!(
            secret_names(&docs["Prometheus/k8s.prod"]["spec"]),
            ["site-wide", "regcred"]
        );
    }
}

// ---- end to end, with real registries ----

fn source() -> Source {
    let specs = [
        "operator:v1",
        "job:v1",
        "reloader:v1",
        "helper:v1",
        "exporter:v1",
        "sidecar:v1",
        "prometheus:v2",
        "alertmanager:v0",
        "widget:v3",
        "widget-agent:1.0",
        "gadget:v1",
        "operand:v1",
        "operand:v2",
    ];
    Source::start(
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| ImageSpec::new(s, 100 + i as u64))
            .collect(),
    )
}

/// The fixture with `exporter`'s real digest in place of the zeros.
fn app_copy(digest: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in walkdir::WalkDir::new(fixture()) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(fixture()).unwrap();
        let to = tmp.path().join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&to, text.replace(ZERO_DIGEST, digest)).unwrap();
        }
    }
    tmp
}

const MISSING_WARNING: &str = "warning: operator.yaml: Deployment/example-operator (document 2): spec.template.spec.containers[0].env[2].value: quay.io/org/missing:v1 looks like an image but is not mirrored";

fn skopeo_exists(dest: &TestRegistry, r: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{r}", dest.addr))
        .output()
        .unwrap()
        .status
        .success()
}

/// Each mirrored image as `NS/name:tag` (or `@digest`) at the destination.
fn pushed_names(digest: &str) -> Vec<String> {
    mirrored(digest)
        .iter()
        .map(|r| match r.digest() {
            Some(d) => format!("{NS}/{}@{d}", r.last_component()),
            None => format!("{NS}/{}:{}", r.last_component(), r.tag().unwrap()),
        })
        .collect()
}

#[test]
fn export_confirms_candidates_and_import_pushes_and_rewrites_them() {
    let src = source();
    let digest = src.image("exporter:v1").digest.clone();
    let app = app_copy(&digest);
    let work = tempfile::tempdir().unwrap();

    // `images --confirm` asks the registry, as export will.
    let out = bin()
        .args([
            "images",
            "--json",
            "--confirm",
            "--registry-mirror",
            &src.mirror(),
        ])
        .arg(app.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed = parse_listing(&ok(out, "images --confirm"));
    for (r, kind, confirmed, _) in &listed {
        let want = match (kind.as_str(), r.as_str()) {
            ("required", _) => None,
            (_, "quay.io/org/missing:v1") => Some(false),
            _ => Some(true),
        };
        assert_eq!(confirmed, &want, "{r}");
    }
    assert!(stderr.contains(MISSING_WARNING), "{stderr}");

    let archive = work.path().join("op.airgap");
    let out = bin()
        .arg("export")
        .arg(app.path())
        .arg("-o")
        .arg(&archive)
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "export");
    assert!(
        stderr.contains(MISSING_WARNING),
        "the unconfirmable candidate is warned about with file and path:\n{stderr}"
    );
    let out = bin().arg("images").arg(&archive).output().unwrap();
    let mut want: Vec<String> = mirrored(&digest).iter().map(|r| r.to_string()).collect();
    want.sort();
    let got: Vec<String> = ok(out, "images ARCHIVE")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, want, "the archive holds every confirmed candidate");

    let dest = TestRegistry::start();
    let dir = work.path().join("app");
    let out = bin()
        .arg("import")
        .arg(&archive)
        .args(["--registry-endpoint", &dest.addr, "--image-namespace", NS])
        .arg("--dest")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "import");
    let unrewritten: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("was not mirrored"))
        .collect();
    assert_eq!(unrewritten.len(), 1, "{stderr}");
    assert!(
        unrewritten[0].contains("quay.io/org/missing:v1")
            && unrewritten[0].contains("/spec/template/spec/containers/0/env/2/value"),
        "{stderr}"
    );
    for name in pushed_names(&digest) {
        assert!(
            skopeo_exists(&dest, &name),
            "{name} is not at {}",
            dest.addr
        );
    }
    assert!(!skopeo_exists(&dest, &format!("{NS}/missing:v1")));
    let r = format!("{}/{NS}", dest.addr);
    for k in BOTH {
        let docs = k.render(&dir.join("overlays/midstream"));
        check_sites(&docs, &r, &digest, &format!("{k:?} after import"));
    }
}

#[test]
fn pull_confirms_candidates_too() {
    let src = source();
    let digest = src.image("exporter:v1").digest.clone();
    let app = app_copy(&digest);
    let work = tempfile::tempdir().unwrap();
    let dest = TestRegistry::start();
    let dir = work.path().join("app");
    let out = bin()
        .arg("pull")
        .arg(app.path())
        .args(["--rewrite-images", "--registry-endpoint", &dest.addr])
        .args(["--image-namespace", NS, "--registry-mirror", &src.mirror()])
        .arg("--dest")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "pull");
    assert!(stderr.contains(MISSING_WARNING), "{stderr}");
    for name in pushed_names(&digest) {
        assert!(
            skopeo_exists(&dest, &name),
            "{name} is not at {}",
            dest.addr
        );
    }
    check_sites(
        &Kubectl::Current.render(&dir.join("overlays/midstream")),
        &format!("{}/{NS}", dest.addr),
        &digest,
        "after pull",
    );
}
