//! Vendor kustomizations: an upstream that ships its own `kustomization.yaml` deploys what
//! that kustomization renders (its resources, `images:` overrides, patches, namespace), so
//! the render stage builds it with a real kustomize and hands on the result.
//!
//! A kustomization that no other one includes is a root. Each root is built from the
//! app's files after the template pass (written to a private directory) and its output
//! becomes one rendered file, `<root dir>/kustomize-build.yaml`, in place of every file
//! under the root's directory and every file a kustomization names outside it. Built once
//! here, with today's kustomize, the result deploys the same on kubectl 1.14-1.20 (whose
//! kustomize 2.0.3 lacks much of what vendors write today). KOTS's own kinds under a
//! root stay in the rendered files as they are, for discovery and the Config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml_ng::Value;

use crate::kustomize::Kustomize;
use crate::upstream::ManifestFile;
use crate::yaml;

/// File names kustomize reads as a kustomization, in its order of preference.
pub const FILE_NAMES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];
/// The rendered output of a root, relative to its directory.
pub const OUTPUT_FILE: &str = "kustomize-build.yaml";

/// Keys of a kustomization whose entries are kustomizations or resource files.
const RESOURCE_KEYS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "crds",
    "transformers",
    "generators",
    "validators",
    "configurations",
];
/// Keys whose entries (strings, or maps with a `path`) name files the build reads.
const FILE_KEYS: &[&str] = &[
    "patchesStrategicMerge",
    "patches",
    "patchesJson6902",
    "replacements",
];
/// Generators: `files` and `envs` (and the older `env`) name files the build reads.
const GENERATOR_KEYS: &[&str] = &["configMapGenerator", "secretGenerator"];

