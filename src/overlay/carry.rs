//! The app directory as a set of files to carry elsewhere and back (`import` stores it in
//! the registry, `download` rebuilds it: [`crate::appstore`]): the current release's files
//! and the operator's, without the links, the lock, older releases or pull's image cache;
//! and a directory rebuilt from them with the same releases-and-links layout a write makes.

use std::path::Path;

use super::{io, midstream, release, OverlayError, LINKS, META_DIR};
use crate::render::config::ConfigValues;

/// One file: its path relative to its part, its bytes, whether it is owner-only (0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedFile {
    pub path: String,
    pub data: Vec<u8>,
    pub secret: bool,
}

/// An app directory's files, in two parts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// The current release: `upstream/`, `base/`, `midstream/`, `state.json`,
    /// `config-values.yaml` (the pull secret `--write-pull-secret` wrote is left out: it
    /// holds registry credentials, and the next import with that flag writes it again).
    pub release: Vec<CarriedFile>,
    /// Everything else the operator has in the directory: `overlays/midstream/
    /// kustomization.yaml`, `overlays/downstream/`, files of their own.
    pub operator: Vec<CarriedFile>,
}

/// What [`withhold_secrets`] left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Withheld {
    /// Files whose Secrets (or documents holding a withheld value) were removed.
    pub secret_files: Vec<String>,
    /// Config items (type `password`) whose saved values were removed.
    pub values: Vec<String>,
}

impl Withheld {
    pub fn is_empty(&self) -> bool {
        self.secret_files.is_empty() && self.values.is_empty()
    }
}

/// Removes from `carried` what holds the app's secrets, for a copy kept outside the app
/// directory: the saved values of `password` config items (marked withheld, so that the next
/// render asks for them instead of generating new ones), and every document of `base/` and
/// of the operator's YAML files that is a Secret or holds a withheld value (as written or
/// base64), which the next import renders again. A Config that cannot be read stops the
/// store rather than letting passwords through.
pub fn withhold_secrets(carried: &mut Carried) -> Result<Withheld, OverlayError> {
    let mut withheld = Withheld::default();
    let upstream: Vec<crate::upstream::ManifestFile> = carried
        .release
        .iter()
        .filter_map(|f| {
            f.path
                .strip_prefix("upstream/")
                .map(|p| crate::upstream::ManifestFile {
                    path: p.to_string(),
                    data: f.data.clone(),
                })
        })
        .collect();
    let unreadable = |why: String| OverlayError::Midstream {
        path: "upstream/ (the app's Config)".into(),
        why,
    };
    let passwords: Vec<String> = crate::render::app_config(&upstream)
        .map_err(|e| unreadable(e.to_string()))?
        .map(|c| {
            c.items()
                .filter(|i| i.item_type == "password")
                .map(|i| i.name.clone())
                .collect()
        })
        .unwrap_or_default();
    // The values themselves, to find them wherever the app rendered them.
    let mut secrets: Vec<String> = Vec::new();
    for f in &mut carried.release {
        if f.path != CONFIG_VALUES {
            continue;
        }
        let text = String::from_utf8_lossy(&f.data).into_owned();
        let mut values = ConfigValues::parse(&text).map_err(|e| OverlayError::Midstream {
            path: CONFIG_VALUES.into(),
            why: e.to_string(),
        })?;
        for name in &passwords {
            if let Some(v) = values.values.remove(name) {
                for s in [v.value, v.value_plaintext, v.default]
                    .into_iter()
                    .flatten()
                {
                    if !s.is_empty() {
                        use base64::Engine as _;
                        secrets.push(base64::engine::general_purpose::STANDARD.encode(&s));
                        secrets.push(s);
                    }
                }
                values.withheld.insert(name.clone());
                withheld.values.push(name.clone());
            }
        }
        f.data = values.to_yaml().into_bytes();
    }
    let holds_secret = |d: &crate::yaml::Document| {
        secrets.iter().any(|s| d.raw.contains(s.as_str()))
            || d.parsed.as_ref().is_ok_and(|v| {
                v.get("kind").and_then(serde_yaml_ng::Value::as_str) == Some("Secret")
            })
    };
    let base = carried
        .release
        .iter_mut()
        .filter(|f| f.path.starts_with("base/"));
    for f in base.chain(carried.operator.iter_mut()) {
        let Some(format) = crate::yaml::Format::of(&f.path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&f.data).into_owned();
        let docs = crate::yaml::documents(&text, format);
        if !docs.iter().any(holds_secret) {
            continue;
        }
        let kept: Vec<&str> = docs
            .iter()
            .filter(|d| !holds_secret(d))
            .map(|d| d.raw)
            .collect();
        f.data = crate::yaml::join(&kept, format).into_bytes();
        withheld.secret_files.push(f.path.clone());
    }
    Ok(withheld)
}

/// Where the saved config values sit in a carried release.
const CONFIG_VALUES: &str = "config-values.yaml";

