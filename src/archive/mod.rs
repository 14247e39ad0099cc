//! The `.airgap` archive: an OCI image layout, the app's manifests and a metadata document in
//! one tar, zstd-compressed by default. This is the `oci-archive:` transport of kots-bundle.
//!
//! The format is specified in `bundle-format/README.md`; in short:
//! - entries in order: `kots-bundle.json` (metadata, first so `inspect` reads only the head),
//!   `oci-layout`, `index.json`, `upstream/...`, `blobs/sha256/...` (each blob once);
//! - with zstd, every entry is its own zstd frame and a skippable frame at the end holds an
//!   entry index (name -> byte offset), so import can seek to any blob and push many at once
//!   without extracting anything; the whole file is still one valid zstd stream of one tar;
//! - with `--compression none` it is a plain tar that `skopeo copy oci-archive:` reads;
//!   the index is rebuilt by walking tar headers.

mod dest;
mod differential;
mod reader;
mod signature;
mod tar_header;
mod transport;
mod volumes;
mod writer;

pub use dest::ArchiveDest;
pub use differential::{Against, Differential, OmittedBlob, DIFFERENTIAL_FORMAT};
pub use reader::{ArchiveReader, Entry, VerifySummary};
pub use signature::{signer, PublicKey, SignatureBlock, SigningKey, Statement};
pub use transport::{reader_stream, ArchiveSource};
pub use volumes::{
    split_volume_name, volume_path, VolumeCheck, Volumes, MAX_VOLUMES, MIN_VOLUME_SIZE,
};
pub use writer::{ArchiveWriter, ZstdOptions};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::Reference;

/// Name of the metadata entry; always the first entry of the tar.
pub const METADATA_ENTRY: &str = "kots-bundle.json";
/// Upstream manifests live under this directory inside the tar.
pub const UPSTREAM_DIR: &str = "upstream/";
/// The `format` value this version writes and reads.
pub const FORMAT: &str = "kots-bundle.airgap/v1";

/// zstd skippable frame magic used for the footer index (0x184D2A50..5F are skippable).
pub(crate) const FOOTER_FRAME_MAGIC: u32 = 0x184D_2A5B;
/// Last 8 bytes of a zstd archive: identifies the footer.
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"KBNDLIDX";
/// Refuse metadata, index and manifest entries larger than this: they are small JSON.
pub(crate) const MAX_JSON_ENTRY: u64 = 64 * 1024 * 1024;
/// Most images one archive may hold (metadata `images`, `index.json` manifests). Real apps
/// carry tens to a few hundred; the cap keeps a hostile metadata document from costing more
/// than seconds to check.
pub const MAX_IMAGES: usize = 50_000;
/// Most blobs one archive may hold (layers, configs, manifests).
pub const MAX_BLOBS: usize = 500_000;
/// Most upstream files one archive may hold.
pub const MAX_UPSTREAM_FILES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// One zstd frame per entry plus an index: compact and seekable (default).
    #[default]
    Zstd,
    /// A plain tar, readable by `skopeo copy oci-archive:FILE:REF`.
    None,
}

/// The metadata document, `kots-bundle.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub format: String,
    pub tool: Tool,
    pub app: App,
    pub created: String,
    pub compression: Compression,
    pub images: Vec<ImageRecord>,
    /// Every blob of the layout (manifests and indexes included), each once.
    pub blobs: Vec<BlobRecord>,
    /// Sum of `blobs[].size`.
    pub total_size: u64,
    /// Upstream files under `upstream/`, relative paths.
    pub upstream_files: Vec<String>,
    /// sha256 of each upstream file, by its path in `upstream_files`. Added within v1:
    /// archives written before it have none, and their upstream files are then checked by
    /// name and size only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_digests: BTreeMap<String, Digest>,
    /// A differential archive's record of the blobs it leaves out (section 10 of the
    /// format); its `format` is then [`DIFFERENTIAL_FORMAT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential: Option<Differential>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub source: String,
    /// For `replicated://`: the vendor API's channel, sequence, version label, release date
    /// and required flag. Added within v1: older archives have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::upstream::vendor::VendorRelease>,
}

