//! The app directory that `import` and `pull` write: `upstream/` as shipped, a generated
//! `base/`, the `overlays/midstream` kustomization that deploys every image from the private
//! registry, the operator's `overlays/downstream`, and `.kots-bundle/state.json`.
//!
//! A write builds everything in a staging directory inside DIR and swaps it in with renames
//! ([`commit`]); a failure, or a crash, leaves the previous directory as it was.

mod base;
mod commit;
mod midstream;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::rewrite::ImageRewrite;
use crate::upstream::Upstream;

/// Where kots-bundle keeps its own files inside DIR.
pub const META_DIR: &str = ".kots-bundle";
pub const STATE_FILE: &str = "state.json";

/// A `kubernetes.io/dockerconfigjson` Secret to write into the midstream (only when asked).
#[derive(Clone)]
pub struct PullSecret {
    pub name: String,
    /// `host[:port]` the credentials are for.
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for PullSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSecret")
            .field("name", &self.name)
            .field("registry", &self.registry)
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// An existing secret's name: every pod spec in base gets it under `imagePullSecrets`.
    pub image_pull_secret: Option<String>,
    /// Write this secret into the midstream (and reference it from every pod spec).
    pub write_pull_secret: Option<PullSecret>,
}

/// What was imported into DIR; `.kots-bundle/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub app: String,
    pub version: Option<String>,
    /// Where the manifests came from, as the user wrote it.
    pub source: String,
    pub tool_version: String,
    pub images: Vec<StateImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateImage {
    pub source: String,
    pub target: String,
    /// Manifest digest pushed.
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir} already has upstream/ or base/ but no {META_DIR}/{STATE_FILE}, so it was not written by \
         kots-bundle; choose another --dest or remove those directories"
    )]
    NotOurs { dir: PathBuf },
    #[error("{path}: {why}; fix or remove the file and run again (nothing was changed)")]
    Midstream { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("upstream file {path:?} cannot be written: {why}")]
    UnsafePath { path: String, why: String },
}

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OverlayError {
    let path = path.to_path_buf();
    move |source| OverlayError::Io {
        action,
        path,
        source,
    }
}

/// Reads `.kots-bundle/state.json`; `None` when DIR has none (a new directory).
pub fn read_state(dir: &Path) -> Result<Option<State>, OverlayError> {
    let path = dir.join(META_DIR).join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|source| OverlayError::State { path, source })
}

/// Writes (or updates) the app directory. See the module doc for the layout; on update,
/// `upstream/` and `base/` are replaced, the midstream keeps the operator's keys, and
/// `overlays/downstream/` is never touched once it exists.
pub fn write_app_dir(
    dir: &Path,
    upstream: &Upstream,
    rewrites: &[ImageRewrite],
    state: &State,
    opts: &WriteOptions,
) -> Result<(), OverlayError> {
    let meta = dir.join(META_DIR);
    std::fs::create_dir_all(&meta).map_err(io("creating", &meta))?;
    commit::recover(dir)?;

    let previous = read_state(dir)?;
    if previous.is_none() && (dir.join("upstream").exists() || dir.join("base").exists()) {
        return Err(OverlayError::NotOurs {
            dir: dir.to_path_buf(),
        });
    }

    let base_files = base::select(upstream);
    let mid_dir = dir.join("overlays").join("midstream");
    let mid_k = mid_dir.join("kustomization.yaml");
    let existing = match std::fs::read_to_string(&mid_k) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", &mid_k)(e)),
    };
    let mut secret_names: Vec<String> = Vec::new();
    for name in [
        opts.image_pull_secret.as_deref(),
        opts.write_pull_secret.as_ref().map(|s| s.name.as_str()),
    ]
    .into_iter()
    .flatten()
    {
        if !secret_names.iter().any(|n| n == name) {
            secret_names.push(name.to_string());
        }
    }
    let mid = midstream::build(
        &base_files,
        rewrites,
        &secret_names,
        opts.write_pull_secret.as_ref(),
        existing.as_deref(),
    )
    .map_err(|why| OverlayError::Midstream {
        path: mid_k.clone(),
        why,
    })?;

    let mut tx = commit::Transaction::begin(dir)?;
    for f in &upstream.files {
        crate::names::relative_path(&f.path).map_err(|why| OverlayError::UnsafePath {
            path: crate::names::escaped(&f.path),
            why: why.to_string(),
        })?;
        tx.write(&format!("upstream/{}", f.path), &f.data, false)?;
    }
    tx.mkdir("upstream")?;
    for f in &base_files {
        tx.write(&format!("base/{}", f.path), &f.data, false)?;
    }
    tx.write(
        "base/kustomization.yaml",
        midstream::base_kustomization(&base_files).as_bytes(),
        false,
    )?;
    tx.replace("upstream", "upstream");
    tx.replace("base", "base");

    let generated = format!("overlays/midstream/{}", midstream::GENERATED_DIR);
    tx.mkdir("midstream/generated")?;
    for (name, data, secret) in &mid.files {
        tx.write(&format!("midstream/generated/{name}"), data, *secret)?;
    }
    tx.write(
        "midstream/kustomization.yaml",
        mid.kustomization.as_bytes(),
        false,
    )?;
    if mid_dir.is_dir() {
        tx.replace("midstream/generated", &generated);
        tx.replace(
            "midstream/kustomization.yaml",
            "overlays/midstream/kustomization.yaml",
        );
    } else {
        tx.rename_within(
            "midstream/generated",
            &format!("midstream/{}", midstream::GENERATED_DIR),
        )?;
        tx.replace("midstream", "overlays/midstream");
    }

    // Created once; its existence in any form means the operator owns it.
    if std::fs::symlink_metadata(dir.join("overlays").join("downstream")).is_err() {
        tx.write(
            "downstream/kustomization.yaml",
            midstream::downstream_kustomization().as_bytes(),
            false,
        )?;
        tx.replace("downstream", "overlays/downstream");
    }

    let mut json = serde_json::to_vec_pretty(state).map_err(|source| OverlayError::State {
        path: meta.join(STATE_FILE),
        source,
    })?;
    json.push(b'\n');
    tx.write("state.json", &json, false)?;
    // Last, so state.json only ever describes a directory that is fully in place.
    tx.replace("state.json", &format!("{META_DIR}/{STATE_FILE}"));
    tx.commit()
}

#[cfg(test)]
mod tests;
