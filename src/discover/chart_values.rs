//! Helm charts that are not rendered (`--no-helm`): the common `image` value shapes of a
//! chart's `values.yaml`. Only complete references are listed: what the values spell out
//! whole (`image: repo:tag`, `image: {registry, repository|image, tag, digest}`, an `image:
//! repo` beside its `tag`), registry, tag and digest kept. Anything the chart's templates
//! would have to finish (a bare `image: pilot` joined to a `global.hub`, a map without a
//! tag, any image of a chart that sets a global registry) is reported, never guessed.

use serde_yaml_ng::{Mapping, Value};

use super::{is_templated, scalar_string, Location, Scanner};
use crate::yaml;

/// `global` keys whose value charts put in front of their images' own (istio's `hub`,
/// bitnami's `imageRegistry`).
const GLOBAL_REGISTRY_KEYS: [&str; 3] = ["imageRegistry", "registry", "hub"];

/// What holds for every image of one values document.
struct ValuesCtx<'a> {
    app_version: Option<&'a str>,
    /// `global.hub = docker.io/istio`, when the chart sets a global registry.
    global_registry: Option<String>,
}

impl Scanner {
    /// A chart's `values.yaml`: the common `image` value shapes at any depth.
    pub(super) fn scan_values(&mut self, file: &str, data: &[u8], app_version: Option<&str>) {
        let Ok(text) = std::str::from_utf8(data) else {
            tracing::debug!("{file}: not UTF-8, skipped");
            return;
        };
        for (i, doc) in yaml::yaml_documents(text).into_iter().enumerate() {
            let parsed = doc.parsed;
            match parsed {
                Ok(v) => {
                    let ctx = ValuesCtx {
                        app_version,
                        global_registry: global_registry(&v),
                    };
                    let mut path = String::new();
                    self.walk_values(file, &v, &mut path, &ctx);
                }
                Err(e) => self.found.problem(
                    Location {
                        file: file.to_string(),
                        path: if i > 0 {
                            format!("document {}", i + 1)
                        } else {
                            String::new()
                        },
                    },
                    format!("chart values are not valid YAML, their images are not listed: {e}"),
                ),
            }
        }
    }

    fn walk_values(&mut self, file: &str, v: &Value, path: &mut String, ctx: &ValuesCtx) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let Some(k) = k.as_str() else { continue };
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    if k == "image" {
                        let at = Location {
                            file: file.to_string(),
                            path: path.clone(),
                        };
                        self.values_image(at, m, child, ctx);
                        // An image map's own `image` key is its repository, not an image.
                        if child.is_mapping() {
                            path.truncate(len);
                            continue;
                        }
                    }
                    self.walk_values(file, child, path, ctx);
                    path.truncate(len);
                }
            }
            Value::Sequence(items) => {
                for (i, c) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk_values(file, c, path, ctx);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// One `image:` value in chart values: listed when complete, reported when the chart's
    /// templates would have to finish it. Values that are not image-shaped (`image:
    /// {pullPolicy: ..}` alone, booleans, empty strings) are someone else's settings: ignored.
    fn values_image(&mut self, at: Location, parent: &Mapping, v: &Value, ctx: &ValuesCtx) {
        let candidate = match v {
            Value::String(s) if !s.is_empty() => string_image(s, parent),
            Value::Mapping(m) => match map_image(m) {
                Some(c) => c,
                None => return,
            },
            _ => return,
        };
        let candidate = candidate.and_then(|s| match &ctx.global_registry {
            Some(g) => Err(Incomplete::Global(s, g.clone())),
            None => Ok(s),
        });
        match candidate {
            Ok(s) => {
                if let Some(r) = self.check_str(false, &at, &s) {
                    self.found.add(r, at);
                }
            }
            Err(why) => self.found.problem(
                at,
                format!(
                    "{}; not listed (render the chart with helm, or add the image with --image)",
                    why.describe(ctx.app_version)
                ),
            ),
        }
    }
}

/// Why an image value is not a reference on its own.
enum Incomplete {
    /// Neither tag nor digest (the repository as written).
    NoTag(String),
    /// A reference beside a registry value: how the templates join them is not known.
    Beside(String, String),
    /// A repository with its own tag or digest, and another one beside it.
    Twice(String),
    /// A complete value, but the chart sets a global registry its templates may use instead.
    Global(String, String),
}

