//! The generated layer of the midstream: a kustomization on top of `base/` whose exact-path
//! JSON patches set every image of base to the private registry (and add pull secrets),
//! plus `images:` entries. It lives in the release directory and is regenerated whole on
//! every update (the operator's own `overlays/midstream/kustomization.yaml` only points at it).
//!
//! Everything written here must build with kustomize 2.0.3 (kubectl 1.14-1.20) and v5:
//! directories go under `bases:` (2.0.3 refuses them in `resources:`), and every image in
//! base is also set by a `patchesJson6902` replace at its exact path, because 2.0.3's
//! `images:` skips (or mangles) `name@sha256:` references and neither version's `images:`
//! knows `ephemeralContainers` or custom resources.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_yaml_ng::{Mapping, Value};

use super::base::{self, BaseFile, BaseObject, SiteForm};
use super::kustomization::{self, API_VERSION};
use super::PullSecret;
use crate::reference::Reference;
use crate::rewrite::ImageRewrite;

pub(crate) const PULL_SECRET_FILE: &str = "pull-secret.yaml";

/// The generated layer: its kustomization and the files beside it.
pub(crate) struct Midstream {
    pub kustomization: String,
    /// (file name beside the kustomization, contents, is secret)
    pub files: Vec<(String, Vec<u8>, bool)>,
}

#[derive(serde::Serialize)]
struct PatchOp {
    op: &'static str,
    path: String,
    value: Value,
}

fn op(op: &'static str, path: String, value: Value) -> PatchOp {
    PatchOp { op, path, value }
}

/// Builds the generated layer of the midstream from base. `base_ref` is where base is,
/// relative to the layer; `operator_midstream` is the operator's midstream kustomization
/// (which sits on top of the layer), when there is one.
pub(crate) fn build(
    base: &[BaseFile],
    base_ref: &str,
    rewrites: &[ImageRewrite],
    pull_secret_names: &[String],
    secret: Option<&PullSecret>,
    operator_midstream: Option<&str>,
) -> Result<Midstream, String> {
    let by_name: HashMap<String, &ImageRewrite> =
        rewrites.iter().map(|r| (r.source.name(), r)).collect();

    // (kind, name) pairs that occur more than once need a namespace in their patch target.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for o in base.iter().flat_map(|f| &f.objects) {
        *seen.entry((o.kind.clone(), o.name.clone())).or_default() += 1;
    }

    let mut files = Vec::new();
    let mut patch_entries = Vec::new();
    let mut used_names: BTreeSet<String> = [kustomization::FILE_NAME, PULL_SECRET_FILE]
        .into_iter()
        .map(str::to_string)
        .collect();
    for obj in base.iter().flat_map(|f| &f.objects) {
        let mut ops = image_ops(obj, &by_name);
        for spec in &obj.pull_secret_sites {
            for name in pull_secret_names {
                let entry =
                    Value::Mapping(Mapping::from_iter([("name".into(), name.as_str().into())]));
                match &spec.pull_secrets {
                    Some(have) if have.contains(name) => {}
                    Some(_) => ops.push(op(
                        "add",
                        format!("{}/imagePullSecrets/-", spec.pointer),
                        entry,
                    )),
                    None => ops.push(op(
                        "add",
                        format!("{}/imagePullSecrets", spec.pointer),
                        Value::Sequence(vec![entry]),
                    )),
                }
            }
        }
        let ops = fix_pull_secret_adds(ops);
        if ops.is_empty() {
            continue;
        }
        let file = unique_file_name(obj, &mut used_names);
        let text = serde_yaml_ng::to_string(&ops).map_err(|e| e.to_string())?;
        files.push((file.clone(), text.into_bytes(), false));
        patch_entries.push(patch_entry(
            obj,
            &file,
            seen[&(obj.kind.clone(), obj.name.clone())] > 1,
        ));
    }

    let mut resources = Vec::new();
    if let Some(s) = secret {
        files.push((
            PULL_SECRET_FILE.to_string(),
            pull_secret_yaml(s, &secret_namespaces(base, operator_midstream)).into_bytes(),
            true,
        ));
        resources.push(Value::from(PULL_SECRET_FILE));
    }

    let mut m = Mapping::new();
    m.insert("apiVersion".into(), API_VERSION.into());
    m.insert("kind".into(), "Kustomization".into());
    m.insert("bases".into(), Value::Sequence(vec![base_ref.into()]));
    if !resources.is_empty() {
        m.insert("resources".into(), Value::Sequence(resources));
    }
    // kustomize 2.0.3's `images:` stops on CRDs with pod templates in their schema; base is
    // fully patched at exact paths anyway.
    if !base::breaks_kustomize_2_images(base) {
        let images = images_entries(rewrites);
        if !images.is_empty() {
            m.insert("images".into(), Value::Sequence(images));
        }
    }
    if !patch_entries.is_empty() {
        m.insert("patchesJson6902".into(), Value::Sequence(patch_entries));
    }
    let body = serde_yaml_ng::to_string(&Value::Mapping(m)).map_err(|e| e.to_string())?;
    Ok(Midstream {
        kustomization: format!("{}{body}", kustomization::GENERATED_HEADER),
        files,
    })
}

