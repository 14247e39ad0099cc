//! Differential bundles: `export --since have.json|OLD.airgap` leaves out the blobs the
//! target registry holds (manifests are always carried), and `import` of such an archive
//! makes sure, before anything is pushed, that every blob left out is in the registry (in
//! the image's own repository, or in another it can be mounted from) and mounts it where
//! it is missing. The format's record is [`crate::archive::Differential`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use futures_util::{stream, StreamExt, TryStreamExt};

use crate::archive::{Against, ArchiveReader, Differential, Metadata, OmittedBlob, METADATA_ENTRY};
use crate::copy::ResolvedImage;
use crate::digest::Digest;
use crate::inventory::Inventory;
use crate::progress::human_bytes;
use crate::reference::Reference;
use crate::registry::Client;
use crate::rewrite::ImageRewrite;

/// What the target registry is known to hold: an inventory of it, or an older archive
/// (whose blobs were imported there).
#[derive(Debug, Clone)]
pub struct Base {
    pub against: Against,
    /// digest -> (size, repositories it was found in).
    have: HashMap<Digest, (u64, Vec<String>)>,
}

impl Base {
    /// Reads `--since FILE`: an inventory (JSON) or an `.airgap` archive (read in place:
    /// its metadata and entry index).
    pub fn load(path: &Path) -> anyhow::Result<Base> {
        let mut head = [0u8; 64];
        let n = {
            use std::io::Read;
            let mut f =
                std::fs::File::open(path).with_context(|| format!("--since {}", path.display()))?;
            f.read(&mut head)
                .with_context(|| format!("--since {}", path.display()))?
        };
        let json = head[..n]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{');
        if json {
            let (inventory, digest) = Inventory::read(path)?;
            Ok(Base::from_inventory(&inventory, digest))
        } else {
            let reader = ArchiveReader::open(path).with_context(|| {
                format!(
                    "--since {}: neither an inventory nor an archive",
                    path.display()
                )
            })?;
            let digest = Digest::of(&reader.read_small(METADATA_ENTRY)?);
            Ok(Base::from_archive(reader.metadata(), digest))
        }
    }

    fn from_inventory(inv: &Inventory, digest: Digest) -> Base {
        Base {
            against: Against {
                kind: "inventory".into(),
                app: inv.app.clone(),
                version: inv.version.clone(),
                registry: Some(inv.registry.clone()),
                namespace: inv.namespace.clone(),
                digest,
            },
            have: inv
                .blobs
                .iter()
                .map(|b| (b.digest.clone(), (b.size, b.repositories.clone())))
                .collect(),
        }
    }

    /// An old archive's blobs, stored and (if it was differential itself) omitted.
    fn from_archive(meta: &Metadata, metadata_digest: Digest) -> Base {
        let stored = meta.blobs.iter().map(|b| (b.digest.clone(), b.size));
        let omitted = meta
            .differential
            .iter()
            .flat_map(|d| d.omitted.iter().map(|b| (b.digest.clone(), b.size)));
        Base {
            against: Against {
                kind: "archive".into(),
                app: Some(meta.app.name.clone()),
                version: meta.app.version.clone(),
                registry: None,
                namespace: None,
                digest: metadata_digest,
            },
            have: stored
                .chain(omitted)
                .map(|(d, s)| (d, (s, Vec::new())))
                .collect(),
        }
    }

    /// The differential record for an archive of `images`: every config and layer the base
    /// holds (same digest and size) is left out; manifests are always carried.
    pub fn record(&self, images: &[ResolvedImage]) -> Differential {
        let mut omitted: BTreeMap<Digest, OmittedBlob> = BTreeMap::new();
        for d in images.iter().flat_map(|i| &i.blobs) {
            if let Some((size, repos)) = self.have.get(&d.digest) {
                if *size == d.size {
                    omitted
                        .entry(d.digest.clone())
                        .or_insert_with(|| OmittedBlob {
                            digest: d.digest.clone(),
                            size: d.size,
                            media_type: d.media_type.clone(),
                            repositories: repos.clone(),
                        });
                }
            }
        }
        let omitted: Vec<OmittedBlob> = omitted.into_values().collect();
        Differential {
            against: self.against.clone(),
            omitted_size: omitted.iter().map(|b| b.size).sum(),
            omitted,
        }
    }
}

/// The images with the blobs `differential` leaves out taken off their copy lists: what the
/// copy engine moves out of (or into) a differential archive.
pub fn carried(
    images: &[ResolvedImage],
    differential: Option<&Differential>,
) -> Vec<ResolvedImage> {
    let Some(d) = differential else {
        return images.to_vec();
    };
    let omitted: HashSet<&Digest> = d.omitted.iter().map(|b| &b.digest).collect();
    images
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.blobs.retain(|b| !omitted.contains(&b.digest));
            i
        })
        .collect()
}

