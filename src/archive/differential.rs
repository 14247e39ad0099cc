//! The metadata of a *differential* archive (`bundle-format/README.md`, section 10): which
//! blobs it leaves out because the target registry holds them already, and against what that
//! was decided. Only the format's record and its rules live here; making one is
//! [`crate::differential`]'s job.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Metadata, MAX_BLOBS};
use crate::digest::Digest;

/// The `format` of a differential archive. A new identifier, not a field beside `v1`: a
/// reader that predates differential archives must refuse one (it cannot import blobs it
/// does not hold), and refusing an unknown `format` is the rule every reader already has.
pub const DIFFERENTIAL_FORMAT: &str = "kots-bundle.airgap/v1+differential";

/// `differential` in the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Differential {
    pub against: Against,
    /// Blobs the images reference that the archive does not hold; each once.
    pub omitted: Vec<OmittedBlob>,
    /// Sum of `omitted[].size`.
    pub omitted_size: u64,
}

/// What the archive was made against: an inventory of the registry, or an older archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Against {
    /// `inventory` or `archive`.
    pub kind: String,
    /// The app and version the inventory's registry (or the old archive) held.
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The inventory's registry and namespace (no credentials); none for an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// sha256 of the inventory file, or of the old archive's metadata entry.
    pub digest: Digest,
}

/// A blob left out: what import must find in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OmittedBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Repositories of the registry where the inventory found it (`NS/name`), where import
    /// looks for it (and mounts it from) when the image's own repository lacks it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
}

impl Against {
    /// `APP VERSION (inventory of REGISTRY/NS)` or `APP VERSION (archive sha256:...)`, for
    /// `inspect` and messages (escaped: the strings come from the archive).
    pub fn describe(&self) -> String {
        use crate::names::escaped;
        let app = self.app.as_deref().map_or("-".into(), escaped);
        let version = self.version.as_deref().map_or("-".into(), escaped);
        let whence = match (&self.registry, &self.namespace) {
            (Some(r), Some(ns)) => format!("inventory of {}/{}", escaped(r), escaped(ns)),
            (Some(r), None) => format!("inventory of {}", escaped(r)),
            _ => format!("{} {}", escaped(&self.kind), self.digest),
        };
        format!("{app} {version} ({whence})")
    }
}

/// The metadata's differential rules: `format` says differential exactly when
/// `differential` is there; no blob is both stored and omitted, or omitted twice; manifests
/// and indexes are never omitted; the sizes add up.
pub(crate) fn check(meta: &Metadata) -> Result<(), String> {
    let Some(d) = &meta.differential else {
        if meta.format == DIFFERENTIAL_FORMAT {
            return Err(format!(
                "format is {DIFFERENTIAL_FORMAT} but there is no differential record"
            ));
        }
        return Ok(());
    };
    if meta.format != DIFFERENTIAL_FORMAT {
        return Err(format!(
            "a differential record in an archive whose format is not {DIFFERENTIAL_FORMAT}"
        ));
    }
    if d.omitted.len() > MAX_BLOBS {
        return Err(format!(
            "{} omitted blobs (an archive names at most {MAX_BLOBS})",
            d.omitted.len()
        ));
    }
    let stored: HashSet<&Digest> = meta.blobs.iter().map(|b| &b.digest).collect();
    let mut seen = HashSet::with_capacity(d.omitted.len());
    for b in &d.omitted {
        if stored.contains(&b.digest) {
            return Err(format!("blob {} is both stored and omitted", b.digest));
        }
        if !seen.insert(&b.digest) {
            return Err(format!("blob {} is omitted twice", b.digest));
        }
        if crate::manifest::is_manifest_type(&b.media_type) {
            return Err(format!(
                "manifest {} is omitted (a differential archive carries every manifest)",
                b.digest
            ));
        }
        for r in &b.repositories {
            crate::rewrite::validate_namespace(r)
                .map_err(|e| format!("omitted blob {}: repository: {e}", b.digest))?;
        }
    }
    let total = d
        .omitted
        .iter()
        .try_fold(0u64, |t, b| t.checked_add(b.size));
    if total != Some(d.omitted_size) {
        return Err(format!(
            "omittedSize {} but the omitted blobs add up to {}",
            d.omitted_size,
            total.map_or("more than 2^64".into(), |t| t.to_string())
        ));
    }
    Ok(())
}

