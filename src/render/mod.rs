//! Rendering: what KOTS does between `upstream/` and `base/`. The Go-template engine with
//! KOTS's delimiters and functions ([`template`]), the app's `kind: Config` and the operator's
//! answers ([`config`]), the customer's license ([`crate::license`]), and Helm charts rendered by a
//! real helm ([`helm`]).
//!
//! [`render`] is the stage: it takes the app's files as shipped and returns its documents as
//! they deploy: every YAML/JSON file through both template passes, documents excluded by
//! `kots.io/exclude`/`kots.io/when` (or that do not parse) left out, and every chart
//! replaced by what `helm template` makes of it. Discovery and the overlay read only this.

pub mod config;
pub mod helm;
pub mod kustomize;
pub mod template;

use std::path::PathBuf;
use std::sync::Arc;

use serde_yaml_ng::Value;

use crate::license::License;
use crate::upstream::ManifestFile;
use crate::yaml;
use config::{Config, ConfigValues};
use template::{Context, LocalRegistry};

/// How an app's Helm charts are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charts {
    /// With a real helm: `--helm PATH`, else `helm` on PATH.
    Helm(Option<PathBuf>),
    /// `--no-helm`: charts are not rendered. Their files are handed to discovery as they are
    /// (value heuristics) and nothing of them deploys.
    NotRendered,
}

/// What a render needs besides the files.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `Airgap` for export (values + builder, to find every image), `Install` for what
    /// deploys (import, pull, template).
    pub mode: helm::Mode,
    /// The app's name: `ImagePullSecretName` is `<app>-registry`.
    pub app: String,
    pub version: Option<String>,
    /// `--config-values`.
    pub answers: Option<ConfigValues>,
    /// What the last install saved (generated values and earlier answers).
    pub saved: Option<ConfigValues>,
    pub license: Option<Arc<License>>,
    /// The destination the registry functions see (`None` for export).
    pub local_registry: Option<LocalRegistry>,
    /// The namespace the app deploys to (`--namespace`).
    pub namespace: Option<String>,
    pub image_pull_secret: Option<String>,
    pub charts: Charts,
}

/// The app as it deploys.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Rendered documents, per file (sorted by path): the app's YAML/JSON files (KOTS and
    /// troubleshoot kinds included, excluded documents left out) and each chart's output
    /// under `charts/<release>/`.
    pub files: Vec<ManifestFile>,
    /// With [`Charts::NotRendered`]: the chart files as shipped, for discovery's heuristics.
    pub unrendered_charts: Vec<ManifestFile>,
    /// Config values to keep for the next render (answers and generated values).
    pub to_save: ConfigValues,
}

