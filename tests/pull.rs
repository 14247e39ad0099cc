//! The seed's single-host flow end to end: `pull replicated://APP --license-file L
//! --rewrite-images ...` against a loopback stand-in for the vendor API, a source registry
//! behind `--registry-mirror`, and a TLS + htpasswd destination; then the update run inside the
//! kept directory. Also `export replicated://` with a good and a wrong license.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::app::{app_dir, bin, ok, output_with_stdin, rendered_images, Source};
use common::synth::{self, ImageSpec};
use common::vendor::{tgz, Vendor};
use common::TestRegistry;

const USER: &str = "puller";
const PASS: &str = "pu11-Pa55word";
const LICENSE_ID: &str = "2aBcDeFgHiJkLmNoPqRsT";

/// The license's one channel, as the vendor API double publishes on it.
const STABLE: (&str, &str, &str) = ("ch-stable", "Stable", "stable");

fn write_license(dir: &Path, id: &str, endpoint: &str) -> PathBuf {
    common::vendor::write_license(dir, "kots.io/v1beta1", id, endpoint, 1)
}

/// The v2 app: `b` moves to a new tag.
fn app_v2(src: &Source) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let a = &src.image("a:v1").digest;
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      initContainers:\n      - {{name: init, image: \"quay.io/org/a@{a}\"}}\n      containers:\n      - {{name: m, image: quay.io/org/multi:1}}\n      - {{name: b, image: quay.io/org/b:v2}}\n"
        ),
    )
    .unwrap();
    dir
}

fn pull(
    cwd: &Path,
    src: &Source,
    dest: &TestRegistry,
    license: &Path,
    vendor: &Vendor,
    extra: &[&str],
) -> Output {
    output_with_stdin(
        bin()
            .current_dir(cwd)
            .env("REPLICATED_APP_ENDPOINT", vendor.endpoint())
            .args(["pull", "replicated://myapp", "--license-file"])
            .arg(license)
            .args(["--rewrite-images", "--image-namespace", "myapp"])
            .args(["--registry-endpoint", &dest.addr])
            .args(["--registry-mirror", &src.mirror()])
            .args(["--registry-username", USER, "--registry-password-stdin"])
            .arg("--registry-ca")
            .arg(dest.ca_pem.as_ref().expect("TLS registry"))
            .args(extra),
        &format!("{PASS}\n"),
    )
}

fn skopeo_digest(transport_ref: &str, creds: bool) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    if transport_ref.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
        if creds {
            cmd.args(["--creds", &format!("{USER}:{PASS}")]);
        }
    }
    let out = cmd.arg(transport_ref).output().unwrap();
    synth::sha256(ok(out, transport_ref).as_bytes())
}

