//! `import`: the copy engine from an `.airgap` archive (read in place) to the private
//! registry, then the app directory.
//!
//! Order matters for trust: the destination is checked (reachable, credentials, namespace
//! accepts pushes) before any byte moves, and the app directory is written only after every
//! image is in the registry, so an overlay never points at an image that is not there.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::archive::{ArchiveReader, ArchiveSource};
use crate::copy::{self, CopyJob, CopyReport, ResolvedImage};
use crate::overlay::{self, AppDir, Release, SavedDestination, State, StateImage, WriteOptions};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::transport::RegistryDest;
use crate::registry::Client;
use crate::render::template::LocalRegistry;
use crate::render::{Inputs, Rendered};
use crate::rewrite::{self, Endpoint, ImageRewrite};
use crate::upstream::{ManifestFile, Upstream};

/// Where images go and how they are named there.
#[derive(Debug, Clone)]
pub struct Destination {
    pub endpoint: Endpoint,
    pub namespace: Option<String>,
    pub preserve_paths: bool,
}

impl Destination {
    /// As `.kots-bundle/state.json` keeps it.
    pub fn saved(&self) -> SavedDestination {
        SavedDestination {
            endpoint: self.endpoint.to_string(),
            namespace: self.namespace.clone(),
            preserve_paths: self.preserve_paths,
            image_pull_secret: None,
        }
    }

    /// Back from `.kots-bundle/state.json`.
    pub fn from_saved(s: &SavedDestination) -> Result<Destination, rewrite::RewriteError> {
        Ok(Destination {
            endpoint: Endpoint::parse(&s.endpoint)?,
            namespace: s.namespace.clone(),
            preserve_paths: s.preserve_paths,
        })
    }

    pub fn plan(&self, sources: &[Reference]) -> Result<Vec<ImageRewrite>, rewrite::RewriteError> {
        rewrite::plan(
            sources,
            &self.endpoint,
            self.namespace.as_deref(),
            self.preserve_paths,
        )
    }
}

pub struct ImportOptions {
    pub archive: PathBuf,
    pub destination: Destination,
    pub app_dir: Option<PathBuf>,
    pub write: WriteOptions,
    /// How the app renders (config answers, license, namespace, helm); the mode, the
    /// registry and the saved values are set here.
    pub render: Inputs,
    pub concurrency: usize,
    pub quiet: bool,
    /// Check the archive's signature with this key (`--key`): a bad one is refused, an
    /// unsigned archive too when `require_signature`, else warned about.
    pub key: Option<crate::archive::PublicKey>,
    pub require_signature: bool,
    /// Also push the app directory to the registry ([`crate::appstore`]), for `download`.
    pub store_app: bool,
}

#[derive(Debug)]
pub struct ImportSummary {
    pub app_dir: PathBuf,
    pub report: CopyReport,
    /// Where the app directory was stored (empty without `store_app`).
    pub stored: Vec<String>,
    /// Blobs a differential archive leaves out that were mounted from another repository.
    pub omitted_mounted: usize,
}

/// Checks, before anything moves, that the destination answers and the credentials work.
/// Whether each repository accepts pushes is checked by the copy, once it knows which
/// images are not there yet ([`RegistryDest`]'s `prepare`): a re-import where everything is
/// present costs one HEAD per image and no upload session.
pub async fn preflight(
    client: &Client,
    rewrites: &[ImageRewrite],
    _concurrency: usize,
) -> anyhow::Result<()> {
    let mut registries: Vec<&str> = rewrites.iter().map(|r| r.target.registry()).collect();
    registries.sort();
    registries.dedup();
    for registry in registries {
        client.ping(registry).await?;
    }
    Ok(())
}

