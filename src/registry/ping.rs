//! Finding a registry: the first `GET /v2/` says which scheme answers (HTTPS, or plain
//! HTTP where [`super::scheme`] allows it) and which auth it asks for, once per registry
//! however many requests wait for it; [`Client::ping`] proves the credentials work.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode, Url};

use super::auth::{self, Challenge};
use super::error::{self, Action, RegistryError};
use super::retry::{self, Attempt};
use super::timeout::Meter;
use super::{no_build, scheme, Call, Client, Endpoint, Failure};

impl Client {
    /// The registry's endpoint, pinging it (`GET /v2/`) the first time: which scheme
    /// answers, and which auth it asks for.
    pub(super) async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>, RegistryError> {
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
                        return Attempt::failed(e, retryable);
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
        Attempt::failed(e, retryable)
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
}
