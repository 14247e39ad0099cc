//! What is attached to an image at its registry, carried with it so that a policy
//! controller inside the network can verify what runs: cosign's tags beside the image
//! (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI 1.1 referrers of the image as the
//! tag schema lays them out (`sha256-<hex>`: an index of the manifests whose `subject` is
//! the image). They are found by a HEAD each at export and pull, copied as images of their
//! own (same repository, same digests), and pushed with the app's images, so the same
//! lookups find them in the private registry. They are never rewritten into the app.
//!
//! Registries with the referrers API keep no referrers tag: what the API lists is carried
//! as that tag's index all the same (merged with the tag's own index when there is one),
//! since the private registry may lack the API and the tag schema is what every client
//! falls back to.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, StreamExt};

use crate::copy::{BlobStream, CopyError, ImageSource};
use crate::digest::Digest;
use crate::manifest::{is_image_manifest, Descriptor, Manifest, OCI_INDEX};
use crate::reference::Reference;
use crate::registry::referrers::{parse_index, Referrer};
use crate::registry::Client;
use crate::rewrite::ImageRewrite;

/// Cosign's tag suffixes: signatures, attestations, SBOMs. `""` is the referrers tag.
const SUFFIXES: &[&str] = &[".sig", ".att", ".sbom", ""];

/// The tag that holds what is attached to the manifest `digest` (`sha256:<hex>`) under
/// `suffix`.
fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}{suffix}", digest.replacen(':', "-", 1))
}

/// Whether `r` names an attached artifact (by its tag) rather than an image of the app.
pub fn is_attached(r: &Reference) -> bool {
    let Some(tag) = r.tag() else { return false };
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = SUFFIXES
        .iter()
        .filter(|s| !s.is_empty())
        .find_map(|s| rest.strip_suffix(s))
        .unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The rewrites of the app's own images: attachments are pushed, never written into the
/// app's overlay.
pub fn app_rewrites(rewrites: &[ImageRewrite]) -> Vec<ImageRewrite> {
    rewrites
        .iter()
        .filter(|r| !is_attached(&r.source))
        .cloned()
        .collect()
}

/// What is attached to each image as it arrives on `images` (its reference and top-level
/// manifest digest; a signature of a platform manifest is not looked for), looked up while
/// later images still resolve, `concurrency` requests at once: the tags found by HEAD, and
/// what the referrers API lists, by referrers tag (`REPO:sha256-<hex>`; images with at
/// least one referrer only). Each is asked of the first location that answers (the mirror,
/// when one is configured: an image the mirror lacks and upstream serves has its
/// attachments looked for in the mirror only). Attachments never fail an export: a HEAD
/// that fails is said at debug level, as is a registry without the referrers API; an API
/// lookup that fails (a malformed answer, too many referrers) at warn level.
pub async fn look_up(
    client: &Client,
    images: impl futures_util::Stream<Item = (Reference, Digest)>,
    concurrency: usize,
) -> (Vec<Reference>, Vec<(Reference, Vec<Referrer>)>) {
    let asks = images
        .filter(|(image, _)| std::future::ready(!is_attached(image)))
        .flat_map(|(image, digest)| {
            let tags = SUFFIXES
                .iter()
                .map(|s| Ask::Tag(image.with_tag_digest(Some(&tag_for(digest.as_str(), s)), None)));
            let api = Ask::Api(image.clone(), digest.clone());
            stream::iter(tags.chain([api]).collect::<Vec<_>>())
        });
    let answers: Vec<Found> = asks
        .map(|ask| ask.run(client))
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    let (mut tags, mut by_api) = (Vec::new(), Vec::new());
    for a in answers {
        match a {
            Found::Tag(r) => tags.push(r),
            Found::Api(tag, list) => by_api.push((tag, list)),
        }
    }
    tags.sort_by_key(|r| r.to_string());
    tags.dedup();
    by_api.sort_by_key(|(r, _)| r.to_string());
    (tags, by_api)
}

/// One lookup: a tag by HEAD, or an image's referrers by the API.
enum Ask {
    Tag(Reference),
    Api(Reference, Digest),
}

enum Found {
    Tag(Reference),
    Api(Reference, Vec<Referrer>),
}

impl Ask {
    async fn run(self, client: &Client) -> Option<Found> {
        match self {
            Ask::Tag(r) => match client
                .head_manifest_first_answer(r.registry(), r.repository(), r.manifest_reference())
                .await
            {
                Ok(Some(_)) => Some(Found::Tag(r)),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(artifact = %r, "not looked up: {e}");
                    None
                }
            },
            Ask::Api(r, digest) => match client
                .referrers(r.registry(), r.repository(), &digest)
                .await
            {
                Ok(Some(list)) if !list.is_empty() => {
                    let tag = r.with_tag_digest(Some(&tag_for(digest.as_str(), "")), None);
                    Some(Found::Api(tag, list))
                }
                Ok(Some(_)) => None,
                Ok(None) => {
                    tracing::debug!(image = %r, "no referrers API at the registry");
                    None
                }
                Err(e) => {
                    tracing::warn!("{r}: referrers not carried (referrers API): {e}");
                    None
                }
            },
        }
    }
}

