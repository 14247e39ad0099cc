//! Chooses the deployable subset of upstream for `base/`: Kubernetes objects only, without
//! KOTS and troubleshoot kinds, and finds in each object what the midstream patches: every
//! image site discovery knows (pod specs and candidates, [`crate::discover::sites`]) with
//! its exact JSON pointer and form, and every place that takes `imagePullSecrets` (pod
//! specs, and custom resources whose CRD, or a well-known operator, says they take it).

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use crate::discover::sites::{self, escape_pointer, SiteValue};
use crate::discover::SiteKind;
use crate::upstream::ManifestFile;

/// Names kustomize takes as its own configuration; a resource file may not use them at the
/// base's root.
const KUSTOMIZATION_NAMES: &[&str] = crate::render::kustomize::FILE_NAMES;

/// Custom resources that take `spec.imagePullSecrets` (a list of `{name}`) even when the app
/// does not ship their CRD: the Prometheus operator's (group, kind).
const PULL_SECRET_KINDS: &[(&str, &str)] = &[
    ("monitoring.coreos.com", "Prometheus"),
    ("monitoring.coreos.com", "PrometheusAgent"),
    ("monitoring.coreos.com", "Alertmanager"),
    ("monitoring.coreos.com", "ThanosRuler"),
];

/// The keys kustomize 2.0.3's `images:` transformer reads, anywhere in every object; a value
/// that is not a list there stops the whole build.
const OLD_IMAGES_TRANSFORMER_KEYS: [&str; 2] = ["containers", "initContainers"];

/// One file of `base/`.
#[derive(Debug)]
pub(crate) struct BaseFile {
    /// Relative to `base/`, `/`-separated.
    pub path: String,
    pub data: Vec<u8>,
    pub objects: Vec<BaseObject>,
}

/// One Kubernetes object in `base/`, with what the midstream needs to patch it.
#[derive(Debug)]
pub(crate) struct BaseObject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// Every image site: pod-spec container images, and the candidates outside them
    /// (those that hold a valid reference), each with its JSON pointer.
    pub images: Vec<ImageSite>,
    /// Where `imagePullSecrets` goes: pod specs (maps holding `containers`), and `/spec` of
    /// custom resources that take it.
    pub pull_secret_sites: Vec<PullSecretSite>,
    /// A `containers`/`initContainers` key whose value is not a list (a CRD's schema, a
    /// custom resource's own field): see [`breaks_kustomize_2_images`].
    pub non_list_containers: bool,
}

/// One place in an object that names an image, as the midstream must rewrite it.
#[derive(Debug)]
pub(crate) struct ImageSite {
    /// RFC 6901 pointer of the string (or, for [`SiteForm::Map`], the map).
    pub pointer: String,
    /// The reference as written (for a map: what its fields make together).
    pub image: String,
    pub kind: SiteKind,
    pub form: SiteForm,
}

/// How the reference sits at its pointer, so a patch changes exactly it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SiteForm {
    /// The whole string is the reference.
    Whole,
    /// The string is `text` and only `text[start..end]` is the reference (an arg
    /// `--x-image=REF`): the rest of the string stays as written.
    Part {
        text: String,
        start: usize,
        end: usize,
    },
    /// An `image:` map: its `name_key` field (`repository` or `image`) is rewritten, and
    /// its `registry` field when it has one; tag and digest fields stay.
    Map {
        has_registry: bool,
        name_key: &'static str,
        name: String,
    },
}

#[derive(Debug)]
pub(crate) struct PullSecretSite {
    /// The map that holds (or will hold) `imagePullSecrets`.
    pub pointer: String,
    /// Names already listed under `imagePullSecrets`; `None` when the key is absent.
    pub pull_secrets: Option<Vec<String>>,
}

/// Whether kustomize 2.0.3 (kubectl 1.14-1.20) would fail on base with an `images:` list
/// in a kustomization above it ("containers path is not of type []interface{}"): some
/// object has a `containers` or `initContainers` key whose value is not a list, as CRDs
/// with pod templates in their schema do. Every image in base is also set by exact-path
/// patches, so the midstream can leave `images:` out for such apps and render the same.
pub(crate) fn breaks_kustomize_2_images(files: &[BaseFile]) -> bool {
    files
        .iter()
        .flat_map(|f| &f.objects)
        .any(|o| o.non_list_containers)
}

/// (group, kind) of custom resources that take `spec.imagePullSecrets`: the well-known
/// ones and those whose CRD, shipped in the app, has that field.
struct PullSecretKinds(BTreeSet<(String, String)>);

