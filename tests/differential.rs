//! Differential bundles on real registries: `inventory` lists what the private registry
//! answers 200 for, `export --since have.json|OLD.airgap` carries only the blobs it lacks
//! (counted by GNU tar in the file itself) and every manifest, `import` of such a bundle
//! mounts what a new repository lacks and pushes complete images (copied back out by
//! skopeo), and a bundle that leaves out a blob the registry does not hold is refused
//! before anything is pushed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::app::{app_dir, app_dir_using, bin, export_cmd, import_cmd, ok, Source};
use common::synth::{sha256, ImageSpec, SynthImage};
use common::{raw_http, TestRegistry};

const NS: &str = "diff";

/// The blob entries of an archive as GNU tar lists them.
fn tar_blobs(archive: &Path) -> BTreeSet<String> {
    let out = ok(
        Command::new("tar")
            .args(["--zstd", "-tf"])
            .arg(archive)
            .output()
            .unwrap(),
        "tar -t",
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("blobs/sha256/"))
        .map(|h| format!("sha256:{h}"))
        .collect()
}

fn metadata(archive: &Path) -> serde_json::Value {
    let out = ok(
        bin()
            .arg("inspect")
            .arg(archive)
            .arg("--json")
            .output()
            .unwrap(),
        "inspect --json",
    );
    serde_json::from_str(&out).unwrap()
}

/// The v2 app: `b` updated to `b:v2`, a new image `c:v1` (a new repository), `a` and `multi`
/// unchanged.
fn app_v2(src: &Source) -> tempfile::TempDir {
    app_dir_using(src, &["multi:1", "b:v2", "c:v1"])
}

/// What the v2 images have that no v1 image has, manifests aside: the blobs an update
/// bundle must carry.
fn new_blobs(v1: &[&SynthImage], v2_new: &[&SynthImage]) -> BTreeSet<String> {
    let old: BTreeSet<&String> = v1.iter().flat_map(|i| &i.blobs).collect();
    v2_new
        .iter()
        .flat_map(|i| i.blobs.iter().filter(move |b| **b != i.digest))
        .filter(|b| !old.contains(b))
        .cloned()
        .collect()
}

/// The manifests and indexes an archive's metadata lists among its blobs.
fn manifests_of(meta: &serde_json::Value) -> BTreeSet<String> {
    meta["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            let mt = b["mediaType"].as_str().unwrap();
            mt.ends_with("manifest.v1+json") || mt.ends_with("index.v1+json")
        })
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect()
}

