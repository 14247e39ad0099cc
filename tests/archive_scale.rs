//! Archives with many images: the layout check is linear, and duplicate index entries cost
//! one read, not one each. Times are printed (`--nocapture`), never asserted.

mod common;

use std::path::Path;
use std::time::Instant;

use common::app::bin;
use kots_bundle::archive::{
    App, ArchiveWriter, BlobRecord, Compression, ImageRecord, Metadata, Tool, ZstdOptions, FORMAT,
};
use kots_bundle::digest::Digest;
use kots_bundle::manifest::REF_NAME_ANNOTATION;
use kots_bundle::reference::Reference;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Writes an archive of `images` distinct images (one small manifest each, sharing one config
/// and one layer), each listed `copies` times in the metadata and in `index.json`.
pub fn big_archive(path: &Path, images: usize, copies: usize) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"not really a tar, but a blob is a blob".to_vec();
    let (config_d, layer_d) = (Digest::of(config), Digest::of(&layer));
    let mut manifests = Vec::with_capacity(images);
    for i in 0..images {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_d, "size": config.len()},
            "layers": [{"mediaType": LAYER, "digest": layer_d, "size": layer.len()}],
            "annotations": {"n": i.to_string()},
        });
        manifests.push(serde_json::to_vec(&m).unwrap());
    }
    let mut blobs = vec![
        BlobRecord {
            digest: config_d.clone(),
            size: config.len() as u64,
            media_type: CONFIG.into(),
        },
        BlobRecord {
            digest: layer_d.clone(),
            size: layer.len() as u64,
            media_type: LAYER.into(),
        },
    ];
    let mut records = Vec::new();
    let mut index = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let d = Digest::of(m);
        blobs.push(BlobRecord {
            digest: d.clone(),
            size: m.len() as u64,
            media_type: MANIFEST.into(),
        });
        let reference = Reference::parse(&format!("registry.example/app/img-{i}:v1")).unwrap();
        for _ in 0..copies {
            index.push(serde_json::json!({
                "mediaType": MANIFEST, "digest": d, "size": m.len(),
                "annotations": {REF_NAME_ANNOTATION: reference.to_string()},
            }));
            records.push(ImageRecord {
                reference: reference.clone(),
                digest: d.clone(),
                media_type: MANIFEST.into(),
                platforms: vec!["linux/amd64".into()],
                size: (m.len() + config.len() + layer.len()) as u64,
            });
        }
    }
    let upstream = b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n".to_vec();
    let metadata = Metadata {
        format: FORMAT.into(),
        tool: Tool {
            name: "kots-bundle".into(),
            version: "test".into(),
        },
        app: App {
            name: "big".into(),
            version: None,
            source: "test".into(),
            release: None,
        },
        created: "2026-01-01T00:00:00Z".into(),
        compression: Compression::Zstd,
        images: records,
        total_size: blobs.iter().map(|b| b.size).sum(),
        blobs,
        upstream_files: vec!["pod.yaml".into()],
        upstream_digests: [("pod.yaml".to_string(), Digest::of(&upstream))].into(),
        differential: None,
    };
    let zstd = ZstdOptions {
        level: 1,
        workers: 0,
    };
    let mut w = ArchiveWriter::create(path, &metadata, Compression::Zstd, zstd).unwrap();
    w.add_file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .unwrap();
    w.add_json(
        "index.json",
        &serde_json::json!({"schemaVersion": 2, "manifests": index}),
    )
    .unwrap();
    w.add_file("upstream/pod.yaml", &upstream).unwrap();
    w.add_blob(&config_d, config.len() as u64, CONFIG, &config[..])
        .unwrap();
    w.add_blob(&layer_d, layer.len() as u64, LAYER, &layer[..])
        .unwrap();
    for m in &manifests {
        w.add_blob(&Digest::of(m), m.len() as u64, MANIFEST, &m[..])
            .unwrap();
    }
    w.finish().unwrap();
}

fn timed_inspect(path: &Path) -> (std::process::Output, f64) {
    let start = Instant::now();
    let out = bin().arg("inspect").arg(path).output().unwrap();
    (out, start.elapsed().as_secs_f64())
}

/// Generates an archive for measuring by hand: `KB_SCALE_OUT=/tmp/x.airgap KB_SCALE_IMAGES=32768
/// KB_SCALE_COPIES=1 cargo test --test archive_scale generate -- --ignored`.
#[test]
#[ignore]
fn generate() {
    let out = std::env::var("KB_SCALE_OUT").expect("KB_SCALE_OUT");
    let n = std::env::var("KB_SCALE_IMAGES").map_or(32768, |v| v.parse().unwrap());
    let c = std::env::var("KB_SCALE_COPIES").map_or(1, |v| v.parse().unwrap());
    big_archive(Path::new(&out), n, c);
}

#[test]
fn many_images_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.airgap");
    let n = 4000;
    big_archive(&path, n, 1);
    let (out, secs) = timed_inspect(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("images:      {n}")), "{text}");
    eprintln!("inspect of {n} images: {secs:.2} s");
}

/// One image listed 15 000 times in the metadata and in `index.json`: the duplicates are
/// collapsed when the archive is opened, so inspect shows one image and import reads and
/// pushes it once (counted in the registry's own log), not 15 000 times.
#[test]
fn duplicate_entries_cost_one_read_and_one_push() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.airgap");
    big_archive(&path, 1, 15_000);
    let (out, secs) = timed_inspect(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("images:      1\n"), "{text}");
    eprintln!("inspect of 1 image listed 15000 times: {secs:.2} s");

    let reg = common::TestRegistry::start();
    let start = Instant::now();
    let out = bin()
        .arg("import")
        .arg(&path)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(dir.path().join("app"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = reg.log();
    let requests = log
        .lines()
        .filter(|l| l.contains("response completed"))
        .count();
    let manifest_puts = log
        .lines()
        .filter(|l| {
            l.contains("response completed")
                && l.contains("http.request.method=PUT")
                && l.contains("/manifests/")
                // The app directory import stores beside the images is not an image.
                && !l.contains("-app/manifests/")
        })
        .count();
    eprintln!(
        "import: {requests} requests, {manifest_puts} manifest PUTs, {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(manifest_puts, 1, "{log}");
    assert!(requests < 50, "{requests} requests for one image");
}

/// Past the cap, an archive is refused with the cap in the message, before any manifest is
/// read.
#[test]
fn more_images_than_the_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("over.airgap");
    big_archive(&path, 1, kots_bundle::archive::MAX_IMAGES + 1);
    for cmd in ["inspect", "verify"] {
        let out = bin().arg(cmd).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}");
        assert!(
            err.contains(&format!("at most {}", kots_bundle::archive::MAX_IMAGES)),
            "{cmd}: {err}"
        );
    }
}
