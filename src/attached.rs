//! What is attached to an image at its registry, carried with it so that a policy
//! controller inside the network can verify what runs: cosign's tags beside the image
//! (`sha256-<hex>.sig`, `.att`, `.sbom`) and the OCI 1.1 referrers of the image as the
//! tag schema lays them out (`sha256-<hex>`: an index of the manifests whose `subject` is
//! the image). They are found by a HEAD each at export and pull, copied as images of their
//! own (same repository, same digests), and pushed with the app's images, so the same
//! lookups find them in the private registry. They are never rewritten into the app.

use futures_util::{stream, StreamExt};

use crate::copy::ResolvedImage;
use crate::reference::Reference;
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

/// The attached artifacts the source holds for `images` (their top-level manifests; a
/// signature of a platform manifest is not looked for), each as a tag reference. Each is
/// asked of the first location that answers (the mirror, when one is configured: an image
/// the mirror lacks and upstream serves has its attachments looked for in the mirror only).
/// A lookup that fails is said at debug level and skipped: attachments never fail an export.
pub async fn find(client: &Client, images: &[ResolvedImage], concurrency: usize) -> Vec<Reference> {
    let asks: Vec<Reference> = images
        .iter()
        .filter(|i| !is_attached(&i.source))
        .flat_map(|i| {
            let digest = i.top.digest.to_string();
            SUFFIXES
                .iter()
                .map(move |s| i.source.with_tag_digest(Some(&tag_for(&digest, s)), None))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut found: Vec<Reference> = stream::iter(asks)
        .map(|r| async move {
            match client
                .head_manifest_first_answer(r.registry(), r.repository(), r.manifest_reference())
                .await
            {
                Ok(Some(_)) => Some(r),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(artifact = %r, "not looked up: {e}");
                    None
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    found.sort_by_key(|r| r.to_string());
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