/// Top-level entries of DIR that are not the operator's: our metadata and pull's cache.
const NOT_CARRIED: [&str; 2] = [META_DIR, "images"];

fn unsafe_path(path: &str, why: impl ToString) -> OverlayError {
    OverlayError::UnsafePath {
        path: crate::names::escaped(path),
        why: why.to_string(),
    }
}

/// Whether `path` (relative to DIR) is one of the directory's fixed links or inside one.
fn is_link_part(path: &str) -> bool {
    LINKS
        .iter()
        .any(|(link, _)| path == *link || path.starts_with(&format!("{link}/")))
}

/// Reads the app directory `dir` (its current release and the operator's files).
pub fn collect(dir: &Path) -> Result<Carried, OverlayError> {
    let meta = dir.join(META_DIR);
    let id = release::current(&meta).ok_or_else(|| OverlayError::NotAnAppDir {
        dir: dir.to_path_buf(),
    })?;
    let release_dir = meta.join(release::RELEASES).join(id);
    let mut carried = Carried::default();
    for f in read_tree(&release_dir, &|_| true)? {
        if f.path == format!("midstream/{}", midstream::PULL_SECRET_FILE) {
            continue;
        }
        carried.release.push(f);
    }
    carried.operator = read_tree(dir, &|rel: &str| {
        let top = rel.split('/').next().unwrap_or(rel);
        !NOT_CARRIED.contains(&top) && !is_link_part(rel)
    })?;
    Ok(carried)
}

/// Regular files under `root` whose relative path `keep` accepts (directories it refuses
/// are not entered), sorted by path. Symbolic links are not followed or carried.
fn read_tree(root: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<CarriedFile>, OverlayError> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.path()
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .is_none_or(|p| p.is_empty() || keep(p))
        });
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            io("reading", &path)(e.into())
        })?;
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("under the root")
            .to_str()
            .ok_or_else(|| unsafe_path(&entry.path().to_string_lossy(), "not UTF-8"))?
            .to_string();
        if ft.is_symlink() {
            tracing::warn!(
                "{}: a symbolic link; not stored with the app directory",
                entry.path().display()
            );
            continue;
        }
        crate::names::relative_path(&rel).map_err(|why| unsafe_path(&rel, why))?;
        let data = std::fs::read(entry.path()).map_err(io("reading", entry.path()))?;
        let meta = entry
            .metadata()
            .map_err(|e| io("reading", entry.path())(e.into()))?;
        #[cfg(unix)]
        let secret = {
            use std::os::unix::fs::PermissionsExt as _;
            meta.permissions().mode() & 0o077 == 0
        };
        #[cfg(not(unix))]
        let secret = {
            let _ = meta;
            false
        };
        out.push(CarriedFile {
            path: rel,
            data,
            secret,
        });
    }
    Ok(out)
}

