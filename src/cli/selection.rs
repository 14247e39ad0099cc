//! Which images an app needs: what discovery finds in its manifests, plus `--image` and
//! `--images-file`, minus `--exclude-image`. Shared by `images`, `export` and `pull`.

use std::path::PathBuf;

use anyhow::Context;

use crate::discover::{self, Discovery, Location};
use crate::reference::Reference;
use crate::upstream::ManifestFile;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct SelectionArgs {
    /// Also include this image (repeatable).
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Also include the images listed in FILE, one per line ('#' starts a comment).
    #[arg(long, value_name = "FILE")]
    pub images_file: Option<PathBuf>,
    /// Leave this image out, even if the manifests reference it (repeatable).
    #[arg(long = "exclude-image", value_name = "REF")]
    pub exclude: Vec<String>,
}

impl SelectionArgs {
    /// Discovers images in `files` and applies the flags. Problems (templated or invalid
    /// references) are in the returned discovery for the caller to report.
    pub fn select(&self, files: &[ManifestFile]) -> anyhow::Result<Discovery> {
        let mut found = discover::discover(files);
        for s in &self.images {
            let r = Reference::parse(s).with_context(|| format!("--image {s}"))?;
            found.add(
                r,
                Location {
                    file: "--image".into(),
                    path: String::new(),
                },
            );
        }
        if let Some(f) = &self.images_file {
            for r in discover::read_images_file(f)? {
                found.add(
                    r,
                    Location {
                        file: f.display().to_string(),
                        path: String::new(),
                    },
                );
            }
        }
        for s in &self.exclude {
            let r = Reference::parse(s).with_context(|| format!("--exclude-image {s}"))?;
            if !found.exclude(&r) {
                crate::warnings::warn(format_args!("--exclude-image {s}: no such image was found"));
            }
        }
        Ok(found)
    }
}

/// Prints discovery problems as warnings on stderr.
pub fn report_problems(found: &Discovery) {
    for p in &found.problems {
        crate::warnings::warn(p);
    }
}
