//! The first step of a copy: an image's manifests fetched and read (small) so the whole
//! plan is known before any layer moves: its platform manifests (narrowed to the platforms
//! asked for), every config and layer once, and the platforms it has.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{image_err, CopyError, ImageSource};
use crate::digest::Digest;
use crate::manifest::{is_image_manifest, is_index, Descriptor, Manifest};
use crate::reference::Reference;

/// Configs and small JSON documents larger than this are refused.
const MAX_CONFIG: u64 = 16 * 1024 * 1024;

/// Everything needed to copy one image, known before any layer moves.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// As found in the manifests.
    pub source: Reference,
    /// The top-level manifest or index.
    pub top: Manifest,
    /// For an index: the platform manifests, in index order.
    pub children: Vec<Manifest>,
    /// Configs and layers, each once.
    pub blobs: Vec<Descriptor>,
    /// `os/arch[/variant]` of each platform.
    pub platforms: Vec<String>,
    /// Configs read (and verified) while resolving, so the copy does not fetch them again.
    pub fetched: BTreeMap<Digest, Bytes>,
}

impl ResolvedImage {
    /// Bytes of every blob and manifest of this image.
    pub fn size(&self) -> u64 {
        self.all_blobs().iter().map(|d| d.size).sum()
    }

    /// Every blob in the layout sense: layers, configs, and the manifests themselves.
    pub fn all_blobs(&self) -> Vec<Descriptor> {
        let mut out = self.blobs.clone();
        out.extend(self.children.iter().map(Manifest::descriptor));
        out.push(self.top.descriptor());
        out
    }
}

/// Fetches an image's manifests and config descriptors from `source`.
///
/// `platforms` (`os/arch[/variant]`; empty keeps all) narrows a multi-arch index to the
/// platforms asked for; the index is then rewritten, so its digest changes. An image pinned
/// by digest keeps every platform: its digest is what the manifests deploy.
pub async fn resolve(
    source: &dyn ImageSource,
    image: &Reference,
    platforms: &[String],
) -> Result<ResolvedImage, CopyError> {
    let mut top = source.manifest(image, image.manifest_reference()).await?;
    if let Some(pinned) = image.digest() {
        if &top.digest != pinned {
            return Err(image_err(
                image,
                format!("source served {} for a digest-pinned reference", top.digest),
            ));
        }
    }
    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut found_platforms = Vec::new();
    let mut seen = HashSet::new();
    let mut fetched = BTreeMap::new();
    if is_index(&top.media_type) {
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(&top.bytes)
            .map_err(|e| image_err(image, format!("unreadable index: {e}")))?;
        let platform_of = |d: &oci_spec::image::Descriptor| {
            d.platform().as_ref().map(|p| {
                platform_string(
                    p.os().to_string(),
                    p.architecture().to_string(),
                    p.variant().clone(),
                )
            })
        };
        let filter = !platforms.is_empty() && image.digest().is_none();
        if !platforms.is_empty() && image.digest().is_some() {
            tracing::warn!("{image}: pinned by digest, so all its platforms are kept");
        }
        let kept: Vec<&oci_spec::image::Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                !filter
                    || platform_of(d).is_some_and(|have| {
                        platforms.iter().any(|want| platform_matches(want, &have))
                    })
            })
            .collect();
        if kept.is_empty() {
            let have: Vec<String> = index.manifests().iter().filter_map(platform_of).collect();
            return Err(image_err(
                image,
                format!(
                    "has none of the platforms {}; it has {}",
                    platforms.join(", "),
                    have.join(", ")
                ),
            ));
        }
        if kept.len() < index.manifests().len() {
            top = narrow_index(&top, &kept);
        }
        for d in kept {
            let desc = descriptor(image, d)?;
            if !is_image_manifest(&desc.media_type) {
                // Nested indexes and artifacts are rare; refusing beats a half copy.
                return Err(image_err(
                    image,
                    format!(
                        "index entry {} has unsupported media type {}",
                        desc.digest, desc.media_type
                    ),
                ));
            }
            let child = source.manifest(image, desc.digest.as_str()).await?;
            if child.digest != desc.digest {
                return Err(image_err(
                    image,
                    format!("manifest {} came back as {}", desc.digest, child.digest),
                ));
            }
            if let Some(p) = d.platform() {
                found_platforms.push(platform_string(
                    p.os().to_string(),
                    p.architecture().to_string(),
                    p.variant().clone(),
                ));
            }
            collect_blobs(image, &child, &mut blobs, &mut seen)?;
            children.push(child);
        }
    } else if is_image_manifest(&top.media_type) {
        let config = collect_blobs(image, &top, &mut blobs, &mut seen)?;
        if let Some((p, bytes)) = config_platform(source, image, &config).await {
            found_platforms.push(p);
            fetched.insert(config.digest, bytes);
        }
    } else {
        return Err(image_err(
            image,
            format!("unsupported manifest media type {:?} (Docker schema 1 images must be converted first)", top.media_type),
        ));
    }
    Ok(ResolvedImage {
        source: image.clone(),
        top,
        children,
        blobs,
        platforms: found_platforms,
        fetched,
    })
}

