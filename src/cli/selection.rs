//! Which images an app needs: what discovery finds in its manifests, plus `--image` and
//! `--images-file`, minus `--exclude-image`, with the candidates found outside pod specs
//! confirmed against their registries. Shared by `images`, `export` and `pull`.

use std::path::PathBuf;

use anyhow::Context;
use futures_util::{stream, StreamExt};

use crate::discover::{self, Confirmation, Discovery, Location};
use crate::reference::Reference;
use crate::registry::Client;
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

/// Checks every candidate not yet checked against its source registry: a HEAD of its
/// manifest through `client` (so through mirrors, like every source read), `concurrency`
/// at a time. A candidate that is not there, or whose registry cannot be asked, is marked
/// unconfirmed (reported by [`report_problems`]), never an error: it may well not be an
/// image at all.
pub async fn confirm_candidates(found: &mut Discovery, client: &Client, concurrency: usize) {
    let results: Vec<(Reference, Confirmation)> = stream::iter(found.unchecked())
        .map(|r| async move {
            let asked = client
                .head_manifest(r.registry(), r.repository(), r.manifest_reference())
                .await;
            let c = match asked {
                Ok(Some(_)) => Confirmation::Confirmed,
                Ok(None) => Confirmation::Unconfirmed(format!(
                    "{} has no manifest {}",
                    r.name(),
                    r.manifest_reference()
                )),
                Err(e) => Confirmation::Unconfirmed(format!("{e:#}")),
            };
            (r, c)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (r, c) in results {
        tracing::debug!(image = %r, confirmation = ?c, "candidate checked");
        found.confirm(&r, c);
    }
}

/// Prints discovery problems, and every place of a candidate its registry did not
/// confirm, as warnings on stderr.
pub fn report_problems(found: &Discovery) {
    for p in &found.problems {
        crate::warnings::warn(p);
    }
    for (r, c) in &found.candidates {
        let Confirmation::Unconfirmed(why) = &c.confirmation else {
            continue;
        };
        for s in &c.sites {
            eprintln!(
                "warning: {}: {r} looks like an image but is not mirrored ({why}); if the \
                 app needs it, add it with --image",
                s.at
            );
        }
    }
}
