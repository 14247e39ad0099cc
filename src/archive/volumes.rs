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
//!
//! This file holds the format and the reading side; [`writer`] writes a set, [`check`]
//! checks one volume on its own.

mod check;
mod writer;

pub use check::VolumeCheck;
pub use writer::VolumeWriter;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
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
mod tests;