/// One source image: what the manifests reference and what was fetched for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The normalized reference as found in the manifests (tag and/or digest).
    pub reference: Reference,
    /// Digest of the top-level manifest or index, as the source registry served it.
    pub digest: Digest,
    pub media_type: String,
    /// `os/arch[/variant]` of each platform kept (empty when the config says none).
    pub platforms: Vec<String>,
    /// Bytes of all blobs this image needs (shared blobs counted for each image).
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// Where each entry sits in the file: the footer of a zstd archive, or rebuilt from tar
/// headers of an uncompressed one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntryIndex {
    pub entries: BTreeMap<String, IndexEntry>,
    /// A signed archive's signature (section 8 of the format); older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureBlock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Byte offset in the file of the entry's zstd frame (or of its first tar header).
    pub offset: u64,
    /// Bytes in the file from `offset` (the frame, or the headers + data + padding).
    pub length: u64,
    /// Size of the entry's content.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a kots-bundle archive: {why}")]
    NotAnArchive { path: PathBuf, why: String },
    #[error("{path}: archive format {found:?} is not supported by this kots-bundle (reads {FORMAT}); upgrade kots-bundle")]
    UnsupportedFormat { path: PathBuf, found: String },
    #[error("{path}: entry {entry:?}: {why}")]
    BadEntry {
        path: PathBuf,
        entry: String,
        why: String,
    },
    #[error("{path}: entry {entry:?} is missing")]
    Missing { path: PathBuf, entry: String },
    #[error("{path}: entry index is unreadable ({why}): the file is truncated or damaged")]
    BadIndex { path: PathBuf, why: String },
    #[error("{path}: metadata: {why}")]
    BadMetadata { path: PathBuf, why: String },
    /// The archive is not signed by the key given, or is not what was signed.
    #[error("{path}: signature: {why}")]
    Signature { path: PathBuf, why: String },
    /// A volume of a multi-volume archive is missing, truncated, damaged or swapped.
    #[error("{path}: {why}")]
    Volume {
        path: PathBuf,
        why: String,
        /// Missing is a failure to read (exit 1), the others a corrupt archive (exit 3).
        corrupt: bool,
    },
    /// Export refuses what the reader would refuse, before anything is downloaded.
    #[error("{what} cannot be carried in an archive: {why}")]
    Unwritable { what: String, why: String },
}

impl ArchiveError {
    /// The archive itself is damaged or hostile (`verify` exits 3), as opposed to a failure
    /// to read it at all (missing file, permissions: exit 1).
    pub fn is_corrupt(&self) -> bool {
        match self {
            ArchiveError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ),
            ArchiveError::Unwritable { .. } => false,
            ArchiveError::Volume { corrupt, .. } => *corrupt,
            _ => true,
        }
    }
}

/// Name of a blob's entry.
pub fn blob_entry(digest: &Digest) -> String {
    digest.layout_path()
}

/// Checks an entry name from a tar header: one of the places the format allows, and for
/// `upstream/...` a path [`crate::names::relative_path`] accepts (the rule the upstream
/// loader, the writer and the app directory apply too). Returns why not.
pub(crate) fn check_entry_name(name: &str) -> Result<(), String> {
    if let Some(rel) = name.strip_prefix(UPSTREAM_DIR) {
        return crate::names::relative_path(rel).map_err(|why| why.to_string());
    }
    crate::names::relative_path(name).map_err(|why| why.to_string())?;
    let allowed = name == METADATA_ENTRY
        || name == "oci-layout"
        || name == "index.json"
        || name
            .strip_prefix("blobs/sha256/")
            .is_some_and(|h| format!("sha256:{h}").parse::<Digest>().is_ok());
    if !allowed {
        return Err("not a place the format allows".into());
    }
    Ok(())
}

/// Checks what export is about to write, with the reader's rules, so an archive the reader
/// would refuse is never written: the app name, each upstream file's path (and that they
/// can all exist at once: no `a` beside `a/b.yaml`), and the caps on images and files.
/// Export calls this before it downloads anything.
pub fn check_contents(
    app_name: &str,
    images: usize,
    files: &[crate::upstream::ManifestFile],
) -> Result<(), ArchiveError> {
    use crate::names;
    names::app_name(app_name).map_err(|why| ArchiveError::Unwritable {
        what: format!("app name \"{}\"", names::escaped(app_name)),
        why: why.to_string(),
    })?;
    if images > MAX_IMAGES {
        return Err(ArchiveError::Unwritable {
            what: format!("{images} images"),
            why: format!("an archive holds at most {MAX_IMAGES}"),
        });
    }
    if files.len() > MAX_UPSTREAM_FILES {
        return Err(ArchiveError::Unwritable {
            what: format!("{} upstream files", files.len()),
            why: format!("an archive holds at most {MAX_UPSTREAM_FILES}"),
        });
    }
    let file = |p: &str| format!("upstream file \"{}\"", names::escaped(p));
    for f in files {
        check_entry_name(&format!("{UPSTREAM_DIR}{}", f.path)).map_err(|why| {
            ArchiveError::Unwritable {
                what: file(&f.path),
                why,
            }
        })?;
    }
    names::check_tree(files.iter().map(|f| f.path.as_str())).map_err(|(p, why)| {
        ArchiveError::Unwritable {
            what: file(&p),
            why: why.to_string(),
        }
    })
}

/// Begins an archive for `images`: writes the metadata, `oci-layout`, `index.json` and the
/// upstream files, and returns the writer ready for the blobs (which the copy engine adds).
pub fn start(
    path: &std::path::Path,
    app: App,
    images: &[crate::copy::ResolvedImage],
    upstream: &[crate::upstream::ManifestFile],
    compression: Compression,
    zstd: ZstdOptions,
) -> Result<ArchiveWriter, ArchiveError> {
    start_in_volumes(path, app, images, upstream, compression, zstd, None, None)
}