/// When several pull secrets go to a spec without `imagePullSecrets`, only the first may
/// create the list; the others append.
fn fix_pull_secret_adds(mut ops: Vec<PatchOp>) -> Vec<PatchOp> {
    let mut created = BTreeSet::new();
    for o in ops.iter_mut() {
        if o.op == "add" && o.path.ends_with("/imagePullSecrets") && !created.insert(o.path.clone())
        {
            o.path.push_str("/-");
            if let Value::Sequence(s) = &mut o.value {
                o.value = s.pop().unwrap_or(Value::Null);
            }
        }
    }
    ops
}

/// `(start, end, target)`: `text[start..end]` becomes `target`.
type Span = (usize, usize, String);

/// The exact-path patches that make every image site of `obj` name its image in the
/// private registry: whole strings, only the references inside an arg or env value
/// (`--x-image=R/NS/b:1`; several in one string make one patch), an image map's name (and
/// registry) fields; tags and digests as written. A site whose image has no rewrite (it
/// was not mirrored) is left alone, with a warning.
fn image_ops(obj: &BaseObject, by_name: &HashMap<String, &ImageRewrite>) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    // Strings holding references among other text, by pointer.
    let mut parts: BTreeMap<&str, (&str, Vec<Span>)> = BTreeMap::new();
    for site in &obj.images {
        let Some(rewrite) = rewrite_for(&site.image, by_name) else {
            // Already in the private registry (a template's `LocalImageName`), or nowhere to
            // go (no destination): nothing to say. Otherwise it would be pulled from outside.
            let at_destination = Reference::parse(&site.image)
                .is_ok_and(|r| by_name.values().any(|rw| rw.target.name() == r.name()));
            if !by_name.is_empty() && !at_destination {
                let why = if site.kind.is_candidate() {
                    "was not mirrored (it did not resolve at export)"
                } else {
                    "has no copy in the private registry"
                };
                crate::warnings::warn(format_args!(
                    "{}/{} {}: image {} {why}; it will be pulled from where the manifest says \
                     (add it with --image at export)",
                    obj.kind, obj.name, site.pointer, site.image
                ));
            }
            continue;
        };
        let target = deployed_name(&site.image, rewrite);
        match &site.form {
            SiteForm::Whole if target != site.image => {
                ops.push(op("replace", site.pointer.clone(), target.into()))
            }
            SiteForm::Whole => {}
            SiteForm::Part { text, start, end } => parts
                .entry(&site.pointer)
                .or_insert((text, Vec::new()))
                .1
                .push((*start, *end, target)),
            SiteForm::Map {
                has_registry,
                name_key,
                name,
            } => {
                let t = &rewrite.target;
                let suffix = &name[name_end(name)..];
                let name_path = format!("{}/{name_key}", site.pointer);
                if *has_registry {
                    let registry = format!("{}/registry", site.pointer);
                    ops.push(op("replace", registry, t.registry().into()));
                    let value = format!("{}{suffix}", t.repository());
                    ops.push(op("replace", name_path, value.into()));
                } else {
                    let value = format!("{}{suffix}", t.name());
                    ops.push(op("replace", name_path, value.into()));
                }
            }
        }
    }
    for (pointer, (text, mut spans)) in parts {
        spans.sort();
        let mut value = String::new();
        let mut at = 0;
        for (start, end, target) in spans {
            if start < at {
                continue; // overlapping spans cannot come from one walk; keep the first
            }
            value.push_str(&text[at..start]);
            value.push_str(&target);
            at = end;
        }
        value.push_str(&text[at..]);
        if value != text {
            ops.push(op("replace", pointer.to_string(), value.into()));
        }
    }
    ops
}