fn blob_files(layout: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn seed_flow_pulls_pushes_rewrites_and_updates_in_place() {
    let mut src = Source::start(Source::default_specs());
    let dest = TestRegistry::start_tls_htpasswd(USER, PASS);
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let app = app_dir(&src);
    vendor.publish(app.path(), STABLE, 1, "1.0.0", false);
    let home = tempfile::tempdir().unwrap();
    let license = write_license(home.path(), LICENSE_ID, "https://replicated.invalid");

    // First run, from the home directory: the app directory is ./myapp.
    let out = pull(home.path(), &src, &dest, &license, &vendor, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pull failed: {stderr}");
    assert!(
        !stderr.contains(PASS) && !stderr.contains(LICENSE_ID),
        "{stderr}"
    );
    let dir = home.path().join("myapp");
    assert!(dir.join("upstream/app.yaml").is_file(), "upstream/ written");
    assert!(dir.join("overlays/midstream/kustomization.yaml").is_file());

    // The pulled images are kept as an OCI layout skopeo reads, with the source digests.
    for (name, r) in [
        ("multi:1", "quay.io/org/multi:1"),
        ("b:v1", "quay.io/org/b:v1"),
    ] {
        let d = skopeo_digest(&format!("oci:{}:{r}", dir.join("images").display()), false);
        assert_eq!(d, src.image(name).digest, "{r} in images/");
    }

    // Every image renders at R/NS, and R has them byte for byte.
    let a = src.image("a:v1").digest.clone();
    let r = &dest.addr;
    let mut want = vec![
        format!("{r}/myapp/a@{a}"),
        format!("{r}/myapp/b:v1"),
        format!("{r}/myapp/multi:1"),
    ];
    want.sort();
    assert_eq!(
        rendered_images(Path::new("kubectl"), &dir.join("overlays/midstream")),
        want
    );
    assert_eq!(
        skopeo_digest(&format!("docker://{r}/myapp/multi:1"), true),
        src.image("multi:1").digest
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".kots-bundle/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["app"], "myapp");
    assert_eq!(state["version"], "1.0.0", "version from the release");

    // The operator edits midstream; the vendor ships 1.1.0 which moves b to a new image.
    let mid = dir.join("overlays/midstream/kustomization.yaml");
    let edited = std::fs::read_to_string(&mid).unwrap() + "commonLabels:\n  team: payments\n";
    std::fs::write(&mid, &edited).unwrap();
    src.add(ImageSpec::new("b:v2", 44));
    let v2 = app_v2(&src);
    vendor.publish(v2.path(), STABLE, 2, "1.1.0", false);
    let blobs_before = blob_files(&dir.join("images"));
    let writes_before = dest.count_writes();

    // The seed's update: cd into the kept directory and run the same command.
    let out = pull(&dir, &src, &dest, &license, &vendor, &[]);
    assert!(
        out.status.success(),
        "update failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("myapp").exists(), "updated in place, not nested");
    let writes = dest.count_writes() - writes_before;
    assert!(
        writes > 0 && writes <= 4,
        "only b:v2 (layer, config, manifest) is pushed; saw {writes} writes"
    );
    // b:v2 adds one layer, one config, one manifest to the kept layout, nothing else is
    // fetched; b:v1's three, which the new version does not use, are pruned.
    let blobs_after = blob_files(&dir.join("images"));
    assert_eq!(blobs_after.difference(&blobs_before).count(), 3);
    assert_eq!(blobs_before.difference(&blobs_after).count(), 3);
    let rendered = rendered_images(Path::new("kubectl"), &dir.join("overlays/midstream"));
    assert!(
        rendered.contains(&format!("{r}/myapp/b:v2")),
        "{rendered:?}"
    );
    assert!(
        !rendered.iter().any(|i| i.ends_with("b:v1")),
        "{rendered:?}"
    );
    let mid_after = std::fs::read_to_string(&mid).unwrap();
    assert!(
        mid_after.contains("team: payments"),
        "operator key kept:\n{mid_after}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(".kots-bundle/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["version"], "1.1.0");
    assert!(std::fs::read_to_string(dir.join("upstream/app.yaml"))
        .unwrap()
        .contains("b:v2"));
    let auth = vendor.expected_authorization();
    assert!(vendor
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some(auth.as_str())));
}

#[test]
fn pull_without_rewrite_keeps_images_and_pushes_nothing() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    let out = bin()
        .arg("pull")
        .arg(app.path())
        .arg("--dest")
        .arg(&dir)
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    ok(out, "pull without --rewrite-images");
    let d = skopeo_digest(
        &format!("oci:{}:quay.io/org/b:v1", dir.join("images").display()),
        false,
    );
    assert_eq!(d, src.image("b:v1").digest);
    // No rewrite: the overlay deploys the images from where the manifests say.
    let rendered = rendered_images(Path::new("kubectl"), &dir.join("overlays/midstream"));
    assert!(
        rendered.contains(&"quay.io/org/b:v1".to_string()),
        "{rendered:?}"
    );
    assert!(
        rendered.iter().all(|i| i.starts_with("quay.io/")),
        "{rendered:?}"
    );
}

#[test]
fn export_replicated_with_license_and_refusal_of_a_wrong_one() {
    let src = Source::start(Source::default_specs());
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let app = app_dir(&src);
    vendor.publish(app.path(), STABLE, 1, "2.3.4", false);
    let work = tempfile::tempdir().unwrap();
    let license = write_license(work.path(), LICENSE_ID, &vendor.endpoint());

    let out_file = work.path().join("myapp.airgap");
    ok(
        bin()
            .args(["export", "replicated://myapp", "--license-file"])
            .arg(&license)
            .arg("-o")
            .arg(&out_file)
            .args(["--registry-mirror", &src.mirror()])
            .output()
            .unwrap(),
        "export replicated://",
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&out_file)
            .output()
            .unwrap(),
        "inspect",
    ))
    .unwrap();
    assert_eq!(meta["app"]["name"], "myapp");
    assert_eq!(meta["app"]["version"], "2.3.4");
    assert_eq!(meta["images"].as_array().unwrap().len(), 3);

    // A wrong license ID: the vendor answers 401; the error names the license file and the
    // 401, and no archive (or partial file) is left.
    let bad_dir = tempfile::tempdir().unwrap();
    let bad = write_license(bad_dir.path(), "wrong-license-id", &vendor.endpoint());
    let out_dir = tempfile::tempdir().unwrap();
    let res = bin()
        .current_dir(out_dir.path())
        .args(["export", "replicated://myapp", "--license-file"])
        .arg(&bad)
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(1));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains(&bad.display().to_string()),
        "names the license: {err}"
    );
    assert!(err.contains("401"), "names the status: {err}");
    assert!(
        !err.contains("wrong-license-id"),
        "the license ID is a secret: {err}"
    );
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "no output file"
    );
    let auth = vendor.expected_authorization();
    assert_ne!(
        vendor.seen().last().unwrap().authorization.as_deref(),
        Some(auth.as_str())
    );
}

