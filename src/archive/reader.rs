//! Reads an `.airgap` archive in place: the metadata from the head, any entry by seeking to
//! it (zstd frame or tar offset), and a full sequential verification pass. Nothing is ever
//! extracted to disk, and nothing in the file is trusted before it is checked. Every path
//! reads tar headers with [`super::tar_header`], so all of them see the same entries.
//!
//! This file holds the reader and its entries; [`head`] is what `open` reads and checks
//! first (compression, metadata, entry index), [`verify`] the full checks.

mod head;
mod verify;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;

use super::tar_header::{padding, read_header, HeaderError, Next, BLOCK};
use super::volumes::{volume_path, Volumes};
use super::{
    blob_entry, ArchiveError, Compression, EntryIndex, ImageRecord, IndexEntry, Metadata,
    MAX_JSON_ENTRY, UPSTREAM_DIR,
};
use crate::digest::{Digest, VerifyingReader};
use crate::reference::Reference;
use crate::upstream::ManifestFile;
use head::{detect, read_footer, read_metadata, scan_tar};

pub use verify::VerifySummary;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const READ_BUFFER: usize = 1 << 20;
/// Zero bytes accepted after the tar's first end-of-archive block (the second block, plus
/// padding: tar writers pad to 10 KiB records).
const TRAILER_LIMIT: u64 = 20 * 1024;
/// The zstd frame(s) holding the end-of-archive blocks are a few dozen bytes.
const MAX_END_FRAME: u64 = 64 * 1024;
pub struct ArchiveReader {
    path: PathBuf,
    volumes: Volumes,
    compression: Compression,
    metadata: Metadata,
    index: EntryIndex,
    /// Where the tar ends in the file: the footer's first byte (zstd), or the file's end.
    body_end: u64,
    /// Position of each image in `metadata.images`, by reference.
    images: HashMap<Reference, usize>,
}

/// The content of one entry, bounded to its declared size.
pub struct Entry {
    inner: io::Take<Box<dyn Read + Send>>,
    /// zstd: the entry's frame must end with the entry (its tar padding, then nothing), so a
    /// frame that decodes to more than declared is refused rather than silently cut.
    check_frame_end: bool,
    padding: u64,
}

const FRAME_TOO_LONG: &str = "the entry's zstd frame holds more data than the entry declares";

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
                return Err(io::Error::new(io::ErrorKind::InvalidData, FRAME_TOO_LONG));
            }
        }
        Ok(n)
    }
}

/// Counts the bytes taken from a reader, so the tar walk knows where each entry starts in
/// the file (zstd's decoder takes input through `fill_buf`/`consume`, so the count is exact
/// at every frame end).
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }
}

impl ArchiveReader {
    /// Opens an archive: reads the metadata from its head and its entry index from the
    /// footer (zstd) or by walking tar headers (uncompressed), and checks they agree.
    pub fn open(path: &Path) -> Result<ArchiveReader, ArchiveError> {
        let volumes = Volumes::open(path)?;
        let compression = detect(path, &volumes)?;
        let metadata = read_metadata(path, &volumes, compression)?;
        let found = match compression {
            Compression::Zstd => read_footer(path, &volumes),
            Compression::None => scan_tar(path, &volumes),
        };
        let (index, body_end) = found.map_err(|e| match e {
            // A first volume cut short has lost its trailer, and reads as a truncated file.
            ArchiveError::BadIndex { path, why }
                if volumes.count() == 1 && volume_path(&path, 2).exists() =>
            {
                ArchiveError::Volume {
                    why: format!(
                        "entry index is unreadable ({why}); {} is beside it: if this is the \
                         first volume of a multi-volume archive, it is truncated; copy it again",
                        volume_path(&path, 2).display()
                    ),
                    path,
                    corrupt: true,
                }
            }
            e => e,
        })?;
        let images = metadata
            .images
            .iter()
            .enumerate()
            .map(|(i, r)| (r.reference.clone(), i))
            .collect();
        let reader = ArchiveReader {
            path: path.to_path_buf(),
            volumes,
            compression,
            metadata,
            index,
            body_end,
            images,
        };
        reader.check_index()?;
        Ok(reader)
    }

    /// Only the metadata: reads the first entry and nothing else.
    pub fn read_metadata_only(path: &Path) -> Result<Metadata, ArchiveError> {
        let volumes = Volumes::open(path)?;
        read_metadata(path, &volumes, detect(path, &volumes)?)
    }

