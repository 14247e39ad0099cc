//! Reads an `.airgap` archive in place: the metadata from the head, any entry by seeking to
//! it (zstd frame or tar offset), and a full sequential verification pass. Nothing is ever
//! extracted to disk, and nothing in the file is trusted before it is checked.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};

use super::{
    blob_entry, check_entry_name, ArchiveError, Compression, EntryIndex, IndexEntry, Metadata,
    FOOTER_FRAME_MAGIC, FOOTER_MAGIC, FORMAT, MAX_JSON_ENTRY, METADATA_ENTRY, REF_NAME_ANNOTATION,
    UPSTREAM_DIR,
};
use crate::digest::{Digest, Hasher, VerifyingReader};
use crate::upstream::ManifestFile;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const READ_BUFFER: usize = 1 << 20;
/// A footer index larger than this is not one we wrote.
const MAX_FOOTER: u64 = 256 * 1024 * 1024;
/// Zero bytes accepted after the tar's end marker (tar writers pad to 10 KiB records).
const TRAILER_LIMIT: u64 = 20 * 1024;
/// Longest GNU long name or PAX header we accept.
const MAX_LONG_HEADER: u64 = 64 * 1024;

pub struct ArchiveReader {
    path: PathBuf,
    compression: Compression,
    metadata: Metadata,
    index: EntryIndex,
}

/// The content of one entry, bounded to its declared size.
pub struct Entry {
    inner: io::Take<Box<dyn Read + Send>>,
    /// zstd: the entry's frame must end with the entry (its tar padding, then nothing), so a
    /// frame that decodes to more than declared is refused rather than silently cut.
    check_frame_end: bool,
    padding: u64,
}

impl Read for Entry {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // With the last byte, not at EOF: consumers that know the size never read past it.
        if self.inner.limit() == 0 && self.check_frame_end {
            self.check_frame_end = false;
            let frame = self.inner.get_mut();
            let mut rest = [0u8; 513];
            let mut got = 0usize;
            loop {
                let m = frame.read(&mut rest[got..])?;
                if m == 0 {
                    break;
                }
                got += m;
                if got == rest.len() {
                    break;
                }
            }
            if got as u64 != self.padding || rest[..got].iter().any(|&b| b != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the entry's zstd frame holds more data than the entry declares",
                ));
            }
        }
        Ok(n)
    }
}

impl ArchiveReader {
    /// Opens an archive: reads the metadata from its head and its entry index from the
    /// footer (zstd) or by walking tar headers (uncompressed).
    pub fn open(path: &Path) -> Result<ArchiveReader, ArchiveError> {
        let compression = detect(path)?;
        let metadata = read_metadata(path, compression)?;
        let index = match compression {
            Compression::Zstd => read_footer(path)?,
            Compression::None => scan_tar(path)?,
        };
        let reader = ArchiveReader {
            path: path.to_path_buf(),
            compression,
            metadata,
            index,
        };
        reader.check_index()?;
        Ok(reader)
    }

