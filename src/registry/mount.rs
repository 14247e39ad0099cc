//! Cross-repository mounts: a blob the registry has in one repository linked into
//! another without its bytes moving; when the registry refuses, the upload session its
//! answer opened is used for the upload (or cancelled).

use reqwest::{StatusCode, Url};

use crate::copy::BlobStream;
use crate::digest::Digest;

use super::auth;
use super::error::RegistryError;
use super::push::{empty_body, location};
use super::Client;

impl Client {
    /// Cross-repository mount: `true` when the registry linked the blob, `false` when it
    /// did not (the upload session it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let mount = self.try_mount(registry, repository, digest, from_repository);
        let Mount::Refused(session) = mount.await? else {
            return Ok(true);
        };
        if let Some(url) = session {
            let ep = self.endpoint(registry).await?;
            self.cancel_upload(&ep, repository, url).await;
        }
        Ok(false)
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
        let mount = self.try_mount(registry, repository, digest, from_repository);
        let Mount::Refused(session) = mount.await? else {
            return Ok(true);
        };
        self.put_blob_in(registry, repository, digest, size, open, session)
            .await?;
        Ok(false)
    }

    async fn try_mount(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<Mount, RegistryError> {
        let ep = self.endpoint(registry).await?;
        let mut call = self.upload_call(&ep, repository, format!("blob {digest}"))?;
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
}

/// What a mount request got: the blob linked, or an upload session instead (when the
/// registry said where).
enum Mount {
    Mounted,
    Refused(Option<Url>),
}
