//! `.airgap` archives built without a registry: synthetic images in an OCI layout, written by
//! the library's own export path (`export::write_archive`) with the layout as the source.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kots_bundle::archive::{App, Compression, SigningKey, ZstdOptions};
use kots_bundle::copy;
use kots_bundle::export::{write_archive, ExportOptions};
use kots_bundle::layout::Layout;
use kots_bundle::reference::Reference;
use kots_bundle::upstream::ManifestFile;

use super::synth::{self, ImageSpec, SynthImage};

/// Writes `specs` into `dir/layout`, then an archive of them (and `upstream`) at `path`.
pub async fn archive_of(
    dir: &Path,
    specs: &[ImageSpec],
    upstream: &[ManifestFile],
    path: &Path,
    compression: Compression,
) -> (PathBuf, Vec<SynthImage>) {
    archive_in_volumes(dir, specs, upstream, path, compression, None).await
}

/// [`archive_of`], in volumes of at most `max_volume_size` bytes.
pub async fn archive_in_volumes(
    dir: &Path,
    specs: &[ImageSpec],
    upstream: &[ManifestFile],
    path: &Path,
    compression: Compression,
    max_volume_size: Option<u64>,
) -> (PathBuf, Vec<SynthImage>) {
    let extra = Extra {
        compression,
        max_volume_size,
        ..Extra::default()
    };
    archive_with(dir, specs, upstream, path, extra).await
}

/// What else an archive is written with.
#[derive(Default)]
pub struct Extra {
    pub compression: Compression,
    pub max_volume_size: Option<u64>,
    pub sign_key: Option<Arc<SigningKey>>,
    /// The app's version (default `1.0`).
    pub version: Option<String>,
}

/// [`archive_of`] with [`Extra`] options.
pub async fn archive_with(
    dir: &Path,
    specs: &[ImageSpec],
    upstream: &[ManifestFile],
    path: &Path,
    extra: Extra,
) -> (PathBuf, Vec<SynthImage>) {
    let Extra {
        compression,
        max_volume_size,
        sign_key,
        version,
    } = extra;
    let layout_dir = dir.join("layout");
    let images = synth::write_layout(&layout_dir, specs);
    let layout = Arc::new(Layout::open_or_create(&layout_dir).unwrap());
    let mut resolved = Vec::new();
    for img in &images {
        let r = Reference::parse(&img.name).unwrap();
        resolved.push(copy::resolve(&*layout, &r, &[]).await.unwrap());
    }
    let app = App {
        name: "app".into(),
        version: Some(version.unwrap_or_else(|| "1.0".into())),
        source: "test".into(),
        release: None,
    };
    let opts = ExportOptions {
        output: path.to_path_buf(),
        platforms: Vec::new(),
        attached: false,
        compression,
        zstd: ZstdOptions::default(),
        concurrency: 4,
        quiet: true,
        max_volume_size,
        sign_key,
        since: None,
    };
    let summary = write_archive(layout, &resolved, app, upstream, &opts)
        .await
        .unwrap();
    assert_eq!(summary.images, specs.len());
    (summary.output, images)
}
