//! Which releases an app renders: one per `HelmChart` document (matched to its chart by name
//! and version, excluded ones left out), and one with the chart's defaults for each chart no
//! document names.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::helmchart::{self, check_release_name, HelmChartDoc};
use super::{Chart, ChartSource, HelmError, Mode};

/// One `helm template` to run.
#[derive(Debug, Clone)]
pub struct Release {
    /// The helm release name.
    pub name: String,
    /// The directory its documents go to: `charts/<dir>/` (a safe path component).
    pub dir: String,
    pub chart: Chart,
    /// The HelmChart's `namespace`: helm renders in it and objects that have none get it.
    /// `None`: helm renders in the namespace `render` is given, objects keep none.
    pub namespace: Option<String>,
    /// The values file helm gets (a mapping).
    pub values: Value,
    /// The HelmChart document, for messages (`None`: the chart's defaults).
    pub doc: Option<String>,
}

/// The releases to render, sorted by directory. `Mode::Airgap` reads each document as
/// shipped (`values` + `builder`, templated keys left out); `Mode::Install` reads the
/// rendered document (`values` + the `optionalValues` whose `when` is true) and leaves out
/// charts whose `exclude` is true. A v1beta1 document is dropped when a v1beta2 one has its
/// release name, as KOTS does.
pub fn releases(
    charts: &[Chart],
    docs: &[HelmChartDoc],
    mode: Mode,
) -> Result<Vec<Release>, HelmError> {
    let plans = docs
        .iter()
        .map(|d| helmchart::plan(d, mode).map(|p| (d, p)))
        .collect::<Result<Vec<_>, _>>()?;
    let beta2_keys: Vec<&str> = plans
        .iter()
        .filter(|(_, p)| p.beta2)
        .map(|(_, p)| p.replaced_by_key.as_str())
        .collect();
    let mut used = vec![false; charts.len()];
    let mut out = Vec::new();
    for (doc, plan) in &plans {
        if !plan.beta2 && beta2_keys.contains(&plan.replaced_by_key.as_str()) {
            tracing::debug!("{}: replaced by a v1beta2 HelmChart", doc.label());
            continue;
        }
        let pick = |source| {
            charts.iter().position(|c| {
                c.source == source && c.name == plan.chart_name && c.version == plan.chart_version
            })
        };
        let Some(i) = pick(ChartSource::Archive).or_else(|| pick(ChartSource::Directory)) else {
            let found: Vec<String> = charts.iter().map(|c| c.to_string()).collect();
            return Err(HelmError::Doc {
                doc: doc.label(),
                why: format!(
                    "the app has no chart {} version {:?} (charts found: {})",
                    plan.chart_name,
                    plan.chart_version,
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ),
            });
        };
        used[i] = true;
        if plan.excluded {
            tracing::info!(
                "{}: excluded, chart {} not rendered",
                doc.label(),
                charts[i]
            );
            continue;
        }
        out.push(Release {
            name: plan.release.clone(),
            dir: crate::names::path_component(&plan.release),
            chart: charts[i].clone(),
            namespace: plan.namespace.clone(),
            values: plan.values.clone(),
            doc: Some(doc.label()),
        });
    }
    for (chart, _) in charts.iter().zip(&used).filter(|(_, u)| !**u) {
        check_release_name(&chart.name).map_err(|why| HelmError::Chart {
            file: chart.location(),
            why: format!("{why}; name its release with a HelmChart document"),
        })?;
        out.push(Release {
            name: chart.name.clone(),
            dir: crate::names::path_component(&chart.name),
            chart: chart.clone(),
            namespace: None,
            values: Value::Mapping(Mapping::new()),
            doc: None,
        });
    }
    let mut seen: BTreeMap<&str, &Release> = BTreeMap::new();
    for r in &out {
        if let Some(first) = seen.insert(&r.dir, r) {
            let by = |r: &Release| {
                r.doc
                    .clone()
                    .unwrap_or_else(|| format!("chart {}", r.chart))
            };
            return Err(HelmError::Duplicate {
                release: r.name.clone(),
                first: by(first),
                second: by(r),
            });
        }
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(path: &str, source: ChartSource, name: &str, version: &str) -> Chart {
        Chart {
            path: path.into(),
            source,
            name: name.into(),
            version: version.into(),
        }
    }

    fn doc(text: &str) -> HelmChartDoc {
        let v: Value = serde_yaml_ng::from_str(text).unwrap();
        HelmChartDoc {
            raw: v.clone(),
            rendered: Some(v),
            file: "hc.yaml".into(),
        }
    }

    fn hc(api: &str, name: &str, chart: &str, version: &str, extra: &str) -> HelmChartDoc {
        doc(&format!(
            "apiVersion: kots.io/{api}\nkind: HelmChart\nmetadata: {{name: {name}}}\nspec:\n  chart: {{name: {chart}, chartVersion: {version}}}\n{extra}"
        ))
    }

    #[test]
    fn documents_pick_their_chart_and_the_rest_render_with_defaults() {
        let charts = [
            chart("a/web-1.0.0.tgz", ChartSource::Archive, "web", "1.0.0"),
            chart("b/web-2.0.0.tgz", ChartSource::Archive, "web", "2.0.0"),
            chart("dir", ChartSource::Directory, "tool", "0.1"),
        ];
        let docs = [
            hc("v1beta1", "web-two", "web", "2.0.0", ""),
            hc("v1beta2", "x", "web", "2.0.0", "  releaseName: web-again\n"),
        ];
        let got = releases(&charts, &docs, Mode::Install).unwrap();
        let summary: Vec<(String, String, bool)> = got
            .iter()
            .map(|r| (r.name.clone(), r.chart.path.clone(), r.doc.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("tool".to_string(), "dir".to_string(), false),
                ("web".to_string(), "a/web-1.0.0.tgz".to_string(), false),
                ("web-again".to_string(), "b/web-2.0.0.tgz".to_string(), true),
                ("web-two".to_string(), "b/web-2.0.0.tgz".to_string(), true),
            ]
        );
    }

    #[test]
    fn excluded_charts_are_left_out_and_not_rendered_with_defaults() {
        let charts = [chart("c.tgz", ChartSource::Archive, "c", "1")];
        let mut docs = [hc(
            "v1beta1",
            "c",
            "c",
            "1",
            "  exclude: 'repl{{ ConfigOptionEquals `x` `1` }}'\n",
        )];
        // Airgap: decided at install, so the chart's images are needed.
        assert_eq!(releases(&charts, &docs, Mode::Airgap).unwrap().len(), 1);
        docs[0].rendered = Some(hc("v1beta1", "c", "c", "1", "  exclude: \"true\"\n").raw);
        assert!(releases(&charts, &docs, Mode::Install).unwrap().is_empty());
    }

    #[test]
    fn a_v1beta2_document_replaces_the_v1beta1_one_with_its_release_name() {
        let charts = [chart("c.tgz", ChartSource::Archive, "c", "1")];
        let docs = [
            hc("v1beta1", "old", "c", "1", ""),
            hc("v1beta2", "new", "c", "1", "  namespace: ns\n"),
        ];
        let got = releases(&charts, &docs, Mode::Install).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].doc.as_deref(), Some("HelmChart new in hc.yaml"));
        assert_eq!(got[0].namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn errors_name_the_document() {
        let charts = [chart("c-1.tgz", ChartSource::Archive, "c", "1")];
        let e = releases(&charts, &[hc("v1beta1", "x", "c", "2", "")], Mode::Airgap).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HelmChart x in hc.yaml: the app has no chart c version \"2\" (charts found: c 1 (c-1.tgz))"
        );
        let docs = [
            hc("v1beta1", "same", "c", "1", ""),
            hc("v1beta1", "same", "c", "1", ""),
        ];
        let e = releases(&charts, &docs, Mode::Airgap).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("release \"same\" is rendered twice"),
            "{e}"
        );
    }
}
