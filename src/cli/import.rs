//! `kots-bundle import`: push an archive's images to the private registry and write the
//! deploy-ready app directory.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::common::{runtime, LoginArgs, RegistryArgs};
use crate::cli::exit;
use crate::import::{import, Destination, ImportOptions};
use crate::overlay::{PullSecret, WriteOptions};
use crate::registry::Client;
use crate::rewrite::Endpoint;

/// The private registry and how images are named in it: shared by `import`, `pull` and
/// `inventory` (which reads where import pushes).
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// The private registry, e.g. registry.example.com or registry.example.com:5000/prefix.
    #[arg(long, value_name = "REGISTRY")]
    pub registry_endpoint: String,
    /// The registry namespace (project) for this app's images; omit for ECR-style
    /// REGISTRY/<name>. Most registries need it created before the first push.
    #[arg(long, value_name = "NS")]
    pub image_namespace: Option<String>,
    /// Keep each image's whole source path under the namespace (REGISTRY/NS/quay.io/org/name)
    /// instead of only its last component; for Harbor, GCR and distribution.
    #[arg(long)]
    pub preserve_paths: bool,
}

impl TargetArgs {
    pub fn destination(&self) -> anyhow::Result<Destination> {
        let endpoint = Endpoint::parse(&self.registry_endpoint)
            .with_context(|| format!("--registry-endpoint {}", self.registry_endpoint))?;
        Ok(Destination {
            endpoint,
            namespace: self.image_namespace.clone(),
            preserve_paths: self.preserve_paths,
        })
    }
}

/// Where images go: shared by `import` and `pull`.
#[derive(clap::Args, Debug, Clone)]
pub struct DestinationArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Add imagePullSecrets with this (existing) secret name to every pod spec.
    #[arg(long, value_name = "NAME")]
    pub image_pull_secret: Option<String>,
    /// Also write that secret, with the registry credentials given, into the overlay. The
    /// only case where kots-bundle writes a credential to disk.
    #[arg(long, requires = "image_pull_secret")]
    pub write_pull_secret: bool,
}

impl DestinationArgs {
    pub fn destination(&self) -> anyhow::Result<Destination> {
        self.target.destination()
    }

    pub fn write_options(
        &self,
        creds: Option<&crate::registry::Credentials>,
        host: &str,
    ) -> anyhow::Result<WriteOptions> {
        let write_pull_secret = if self.write_pull_secret {
            let Some(c) = creds else {
                bail!(
                    "--write-pull-secret needs --registry-username and --registry-password-stdin"
                );
            };
            Some(PullSecret {
                name: self.image_pull_secret.clone().expect("clap requires it"),
                registry: host.to_string(),
                username: c.username.clone(),
                password: c.password.clone(),
            })
        } else {
            None
        };
        Ok(WriteOptions {
            image_pull_secret: self.image_pull_secret.clone(),
            write_pull_secret,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The .airgap archive written by `kots-bundle export`.
    pub archive: PathBuf,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// The app directory to write or update (default: ./<app name>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// The vendor's ed25519 public key (PEM, `openssl pkey -in KEY -pubout`): a signed
    /// archive must be signed by it and unaltered, checked before anything is pushed.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Refuse an archive that is not signed by --key.
    #[arg(long, requires = "key")]
    pub require_signature: bool,
    #[command(flatten)]
    pub render: super::render::RenderArgs,
    /// Do not store the app directory in the registry (REGISTRY/NS/<app>-app, for
    /// `kots-bundle download`). Stored without secrets: password config values and Secrets are
    /// left out.
    #[arg(long)]
    pub no_store_app: bool,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(args: &ImportArgs, quiet: bool) -> anyhow::Result<i32> {
    let key = args
        .key
        .as_deref()
        .map(crate::archive::PublicKey::from_pem_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--key {e}"))?;
    let destination = args.destination.destination()?;
    let host = destination.endpoint.registry.clone();
    let options = args.registry.destination_options(&args.login, &host)?;
    let write = args
        .destination
        .write_options(options.credentials.as_ref().map(|(_, c)| c), &host)?;
    let client = Client::new(options)?;
    // The app's name comes from the archive; import sets it.
    let mut render = args.render.inputs(crate::render::helm::Mode::Install, "")?;
    render.image_pull_secret = write.image_pull_secret.clone();
    let opts = ImportOptions {
        archive: args.archive.clone(),
        destination,
        app_dir: args.dest.clone(),
        write,
        render,
        concurrency: args.registry.concurrency as usize,
        quiet,
        key,
        require_signature: args.require_signature,
        store_app: !args.no_store_app,
    };
    let summary = super::run_until_signal(runtime()?, import(client, &opts))
        .with_context(|| format!("import of {} failed", args.archive.display()))?;
    if !quiet {
        let r = &summary.report;
        eprintln!(
            "imported {} images ({} up to date); blobs: {} pushed, {} mounted, {} already present",
            r.images_copied + r.images_up_to_date,
            r.images_up_to_date,
            r.blobs_copied,
            r.blobs_mounted,
            r.blobs_existed
        );
        if summary.omitted_mounted > 0 {
            eprintln!(
                "mounted {} blob(s) the differential archive leaves out from other repositories \
                 of the registry",
                summary.omitted_mounted
            );
        }
        if !summary.stored.is_empty() {
            eprintln!(
                "stored the app directory as {} (kots-bundle download recovers it)",
                summary.stored.join(" and ")
            );
        }
        eprintln!(
            "deploy with: kubectl apply -k {}",
            summary.app_dir.join("overlays/midstream").display()
        );
    }
    Ok(exit::OK)
}
