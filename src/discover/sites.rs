//! Where images sit inside one Kubernetes object: the `image` of every container-list item
//! (pod specs, required), and what operators pull that no pod spec names (candidates): a
//! string or an `image:` map under a key named `image` anywhere, container args and env
//! values: every word that is a full reference, or `KEY=REF` (`--flag=REF`, `--flag REF`
//! as two items, `4.2.0=REF` lines, `--images=A,B`), and the whole value of `RELATED_IMAGE_*`.
//!
//! One walk serves both stages, so what the overlay rewrites is exactly what discovery
//! found: discovery turns each [`Site`] into a reference and a display path, the overlay
//! into a JSON pointer and a patch.
//!
//! Args and env values are free text, so only a *full* reference counts there: a registry
//! host (with a `.` or a port), a path, and a tag or digest ([`is_full_reference`]). URLs,
//! file paths, `host:port` addresses and plain words never become images.

use std::fmt::Write as _;

use serde_yaml_ng::{Mapping, Value};

use super::CONTAINER_LISTS;
use crate::reference::Reference;

/// Lists of a container whose items are command-line words.
const ARG_LISTS: [&str; 2] = ["args", "command"];
/// Env names that the Operator Lifecycle Manager convention reserves for images.
const RELATED_IMAGE_PREFIX: &str = "RELATED_IMAGE_";

/// What kind of place an image was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// The `image` of a `containers`/`initContainers`/`ephemeralContainers` item: required.
    Container,
    /// A string under a key named `image` outside container lists (`Prometheus.spec.image`).
    Image,
    /// A map under a key named `image`: `{registry?, repository|image, tag?, digest?}`.
    ImageMap,
    /// A full reference in a container argument (`--flag=REF`, or a word that is one).
    Arg,
    /// A container env value (`RELATED_IMAGE_*`), or a full reference in one.
    Env,
}

impl SiteKind {
    /// Found outside a pod spec: mirrored only once its registry confirms it.
    pub fn is_candidate(self) -> bool {
        self != SiteKind::Container
    }
}

/// One step of a path from the object's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// What a site holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SiteValue<'a> {
    /// The string at the path; the reference is `text[start..end]` (all of it, or one
    /// word of an arg or env value: `REF` of `--flag=REF`). One string may hold several.
    Str {
        text: &'a str,
        start: usize,
        end: usize,
    },
    /// A complete `image:` map.
    Map(ImageMap),
    /// An `image:` map that does not say which image (no tag or digest): reported, not guessed.
    Incomplete(String),
    /// Not a string (null, a number, a list): only for [`SiteKind::Container`].
    NotString(&'a Value),
}

/// An `image:` map, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageMap {
    /// Whether the map has its own `registry` field (rewritten to the private registry).
    pub has_registry: bool,
    /// `repository` or `image`: the field that names the repository.
    pub name_key: &'static str,
    /// That field's value as written.
    pub name: String,
    /// The whole reference the fields make: `[registry/]name[:tag][@digest]`.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site<'a> {
    pub path: Vec<Seg<'a>>,
    pub kind: SiteKind,
    pub value: SiteValue<'a>,
}

impl Site<'_> {
    /// `spec.template.spec.containers[0].args[2]`
    pub fn display_path(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }

    /// RFC 6901: `/spec/template/spec/containers/0/args/2`.
    pub fn pointer(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            s.push('/');
            match seg {
                Seg::Key(k) => s.push_str(&escape_pointer(k)),
                Seg::Index(i) => {
                    let _ = write!(s, "{i}");
                }
            }
        }
        s
    }

    /// The reference text the site holds, when it holds one (a string or a complete map).
    pub fn reference_text(&self) -> Option<&str> {
        match &self.value {
            SiteValue::Str { text, start, end } => Some(&text[*start..*end]),
            SiteValue::Map(m) => Some(&m.reference),
            SiteValue::Incomplete(_) | SiteValue::NotString(_) => None,
        }
    }
}

