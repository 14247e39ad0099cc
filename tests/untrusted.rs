//! Untrusted manifests: YAML that does not parse never stalls a command, and no name from a
//! manifest or a release can place a file outside the app directory.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::app::bin;
use kots_bundle::overlay::{write_app_dir, State, WriteOptions};
use kots_bundle::upstream::{ManifestFile, Upstream};

/// Runs `cmd`, killing it after `limit`: a hang is a test failure, not a stuck suite.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "did not finish in {limit:?}; stderr so far: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn unparseable_yaml_is_reported_once_with_file_and_line_and_the_rest_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("shop");
    // A tab indent, an unterminated quote, a Helm template outside any chart, and a KOTS
    // Application (what the app-name lookup reads), then a good manifest after each.
    write(
        &app,
        "a-tab.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec: {containers: [{name: c, image: 'redis:7'}]}\n",
    );
    write(
        &app,
        "b-quote.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"open\nspec: {}\n",
    );
    write(
        &app,
        "c-template.yaml",
        "{{- if .Values.x }}\nkind: Pod\n{{- end }}\n",
    );
    write(
        &app,
        "d-app.yaml",
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: shop}\nspec: {additionalImages: ['nginx:1.25']}\n",
    );
    let out = run_with_limit(bin().arg("images").arg(&app), Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["docker.io/library/nginx:1.25", "docker.io/library/redis:7"],
        "{stderr}"
    );
    // The tab-indented ConfigMap is a Kubernetes manifest that hides nothing we can see: it
    // is reported once, with its file and the line the parser stopped at.
    let tab: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("a-tab.yaml"))
        .collect();
    assert_eq!(tab.len(), 1, "{stderr}");
    assert!(tab[0].contains("line 4"), "{stderr}");
    let quote: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("b-quote.yaml"))
        .collect();
    assert_eq!(quote.len(), 1, "{stderr}");
}

#[test]
fn export_names_the_app_after_its_kots_application_not_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("vendor").join("manifests");
    write(
        &app,
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: x\n",
    );
    write(
        &app,
        "app.yaml",
        "apiVersion: kots.io/v1beta1\nkind: Application\nmetadata: {name: shop}\n",
    );
    // No image at all: export writes an archive with only the manifests, quickly, and the
    // file is named after the Application.
    let out = run_with_limit(
        bin().current_dir(tmp.path()).arg("export").arg(&app),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("shop.airgap").exists());
    assert!(!tmp.path().join("manifests.airgap").exists());

    // Without an Application, the folder above a generic `manifests` names it.
    std::fs::remove_file(app.join("app.yaml")).unwrap();
    let out = run_with_limit(
        bin().current_dir(tmp.path()).arg("export").arg(&app),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("vendor.airgap").exists());

    // --app-name wins, and is checked rather than altered.
    let out = run_with_limit(
        bin()
            .current_dir(tmp.path())
            .args(["export", "--app-name", "../evil"])
            .arg(&app),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--app-name"));
    assert!(!tmp.path().join("evil.airgap").exists());
    assert!(!tmp.path().parent().unwrap().join("evil.airgap").exists());
}

#[test]
fn kinds_names_and_namespaces_cannot_place_files_outside_the_app_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inner").join("app");
    let doc = "apiVersion: v1\nkind: ../../../../outside/x\nmetadata:\n  name: ../../../../outside/y\n  namespace: /tmp/z\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: 'nginx:1.25'}]\n";
    let up = Upstream {
        source: "test".into(),
        release: None,
        name: Some("app".into()),
        version: None,
        files: vec![ManifestFile {
            path: "evil.yaml".into(),
            data: doc.as_bytes().to_vec(),
        }],
    };
    let rewrites = kots_bundle::rewrite::plan(
        &[kots_bundle::reference::Reference::parse("nginx:1.25").unwrap()],
        &kots_bundle::rewrite::Endpoint::parse("registry.example.com").unwrap(),
        Some("ns"),
        false,
    )
    .unwrap();
    let state = State {
        app: "app".into(),
        version: None,
        source: "test".into(),
        release: None,
        tool_version: "test".into(),
        images: vec![],
        destination: None,
    };
    write_app_dir(&dir, &up, &rewrites, &state, &WriteOptions::default()).unwrap();
    // Everything written is inside DIR; nothing appeared beside it or above it.
    for entry in walkdir::WalkDir::new(tmp.path()) {
        let entry = entry.unwrap();
        assert!(
            entry.path() == tmp.path()
                || entry.path() == tmp.path().join("inner")
                || entry.path().starts_with(&dir),
            "written outside the app directory: {}",
            entry.path().display()
        );
    }
}

/// A loopback HTTP server (Python) that serves `root` only with Basic `user:pass`.
struct AuthServer {
    port: u16,
    child: std::process::Child,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn auth_server(root: &Path, user: &str, pass: &str) -> AuthServer {
    use std::io::BufRead as _;
    common::require_tools(&["python3"]);
    let script = r#"
import http.server, sys, functools, base64
want = 'Basic ' + base64.b64encode((sys.argv[2] + ':' + sys.argv[3]).encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get('Authorization') != want:
            self.send_response(401)
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *a):
        pass
h = functools.partial(H, directory=sys.argv[1])
s = http.server.HTTPServer(('127.0.0.1', 0), h)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .arg(user)
        .arg(pass)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    AuthServer {
        port: line.trim().parse().expect("the server printed its port"),
        child,
    }
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn credentials_in_an_upstream_url_are_used_but_never_shown_or_stored() {
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    let app = work.path().join("shop");
    write(
        &app,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    );
    std::fs::create_dir(&site).unwrap();
    let status = Command::new("tar")
        .arg("czf")
        .arg(site.join("shop-1.0.tgz"))
        .arg("-C")
        .arg(work.path())
        .arg("shop")
        .status()
        .unwrap();
    assert!(status.success());
    let (user, pass) = ("vendor-user", "s3cr3t-Pa55");
    let server = auth_server(&site, user, pass);
    let url = |p: &str| format!("http://{user}:{p}@127.0.0.1:{}/shop-1.0.tgz", server.port);

    // Wrong password: refused by the server; the message names the URL without secrets.
    let bad = bin()
        .current_dir(work.path())
        .arg("export")
        .arg(url("wrong-Pa55"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(err.contains("401") && err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("wrong-Pa55") && !err.contains(user), "{err}");

    let out = work.path().join("shop.airgap");
    let res = bin()
        .current_dir(work.path())
        .arg("-vv")
        .arg("export")
        .arg(url(pass))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(res.status.success(), "{log}");
    assert!(!log.contains(pass), "the password is in the output: {log}");
    let meta = String::from_utf8(
        bin()
            .args(["inspect", "--json"])
            .arg(&out)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        meta.contains("127.0.0.1") && !meta.contains(pass) && !meta.contains(user),
        "{meta}"
    );

    // Imported (no images: nothing to push), the app directory holds no secret either.
    let reg = common::TestRegistry::start();
    let dir = work.path().join("app");
    let res = bin()
        .arg("import")
        .arg(&out)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(dir.join(".kots-bundle/state.json").is_file());
    assert_eq!(files_containing(&dir, pass), Vec::<String>::new());
    assert_eq!(files_containing(&dir, user), Vec::<String>::new());
}