/// Pushes resolved images to their targets and proves each pushed manifest landed; shared
/// by import and pull.
pub async fn push(
    source: Arc<dyn copy::ImageSource>,
    client: &Client,
    images: &[ResolvedImage],
    rewrites: &[ImageRewrite],
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<CopyReport> {
    let jobs: Vec<CopyJob> = images
        .iter()
        .map(|image| {
            let rw = rewrites
                .iter()
                .find(|r| r.source == image.source)
                .expect("a rewrite for every image");
            CopyJob {
                image: image.clone(),
                target: rw.target.clone(),
            }
        })
        .collect();
    // The copy says how many bytes it will send once it knows what is there already.
    let progress = Arc::new(Progress::new("pushed", 0, quiet));
    let dest = Arc::new(RegistryDest::new(client.clone(), concurrency));
    let report = copy::copy_images(source, dest.clone(), &jobs, progress.clone()).await?;
    progress.finish();
    dest.confirm_landed().await?;
    Ok(report)
}

/// Renders the app as it will deploy from DIR: the operator's answers over what DIR saved,
/// the registry functions bound to `destination`, charts with their install values.
pub fn render_for_install(
    files: &[ManifestFile],
    dir: &AppDir,
    inputs: &Inputs,
    destination: Option<&Destination>,
) -> anyhow::Result<Rendered> {
    let mut inputs = inputs.clone();
    inputs.mode = crate::render::helm::Mode::Install;
    inputs.saved = dir.config_values()?;
    inputs.local_registry = destination.map(|d| LocalRegistry {
        endpoint: d.endpoint.clone(),
        namespace: d.namespace.clone(),
        preserve_paths: d.preserve_paths,
    });
    tokio::task::block_in_place(|| crate::render::render(files, &inputs))
        .context("rendering the app for this install")
}

/// The state record of what was pushed, and where.
pub fn state_for(
    upstream: &Upstream,
    images: &[ResolvedImage],
    rewrites: &[ImageRewrite],
    destination: Option<&Destination>,
    write: &WriteOptions,
) -> Result<State, crate::upstream::UpstreamError> {
    Ok(State {
        destination: destination.map(|d| SavedDestination {
            image_pull_secret: write.image_pull_secret.clone(),
            ..d.saved()
        }),
        app: upstream.require_name()?.to_string(),
        version: upstream.version.clone(),
        source: upstream.source.clone(),
        release: upstream.release.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        images: images
            .iter()
            .filter_map(|i| {
                let rw = rewrites.iter().find(|r| r.source == i.source)?;
                Some(StateImage {
                    source: i.source.to_string(),
                    target: rw.target.to_string(),
                    digest: i.top.digest.to_string(),
                })
            })
            .collect(),
    })
}

pub async fn import(client: Client, opts: &ImportOptions) -> anyhow::Result<ImportSummary> {
    let path = opts.archive.clone();
    let (key, require) = (opts.key, opts.require_signature);
    // The head, the entry index, every manifest and the signature are checked before the
    // registry is contacted: a damaged or tampered-with archive is refused with nothing
    // pushed.
    let reader = Arc::new(
        tokio::task::spawn_blocking(move || {
            let reader = ArchiveReader::open(&path)?;
            if let Some(key) = &key {
                let unsigned = reader.index().signature.is_none();
                if unsigned && !require {
                    crate::warnings::warn(format_args!(
                        "{} is not signed; its signature was not checked (--require-signature \
                         refuses unsigned archives)",
                        path.display()
                    ));
                } else {
                    reader.check_signature(key)?;
                }
            }
            reader.check_layout()?;
            Ok::<_, crate::archive::ArchiveError>(reader)
        })
        .await
        .context("reading the archive")??,
    );
    let meta = reader.metadata().clone();
    let sources: Vec<Reference> = meta.images.iter().map(|i| i.reference.clone()).collect();
    let rewrites = opts.destination.plan(&sources)?;
    // Locked before anything is pushed: a second import into the same directory stops now.
    let app_dir = match &opts.app_dir {
        Some(d) => d.clone(),
        None => overlay::default_dest(&std::env::current_dir()?, &meta.app.name, None)?,
    };
    let mut dir = AppDir::open(&app_dir)
        .with_context(|| format!("opening the app directory {}", app_dir.display()))?;
    // KOTS's airgap update check: the archive lists the required releases before it.
    if let (Some(current), Some(next)) = (
        overlay::read_state(&app_dir)?.and_then(|s| s.release),
        &meta.app.release,
    ) {
        crate::upstream::vendor::check_update(&current, next, &next.required_releases).map_err(
            |e| {
                anyhow::anyhow!(
                "{}: {e}; import the archive of {} first (the app directory was left as it was)",
                app_dir.display(),
                e.oldest
            )
            },
        )?;
    }
    let r = reader.clone();
    let files = tokio::task::spawn_blocking(move || r.upstream_files())
        .await
        .context("reading the manifests")??;
    let upstream = Upstream {
        source: meta.app.source.clone(),
        name: Some(meta.app.name.clone()),
        version: meta.app.version.clone(),
        files,
        release: meta.app.release.clone(),
    };
    // Rendered before anything is pushed: a config answer missing or a chart that fails
    // stops the import with the registry untouched.
    let mut inputs = opts.render.clone();
    inputs.app = meta.app.name.clone();
    inputs.version = meta.app.version.clone();
    let rendered = render_for_install(&upstream.files, &dir, &inputs, Some(&opts.destination))?;
    preflight(&client, &rewrites, opts.concurrency).await?;
    // Read from the archive only: cheap, and what a differential archive's check needs.
    let source = Arc::new(ArchiveSource::new(reader.clone()));
    let mut images = Vec::with_capacity(sources.len());
    for r in &sources {
        images.push(copy::resolve(&*source, r, &[]).await?);
    }
    // Before any push: the blobs a differential archive leaves out are in the registry.
    let known: Vec<Reference> = overlay::read_state(&app_dir)?
        .iter()
        .flat_map(|s| &s.images)
        .filter_map(|i| i.target.parse().ok())
        .collect();
    let omitted_mounted = crate::differential::place_omitted(
        &client,
        &meta,
        &images,
        &rewrites,
        &known,
        opts.concurrency,
    )
    .await?;
    let d = &opts.destination;
    if opts.store_app {
        let repo = crate::appstore::repository(&d.endpoint, d.namespace.as_deref(), &meta.app.name);
        // A repository that holds a stored copy took pushes before: asked only once.
        let stored_before = client
            .head_manifest(&d.endpoint.registry, &repo, "latest")
            .await?
            .is_some();
        if !stored_before {
            client.check_push(&d.endpoint.registry, &repo).await?;
        }
    }

    let report = push(
        source,
        &client,
        &crate::differential::carried(&images, meta.differential.as_ref()),
        &rewrites,
        opts.concurrency,
        opts.quiet,
    )
    .await?;

    let state = state_for(
        &upstream,
        &images,
        &rewrites,
        Some(&opts.destination),
        &opts.write,
    )?;
    let app_rewrites = crate::attached::app_rewrites(&rewrites);
    let release = Release {
        upstream: &upstream,
        documents: &rendered.files,
        config_values: Some(&rendered.to_save),
        rewrites: &app_rewrites,
        state: &state,
    };
    dir.write(&release, &opts.write)
        .with_context(|| format!("writing the app directory {}", app_dir.display()))?;
    let stored = if opts.store_app {
        crate::appstore::store(&client, &d.endpoint, d.namespace.as_deref(), &app_dir)
            .await
            .context(
                "the images and the app directory are in place, but storing the app directory \
                 in the registry failed (run the import again, or pass --no-store-app)",
            )?
    } else {
        Vec::new()
    };
    Ok(ImportSummary {
        app_dir,
        report,
        stored,
        omitted_mounted,
    })
}