/// Writes `carried` as a complete app directory at `root` (new and empty, e.g. a staging
/// directory renamed into place afterwards): the release under `.kots-bundle/releases/`,
/// `current` and the fixed links pointing into it, the operator's files beside them.
/// Every path is checked again here: it comes from outside.
pub fn restore(root: &Path, carried: &Carried) -> Result<(), OverlayError> {
    let paths = carried.release.iter().map(|f| f.path.as_str());
    crate::names::check_tree(paths).map_err(|(p, why)| unsafe_path(&p, why))?;
    let paths = carried.operator.iter().map(|f| f.path.as_str());
    crate::names::check_tree(paths).map_err(|(p, why)| unsafe_path(&p, why))?;
    if !carried.release.iter().any(|f| f.path == super::STATE_FILE) {
        return Err(unsafe_path(
            super::STATE_FILE,
            "the stored app directory has no state",
        ));
    }
    let meta = root.join(META_DIR);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!(
        "{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    );
    let release_dir = meta.join(release::RELEASES).join(&id);
    for f in &carried.release {
        crate::names::relative_path(&f.path).map_err(|why| unsafe_path(&f.path, why))?;
        write(&release_dir.join(&f.path), f)?;
    }
    // Parts a release always has, even when empty, so no link dangles.
    for part in ["upstream", "base", "midstream"] {
        let p = release_dir.join(part);
        std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
    }
    for f in &carried.operator {
        crate::names::relative_path(&f.path).map_err(|why| unsafe_path(&f.path, why))?;
        let top = f.path.split('/').next().unwrap_or(&f.path);
        if NOT_CARRIED.contains(&top) || is_link_part(&f.path) {
            return Err(unsafe_path(
                &f.path,
                "is kots-bundle's own part of the app directory, not an operator file",
            ));
        }
        write(&root.join(&f.path), f)?;
    }
    let current = meta.join(release::CURRENT);
    crate::fsutil::replace_symlink(&Path::new(release::RELEASES).join(&id), &current)
        .map_err(io("linking", &current))?;
    for (link, target) in LINKS {
        let path = root.join(link);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        crate::fsutil::replace_symlink(Path::new(target), &path).map_err(io("linking", &path))?;
    }
    Ok(())
}

/// Writes one new file (the whole directory is renamed into place afterwards, so a file
/// needs no atomic write of its own): owner-only from the first byte when secret, else the
/// usual mode under the umask (not the 0600 of a temp file).
fn write(path: &Path, f: &CarriedFile) -> Result<(), OverlayError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if f.secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    use std::io::Write as _;
    let mut file = opts.open(path).map_err(io("writing", path))?;
    file.write_all(&f.data).map_err(io("writing", path))?;
    file.sync_all().map_err(io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> CarriedFile {
        CarriedFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            secret: false,
        }
    }

    #[test]
    fn password_values_and_secrets_are_withheld_the_rest_kept() {
        let mut c = Carried {
            release: vec![
                file(
                    "upstream/config.yaml",
                    "apiVersion: kots.io/v1beta1\nkind: Config\nmetadata: {name: c}\nspec:\n  groups:\n  - name: g\n    items:\n    - {name: pw, type: password}\n    - {name: host, type: text}\n",
                ),
                file(
                    CONFIG_VALUES,
                    "apiVersion: kots.io/v1beta1\nkind: ConfigValues\nmetadata: {name: c}\nspec:\n  values:\n    pw: {default: s3cret-generated}\n    host: {value: db.local}\n",
                ),
                file(
                    "base/app.yaml",
                    "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {pw: s3cret-generated}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata: {b64: czNjcmV0LWdlbmVyYXRlZA==}\n",
                ),
            ],
            operator: vec![file(
                "overlays/downstream/db.yaml",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: mine}\nstringData: {x: operator-secret}\n",
            )],
        };
        let w = withhold_secrets(&mut c).unwrap();
        assert_eq!(w.values, ["pw"]);
        assert_eq!(
            w.secret_files,
            ["base/app.yaml", "overlays/downstream/db.yaml"]
        );
        for f in c.release.iter().chain(&c.operator) {
            let text = String::from_utf8_lossy(&f.data);
            for secret in [
                "s3cret-generated",
                "czNjcmV0LWdlbmVyYXRlZA==",
                "operator-secret",
            ] {
                assert!(!text.contains(secret), "{}: {text}", f.path);
            }
        }
        let values = ConfigValues::parse(&String::from_utf8_lossy(&c.release[1].data)).unwrap();
        assert_eq!(values.withheld.iter().collect::<Vec<_>>(), ["pw"]);
        assert_eq!(values.values["host"].value.as_deref(), Some("db.local"));
        assert!(String::from_utf8_lossy(&c.release[2].data).contains("kind: ConfigMap"));
    }

    fn minimal() -> Carried {
        Carried {
            release: vec![
                file("state.json", "{}"),
                file("upstream/app.yaml", "a"),
                file(
                    &format!("midstream/{}", midstream::PULL_SECRET_FILE),
                    "creds",
                ),
            ],
            operator: vec![
                file("overlays/midstream/kustomization.yaml", "k"),
                file("notes.txt", "n"),
            ],
        }
    }

    #[test]
    fn a_restored_directory_collects_back_the_same_without_the_pull_secret() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("app");
        std::fs::create_dir(&root).unwrap();
        restore(&root, &minimal()).unwrap();
        // Links resolve into the release, as a write makes them.
        assert_eq!(
            std::fs::read_to_string(root.join("upstream/app.yaml")).unwrap(),
            "a"
        );
        assert!(super::super::is_app_dir(&root));
        // pull's cache and the lock are not the operator's.
        std::fs::create_dir_all(root.join("images/blobs")).unwrap();
        std::fs::write(root.join("images/blobs/x"), "big").unwrap();
        std::fs::write(root.join(META_DIR).join(super::super::LOCK_FILE), "").unwrap();
        let back = collect(&root).unwrap();
        let mut expected = minimal();
        expected.release.retain(|f| !f.path.contains("pull-secret"));
        expected.release.sort_by(|a, b| a.path.cmp(&b.path));
        expected.operator.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back, expected);
    }

    #[test]
    fn operator_files_cannot_land_in_our_parts_and_paths_are_checked() {
        for bad in [
            "upstream/x.yaml",
            ".kots-bundle/state.json",
            "overlays/midstream/kots-bundle/kustomization.yaml",
            "images/index.json",
            "../escape",
            "/abs",
        ] {
            let d = tempfile::tempdir().unwrap();
            let mut c = minimal();
            c.operator.push(file(bad, "x"));
            assert!(restore(d.path(), &c).is_err(), "{bad} accepted");
        }
        let d = tempfile::tempdir().unwrap();
        let mut c = minimal();
        c.release.push(file("upstream/app.yaml/inner", "x"));
        assert!(restore(d.path(), &c).is_err(), "file and directory at once");
        let d = tempfile::tempdir().unwrap();
        let mut c = minimal();
        c.release.retain(|f| f.path != super::super::STATE_FILE);
        assert!(restore(d.path(), &c).is_err(), "no state accepted");
    }
}
