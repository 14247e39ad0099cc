//! `helm template` for one release: the chart and its values written to a private
//! temporary directory, helm run on them, and its output split back into files named after
//! the templates (`charts/<release>/templates/deployment.yaml`), with the release's
//! namespace set on objects helm left without one, as KOTS does.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

use super::binary::command;
use super::{ChartSource, Helm, HelmError, Release};
use crate::subprocess::{run, RunError};
use crate::upstream::ManifestFile;
use crate::yaml;

/// Where rendered releases go, in the app's rendered files.
pub const CHARTS_DIR: &str = "charts";
/// Namespace helm renders a release in when neither its HelmChart nor the caller names one.
const DEFAULT_NAMESPACE: &str = "default";

impl Helm {
    /// Renders `release` (its chart taken from `files`, the app as loaded) with `helm template
    /// --include-crds` (KOTS renders CRDs and hooks too). `app_namespace` is the namespace
    /// helm renders in when the HelmChart names none (KOTS uses the app's); objects keep the
    /// namespace helm gives them, and only the HelmChart's own `namespace` is added to those
    /// that have none. The documents come back as files under `charts/<release.dir>/`, one
    /// per template (`# Source:`), in helm's order.
    pub fn render(
        &self,
        files: &[ManifestFile],
        release: &Release,
        app_namespace: Option<&str>,
    ) -> Result<Vec<ManifestFile>, HelmError> {
        let chart = &release.chart;
        let io = |what: &str, source: std::io::Error| HelmError::Io {
            release: release.name.clone(),
            chart: chart.to_string(),
            what: what.to_string(),
            source,
        };
        let tmp = tempfile::Builder::new()
            .prefix("kots-bundle-helm-")
            .tempdir()
            .map_err(|e| io("creating a temporary directory", e))?;
        let chart_path =
            write_chart(tmp.path(), files, release).map_err(|e| io("writing the chart", e))?;
        let values_path = tmp.path().join("values.yaml");
        let values = serde_yaml_ng::to_string(&release.values)
            .map_err(|e| io("writing the values", std::io::Error::other(e)))?;
        std::fs::write(&values_path, values).map_err(|e| io("writing the values", e))?;
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).map_err(|e| io("creating helm's home", e))?;

        let namespace = release
            .namespace
            .as_deref()
            .or(app_namespace)
            .unwrap_or(DEFAULT_NAMESPACE);
        let mut cmd = command(self.path(), &home);
        cmd.arg("template")
            .arg(format!("--namespace={namespace}"))
            .arg("--values")
            .arg(&values_path)
            .arg("--include-crds")
            // Positional from here on: a release name can never be read as a flag.
            .arg("--")
            .arg(&release.name)
            .arg(&chart_path);
        let out = run(cmd, self.timeout(), self.max_output()).map_err(|e| match e {
            RunError::Spawn(e) => io(&format!("running {}", self.path().display()), e),
            RunError::Timeout => HelmError::Timeout {
                release: release.name.clone(),
                chart: chart.to_string(),
                doc: release.doc.clone(),
                secs: self.timeout().as_secs(),
            },
            RunError::TooLarge => HelmError::TooLarge {
                release: release.name.clone(),
                chart: chart.to_string(),
                doc: release.doc.clone(),
                limit: self.max_output(),
            },
        })?;
        if !out.status.success() {
            return Err(HelmError::Failed {
                release: release.name.clone(),
                chart: chart.to_string(),
                doc: release.doc.clone(),
                status: out.status.to_string(),
                stderr: printable(&out.stderr),
            });
        }
        if !out.stderr.trim().is_empty() {
            tracing::debug!("helm template {}: {}", release.name, out.stderr.trim());
        }
        let text = String::from_utf8(out.stdout).map_err(|_| HelmError::Output {
            release: release.name.clone(),
            chart: chart.to_string(),
            file: String::new(),
            why: "helm's output is not UTF-8".into(),
        })?;
        split_output(&text, release)
    }
}

/// helm's stderr, indented, control characters escaped (it quotes chart content).
fn printable(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .trim_end()
        .lines()
        .map(|l| {
            format!(
                "  {}",
                l.chars()
                    .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                    .collect::<String>()
            )
        })
        .collect();
    if lines.is_empty() {
        "  (helm printed nothing)".into()
    } else {
        lines.join("\n")
    }
}

