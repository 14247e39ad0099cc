//! Certificate directories as docker, podman and skopeo read them: one directory per
//! registry, `HOST[:PORT]` under `/etc/docker/certs.d`, `/etc/containers/certs.d` or (for a
//! user) `~/.config/containers/certs.d`, holding `*.crt` CA certificates and `NAME.cert` +
//! `NAME.key` client certificates (usually `client.cert`/`client.key`). The first of those
//! roots that has a directory for the host is used, as containers/image does. A directory
//! given on the command line (`--registry-cert-dir`, `--source-cert-dir`) replaces that
//! lookup for the registries of the command, with skopeo's meaning: it holds the files
//! itself.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::RegistryError;

/// Where cert directories are looked for.
#[derive(Clone, Debug, Default)]
pub struct CertDirs {
    /// Used for every registry this client talks to instead of the per-host lookup
    /// (`--registry-cert-dir`, `--source-cert-dir`).
    pub explicit: Option<PathBuf>,
    /// Roots holding one `HOST[:PORT]` directory per registry; `None` for the standard ones
    /// ([`default_roots`]).
    pub roots: Option<Vec<PathBuf>>,
}

/// The roots docker, podman and skopeo read, in containers/image's order.
pub fn default_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        roots.push(PathBuf::from(home).join(".config/containers/certs.d"));
    }
    roots.push(PathBuf::from("/etc/containers/certs.d"));
    roots.push(PathBuf::from("/etc/docker/certs.d"));
    roots
}

/// A client certificate (chain) and its key, from `NAME.cert` and `NAME.key`.
pub(crate) struct ClientCert {
    pub cert_file: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// What one registry's cert directory holds.
#[derive(Default)]
pub(crate) struct CertDir {
    pub dir: Option<PathBuf>,
    /// `*.crt` files and the certificates in each.
    pub cas: Vec<(PathBuf, Vec<CertificateDer<'static>>)>,
    pub client: Option<ClientCert>,
}

impl CertDirs {
    /// The directory for `host` (`registry.example.com` or `HOST:PORT`), if there is one.
    /// `registry` is false for other hosts (a token service, a blob redirect): the explicit
    /// directory belongs to the registries only.
    pub(crate) fn find(&self, host: &str, registry: bool) -> Option<PathBuf> {
        if registry {
            if let Some(d) = &self.explicit {
                return Some(d.clone());
            }
        }
        // A host name never holds a path separator; refuse one rather than leave the root.
        if host.is_empty() || host.contains(['/', '\\']) || host == "." || host == ".." {
            return None;
        }
        let roots = self.roots.clone().unwrap_or_else(default_roots);
        roots.into_iter().map(|r| r.join(host)).find(|d| d.is_dir())
    }

    /// The cert directory of `host`, read; empty when there is none.
    pub(crate) fn load(&self, host: &str, registry: bool) -> Result<CertDir, RegistryError> {
        match self.find(host, registry) {
            Some(dir) => load(&dir, registry && self.explicit.is_some()),
            None => Ok(CertDir::default()),
        }
    }
}

fn config_err(msg: String) -> RegistryError {
    RegistryError::Config(msg)
}

/// Reads one cert directory. `must_exist`: it was named on the command line.
pub(crate) fn load(dir: &Path, must_exist: bool) -> Result<CertDir, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CertDir::default())
        }
        Err(e) => {
            return Err(config_err(format!(
                "cannot read the certificate directory {}: {e}",
                dir.display()
            )))
        }
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let mut out = CertDir {
        dir: Some(dir.to_path_buf()),
        ..CertDir::default()
    };
    for path in &names {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "crt" => {
                let certs = read_certs(path)?;
                out.cas.push((path.clone(), certs));
            }
            "cert" => {
                let key = path.with_extension("key");
                if !key.is_file() {
                    return Err(config_err(format!(
                        "client certificate {} has no key beside it: {} is missing",
                        path.display(),
                        key.display()
                    )));
                }
                if out.client.is_some() {
                    return Err(config_err(format!(
                        "{} holds more than one client certificate (*.cert); keep one",
                        dir.display()
                    )));
                }
                let chain = read_certs(path)?;
                let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                    config_err(format!(
                        "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                        key.display()
                    ))
                })?;
                out.client = Some(ClientCert {
                    cert_file: path.clone(),
                    chain,
                    key: key_der,
                });
            }
            "key" => {
                let cert = path.with_extension("cert");
                if !cert.is_file() {
                    return Err(config_err(format!(
                        "key {} has no client certificate beside it: {} is missing",
                        path.display(),
                        cert.display()
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every certificate of a PEM file; at least one.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let pem = std::fs::read(path)
        .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| config_err(format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUWLYWq0C0C0C0C0C0C0C0C0C0C0AwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_first_root_with_the_host_wins_and_names_cannot_escape() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir(b.path().join("reg.local:5000")).unwrap();
        std::fs::create_dir(a.path().join("other")).unwrap();
        let dirs = CertDirs {
            explicit: None,
            roots: Some(vec![a.path().into(), b.path().into()]),
        };
        assert_eq!(
            dirs.find("reg.local:5000", true),
            Some(b.path().join("reg.local:5000"))
        );
        assert_eq!(
            dirs.find("reg.local", true),
            None,
            "the port is part of the name"
        );
        std::fs::create_dir(a.path().join("reg.local:5000")).unwrap();
        assert_eq!(
            dirs.find("reg.local:5000", true),
            Some(a.path().join("reg.local:5000"))
        );
        assert_eq!(dirs.find("../x", true), None);
        assert_eq!(dirs.find("..", true), None);

        let explicit = CertDirs {
            explicit: Some(b.path().into()),
            ..dirs.clone()
        };
        assert_eq!(explicit.find("anything", true), Some(b.path().into()));
        assert_eq!(
            explicit.find("reg.local:5000", false),
            Some(a.path().join("reg.local:5000")),
            "a token service or redirect host keeps the per-host lookup"
        );
    }

    #[test]
    fn a_client_cert_needs_its_key_and_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("client.cert"), CERT).unwrap();
        let e = load(d.path(), true).err().unwrap().to_string();
        assert!(e.contains("client.key is missing"), "{e}");
        std::fs::remove_file(d.path().join("client.cert")).unwrap();
        std::fs::write(d.path().join("client.key"), "x").unwrap();
        let e = load(d.path(), true).err().unwrap().to_string();
        assert!(e.contains("client.cert is missing"), "{e}");
        std::fs::remove_file(d.path().join("client.key")).unwrap();
        std::fs::write(d.path().join("ca.crt"), "no pem here").unwrap();
        let e = load(d.path(), true).err().unwrap().to_string();
        assert!(e.contains("ca.crt") && e.contains("PEM"), "{e}");
        let e = load(&d.path().join("nope"), true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read the certificate directory"), "{e}");
        assert!(load(&d.path().join("nope"), false).unwrap().dir.is_none());
    }
}
