//! `export`: the copy engine from the source registries into a new `.airgap` archive.
//!
//! Every image is resolved (its manifests fetched) before the archive is started, so the
//! metadata written first is complete; then the blobs stream from the registries into the
//! archive, each once. The file appears under its name only when everything is in it.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use crate::archive::{self, App, ArchiveDest, Compression, ZstdOptions};
use crate::copy::{self, CopyError, CopyJob, ResolvedImage};
use crate::progress::{human_bytes, Progress};
use crate::reference::Reference;
use crate::registry::transport::RegistrySource;
use crate::registry::Client;
use crate::upstream::Upstream;

pub struct ExportOptions {
    pub output: PathBuf,
    /// `os/arch[/variant]` to keep of multi-arch images; empty keeps all.
    pub platforms: Vec<String>,
    pub compression: Compression,
    pub zstd: ZstdOptions,
    pub concurrency: usize,
    pub quiet: bool,
}

#[derive(Debug)]
pub struct ExportSummary {
    pub output: PathBuf,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// Resolves every image from its registry (manifests only), a few at a time.
pub async fn resolve_all(
    source: &RegistrySource,
    images: &[Reference],
    platforms: &[String],
    concurrency: usize,
) -> Result<Vec<ResolvedImage>, CopyError> {
    stream::iter(images)
        .map(|r| copy::resolve(source, r, platforms))
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

pub async fn export(
    upstream: &Upstream,
    images: &[Reference],
    client: Client,
    opts: &ExportOptions,
) -> Result<ExportSummary, CopyError> {
    let source = Arc::new(RegistrySource::new(client));
    let resolved = resolve_all(&source, images, &opts.platforms, opts.concurrency).await?;
    let app = App {
        name: upstream.name.clone(),
        version: upstream.version.clone(),
        source: upstream.source.clone(),
    };
    let writer = archive::start(
        &opts.output,
        app,
        &resolved,
        &upstream.files,
        opts.compression,
        opts.zstd,
    )?;
    let mut distinct = std::collections::BTreeMap::new();
    for r in &resolved {
        for d in r.all_blobs() {
            distinct.insert(d.digest.clone(), d.size);
        }
    }
    let total: u64 = distinct.values().sum();
    let progress = Arc::new(Progress::new("exported", total, opts.quiet));
    let dest = Arc::new(ArchiveDest::new(writer));
    let jobs: Vec<CopyJob> = resolved
        .iter()
        .map(|i| CopyJob {
            image: i.clone(),
            target: i.source.clone(),
        })
        .collect();
    copy::copy_images(source, dest.clone(), &jobs, progress.clone()).await?;
    progress.finish();
    let dest = Arc::try_unwrap(dest)
        .ok()
        .expect("copy engine holds no reference after it returns");
    let output = dest.into_writer().finish()?;
    progress.println(&format!(
        "wrote {} ({} images, {} blobs, {})",
        output.display(),
        resolved.len(),
        distinct.len(),
        human_bytes(total)
    ));
    Ok(ExportSummary {
        output,
        images: resolved.len(),
        blobs: distinct.len(),
        bytes: total,
    })
}
