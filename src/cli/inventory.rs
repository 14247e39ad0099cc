//! `kots-bundle inventory`: inside the network, list what the private registry holds of an
//! app ([`crate::inventory`]) as `have.json`, for `export --since` on the online side.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::{runtime, LoginArgs, RegistryArgs};
use super::import::TargetArgs;
use crate::archive::ArchiveReader;
use crate::cli::exit;
use crate::inventory::{take, Subject};
use crate::progress::human_bytes;
use crate::reference::Reference;
use crate::registry::Client;

#[derive(clap::Args, Debug)]
pub struct InventoryArgs {
    /// The app directory the app was imported into: its `.kots-bundle/state.json` lists
    /// the images and the app version (default: the current directory).
    #[arg(long, value_name = "DIR", conflicts_with = "archive")]
    pub app_dir: Option<PathBuf>,
    /// Or the .airgap that was imported: its images (and version) instead of an app
    /// directory's.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Where to write the inventory (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &InventoryArgs, quiet: bool) -> anyhow::Result<i32> {
    let destination = args.target.destination()?;
    let (sources, app, version) = match &args.archive {
        Some(path) => {
            let meta = ArchiveReader::read_metadata_only(path)?;
            let sources: Vec<Reference> = meta.images.iter().map(|i| i.reference.clone()).collect();
            (sources, meta.app.name, meta.app.version)
        }
        None => {
            let dir = args.app_dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let Some(state) = crate::overlay::read_state(&dir)? else {
                bail!(
                    "{} is not an app directory (no .kots-bundle/state.json); give --app-dir DIR \
                     of the imported app, or --archive FILE of the .airgap imported",
                    dir.display()
                );
            };
            let sources = state
                .images
                .iter()
                .map(|i| {
                    i.source.parse::<Reference>().with_context(|| {
                        format!("{}: state.json image {:?}", dir.display(), i.source)
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (sources, state.app, state.version)
        }
    };
    let subject = Subject {
        registry: destination.endpoint.registry.clone(),
        namespace: destination.namespace.clone(),
        app: Some(app),
        version,
        rewrites: destination.plan(&sources)?,
    };
    let options = args
        .registry
        .destination_options(&args.login, &destination.endpoint.registry)?;
    let client = Client::new(options)?;
    let inventory = super::run_until_signal(runtime()?, async {
        Ok(take(&client, &subject, args.registry.concurrency as usize).await?)
    })
    .context("inventory failed")?;
    let json = serde_json::to_vec_pretty(&inventory)?;
    match &args.output {
        Some(path) => crate::fsutil::write_atomic(path, &json, false)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&json)?;
            out.write_all(b"\n")?;
        }
    }
    if !quiet {
        eprintln!(
            "inventory of {}{}: {} manifests, {} blobs ({}) held",
            subject.registry,
            subject
                .namespace
                .as_deref()
                .map(|n| format!("/{n}"))
                .unwrap_or_default(),
            inventory.manifests.len(),
            inventory.blobs.len(),
            human_bytes(inventory.size())
        );
    }
    Ok(exit::OK)
}
