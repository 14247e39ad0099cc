//! A `DOCKER_CONFIG` directory as `docker login` would leave it: `config.json` with `auths`
//! entries (base64 `user:pass`) and/or `credHelpers` naming `kbtest`, plus an executable
//! `docker-credential-kbtest` that answers the credential-helper protocol's `get` and logs
//! every call (action and server, never the secret) so a test can see it was asked.

#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub const HELPER: &str = "kbtest";

/// Credentials for one registry host (`127.0.0.1:PORT`).
#[derive(Clone, Debug)]
pub struct HostCreds {
    pub host: String,
    pub user: String,
    pub pass: String,
}

impl HostCreds {
    pub fn new(host: &str, user: &str, pass: &str) -> HostCreds {
        HostCreds {
            host: host.to_string(),
            user: user.to_string(),
            pass: pass.to_string(),
        }
    }
}

pub struct DockerConfig {
    /// The directory to set as `DOCKER_CONFIG` (holds `config.json`).
    pub dir: tempfile::TempDir,
    /// The directory holding `docker-credential-kbtest`: prepend it to `PATH`.
    pub path_entry: PathBuf,
    /// One line per helper call: `<action> <server>`.
    pub helper_log: PathBuf,
}

/// Writes the config: `auths` entries for `auths`, `credHelpers: {host: "kbtest"}` for
/// `helper`, whose script answers `get` for exactly those hosts.
pub fn docker_config(auths: &[HostCreds], helper: &[HostCreds]) -> DockerConfig {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper_log = dir.path().join("helper.log");

    let mut config = serde_json::json!({ "auths": {}, "credHelpers": {} });
    for c in auths {
        config["auths"][&c.host] = serde_json::json!({
            "auth": STANDARD.encode(format!("{}:{}", c.user, c.pass)),
        });
    }
    for c in helper {
        config["credHelpers"][&c.host] = serde_json::json!(HELPER);
    }
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();

    // docker's helpers get the server on stdin, with or without a scheme.
    let mut cases = String::new();
    for c in helper {
        for v in [&c.host, &c.user, &c.pass] {
            assert!(
                !v.contains(['\'', '"', '\\', '\n']),
                "keep test credentials shell- and JSON-safe: {v:?}"
            );
        }
        let answer = serde_json::json!({
            "ServerURL": c.host, "Username": c.user, "Secret": c.pass,
        });
        cases.push_str(&format!(
            "      '{h}'|'https://{h}'|'http://{h}') printf '%s\\n' '{answer}' ;;\n",
            h = c.host
        ));
    }
    let script = format!(
        r#"#!/bin/sh
# Test credential helper (docker-credential-helpers protocol).
action="$1"
server=""
if [ "$action" = get ] || [ "$action" = erase ]; then
  server=$(cat)
fi
echo "$action $server" >> '{log}'
case "$action" in
  get)
    case "$server" in
{cases}      *) echo "credentials not found in native keychain"; exit 1 ;;
    esac ;;
  list) echo '{{}}' ;;
  *) echo "kbtest: $action is not supported" >&2; exit 1 ;;
esac
"#,
        log = helper_log.display()
    );
    let script_path = bin.join(format!("docker-credential-{HELPER}"));
    std::fs::write(&script_path, script).unwrap();
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    DockerConfig {
        dir,
        path_entry: bin,
        helper_log,
    }
}

impl DockerConfig {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `PATH` with the helper's directory first.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.path_entry.clone()];
        if let Some(old) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(paths).unwrap()
    }

    /// Points `cmd` at this config: `DOCKER_CONFIG` and `PATH`.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DOCKER_CONFIG", self.dir.path())
            .env("PATH", self.path_env())
    }

    /// The helper's calls so far, one `<action> <server>` per entry.
    pub fn helper_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.helper_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
