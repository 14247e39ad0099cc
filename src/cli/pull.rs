//! `kots-bundle pull`: fetch an app and its images on a host that reaches both the internet
//! and the private registry (the KOTS docs' single-host flow), or update a kept app directory.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::{runtime, LoginArgs, RegistryArgs, SourceArgs};
use super::import::{DestinationArgs, TargetArgs};
use super::selection::{confirm_candidates, report_problems, SelectionArgs};
use crate::cli::exit;
use crate::overlay::WriteOptions;
use crate::pull::{default_app_dir, pull, PullOptions};
use crate::registry::Client;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The app's manifests: a directory, a .tar.gz/.tgz, an https:// URL of one, or
    /// replicated://APP with --license-file.
    pub upstream: String,
    /// Push the images to --registry-endpoint and rewrite the manifests to use them.
    #[arg(long, requires = "registry_endpoint")]
    pub rewrite_images: bool,
    /// The private registry (with --rewrite-images).
    #[arg(long, value_name = "REGISTRY")]
    pub registry_endpoint: Option<String>,
    /// The registry namespace for this app's images (see `import --help`).
    #[arg(long, value_name = "NS")]
    pub image_namespace: Option<String>,
    /// Keep each image's whole source path under the namespace.
    #[arg(long)]
    pub preserve_paths: bool,
    /// Add imagePullSecrets with this (existing) secret name to every pod spec.
    #[arg(long, value_name = "NAME")]
    pub image_pull_secret: Option<String>,
    /// Also write that secret with the registry credentials given.
    #[arg(long, requires = "image_pull_secret")]
    pub write_pull_secret: bool,
    /// The app directory (default: the current directory if it is one, else ./<app name>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub upstream_args: super::upstream::UpstreamArgs,
    #[command(flatten)]
    pub render: super::render::RenderArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &PullArgs, quiet: bool, strict: bool) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let upstream = rt.block_on(args.upstream_args.load_with(
        &args.upstream,
        args.render.license_file.as_deref(),
        kept_release(args)?,
        false,
    ))?;
    let rendered = super::render::for_discovery(&upstream, &args.render)?;
    let mut found = args.selection.select(&rendered.for_discovery())?;

    let cwd = std::env::current_dir().context("current directory")?;
    let app_dir = match &args.dest {
        Some(d) => d.clone(),
        None => {
            let local = std::path::Path::new(&args.upstream);
            default_app_dir(&cwd, upstream.require_name()?, Some(local))?
        }
    };

    // An update run without the destination flags pushes where the last run did, and says
    // so; a different destination given explicitly is used, and said too.
    let saved = crate::overlay::read_state(&app_dir)?.and_then(|s| s.destination);
    let dest_args = if args.rewrite_images {
        let d = DestinationArgs {
            target: TargetArgs {
                registry_endpoint: args
                    .registry_endpoint
                    .clone()
                    .context("--registry-endpoint")?,
                image_namespace: args.image_namespace.clone(),
                preserve_paths: args.preserve_paths,
            },
            image_pull_secret: args.image_pull_secret.clone(),
            write_pull_secret: args.write_pull_secret,
        };
        if let Some(s) = &saved {
            let new = d.destination()?.saved();
            if new.endpoint != s.endpoint || new.namespace != s.namespace {
                eprintln!(
                    "note: pushing to {} (the last run in {} pushed to {})",
                    describe(&new),
                    app_dir.display(),
                    describe(s)
                );
            }
        }
        Some(d)
    } else if let Some(s) = &saved {
        if args.registry_endpoint.is_some() {
            bail!("--registry-endpoint has no effect without --rewrite-images");
        }
        eprintln!(
            "note: pushing to {} again, as the last run in {} did (give --rewrite-images \
             --registry-endpoint ... to push elsewhere)",
            describe(s),
            app_dir.display()
        );
        Some(DestinationArgs {
            target: TargetArgs {
                registry_endpoint: s.endpoint.clone(),
                image_namespace: s.namespace.clone(),
                preserve_paths: s.preserve_paths,
            },
            image_pull_secret: args
                .image_pull_secret
                .clone()
                .or(s.image_pull_secret.clone()),
            write_pull_secret: args.write_pull_secret,
        })
    } else {
        if args.registry_endpoint.is_some() {
            bail!("--registry-endpoint has no effect without --rewrite-images");
        }
        None
    };
    let (destination, dest_client, write) = match dest_args {
        Some(d) => {
            let destination = d.destination()?;
            let host = destination.endpoint.registry.clone();
            let options = args.registry.destination_options(&args.login, &host)?;
            let write = d.write_options(options.credentials.as_ref().map(|(_, c)| c), &host)?;
            (Some(destination), Some(Client::new(options)?), write)
        }
        None => {
            args.login.refuse_without_destination()?;
            (None, None, WriteOptions::default())
        }
    };
    let source_client = Client::new(args.registry.source_options(&args.source)?)?;
    rt.block_on(confirm_candidates(
        &mut found,
        &source_client,
        args.registry.concurrency as usize,
    ));
    report_problems(&found);
    let images = found.references();
    if images.is_empty() {
        crate::warnings::warn(format_args!("no images found in {}", upstream.source));
    }
    crate::warnings::check_strict(strict, "in the app's manifests; nothing was downloaded")?;
    let mut render = args
        .render
        .inputs(crate::render::helm::Mode::Install, upstream.require_name()?)?;
    render.version = upstream.version.clone();
    render.image_pull_secret = write.image_pull_secret.clone();
    let opts = PullOptions {
        app_dir: app_dir.clone(),
        destination,
        write,
        render,
        platforms: args.source.platform.clone(),
        attached: !args.source.no_signatures,
        concurrency: args.registry.concurrency as usize,
        quiet,
    };
    let summary = super::run_until_signal(
        rt,
        pull(&upstream, &images, source_client, dest_client, &opts),
    )?;
    if !quiet {
        let f = &summary.fetched;
        eprintln!(
            "pulled {} images into {} ({} blobs fetched, {} already there)",
            images.len(),
            app_dir.join(crate::pull::IMAGES_DIR).display(),
            f.blobs_copied,
            f.blobs_existed
        );
        if let Some(p) = &summary.pushed {
            eprintln!(
                "pushed: {} blobs, {} mounted, {} already present; {} images up to date",
                p.blobs_copied, p.blobs_mounted, p.blobs_existed, p.images_up_to_date
            );
        }
        eprintln!(
            "deploy with: kubectl apply -k {}",
            app_dir.join("overlays/midstream").display()
        );
    }
    Ok(exit::OK)
}

