//! `kots-bundle images`: list every image an app needs.
//!
//! stdout carries only the result (references one per line, or JSON), so scripts can pipe
//! it; problems go to stderr as warnings.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::{runtime, RegistryArgs, SourceArgs};
use super::selection::{confirm_candidates, report_problems};
use crate::discover::{self, Confirmation, Discovery, Location, SiteKind};
use crate::reference::Reference;
use crate::registry::Client;

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// A directory of manifests, a .tar.gz/.tgz of them, a manifest file, an app
    /// directory, or an .airgap archive. The app is rendered (templates with their
    /// defaults, charts with helm) as export renders it.
    pub path: PathBuf,
    /// Print JSON with where each image was found, and whether it is required (pod specs
    /// and the like) or a candidate (found elsewhere: operator fields, args, env).
    #[arg(long)]
    pub json: bool,
    /// Ask the source registries whether each candidate exists (a HEAD of its manifest,
    /// as export does), and leave out those that do not. Without it, no registry is
    /// contacted and every candidate is listed.
    #[arg(long)]
    pub confirm: bool,
    #[command(flatten)]
    pub render: super::render::RenderArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(serde::Serialize)]
struct JsonImage<'a> {
    reference: String,
    /// `required` (always mirrored) or `candidate` (mirrored once confirmed).
    kind: &'static str,
    /// Candidates only: whether the registry has it; absent when not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed: Option<bool>,
    locations: Vec<JsonLocation<'a>>,
}

#[derive(serde::Serialize)]
struct JsonLocation<'a> {
    #[serde(flatten)]
    at: &'a Location,
    /// Candidates only: what kind of place (`image`, `image-map`, `arg`, `env`).
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<SiteKind>,
}

fn json_list(found: &Discovery) -> Vec<JsonImage<'_>> {
    let mut list: BTreeMap<&Reference, JsonImage> = BTreeMap::new();
    for (r, locations) in &found.images {
        let locations = locations
            .iter()
            .map(|at| JsonLocation { at, site: None })
            .collect();
        list.insert(
            r,
            JsonImage {
                reference: r.to_string(),
                kind: "required",
                confirmed: None,
                locations,
            },
        );
    }
    for (r, c) in &found.candidates {
        let locations = c
            .sites
            .iter()
            .map(|s| JsonLocation {
                at: &s.at,
                site: Some(s.site),
            })
            .collect();
        let confirmed = match c.confirmation {
            Confirmation::Unchecked => None,
            Confirmation::Confirmed => Some(true),
            Confirmation::Unconfirmed(_) => Some(false),
        };
        list.insert(
            r,
            JsonImage {
                reference: r.to_string(),
                kind: "candidate",
                confirmed,
                locations,
            },
        );
    }
    list.into_values().collect()
}

pub fn run(args: &ImagesArgs) -> anyhow::Result<i32> {
    let mut found = find(args)?;
    if args.confirm {
        if !args.source.platform.is_empty() {
            bail!("--platform has no effect on images");
        }
        let client = Client::new(args.registry.source_options(&args.source)?)?;
        runtime()?.block_on(confirm_candidates(
            &mut found,
            &client,
            args.registry.concurrency as usize,
        ));
    }
    report_problems(&found);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &json_list(&found))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        // Sorted as text, the way `sort` would, not by the reference's fields.
        let mut lines: Vec<String> = found.listed().iter().map(|r| r.to_string()).collect();
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

/// What PATH needs: an upstream or app directory rendered as export renders it, or an
/// archive's metadata (the head of the file only).
fn find(args: &ImagesArgs) -> anyhow::Result<Discovery> {
    let source = args.path.display().to_string();
    std::fs::metadata(&args.path)
        .with_context(|| format!("{source}: cannot read the app to list images from"))?;
    let app = runtime()?.block_on(super::render::load_app(
        &source,
        &Default::default(),
        args.render.license_file.as_deref(),
    ))?;
    let upstream = match app {
        super::render::AppSource::Archive(path) => {
            return discover::discover_archive(&path).with_context(|| {
                format!(
                    "{source}: expected a directory of manifests, a .tar.gz/.tgz, a manifest \
                     file, an app directory or an .airgap archive"
                )
            })
        }
        super::render::AppSource::Upstream(up) | super::render::AppSource::AppDir(up, _) => up,
    };
    let rendered = super::render::for_discovery(&upstream, &args.render)?;
    Ok(discover::discover(&rendered.for_discovery()))
}
