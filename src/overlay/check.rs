//! Renders a new release with the kustomize the operator will use before it becomes
//! current, so an import never reports success for an app directory that does not deploy.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::OverlayError;

/// The tool that renders kustomizations here: `$KOTS_BUNDLE_KUBECTL`, else `kubectl`, else
/// `kustomize` on PATH (`kustomize build` takes the same directory).
fn renderer() -> Option<(PathBuf, &'static str)> {
    if let Some(p) = std::env::var_os("KOTS_BUNDLE_KUBECTL") {
        return Some((PathBuf::from(p), "kustomize"));
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    on_path("kubectl")
        .map(|p| (p, "kustomize"))
        .or_else(|| on_path("kustomize").map(|p| (p, "build")))
}

/// `kubectl kustomize DIR` must succeed; without kubectl or kustomize the check is skipped
/// (and said at debug level).
pub(crate) fn renders(dir: &Path) -> Result<(), OverlayError> {
    let Some((tool, verb)) = renderer() else {
        tracing::debug!("no kubectl or kustomize on PATH: the new overlay was not test-rendered");
        return Ok(());
    };
    let out = Command::new(&tool)
        .arg(verb)
        .arg(dir)
        .output()
        .map_err(|e| OverlayError::DoesNotRender {
            tool: tool.display().to_string(),
            why: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("# Warning:"))
        .take(20)
        .collect();
    Err(OverlayError::DoesNotRender {
        tool: tool.display().to_string(),
        why: why.join(" / "),
    })
}