fn rewrite_for<'a>(
    image: &str,
    by_name: &HashMap<String, &'a ImageRewrite>,
) -> Option<&'a ImageRewrite> {
    let parsed = Reference::parse(image).ok()?;
    by_name.get(&parsed.name()).copied()
}

/// The image as it must be deployed: the target name with the tag/digest exactly as the
/// manifest wrote them (a bare `nginx` stays without `:latest`).
fn deployed_name(image: &str, rewrite: &ImageRewrite) -> String {
    format!("{}{}", rewrite.target.name(), &image[name_end(image)..])
}

/// Where the name part of an image string ends (at its `:tag` or `@digest`).
fn name_end(image: &str) -> usize {
    let before_digest = image.find('@').unwrap_or(image.len());
    let last_slash = image[..before_digest].rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..before_digest].find(':') {
        Some(i) => last_slash + i,
        None => before_digest,
    }
}

fn unique_file_name(obj: &BaseObject, used: &mut BTreeSet<String>) -> String {
    // Kind, name and namespace come from the manifests: each passes the sanitizer, so a
    // `kind: ../../x` cannot place the patch outside the generated directory.
    let mut stem = format!(
        "{}-{}",
        crate::names::path_component(&obj.kind),
        crate::names::path_component(&obj.name)
    );
    if let Some(ns) = &obj.namespace {
        stem.push('-');
        stem.push_str(&crate::names::path_component(ns));
    }
    let mut name = format!("{stem}.yaml");
    let mut n = 2;
    while !used.insert(name.clone()) {
        name = format!("{stem}-{n}.yaml");
        n += 1;
    }
    name
}

fn patch_entry(obj: &BaseObject, file: &str, with_namespace: bool) -> Value {
    let mut target = Mapping::new();
    let (group, version) = match obj.api_version.rsplit_once('/') {
        Some((g, v)) => (Some(g), v),
        None => (None, obj.api_version.as_str()),
    };
    if let Some(g) = group {
        target.insert("group".into(), g.into());
    }
    target.insert("version".into(), version.into());
    target.insert("kind".into(), obj.kind.as_str().into());
    target.insert("name".into(), obj.name.as_str().into());
    // Only when the name alone is ambiguous: a target without a namespace keeps matching
    // whatever namespace kustomize layers above give the object.
    if with_namespace {
        if let Some(ns) = &obj.namespace {
            target.insert("namespace".into(), ns.as_str().into());
        }
    }
    let mut entry = Mapping::new();
    entry.insert("target".into(), Value::Mapping(target));
    entry.insert("path".into(), file.into());
    Value::Mapping(entry)
}

/// `images:` entries for every spelling kustomize matches literally. They cover what the
/// operator adds in midstream on top of base; base itself is also patched at exact paths.
fn images_entries(rewrites: &[ImageRewrite]) -> Vec<Value> {
    let mut by_spelling: BTreeMap<String, String> = BTreeMap::new();
    for r in rewrites {
        for spelling in r.source.familiar_names() {
            by_spelling
                .entry(spelling)
                .or_insert_with(|| r.target.name());
        }
    }
    by_spelling
        .into_iter()
        .map(|(name, new_name)| {
            let mut m = Mapping::new();
            m.insert("name".into(), name.into());
            m.insert("newName".into(), new_name.into());
            Value::Mapping(m)
        })
        .collect()
}

/// The namespaces the written pull secret must exist in: that of every object with a
/// place for `imagePullSecrets` (`None`, no namespace, for objects without one; also when
/// nothing takes a secret, so the Secret is still written once). When the operator's
/// midstream sets `namespace:`, everything lands there: one Secret (several of the same
/// name would collide in kustomize v5).
fn secret_namespaces(base: &[BaseFile], operator_midstream: Option<&str>) -> Vec<Option<String>> {
    let forced = operator_midstream
        .and_then(|t| serde_yaml_ng::from_str::<Value>(t).ok())
        .is_some_and(|k| k.get("namespace").and_then(Value::as_str).is_some());
    if forced {
        return vec![None];
    }
    let set: BTreeSet<Option<String>> = base
        .iter()
        .flat_map(|f| &f.objects)
        .filter(|o| !o.pull_secret_sites.is_empty())
        .map(|o| o.namespace.clone())
        .collect();
    if set.is_empty() {
        vec![None]
    } else {
        set.into_iter().collect()
    }
}

