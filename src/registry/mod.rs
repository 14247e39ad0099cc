//! The OCI distribution registry client: manifests and blobs over HTTP(S), one [`Client`]
//! (and one connection pool) for every registry a command talks to.
//!
//! Split by operation like go-containerregistry's `remote`: [`ping`] (finding the registry,
//! its scheme and auth), [`fetch`] (manifests and blobs read, through mirrors), [`push`]
//! (uploads, manifests), [`mount`] (cross-repository mounts), [`referrers`] (the OCI 1.1
//! referrers API), all sent by [`request`] (one request: auth, redirects, retries, the error
//! for an answer). This file holds the client itself: options, the per-host HTTP clients and
//! what is learned about each registry.
//!
//! Each HTTP concern has its own file, like go-containerregistry's `remote/transport`:
//! [`scheme`] (HTTPS, or plain HTTP on loopback), [`auth`] (challenges, Basic, Bearer
//! tokens), [`keychain`] (docker config and credential helpers), [`retry`] (what is retried
//! and how long to wait), [`timeout`] (when a silent registry is given up on), [`tls`] (which
//! certificates are trusted, client certificates) with [`certdir`] (docker's and podman's
//! `certs.d`) and [`certproblem`] (a refused certificate explained), [`error`] (registry
//! error bodies as typed errors), [`mirror`] (pull-through mirrors), [`blob`] (streamed,
//! verified, resumable blob reads) and [`transport`] (the registry as a copy-engine source
//! and destination).

pub mod referrers;
pub mod transport;

mod auth;
mod blob;
mod certdir;
mod certproblem;
mod error;
mod fetch;
mod keychain;
mod mirror;
mod mount;
mod ping;
mod push;
mod request;
mod retry;
mod scheme;
mod timeout;
mod tls;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};

use auth::{Auth, Challenge};
use error::Action;
use retry::Retrier;
use timeout::Meter;

pub use certdir::{default_roots as default_cert_dir_roots, CertDirs};
pub use error::RegistryError;
pub use mirror::{load_registries_conf, Mirror};
pub use retry::RetryPolicy;
pub use timeout::Timeouts;
pub use tls::Role;

/// Manifests larger than this are refused: real ones are a few KiB, and a manifest is held
/// in memory.
pub const MAX_MANIFEST_SIZE: u64 = 16 * 1024 * 1024;

/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// Error bodies are read up to this much, for the message; the rest is not read.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A username and password (or token) for one registry. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Do not verify TLS certificates.
    pub insecure_skip_tls_verify: bool,
    /// Extra CA certificates (PEM) trusted besides the system's, for every host; a
    /// certificate here is also accepted as a registry's own (self-signed) certificate.
    pub ca_files: Vec<PathBuf>,
    /// Per-registry cert directories (CAs and client certificates).
    pub cert_dirs: CertDirs,
    /// Which end of a copy this client serves, for the flags its hints name.
    pub role: Role,
    pub timeouts: Timeouts,
    /// Plain HTTP for every registry (else only loopback hosts may fall back to it).
    pub plain_http: bool,
    /// Credentials for one host (from the flags); other hosts use docker's config.
    pub credentials: Option<(String, Credentials)>,
    /// Where docker's `config.json` is (default `$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    /// Read mirrors, tried in order before the primary location.
    pub mirrors: Vec<Mirror>,
    pub retry: RetryPolicy,
    pub user_agent: Option<String>,
}

/// The talks to one registry so far: the scheme that worked and the auth it asks for.
struct Endpoint {
    registry: String,
    /// `https://host[:port]`
    base: Url,
    challenge: Mutex<Challenge>,
}

/// The HTTP client for one host (its own TLS configuration and connection pool).
#[derive(Clone)]
pub(crate) struct Host {
    http: reqwest::Client,
    info: Arc<tls::HostInfo>,
}

struct Inner {
    opts: RegistryOptions,
    trust: tls::Trust,
    /// By (host, is a registry): a registry's cert directory is not a token service's.
    hosts: Mutex<HashMap<(String, bool), Host>>,
    insecure_hosts: HashSet<String>,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// One ping per registry at a time: concurrent first requests wait for it.
    pings: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    auth: Auth,
    retrier: Retrier,
}

/// A request that got no usable answer.
pub(crate) enum Failure {
    Http(reqwest::Error),
    Stalled(timeout::Stall),
}

impl Failure {
    fn why(&self) -> String {
        match self {
            Failure::Http(e) => scheme::error_chain(e),
            Failure::Stalled(s) => s.to_string(),
        }
    }

