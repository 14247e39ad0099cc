//! Kubernetes objects: every image site ([`sites`]: container lists at any depth, and the
//! candidates outside them), KOTS `Application` additional and excluded images,
//! troubleshoot collectors.

use serde_yaml_ng::Value;

use super::sites::{self, SiteValue};
use super::{
    is_templated, object_identity, object_label, DocCtx, Location, Scanner, SiteKind,
    COLLECTOR_LISTS,
};
use crate::reference::Reference;
use crate::yaml;

impl Scanner {
    pub(super) fn scan_manifest(
        &mut self,
        file: &str,
        data: &[u8],
        format: yaml::Format,
        in_template: bool,
    ) {
        let Ok(text) = std::str::from_utf8(data) else {
            tracing::debug!("{file}: not UTF-8, skipped");
            return;
        };
        let docs = yaml::documents(text, format);
        let multi = docs.len() > 1;
        for (i, yaml::Document { raw, parsed, .. }) in docs.into_iter().enumerate() {
            let label = if multi {
                format!("(document {})", i + 1)
            } else {
                String::new()
            };
            let v = match parsed {
                Ok(v) => v,
                Err(e) => {
                    // A broken Kubernetes manifest may hide images: say so. Anything else
                    // (templates, other tools' YAML) is none of our business.
                    if !in_template && crate::yaml::looks_like_manifest(raw) {
                        let at = Location {
                            file: file.to_string(),
                            path: if multi {
                                format!("document {}", i + 1)
                            } else {
                                String::new()
                            },
                        };
                        self.found.problem(
                            at,
                            format!("not valid YAML/JSON, its images are not listed: {e}"),
                        );
                    } else {
                        tracing::debug!("{file} {label}: unparseable document skipped: {e}");
                    }
                    continue;
                }
            };
            self.scan_document(file, &label, &v, in_template);
        }
    }

