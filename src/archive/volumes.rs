//! The archive's files: one `.airgap` file, or a set of volumes (`APP.airgap`,
//! `APP.airgap.002`, ...) for removable media with a file size limit (FAT32: 4 GB).
//!
//! A volume set is the one archive byte stream (exactly what a single file would hold, footer
//! included) cut into pieces; each volume is its piece followed by a *volume trailer* saying
//! which set and which volume it is, where its piece sits in the stream and the piece's
//! sha256, so each volume can be checked on its own as soon as it is copied. The first
//! volume's trailer, written last, also records the size and sha256 of every other volume
//! file. Readers see the set through [`VolumeReader`], a `Read + Seek` over the stream that
//! opens each volume in place: nothing is concatenated or copied. Format:
//! `bundle-format/README.md`, section 7.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ArchiveError;
use crate::digest::{Digest, Hasher};

/// Last 8 bytes of a volume of a multi-volume archive.
pub const VOLUME_MAGIC: &[u8; 8] = b"KBNDLVOL";
/// The `format` of a volume trailer.
pub const VOLUME_FORMAT: &str = "kots-bundle.volume/v1";
/// Most volumes in a set (names end `.002` to `.999`).
pub const MAX_VOLUMES: u32 = 999;
/// Bytes kept free at the end of the first volume for its trailer (which lists every
/// other volume), and of the others for theirs.
const FIRST_RESERVE: u64 = 1024 + 160 * (MAX_VOLUMES as u64 - 1);
const OTHER_RESERVE: u64 = 1024;
/// The smallest `--max-volume-size` accepted.
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;
/// A trailer larger than this is not one we wrote.
const MAX_TRAILER: u64 = 1 << 20;
const WRITE_BUFFER: usize = 1 << 20;

/// The trailer at the end of each volume (JSON, then its length as u64 LE, then
/// [`VOLUME_MAGIC`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTrailer {
    pub format: String,
    /// Random, the same in every volume of one export: a volume of another export is told
    /// apart even when it has the same name and size.
    pub set: String,
    /// 1-based.
    pub volume: u32,
    pub volumes: u32,
    /// Where this volume's piece starts in the archive stream, and its length.
    pub offset: u64,
    pub length: u64,
    /// sha256 of the piece (the volume file without its trailer).
    pub sha256: Digest,
    /// First volume only: every other volume file, whole (what `sha256sum` prints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<VolumeFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    pub volume: u32,
    pub size: u64,
    pub sha256: Digest,
}

/// The file name of volume `n` (1-based) of the set whose first volume is `first`.
pub fn volume_path(first: &Path, n: u32) -> PathBuf {
    if n == 1 {
        return first.to_path_buf();
    }
    let mut s = first.as_os_str().to_owned();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

/// `APP.airgap.002` -> (`APP.airgap`, 2); `None` for a name without a volume suffix.
pub fn split_volume_name(path: &Path) -> Option<(PathBuf, u32)> {
    let s = path.to_str()?;
    let (base, num) = s.rsplit_once('.')?;
    if num.len() != 3 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = num.parse().ok()?;
    (n >= 2).then(|| (PathBuf::from(base), n))
}

fn trailer_bytes(t: &VolumeTrailer) -> Vec<u8> {
    let mut out = serde_json::to_vec(t).expect("serializable");
    let len = out.len() as u64;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(VOLUME_MAGIC);
    out
}

/// Reads the trailer of `file` (of `len` bytes), if it has one: `Ok(None)` when the file does
/// not end with [`VOLUME_MAGIC`] (a single-file archive), an error when it does but the
/// trailer is unreadable.
pub fn read_trailer(file: &mut File, len: u64) -> io::Result<Option<(VolumeTrailer, u64)>> {
    if len < 16 {
        return Ok(None);
    }
    let mut tail = [0u8; 16];
    file.seek(SeekFrom::Start(len - 16))?;
    file.read_exact(&mut tail)?;
    if &tail[8..] != VOLUME_MAGIC {
        return Ok(None);
    }
    let json_len = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if json_len > MAX_TRAILER || json_len + 16 > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "volume trailer length is implausible",
        ));
    }
    let mut json = vec![0u8; json_len as usize];
    file.seek(SeekFrom::Start(len - 16 - json_len))?;
    file.read_exact(&mut json)?;
    let t: VolumeTrailer = serde_json::from_slice(&json).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("volume trailer unreadable: {e}"),
        )
    })?;
    if t.format != VOLUME_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "volume trailer format {:?} is not supported by this kots-bundle (reads \
                 {VOLUME_FORMAT}); upgrade kots-bundle",
                t.format
            ),
        ));
    }
    if t.volume == 0 || t.volume > t.volumes || t.volumes > MAX_VOLUMES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("volume trailer says volume {} of {}", t.volume, t.volumes),
        ));
    }
    Ok(Some((t, json_len + 16)))
}