/// The vendor release the app directory this run would update holds, so `replicated://`
/// asks for what follows it. The directory is found as after the download (`--dest`, else
/// the current directory if it is an app directory, else `./APP` named by `--app-name` or
/// the `replicated://` URL); a new directory has none.
fn kept_release(args: &PullArgs) -> anyhow::Result<Option<crate::upstream::vendor::VendorRelease>> {
    let Some(rest) = args.upstream.strip_prefix("replicated://") else {
        return Ok(None);
    };
    let cwd = std::env::current_dir().context("current directory")?;
    let dir = match (&args.dest, &args.upstream_args.app_name) {
        (Some(d), _) => d.clone(),
        (None, _) if crate::overlay::is_app_dir(&cwd) => cwd,
        (None, Some(name)) => cwd.join(name),
        (None, None) => match rest.split('/').next().and_then(crate::names::app_name_from) {
            Some(name) => cwd.join(name),
            None => return Ok(None),
        },
    };
    Ok(crate::overlay::read_state(&dir)?.and_then(|s| s.release))
}

/// `REGISTRY/NS` as the user gave it.
fn describe(d: &crate::overlay::SavedDestination) -> String {
    match &d.namespace {
        Some(ns) => format!("{}/{ns}", d.endpoint),
        None => d.endpoint.clone(),
    }
}
