//! Multi-volume archives (`export --max-volume-size`) end to end through the binary: a
//! 3-volume export from a real registry, each volume verified on its own, the whole set
//! verified and imported in place into another real registry (skopeo reads back every
//! image), and a missing, truncated, swapped or damaged volume named in the error. The
//! volume files are also checked without kots-bundle: `sha256sum`-style hashes against the
//! first volume's record, and the pieces put back together read by `tar --zstd`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::app::{app_dir, bin, ok, Source};
use common::synth::{self, ImageSpec};
use common::TestRegistry;

const MAX: u64 = 1 << 20;

fn specs() -> Vec<ImageSpec> {
    let mut multi = ImageSpec::new("multi:1", 1);
    multi.multiarch = true;
    let mut out = vec![multi, ImageSpec::new("a:v1", 2), ImageSpec::new("b:v1", 3)];
    for s in &mut out {
        s.layer_size = 450 * 1024;
    }
    out
}

fn export(src: &Source, app: &Path, out: &Path, extra: &[&str]) -> String {
    ok(
        bin()
            .arg("export")
            .arg(app)
            .arg("-o")
            .arg(out)
            .args(["--registry-mirror", &src.mirror()])
            .args(extra)
            .output()
            .unwrap(),
        "export",
    )
}

fn verify(args: &[&Path]) -> Output {
    bin().arg("verify").args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn import(dest: &TestRegistry, archive: &Path, dir: &Path) -> Output {
    bin()
        .arg("import")
        .arg(archive)
        .args([
            "--registry-endpoint",
            &dest.addr,
            "--image-namespace",
            "myapp",
        ])
        .arg("--dest")
        .arg(dir)
        .output()
        .unwrap()
}

fn volumes(first: &Path) -> Vec<PathBuf> {
    let dir = first.parent().unwrap();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&*first.file_name().unwrap().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

/// The trailer of a volume file, parsed here from the documented layout (JSON, its length
/// as u64 LE, "KBNDLVOL"), and the trailer's length.
fn trailer(path: &Path) -> (serde_json::Value, usize) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[data.len() - 8..], b"KBNDLVOL", "{}", path.display());
    let n = u64::from_le_bytes(data[data.len() - 16..data.len() - 8].try_into().unwrap()) as usize;
    let json = &data[data.len() - 16 - n..data.len() - 16];
    (serde_json::from_slice(json).unwrap(), n + 16)
}

struct World {
    src: Source,
    _app: tempfile::TempDir,
    work: tempfile::TempDir,
    first: PathBuf,
    files: Vec<PathBuf>,
}

