//! Registry TLS as operators set it up, against real `docker-registry`: the self-signed
//! certificate Docker's "deploy a registry" docs make with `openssl req -x509` (CA:TRUE under
//! OpenSSL 3), cert directories (`certs.d/HOST:PORT/` with `*.crt`, `client.cert`,
//! `client.key`) for a registry that requires client certificates (`http.tls.clientcas`),
//! and the refusals that must stay refusals (another host name, an unrelated certificate).
//! Each success is also a success for skopeo with the same files, and each refusal a refusal
//! for skopeo too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::app::{bin, ok, Source};
use common::synth::{self, ImageSpec};
use common::tls::TestCa;
use common::{RegistryConfig, TestRegistry};
use kots_bundle::registry::{CertDirs, Client, RegistryOptions, Role};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The certificate and key exactly as Docker's registry docs make them.
fn docker_docs_cert(dir: &Path, stem: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
    let crt = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let out = Command::new("openssl")
        .args(["req", "-newkey", "rsa:4096", "-nodes", "-sha256", "-keyout"])
        .arg(&key)
        .args(["-x509", "-days", "365", "-out"])
        .arg(&crt)
        .args(["-subj", &format!("/CN={cn}"), "-addext"])
        .arg(format!("subjectAltName={san}"))
        .output()
        .expect("openssl is installed");
    ok(out, "openssl req -x509");
    (crt, key)
}

/// A source with one image and an archive of an app that uses it.
struct World {
    _src: Source,
    work: tempfile::TempDir,
    archive: PathBuf,
    image: synth::SynthImage,
    /// Roots for per-host cert dirs, so the machine's /etc/docker/certs.d is never read.
    no_certs_d: tempfile::TempDir,
}

fn world() -> World {
    let src = Source::start(vec![ImageSpec::new("a:v1", 7)]);
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("manifests");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/a:v1}\n",
    )
    .unwrap();
    let archive = work.path().join("app.airgap");
    ok(
        bin()
            .arg("export")
            .arg(&app)
            .arg("-o")
            .arg(&archive)
            .args(["--registry-mirror", &src.mirror()])
            .output()
            .unwrap(),
        "export",
    );
    let image = src.image("a:v1").clone();
    World {
        _src: src,
        work,
        archive,
        image,
        no_certs_d: tempfile::tempdir().unwrap(),
    }
}

impl World {
    /// `kots-bundle import` into `reg` with these extra arguments; cert dirs looked up under
    /// `certs_d` (an empty root unless given).
    fn import(&self, reg: &TestRegistry, args: &[&str], certs_d: Option<&Path>) -> Output {
        let dir = tempfile::tempdir_in(self.work.path()).unwrap().keep();
        bin()
            .arg("import")
            .arg(&self.archive)
            .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
            .arg("--dest")
            .arg(dir.join("app"))
            .args(args)
            .env("DOCKER_CONFIG", self.work.path())
            .env(
                "KOTS_BUNDLE_CERTS_D",
                certs_d.unwrap_or(self.no_certs_d.path()),
            )
            .output()
            .unwrap()
    }
}

/// skopeo's verdict on pushing the test image to `reg` trusting `cert_dir` (its
/// `--dest-cert-dir`: `*.crt`, `client.cert`, `client.key`).
fn skopeo_push_ok(cert_dir: &Path, reg: &TestRegistry) -> bool {
    common::require_tools(&["skopeo"]);
    let layout = tempfile::tempdir().unwrap();
    synth::write_layout(layout.path(), &[ImageSpec::new("x:1", 99)]);
    Command::new("skopeo")
        .args(["copy", "--dest-cert-dir"])
        .arg(cert_dir)
        .arg(format!("oci:{}:x:1", layout.path().display()))
        .arg(format!("docker://{}/skopeo/x:1", reg.addr))
        .output()
        .unwrap()
        .status
        .success()
}

fn skopeo_digest(cert_dir: &Path, reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(cert_dir)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    synth::sha256(ok(out, reference).as_bytes())
}

/// A directory holding these files under the given names.
fn dir_with(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, from) in files {
        std::fs::copy(from, d.path().join(name)).unwrap();
    }
    d
}

fn tls_registry(cert: &Path, key: &Path, client_cas: Vec<PathBuf>) -> TestRegistry {
    TestRegistry::start_with(RegistryConfig {
        tls: Some((cert.to_path_buf(), key.to_path_buf())),
        client_cas,
        ..RegistryConfig::default()
    })
}