impl Incomplete {
    fn describe(&self, app_version: Option<&str>) -> String {
        match self {
            Incomplete::NoTag(repo) => {
                let hint = match app_version {
                    Some(v) => format!(" (they often default it to the chart's appVersion, {v:?})"),
                    None => String::new(),
                };
                format!(
                    "image {repo:?} in chart values has no tag or digest: the chart's templates \
                     choose it{hint}"
                )
            }
            Incomplete::Beside(s, registry) => format!(
                "image {s:?} in chart values sits beside registry {registry:?}: the chart's \
                 templates join them"
            ),
            Incomplete::Twice(s) => format!(
                "image repository {s:?} in chart values has a tag or digest of its own and \
                 another beside it: the chart's templates choose"
            ),
            Incomplete::Global(s, global) => format!(
                "image {s:?} in chart values: the chart sets {global}, which its templates may \
                 put in front of its images"
            ),
        }
    }
}

/// A non-empty scalar field (`tag: 7` is a tag).
fn field(m: &Mapping, key: &str) -> Option<String> {
    m.get(key)
        .and_then(scalar_string)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A reference that carries its own tag or digest (`repo:tag`, `host:5000/repo@sha256:..`).
fn has_tag_or_digest(s: &str) -> bool {
    s.contains('@') || s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

fn join(
    registry: Option<&str>,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
) -> String {
    let mut s = match registry {
        Some(reg) => format!("{}/{repository}", reg.trim_end_matches('/')),
        None => repository.to_string(),
    };
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(d);
    }
    s
}

/// `image: repo[:tag][@digest]`, maybe beside `registry`/`hub`, `tag`/`imageTag`, `digest`.
fn string_image(s: &str, parent: &Mapping) -> Result<String, Incomplete> {
    let registry = field(parent, "registry").or_else(|| field(parent, "hub"));
    if has_tag_or_digest(s) {
        return match registry {
            Some(r) => Err(Incomplete::Beside(s.to_string(), r)),
            None => Ok(s.to_string()),
        };
    }
    let tag = field(parent, "tag").or_else(|| field(parent, "imageTag"));
    let digest = field(parent, "digest");
    if tag.is_none() && digest.is_none() {
        return Err(Incomplete::NoTag(s.to_string()));
    }
    Ok(join(
        registry.as_deref(),
        s,
        tag.as_deref(),
        digest.as_deref(),
    ))
}

/// `image: {registry, repository|image, tag, digest}`; `None` when the map is not
/// image-shaped (no repository).
fn map_image(m: &Mapping) -> Option<Result<String, Incomplete>> {
    let repository = field(m, "repository").or_else(|| field(m, "image"))?;
    let registry = field(m, "registry");
    let tag = field(m, "tag");
    let digest = field(m, "digest");
    if has_tag_or_digest(&repository) {
        return Some(if tag.is_some() || digest.is_some() {
            Err(Incomplete::Twice(repository))
        } else {
            Ok(join(registry.as_deref(), &repository, None, None))
        });
    }
    if tag.is_none() && digest.is_none() {
        return Some(Err(Incomplete::NoTag(join(
            registry.as_deref(),
            &repository,
            None,
            None,
        ))));
    }
    Some(Ok(join(
        registry.as_deref(),
        &repository,
        tag.as_deref(),
        digest.as_deref(),
    )))
}

/// `global.hub = docker.io/istio` when the values set one of [`GLOBAL_REGISTRY_KEYS`].
fn global_registry(v: &Value) -> Option<String> {
    let global = v.get("global")?.as_mapping()?;
    GLOBAL_REGISTRY_KEYS
        .iter()
        .find_map(|k| field(global, k).map(|val| format!("global.{k} = {val}")))
}

pub(super) fn chart_app_version(data: &[u8]) -> Option<String> {
    let v: Value = serde_yaml_ng::from_slice(data).ok()?;
    v.get("appVersion")
        .and_then(scalar_string)
        .filter(|s| !s.is_empty() && !is_templated(s))
}

#[cfg(test)]
mod tests {
    use super::super::{discover, Discovery};
    use crate::upstream::ManifestFile;

    fn refs(d: &Discovery) -> Vec<String> {
        d.references().iter().map(|r| r.to_string()).collect()
    }

    fn problems(d: &Discovery) -> Vec<String> {
        d.problems.iter().map(|p| p.to_string()).collect()
    }

    fn chart(values: &str) -> Discovery {
        discover(&[
            ManifestFile::text(
                "chart/Chart.yaml",
                "apiVersion: v2\nname: c\nversion: 1.0.0\nappVersion: \"2.5\"\n",
            ),
            ManifestFile::text("chart/values.yaml", values),
            ManifestFile::text(
                "chart/templates/dep.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{image: '{{ .Values.image.repository }}'}]}}}\n",
            ),
        ])
    }

    #[test]
    fn complete_values_are_listed_with_registry_tag_and_digest() {
        let dg = format!("sha256:{}", "a".repeat(64));
        let d = chart(&format!(
            "image: {{registry: ghcr.io, repository: o/app, tag: 1}}\nlist:\n- image: busybox:1\nother:\n  image: {{pullPolicy: Always}}\nplaceholder: {{image: ''}}\nplain: {{image: nginx, tag: '1.25'}}\npinned: {{image: {{repository: quay.io/o/p, digest: '{dg}'}}}}\n"
        ));
        assert_eq!(
            refs(&d),
            [
                "docker.io/library/busybox:1",
                "docker.io/library/nginx:1.25",
                "ghcr.io/o/app:1",
                &format!("quay.io/o/p@{dg}"),
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn ingress_nginx_shape_keeps_registry_tag_and_digest() {
        let dg = format!("sha256:{}", "e".repeat(64));
        let d = chart(&format!(
            "controller:\n  image:\n    chroot: false\n    registry: registry.k8s.io\n    image: ingress-nginx/controller\n    tag: \"v1.9.4\"\n    digest: {dg}\n    digestChroot: sha256:{}\n    pullPolicy: IfNotPresent\ndefaultBackend:\n  image: {{registry: registry.k8s.io, image: defaultbackend-amd64, tag: \"1.5\"}}\n",
            "f".repeat(64)
        ));
        assert_eq!(
            refs(&d),
            [
                "registry.k8s.io/defaultbackend-amd64:1.5",
                &format!("registry.k8s.io/ingress-nginx/controller:v1.9.4@{dg}"),
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn istio_hub_shape_is_reported_not_guessed() {
        let d = chart("global:\n  hub: docker.io/istio\n  tag: 1.20.0\n  proxy:\n    image: proxyv2\npilot:\n  image: pilot\n");
        assert!(d.images.is_empty(), "{:?}", refs(&d));
        let p = problems(&d);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("chart/values.yaml: global.proxy.image: image \"proxyv2\" in chart values has no tag or digest"), "{}", p[0]);
        assert!(
            p[1].starts_with("chart/values.yaml: pilot.image: image \"pilot\""),
            "{}",
            p[1]
        );
        assert!(
            p[1].ends_with(
                "not listed (render the chart with helm, or add the image with --image)"
            ),
            "{}",
            p[1]
        );
    }

    #[test]
    fn what_templates_would_finish_is_reported() {
        // No tag (the templates may use appVersion, which is said, not assumed).
        let d = chart("sidecar:\n  image: {repository: bitnami/redis}\n");
        assert!(d.images.is_empty());
        assert!(problems(&d)[0].contains("\"bitnami/redis\" in chart values has no tag or digest: the chart's templates choose it (they often default it to the chart's appVersion, \"2.5\")"), "{:?}", problems(&d));
        // A global registry may replace any image's own (bitnami's global.imageRegistry).
        let d = chart("global: {imageRegistry: my.registry}\nimage: {registry: docker.io, repository: bitnami/mongodb, tag: '4.2'}\n");
        assert!(d.images.is_empty());
        assert!(
            problems(&d)[0].contains("the chart sets global.imageRegistry = my.registry"),
            "{:?}",
            problems(&d)
        );
        // An empty global registry (bitnami's default) changes nothing.
        let d = chart("global: {imageRegistry: ''}\nimage: {registry: docker.io, repository: bitnami/mongodb, tag: '4.2'}\n");
        assert_eq!(refs(&d), ["docker.io/bitnami/mongodb:4.2"]);
        // A reference beside a registry, and a repository with two tags.
        let d = chart("a: {registry: quay.io, image: 'x/y:1'}\nb:\n  image: {repository: 'x/z:1', tag: '2'}\n");
        assert!(d.images.is_empty());
        let p = problems(&d);
        assert!(
            p[0].contains("sits beside registry \"quay.io\"")
                && p[1].contains("has a tag or digest of its own"),
            "{p:?}"
        );
    }
}