/// Writes the chart into `dir`: an archive as it is, a directory file by file (its paths
/// checked by the one sanitizer). Returns the path to give helm.
fn write_chart(
    dir: &Path,
    files: &[ManifestFile],
    release: &Release,
) -> std::io::Result<std::path::PathBuf> {
    let chart = &release.chart;
    let name = crate::names::path_component(&chart.name);
    match chart.source {
        ChartSource::Archive => {
            let data = files
                .iter()
                .find(|f| f.path == chart.path)
                .map(|f| &f.data)
                .ok_or_else(|| {
                    std::io::Error::other(format!("{} is not among the app's files", chart.path))
                })?;
            let p = dir.join(format!("{name}.tgz"));
            std::fs::write(&p, data)?;
            Ok(p)
        }
        ChartSource::Directory => {
            let root = dir.join(&name);
            std::fs::create_dir(&root)?;
            for f in files.iter().filter(|f| chart.contains(&f.path)) {
                let rel = if chart.path.is_empty() {
                    f.path.as_str()
                } else {
                    &f.path[chart.path.len() + 1..]
                };
                crate::names::relative_path(rel).map_err(|why| {
                    std::io::Error::other(format!("{}: {why}", crate::names::escaped(&f.path)))
                })?;
                let to = root.join(rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&to, &f.data)?;
            }
            Ok(root)
        }
    }
}

/// helm's output as files: each document goes to the file of its `# Source:` template (the
/// chart's own name, its first component, left out), documents of one template together.
fn split_output(text: &str, release: &Release) -> Result<Vec<ManifestFile>, HelmError> {
    let bad = |file: &str, why: String| HelmError::Output {
        release: release.name.clone(),
        chart: release.chart.to_string(),
        file: crate::names::escaped(file),
        why,
    };
    let mut by_file: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for doc in yaml::yaml_documents(text) {
        if let Some(src) = doc.raw.lines().find_map(|l| l.strip_prefix("# Source: ")) {
            current = Some(src.trim().to_string());
        }
        // Documents before any `# Source:` are not helm's; none are expected.
        let source = current
            .clone()
            .unwrap_or_else(|| "rendered.yaml".to_string());
        let file = output_path(&release.dir, &source);
        crate::names::relative_path(&file).map_err(|why| bad(&source, why.to_string()))?;
        let body = match (&release.namespace, &doc.parsed) {
            (Some(ns), Ok(v)) => with_namespace(doc.raw, v, ns),
            _ => None,
        }
        .unwrap_or_else(|| doc.raw.to_string());
        let out = by_file.entry(file).or_default();
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&body);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    crate::names::check_tree(by_file.keys().map(String::as_str))
        .map_err(|(file, why)| bad(&file, why.to_string()))?;
    Ok(by_file
        .into_iter()
        .map(|(path, text)| ManifestFile {
            path,
            data: text.into_bytes(),
        })
        .collect())
}

/// `charts/<dir>/<template path without the chart's name>`, each component through the
/// sanitizer, ending in `.yaml` so every later stage reads it as YAML.
fn output_path(dir: &str, source: &str) -> String {
    let mut parts: Vec<String> = source
        .split('/')
        .skip(usize::from(source.contains('/')))
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .map(crate::names::path_component)
        .collect();
    if parts.is_empty() {
        parts.push("rendered.yaml".into());
    }
    let last = parts.last_mut().expect("not empty");
    if yaml::Format::of(last) != Some(yaml::Format::Yaml) {
        last.push_str(".yaml");
    }
    format!("{CHARTS_DIR}/{dir}/{}", parts.join("/"))
}

/// Kinds that have no namespace (as kustomize's namespace transformer, which KOTS uses,
/// knows them).
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PodSecurityPolicy",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "StorageClass",
    "SubjectAccessReview",
    "TokenReview",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// The document with `metadata.namespace: ns` when it is a namespaced object without one;
/// `None` when it is left as helm wrote it.
fn with_namespace(raw: &str, v: &Value, ns: &str) -> Option<String> {
    let kind = v.get("kind")?.as_str()?;
    v.get("apiVersion")?.as_str()?;
    if CLUSTER_SCOPED.contains(&kind) || kind == "List" || kind.ends_with("List") {
        return None;
    }
    let meta = v.get("metadata")?;
    meta.get("name")?;
    if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return None;
    }
    let mut want = v.clone();
    want.get_mut("metadata")?
        .as_mapping_mut()?
        .insert("namespace".into(), ns.into());
    // As helm wrote it plus one line, when that reads back as intended: a YAML writer would
    // drop quotes that kubectl's YAML 1.1 needs (`"on"`, `"yes"` are strings only quoted).
    if let Some(text) = insert_namespace_line(raw, ns) {
        if yaml::parse_yaml(&text, 1).is_ok_and(|got| got == want) {
            return Some(text);
        }
    }
    // Anything else (flow-style metadata, a JSON document): the document as JSON, which
    // quotes every string; its leading comments (`# Source:`) kept.
    let comments: String = raw
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    Some(format!(
        "{comments}{}\n",
        serde_json::to_string(&want).ok()?
    ))
}