fn world() -> World {
    let src = Source::start(specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let first = work.path().join("app.airgap");
    let out = export(&src, app.path(), &first, &["--max-volume-size", "1MiB"]);
    let files = volumes(&first);
    assert_eq!(files.len(), 3, "{files:?}\n{out}");
    World {
        src,
        _app: app,
        work,
        first,
        files,
    }
}

#[test]
fn three_volumes_verify_each_on_its_own_and_import_in_place() {
    common::require_tools(&["skopeo", "tar", "zstd"]);
    let w = world();
    let names: Vec<String> = w
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.airgap", "app.airgap.002", "app.airgap.003"]);
    for f in &w.files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= MAX, "{} is {len} bytes", f.display());
    }

    // Independently of kots-bundle: the first volume records each other volume's size and
    // sha256 (what sha256sum prints), and the pieces, trailers cut off, are one tar.zst.
    let (first_trailer, _) = trailer(&w.files[0]);
    assert_eq!(first_trailer["volumes"], 3);
    let mut stream = Vec::new();
    for (i, f) in w.files.iter().enumerate() {
        let data = std::fs::read(f).unwrap();
        let (t, tlen) = trailer(f);
        assert_eq!(t["volume"], i + 1);
        assert_eq!(t["set"], first_trailer["set"]);
        let piece = &data[..data.len() - tlen];
        assert_eq!(t["sha256"], synth::sha256(piece));
        assert_eq!(t["offset"], stream.len());
        if i > 0 {
            let rec = &first_trailer["others"][i - 1];
            assert_eq!(rec["volume"], i + 1);
            assert_eq!(rec["size"], data.len());
            assert_eq!(rec["sha256"], synth::sha256(&data));
        }
        stream.extend_from_slice(piece);
    }
    let joined = w.work.path().join("joined.tar.zst");
    std::fs::write(&joined, &stream).unwrap();
    let listing = ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-tf")
            .arg(&joined)
            .output()
            .unwrap(),
        "tar -t",
    );
    assert_eq!(listing.lines().next(), Some("kots-bundle.json"));
    for img in &w.src.images {
        for b in &img.blobs {
            assert!(listing.contains(&b["sha256:".len()..]), "{b} in the tar");
        }
    }
    std::fs::remove_file(&joined).unwrap();

    // Each volume alone, as soon as it is copied: the third without the first beside it
    // (its own trailer), then beside it (the first volume's record too).
    let lone = tempfile::tempdir().unwrap();
    let copy3 = lone.path().join("app.airgap.003");
    std::fs::copy(&w.files[2], &copy3).unwrap();
    let out = ok(verify(&[&copy3]), "verify a lone volume 3");
    assert!(
        out.contains("volume 3 of 3") && out.contains("not beside it"),
        "{out}"
    );
    for f in &w.files[1..] {
        let out = ok(verify(&[f]), "verify one volume");
        assert!(out.contains("records"), "checked against the first: {out}");
    }
    let out = ok(
        bin()
            .args(["verify", "--volume-only"])
            .arg(&w.files[0])
            .output()
            .unwrap(),
        "verify --volume-only the first",
    );
    assert!(out.contains("volume 1 of 3"), "{out}");

    // The whole set.
    let out = ok(verify(&[&w.first]), "verify the set");
    assert!(out.contains("3 volumes"), "{out}");
    let out = ok(
        bin().arg("inspect").arg(&w.first).output().unwrap(),
        "inspect",
    );
    assert!(out.contains("volumes:     3"), "{out}");

    // Imported in place into a real registry; skopeo finds every image by its digest.
    let dest = TestRegistry::start();
    let dir = w.work.path().join("myapp");
    ok(import(&dest, &w.first, &dir), "import");
    for img in &w.src.images {
        // By digest (the app pins `a` by digest, so it is pushed without its tag).
        let name = img.name.split(':').next().unwrap();
        let raw = ok(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!(
                    "docker://{}/myapp/{name}@{}",
                    dest.addr, img.digest
                ))
                .output()
                .unwrap(),
            "skopeo inspect",
        );
        assert_eq!(synth::sha256(raw.as_bytes()), img.digest, "{}", img.name);
    }
    assert!(dir.join("overlays/midstream/kustomization.yaml").exists());
    // Nothing was put together on disk beside the volumes.
    assert_eq!(volumes(&w.first), w.files);
}

fn assert_refused(o: &Output, code: i32, needles: &[&str], what: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{what}: {e}");
    for n in needles {
        assert!(e.contains(n), "{what}: {n:?} in: {e}");
    }
}

