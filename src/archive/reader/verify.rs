//! The full checks of an open archive: [`ArchiveReader::verify`], one front-to-back walk
//! of every tar header and every byte against its digest (cut into stretches walked on
//! several threads, and volume by volume), and [`ArchiveReader::check_layout`], the
//! metadata, OCI index, manifests and upstream files against each other.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};

use super::super::tar_header::{padding, read_header, Header, HeaderError, Next, BLOCK};
use super::super::volumes::Volumes;
use super::super::{
    blob_entry, check_entry_name, ArchiveError, Compression, MAX_IMAGES, METADATA_ENTRY,
    UPSTREAM_DIR,
};
use super::{io_why, ArchiveReader, Counted, FRAME_TOO_LONG, READ_BUFFER, TRAILER_LIMIT};
use crate::digest::{Digest, Hasher};
use crate::manifest::{is_manifest_type, manifest_children, REF_NAME_ANNOTATION};
use crate::names;

/// Nesting of indexes inside indexes accepted (real images have one level).
const MAX_MANIFEST_DEPTH: usize = 8;

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
    fn open_at(&self, offset: u64) -> Result<super::super::volumes::VolumeReader, ArchiveError> {
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
        let omitted = super::super::differential::omitted_sizes(meta);
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

/// What `verify` checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}
