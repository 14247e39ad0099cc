//! What is attached to an image at its registry travels with it: a cosign-style signature
//! (tag `sha256-<hex>.sig`) and an SBOM attached as an OCI referrer (a manifest whose
//! `subject` is the image, listed by the referrers tag `sha256-<hex>`) are carried by
//! export, pushed by import beside the image with the same digests (read back by skopeo),
//! and never written into the app's overlay; `--no-signatures` leaves them out. Referrers
//! only the referrers API lists (a proxy answers it in front of registry 2.8, which lacks it)
//! are carried as the referrers tag's index, pages followed and merged with the tag's own;
//! a bad answer carries nothing and is warned about.

mod common;

use std::process::Command;

use common::app::{app_dir, app_dir_using, bin, export_cmd, import_cmd, ok, Source};
use common::faulty::{Fault, FaultyProxy};
use common::synth::{sha256, ImageSpec};
use common::{raw_http, raw_http_location, TestRegistry};

const NS: &str = "signed";

/// Pushes a blob to `repo` at `addr` over the distribution API.
fn push_blob(addr: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let (status, loc) = raw_http_location(addr, "POST", &format!("/v2/{repo}/blobs/uploads/"));
    assert_eq!(status, 202, "start upload");
    let loc = loc.unwrap();
    let path = loc
        .strip_prefix(&format!("http://{addr}"))
        .unwrap_or(&loc)
        .to_string();
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, body) = raw_http(
        addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    digest
}

fn push_manifest(addr: &str, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let (status, body) = raw_http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pushes an SBOM (SPDX document `spdx`) of `quay.io/org/b:v1` as an OCI 1.1 referrer: a
/// manifest whose `subject` is the image, by digest only (no tag lists it); its digest and
/// size.
fn push_sbom(src: &Source, spdx: &[u8]) -> (String, usize) {
    let addr = &src.reg.addr;
    let repo = "quay.io/org/b";
    let image = src.image("b:v1");
    let image_digest = image.digest.clone();
    let image_size = raw_http(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{image_digest}"),
        &[("Accept", &image.media_type)],
        b"",
    )
    .1
    .len();
    let empty = b"{}";
    let empty_digest = push_blob(addr, repo, empty);
    let spdx_digest = push_blob(addr, repo, spdx);
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/spdx+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty_digest}","size":2}},"layers":[{{"mediaType":"application/spdx+json","digest":"{spdx_digest}","size":{}}}],"subject":{{"mediaType":"{}","digest":"{image_digest}","size":{image_size}}}}}"#,
        spdx.len(),
        image.media_type
    );
    let sbom_digest = sha256(sbom.as_bytes());
    push_manifest(addr, repo, &sbom_digest, OCI_MANIFEST, sbom.as_bytes());
    (sbom_digest, sbom.len())
}

/// An index entry (the descriptor) of an SBOM pushed by [`push_sbom`].
fn sbom_entry((digest, size): &(String, usize)) -> String {
    format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{size},"artifactType":"application/spdx+json"}}"#
    )
}

/// An OCI image index of `entries`.
fn index_of(entries: &[String]) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
}

/// (signature manifest digest, SBOM referrer digest, referrers index digest) attached to
/// `quay.io/org/b:v1` at the source, as cosign and an OCI 1.1 client without the referrers
/// API lay them out.
fn attach(src: &Source) -> (String, String, String) {
    let addr = &src.reg.addr;
    let repo = "quay.io/org/b";
    let image_digest = src.image("b:v1").digest.clone();
    let hex = image_digest.trim_start_matches("sha256:");

    let config = br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(addr, repo, config);
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"quay.io/org/b"}},"image":{{"docker-manifest-digest":"{image_digest}"}},"type":"cosign container image signature"}}}}"#
    );
    let payload_digest = push_blob(addr, repo, payload.as_bytes());
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{payload_digest}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"MEUCIQDtest"}}}}]}}"#,
        config.len(),
        payload.len()
    );
    push_manifest(
        addr,
        repo,
        &format!("sha256-{hex}.sig"),
        OCI_MANIFEST,
        sig.as_bytes(),
    );

    let sbom = push_sbom(src, br#"{"spdxVersion":"SPDX-2.3","name":"b"}"#);
    let index = index_of(&[sbom_entry(&sbom)]);
    push_manifest(
        addr,
        repo,
        &format!("sha256-{hex}"),
        OCI_INDEX,
        index.as_bytes(),
    );
    (sha256(sig.as_bytes()), sbom.0, sha256(index.as_bytes()))
}

/// `skopeo inspect --raw` of `reference` at `reg`.
fn raw(reg: &TestRegistry, reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{reference}", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn export(src: &Source, app: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    let out = export_cmd(src, app, out, &["--app-name", "signed"])
        .args(extra)
        .output()
        .unwrap();
    ok(out, "export");
}

