//! The OCI distribution registry client: manifests and blobs over HTTP(S), one [`Client`]
//! (and one connection pool) for every registry a command talks to.
//!
//! Each HTTP concern has its own file, like go-containerregistry's `remote/transport`:
//! [`scheme`] (HTTPS, or plain HTTP on loopback), [`auth`] (challenges, Basic, Bearer
//! tokens), [`keychain`] (docker config and credential helpers), [`retry`] (what is retried
//! and how long to wait), [`timeout`] (when a silent registry is given up on), [`tls`] (which
//! certificates are trusted, client certificates) with [`certdir`] (docker's and podman's
//! `certs.d`), [`error`] (registry error bodies as typed errors), [`mirror`] (pull-through
//! mirrors), [`blob`] (streamed, verified, resumable blob reads) and [`transport`] (the
//! registry as a copy-engine source and destination).

pub mod transport;

mod auth;
mod blob;
mod certdir;
mod error;
mod keychain;
mod mirror;
mod retry;
mod scheme;
mod timeout;
mod tls;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::copy::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::digest::Digest;

use auth::{Auth, Challenge};
use error::Action;
use retry::{Attempt, Retrier};
use timeout::Meter;

pub use certdir::{default_roots as default_cert_dir_roots, CertDirs};
pub use error::RegistryError;
pub use mirror::{load_registries_conf, Mirror};
pub use retry::RetryPolicy;
pub use timeout::Timeouts;
pub use tls::Role;

/// A blob's bytes as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

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

