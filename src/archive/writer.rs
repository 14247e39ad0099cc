//! Writes an `.airgap` archive: tar entries, one zstd frame each, then the footer index.
//! The file appears under its final name only when complete (temp file + rename).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::signature::{SigningKey, Statement};
use super::volumes::VolumeWriter;
use super::{
    blob_entry, ArchiveError, Compression, EntryIndex, IndexEntry, Metadata, FOOTER_FRAME_MAGIC,
    FOOTER_MAGIC, METADATA_ENTRY,
};
use crate::digest::Digest;

/// zstd level for layers that are compressed already (measured: level 3 costs ~0.6 s per
/// GiB more than level 1 on 2 cores and saves nothing on gzip'd data).
const FAST_LEVEL: i32 = 1;
/// Entries smaller than this get a single-threaded frame: zstd's workers split input into
/// jobs of megabytes, so threads only cost on small entries.
const MULTITHREAD_MIN: u64 = 4 << 20;

/// Layer media types whose content is gzip or zstd (OCI, Docker, nondistributable).
fn is_compressed_layer(media_type: &str) -> bool {
    media_type.ends_with("+gzip") || media_type.ends_with("+zstd") || media_type.ends_with(".gzip")
}

/// Options for the zstd frames.
#[derive(Debug, Clone, Copy)]
pub struct ZstdOptions {
    pub level: i32,
    /// zstd worker threads per frame (0: single-threaded).
    pub workers: u32,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        ZstdOptions {
            level: 3,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

pub struct ArchiveWriter {
    final_path: PathBuf,
    builder: tar::Builder<FrameWriter>,
    index: EntryIndex,
    blobs: HashSet<Digest>,
    /// sha256 of each file added with [`ArchiveWriter::add_file`], for a signature.
    files: BTreeMap<String, Digest>,
    mtime: u64,
}

impl ArchiveWriter {
    /// Starts an archive at `path` (written to a temp file beside it until [`finish`]),
    /// with `metadata` as its first entry.
    ///
    /// [`finish`]: ArchiveWriter::finish
    pub fn create(
        path: &Path,
        metadata: &Metadata,
        compression: Compression,
        zstd: ZstdOptions,
    ) -> Result<ArchiveWriter, ArchiveError> {
        Self::create_in_volumes(path, metadata, compression, zstd, None)
    }

    /// [`ArchiveWriter::create`], in volumes of at most `max_volume_size` bytes each
    /// (`path`, `path.002`, ...) when that is given and the archive does not fit one.
    pub fn create_in_volumes(
        path: &Path,
        metadata: &Metadata,
        compression: Compression,
        zstd: ZstdOptions,
        max_volume_size: Option<u64>,
    ) -> Result<ArchiveWriter, ArchiveError> {
        let frames = FrameWriter {
            state: State::Raw(Counting {
                inner: VolumeWriter::create(path, max_volume_size)?,
                pos: 0,
            }),
            compression,
            zstd,
            next_level: None,
            next_size: 0,
            spare: None,
        };
        let mut builder = tar::Builder::new(frames);
        builder.mode(tar::HeaderMode::Deterministic);
        let mut w = ArchiveWriter {
            final_path: path.to_path_buf(),
            builder,
            index: EntryIndex::default(),
            blobs: HashSet::new(),
            files: BTreeMap::new(),
            mtime: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        w.add_json(METADATA_ENTRY, metadata)?;
        Ok(w)
    }

    pub fn add_json<T: serde::Serialize>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), ArchiveError> {
        let data = serde_json::to_vec_pretty(value).expect("serializable");
        self.add_file(name, &data)
    }

    /// Adds a small file (metadata, layout files, upstream manifests).
    pub fn add_file(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.append(name, data.len() as u64, data)?;
        self.files.insert(name.to_string(), Digest::of(data));
        Ok(())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains(digest)
    }

    /// Adds a blob from `reader`; a blob already in the archive is skipped (each blob is
    /// stored once). The reader must verify the digest itself (every source's blob stream
    /// does, so bytes are hashed once); here only the size is enforced, since a short or
    /// long entry would break the tar. `media_type` picks the compression level: layers
    /// that are gzip or zstd already gain nothing from a high level, so they get the fastest.
    pub fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        reader: impl Read,
    ) -> Result<(), ArchiveError> {
        if self.blobs.contains(digest) {
            return Ok(());
        }
        let exact = ExactSize {
            inner: reader,
            remaining: size,
            digest,
        };
        let level = if is_compressed_layer(media_type) {
            FAST_LEVEL.min(self.builder.get_ref().zstd.level)
        } else {
            self.builder.get_ref().zstd.level
        };
        self.builder.get_mut().next_level = Some(level);
        self.append(&blob_entry(digest), size, exact)?;
        self.blobs.insert(digest.clone());
        Ok(())
    }

    fn append(&mut self, name: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
        let path = self.final_path.clone();
        let io_err = |source| ArchiveError::Io {
            path: path.clone(),
            source,
        };
        if self.index.entries.contains_key(name) {
            return Err(ArchiveError::BadEntry {
                path,
                entry: name.to_string(),
                why: "written twice".into(),
            });
        }
        let offset = self.builder.get_ref().pos();
        self.builder.get_mut().next_size = size;
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, name, data)
            .map_err(io_err)?;
        self.builder.get_mut().cut().map_err(io_err)?;
        let length = self.builder.get_ref().pos() - offset;
        self.index.entries.insert(
            name.to_string(),
            IndexEntry {
                offset,
                length,
                size,
            },
        );
        Ok(())
    }

