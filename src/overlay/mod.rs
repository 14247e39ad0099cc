//! The app directory that `import` and `pull` write: `upstream/` as shipped, a generated
//! `base/`, the `overlays/midstream` kustomization that deploys every image from the private
//! registry, the operator's `overlays/downstream`, and `.kots-bundle/state.json`.
//!
//! ```text
//! DIR/
//!   upstream -> .kots-bundle/current/upstream
//!   base     -> .kots-bundle/current/base
//!   overlays/midstream/kustomization.yaml      the operator's: `bases: [kots-bundle]`, written once
//!   overlays/midstream/kots-bundle -> ../../.kots-bundle/current/midstream   (generated layer)
//!   overlays/downstream/                       the operator's, created once, never touched
//!   .kots-bundle/lock                          held while an import or pull runs
//!   .kots-bundle/current -> releases/<id>      switched by one rename ([`release`])
//!   .kots-bundle/state.json -> current/state.json
//! ```
//!
//! [`AppDir::open`] locks DIR for the whole command (a second import or pull into it fails at
//! once); [`AppDir::write`] builds a new release and switches to it.

mod base;
mod carry;
mod check;
mod kustomization;
mod midstream;
mod release;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use carry::{collect, restore, withhold_secrets, Carried, CarriedFile, Withheld};

use crate::render::config::ConfigValues;
use crate::rewrite::ImageRewrite;
use crate::upstream::{ManifestFile, Upstream};

/// Where kots-bundle keeps its own files inside DIR.
pub const META_DIR: &str = ".kots-bundle";
pub const STATE_FILE: &str = "state.json";
/// Held (an exclusive lock on the open file) while a command writes DIR.
pub const LOCK_FILE: &str = "lock";

/// The config values the app was last rendered with (answers and generated values; mode
/// 0600), reused by the next update.
pub const CONFIG_VALUES_FILE: &str = "config-values.yaml";

/// The fixed links of the app directory into the current release: (link, its target).
const LINKS: [(&str, &str); 5] = [
    ("upstream", ".kots-bundle/current/upstream"),
    ("base", ".kots-bundle/current/base"),
    (
        "overlays/midstream/kots-bundle",
        "../../.kots-bundle/current/midstream",
    ),
    (".kots-bundle/state.json", "current/state.json"),
    (
        ".kots-bundle/config-values.yaml",
        "current/config-values.yaml",
    ),
];

/// One version of the app, as a write puts it in DIR.
pub struct Release<'a> {
    /// As shipped: `upstream/`.
    pub upstream: &'a Upstream,
    /// The rendered documents ([`crate::render::Rendered::files`]): `base/` is their
    /// deployable part.
    pub documents: &'a [ManifestFile],
    /// What the render asks to keep ([`crate::render::Rendered::to_save`]).
    pub config_values: Option<&'a ConfigValues>,
    pub rewrites: &'a [ImageRewrite],
    pub state: &'a State,
}

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
    /// For `replicated://`: the release the vendor API served (its channel and sequence are
    /// what the next update asks from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::upstream::vendor::VendorRelease>,
    /// Where the images were pushed, so a later `pull` in DIR pushes there again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<SavedDestination>,
}

/// `--registry-endpoint`, `--image-namespace` and `--preserve-paths` as last used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedDestination {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub preserve_paths: bool,
    /// `--image-pull-secret`, if one was given (a name, never credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
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
    #[error(
        "{dir} is in use by another kots-bundle import or pull (it holds {META_DIR}/{LOCK_FILE}); \
         wait for it to finish, then run again"
    )]
    Busy { dir: PathBuf },
    #[error(
        "{dir} exists and is not an app directory written by kots-bundle; pass --dest with a \
         new or empty directory, or the app directory to update"
    )]
    NotAnAppDir { dir: PathBuf },
    #[error(
        "the app directory would be {dir}, which is the upstream being read; pass --dest with \
         another directory"
    )]
    IsTheSource { dir: PathBuf },
    #[error(
        "the new version does not render with `{tool} kustomize`: {why}; the app directory was \
         left as it was"
    )]
    DoesNotRender { tool: String, why: String },
    #[cfg(test)]
    #[error("injected crash")]
    InjectedCrash,
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