    /// Only the metadata: reads the first entry and nothing else.
    pub fn read_metadata_only(path: &Path) -> Result<Metadata, ArchiveError> {
        read_metadata(path, detect(path)?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn compression(&self) -> Compression {
        self.compression
    }
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    pub fn index(&self) -> &EntryIndex {
        &self.index
    }

    fn bad(&self, entry: &str, why: impl Into<String>) -> ArchiveError {
        ArchiveError::BadEntry {
            path: self.path.clone(),
            entry: entry.to_string(),
            why: why.into(),
        }
    }

    /// The index must be plausible before we seek by it: names allowed, ranges inside the
    /// file and not overlapping, blobs of the metadata all present with their sizes.
    fn check_index(&self) -> Result<(), ArchiveError> {
        let file_len = std::fs::metadata(&self.path)
            .map_err(|source| ArchiveError::Io {
                path: self.path.clone(),
                source,
            })?
            .len();
        let mut ranges: Vec<(u64, u64, &str)> = Vec::new();
        for (name, e) in &self.index.entries {
            check_entry_name(name).map_err(|why| self.bad(name, why))?;
            let end = e
                .offset
                .checked_add(e.length)
                .filter(|&end| end <= file_len);
            let Some(end) = end else {
                return Err(ArchiveError::BadIndex {
                    path: self.path.clone(),
                    why: format!("entry {name:?} lies past the end of the file"),
                });
            };
            ranges.push((e.offset, end, name));
        }
        ranges.sort();
        for w in ranges.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(ArchiveError::BadIndex {
                    path: self.path.clone(),
                    why: format!("entries {:?} and {:?} overlap", w[0].2, w[1].2),
                });
            }
        }
        for b in &self.metadata.blobs {
            let name = blob_entry(&b.digest);
            match self.index.entries.get(&name) {
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
        Ok(())
    }

    /// Opens one entry by name, checking its tar header matches the index.
    pub fn entry(&self, name: &str) -> Result<Entry, ArchiveError> {
        let e = *self
            .index
            .entries
            .get(name)
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                entry: name.to_string(),
            })?;
        self.entry_at(name, e)
    }