/// A manifest as the registry stored it.
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// sha256 of `bytes` (verified against the reference when it is a digest).
    pub digest: Digest,
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
                retry::is_retryable_error(e) && !tls::client_cert_problem(e, &host.info)
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
                let same = attempt.previous().last().is_some_and(|prev| {
                    prev.scheme() == attempt.url().scheme()
                        && prev.host_str() == attempt.url().host_str()
                        && prev.port_or_known_default() == attempt.url().port_or_known_default()
                });
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

    /// Sends a request, giving up when the registry stalls (see [`timeout`]).
    pub(crate) async fn transmit(
        &self,
        host: &Host,
        rb: RequestBuilder,
        meter: &Arc<Meter>,
    ) -> Result<Response, Failure> {
        let t = *self.timeouts();
        let r = tokio::select! {
            r = rb.send() => r.map_err(Failure::Http),
            stall = timeout::watch(meter, &t) => Err(Failure::Stalled(stall)),
        };
        if r.is_ok() {
            host.info
                .answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    /// A response body that fails when the registry stalls.
    fn watched(
        &self,
        resp: Response,
    ) -> timeout::Watched<futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>> {
        timeout::Watched::new(resp.bytes_stream().boxed(), self.timeouts().idle)
    }

    /// A body read whole, refused past `cap` bytes (before reading, when the length is
    /// declared).
    pub(crate) async fn read_capped(&self, resp: Response, cap: u64) -> Result<Bytes, ReadFail> {
        if resp.content_length().is_some_and(|l| l > cap) {
            return Err(ReadFail::TooLarge);
        }
        let mut body = self.watched(resp);
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(ReadFail::Io)?;
            if (buf.len() + chunk.len()) as u64 > cap {
                return Err(ReadFail::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Up to [`MAX_ERROR_BODY`] of an error answer, for its message, with every known
    /// secret scrubbed (a server may echo what it was sent).
    pub(crate) async fn read_error_body(&self, resp: Response) -> Vec<u8> {
        let mut out = Vec::new();
        let mut body = self.watched(resp);
        while let Some(Ok(chunk)) = body.next().await {
            let room = MAX_ERROR_BODY as usize - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= MAX_ERROR_BODY as usize {
                break;
            }
        }
        self.inner.auth.scrub(&out)
    }

    /// The error for a request to `url` that got no answer, naming `registry`; a TLS
    /// failure says what was wrong with the certificate and what to do.
    pub(crate) fn transport_error(
        &self,
        registry: &str,
        url: &Url,
        host: &Host,
        f: &Failure,
    ) -> RegistryError {
        let shown = scheme::redact_url(url);
        match f {
            Failure::Stalled(s) => RegistryError::Stalled {
                registry: registry.to_string(),
                request: shown,
                why: s.to_string(),
            },
            Failure::Http(e) => {
                let tls = (url.scheme() == "https")
                    .then(|| tls::explain(e, Some(&host.info)))
                    .flatten();
                let (message, hint) = match tls {
                    Some((m, h)) => (m, format!("; {h}")),
                    None if e.is_connect() && e.is_timeout() => (
                        format!(
                            "no connection within {} (TCP connect and TLS handshake)",
                            timeout::secs(self.timeouts().connect)
                        ),
                        "; if the link is this slow, raise --connect-timeout (KOTS_BUNDLE_CONNECT_TIMEOUT, seconds)".to_string(),
                    ),
                    None => (scheme::error_chain(e), String::new()),
                };
                RegistryError::Unreachable {
                    registry: registry.to_string(),
                    url: shown,
                    message,
                    hint,
                }
            }
        }
    }

    /// The registry's endpoint, pinging it (`GET /v2/`) the first time: which scheme
    /// answers, and which auth it asks for.
    async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>, RegistryError> {
        if let Some(ep) = self.inner.endpoints.lock().unwrap().get(registry) {
            return Ok(ep.clone());
        }
        let gate = self
            .inner
            .pings
            .lock()
            .unwrap()
            .entry(registry.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(ep) = self.inner.endpoints.lock().unwrap().get(registry) {
            return Ok(ep.clone());
        }
        let insecure = self.inner.insecure_hosts.contains(registry);
        let host = scheme::api_host(registry);
        let schemes = scheme::candidates(registry, self.inner.opts.plain_http, insecure);
        let label = format!("GET {host}/v2/");
        let (base, challenge) = self
            .retrier()
            .run(registry, &label, || {
                self.ping_schemes(registry, host, schemes)
            })
            .await?;
        let ep = Arc::new(Endpoint {
            registry: registry.to_string(),
            base,
            challenge: Mutex::new(challenge),
        });
        self.inner
            .endpoints
            .lock()
            .unwrap()
            .insert(registry.to_string(), ep.clone());
        Ok(ep)
    }

    /// One round of `GET /v2/` over each candidate scheme. A TLS or connection failure
    /// moves on to the next scheme; if none answers like a registry, the first (HTTPS)
    /// failure is the one reported, since that is what the user most likely has to fix.
    async fn ping_schemes(
        &self,
        registry: &str,
        host: &str,
        schemes: &[&str],
    ) -> Attempt<(Url, Challenge), RegistryError> {
        let client = match self.host(registry, true) {
            Ok(c) => c,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let mut first: Option<(RegistryError, bool)> = None;
        for scheme in schemes {
            let base = match Url::parse(&format!("{scheme}://{host}/")) {
                Ok(u) => u,
                Err(e) => {
                    return Attempt::Done(Err(RegistryError::Config(format!(
                        "registry {registry:?} is not a host[:port]: {e}"
                    ))))
                }
            };
            let url = base.join("v2/").expect("static path");
            match self
                .transmit(&client, client.http.get(url.clone()), &Meter::new())
                .await
            {
                Ok(resp) => {
                    let status = resp.status();
                    tracing::debug!(method = "GET", %url, status = status.as_u16(), "ping");
                    if status.is_success() {
                        return Attempt::Done(Ok((base, Challenge::Anonymous)));
                    }
                    if status == StatusCode::UNAUTHORIZED {
                        let challenge = resp
                            .headers()
                            .get(reqwest::header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(auth::parse_challenge)
                            .unwrap_or(Challenge::Basic);
                        return Attempt::Done(Ok((base, challenge)));
                    }
                    // HTTPS failed and plain HTTP got a 400, what a TLS server says to plain
                    // HTTP: the HTTPS problem is the real one. Any other status is a plain-HTTP
                    // registry answering (a 503 or 429 is retried like any other).
                    let tls_server = status == StatusCode::BAD_REQUEST;
                    if let Some((e, retryable)) = first.take().filter(|_| tls_server) {
                        return if retryable {
                            Attempt::Retry {
                                why: e.to_string(),
                                last: Err(e),
                                after: None,
                            }
                        } else {
                            Attempt::Done(Err(e))
                        };
                    }
                    let after = retry::retry_after(resp.headers());
                    let body = self.read_error_body(resp).await;
                    let ctx = error::Context::ping(registry, None);
                    let err = error::from_response(&ctx, status.as_u16(), &body);
                    return if retry::is_retryable_status(status) {
                        Attempt::Retry {
                            why: format!("HTTP {}", status.as_u16()),
                            last: Err(err),
                            after,
                        }
                    } else {
                        Attempt::Done(Err(err))
                    };
                }
                Err(f) => {
                    tracing::debug!(method = "GET", %url, error = %f.why(), "ping failed");
                    let tls = matches!(&f, Failure::Http(e) if *scheme == "https" && scheme::is_tls_error(e));
                    let err = self.transport_error(registry, &url, &client, &f);
                    // A TLS failure on loopback is expected for plain-HTTP registries; the
                    // retry decision follows the connection kind, not the handshake.
                    let retryable = !tls && f.retryable_with(&client);
                    if first.is_none() {
                        first = Some((err, retryable));
                    } else if let Some((_, r)) = &mut first {
                        // Both failed: retry only if the later failure is transient too.
                        *r = *r || retryable;
                    }
                }
            }
        }
        let (e, retryable) = first.expect("at least one scheme");
        if retryable {
            Attempt::Retry {
                why: e.to_string(),
                last: Err(e),
                after: None,
            }
        } else {
            Attempt::Done(Err(e))
        }
    }

    /// One try of a request, with auth: a 401 whose challenge can be met (a Bearer token,
    /// perhaps for a wider scope) is answered once with fresh credentials.
    async fn send_once(
        &self,
        call: &Call<'_>,
        build: Build<'_>,
    ) -> Attempt<Response, RegistryError> {
        let ep = call.ep;
        let mut scopes = call.scopes.clone();
        let mut reauthed = false;
        loop {
            let challenge = ep.challenge.lock().unwrap().clone();
            let authz = match self
                .inner
                .auth
                .header(self, &ep.registry, &challenge, &scopes)
                .await
            {
                Ok(a) => a,
                Err(e) => return Attempt::Done(Err(e)),
            };
            let host = match self.host_for(Some(&ep.registry), &call.url) {
                Ok(h) => h,
                Err(e) => return Attempt::Done(Err(e)),
            };
            let meter = Meter::new();
            let mut rb = build(
                host.http.request(call.method.clone(), call.url.clone()),
                &meter,
            );
            if let Some(a) = &authz {
                rb = rb.header(AUTHORIZATION, a.clone());
            }
            let sent = match self.transmit(&host, rb, &meter).await {
                Ok(r) => self.follow_redirects(call, build, r).await,
                Err(f) => Err((call.url.clone(), host, f)),
            };
            let resp = match sent {
                Ok(r) => r,
                Err((url, host, f)) => {
                    let why = f.why();
                    tracing::debug!(method = %call.method, url = %scheme::redact_url(&url), error = %why, "request failed");
                    let err = self.transport_error(&ep.registry, &url, &host, &f);
                    return if f.retryable_with(&host) {
                        Attempt::Retry {
                            why,
                            last: Err(err),
                            after: None,
                        }
                    } else {
                        Attempt::Done(Err(err))
                    };
                }
            };
            let status = resp.status();
            tracing::debug!(method = %call.method, url = %scheme::redact_url(&call.url), status = status.as_u16(), "registry");
            if status == StatusCode::UNAUTHORIZED && !reauthed {
                let new = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge);
                let retry_auth = match &new {
                    Some(Challenge::Bearer { .. }) => true,
                    // Anonymous at ping, Basic now: send the credentials we have.
                    Some(Challenge::Basic) => authz.is_none(),
                    _ => false,
                };
                if let (true, Some(new)) = (retry_auth, new) {
                    self.inner.auth.invalidate(&ep.registry, &scopes);
                    let stored = match new {
                        Challenge::Bearer {
                            realm,
                            service,
                            scope,
                        } => {
                            if let Some(s) = scope {
                                auth::merge_scopes(&mut scopes, &s);
                            }
                            Challenge::Bearer {
                                realm,
                                service,
                                scope: None,
                            }
                        }
                        other => other,
                    };
                    *ep.challenge.lock().unwrap() = stored;
                    reauthed = true;
                    continue;
                }
            }
            if retry::is_retryable_status(status) {
                return Attempt::Retry {
                    why: format!("HTTP {}", status.as_u16()),
                    after: retry::retry_after(resp.headers()),
                    last: Ok(resp),
                };
            }
            return Attempt::Done(Ok(resp));
        }
    }

    /// A request with retries; the answer may still be any status, for the caller to judge.
    async fn send(&self, call: &Call<'_>, build: Build<'_>) -> Result<Response, RegistryError> {
        let label = call.label();
        self.retrier()
            .run(&call.ep.registry, &label, || self.send_once(call, build))
            .await
    }

    /// Follows a redirect to another host (blob storage, a CDN) for reads, with that
    /// host's client and without the registry's Authorization; same-host redirects were
    /// followed by the HTTP client already.
    async fn follow_redirects(
        &self,
        call: &Call<'_>,
        build: Build<'_>,
        mut resp: Response,
    ) -> Result<Response, (Url, Host, Failure)> {
        let mut hops = 0;
        while matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
            && (call.method == Method::GET || call.method == Method::HEAD)
            && hops < MAX_REDIRECTS
        {
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
            else {
                break;
            };
            let host = match self.host_for(Some(&call.ep.registry), &next) {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(error = %e, "no client for the redirect");
                    break;
                }
            };
            tracing::debug!(url = %scheme::redact_url(&next), "following a redirect to another host");
            let meter = Meter::new();
            let rb = build(host.http.request(call.method.clone(), next.clone()), &meter);
            resp = match self.transmit(&host, rb, &meter).await {
                Ok(r) => r,
                Err(f) => return Err((next, host, f)),
            };
            hops += 1;
        }
        Ok(resp)
    }

    /// Turns a try into a step of a bigger retried operation (an upload): a retryable
    /// status becomes a retryable error for the whole operation.
    async fn step<T>(
        &self,
        call: &Call<'_>,
        a: Attempt<Response, RegistryError>,
    ) -> Result<Response, Attempt<T, RegistryError>> {
        match a {
            Attempt::Done(Ok(r)) => Ok(r),
            Attempt::Done(Err(e)) => Err(Attempt::Done(Err(e))),
            Attempt::Retry { last, after, why } => {
                let last = match last {
                    Ok(resp) => Err(self.fail(call, resp).await),
                    Err(e) => Err(e),
                };
                Err(Attempt::Retry { last, after, why })
            }
        }
    }

    /// The typed error for an unexpected answer.
    async fn fail(&self, call: &Call<'_>, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let insufficient_scope = auth::insufficient_scope(resp.headers());
        let body = self.read_error_body(resp).await;
        let user = self.inner.auth.username(&call.ep.registry);
        let method = call.method.to_string();
        let ctx = error::Context {
            registry: &call.ep.registry,
            repository: call.repository,
            method: &method,
            path: call.url.path(),
            action: call.action,
            what: &call.what,
            user: user.as_deref(),
            insufficient_scope,
        };
        error::from_response(&ctx, status, &body)
    }

    fn call<'a>(
        &self,
        ep: &'a Endpoint,
        repository: &'a str,
        method: Method,
        path: &str,
        action: Action,
        what: String,
    ) -> Result<Call<'a>, RegistryError> {
        let url = ep.base.join(path).map_err(|e| RegistryError::Protocol {
            registry: ep.registry.clone(),
            repository: repository.to_string(),
            why: format!("cannot build the URL for {path}: {e}"),
        })?;
        Ok(Call {
            ep,
            repository,
            scopes: vec![auth::repo_scope(repository, action == Action::Push)],
            method,
            url,
            action,
            what,
        })
    }

    /// The registry is reachable and the credentials for it (if any) are accepted.
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let ep = self.endpoint(registry).await?;
        let challenge = ep.challenge.lock().unwrap().clone();
        let secret = self.inner.auth.secret(registry)?;
        match challenge {
            Challenge::Anonymous => Ok(()),
            Challenge::Basic => {
                let Some(secret) = secret else {
                    return Err(RegistryError::LoginRequired {
                        registry: registry.into(),
                        status: 401,
                        code: None,
                        message: None,
                    });
                };
                let call = self.call(
                    &ep,
                    "",
                    Method::GET,
                    "/v2/",
                    Action::Pull,
                    "the registry API".into(),
                )?;
                let call = Call {
                    scopes: Vec::new(),
                    ..call
                };
                let resp = self.send(&call, &no_build).await?;
                if resp.status().is_success() {
                    return Ok(());
                }
                let status = resp.status().as_u16();
                let body = self.read_error_body(resp).await;
                let ctx = error::Context::ping(registry, secret.username());
                Err(error::from_response(&ctx, status, &body))
            }
            Challenge::Bearer { realm, service, .. } => {
                // A token without a resource scope proves the credentials on any token
                // service (Docker Hub, Harbor, distribution's token auth).
                auth::fetch_token(
                    self,
                    registry,
                    &realm,
                    service.as_deref(),
                    &[],
                    secret.as_ref(),
                )
                .await
                .map(|_| ())
            }
        }
    }

    /// Reads through mirrors: each location in order until one answers; `accept` says
    /// whether an answer is final (a mirror's "not found" moves on to the next location).
    async fn read_through<T, F, Fut>(
        &self,
        registry: &str,
        repository: &str,
        image: String,
        mut op: F,
        accept: impl Fn(&T) -> bool,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(mirror::Location) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let locations = mirror::locations(&self.inner.opts.mirrors, registry, repository);
        if locations.len() == 1 {
            return op(locations.into_iter().next().unwrap()).await;
        }
        let mut attempts = Vec::new();
        let n = locations.len();
        for (i, loc) in locations.into_iter().enumerate() {
            let name = loc.name();
            match op(loc).await {
                Ok(v) if accept(&v) || i + 1 == n => return Ok(v),
                Ok(_) => {
                    tracing::debug!(location = %name, "not in this mirror, trying the next location");
                }
                Err(e) => {
                    tracing::debug!(location = %name, error = %e, "location failed, trying the next");
                    attempts.push((name, e));
                }
            }
        }
        Err(RegistryError::AllLocationsFailed { image, attempts })
    }

    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let image = image_name(registry, repository, reference);
        self.read_through(
            registry,
            repository,
            image,
            |loc| async move {
                self.get_manifest_at(&loc.registry, &loc.repository, reference)
                    .await
            },
            |_| true,
        )
        .await
    }

    async fn get_manifest_at(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let call = self.call(
            &ep,
            repository,
            Method::GET,
            &format!("/v2/{repository}/manifests/{reference}"),
            Action::Pull,
            format!("manifest {reference}"),
        )?;
        let protocol = |why: String| RegistryError::Protocol {
            registry: registry.to_string(),
            repository: repository.to_string(),
            why,
        };
        // The answer and its body are one unit: a body cut short or stalled is asked again.
        let label = call.label();
        let (content_type, bytes) = self
            .retrier()
            .run(registry, &label, || async {
                let resp = match self
                    .step(&call, self.send_once(&call, &accept_manifests).await)
                    .await
                {
                    Ok(r) => r,
                    Err(a) => return a,
                };
                if resp.status() != StatusCode::OK {
                    return Attempt::Done(Err(self.fail(&call, resp).await));
                }
                let content_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
                    .filter(|v| {
                        !v.is_empty() && v != "application/octet-stream" && v != "text/plain"
                    });
                match self.read_capped(resp, MAX_MANIFEST_SIZE).await {
                    Ok(b) => Attempt::Done(Ok((content_type, b))),
                    Err(ReadFail::TooLarge) => Attempt::Done(Err(RegistryError::TooLarge {
                        registry: registry.to_string(),
                        what: format!("manifest {reference} of {repository}"),
                        limit: MAX_MANIFEST_SIZE,
                    })),
                    Err(ReadFail::Io(e)) => Attempt::Retry {
                        why: e.to_string(),
                        last: Err(protocol(format!("reading manifest {reference}: {e}"))),
                        after: None,
                    },
                }
            })
            .await?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != digest {
                return Err(protocol(format!(
                    "manifest {reference} has content with digest {digest}: the registry served the wrong or corrupt bytes"
                )));
            }
        }
        let media_type = content_type
            .or_else(|| crate::copy::sniff_media_type(&bytes))
            .ok_or_else(|| {
                protocol(format!(
                    "manifest {reference} has no Content-Type and no recognizable mediaType"
                ))
            })?;
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// The manifest's digest, or `None` when the registry does not have it.
    pub async fn head_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        self.head_manifest_through(registry, repository, reference, Option::is_some)
            .await
    }

    /// As [`Client::head_manifest`], but the first location that answers decides: a
    /// mirror's "not there" is final. For lookups that mostly find nothing (what is attached
    /// to an image), where asking every location would cost a round trip per miss.
    pub async fn head_manifest_first_answer(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        self.head_manifest_through(registry, repository, reference, |_| true)
            .await
    }

    /// HEAD through the mirrors; `accept` says which answer ends the search.
    async fn head_manifest_through(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        accept: fn(&Option<Digest>) -> bool,
    ) -> Result<Option<Digest>, RegistryError> {
        let image = image_name(registry, repository, reference);
        self.read_through(
            registry,
            repository,
            image,
            |loc| async move {
                self.head_manifest_at(&loc.registry, &loc.repository, reference)
                    .await
            },
            accept,
        )
        .await
    }

    async fn head_manifest_at(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let call = self.call(
            &ep,
            repository,
            Method::HEAD,
            &format!("/v2/{repository}/manifests/{reference}"),
            Action::Pull,
            format!("manifest {reference}"),
        )?;
        let resp = self.send(&call, &accept_manifests).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.fail(&call, resp).await),
        }
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        match header {
            Some(d) => Ok(Some(d)),
            // Some registries omit the header on HEAD: hash the manifest instead.
            None => Ok(Some(
                self.get_manifest_at(registry, repository, reference)
                    .await?
                    .digest,
            )),
        }
    }

    /// The blob's bytes, streamed, checked against `digest` and `size` as they arrive, and
    /// resumed with a Range request if the connection drops.
    pub async fn get_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobStream, RegistryError> {
        let stream = self
            .open_resuming(registry, repository, digest, size, 0, None)
            .await?;
        Ok(Box::pin(crate::digest::VerifyingStream::new(
            stream,
            digest.clone(),
            size,
        )))
    }

    /// Bytes `offset..offset + len` of a blob (`Range`), resumed within the part if the
    /// connection drops. Not verified: the caller hashes the parts together, in order. A
    /// registry that ignores Range answers the first part with the whole blob, which is
    /// passed on as it is (the caller sees more than `len` bytes and takes it whole);
    /// for a later part that is an error.
    pub async fn get_blob_part(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        len: u64,
    ) -> Result<BlobStream, RegistryError> {
        self.open_resuming(
            registry,
            repository,
            digest,
            size,
            offset,
            Some(offset + len),
        )
        .await
    }

    async fn open_resuming(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        end: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        let image = format!("{registry}/{repository}@{digest}");
        let (ep, repo, body) = self
            .read_through(
                registry,
                repository,
                image,
                |loc| async move {
                    let ep = self.endpoint(&loc.registry).await?;
                    let resp = self
                        .open_blob(&ep, &loc.repository, digest, offset, end)
                        .await?;
                    Ok((ep, loc.repository, resp))
                },
                |_| true,
            )
            .await?;
        // A 200 to a ranged request is the whole blob: resume it as such.
        let end = end.filter(|_| body.status() == StatusCode::PARTIAL_CONTENT);
        let stream = blob::Resuming::new(
            self.clone(),
            ep,
            repo,
            digest.clone(),
            size,
            (offset, end),
            body,
        );
        Ok(Box::pin(stream.into_stream()))
    }

    /// `GET` a blob from `offset` on (to `end`, exclusive, when given); the answer must be
    /// 200 (from 0) or 206.
    async fn open_blob(
        &self,
        ep: &Endpoint,
        repository: &str,
        digest: &Digest,
        offset: u64,
        end: Option<u64>,
    ) -> Result<Response, RegistryError> {
        let call = self.call(
            ep,
            repository,
            Method::GET,
            &format!("/v2/{repository}/blobs/{digest}"),
            Action::Pull,
            format!("blob {digest}"),
        )?;
        let range = match end {
            Some(end) => Some(format!("bytes={offset}-{}", end.saturating_sub(1))),
            None if offset > 0 => Some(format!("bytes={offset}-")),
            None => None,
        };
        let build = move |rb: RequestBuilder, _: &Arc<Meter>| match &range {
            Some(r) => rb.header(reqwest::header::RANGE, r.clone()),
            None => rb,
        };
        let resp = self.send(&call, &build).await?;
        match (offset, resp.status()) {
            (0, StatusCode::OK) => Ok(resp),
            (o, StatusCode::PARTIAL_CONTENT) if o > 0 || end.is_some() => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(o) {
                    return Err(RegistryError::Protocol {
                        registry: ep.registry.clone(),
                        repository: repository.to_string(),
                        why: format!(
                            "blob {digest}: asked for bytes from {o}, the registry answered Content-Range starting at {start:?}"
                        ),
                    });
                }
                Ok(resp)
            }
            (o, StatusCode::OK) if o > 0 => Err(RegistryError::Protocol {
                registry: ep.registry.clone(),
                repository: repository.to_string(),
                why: if end.is_some() {
                    format!(
                        "blob {digest}: asked for a part from byte {o} and the registry ignored the Range request (HTTP 200, not 206); try again with --concurrency 1"
                    )
                } else {
                    format!(
                        "blob {digest}: the connection dropped at byte {o} and the registry ignored the Range request (HTTP 200, not 206), so the download cannot resume; try again"
                    )
                },
            }),
            _ => Err(self.fail(&call, resp).await),
        }
    }

    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let image = format!("{registry}/{repository}@{digest}");
        self.read_through(
            registry,
            repository,
            image,
            |loc| async move {
                let ep = self.endpoint(&loc.registry).await?;
                let call = self.call(
                    &ep,
                    &loc.repository,
                    Method::HEAD,
                    &format!("/v2/{}/blobs/{digest}", loc.repository),
                    Action::Pull,
                    format!("blob {digest}"),
                )?;
                let resp = self.send(&call, &no_build).await?;
                match resp.status() {
                    StatusCode::OK => Ok(true),
                    StatusCode::NOT_FOUND => Ok(false),
                    _ => Err(self.fail(&call, resp).await),
                }
            },
            |found| *found,
        )
        .await
    }

    /// Cross-repository mount: `true` when the registry linked the blob, `false` when it
    /// did not (the upload session it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        match self
            .try_mount(registry, repository, digest, from_repository)
            .await?
        {
            Mount::Mounted => Ok(true),
            Mount::Refused(session) => {
                if let Some(url) = session {
                    let ep = self.endpoint(registry).await?;
                    self.cancel_upload(&ep, repository, url).await;
                }
                Ok(false)
            }
        }
    }

    /// Mounts a blob from `from_repository`, or when the registry will not (202), uploads it
    /// through the session that answer opened: no HEAD first and no second POST.
    pub async fn mount_or_put_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        from_repository: &str,
        open: &(dyn Fn() -> BlobStream + Send + Sync),
    ) -> Result<bool, RegistryError> {
        match self
            .try_mount(registry, repository, digest, from_repository)
            .await?
        {
            Mount::Mounted => Ok(true),
            Mount::Refused(session) => {
                self.put_blob_in(registry, repository, digest, size, open, session)
                    .await?;
                Ok(false)
            }
        }
    }

    async fn try_mount(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<Mount, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let mut call = self.call(
            &ep,
            repository,
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/"),
            Action::Push,
            format!("blob {digest}"),
        )?;
        call.url
            .query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from_repository);
        // From itself (asking whether it has the blob), the push scope covers the pull.
        if from_repository != repository {
            call.scopes.push(auth::repo_scope(from_repository, false));
        }
        let resp = self.send(&call, &empty_body).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Refused(location(&call, &resp).ok())),
            _ => Err(self.fail(&call, resp).await),
        }
    }

    /// Best effort: the registry expires abandoned sessions anyway.
    async fn cancel_upload(&self, ep: &Endpoint, repository: &str, url: Url) {
        let call = Call {
            ep,
            repository,
            scopes: vec![auth::repo_scope(repository, true)],
            method: Method::DELETE,
            url,
            action: Action::Push,
            what: "upload session".into(),
        };
        if let Attempt::Done(Ok(resp)) | Attempt::Retry { last: Ok(resp), .. } =
            self.send_once(&call, &no_build).await
        {
            tracing::debug!(status = resp.status().as_u16(), "cancelled upload session");
        }
    }

    /// Uploads a blob: `POST` a session, then one `PUT` streaming `open()`. A failed upload
    /// is retried from a new session with a fresh `open()`.
    pub async fn put_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        open: &(dyn Fn() -> BlobStream + Send + Sync),
    ) -> Result<(), RegistryError> {
        self.put_blob_in(registry, repository, digest, size, open, None)
            .await
    }

    /// [`Client::put_blob`], the first attempt through `session` (an upload a refused
    /// mount opened) when given.
    async fn put_blob_in(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        open: &(dyn Fn() -> BlobStream + Send + Sync),
        session: Option<Url>,
    ) -> Result<(), RegistryError> {
        let session = std::sync::Mutex::new(session);
        let ep = self.endpoint(registry).await?;
        let post = self.call(
            &ep,
            repository,
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/"),
            Action::Push,
            format!("blob {digest}"),
        )?;
        let label = format!("upload of {digest} to {}", post.label());
        self.retrier()
            .run(registry, &label, || async {
                let given = session.lock().expect("session lock").take();
                let mut url = match given {
                    Some(url) => url,
                    None => {
                        let resp = match self
                            .step(&post, self.send_once(&post, &empty_body).await)
                            .await
                        {
                            Ok(r) => r,
                            Err(a) => return a,
                        };
                        if resp.status() != StatusCode::ACCEPTED {
                            return Attempt::Done(Err(self.fail(&post, resp).await));
                        }
                        match location(&post, &resp) {
                            Ok(u) => u,
                            Err(e) => return Attempt::Done(Err(e)),
                        }
                    }
                };
                url.query_pairs_mut().append_pair("digest", digest.as_str());
                let put = Call {
                    ep: &ep,
                    repository,
                    scopes: post.scopes.clone(),
                    method: Method::PUT,
                    url,
                    action: Action::Push,
                    what: format!("blob {digest}"),
                };
                let build = |rb: RequestBuilder, meter: &Arc<Meter>| {
                    rb.header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size)
                        .body(reqwest::Body::wrap_stream(meter.wrap(open(), size)))
                };
                let resp = match self.step(&put, self.send_once(&put, &build).await).await {
                    Ok(r) => r,
                    Err(a) => return a,
                };
                if resp.status() != StatusCode::CREATED {
                    return Attempt::Done(Err(self.fail(&put, resp).await));
                }
                if let Some(stored) = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                {
                    if stored.trim() != digest.as_str() {
                        return Attempt::Done(Err(RegistryError::Protocol {
                            registry: registry.to_string(),
                            repository: repository.to_string(),
                            why: format!(
                                "pushed blob {digest} but the registry stored it as {stored}"
                            ),
                        }));
                    }
                }
                Attempt::Done(Ok(()))
            })
            .await
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let call = self.call(
            &ep,
            repository,
            Method::PUT,
            &format!("/v2/{repository}/manifests/{reference}"),
            Action::Push,
            format!("manifest {reference}"),
        )?;
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::Protocol {
                registry: registry.to_string(),
                repository: repository.to_string(),
                why: format!("media type {media_type:?} is not a valid header value"),
            })?;
        let build = |rb: RequestBuilder, _: &Arc<Meter>| {
            rb.header(CONTENT_TYPE, content_type.clone())
                .body(bytes.clone())
        };
        let resp = self.send(&call, &build).await?;
        if resp.status() != StatusCode::CREATED && resp.status() != StatusCode::OK {
            return Err(self.fail(&call, resp).await);
        }
        let computed = Digest::of(&bytes);
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok())
            .unwrap_or(computed))
    }

    /// Proves `repository` accepts pushes: opens an upload session and cancels it.
    pub async fn check_push(&self, registry: &str, repository: &str) -> Result<(), RegistryError> {
        let ep = self.endpoint(registry).await?;
        let call = self.call(
            &ep,
            repository,
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/"),
            Action::Push,
            format!("repository {repository}"),
        )?;
        let resp = self.send(&call, &empty_body).await?;
        match resp.status() {
            StatusCode::ACCEPTED => {
                let loc = location(&call, &resp)?;
                self.cancel_upload(&ep, repository, loc).await;
                Ok(())
            }
            StatusCode::CREATED => Ok(()),
            _ => Err(self.fail(&call, resp).await),
        }
    }
}