#[test]
fn export_from_a_tarball_url() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    // A plain static server for the tarball (loopback http is accepted; https needs a CA).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = tgz(app.path());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("web.airgap");
    ok(
        bin()
            .arg("export")
            .arg(format!("http://{addr}/web-1.0.tgz"))
            .arg("-o")
            .arg(&out)
            .args(["--registry-mirror", &src.mirror()])
            .output()
            .unwrap(),
        "export http://.../web-1.0.tgz",
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&out)
            .output()
            .unwrap(),
        "inspect",
    ))
    .unwrap();
    assert_eq!(meta["upstreamFiles"], serde_json::json!(["app.yaml"]));
    assert_eq!(meta["images"].as_array().unwrap().len(), 3);
}

/// A static HTTPS server on loopback (Python's, so the TLS peer is not our own code).
struct HttpsServer {
    port: u16,
    child: std::process::Child,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_server(root: &Path, cert: &Path, key: &Path) -> HttpsServer {
    common::require_tools(&["python3"]);
    let script = "import http.server,ssl,sys,os,functools\n\
h=functools.partial(http.server.SimpleHTTPRequestHandler,directory=sys.argv[1])\n\
s=http.server.HTTPServer(('127.0.0.1',0),h)\n\
c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER);c.load_cert_chain(sys.argv[2],sys.argv[3])\n\
s.socket=c.wrap_socket(s.socket,server_side=True)\n\
print(s.server_address[1],flush=True)\n\
s.serve_forever()\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    HttpsServer {
        port: line.trim().parse().expect("the server printed its port"),
        child,
    }
}

#[test]
fn export_from_an_https_tarball_trusts_only_the_given_ca() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("web-1.0.tgz"), tgz(app.path())).unwrap();
    let ca = common::tls::TestCa::new("kots-bundle upstream test CA");
    let (cert, key) = ca.issue_server().write(work.path(), "upstream");
    let ca_pem = ca.write_cert(&work.path().join("upstream-ca.pem"));
    let server = https_server(&site, &cert, &key);
    let url = format!("https://127.0.0.1:{}/web-1.0.tgz", server.port);

    // Without the CA: refused, naming the URL and what to pass.
    let out = work.path().join("no-ca.airgap");
    let res = bin()
        .arg("export")
        .arg(&url)
        .arg("-o")
        .arg(&out)
        .args(["--registry-mirror", &src.mirror()])
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(1));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains(&url) && err.contains("--upstream-ca"), "{err}");
    assert!(!out.exists());

    let out = work.path().join("web.airgap");
    ok(
        bin()
            .arg("export")
            .arg(&url)
            .arg("--upstream-ca")
            .arg(&ca_pem)
            .arg("-o")
            .arg(&out)
            .args(["--registry-mirror", &src.mirror()])
            .output()
            .unwrap(),
        "export https:// with --upstream-ca",
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&out)
            .output()
            .unwrap(),
        "inspect",
    ))
    .unwrap();
    assert_eq!(meta["app"]["name"], "web-1.0");
    assert_eq!(meta["images"].as_array().unwrap().len(), 3);
}
