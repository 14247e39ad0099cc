//! `replicated://` against a loopback double of the vendor API (tests/common/vendor.rs) that
//! records every request: the path, query and Authorization header are asserted exactly as
//! KOTS sends them (`pkg/replicatedapp/upstream.go` `GetRequest`) for a first pull, a pinned
//! version, a channel and an update; the answer's `X-Replicated-*` headers end up in the
//! archive metadata, `inspect` and `state.json`; a release download redirected to a second
//! loopback port (a CDN) is fetched there without the license; an update past a required
//! release is refused naming it; a refusal shows the vendor's message, never the license ID.

mod common;

use std::path::Path;

use common::app::{bin, export_cmd, import_cmd, ok, Source};
use common::synth::ImageSpec;
use common::vendor::{write_license, Seen, Vendor};
use common::TestRegistry;

const LICENSE_ID: &str = "2aBcDeFgHiJkLmNoPqRsT";
const STABLE: (&str, &str, &str) = ("ch-stable", "Stable", "stable");
const BETA: (&str, &str, &str) = ("ch-beta", "Beta", "beta");

/// A release of the app: one Deployment on `quay.io/org/a:v1` and a ConfigMap naming `version`.
fn release(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: a, image: quay.io/org/a:v1}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: release}}\ndata: {{version: \"{version}\"}}\n"
        ),
    )
    .unwrap();
    dir
}

/// The query KOTS builds, keys sorted as Go's `url.Values.Encode` writes them.
fn kots_query(
    cursor: &str,
    license_sequence: i64,
    channel_id: &str,
    label: Option<&str>,
) -> String {
    let mut q = format!(
        "channelSequence={cursor}&isEmbeddedCluster=false&isSemverSupported=true&licenseSequence={license_sequence}&selectedChannelId={channel_id}"
    );
    if let Some(l) = label {
        q.push_str(&format!("&versionLabel={l}"));
    }
    q
}

fn api(path: &str, query: String) -> Seen {
    Seen {
        cdn: false,
        path: path.into(),
        query,
        authorization: Some(format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{LICENSE_ID}:{LICENSE_ID}")
            )
        )),
    }
}

/// `kots-bundle template replicated://...` (fetches the release, downloads no image).
fn template(vendor: &Vendor, source: &str, license: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .env("REPLICATED_APP_ENDPOINT", vendor.endpoint())
        .args(["template", source, "--license-file"])
        .arg(license)
        .args(extra)
        .output()
        .unwrap()
}

