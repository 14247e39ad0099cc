//! Pull-through mirrors: `--registry-mirror SRC=MIRROR` and containers-registries.conf(5)
//! (v2 TOML), and which locations to read an image from: each matching mirror in order,
//! then the primary, as containers/image does. Mirrors serve reads only.

use std::path::Path;

use serde::Deserialize;

use super::error::RegistryError;

/// Reads of images under `prefix` (a registry, or a registry and repository path) are tried
/// at `location` (same shape) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub prefix: String,
    pub location: String,
    /// From registries.conf `insecure = true`: plain HTTP and unverified TLS allowed.
    pub insecure: bool,
}

impl Mirror {
    /// Parses `SRC=MIRROR`, e.g. `quay.io=127.0.0.1:5000/quay.io`.
    pub fn parse(s: &str) -> Result<Mirror, RegistryError> {
        let (prefix, location) = s.split_once('=').ok_or_else(|| {
            RegistryError::Config(format!(
                "mirror {s:?} is not SRC=MIRROR (e.g. docker.io=mirror.local:5000/docker.io)"
            ))
        })?;
        Mirror::new(prefix, location, false)
    }

    fn new(prefix: &str, location: &str, insecure: bool) -> Result<Mirror, RegistryError> {
        let prefix = normalize_name(prefix);
        let location = location
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        for (what, v) in [("source prefix", &prefix), ("mirror location", &location)] {
            if v.contains('@') {
                // Not echoed: what stands before the '@' is likely a password.
                return Err(RegistryError::Config(format!(
                    "a mirror {what} must not hold credentials (user:password@host); give them with `docker login` (config.json) for the mirror's host"
                )));
            }
            let valid = !v.is_empty()
                && !v.contains(char::is_whitespace)
                && v.split('/').all(|c| !c.is_empty());
            if !valid {
                return Err(RegistryError::Config(format!(
                    "mirror {what} {v:?} is not a registry host with an optional path"
                )));
            }
        }
        Ok(Mirror {
            prefix,
            location,
            insecure,
        })
    }
}

/// Lower-level docker.io spellings to the canonical `docker.io/library/x` form, so a prefix
/// matches the names [`crate::reference::Reference`] produces.
fn normalize_name(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut parts: Vec<&str> = s.split('/').collect();
    if matches!(parts[0], "index.docker.io" | "registry-1.docker.io") {
        parts[0] = "docker.io";
    }
    if parts[0] == "docker.io" && parts.len() == 2 {
        parts.insert(1, "library");
    }
    parts.join("/")
}