/// Writes (or updates) the app directory at `dir` in one go, for an app without templates
/// (its files are its documents): [`AppDir::open`] then [`AppDir::write`].
pub fn write_app_dir(
    dir: &Path,
    upstream: &Upstream,
    rewrites: &[ImageRewrite],
    state: &State,
    opts: &WriteOptions,
) -> Result<(), OverlayError> {
    let release = Release {
        upstream,
        documents: &upstream.files,
        config_values: None,
        rewrites,
        state,
    };
    AppDir::open(dir)?.write(&release, opts)
}

/// The app directory an import or pull writes when no `--dest` is given: `cwd/<app>`, which
/// must be new or an app directory already (never someone's folder of the same name), and
/// never the upstream being read.
pub fn default_dest(cwd: &Path, app: &str, source: Option<&Path>) -> Result<PathBuf, OverlayError> {
    crate::names::app_name(app).map_err(|why| OverlayError::UnsafePath {
        path: crate::names::escaped(app),
        why: why.to_string(),
    })?;
    let dir = cwd.join(app);
    if let Some(src) = source {
        let same = match (dir.canonicalize(), src.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(OverlayError::IsTheSource { dir });
        }
    }
    if dir.exists() && !is_app_dir(&dir) && !is_empty_dir(&dir) {
        return Err(OverlayError::NotAnAppDir { dir });
    }
    Ok(dir)
}

/// The files `base/` would hold for these rendered documents (path, contents): the
/// deployable objects only, as `kots-bundle template` prints them.
pub fn base_files(documents: &[ManifestFile]) -> Vec<(String, Vec<u8>)> {
    base::select(documents)
        .into_iter()
        .map(|f| (f.path, f.data))
        .collect()
}

/// Whether `dir` holds a state kots-bundle wrote.
pub fn is_app_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(META_DIR).join(STATE_FILE)).is_ok()
}

/// Empty, or holding only what a killed first run of ours left (`.kots-bundle` without state).
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut e| e.all(|e| e.is_ok_and(|e| e.file_name() == META_DIR)))
}

/// An app directory locked for one command. Dropped without a successful [`AppDir::write`],
/// a directory this command created is removed again, so a failed first import leaves
/// nothing behind.
pub struct AppDir {
    dir: PathBuf,
    meta: PathBuf,
    /// Holds the lock for as long as it is open.
    _lock: File,
    /// What this command created (removed on failure): the directory itself, or only
    /// `.kots-bundle` in an existing empty one.
    created: Option<PathBuf>,
}

