//! Where credentials come from when no flag gave them: docker's `config.json`
//! (`credHelpers`, `auths`, `credsStore`) and `docker-credential-<name>` helpers, as
//! go-containerregistry's `authn.DefaultKeychain` reads them.
//!
//! Secrets found here live only in memory; their `Debug` is redacted and no error quotes them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use super::error::RegistryError;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Secret {
    /// Sent as HTTP Basic, or to a token service as Basic.
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`identitytoken`): exchanged at the token service.
    IdentityToken {
        username: Option<String>,
        token: String,
    },
}

impl Secret {
    pub fn username(&self) -> Option<&str> {
        match self {
            Secret::Basic { username, .. } => Some(username),
            Secret::IdentityToken { username, .. } => username.as_deref(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Secret::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username:?}, <redacted>)")
            }
        }
    }
}

/// Docker Hub's historical key in `auths`.
pub(crate) const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthEntry({:?}, <redacted>)", self.username)
    }
}

/// `$DOCKER_CONFIG`, else `~/.docker`; `override_dir` wins over both.
pub(crate) fn config_dir(override_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = override_dir {
        return Some(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker"))
}

/// Reads `<dir>/config.json`; a missing file is an empty config.
pub(crate) fn load(dir: &Path) -> Result<DockerConfig, RegistryError> {
    let path = dir.join("config.json");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DockerConfig::default()),
        Err(e) => {
            return Err(RegistryError::Config(format!(
                "cannot read docker config {}: {e}",
                path.display()
            )))
        }
    };
    // serde_json's message names the line and column, never the value.
    serde_json::from_slice(&data).map_err(|e| {
        RegistryError::Config(format!(
            "docker config {} is not valid JSON: {e}",
            path.display()
        ))
    })
}

/// The host a config key names: `https://index.docker.io/v1/` -> `index.docker.io`.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Whether config key `key` is for `registry`, with or without scheme and path.
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    host.eq_ignore_ascii_case(registry) || (is_docker_hub(registry) && is_docker_hub(host))
}

impl DockerConfig {
    /// Parses a config from JSON text (tests, and [`load`]).
    #[cfg(test)]
    pub fn from_json(s: &str) -> DockerConfig {
        serde_json::from_str(s).unwrap()
    }

