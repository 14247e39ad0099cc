//! Reads an `.airgap` archive in place: the metadata from the head, any entry by seeking to
//! it (zstd frame or tar offset), and a full sequential verification pass. Nothing is ever
//! extracted to disk, and nothing in the file is trusted before it is checked. Every path
//! reads tar headers with [`super::tar_header`], so all of them see the same entries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};

use super::tar_header::{padding, read_header, Header, HeaderError, Next, BLOCK};
use super::volumes::{volume_path, Volumes};
use super::{
    blob_entry, check_entry_name, ArchiveError, Compression, EntryIndex, ImageRecord, IndexEntry,
    Metadata, FOOTER_FRAME_MAGIC, FOOTER_MAGIC, FORMAT, MAX_BLOBS, MAX_IMAGES, MAX_JSON_ENTRY,
    MAX_UPSTREAM_FILES, METADATA_ENTRY, REF_NAME_ANNOTATION, UPSTREAM_DIR,
};
use crate::digest::{Digest, Hasher, VerifyingReader};
use crate::names;
use crate::reference::Reference;
use crate::upstream::ManifestFile;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const READ_BUFFER: usize = 1 << 20;
/// A footer index larger than this is not one we wrote.
const MAX_FOOTER: u64 = 256 * 1024 * 1024;
/// Zero bytes accepted after the tar's first end-of-archive block (the second block, plus
/// padding: tar writers pad to 10 KiB records).
const TRAILER_LIMIT: u64 = 20 * 1024;
/// The zstd frame(s) holding the end-of-archive blocks are a few dozen bytes.
const MAX_END_FRAME: u64 = 64 * 1024;
/// Nesting of indexes inside indexes accepted (real images have one level).
const MAX_MANIFEST_DEPTH: usize = 8;

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

/// What a stretch of the tar walk found (entry names) and where it ended.
type Walked<R> = Result<(HashSet<String>, u64, R), ArchiveError>;
/// A walked stretch of a parallel verify: the names found and where it ended.
type Stretch = Result<(HashSet<String>, u64), ArchiveError>;

/// What one step of the tar walk found.
enum Step {
    Entry(String),
    Directory,
    End,
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

