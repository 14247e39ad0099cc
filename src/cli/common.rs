//! Flags shared by the commands that talk to registries, and the async runtime.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::registry::{load_registries_conf, Credentials, Mirror, RegistryOptions};

/// How to reach registries: TLS, plain HTTP, mirrors and credentials.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Username for the destination registry (else docker login's config, else anonymous).
    #[arg(long, env = "KOTS_BUNDLE_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// Read the registry password (or token) from standard input.
    #[arg(long)]
    pub registry_password_stdin: bool,
    /// Refused: a password on the command line leaks into `ps` and shell history.
    #[arg(long, hide = true)]
    pub registry_password: Option<String>,
    /// Trust this CA certificate (PEM) for registry TLS, in addition to the system's.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// Do not verify registry TLS certificates (prefer --registry-ca).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Use plain HTTP for every registry (default only for localhost and 127.0.0.1).
    #[arg(long)]
    pub plain_http: bool,
    /// Blob transfers at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// Where source images are read from and which of their platforms to keep (export, pull).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Fetch source images through a mirror: SRC=MIRROR, e.g.
    /// docker.io=mirror.local:5000/docker.io (repeatable).
    #[arg(long, value_name = "SRC=MIRROR")]
    pub registry_mirror: Vec<String>,
    /// Read source mirrors from a containers-registries.conf(5) file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Vec<PathBuf>,
    /// Keep only this platform (os/arch[/variant]) of multi-arch images (repeatable;
    /// default: all platforms). Images pinned by digest always keep all.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Vec<String>,
}

impl SourceArgs {
    fn mirrors(&self) -> anyhow::Result<Vec<Mirror>> {
        let mut mirrors = Vec::new();
        for m in &self.registry_mirror {
            mirrors.push(Mirror::parse(m).with_context(|| format!("--registry-mirror {m}"))?);
        }
        for f in &self.registries_conf {
            mirrors.extend(
                load_registries_conf(f)
                    .with_context(|| format!("--registries-conf {}", f.display()))?,
            );
        }
        Ok(mirrors)
    }
}

impl RegistryArgs {
    /// TLS and plain-HTTP settings, and docker login's config (read by the client).
    fn connection(&self) -> anyhow::Result<RegistryOptions> {
        self.refuse_password_flag()?;
        Ok(RegistryOptions {
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            ca_files: self.registry_ca.clone(),
            plain_http: self.plain_http,
            user_agent: Some(format!("kots-bundle/{}", env!("CARGO_PKG_VERSION"))),
            ..RegistryOptions::default()
        })
    }

    /// Options for reading source images: TLS, mirrors, and docker login's config; the
    /// credential flags belong to the destination and are never sent to a source.
    pub fn source_options(&self, source: &SourceArgs) -> anyhow::Result<RegistryOptions> {
        Ok(RegistryOptions {
            mirrors: source.mirrors()?,
            ..self.connection()?
        })
    }

    /// Options for pushing to `host`, with the credential flags (password read from stdin).
    pub fn destination_options(&self, host: &str) -> anyhow::Result<RegistryOptions> {
        let mut options = self.connection()?;
        options.credentials = match (&self.registry_username, self.registry_password_stdin) {
            (Some(user), true) => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                let password = line.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    bail!("--registry-password-stdin: standard input was empty");
                }
                Some((
                    host.to_string(),
                    Credentials {
                        username: user.clone(),
                        password,
                    },
                ))
            }
            (Some(_), false) => {
                bail!("--registry-username needs --registry-password-stdin (pipe the password in)")
            }
            (None, true) => bail!("--registry-password-stdin needs --registry-username"),
            (None, false) => None,
        };
        Ok(options)
    }

    /// For commands without a destination registry.
    pub fn refuse_destination_credentials(&self) -> anyhow::Result<()> {
        if self.registry_username.is_some() || self.registry_password_stdin {
            bail!(
                "--registry-username/--registry-password-stdin are for the destination registry; source registries use `docker login` credentials (config.json)"
            );
        }
        Ok(())
    }

    fn refuse_password_flag(&self) -> anyhow::Result<()> {
        if self.registry_password.is_some() {
            bail!(
                "refusing --registry-password: a password on the command line is visible to other users and kept in shell history; pipe it in with --registry-password-stdin"
            );
        }
        Ok(())
    }
}

/// The runtime every command that does I/O runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
