//! What can go wrong between an app's charts and their rendered documents, each error naming
//! the chart, the release and the HelmChart document it came from.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    #[error(
        "no helm found on PATH; install helm v3 or v4 (https://helm.sh/docs/intro/install/) or pass \
         --helm PATH"
    )]
    NotFound,
    #[error(
        "this app ships Helm charts ({}) and no helm was found on PATH; install helm v3 or v4 \
         (https://helm.sh/docs/intro/install/) or pass --helm PATH. --no-helm reads their images \
         from the charts' values instead, which may miss images",
        charts.join(", ")
    )]
    Missing { charts: Vec<String> },
    #[error("--helm {}: {why}", path.display())]
    Explicit { path: PathBuf, why: String },
    #[error("{}: not a usable helm: {why}", path.display())]
    Unusable { path: PathBuf, why: String },
    #[error(
        "{} is helm {version}; helm 2 is not supported (its charts render with helm 3 or 4): pass \
         --helm PATH to a helm v3 or v4",
        path.display()
    )]
    Version2 { path: PathBuf, version: String },
    #[error("chart {file}: {why}")]
    Chart { file: String, why: String },
    #[error("{doc}: {why}")]
    Doc { doc: String, why: String },
    #[error(
        "release {release:?} is rendered twice: by {first} and by {second}; give one a releaseName"
    )]
    Duplicate {
        release: String,
        first: String,
        second: String,
    },
    #[error("release {release} (chart {chart}): {what}: {source}")]
    Io {
        release: String,
        chart: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "release {release} (chart {chart}{}): helm template failed ({status}):\n{stderr}",
        doc_suffix(doc)
    )]
    Failed {
        release: String,
        chart: String,
        doc: Option<String>,
        status: String,
        stderr: String,
    },
    #[error(
        "release {release} (chart {chart}{}): helm template did not finish within {secs} s; killed",
        doc_suffix(doc)
    )]
    Timeout {
        release: String,
        chart: String,
        doc: Option<String>,
        secs: u64,
    },
    #[error(
        "release {release} (chart {chart}{}): helm template wrote more than {limit} bytes; stopped",
        doc_suffix(doc)
    )]
    TooLarge {
        release: String,
        chart: String,
        doc: Option<String>,
        limit: u64,
    },
    #[error("release {release} (chart {chart}): rendered file {file:?}: {why}")]
    Output {
        release: String,
        chart: String,
        file: String,
        why: String,
    },
}

fn doc_suffix(doc: &Option<String>) -> String {
    match doc {
        Some(d) => format!(", {d}"),
        None => String::new(),
    }
}