    /// Worth another try with this host: not when it refused our client certificate (or
    /// wanted one we do not have).
    fn retryable_with(&self, host: &Host) -> bool {
        match self {
            Failure::Http(e) => {
                retry::is_retryable_error(e) && !certproblem::client_cert_problem(e, &host.info)
            }
            Failure::Stalled(_) => true,
        }
    }
}

/// Why a body read whole was not read.
pub(crate) enum ReadFail {
    TooLarge,
    Io(std::io::Error),
}

/// The registry client; cheap to clone (shares the connection pool, tokens, and what it
/// learned about each registry).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// One request's description, for auth, retries and error messages.
struct Call<'a> {
    ep: &'a Endpoint,
    repository: &'a str,
    scopes: Vec<String>,
    method: Method,
    url: Url,
    action: Action,
    what: String,
}

impl Call<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method, scheme::redact_url(&self.url))
    }
}

/// Adds headers and a body to a request; an upload body reports to the meter.
type Build<'a> = &'a (dyn Fn(RequestBuilder, &Arc<Meter>) -> RequestBuilder + Send + Sync);

fn no_build(rb: RequestBuilder, _: &Arc<Meter>) -> RequestBuilder {
    rb
}

impl Client {
    pub fn new(opts: RegistryOptions) -> Result<Client, RegistryError> {
        let trust = tls::Trust::new(
            &opts.ca_files,
            opts.cert_dirs.clone(),
            opts.insecure_skip_tls_verify,
            opts.role,
        )?;
        let insecure_hosts = opts
            .mirrors
            .iter()
            .filter(|m| m.insecure)
            .filter_map(|m| m.location.split('/').next().map(str::to_string))
            .collect();
        let explicit = opts.credentials.as_ref().map(|(host, c)| {
            (
                host.clone(),
                keychain::Secret::Basic {
                    username: c.username.clone(),
                    password: c.password.clone(),
                },
            )
        });
        let auth = Auth::new(explicit, opts.docker_config_dir.clone());
        let retrier = Retrier::new(opts.retry.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                trust,
                hosts: Mutex::new(HashMap::new()),
                insecure_hosts,
                endpoints: Mutex::new(HashMap::new()),
                pings: Mutex::new(HashMap::new()),
                auth,
                retrier,
            }),
        })
    }

    /// The HTTP client for `host`, built the first time. `registry`: the host is a
    /// registry (its cert directory may come from the command line).
    fn host(&self, host: &str, registry: bool) -> Result<Host, RegistryError> {
        let key = (host.to_string(), registry);
        if let Some(h) = self.inner.hosts.lock().unwrap().get(&key) {
            return Ok(h.clone());
        }
        let insecure = self.inner.insecure_hosts.contains(host);
        let t = self.inner.trust.host(host, registry, insecure)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(t.config)
            .connect_timeout(self.inner.opts.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect to another host is followed by `send_once` with that host's
            // client (its TLS settings), and without our Authorization.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt
                    .previous()
                    .last()
                    .is_some_and(|prev| scheme::same_origin(prev, attempt.url()));
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if same {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .user_agent(
                self.inner
                    .opts
                    .user_agent
                    .clone()
                    .unwrap_or_else(|| format!("kots-bundle/{}", env!("CARGO_PKG_VERSION"))),
            )
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot set up HTTP client: {e}")))?;
        let h = Host { http, info: t.info };
        self.inner.hosts.lock().unwrap().insert(key, h.clone());
        Ok(h)
    }

    /// The client for a URL: the registry's own when the URL is on the registry's host,
    /// else that other host's.
    pub(crate) fn host_for(
        &self,
        registry: Option<&str>,
        url: &Url,
    ) -> Result<Host, RegistryError> {
        let authority = scheme::authority(url);
        if let Some(r) = registry {
            let api = scheme::api_host(r);
            let with_default = format!(
                "{}:{}",
                url.host_str().unwrap_or(""),
                url.port_or_known_default().unwrap_or(0)
            );
            if authority == api || with_default == api {
                return self.host(r, true);
            }
        }
        self.host(&authority, false)
    }

    pub(crate) fn retrier(&self) -> &Retrier {
        &self.inner.retrier
    }

    fn policy(&self) -> &RetryPolicy {
        &self.inner.opts.retry
    }

    fn timeouts(&self) -> &Timeouts {
        &self.inner.opts.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials {
            username: "bob".into(),
            password: "hunter2".into(),
        };
        let s = format!("{c:?}");
        assert!(s.contains("bob") && !s.contains("hunter2"), "{s}");
        let o = RegistryOptions {
            credentials: Some(("reg".into(), c)),
            ..RegistryOptions::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let e = Client::new(RegistryOptions {
            ca_files: vec![p.clone()],
            ..RegistryOptions::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("ca.pem") && e.contains("PEM"), "{e}");
    }
}