/// A license for app `myapp` with [`LICENSE_ID`], in the shape `api` names.
fn license_file(dir: &Path, api: &str, endpoint: &str, sequence: i64) -> std::path::PathBuf {
    write_license(dir, api, LICENSE_ID, endpoint, sequence)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn first_pull_pinned_version_and_channel_are_asked_as_kots_asks() {
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let (v1, v2, b1) = (release("1.0.0"), release("1.1.0"), release("2.0.0-beta"));
    vendor.publish(v1.path(), STABLE, 4, "1.0.0", false);
    vendor.publish(v2.path(), STABLE, 5, "1.1.0", false);
    vendor.publish(b1.path(), BETA, 9, "2.0.0-beta", false);
    let home = tempfile::tempdir().unwrap();
    let lic1 = license_file(
        home.path(),
        "kots.io/v1beta1",
        "https://replicated.invalid",
        3,
    );

    // Runs `template SOURCE` and checks the one request the double saw; the output.
    let asks = |source: &str, license: &Path, extra: &[&str], path: &str, query: String| {
        vendor.clear_seen();
        let out = ok(template(&vendor, source, license, extra), source);
        assert_eq!(vendor.seen(), vec![api(path, query)], "{source} {extra:?}");
        out
    };
    // First pull: no channel in the path, an empty cursor, the license's channel and sequence.
    let latest = kots_query("", 3, "ch-stable", None);
    asks("replicated://myapp", &lic1, &[], "/release/myapp", latest);
    // Pinned: versionLabel, and the release served is that one, not the latest.
    let pinned = kots_query("", 3, "ch-stable", Some("1.0.0"));
    let pin = ["--app-version-label", "1.0.0"];
    let rendered = asks("replicated://myapp", &lic1, &pin, "/release/myapp", pinned);
    assert!(
        rendered.contains("1.0.0") && !rendered.contains("1.1.0"),
        "{rendered}"
    );

    // A multi-channel (v1beta2) license and a channel: in the path, and its ID selected.
    let dir2 = tempfile::tempdir().unwrap();
    let lic2 = license_file(
        dir2.path(),
        "kots.io/v1beta2",
        "https://replicated.invalid",
        8,
    );
    for (source, extra) in [
        ("replicated://myapp/beta", &[][..]),
        ("replicated://myapp", &["--channel", "beta"][..]),
    ] {
        let beta = kots_query("", 8, "ch-beta", None);
        let out = asks(source, &lic2, extra, "/release/myapp/beta", beta);
        assert!(out.contains("2.0.0-beta"), "{out}");
    }
    // No channel asked for: KOTS selects the license's "stable" slug.
    let stable = kots_query("", 8, "ch-stable", None);
    asks("replicated://myapp", &lic2, &[], "/release/myapp", stable);
    // A channel the license does not have: refused before any request, naming the ones it has.
    vendor.clear_seen();
    let out = template(&vendor, "replicated://myapp/nightly", &lic2, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stable, beta"), "{}", stderr(&out));
    assert!(vendor.seen().is_empty());
    // A version label the channel does not have: the vendor's 404 message reaches the user.
    let out = template(
        &vendor,
        "replicated://myapp",
        &lic1,
        &["--app-version-label", "9.9.9"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("No release matches the version label"),
        "{}",
        stderr(&out)
    );
    // The flags mean nothing for other sources: a usage error.
    let out = bin()
        .args(["template"])
        .arg(v1.path())
        .args(["--channel", "beta"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn export_through_a_cdn_redirect_records_the_release_and_an_import_does_not_skip_a_required_one() {
    let src = Source::start(vec![ImageSpec::new("a:v1", 2)]);
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let (v1, v15, v2) = (release("1.0.0"), release("1.0.5"), release("1.1.0"));
    vendor.publish(v1.path(), STABLE, 2, "1.0.0", false);
    vendor.publish(v15.path(), STABLE, 3, "1.0.5", true);
    vendor.publish(v2.path(), STABLE, 5, "1.1.0", true);
    vendor.use_cdn();
    let work = tempfile::tempdir().unwrap();
    let license = license_file(work.path(), "kots.io/v1beta1", &vendor.endpoint(), 3);
    let export = |out: &Path, extra: &[&str]| {
        ok(
            export_cmd(&src, Path::new("replicated://myapp"), out, extra)
                .arg("--license-file")
                .arg(&license)
                .output()
                .unwrap(),
            "export",
        )
    };
    let new = work.path().join("myapp.airgap");
    export(&new, &[]);
    // The API was asked with the license; the CDN was not given it, and served the release;
    // then the channel's pending releases (no cursor: the whole channel).
    let seen = vendor.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[0],
        api("/release/myapp", kots_query("", 3, "ch-stable", None))
    );
    assert!(seen[1].cdn, "{seen:?}");
    assert_eq!(seen[1].path, "/blob/5");
    assert_eq!(seen[1].authorization, None, "the license went to the CDN");
    assert_eq!(
        seen[2],
        api(
            "/release/myapp/pending",
            kots_query("", 3, "ch-stable", None)
        )
    );

    let meta: serde_json::Value = serde_json::from_str(&ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&new)
            .output()
            .unwrap(),
        "inspect --json",
    ))
    .unwrap();
    let r = &meta["app"]["release"];
    assert_eq!(meta["app"]["version"], "1.1.0");
    assert_eq!(r["channelId"], "ch-stable");
    assert_eq!(r["channelName"], "Stable");
    assert_eq!(r["channelSequence"], 5);
    assert_eq!(r["versionLabel"], "1.1.0");
    assert_eq!(r["isRequired"], true);
    assert_eq!(r["releasedAt"], "2026-11-06T10:00:00Z");
    assert_eq!(
        r["requiredReleases"],
        serde_json::json!([{"channelSequence": 3, "versionLabel": "1.0.5"}])
    );
    let text = ok(bin().arg("inspect").arg(&new).output().unwrap(), "inspect");
    assert!(
        text.contains("release:     1.1.0 on channel Stable (ch-stable), sequence 5, required"),
        "{text}"
    );
    assert!(text.contains("released:    2026-11-06T10:00:00Z"), "{text}");

    // Inside the air gap: the app directory holds 1.0.0 (sequence 2); importing 1.1.0 would
    // skip the required 1.0.5, and is refused naming it, with nothing changed.
    let old = work.path().join("old.airgap");
    export(&old, &["--app-version-label", "1.0.0"]);
    let reg = TestRegistry::start();
    let dir = work.path().join("installed");
    ok(
        import_cmd(&reg, "myapp", &old, &dir).output().unwrap(),
        "import 1.0.0",
    );
    assert_eq!(state(&dir)["release"]["channelSequence"], 2);
    assert_eq!(state(&dir)["release"]["versionLabel"], "1.0.0");
    let out = import_cmd(&reg, "myapp", &new, &dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("because version 1.0.5 is required and must be deployed first")
            && err.contains("import the archive of 1.0.5 first"),
        "{err}"
    );
    assert_eq!(state(&dir)["version"], "1.0.0");
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(".kots-bundle/state.json")).unwrap()).unwrap()
}

#[test]
fn an_update_asks_from_its_sequence_and_does_not_skip_a_required_release() {
    let src = Source::start(vec![ImageSpec::new("a:v1", 2)]);
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let v1 = release("1.0.0");
    vendor.publish(v1.path(), STABLE, 1, "1.0.0", false);
    let work = tempfile::tempdir().unwrap();
    let license = license_file(work.path(), "kots.io/v1beta1", &vendor.endpoint(), 3);
    let dir = work.path().join("myapp");
    let pull = |extra: &[&str]| {
        bin()
            .current_dir(work.path())
            .args(["pull", "replicated://myapp", "--license-file"])
            .arg(&license)
            .args(["--registry-mirror", &src.mirror()])
            .args(extra)
            .output()
            .unwrap()
    };
    ok(pull(&[]), "first pull");
    let s = state(&dir);
    assert_eq!(s["release"]["channelSequence"], 1);
    assert_eq!(s["release"]["channelId"], "ch-stable");
    assert_eq!(s["version"], "1.0.0");

    // 1.1.0 is required; 1.2.0 is the latest. The update asks from sequence 1, lists what is
    // pending, and refuses to skip 1.1.0, naming it; the directory stays at 1.0.0.
    let (v2, v3) = (release("1.1.0"), release("1.2.0"));
    vendor.publish(v2.path(), STABLE, 2, "1.1.0", true);
    vendor.publish(v3.path(), STABLE, 3, "1.2.0", false);
    vendor.clear_seen();
    let out = pull(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("because version 1.1.0 is required and must be deployed first"),
        "{err}"
    );
    assert!(!err.contains(LICENSE_ID), "{err}");
    assert_eq!(
        vendor.seen(),
        vec![
            api("/release/myapp", kots_query("1", 3, "ch-stable", None)),
            api(
                "/release/myapp/pending",
                kots_query("1", 3, "ch-stable", None)
            ),
        ]
    );
    assert_eq!(state(&dir)["version"], "1.0.0");

    // The required release first (pinned), then the latest from there.
    vendor.clear_seen();
    ok(
        pull(&["--app-version-label", "1.1.0"]),
        "pull the required one",
    );
    assert_eq!(
        vendor.seen()[0],
        api(
            "/release/myapp",
            kots_query("1", 3, "ch-stable", Some("1.1.0"))
        )
    );
    assert_eq!(state(&dir)["release"]["channelSequence"], 2);
    assert_eq!(state(&dir)["release"]["isRequired"], true);
    vendor.clear_seen();
    ok(pull(&[]), "update to the latest");
    assert_eq!(
        vendor.seen()[0],
        api("/release/myapp", kots_query("2", 3, "ch-stable", None))
    );
    let s = state(&dir);
    assert_eq!(s["version"], "1.2.0");
    assert_eq!(s["release"]["channelSequence"], 3);
    assert!(std::fs::read_to_string(dir.join("upstream/app.yaml"))
        .unwrap()
        .contains("1.2.0"));
}

#[test]
fn a_refusal_shows_the_vendor_message_without_the_license_id() {
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    vendor.refuse(
        403,
        &format!("License {LICENSE_ID} has expired. Contact your vendor to renew it."),
    );
    let work = tempfile::tempdir().unwrap();
    let license = license_file(work.path(), "kots.io/v1beta1", &vendor.endpoint(), 3);
    let out = template(&vendor, "replicated://myapp", &license, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains("has expired. Contact your vendor to renew it."),
        "{err}"
    );
    assert!(err.contains(&license.display().to_string()), "{err}");
    assert!(!err.contains(LICENSE_ID), "{err}");
}

#[test]
fn redirects_keep_the_license_on_its_origin_stop_at_ten_and_never_go_to_plain_http() {
    let vendor = Vendor::start("myapp", LICENSE_ID, "ch-stable");
    let work = tempfile::tempdir().unwrap();
    let license = license_file(work.path(), "kots.io/v1beta1", &vendor.endpoint(), 3);
    // The same origin, again and again: followed with the license each time, then stopped.
    vendor.redirect_to("/release/myapp?again");
    let out = template(&vendor, "replicated://myapp", &license, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("more than 10 redirects"),
        "{}",
        stderr(&out)
    );
    let seen = vendor.seen();
    assert_eq!(seen.len(), 11, "{seen:?}");
    let auth = vendor.expected_authorization();
    assert!(seen
        .iter()
        .all(|s| !s.cdn && s.authorization.as_deref() == Some(auth.as_str())));
    // A downgrade to plain http off loopback is not followed.
    vendor.clear_seen();
    vendor.redirect_to("http://cdn.example.invalid/release.tgz");
    let out = template(&vendor, "replicated://myapp", &license, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("redirected to http://cdn.example.invalid/release.tgz, which is not https"),
        "{err}"
    );
    assert!(!err.contains(LICENSE_ID), "{err}");
    assert_eq!(vendor.seen().len(), 1);
}

/// Runs `cmd`, killing it after `secs`: `None` when it had to be killed (it hung).
fn output_within(mut cmd: std::process::Command, secs: u64) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(child.wait_with_output().unwrap())
}