impl AppDir {
    /// Locks `dir` (created if missing). Fails at once if another command holds it, or if
    /// `dir` has an app's parts but no state (it was not written by kots-bundle).
    pub fn open(dir: &Path) -> Result<AppDir, OverlayError> {
        let meta = dir.join(META_DIR);
        let created = if !dir.exists() {
            Some(dir.to_path_buf())
        } else if !meta.exists() {
            Some(meta.clone())
        } else {
            None
        };
        std::fs::create_dir_all(&meta).map_err(io("creating", &meta))?;
        let lock_path = meta.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OverlayError::Busy {
                    dir: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
        }
        let app = AppDir {
            dir: dir.to_path_buf(),
            meta,
            _lock: lock,
            created,
        };
        if !is_app_dir(dir)
            && ["upstream", "base", "overlays"]
                .iter()
                .any(|p| std::fs::symlink_metadata(dir.join(p)).is_ok())
        {
            return Err(OverlayError::NotOurs {
                dir: dir.to_path_buf(),
            });
        }
        // Whatever a killed write left half-built goes now (the lock says nobody is writing).
        release::prune(&app.meta)?;
        Ok(app)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The config values the current release was rendered with, if any.
    pub fn config_values(&self) -> Result<Option<ConfigValues>, OverlayError> {
        let path = self.meta.join(CONFIG_VALUES_FILE);
        match std::fs::metadata(&path) {
            Ok(_) => ConfigValues::load(&path)
                .map(Some)
                .map_err(|e| OverlayError::Midstream {
                    path,
                    why: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    /// Writes a new release of the app and switches to it. On update, `upstream/` and
    /// `base/` are replaced, the operator's midstream kustomization and `overlays/downstream/`
    /// are kept as they are.
    pub fn write(&mut self, release: &Release, opts: &WriteOptions) -> Result<(), OverlayError> {
        let Release {
            upstream,
            documents,
            config_values,
            rewrites,
            state,
        } = *release;
        let dir = self.dir.clone();
        let mid_k = dir
            .join("overlays")
            .join("midstream")
            .join(kustomization::FILE_NAME);
        // Read first: a kustomization we cannot read stops the update with nothing changed.
        let operator_text = match std::fs::read_to_string(&mid_k) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", &mid_k)(e)),
        };
        let operator_midstream = match &operator_text {
            Some(text) => Some(kustomization::check_midstream(text).map_err(|why| {
                OverlayError::Midstream {
                    path: mid_k.clone(),
                    why,
                }
            })?),
            None => None,
        };

        let base_files = base::select(documents);
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
            "../base",
            rewrites,
            &secret_names,
            opts.write_pull_secret.as_ref(),
            operator_text.as_deref(),
        )
        .map_err(|why| OverlayError::Midstream {
            path: mid_k.clone(),
            why,
        })?;

        let staged = release::Staged::begin(&self.meta)?;
        for f in &upstream.files {
            crate::names::relative_path(&f.path).map_err(|why| OverlayError::UnsafePath {
                path: crate::names::escaped(&f.path),
                why: why.to_string(),
            })?;
            staged.write(&format!("upstream/{}", f.path), &f.data, false)?;
        }
        staged.mkdir("upstream")?;
        for f in &base_files {
            staged.write(&format!("base/{}", f.path), &f.data, false)?;
        }
        staged.write(
            &format!("base/{}", kustomization::FILE_NAME),
            kustomization::base(&base_files).as_bytes(),
            false,
        )?;
        for (name, data, secret) in &mid.files {
            staged.write(&format!("midstream/{name}"), data, *secret)?;
        }
        staged.write(
            &format!("midstream/{}", kustomization::FILE_NAME),
            mid.kustomization.as_bytes(),
            false,
        )?;
        let mut json = serde_json::to_vec_pretty(state).map_err(|source| OverlayError::State {
            path: self.meta.join(STATE_FILE),
            source,
        })?;
        json.push(b'\n');
        staged.write(STATE_FILE, &json, false)?;
        // Always written (empty for an app without config), so its link never dangles.
        let values = config_values.cloned().unwrap_or_default();
        staged.write(CONFIG_VALUES_FILE, values.to_yaml().as_bytes(), true)?;
        // The new release must render before it becomes current.
        check::renders(staged.path(), &self.meta)?;
        let id = staged.finish()?;

        self.link_parts()?;
        release::switch(&self.meta, &id)?;

        // The operator's files: created once; an older layout's midstream is rewritten once.
        let write_new = |path: &Path, text: &str| -> Result<(), OverlayError> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            crate::fsutil::write_atomic(path, text.as_bytes(), false).map_err(io("writing", path))
        };
        match operator_midstream {
            None => write_new(&mid_k, &kustomization::midstream())?,
            Some(kustomization::MidstreamCheck::Current) => {}
            Some(kustomization::MidstreamCheck::Rewrite(text)) => {
                tracing::warn!(
                    path = %mid_k.display(),
                    "rewriting a midstream kustomization from an older kots-bundle (its keys are kept, its comments are not)"
                );
                write_new(&mid_k, &text)?;
            }
        }
        let down = dir.join("overlays").join("downstream");
        if std::fs::symlink_metadata(&down).is_err() {
            write_new(
                &down.join(kustomization::FILE_NAME),
                &kustomization::downstream(),
            )?;
        }
        self.created = None;
        release::prune(&self.meta)
    }

    /// Makes the fixed links point into `current`. An app directory from before releases had
    /// real directories there: they are moved into an old release once (not atomically).
    fn link_parts(&self) -> Result<(), OverlayError> {
        let legacy = self.meta.join(release::RELEASES).join(".legacy");
        for (link, target) in LINKS {
            let path = self.dir.join(link);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {}
                Ok(_) => {
                    std::fs::create_dir_all(&legacy).map_err(io("creating", &legacy))?;
                    let aside = legacy.join(link.replace('/', "_"));
                    std::fs::rename(&path, &aside).map_err(io("moving aside", &path))?;
                }
                Err(_) => {}
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            crate::fsutil::replace_symlink(Path::new(target), &path)
                .map_err(io("linking", &path))?;
        }
        // Staging directories of the old writer.
        if let Ok(entries) = std::fs::read_dir(&self.meta) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("staging-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}

impl Drop for AppDir {
    fn drop(&mut self) {
        #[cfg(test)]
        if matches!(
            release::FAULT.with(|f| f.get()),
            Some(release::Fault::CrashAt(_))
        ) {
            return; // a dead process cleans nothing up
        }
        if let Some(created) = &self.created {
            let _ = std::fs::remove_dir_all(created);
        }
    }
}

#[cfg(test)]
mod tests;
