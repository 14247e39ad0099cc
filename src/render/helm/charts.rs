//! Which files of an app are Helm charts: `.tgz` archives with a `Chart.yaml` at their top,
//! and directories holding a `Chart.yaml`. A chart's own dependencies (its `charts/` folder,
//! directories or archives) and anything else under its directory belong to that chart:
//! helm renders them with it.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;

use serde_yaml_ng::Value;

use super::HelmError;
use crate::upstream::{is_tarball_name, ManifestFile};

/// Larger `Chart.yaml` files are not charts' (helm's own limit is lower still).
const MAX_CHART_YAML: u64 = 1024 * 1024;
/// How much of an archive is decompressed while looking for its `Chart.yaml`.
const MAX_SCAN_BYTES: u64 = 512 * 1024 * 1024;

/// How a chart is shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartSource {
    /// A `.tgz` (or `.tar.gz`) file, as `helm package` writes it.
    Archive,
    /// A directory with a `Chart.yaml`.
    Directory,
}

/// One chart of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// The archive's path, or the directory's (`""` when the app itself is a chart), relative
    /// to the app root.
    pub path: String,
    pub source: ChartSource,
    /// `name` and `version` of its `Chart.yaml`.
    pub name: String,
    pub version: String,
}

impl Chart {
    /// Whether `file` (an upstream path) is part of this chart.
    pub fn contains(&self, file: &str) -> bool {
        match self.source {
            ChartSource::Archive => file == self.path,
            ChartSource::Directory => {
                self.path.is_empty()
                    || file
                        .strip_prefix(self.path.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    /// The upstream path as shown to a person.
    pub fn location(&self) -> String {
        match (self.source, self.path.as_str()) {
            (ChartSource::Directory, "") => "./".to_string(),
            (ChartSource::Directory, p) => format!("{p}/"),
            (ChartSource::Archive, p) => p.to_string(),
        }
    }
}

impl fmt::Display for Chart {
    /// `grafana 5.0.13 (grafana-5.0.13.tgz)`, escaped (a chart's name is the vendor's text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::names::escaped;
        write!(
            f,
            "{} {} ({})",
            escaped(&self.name),
            escaped(&self.version),
            escaped(&self.location())
        )
    }
}

/// Every chart of the app, sorted by path. A `.tgz` without a `Chart.yaml` at its top is not
/// a chart (it may be a tarball of manifests) and is left out; a chart whose `Chart.yaml` is
/// unreadable or has no name is an error naming it.
pub fn find_charts(files: &[ManifestFile]) -> Result<Vec<Chart>, HelmError> {
    let dirs = chart_dirs(files);
    let mut charts = Vec::new();
    for dir in &dirs {
        let file = join(dir, "Chart.yaml");
        let Some(f) = files.iter().find(|f| f.path == file) else {
            continue;
        };
        let (name, version) = chart_identity(&f.data).map_err(|why| HelmError::Chart {
            file: file.clone(),
            why,
        })?;
        charts.push(Chart {
            path: dir.clone(),
            source: ChartSource::Directory,
            name,
            version,
        });
    }
    for f in files {
        if !is_tarball_name(&f.path.to_ascii_lowercase()) || inside_any(&dirs, &f.path) {
            continue;
        }
        let Some(chart_yaml) = archive_chart_yaml(&f.data).map_err(|why| HelmError::Chart {
            file: f.path.clone(),
            why,
        })?
        else {
            continue;
        };
        let (name, version) = chart_identity(&chart_yaml).map_err(|why| HelmError::Chart {
            file: format!("{}!/Chart.yaml", f.path),
            why,
        })?;
        charts.push(Chart {
            path: f.path.clone(),
            source: ChartSource::Archive,
            name,
            version,
        });
    }
    charts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(charts)
}

/// The upstream files that belong to `charts` (archives, and every file under a chart
/// directory): the KOTS template pass and `base/` leave them to helm.
pub fn chart_files(files: &[ManifestFile], charts: &[Chart]) -> BTreeSet<String> {
    files
        .iter()
        .filter(|f| charts.iter().any(|c| c.contains(&f.path)))
        .map(|f| f.path.clone())
        .collect()
}

/// Directories with a `Chart.yaml` that are not inside another such directory.
fn chart_dirs(files: &[ManifestFile]) -> Vec<String> {
    let all: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| match f.path.rsplit_once('/') {
            Some((dir, "Chart.yaml")) => Some(dir),
            None if f.path == "Chart.yaml" => Some(""),
            _ => None,
        })
        .collect();
    // Sorted, so a parent comes before its children.
    let mut top: Vec<String> = Vec::new();
    for dir in all {
        if !inside_any(&top, dir) && !top.iter().any(|t| t == dir) {
            top.push(dir.to_string());
        }
    }
    top
}

/// `path` is under one of `dirs` (`""` holds everything).
fn inside_any(dirs: &[String], path: &str) -> bool {
    dirs.iter().any(|d| {
        d.is_empty()
            || path
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `name` and `version` from a `Chart.yaml`.
fn chart_identity(data: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(data).map_err(|_| "Chart.yaml is not UTF-8".to_string())?;
    let v = crate::yaml::parse_yaml(text, 1).map_err(|e| format!("Chart.yaml: {e}"))?;
    let field = |k: &str| match v.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let name = field("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "Chart.yaml has no name".to_string())?;
    Ok((name, field("version").unwrap_or_default()))
}

/// The top-level `Chart.yaml` of a chart archive (`<chart>/Chart.yaml`), or `None` when the
/// file is not a gzip'd tar holding one. Only that entry is read.
fn archive_chart_yaml(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(None);
    }
    let gz = flate2::read::GzDecoder::new(data).take(MAX_SCAN_BYTES);
    let mut archive = tar::Archive::new(gz);
    let Ok(entries) = archive.entries() else {
        return Ok(None);
    };
    for entry in entries {
        // A tarball that breaks before any Chart.yaml is not a chart we can read; helm would
        // refuse it too, but it may be a broken manifests tarball, which is not ours to judge.
        let Ok(mut entry) = entry else {
            return Ok(None);
        };
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok(path) = crate::names::normalize_relative_path(&raw) else {
            continue;
        };
        let mut parts = path.split('/');
        let (Some(_top), Some("Chart.yaml"), None) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > MAX_CHART_YAML {
            return Err(format!("{path} is larger than {MAX_CHART_YAML} bytes"));
        }
        let mut out = Vec::new();
        entry
            .read_to_end(&mut out)
            .map_err(|e| format!("reading {path}: {e}"))?;
        return Ok(Some(out));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            data: data.to_vec(),
        }
    }

    fn tgz(entries: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, text) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn archives_and_directories_with_their_dependencies() {
        let files = vec![
            file("a.yaml", b"kind: x"),
            file(
                "charts/web-1.0.0.tgz",
                &tgz(&[
                    ("web/Chart.yaml", "name: web\nversion: 1.0.0\n"),
                    ("web/charts/db/Chart.yaml", "name: db\nversion: 2\n"),
                ]),
            ),
            file("notes.tgz", &tgz(&[("notes/readme.txt", "hi")])),
            file("not-gzip.tgz", b"plain"),
            file(
                "mine/Chart.yaml",
                b"apiVersion: v2\nname: mine\nversion: 0.1.0\n",
            ),
            file("mine/templates/x.yaml", b"{{ .Values }}"),
            file("mine/charts/sub/Chart.yaml", b"name: sub\nversion: 1\n"),
            file(
                "mine/charts/dep-3.0.0.tgz",
                &tgz(&[("dep/Chart.yaml", "name: dep\nversion: 3.0.0\n")]),
            ),
        ];
        let charts = find_charts(&files).unwrap();
        let got: Vec<String> = charts.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            got,
            ["web 1.0.0 (charts/web-1.0.0.tgz)", "mine 0.1.0 (mine/)"]
        );
        assert_eq!(charts[0].source, ChartSource::Archive);
        let owned: Vec<String> = chart_files(&files, &charts).into_iter().collect();
        assert_eq!(
            owned,
            [
                "charts/web-1.0.0.tgz",
                "mine/Chart.yaml",
                "mine/charts/dep-3.0.0.tgz",
                "mine/charts/sub/Chart.yaml",
                "mine/templates/x.yaml"
            ]
        );
    }

    #[test]
    fn the_app_itself_can_be_a_chart() {
        let files = vec![
            file("Chart.yaml", b"name: root\nversion: 1.2\n"),
            file("templates/a.yaml", b""),
            file(
                "charts/x-1.tgz",
                &tgz(&[("x/Chart.yaml", "name: x\nversion: 1\n")]),
            ),
        ];
        let charts = find_charts(&files).unwrap();
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].to_string(), "root 1.2 (./)");
        assert_eq!(chart_files(&files, &charts).len(), 3);
    }

    #[test]
    fn a_chart_without_a_name_is_an_error_naming_it() {
        let e = find_charts(&[file("c/Chart.yaml", b"version: 1\n")]).unwrap_err();
        assert_eq!(e.to_string(), "chart c/Chart.yaml: Chart.yaml has no name");
        let e = find_charts(&[file("x.tgz", &tgz(&[("x/Chart.yaml", "name: [\n")]))]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("chart x.tgz!/Chart.yaml: Chart.yaml: "),
            "{e}"
        );
    }
}