/// [`start`], in volumes of at most `max_volume_size` bytes when that is given and the
/// archive does not fit one (`bundle-format/README.md`, section 7), and differential when
/// `differential` is given: its omitted blobs are listed there instead of in `blobs`, and
/// the copy must not write them (section 10).
#[allow(clippy::too_many_arguments)]
pub fn start_in_volumes(
    path: &std::path::Path,
    app: App,
    images: &[crate::copy::ResolvedImage],
    upstream: &[crate::upstream::ManifestFile],
    compression: Compression,
    zstd: ZstdOptions,
    max_volume_size: Option<u64>,
    differential: Option<Differential>,
) -> Result<ArchiveWriter, ArchiveError> {
    check_contents(&app.name, images.len(), upstream)?;
    let omitted: std::collections::HashSet<Digest> = differential
        .iter()
        .flat_map(|d| d.omitted.iter().map(|b| b.digest.clone()))
        .collect();
    let mut blobs: BTreeMap<Digest, BlobRecord> = BTreeMap::new();
    for image in images {
        for d in image
            .all_blobs()
            .into_iter()
            .filter(|d| !omitted.contains(&d.digest))
        {
            blobs.entry(d.digest.clone()).or_insert(BlobRecord {
                digest: d.digest,
                size: d.size,
                media_type: d.media_type,
            });
        }
    }
    let blobs: Vec<BlobRecord> = blobs.into_values().collect();
    let total_size = blobs
        .iter()
        .try_fold(0u64, |t, b| t.checked_add(b.size))
        .ok_or_else(|| ArchiveError::Unwritable {
            what: "the images".into(),
            why: "their blob sizes add up to more than 2^64 bytes".into(),
        })?;
    if blobs.len() > MAX_BLOBS {
        return Err(ArchiveError::Unwritable {
            what: format!("{} blobs", blobs.len()),
            why: format!("an archive holds at most {MAX_BLOBS}"),
        });
    }
    let metadata = Metadata {
        format: if differential.is_some() {
            DIFFERENTIAL_FORMAT
        } else {
            FORMAT
        }
        .to_string(),
        tool: Tool {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        app,
        created: now_rfc3339(),
        compression,
        images: images
            .iter()
            .map(|i| ImageRecord {
                reference: i.source.clone(),
                digest: i.top.digest.clone(),
                media_type: i.top.media_type.clone(),
                platforms: i.platforms.clone(),
                size: i.size(),
            })
            .collect(),
        total_size,
        blobs,
        upstream_files: upstream.iter().map(|f| f.path.clone()).collect(),
        upstream_digests: upstream
            .iter()
            .map(|f| (f.path.clone(), Digest::of(&f.data)))
            .collect(),
        differential,
    };
    let mut w =
        ArchiveWriter::create_in_volumes(path, &metadata, compression, zstd, max_volume_size)?;
    w.add_file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    w.add_json("index.json", &layout_index(images))?;
    for f in upstream {
        w.add_file(&format!("{UPSTREAM_DIR}{}", f.path), &f.data)?;
    }
    Ok(w)
}

/// The layout's `index.json`: one entry per source reference, named by the normalized
/// reference (what `skopeo copy oci-archive:FILE:REF` and `oci:DIR:REF` select by).
pub fn layout_index(images: &[crate::copy::ResolvedImage]) -> serde_json::Value {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            serde_json::json!({
                "mediaType": i.top.media_type,
                "digest": i.top.digest,
                "size": i.top.bytes.len(),
                "annotations": { crate::manifest::REF_NAME_ANNOTATION: i.source.to_string() },
            })
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": manifests,
    })
}

/// UTC now as RFC 3339, without a date-time dependency.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert!(check_entry_name("kots-bundle.json").is_ok());
        assert!(check_entry_name("upstream/a/b.yaml").is_ok());
        assert!(check_entry_name(&Digest::of(b"x").layout_path()).is_ok());
        assert!(check_entry_name("../etc/passwd").is_err());
        assert!(check_entry_name("/etc/passwd").is_err());
        assert!(check_entry_name("upstream/../../x").is_err());
        assert!(check_entry_name("blobs/sha256/nothex").is_err());
        assert!(check_entry_name("other.txt").is_err());
        assert!(check_entry_name("upstream/a\\b.yaml").is_err());
        assert!(check_entry_name("upstream/a\nb.yaml").is_err());
        assert!(check_entry_name(&format!("upstream/{}", "a".repeat(256))).is_err());
        assert!(check_entry_name("blobs/sha256/ABCDEF").is_err());
    }

    #[test]
    fn contents_are_checked_with_the_readers_rules() {
        let f = |p: &str| crate::upstream::ManifestFile {
            path: p.into(),
            data: vec![],
        };
        assert!(check_contents("app", 1, &[f("a/b.yaml"), f("c.yaml")]).is_ok());
        for (name, files) in [
            ("../app", vec![f("a.yaml")]),
            ("/abs", vec![f("a.yaml")]),
            ("app", vec![f("a\\b.yaml")]),
            ("app", vec![f("a"), f("a/b.yaml")]),
            ("app", vec![f(&"x".repeat(300))]),
        ] {
            let e = check_contents(name, 1, &files).unwrap_err();
            assert!(!e.is_corrupt(), "{e}");
        }
        assert!(check_contents("app", MAX_IMAGES + 1, &[]).is_err());
    }
}
