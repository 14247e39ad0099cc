//! Where an application's manifests come from: a directory, a `.tar.gz`/`.tgz`, an
//! `https://` URL of such a tarball, or `replicated://APP` with a license file.
//!
//! Every source is read into memory as a list of [`ManifestFile`]s: manifests are small,
//! and holding them lets discovery, the archive and the app directory all work from the
//! same bytes, exactly as shipped.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Refuse manifests trees larger than this: they are YAML, not images.
const MAX_UPSTREAM_BYTES: u64 = 512 * 1024 * 1024;

/// One file of the application, with its path relative to the upstream root
/// (`/`-separated, no `..`, no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// The application as fetched.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    /// Where it came from, as the user wrote it (never with credentials).
    pub source: String,
    /// App name: from the KOTS `Application` kind, the release, or the source's file name.
    pub name: String,
    /// App version, when the release or the `Application` kind gives one.
    pub version: Option<String>,
    /// Sorted by path.
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {path}: not a directory, .tar.gz or .tgz file")]
    Unsupported { path: PathBuf },
    #[error("upstream {path}: unsafe entry {entry:?} in archive ({why})")]
    UnsafeEntry {
        path: PathBuf,
        entry: String,
        why: &'static str,
    },
    #[error(
        "upstream {path}: larger than {MAX_UPSTREAM_BYTES} bytes; is this really a manifests tree?"
    )]
    TooLarge { path: PathBuf },
    #[error("upstream {path}: no files found")]
    Empty { path: PathBuf },
}

/// Reads a local directory or tarball.
pub fn load_path(path: &Path) -> Result<Upstream, UpstreamError> {
    let meta = std::fs::metadata(path).map_err(|source| UpstreamError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut files = if meta.is_dir() {
        read_dir(path)?
    } else if is_tarball_name(&path.to_string_lossy()) {
        let f = std::fs::File::open(path).map_err(|source| UpstreamError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        read_tgz(f, path)?
    } else {
        return Err(UpstreamError::Unsupported {
            path: path.to_path_buf(),
        });
    };
    if files.is_empty() {
        return Err(UpstreamError::Empty {
            path: path.to_path_buf(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let fallback = default_name(path);
    let (name, version) = app_identity(&files);
    Ok(Upstream {
        source: path.display().to_string(),
        name: name.unwrap_or(fallback),
        version,
        files,
    })
}

pub fn is_tarball_name(name: &str) -> bool {
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn default_name(path: &Path) -> String {
    let base = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".to_string());
    let base = base
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_string();
    sanitize_name(&base)
}

/// Lowercase DNS-label-ish name usable as a directory and file name.
pub fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.is_empty() {
        "app".to_string()
    } else {
        out
    }
}

fn read_dir(root: &Path) -> Result<Vec<ManifestFile>, UpstreamError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| UpstreamError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        {
            continue; // .git and editor droppings are not part of the app
        }
        let data = std::fs::read(entry.path()).map_err(|source| UpstreamError::Io {
            path: entry.path().to_path_buf(),
            source,
        })?;
        total += data.len() as u64;
        if total > MAX_UPSTREAM_BYTES {
            return Err(UpstreamError::TooLarge {
                path: root.to_path_buf(),
            });
        }
        let path = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        files.push(ManifestFile { path, data });
    }
    Ok(files)
}

/// Reads a gzip'd tar of manifests; regular files only, no path may leave the root.
pub fn read_tgz(r: impl Read, origin: &Path) -> Result<Vec<ManifestFile>, UpstreamError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let io = |source| UpstreamError::Io {
        path: origin.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if !kind.is_file() {
            // Links could point outside the tree; manifests never need them.
            return Err(UpstreamError::UnsafeEntry {
                path: origin.to_path_buf(),
                entry: raw,
                why: "not a regular file",
            });
        }
        let path = safe_relative_path(&raw).ok_or_else(|| UpstreamError::UnsafeEntry {
            path: origin.to_path_buf(),
            entry: raw.clone(),
            why: "absolute or leaves the archive root",
        })?;
        total += entry.size();
        if total > MAX_UPSTREAM_BYTES {
            return Err(UpstreamError::TooLarge {
                path: origin.to_path_buf(),
            });
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(io)?;
        files.push(ManifestFile { path, data });
    }
    strip_common_top_dir(&mut files);
    Ok(files)
}

/// `a/./b` -> `a/b`; `None` for absolute paths or any `..`.
pub fn safe_relative_path(raw: &str) -> Option<String> {
    let p = Path::new(raw);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// Release tarballs usually wrap everything in one top directory (`app-1.2.3/...`);
/// drop it so `upstream/` holds the manifests themselves.
fn strip_common_top_dir(files: &mut [ManifestFile]) {
    let Some(first) = files.first() else { return };
    let Some((top, _)) = first.path.split_once('/') else {
        return;
    };
    let prefix = format!("{top}/");
    if files.iter().all(|f| f.path.starts_with(&prefix)) {
        for f in files.iter_mut() {
            f.path = f.path[prefix.len()..].to_string();
        }
    }
}

/// Name and version from a KOTS `Application` document, when the app ships one.
pub fn app_identity(files: &[ManifestFile]) -> (Option<String>, Option<String>) {
    for f in files {
        if !(f.path.ends_with(".yaml") || f.path.ends_with(".yml")) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&f.data) else {
            continue;
        };
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let Ok(v) = serde_yaml_ng::Value::deserialize(doc) else {
                continue;
            };
            let api = v.get("apiVersion").and_then(|a| a.as_str()).unwrap_or("");
            if v.get("kind").and_then(|k| k.as_str()) == Some("Application")
                && api.starts_with("kots.io/")
            {
                let name = v
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .map(sanitize_name);
                let version = v
                    .get("spec")
                    .and_then(|s| s.get("version"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string);
                return (name, version);
            }
        }
    }
    (None, None)
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        assert_eq!(
            safe_relative_path("./a/b.yaml").as_deref(),
            Some("a/b.yaml")
        );
        assert_eq!(safe_relative_path("../x"), None);
        assert_eq!(safe_relative_path("/etc/passwd"), None);
        assert_eq!(safe_relative_path("a/../../x"), None);
    }

    #[test]
    fn strips_single_top_dir() {
        let mut files = vec![
            ManifestFile {
                path: "app-1/a.yaml".into(),
                data: vec![],
            },
            ManifestFile {
                path: "app-1/sub/b.yaml".into(),
                data: vec![],
            },
        ];
        strip_common_top_dir(&mut files);
        assert_eq!(files[0].path, "a.yaml");
        assert_eq!(files[1].path, "sub/b.yaml");
    }
}
