//! `export`: the copy engine from the source registries into a new `.airgap` archive.
//!
//! Every image is resolved (its manifests fetched) before the archive is started, so the
//! metadata written first is complete; then the blobs stream from the registries into the
//! archive, each once. The file appears under its name only when everything is in it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};

use crate::archive::{self, App, ArchiveDest, Compression, ZstdOptions};
use crate::attached;
use crate::copy::{self, CopyError, CopyJob, ImageSource, ResolvedImage};
use crate::digest::Digest;
use crate::progress::{human_bytes, Progress};
use crate::reference::Reference;
use crate::registry::transport::RegistrySource;
use crate::registry::Client;
use crate::upstream::{ManifestFile, Upstream};

pub struct ExportOptions {
    pub output: PathBuf,
    /// `os/arch[/variant]` to keep of multi-arch images; empty keeps all.
    pub platforms: Vec<String>,
    /// Carry signatures, attestations and SBOMs attached to the images ([`crate::attached`]).
    pub attached: bool,
    pub compression: Compression,
    pub zstd: ZstdOptions,
    pub concurrency: usize,
    pub quiet: bool,
    /// Split the archive into volumes of at most this many bytes (`--max-volume-size`).
    pub max_volume_size: Option<u64>,
    /// Sign the archive with this key (`--sign-key`).
    pub sign_key: Option<Arc<archive::SigningKey>>,
    /// Leave out the blobs this base holds (`--since`): a differential archive.
    pub since: Option<Arc<crate::differential::Base>>,
}

#[derive(Debug)]
pub struct ExportSummary {
    pub output: PathBuf,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Blobs a differential archive leaves out, and their bytes.
    pub omitted: usize,
    pub omitted_bytes: u64,
}

/// Resolves every image from its registry (manifests and configs: small reads, so as many
/// at once as small requests may be, see [`copy::lookups`]) and, with `attached`, what its
/// registry holds attached to it (signatures, attestations, SBOMs, referrers: by tag, and
/// by the referrers API), looked up as each image resolves. Attachments are resolved whole:
/// never filtered by platform (children without a platform are kept), and one that cannot
/// be read is skipped, never failing an export or pull.
pub async fn resolve_images(
    source: &RegistrySource,
    client: &Client,
    images: &[Reference],
    platforms: &[String],
    concurrency: usize,
    attached: bool,
) -> Result<Vec<ResolvedImage>, CopyError> {
    let lookups = copy::lookups(concurrency);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let arrived = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let resolving = async move {
        stream::iter(images)
            .map(|r| copy::resolve(source, r, platforms))
            .buffered(lookups)
            .inspect_ok(|i| {
                if attached {
                    let _ = tx.send((i.source.clone(), i.top.digest.clone()));
                }
            })
            .try_collect::<Vec<_>>()
            .await
        // `tx` dropped here: the lookups end with the last image.
    };
    let ((found, by_api), images) =
        futures_util::join!(attached::look_up(client, arrived, lookups), resolving);
    let mut images = images?;
    if !attached {
        return Ok(images);
    }
    let (found, indexes) = attached::with_api_referrers(source, found, by_api).await;
    // The referrers tags the API added to answer with their new index; the rest (every
    // referrer manifest, by digest) is read from the registry.
    let source = &attached::WithIndexes::new(source, indexes);
    let resolved: Vec<ResolvedImage> = stream::iter(&found)
        .map(|r| async move {
            copy::resolve(source, r, &[])
                .await
                .inspect_err(|e| tracing::warn!("{r}: not carried: {e}"))
                .ok()
        })
        .buffered(lookups)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    if !resolved.is_empty() {
        tracing::info!(
            "carrying {} signature(s), attestation(s), SBOM(s) or referrer index(es) attached to the images",
            resolved.len()
        );
    }
    images.extend(resolved);
    Ok(images)
}

/// Exports `upstream` under `name` (its checked app name).
pub async fn export(
    upstream: &Upstream,
    name: &str,
    images: &[Reference],
    client: Client,
    opts: &ExportOptions,
) -> Result<ExportSummary, CopyError> {
    // What the archive reader would refuse is refused now, before anything is downloaded.
    archive::check_contents(name, images.len(), &upstream.files)?;
    let source = Arc::new(RegistrySource::new(client.clone()));
    let resolved = resolve_images(
        &source,
        &client,
        images,
        &opts.platforms,
        opts.concurrency,
        opts.attached,
    )
    .await?;
    let app = App {
        name: name.to_string(),
        version: upstream.version.clone(),
        source: upstream.source.clone(),
        release: upstream.release.clone(),
    };
    write_archive(source, &resolved, app, &upstream.files, opts).await
}

/// The archive half of export, from any source: starts the archive for `images` (metadata,
/// layout index, the app's files), copies every blob into it once, and renames it into
/// place. Nothing is left behind on failure.
pub async fn write_archive(
    source: Arc<dyn ImageSource>,
    images: &[ResolvedImage],
    app: App,
    files: &[ManifestFile],
    opts: &ExportOptions,
) -> Result<ExportSummary, CopyError> {
    let differential = opts.since.as_ref().map(|base| base.record(images));
    let (omitted, omitted_bytes) = differential
        .as_ref()
        .map_or((0, 0), |d| (d.omitted.len(), d.omitted_size));
    let writer = archive::start_in_volumes(
        &opts.output,
        app,
        images,
        files,
        opts.compression,
        opts.zstd,
        opts.max_volume_size,
        differential.clone(),
    )?;
    // What the base holds is not copied: the jobs name only the blobs carried.
    let images = &crate::differential::carried(images, differential.as_ref());
    let distinct: BTreeMap<Digest, u64> = images
        .iter()
        .flat_map(ResolvedImage::all_blobs)
        .map(|d| (d.digest, d.size))
        .collect();
    let total: u64 = distinct.values().sum();
    let progress = Arc::new(Progress::new("exported", total, opts.quiet));
    let dest = Arc::new(ArchiveDest::new(writer, opts.concurrency));
    let jobs: Vec<CopyJob> = images.iter().map(CopyJob::in_place).collect();
    copy::copy_images(source, dest.clone(), &jobs, progress.clone()).await?;
    progress.finish();
    let dest = Arc::try_unwrap(dest)
        .ok()
        .expect("copy engine holds no reference after it returns");
    let volumes = dest.into_writer().finish_signed(opts.sign_key.as_deref())?;
    let output = volumes[0].clone();
    let in_volumes = match volumes.len() {
        1 => String::new(),
        n => format!(
            " in {n} volumes: {}",
            volumes
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let left_out = match &differential {
        Some(d) => format!(
            "; differential against {}: {omitted} blobs, {} left out",
            d.against.describe(),
            human_bytes(omitted_bytes)
        ),
        None => String::new(),
    };
    progress.println(&format!(
        "wrote {} ({} images, {} blobs, {}{left_out}){in_volumes}",
        output.display(),
        images.len(),
        distinct.len(),
        human_bytes(total)
    ));
    Ok(ExportSummary {
        output,
        images: images.len(),
        blobs: distinct.len(),
        bytes: total,
        omitted,
        omitted_bytes,
    })
}