#[test]
fn docker_docs_self_signed_certificate_works_as_registry_ca_and_in_a_cert_dir() {
    let w = world();
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = docker_docs_cert(
        certs.path(),
        "domain",
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
    );
    // What makes it hard: OpenSSL 3 marks it a CA, and it is served as the leaf.
    let text = ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&crt)
            .output()
            .unwrap(),
        "openssl x509",
    );
    assert!(text.contains("CA:TRUE"), "{text}");
    let reg = tls_registry(&crt, &key, Vec::new());

    let skopeo_dir = dir_with(&[("domain.crt", &crt)]);
    assert!(skopeo_push_ok(skopeo_dir.path(), &reg), "skopeo accepts it");

    let out = w.import(&reg, &["--registry-ca", crt.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "import --registry-ca: {}",
        stderr(&out)
    );
    assert_eq!(
        skopeo_digest(skopeo_dir.path(), &format!("{}/ns/a:v1", reg.addr)),
        w.image.digest
    );

    // The same certificate found in a cert dir, as docker reads /etc/docker/certs.d.
    let root = tempfile::tempdir().unwrap();
    let host_dir = root.path().join(&reg.addr);
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::copy(&crt, host_dir.join("domain.crt")).unwrap();
    let out = w.import(&reg, &[], Some(root.path()));
    assert!(out.status.success(), "import via certs.d: {}", stderr(&out));
}

#[test]
fn a_self_signed_registry_without_its_certificate_is_refused_and_the_hint_fits() {
    let w = world();
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = docker_docs_cert(
        certs.path(),
        "domain",
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
    );
    let (other, _) = docker_docs_cert(
        certs.path(),
        "other",
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
    );
    let reg = tls_registry(&crt, &key, Vec::new());

    let out = w.import(&reg, &[], None);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains(&reg.addr), "names the registry: {e}");
    assert!(e.contains("self-signed"), "says what it saw: {e}");
    assert!(e.contains("--registry-ca FILE"), "says what to do: {e}");

    // An unrelated self-signed certificate is no key to this one, for skopeo too.
    let other_dir = dir_with(&[("other.crt", &other)]);
    assert!(!skopeo_push_ok(other_dir.path(), &reg));
    let out = w.import(&reg, &["--registry-ca", other.to_str().unwrap()], None);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains("self-signed"), "{e}");
    assert!(e.contains("none of the certificates given"), "{e}");
    assert!(e.contains("other.crt"), "names what was given: {e}");
    assert!(
        !e.contains("pass --registry-ca"),
        "never suggests the flag that was given: {e}"
    );
}

#[test]
fn the_right_certificate_for_another_host_name_is_refused() {
    let w = world();
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = docker_docs_cert(
        certs.path(),
        "domain",
        "registry.example.test",
        "DNS:registry.example.test",
    );
    let reg = tls_registry(&crt, &key, Vec::new());
    let dir = dir_with(&[("domain.crt", &crt)]);
    assert!(!skopeo_push_ok(dir.path(), &reg), "skopeo refuses it too");

    let out = w.import(&reg, &["--registry-ca", crt.to_str().unwrap()], None);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("is for registry.example.test, not 127.0.0.1"),
        "name mismatch said: {e}"
    );
    assert!(!e.contains("pass --registry-ca"), "{e}");
}

/// A CA and its server leaf, a client CA and a client certificate, written to `dir`.
struct Pki {
    server_ca: PathBuf,
    server: (PathBuf, PathBuf),
    client_ca: PathBuf,
    client: (PathBuf, PathBuf),
    stranger_client: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let ca = TestCa::new("bank registry CA");
    let clients = TestCa::new("bank client CA");
    let stranger = TestCa::new("someone else's client CA");
    let write = |name: &str, ext: &str, i: common::tls::Issued| {
        let c = dir.join(format!("{name}.{ext}"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, i.cert_pem).unwrap();
        std::fs::write(&k, i.key_pem).unwrap();
        (c, k)
    };
    Pki {
        server_ca: ca.write_cert(&dir.join("ca.pem")),
        server: write("server", "crt", ca.issue_server()),
        client_ca: clients.write_cert(&dir.join("clients.pem")),
        client: write("client", "cert", clients.issue_client("importer")),
        stranger_client: write("stranger", "cert", stranger.issue_client("importer")),
    }
}

/// A cert dir: `ca.crt`, and `client.cert` + `client.key` when given.
fn cert_dir(root: &Path, name: &str, ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(ca, d.join("ca.crt")).unwrap();
    if let Some((c, k)) = client {
        std::fs::copy(c, d.join("client.cert")).unwrap();
        std::fs::copy(k, d.join("client.key")).unwrap();
    }
    d
}

#[test]
fn a_registry_that_requires_client_certificates_works_through_a_cert_dir() {
    let w = world();
    let files = tempfile::tempdir().unwrap();
    let p = pki(files.path());
    let reg = tls_registry(&p.server.0, &p.server.1, vec![p.client_ca.clone()]);

    // /etc/docker/certs.d/HOST:PORT/ as docker and podman read it.
    let root = tempfile::tempdir().unwrap();
    let host_dir = cert_dir(root.path(), &reg.addr, &p.server_ca, Some(&p.client));
    assert!(skopeo_push_ok(&host_dir, &reg), "skopeo with the cert dir");
    let out = w.import(&reg, &[], Some(root.path()));
    assert!(out.status.success(), "import via certs.d: {}", stderr(&out));
    assert_eq!(
        skopeo_digest(&host_dir, &format!("{}/ns/a:v1", reg.addr)),
        w.image.digest
    );

    // --registry-cert-dir DIR holds the files itself (skopeo's --dest-cert-dir).
    let explicit = cert_dir(files.path(), "explicit", &p.server_ca, Some(&p.client));
    let out = w.import(
        &reg,
        &["--registry-cert-dir", explicit.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "import --registry-cert-dir: {}",
        stderr(&out)
    );

    // Without a client certificate: said so, with where it goes.
    let bare = tempfile::tempdir().unwrap();
    cert_dir(bare.path(), &reg.addr, &p.server_ca, None);
    let out = w.import(&reg, &[], Some(bare.path()));
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("asked for a client certificate and none is set up"),
        "{e}"
    );
    assert!(e.contains(&format!("certs.d/{}/", reg.addr)), "{e}");
    assert!(e.contains("--registry-cert-dir"), "{e}");
    let only_ca = cert_dir(files.path(), "only-ca", &p.server_ca, None);
    let out = w.import(
        &reg,
        &["--registry-cert-dir", only_ca.to_str().unwrap()],
        None,
    );
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains("asked for a client certificate"), "{e}");
    assert!(e.contains("holds no client certificate"), "{e}");
    assert!(!e.contains("pass --registry-cert-dir"), "{e}");