impl PullSecretKinds {
    fn of(files: &[ManifestFile]) -> PullSecretKinds {
        let mut set: BTreeSet<(String, String)> = PULL_SECRET_KINDS
            .iter()
            .map(|(g, k)| (g.to_string(), k.to_string()))
            .collect();
        for file in files {
            let Ok(text) = std::str::from_utf8(&file.data) else {
                continue;
            };
            if !text.contains("CustomResourceDefinition") {
                continue;
            }
            for doc in crate::yaml::yaml_documents(text) {
                let Ok(v) = doc.parsed else { continue };
                let items = list_items(&v).map_or_else(|| vec![&v], |i| i.iter().collect());
                for crd in items {
                    if let Some(gk) = crd_takes_pull_secrets(crd) {
                        set.insert(gk);
                    }
                }
            }
        }
        PullSecretKinds(set)
    }

    fn contains(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.0.contains(&(group.to_string(), kind.to_string()))
    }
}

/// A CRD whose schema (any version) has `spec.imagePullSecrets`: its (group, kind).
fn crd_takes_pull_secrets(v: &Value) -> Option<(String, String)> {
    if str_at(v, &["kind"])? != "CustomResourceDefinition" {
        return None;
    }
    let group = str_at(v, &["spec", "group"])?;
    let kind = str_at(v, &["spec", "names", "kind"])?;
    let spec = v.get("spec")?;
    let mut schemas: Vec<&Value> = spec
        .get("versions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|ver| ver.get("schema"))
        .collect();
    schemas.extend(spec.get("validation"));
    let takes = schemas.iter().any(|s| {
        s.get("openAPIV3Schema")
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get("spec"))
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get("imagePullSecrets"))
            .is_some()
    });
    takes.then(|| (group.to_string(), kind.to_string()))
}

/// Selects the base files. Files and documents that are not deployable are left out,
/// with a debug log line each (they stay in `upstream/`).
pub(crate) fn select(files: &[ManifestFile]) -> Vec<BaseFile> {
    let kinds = PullSecretKinds::of(files);
    let mut out = Vec::new();
    for file in files {
        let Some(format) = crate::yaml::Format::of(&file.path) else {
            tracing::debug!(file = %file.path, "not a manifest; left out of base");
            continue;
        };
        let Ok(text) = std::str::from_utf8(&file.data) else {
            tracing::debug!(file = %file.path, "not UTF-8; left out of base");
            continue;
        };
        if let Some(bf) = select_file(&file.path, text, format, &kinds) {
            out.push(bf);
        }
    }
    out
}

fn select_file(
    path: &str,
    text: &str,
    format: crate::yaml::Format,
    kinds: &PullSecretKinds,
) -> Option<BaseFile> {
    let mut kept_raw: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    let mut verbatim = true;
    // The same document reader as discovery: what base keeps is what discovery saw.
    for crate::yaml::Document { raw, parsed, .. } in crate::yaml::documents(text, format) {
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(file = %path, error = %e, "document is not YAML; left out of base");
                verbatim = false;
                continue;
            }
        };
        if let Some(items) = list_items(&value) {
            // Expanded so both kustomize versions see (and can patch) plain objects.
            verbatim = false;
            for item in items {
                if let Some(obj) = deployable(path, item, kinds) {
                    match serde_yaml_ng::to_string(item) {
                        Ok(s) => {
                            kept_raw.push(s);
                            objects.push(obj);
                        }
                        Err(e) => {
                            tracing::warn!(file = %path, error = %e, "cannot re-serialize list item")
                        }
                    }
                }
            }
            continue;
        }
        match deployable(path, &value, kinds) {
            Some(obj) => {
                kept_raw.push(raw.to_string());
                objects.push(obj);
            }
            None => verbatim = false,
        }
    }
    if objects.is_empty() {
        return None;
    }
    let data = if verbatim {
        text.as_bytes().to_vec()
    } else {
        let mut s = String::new();
        for (i, raw) in kept_raw.iter().enumerate() {
            if i > 0 {
                s.push_str("---\n");
            }
            s.push_str(raw);
            if !raw.ends_with('\n') {
                s.push('\n');
            }
        }
        s.into_bytes()
    };
    let path = if KUSTOMIZATION_NAMES.contains(&path) {
        format!("resource-{path}")
    } else {
        path.to_string()
    };
    Some(BaseFile {
        path,
        data,
        objects,
    })
}

/// `kind: List` (or `FooList`) with `items`.
fn list_items(v: &Value) -> Option<&Vec<Value>> {
    let kind = v.get("kind")?.as_str()?;
    if !kind.ends_with("List") {
        return None;
    }
    v.get("items")?.as_sequence()
}

fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(*k)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn deployable(path: &str, v: &Value, kinds: &PullSecretKinds) -> Option<BaseObject> {
    let api_version = str_at(v, &["apiVersion"])?;
    let kind = str_at(v, &["kind"])?;
    if crate::render::configures_kots(api_version)
        || api_version.starts_with("kustomize.config.k8s.io/")
    {
        tracing::debug!(file = %path, kind, "KOTS/troubleshoot/kustomize kind; left out of base");
        return None;
    }
    let Some(name) = str_at(v, &["metadata", "name"]) else {
        // kustomize refuses objects without a name; leaving it out keeps the rest deployable.
        tracing::warn!(file = %path, kind, "object has no metadata.name; left out of base");
        return None;
    };
    let mut obj = BaseObject {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: str_at(v, &["metadata", "namespace"]).map(str::to_string),
        images: image_sites(v),
        pull_secret_sites: Vec::new(),
        non_list_containers: false,
    };
    walk(v, &mut String::new(), &mut obj);
    // A custom resource that takes `spec.imagePullSecrets` (a Pod's `/spec` is a pod spec,
    // found by the walk).
    if obj.kind != "Pod" {
        if let Some(spec) = v.get("spec").filter(|s| s.is_mapping()) {
            let listed = spec.get("imagePullSecrets").is_some_and(Value::is_sequence);
            if listed || kinds.contains(api_version, kind) {
                obj.pull_secret_sites.push(PullSecretSite {
                    pointer: "/spec".to_string(),
                    pull_secrets: listed_names(spec),
                });
            }
        }
    }
    Some(obj)
}

/// Every site discovery reads, with a reference worth rewriting: container images as they
/// are (an unparseable one is warned about at the rewrite), candidates only when valid.
fn image_sites(v: &Value) -> Vec<ImageSite> {
    let mut out = Vec::new();
    for site in sites::sites(v) {
        let Some(image) = site.reference_text() else {
            continue;
        };
        if site.kind.is_candidate()
            && (image.contains("{{") || crate::reference::Reference::parse(image).is_err())
        {
            continue;
        }
        let form = match &site.value {
            SiteValue::Str { text, start, end } if *start > 0 || *end < text.len() => {
                SiteForm::Part {
                    text: text.to_string(),
                    start: *start,
                    end: *end,
                }
            }
            SiteValue::Map(m) => SiteForm::Map {
                has_registry: m.has_registry,
                name_key: m.name_key,
                name: m.name.clone(),
            },
            _ => SiteForm::Whole,
        };
        out.push(ImageSite {
            pointer: site.pointer(),
            image: image.to_string(),
            kind: site.kind,
            form,
        });
    }
    out
}