    /// The index must be plausible before we seek by it: names allowed, ranges inside the
    /// tar and not overlapping (in a zstd archive, one frame after the other from the first
    /// byte, then only the end-of-archive frame), blobs of the metadata all present with
    /// their sizes, the upstream entries exactly the metadata's upstream files.
    fn check_index(&self) -> Result<(), ArchiveError> {
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
    fn check_end_frame(&self, at: u64) -> Result<(), ArchiveError> {
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

    /// Reads the whole file once, front to back, the way `tar` and skopeo read it: every
    /// entry must be where the index says (offset and length, so what a seek by the index
    /// reads is what the walk reads), every blob and upstream file must match its digest.
    /// Then checks the layout and the metadata against what was found. Calls `progress`
    /// with the bytes of blob content read so far. Uses every core: see [`Self::verify_with`].
    pub fn verify(&self, progress: impl Fn(u64) + Sync) -> Result<VerifySummary, ArchiveError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.verify_with(threads, progress)
    }

    /// [`Self::verify`] on `threads` threads. The walk is cut at entries the index names
    /// into stretches that are walked at once, each from its first entry's offset (every
    /// entry is its own zstd frame, so each decodes on its own) to the next stretch's
    /// start, where it must land exactly. Together the stretches are the one front-to-back
    /// walk. When a stretch fails, the walk is done again in order from that stretch's
    /// start (everything before it passed), so the error is the one a single walk finds.
    pub fn verify_with(
        &self,
        threads: usize,
        progress: impl Fn(u64) + Sync,
    ) -> Result<VerifySummary, ArchiveError> {
        if self.volumes.count() > 1 {
            return self.verify_volumes(progress);
        }
        let cuts = self.stretches(threads.max(1));
        let read = std::sync::atomic::AtomicU64::new(0);
        let report = |n: u64| {
            let total = read.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            progress(total);
        };
        let results: Vec<std::sync::Mutex<Option<Stretch>>> =
            cuts.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        // The first stretch that failed: later ones are not started.
        let failed = std::sync::atomic::AtomicUsize::new(usize::MAX);
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1).min(cuts.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= cuts.len() || i > failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let stop = cuts.get(i + 1).copied();
                    let walked = self
                        .open_at(cuts[i])
                        .and_then(|f| {
                            self.walk_stretch(f, cuts[i], stop, HashSet::new(), i == 0, &report)
                        })
                        .map(|(names, pos, _)| (names, pos));
                    let ok = matches!(&walked, Ok((_, pos)) if stop.is_none_or(|s| *pos == s));
                    if !ok {
                        failed.fetch_min(i, std::sync::atomic::Ordering::Relaxed);
                    }
                    *results[i].lock().expect("verify lock") = Some(walked);
                });
            }
        });
        let failed = failed.into_inner();
        let mut seen: HashSet<String> = HashSet::new();
        for r in results.into_iter().take(failed.min(cuts.len())) {
            let (names, _) = r
                .into_inner()
                .expect("verify lock")
                .expect("every stretch before a failure was walked")?;
            seen.extend(names);
        }
        if failed != usize::MAX {
            // Again, in order, from the stretch that failed to the end.
            let file = self.open_at(cuts[failed])?;
            let (names, _, _) =
                self.walk_stretch(file, cuts[failed], None, seen, failed == 0, &report)?;
            seen = names;
        }
        self.index_all_seen(&seen)?;
        self.check_layout()
    }

    /// Every tar entry was matched to the index by the walk; now the other way round.
    fn index_all_seen(&self, seen: &HashSet<String>) -> Result<(), ArchiveError> {
        match self.index.entries.keys().find(|n| !seen.contains(*n)) {
            Some(name) => {
                Err(self.bad_index(format!("entry {name:?} is in the index but not in the tar")))
            }
            None => Ok(()),
        }
    }

    /// A multi-volume archive is walked once, front to back, each volume's content hashed
    /// on the way and checked against its trailer; a damaged volume is named, rather than
    /// only the entry found damaged in it.
    fn verify_volumes(&self, progress: impl Fn(u64) + Sync) -> Result<VerifySummary, ArchiveError> {
        // The walk reports increments; the caller wants bytes so far.
        let read = std::sync::atomic::AtomicU64::new(0);
        let progress = |n: u64| {
            progress(read.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n);
        };
        let walked = self
            .walk_stretch(
                self.volumes.reader().hashing(),
                0,
                None,
                HashSet::new(),
                true,
                &progress,
            )
            .and_then(|(seen, _, mut file)| {
                self.index_all_seen(&seen)?;
                let hashes = file.finish_hashes().map_err(self.io_err())?;
                self.volumes
                    .check_hashes(hashes.expect("read front to back"))?;
                self.check_layout()
            });
        match walked {
            Err(e) if e.is_corrupt() => {
                for path in self.volumes.paths().skip(1) {
                    Volumes::check_one(path)?;
                }
                let mut r = self.volumes.reader().hashing();
                if let Ok(Some(h)) = r.finish_hashes() {
                    self.volumes.check_hashes(h)?;
                }
                Err(e)
            }
            other => other,
        }
    }

    /// The archive (across its volumes), positioned at `offset`.
    fn open_at(&self, offset: u64) -> Result<super::volumes::VolumeReader, ArchiveError> {
        let mut file = self.volumes.reader();
        file.seek(SeekFrom::Start(offset)).map_err(self.io_err())?;
        Ok(file)
    }

    /// Where the stretches of a parallel walk start: 0, then entry offsets about evenly
    /// apart (a few stretches per thread, so one slow stretch does not hold the rest), none
    /// shorter than 16 MiB.
    fn stretches(&self, threads: usize) -> Vec<u64> {
        const MIN_STRETCH: u64 = 16 << 20;
        let mut offsets: Vec<u64> = self.index.entries.values().map(|e| e.offset).collect();
        offsets.sort_unstable();
        offsets.dedup();
        let want = (self.body_end / (threads as u64 * 4)).max(MIN_STRETCH);
        let mut cuts = vec![0];
        if threads == 1 {
            return cuts;
        }
        for o in offsets {
            // The last stretch ends at the end of the tar, so keep it long enough too.
            if o >= cuts[cuts.len() - 1] + want && o + MIN_STRETCH <= self.body_end {
                cuts.push(o);
            }
        }
        cuts
    }

    /// Walks `file`, positioned at `start` (an entry's offset, or 0), to `stop` (the next
    /// stretch's start), or with no `stop` to the end of the tar. Returns the names found
    /// (added to `seen`), where the walk ended, and the file.
    fn walk_stretch<R: Read>(
        &self,
        file: R,
        start: u64,
        stop: Option<u64>,
        mut seen: HashSet<String>,
        first: bool,
        report: &(dyn Fn(u64) + Sync),
    ) -> Walked<R> {
        let mut src = Counted {
            inner: BufReader::with_capacity(READ_BUFFER, file),
            pos: start,
        };
        let mut blob_bytes = 0u64;
        let mut reported = 0u64;
        let mut progress = |n: u64| {
            report(n - reported);
            reported = n;
        };
        // Only the walk from the start checks that the first file is the metadata.
        let mut first = first;
        loop {
            if stop.is_some_and(|s| src.pos >= s) {
                return Ok((seen, src.pos, src.inner.into_inner()));
            }
            let start = src.pos;
            let step = match self.compression {
                Compression::Zstd => {
                    if start >= self.body_end {
                        return Err(
                            self.bad("(end of tar)", "no end-of-archive blocks before the footer")
                        );
                    }
                    let mut frame = zstd::stream::read::Decoder::with_buffer(&mut src)
                        .map_err(self.io_err())?
                        .single_frame();
                    let step = self.verify_step(
                        &mut frame,
                        start,
                        &seen,
                        first,
                        &mut blob_bytes,
                        &mut progress,
                    )?;
                    if let Step::Entry(name) = &step {
                        let mut probe = [0u8; 1];
                        match frame.read(&mut probe) {
                            Ok(0) => {}
                            Ok(_) => return Err(self.bad(name, FRAME_TOO_LONG)),
                            Err(e) => return Err(self.bad(name, e.to_string())),
                        }
                    }
                    step
                }
                Compression::None => self.verify_step(
                    &mut src,
                    start,
                    &seen,
                    first,
                    &mut blob_bytes,
                    &mut progress,
                )?,
            };
            match step {
                Step::Entry(name) => {
                    let length = src.pos - start;
                    let e = self.index.entries[&name];
                    if e.length != length {
                        return Err(self.bad(
                            &name,
                            format!(
                                "the tar walk finds it {length} bytes long, the index says {}",
                                e.length
                            ),
                        ));
                    }
                    seen.insert(name);
                    first = false;
                }
                Step::Directory => {}
                // A stretch that meets the end before its stop did not land there.
                Step::End if stop.is_some() => return Ok((seen, u64::MAX, src.inner.into_inner())),
                Step::End => break,
            }
        }
        if self.compression == Compression::Zstd && src.pos != self.body_end {
            return Err(self.bad("(end of tar)", "data after the end of the archive"));
        }
        Ok((seen, src.pos, src.inner.into_inner()))
    }

    /// One entry of the tar walk: header, data (hashed), padding; or the end blocks and the
    /// zeros after them.
    fn verify_step(
        &self,
        stream: &mut dyn Read,
        start: u64,
        seen: &HashSet<String>,
        first: bool,
        blob_bytes: &mut u64,
        progress: &mut impl FnMut(u64),
    ) -> Result<Step, ArchiveError> {
        let h: Header = match read_header(stream) {
            Ok(Next::Entry(h)) => h,
            Ok(Next::End) => {
                // Only zeros may follow (a few KiB at most): data hidden there, or a frame
                // that inflates without end, is refused without reading it all.
                let mut rest = Vec::new();
                stream
                    .take(TRAILER_LIMIT + 1)
                    .read_to_end(&mut rest)
                    .map_err(|e| self.bad("(end of tar)", e.to_string()))?;
                if rest.len() as u64 > TRAILER_LIMIT || rest.iter().any(|&b| b != 0) {
                    return Err(self.bad("(end of tar)", "data after the end of the archive"));
                }
                if (rest.len() as u64) < BLOCK {
                    return Err(self.bad(
                        "(end of tar)",
                        "truncated: one end-of-archive block instead of two",
                    ));
                }
                return Ok(Step::End);
            }
            Ok(Next::Eof) => {
                return Err(match self.compression {
                    Compression::Zstd => self.bad(
                        "(tar)",
                        format!("the zstd frame at byte {start} holds no tar data"),
                    ),
                    Compression::None => self.bad(
                        "(end of tar)",
                        "truncated: the tar ends without its end-of-archive blocks",
                    ),
                });
            }
            Err(HeaderError::Bad { entry, why }) => return Err(self.bad(&entry, why)),
            Err(HeaderError::Io(e)) => {
                return Err(self.bad(
                    "(tar)",
                    format!("unreadable after {} entries: {}", seen.len(), io_why(&e)),
                ))
            }
        };
        let name = h.name;
        if h.kind.is_dir() {
            names::relative_path(&name).map_err(|why| self.bad(&name, why.to_string()))?;
            return Ok(Step::Directory);
        }
        if !h.kind.is_file() {
            return Err(self.bad(
                &name,
                format!("is a {:?}, only regular files are allowed", h.kind),
            ));
        }
        check_entry_name(&name).map_err(|why| self.bad(&name, why))?;
        if first && seen.is_empty() && name != METADATA_ENTRY {
            return Err(self.bad(&name, format!("the first entry must be {METADATA_ENTRY}")));
        }
        if seen.contains(&name) {
            return Err(self.bad(&name, "appears twice"));
        }
        // Checked before reading, so a header that claims a huge size (a zstd bomb, say)
        // costs nothing: no entry is read past what the index and metadata declare.
        let size = h.size;
        match self.index.entries.get(&name) {
            None => return Err(self.bad(&name, "is in the tar but not in the index")),
            Some(e) if e.size != size => {
                return Err(self.bad(
                    &name,
                    format!("tar header says {size} bytes, index says {}", e.size),
                ))
            }
            Some(e) if e.offset != start => {
                return Err(self.bad(
                    &name,
                    format!(
                        "the tar walk finds it at byte {start}, the index at byte {}",
                        e.offset
                    ),
                ))
            }
            Some(_) => {}
        }
        let expected: Option<Digest> = if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            Some(format!("sha256:{hex}").parse().expect("checked name"))
        } else {
            name.strip_prefix(UPSTREAM_DIR)
                .and_then(|p| self.metadata.upstream_digests.get(p))
                .cloned()
        };
        let is_blob = name.starts_with("blobs/");
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut data = stream.take(size);
        loop {
            let n = data
                .read(&mut buf)
                .map_err(|e| self.bad(&name, e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if is_blob {
                *blob_bytes += n as u64;
                progress(*blob_bytes);
            }
        }
        if hasher.len() != size {
            return Err(self.bad(
                &name,
                format!("truncated: {} of {size} bytes", hasher.len()),
            ));
        }
        let actual = hasher.finish();
        if let Some(expected) = expected {
            if actual != expected {
                return Err(self.bad(
                    &name,
                    format!("content has digest {actual}, expected {expected}"),
                ));
            }
        }
        let mut pad = Vec::new();
        stream
            .take(padding(size))
            .read_to_end(&mut pad)
            .map_err(|e| self.bad(&name, e.to_string()))?;
        if pad.len() as u64 != padding(size) {
            return Err(self.bad(&name, "truncated in its padding"));
        }
        if pad.iter().any(|&b| b != 0) {
            return Err(self.bad(&name, "data hidden in the padding after its content"));
        }
        Ok(Step::Entry(name))
    }

    /// Everything but the layers' content: every image of the metadata is in `index.json`
    /// and the other way round, every manifest's references are present with the sizes its
    /// descriptors give, and every upstream file matches its header and digest. Linear in
    /// the number of images and blobs; each manifest is read once however many images share
    /// it.
    pub fn check_layout(&self) -> Result<VerifySummary, ArchiveError> {
        let meta = &self.metadata;
        let index = self.oci_index()?;
        if index.manifests().len() > MAX_IMAGES {
            return Err(self.bad(
                "index.json",
                format!(
                    "{} manifests (an archive holds at most {MAX_IMAGES} images)",
                    index.manifests().len()
                ),
            ));
        }
        // (digest, ref name) -> size, once per distinct pair.
        let mut listed: HashMap<(String, String), u64> = HashMap::new();
        for d in index.manifests() {
            let name = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let key = (d.digest().to_string(), name);
            if let Some(&size) = listed.get(&key) {
                if size != d.size() {
                    return Err(self.bad(
                        "index.json",
                        format!("{} ({}) is listed twice with different sizes", key.1, key.0),
                    ));
                }
            }
            listed.insert(key, d.size());
        }
        let mut matched = 0usize;
        let mut reachable = HashSet::new();
        let omitted = super::differential::omitted_sizes(meta);
        for image in &meta.images {
            let name = image.reference.to_string();
            let key = (image.digest.to_string(), name.clone());
            let Some(&size) = listed.get(&key) else {
                return Err(self.bad_metadata(format!(
                    "image {name} ({}) is not in index.json",
                    image.digest
                )));
            };
            matched += 1;
            let Some(stored) = self.index.entries.get(&blob_entry(&image.digest)) else {
                return Err(
                    self.bad_metadata(format!("image {name}: blob {} is missing", image.digest))
                );
            };
            if stored.size != size {
                return Err(self.bad_metadata(format!(
                    "image {name}: index.json says its manifest {} is {size} bytes, the \
                     archive holds {}",
                    image.digest, stored.size
                )));
            }
            self.walk(
                &image.digest,
                &image.media_type,
                0,
                &mut reachable,
                &omitted,
            )
            .map_err(|why| self.bad_metadata(format!("image {name}: {why}")))?;
        }
        if matched != listed.len() {
            let images: HashSet<(String, String)> = meta
                .images
                .iter()
                .map(|i| (i.digest.to_string(), i.reference.to_string()))
                .collect();
            if let Some((d, n)) = listed.keys().find(|k| !images.contains(*k)) {
                return Err(self.bad(
                    "index.json",
                    format!("lists {n:?} ({d}), which the metadata does not"),
                ));
            }
        }
        // The app's files are small and are what import writes: read and checked here too,
        // so import refuses a bad one before it pushes anything.
        self.upstream_files()?;
        Ok(VerifySummary {
            images: meta.images.len(),
            blobs: meta.blobs.len(),
            bytes: meta.total_size,
        })
    }

    /// Follows a manifest or index down to its blobs, checking each is stored with the size
    /// its descriptor gives (a wrong size would otherwise verify, then fail the push).
    fn walk(
        &self,
        digest: &Digest,
        media_type: &str,
        depth: usize,
        seen: &mut HashSet<Digest>,
        omitted: &HashMap<&Digest, u64>,
    ) -> Result<(), String> {
        if !seen.insert(digest.clone()) {
            return Ok(());
        }
        if depth > MAX_MANIFEST_DEPTH {
            return Err(format!("indexes nested deeper than {MAX_MANIFEST_DEPTH}"));
        }
        let children = manifest_children(
            media_type,
            &self.read_blob(digest).map_err(|e| e.to_string())?,
        )?;
        for (d, mt, size) in children {
            let Some(stored) = self.index.entries.get(&blob_entry(&d)) else {
                // A differential archive names what it leaves out, and the registry must
                // hold it (import checks); manifests are never left out.
                match omitted.get(&d) {
                    Some(&o) if o == size && !is_manifest_type(&mt) => continue,
                    Some(&o) if o != size => {
                        return Err(format!(
                            "{digest} says blob {d} is {size} bytes, the differential record {o}"
                        ))
                    }
                    _ => return Err(format!("blob {d} (referenced by {digest}) is missing")),
                }
            };
            if stored.size != size {
                return Err(format!(
                    "{digest} says blob {d} is {size} bytes, the archive holds {}",
                    stored.size
                ));
            }
            if is_manifest_type(&mt) {
                self.walk(&d, &mt, depth + 1, seen, omitted)?;
            } else {
                seen.insert(d);
            }
        }
        Ok(())
    }
}

fn io_why(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated".to_string()
    } else {
        e.to_string()
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

fn detect(path: &Path, volumes: &Volumes) -> Result<Compression, ArchiveError> {
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

fn read_metadata(
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
    if format != FORMAT && format != super::DIFFERENTIAL_FORMAT {
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
    super::differential::check(&meta)?;
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
fn read_footer(path: &Path, volumes: &Volumes) -> Result<(EntryIndex, u64), ArchiveError> {
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
fn scan_tar(path: &Path, volumes: &Volumes) -> Result<(EntryIndex, u64), ArchiveError> {
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
