//! Renders a new release with the kustomize the operator will use before it becomes
//! current, so an import never reports success for an app directory that does not deploy.
//!
//! A release that renders is remembered by a digest of what the render reads (the tool,
//! and every file of the release's `base/` and `midstream/`) in `.kots-bundle/rendered`: a
//! re-import that changes nothing does not build it again (kustomize takes seconds on an
//! app of hundreds of images).

use std::path::Path;

use super::OverlayError;
use crate::digest::{Digest, Hasher};
use crate::kustomize::{BuildError, Kustomize};

/// In the app directory's `.kots-bundle`: the digest of the last release that rendered.
const RENDERED_FILE: &str = "rendered";

/// `kubectl kustomize DIR/midstream` must succeed, unless the same files rendered with the
/// same tool before (see the module doc); without kubectl or kustomize the check is skipped
/// (and said at debug level). `meta` is the app directory's `.kots-bundle`.
pub(crate) fn renders(release: &Path, meta: &Path) -> Result<(), OverlayError> {
    let Some(tool) = Kustomize::find() else {
        tracing::debug!("no kubectl or kustomize on PATH: the new overlay was not test-rendered");
        return Ok(());
    };
    let marker = meta.join(RENDERED_FILE);
    // A tree that cannot be read is simply built: the build reports what is wrong.
    let key = render_key(&tool, release).ok();
    if let Some(key) = &key {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == key.as_str()) {
            tracing::debug!("the new release is what rendered last time: not built again");
            return Ok(());
        }
    }
    tool.build(&release.join("midstream")).map_err(|e| {
        let why = match e {
            BuildError::Failed { why, .. } => why,
            other => other.to_string(),
        };
        OverlayError::DoesNotRender {
            tool: tool.path().display().to_string(),
            why,
        }
    })?;
    if let Some(key) = key {
        // Only a cache: failing to write it costs a build next time.
        let line = format!("{key}\n");
        if let Err(e) = crate::fsutil::write_atomic(&marker, line.as_bytes(), false) {
            tracing::debug!(error = %e, path = %marker.display(), "could not remember the render");
        }
    }
    Ok(())
}

/// What the build reads: the tool (path, size, modification time) and each file under
/// `base/` and `midstream/`, by path, in order.
fn render_key(tool: &Kustomize, release: &Path) -> std::io::Result<Digest> {
    let mut h = Hasher::new();
    let t = std::fs::metadata(tool.path())?;
    let mtime = t
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(
        format!(
            "{}\0{}\0{}\0",
            tool.path().display(),
            t.len(),
            mtime.as_nanos()
        )
        .as_bytes(),
    );
    for part in ["base", "midstream"] {
        for entry in walkdir::WalkDir::new(release.join(part))
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(std::io::Error::other)?;
            let rel = entry.path().strip_prefix(release).unwrap_or(entry.path());
            let kind = entry.file_type();
            if kind.is_file() {
                let data = std::fs::read(entry.path())?;
                h.update(format!("f\0{}\0{}\0", rel.display(), data.len()).as_bytes());
                h.update(&data);
            } else if kind.is_symlink() {
                let to = std::fs::read_link(entry.path())?;
                h.update(format!("l\0{}\0{}\0", rel.display(), to.display()).as_bytes());
            } else {
                h.update(format!("d\0{}\0", rel.display()).as_bytes());
            }
        }
    }
    Ok(h.finish())
}
