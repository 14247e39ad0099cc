//! What is attached to an image at its registry travels with it: a cosign-style signature
//! (tag `sha256-<hex>.sig`) and an SBOM attached as an OCI referrer (a manifest whose
//! `subject` is the image, listed by the referrers tag `sha256-<hex>`) are carried by
//! export, pushed by import beside the image with the same digests (read back by skopeo),
//! and never written into the app's overlay; `--no-signatures` leaves them out.

mod common;

use std::process::Command;

use common::app::{app_dir, bin, export_cmd, import_cmd, ok, Source};
use common::synth::sha256;
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

/// (signature manifest digest, SBOM referrer digest, referrers index digest) attached to
/// `quay.io/org/b:v1` at the source, as cosign and an OCI 1.1 client without the referrers
/// API lay them out.
fn attach(src: &Source) -> (String, String, String) {
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

    let empty = b"{}";
    let empty_digest = push_blob(addr, repo, empty);
    let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"b"}"#;
    let spdx_digest = push_blob(addr, repo, spdx);
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/spdx+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty_digest}","size":2}},"layers":[{{"mediaType":"application/spdx+json","digest":"{spdx_digest}","size":{}}}],"subject":{{"mediaType":"{}","digest":"{image_digest}","size":{image_size}}}}}"#,
        spdx.len(),
        image.media_type
    );
    let sbom_digest = sha256(sbom.as_bytes());
    push_manifest(addr, repo, &sbom_digest, OCI_MANIFEST, sbom.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{sbom_digest}","size":{},"artifactType":"application/spdx+json"}}]}}"#,
        sbom.len()
    );
    push_manifest(
        addr,
        repo,
        &format!("sha256-{hex}"),
        OCI_INDEX,
        index.as_bytes(),
    );
    (
        sha256(sig.as_bytes()),
        sbom_digest,
        sha256(index.as_bytes()),
    )
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
