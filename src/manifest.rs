//! Manifests and their media types, as every transport and the copy engine see them: the
//! OCI and Docker media types, a manifest held as its exact bytes (so digests never change),
//! content descriptors, and the helpers that read what a manifest or index points to.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::digest::{Digest, DigestError};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    is_index(media_type) || is_image_manifest(media_type)
}

/// The media type a manifest declares in its own `mediaType`, or what its shape says.
pub fn sniff_media_type(data: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    if v.get("manifests").is_some() {
        Some(OCI_INDEX.to_string())
    } else if v.get("layers").is_some() {
        Some(OCI_MANIFEST.to_string())
    } else {
        None
    }
}

/// The annotation naming each image in `index.json` (what `skopeo oci-archive:FILE:REF` matches).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A manifest or index as raw bytes: pushed exactly as fetched so digests never change.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            media_type: self.media_type.clone(),
        }
    }
}

/// The descriptors a manifest or index points to: `(digest, media type, size)`.
pub fn manifest_children(
    media_type: &str,
    data: &[u8],
) -> Result<Vec<(Digest, String, u64)>, String> {
    let parse = |d: &oci_spec::image::Descriptor| -> Result<(Digest, String, u64), String> {
        let digest: Digest = d
            .digest()
            .to_string()
            .parse()
            .map_err(|e: DigestError| e.to_string())?;
        Ok((digest, d.media_type().to_string(), d.size()))
    };
    if is_index(media_type) {
        let idx: ImageIndex =
            serde_json::from_slice(data).map_err(|e| format!("bad index: {e}"))?;
        idx.manifests().iter().map(parse).collect()
    } else {
        let m: ImageManifest =
            serde_json::from_slice(data).map_err(|e| format!("bad manifest: {e}"))?;
        std::iter::once(m.config())
            .chain(m.layers().iter())
            .map(parse)
            .collect()
    }
}
