//! What [`ArchiveReader::open`] reads before anything else, and checks: the compression
//! (zstd magic or a tar header), the metadata entry at the head, the entry index (the
//! zstd footer, or a walk of the tar headers), and the index against the metadata and the
//! end of the archive.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::super::tar_header::{padding, read_header, HeaderError, Next, BLOCK};
use super::super::volumes::Volumes;
use super::super::{
    blob_entry, check_entry_name, ArchiveError, Compression, EntryIndex, ImageRecord, IndexEntry,
    Metadata, FOOTER_FRAME_MAGIC, FOOTER_MAGIC, FORMAT, MAX_BLOBS, MAX_IMAGES, MAX_JSON_ENTRY,
    MAX_UPSTREAM_FILES, METADATA_ENTRY, UPSTREAM_DIR,
};
use super::{io_why, ArchiveReader, Counted, MAX_END_FRAME, TRAILER_LIMIT, ZSTD_MAGIC};
use crate::digest::Digest;
use crate::names;
use crate::reference::Reference;

/// A footer index larger than this is not one we wrote.
const MAX_FOOTER: u64 = 256 * 1024 * 1024;

impl ArchiveReader {
    /// The index must be plausible before we seek by it: names allowed, ranges inside the
    /// tar and not overlapping (in a zstd archive, one frame after the other from the first
    /// byte, then only the end-of-archive frame), blobs of the metadata all present with
    /// their sizes, the upstream entries exactly the metadata's upstream files.
    pub(super) fn check_index(&self) -> Result<(), ArchiveError> {
        let entries = &self.index.entries;
        if entries.len() > MAX_BLOBS + MAX_UPSTREAM_FILES + 3 {
            return Err(self.bad_index(format!("{} entries is too many", entries.len())));
        }
        let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(entries.len());
        for (name, e) in entries {
            check_entry_name(name).map_err(|why| self.bad(name, why))?;
            let end = e
                .offset
                .checked_add(e.length)
                .filter(|&end| end <= self.body_end);
            let Some(end) = end else {
                return Err(self.bad_index(format!("entry {name:?} lies past the end of the file")));
            };
            ranges.push((e.offset, end, name));
        }
        ranges.sort();
        for w in ranges.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(
                    self.bad_index(format!("entries {:?} and {:?} overlap", w[0].2, w[1].2))
                );
            }
        }
        if entries.get(METADATA_ENTRY).map(|e| e.offset) != Some(0) {
            return Err(self.bad_index(format!("{METADATA_ENTRY} is not the first entry")));
        }
        if self.compression == Compression::Zstd {
            // No gap for a frame the index does not name (a hidden entry, or a skippable
            // frame that tar and skopeo would skip but a seek by the index would read).
            let mut at = 0;
            for &(offset, end, name) in &ranges {
                if offset != at {
                    return Err(self.bad_index(format!(
                        "bytes {at}..{offset} before entry {name:?} belong to no entry"
                    )));
                }
                at = end;
            }
            self.check_end_frame(at)?;
        }
        for b in &self.metadata.blobs {
            let name = blob_entry(&b.digest);
            match entries.get(&name) {
                None => {
                    return Err(ArchiveError::Missing {
                        path: self.path.clone(),
                        entry: name,
                    })
                }
                Some(e) if e.size != b.size => {
                    return Err(self.bad(
                        &name,
                        format!("is {} bytes, metadata says {}", e.size, b.size),
                    ))
                }
                Some(_) => {}
            }
        }
        let listed: HashSet<&str> = self.metadata.blobs.iter().map(|b| b.digest.hex()).collect();
        if let Some(hex) = entries
            .keys()
            .filter_map(|n| n.strip_prefix("blobs/sha256/"))
            .find(|h| !listed.contains(h))
        {
            return Err(self.bad_metadata(format!("blob sha256:{hex} is stored but not listed")));
        }
        let upstream: BTreeSet<&str> = entries
            .keys()
            .filter_map(|n| n.strip_prefix(UPSTREAM_DIR))
            .collect();
        let files: BTreeSet<&str> = self
            .metadata
            .upstream_files
            .iter()
            .map(String::as_str)
            .collect();
        if let Some(p) = upstream.difference(&files).next() {
            return Err(self.bad(
                &format!("{UPSTREAM_DIR}{p}"),
                "is stored but not in the metadata's upstreamFiles",
            ));
        }
        if let Some(p) = files.difference(&upstream).next() {
            return Err(ArchiveError::Missing {
                path: self.path.clone(),
                entry: format!("{UPSTREAM_DIR}{p}"),
            });
        }
        // After the per-blob sizes, so a lie names its blob.
        let total = self
            .metadata
            .blobs
            .iter()
            .try_fold(0u64, |t, b| t.checked_add(b.size));
        if total != Some(self.metadata.total_size) {
            let total = total.map_or("more than 2^64".into(), |t| t.to_string());
            return Err(self.bad_metadata(format!(
                "totalSize {} but blobs add up to {total}",
                self.metadata.total_size
            )));
        }
        Ok(())
    }

    /// Between the last entry and the footer: the end-of-archive blocks, zeros only.
    pub(super) fn check_end_frame(&self, at: u64) -> Result<(), ArchiveError> {
        let len = self.body_end - at;
        if len == 0 || len > MAX_END_FRAME {
            return Err(self.bad_index(format!(
                "{len} bytes between the last entry and the footer (the end-of-archive frame \
                 is a few dozen)"
            )));
        }
        let mut file = self.volumes.reader();
        file.seek(SeekFrom::Start(at)).map_err(self.io_err())?;
        let mut raw = vec![0u8; len as usize];
        file.read_exact(&mut raw).map_err(self.io_err())?;
        let mut zeros = Vec::new();
        let decoded = zstd::stream::read::Decoder::with_buffer(&raw[..])
            .and_then(|d| d.take(TRAILER_LIMIT + BLOCK + 1).read_to_end(&mut zeros));
        match decoded {
            Ok(n)
                if (2 * BLOCK..=TRAILER_LIMIT + BLOCK).contains(&(n as u64))
                    && zeros.iter().all(|&b| b == 0) =>
            {
                Ok(())
            }
            Ok(_) => Err(self.bad("(end of tar)", "data after the end of the archive")),
            Err(e) => Err(self.bad("(end of tar)", e.to_string())),
        }
    }
}