/// The Secret, once per namespace in `namespaces`, as one multi-document file.
fn pull_secret_yaml(s: &PullSecret, namespaces: &[Option<String>]) -> String {
    use base64::Engine as _;
    let b64 = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
    let config = serde_json::json!({
        "auths": {
            s.registry.as_str(): {
                "username": s.username,
                "password": s.password,
                "auth": b64(format!("{}:{}", s.username, s.password).as_bytes()),
            }
        }
    });
    let mut data = Mapping::new();
    data.insert(
        ".dockerconfigjson".into(),
        b64(config.to_string().as_bytes()).into(),
    );
    let docs: Vec<String> = namespaces
        .iter()
        .map(|ns| {
            let mut meta = Mapping::new();
            meta.insert("name".into(), s.name.as_str().into());
            if let Some(ns) = ns {
                meta.insert("namespace".into(), ns.as_str().into());
            }
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Secret".into());
            m.insert("metadata".into(), Value::Mapping(meta));
            m.insert("type".into(), "kubernetes.io/dockerconfigjson".into());
            m.insert("data".into(), Value::Mapping(data.clone()));
            serde_yaml_ng::to_string(&m).expect("a mapping of strings serializes")
        })
        .collect();
    docs.join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_end_finds_tag_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(name_end("nginx"), 5);
        assert_eq!(name_end("nginx:1"), 5);
        assert_eq!(name_end("localhost:5000/a/b"), 18);
        assert_eq!(name_end("localhost:5000/a/b:1"), 18);
        assert_eq!(name_end(&format!("a/b@{d}")), 3);
        assert_eq!(name_end(&format!("a/b:1@{d}")), 3);
    }

    #[test]
    fn image_ops_change_exactly_the_references() {
        use super::super::base::ImageSite;
        use crate::discover::SiteKind;
        use crate::rewrite::{plan, Endpoint};
        let sources: Vec<Reference> = ["quay.io/org/x:1", "quay.io/org/w:2", "nginx"]
            .iter()
            .map(|s| Reference::parse(s).unwrap())
            .collect();
        let rw = plan(
            &sources,
            &Endpoint::parse("r.local:5000").unwrap(),
            Some("ns"),
            false,
        )
        .unwrap();
        let by_name: HashMap<String, &ImageRewrite> =
            rw.iter().map(|r| (r.source.name(), r)).collect();
        let site = |pointer: &str, image: &str, form| ImageSite {
            pointer: pointer.into(),
            image: image.into(),
            kind: SiteKind::Arg,
            form,
        };
        let list = "1=quay.io/org/x:1\n2=quay.io/org/gone:3\n3=quay.io/org/w:2\n";
        let part = |start, end| SiteForm::Part {
            text: list.into(),
            start,
            end,
        };
        let obj = BaseObject {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "p".into(),
            namespace: None,
            images: vec![
                site(
                    "/a",
                    "quay.io/org/x:1",
                    SiteForm::Part {
                        text: "--x-image=quay.io/org/x:1".into(),
                        start: 10,
                        end: 25,
                    },
                ),
                site("/b", "nginx", SiteForm::Whole),
                site(
                    "/c",
                    "quay.io/org/w:2",
                    SiteForm::Map {
                        has_registry: true,
                        name_key: "repository",
                        name: "org/w".into(),
                    },
                ),
                site(
                    "/d",
                    "quay.io/org/w:2",
                    SiteForm::Map {
                        has_registry: false,
                        name_key: "image",
                        name: "quay.io/org/w".into(),
                    },
                ),
                site("/e", "quay.io/org/x:1", part(2, 17)),
                site("/e", "quay.io/org/gone:3", part(20, 38)),
                site("/e", "quay.io/org/w:2", part(41, 56)),
                site("/f", "quay.io/other/y:1", SiteForm::Whole),
            ],
            pull_secret_sites: vec![],
            non_list_containers: false,
        };
        let got: Vec<(String, String)> = image_ops(&obj, &by_name)
            .into_iter()
            .map(|o| (o.path, o.value.as_str().unwrap().to_string()))
            .collect();
        let p = |path: &str, v: &str| (path.to_string(), v.to_string());
        assert_eq!(
            got,
            [
                p("/b", "r.local:5000/ns/nginx"),
                p("/c/registry", "r.local:5000"),
                p("/c/repository", "ns/w"),
                p("/d/image", "r.local:5000/ns/w"),
                p("/a", "--x-image=r.local:5000/ns/x:1"),
                p(
                    "/e",
                    "1=r.local:5000/ns/x:1\n2=quay.io/org/gone:3\n3=r.local:5000/ns/w:2\n"
                ),
            ]
        );
    }
}
