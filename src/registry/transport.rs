//! The registry as a copy-engine end: [`RegistrySource`] (export, pull) and
//! [`RegistryDest`] (import, pull), thin adapters over [`Client`]. The destination keeps
//! every manifest it pushed, so [`RegistryDest::confirm_landed`] can prove they are there.

use std::sync::Mutex;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};

use super::{Client, RegistryError};
use crate::copy::{BlobOpener, BlobOutcome, BlobStream, CopyError, ImageDestination, ImageSource};
use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Reference;

/// The registry's errors as the copy engine carries them (the message is the registry's).
impl From<RegistryError> for CopyError {
    fn from(e: RegistryError) -> CopyError {
        CopyError::Transport(Box::new(e))
    }
}

pub struct RegistrySource {
    client: Client,
}

impl RegistrySource {
    pub fn new(client: Client) -> Self {
        RegistrySource { client }
    }
}

#[async_trait]
impl ImageSource for RegistrySource {
    async fn manifest(&self, image: &Reference, reference: &str) -> Result<Manifest, CopyError> {
        Ok(self
            .client
            .get_manifest(image.registry(), image.repository(), reference)
            .await?)
    }

    fn blob(&self, image: &Reference, desc: &Descriptor) -> BlobStream {
        let client = self.client.clone();
        let (registry, repository) = (image.registry().to_string(), image.repository().to_string());
        let (digest, size) = (desc.digest.clone(), desc.size);
        // Lazy: nothing is requested until the destination starts reading.
        let fetch = async move {
            client
                .get_blob(&registry, &repository, &digest, size)
                .await
                .map_err(std::io::Error::other)
        };
        Box::pin(futures_util::stream::once(fetch).try_flatten())
    }

    fn blob_part(
        &self,
        image: &Reference,
        desc: &Descriptor,
        offset: u64,
        len: u64,
    ) -> Option<BlobStream> {
        let client = self.client.clone();
        let (registry, repository) = (image.registry().to_string(), image.repository().to_string());
        let (digest, size) = (desc.digest.clone(), desc.size);
        let fetch = async move {
            client
                .get_blob_part(&registry, &repository, &digest, size, offset, len)
                .await
                .map_err(std::io::Error::other)
        };
        Some(Box::pin(futures_util::stream::once(fetch).try_flatten()))
    }
}

pub struct RegistryDest {
    client: Client,
    concurrency: usize,
    /// (image, reference it was pushed under, digest) of every manifest pushed.
    pushed: Mutex<Vec<(Reference, String, Digest)>>,
}

impl RegistryDest {
    pub fn new(client: Client, concurrency: usize) -> Self {
        RegistryDest {
            client,
            concurrency,
            pushed: Mutex::new(Vec::new()),
        }
    }

    /// Proves that every manifest this destination pushed is in the registry: each is
    /// HEADed under the reference it was pushed as, which must name its digest (a tag can
    /// only name a manifest the registry holds, so one HEAD per manifest proves both). A
    /// registry (or something in front of it) that answered 201 and stored nothing fails
    /// here, before anything points at the image.
    pub async fn confirm_landed(&self) -> Result<(), CopyError> {
        let checks = self.pushed.lock().unwrap().clone();
        futures_util::stream::iter(checks)
            .map(|(image, reference, digest)| async move {
                let found = self
                    .client
                    .head_manifest(image.registry(), image.repository(), &reference)
                    .await?;
                if found.as_ref() == Some(&digest) {
                    return Ok(());
                }
                let name = format!("{}/{}", image.registry(), image.repository());
                let why = match found {
                    None => format!(
                        "the registry accepted manifest {digest} under {reference} but does not have it: nothing was stored (a proxy or storage in front of the registry dropped the push?)"
                    ),
                    Some(other) => format!(
                        "the registry accepted manifest {digest} but {reference} names {other}: the push did not land"
                    ),
                };
                Err(CopyError::Image { image: name, why })
            })
            .buffer_unordered(crate::copy::lookups(self.concurrency))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

/// Blobs from this size up are HEADed before they are pushed: the round trip is nothing
/// beside their upload.
const HEAD_FIRST_SIZE: u64 = 32 * 1024 * 1024;

#[async_trait]
impl ImageDestination for RegistryDest {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn has_blob(&self, target: &Reference, desc: &Descriptor) -> Result<bool, CopyError> {
        Ok(self
            .client
            .blob_exists(target.registry(), target.repository(), &desc.digest)
            .await?)
    }

    /// One request instead of a HEAD and a POST: a mount from the target repository itself
    /// answers 201 when the blob is there, else 202 with the session it is uploaded through.
    /// A large blob is asked for with a HEAD first: a registry without mounts answers 202
    /// even when it holds the blob, and a resumed import must not send it again.
    async fn ensure_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<BlobOutcome, CopyError> {
        let (registry, repository) = (target.registry(), target.repository());
        if desc.size >= HEAD_FIRST_SIZE && self.has_blob(target, desc).await? {
            return Ok(BlobOutcome::Existed);
        }
        let present = self
            .client
            .mount_or_put_blob(
                registry,
                repository,
                &desc.digest,
                desc.size,
                repository,
                &|| blob.open(),
            )
            .await?;
        Ok(if present {
            BlobOutcome::Existed
        } else {
            BlobOutcome::Copied
        })
    }

    async fn mount_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        from: &Reference,
        blob: &dyn BlobOpener,
    ) -> Result<BlobOutcome, CopyError> {
        if from.registry() != target.registry() || from.repository() == target.repository() {
            return self.ensure_blob(target, desc, blob).await;
        }
        let mounted = self
            .client
            .mount_or_put_blob(
                target.registry(),
                target.repository(),
                &desc.digest,
                desc.size,
                from.repository(),
                &|| blob.open(),
            )
            .await?;
        Ok(if mounted {
            BlobOutcome::Mounted
        } else {
            BlobOutcome::Copied
        })
    }

    /// Every repository that will receive pushes accepts them (ECR's must exist first):
    /// checked once each, before the first byte moves, and only for images not there yet.
    async fn prepare(&self, targets: &[&Reference]) -> Result<(), CopyError> {
        let mut repos: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.registry().to_string(), t.repository().to_string()))
            .collect();
        repos.sort();
        repos.dedup();
        let client = &self.client;
        futures_util::stream::iter(repos)
            .map(|(registry, repository)| async move {
                client.check_push(&registry, &repository).await
            })
            .buffer_unordered(crate::copy::lookups(self.concurrency))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn put_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<(), CopyError> {
        Ok(self
            .client
            .put_blob(
                target.registry(),
                target.repository(),
                &desc.digest,
                desc.size,
                &|| blob.open(),
            )
            .await?)
    }

    async fn has_manifest(
        &self,
        target: &Reference,
        reference: &str,
        digest: &Digest,
    ) -> Result<bool, CopyError> {
        let found = self
            .client
            .head_manifest(target.registry(), target.repository(), reference)
            .await?;
        Ok(found.as_ref() == Some(digest))
    }

    async fn put_manifest(
        &self,
        target: &Reference,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        let pushed = self
            .client
            .put_manifest(
                target.registry(),
                target.repository(),
                reference,
                &manifest.media_type,
                manifest.bytes.clone(),
            )
            .await?;
        if pushed != manifest.digest {
            return Err(CopyError::Image {
                image: target.to_string(),
                why: format!(
                    "registry stored the manifest as {pushed}, expected {}",
                    manifest.digest
                ),
            });
        }
        self.pushed.lock().unwrap().push((
            target.clone(),
            reference.to_string(),
            manifest.digest.clone(),
        ));
        Ok(())
    }
}