    // A client certificate the registry does not trust.
    let wrong = cert_dir(
        files.path(),
        "wrong",
        &p.server_ca,
        Some(&p.stranger_client),
    );
    assert!(!skopeo_push_ok(&wrong, &reg), "skopeo is refused too");
    let out = w.import(
        &reg,
        &["--registry-cert-dir", wrong.to_str().unwrap()],
        None,
    );
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains("refused the client certificate"), "{e}");
}

#[test]
fn a_client_certificate_is_offered_to_its_own_host_only() {
    let files = tempfile::tempdir().unwrap();
    let p = pki(files.path());
    let a = tls_registry(&p.server.0, &p.server.1, vec![p.client_ca.clone()]);
    let b = tls_registry(&p.server.0, &p.server.1, vec![p.client_ca.clone()]);
    let root = tempfile::tempdir().unwrap();
    cert_dir(root.path(), &a.addr, &p.server_ca, Some(&p.client));
    cert_dir(root.path(), &b.addr, &p.server_ca, None);
    let client = Client::new(RegistryOptions {
        cert_dirs: CertDirs {
            explicit: None,
            roots: Some(vec![root.path().to_path_buf()]),
        },
        role: Role::Source,
        docker_config_dir: Some(files.path().to_path_buf()),
        ..RegistryOptions::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.ping(&a.addr))
        .expect("A with its certificate");
    let e = rt.block_on(client.ping(&b.addr)).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "asked for a client certificate and none is set up for {}",
            b.addr
        )),
        "{e}"
    );
    assert!(e.contains("--source-cert-dir"), "a source's flag: {e}");
}

#[test]
fn export_reads_a_client_certificate_registry_through_source_cert_dir() {
    let src = Source::start(vec![ImageSpec::new("a:v1", 8)]);
    let files = tempfile::tempdir().unwrap();
    let p = pki(files.path());
    let tls_src = tls_registry(&p.server.0, &p.server.1, vec![p.client_ca.clone()]);
    let dir = cert_dir(files.path(), "src", &p.server_ca, Some(&p.client));
    // The image moves into the client-certificate registry with skopeo.
    ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-cert-dir"])
            .arg(&dir)
            .arg(format!("docker://{}/quay.io/org/a:v1", src.reg.addr))
            .arg(format!("docker://{}/quay.io/org/a:v1", tls_src.addr))
            .output()
            .unwrap(),
        "skopeo copy",
    );
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("m");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/a:v1}\n",
    )
    .unwrap();
    let export = |extra: &[&str]| {
        bin()
            .arg("export")
            .arg(&app)
            .arg("-o")
            .arg(work.path().join("x.airgap"))
            .args([
                "--registry-mirror",
                &format!("quay.io={}/quay.io", tls_src.addr),
            ])
            .args(extra)
            .env("DOCKER_CONFIG", work.path())
            .env("KOTS_BUNDLE_CERTS_D", work.path())
            .output()
            .unwrap()
    };
    let out = export(&["--source-cert-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = export(&["--registry-ca", p.server_ca.to_str().unwrap()]);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(e.contains("asked for a client certificate"), "{e}");
    assert!(e.contains("--source-cert-dir"), "{e}");
    assert!(
        !e.contains("--registry-cert-dir"),
        "export has no such flag: {e}"
    );
}
