//! The `.airgap` archive format, checked with independent tools: an archive written by the
//! copy engine from an OCI layout is read back by our reader, by `tar --zstd`, and by skopeo.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::bundle;
use common::synth::{self, ImageSpec};
use kots_bundle::archive::{ArchiveReader, Compression};
use kots_bundle::reference::Reference;
use kots_bundle::upstream::ManifestFile;

struct Built {
    _dir: tempfile::TempDir,
    archive: PathBuf,
    images: Vec<synth::SynthImage>,
}

fn specs() -> Vec<ImageSpec> {
    let mut multi = ImageSpec::new("multi:1", 2);
    multi.multiarch = true;
    vec![
        ImageSpec::new("img-a:v1", 1),
        multi,
        ImageSpec::new("img-b:v1", 3),
    ]
}

async fn build(compression: Compression) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let upstream = vec![ManifestFile {
        path: "deploy.yaml".into(),
        data: b"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: img-a:v1}\n".to_vec(),
    }];
    let archive_path = dir.path().join("app.airgap");
    let (archive, images) =
        bundle::archive_of(dir.path(), &specs(), &upstream, &archive_path, compression).await;
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial")),
        "no temp file left beside the archive"
    );
    Built {
        _dir: dir,
        archive,
        images,
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo_digest(transport_ref: &str) -> String {
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(transport_ref));
    synth::sha256(raw.as_bytes())
}

#[tokio::test]
async fn zstd_archive_round_trips_and_unpacks_with_tar() {
    common::require_tools(&["skopeo", "tar", "zstd"]);
    let b = build(Compression::Zstd).await;
    let reader = ArchiveReader::open(&b.archive).unwrap();
    assert_eq!(reader.compression(), Compression::Zstd);
    let meta = reader.metadata();
    assert_eq!(meta.app.name, "app");
    assert_eq!(meta.images.len(), 3);
    let summary = reader.verify(|_| {}).unwrap();
    assert_eq!(summary.images, 3);

    // Each blob stored once: the shared base layer appears a single time.
    let base = b.images[0].shared_base.clone().unwrap();
    let all: std::collections::BTreeSet<String> =
        b.images.iter().flat_map(|i| i.blobs.clone()).collect();
    assert_eq!(summary.blobs, all.len(), "every distinct blob exactly once");
    let listing = run(Command::new("tar").arg("--zstd").arg("-tf").arg(&b.archive));
    let base_entries = listing
        .lines()
        .filter(|l| l.ends_with(&base["sha256:".len()..]))
        .count();
    assert_eq!(base_entries, 1, "shared layer stored once:\n{listing}");
    assert_eq!(
        listing.lines().next(),
        Some("kots-bundle.json"),
        "metadata first"
    );

    // tar --zstd -x gives an OCI layout that skopeo reads, with the source digests.
    let out = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&b.archive)
        .arg("-C")
        .arg(out.path()));
    for img in &b.images {
        let name = Reference::parse(&img.name).unwrap().to_string();
        let d = skopeo_digest(&format!("oci:{}:{name}", out.path().display()));
        assert_eq!(d, img.digest, "{name}");
    }
    assert!(out.path().join("upstream/deploy.yaml").exists());
}

#[tokio::test]
async fn uncompressed_archive_is_read_by_skopeo_oci_archive() {
    common::require_tools(&["skopeo"]);
    let b = build(Compression::None).await;
    let reader = ArchiveReader::open(&b.archive).unwrap();
    assert_eq!(reader.compression(), Compression::None);
    reader.verify(|_| {}).unwrap();
    for img in &b.images {
        let name = Reference::parse(&img.name).unwrap().to_string();
        let d = skopeo_digest(&format!("oci-archive:{}:{name}", b.archive.display()));
        assert_eq!(d, img.digest, "{name}");
        // And a full copy out of it (all platforms) succeeds.
        let dest = tempfile::tempdir().unwrap();
        run(Command::new("skopeo")
            .args(["copy", "--all", "-q"])
            .arg(format!("oci-archive:{}:{name}", b.archive.display()))
            .arg(format!("oci:{}:x", dest.path().display())));
    }
}

fn flip_byte_in(path: &Path, at: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[at as usize] ^= 0x55;
    std::fs::write(path, data).unwrap();
}

#[tokio::test]
async fn verify_catches_flipped_byte_and_truncation() {
    for compression in [Compression::Zstd, Compression::None] {
        let b = build(compression).await;
        let reader = ArchiveReader::open(&b.archive).unwrap();
        // The largest blob: flip a byte in the middle of its stored bytes.
        let (name, entry) = reader
            .index()
            .entries
            .iter()
            .max_by_key(|(_, e)| e.length)
            .map(|(n, e)| (n.clone(), *e))
            .unwrap();
        drop(reader);
        flip_byte_in(&b.archive, entry.offset + entry.length / 2);
        let err = ArchiveReader::open(&b.archive)
            .and_then(|r| r.verify(|_| {}).map(|_| ()))
            .unwrap_err()
            .to_string();
        eprintln!("{compression:?} flipped: {err}");
        assert!(
            err.contains(&name) || err.contains("(tar)"),
            "{compression:?}: error names the entry: {err}"
        );

        let b = build(compression).await;
        let len = std::fs::metadata(&b.archive).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&b.archive)
            .unwrap();
        f.set_len(len * 2 / 3).unwrap();
        let err = ArchiveReader::open(&b.archive)
            .and_then(|r| r.verify(|_| {}).map(|_| ()))
            .unwrap_err()
            .to_string();
        eprintln!("{compression:?} truncated: {err}");
        assert!(
            !err.is_empty(),
            "{compression:?}: truncated archive refused: {err}"
        );
    }
}