/// RFC 6901: `~` -> `~0`, `/` -> `~1`.
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every image site of `obj` (a Kubernetes object, or a `List` of them), in document order.
/// Candidates are not looked for in KOTS and troubleshoot kinds (their images are read by
/// kind, and their values are templates) nor in CRDs (schemas, not images).
pub(crate) fn sites(obj: &Value) -> Vec<Site<'_>> {
    let mut w = Walker {
        out: Vec::new(),
        path: Vec::new(),
    };
    w.walk(obj, true);
    w.out
}

struct Walker<'a> {
    out: Vec<Site<'a>>,
    path: Vec<Seg<'a>>,
}

impl<'a> Walker<'a> {
    fn push(&mut self, last: &[Seg<'a>], kind: SiteKind, value: SiteValue<'a>) {
        let mut path = self.path.clone();
        path.extend_from_slice(last);
        self.out.push(Site { path, kind, value });
    }

    fn walk(&mut self, v: &'a Value, candidates: bool) {
        match v {
            Value::Mapping(m) => self.walk_map(m, candidates, false),
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.walk(item, candidates);
                    self.path.pop();
                }
            }
            Value::Tagged(t) => self.walk(&t.value, candidates),
            _ => {}
        }
    }

    /// `container`: `m` is an item of a container list (its `image` is already taken).
    fn walk_map(&mut self, m: &'a Mapping, candidates: bool, container: bool) {
        let candidates = candidates && !holds_no_candidates(m);
        for (k, child) in m {
            let Some(key) = k.as_str() else { continue };
            if container && key == "image" {
                continue;
            }
            self.path.push(Seg::Key(key));
            if CONTAINER_LISTS.contains(&key) {
                if let Value::Sequence(items) = untag(child) {
                    self.container_list(items, candidates);
                    self.path.pop();
                    continue;
                }
            }
            if key == "image" && candidates {
                match untag(child) {
                    Value::String(s) => {
                        self.push(&[], SiteKind::Image, whole(s));
                        self.path.pop();
                        continue;
                    }
                    Value::Mapping(im) if image_map_name(im).is_some() => {
                        self.push(&[], SiteKind::ImageMap, read_image_map(im));
                        self.path.pop();
                        continue;
                    }
                    _ => {}
                }
            }
            self.walk(child, candidates);
            self.path.pop();
        }
        if candidates && (container || m.get("image").is_some_and(Value::is_string)) {
            self.container_words(m);
        }
    }

    fn container_list(&mut self, items: &'a [Value], candidates: bool) {
        for (i, item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            if let Value::Mapping(c) = untag(item) {
                if let Some(img) = c.get("image") {
                    let value = match untag(img) {
                        Value::String(s) => whole(s),
                        other => SiteValue::NotString(other),
                    };
                    self.push(&[Seg::Key("image")], SiteKind::Container, value);
                }
                self.walk_map(c, candidates, true);
            } else {
                self.walk(item, candidates);
            }
            self.path.pop();
        }
    }

    /// A container's (or container-like map's) `args`, `command` and `env`.
    fn container_words(&mut self, c: &'a Mapping) {
        for list in ARG_LISTS {
            let Some(Value::Sequence(words)) = c.get(list).map(untag) else {
                continue;
            };
            for (i, w) in words.iter().enumerate() {
                let Some(text) = untag(w).as_str() else {
                    continue;
                };
                for (start, end) in references_in(text) {
                    let value = SiteValue::Str { text, start, end };
                    self.push(&[Seg::Key(list), Seg::Index(i)], SiteKind::Arg, value);
                }
            }
        }
        let Some(Value::Sequence(env)) = c.get("env").map(untag) else {
            return;
        };
        for (i, e) in env.iter().enumerate() {
            let name = e.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(text) = e.get("value").map(untag).and_then(Value::as_str) else {
                continue;
            };
            let at = [Seg::Key("env"), Seg::Index(i), Seg::Key("value")];
            if name.starts_with(RELATED_IMAGE_PREFIX) {
                if !text.is_empty() {
                    self.push(&at, SiteKind::Env, whole(text));
                }
                continue;
            }
            for (start, end) in references_in(text) {
                let value = SiteValue::Str { text, start, end };
                self.push(&at, SiteKind::Env, value);
            }
        }
    }
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn whole(s: &str) -> SiteValue<'_> {
    SiteValue::Str {
        text: s,
        start: 0,
        end: s.len(),
    }
}

