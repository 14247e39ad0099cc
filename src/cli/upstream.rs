//! Flags for fetching an app's manifests.

use std::path::{Path, PathBuf};

use crate::upstream::vendor::{ReleaseQuery, VendorRelease};
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
    /// replicated:// only: the license's channel to download from (its slug; the same as
    /// replicated://APP/CHANNEL). Default: the license's channel.
    #[arg(long, value_name = "SLUG")]
    pub channel: Option<String>,
    /// replicated:// only: download this version (as `kots pull --app-version-label`)
    /// instead of the channel's latest.
    #[arg(long, value_name = "LABEL")]
    pub app_version_label: Option<String>,
}

impl UpstreamArgs {
    /// Loads `source`; `license_file` (the render flags' `--license-file`) is what
    /// `replicated://APP` downloads with.
    pub async fn load(
        &self,
        source: &str,
        license_file: Option<&Path>,
    ) -> anyhow::Result<Upstream> {
        self.load_with(source, license_file, None, false).await
    }

    /// [`Self::load`] with what `replicated://` needs beyond the flags: the release the kept
    /// app directory holds (`current`, an update asks for what follows it), and for an
    /// archive (`list_required`) the channel's required releases before the one served.
    pub async fn load_with(
        &self,
        source: &str,
        license_file: Option<&Path>,
        current: Option<VendorRelease>,
        list_required: bool,
    ) -> anyhow::Result<Upstream> {
        if !source.starts_with("replicated://")
            && (self.channel.is_some() || self.app_version_label.is_some())
        {
            return Err(super::UsageError(
                "--channel and --app-version-label apply to replicated:// only".into(),
            )
            .into());
        }
        let opts = UpstreamOptions {
            license_file: license_file.map(Path::to_path_buf),
            ca_file: self.upstream_ca.clone(),
            app_name: self.app_name.clone(),
            release: ReleaseQuery {
                channel: self.channel.clone(),
                version_label: self.app_version_label.clone(),
                current,
                list_required,
            },
        };
        Ok(upstream::load(source, &opts).await?)
    }
}
