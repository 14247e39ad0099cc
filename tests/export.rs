//! `kots-bundle export` end to end against a real registry: a multi-arch index, a
//! digest-pinned reference, images served for `quay.io/...` through a mirror, and a shared base
//! layer; results checked with skopeo and tar.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::app::{app_dir, bin, ok, Source};
use common::synth::{self, ImageSpec};

fn export(src: &Source, app: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--registry-mirror", &src.mirror()])
        .args(extra)
        .output()
        .unwrap()
}

fn skopeo_raw_digest(r: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(r)
        .output()
        .unwrap();
    synth::sha256(ok(out, &format!("skopeo inspect --raw {r}")).as_bytes())
}

fn refs(src: &Source) -> Vec<(String, String)> {
    vec![
        (
            "quay.io/org/multi:1".to_string(),
            src.image("multi:1").digest.clone(),
        ),
        (
            format!("quay.io/org/a@{}", src.image("a:v1").digest),
            src.image("a:v1").digest.clone(),
        ),
        (
            "quay.io/org/b:v1".to_string(),
            src.image("b:v1").digest.clone(),
        ),
    ]
}

#[test]
fn uncompressed_export_is_an_oci_archive_skopeo_reads() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.airgap");
    ok(
        export(&src, app.path(), &out, &["--compression", "none"]),
        "export",
    );
    for (r, digest) in refs(&src) {
        // The source registry's digest, as skopeo sees it there...
        let source_digest = skopeo_raw_digest(&format!("docker://{}/{}", src.reg.addr, r));
        assert_eq!(source_digest, digest);
        // ...equals what skopeo reads from the archive (oci-archive:FILE:REF).
        let archived = skopeo_raw_digest(&format!("oci-archive:{}:{r}", out.display()));
        assert_eq!(archived, digest, "{r}");
    }
    // A full copy of the multi-arch index out of the archive works (every platform present).
    let dest = tempfile::tempdir().unwrap();
    ok(
        Command::new("skopeo")
            .args(["copy", "--all", "-q"])
            .arg(format!("oci-archive:{}:quay.io/org/multi:1", out.display()))
            .arg(format!("oci:{}:m", dest.path().display()))
            .output()
            .unwrap(),
        "skopeo copy --all out of the archive",
    );
}

#[test]
fn zstd_export_unpacks_to_a_layout_with_each_blob_once() {
    common::require_tools(&["tar", "zstd"]);
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.airgap");
    ok(export(&src, app.path(), &out, &[]), "export");

    let unpacked = tempfile::tempdir().unwrap();
    ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(unpacked.path())
            .output()
            .unwrap(),
        "tar --zstd -x",
    );
    for (r, digest) in refs(&src) {
        let d = skopeo_raw_digest(&format!("oci:{}:{r}", unpacked.path().display()));
        assert_eq!(d, digest, "{r}");
    }
    // The shared base layer is stored once although three images (four manifests) use it.
    let base = src.images[0].shared_base.clone().unwrap();
    let listing = ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-tf")
            .arg(&out)
            .output()
            .unwrap(),
        "tar -t",
    );
    let hex = &base["sha256:".len()..];
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(hex)).count(),
        1,
        "{listing}"
    );
    assert_eq!(listing.lines().next(), Some("kots-bundle.json"));
    assert!(unpacked.path().join("upstream/app.yaml").exists());

    // inspect reads the head; verify checks everything.
    let json = ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&out)
            .output()
            .unwrap(),
        "inspect",
    );
    let meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    let images = meta["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    let multi = images
        .iter()
        .find(|i| i["reference"] == "quay.io/org/multi:1")
        .unwrap();
    assert_eq!(
        multi["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(multi["digest"], src.image("multi:1").digest.as_str());
    let text = ok(bin().arg("inspect").arg(&out).output().unwrap(), "inspect");
    assert!(text.contains("quay.io/org/b:v1"), "{text}");
    let v = ok(bin().arg("verify").arg(&out).output().unwrap(), "verify");
    assert!(v.starts_with("OK"), "{v}");
}

#[test]
fn verify_exits_3_naming_a_flipped_blob() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.airgap");
    ok(
        export(&src, app.path(), &out, &["--compression", "none"]),
        "export",
    );
    // Flip one byte inside the base layer's data (found by its tar header in the plain tar).
    let data = std::fs::read(&out).unwrap();
    let base = src.images[0].shared_base.clone().unwrap();
    let hex = &base["sha256:".len()..];
    let entry = format!("blobs/sha256/{hex}");
    let at = data
        .windows(entry.len())
        .position(|w| w == entry.as_bytes())
        .unwrap();
    let mut bad = data.clone();
    bad[(at / 512 + 1) * 512 + 100] ^= 0xff;
    std::fs::write(&out, bad).unwrap();
    let res = bin().arg("verify").arg(&out).output().unwrap();
    assert_eq!(res.status.code(), Some(3));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains(hex), "names the blob: {err}");
}