/// Whether `prefix` is `name` or a leading run of its path components.
fn matches(prefix: &str, name: &str) -> bool {
    name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// A place to read `registry/repository` from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub registry: String,
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

impl Location {
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The mirrors of the longest matching prefix in order, then the primary.
pub(crate) fn locations(mirrors: &[Mirror], registry: &str, repository: &str) -> Vec<Location> {
    let name = format!("{registry}/{repository}");
    let best = mirrors
        .iter()
        .filter(|m| matches(&m.prefix, &name))
        .map(|m| m.prefix.len())
        .max();
    let mut out = Vec::new();
    if let Some(len) = best {
        for m in mirrors
            .iter()
            .filter(|m| m.prefix.len() == len && matches(&m.prefix, &name))
        {
            let full = format!("{}{}", m.location, &name[m.prefix.len()..]);
            if let Some((reg, repo)) = full.split_once('/') {
                let loc = Location {
                    registry: reg.to_string(),
                    repository: repo.to_string(),
                    insecure: m.insecure,
                    mirror: true,
                };
                if !out.contains(&loc) {
                    out.push(loc);
                }
            }
        }
    }
    out.push(Location {
        registry: registry.to_string(),
        repository: repository.to_string(),
        insecure: false,
        mirror: false,
    });
    out
}

#[derive(Deserialize)]
struct RegistriesConf {
    #[serde(default)]
    registry: Vec<RegistryEntry>,
    /// The v1 format's table; only detected, to say it is not supported.
    #[serde(default)]
    registries: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RegistryEntry {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    mirror: Vec<MirrorEntry>,
}

#[derive(Deserialize)]
struct MirrorEntry {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// Mirrors from a containers-registries.conf(5) v2 file. A `[[registry]]` whose
/// `location` differs from its `prefix` (a remapped primary) is tried after its mirrors.
pub fn load_registries_conf(path: &Path) -> Result<Vec<Mirror>, RegistryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RegistryError::Config(format!(
            "cannot read registries.conf {}: {e}",
            path.display()
        ))
    })?;
    let conf: RegistriesConf = toml::from_str(&text)
        .map_err(|e| RegistryError::Config(format!("{} is not valid TOML: {e}", path.display())))?;
    if conf.registry.is_empty() && conf.registries.is_some() {
        return Err(RegistryError::Config(format!(
            "{} uses the v1 format ([registries.search]); write it in the v2 format with [[registry]] tables",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for (i, r) in conf.registry.iter().enumerate() {
        let prefix = r
            .prefix
            .as_deref()
            .or(r.location.as_deref())
            .ok_or_else(|| {
                RegistryError::Config(format!(
                    "{}: [[registry]] number {} has neither prefix nor location",
                    path.display(),
                    i + 1
                ))
            })?;
        let ctx = |e: RegistryError| {
            RegistryError::Config(format!("{}: registry {prefix:?}: {e}", path.display()))
        };
        for m in &r.mirror {
            out.push(Mirror::new(prefix, &m.location, m.insecure).map_err(ctx)?);
        }
        if let Some(loc) = &r.location {
            if normalize_name(loc) != normalize_name(prefix) {
                out.push(Mirror::new(prefix, loc, r.insecure).map_err(ctx)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ls: &[Location]) -> Vec<String> {
        ls.iter().map(Location::name).collect()
    }

    #[test]
    fn parse_and_reject() {
        let m = Mirror::parse("quay.io=127.0.0.1:5000/quay.io").unwrap();
        assert_eq!(m.prefix, "quay.io");
        assert_eq!(m.location, "127.0.0.1:5000/quay.io");
        assert!(!m.insecure);
        let m = Mirror::parse("index.docker.io=https://mirror.local/hub/").unwrap();
        assert_eq!(m.prefix, "docker.io");
        assert_eq!(m.location, "mirror.local/hub");
        for bad in ["quay.io", "=x", "quay.io=", "a=b//c", "a b=c"] {
            let e = Mirror::parse(bad).unwrap_err().to_string();
            assert!(e.contains("mirror"), "{bad}: {e}");
        }
        let e = Mirror::parse("quay.io=https://bob:hunter2@mirror.local/quay")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("must not hold credentials") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn mirror_then_primary_by_path_component() {
        let ms = [Mirror::parse("quay.io=127.0.0.1:5000/quay.io").unwrap()];
        assert_eq!(
            names(&locations(&ms, "quay.io", "org/a")),
            ["127.0.0.1:5000/quay.io/org/a", "quay.io/org/a"]
        );
        // quay.io must not match quay.iox.
        assert_eq!(
            names(&locations(&ms, "quay.iox", "org/a")),
            ["quay.iox/org/a"]
        );
        let l = locations(&ms, "quay.io", "org/a");
        assert!(l[0].mirror && !l[1].mirror);
        assert_eq!(l[0].registry, "127.0.0.1:5000");
        assert_eq!(l[0].repository, "quay.io/org/a");
    }

    #[test]
    fn longest_prefix_wins_and_ties_keep_order() {
        let ms = [
            Mirror::parse("quay.io=m1.local/q").unwrap(),
            Mirror::parse("quay.io/org=m2.local/orgmirror").unwrap(),
            Mirror::parse("quay.io/org=m3.local").unwrap(),
            Mirror::parse("quay.io/or=never.local").unwrap(),
        ];
        assert_eq!(
            names(&locations(&ms, "quay.io", "org/a")),
            ["m2.local/orgmirror/a", "m3.local/a", "quay.io/org/a"]
        );
        assert_eq!(
            names(&locations(&ms, "quay.io", "other/b")),
            ["m1.local/q/other/b", "quay.io/other/b"]
        );
        // A prefix naming the whole repository.
        let ms = [Mirror::parse("quay.io/org/a=m.local/x/y").unwrap()];
        assert_eq!(
            names(&locations(&ms, "quay.io", "org/a")),
            ["m.local/x/y", "quay.io/org/a"]
        );
    }

    #[test]
    fn docker_hub_forms() {
        let ms = [
            Mirror::parse("docker.io=mirror.local:5000/hub").unwrap(),
            Mirror::parse("docker.io/nginx=nginx-mirror.local/nginx").unwrap(),
        ];
        // `docker.io/nginx` is `docker.io/library/nginx`.
        assert_eq!(ms[1].prefix, "docker.io/library/nginx");
        assert_eq!(
            names(&locations(&ms, "docker.io", "library/redis")),
            [
                "mirror.local:5000/hub/library/redis",
                "docker.io/library/redis"
            ]
        );
        assert_eq!(
            names(&locations(&ms, "docker.io", "library/nginx")),
            ["nginx-mirror.local/nginx", "docker.io/library/nginx"]
        );
        // A bare-host location for a whole-repository prefix leaves no repository: skipped.
        let ms = [Mirror::parse("docker.io/nginx=nginx-mirror.local").unwrap()];
        assert_eq!(
            names(&locations(&ms, "docker.io", "library/nginx")),
            ["docker.io/library/nginx"]
        );
    }

    #[test]
    fn registries_conf_v2() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("registries.conf");
        std::fs::write(
            &p,
            r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "quay.io"
location = "quay.io"

[[registry.mirror]]
location = "127.0.0.1:5000/quay.io"

[[registry.mirror]]
location = "backup.local/quay"
insecure = true

[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "hub-mirror.local"

[[registry]]
prefix = "example.com/foo"
location = "internal.local/foo"
"#,
        )
        .unwrap();
        let ms = load_registries_conf(&p).unwrap();
        assert_eq!(
            ms,
            [
                Mirror {
                    prefix: "quay.io".into(),
                    location: "127.0.0.1:5000/quay.io".into(),
                    insecure: false
                },
                Mirror {
                    prefix: "quay.io".into(),
                    location: "backup.local/quay".into(),
                    insecure: true
                },
                Mirror {
                    prefix: "docker.io".into(),
                    location: "hub-mirror.local".into(),
                    insecure: false
                },
                Mirror {
                    prefix: "example.com/foo".into(),
                    location: "internal.local/foo".into(),
                    insecure: false
                },
            ]
        );
        assert_eq!(
            names(&locations(&ms, "quay.io", "org/a")),
            [
                "127.0.0.1:5000/quay.io/org/a",
                "backup.local/quay/org/a",
                "quay.io/org/a"
            ]
        );
        assert!(locations(&ms, "quay.io", "org/a")[1].insecure);
        assert_eq!(
            names(&locations(&ms, "example.com", "foo/bar")),
            ["internal.local/foo/bar", "example.com/foo/bar"]
        );

        std::fs::write(&p, "[registries.search]\nregistries = ['docker.io']\n").unwrap();
        let e = load_registries_conf(&p).unwrap_err().to_string();
        assert!(e.contains("v1 format"), "{e}");
        std::fs::write(&p, "[[registry]]\ninsecure = true\n").unwrap();
        let e = load_registries_conf(&p).unwrap_err().to_string();
        assert!(e.contains("neither prefix nor location"), "{e}");
        std::fs::write(&p, "[[registry\n").unwrap();
        let e = load_registries_conf(&p).unwrap_err().to_string();
        assert!(e.contains("registries.conf"), "{e}");
    }
}