/// The referrers tags to carry (`found`, and those only the API knows of), and the index
/// to carry for each tag the API added to: the API's entries, then those of the tag's own
/// index at the source. A tag whose own index already lists everything is carried as it is.
pub async fn with_api_referrers(
    source: &dyn ImageSource,
    mut found: Vec<Reference>,
    by_api: Vec<(Reference, Vec<Referrer>)>,
) -> (Vec<Reference>, HashMap<String, Manifest>) {
    let mut indexes = HashMap::new();
    for (tag, api) in by_api {
        let has_tag = found.contains(&tag);
        let own = if has_tag {
            source
                .manifest(&tag, tag.manifest_reference())
                .await
                .inspect_err(|e| {
                    tracing::warn!(
                        "{tag}: not read, the referrers API's list is carried alone: {e}"
                    )
                })
                .ok()
        } else {
            None
        };
        if let Some(index) = merged_index(&tag, api, own.as_ref()) {
            indexes.insert(tag.to_string(), index);
            if !has_tag {
                found.push(tag);
            }
        }
    }
    found.sort_by_key(|r| r.to_string());
    found.dedup();
    (found, indexes)
}

/// The referrers index for `tag`: `api`'s entries then those of `own` (the tag's index at
/// the source) not already listed, image manifests only (the copy engine carries no nested
/// index or other artifact kinds). `None` when `own` lists everything already (it is
/// carried byte for byte) or nothing is left to carry.
fn merged_index(tag: &Reference, api: Vec<Referrer>, own: Option<&Manifest>) -> Option<Manifest> {
    let own_entries = own.and_then(|m| {
        parse_index(Some(&m.media_type), &m.bytes)
            .inspect_err(|e| tracing::warn!("{tag}: {e}; only the referrers API's list is carried"))
            .ok()
    });
    let listed: HashSet<Digest> = own_entries
        .iter()
        .flatten()
        .map(|r| r.digest.clone())
        .collect();
    if own_entries.is_some() && api.iter().all(|r| listed.contains(&r.digest)) {
        return None;
    }
    let mut seen = HashSet::new();
    let kept: Vec<Referrer> = api
        .into_iter()
        .chain(own_entries.into_iter().flatten())
        .filter(|r| seen.insert(r.digest.clone()))
        .filter(|r| {
            let ok = is_image_manifest(&r.media_type);
            if !ok {
                tracing::warn!(
                    "{tag}: referrer {} not carried: it is a {}, and only image manifests are",
                    r.digest,
                    r.media_type
                );
            }
            ok
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    let entries: Vec<&str> = kept.iter().map(|r| r.json.get()).collect();
    let bytes = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    ));
    Some(Manifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: OCI_INDEX.to_string(),
    })
}

/// A source whose referrers tags answer with the indexes [`with_api_referrers`] made;
/// everything else (the referrers' own manifests, every blob) comes from `inner`.
pub struct WithIndexes<'a> {
    inner: &'a dyn ImageSource,
    indexes: HashMap<String, Manifest>,
}