/// The omitted blobs by digest (empty for a complete archive), for the layout walk.
pub(crate) fn omitted_sizes(meta: &Metadata) -> HashMap<&Digest, u64> {
    meta.differential
        .iter()
        .flat_map(|d| d.omitted.iter().map(|b| (&b.digest, b.size)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{App, BlobRecord, Compression, Tool, FORMAT};

    fn meta(format: &str, stored: &[(&[u8], &str)], omitted: &[(&[u8], &str)]) -> Metadata {
        let rec = |(data, mt): &(&[u8], &str)| BlobRecord {
            digest: Digest::of(data),
            size: data.len() as u64,
            media_type: mt.to_string(),
        };
        let omitted: Vec<OmittedBlob> = omitted
            .iter()
            .map(|b| {
                let r = rec(b);
                OmittedBlob {
                    digest: r.digest,
                    size: r.size,
                    media_type: r.media_type,
                    repositories: vec!["ns/app".into()],
                }
            })
            .collect();
        Metadata {
            format: format.into(),
            tool: Tool {
                name: "kots-bundle".into(),
                version: "test".into(),
            },
            app: App {
                name: "app".into(),
                version: None,
                source: "test".into(),
                release: None,
            },
            created: "2026-01-01T00:00:00Z".into(),
            compression: Compression::Zstd,
            images: Vec::new(),
            blobs: stored.iter().map(rec).collect(),
            total_size: 0,
            upstream_files: Vec::new(),
            upstream_digests: Default::default(),
            differential: Some(Differential {
                against: Against {
                    kind: "archive".into(),
                    app: Some("app".into()),
                    version: None,
                    registry: None,
                    namespace: None,
                    digest: Digest::of(b"old"),
                },
                omitted_size: omitted.iter().map(|b| b.size).sum(),
                omitted,
            }),
        }
    }

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    #[test]
    fn the_record_is_checked() {
        let m = crate::manifest::OCI_MANIFEST;
        assert!(check(&meta(DIFFERENTIAL_FORMAT, &[(b"m", m)], &[(b"l", LAYER)])).is_ok());
        // Each rule, broken once.
        let cases = [
            (meta(FORMAT, &[], &[(b"l", LAYER)]), "format is not"),
            (
                meta(DIFFERENTIAL_FORMAT, &[(b"l", LAYER)], &[(b"l", LAYER)]),
                "both stored and omitted",
            ),
            (
                meta(DIFFERENTIAL_FORMAT, &[], &[(b"l", LAYER), (b"l", LAYER)]),
                "omitted twice",
            ),
            (
                meta(DIFFERENTIAL_FORMAT, &[], &[(b"m", m)]),
                "a differential archive carries every manifest",
            ),
        ];
        for (meta, why) in cases {
            let e = check(&meta).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let mut wrong_sum = meta(DIFFERENTIAL_FORMAT, &[], &[(b"l", LAYER)]);
        wrong_sum.differential.as_mut().unwrap().omitted_size += 1;
        assert!(check(&wrong_sum).unwrap_err().contains("omittedSize"));
        let mut bad_repo = meta(DIFFERENTIAL_FORMAT, &[], &[(b"l", LAYER)]);
        bad_repo.differential.as_mut().unwrap().omitted[0].repositories = vec!["../x".into()];
        assert!(check(&bad_repo).unwrap_err().contains("repository"));
        let mut missing = meta(DIFFERENTIAL_FORMAT, &[], &[]);
        missing.differential = None;
        assert!(check(&missing)
            .unwrap_err()
            .contains("no differential record"));
    }
}