    /// The archive's files: one, or every volume of a multi-volume archive.
    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn compression(&self) -> Compression {
        self.compression
    }
    /// The metadata, checked: app name, caps, upstream paths; duplicate image and blob
    /// records (same digest) collapsed into one.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    pub fn index(&self) -> &EntryIndex {
        &self.index
    }

    /// The metadata's record of `reference`.
    pub fn image(&self, reference: &Reference) -> Option<&ImageRecord> {
        self.images
            .get(reference)
            .map(|&i| &self.metadata.images[i])
    }

    fn bad(&self, entry: &str, why: impl Into<String>) -> ArchiveError {
        ArchiveError::BadEntry {
            path: self.path.clone(),
            entry: entry.to_string(),
            why: why.into(),
        }
    }

    fn bad_index(&self, why: impl Into<String>) -> ArchiveError {
        ArchiveError::BadIndex {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn bad_metadata(&self, why: impl Into<String>) -> ArchiveError {
        ArchiveError::BadMetadata {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn io_err(&self) -> impl Fn(io::Error) -> ArchiveError + '_ {
        |source| ArchiveError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// A header error found while reading `entry` by the index.
    fn header_err(&self, entry: &str, e: HeaderError) -> ArchiveError {
        match e {
            HeaderError::Bad { entry: found, why } if found != entry => {
                self.bad(entry, format!("{found:?}: {why}"))
            }
            HeaderError::Bad { why, .. } => self.bad(entry, why),
            HeaderError::Io(e) => self.bad(entry, io_why(&e)),
        }
    }

    /// Where the index puts entry `name`; an error naming it when it has none.
    fn indexed(&self, name: &str) -> Result<IndexEntry, ArchiveError> {
        self.index
            .entries
            .get(name)
            .copied()
            .ok_or_else(|| ArchiveError::Missing {
                path: self.path.clone(),
                entry: name.to_string(),
            })
    }

    /// Opens one entry by name, checking its tar header matches the index.
    pub fn entry(&self, name: &str) -> Result<Entry, ArchiveError> {
        self.entry_at(name, self.indexed(name)?)
    }

    fn entry_at(&self, name: &str, e: IndexEntry) -> Result<Entry, ArchiveError> {
        let mut file = self.volumes.reader();
        file.seek(SeekFrom::Start(e.offset))
            .map_err(self.io_err())?;
        // A buffer no larger than the entry: small manifests cost a small read.
        let capacity = e.length.clamp(BLOCK, READ_BUFFER as u64) as usize;
        let raw = BufReader::with_capacity(capacity, file.take(e.length));
        let mut stream: Box<dyn Read + Send> = match self.compression {
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(raw)
                    .map_err(self.io_err())?
                    .single_frame(),
            ),
            Compression::None => Box::new(raw),
        };
        let h = match read_header(&mut stream) {
            Ok(Next::Entry(h)) => h,
            Ok(_) => return Err(self.bad(name, "the index points at no tar entry")),
            Err(err) => return Err(self.header_err(name, err)),
        };
        if h.name != name {
            return Err(self.bad(name, format!("the index points at entry {:?}", h.name)));
        }
        if !h.kind.is_file() {
            return Err(self.bad(name, "not a regular file"));
        }
        if h.size != e.size {
            return Err(self.bad(
                name,
                format!("header says {} bytes, index says {}", h.size, e.size),
            ));
        }
        if self.compression == Compression::None && h.record_len() != e.length {
            return Err(self.bad(
                name,
                format!(
                    "takes {} bytes of the tar, index says {}",
                    h.record_len(),
                    e.length
                ),
            ));
        }
        Ok(Entry {
            inner: stream.take(h.size),
            check_frame_end: self.compression == Compression::Zstd,
            padding: padding(h.size),
        })
    }

    /// Reads a small entry whole (JSON documents, manifests, upstream files).
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let e = self.indexed(name)?;
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
        let size = self.indexed(&name)?.size;
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

    /// The app's manifests as shipped, each checked against its sha256 in the metadata
    /// (when the archive has them; see [`Metadata::upstream_digests`]).
    pub fn upstream_files(&self) -> Result<Vec<ManifestFile>, ArchiveError> {
        let mut files = Vec::with_capacity(self.metadata.upstream_files.len());
        for path in &self.metadata.upstream_files {
            let name = format!("{UPSTREAM_DIR}{path}");
            let data = self.read_small(&name)?;
            if let Some(expected) = self.metadata.upstream_digests.get(path) {
                let actual = Digest::of(&data);
                if &actual != expected {
                    return Err(self.bad(
                        &name,
                        format!("content has digest {actual}, the metadata says {expected}"),
                    ));
                }
            }
            files.push(ManifestFile {
                path: path.clone(),
                data,
            });
        }
        Ok(files)
    }
}

fn io_why(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated".to_string()
    } else {
        e.to_string()
    }
}