#[test]
fn failed_export_leaves_nothing_behind() {
    let src = Source::start(vec![ImageSpec::new("a:v1", 2)]);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/a:v1}\n  - {name: x, image: quay.io/org/missing:v9}\n",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.airgap");
    let res = export(&src, app.path(), &out, &[]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("quay.io/org/missing"),
        "names the image: {err}"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

/// Memory stays flat as layers grow: a 200 MiB layer is exported with a peak RSS well under it.
#[test]
fn export_memory_is_flat_with_a_200_mib_layer() {
    common::require_tools(&["/usr/bin/time"]);
    let mut big = ImageSpec::new("big:v1", 9);
    big.layer_size = 200 * 1024 * 1024;
    big.uncompressed = true;
    big.shared_base = false;
    let src = Source::start(vec![big]);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/big:v1}\n",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("big.airgap");
    let res = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M"])
        .arg(env!("CARGO_BIN_EXE_kots-bundle"))
        .arg("export")
        .arg(app.path())
        .arg("-o")
        .arg(&out)
        .args(["--registry-mirror", &src.mirror(), "--zstd-level", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "{err}");
    let kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("export of a 200 MiB layer: peak RSS {} MiB", kib / 1024);
    assert!(
        kib < 100 * 1024,
        "peak RSS {kib} KiB must stay well under the 200 MiB layer"
    );
}

#[test]
fn platform_flag_keeps_fewer_platforms_of_an_index() {
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.airgap");
    ok(
        export(
            &src,
            app.path(),
            &out,
            &["--platform", "linux/arm64", "--compression", "none"],
        ),
        "export --platform",
    );
    let json = ok(
        bin()
            .args(["inspect", "--json"])
            .arg(&out)
            .output()
            .unwrap(),
        "inspect",
    );
    let meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    let multi = meta["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "quay.io/org/multi:1")
        .unwrap()
        .clone();
    assert_eq!(multi["platforms"], serde_json::json!(["linux/arm64"]));
    assert_ne!(
        multi["digest"],
        src.image("multi:1").digest.as_str(),
        "a narrowed index is a new index"
    );
    // skopeo reads the narrowed index and copies its one platform.
    let dest = tempfile::tempdir().unwrap();
    ok(
        Command::new("skopeo")
            .args(["copy", "--all", "-q"])
            .arg(format!("oci-archive:{}:quay.io/org/multi:1", out.display()))
            .arg(format!("oci:{}:m", dest.path().display()))
            .output()
            .unwrap(),
        "skopeo copy of the narrowed index",
    );
    ok(bin().arg("verify").arg(&out).output().unwrap(), "verify");
}

/// Two images that flatten to the same destination name are flagged on the online host,
/// where the archive is made, not first inside the air gap.
#[test]
fn export_warns_about_names_that_would_collide_at_import() {
    let src = Source::start(vec![ImageSpec::new("a:v1", 2)]);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/a:v1}\n  - {name: b, image: quay.io/other/a:v1}\n",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let res = export(&src, app.path(), &out_dir.path().join("x.airgap"), &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("quay.io/org/a and quay.io/other/a") && err.contains("--preserve-paths"),
        "{err}"
    );
}