// ---------------------------------------------------------------------------------------
// Writing

struct Partial {
    tmp: tempfile::TempPath,
    /// Held (and locked) until the set is complete, so another export can tell a live
    /// partial from one a killed run left behind.
    out: BufWriter<File>,
    len: u64,
    sha: Hasher,
}

/// Where the archive writer's bytes go: one file, or volumes of at most `max` bytes each.
/// Nothing appears under the final names before [`VolumeWriter::finish`].
pub struct VolumeWriter {
    first: PathBuf,
    dir: PathBuf,
    file_name: String,
    max: Option<u64>,
    done: Vec<Partial>,
    current: Partial,
}

impl VolumeWriter {
    pub fn create(path: &Path, max: Option<u64>) -> Result<VolumeWriter, ArchiveError> {
        if let Some(m) = max {
            if m < MIN_VOLUME_SIZE {
                return Err(ArchiveError::Unwritable {
                    what: format!("volumes of {m} bytes"),
                    why: format!("a volume is at least {MIN_VOLUME_SIZE} bytes"),
                });
            }
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle.airgap".into());
        remove_stale_partials(&dir, &format!(".{file_name}."), ".partial");
        let current = new_partial(path, &dir, &file_name)?;
        Ok(VolumeWriter {
            first: path.to_path_buf(),
            dir,
            file_name,
            max,
            done: Vec::new(),
            current,
        })
    }

    fn limit(&self) -> Option<u64> {
        let reserve = if self.done.is_empty() {
            FIRST_RESERVE
        } else {
            OTHER_RESERVE
        };
        self.max.map(|m| m - reserve)
    }

    fn next_volume(&mut self) -> io::Result<()> {
        if self.done.len() as u32 + 1 >= MAX_VOLUMES {
            return Err(io::Error::other(format!(
                "the archive needs more than {MAX_VOLUMES} volumes; give a larger \
                 --max-volume-size"
            )));
        }
        let n = self.done.len() as u32 + 2;
        let name = format!("{}.{n:03}", self.file_name);
        let next = new_partial(&self.first, &self.dir, &name).map_err(io::Error::other)?;
        let mut prev = std::mem::replace(&mut self.current, next);
        // Flushed, and its 1 MiB buffer freed: memory does not grow with the volume count.
        let file = prev.out.into_inner().map_err(|e| e.into_error())?;
        prev.out = BufWriter::with_capacity(0, file);
        self.done.push(prev);
        Ok(())
    }

    /// Ends the archive: writes the volume trailers (the first volume's last, with every
    /// other volume's size and sha256), syncs every file and renames them into place, the
    /// first volume last. Returns the files written, in order.
    pub fn finish(self) -> Result<Vec<PathBuf>, ArchiveError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Io {
                path: path.clone(),
                source,
            }
        };
        let mut parts = self.done;
        parts.push(self.current);
        let count = parts.len() as u32;
        let paths: Vec<PathBuf> = (1..=count).map(|n| volume_path(&self.first, n)).collect();
        if count > 1 {
            let mut set = [0u8; 16];
            getrandom::fill(&mut set).map_err(|e| ArchiveError::Io {
                path: self.first.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            let set = hex::encode(set);
            let mut offset = 0u64;
            let mut trailers = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                trailers.push(VolumeTrailer {
                    format: VOLUME_FORMAT.to_string(),
                    set: set.clone(),
                    volume: i as u32 + 1,
                    volumes: count,
                    offset,
                    length: p.len,
                    sha256: p.sha.clone().finish(),
                    others: Vec::new(),
                });
                offset += p.len;
            }
            let mut others = Vec::new();
            for (i, p) in parts.iter_mut().enumerate().skip(1) {
                let bytes = trailer_bytes(&trailers[i]);
                p.out.write_all(&bytes).map_err(io_err(&paths[i]))?;
                let mut whole = p.sha.clone();
                whole.update(&bytes);
                others.push(VolumeFile {
                    volume: i as u32 + 1,
                    size: whole.len(),
                    sha256: whole.finish(),
                });
            }
            trailers[0].others = others;
            let bytes = trailer_bytes(&trailers[0]);
            parts[0].out.write_all(&bytes).map_err(io_err(&paths[0]))?;
        }
        let mut files = Vec::with_capacity(parts.len());
        for (p, path) in parts.into_iter().zip(&paths) {
            let file = p
                .out
                .into_inner()
                .map_err(|e| io_err(path)(e.into_error()))?;
            file.sync_all().map_err(io_err(path))?;
            files.push((p.tmp, file));
        }
        // The first volume last: while it is not there, the set is not either.
        for ((tmp, file), path) in files.into_iter().zip(&paths).rev() {
            tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
            drop(file);
        }
        remove_old_volumes(&self.first, count);
        Ok(paths)
    }
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut take = buf.len();
        if let Some(limit) = self.limit() {
            if self.current.len >= limit {
                self.next_volume()?;
            }
            let limit = self.limit().expect("set");
            take = take.min((limit - self.current.len) as usize);
        }
        let n = self.current.out.write(&buf[..take])?;
        self.current.sha.update(&buf[..n]);
        self.current.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.current.out.flush()
    }
}

