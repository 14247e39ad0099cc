//! `kots-bundle export`: fetch an app's manifests and every image they need into one
//! `.airgap` file.

use std::path::PathBuf;

use anyhow::Context;

use super::common::{runtime, RegistryArgs, SourceArgs};
use super::selection::{confirm_candidates, report_problems, SelectionArgs};
use crate::archive::{Compression, ZstdOptions};
use crate::cli::exit;
use crate::export::{export, ExportOptions};
use crate::registry::Client;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The app's manifests: a directory, a .tar.gz/.tgz, an https:// URL of one, or
    /// replicated://APP with --license-file.
    pub upstream: String,
    /// The archive to write (default: ./<app name>.airgap). Written only when complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// zstd (compact, seekable) or none (a plain tar that skopeo reads as oci-archive:).
    #[arg(long, value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// zstd level (1-19) for manifests, configs, uncompressed layers and the app's files.
    /// Layers that are gzip or zstd already always use level 1: a higher one only costs time.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub upstream_args: super::upstream::UpstreamArgs,
    #[command(flatten)]
    pub render: super::render::RenderArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &ExportArgs, quiet: bool, strict: bool) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let upstream = rt.block_on(
        args.upstream_args
            .load(&args.upstream, args.render.license_file.as_deref()),
    )?;
    let name = upstream.require_name()?.to_string();
    // Images are found in what the app renders to (templates, charts), not in the templates.
    let rendered = super::render::for_discovery(&upstream, &args.render)?;
    let mut found = args.selection.select(&rendered.for_discovery())?;
    let client = Client::new(args.registry.source_options(&args.source)?)?;
    rt.block_on(confirm_candidates(
        &mut found,
        &client,
        args.registry.concurrency as usize,
    ));
    report_problems(&found);
    let images = found.references();
    if images.is_empty() {
        crate::warnings::warn(format_args!("no images found in {}", upstream.source));
    }
    // Said now, on the online host, rather than first at import inside the air gap.
    let anywhere = crate::rewrite::Endpoint::parse("registry.invalid").expect("valid");
    if let Err(crate::rewrite::RewriteError::Collision { first, second, .. }) =
        crate::rewrite::plan(&images, &anywhere, None, false)
    {
        crate::warnings::warn(format_args!(
            "images {first} and {second} have the same last path component, so they would be \
             pushed to the same name; import with --preserve-paths"
        ));
    }
    crate::warnings::check_strict(strict, "in the app's manifests; nothing was downloaded")?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.airgap", name)));
    let opts = ExportOptions {
        output: output.clone(),
        compression: args.compression,
        zstd: ZstdOptions {
            level: args.zstd_level,
            ..ZstdOptions::default()
        },
        platforms: args.source.platform.clone(),
        attached: !args.source.no_signatures,
        concurrency: args.registry.concurrency as usize,
        quiet,
    };
    super::run_until_signal(rt, async {
        Ok(export(&upstream, &name, &images, client, &opts).await?)
    })
    .with_context(|| format!("export to {} failed; nothing was written", output.display()))?;
    Ok(exit::OK)
}
