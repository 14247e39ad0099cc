//! Checking one volume file on its own, as soon as it is copied: its trailer, its piece
//! against the sha256 the trailer records, its name against its number, and the file
//! against what the first volume records of it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::super::ArchiveError;
use super::{open_file, split_volume_name, trailer_of, volume_err, Volumes};
use crate::digest::Hasher;

/// What checking one volume on its own found.
#[derive(Debug, Clone)]
pub struct VolumeCheck {
    pub volume: u32,
    pub volumes: u32,
    pub size: u64,
    /// The first volume that recorded this one's sha256, when it was beside it and checked.
    pub checked_against: Option<PathBuf>,
}

impl Volumes {
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
