//! `pull`: the seed's single-host flow. The copy engine from the source registries into the
//! app directory's OCI layout (`DIR/images`, so a re-run fetches no blob twice), then, with
//! `--rewrite-images`, from that layout to the private registry, and the app directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::copy::{self, CopyJob, CopyReport, ResolvedImage};
use crate::export::resolve_images;
use crate::import::{preflight, push, render_for_install, state_for, Destination};
use crate::layout::Layout;
use crate::overlay::{self, AppDir, Release, WriteOptions};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::transport::RegistrySource;
use crate::registry::Client;
use crate::render::Inputs;
use crate::upstream::Upstream;

/// Where the app directory's kept images live.
pub const IMAGES_DIR: &str = "images";

pub struct PullOptions {
    pub app_dir: PathBuf,
    /// `Some` with `--rewrite-images`: push and rewrite.
    pub destination: Option<Destination>,
    pub write: WriteOptions,
    /// How the app renders for this install (see [`crate::import::render_for_install`]).
    pub render: Inputs,
    /// `os/arch[/variant]` to keep of multi-arch images; empty keeps all.
    pub platforms: Vec<String>,
    /// Carry signatures, attestations and SBOMs attached to the images ([`crate::attached`]).
    pub attached: bool,
    pub concurrency: usize,
    pub quiet: bool,
}

#[derive(Debug, Default)]
pub struct PullSummary {
    pub fetched: CopyReport,
    pub pushed: Option<CopyReport>,
}

/// The directory a pull without `--dest` writes: the current directory when it already is
/// an app directory (the seed's "cd ~/app && kots pull" update), else `./<app name>` when
/// that is new or an app directory, and never the upstream being read (`source`).
pub fn default_app_dir(
    cwd: &Path,
    app_name: &str,
    source: Option<&Path>,
) -> Result<PathBuf, overlay::OverlayError> {
    if overlay::is_app_dir(cwd) {
        Ok(cwd.to_path_buf())
    } else {
        overlay::default_dest(cwd, app_name, source)
    }
}

pub async fn pull(
    upstream: &Upstream,
    images: &[Reference],
    source_client: Client,
    dest_client: Option<Client>,
    opts: &PullOptions,
) -> anyhow::Result<PullSummary> {
    // Locked before anything is fetched or pushed.
    let mut dir = AppDir::open(&opts.app_dir)
        .with_context(|| format!("opening the app directory {}", opts.app_dir.display()))?;
    // What deploys, rendered before anything moves: a missing config answer stops here.
    let rendered = render_for_install(
        &upstream.files,
        &dir,
        &opts.render,
        opts.destination.as_ref(),
    )?;
    let source = Arc::new(RegistrySource::new(source_client.clone()));
    let resolved: Vec<ResolvedImage> = resolve_images(
        &source,
        &source_client,
        images,
        &opts.platforms,
        opts.concurrency,
        opts.attached,
    )
    .await?;

    let rewrites = match &opts.destination {
        Some(d) => {
            let sources: Vec<Reference> = resolved.iter().map(|i| i.source.clone()).collect();
            let rewrites = d.plan(&sources)?;
            let client = dest_client
                .as_ref()
                .context("a registry client for --rewrite-images")?;
            preflight(client, &rewrites, opts.concurrency).await?;
            rewrites
        }
        None => Vec::new(),
    };

    let images_dir = opts.app_dir.join(IMAGES_DIR);
    let layout = Arc::new(
        Layout::open_or_create(&images_dir)
            .with_context(|| format!("opening {}", images_dir.display()))?,
    );
    let jobs: Vec<CopyJob> = resolved.iter().map(CopyJob::in_place).collect();
    let total: u64 = resolved.iter().map(|i| i.size()).sum();
    let progress = Arc::new(Progress::new("pulled", total, opts.quiet));
    let fetched = copy::copy_images(source, layout.clone(), &jobs, progress.clone()).await?;
    progress.finish();

    let pushed = match (&opts.destination, &dest_client) {
        (Some(_), Some(client)) => Some(
            push(
                layout.clone(),
                client,
                &resolved,
                &rewrites,
                opts.concurrency,
                opts.quiet,
            )
            .await?,
        ),
        _ => None,
    };

    let state = state_for(
        upstream,
        &resolved,
        &rewrites,
        opts.destination.as_ref(),
        &opts.write,
    )?;
    let app_rewrites = crate::attached::app_rewrites(&rewrites);
    let release = Release {
        upstream,
        documents: &rendered.files,
        config_values: Some(&rendered.to_save),
        rewrites: &app_rewrites,
        state: &state,
    };
    dir.write(&release, &opts.write)
        .with_context(|| format!("writing the app directory {}", opts.app_dir.display()))?;
    // Still under the app directory's lock: no other pull is adding to the layout.
    let kept: Vec<Reference> = resolved.iter().map(|i| i.source.clone()).collect();
    let pruned = layout
        .prune(&kept)
        .with_context(|| format!("pruning {}", images_dir.display()))?;
    if pruned.blobs > 0 || pruned.images > 0 {
        tracing::info!(
            "{}: removed {} image(s) and {} blob(s) ({}) the current version no longer needs",
            images_dir.display(),
            pruned.images,
            pruned.blobs,
            crate::progress::human_bytes(pruned.bytes)
        );
    }
    Ok(PullSummary { fetched, pushed })
}
