//! Test harness: real CNCF distribution registries (Debian's `docker-registry`) on loopback.
//!
//! Each [`TestRegistry`] gets a free 127.0.0.1 port and its own temp storage directory, and is
//! killed when dropped. Tests that need one call [`require_tools`] first, so a machine
//! without the tools fails loudly with the install command instead of passing vacuously.

#![allow(dead_code)]

pub mod app;
pub mod bundle;
pub mod docker_config;
pub mod faulty;
pub mod synth;
pub mod tls;
pub mod token;
pub mod vendor;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "docker-registry";

/// Panics with the set-up hint when a needed tool is missing.
pub fn require_tools(tools: &[&str]) {
    for t in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "{t} is not installed; run `apt-get update && apt-get install -y docker-registry skopeo` (see README)"
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Extra `config.yml` sections for a registry (TLS, auth).
#[derive(Default, Clone)]
pub struct RegistryConfig {
    /// `(cert_pem_path, key_pem_path)`: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Raw YAML placed under `auth:` (htpasswd or token).
    pub auth_yaml: Option<String>,
    /// The CA that signed `tls`'s certificate, handed on as [`TestRegistry::ca_pem`].
    pub ca_pem: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates: `http.tls.clientcas`, so every client
    /// must present a certificate they signed.
    pub client_cas: Vec<PathBuf>,
    /// `storage.maintenance.readonly.enabled`: every write is refused (405).
    pub read_only: bool,
    /// `proxy.remoteurl`: a pull-through cache of that registry.
    pub proxy_remote_url: Option<String>,
}

pub struct TestRegistry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub tls: bool,
    /// The CA certificate (PEM) a client must trust, for TLS registries; `None` otherwise.
    pub ca_pem: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    /// Certificates and htpasswd, kept alive as long as the registry.
    files: Option<tempfile::TempDir>,
    child: Child,
}

impl TestRegistry {
    /// A plain-HTTP anonymous registry.
    pub fn start() -> TestRegistry {
        Self::start_with(RegistryConfig::default())
    }

    /// HTTPS with a fresh CA (`ca_pem`) and a certificate for `127.0.0.1` and `localhost`,
    /// and htpasswd (bcrypt) auth for one user.
    pub fn start_tls_htpasswd(user: &str, pass: &str) -> TestRegistry {
        let files = tempfile::tempdir().unwrap();
        let htpasswd = files.path().join("htpasswd");
        std::fs::write(&htpasswd, tls::htpasswd_line(user, pass)).unwrap();
        let auth = format!(
            "htpasswd:\n  realm: kots-bundle-test\n  path: {}\n",
            htpasswd.display()
        );
        Self::start_tls_in(files, Some(auth))
    }

    /// Plain HTTP, `auth: token` pointing at `token`'s realm: every request needs a bearer
    /// token from that server.
    pub fn start_token(token: &token::TokenServer) -> TestRegistry {
        Self::start_with(RegistryConfig {
            auth_yaml: Some(token.auth_yaml()),
            ..RegistryConfig::default()
        })
    }

    /// HTTPS (fresh CA in `ca_pem`) with `auth: token`.
    pub fn start_token_tls(token: &token::TokenServer) -> TestRegistry {
        Self::start_tls_in(tempfile::tempdir().unwrap(), Some(token.auth_yaml()))
    }

    /// HTTPS with a fresh CA, the certificate files kept in `files` (held by the registry).
    fn start_tls_in(files: tempfile::TempDir, auth_yaml: Option<String>) -> TestRegistry {
        let ca = tls::TestCa::new("kots-bundle test registry CA");
        let ca_pem = ca.write_cert(&files.path().join("ca.pem"));
        let (cert, key) = ca.issue_server().write(files.path(), "server");
        let mut reg = Self::start_with(RegistryConfig {
            tls: Some((cert, key)),
            auth_yaml,
            ca_pem: Some(ca_pem),
            ..RegistryConfig::default()
        });
        reg.files = Some(files);
        reg
    }

    pub fn start_with(cfg: RegistryConfig) -> TestRegistry {
        require_tools(&[REGISTRY_BIN]);
        let dir = tempfile::tempdir().unwrap();
        // A port picked free may be taken before the registry binds it; retry a few times.
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = write_config(dir.path(), &addr, &cfg);
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_ready(&mut child, &addr) {
                return TestRegistry {
                    addr,
                    tls: cfg.tls.is_some(),
                    ca_pem: cfg.ca_pem.clone(),
                    dir,
                    files: None,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob and manifest writes (PUT/PATCH) the registry has completed, from its log.
    pub fn count_writes(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("response completed")
                    && (l.contains("http.request.method=PUT")
                        || l.contains("http.request.method=PATCH"))
            })
            .count()
    }

    /// [`Self::count_writes`] to image repositories only: not those of the app directories
    /// import stores beside them (`<app>-app`).
    pub fn count_image_writes(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("response completed")
                    && (l.contains("http.request.method=PUT")
                        || l.contains("http.request.method=PATCH"))
                    && !l.contains("-app/")
            })
            .count()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Plain-HTTP GET of `path` (only for anonymous, non-TLS registries); returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, Vec<u8>) {
        raw_http(&self.addr, "GET", path, &[], &[])
    }
}

fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, addr: &str, cfg: &RegistryConfig) -> PathBuf {
    let mut y = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
        dir.join("storage").display()
    );
    if cfg.read_only {
        y.push_str("  maintenance:\n    readonly:\n      enabled: true\n");
    }
    y.push_str(&format!("http:\n  addr: {addr}\n"));
    if let Some((cert, key)) = &cfg.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
        if !cfg.client_cas.is_empty() {
            y.push_str("    clientcas:\n");
            for ca in &cfg.client_cas {
                y.push_str(&format!("      - {}\n", ca.display()));
            }
        }
    }
    if let Some(url) = &cfg.proxy_remote_url {
        y.push_str(&format!("proxy:\n  remoteurl: {url}\n"));
    }
    if let Some(auth) = &cfg.auth_yaml {
        y.push_str("auth:\n");
        for line in auth.lines() {
            y.push_str("  ");
            y.push_str(line);
            y.push('\n');
        }
    }
    let p = dir.join("config.yml");
    std::fs::write(&p, y).unwrap();
    p
}

/// Minimal HTTP/1.0 client for harness checks, independent of the code under test.
pub fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http response");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, resp[split + 4..].to_vec())
}

/// The `Location` header of a raw response, for the upload dance in harness tests.
pub fn raw_http_location(addr: &str, method: &str, path: &str) -> (u16, Option<String>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let loc = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .map(|l| l["location:".len()..].trim().to_string());
    (status, loc)
}