/// The names under `m`'s `imagePullSecrets`; `None` when it has none.
fn listed_names(m: &Value) -> Option<Vec<String>> {
    m.get("imagePullSecrets").map(|s| {
        s.as_sequence()
            .map(|seq| {
                seq.iter()
                    .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Pod specs, and `containers` keys that kustomize 2.0.3 cannot read.
fn walk(v: &Value, pointer: &mut String, obj: &mut BaseObject) {
    match v {
        Value::Mapping(m) => {
            if let Some(Value::Sequence(_)) = m.get("containers") {
                // A pod spec: the object's own `/spec` for a Pod, or any `.../template/spec`
                // (workloads and CRDs that embed pod templates).
                let is_pod_spec = (obj.kind == "Pod" && pointer == "/spec")
                    || pointer.ends_with("/template/spec");
                if is_pod_spec {
                    obj.pull_secret_sites.push(PullSecretSite {
                        pointer: pointer.clone(),
                        pull_secrets: listed_names(v),
                    });
                }
            }
            for (k, child) in m {
                let Some(key) = k.as_str() else { continue };
                if OLD_IMAGES_TRANSFORMER_KEYS.contains(&key) && !child.is_sequence() {
                    obj.non_list_containers = true;
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
                walk(child, pointer, obj);
                pointer.truncate(len);
            }
        }
        Value::Sequence(seq) => {
            for (i, child) in seq.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                walk(child, pointer, obj);
                pointer.truncate(len);
            }
        }
        Value::Tagged(t) => walk(&t.value, pointer, obj),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> PullSecretKinds {
        PullSecretKinds(BTreeSet::new())
    }

    #[test]
    fn keeps_only_deployable_documents() {
        let text = "apiVersion: kots.io/v1beta1\nkind: Config\nmetadata: {name: c}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n---\nfoo: bar\n";
        let f = select_file("x.yaml", text, crate::yaml::Format::Yaml, &none()).unwrap();
        assert_eq!(f.objects.len(), 1);
        assert_eq!(
            String::from_utf8(f.data).unwrap(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n"
        );
        assert!(select_file(
            "y.yaml",
            "apiVersion: troubleshoot.sh/v1beta2\nkind: Preflight\nmetadata: {name: p}\n",
            crate::yaml::Format::Yaml,
            &none()
        )
        .is_none());
        assert!(select_file(
            "z.yaml",
            "just: values\n",
            crate::yaml::Format::Yaml,
            &none()
        )
        .is_none());
    }

    #[test]
    fn finds_images_and_pull_secret_sites() {
        let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          imagePullSecrets: [{name: old}]\n          initContainers: [{name: i, image: busybox}]\n          containers: [{name: a, image: nginx}]\n";
        let f = select_file("cj.yaml", text, crate::yaml::Format::Yaml, &none()).unwrap();
        let o = &f.objects[0];
        let ptrs: Vec<_> = o
            .images
            .iter()
            .map(|i| (i.pointer.as_str(), i.image.as_str()))
            .collect();
        assert!(ptrs.contains(&(
            "/spec/jobTemplate/spec/template/spec/initContainers/0/image",
            "busybox"
        )));
        assert!(ptrs.contains(&(
            "/spec/jobTemplate/spec/template/spec/containers/0/image",
            "nginx"
        )));
        assert_eq!(o.pull_secret_sites.len(), 1);
        assert_eq!(
            o.pull_secret_sites[0].pointer,
            "/spec/jobTemplate/spec/template/spec"
        );
        assert_eq!(
            o.pull_secret_sites[0].pull_secrets,
            Some(vec!["old".to_string()])
        );
    }

    #[test]
    fn expands_lists() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: x}]}}\n- {apiVersion: kots.io/v1beta1, kind: Config, metadata: {name: c}}\n";
        let f = select_file("l.yaml", text, crate::yaml::Format::Yaml, &none()).unwrap();
        assert_eq!(f.objects.len(), 1);
        assert_eq!(f.objects[0].pull_secret_sites[0].pointer, "/spec");
        assert!(!String::from_utf8(f.data).unwrap().contains("List"));
    }

    #[test]
    fn image_sites_have_exact_pointers_and_forms() {
        let text = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: op, annotations: {"example.com/x": y}}
spec:
  template:
    spec:
      containers:
      - name: op
        image: quay.io/org/op:1
        args: ["--x-image=quay.io/org/x:1", "--y-image", "quay.io/org/y:1", "--url=https://quay.io/org/z:1"]
        env: [{name: RELATED_IMAGE_A, value: "quay.io/org/a:1"}, {name: BAD, value: "{{ x }}"}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec:
  image: {registry: quay.io, repository: org/w, tag: "2"}
  other: {image: {repository: quay.io/org/o, digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}}
  partial: {image: {repository: quay.io/org/p}}
  templated: {image: "repl{{ LocalImageName }}"}
"#;
        let f = select_file("op.yaml", text, crate::yaml::Format::Yaml, &none()).unwrap();
        let sites: Vec<(&str, &str, SiteKind, &SiteForm)> = f
            .objects
            .iter()
            .flat_map(|o| &o.images)
            .map(|s| (s.pointer.as_str(), s.image.as_str(), s.kind, &s.form))
            .collect();
        let c = "/spec/template/spec/containers/0";
        let part = SiteForm::Part {
            text: "--x-image=quay.io/org/x:1".into(),
            start: 10,
            end: 25,
        };
        let map = SiteForm::Map {
            has_registry: true,
            name_key: "repository",
            name: "org/w".into(),
        };
        let map2 = SiteForm::Map {
            has_registry: false,
            name_key: "repository",
            name: "quay.io/org/o".into(),
        };
        let d0 = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(
            sites,
            [
                (
                    &*format!("{c}/image"),
                    "quay.io/org/op:1",
                    SiteKind::Container,
                    &SiteForm::Whole
                ),
                (
                    &*format!("{c}/args/0"),
                    "quay.io/org/x:1",
                    SiteKind::Arg,
                    &part
                ),
                (
                    &*format!("{c}/args/2"),
                    "quay.io/org/y:1",
                    SiteKind::Arg,
                    &SiteForm::Whole
                ),
                (
                    &*format!("{c}/env/0/value"),
                    "quay.io/org/a:1",
                    SiteKind::Env,
                    &SiteForm::Whole
                ),
                ("/spec/image", "quay.io/org/w:2", SiteKind::ImageMap, &map),
                (
                    "/spec/other/image",
                    &*format!("quay.io/org/o@{d0}"),
                    SiteKind::ImageMap,
                    &map2
                ),
            ]
        );
    }

    #[test]
    fn custom_resources_take_pull_secrets_when_their_crd_or_kind_says_so() {
        let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ws.example.com}\nspec:\n  group: example.com\n  names: {kind: Widget, plural: ws}\n  versions:\n  - name: v1\n    schema:\n      openAPIV3Schema:\n        properties:\n          spec:\n            properties:\n              imagePullSecrets: {type: array}\n";
        let files = [ManifestFile {
            path: "crd.yaml".into(),
            data: crd.as_bytes().to_vec(),
        }];
        let kinds = PullSecretKinds::of(&files);
        let objects = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n---\n\
            apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {size: 1}\n---\n\
            apiVersion: example.com/v1\nkind: Listed\nmetadata: {name: l}\nspec: {imagePullSecrets: [{name: a}]}\n---\n\
            apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: p}\nspec: {image: 'x:1'}\n---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {name: pod}\nspec: {containers: [{name: a, image: x}]}\n";
        let f = select_file("o.yaml", objects, crate::yaml::Format::Yaml, &kinds).unwrap();
        type Got<'a> = (&'a str, Vec<&'a str>, Option<Vec<String>>);
        let got: Vec<Got> = f
            .objects
            .iter()
            .map(|o| {
                (
                    o.kind.as_str(),
                    o.pull_secret_sites
                        .iter()
                        .map(|s| s.pointer.as_str())
                        .collect(),
                    o.pull_secret_sites
                        .first()
                        .and_then(|s| s.pull_secrets.clone()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Widget", vec!["/spec"], None),
                ("Gadget", vec![], None),
                ("Listed", vec!["/spec"], Some(vec!["a".to_string()])),
                ("Prometheus", vec!["/spec"], None),
                ("Pod", vec!["/spec"], None),
            ]
        );
        // Without the CRD, a Widget is not touched.
        let f = select_file("o.yaml", objects, crate::yaml::Format::Yaml, &none()).unwrap();
        assert!(f.objects[0].pull_secret_sites.is_empty());
    }

    /// The check against the real thing: kustomize 2.0.3 (kubectl 1.20) fails on an
    /// `images:` list over exactly the bases the check flags, and renders the others.
    #[test]
    fn breaks_kustomize_2_images_agrees_with_kubectl_1_20() {
        let kubectl = std::env::var_os("KUBECTL_1_20")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/opt/kubectl-1.20/usr/bin/kubectl".into());
        assert!(
            kubectl.is_file(),
            "kubectl 1.20 not found at {}; run scripts/install-kubectl-1.20 (or set KUBECTL_1_20)",
            kubectl.display()
        );
        let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      initContainers: []\n      containers: [{name: a, image: nginx}]\n";
        let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ps.example.com}\nspec:\n  group: example.com\n  names: {kind: P, plural: ps}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              containers: {type: array, items: {type: object}}\n";
        let cr_null = "apiVersion: example.com/v1\nkind: P\nmetadata: {name: p}\nspec: {initContainers: null}\n";
        let cr_list = "apiVersion: example.com/v1\nkind: P\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'quay.io/a/b:1'}], image: 'quay.io/a/c:1'}\n";
        for (text, breaks) in [
            (deploy, false),
            (cr_list, false),
            (crd, true),
            (cr_null, true),
        ] {
            let f = select_file("r.yaml", text, crate::yaml::Format::Yaml, &none()).unwrap();
            let files = [f];
            assert_eq!(breaks_kustomize_2_images(&files), breaks, "{text}");
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("r.yaml"), text).unwrap();
            std::fs::write(
                dir.path().join("kustomization.yaml"),
                "resources: [r.yaml]\nimages: [{name: nginx, newName: example.com/nginx}]\n",
            )
            .unwrap();
            let out = std::process::Command::new(&kubectl)
                .arg("kustomize")
                .arg(dir.path())
                .output()
                .unwrap();
            assert_eq!(
                !out.status.success(),
                breaks,
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn renames_kustomization_clash() {
        let f = select_file(
            "kustomization.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n",
            crate::yaml::Format::Yaml,
            &none(),
        )
        .unwrap();
        assert_eq!(f.path, "resource-kustomization.yaml");
    }
}