pub(super) fn detect(path: &Path, volumes: &Volumes) -> Result<Compression, ArchiveError> {
    let mut f = volumes.reader();
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::NotAnArchive {
                path: path.to_path_buf(),
                why: "file is empty or too short".into(),
            }
        } else {
            ArchiveError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    Ok(if magic == ZSTD_MAGIC {
        Compression::Zstd
    } else {
        Compression::None
    })
}

pub(super) fn read_metadata(
    path: &Path,
    volumes: &Volumes,
    compression: Compression,
) -> Result<Metadata, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = BufReader::new(volumes.reader());
    let mut stream: Box<dyn Read> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(io_err)?
                .single_frame(),
        ),
        Compression::None => Box::new(file),
    };
    let not = |why: String| ArchiveError::NotAnArchive {
        path: path.to_path_buf(),
        why,
    };
    let h = match read_header(&mut stream) {
        Ok(Next::Entry(h)) => h,
        Ok(_) => return Err(not("no tar entry at the start".into())),
        Err(e) => return Err(not(format!("no tar header at the start ({e})"))),
    };
    if h.name != METADATA_ENTRY || !h.kind.is_file() {
        return Err(not(format!(
            "the first entry is {:?}, not {METADATA_ENTRY}",
            h.name
        )));
    }
    let bad = |why: String| ArchiveError::BadMetadata {
        path: path.to_path_buf(),
        why,
    };
    if h.size > MAX_JSON_ENTRY {
        return Err(bad(format!("{} bytes is too large", h.size)));
    }
    let mut data = Vec::with_capacity(h.size as usize);
    stream.take(h.size).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 != h.size {
        return Err(bad("truncated".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT && format != super::super::DIFFERENTIAL_FORMAT {
        return Err(ArchiveError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format.to_string(),
        });
    }
    let meta: Metadata = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    check_metadata(meta).map_err(bad)
}

/// The metadata's own rules: an app name that can name a directory (never a path), caps on
/// images, blobs and files, upstream paths by the one path rule, digests for exactly the
/// upstream files. Records listed twice with the same digest are collapsed into one (so
/// duplicates cost nothing later); the same name with two digests is refused.
fn check_metadata(mut meta: Metadata) -> Result<Metadata, String> {
    names::app_name(&meta.app.name)
        .map_err(|why| format!("app.name \"{}\": {why}", names::escaped(&meta.app.name)))?;
    for (what, n, max) in [
        ("images", meta.images.len(), MAX_IMAGES),
        ("blobs", meta.blobs.len(), MAX_BLOBS),
        (
            "upstreamFiles",
            meta.upstream_files.len(),
            MAX_UPSTREAM_FILES,
        ),
    ] {
        if n > max {
            return Err(format!("{n} {what} (an archive holds at most {max})"));
        }
    }
    let mut by_ref: HashMap<Reference, usize> = HashMap::with_capacity(meta.images.len());
    let mut images: Vec<ImageRecord> = Vec::with_capacity(meta.images.len());
    for image in std::mem::take(&mut meta.images) {
        match by_ref.get(&image.reference) {
            Some(&i) if images[i].digest == image.digest => {}
            Some(&i) => {
                return Err(format!(
                    "image {} is listed with two digests, {} and {}",
                    image.reference, images[i].digest, image.digest
                ))
            }
            None => {
                by_ref.insert(image.reference.clone(), images.len());
                images.push(image);
            }
        }
    }
    meta.images = images;
    let mut by_digest: HashMap<Digest, usize> = HashMap::with_capacity(meta.blobs.len());
    let mut blobs = Vec::with_capacity(meta.blobs.len());
    for blob in std::mem::take(&mut meta.blobs) {
        match by_digest.get(&blob.digest) {
            Some(&i) if blobs[i] == blob => {}
            Some(_) => return Err(format!("blob {} is listed twice, differently", blob.digest)),
            None => {
                by_digest.insert(blob.digest.clone(), blobs.len());
                blobs.push(blob);
            }
        }
    }
    meta.blobs = blobs;
    super::super::differential::check(&meta)?;
    for p in &meta.upstream_files {
        check_entry_name(&format!("{UPSTREAM_DIR}{p}"))
            .map_err(|why| format!("upstream file \"{}\": {why}", names::escaped(p)))?;
    }
    names::check_tree(meta.upstream_files.iter().map(String::as_str))
        .map_err(|(p, why)| format!("upstream file \"{}\": {why}", names::escaped(&p)))?;
    if !meta.upstream_digests.is_empty() {
        let files: BTreeSet<&str> = meta.upstream_files.iter().map(String::as_str).collect();
        if let Some(p) = meta
            .upstream_digests
            .keys()
            .find(|p| !files.contains(p.as_str()))
        {
            return Err(format!(
                "upstreamDigests names \"{}\", which is not in upstreamFiles",
                names::escaped(p)
            ));
        }
        if let Some(p) = files
            .iter()
            .find(|p| !meta.upstream_digests.contains_key(**p))
        {
            return Err(format!(
                "upstreamDigests has no digest for \"{}\"",
                names::escaped(p)
            ));
        }
    }
    Ok(meta)
}

/// The footer's entry index, and where the footer starts.
pub(super) fn read_footer(
    path: &Path,
    volumes: &Volumes,
) -> Result<(EntryIndex, u64), ArchiveError> {
    let bad = |why: &str| ArchiveError::BadIndex {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = volumes.reader();
    let len = volumes.len();
    if len < 24 {
        return Err(bad("file too short"));
    }
    let mut trailer = [0u8; 16];
    f.seek(SeekFrom::End(-16)).map_err(io_err)?;
    f.read_exact(&mut trailer).map_err(io_err)?;
    if &trailer[8..] != FOOTER_MAGIC {
        return Err(bad("no footer at the end"));
    }
    let json_len = u64::from_le_bytes(trailer[..8].try_into().unwrap());
    if json_len > MAX_FOOTER || json_len + 24 > len {
        return Err(bad("footer length is implausible"));
    }
    let frame_start = len - 16 - json_len - 8;
    f.seek(SeekFrom::Start(frame_start)).map_err(io_err)?;
    let mut head = [0u8; 8];
    f.read_exact(&mut head).map_err(io_err)?;
    let magic = u32::from_le_bytes(head[..4].try_into().unwrap());
    let frame_len = u32::from_le_bytes(head[4..].try_into().unwrap()) as u64;
    if magic != FOOTER_FRAME_MAGIC || frame_len != json_len + 16 {
        return Err(bad("footer frame header is wrong"));
    }
    let mut json = vec![0u8; json_len as usize];
    f.read_exact(&mut json).map_err(io_err)?;
    let index: EntryIndex = serde_json::from_slice(&json).map_err(|e| bad(&e.to_string()))?;
    Ok((index, frame_start))
}

/// Builds the index of an uncompressed archive by walking its headers (seeking past data),
/// and returns it with the file's length.
pub(super) fn scan_tar(path: &Path, volumes: &Volumes) -> Result<(EntryIndex, u64), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad_entry = |entry: String, why: String| ArchiveError::BadEntry {
        path: path.to_path_buf(),
        entry,
        why,
    };
    let file = volumes.reader();
    let len = volumes.len();
    let mut r = Counted {
        inner: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
    };
    let mut index = EntryIndex::default();
    loop {
        let start = r.pos;
        let h = match read_header(&mut r) {
            Ok(Next::Entry(h)) => h,
            Ok(Next::End) => break,
            Ok(Next::Eof) => {
                return Err(ArchiveError::BadIndex {
                    path: path.to_path_buf(),
                    why: "the tar ends without its end-of-archive blocks: truncated".into(),
                })
            }
            Err(HeaderError::Bad { entry, why }) => return Err(bad_entry(entry, why)),
            Err(HeaderError::Io(e)) => {
                return Err(ArchiveError::BadIndex {
                    path: path.to_path_buf(),
                    why: format!("tar headers unreadable at byte {start}: {}", io_why(&e)),
                })
            }
        };
        let length = h.record_len();
        if start + length > len {
            return Err(ArchiveError::BadIndex {
                path: path.to_path_buf(),
                why: format!("entry {:?} lies past the end of the file", h.name),
            });
        }
        let data = h.size + padding(h.size);
        r.inner.seek_relative(data as i64).map_err(io_err)?;
        r.pos += data;
        if h.kind.is_dir() {
            names::relative_path(&h.name)
                .map_err(|why| bad_entry(h.name.clone(), why.to_string()))?;
            continue;
        }
        if !h.kind.is_file() {
            return Err(bad_entry(
                h.name,
                format!("is a {:?}, only regular files are allowed", h.kind),
            ));
        }
        let entry = IndexEntry {
            offset: start,
            length,
            size: h.size,
        };
        if index.entries.insert(h.name.clone(), entry).is_some() {
            return Err(bad_entry(h.name, "appears twice".into()));
        }
    }
    Ok((index, len))
}