#[tokio::test]
async fn blobs_read_in_place_by_digest() {
    let b = build(Compression::Zstd).await;
    let reader = ArchiveReader::open(&b.archive).unwrap();
    for img in &b.images {
        for d in &img.blobs {
            let digest = d.parse().unwrap();
            let mut r = reader.blob(&digest).unwrap();
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut buf).unwrap();
            assert_eq!(&synth::sha256(&buf), d);
        }
    }
    let files = reader.upstream_files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "deploy.yaml");
}

/// The metadata an archive carries validates against the published JSON schema
/// (`bundle-format/metadata.schema.json`, checked by Python's `jsonschema`), including the
/// upstream digests; an app name that is a path does not.
#[tokio::test]
async fn metadata_matches_the_published_schema() {
    common::require_tools(&["python3"]);
    let b = build(Compression::Zstd).await;
    let meta = ArchiveReader::read_metadata_only(&b.archive).unwrap();
    assert_eq!(
        meta.upstream_digests
            .get("deploy.yaml")
            .map(|d| d.to_string()),
        Some(synth::sha256(
            &ArchiveReader::open(&b.archive)
                .unwrap()
                .upstream_files()
                .unwrap()[0]
                .data
        ))
    );
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle-format/metadata.schema.json");
    let validate = |doc: &serde_json::Value| {
        let file = b._dir.path().join("meta.json");
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        Command::new("python3")
            .arg("-c")
            .arg(
                "import json, sys, jsonschema\n\
                 s = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2]))\n\
                 jsonschema.Draft202012Validator(s).validate(d)",
            )
            .arg(&schema)
            .arg(&file)
            .output()
            .unwrap()
    };
    let mut doc = serde_json::to_value(&meta).unwrap();
    let ok = validate(&doc);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A replicated:// release (added within v1) as export writes it.
    doc["app"]["release"] = serde_json::json!({
        "channelId": "ch-stable", "channelName": "Stable", "channelSequence": 5,
        "versionLabel": "1.1.0", "releasedAt": "2026-11-06T10:00:00Z", "isRequired": true
    });
    let ok = validate(&doc);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    doc["app"]["release"]["requiredReleases"] =
        serde_json::json!([{"channelSequence": 3, "versionLabel": "1.0.5"}]);
    assert!(validate(&doc).status.success());
    doc["app"]["release"]["channelSequence"] = "5".into();
    assert!(
        !validate(&doc).status.success(),
        "the schema allows a sequence that is not a number"
    );
    doc["app"].as_object_mut().unwrap().remove("release");
    doc["app"]["name"] = "../elsewhere".into();
    assert!(
        !validate(&doc).status.success(),
        "the schema allows a path as app name"
    );
}

/// An archive large enough to be cut into stretches verifies the same on 4 threads as on
/// one: accepted whole, and with a byte flipped in a blob late in the file, refused with the
/// same error a single front-to-back walk gives.
#[tokio::test]
async fn verify_on_threads_agrees_with_one_walk() {
    for compression in [Compression::Zstd, Compression::None] {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<ImageSpec> = (0..6)
            .map(|i| {
                let mut s = ImageSpec::new(&format!("img-{i}:v1"), 100 + i);
                s.layer_size = 12 * 1024 * 1024;
                s.uncompressed = true;
                s
            })
            .collect();
        let path = dir.path().join("app.airgap");
        let (archive, _) = bundle::archive_of(dir.path(), &specs, &[], &path, compression).await;
        let reader = ArchiveReader::open(&archive).unwrap();
        let one = reader.verify_with(1, |_| {}).unwrap();
        let read = std::sync::atomic::AtomicU64::new(0);
        let four = reader
            .verify_with(4, |n| {
                read.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(
            (one.images, one.blobs, one.bytes),
            (four.images, four.blobs, four.bytes)
        );
        let blob_bytes: u64 = reader
            .index()
            .entries
            .iter()
            .filter(|(n, _)| n.starts_with("blobs/"))
            .map(|(_, e)| e.size)
            .sum();
        assert_eq!(
            read.into_inner(),
            blob_bytes,
            "progress ends at the blob bytes"
        );

        // The last large blob in the file, flipped: the stretch holding it fails, the
        // others pass.
        let big = reader
            .index()
            .entries
            .values()
            .filter(|e| e.size > 1 << 20)
            .max_by_key(|e| e.offset)
            .copied()
            .unwrap();
        drop(reader);
        flip_byte_in(&archive, big.offset + big.length / 2);
        let reader = ArchiveReader::open(&archive).unwrap();
        let one = reader.verify_with(1, |_| {}).unwrap_err().to_string();
        let four = reader.verify_with(4, |_| {}).unwrap_err().to_string();
        assert_eq!(one, four, "{compression:?}");
    }
}
