//! TEMPORARY stub with the agreed API; replaced by the registry branch.
#![allow(unused_variables, dead_code)]
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::digest::Digest;

pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Default)]
pub struct RetryPolicy {}

#[derive(Clone, Debug)]
pub struct Mirror {
    pub prefix: String,
    pub location: String,
}

#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub insecure_skip_tls_verify: bool,
    pub ca_files: Vec<PathBuf>,
    pub plain_http: bool,
    pub credentials: Option<(String, Credentials)>,
    pub docker_config_dir: Option<PathBuf>,
    pub mirrors: Vec<Mirror>,
    pub retry: RetryPolicy,
    pub user_agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("registry error")]
pub struct RegistryError;

impl Mirror {
    pub fn parse(s: &str) -> Result<Mirror, RegistryError> {
        todo!()
    }
}
pub fn load_registries_conf(path: &std::path::Path) -> Result<Vec<Mirror>, RegistryError> {
    todo!()
}

#[derive(Clone)]
pub struct Client;

pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Client {
    pub fn new(opts: RegistryOptions) -> Result<Client, RegistryError> {
        todo!()
    }
    pub async fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        todo!()
    }
    pub async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        todo!()
    }
    pub async fn head_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        todo!()
    }
    pub async fn get_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobStream, RegistryError> {
        todo!()
    }
    pub async fn blob_exists(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        todo!()
    }
    pub async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        todo!()
    }
    pub async fn put_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
        open: &(dyn Fn() -> BlobStream + Send + Sync),
    ) -> Result<(), RegistryError> {
        todo!()
    }
    pub async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        todo!()
    }
    pub async fn check_push(&self, registry: &str, repository: &str) -> Result<(), RegistryError> {
        todo!()
    }
}
pub mod transport;