fn archive_images(archive: &std::path::Path) -> Vec<String> {
    ok(
        bin().arg("images").arg(archive).output().unwrap(),
        "images ARCHIVE",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn signatures_and_sboms_travel_with_their_image() {
    let src = Source::start(Source::default_specs());
    let (sig, sbom, referrers) = attach(&src);
    let image_digest = src.image("b:v1").digest.clone();
    let hex = image_digest.trim_start_matches("sha256:").to_string();
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();

    // --no-signatures: only the app's images.
    let plain = work.path().join("plain.airgap");
    export(&src, app.path(), &plain, &["--no-signatures"]);
    assert!(
        archive_images(&plain)
            .iter()
            .all(|i| !i.contains("sha256-")),
        "{:?}",
        archive_images(&plain)
    );

    let archive = work.path().join("signed.airgap");
    export(&src, app.path(), &archive, &[]);
    let listed = archive_images(&archive);
    for tag in [format!("sha256-{hex}.sig"), format!("sha256-{hex}")] {
        assert!(
            listed.contains(&format!("quay.io/org/b:{tag}")),
            "{tag} carried: {listed:?}"
        );
    }
    // Nothing is attached to the other images, and nothing is invented for them.
    assert_eq!(listed.len(), archive_images(&plain).len() + 2, "{listed:?}");

    let dest = TestRegistry::start();
    let dir = work.path().join("app");
    ok(
        import_cmd(&dest, NS, &archive, &dir).output().unwrap(),
        "import",
    );

    // The same lookups work in the private registry, digest for digest.
    assert_eq!(sha256(&raw(&dest, &format!("{NS}/b:v1"))), image_digest);
    assert_eq!(
        sha256(&raw(&dest, &format!("{NS}/b:sha256-{hex}.sig"))),
        sig
    );
    let index = raw(&dest, &format!("{NS}/b:sha256-{hex}"));
    assert_eq!(sha256(&index), referrers);
    let listed: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(listed["manifests"][0]["digest"], sbom.as_str());
    let referrer: serde_json::Value =
        serde_json::from_slice(&raw(&dest, &format!("{NS}/b@{sbom}"))).unwrap();
    assert_eq!(referrer["subject"]["digest"], image_digest.as_str());
    assert_eq!(referrer["artifactType"], "application/spdx+json");

    // The app's overlay names its images only.
    let kustomization =
        std::fs::read_to_string(dir.join("overlays/midstream/kots-bundle/kustomization.yaml"))
            .unwrap();
    assert!(!kustomization.contains("sha256-"), "{kustomization}");
}

/// The source behind a proxy that answers `GET /v2/quay.io/org/<repo>/referrers/...` as
/// `answer(repo, path)` says (the rest is forwarded): registry 2.8 has no referrers API,
/// the proxy stands in for one that has it.
fn referrers_api(
    src: &Source,
    answer: impl Fn(&str, &str) -> Option<Fault> + Send + Sync + 'static,
) -> FaultyProxy {
    FaultyProxy::start(&src.reg.addr, move |method, path, _| {
        let rest = path.strip_prefix("/v2/quay.io/org/")?;
        let (repo, _) = rest.split_once("/referrers/")?;
        (method == "GET").then(|| answer(repo, path)).flatten()
    })
}

fn index_reply(body: String, extra: &[(&str, &str)]) -> Fault {
    let mut headers = vec![("Content-Type".to_string(), OCI_INDEX.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Fault::Reply(200, headers, body.into_bytes())
}

/// Exports the app through `proxy` (as the mirror of quay.io); its stderr.
fn export_through(proxy: &FaultyProxy, app: &std::path::Path, out: &std::path::Path) -> String {
    let out = bin()
        .arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--app-name", "signed", "--registry-mirror"])
        .arg(format!("quay.io={}/quay.io", proxy.addr))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "export");
    stderr
}

/// The digests a referrers index at `dest` lists, in order.
fn listed(dest: &TestRegistry, tag: &str) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_slice(&raw(dest, tag)).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn referrers_only_the_api_lists_are_carried_as_the_referrers_tag() {
    let src = Source::start(Source::default_specs());
    let image_digest = src.image("b:v1").digest.clone();
    let hex = image_digest.trim_start_matches("sha256:").to_string();
    let sbom = push_sbom(&src, br#"{"spdxVersion":"SPDX-2.3","name":"api"}"#);
    let body = index_of(&[sbom_entry(&sbom)]);
    let proxy = referrers_api(&src, move |repo, _| {
        (repo == "b").then(|| index_reply(body.clone(), &[]))
    });
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("api.airgap");
    export_through(&proxy, app.path(), &archive);
    let asked = format!("GET /v2/quay.io/org/b/referrers/{image_digest}");
    assert!(proxy.log().contains(&asked), "{:?}", proxy.log());
    let images = archive_images(&archive);
    assert!(
        images.contains(&format!("quay.io/org/b:sha256-{hex}")),
        "{images:?}"
    );

    let dest = TestRegistry::start();
    let dir = work.path().join("app");
    ok(
        import_cmd(&dest, NS, &archive, &dir).output().unwrap(),
        "import",
    );
    assert_eq!(
        listed(&dest, &format!("{NS}/b:sha256-{hex}")),
        [sbom.0.as_str()]
    );
    let referrer: serde_json::Value =
        serde_json::from_slice(&raw(&dest, &format!("{NS}/b@{}", sbom.0))).unwrap();
    assert_eq!(referrer["subject"]["digest"], image_digest.as_str());
    assert_eq!(sha256(&raw(&dest, &format!("{NS}/b:v1"))), image_digest);
}

#[test]
fn referrers_pages_are_followed_and_merged_with_the_referrers_tag() {
    let src = Source::start(Source::default_specs());
    let image_digest = src.image("b:v1").digest.clone();
    let hex = image_digest.trim_start_matches("sha256:").to_string();
    let one = push_sbom(&src, br#"{"spdxVersion":"SPDX-2.3","name":"one"}"#);
    let two = push_sbom(&src, br#"{"spdxVersion":"SPDX-2.3","name":"two"}"#);
    let three = push_sbom(&src, br#"{"spdxVersion":"SPDX-2.3","name":"three"}"#);
    // The source's own referrers tag lists the third and the first.
    push_manifest(
        &src.reg.addr,
        "quay.io/org/b",
        &format!("sha256-{hex}"),
        OCI_INDEX,
        index_of(&[sbom_entry(&three), sbom_entry(&one)]).as_bytes(),
    );
    let first = index_of(&[sbom_entry(&one)]);
    let second = index_of(&[sbom_entry(&two)]);
    let next = format!("</v2/quay.io/org/b/referrers/{image_digest}?n=1&last=x>; rel=\"next\"");
    let proxy = referrers_api(&src, move |repo, path| {
        (repo == "b").then(|| match path.contains("last=x") {
            true => index_reply(second.clone(), &[]),
            false => index_reply(first.clone(), &[("Link", &next)]),
        })
    });
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("pages.airgap");
    export_through(&proxy, app.path(), &archive);
    let asked: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.contains("/b/referrers/"))
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");

    let dest = TestRegistry::start();
    let dir = work.path().join("app");
    ok(
        import_cmd(&dest, NS, &archive, &dir).output().unwrap(),
        "import",
    );
    // The API's pages in order, then what only the tag lists.
    assert_eq!(
        listed(&dest, &format!("{NS}/b:sha256-{hex}")),
        [one.0.as_str(), two.0.as_str(), three.0.as_str()]
    );
    for (d, _) in [&one, &two, &three] {
        let referrer: serde_json::Value =
            serde_json::from_slice(&raw(&dest, &format!("{NS}/b@{d}"))).unwrap();
        assert_eq!(referrer["subject"]["digest"], image_digest.as_str());
    }
}

#[test]
fn a_bad_referrers_answer_carries_nothing_and_says_why() {
    let mut specs = Source::default_specs();
    specs.push(ImageSpec::new("c:v1", 4));
    let src = Source::start(specs);
    let sbom = push_sbom(&src, br#"{"spdxVersion":"SPDX-2.3","name":"junk"}"#);
    let good = index_of(&[sbom_entry(&sbom)]);
    // b: not JSON; a: an index with the wrong Content-Type; multi: over the size limit;
    // c: a next page on another host (where the registry's credentials must not go).
    let proxy = referrers_api(&src, move |repo, _| match repo {
        "b" => Some(index_reply("<html>oops</html>".into(), &[])),
        "a" => Some(Fault::Reply(
            200,
            vec![("Content-Type".into(), "text/html".into())],
            good.clone().into_bytes(),
        )),
        "multi" => Some(Fault::Huge(200, 5 * 1024 * 1024, true)),
        "c" => Some(index_reply(
            good.clone(),
            &[(
                "Link",
                "<http://localhost:9/v2/x/referrers/y?n=1>; rel=\"next\"",
            )],
        )),
        _ => None,
    });
    let app = app_dir_using(&src, &["multi:1", "b:v1", "c:v1"]);
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("junk.airgap");
    let stderr = export_through(&proxy, app.path(), &archive);
    let images = archive_images(&archive);
    assert!(images.iter().all(|i| !i.contains("sha256-")), "{images:?}");
    for (repo, why) in [
        ("quay.io/org/b", "not an OCI image index"),
        ("quay.io/org/a", "\"text/html\", not an OCI image index"),
        ("quay.io/org/multi", "larger than 4194304 bytes"),
        ("quay.io/org/c", "the next page is on another origin"),
    ] {
        // A warning, with each location's answer on lines of its own.
        assert!(
            stderr.split(" WARN ").skip(1).any(|w| w.starts_with(repo)
                && w.contains("referrers not carried")
                && w.contains(why)),
            "{repo}: {why}:\n{stderr}"
        );
    }
    let asked_c = proxy
        .log()
        .iter()
        .filter(|l| l.contains("/c/referrers/"))
        .count();
    assert_eq!(asked_c, 1, "{:?}", proxy.log());
}