fn descriptor(image: &Reference, d: &oci_spec::image::Descriptor) -> Result<Descriptor, CopyError> {
    Ok(Descriptor {
        digest: d
            .digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::DigestError| image_err(image, e.to_string()))?,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

/// Adds a manifest's config and layers to `blobs`; returns the config descriptor.
fn collect_blobs(
    image: &Reference,
    m: &Manifest,
    blobs: &mut Vec<Descriptor>,
    seen: &mut HashSet<Digest>,
) -> Result<Descriptor, CopyError> {
    let parsed: oci_spec::image::ImageManifest = serde_json::from_slice(&m.bytes)
        .map_err(|e| image_err(image, format!("unreadable manifest {}: {e}", m.digest)))?;
    let config = descriptor(image, parsed.config())?;
    for d in std::iter::once(parsed.config()).chain(parsed.layers().iter()) {
        let desc = descriptor(image, d)?;
        if seen.insert(desc.digest.clone()) {
            blobs.push(desc);
        }
    }
    Ok(config)
}

/// `linux/arm64` matches `linux/arm64/v8`; `linux/arm/v7` matches only itself.
fn platform_matches(want: &str, have: &str) -> bool {
    want == have
        || have
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The same index JSON with only the kept manifests (all other fields untouched).
fn narrow_index(top: &Manifest, kept: &[&oci_spec::image::Descriptor]) -> Manifest {
    let mut v: serde_json::Value = serde_json::from_slice(&top.bytes).expect("parsed above");
    let keep: HashSet<String> = kept.iter().map(|d| d.digest().to_string()).collect();
    if let Some(list) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| d["digest"].as_str().is_some_and(|x| keep.contains(x)));
    }
    let bytes = Bytes::from(serde_json::to_vec(&v).expect("json"));
    Manifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: top.media_type.clone(),
    }
}

fn platform_string(os: String, arch: String, variant: Option<String>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// `os/arch` from an image config, and the config's bytes; `None` when it cannot be read
/// (it is informative only).
async fn config_platform(
    source: &dyn ImageSource,
    image: &Reference,
    config: &Descriptor,
) -> Option<(String, Bytes)> {
    if config.size > MAX_CONFIG {
        return None;
    }
    let data: Vec<Bytes> = source.blob(image, config).try_collect().await.ok()?;
    let data = Bytes::from(data.concat());
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let os = v.get("os")?.as_str()?.to_string();
    let arch = v.get("architecture")?.as_str()?.to_string();
    let variant = v
        .get("variant")
        .and_then(|x| x.as_str())
        .map(str::to_string);
    Some((platform_string(os, arch, variant), data))
}
