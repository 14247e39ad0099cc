//! Reads: manifests (GET and HEAD, by tag or digest, verified against a digest reference)
//! and blobs (streamed, verified, resumed with `Range`, or in parts), each through the
//! configured mirrors first ([`super::mirror`]).

use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::copy::BlobStream;
use crate::digest::Digest;
use crate::manifest::{
    sniff_media_type, Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

use super::error::{Action, RegistryError};
use super::retry::Attempt;
use super::timeout::Meter;
use super::{blob, mirror, no_build, Client, Endpoint, ReadFail, MAX_MANIFEST_SIZE};

impl Client {
    /// Reads `reference` (a tag or digest, for messages) through mirrors: each location in
    /// order until one answers; `accept` says whether an answer is final (a mirror's "not
    /// found" moves on to the next location).
    pub(super) async fn read_through<T, F, Fut>(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
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
        Err(RegistryError::AllLocationsFailed {
            image: image_name(registry, repository, reference),
            attempts,
        })
    }

    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        self.read_through(
            registry,
            repository,
            reference,
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
            .or_else(|| sniff_media_type(&bytes))
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
        self.read_through(
            registry,
            repository,
            reference,
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
        let (ep, repo, body) = self
            .read_through(
                registry,
                repository,
                digest.as_str(),
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
    pub(super) async fn open_blob(
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
        self.read_through(
            registry,
            repository,
            digest.as_str(),
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
}

fn accept_manifests(rb: RequestBuilder, _: &Arc<Meter>) -> RequestBuilder {
    rb.header(
        ACCEPT,
        format!("{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"),
    )
}

fn image_name(registry: &str, repository: &str, reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("{registry}/{repository}@{reference}")
    } else {
        format!("{registry}/{repository}:{reference}")
    }
}
