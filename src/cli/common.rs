//! Flags shared by the commands that talk to registries, and the async runtime.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::registry::{
    load_registries_conf, CertDirs, Credentials, Mirror, RegistryOptions, Role, Timeouts,
};

/// How to reach registries: TLS, plain HTTP, timeouts, transfers at once. Every command
/// that talks to registries has these; they apply to each registry it talks to.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Trust this CA certificate (PEM) for registry TLS, besides the system's (repeatable).
    /// A registry's own self-signed certificate (Docker's domain.crt) may be given too; its
    /// host names and validity are still checked.
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Vec<PathBuf>,
    /// Do not verify registry TLS certificates (prefer --registry-ca or a cert directory).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Use plain HTTP for every registry (default only for localhost and 127.0.0.1).
    #[arg(long)]
    pub plain_http: bool,
    /// Seconds to wait for a registry's TCP connection and TLS handshake.
    #[arg(long, value_name = "SECS", env = "KOTS_BUNDLE_CONNECT_TIMEOUT", default_value = "30", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Seconds a registry may stay silent (less than 1 KiB moved, or no answer) before the
    /// request is retried; a far or slow link may need more.
    #[arg(long, value_name = "SECS", env = "KOTS_BUNDLE_IDLE_TIMEOUT", default_value = "60", value_parser = parse_secs)]
    pub idle_timeout: Duration,
    /// Blob transfers at once.
    ///
    /// 8 by default: through 40 ms of latency, 60 images took 5.95 s to export and 11.70 s to import at 4, 3.17 s and 6.10 s at 8, 1.95 s and 4.13 s
    /// at 16 (`scripts/bench --wan-rtt-ms 40`); more helps far links further, at the cost of
    /// more connections to one registry.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// Login and certificates for the destination registry (--registry-endpoint): import, and
/// pull with --rewrite-images.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LoginArgs {
    /// Username for the destination registry (else docker login's config, else anonymous).
    #[arg(long, env = "KOTS_BUNDLE_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// Read the destination registry's password (or token) from standard input.
    #[arg(long)]
    pub registry_password_stdin: bool,
    /// Refused: a password on the command line leaks into `ps` and shell history.
    #[arg(long, hide = true)]
    pub registry_password: Option<String>,
    /// The destination registry's certificate directory: CA certificates (*.crt) and a
    /// client certificate (client.cert + client.key), as skopeo's --dest-cert-dir. Default:
    /// /etc/docker/certs.d/HOST[:PORT]/ or /etc/containers/certs.d/HOST[:PORT]/.
    #[arg(long, value_name = "DIR")]
    pub registry_cert_dir: Option<PathBuf>,
}

/// Seconds, whole or not (`2`, `0.5`), more than zero.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v.is_finite() && v <= 86_400.0) {
        return Err(format!(
            "{s:?}: give a number of seconds above 0 (at most a day)"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Roots of per-host cert directories (`KOTS_BUNDLE_CERTS_D`, colon separated) instead of
/// /etc/docker/certs.d and /etc/containers/certs.d: for unusual layouts, and tests.
fn cert_dir_roots() -> Option<Vec<PathBuf>> {
    let v = std::env::var_os("KOTS_BUNDLE_CERTS_D")?;
    Some(
        std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
    )
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
    /// The source registries' certificate directory: CA certificates (*.crt) and a client
    /// certificate (client.cert + client.key), as skopeo's --src-cert-dir; used for every
    /// source registry instead of /etc/docker/certs.d/HOST[:PORT]/.
    #[arg(long, value_name = "DIR")]
    pub source_cert_dir: Option<PathBuf>,
    /// Leave out what is attached to each image at its registry: cosign signatures,
    /// attestations and SBOMs (`sha256-<digest>.sig|.att|.sbom` tags) and OCI referrers (the
    /// `sha256-<digest>` tag). By default they are carried and pushed beside the image.
    #[arg(long)]
    pub no_signatures: bool,
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
    /// TLS, plain-HTTP and timeout settings (docker login's config is read by the client).
    fn connection(&self, role: Role, cert_dir: Option<&PathBuf>) -> RegistryOptions {
        RegistryOptions {
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            ca_files: self.registry_ca.clone(),
            cert_dirs: CertDirs {
                explicit: cert_dir.cloned(),
                roots: cert_dir_roots(),
            },
            role,
            timeouts: Timeouts {
                connect: self.connect_timeout,
                idle: self.idle_timeout,
            },
            plain_http: self.plain_http,
            user_agent: Some(format!("kots-bundle/{}", env!("CARGO_PKG_VERSION"))),
            ..RegistryOptions::default()
        }
    }

    /// Options for reading source images: TLS, mirrors, and docker login's config; the
    /// destination's credentials are never sent to a source.
    pub fn source_options(&self, source: &SourceArgs) -> anyhow::Result<RegistryOptions> {
        Ok(RegistryOptions {
            mirrors: source.mirrors()?,
            ..self.connection(Role::Source, source.source_cert_dir.as_ref())
        })
    }

    /// Options for pushing to `host`, with the login flags (password read from stdin).
    pub fn destination_options(
        &self,
        login: &LoginArgs,
        host: &str,
    ) -> anyhow::Result<RegistryOptions> {
        login.refuse_password_flag()?;
        let mut options = self.connection(Role::Destination, login.registry_cert_dir.as_ref());
        options.credentials = match (&login.registry_username, login.registry_password_stdin) {
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
}

impl LoginArgs {
    /// For a run without a destination registry (pull without --rewrite-images).
    pub fn refuse_without_destination(&self) -> anyhow::Result<()> {
        self.refuse_password_flag()?;
        if self.registry_username.is_some()
            || self.registry_password_stdin
            || self.registry_cert_dir.is_some()
        {
            bail!(
                "--registry-username, --registry-password-stdin and --registry-cert-dir are for the destination registry (--rewrite-images --registry-endpoint); source registries use `docker login` credentials (config.json) and --source-cert-dir"
            );
        }
        Ok(())
    }

    fn refuse_password_flag(&self) -> anyhow::Result<()> {
        if self.registry_password.is_some() {
            return Err(super::UsageError(
                "refusing --registry-password: a password on the command line is visible to other users and kept in shell history; pipe it in with --registry-password-stdin".into(),
            ).into());
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
