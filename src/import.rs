//! `import`: the copy engine from an `.airgap` archive (read in place) to the private
//! registry, then the app directory.
//!
//! Order matters for trust: the destination is checked (reachable, credentials, namespace
//! accepts pushes) before any byte moves, and the app directory is written only after every
//! image is in the registry, so an overlay never points at an image that is not there.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures_util::{stream, StreamExt, TryStreamExt};

use crate::archive::{ArchiveReader, ArchiveSource};
use crate::copy::{self, CopyJob, CopyReport, ResolvedImage};
use crate::overlay::{self, State, StateImage, WriteOptions};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::transport::RegistryDest;
use crate::registry::Client;
use crate::rewrite::{self, Endpoint, ImageRewrite};
use crate::upstream::Upstream;

/// Where images go and how they are named there.
#[derive(Debug, Clone)]
pub struct Destination {
    pub endpoint: Endpoint,
    pub namespace: Option<String>,
    pub preserve_paths: bool,
}

impl Destination {
    pub fn plan(&self, sources: &[Reference]) -> Result<Vec<ImageRewrite>, rewrite::RewriteError> {
        rewrite::plan(
            sources,
            &self.endpoint,
            self.namespace.as_deref(),
            self.preserve_paths,
        )
    }
}

pub struct ImportOptions {
    pub archive: PathBuf,
    pub destination: Destination,
    pub app_dir: Option<PathBuf>,
    pub write: WriteOptions,
    pub concurrency: usize,
    pub quiet: bool,
}

#[derive(Debug)]
pub struct ImportSummary {
    pub app_dir: PathBuf,
    pub report: CopyReport,
}

/// Checks, before anything moves, that every destination repository accepts pushes.
/// Distinct repositories are checked because ECR needs each to exist.
pub async fn preflight(
    client: &Client,
    rewrites: &[ImageRewrite],
    concurrency: usize,
) -> anyhow::Result<()> {
    let mut repos: Vec<(String, String)> = rewrites
        .iter()
        .map(|r| {
            (
                r.target.registry().to_string(),
                r.target.repository().to_string(),
            )
        })
        .collect();
    repos.sort();
    repos.dedup();
    let Some((registry, _)) = repos.first() else {
        return Ok(());
    };
    client.ping(registry).await?;
    stream::iter(repos.iter())
        .map(|(registry, repository)| async move { client.check_push(registry, repository).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Pushes resolved images to their targets and proves each pushed manifest landed; shared
/// by import and pull.
pub async fn push(
    source: Arc<dyn copy::ImageSource>,
    client: &Client,
    images: &[ResolvedImage],
    rewrites: &[ImageRewrite],
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<CopyReport> {
    let jobs: Vec<CopyJob> = images
        .iter()
        .map(|image| {
            let rw = rewrites
                .iter()
                .find(|r| r.source == image.source)
                .expect("a rewrite for every image");
            CopyJob {
                image: image.clone(),
                target: rw.target.clone(),
            }
        })
        .collect();
    let total: u64 = images.iter().map(|i| i.size()).sum();
    let progress = Arc::new(Progress::new("pushed", total, quiet));
    let dest = Arc::new(RegistryDest::new(client.clone(), concurrency));
    let report = copy::copy_images(source, dest.clone(), &jobs, progress.clone()).await?;
    progress.finish();
    dest.confirm_landed().await?;
    Ok(report)
}

/// The state record of what was pushed.
pub fn state_for(
    upstream: &Upstream,
    images: &[ResolvedImage],
    rewrites: &[ImageRewrite],
) -> Result<State, crate::upstream::UpstreamError> {
    Ok(State {
        app: upstream.require_name()?.to_string(),
        version: upstream.version.clone(),
        source: upstream.source.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        images: images
            .iter()
            .filter_map(|i| {
                let rw = rewrites.iter().find(|r| r.source == i.source)?;
                Some(StateImage {
                    source: i.source.to_string(),
                    target: rw.target.to_string(),
                    digest: i.top.digest.to_string(),
                })
            })
            .collect(),
    })
}

pub async fn import(client: Client, opts: &ImportOptions) -> anyhow::Result<ImportSummary> {
    let path = opts.archive.clone();
    // The head, the entry index and every manifest are checked before the registry is
    // contacted: a damaged or tampered-with archive is refused with nothing pushed.
    let reader = Arc::new(
        tokio::task::spawn_blocking(move || {
            let reader = ArchiveReader::open(&path)?;
            reader.check_layout()?;
            Ok::<_, crate::archive::ArchiveError>(reader)
        })
        .await
        .context("reading the archive")??,
    );
    let meta = reader.metadata().clone();
    let sources: Vec<Reference> = meta.images.iter().map(|i| i.reference.clone()).collect();
    let rewrites = opts.destination.plan(&sources)?;
    preflight(&client, &rewrites, opts.concurrency).await?;

    let source = Arc::new(ArchiveSource::new(reader.clone()));
    let mut images = Vec::with_capacity(sources.len());
    for r in &sources {
        images.push(copy::resolve(&*source, r, &[]).await?);
    }
    let report = push(
        source,
        &client,
        &images,
        &rewrites,
        opts.concurrency,
        opts.quiet,
    )
    .await?;

    let r = reader.clone();
    let files = tokio::task::spawn_blocking(move || r.upstream_files())
        .await
        .context("reading the manifests")??;
    let upstream = Upstream {
        source: meta.app.source.clone(),
        name: Some(meta.app.name.clone()),
        version: meta.app.version.clone(),
        files,
    };
    let app_dir = opts
        .app_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&meta.app.name));
    let state = state_for(&upstream, &images, &rewrites)?;
    overlay::write_app_dir(&app_dir, &upstream, &rewrites, &state, &opts.write)
        .with_context(|| format!("writing the app directory {}", app_dir.display()))?;
    Ok(ImportSummary { app_dir, report })
}
