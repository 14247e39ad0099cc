//! Releases: every write of the app directory builds a complete new release in
//! `.kots-bundle/releases/<id>/` (upstream, base, the generated midstream layer, state) and
//! switches to it by renaming one symlink, `.kots-bundle/current`. The directory's fixed
//! links (`upstream`, `base`, `overlays/midstream/kots-bundle`, `.kots-bundle/state.json`)
//! all go through `current`, so at every instant `kubectl kustomize overlays/midstream`
//! renders either the old release or the new one, never a mix, and a kill at any point
//! leaves one of the two (the next write removes what was left half-built).

use std::path::{Path, PathBuf};

use super::{io, OverlayError};

pub(crate) const RELEASES: &str = "releases";
pub(crate) const CURRENT: &str = "current";
/// A release being written; renamed to its id when complete.
const STAGING_PREFIX: &str = ".new-";

#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Fail with an error at this step (what a full disk or a permission would do).
    FailAt(Step),
    /// Stop at this step as if the process died (nothing cleaned up).
    CrashAt(Step),
}

/// The points of a write where a fault can be injected in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The release is staged but not yet complete.
    Staged,
    /// The release is complete but not yet current.
    Released,
    /// The release is current; the operator's files and pruning are still to come.
    Switched,
}

#[cfg(test)]
thread_local! {
    pub(crate) static FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

/// In tests, fails or "crashes" at `step` when asked to.
#[cfg(test)]
pub(crate) fn fault_point(step: Step) -> Result<(), OverlayError> {
    match FAULT.with(|f| f.get()) {
        Some(Fault::FailAt(s)) if s == step => Err(io("injected failure at", Path::new("."))(
            std::io::Error::other(format!("{step:?}")),
        )),
        Some(Fault::CrashAt(s)) if s == step => Err(OverlayError::InjectedCrash),
        _ => Ok(()),
    }
}

#[cfg(not(test))]
#[inline(always)]
pub(crate) fn fault_point(_: Step) -> Result<(), OverlayError> {
    Ok(())
}

/// A release being written; removed again if dropped before [`Staged::finish`].
pub(crate) struct Staged {
    dir: Option<PathBuf>,
    id: String,
}

impl Drop for Staged {
    fn drop(&mut self) {
        #[cfg(test)]
        if matches!(FAULT.with(|f| f.get()), Some(Fault::CrashAt(_))) {
            return; // a dead process cleans nothing up
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Staged {
    pub(crate) fn begin(meta: &Path) -> Result<Staged, OverlayError> {
        let releases = meta.join(RELEASES);
        std::fs::create_dir_all(&releases).map_err(io("creating", &releases))?;
        // Time and pid keep ids unique without coordination (the lock rules out two writers).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!(
            "{}-{:09}-{}",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        );
        let dir = releases.join(format!("{STAGING_PREFIX}{id}"));
        std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
        Ok(Staged { dir: Some(dir), id })
    }

    /// The release's directory while it is staged.
    pub(crate) fn path(&self) -> &Path {
        self.root()
    }

    fn root(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("a staged release has its directory until finished")
    }

    /// Writes a file of the release; `secret` files are readable by the owner only.
    pub(crate) fn write(&self, rel: &str, data: &[u8], secret: bool) -> Result<(), OverlayError> {
        let path = self.root().join(rel);
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
        f.sync_all().map_err(io("writing", &path))?;
        Ok(())
    }

    pub(crate) fn mkdir(&self, rel: &str) -> Result<(), OverlayError> {
        let path = self.root().join(rel);
        std::fs::create_dir_all(&path).map_err(io("creating", &path))
    }

    /// Marks the release complete; returns its id.
    pub(crate) fn finish(mut self) -> Result<String, OverlayError> {
        fault_point(Step::Staged)?;
        let dir = self.dir.take().expect("not finished yet");
        let done = dir.with_file_name(&self.id);
        if let Err(e) = std::fs::rename(&dir, &done) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io("completing", &done)(e));
        }
        Ok(std::mem::take(&mut self.id))
    }
}

/// The id of the current release, if there is one.
pub(crate) fn current(meta: &Path) -> Option<String> {
    let target = std::fs::read_link(meta.join(CURRENT)).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Makes `id` the current release: one rename.
pub(crate) fn switch(meta: &Path, id: &str) -> Result<(), OverlayError> {
    fault_point(Step::Released)?;
    let link = meta.join(CURRENT);
    let target = Path::new(RELEASES).join(id);
    crate::fsutil::replace_symlink(&target, &link).map_err(io("switching", &link))?;
    fault_point(Step::Switched)
}

/// Removes every release but the current one, and anything a killed write left behind.
pub(crate) fn prune(meta: &Path) -> Result<(), OverlayError> {
    let releases = meta.join(RELEASES);
    let keep = current(meta);
    let entries = match std::fs::read_dir(&releases) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &releases)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("reading", &releases))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if Some(&name) == keep.as_ref() {
            continue;
        }
        let path = entry.path();
        std::fs::remove_dir_all(&path).map_err(io("removing", &path))?;
    }
    // Temp links from an interrupted switch.
    if let Ok(entries) = std::fs::read_dir(meta) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".current.tmp-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}
