//! Finding the helm to run (`--helm PATH`, else `helm` on PATH) and checking it is helm 3 or
//! 4; and running it with a private home, no repository, a timeout and capped output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Chart, HelmError};
use crate::subprocess::{run, RunError};

/// A chart that takes longer than this to render is stuck (the largest real charts take
/// seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Rendered manifests larger than this are not an app's.
pub const DEFAULT_MAX_OUTPUT: u64 = 128 * 1024 * 1024;
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A helm binary known to be v3 or v4.
#[derive(Debug, Clone)]
pub struct Helm {
    path: PathBuf,
    version: String,
    timeout: Duration,
    max_output: u64,
}

impl Helm {
    /// `explicit` (`--helm PATH`), else `helm` on PATH.
    pub fn locate(explicit: Option<&Path>) -> Result<Helm, HelmError> {
        Helm::locate_in(explicit, std::env::var_os("PATH").as_deref())
    }

    /// As [`Helm::locate`], searching `search_path` (a PATH value) instead of the process's.
    pub fn locate_in(
        explicit: Option<&Path>,
        search_path: Option<&OsStr>,
    ) -> Result<Helm, HelmError> {
        let path = match explicit {
            Some(p) => {
                let why = match std::fs::metadata(p) {
                    Err(e) => Some(e.to_string()),
                    Ok(m) if !m.is_file() => Some("not a file".to_string()),
                    Ok(m) if !is_executable(&m) => Some("not executable".to_string()),
                    Ok(_) => None,
                };
                if let Some(why) = why {
                    return Err(HelmError::Explicit {
                        path: p.to_path_buf(),
                        why,
                    });
                }
                p.to_path_buf()
            }
            None => search_path
                .into_iter()
                .flat_map(std::env::split_paths)
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| d.join("helm"))
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && is_executable(&m)))
                .ok_or(HelmError::NotFound)?,
        };
        let version = version_of(&path)?;
        Ok(Helm {
            path,
            version,
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        })
    }

    /// The helm an app with `charts` needs: `None` when it has none (an `explicit` one is
    /// still checked, so a wrong `--helm` is never silently ignored); when no helm is found,
    /// an error naming the charts and saying how to get one (or to pass `--no-helm`).
    pub fn for_charts(
        explicit: Option<&Path>,
        charts: &[Chart],
    ) -> Result<Option<Helm>, HelmError> {
        Helm::for_charts_in(explicit, std::env::var_os("PATH").as_deref(), charts)
    }

    /// As [`Helm::for_charts`], searching `search_path` instead of the process's PATH.
    pub fn for_charts_in(
        explicit: Option<&Path>,
        search_path: Option<&OsStr>,
        charts: &[Chart],
    ) -> Result<Option<Helm>, HelmError> {
        if charts.is_empty() {
            return match explicit {
                Some(_) => Helm::locate_in(explicit, search_path).map(|_| None),
                None => Ok(None),
            };
        }
        match Helm::locate_in(explicit, search_path) {
            Ok(h) => Ok(Some(h)),
            Err(HelmError::NotFound) => Err(HelmError::Missing {
                charts: charts.iter().map(|c| c.to_string()).collect(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Kill `helm template` after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Helm {
        self.timeout = timeout;
        self
    }

    /// Stop `helm template` once it has written more than `bytes`.
    pub fn with_max_output(mut self, bytes: u64) -> Helm {
        self.max_output = bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// As `helm version --short` prints it (`v4.1.4+g05fa379`).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn max_output(&self) -> u64 {
        self.max_output
    }
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

/// `helm version --short`, checked to be v3 or later. Helm 2 prints `Client: v2...` (and
/// fails to reach Tiller), so its output is read whatever the exit status.
fn version_of(path: &Path) -> Result<String, HelmError> {
    let unusable = |why: String| HelmError::Unusable {
        path: path.to_path_buf(),
        why,
    };
    let home = tempfile::Builder::new()
        .prefix("kots-bundle-helm-")
        .tempdir()
        .map_err(|e| unusable(format!("creating a temporary directory: {e}")))?;
    let mut cmd = command(path, home.path());
    cmd.args(["version", "--short"]);
    let out = run(cmd, VERSION_TIMEOUT, 64 * 1024).map_err(|e| match e {
        RunError::Spawn(e) => unusable(format!("cannot run it: {e}")),
        RunError::Timeout => unusable(format!(
            "`helm version` did not answer within {} s",
            VERSION_TIMEOUT.as_secs()
        )),
        RunError::TooLarge => unusable("`helm version` printed too much".into()),
    })?;
    let text = format!("{}\n{}", out.stdout_lossy(), out.stderr);
    let Some((version, major)) = find_version(&text) else {
        return Err(unusable(format!(
            "`helm version --short` printed no version ({}): {}",
            out.status,
            crate::names::escaped(text.trim())
        )));
    };
    if major < 3 {
        return Err(HelmError::Version2 {
            path: path.to_path_buf(),
            version,
        });
    }
    if !out.status.success() {
        return Err(unusable(format!(
            "`helm version --short` failed ({}): {}",
            out.status,
            crate::names::escaped(out.stderr.trim())
        )));
    }
    Ok(version)
}

/// The first `vN.N.N...` word, and N's major.
fn find_version(text: &str) -> Option<(String, u64)> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .filter_map(|w| {
            let rest = w.strip_prefix('v')?;
            let major: u64 = rest.split('.').next()?.parse().ok()?;
            rest.contains('.').then(|| (w.to_string(), major))
        })
        .next()
}

/// helm with a private home: its cache, config and data (repositories, plugins, registry
/// logins) under `home`, which is empty, so nothing of the user's is read or written and no
/// repository is known; no kubeconfig. The environment is otherwise empty: no `HELM_*`
/// setting of the user's reaches it.
pub(super) fn command(path: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env("TMPDIR", home)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for keep in ["LANG", "LC_ALL"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            find_version("v4.1.4+g05fa379\n"),
            Some(("v4.1.4+g05fa379".into(), 4))
        );
        assert_eq!(
            find_version("v3.14.0+g3fc9f4b"),
            Some(("v3.14.0+g3fc9f4b".into(), 3))
        );
        assert_eq!(
            find_version("Client: v2.17.0+ga690bad\nError: could not find tiller"),
            Some(("v2.17.0+ga690bad".into(), 2))
        );
        assert_eq!(
            find_version("version.BuildInfo{Version:\"v3.2.1\", x}"),
            Some(("v3.2.1".into(), 3))
        );
        assert_eq!(find_version("usage: helm"), None);
    }

    #[test]
    fn no_helm_on_path_names_the_charts() {
        let empty = tempfile::tempdir().unwrap();
        let charts = [Chart {
            path: "charts/web-1.0.0.tgz".into(),
            source: super::super::ChartSource::Archive,
            name: "web".into(),
            version: "1.0.0".into(),
        }];
        let none = Helm::for_charts_in(None, Some(empty.path().as_os_str()), &[]).unwrap();
        assert!(none.is_none(), "no charts, no helm needed");
        let e = Helm::for_charts_in(Some(&empty.path().join("nope")), None, &[]).unwrap_err();
        assert!(
            matches!(e, HelmError::Explicit { .. }),
            "a wrong --helm is said: {e}"
        );
        let e = Helm::for_charts_in(None, Some(empty.path().as_os_str()), &charts).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("web 1.0.0 (charts/web-1.0.0.tgz)")
                && msg.contains("--helm PATH")
                && msg.contains("--no-helm"),
            "{msg}"
        );
        let e = Helm::locate_in(Some(&empty.path().join("nope")), None).unwrap_err();
        assert!(e.to_string().starts_with("--helm "), "{e}");
    }
}