/// One omitted blob an image's repository lacks.
struct Need<'a> {
    target: &'a Reference,
    blob: &'a OmittedBlob,
}

/// For import of a differential archive, before any push: every blob it leaves out must be
/// in the registry for each image that needs it: in the image's target repository, or in
/// another repository of the same registry (this import's other targets, those the
/// inventory found it in, and `known`: those the app directory's last import pushed to),
/// from where it is mounted. Any blob found nowhere stops the import, naming the blobs and
/// images, with nothing pushed. Returns how many blobs were mounted.
pub async fn place_omitted(
    client: &Client,
    meta: &Metadata,
    images: &[ResolvedImage],
    rewrites: &[ImageRewrite],
    known: &[Reference],
    concurrency: usize,
) -> anyhow::Result<usize> {
    let Some(d) = &meta.differential else {
        return Ok(0);
    };
    let by_digest: HashMap<&Digest, &OmittedBlob> =
        d.omitted.iter().map(|b| (&b.digest, b)).collect();
    let target_of = |r: &Reference| rewrites.iter().find(|w| &w.source == r).map(|w| &w.target);
    let mut needs: Vec<Need> = Vec::new();
    let mut seen = HashSet::new();
    for image in images {
        let Some(target) = target_of(&image.source) else {
            continue;
        };
        for b in &image.blobs {
            if let Some(blob) = by_digest.get(&b.digest) {
                if seen.insert((target.registry(), target.repository(), &b.digest)) {
                    needs.push(Need { target, blob });
                }
            }
        }
    }
    // Where else to look, per registry.
    let mut elsewhere: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in rewrites.iter().map(|w| &w.target).chain(known) {
        elsewhere
            .entry(t.registry())
            .or_default()
            .push(t.repository().to_string());
    }
    for list in elsewhere.values_mut() {
        list.sort();
        list.dedup();
    }
    let found: Vec<(usize, Option<Option<String>>)> = stream::iter(needs.iter().enumerate())
        .map(|(i, need)| {
            let elsewhere = &elsewhere;
            async move {
                let (registry, repo) = (need.target.registry(), need.target.repository());
                let digest = &need.blob.digest;
                if client.blob_exists(registry, repo, digest).await? {
                    return Ok::<_, anyhow::Error>((i, Some(None)));
                }
                let mut candidates: Vec<&str> =
                    need.blob.repositories.iter().map(String::as_str).collect();
                candidates.extend(
                    elsewhere
                        .get(registry)
                        .into_iter()
                        .flatten()
                        .map(String::as_str),
                );
                let mut asked = HashSet::new();
                for from in candidates {
                    if from == repo || !asked.insert(from) {
                        continue;
                    }
                    if client.blob_exists(registry, from, digest).await? {
                        return Ok((i, Some(Some(from.to_string()))));
                    }
                }
                Ok((i, None))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut missing: Vec<&Need> = Vec::new();
    let mut mounts: Vec<(&Need, String)> = Vec::new();
    for (i, f) in found {
        match f {
            None => missing.push(&needs[i]),
            Some(Some(from)) => mounts.push((&needs[i], from)),
            Some(None) => {}
        }
    }
    if !missing.is_empty() {
        missing.sort_by_key(|n| (n.target.to_string(), n.blob.digest.clone()));
        let shown: Vec<String> = missing
            .iter()
            .take(20)
            .map(|n| {
                format!(
                    "  {} ({}, {}) for {}",
                    n.blob.digest,
                    human_bytes(n.blob.size),
                    crate::names::escaped(&n.blob.media_type),
                    n.target
                )
            })
            .collect();
        let more = match missing.len() {
            n if n > 20 => format!("\n  ... and {} more", n - 20),
            _ => String::new(),
        };
        anyhow::bail!(
            "this archive is differential (made against {}) and leaves out {} blob(s) the \
             registry does not hold, so nothing was pushed:\n{}{more}\nimport the complete \
             archive, or export again with --since a fresh `kots-bundle inventory` of this \
             registry",
            d.against.describe(),
            missing.len(),
            shown.join("\n")
        );
    }
    // Present somewhere: made present in each repository that needs it, before the
    // manifests that name it are pushed (a registry refuses a manifest whose blobs the
    // repository lacks).
    stream::iter(&mounts)
        .map(|(need, from)| async move {
            let (registry, repo) = (need.target.registry(), need.target.repository());
            let digest = &need.blob.digest;
            if client.mount_blob(registry, repo, digest, from).await? {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{registry}: blob {digest} is in {from} but the registry would not mount \
                     it into {repo} (cross-repository mounts refused?), and this differential \
                     archive does not carry it; import the complete archive"
                ))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(mounts.len())
}
