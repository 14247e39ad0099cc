//! KOTS `HelmChart` documents (`kots.io/v1beta1` and `v1beta2`): which chart they pick, the
//! release, its namespace, whether it is excluded, and the values helm gets, as KOTS reads
//! them (kotskinds `apis/kots/*/helmchart_types.go`, kots `pkg/base/replicated.go`,
//! `pkg/apparchive/helm-v1beta2.go`).

use serde_yaml_ng::{Mapping, Value};

use super::{HelmError, Mode};
use crate::upstream::ManifestFile;
use crate::yaml;

/// One KOTS `HelmChart` document of the app.
#[derive(Debug, Clone)]
pub struct HelmChartDoc {
    /// As shipped.
    pub raw: Value,
    /// After the KOTS template pass (needed in [`Mode::Install`]).
    pub rendered: Option<Value>,
    /// The file it is in, with `(document N)` in multi-document files.
    pub file: String,
}

impl HelmChartDoc {
    /// `HelmChart grafana in manifests/grafana.yaml`
    pub fn label(&self) -> String {
        let name = self
            .raw
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        format!("HelmChart {} in {}", crate::names::escaped(name), self.file)
    }
}

/// `kind: HelmChart` with `apiVersion: kots.io/v1beta1` or `kots.io/v1beta2`.
pub fn is_helm_chart(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("HelmChart")
        && matches!(
            v.get("apiVersion").and_then(Value::as_str),
            Some("kots.io/v1beta1" | "kots.io/v1beta2")
        )
}

/// Every `HelmChart` document in `files` (YAML and JSON files; documents that do not parse
/// are left to the stage that reports them), with `rendered` unset.
pub fn find_helm_chart_docs(files: &[ManifestFile]) -> Vec<HelmChartDoc> {
    let mut out = Vec::new();
    for f in files {
        let Some(format) = yaml::Format::of(&f.path) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&f.data) else {
            continue;
        };
        let docs = yaml::documents(text, format);
        let multi = docs.len() > 1;
        for (i, doc) in docs.into_iter().enumerate() {
            let Ok(v) = doc.parsed else { continue };
            if is_helm_chart(&v) {
                out.push(HelmChartDoc {
                    raw: v,
                    rendered: None,
                    file: if multi {
                        format!("{} (document {})", f.path, i + 1)
                    } else {
                        f.path.clone()
                    },
                });
            }
        }
    }
    out
}

/// What one document asks for.
#[derive(Debug)]
pub(super) struct Plan {
    pub beta2: bool,
    pub chart_name: String,
    pub chart_version: String,
    /// The helm release (and `charts/<release>` directory).
    pub release: String,
    /// The name KOTS compares to drop a v1beta1 document that a v1beta2 one replaces.
    pub replaced_by_key: String,
    pub namespace: Option<String>,
    pub excluded: bool,
    pub values: Value,
}

