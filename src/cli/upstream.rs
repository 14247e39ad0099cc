//! Flags for fetching an app's manifests.

use std::path::{Path, PathBuf};

use crate::upstream::{self, Upstream, UpstreamOptions};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct UpstreamArgs {
    /// Trust this CA certificate (PEM) when fetching https:// manifests or a release.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// The app's name (lowercase letters, digits, '-' and '.'): names the .airgap file and
    /// the app directory. Default: the KOTS Application's metadata.name, else the upstream's
    /// own name (the folder above a generic one such as `manifests`).
    #[arg(long, value_name = "NAME")]
    pub app_name: Option<String>,
}

impl UpstreamArgs {
    /// Loads `source`; `license_file` (the render flags' `--license-file`) is what
    /// `replicated://APP` downloads with.
    pub async fn load(
        &self,
        source: &str,
        license_file: Option<&Path>,
    ) -> anyhow::Result<Upstream> {
        let opts = UpstreamOptions {
            license_file: license_file.map(Path::to_path_buf),
            ca_file: self.upstream_ca.clone(),
            app_name: self.app_name.clone(),
        };
        Ok(upstream::load(source, &opts).await?)
    }
}