/// KOTS and troubleshoot objects (their images are read by kind; their values are
/// templates for charts), and CRDs (a schema's `image` property is not an image).
fn holds_no_candidates(m: &Mapping) -> bool {
    let (Some(kind), Some(api)) = (
        m.get("kind").and_then(Value::as_str),
        m.get("apiVersion").and_then(Value::as_str),
    ) else {
        return false;
    };
    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
    (kind == "CustomResourceDefinition" && group == "apiextensions.k8s.io")
        || ["kots.io", "troubleshoot.sh", "troubleshoot.replicated.com"]
            .iter()
            .any(|g| group == *g || group.ends_with(&format!(".{g}")))
}

/// The full references in an arg or env value, as byte ranges: every word (split at
/// whitespace and commas, quotes trimmed) that is one, or that is `KEY=REF` with a plain
/// key (`--x-image=REF`, `-y=REF`, `4.2.0=REF` in a list of versions and their images).
fn references_in(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, ch) in text.char_indices().chain([(text.len(), ' ')]) {
        if !(ch.is_whitespace() || ch == ',') {
            continue;
        }
        let (s, e) = trim_quotes(text, start, i);
        start = i + ch.len_utf8();
        let word = &text[s..e];
        if word.is_empty() {
            continue;
        }
        if is_full_reference(word) {
            out.push((s, e));
        } else if let Some((key, value)) = word.split_once('=') {
            let plain_key = !key.trim_start_matches('-').is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if plain_key && is_full_reference(value) {
                out.push((s + key.len() + 1, e));
            }
        }
    }
    out
}

/// `text[s..e]` without the quotes around it (shell words in a `command`).
fn trim_quotes(text: &str, mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && matches!(text.as_bytes()[s], b'"' | b'\'') {
        s += 1;
    }
    while e > s && matches!(text.as_bytes()[e - 1], b'"' | b'\'') {
        e -= 1;
    }
    (s, e)
}

/// A reference nobody would write by accident: `host.name[:port]/path:tag` or
/// `...@sha256:...`, where the host has a `.` or a port. `nginx`, `quay.io/a/b` (no tag),
/// `svc.ns:9090`, `https://...`, `/etc/x.yaml:1` and `kube-system/kubelet` are not.
pub(crate) fn is_full_reference(s: &str) -> bool {
    if s.contains("://") || s.contains(char::is_whitespace) {
        return false;
    }
    let Some((host, rest)) = s.split_once('/') else {
        return false;
    };
    if !(host.contains('.') || host.contains(':')) || rest.is_empty() {
        return false;
    }
    let name = rest.split('@').next().unwrap_or(rest);
    let last = name.rsplit('/').next().unwrap_or(name);
    if !(last.contains(':') || s.contains('@')) {
        return false;
    }
    Reference::parse(s).is_ok()
}

/// The field of an `image:` map that names the repository, if it is one.
fn image_map_name(m: &Mapping) -> Option<(&'static str, &str)> {
    ["repository", "image"].into_iter().find_map(|k| {
        m.get(k)
            .map(untag)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| (k, s))
    })
}

