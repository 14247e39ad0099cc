//! `kots-bundle download`: rebuild an app directory from the copy `import` stored in the
//! private registry ([`crate::appstore`]), so an update can run from any host inside the
//! network.

use std::path::PathBuf;

use anyhow::Context;

use super::common::{runtime, LoginArgs, RegistryArgs};
use crate::appstore;
use crate::cli::exit;
use crate::registry::Client;
use crate::rewrite::{validate_namespace, Endpoint};

#[derive(clap::Args, Debug)]
pub struct DownloadArgs {
    /// The private registry the app was imported to.
    #[arg(long, value_name = "REGISTRY")]
    pub registry_endpoint: String,
    /// The --image-namespace the app was imported with (omit if it had none).
    #[arg(long, value_name = "NS")]
    pub image_namespace: Option<String>,
    /// The app's name (its repository is REGISTRY/NS/<app>-app).
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// Which stored version (a tag of <app>-app; default: the last imported, `latest`).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Where to write the app directory: must not exist, or be empty (default: ./<app>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &DownloadArgs, quiet: bool) -> anyhow::Result<i32> {
    let endpoint = Endpoint::parse(&args.registry_endpoint)
        .with_context(|| format!("--registry-endpoint {}", args.registry_endpoint))?;
    if let Some(ns) = &args.image_namespace {
        validate_namespace(ns)?;
    }
    let options = args
        .registry
        .destination_options(&args.login, &endpoint.registry)?;
    let client = Client::new(options)?;
    let dest = args
        .dest
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.app));
    let tag = args
        .version
        .as_deref()
        .map(|v| appstore::version_tag(Some(v)).unwrap_or_else(|| "latest".to_string()));
    let done = super::run_until_signal(
        runtime()?,
        appstore::download(
            &client,
            &endpoint,
            args.image_namespace.as_deref(),
            &args.app,
            tag.as_deref(),
            &dest,
        ),
    )
    .with_context(|| format!("download of {} failed", args.app))?;
    if !quiet {
        eprintln!(
            "downloaded {} ({} files{}) into {}",
            done.reference,
            done.files,
            done.version
                .as_deref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default(),
            done.dest.display()
        );
        if !done.withheld.is_empty() {
            eprintln!(
                "the registry's copy holds no secrets: the values of {} are not in it (and base/ \
                 has no Secrets until the next import renders it); give them to that import \
                 with --config-values FILE (kind: ConfigValues), as they are in the cluster",
                done.withheld.join(", ")
            );
        }
        eprintln!(
            "update with: kots-bundle import NEW.airgap --dest {} --registry-endpoint {}{}",
            done.dest.display(),
            args.registry_endpoint,
            args.image_namespace
                .as_deref()
                .map(|n| format!(" --image-namespace {n}"))
                .unwrap_or_default()
        );
    }
    Ok(exit::OK)
}