impl Rendered {
    /// What discovery reads: the documents, and unrendered charts when there are any.
    pub fn for_discovery(&self) -> Vec<ManifestFile> {
        let mut all = self.files.clone();
        all.extend(self.unrendered_charts.iter().cloned());
        all
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Helm(#[from] helm::HelmError),
    #[error(transparent)]
    Kustomize(#[from] kustomize::KustomizeError),
}

/// apiVersion groups that configure KOTS or troubleshoot; a cluster has no use for them
/// (and usually no CRDs for them either).
const KOTS_GROUPS: &[&str] = &["kots.io", "troubleshoot.sh", "troubleshoot.replicated.com"];

/// Whether a document of `api_version` configures KOTS or troubleshoot rather than deploys.
pub fn configures_kots(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KOTS_GROUPS
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")))
}

/// Renders the app's `files` (as [`crate::upstream`] loads them). Problems that leave a
/// document out (it does not parse) are warnings; a template that cannot be rendered, a
/// config that cannot be resolved or a chart helm refuses is an error naming the file.
pub fn render(files: &[ManifestFile], inputs: &Inputs) -> Result<Rendered, RenderError> {
    let charts = helm::find_charts(files)?;
    let chart_paths = helm::chart_files(files, &charts);
    let plain: Vec<&ManifestFile> = files
        .iter()
        .filter(|f| !chart_paths.contains(&f.path))
        .collect();

    let mut ctx = Context {
        license: inputs.license.clone(),
        local_registry: inputs.local_registry.clone(),
        namespace: inputs.namespace.clone().unwrap_or_default(),
        app_slug: inputs.app.clone(),
        image_pull_secret: inputs.image_pull_secret.clone(),
        version: Some(template::VersionInfo {
            sequence: -1,
            version_label: inputs.version.clone().unwrap_or_default(),
            is_airgap: true,
            ..template::VersionInfo::default()
        }),
        ..Context::default()
    };
    let app_config = find_config(&plain)?;
    let resolve = match inputs.mode {
        // Before the operator answers, required items render empty (said once).
        helm::Mode::Airgap => config::resolve_allowing_missing,
        helm::Mode::Install => config::resolve,
    };
    let resolved = resolve(
        app_config.as_ref(),
        inputs.answers.as_ref(),
        inputs.saved.as_ref(),
        &ctx,
    )?;
    if !resolved.missing.is_empty() {
        let names: Vec<&str> = resolved.missing.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(
            "required config items without a value render empty here: {}",
            names.join(", ")
        );
    }
    ctx.config = resolved.values;

    // The operator picks at install: an airgap bundle carries the images of every option,
    // so documents are excluded only when rendering for an install.
    let exclude = inputs.mode == helm::Mode::Install;
    let mut out = Vec::new();
    for f in &plain {
        if let Some(r) = render_file(f, &ctx, exclude)? {
            out.push(r);
        }
    }
    // The vendor's own kustomizations decide what deploys from their directories.
    let vendor = kustomize::Vendor::find(&plain)?;
    if !vendor.is_empty() {
        out = vendor.build(&plain, out)?;
    }

    let mut unrendered_charts = Vec::new();
    if charts.is_empty() {
        for doc in helm::find_helm_chart_docs(files) {
            crate::warnings::warn(format_args!(
                "{}: the app ships no Helm chart, so nothing of it deploys",
                doc.label()
            ));
        }
    } else {
        match &inputs.charts {
            Charts::NotRendered => {
                crate::warnings::warn(helm::no_helm_note(&charts));
                unrendered_charts = files
                    .iter()
                    .filter(|f| chart_paths.contains(&f.path))
                    .cloned()
                    .collect();
            }
            Charts::Helm(explicit) => {
                out.extend(render_charts(
                    files,
                    &charts,
                    &out,
                    explicit.as_deref(),
                    inputs,
                    &ctx,
                )?);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Rendered {
        files: out,
        unrendered_charts,
        to_save: resolved.to_save,
    })
}

/// Every chart rendered by helm, its output through the template pass and exclusions too.
fn render_charts(
    files: &[ManifestFile],
    charts: &[helm::Chart],
    rendered: &[ManifestFile],
    explicit: Option<&std::path::Path>,
    inputs: &Inputs,
    ctx: &Context,
) -> Result<Vec<ManifestFile>, RenderError> {
    let Some(helm_bin) = helm::Helm::for_charts(explicit, charts)? else {
        return Ok(Vec::new());
    };
    // Airgap reads each HelmChart as shipped (its templated values left out); Install reads
    // it after the template pass (the operator's answers in its values, `when`, `exclude`).
    let docs = match inputs.mode {
        helm::Mode::Airgap => helm::find_helm_chart_docs(files),
        helm::Mode::Install => helm::find_helm_chart_docs(rendered)
            .into_iter()
            .map(|d| helm::HelmChartDoc {
                rendered: Some(d.raw.clone()),
                ..d
            })
            .collect(),
    };
    let releases = helm::releases(charts, &docs, inputs.mode)?;
    let mut out = Vec::new();
    for release in &releases {
        let docs = helm_bin.render(files, release, inputs.namespace.as_deref())?;
        for f in &docs {
            if let Some(r) = render_file(f, ctx, inputs.mode == helm::Mode::Install)? {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The app's `kind: Config` among `files` (the app's files as shipped), if it has one.
pub fn app_config(files: &[ManifestFile]) -> Result<Option<Config>, RenderError> {
    find_config(&files.iter().collect::<Vec<_>>())
}

/// The app's `kind: Config` (the first one; KOTS reads one).
fn find_config(files: &[&ManifestFile]) -> Result<Option<Config>, RenderError> {
    let mut found: Option<(String, Config)> = None;
    for f in files {
        let Some(format) = yaml::Format::of(&f.path) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&f.data) else {
            continue;
        };
        if !text.contains("Config") {
            continue;
        }
        for doc in yaml::documents(text, format) {
            let Ok(v) = doc.parsed else { continue };
            let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if v.get("kind").and_then(Value::as_str) != Some("Config")
                || !api.starts_with("kots.io/")
            {
                continue;
            }
            match &found {
                None => found = Some((f.path.clone(), Config::from_document(&v)?)),
                Some((first, _)) => crate::warnings::warn(format_args!(
                    "{}: a second kots.io Config; only the one in {first} is used",
                    f.path
                )),
            }
        }
    }
    Ok(found.map(|(_, c)| c))
}

/// One file through both template passes, then split into documents: those that do not
/// parse (reported, when they look like Kubernetes manifests) and, with `exclude`, those
/// excluded by annotation are left out. `None` when nothing is left, or the file is not
/// YAML/JSON.
fn render_file(
    f: &ManifestFile,
    ctx: &Context,
    exclude: bool,
) -> Result<Option<ManifestFile>, RenderError> {
    let Some(format) = yaml::Format::of(&f.path) else {
        return Ok(None);
    };
    let Ok(text) = std::str::from_utf8(&f.data) else {
        tracing::debug!(file = %f.path, "not UTF-8; not rendered");
        return Ok(None);
    };
    let text = template::render(&f.path, text, ctx)?;
    let docs = yaml::documents(&text, format);
    let total = docs.len();
    let mut kept: Vec<&str> = Vec::new();
    for doc in &docs {
        match &doc.parsed {
            Ok(v) if exclude && excluded(v) => {
                tracing::debug!(file = %f.path, line = doc.line, "excluded by kots.io/exclude or kots.io/when");
            }
            Ok(_) => kept.push(doc.raw),
            Err(e) => {
                if crate::yaml::looks_like_manifest(doc.raw) {
                    crate::warnings::warn(format_args!(
                        "{}: {e}: not valid YAML, so this document is left out (its images are not listed)",
                        f.path
                    ));
                } else {
                    tracing::debug!(file = %f.path, error = %e, "unparseable document skipped");
                }
            }
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let data = if kept.len() == total {
        text.into_bytes()
    } else {
        yaml::join(&kept, format).into_bytes()
    };
    Ok(Some(ManifestFile {
        path: f.path.clone(),
        data,
    }))
}

/// `kots.io/exclude: "true"` or `kots.io/when: "false"` (strings or booleans, after
/// rendering, read like Go's `strconv.ParseBool`).
pub fn excluded(v: &Value) -> bool {
    let Some(annotations) = v
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping)
    else {
        return false;
    };
    let flag = |key: &str| -> Option<bool> {
        match annotations.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s.trim()),
            _ => None,
        }
    };
    flag("kots.io/exclude") == Some(true) || flag("kots.io/when") == Some(false)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            mode: helm::Mode::Install,
            app: "app".into(),
            version: None,
            answers: None,
            saved: None,
            license: None,
            local_registry: None,
            namespace: None,
            image_pull_secret: None,
            charts: Charts::NotRendered,
        }
    }

    #[test]
    fn excludes_by_annotation_after_rendering() {
        let files = [
            ManifestFile::text(
                "config.yaml",
                "apiVersion: kots.io/v1beta1\nkind: Config\nmetadata: {name: c}\nspec:\n  groups:\n  - name: g\n    items:\n    - {name: db, type: select_one, default: embedded, items: [{name: embedded}, {name: external}]}\n",
            ),
            ManifestFile::text(
                "db.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: embedded\n  annotations:\n    kots.io/when: '{{repl ConfigOptionEquals \"db\" \"embedded\" }}'\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: external\n  annotations:\n    kots.io/when: '{{repl ConfigOptionEquals \"db\" \"external\" }}'\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n  annotations: {kots.io/exclude: true}\n",
            ),
        ];
        let r = render(&files, &inputs()).unwrap();
        let db = r.files.iter().find(|f| f.path == "db.yaml").unwrap();
        let text = String::from_utf8(db.data.clone()).unwrap();
        assert!(text.contains("name: embedded"), "{text}");
        assert!(
            !text.contains("name: external") && !text.contains("never"),
            "{text}"
        );
        assert!(!text.contains("repl"), "{text}");

        let mut answers = inputs();
        answers.answers = Some(
            ConfigValues::parse(
                "apiVersion: kots.io/v1beta1\nkind: ConfigValues\nspec: {values: {db: {value: external}}}\n",
            )
            .unwrap(),
        );
        let r = render(&files, &answers).unwrap();
        let db = r.files.iter().find(|f| f.path == "db.yaml").unwrap();
        let text = String::from_utf8(db.data.clone()).unwrap();
        assert!(text.contains("name: external") && !text.contains("name: embedded"));
    }

    #[test]
    fn a_broken_document_is_left_out_and_the_rest_kept() {
        let files = [ManifestFile::text(
            "x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: bad\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n",
        )];
        let r = render(&files, &inputs()).unwrap();
        let text = String::from_utf8(r.files[0].data.clone()).unwrap();
        assert!(text.contains("good") && !text.contains("bad"), "{text}");
    }

    #[test]
    fn a_template_error_names_the_file_and_line() {
        let files = [ManifestFile::text(
            "deploy.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: '{{repl NoSuchFunction }}'\n",
        )];
        let e = render(&files, &inputs()).unwrap_err().to_string();
        assert!(e.contains("deploy.yaml") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn parse_bool_is_gos() {
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
