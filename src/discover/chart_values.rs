//! Helm charts that are not rendered: the common `image` value shapes of a chart's
//! `values.yaml` (used only when charts are not rendered by helm).

use serde_yaml_ng::Value;

use super::{is_templated, scalar_string, Location, Scanner};
use crate::yaml;

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
                    let mut path = String::new();
                    self.walk_values(file, &v, &mut path, app_version);
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

    fn walk_values(&mut self, file: &str, v: &Value, path: &mut String, app_version: Option<&str>) {
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
                        self.values_image(at, m, child, app_version);
                    }
                    self.walk_values(file, child, path, app_version);
                    path.truncate(len);
                }
            }
            Value::Sequence(items) => {
                for (i, c) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk_values(file, c, path, app_version);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// One `image:` value in chart values. Values that are not image-shaped (`image:
    /// {pullPolicy: ..}` alone, booleans) are someone else's settings: ignored.
    fn values_image(
        &mut self,
        at: Location,
        parent: &serde_yaml_ng::Mapping,
        v: &Value,
        app_version: Option<&str>,
    ) {
        match v {
            // `image: repo[:tag]`, sometimes with a sibling `imageTag:`.
            Value::String(s) if !s.is_empty() => {
                let tag = parent.get("imageTag").and_then(scalar_string);
                let s = match tag {
                    Some(t) if !s.contains(':') && !s.contains('@') && !t.is_empty() => {
                        format!("{s}:{t}")
                    }
                    _ => s.clone(),
                };
                if let Some(r) = self.check_str(false, &at, &s) {
                    self.found.add(r, at);
                }
            }
            Value::Mapping(m) => {
                let field = |k: &str| m.get(k).and_then(scalar_string).filter(|s| !s.is_empty());
                let Some(repository) = field("repository") else {
                    return;
                };
                let registry = field("registry");
                let digest = field("digest");
                let tag = field("tag").or_else(|| {
                    if digest.is_none() {
                        app_version.map(str::to_string)
                    } else {
                        None
                    }
                });
                if tag.is_none() && digest.is_none() {
                    self.found.problem(
                        at,
                        format!(
                            "image {repository:?} has no tag or digest and the chart has no \
                             appVersion; not listed (add it with --image)"
                        ),
                    );
                    return;
                }
                let mut s = match registry {
                    Some(reg) => format!("{}/{repository}", reg.trim_end_matches('/')),
                    None => repository,
                };
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(&t);
                }
                if let Some(d) = digest {
                    s.push('@');
                    s.push_str(&d);
                }
                if let Some(r) = self.check_str(false, &at, &s) {
                    self.found.add(r, at);
                }
            }
            _ => {}
        }
    }
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

    fn file(path: &str, text: &str) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            data: text.as_bytes().to_vec(),
        }
    }

    fn refs(d: &Discovery) -> Vec<String> {
        d.references().iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn helm_values_shapes() {
        let d = discover(&[
            file("chart/Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.0.0\nappVersion: \"2.5\"\n"),
            file(
                "chart/values.yaml",
                "image: {registry: ghcr.io, repository: o/app, tag: 1}\nsidecar:\n  image: {repository: bitnami/redis}\nlist:\n- image: busybox:1\nother:\n  image: {pullPolicy: Always}\nplaceholder: {image: ''}\n",
            ),
            file(
                "chart/templates/dep.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{image: '{{ .Values.image.repository }}'}]}}}\n",
            ),
        ]);
        assert_eq!(
            refs(&d),
            [
                "docker.io/bitnami/redis:2.5",
                "docker.io/library/busybox:1",
                "ghcr.io/o/app:1"
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }
}
