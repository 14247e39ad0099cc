//! Where a blob download resumes: a body stream that, when the connection drops mid-blob,
//! asks again with `Range: bytes=N-` (within the retry budget) and carries on where it
//! stopped. A body that stalls (see [`super::timeout`]) counts as dropped. The caller wraps
//! it in [`crate::digest::VerifyingStream`], so the hash runs across every resumed piece and
//! nothing is ever buffered whole. A part of a blob (`Range: bytes=A-B`, for concurrent
//! fetches of one blob) resumes the same way, within its part.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::Response;

use super::{Client, Endpoint};
use crate::digest::Digest;

pub(crate) struct Resuming {
    client: Client,
    ep: Arc<Endpoint>,
    repository: String,
    digest: Digest,
    size: u64,
    /// Where a resumed request starts: the first byte not yet handed on.
    offset: u64,
    /// End (exclusive) of the part being fetched; `None`: to the blob's end.
    end: Option<u64>,
    resumes: u32,
    body: Option<BoxStream<'static, io::Result<Bytes>>>,
}

impl Resuming {
    pub fn new(
        client: Client,
        ep: Arc<Endpoint>,
        repository: String,
        digest: Digest,
        size: u64,
        range: (u64, Option<u64>),
        first: Response,
    ) -> Resuming {
        let body = client.watched(first).boxed();
        Resuming {
            client,
            ep,
            repository,
            digest,
            size,
            offset: range.0,
            end: range.1,
            resumes: 0,
            body: Some(body),
        }
    }

    pub fn into_stream(self) -> BoxStream<'static, io::Result<Bytes>> {
        futures_util::stream::try_unfold(self, |st| st.next_chunk()).boxed()
    }

    async fn next_chunk(mut self) -> io::Result<Option<(Bytes, Resuming)>> {
        loop {
            let body = match &mut self.body {
                Some(b) => b,
                None => {
                    let resp = self
                        .client
                        .open_blob(
                            &self.ep,
                            &self.repository,
                            &self.digest,
                            self.offset,
                            self.end,
                        )
                        .await
                        .map_err(io::Error::other)?;
                    self.body.insert(self.client.watched(resp).boxed())
                }
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    self.offset += chunk.len() as u64;
                    return Ok(Some((chunk, self)));
                }
                // The verifier judges whether the end came at the right size.
                None => return Ok(None),
                Some(Err(e)) => {
                    let why = e.to_string();
                    let policy = self.client.policy().clone();
                    self.resumes += 1;
                    let place = place(&self.ep, &self.repository, &self.digest);
                    if self.resumes >= policy.attempts.max(1) {
                        return Err(io::Error::other(format!(
                            "{place}: the download broke off at byte {} of {} and {} attempts to resume failed: {why}",
                            self.offset,
                            self.size,
                            self.resumes - 1
                        )));
                    }
                    let delay = policy.backoff(self.resumes - 1);
                    tracing::warn!(
                        "{place}: the download broke off at byte {} of {} ({why}); resuming with Range in {:.1}s",
                        self.offset,
                        self.size,
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                    self.body = None;
                }
            }
        }
    }
}

fn place(ep: &Endpoint, repository: &str, digest: &Digest) -> String {
    format!("blob {digest} from {}/{repository}", ep.registry)
}
