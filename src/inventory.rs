//! `inventory`: what the private registry actually holds of an app, as a small JSON document
//! (`have.json`, `bundle-format/README.md` section 10) that `export --since` reads to leave
//! those blobs out.
//!
//! Which repositories to read comes from the app, not the registry: the images a kept app
//! directory's `state.json` (or an earlier archive) lists, each named where import pushes it
//! ([`crate::rewrite`]). A registry's `_catalog` is not used: ECR, Harbor and quay restrict or
//! page it, and it would list other apps. Each image's manifest is read from the registry
//! (an index down to its platform manifests), and each blob it names is confirmed with a
//! HEAD: a registry that was garbage-collected, or an image pushed only in part, lists only
//! what answers 200.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::archive::{MAX_BLOBS, MAX_IMAGES};
use crate::digest::Digest;
use crate::manifest::{is_manifest_type, manifest_children};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::rewrite::ImageRewrite;

/// The `format` of an inventory document.
pub const FORMAT: &str = "kots-bundle.inventory/v1";
/// An inventory file larger than this is refused (one of 500 000 blobs is about 100 MB).
const MAX_FILE: u64 = 256 << 20;

/// `have.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub format: String,
    pub created: String,
    /// The registry host (and port) read, and the namespace; never credentials.
    pub registry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The app and version the registry holds, as the app directory or archive said.
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every image manifest found, under the reference import pushed it by.
    pub manifests: Vec<HeldManifest>,
    /// Every blob those manifests name that the registry answered 200 for.
    pub blobs: Vec<HeldBlob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldManifest {
    pub repository: String,
    /// The tag or digest it was pushed under.
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldBlob {
    pub digest: Digest,
    pub size: u64,
    /// The repositories it was found in (`NS/name`).
    pub repositories: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Inventory {
    /// Reads and checks an inventory file: its format, caps, and repository names; with the
    /// sha256 of the bytes read (once: a file that grows or changes meanwhile cannot slip
    /// past the cap or give another digest than what was parsed).
    pub fn read(path: &Path) -> Result<(Inventory, Digest), InventoryError> {
        use std::io::Read;
        let bad = |why: String| InventoryError::Unreadable {
            path: path.display().to_string(),
            why,
        };
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut data))
            .map_err(|e| bad(e.to_string()))?;
        if data.len() as u64 > MAX_FILE {
            return Err(bad(format!(
                "more than {MAX_FILE} bytes is too large for an inventory"
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| bad(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(bad(format!(
                "inventory format {:?} is not supported (this kots-bundle reads {FORMAT})",
                crate::names::escaped(format)
            )));
        }
        let inv: Inventory = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if inv.blobs.len() > MAX_BLOBS || inv.manifests.len() > MAX_IMAGES * 64 {
            return Err(bad(
                "more blobs or manifests than an archive can hold".into()
            ));
        }
        for r in inv
            .blobs
            .iter()
            .flat_map(|b| &b.repositories)
            .chain(inv.manifests.iter().map(|m| &m.repository))
        {
            crate::rewrite::validate_namespace(r)
                .map_err(|e| bad(format!("repository {:?}: {e}", crate::names::escaped(r))))?;
        }
        Ok((inv, Digest::of(&data)))
    }

    /// Total bytes of the blobs held.
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// One image's manifests found, and the (digest, size) of every blob they name.
type ImageHeld = (Vec<HeldManifest>, Vec<(Digest, u64)>);

/// What to look for: the app's images named where import pushes them, and the app.
pub struct Subject {
    pub registry: String,
    pub namespace: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
    pub rewrites: Vec<ImageRewrite>,
}

/// Reads, for every image of `subject`, its manifests and confirms each blob they name with
/// a HEAD in its repository, `concurrency` requests at a time. An image whose manifest the
/// registry does not have is left out (with a warning): none of its blobs count as held.
pub async fn take(
    client: &Client,
    subject: &Subject,
    concurrency: usize,
) -> Result<Inventory, InventoryError> {
    let mut targets: Vec<&Reference> = subject.rewrites.iter().map(|r| &r.target).collect();
    targets.sort();
    targets.dedup();
    // Manifests first: one image's tree at a time per task.
    let found: Vec<Option<ImageHeld>> = stream::iter(targets)
        .map(|t| read_image(client, t))
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut manifests = Vec::new();
    // (repository, digest) -> size: each blob asked once per repository.
    let mut wanted: BTreeMap<(String, Digest), u64> = BTreeMap::new();
    for (held, blobs) in found.into_iter().flatten() {
        let repo = held[0].repository.clone();
        manifests.extend(held);
        for (d, size) in blobs {
            wanted.insert((repo.clone(), d), size);
        }
    }
    let registry = &subject.registry;
    let answered: Vec<Option<(String, Digest, u64)>> = stream::iter(wanted)
        .map(|((repo, d), size)| async move {
            let present = client.blob_exists(registry, &repo, &d).await?;
            Ok::<_, RegistryError>(present.then_some((repo, d, size)))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut blobs: BTreeMap<Digest, HeldBlob> = BTreeMap::new();
    for (repo, digest, size) in answered.into_iter().flatten() {
        blobs
            .entry(digest.clone())
            .or_insert_with(|| HeldBlob {
                digest,
                size,
                repositories: Vec::new(),
            })
            .repositories
            .push(repo);
    }
    for b in blobs.values_mut() {
        b.repositories.sort();
    }
    manifests.sort_by(|a: &HeldManifest, b| {
        (&a.repository, &a.reference).cmp(&(&b.repository, &b.reference))
    });
    Ok(Inventory {
        format: FORMAT.to_string(),
        created: crate::archive::now_rfc3339(),
        registry: subject.registry.clone(),
        namespace: subject.namespace.clone(),
        app: subject.app.clone(),
        version: subject.version.clone(),
        manifests,
        blobs: blobs.into_values().collect(),
    })
}

/// One image's manifests (top, then each platform's) and the blobs they name; `None` when
/// the registry does not have its top manifest.
async fn read_image(
    client: &Client,
    target: &Reference,
) -> Result<Option<ImageHeld>, RegistryError> {
    let (registry, repo) = (target.registry(), target.repository());
    let reference = crate::copy::target_reference(target);
    if client
        .head_manifest(registry, repo, reference)
        .await?
        .is_none()
    {
        crate::warnings::warn(format_args!(
            "{target}: not in the registry; its blobs are not in the inventory"
        ));
        return Ok(None);
    }
    let top = client.get_manifest(registry, repo, reference).await?;
    let mut held = vec![HeldManifest {
        repository: repo.to_string(),
        reference: reference.to_string(),
        digest: top.digest.clone(),
        media_type: top.media_type.clone(),
    }];
    let mut blobs = BTreeSet::new();
    let mut queue = vec![top];
    // Nested indexes are refused by the copy engine; one level below the top is enough.
    while let Some(m) = queue.pop() {
        let children =
            manifest_children(&m.media_type, &m.bytes).map_err(|why| RegistryError::Protocol {
                registry: registry.to_string(),
                repository: repo.to_string(),
                why: format!("manifest {}: {why}", m.digest),
            })?;
        for (d, mt, size) in children {
            if !is_manifest_type(&mt) {
                blobs.insert((d, size));
                continue;
            }
            if held.len() > 1024 {
                continue; // a hostile index; what was read is enough
            }
            if client
                .head_manifest(registry, repo, d.as_str())
                .await?
                .is_none()
            {
                continue; // a platform not pushed: its blobs are not held
            }
            let child = client.get_manifest(registry, repo, d.as_str()).await?;
            held.push(HeldManifest {
                repository: repo.to_string(),
                reference: d.to_string(),
                digest: child.digest.clone(),
                media_type: child.media_type.clone(),
            });
            if crate::manifest::is_image_manifest(&child.media_type) {
                queue.push(child);
            }
        }
    }
    Ok(Some((held, blobs.into_iter().collect())))
}