#[test]
fn a_missing_truncated_swapped_or_damaged_volume_is_named() {
    let w = world();
    let dest = TestRegistry::start();
    let v2 = w.files[1].clone();
    let v3 = w.files[2].clone();
    let keep2 = std::fs::read(&v2).unwrap();
    let keep3 = std::fs::read(&v3).unwrap();
    let restore = || {
        std::fs::write(&v2, &keep2).unwrap();
        std::fs::write(&v3, &keep3).unwrap();
    };

    // Missing: a failure to read (1), before anything is pushed.
    std::fs::remove_file(&v2).unwrap();
    let o = verify(&[&w.first]);
    assert_refused(&o, 1, &["app.airgap.002", "missing"], "verify, missing");
    let o = import(&dest, &w.first, &w.work.path().join("d1"));
    assert_refused(&o, 1, &["app.airgap.002", "missing"], "import, missing");
    assert_eq!(dest.count_writes(), 0, "nothing pushed");
    restore();

    // Truncated: corrupt (3), named by the set and on its own.
    std::fs::write(&v3, &keep3[..keep3.len() / 2]).unwrap();
    let o = verify(&[&w.first]);
    assert_refused(&o, 3, &["app.airgap.003", "truncated"], "verify, truncated");
    let o = verify(&[&v3]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = import(&dest, &w.first, &w.work.path().join("d2"));
    assert_refused(&o, 1, &["app.airgap.003", "truncated"], "import, truncated");
    assert_eq!(dest.count_writes(), 0, "nothing pushed");
    restore();

    // Swapped with each other (renamed): the file named .002 holds volume 3.
    std::fs::write(&v2, &keep3).unwrap();
    std::fs::write(&v3, &keep2).unwrap();
    let o = verify(&[&w.first]);
    assert_refused(
        &o,
        3,
        &["app.airgap.002", "holds volume 3"],
        "verify, swapped",
    );
    let o = verify(&[&v2]);
    assert_refused(&o, 3, &["volume 3", "name says volume 2"], "verify .002");
    restore();

    // Swapped with the same volume of another export of the same app (same name, maybe
    // the same size): told apart by the set.
    let other = tempfile::tempdir().unwrap();
    let other_first = other.path().join("app.airgap");
    export(
        &w.src,
        w._app.path(),
        &other_first,
        &["--max-volume-size", "1MiB"],
    );
    std::fs::copy(volumes(&other_first)[1].clone(), &v2).unwrap();
    let o = verify(&[&w.first]);
    assert_refused(
        &o,
        3,
        &["app.airgap.002", "another export"],
        "verify, foreign",
    );
    let o = verify(&[&v2]);
    assert_refused(&o, 3, &["another export"], "verify .002, foreign");
    let o = import(&dest, &w.first, &w.work.path().join("d3"));
    assert_refused(
        &o,
        1,
        &["app.airgap.002", "another export"],
        "import, foreign",
    );
    assert_eq!(dest.count_writes(), 0, "nothing pushed");
    restore();

    // Damaged in place (same size, one byte flipped): the volume is named.
    let mut bad = keep2.clone();
    bad[keep2.len() / 2] ^= 0x40;
    std::fs::write(&v2, &bad).unwrap();
    let o = verify(&[&w.first]);
    assert_refused(
        &o,
        3,
        &["volume 2", "app.airgap.002", "damaged"],
        "verify, damaged",
    );
    let o = verify(&[&v2]);
    assert_refused(&o, 3, &["damaged"], "verify .002, damaged");
    restore();
    ok(verify(&[&w.first]), "verify after restoring");

    // Naming a later volume where the archive is expected says which to give.
    let o = import(&dest, &v2, &w.work.path().join("d4"));
    assert_refused(
        &o,
        1,
        &["volume 2 of 3", "first volume"],
        "import of volume 2",
    );
}

/// A signed archive in volumes: the footer (and its signature) is in the last volume, and
/// `verify --key` checks the set as the single file it stands for.
#[tokio::test]
async fn a_signed_volume_set_verifies_with_its_key_only() {
    common::require_tools(&["openssl"]);
    let dir = tempfile::tempdir().unwrap();
    let keygen = |name: &str| {
        let key = dir.path().join(format!("{name}.key"));
        let public = dir.path().join(format!("{name}.pub"));
        ok(
            Command::new("openssl")
                .args(["genpkey", "-algorithm", "ed25519", "-out"])
                .arg(&key)
                .output()
                .unwrap(),
            "openssl genpkey",
        );
        ok(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public)
                .output()
                .unwrap(),
            "openssl pkey",
        );
        (key, public)
    };
    let (key, public) = keygen("vendor");
    let (_, other) = keygen("other");
    let extra = common::bundle::Extra {
        max_volume_size: Some(MAX),
        sign_key: Some(std::sync::Arc::new(
            kots_bundle::archive::SigningKey::from_pem_file(&key).unwrap(),
        )),
        ..Default::default()
    };
    let first = dir.path().join("app.airgap");
    common::bundle::archive_with(dir.path(), &specs(), &[], &first, extra).await;
    let files = volumes(&first);
    assert!(files.len() >= 3, "{files:?}");
    let with_key = |k: &Path| {
        bin()
            .arg("verify")
            .arg(&first)
            .arg("--key")
            .arg(k)
            .output()
            .unwrap()
    };
    let out = ok(with_key(&public), "verify --key on a volume set");
    assert!(
        out.contains("signature OK") && out.contains("volumes"),
        "{out}"
    );
    assert_refused(&with_key(&other), 3, &["not by the key given"], "other key");
}
