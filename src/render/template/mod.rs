//! KOTS templates: Go `text/template` with the delimiters `{{repl ... }}` and `repl{{ ... }}`,
//! rendered in two passes like KOTS's `Builder.RenderTemplate` (first `{{repl`, then
//! `repl{{`; plain `{{ }}` belongs to Helm or the app and is left alone), with KOTS's functions
//! and the Sprig ones ([`funcs`]). [`Context`] is what the functions see: config values,
//! license, local registry, namespace.
//!
//! The engine is the `gotmpl` crate behind [`engine`]; [`gofmt`] prints values as Go does.

mod args;
mod blocks;
mod engine;
mod funcs;
pub mod gofmt;
mod gotime;
pub mod yamlfmt;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use crate::license::License;
use crate::rewrite::Endpoint;

/// One config item's value as the templates see it (KOTS's `ItemValue`): `ConfigOption`
/// returns `value` when it is not empty, else `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemValue {
    pub value: String,
    pub default: String,
    /// For `type: file` items: the file name the operator gave.
    pub filename: String,
}

impl ItemValue {
    /// What `ConfigOption` returns.
    pub fn effective(&self) -> &str {
        if self.value.is_empty() {
            &self.default
        } else {
            &self.value
        }
    }
}

/// The private registry the registry functions are bound to (`import`/`pull` destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRegistry {
    pub endpoint: Endpoint,
    pub namespace: Option<String>,
    pub preserve_paths: bool,
}

/// What KOTS's version context knows about the release (all optional; KOTS's `Sequence` is
/// `-1` when there is none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionInfo {
    pub sequence: i64,
    pub cursor: String,
    pub channel_name: String,
    pub version_label: String,
    pub is_required: bool,
    pub release_notes: String,
    pub is_airgap: bool,
    /// Custom domain of the Replicated registry (default `registry.replicated.com`).
    pub replicated_registry_domain: String,
    /// Custom domain of the Replicated proxy registry (default `proxy.replicated.com`).
    pub replicated_proxy_domain: String,
}

/// Everything a template function can read.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Resolved config item values, by item name ([`crate::render::config::resolve`]).
    pub config: BTreeMap<String, ItemValue>,
    /// `None`: `LicenseFieldValue`/`LicenseDockerCfg` are an error asking for `--license-file`.
    pub license: Option<Arc<License>>,
    /// `None` (export): `LocalImageName` returns the image as written, `HasLocalRegistry` is
    /// false.
    pub local_registry: Option<LocalRegistry>,
    /// The namespace the app deploys to (`Namespace`); empty means `default`.
    pub namespace: String,
    /// The app slug (`ImagePullSecretName` is `<slug>-registry`, as in KOTS).
    pub app_slug: String,
    /// Overrides `ImagePullSecretName` (`--image-pull-secret`).
    pub image_pull_secret: Option<String>,
    pub version: Option<VersionInfo>,
}

/// A template that could not be rendered: which file, which YAML document (1-based, counted
/// by `---` lines) and which line of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub file: String,
    pub document: usize,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {}, line {}: {}",
            self.file, self.document, self.line, self.message
        )
    }
}

/// The two passes, in KOTS's order.
const PASSES: [(&str, &str); 2] = [("{{repl", "}}"), ("repl{{", "}}")];

/// Renders one file (both passes). `file` names it in errors.
pub fn render(file: &str, text: &str, ctx: &Context) -> Result<String, TemplateError> {
    render_tracked(file, text, ctx).map(|(s, _)| s)
}

/// Like [`render`], and says whether a random function (`RandomString`, `randAlphaNum`, ...)
/// ran: such a result is not reproducible and must be saved, not re-rendered.
pub fn render_tracked(
    file: &str,
    text: &str,
    ctx: &Context,
) -> Result<(String, bool), TemplateError> {
    if !text.contains("{{repl") && !text.contains("repl{{") {
        return Ok((text.to_string(), false));
    }
    let generated = Arc::new(AtomicBool::new(false));
    let line = Arc::new(AtomicUsize::new(1));
    let mut map = funcs::build(Arc::new(funcs::Env {
        ctx: ctx.clone(),
        generated: generated.clone(),
    }));
    engine::engine_funcs(&mut map, line.clone());
    let mut cur = text.to_string();
    for (pass, (left, right)) in PASSES.iter().enumerate() {
        cur = engine::run_pass(file, &cur, left, right, &map, &line).map_err(|e| {
            let mut message = e.message;
            if pass == 1 && text.contains("{{repl") {
                // Lines of the second pass count in the first pass's output.
                message.push_str(" (in the repl{{ }} pass, after {{repl }} was rendered)");
            }
            TemplateError {
                file: file.to_string(),
                document: document_of(&cur, e.line),
                line: e.line,
                message,
            }
        })?;
    }
    Ok((cur, generated.load(std::sync::atomic::Ordering::Relaxed)))
}

/// The 1-based YAML document holding `line`: `---` lines before it, not counting one that
/// opens the file.
fn document_of(text: &str, line: usize) -> usize {
    let mut doc = 1;
    let mut content = false;
    for l in text.lines().take(line.saturating_sub(1)) {
        let is_sep = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        if is_sep {
            if content {
                doc += 1;
            }
            content = false;
        } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            content = true;
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_counted_by_separators() {
        let t = "---\na: 1\n---\nb: 2\n---\nc: 3\n";
        assert_eq!(document_of(t, 2), 1);
        assert_eq!(document_of(t, 4), 2);
        assert_eq!(document_of(t, 6), 3);
    }
}