    /// The credential for `registry`: `credHelpers`, then `auths`, then `credsStore`.
    /// `path` is the search path for helpers (normally `$PATH`).
    pub fn lookup(
        &self,
        registry: &str,
        path: Option<&OsString>,
    ) -> Result<Option<Secret>, RegistryError> {
        let server = if is_docker_hub(registry) {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        // An exact key first, then any key that names the same host.
        let helper = self.cred_helpers.get(server).or_else(|| {
            self.cred_helpers
                .iter()
                .find(|(k, _)| key_matches(k, registry))
                .map(|(_, v)| v)
        });
        if let Some(helper) = helper {
            return run_helper(helper, server, registry, path);
        }
        let entry = self.auths.get(server).or_else(|| {
            let mut keys: Vec<&String> = self
                .auths
                .keys()
                .filter(|k| key_matches(k, registry))
                .collect();
            keys.sort(); // deterministic when several keys name one host
            keys.first().and_then(|k| self.auths.get(*k))
        });
        if let Some(entry) = entry {
            if let Some(secret) = entry_secret(entry, registry)? {
                return Ok(Some(secret));
            }
        }
        if let Some(store) = &self.creds_store {
            return run_helper(store, server, registry, path);
        }
        Ok(None)
    }
}

fn entry_secret(entry: &AuthEntry, registry: &str) -> Result<Option<Secret>, RegistryError> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Secret::IdentityToken {
            username: entry.username.clone().filter(|u| !u.is_empty()),
            token: token.clone(),
        }));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let bad = || {
            RegistryError::Keychain {
            registry: registry.to_string(),
            why: "the `auth` entry in the docker config is not base64 of user:password; run `docker login` again".into(),
        }
        };
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine.decode(auth.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Secret::Basic {
            username: user.to_string(),
            password: pass.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Secret::Basic {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn find_program(name: &str, path: Option<&OsString>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `docker-credential-<helper> get` with the server on stdin. "not found" answers
/// mean anonymous; other failures are errors that name the helper but never quote its
/// output (it may hold the secret).
fn run_helper(
    helper: &str,
    server: &str,
    registry: &str,
    path: Option<&OsString>,
) -> Result<Option<Secret>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let err = |why: String| RegistryError::Keychain {
        registry: registry.to_string(),
        why,
    };
    let exe = find_program(&program, path).ok_or_else(|| {
        err(format!(
            "the docker config names the credential helper {program}, which is not on PATH; install it or remove it from the docker config"
        ))
    })?;
    tracing::debug!(helper = %program, server, "asking credential helper");
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run {}: {e}", exe.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("{program} get: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        if said.contains("credentials not found") || said.contains("not found") {
            return Ok(None);
        }
        return Err(err(format!(
            "{program} get failed ({}); check the helper's own login (its output is not shown because it may contain secrets)",
            out.status
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        err(format!(
            "{program} get did not answer with JSON {{\"Username\",\"Secret\"}}"
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Secret::IdentityToken {
            username: None,
            token: answer.secret,
        }
    } else {
        Secret::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auths_base64_with_and_without_scheme() {
        let cfg = DockerConfig::from_json(&format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "http://reg.local:5000":{{"auth":"{}"}},
                "quay.io":{{"username":"q","password":"p:w"}}
            }}}}"#,
            b64("hubuser:hubpass"),
            b64("alice:s3cr:et")
        ));
        let basic = |u: &str, p: &str| {
            Some(Secret::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            cfg.lookup("docker.io", None).unwrap(),
            basic("hubuser", "hubpass")
        );
        assert_eq!(
            cfg.lookup("registry-1.docker.io", None).unwrap(),
            basic("hubuser", "hubpass")
        );
        // The password keeps its own colons.
        assert_eq!(
            cfg.lookup("reg.local:5000", None).unwrap(),
            basic("alice", "s3cr:et")
        );
        assert_eq!(cfg.lookup("quay.io", None).unwrap(), basic("q", "p:w"));
        assert_eq!(cfg.lookup("ghcr.io", None).unwrap(), None);
        // The port is part of the host.
        assert_eq!(cfg.lookup("reg.local", None).unwrap(), None);
    }

    #[test]
    fn identity_token_and_bad_auth() {
        let cfg = DockerConfig::from_json(
            r#"{"auths":{"acr.example.io":{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"refresh-me"},
                         "bad.example":{"auth":"!!notbase64!!"}}}"#,
        );
        match cfg.lookup("acr.example.io", None).unwrap() {
            Some(Secret::IdentityToken { token, username }) => {
                assert_eq!(token, "refresh-me");
                assert_eq!(
                    username.as_deref(),
                    Some("00000000-0000-0000-0000-000000000000")
                );
            }
            other => panic!("{other:?}"),
        }
        let e = cfg.lookup("bad.example", None).unwrap_err().to_string();
        assert!(
            e.contains("bad.example") && e.contains("docker login"),
            "{e}"
        );
        assert!(!e.contains("notbase64"), "{e}");
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        let t = Secret::IdentityToken {
            username: None,
            token: "tok123".into(),
        };
        assert!(!format!("{t:?}").contains("tok123"));
    }

    fn write_helper(dir: &Path, name: &str, script: &str) {
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn cred_helpers_and_creds_store() {
        let bin = tempfile::tempdir().unwrap();
        // Answers per server read from stdin, like a real helper; logs what it was asked.
        write_helper(
            bin.path(),
            "fake",
            &format!(
                r#"#!/bin/sh
[ "$1" = get ] || exit 2
read server
echo "$server" >> {log}
case "$server" in
  reg.local:5000) echo '{{"ServerURL":"reg.local:5000","Username":"helperuser","Secret":"helperpass"}}' ;;
  https://index.docker.io/v1/) echo '{{"Username":"<token>","Secret":"hub-refresh"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
                log = bin.path().join("asked.log").display()
            ),
        );
        write_helper(
            bin.path(),
            "broken",
            "#!/bin/sh\necho 'leaky-secret'; exit 3\n",
        );
        let path = Some(OsString::from(bin.path()));
        let cfg = DockerConfig::from_json(&format!(
            r#"{{"credHelpers":{{"reg.local:5000":"fake","broken.example":"broken","docker.io":"fake"}},
                "auths":{{"reg.local:5000":{{"auth":"{}"}}}},
                "credsStore":"fake"}}"#,
            b64("ignored:ignored")
        ));
        // credHelpers wins over auths.
        assert_eq!(
            cfg.lookup("reg.local:5000", path.as_ref()).unwrap(),
            Some(Secret::Basic {
                username: "helperuser".into(),
                password: "helperpass".into()
            })
        );
        // Docker Hub asks the helper with its historical server URL; <token> = identity token.
        assert_eq!(
            cfg.lookup("docker.io", path.as_ref()).unwrap(),
            Some(Secret::IdentityToken {
                username: None,
                token: "hub-refresh".into()
            })
        );
        // credsStore for the rest; "not found" means anonymous.
        assert_eq!(cfg.lookup("other.example", path.as_ref()).unwrap(), None);
        let asked = std::fs::read_to_string(bin.path().join("asked.log")).unwrap();
        assert_eq!(
            asked.lines().collect::<Vec<_>>(),
            [
                "reg.local:5000",
                "https://index.docker.io/v1/",
                "other.example"
            ]
        );
        // A failing helper is an error naming it, without its output.
        let e = cfg
            .lookup("broken.example", path.as_ref())
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker-credential-broken"), "{e}");
        assert!(!e.contains("leaky-secret"), "{e}");
        // A helper that is not installed says so.
        let e = cfg
            .lookup("reg.local:5000", Some(&OsString::from("/nonexistent")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not on PATH"), "{e}");
    }

    #[test]
    fn load_reads_dir_and_tolerates_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(dir.path()).unwrap();
        assert_eq!(cfg.lookup("quay.io", None).unwrap(), None);
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
