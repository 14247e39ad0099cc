//! `kots-bundle template`: print what will deploy (the rendered base: KOTS templates with
//! the operator's config, charts rendered by helm, excluded documents and KOTS/troubleshoot
//! kinds left out), before anything is pushed. Only the documents go to stdout.

use std::io::Write as _;

use anyhow::Context as _;

use super::common::runtime;
use super::render::{AppSource, RenderArgs};
use crate::archive::ArchiveReader;
use crate::import::Destination;
use crate::render::config::ConfigValues;
use crate::render::helm::Mode;
use crate::render::template::LocalRegistry;
use crate::rewrite::Endpoint;
use crate::upstream::Upstream;

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    /// The app: an upstream (directory, .tar.gz/.tgz, https:// URL, replicated://APP), an
    /// app directory (rendered with its saved config values and destination), or an .airgap
    /// archive.
    pub source: String,
    /// The private registry the registry template functions (LocalImageName, ...) point
    /// at. Default for an app directory: the one it last pushed to.
    #[arg(long, value_name = "REGISTRY")]
    pub registry_endpoint: Option<String>,
    /// The registry namespace for this app's images (with --registry-endpoint).
    #[arg(long, value_name = "NS", requires = "registry_endpoint")]
    pub image_namespace: Option<String>,
    /// Keep each image's whole source path under the namespace (as import would).
    #[arg(long, requires = "registry_endpoint")]
    pub preserve_paths: bool,
    /// The image pull secret name templates see (ImagePullSecretName).
    #[arg(long, value_name = "NAME")]
    pub image_pull_secret: Option<String>,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub upstream_args: super::upstream::UpstreamArgs,
}

pub fn run(args: &TemplateArgs) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let app = rt.block_on(super::render::load_app(
        &args.source,
        &args.upstream_args,
        args.render.license_file.as_deref(),
    ))?;
    let (upstream, saved, saved_destination) = match app {
        AppSource::Upstream(up) => (up, None, None),
        AppSource::AppDir(up, dir) => {
            let values = dir
                .join(crate::overlay::META_DIR)
                .join(crate::overlay::CONFIG_VALUES_FILE);
            let saved = match values.exists() {
                true => Some(ConfigValues::load(&values)?),
                false => None,
            };
            let dest = crate::overlay::read_state(&dir)?.and_then(|s| s.destination);
            (up, saved, dest)
        }
        AppSource::Archive(path) => (read_archive(&path)?, None, None),
    };
    let destination = match (&args.registry_endpoint, &saved_destination) {
        (Some(r), _) => Some(Destination {
            endpoint: Endpoint::parse(r).with_context(|| format!("--registry-endpoint {r}"))?,
            namespace: args.image_namespace.clone(),
            preserve_paths: args.preserve_paths,
        }),
        (None, Some(s)) => Some(Destination::from_saved(s)?),
        (None, None) => None,
    };
    let app_name = upstream.name.clone().unwrap_or_else(|| "app".into());
    let mut inputs = args.render.inputs(Mode::Install, &app_name)?;
    inputs.version = upstream.version.clone();
    inputs.saved = saved;
    inputs.image_pull_secret = args
        .image_pull_secret
        .clone()
        .or_else(|| saved_destination.and_then(|d| d.image_pull_secret));
    inputs.local_registry = destination.map(|d| LocalRegistry {
        endpoint: d.endpoint,
        namespace: d.namespace,
        preserve_paths: d.preserve_paths,
    });
    let rendered = crate::render::render(&upstream.files, &inputs)
        .with_context(|| format!("rendering {}", upstream.source))?;

    let mut out = std::io::stdout().lock();
    let mut written = Ok(());
    for (i, (path, data)) in crate::overlay::base_files(&rendered.files)
        .into_iter()
        .enumerate()
    {
        written = written.and_then(|()| {
            if i > 0 {
                out.write_all(b"---\n")?;
            }
            writeln!(out, "# Source: {path}")?;
            out.write_all(&data)?;
            if !data.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            Ok(())
        });
    }
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(super::exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(super::exit::OK),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// An archive's app as shipped (its head, index and manifests checked first).
fn read_archive(path: &std::path::Path) -> anyhow::Result<Upstream> {
    let reader = ArchiveReader::open(path)?;
    reader.check_layout()?;
    let meta = reader.metadata();
    Ok(Upstream {
        source: meta.app.source.clone(),
        name: Some(meta.app.name.clone()),
        version: meta.app.version.clone(),
        files: reader.upstream_files()?,
        release: meta.app.release.clone(),
    })
}