/// `strconv.ParseBool`, which KOTS uses for `when` and `exclude`.
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A string KOTS still has to render.
pub(super) fn is_kots_templated(s: &str) -> bool {
    s.contains("repl{{") || s.contains("{{repl")
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn plan(doc: &HelmChartDoc, mode: Mode) -> Result<Plan, HelmError> {
    let bad = |why: String| HelmError::Doc {
        doc: doc.label(),
        why,
    };
    let v = match mode {
        Mode::Airgap => &doc.raw,
        Mode::Install => doc
            .rendered
            .as_ref()
            .ok_or_else(|| bad("not rendered by the KOTS template pass".into()))?,
    };
    let beta2 = v.get("apiVersion").and_then(Value::as_str) == Some("kots.io/v1beta2");
    let spec = v.get("spec").unwrap_or(&Value::Null);
    let chart = spec.get("chart").unwrap_or(&Value::Null);
    // A field as written; in airgap mode a templated one is as good as absent.
    let text = |v: Option<&Value>| {
        v.and_then(scalar)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .filter(|s| mode == Mode::Install || !is_kots_templated(s))
    };
    let chart_name = text(chart.get("name")).ok_or_else(|| {
        bad("spec.chart.name is missing (or templated): which chart is this?".into())
    })?;
    let chart_version = text(chart.get("chartVersion")).unwrap_or_default();
    let meta_name = text(v.get("metadata").and_then(|m| m.get("name")));
    // v1beta1: `chart.releaseName`, else the document's name; v1beta2: `releaseName`, else
    // the chart's name (kotskinds GetDirName, which KOTS renders the release as).
    let (release, replaced_by_key) = if beta2 {
        let r = text(spec.get("releaseName")).unwrap_or_else(|| chart_name.clone());
        (r.clone(), r)
    } else {
        let given = text(chart.get("releaseName"));
        (
            given
                .clone()
                .or(meta_name)
                .unwrap_or_else(|| chart_name.clone()),
            given.unwrap_or_else(|| chart_name.clone()),
        )
    };
    check_release_name(&release).map_err(bad)?;
    let namespace = text(spec.get("namespace"));
    if let Some(ns) = &namespace {
        check_namespace(ns).map_err(bad)?;
    }
    let excluded = exclude(spec.get("exclude"), mode).map_err(bad)?;
    let values = match mode {
        Mode::Airgap => airgap_values(spec),
        Mode::Install => install_values(spec).map_err(bad)?,
    };
    Ok(Plan {
        beta2,
        chart_name,
        chart_version,
        release,
        replaced_by_key,
        namespace,
        excluded,
        values,
    })
}

/// helm's rule for release names (a DNS-1123 subdomain of at most 53 characters). Checked
/// here because the name becomes an argument of helm and a directory name.
pub(super) fn check_release_name(name: &str) -> Result<(), String> {
    if name.len() > 53 || crate::names::app_name(name).is_err() {
        return Err(format!(
            "release name {:?} is not one helm accepts (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 53 characters)",
            crate::names::escaped(name)
        ));
    }
    Ok(())
}

fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.contains('.') || crate::names::app_name(ns).is_err() {
        return Err(format!(
            "namespace {:?} is not a Kubernetes namespace name (lowercase letters, digits and '-', \
             at most 63 characters)",
            crate::names::escaped(ns)
        ));
    }
    Ok(())
}

/// `spec.exclude`: a bool or a string `strconv.ParseBool` reads; empty is false. In airgap
/// mode a templated value is decided at install, so the chart's images are needed.
fn exclude(v: Option<&Value>, mode: Mode) -> Result<bool, String> {
    let s = match v {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Bool(b)) => return Ok(*b),
        Some(other) => scalar(other).ok_or("spec.exclude is not a bool or a string")?,
    };
    let s = s.trim();
    if s.is_empty() || (mode == Mode::Airgap && is_kots_templated(s)) {
        return Ok(false);
    }
    parse_bool(s).ok_or_else(|| format!("spec.exclude {s:?} is not true or false"))
}

/// How KOTS builds an airgap bundle: `spec.values` without the keys it still has to render,
/// with `spec.builder` merged over them.
fn airgap_values(spec: &Value) -> Value {
    let mut values = mapping_or_empty(spec.get("values").and_then(without_templates));
    let builder = mapping_or_empty(spec.get("builder").and_then(without_templates));
    merge_recursive(&mut values, builder);
    Value::Mapping(values)
}

/// At install: `spec.values`, then each `optionalValues` entry whose `when` is true, in
/// order: replacing top-level keys, or with `recursiveMerge: true` merged into them.
fn install_values(spec: &Value) -> Result<Value, String> {
    let mut values = match spec.get("values") {
        None | Some(Value::Null) => Mapping::new(),
        Some(v) => as_mapping(v).map_err(|why| format!("spec.values {why}"))?,
    };
    let optional = match spec.get("optionalValues") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Sequence(s)) => s.as_slice(),
        Some(_) => return Err("spec.optionalValues is not a list".into()),
    };
    for (i, entry) in optional.iter().enumerate() {
        let at = format!("spec.optionalValues[{i}]");
        let when = entry.get("when").and_then(scalar).unwrap_or_default();
        let when = parse_bool(when.trim()).ok_or_else(|| {
            format!("{at}.when {when:?} is not true or false (KOTS requires one of them)")
        })?;
        if !when {
            continue;
        }
        let extra = match entry.get("values") {
            None | Some(Value::Null) => continue,
            Some(v) => as_mapping(v).map_err(|why| format!("{at}.values {why}"))?,
        };
        let recursive = match entry.get("recursiveMerge") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => scalar(other)
                .and_then(|s| parse_bool(s.trim()))
                .ok_or_else(|| format!("{at}.recursiveMerge is not true or false"))?,
        };
        if recursive {
            merge_kots(&mut values, extra);
        } else {
            for (k, v) in extra {
                values.insert(k, v);
            }
        }
    }
    Ok(Value::Mapping(values))
}