fn new_partial(path: &Path, dir: &Path, name: &str) -> Result<Partial, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let (file, tmp) = tmp.into_parts();
    file.try_lock()
        .map_err(|e| io_err(io::Error::other(e.to_string())))?;
    Ok(Partial {
        tmp,
        out: BufWriter::with_capacity(WRITE_BUFFER, file),
        len: 0,
        sha: Hasher::new(),
    })
}

/// Removes partial archives a killed export left beside `dir/<name>` (nobody holds their
/// lock). Another export still writing one keeps it.
fn remove_stale_partials(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(prefix) && name.ends_with(suffix)) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(e.path()) else {
            continue;
        };
        if f.try_lock().is_ok() {
            tracing::info!(path = %e.path().display(), "removing a partial archive a killed export left");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// After writing `count` volumes to `first`: volumes past `count` that an earlier export to
/// the same name left (they end with a volume trailer) would only confuse; removed.
fn remove_old_volumes(first: &Path, count: u32) {
    for n in count.max(1) + 1..=MAX_VOLUMES {
        let path = volume_path(first, n);
        let Ok(mut f) = File::open(&path) else {
            break;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if matches!(read_trailer(&mut f, len), Ok(Some(_))) {
            tracing::info!(path = %path.display(), "removing a volume an earlier export left");
            let _ = std::fs::remove_file(&path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading

#[derive(Debug, Clone)]
struct Piece {
    path: PathBuf,
    /// Offset of the piece in the archive stream.
    start: u64,
    len: u64,
}

/// The files of one archive, opened and checked: a single file, or every volume of a set
/// present, of the recorded size, of this set and in its place.
#[derive(Debug, Clone)]
pub struct Volumes {
    pieces: Arc<[Piece]>,
    /// The first volume's trailer (`None` for a single file).
    first: Option<VolumeTrailer>,
    total: u64,
}

/// What checking one volume on its own found.
#[derive(Debug, Clone)]
pub struct VolumeCheck {
    pub volume: u32,
    pub volumes: u32,
    pub size: u64,
    /// The first volume that recorded this one's sha256, when it was beside it and checked.
    pub checked_against: Option<PathBuf>,
}

fn volume_err(path: &Path, corrupt: bool, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Volume {
        path: path.to_path_buf(),
        why: why.into(),
        corrupt,
    }
}

fn open_file(path: &Path) -> Result<(File, u64), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    Ok((f, len))
}

fn trailer_of(
    path: &Path,
    f: &mut File,
    len: u64,
) -> Result<Option<(VolumeTrailer, u64)>, ArchiveError> {
    read_trailer(f, len).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => volume_err(path, true, e.to_string()),
        _ => ArchiveError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

impl Volumes {
    /// Opens `path`: a single-file archive as it is; the first volume of a set with every
    /// other volume, each checked (present, size, set, number, place in the stream) by its
    /// trailer, without reading its content. Naming another volume of a set is an error
    /// that names the first.
    pub fn open(path: &Path) -> Result<Volumes, ArchiveError> {
        let (mut f, len) = open_file(path)?;
        let Some((first, tlen)) = trailer_of(path, &mut f, len)? else {
            return Ok(Volumes {
                pieces: vec![Piece {
                    path: path.to_path_buf(),
                    start: 0,
                    len,
                }]
                .into(),
                first: None,
                total: len,
            });
        };
        if first.volume != 1 {
            let hint = split_volume_name(path)
                .map(|(base, _)| format!(" ({})", base.display()))
                .unwrap_or_default();
            return Err(volume_err(
                path,
                false,
                format!(
                    "is volume {} of {}; give the first volume{hint} (or `verify` this one \
                     on its own)",
                    first.volume, first.volumes
                ),
            ));
        }
        if first.offset != 0 || first.length + tlen != len {
            return Err(volume_err(
                path,
                true,
                format!(
                    "volume 1 is {len} bytes, its trailer says {}: truncated or damaged",
                    first.length + tlen
                ),
            ));
        }
        if first.others.len() as u32 + 1 != first.volumes
            || first
                .others
                .iter()
                .enumerate()
                .any(|(i, o)| o.volume != i as u32 + 2)
        {
            return Err(volume_err(
                path,
                true,
                "the first volume's list of volumes is inconsistent",
            ));
        }
        let mut pieces = vec![Piece {
            path: path.to_path_buf(),
            start: 0,
            len: first.length,
        }];
        let mut at = first.length;
        for rec in &first.others {
            let vpath = volume_path(path, rec.volume);
            let name = || format!("volume {} ({})", rec.volume, vpath.display());
            let (mut vf, vlen) = match open_file(&vpath) {
                Ok(x) => x,
                Err(ArchiveError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Err(volume_err(
                        path,
                        false,
                        format!(
                            "{} of {} is missing: copy it beside the first volume (`verify \
                             --volume-only` checks one volume alone)",
                            name(),
                            first.volumes
                        ),
                    ))
                }
                Err(e) => return Err(e),
            };
            let t = match trailer_of(&vpath, &mut vf, vlen)? {
                Some((t, tl)) => (t, tl),
                None if vlen < rec.size => {
                    return Err(volume_err(
                        path,
                        true,
                        format!(
                            "{} is truncated: {vlen} bytes, the first volume records {}; copy \
                             it again",
                            name(),
                            rec.size
                        ),
                    ))
                }
                None => {
                    return Err(volume_err(
                        path,
                        true,
                        format!("{} is not a volume of a kots-bundle archive", name()),
                    ))
                }
            };
            let (t, tlen) = t;
            if t.set != first.set {
                return Err(volume_err(
                    path,
                    true,
                    format!(
                        "{} belongs to another export (volume {} of {} of set {}, this set is \
                         {}): swapped with a volume of another archive",
                        name(),
                        t.volume,
                        t.volumes,
                        t.set,
                        first.set
                    ),
                ));
            }
            if t.volume != rec.volume {
                return Err(volume_err(
                    path,
                    true,
                    format!(
                        "{} holds volume {} of this set: volumes renamed or swapped",
                        name(),
                        t.volume
                    ),
                ));
            }
            if vlen != rec.size {
                return Err(volume_err(
                    path,
                    true,
                    format!(
                        "{} is {vlen} bytes, the first volume records {}: truncated or damaged; \
                         copy it again",
                        name(),
                        rec.size
                    ),
                ));
            }
            if t.offset != at || t.length + tlen != vlen || t.volumes != first.volumes {
                return Err(volume_err(
                    path,
                    true,
                    format!("{}: its trailer does not fit the set", name()),
                ));
            }
            pieces.push(Piece {
                path: vpath,
                start: at,
                len: t.length,
            });
            at += t.length;
        }
        Ok(Volumes {
            pieces: pieces.into(),
            first: Some(first),
            total: at,
        })
    }

    /// Which volume `path` is by its trailer (`None`: a single-file archive), reading only
    /// its last bytes.
    pub fn volume_number(path: &Path) -> Result<Option<u32>, ArchiveError> {
        let (mut f, len) = open_file(path)?;
        Ok(trailer_of(path, &mut f, len)?.map(|(t, _)| t.volume))
    }

    /// Bytes in the archive stream.
    pub fn len(&self) -> u64 {
        self.total
    }
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
    /// Number of files (1 for a single-file archive).
    pub fn count(&self) -> usize {
        self.pieces.len()
    }
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.pieces.iter().map(|p| p.path.as_path())
    }

    /// A reader over the archive stream, at its start.
    pub fn reader(&self) -> VolumeReader {
        VolumeReader {
            pieces: self.pieces.clone(),
            pos: 0,
            open: None,
            hashes: None,
        }
    }

    /// The volume holding byte `offset` of the stream, as "volume N (FILE)"; `None` for a
    /// single file.
    pub fn describe(&self, offset: u64) -> Option<String> {
        self.first.as_ref()?;
        let i = self
            .pieces
            .iter()
            .position(|p| offset < p.start + p.len)
            .unwrap_or(self.pieces.len() - 1);
        Some(format!(
            "volume {} ({})",
            i + 1,
            self.pieces[i].path.display()
        ))
    }

    /// After a front-to-back read with [`VolumeReader::hashing`]: each piece against the
    /// sha256 its volume's trailer records; names the first that differs.
    pub fn check_hashes(&self, hashes: Vec<Digest>) -> Result<(), ArchiveError> {
        let Some(first) = &self.first else {
            return Ok(());
        };
        for (i, (piece, actual)) in self.pieces.iter().zip(hashes).enumerate() {
            let expected = if i == 0 {
                first.sha256.clone()
            } else {
                // Checked against its own trailer; its trailer against the first volume's
                // record was checked at open (set, number, size).
                let (mut f, len) = open_file(&piece.path)?;
                trailer_of(&piece.path, &mut f, len)?
                    .expect("checked at open")
                    .0
                    .sha256
            };
            if actual != expected {
                return Err(volume_err(
                    &self.pieces[0].path,
                    true,
                    format!(
                        "volume {} ({}) is damaged: its content has sha256 {actual}, its trailer \
                         records {expected}; copy it again",
                        i + 1,
                        piece.path.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks one volume file on its own: its trailer, its content against the sha256 the
    /// trailer records, its name against its number, and (for volume 2 onwards) the whole
    /// file against the size and sha256 the first volume records, when the first volume is
    /// beside it. Reads the file once.
    pub fn check_one(path: &Path) -> Result<VolumeCheck, ArchiveError> {
        let (mut f, len) = open_file(path)?;
        let Some((t, tlen)) = trailer_of(path, &mut f, len)? else {
            return Err(volume_err(
                path,
                true,
                "has no volume trailer: not a volume of a multi-volume archive, or truncated",
            ));
        };
        if t.length + tlen != len {
            return Err(volume_err(
                path,
                true,
                format!(
                    "is {len} bytes, its trailer says {}: truncated or damaged",
                    t.length + tlen
                ),
            ));
        }
        if let Some((_, n)) = split_volume_name(path) {
            if n != t.volume {
                return Err(volume_err(
                    path,
                    true,
                    format!(
                        "holds volume {} of {}, but its name says volume {n}: renamed or swapped",
                        t.volume, t.volumes
                    ),
                ));
            }
        }
        f.seek(SeekFrom::Start(0))
            .map_err(|source| ArchiveError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut piece = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut r = (&mut f).take(t.length);
        loop {
            let n = r.read(&mut buf).map_err(|source| ArchiveError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if n == 0 {
                break;
            }
            piece.update(&buf[..n]);
        }
        if piece.len() != t.length {
            return Err(volume_err(path, true, "truncated while reading"));
        }
        let mut whole = piece.clone();
        let actual = piece.finish();
        if actual != t.sha256 {
            return Err(volume_err(
                path,
                true,
                format!(
                    "volume {} is damaged: its content has sha256 {actual}, its trailer records \
                     {}; copy it again",
                    t.volume, t.sha256
                ),
            ));
        }
        let mut checked_against = None;
        if t.volume > 1 {
            let first_path = split_volume_name(path).map(|(base, _)| base);
            if let Some(first_path) = first_path.filter(|p| p.exists()) {
                let (mut ff, flen) = open_file(&first_path)?;
                let Some((ft, _)) = trailer_of(&first_path, &mut ff, flen)? else {
                    return Err(volume_err(
                        path,
                        true,
                        format!(
                            "{} beside it is not the first volume of a multi-volume archive",
                            first_path.display()
                        ),
                    ));
                };
                if ft.set != t.set || ft.volume != 1 {
                    return Err(volume_err(
                        path,
                        true,
                        format!(
                            "belongs to another export than {} (set {}, the first volume's is \
                             {}): swapped with a volume of another archive",
                            first_path.display(),
                            t.set,
                            ft.set
                        ),
                    ));
                }
                let mut tail = vec![0u8; tlen as usize];
                f.seek(SeekFrom::Start(t.length))
                    .and_then(|_| f.read_exact(&mut tail))
                    .map_err(|source| ArchiveError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                whole.update(&tail);
                let whole = whole.finish();
                match ft.others.iter().find(|o| o.volume == t.volume) {
                    Some(rec) if rec.size == len && rec.sha256 == whole => {}
                    Some(rec) => {
                        return Err(volume_err(
                            path,
                            true,
                            format!(
                                "is {len} bytes with sha256 {whole}, {} records {} bytes with \
                                 sha256 {}",
                                first_path.display(),
                                rec.size,
                                rec.sha256
                            ),
                        ))
                    }
                    None => {
                        return Err(volume_err(
                            path,
                            true,
                            format!("{} records no volume {}", first_path.display(), t.volume),
                        ))
                    }
                }
                checked_against = Some(first_path);
            }
        }
        Ok(VolumeCheck {
            volume: t.volume,
            volumes: t.volumes,
            size: len,
            checked_against,
        })
    }
}

/// `Read + Seek` over the archive stream of a [`Volumes`]: each read goes to the volume
/// file holding that position (opened on first use), and a read that reaches a volume's end
/// continues in the next.
pub struct VolumeReader {
    pieces: Arc<[Piece]>,
    pos: u64,
    /// The volume open now, and where in it the file's cursor is.
    open: Option<(usize, File, u64)>,
    /// Per-volume sha256 of what was read, while reading front to back from the start.
    hashes: Option<Vec<Hasher>>,
}

impl VolumeReader {
    /// Hashes each volume's piece while the stream is read front to back from its start
    /// (see [`VolumeReader::finish_hashes`]); a seek ends it.
    pub fn hashing(mut self) -> Self {
        if self.pos == 0 {
            self.hashes = Some(Vec::new());
        }
        self
    }

    /// Reads the rest of the stream and returns each volume's sha256, or `None` when the
    /// stream was not read front to back.
    pub fn finish_hashes(&mut self) -> io::Result<Option<Vec<Digest>>> {
        if self.hashes.is_none() {
            return Ok(None);
        }
        let mut buf = vec![0u8; 1 << 20];
        while self.read(&mut buf)? > 0 {}
        Ok(self
            .hashes
            .take()
            .map(|h| h.into_iter().map(Hasher::finish).collect()))
    }
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(i) = self.pieces.iter().position(|p| self.pos < p.start + p.len) else {
            return Ok(0);
        };
        let piece = &self.pieces[i];
        let local = self.pos - piece.start;
        let reopen = !matches!(&self.open, Some((j, _, at)) if *j == i && *at == local);
        if reopen {
            let mut f = match self.open.take() {
                Some((j, f, _)) if j == i => f,
                _ => File::open(&piece.path).map_err(|e| in_volume(&piece.path, e))?,
            };
            f.seek(SeekFrom::Start(local))
                .map_err(|e| in_volume(&piece.path, e))?;
            self.open = Some((i, f, local));
        }
        let (_, f, at) = self.open.as_mut().expect("opened");
        let want = buf.len().min((piece.len - local) as usize);
        let n = f
            .read(&mut buf[..want])
            .map_err(|e| in_volume(&piece.path, e))?;
        if n == 0 && want > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: shorter than when it was opened", piece.path.display()),
            ));
        }
        *at += n as u64;
        if let Some(h) = &mut self.hashes {
            while h.len() <= i {
                h.push(Hasher::new());
            }
            h[i].update(&buf[..n]);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for VolumeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let total = self.pieces.last().map_or(0, |p| p.start + p.len);
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if new != self.pos {
            self.hashes = None;
        }
        self.pos = new;
        Ok(new)
    }
}

fn in_volume(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let first = Path::new("/m/app.airgap");
        assert_eq!(volume_path(first, 1), first);
        assert_eq!(volume_path(first, 2), Path::new("/m/app.airgap.002"));
        assert_eq!(
            split_volume_name(Path::new("/m/app.airgap.010")),
            Some((first.to_path_buf(), 10))
        );
        assert_eq!(split_volume_name(Path::new("/m/app.airgap.001")), None);
        assert_eq!(split_volume_name(first), None);
        assert_eq!(split_volume_name(Path::new("app.airgap.2")), None);
    }

    fn write_set(dir: &Path, data: &[u8], max: u64) -> Vec<PathBuf> {
        let mut w = VolumeWriter::create(&dir.join("a.airgap"), Some(max)).unwrap();
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_set_reads_back_as_one_stream_with_seeks_across_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(3 * MIN_VOLUME_SIZE as usize);
        let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
        assert_eq!(files.len(), 4, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= MIN_VOLUME_SIZE);
        }
        let v = Volumes::open(&files[0]).unwrap();
        assert_eq!(v.len(), d.len() as u64);
        let mut r = v.reader().hashing();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert!(back == d);
        v.check_hashes(r.finish_hashes().unwrap().unwrap()).unwrap();
        // A read that straddles the first boundary.
        let edge = std::fs::metadata(&files[0]).unwrap().len() - FIRST_RESERVE / 2;
        let mut r = v.reader();
        r.seek(SeekFrom::Start(edge - 10)).unwrap();
        let mut buf = vec![0u8; 4000];
        r.read_exact(&mut buf).unwrap();
        assert!(buf[..] == d[edge as usize - 10..edge as usize + 3990]);
        for f in &files[1..] {
            let c = Volumes::check_one(f).unwrap();
            assert_eq!(c.checked_against.as_deref(), Some(files[0].as_path()));
        }
        assert_eq!(Volumes::check_one(&files[0]).unwrap().volume, 1);
    }

    #[test]
    fn what_fits_one_volume_is_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(1000);
        let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
        assert_eq!(files.len(), 1);
        assert!(std::fs::read(&files[0]).unwrap() == d);
    }

    #[test]
    fn missing_truncated_and_swapped_volumes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(2 * MIN_VOLUME_SIZE as usize);
        let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
        assert_eq!(files.len(), 3);
        let other = tempfile::tempdir().unwrap();
        let other_files = write_set(other.path(), &d, MIN_VOLUME_SIZE);

        let keep = std::fs::read(&files[1]).unwrap();
        std::fs::remove_file(&files[1]).unwrap();
        let e = Volumes::open(&files[0]).unwrap_err().to_string();
        assert!(
            e.contains("volume 2") && e.contains("a.airgap.002") && e.contains("missing"),
            "{e}"
        );

        std::fs::write(&files[1], &keep[..keep.len() - 100]).unwrap();
        let e = Volumes::open(&files[0]).unwrap_err().to_string();
        assert!(e.contains("a.airgap.002") && e.contains("truncated"), "{e}");
        let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
        assert!(e.contains("no volume trailer"), "{e}");

        std::fs::copy(&other_files[1], &files[1]).unwrap();
        let e = Volumes::open(&files[0]).unwrap_err().to_string();
        assert!(
            e.contains("a.airgap.002") && e.contains("another export"),
            "{e}"
        );
        let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
        assert!(e.contains("another export"), "{e}");

        std::fs::write(&files[1], &keep).unwrap();
        std::fs::rename(&files[2], dir.path().join("x")).unwrap();
        std::fs::rename(&files[1], &files[2]).unwrap();
        std::fs::rename(dir.path().join("x"), &files[1]).unwrap();
        let e = Volumes::open(&files[0]).unwrap_err().to_string();
        assert!(
            e.contains("a.airgap.002") && e.contains("holds volume 3"),
            "{e}"
        );

        let e = Volumes::open(&files[2]).unwrap_err().to_string();
        assert!(e.contains("is volume 2 of 3"), "{e}");
    }

    #[test]
    fn a_flipped_byte_is_found_in_its_volume() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(2 * MIN_VOLUME_SIZE as usize);
        let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
        let mut bytes = std::fs::read(&files[1]).unwrap();
        bytes[1000] ^= 1;
        std::fs::write(&files[1], &bytes).unwrap();
        let v = Volumes::open(&files[0]).unwrap();
        let mut r = v.reader().hashing();
        let e = v
            .check_hashes(r.finish_hashes().unwrap().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("volume 2") && e.contains("damaged"), "{e}");
        let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
        assert!(Volumes::check_one(&files[2]).is_ok());
    }
}