/// Exports one image with a 12 MiB layer through a proxy (`rule` decides its faults) at
/// `--concurrency 8`; returns the proxy's log, the layer's digest, every blob's digest and
/// the verified archive.
type Exported = (
    Vec<common::faulty::Seen>,
    String,
    Vec<String>,
    tempfile::TempDir,
);

fn export_through_proxy(
    rule: impl Fn(&str, &str, usize) -> Option<common::faulty::Fault> + Send + Sync + 'static,
) -> Exported {
    let mut spec = ImageSpec::new("big:v1", 77);
    spec.layer_size = 12 * 1024 * 1024;
    spec.uncompressed = true;
    spec.shared_base = false;
    let src = Source::start(vec![spec]);
    let img = src.image("big:v1").clone();
    let proxy = common::faulty::FaultyProxy::start(&src.reg.addr, rule);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: quay.io/org/big:v1}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("big.airgap");
    ok(
        bin()
            .arg("export")
            .arg(app.path())
            .arg("-o")
            .arg(&out)
            .args([
                "--registry-mirror",
                &format!("quay.io={}/quay.io", proxy.addr),
                "--concurrency",
                "8",
            ])
            .output()
            .unwrap(),
        "export",
    );
    let v = ok(bin().arg("verify").arg(&out).output().unwrap(), "verify");
    assert!(v.starts_with("OK"), "{v}");
    // The largest blob is the layer (configs and manifests are a few hundred bytes).
    let reader = kots_bundle::archive::ArchiveReader::open(&out).unwrap();
    let layer = img
        .blobs
        .iter()
        .max_by_key(|d| {
            reader
                .index()
                .entries
                .get(&format!("blobs/sha256/{}", &d[7..]))
                .map_or(0, |e| e.size)
        })
        .unwrap()
        .clone();
    let seen = proxy.seen.lock().unwrap().clone();
    (seen, layer, img.blobs.clone(), work)
}

/// A large blob is fetched over several connections in ranged parts, and the archive is
/// still written in order and verifies.
#[test]
fn export_fetches_a_large_blob_in_ranged_parts() {
    let (seen, layer, blobs, _work) = export_through_proxy(|_, _, _| None);
    let parts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&layer))
        .filter_map(|s| s.range.as_deref())
        .collect();
    // --concurrency 8: a window of 40 MiB, parts of at most 5 MiB, so 12 MiB and a tar
    // header is three equal ranges, one after another from byte 0.
    let mut ranges: Vec<(u64, u64)> = parts
        .iter()
        .map(|r| {
            let (a, b) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    ranges.sort();
    assert_eq!(ranges.len(), 3, "{parts:?}");
    assert_eq!(ranges[0].0, 0, "{parts:?}");
    for w in ranges.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "contiguous: {parts:?}");
    }
    let len = |r: &(u64, u64)| r.1 + 1 - r.0;
    assert!(
        len(&ranges[0]) <= 5 << 20 && len(&ranges[0]) > 4 << 20,
        "{parts:?}"
    );
    assert!(
        len(&ranges[2]) <= len(&ranges[0]) && len(&ranges[1]) == len(&ranges[0]),
        "{parts:?}"
    );
    // Everything else is fetched once: the config read while resolving is not read again.
    for d in blobs.iter().filter(|d| **d != layer) {
        let gets = seen
            .iter()
            .filter(|s| s.method == "GET" && s.path.ends_with(&format!("/blobs/{d}")))
            .count();
        assert!(gets <= 1, "{d} fetched {gets} times");
    }
}

/// A registry that ignores Range answers the first part with the whole blob: it is taken
/// whole, and later blobs are not asked for in parts any more.
#[test]
fn export_takes_the_whole_blob_from_a_registry_that_ignores_range() {
    let (seen, layer, _, _work) = export_through_proxy(|method, path, _| {
        (method == "GET" && path.contains("/blobs/")).then_some(common::faulty::Fault::NoRange)
    });
    let layer_gets = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.ends_with(&layer))
        .count();
    // The first part's answer carried the whole layer; parts asked for beside it are dropped.
    assert!(layer_gets <= 5, "{layer_gets} GETs of the layer");
}