fn scalar(m: &Mapping, key: &str) -> Option<String> {
    match m.get(key).map(untag)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read_image_map(m: &Mapping) -> SiteValue<'_> {
    let (name_key, name) = image_map_name(m).expect("checked by the caller");
    let registry = scalar(m, "registry");
    let tag = scalar(m, "tag");
    let digest = scalar(m, "digest");
    let last = name.rsplit('/').next().unwrap_or(name);
    let name_pinned = last.contains(':') || name.contains('@');
    if tag.is_none() && digest.is_none() && !name_pinned {
        return SiteValue::Incomplete(format!(
            "image map names {name:?} without a tag or digest, so which image it means is \
             up to the program that reads it; not listed (add it with --image)"
        ));
    }
    let mut reference = match &registry {
        Some(r) => format!("{}/{name}", r.trim_end_matches('/')),
        None => name.to_string(),
    };
    if let Some(t) = &tag {
        reference.push(':');
        reference.push_str(t);
    }
    if let Some(d) = &digest {
        reference.push('@');
        reference.push_str(d);
    }
    SiteValue::Map(ImageMap {
        has_registry: m.contains_key("registry"),
        name_key,
        name: name.to_string(),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    fn summary(v: &Value) -> Vec<(String, SiteKind, String)> {
        sites(v)
            .iter()
            .map(|s| {
                (
                    s.display_path(),
                    s.kind,
                    s.reference_text().unwrap_or("-").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn full_references_only() {
        for yes in [
            "quay.io/prometheus/prometheus:v2.50.0",
            "localhost:5000/a:1",
            "registry.example.com:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "gcr.io/x/y:1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(is_full_reference(yes), "{yes}");
        }
        for no in [
            "nginx:1",
            "quay.io/a/b",
            "docker.io/library/nginx",
            "prometheus.monitoring.svc:9090",
            "alertmanager.monitoring.svc:9093/api",
            "https://quay.io/a/b:1",
            "/etc/config.yaml",
            "kube-system/kubelet",
            "info",
            "",
            ":8080",
            "quay.io/a/b:1 --other",
            "example.com/path?q=1:2",
            "Quay.io/A/B:1",
        ] {
            assert!(!is_full_reference(no), "{no}");
        }
        fn refs(t: &str) -> Vec<&str> {
            references_in(t).iter().map(|&(s, e)| &t[s..e]).collect()
        }
        assert_eq!(refs("--x-image=quay.io/a/b:1"), ["quay.io/a/b:1"]);
        assert_eq!(references_in("--x-image=quay.io/a/b:1"), [(10, 23)]);
        assert_eq!(refs("-y=quay.io/a/b:1"), ["quay.io/a/b:1"]);
        assert_eq!(refs("quay.io/a/b:1"), ["quay.io/a/b:1"]);
        assert_eq!(
            refs("4.2.0=quay.io/s/kafka:k-4.2.0\n4.3.0=quay.io/s/kafka:k-4.3.0\n"),
            ["quay.io/s/kafka:k-4.2.0", "quay.io/s/kafka:k-4.3.0"]
        );
        assert_eq!(
            refs("--images=a.io/x:1,b.io/y:2 --z 'c.io/z:3'"),
            ["a.io/x:1", "b.io/y:2", "c.io/z:3"]
        );
        assert!(refs("--url=https://quay.io/a/b:1").is_empty());
        assert!(refs("http://h.io/p?x=quay.io/a/b:1").is_empty());
        assert!(refs("=quay.io/a/b:1").is_empty());
        assert!(refs("--=quay.io/a/b:1").is_empty());
        assert!(refs("--log-level=info").is_empty());
        assert!(refs("--config=/etc/a.yaml").is_empty());
        assert!(refs("--listen=0.0.0.0:8080 --peer=a.b.svc:9094").is_empty());
        assert!(refs("").is_empty());
    }

    #[test]
    fn containers_args_env_and_image_keys() {
        let v = doc(r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: op}
spec:
  template:
    spec:
      containers:
      - name: op
        image: quay.io/org/op:v1
        args: ["--x-image=quay.io/org/x:v1", "--y-image", "quay.io/org/y:v1", "--port=8080", "--url=http://a.b/c:1"]
        env:
        - {name: RELATED_IMAGE_Z, value: "z:1"}
        - {name: OTHER, value: "quay.io/org/w:v2"}
        - {name: HOST, value: "svc.ns:9090"}
        - {name: RELATED_IMAGE_EMPTY, value: ""}
"#);
        assert_eq!(
            summary(&v),
            [
                (
                    "spec.template.spec.containers[0].image".into(),
                    SiteKind::Container,
                    "quay.io/org/op:v1".into()
                ),
                (
                    "spec.template.spec.containers[0].args[0]".into(),
                    SiteKind::Arg,
                    "quay.io/org/x:v1".into()
                ),
                (
                    "spec.template.spec.containers[0].args[2]".into(),
                    SiteKind::Arg,
                    "quay.io/org/y:v1".into()
                ),
                (
                    "spec.template.spec.containers[0].env[0].value".into(),
                    SiteKind::Env,
                    "z:1".into()
                ),
                (
                    "spec.template.spec.containers[0].env[1].value".into(),
                    SiteKind::Env,
                    "quay.io/org/w:v2".into()
                ),
            ]
        );
        let s = &sites(&v)[1];
        assert_eq!(s.pointer(), "/spec/template/spec/containers/0/args/0");
        assert!(matches!(s.value, SiteValue::Str { start: 10, .. }));
    }

    #[test]
    fn custom_resources_image_strings_and_maps() {
        let v = doc(r#"
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: k8s, annotations: {"a/b": c}}
spec:
  image: quay.io/prometheus/prometheus:v2.50.0
  thanos: {image: 'quay.io/thanos/thanos:v0.34.0'}
  sidecar: {image: {registry: quay.io, repository: org/side, tag: 7}}
  other: {image: {repository: "quay.io/org/pinned", digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}}
  partial: {image: {repository: quay.io/org/partial, pullPolicy: Always}}
  schema: {image: {type: string}}
  empty: {image: ""}
  containers: [{name: c, image: "quay.io/org/c:1"}]
"#);
        let got = summary(&v);
        assert_eq!(
            got,
            [
                ("spec.image".into(), SiteKind::Image, "quay.io/prometheus/prometheus:v2.50.0".into()),
                ("spec.thanos.image".into(), SiteKind::Image, "quay.io/thanos/thanos:v0.34.0".into()),
                ("spec.sidecar.image".into(), SiteKind::ImageMap, "quay.io/org/side:7".into()),
                ("spec.other.image".into(), SiteKind::ImageMap, "quay.io/org/pinned@sha256:0000000000000000000000000000000000000000000000000000000000000000".into()),
                ("spec.partial.image".into(), SiteKind::ImageMap, "-".into()),
                ("spec.empty.image".into(), SiteKind::Image, "".into()),
                ("spec.containers[0].image".into(), SiteKind::Container, "quay.io/org/c:1".into()),
            ]
        );
        let all = sites(&v);
        match &all[2].value {
            SiteValue::Map(m) => {
                assert!(m.has_registry);
                assert_eq!((m.name_key, m.name.as_str()), ("repository", "org/side"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(all[4].value, SiteValue::Incomplete(_)));
    }

    #[test]
    fn no_candidates_in_crds_and_kots_kinds() {
        let crd = doc("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\nspec:\n  versions:\n  - schema:\n      openAPIV3Schema:\n        properties:\n          image: {type: string, default: 'quay.io/a/b:1'}\n          containers: {type: array}\n");
        assert!(sites(&crd).is_empty());
        let helm = doc("apiVersion: kots.io/v1beta2\nkind: HelmChart\nmetadata: {name: h}\nspec:\n  values:\n    image: 'repl{{ LocalImageName \"x\" }}'\n");
        assert!(sites(&helm).is_empty());
        // A List's items are each judged on their own.
        let list = doc("apiVersion: v1\nkind: List\nitems:\n- apiVersion: example.com/v1\n  kind: W\n  metadata: {name: w}\n  spec: {image: 'quay.io/a/w:1'}\n");
        assert_eq!(
            summary(&list),
            [(
                "items[0].spec.image".into(),
                SiteKind::Image,
                "quay.io/a/w:1".into()
            )]
        );
    }

    #[test]
    fn container_like_maps_get_args_and_env_read() {
        // Argo Workflows, Tekton steps: a map with an `image` string is a container.
        let v = doc("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  templates:\n  - container:\n      image: 'alpine:3'\n      args: ['--helper=ghcr.io/a/h:2']\n");
        assert_eq!(
            summary(&v),
            [
                (
                    "spec.templates[0].container.image".into(),
                    SiteKind::Image,
                    "alpine:3".into()
                ),
                (
                    "spec.templates[0].container.args[0]".into(),
                    SiteKind::Arg,
                    "ghcr.io/a/h:2".into()
                ),
            ]
        );
    }
}
