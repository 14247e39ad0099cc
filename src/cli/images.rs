//! `kots-bundle images`: list every image an app needs.
//!
//! stdout carries only the result (references one per line, or JSON), so scripts can pipe
//! it; problems go to stderr as warnings.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::selection::report_problems;
use crate::discover::{self, Discovery, Location};
use crate::upstream::{self, ManifestFile};

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// A directory of manifests, a .tar.gz/.tgz of them, or an .airgap archive.
    pub path: PathBuf,
    /// Print JSON with where each image was found.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct JsonImage<'a> {
    reference: String,
    locations: &'a [Location],
}

pub fn run(args: &ImagesArgs) -> anyhow::Result<i32> {
    let found = find(&args.path)?;
    report_problems(&found);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let list: Vec<JsonImage> = found
            .images
            .iter()
            .map(|(r, locations)| JsonImage {
                reference: r.to_string(),
                locations,
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        // Sorted as text, the way `sort` would, not by the reference's fields.
        let mut lines: Vec<String> = found.images.keys().map(|r| r.to_string()).collect();
        lines.sort();
        lines.dedup();
        lines.iter().try_for_each(|l| writeln!(out, "{l}"))
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(super::exit::OK),
        // `kots-bundle images . | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(super::exit::OK),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Reads PATH as a manifests directory or tarball, a single manifest file, or an archive.
fn find(path: &Path) -> anyhow::Result<Discovery> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "{}: cannot read the app to list images from",
            path.display()
        )
    })?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    if meta.is_dir() || upstream::is_tarball_name(&name) {
        let up = upstream::load_path(path, &upstream::UpstreamOptions::default())?;
        return Ok(discover::discover(&up.files));
    }
    if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
        let data =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(discover::discover(&[ManifestFile {
            path: file_name,
            data,
        }]));
    }
    discover::discover_archive(path).with_context(|| {
        format!(
            "{}: expected a directory of manifests, a .tar.gz/.tgz, a manifest file or an \
             .airgap archive",
            path.display()
        )
    })
}