/// What a mount request got: the blob linked, or an upload session instead (when the
/// registry said where).
enum Mount {
    Mounted,
    Refused(Option<Url>),
}

fn accept_manifests(rb: RequestBuilder, _: &Arc<Meter>) -> RequestBuilder {
    rb.header(
        ACCEPT,
        format!("{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"),
    )
}

fn empty_body(rb: RequestBuilder, _: &Arc<Meter>) -> RequestBuilder {
    rb.header(CONTENT_LENGTH, 0)
}

/// An upload's `Location`, which may be relative; its query (session state) is kept.
fn location(call: &Call<'_>, resp: &Response) -> Result<Url, RegistryError> {
    let raw = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Protocol {
            registry: call.ep.registry.clone(),
            repository: call.repository.to_string(),
            why: format!(
                "{} answered {} without a Location for the upload session",
                call.label(),
                resp.status().as_u16()
            ),
        })?;
    resp.url().join(raw).map_err(|e| RegistryError::Protocol {
        registry: call.ep.registry.clone(),
        repository: call.repository.to_string(),
        why: format!("upload Location {raw:?} is not a URL: {e}"),
    })
}

fn image_name(registry: &str, repository: &str, reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("{registry}/{repository}@{reference}")
    } else {
        format!("{registry}/{repository}:{reference}")
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
