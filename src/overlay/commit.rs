//! All-or-nothing updates of the app directory: new contents are written into
//! `DIR/.kots-bundle/staging-*/new`, then swapped in by renames (the old entry moves to
//! `old/`). A journal in the staging directory lets an interrupted swap be rolled back in
//! process or, after a crash, by [`recover`] at the start of the next write.

use std::path::{Path, PathBuf};

use super::{io, OverlayError, META_DIR};

const JOURNAL: &str = "journal.json";
/// Written once every rename is done: the staging directory is then only garbage.
const COMMITTED: &str = "COMMITTED";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Swap {
    /// Relative to `staging/new`.
    staged: String,
    /// Relative to DIR.
    live: String,
}

pub(crate) struct Transaction {
    dir: PathBuf,
    staging: PathBuf,
    /// Removes the staging directory when the transaction ends, whatever the outcome.
    guard: Option<tempfile::TempDir>,
    swaps: Vec<Swap>,
}

#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// Fail with an error before swap N (rolled back in process).
    FailAt(usize),
    /// Stop before swap N as if the process died (no rollback, staging left behind).
    CrashAt(usize),
}

#[cfg(test)]
thread_local! {
    pub(crate) static FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

impl Transaction {
    pub(crate) fn begin(dir: &Path) -> Result<Transaction, OverlayError> {
        let meta = dir.join(META_DIR);
        let guard = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(&meta)
            .map_err(io("creating a staging directory in", &meta))?;
        let staging = guard.path().to_path_buf();
        let new = staging.join("new");
        std::fs::create_dir(&new).map_err(io("creating", &new))?;
        Ok(Transaction {
            dir: dir.to_path_buf(),
            staging,
            guard: Some(guard),
            swaps: Vec::new(),
        })
    }

    fn staged(&self, rel: &str) -> PathBuf {
        self.staging.join("new").join(rel)
    }

    /// Writes a staged file; `secret` files are readable by the owner only.
    pub(crate) fn write(&self, rel: &str, data: &[u8], secret: bool) -> Result<(), OverlayError> {
        let path = self.staged(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        use std::io::Write as _;
        let mut f = opts.open(&path).map_err(io("writing", &path))?;
        f.write_all(data).map_err(io("writing", &path))?;
        Ok(())
    }

    pub(crate) fn mkdir(&self, rel: &str) -> Result<(), OverlayError> {
        let path = self.staged(rel);
        std::fs::create_dir_all(&path).map_err(io("creating", &path))
    }

    pub(crate) fn rename_within(&self, from: &str, to: &str) -> Result<(), OverlayError> {
        let (a, b) = (self.staged(from), self.staged(to));
        std::fs::rename(&a, &b).map_err(io("renaming", &a))
    }

    /// Schedules the staged `staged` to replace DIR's `live` at commit.
    pub(crate) fn replace(&mut self, staged: &str, live: &str) {
        self.swaps.push(Swap {
            staged: staged.to_string(),
            live: live.to_string(),
        });
    }

    /// Swaps every scheduled entry in, in order; on any failure, puts back what was there.
    pub(crate) fn commit(mut self) -> Result<(), OverlayError> {
        for s in &self.swaps {
            let p = self.staged(&s.staged);
            // Rollback reads "staged entry gone" as "it was moved in"; make sure that holds.
            std::fs::symlink_metadata(&p).map_err(io("checking staged", &p))?;
            if let Some(parent) = self.dir.join(&s.live).parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
        }
        let journal = self.staging.join(JOURNAL);
        let text = serde_json::to_vec(&self.swaps).expect("strings serialize");
        std::fs::write(&journal, text).map_err(io("writing", &journal))?;
        let old = self.staging.join("old");
        std::fs::create_dir(&old).map_err(io("creating", &old))?;

        for (i, s) in self.swaps.iter().enumerate() {
            #[cfg(test)]
            match FAULT.with(|f| f.get()) {
                Some(Fault::FailAt(n)) if n == i => {
                    let e = io("injected failure at", &self.dir)(std::io::Error::other("test"));
                    rollback(&self.dir, &self.staging, &self.swaps)?;
                    return Err(e);
                }
                Some(Fault::CrashAt(n)) if n == i => {
                    let _ = self.guard.take().map(tempfile::TempDir::keep);
                    return Err(io("injected crash at", &self.dir)(std::io::Error::other(
                        "test",
                    )));
                }
                _ => {}
            }
            if let Err(e) = swap_one(&self.dir, &self.staging, i, s) {
                rollback(&self.dir, &self.staging, &self.swaps)?;
                return Err(e);
            }
        }
        let marker = self.staging.join(COMMITTED);
        if let Err(e) = std::fs::write(&marker, b"") {
            // Everything is in place; only cleanup is affected.
            tracing::warn!(path = %marker.display(), error = %e, "cannot mark staging directory as committed");
            let _ = self.guard.take().map(tempfile::TempDir::keep);
        }
        Ok(())
    }
}

fn swap_one(dir: &Path, staging: &Path, i: usize, s: &Swap) -> Result<(), OverlayError> {
    let live = dir.join(&s.live);
    if std::fs::symlink_metadata(&live).is_ok() {
        let old = staging.join("old").join(i.to_string());
        std::fs::rename(&live, &old).map_err(io("moving aside", &live))?;
    }
    let staged = staging.join("new").join(&s.staged);
    std::fs::rename(&staged, &live).map_err(io("moving into place", &live))
}

/// Undoes swaps in reverse: whatever was moved in goes to `discard/`, the old entry comes back.
fn rollback(dir: &Path, staging: &Path, swaps: &[Swap]) -> Result<(), OverlayError> {
    let discard = staging.join("discard");
    for (i, s) in swaps.iter().enumerate().rev() {
        let live = dir.join(&s.live);
        let staged = staging.join("new").join(&s.staged);
        let old = staging.join("old").join(i.to_string());
        if std::fs::symlink_metadata(&staged).is_err() && std::fs::symlink_metadata(&live).is_ok() {
            std::fs::create_dir_all(&discard).map_err(io("creating", &discard))?;
            std::fs::rename(&live, discard.join(i.to_string()))
                .map_err(io("rolling back", &live))?;
        }
        if std::fs::symlink_metadata(&old).is_ok() {
            std::fs::rename(&old, &live).map_err(io("restoring", &live))?;
        }
    }
    Ok(())
}

/// Finishes or undoes what an interrupted write left in `.kots-bundle/staging-*`.
pub(crate) fn recover(dir: &Path) -> Result<(), OverlayError> {
    let meta = dir.join(META_DIR);
    let entries = match std::fs::read_dir(&meta) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &meta)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("reading", &meta))?;
        if !entry.file_name().to_string_lossy().starts_with("staging-") {
            continue;
        }
        let staging = entry.path();
        if !staging.join(COMMITTED).exists() {
            let journal = staging.join(JOURNAL);
            match std::fs::read(&journal) {
                Ok(data) => {
                    let swaps: Vec<Swap> =
                        serde_json::from_slice(&data).map_err(|source| OverlayError::State {
                            path: journal.clone(),
                            source,
                        })?;
                    tracing::warn!(dir = %dir.display(), "rolling back an interrupted write");
                    rollback(dir, &staging, &swaps)?;
                }
                // Interrupted while staging: nothing live was touched.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("reading", &journal)(e)),
            }
        }
        std::fs::remove_dir_all(&staging).map_err(io("removing", &staging))?;
    }
    Ok(())
}
