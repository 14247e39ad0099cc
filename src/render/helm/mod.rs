//! Helm charts, rendered by a real helm (v3 or v4) as KOTS renders them: never a home-made
//! Helm.
//!
//! The flow, for the render stage to drive:
//! 1. [`find_charts`]: the app's charts (`.tgz` archives and directories with a
//!    `Chart.yaml`; a chart's `charts/` dependencies are part of it). [`chart_files`] says
//!    which upstream files they are, so the KOTS template pass and `base/` leave them alone.
//! 2. [`Helm::for_charts`]: the helm to run (`--helm PATH`, else PATH), or an error naming
//!    the charts when there is none.
//! 3. [`find_helm_chart_docs`] and [`releases`]: one release per KOTS `HelmChart` document
//!    (`kots.io/v1beta1`/`v1beta2`: chart name and version, release name, namespace, values,
//!    `exclude`), the chart's defaults for charts no document names. [`Mode::Airgap`] uses
//!    the values KOTS builds airgap bundles with, [`Mode::Install`] the operator's.
//! 4. [`Helm::render`]: `helm template` in a private temporary directory (no user config, no
//!    repository, a timeout, capped output), its documents as files under
//!    `charts/<release>/`.
//!
//! Without helm (`--no-helm`), discovery reads chart values with heuristics instead;
//! [`no_helm_note`] is what to tell the user about that.

mod binary;
mod charts;
mod error;
mod helmchart;
mod release;
mod template;

pub use binary::{Helm, DEFAULT_MAX_OUTPUT, DEFAULT_TIMEOUT};
pub use charts::{chart_files, find_charts, Chart, ChartSource};
pub use error::HelmError;
pub use helmchart::{find_helm_chart_docs, is_helm_chart, HelmChartDoc};
pub use release::{releases, Release};
pub use template::CHARTS_DIR;

/// Which values a release is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `export`: as KOTS builds an airgap bundle, to find every image: the HelmChart's
    /// `values` without the keys the KOTS template engine would fill, with `builder` merged
    /// over them; `optionalValues` and templated `exclude` are not read.
    Airgap,
    /// `import`/`pull`/`template`: the HelmChart document after the KOTS template pass:
    /// `values` plus each `optionalValues` entry whose `when` is true; `exclude: true`
    /// leaves the chart out.
    Install,
}

/// What to tell the user when charts are not rendered (`--no-helm`).
pub fn no_helm_note(charts: &[Chart]) -> String {
    let names: Vec<String> = charts.iter().map(|c| c.to_string()).collect();
    format!(
        "--no-helm: charts {} are not rendered; their images are read from their values with \
         heuristics (complete references only, the rest reported) and images only their \
         templates compute are missed; render with helm, or add them with --image",
        names.join(", ")
    )
}