#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    #[error("{file}: {why}")]
    Invalid { file: String, why: String },
    #[error(
        "the upstream ships kustomizations ({roots}), and rendering them needs kubectl or kustomize: \
         install one, or point KOTS_BUNDLE_KUBECTL at it"
    )]
    NoTool { roots: String },
    #[error("{file}: does not render: {why}")]
    Build { file: String, why: String },
    #[error("{file}: {what}: {source}")]
    Io {
        file: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// One kustomization file of the upstream.
#[derive(Debug)]
struct Kustomization {
    /// Its directory, `/`-separated, `""` at the top.
    dir: String,
    /// Its path.
    file: String,
    /// Paths it names (resolved against `dir`), as shipped.
    names: BTreeSet<String>,
}

/// The upstream's kustomizations and what they render from.
#[derive(Debug, Default)]
pub struct Vendor {
    kustomizations: Vec<Kustomization>,
    roots: Vec<usize>,
}

impl Vendor {
    /// Reads every kustomization among `files` (as shipped; the template pass does not
    /// change which files they name). A kustomization that names something the upstream
    /// does not hold, a remote base or a path outside the upstream is an error: an
    /// airgapped install could not build it.
    pub fn find(files: &[&ManifestFile]) -> Result<Vendor, KustomizeError> {
        let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let mut by_dir: BTreeMap<String, &ManifestFile> = BTreeMap::new();
        for f in files {
            let (dir, name) = split(&f.path);
            if let Some(rank) = FILE_NAMES.iter().position(|n| *n == name) {
                // kustomize refuses a directory with two; the first name it prefers wins.
                let better = by_dir.get(dir).is_none_or(|old| {
                    FILE_NAMES.iter().position(|n| *n == split(&old.path).1) > Some(rank)
                });
                if better {
                    by_dir.insert(dir.to_string(), f);
                }
            }
        }
        let dirs: BTreeSet<&str> = by_dir.keys().map(String::as_str).collect();
        let mut kustomizations = Vec::new();
        for (dir, f) in &by_dir {
            let names = named_paths(f, dir)?;
            for n in &names {
                let exists = paths.contains(n.as_str())
                    || dirs.contains(n.as_str())
                    || paths.iter().any(|p| under(p, n));
                if !exists {
                    return Err(KustomizeError::Invalid {
                        file: f.path.clone(),
                        why: format!(
                            "names {n:?}, which the upstream does not hold (remote bases cannot be \
                             fetched inside an air gap: ship them in the upstream)"
                        ),
                    });
                }
            }
            kustomizations.push(Kustomization {
                dir: dir.clone(),
                file: f.path.clone(),
                names,
            });
        }
        let included: BTreeSet<&str> = kustomizations
            .iter()
            .flat_map(|k| k.names.iter().map(String::as_str))
            .filter(|n| dirs.contains(n))
            .collect();
        let roots = (0..kustomizations.len())
            .filter(|&i| !included.contains(kustomizations[i].dir.as_str()))
            .collect();
        Ok(Vendor {
            kustomizations,
            roots,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.kustomizations.is_empty()
    }

    /// Whether the file at `path` is read by a kustomization build rather than deployed as
    /// it is: under a kustomization's directory, or named by one.
    fn consumes(&self, path: &str) -> bool {
        self.kustomizations
            .iter()
            .any(|k| under(path, &k.dir) || k.names.iter().any(|n| n == path || under(path, n)))
    }

    /// Replaces, in `rendered` (the app's files after the template pass), every file a
    /// kustomization reads with the output of each root. `shipped` are the same files as
    /// loaded: those the template pass dropped entirely (all documents excluded) are
    /// written empty, and files that are not YAML (generator inputs) as shipped.
    pub fn build(
        &self,
        shipped: &[&ManifestFile],
        rendered: Vec<ManifestFile>,
    ) -> Result<Vec<ManifestFile>, KustomizeError> {
        if self.roots.is_empty() {
            return Ok(rendered);
        }
        let root_files = || {
            self.roots
                .iter()
                .map(|&i| self.kustomizations[i].file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let tool = Kustomize::find().ok_or_else(|| KustomizeError::NoTool {
            roots: root_files(),
        })?;
        let tmp = tempfile::Builder::new()
            .prefix("kots-bundle-vendor-")
            .tempdir()
            .map_err(|source| KustomizeError::Io {
                file: root_files(),
                what: "creating a temporary directory",
                source,
            })?;
        let by_path: BTreeMap<&str, &ManifestFile> =
            rendered.iter().map(|f| (f.path.as_str(), f)).collect();
        for f in shipped.iter().filter(|f| self.consumes(&f.path)) {
            let data: &[u8] = match by_path.get(f.path.as_str()) {
                Some(r) => &r.data,
                None if yaml::Format::of(&f.path).is_some() => b"",
                None => &f.data,
            };
            // Paths were checked by the upstream loader; checked again before they are
            // joined to a directory.
            crate::names::relative_path(&f.path).map_err(|why| KustomizeError::Invalid {
                file: crate::names::escaped(&f.path),
                why: why.to_string(),
            })?;
            let to = tmp.path().join(&f.path);
            let io = |source| KustomizeError::Io {
                file: f.path.clone(),
                what: "staging it for kustomize",
                source,
            };
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&to, data).map_err(io)?;
        }

        let mut out: Vec<ManifestFile> = Vec::new();
        for f in rendered {
            if !self.consumes(&f.path) {
                out.push(f);
            } else if let Some(kept) = kots_documents(&f) {
                out.push(kept);
            }
        }
        for &i in &self.roots {
            let k = &self.kustomizations[i];
            let dir = if k.dir.is_empty() {
                tmp.path().to_path_buf()
            } else {
                tmp.path().join(&k.dir)
            };
            let built = build_one(&tool, &dir, &k.file)?;
            let path = if k.dir.is_empty() {
                OUTPUT_FILE.to_string()
            } else {
                format!("{}/{OUTPUT_FILE}", k.dir)
            };
            tracing::debug!(kustomization = %k.file, "built with {}", tool.path().display());
            out.retain(|f| f.path != path);
            out.push(ManifestFile { path, data: built });
        }
        Ok(out)
    }
}

/// The build of one root, without KOTS's own kinds: those stay where the vendor put them
/// (kept by [`kots_documents`]), so a Config or HelmChart the kustomization also lists is
/// not read twice.
fn build_one(tool: &Kustomize, dir: &Path, file: &str) -> Result<Vec<u8>, KustomizeError> {
    let failed = |why: String| KustomizeError::Build {
        file: file.to_string(),
        why,
    };
    let out = tool.build(dir).map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8(out).map_err(|_| failed("its output is not UTF-8".into()))?;
    let (_, deployed) = split_kots(&text, yaml::Format::Yaml);
    Ok(yaml::join(&deployed, yaml::Format::Yaml).into_bytes())
}

/// The documents of `f` that configure KOTS (Config, Application, HelmChart, ...), which
/// the render and discovery read wherever they are.
fn kots_documents(f: &ManifestFile) -> Option<ManifestFile> {
    let format = yaml::Format::of(&f.path)?;
    let text = std::str::from_utf8(&f.data).ok()?;
    let (kots, _) = split_kots(text, format);
    (!kots.is_empty()).then(|| ManifestFile {
        path: f.path.clone(),
        data: yaml::join(&kots, format).into_bytes(),
    })
}

/// The non-empty documents of `text`: (those that configure KOTS, the others).
fn split_kots(text: &str, format: yaml::Format) -> (Vec<&str>, Vec<&str>) {
    let mut out = (Vec::new(), Vec::new());
    for d in yaml::documents(text, format) {
        if d.raw.trim().is_empty() {
            continue;
        }
        let kots = d.parsed.as_ref().is_ok_and(|v| {
            v.get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(super::configures_kots)
        });
        if kots { &mut out.0 } else { &mut out.1 }.push(d.raw);
    }
    out
}

/// Every path the kustomization in `f` names, resolved against `dir`.
fn named_paths(f: &ManifestFile, dir: &str) -> Result<BTreeSet<String>, KustomizeError> {
    let invalid = |why: String| KustomizeError::Invalid {
        file: f.path.clone(),
        why,
    };
    let text = std::str::from_utf8(&f.data).map_err(|_| invalid("not UTF-8".into()))?;
    let doc = yaml::documents(text, yaml::Format::Yaml)
        .into_iter()
        .next()
        .ok_or_else(|| invalid("empty".into()))?;
    let v = doc.parsed.map_err(|e| invalid(e.to_string()))?;
    let mut raw: Vec<String> = Vec::new();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    for key in RESOURCE_KEYS {
        // `transformers:` and the like may hold inline YAML, not a path.
        raw.extend(
            strings(v.get(key))
                .into_iter()
                .filter(|e| !e.contains('\n')),
        );
    }
    for key in FILE_KEYS {
        for item in v
            .get(key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            match item {
                Value::String(s) if !s.contains('\n') && !s.trim_start().starts_with('{') => {
                    raw.push(s.clone())
                }
                Value::Mapping(_) => {
                    if let Some(p) = item.get("path").and_then(Value::as_str) {
                        raw.push(p.to_string());
                    }
                }
                _ => {} // an inline patch
            }
        }
    }
    for key in GENERATOR_KEYS {
        for gen in v
            .get(key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for files_key in ["files", "envs"] {
                for entry in strings(gen.get(files_key)) {
                    // `key=path` names the file after the `=`.
                    let path = entry.split_once('=').map_or(entry.as_str(), |(_, p)| p);
                    raw.push(path.to_string());
                }
            }
            if let Some(env) = gen.get("env").and_then(Value::as_str) {
                raw.push(env.to_string());
            }
        }
    }
    raw.into_iter()
        .map(|entry| resolve(dir, &entry).map_err(invalid))
        .collect()
}

/// `entry` (as a kustomization in `dir` writes it) as a path in the upstream.
fn resolve(dir: &str, entry: &str) -> Result<String, String> {
    let remote = entry.contains("://")
        || entry.starts_with("git@")
        || entry.contains("?ref=")
        || entry.starts_with("github.com/")
        || entry.starts_with("gitlab.com/");
    if remote {
        return Err(format!(
            "names the remote base {entry:?}, which cannot be fetched inside an air gap: ship it \
             in the upstream"
        ));
    }
    if entry.starts_with('/') {
        return Err(format!("names the absolute path {entry:?}"));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in entry.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("names {entry:?}, outside the upstream"));
                }
            }
            p => parts.push(p),
        }
    }
    let path = parts.join("/");
    // `""` is the top of the upstream (an overlay naming `../..`).
    if !path.is_empty() {
        crate::names::relative_path(&path).map_err(|why| format!("names {entry:?}: {why}"))?;
    }
    Ok(path)
}