fn delete_blob(reg: &TestRegistry, repo: &str, digest: &str) {
    let (status, body) = raw_http(
        &reg.addr,
        "DELETE",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        b"",
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

fn inventory(dst: &TestRegistry, dir: &Path, out: &Path) -> serde_json::Value {
    ok(
        bin()
            .arg("inventory")
            .arg("--app-dir")
            .arg(dir)
            .args(["--registry-endpoint", &dst.addr, "--image-namespace", NS])
            .arg("-o")
            .arg(out)
            .output()
            .unwrap(),
        "inventory",
    );
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

/// v1 exported and imported into a fresh registry; `b:v2` and `c:v1` added at the source.
struct Setup {
    src: Source,
    dst: TestRegistry,
    work: tempfile::TempDir,
    app_dir: std::path::PathBuf,
    v1_archive: std::path::PathBuf,
}

fn setup() -> Setup {
    common::require_tools(&["skopeo", "tar", "zstd"]);
    let mut src = Source::start(Source::default_specs());
    let work = tempfile::tempdir().unwrap();
    let v1_app = app_dir(&src);
    let v1_archive = work.path().join("v1.airgap");
    ok(
        export_cmd(&src, v1_app.path(), &v1_archive, &[])
            .output()
            .unwrap(),
        "export v1",
    );
    let dst = TestRegistry::start();
    let app_dir = work.path().join("app");
    ok(
        import_cmd(&dst, NS, &v1_archive, &app_dir)
            .output()
            .unwrap(),
        "import v1",
    );
    src.add(ImageSpec::new("b:v2", 7));
    src.add(ImageSpec::new("c:v1", 8));
    Setup {
        src,
        dst,
        work,
        app_dir,
        v1_archive,
    }
}

#[test]
fn update_against_an_inventory_carries_only_new_blobs_and_imports_complete_images() {
    let s = setup();
    let (src, dst) = (&s.src, &s.dst);
    // Garbage collection took a:v1's own layer out of its repository: the inventory must
    // say so, since it lists what the registry answers for, not what was pushed.
    let a = src.image("a:v1");
    let a_layer = a
        .blobs
        .iter()
        .find(|b| Some(*b) != a.shared_base.as_ref())
        .unwrap()
        .clone();
    delete_blob(dst, &format!("{NS}/a"), &a_layer);

    let have_path = s.work.path().join("have.json");
    let have = inventory(dst, &s.app_dir, &have_path);
    assert_eq!(have["format"], "kots-bundle.inventory/v1");
    assert_eq!(have["registry"], dst.addr.as_str());
    assert_eq!(have["namespace"], NS);
    let held: BTreeSet<String> = have["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!held.contains(&a_layer), "a deleted blob is not held");
    let base = a.shared_base.clone().unwrap();
    let base_repos: Vec<&str> = have["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == base.as_str())
        .unwrap()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        base_repos,
        [format!("{NS}/a"), format!("{NS}/b"), format!("{NS}/multi")]
    );
    let v1: Vec<&SynthImage> = ["multi:1", "a:v1", "b:v1"]
        .iter()
        .map(|n| src.image(n))
        .collect();
    // Manifests are not blobs of the inventory; every other blob of v1 is, but the one deleted.
    let v1_manifests = manifests_of(&metadata(&s.v1_archive));
    let v1_blobs: BTreeSet<String> = tar_blobs(&s.v1_archive);
    let expected_held: BTreeSet<String> = v1_blobs
        .difference(&v1_manifests)
        .filter(|d| **d != a_layer)
        .cloned()
        .collect();
    assert_eq!(held, expected_held);

    let v2_app = app_v2(src);
    let v2 = s.work.path().join("v2.airgap");
    let since = have_path.to_str().unwrap();
    let said = export_cmd(src, v2_app.path(), &v2, &["--since", since])
        .output()
        .unwrap();
    ok(said.clone(), "export v2 --since");
    assert!(
        String::from_utf8_lossy(&said.stderr).contains("left out"),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    // Counted in the file by tar: the new images' new blobs, a's layer the registry lost,
    // and every manifest; nothing the inventory holds.
    let carried = tar_blobs(&v2);
    let (b2, c1) = (src.image("b:v2"), src.image("c:v1"));
    let mut expected = new_blobs(&v1, &[b2, c1]);
    assert_eq!(
        expected.len(),
        4,
        "b:v2 and c:v1: one layer and one config each"
    );
    expected.insert(a_layer.clone());
    let meta = metadata(&v2);
    let manifests = manifests_of(&meta);
    // multi: an index and two platform manifests; a, b:v2, c:v1: one each.
    assert_eq!(manifests.len(), 6);
    for top in [
        &src.image("multi:1").digest,
        &a.digest,
        &b2.digest,
        &c1.digest,
    ] {
        assert!(manifests.contains(top), "{top} carried");
    }
    let non_manifest: BTreeSet<String> = carried.difference(&manifests).cloned().collect();
    assert_eq!(
        non_manifest, expected,
        "only what the registry lacks is carried"
    );
    assert!(carried.is_disjoint(&held));
    assert_eq!(meta["format"], "kots-bundle.airgap/v1+differential");
    let omitted = meta["differential"]["omitted"].as_array().unwrap();
    let omitted: BTreeSet<String> = omitted
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(omitted.is_subset(&held));
    assert!(omitted.contains(&base));
    assert_eq!(meta["differential"]["against"]["kind"], "inventory");
    assert_eq!(
        meta["differential"]["against"]["digest"],
        sha256(&std::fs::read(&have_path).unwrap()).as_str()
    );

    // inspect and verify say what it is.
    let shown = ok(bin().arg("inspect").arg(&v2).output().unwrap(), "inspect");
    assert!(
        shown.contains(&format!(
            "(inventory of {}/{NS}): {} blobs",
            dst.addr,
            omitted.len()
        )) && shown.contains("differential: against "),
        "{shown}"
    );
    let verified = ok(bin().arg("verify").arg(&v2).output().unwrap(), "verify");
    assert!(
        verified.contains(&format!("{} blobs", carried.len())),
        "{verified}"
    );
    assert!(
        verified.contains(&format!(
            "(inventory of {}/{NS}): {} blobs",
            dst.addr,
            omitted.len()
        )),
        "{verified}"
    );
    // serve cannot answer for what it lacks.
    let served = bin()
        .arg("serve")
        .arg(&v2)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!served.status.success());
    let refused = String::from_utf8_lossy(&served.stderr);
    assert!(
        refused.contains("so it cannot be served as a registry; serve the complete archive, or import this one into the registry that holds the rest"),
        "{refused}"
    );

    // Import: c:v1 goes to a new repository, which lacks the base layer: mounted from one
    // that has it. Every pushed image is complete: skopeo copies each back out.
    let out = import_cmd(dst, NS, &v2, &s.app_dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "import v2");
    // c's repository lacked the base layer: mounted.
    assert!(
        err.contains(
            "mounted 1 blob(s) the differential archive leaves out from other repositories of the registry"
        ),
        "{err}"
    );
    for image in ["b:v2", "c:v1", "multi:1"] {
        let copy = tempfile::tempdir().unwrap();
        ok(
            Command::new("skopeo")
                .args(["copy", "--all", "--src-tls-verify=false"])
                .arg(format!("docker://{}/{NS}/{image}", dst.addr))
                .arg(format!("dir:{}", copy.path().display()))
                .output()
                .unwrap(),
            &format!("skopeo copy {image}"),
        );
        let top = &src.image(image).digest;
        let inspected = ok(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}/{NS}/{image}", dst.addr))
                .output()
                .unwrap(),
            "skopeo inspect",
        );
        assert_eq!(
            &sha256(inspected.as_bytes()),
            top,
            "{image} pushed byte for byte"
        );
    }
    let (status, _) = raw_http(
        &dst.addr,
        "HEAD",
        &format!("/v2/{NS}/c/blobs/{base}"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "the base layer is in c's repository");
}

#[test]
fn since_an_old_archive_and_a_blob_the_registry_lacks_is_refused_before_any_push() {
    let s = setup();
    let (src, dst) = (&s.src, &s.dst);
    let v2_app = app_v2(src);
    let v2 = s.work.path().join("v2.airgap");
    let since = s.v1_archive.to_str().unwrap();
    ok(
        export_cmd(src, v2_app.path(), &v2, &["--since", since])
            .output()
            .unwrap(),
        "export v2 --since v1.airgap",
    );
    let meta = metadata(&v2);
    assert_eq!(meta["differential"]["against"]["kind"], "archive");
    // The same registry read through the archive imported instead of the app directory.
    let by_dir = inventory(dst, &s.app_dir, &s.work.path().join("dir.json"));
    let by_archive_path = s.work.path().join("archive.json");
    ok(
        bin()
            .arg("inventory")
            .arg("--archive")
            .arg(&s.v1_archive)
            .args(["--registry-endpoint", &dst.addr, "--image-namespace", NS])
            .arg("-o")
            .arg(&by_archive_path)
            .output()
            .unwrap(),
        "inventory --archive",
    );
    let by_archive: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&by_archive_path).unwrap()).unwrap();
    assert_eq!(by_archive["blobs"], by_dir["blobs"]);
    assert_eq!(by_archive["manifests"], by_dir["manifests"]);
    assert!(!by_dir["blobs"].as_array().unwrap().is_empty());
    let v1: Vec<&SynthImage> = ["multi:1", "a:v1", "b:v1"]
        .iter()
        .map(|n| src.image(n))
        .collect();
    let (b2, c1) = (src.image("b:v2"), src.image("c:v1"));
    let expected = new_blobs(&v1, &[b2, c1]);
    let carried = tar_blobs(&v2);
    let non_manifest: BTreeSet<String> =
        carried.difference(&manifests_of(&meta)).cloned().collect();
    assert_eq!(non_manifest, expected, "only the blobs v1 did not have");

    // The base layer (which the bundle leaves out) is gone from every repository.
    let base = src.image("a:v1").shared_base.clone().unwrap();
    for repo in ["a", "b", "multi"] {
        delete_blob(dst, &format!("{NS}/{repo}"), &base);
    }
    let writes = dst.count_writes();
    let out = import_cmd(dst, NS, &v2, &s.app_dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&base), "{err}");
    assert!(err.contains(&format!("{}/{NS}/c:v1", dst.addr)), "{err}");
    assert!(err.contains(&format!("{}/{NS}/b:v2", dst.addr)), "{err}");
    assert!(err.contains("nothing was pushed"), "{err}");
    assert_eq!(dst.count_writes(), writes, "nothing was written");
    let (status, _) = raw_http(
        &dst.addr,
        "HEAD",
        &format!("/v2/{NS}/c/manifests/v1"),
        &[],
        b"",
    );
    assert_eq!(status, 404);

    // An empty registry holds none of it: refused the same way.
    let empty = TestRegistry::start();
    let out = import_cmd(&empty, NS, &v2, &s.work.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(empty.count_writes(), 0);
    assert!(!s.work.path().join("other").exists());
}
