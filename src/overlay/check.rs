//! Renders a new release with the kustomize the operator will use before it becomes
//! current, so an import never reports success for an app directory that does not deploy.

use std::path::Path;

use super::OverlayError;
use crate::kustomize::{BuildError, Kustomize};

/// `kubectl kustomize DIR` must succeed; without kubectl or kustomize the check is skipped
/// (and said at debug level).
pub(crate) fn renders(dir: &Path) -> Result<(), OverlayError> {
    let Some(tool) = Kustomize::find() else {
        tracing::debug!("no kubectl or kustomize on PATH: the new overlay was not test-rendered");
        return Ok(());
    };
    tool.build(dir).map(drop).map_err(|e| {
        let why = match e {
            BuildError::Failed { why, .. } => why,
            other => other.to_string(),
        };
        OverlayError::DoesNotRender {
            tool: tool.path().display().to_string(),
            why,
        }
    })
}
