//! One request to a registry, as every operation sends it: the token or credentials its
//! challenge asks for (a 401 answered once with fresh ones), redirects to other hosts (blob
//! storage) with that host's client, retries of what [`super::retry`] calls transient, the
//! stall watch of [`super::timeout`], bodies read whole under a cap, and the typed error
//! for an answer that was not the one expected.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{self, Challenge};
use super::error::{self, Action, RegistryError};
use super::retry::{self, Attempt};
use super::timeout::{self, Meter};
use super::{
    certproblem, scheme, Build, Call, Client, Endpoint, Failure, Host, ReadFail, MAX_ERROR_BODY,
    MAX_REDIRECTS,
};

impl Client {
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
    pub(super) fn watched(
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
                    .then(|| certproblem::explain(e, Some(&host.info)))
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

    /// One try of a request, with auth: a 401 whose challenge can be met (a Bearer token,
    /// perhaps for a wider scope) is answered once with fresh credentials.
    pub(super) async fn send_once(
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
    pub(super) async fn send(
        &self,
        call: &Call<'_>,
        build: Build<'_>,
    ) -> Result<Response, RegistryError> {
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
    pub(super) async fn step<T>(
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
    pub(super) async fn fail(&self, call: &Call<'_>, resp: Response) -> RegistryError {
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

    pub(super) fn call<'a>(
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
}
