//! Writing a volume set: [`VolumeWriter`] cuts the archive stream into volumes as it is
//! written (each a partial file renamed into place once complete, with its trailer), and
//! the first volume's trailer, written last, records every other volume.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::super::ArchiveError;
use super::{
    read_trailer, trailer_bytes, volume_path, VolumeFile, VolumeTrailer, FIRST_RESERVE,
    MAX_VOLUMES, MIN_VOLUME_SIZE, OTHER_RESERVE, VOLUME_FORMAT,
};
use crate::digest::Hasher;

const WRITE_BUFFER: usize = 1 << 20;
/// Writeback of what is written is started every this many bytes, so the disk works while
/// blobs download and the final sync has little left (83 ms of a 248 MiB export's end).
const WRITEBACK_EVERY: u64 = 32 << 20;

struct Partial {
    tmp: tempfile::TempPath,
    /// Held (and locked) until the set is complete, so another export can tell a live
    /// partial from one a killed run left behind.
    out: BufWriter<File>,
    len: u64,
    sha: Hasher,
    /// Bytes up to here have had their writeback started.
    written_back: u64,
}

impl Partial {
    /// Starts (never waits for) the disk write of what reached the file since the last
    /// call, once that is [`WRITEBACK_EVERY`]; durability still comes from the final sync.
    fn start_writeback(&mut self) {
        let in_file = self.len - self.out.buffer().len() as u64;
        if in_file - self.written_back < WRITEBACK_EVERY {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor and a range of it; the call only queues I/O.
            unsafe {
                libc::sync_file_range(
                    self.out.get_ref().as_raw_fd(),
                    self.written_back as libc::off64_t,
                    (in_file - self.written_back) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.written_back = in_file;
    }
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
        self.current.start_writeback();
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
        written_back: 0,
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