impl<'a> WithIndexes<'a> {
    pub fn new(inner: &'a dyn ImageSource, indexes: HashMap<String, Manifest>) -> Self {
        WithIndexes { inner, indexes }
    }
}

#[async_trait]
impl ImageSource for WithIndexes<'_> {
    async fn manifest(&self, image: &Reference, reference: &str) -> Result<Manifest, CopyError> {
        match self.indexes.get(&image.to_string()) {
            Some(m) if image.tag() == Some(reference) => Ok(m.clone()),
            _ => self.inner.manifest(image, reference).await,
        }
    }

    fn blob(&self, image: &Reference, desc: &Descriptor) -> BlobStream {
        self.inner.blob(image, desc)
    }

    fn blob_part(
        &self,
        image: &Reference,
        desc: &Descriptor,
        offset: u64,
        len: u64,
    ) -> Option<BlobStream> {
        self.inner.blob_part(image, desc, offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OCI_MANIFEST as OCI_MANIFEST_TYPE;

    fn entry(hex: char, media_type: &str) -> String {
        format!(
            r#"{{"mediaType":"{media_type}","digest":"sha256:{}","size":7,"artifactType":"application/spdx+json"}}"#,
            hex.to_string().repeat(64)
        )
    }

    fn referrers(entries: &[&str]) -> Vec<Referrer> {
        let body = format!(r#"{{"manifests":[{}]}}"#, entries.join(","));
        parse_index(None, body.as_bytes()).unwrap()
    }

    fn index(entries: &[&str]) -> Manifest {
        let bytes = Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        ));
        Manifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type: OCI_INDEX.into(),
        }
    }

    #[test]
    fn the_api_list_is_merged_with_the_tag_index_api_first() {
        let tag = Reference::parse(&format!("quay.io/o/a:sha256-{}", "f".repeat(64))).unwrap();
        let (a, b, c) = (
            entry('a', OCI_MANIFEST_TYPE),
            entry('b', OCI_MANIFEST_TYPE),
            entry('c', OCI_MANIFEST_TYPE),
        );
        // The API alone: its entries, as written, in its order.
        let got = merged_index(&tag, referrers(&[&b, &a]), None).unwrap();
        assert_eq!(got.bytes, index(&[&b, &a]).bytes);
        // With the tag's own index: the API's first, then what only the tag lists.
        let own = index(&[&c, &a]);
        let got = merged_index(&tag, referrers(&[&b, &a]), Some(&own)).unwrap();
        assert_eq!(got.bytes, index(&[&b, &a, &c]).bytes);
        // Nothing new: the tag's own index is carried as it is.
        assert!(merged_index(&tag, referrers(&[&a]), Some(&own)).is_none());
        // What the copy engine cannot carry is left out, and nothing left is nothing.
        let nested = entry('d', OCI_INDEX);
        let got = merged_index(&tag, referrers(&[&nested, &a]), None).unwrap();
        assert_eq!(got.bytes, index(&[&a]).bytes);
        assert!(merged_index(&tag, referrers(&[&nested]), None).is_none());
    }

    #[test]
    fn attached_tags_are_told_from_app_tags() {
        let hex = "a".repeat(64);
        for (r, want) in [
            (format!("quay.io/o/a:sha256-{hex}.sig"), true),
            (format!("quay.io/o/a:sha256-{hex}.att"), true),
            (format!("quay.io/o/a:sha256-{hex}.sbom"), true),
            (format!("quay.io/o/a:sha256-{hex}"), true),
            ("quay.io/o/a:sha256-short.sig".to_string(), false),
            ("quay.io/o/a:v1".to_string(), false),
            (format!("quay.io/o/a@sha256:{hex}"), false),
        ] {
            assert_eq!(is_attached(&Reference::parse(&r).unwrap()), want, "{r}");
        }
        assert_eq!(
            tag_for(&format!("sha256:{hex}"), ".sig"),
            format!("sha256-{hex}.sig")
        );
    }
}