/// A loopback "vendor API" that reads each request, then does `answer` with the socket.
fn raw_vendor(answer: fn(&mut std::net::TcpStream)) -> String {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                answer(&mut s);
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_refusal_with_an_endless_body_or_a_silent_vendor_is_given_up_on() {
    let work = tempfile::tempdir().unwrap();
    let run = |endpoint: &str| {
        let license = license_file(work.path(), "kots.io/v1beta1", endpoint, 3);
        let mut cmd = bin();
        cmd.env("REPLICATED_APP_ENDPOINT", endpoint)
            .env("KOTS_BUNDLE_IDLE_TIMEOUT", "2")
            .args(["template", "replicated://myapp", "--license-file"])
            .arg(&license);
        output_within(cmd, 30)
    };
    // A refusal whose body never ends (a steady trickle, never idle): the message is read,
    // not the whole body.
    let endless = raw_vendor(|s| {
        use std::io::Write;
        let _ = s.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1000000000\r\n\r\nLicense expired. ",
        );
        loop {
            if s.write_all(&[b'x'; 1024]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let out = run(&endless).expect("an endless refusal body hung the download");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("403") && err.contains("License expired."),
        "{err}"
    );
    assert!(!err.contains(LICENSE_ID), "{err}");
    // A vendor that takes the request and never answers: given up on after the idle timeout.
    let silent = raw_vendor(|_| std::thread::sleep(std::time::Duration::from_secs(120)));
    let out = run(&silent).expect("a silent vendor API hung the download");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("KOTS_BUNDLE_IDLE_TIMEOUT"), "{err}");
}
