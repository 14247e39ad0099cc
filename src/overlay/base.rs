//! Chooses the deployable subset of upstream for `base/`: Kubernetes objects only, without
//! KOTS and troubleshoot kinds, and finds where each object's pod specs and images are.

use serde_yaml_ng::Value;

use crate::upstream::Upstream;

/// apiVersion groups that configure KOTS or troubleshoot; a cluster has no use for them
/// (and usually no CRDs for them either).
const NON_DEPLOYABLE_GROUPS: &[&str] =
    &["kots.io", "troubleshoot.sh", "troubleshoot.replicated.com"];

/// Names kustomize takes as its own configuration; a resource file may not use them at the
/// base's root.
const KUSTOMIZATION_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

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
    /// Every `image` of a container list, with its JSON pointer.
    pub images: Vec<ImageSite>,
    /// Pod specs (maps holding `containers`) that take `imagePullSecrets`.
    pub pod_specs: Vec<PodSpecSite>,
}

#[derive(Debug)]
pub(crate) struct ImageSite {
    pub pointer: String,
    pub image: String,
}

#[derive(Debug)]
pub(crate) struct PodSpecSite {
    pub pointer: String,
    /// Names already listed under `imagePullSecrets`; `None` when the key is absent.
    pub pull_secrets: Option<Vec<String>>,
}

/// Selects the base files. Files and documents that are not deployable are left out,
/// with a debug log line each (they stay in `upstream/`).
pub(crate) fn select(upstream: &Upstream) -> Vec<BaseFile> {
    let mut out = Vec::new();
    for file in &upstream.files {
        let lower = file.path.to_ascii_lowercase();
        if !(lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")) {
            tracing::debug!(file = %file.path, "not a manifest; left out of base");
            continue;
        }
        let Ok(text) = std::str::from_utf8(&file.data) else {
            tracing::debug!(file = %file.path, "not UTF-8; left out of base");
            continue;
        };
        if let Some(bf) = select_file(&file.path, text) {
            out.push(bf);
        }
    }
    out
}

fn select_file(path: &str, text: &str) -> Option<BaseFile> {
    let mut kept_raw: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    let mut verbatim = true;
    // The same document reader as discovery: what base keeps is what discovery saw.
    for crate::yaml::Document { raw, parsed, .. } in crate::yaml::yaml_documents(text) {
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
                if let Some(obj) = deployable(path, item) {
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
        match deployable(path, &value) {
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

fn deployable(path: &str, v: &Value) -> Option<BaseObject> {
    let api_version = str_at(v, &["apiVersion"])?;
    let kind = str_at(v, &["kind"])?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if NON_DEPLOYABLE_GROUPS
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")))
        || group == "kustomize.config.k8s.io"
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
        images: Vec::new(),
        pod_specs: Vec::new(),
    };
    walk(v, &mut String::new(), &mut obj);
    Some(obj)
}

fn walk(v: &Value, pointer: &mut String, obj: &mut BaseObject) {
    match v {
        Value::Mapping(m) => {
            if let Some(Value::Sequence(_)) = m.get("containers") {
                // A pod spec: the object's own `/spec` for a Pod, or any `.../template/spec`
                // (workloads and CRDs that embed pod templates).
                let is_pod_spec = (obj.kind == "Pod" && pointer == "/spec")
                    || pointer.ends_with("/template/spec");
                if is_pod_spec {
                    let pull_secrets = m.get("imagePullSecrets").map(|s| {
                        s.as_sequence()
                            .map(|seq| {
                                seq.iter()
                                    .filter_map(|e| {
                                        e.get("name").and_then(Value::as_str).map(str::to_string)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    });
                    obj.pod_specs.push(PodSpecSite {
                        pointer: pointer.clone(),
                        pull_secrets,
                    });
                }
            }
            for (k, child) in m {
                let Some(key) = k.as_str() else { continue };
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
                if crate::discover::CONTAINER_LISTS.contains(&key) {
                    if let Value::Sequence(seq) = child {
                        for (i, c) in seq.iter().enumerate() {
                            if let Some(image) = c.get("image").and_then(Value::as_str) {
                                obj.images.push(ImageSite {
                                    pointer: format!("{pointer}/{i}/image"),
                                    image: image.to_string(),
                                });
                            }
                        }
                    }
                }
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

/// RFC 6901: `~` -> `~0`, `/` -> `~1`.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_deployable_documents() {
        let text = "apiVersion: kots.io/v1beta1\nkind: Config\nmetadata: {name: c}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n---\nfoo: bar\n";
        let f = select_file("x.yaml", text).unwrap();
        assert_eq!(f.objects.len(), 1);
        assert_eq!(
            String::from_utf8(f.data).unwrap(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n"
        );
        assert!(select_file(
            "y.yaml",
            "apiVersion: troubleshoot.sh/v1beta2\nkind: Preflight\nmetadata: {name: p}\n"
        )
        .is_none());
        assert!(select_file("z.yaml", "just: values\n").is_none());
    }

    #[test]
    fn finds_images_and_pod_specs() {
        let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          imagePullSecrets: [{name: old}]\n          initContainers: [{name: i, image: busybox}]\n          containers: [{name: a, image: nginx}]\n";
        let f = select_file("cj.yaml", text).unwrap();
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
        assert_eq!(o.pod_specs.len(), 1);
        assert_eq!(
            o.pod_specs[0].pointer,
            "/spec/jobTemplate/spec/template/spec"
        );
        assert_eq!(o.pod_specs[0].pull_secrets, Some(vec!["old".to_string()]));
    }

    #[test]
    fn expands_lists() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: a, image: x}]}}\n- {apiVersion: kots.io/v1beta1, kind: Config, metadata: {name: c}}\n";
        let f = select_file("l.yaml", text).unwrap();
        assert_eq!(f.objects.len(), 1);
        assert_eq!(f.objects[0].pod_specs[0].pointer, "/spec");
        assert!(!String::from_utf8(f.data).unwrap().contains("List"));
    }

    #[test]
    fn renames_kustomization_clash() {
        let f = select_file(
            "kustomization.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n",
        )
        .unwrap();
        assert_eq!(f.path, "resource-kustomization.yaml");
    }
}