    fn scan_document(&mut self, file: &str, doc_label: &str, v: &Value, in_template: bool) {
        let Some((kind, _)) = object_identity(v) else {
            return; // not a Kubernetes object
        };
        let object = object_label(v, doc_label);
        let ctx = DocCtx {
            file,
            object: &object,
            in_template,
        };
        self.scan_sites(&ctx, v);
        self.kind_rules(&ctx, v, "");
        // `List` kinds: each item is an object of its own for the kind-specific rules
        // (image sites were found by the walk above, which covers items too).
        if kind == "List" || kind.ends_with("List") {
            if let Some(Value::Sequence(items)) = v.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if object_identity(item).is_some() {
                        let inner = format!("items[{i}].");
                        self.kind_rules(&ctx, item, &inner);
                    }
                }
            }
        }
    }

    /// Every image site of the object (see [`sites`]): container images are required,
    /// the others are candidates.
    fn scan_sites(&mut self, ctx: &DocCtx, v: &Value) {
        for site in sites::sites(v) {
            let at = ctx.at(&site.display_path());
            match (&site.value, site.kind) {
                (SiteValue::NotString(v), _) => {
                    self.found.problem(
                        at,
                        if v.is_null() {
                            "image is empty"
                        } else {
                            "image is not a string"
                        },
                    );
                }
                (SiteValue::Str { .. }, SiteKind::Container) => {
                    let text = site.reference_text().unwrap_or_default();
                    if let Some(r) = self.check_str(ctx.in_template, &at, text) {
                        self.found.add(r, at);
                    }
                }
                (SiteValue::Incomplete(why), _) => self.found.problem(at, why.clone()),
                (SiteValue::Str { .. } | SiteValue::Map(_), kind) => {
                    let text = site.reference_text().unwrap_or_default();
                    // An operator's `image: ""` means "your default": nothing to report.
                    if text.is_empty() {
                        continue;
                    }
                    if let Some(r) = self.check_str(ctx.in_template, &at, text) {
                        self.found.add_candidate(r, at, kind);
                    }
                }
            }
        }
    }

    /// KOTS `Application` and troubleshoot collectors; `prefix` is the object's path in
    /// the document (`items[2].` in a List).
    fn kind_rules(&mut self, ctx: &DocCtx, obj: &Value, prefix: &str) {
        let Some((kind, api)) = object_identity(obj) else {
            return;
        };
        let group = api.split('/').next().unwrap_or("");
        let spec = obj.get("spec");
        if group == "kots.io" && kind == "Application" {
            if let Some(Value::Sequence(list)) = spec.and_then(|s| s.get("additionalImages")) {
                for (i, img) in list.iter().enumerate() {
                    let at = ctx.at(&format!("{prefix}spec.additionalImages[{i}]"));
                    self.candidate(ctx.in_template, at, img);
                }
            }
            if let Some(Value::Sequence(list)) = spec.and_then(|s| s.get("excludedImages")) {
                for (i, img) in list.iter().enumerate() {
                    let at = ctx.at(&format!("{prefix}spec.excludedImages[{i}]"));
                    if let Some(r) = self.check(ctx.in_template, &at, img) {
                        self.excluded.push((r, at));
                    }
                }
            }
        }
        if group == "troubleshoot.sh" || group == "troubleshoot.replicated.com" {
            for list_key in COLLECTOR_LISTS {
                let Some(Value::Sequence(list)) = spec.and_then(|s| s.get(list_key)) else {
                    continue;
                };
                // Each item is `{<collectorType>: {...}}`; the types that run a pod say
                // `image` (run, copyFromHost, ...) or list `images` (registryImages).
                for (i, item) in list.iter().enumerate() {
                    let Value::Mapping(m) = item else { continue };
                    for (ctype, body) in m {
                        let Some(ctype) = ctype.as_str() else {
                            continue;
                        };
                        let base = format!("{prefix}spec.{list_key}[{i}].{ctype}");
                        if let Some(img) = body.get("image") {
                            let at = ctx.at(&format!("{base}.image"));
                            self.candidate(ctx.in_template, at, img);
                        }
                        if let Some(Value::Sequence(imgs)) = body.get("images") {
                            for (j, img) in imgs.iter().enumerate() {
                                let at = ctx.at(&format!("{base}.images[{j}]"));
                                self.candidate(ctx.in_template, at, img);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds `v` if it is a valid reference; otherwise records why not.
    fn candidate(&mut self, in_template: bool, at: Location, v: &Value) {
        if let Some(r) = self.check(in_template, &at, v) {
            self.found.add(r, at);
        }
    }

    /// Parses a reference value, recording a problem when it is not one.
    fn check(&mut self, in_template: bool, at: &Location, v: &Value) -> Option<Reference> {
        let s = match v {
            Value::String(s) => s.as_str(),
            Value::Null => {
                self.found.problem(at.clone(), "image is empty");
                return None;
            }
            Value::Tagged(t) => return self.check(in_template, at, &t.value),
            _ => {
                self.found.problem(at.clone(), "image is not a string");
                return None;
            }
        };
        self.check_str(in_template, at, s)
    }

    pub(super) fn check_str(
        &mut self,
        in_template: bool,
        at: &Location,
        s: &str,
    ) -> Option<Reference> {
        if s.is_empty() {
            self.found.problem(at.clone(), "image is empty");
            return None;
        }
        if is_templated(s) {
            if in_template {
                tracing::debug!("{at}: templated image {s:?} in a Helm template (values cover it)");
            } else {
                self.found.problem(
                    at.clone(),
                    format!(
                        "templated image {s:?} is only known at install time; not listed \
                         (add the image it renders to with --image or --images-file)"
                    ),
                );
            }
            return None;
        }
        match Reference::parse(s) {
            Ok(r) => Some(r),
            Err(e) => {
                self.found
                    .problem(at.clone(), format!("{e}; not listed (fix the manifest)"));
                None
            }
        }
    }
}