    /// Ends the tar, writes the footer index, syncs, and renames into place. Returns the
    /// first (or only) file.
    pub fn finish(self) -> Result<PathBuf, ArchiveError> {
        Ok(self.finish_volumes()?.swap_remove(0))
    }

    /// [`ArchiveWriter::finish`], returning every volume written, in order.
    pub fn finish_volumes(self) -> Result<Vec<PathBuf>, ArchiveError> {
        self.finish_signed(None)
    }

    /// [`ArchiveWriter::finish_volumes`], signed with `key` when given (zstd only: the
    /// signature is in the footer).
    pub fn finish_signed(mut self, key: Option<&SigningKey>) -> Result<Vec<PathBuf>, ArchiveError> {
        if let Some(key) = key {
            if self.builder.get_ref().compression != Compression::Zstd {
                return Err(ArchiveError::Unwritable {
                    what: "a signature".into(),
                    why: "only zstd archives carry one (in their footer)".into(),
                });
            }
            let files = std::mem::take(&mut self.files);
            self.index.signature = Some(key.sign(&Statement::new(&self.index.entries, files)));
        }
        let path = self.final_path.clone();
        let io_err = |source| ArchiveError::Io {
            path: path.clone(),
            source,
        };
        let mut builder = self.builder;
        builder.finish().map_err(io_err)?;
        let mut frames = builder.into_inner().map_err(io_err)?;
        frames.cut().map_err(io_err)?;
        let compression = frames.compression;
        let State::Raw(mut out) = frames.state else {
            unreachable!("cut leaves the writer raw")
        };
        if compression == Compression::Zstd {
            write_footer(&mut out, &self.index).map_err(io_err)?;
        }
        out.inner.finish()
    }
}

/// The footer: a zstd skippable frame whose payload is the JSON entry index followed by its
/// length (u64 LE) and [`FOOTER_MAGIC`], so a reader finds it from the end of the file.
fn write_footer(out: &mut impl Write, index: &EntryIndex) -> io::Result<()> {
    let json = serde_json::to_vec(index).expect("serializable");
    let payload_len = json.len() + 16;
    let frame_size = u32::try_from(payload_len)
        .map_err(|_| io::Error::other("entry index larger than 4 GiB"))?;
    out.write_all(&FOOTER_FRAME_MAGIC.to_le_bytes())?;
    out.write_all(&frame_size.to_le_bytes())?;
    out.write_all(&json)?;
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(FOOTER_MAGIC)?;
    Ok(())
}

struct Counting<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Out = Counting<VolumeWriter>;

/// One reused compression context (and its worker threads) for every frame.
type Encoder = zstd::stream::raw::Encoder<'static>;

enum State {
    Raw(Out),
    Frame(zstd::stream::zio::Writer<Out, Encoder>),
    /// Only while switching, or after a failed frame end.
    Broken,
}

/// Tar bytes go through here; [`FrameWriter::cut`] ends the current zstd frame so the next
/// entry starts a new, independently decodable one.
struct FrameWriter {
    state: State,
    compression: Compression,
    zstd: ZstdOptions,
    /// Level of the next frame only (then back to `zstd.level`).
    next_level: Option<i32>,
    /// Size of the next entry's content: small ones are compressed on one thread.
    next_size: u64,
    /// The context between frames, reset for the next one.
    spare: Option<Encoder>,
}

impl FrameWriter {
    /// Position in the file (compressed bytes), valid between frames.
    fn pos(&self) -> u64 {
        match &self.state {
            State::Raw(o) => o.pos,
            State::Frame(e) => e.writer().pos,
            State::Broken => 0,
        }
    }

    fn cut(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Broken) {
            State::Frame(mut frame) => {
                frame.finish()?;
                let (out, enc) = frame.into_inner();
                self.state = State::Raw(out);
                self.spare = Some(enc);
            }
            other => self.state = other,
        }
        Ok(())
    }

    fn sink(&mut self) -> io::Result<&mut dyn Write> {
        if self.compression == Compression::Zstd {
            if let State::Raw(_) = self.state {
                let State::Raw(out) = std::mem::replace(&mut self.state, State::Broken) else {
                    unreachable!()
                };
                let level = self.next_level.take().unwrap_or(self.zstd.level);
                let workers = if self.next_size >= MULTITHREAD_MIN && self.zstd.workers > 1 {
                    self.zstd.workers
                } else {
                    0
                };
                let mut enc = match self.spare.take() {
                    Some(mut enc) => {
                        zstd::stream::raw::Operation::reinit(&mut enc)?;
                        enc
                    }
                    None => Encoder::new(level)?,
                };
                use zstd::stream::raw::CParameter;
                enc.set_parameter(CParameter::CompressionLevel(level))?;
                enc.set_parameter(CParameter::ChecksumFlag(true))?;
                enc.set_parameter(CParameter::NbWorkers(workers))?;
                self.state = State::Frame(zstd::stream::zio::Writer::new(out, enc));
            }
        }
        match &mut self.state {
            State::Raw(o) => Ok(o),
            State::Frame(e) => Ok(e),
            State::Broken => Err(io::Error::other(
                "archive writer is broken by an earlier error",
            )),
        }
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            State::Raw(o) => o.flush(),
            State::Frame(e) => e.flush(),
            State::Broken => Ok(()),
        }
    }
}

/// Yields exactly `remaining` bytes or fails: the tar header already promised that size.
struct ExactSize<'a, R> {
    inner: R,
    remaining: u64,
    digest: &'a Digest,
}

impl<R: Read> Read for ExactSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One probe byte: a source with more data than declared is an error, not a cut.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {} is longer than its descriptor says", self.digest),
                )),
            };
        }
        let cap = buf
            .len()
            .min(self.remaining.try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob {} ended {} bytes early", self.digest, self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