/// A mapping, or a string that the template pass rendered into YAML of one.
fn as_mapping(v: &Value) -> Result<Mapping, String> {
    match v {
        Value::Mapping(m) => Ok(m.clone()),
        Value::String(s) => match yaml::parse_yaml(s, 1) {
            Ok(Value::Mapping(m)) => Ok(m),
            Ok(Value::Null) => Ok(Mapping::new()),
            Ok(_) => Err("is a string that is not a YAML mapping".into()),
            Err(e) => Err(format!("is a string that is not valid YAML: {e}")),
        },
        _ => Err("is not a mapping".into()),
    }
}

fn mapping_or_empty(v: Option<Value>) -> Mapping {
    match v {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    }
}

/// `v` with every value KOTS still has to render left out: a templated string is dropped; a
/// mapping keeps its other keys (and is dropped if nothing is left of a non-empty one); a
/// list with a template anywhere in it is dropped whole (a list with holes is not what the
/// vendor wrote; the chart's default is the better guess).
pub(super) fn without_templates(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) if is_kots_templated(s) => None,
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, child) in m {
                if let Some(c) = without_templates(child) {
                    out.insert(k.clone(), c);
                }
            }
            if out.is_empty() && !m.is_empty() {
                None
            } else {
                Some(Value::Mapping(out))
            }
        }
        Value::Sequence(items) if items.iter().any(has_template) => None,
        Value::Tagged(t) => without_templates(&t.value),
        other => Some(other.clone()),
    }
}

fn has_template(v: &Value) -> bool {
    match v {
        Value::String(s) => is_kots_templated(s),
        Value::Mapping(m) => m.values().any(has_template),
        Value::Sequence(items) => items.iter().any(has_template),
        Value::Tagged(t) => has_template(&t.value),
        _ => false,
    }
}