    fn entry_at(&self, name: &str, e: IndexEntry) -> Result<Entry, ArchiveError> {
        let io_err = |source| ArchiveError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io_err)?;
        file.seek(SeekFrom::Start(e.offset)).map_err(io_err)?;
        let raw = BufReader::with_capacity(READ_BUFFER, file).take(e.length);
        let mut stream: Box<dyn Read + Send> = match self.compression {
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(raw)
                    .map_err(io_err)?
                    .single_frame(),
            ),
            Compression::None => Box::new(raw),
        };
        let (found, size, kind) =
            read_header(&mut stream).map_err(|err| self.bad(name, err.to_string()))?;
        if found != name {
            return Err(self.bad(name, format!("the index points at entry {found:?}")));
        }
        if !kind.is_file() {
            return Err(self.bad(name, "not a regular file"));
        }
        if size != e.size {
            return Err(self.bad(
                name,
                format!("header says {size} bytes, index says {}", e.size),
            ));
        }
        Ok(Entry {
            inner: stream.take(size),
            check_frame_end: self.compression == Compression::Zstd,
            padding: (512 - size % 512) % 512,
        })
    }

    /// Reads a small entry whole (JSON documents, manifests).
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let e = self
            .index
            .entries
            .get(name)
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                entry: name.to_string(),
            })?;
        if e.size > MAX_JSON_ENTRY {
            return Err(self.bad(
                name,
                format!("{} bytes is too large for a JSON document", e.size),
            ));
        }
        let mut buf = Vec::with_capacity(e.size as usize);
        self.entry(name)?
            .read_to_end(&mut buf)
            .map_err(|err| self.bad(name, err.to_string()))?;
        if buf.len() as u64 != e.size {
            return Err(self.bad(name, "truncated"));
        }
        Ok(buf)
    }

    /// A blob's content; reading it to the end errors if the digest or size is wrong.
    pub fn blob(&self, digest: &Digest) -> Result<VerifyingReader<Entry>, ArchiveError> {
        let name = blob_entry(digest);
        let size = self
            .index
            .entries
            .get(&name)
            .map(|e| e.size)
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                entry: name.clone(),
            })?;
        Ok(VerifyingReader::new(
            self.entry(&name)?,
            digest.clone(),
            size,
        ))
    }

    /// A small blob (manifest, index, config), read whole and verified.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ArchiveError> {
        let name = blob_entry(digest);
        let data = self.read_small(&name)?;
        if &Digest::of(&data) != digest {
            return Err(self.bad(&name, "content does not match its digest"));
        }
        Ok(data)
    }

    /// The OCI layout's `index.json`.
    pub fn oci_index(&self) -> Result<ImageIndex, ArchiveError> {
        let data = self.read_small("index.json")?;
        serde_json::from_slice(&data).map_err(|e| self.bad("index.json", e.to_string()))
    }

    /// The app's manifests as shipped.
    pub fn upstream_files(&self) -> Result<Vec<ManifestFile>, ArchiveError> {
        let mut files = Vec::new();
        for name in self.index.entries.keys() {
            if let Some(rel) = name.strip_prefix(UPSTREAM_DIR) {
                files.push(ManifestFile {
                    path: rel.to_string(),
                    data: self.read_small(name)?,
                });
            }
        }
        Ok(files)
    }

    /// Reads the whole file once, front to back, checking every entry and every blob's
    /// digest, then checks the layout and the metadata against what was found. Calls
    /// `progress` with the bytes of blob content read so far.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifySummary, ArchiveError> {
        let io_err = |source| ArchiveError::Io {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(io_err)?;
        let raw = BufReader::with_capacity(READ_BUFFER, file);
        let stream: Box<dyn Read> = match self.compression {
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(io_err)?)
            }
            Compression::None => Box::new(raw),
        };
        let mut tar = tar::Archive::new(stream);
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut blob_bytes = 0u64;
        let entries = tar
            .entries()
            .map_err(|e| self.bad("(tar)", e.to_string()))?;
        for (i, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| {
                self.bad(
                    "(tar)",
                    format!("unreadable after {} entries: {e}", seen.len()),
                )
            })?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(self.bad(
                    &name,
                    format!("is a {kind:?}, only regular files are allowed"),
                ));
            }
            check_entry_name(&name).map_err(|why| self.bad(&name, why))?;
            if i == 0 && name != METADATA_ENTRY {
                return Err(self.bad(&name, format!("the first entry must be {METADATA_ENTRY}")));
            }
            let size = entry.size();
            if seen.insert(name.clone(), size).is_some() {
                return Err(self.bad(&name, "appears twice"));
            }
            // Checked before reading, so a header that claims a huge size (a zstd bomb, say)
            // costs nothing: no entry is read past what the index and metadata declare.
            match self.index.entries.get(&name) {
                Some(e) if e.size == size => {}
                Some(e) => {
                    return Err(self.bad(
                        &name,
                        format!("tar header says {size} bytes, index says {}", e.size),
                    ))
                }
                None => return Err(self.bad(&name, "is in the tar but not in the index")),
            }
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest: Digest = format!("sha256:{hex}").parse().expect("checked name");
                let mut hasher = Hasher::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = entry
                        .read(&mut buf)
                        .map_err(|e| self.bad(&name, e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    blob_bytes += n as u64;
                    progress(blob_bytes);
                }
                if hasher.len() != size {
                    return Err(self.bad(
                        &name,
                        format!("truncated: {} of {size} bytes", hasher.len()),
                    ));
                }
                let actual = hasher.finish();
                if actual != digest {
                    return Err(self.bad(&name, format!("content has digest {actual}")));
                }
            } else {
                io::copy(&mut entry, &mut io::sink())
                    .map_err(|e| self.bad(&name, e.to_string()))?;
            }
        }
        // After the end-of-archive blocks only zeros may follow (a few KiB at most): data
        // hidden there, or a frame that inflates without end, is refused without reading it all.
        let mut rest = tar.into_inner().take(TRAILER_LIMIT + 1);
        let mut trailer = Vec::new();
        rest.read_to_end(&mut trailer)
            .map_err(|e| self.bad("(end of tar)", e.to_string()))?;
        if trailer.len() as u64 > TRAILER_LIMIT || trailer.iter().any(|&b| b != 0) {
            return Err(self.bad("(end of tar)", "data after the end of the archive"));
        }
        // Every tar entry was matched to the index above; now the other way round.
        if let Some(name) = self.index.entries.keys().find(|n| !seen.contains_key(*n)) {
            return Err(ArchiveError::BadIndex {
                path: self.path.clone(),
                why: format!("entry {name:?} is in the index but not in the tar"),
            });
        }
        self.check_layout()
    }

    /// Every image of the metadata is in `index.json`, every manifest's references are
    /// present, and the metadata's blob list is exactly the blobs stored.
    pub fn check_layout(&self) -> Result<VerifySummary, ArchiveError> {
        let meta = &self.metadata;
        let index = self.oci_index()?;
        let stored: BTreeSet<Digest> = self
            .index
            .entries
            .keys()
            .filter_map(|n| n.strip_prefix("blobs/sha256/"))
            .filter_map(|h| format!("sha256:{h}").parse().ok())
            .collect();
        let listed: BTreeSet<Digest> = meta.blobs.iter().map(|b| b.digest.clone()).collect();
        if let Some(d) = stored.difference(&listed).next() {
            return Err(ArchiveError::BadMetadata {
                path: self.path.clone(),
                why: format!("blob {d} is stored but not listed"),
            });
        }
        let mut reachable = HashSet::new();
        for image in &meta.images {
            let name = image.reference.to_string();
            let in_index = index.manifests().iter().any(|d| {
                d.digest().to_string() == image.digest.as_str()
                    && d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME_ANNOTATION))
                        .is_some_and(|n| n == &name)
            });
            if !in_index {
                return Err(ArchiveError::BadMetadata {
                    path: self.path.clone(),
                    why: format!("image {name} ({}) is not in index.json", image.digest),
                });
            }
            self.walk(&image.digest, &image.media_type, &mut reachable)
                .map_err(|why| ArchiveError::BadMetadata {
                    path: self.path.clone(),
                    why: format!("image {name}: {why}"),
                })?;
        }
        let total: u64 = meta.blobs.iter().map(|b| b.size).sum();
        if total != meta.total_size {
            return Err(ArchiveError::BadMetadata {
                path: self.path.clone(),
                why: format!("totalSize {} but blobs add up to {total}", meta.total_size),
            });
        }
        Ok(VerifySummary {
            images: meta.images.len(),
            blobs: stored.len(),
            bytes: total,
        })
    }

    /// Follows a manifest or index down to its blobs, checking each is stored.
    fn walk(
        &self,
        digest: &Digest,
        media_type: &str,
        seen: &mut HashSet<Digest>,
    ) -> Result<(), String> {
        if !seen.insert(digest.clone()) {
            return Ok(());
        }
        if !self.index.entries.contains_key(&blob_entry(digest)) {
            return Err(format!("blob {digest} is missing"));
        }
        let children = manifest_children(
            media_type,
            &self.read_blob(digest).map_err(|e| e.to_string())?,
        )?;
        for (d, mt, _) in children {
            if is_manifest_type(&mt) {
                self.walk(&d, &mt, seen)?;
            } else if !self.index.entries.contains_key(&blob_entry(&d)) {
                return Err(format!("blob {d} (referenced by {digest}) is missing"));
            } else {
                seen.insert(d);
            }
        }
        Ok(())
    }
}