/// `raw` with `namespace: "ns"` as the first key of its block-style top-level `metadata:`
/// (replacing an empty `namespace:` there), indented like the keys beside it.
fn insert_namespace_line(raw: &str, ns: &str) -> Option<String> {
    let lines: Vec<&str> = raw.split_inclusive('\n').collect();
    let content = |l: &str| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let start = lines.iter().position(|l| {
        l.trim_end()
            .strip_prefix("metadata:")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    })?;
    let end = (start + 1..lines.len())
        .find(|&i| content(lines[i]) && !lines[i].starts_with([' ', '\t']))
        .unwrap_or(lines.len());
    let first = lines[start + 1..end].iter().find(|l| content(l))?;
    let indent = &first[..first.len() - first.trim_start().len()];
    if indent.is_empty() || indent.contains('\t') {
        return None;
    }
    let line = format!("{indent}namespace: \"{ns}\"\n");
    let existing = (start + 1..end).find(|&i| {
        lines[i]
            .strip_prefix(indent)
            .is_some_and(|rest| rest.starts_with("namespace:"))
    });
    let mut out = String::with_capacity(raw.len() + line.len());
    for (i, l) in lines.iter().enumerate() {
        if Some(i) == existing {
            out.push_str(&line);
            continue;
        }
        out.push_str(l);
        if i == start && existing.is_none() {
            if !l.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::helm::Chart;

    fn release(namespace: Option<&str>) -> Release {
        Release {
            name: "web".into(),
            dir: "web".into(),
            chart: Chart {
                path: "web-1.tgz".into(),
                source: ChartSource::Archive,
                name: "web".into(),
                version: "1".into(),
            },
            namespace: namespace.map(str::to_string),
            values: Value::Null,
            doc: None,
        }
    }

    const OUTPUT: &str = "---\n# Source: web/templates/sa.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n---\n# Source: web/templates/rbac.yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: web\n---\n# Source: web/templates/rbac.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: other\n---\n# Source: web/charts/Sub/templates/NOTES.tmpl\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sub\n";

    #[test]
    fn output_is_split_by_template_and_namespaced_like_kots() {
        let files = split_output(OUTPUT, &release(Some("team"))).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "charts/web/charts/sub/templates/notes.tmpl.yaml",
                "charts/web/templates/rbac.yaml",
                "charts/web/templates/sa.yaml"
            ]
        );
        let text = |i: usize| String::from_utf8(files[i].data.clone()).unwrap();
        assert!(
            text(2).starts_with("# Source: web/templates/sa.yaml\n"),
            "{}",
            text(2)
        );
        assert!(
            text(2).contains("  namespace: \"team\"\n  name: web"),
            "{}",
            text(2)
        );
        // Cluster-scoped objects and objects with a namespace are left as helm wrote them.
        assert_eq!(
            text(1),
            "# Source: web/templates/rbac.yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: web\n---\n# Source: web/templates/rbac.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: other\n"
        );
        let plain = split_output(OUTPUT, &release(None)).unwrap();
        assert!(!String::from_utf8_lossy(&plain[2].data).contains("namespace"));
    }

    #[test]
    fn the_namespace_is_added_without_rewriting_helms_yaml() {
        let add = |raw: &str| {
            let v = yaml::parse_yaml(raw, 1).unwrap();
            with_namespace(raw, &v, "123").map(|t| (t.clone(), yaml::parse_yaml(&t, 1).unwrap()))
        };
        // Block style: one line added, everything else byte for byte (`on` stays as written).
        let raw = "# Source: web/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n    name: web\n    labels: {a: b}\ndata:\n  flag: on\n  quoted: \"yes\"\n";
        let (text, v) = add(raw).unwrap();
        assert_eq!(
            text,
            "# Source: web/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n    namespace: \"123\"\n    name: web\n    labels: {a: b}\ndata:\n  flag: on\n  quoted: \"yes\"\n"
        );
        assert_eq!(v["metadata"]["namespace"], "123");
        // An empty namespace is replaced, not doubled.
        let (text, _) = add("kind: Service\napiVersion: v1\nmetadata:\n  name: s\n  namespace:\n  labels:\n    x: y\n").unwrap();
        assert_eq!(text.matches("namespace").count(), 1, "{text}");
        // Flow style: JSON, which quotes every string.
        let (text, v) = add("# Source: a.yaml\n{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"s\"}, \"stringData\": {\"k\": \"on\"}}\n").unwrap();
        assert!(text.starts_with("# Source: a.yaml\n{"), "{text}");
        assert_eq!(
            (
                v["metadata"]["namespace"].as_str(),
                v["stringData"]["k"].as_str()
            ),
            (Some("123"), Some("on"))
        );
        // Cluster-scoped kinds and objects with a namespace: untouched.
        assert!(add("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n").is_none());
        assert!(add("apiVersion: v1\nkind: Pod\nmetadata:\n  name: n\n  namespace: x\n").is_none());
    }

    #[test]
    fn hostile_template_paths_stay_inside_the_release() {
        for (src, want) in [
            ("web/../../../etc/passwd", "charts/web/etc/passwd.yaml"),
            ("web/templates/x.yaml", "charts/web/templates/x.yaml"),
            ("lonely.yaml", "charts/web/lonely.yaml"),
            ("web/", "charts/web/rendered.yaml"),
        ] {
            assert_eq!(output_path("web", src), want);
        }
    }
}