/// Maps merge key by key, anything else in `overlay` replaces what `base` has.
fn merge_recursive(base: &mut Mapping, overlay: Mapping) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_recursive(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// kotskinds `MergeHelmChartValues`: like [`merge_recursive`], except that a mapping in
/// `base` is never replaced by a non-mapping from `overlay` (KOTS merges it with nothing).
fn merge_kots(base: &mut Mapping, overlay: Mapping) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_kots(b, o),
            (Some(Value::Mapping(_)), _) => {}
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> HelmChartDoc {
        HelmChartDoc {
            raw: serde_yaml_ng::from_str(text).unwrap(),
            rendered: None,
            file: "hc.yaml".into(),
        }
    }

    fn rendered(text: &str) -> HelmChartDoc {
        let mut d = doc(text);
        d.rendered = Some(d.raw.clone());
        d
    }

    fn yaml(v: &Value) -> String {
        serde_yaml_ng::to_string(v).unwrap()
    }

    const GRAFANA: &str = r#"
apiVersion: kots.io/v1beta1
kind: HelmChart
metadata: {name: grafana}
spec:
  chart: {name: grafana, chartVersion: 5.0.13}
  values:
    adminUser: "repl{{ ConfigOption `admin_user`}}"
    replicas: "{{repl ConfigOption `n` }}"
    podLabels: {app: grafana, who: "repl{{ X }}"}
    only: {templated: "repl{{ X }}"}
    empty: {}
    hosts: [a, "repl{{ H }}"]
    plain: [a, b]
    metrics: {enabled: false, port: 9}
  optionalValues:
  - when: "false"
    values: {ingress: {enabled: true}}
  builder:
    metrics: {enabled: true}
"#;

    #[test]
    fn airgap_values_leave_templated_keys_out_and_merge_the_builder() {
        let p = plan(&doc(GRAFANA), Mode::Airgap).unwrap();
        assert_eq!(
            yaml(&p.values),
            "podLabels:\n  app: grafana\nempty: {}\nplain:\n- a\n- b\nmetrics:\n  enabled: true\n  port: 9\n"
        );
        assert_eq!(
            (
                p.release.as_str(),
                p.chart_name.as_str(),
                p.chart_version.as_str()
            ),
            ("grafana", "grafana", "5.0.13")
        );
        assert!(!p.excluded && !p.beta2 && p.namespace.is_none());
    }

    #[test]
    fn install_values_apply_optional_values_as_kots_does() {
        let d = rendered(
            r#"
apiVersion: kots.io/v1beta2
kind: HelmChart
metadata: {name: hc}
spec:
  chart: {name: app, chartVersion: 1.0.0}
  releaseName: web
  namespace: team
  values:
    a: {x: 1, y: 2}
    b: {keep: 1}
    c: 3
  optionalValues:
  - when: "true"
    values: {a: {x: 10}}
  - when: "1"
    recursiveMerge: true
    values: {b: {more: 2}, c: 4}
  - when: "F"
    values: {c: 5}
  - when: "true"
    recursiveMerge: true
    values: {b: plain}
  builder: {ignored: true}
"#,
        );
        let p = plan(&d, Mode::Install).unwrap();
        // `a` replaced whole (no recursiveMerge); `b` merged; a non-map never replaces a map.
        assert_eq!(
            yaml(&p.values),
            "a:\n  x: 10\nb:\n  keep: 1\n  more: 2\nc: 4\n"
        );
        assert_eq!(p.release, "web");
        assert_eq!(p.namespace.as_deref(), Some("team"));
        assert!(p.beta2);
    }

    #[test]
    fn optional_values_need_a_when_kots_can_parse() {
        let d = rendered(
            "apiVersion: kots.io/v1beta1\nkind: HelmChart\nmetadata: {name: hc}\nspec:\n  chart: {name: app, chartVersion: 1}\n  optionalValues:\n  - when: maybe\n    values: {a: 1}\n",
        );
        let e = plan(&d, Mode::Install).unwrap_err().to_string();
        assert_eq!(
            e,
            "HelmChart hc in hc.yaml: spec.optionalValues[0].when \"maybe\" is not true or false (KOTS requires one of them)"
        );
        // Airgap mode does not read optionalValues at all.
        assert!(plan(&d, Mode::Airgap).is_ok());
    }

    #[test]
    fn exclude_and_release_names() {
        let base = "apiVersion: kots.io/v1beta1\nkind: HelmChart\nmetadata: {name: meta}\nspec:\n  chart: {name: app, chartVersion: 1}\n";
        let with = |extra: &str| format!("{base}  {extra}\n");
        assert!(
            plan(&rendered(&with("exclude: \"true\"")), Mode::Install)
                .unwrap()
                .excluded
        );
        assert!(
            plan(&rendered(&with("exclude: true")), Mode::Install)
                .unwrap()
                .excluded
        );
        assert!(
            !plan(&rendered(&with("exclude: \"\"")), Mode::Install)
                .unwrap()
                .excluded
        );
        assert!(plan(&rendered(&with("exclude: nope")), Mode::Install).is_err());
        // Airgap: decided at install, so the chart's images are needed.
        assert!(
            !plan(
                &doc(&with("exclude: 'repl{{ ConfigOptionEquals `a` `b` }}'")),
                Mode::Airgap
            )
            .unwrap()
            .excluded
        );
        // v1beta1 renders as its document's name unless chart.releaseName says otherwise.
        let p = plan(&doc(base), Mode::Airgap).unwrap();
        assert_eq!(
            (p.release.as_str(), p.replaced_by_key.as_str()),
            ("meta", "app")
        );
        let e = plan(
            &doc(&base.replace("name: meta", "name: \"--post-renderer=/bin/sh\"")),
            Mode::Airgap,
        );
        // A document name that is not a release name falls to helm's rule, which refuses it.
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("is not one helm accepts"));
        assert!(plan(&doc("apiVersion: kots.io/v1beta2\nkind: HelmChart\nmetadata: {name: x}\nspec:\n  chart: {name: app, chartVersion: 1}\n  namespace: a.b\n"), Mode::Airgap).is_err());
    }

    #[test]
    fn finds_documents_in_multi_document_files() {
        let f = ManifestFile {
            path: "m.yaml".into(),
            data: b"kind: ConfigMap\napiVersion: v1\n---\napiVersion: kots.io/v1beta2\nkind: HelmChart\nmetadata: {name: x}\n---\napiVersion: other.io/v1\nkind: HelmChart\n".to_vec(),
        };
        let docs = find_helm_chart_docs(&[f]);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].label(), "HelmChart x in m.yaml (document 2)");
    }
}