/// What `verify` checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

pub fn is_manifest_type(media_type: &str) -> bool {
    crate::copy::is_index(media_type) || crate::copy::is_image_manifest(media_type)
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
            .map_err(|e: crate::digest::DigestError| e.to_string())?;
        Ok((digest, d.media_type().to_string(), d.size()))
    };
    if crate::copy::is_index(media_type) {
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

fn detect(path: &Path) -> Result<Compression, ArchiveError> {
    let mut f = File::open(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|_| ArchiveError::NotAnArchive {
            path: path.to_path_buf(),
            why: "file is empty or too short".into(),
        })?;
    Ok(if magic == ZSTD_MAGIC {
        Compression::Zstd
    } else {
        Compression::None
    })
}

fn read_metadata(path: &Path, compression: Compression) -> Result<Metadata, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = BufReader::new(File::open(path).map_err(io_err)?);
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
    let (name, size, kind) =
        read_header(&mut stream).map_err(|e| not(format!("no tar header at the start ({e})")))?;
    if name != METADATA_ENTRY || !kind.is_file() {
        return Err(not(format!(
            "the first entry is {name:?}, not {METADATA_ENTRY}"
        )));
    }
    if size > MAX_JSON_ENTRY {
        return Err(ArchiveError::BadMetadata {
            path: path.to_path_buf(),
            why: format!("{size} bytes is too large"),
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    stream.take(size).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 != size {
        return Err(ArchiveError::BadMetadata {
            path: path.to_path_buf(),
            why: "truncated".into(),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| ArchiveError::BadMetadata {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(ArchiveError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format.to_string(),
        });
    }
    serde_json::from_value(value).map_err(|e| ArchiveError::BadMetadata {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn read_footer(path: &Path) -> Result<EntryIndex, ArchiveError> {
    let bad = |why: &str| ArchiveError::BadIndex {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
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
    if index
        .entries
        .values()
        .any(|e| e.offset + e.length > frame_start)
    {
        return Err(bad("an entry overlaps the footer"));
    }
    Ok(index)
}

/// Builds the index of an uncompressed archive by walking its headers (seeking past data).
fn scan_tar(path: &Path) -> Result<EntryIndex, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut tar = tar::Archive::new(file);
    let mut index = EntryIndex::default();
    // An entry starts where the previous one's padded data ended (this covers GNU long-name
    // and PAX headers in front of the file's own header).
    let mut start = 0u64;
    for entry in tar.entries_with_seek().map_err(io_err)? {
        let entry = entry.map_err(|e| ArchiveError::BadIndex {
            path: path.to_path_buf(),
            why: format!("tar headers unreadable: {e}"),
        })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        let data_start = entry.raw_file_position();
        let end = data_start + size.div_ceil(512) * 512;
        let kind = entry.header().entry_type();
        if !kind.is_dir() {
            if index
                .entries
                .insert(
                    name.clone(),
                    IndexEntry {
                        offset: start,
                        length: end - start,
                        size,
                    },
                )
                .is_some()
            {
                return Err(ArchiveError::BadEntry {
                    path: path.to_path_buf(),
                    entry: name,
                    why: "appears twice".into(),
                });
            }
            if !kind.is_file() {
                return Err(ArchiveError::BadEntry {
                    path: path.to_path_buf(),
                    entry: name,
                    why: format!("is a {kind:?}, only regular files are allowed"),
                });
            }
        }
        start = end;
    }
    Ok(index)
}

/// Reads the tar header(s) of one entry: GNU long names and PAX `path` records are applied.
/// Returns (name, size, type) with the stream positioned at the entry's data.
fn read_header(r: &mut dyn Read) -> io::Result<(String, u64, tar::EntryType)> {
    let mut long_name: Option<String> = None;
    for _ in 0..4 {
        let mut block = [0u8; 512];
        r.read_exact(&mut block)?;
        if block.iter().all(|&b| b == 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "end-of-archive marker instead of an entry",
            ));
        }
        let header = tar::Header::from_byte_slice(&block);
        let cksum = header.cksum()?;
        let computed: u32 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    b' ' as u32
                } else {
                    b as u32
                }
            })
            .sum();
        if cksum != computed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tar header checksum mismatch",
            ));
        }
        let size = header.entry_size()?;
        let kind = header.entry_type();
        match kind {
            tar::EntryType::GNULongName | tar::EntryType::XHeader => {
                if size > MAX_LONG_HEADER {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "oversized extended header",
                    ));
                }
                let mut data = vec![0u8; size as usize];
                r.read_exact(&mut data)?;
                let pad = (512 - size % 512) % 512;
                io::copy(&mut r.take(pad), &mut io::sink())?;
                if kind == tar::EntryType::GNULongName {
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                } else if let Some(p) = pax_path(&data) {
                    long_name = Some(p);
                }
            }
            _ => {
                let name = match long_name {
                    Some(n) => n,
                    None => String::from_utf8_lossy(&header.path_bytes()).into_owned(),
                };
                return Ok((name, size, kind));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "too many extended headers",
    ))
}

fn pax_path(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines().find_map(|l| {
        let (_, kv) = l.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_string)
    })
}
