//! The kustomize that renders kustomizations on this host: `$KOTS_BUNDLE_KUBECTL`, else
//! `kubectl` (`kubectl kustomize DIR`), else `kustomize` (`kustomize build DIR`) on PATH.
//! Run with a deadline, capped output and an empty environment, because what it reads can
//! come from an untrusted upstream: no git, no kubeconfig, no plugins of the user's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::subprocess::{run, RunError, MAX_STDERR};

/// A kustomization that takes longer than this to build is stuck.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Output larger than this is not an app's.
const MAX_OUTPUT: u64 = 128 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Kustomize {
    path: PathBuf,
    verb: &'static str,
}

/// Why a build failed, in words for a message naming the kustomization.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} did not finish within {} s", TIMEOUT.as_secs())]
    Timeout { tool: String },
    #[error("{tool} printed more than {} MiB", MAX_OUTPUT >> 20)]
    TooLarge { tool: String },
    #[error("{tool} failed: {why}")]
    Failed { tool: String, why: String },
}

impl Kustomize {
    /// The tool, or `None` when none is installed.
    pub fn find() -> Option<Kustomize> {
        if let Some(p) = std::env::var_os("KOTS_BUNDLE_KUBECTL") {
            let path = PathBuf::from(p);
            // A standalone kustomize builds with `build`; kubectl (or oc) with `kustomize`.
            let standalone = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kustomize"));
            let verb = if standalone { "build" } else { "kustomize" };
            return Some(Kustomize { path, verb });
        }
        let on_path = |name: &str| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        };
        on_path("kubectl")
            .map(|path| Kustomize {
                path,
                verb: "kustomize",
            })
            .or_else(|| {
                on_path("kustomize").map(|path| Kustomize {
                    path,
                    verb: "build",
                })
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rendered documents of the kustomization in `dir`.
    pub fn build(&self, dir: &Path) -> Result<Vec<u8>, BuildError> {
        let tool = self.path.display().to_string();
        let home = tempfile::Builder::new()
            .prefix("kots-bundle-kustomize-")
            .tempdir()
            .map_err(|source| BuildError::Spawn {
                tool: tool.clone(),
                source,
            })?;
        // kubectl runs from `home`, so a relative `dir` would be looked for there.
        let dir = std::path::absolute(dir).map_err(|source| BuildError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let mut cmd = Command::new(&self.path);
        cmd.arg(self.verb)
            .arg(&dir)
            .env_clear()
            .env("HOME", home.path())
            .env("KUBECONFIG", home.path().join("no-kubeconfig"))
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run(cmd, TIMEOUT, MAX_OUTPUT).map_err(|e| match e {
            RunError::Spawn(source) => BuildError::Spawn {
                tool: tool.clone(),
                source,
            },
            RunError::Timeout => BuildError::Timeout { tool: tool.clone() },
            RunError::TooLarge => BuildError::TooLarge { tool: tool.clone() },
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let why: Vec<String> = out
            .stderr
            .lines()
            .filter(|l| !l.starts_with("# Warning:") && !l.trim().is_empty())
            .take(20)
            // It quotes the kustomization, which may hold anything.
            .map(|l| {
                l.chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
            .collect();
        let mut why = why.join(" / ");
        if why.is_empty() {
            why = out.status.to_string();
        }
        let mut end = why.len().min(MAX_STDERR);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
        Err(BuildError::Failed { tool, why })
    }
}