/// (directory, file name) of a `/`-separated path.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Whether `path` lies under the directory `dir` (`""` is the top: everything).
fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    fn vendor(files: &[ManifestFile]) -> Result<Vendor, KustomizeError> {
        Vendor::find(&files.iter().collect::<Vec<_>>())
    }

    #[test]
    fn roots_are_kustomizations_no_other_includes() {
        let files = [
            file("base/kustomization.yaml", "resources: [deploy.yaml]\n"),
            file("base/deploy.yaml", "kind: Deployment\n"),
            file(
                "overlays/prod/kustomization.yaml",
                "resources: [../../base]\npatches: [{path: p.yaml}]\n",
            ),
            file("overlays/prod/p.yaml", "kind: Deployment\n"),
            file("crds/kustomization.yml", "resources: [crd.yaml]\n"),
            file("crds/crd.yaml", "kind: CustomResourceDefinition\n"),
            file("other.yaml", "kind: ConfigMap\n"),
        ];
        let v = vendor(&files).unwrap();
        let roots: Vec<&str> = v
            .roots
            .iter()
            .map(|&i| v.kustomizations[i].file.as_str())
            .collect();
        assert_eq!(
            roots,
            ["crds/kustomization.yml", "overlays/prod/kustomization.yaml"]
        );
        assert!(v.consumes("base/deploy.yaml"));
        assert!(v.consumes("overlays/prod/p.yaml"));
        assert!(!v.consumes("other.yaml"));
    }

    #[test]
    fn an_overlay_can_include_the_top_kustomization() {
        let files = [
            file("kustomization.yaml", "resources: [app.yaml]\n"),
            file("app.yaml", "kind: ConfigMap\n"),
            file(
                "overlays/prod/kustomization.yaml",
                "resources: [../..]\ntransformers:\n- |\n  apiVersion: builtin\n  kind: LabelTransformer\n",
            ),
        ];
        let v = vendor(&files).unwrap();
        let roots: Vec<&str> = v
            .roots
            .iter()
            .map(|&i| v.kustomizations[i].file.as_str())
            .collect();
        assert_eq!(roots, ["overlays/prod/kustomization.yaml"]);
    }

    #[test]
    fn refuses_what_an_air_gap_cannot_build() {
        for (entry, says) in [
            ("github.com/org/repo//deploy?ref=v1", "remote base"),
            ("https://example.com/x.yaml", "remote base"),
            ("../../../etc", "outside the upstream"),
            ("/etc/passwd", "absolute path"),
            ("missing.yaml", "does not hold"),
        ] {
            let files = [file(
                "app/kustomization.yaml",
                &format!("resources:\n- {entry:?}\n"),
            )];
            let err = vendor(&files).unwrap_err().to_string();
            assert!(err.contains("app/kustomization.yaml"), "{err}");
            assert!(err.contains(says), "{entry}: {err}");
        }
    }

    #[test]
    fn generator_files_and_patch_paths_are_read_files() {
        let files = [
            file(
                "k/kustomization.yaml",
                "configMapGenerator:\n- name: c\n  files: [cfg=../conf/app.properties]\n  envs: [../conf/e.env]\npatchesStrategicMerge: [../p/sm.yaml]\n",
            ),
            file("conf/app.properties", "a=b\n"),
            file("conf/e.env", "X=1\n"),
            file("p/sm.yaml", "kind: Deployment\n"),
        ];
        let v = vendor(&files).unwrap();
        for p in ["conf/app.properties", "conf/e.env", "p/sm.yaml"] {
            assert!(v.consumes(p), "{p}");
        }
    }
}
