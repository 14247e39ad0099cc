//! Writes: blob uploads (`POST` a session, one streamed `PUT`, restarted whole from a fresh
//! stream when it fails), manifests, and the check that a repository accepts pushes.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::copy::BlobStream;
use crate::digest::Digest;

use super::auth;
use super::error::{Action, RegistryError};
use super::retry::Attempt;
use super::timeout::Meter;
use super::{no_build, Call, Client, Endpoint};

impl Client {
    /// Best effort: the registry expires abandoned sessions anyway.
    pub(super) async fn cancel_upload(&self, ep: &Endpoint, repository: &str, url: Url) {
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

    /// `POST /v2/<repository>/blobs/uploads/`, what opens an upload session (and asks for a
    /// mount); `what` names it in messages.
    pub(super) fn upload_call<'a>(
        &self,
        ep: &'a Endpoint,
        repository: &'a str,
        what: String,
    ) -> Result<Call<'a>, RegistryError> {
        self.call(
            ep,
            repository,
            Method::POST,
            &format!("/v2/{repository}/blobs/uploads/"),
            Action::Push,
            what,
        )
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
    pub(super) async fn put_blob_in(
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
        let post = self.upload_call(&ep, repository, format!("blob {digest}"))?;
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
        let call = self.upload_call(&ep, repository, format!("repository {repository}"))?;
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

pub(super) fn empty_body(rb: RequestBuilder, _: &Arc<Meter>) -> RequestBuilder {
    rb.header(CONTENT_LENGTH, 0)
}

/// An upload's `Location`, which may be relative; its query (session state) is kept.
pub(super) fn location(call: &Call<'_>, resp: &Response) -> Result<Url, RegistryError> {
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
