//! Warnings a user needs to see (an image left templated, a manifest that did not parse, an
//! export that found no image, a chart skipped): printed on stderr whatever the log level,
//! and counted, so `--strict` can turn them into a failure for CI pipelines.
//!
//! Diagnostics (retries, what was skipped on purpose) stay with `tracing`; this is for what
//! may leave the deployed app different from what the user expects.

use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Prints `warning: {message}` on stderr and counts it.
pub fn warn(message: impl Display) {
    COUNT.fetch_add(1, Ordering::Relaxed);
    eprintln!("warning: {message}");
}

/// Warnings printed so far by this process.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// With `--strict`: an error when any warning was printed.
pub fn check_strict(strict: bool, stage: &str) -> Result<(), StrictError> {
    match count() {
        n if strict && n > 0 => Err(StrictError {
            count: n,
            stage: stage.to_string(),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{count} warning(s) {stage}, and --strict makes warnings a failure")]
pub struct StrictError {
    pub count: usize,
    pub stage: String,
}
