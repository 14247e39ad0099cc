//! Signed archives: keys made by openssl (`genpkey -algorithm ed25519`, `pkey -pubout`),
//! archives signed by `export --sign-key`, checked by `verify --key` and `import
//! --require-signature --key` against a real registry, and refused, naming what changed,
//! when the metadata, a blob, an upstream file or the signed statement was altered, when
//! unsigned, or signed by another key. The signature is also checked by openssl itself.
//!
//! Tampered archives are made as an attacker would: a consistent archive rebuilt with one
//! thing changed, carrying the original's signature (its footer rewritten by the documented
//! layout); or bytes changed in place.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::app::{app_dir, bin, ok, Source};
use common::bundle::{archive_with, Extra};
use common::synth::{self, ImageSpec};
use common::TestRegistry;
use kots_bundle::archive::SigningKey;
use kots_bundle::upstream::ManifestFile;

struct Keys {
    _dir: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
}

fn openssl_keys() -> Keys {
    common::require_tools(&["openssl"]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key");
    let public = dir.path().join("vendor.pub");
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
        "openssl pkey -pubout",
    );
    Keys {
        _dir: dir,
        key,
        public,
    }
}

fn specs(seed: u64) -> Vec<ImageSpec> {
    vec![
        ImageSpec::new("img-a:v1", 1),
        ImageSpec::new("img-b:v1", seed),
    ]
}

fn deploy(image: &str) -> Vec<ManifestFile> {
    vec![ManifestFile {
        path: "deploy.yaml".into(),
        data: format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: x}}\nspec:\n  containers:\n  - {{name: a, image: {image}}}\n").into_bytes(),
    }]
}

async fn build(
    dir: &Path,
    name: &str,
    specs: &[ImageSpec],
    files: &[ManifestFile],
    key: Option<&Path>,
    version: &str,
) -> PathBuf {
    let sub = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&sub).unwrap();
    let extra = Extra {
        sign_key: key.map(|k| Arc::new(SigningKey::from_pem_file(k).unwrap())),
        version: Some(version.into()),
        ..Extra::default()
    };
    archive_with(&sub, specs, files, &dir.join(name), extra)
        .await
        .0
}

/// The footer's JSON (section 4 of the format) and where its frame starts.
fn footer(path: &Path) -> (serde_json::Value, usize) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[data.len() - 8..], b"KBNDLIDX");
    let n = u64::from_le_bytes(data[data.len() - 16..data.len() - 8].try_into().unwrap()) as usize;
    let json = &data[data.len() - 16 - n..data.len() - 16];
    (
        serde_json::from_slice(json).unwrap(),
        data.len() - 16 - n - 8,
    )
}

fn set_footer(path: &Path, value: &serde_json::Value) {
    let (_, start) = footer(path);
    let mut data = std::fs::read(path).unwrap();
    data.truncate(start);
    let json = serde_json::to_vec(value).unwrap();
    data.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    data.extend_from_slice(&(json.len() as u32 + 16).to_le_bytes());
    data.extend_from_slice(&json);
    data.extend_from_slice(&(json.len() as u64).to_le_bytes());
    data.extend_from_slice(b"KBNDLIDX");
    std::fs::write(path, data).unwrap();
}

/// `tampered` carrying `signed`'s signature.
fn transplant(signed: &Path, tampered: &Path) {
    let (sig, _) = footer(signed);
    let (mut f, _) = footer(tampered);
    f["signature"] = sig["signature"].clone();
    set_footer(tampered, &f);
}

fn verify_key(archive: &Path, public: &Path) -> Output {
    bin()
        .arg("verify")
        .arg(archive)
        .arg("--key")
        .arg(public)
        .output()
        .unwrap()
}

fn refused(o: &Output, needles: &[&str], what: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{what}: {e}");
    for n in needles {
        assert!(e.contains(n), "{what}: {n:?} in: {e}");
    }
}

#[tokio::test]
async fn a_signed_archive_verifies_and_every_alteration_is_named() {
    let keys = openssl_keys();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = deploy("img-a:v1");
    let signed = build(
        d,
        "signed.airgap",
        &specs(3),
        &files,
        Some(&keys.key),
        "1.0",
    )
    .await;

    let out = ok(verify_key(&signed, &keys.public), "verify --key");
    assert!(out.contains("signature OK"), "{out}");

    // openssl agrees: the footer's signature is a valid ed25519 signature of the statement
    // by the public key openssl derived.
    let (f, _) = footer(&signed);
    let statement = d.join("statement");
    let sig = d.join("sig");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    std::fs::write(&statement, f["signature"]["statement"].as_str().unwrap()).unwrap();
    std::fs::write(
        &sig,
        b64.decode(f["signature"]["signature"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let o = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(&keys.public)
        .arg("-in")
        .arg(&statement)
        .arg("-sigfile")
        .arg(&sig)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl pkeyutl -verify: {o:?}");
    // And the statement names what the format says it does.
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&statement).unwrap()).unwrap();
    assert_eq!(st["format"], "kots-bundle.signature/v1");
    assert!(st["files"]["kots-bundle.json"].is_string());
    assert!(st["files"]["upstream/deploy.yaml"].is_string());
    assert_eq!(st["blobs"].as_object().unwrap().len(), 7, "{st}");

    // Unsigned.
    let unsigned = build(d, "unsigned.airgap", &specs(3), &files, None, "1.0").await;
    ok(
        bin().arg("verify").arg(&unsigned).output().unwrap(),
        "verify without --key",
    );
    refused(
        &verify_key(&unsigned, &keys.public),
        &["not signed"],
        "unsigned",
    );

    // Signed by another key.
    let other = openssl_keys();
    refused(
        &verify_key(&signed, &other.public),
        &["signed by key", "not by the key given"],
        "another key",
    );

    // Each rebuilt-and-transplanted archive is also refused by import, before any push.
    let dest = TestRegistry::start();
    let import_refused = |t: &Path, needle: &str| {
        let require = [
            "--require-signature".as_ref(),
            "--key".as_ref(),
            keys.public.as_os_str(),
        ];
        let o = import(&dest, t, &d.join("imported"), &require);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "import {}: {e}", t.display());
        assert!(
            e.contains(needle),
            "import {}: {needle:?} in {e}",
            t.display()
        );
        assert_eq!(dest.count_writes(), 0, "nothing pushed");
    };

    // The metadata changed (another version), everything else consistent.
    let t = build(
        d,
        "meta.airgap",
        &specs(3),
        &files,
        Some(&other.key),
        "6.6.6",
    )
    .await;
    transplant(&signed, &t);
    ok(
        bin().arg("verify").arg(&t).output().unwrap(),
        "consistent without --key",
    );
    refused(
        &verify_key(&t, &keys.public),
        &["the metadata (kots-bundle.json) changed since signing"],
        "metadata",
    );
    import_refused(&t, "the metadata (kots-bundle.json) changed since signing");

    // An upstream file changed.
    let t = build(
        d,
        "up.airgap",
        &specs(3),
        &deploy("evil:v1"),
        Some(&other.key),
        "1.0",
    )
    .await;
    transplant(&signed, &t);
    refused(
        &verify_key(&t, &keys.public),
        &["upstream file \"deploy.yaml\" changed since signing"],
        "upstream file",
    );
    import_refused(&t, "upstream file \"deploy.yaml\" changed since signing");

    // A blob replaced (img-b rebuilt with other layers).
    let t = build(d, "blob.airgap", &specs(4), &files, Some(&other.key), "1.0").await;
    transplant(&signed, &t);
    let e = verify_key(&t, &keys.public);
    refused(&e, &["blob sha256:", "was not signed"], "blob replaced");
    import_refused(&t, "was not signed");

    // A blob's bytes changed in place: found by its digest, the blob named.
    let t = d.join("inplace.airgap");
    std::fs::copy(&signed, &t).unwrap();
    let (f, _) = footer(&t);
    let (name, e) = f["entries"]
        .as_object()
        .unwrap()
        .iter()
        .max_by_key(|(_, e)| e["length"].as_u64().unwrap())
        .map(|(n, e)| (n.clone(), e.clone()))
        .unwrap();
    let mut data = std::fs::read(&t).unwrap();
    let at = (e["offset"].as_u64().unwrap() + e["length"].as_u64().unwrap() / 2) as usize;
    data[at] ^= 0x20;
    std::fs::write(&t, data).unwrap();
    refused(&verify_key(&t, &keys.public), &[&name], "blob bytes");

    // The signed statement edited (a blob's size), the signature kept.
    let t = d.join("statement.airgap");
    std::fs::copy(&signed, &t).unwrap();
    let (mut f, _) = footer(&t);
    let mut st = st.clone();
    let first = st["blobs"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    st["blobs"][&first] = 1.into();
    f["signature"]["statement"] = serde_json::to_string(&st).unwrap().into();
    set_footer(&t, &f);
    refused(
        &verify_key(&t, &keys.public),
        &["does not match the signed statement"],
        "statement",
    );

    // Signature removed from a signed archive: unsigned.
    let t = d.join("stripped.airgap");
    std::fs::copy(&signed, &t).unwrap();
    let (mut f, _) = footer(&t);
    f.as_object_mut().unwrap().remove("signature");
    set_footer(&t, &f);
    refused(&verify_key(&t, &keys.public), &["not signed"], "stripped");

    // The untouched one still verifies (nothing above wrote to it).
    ok(verify_key(&signed, &keys.public), "verify --key again");
}

fn import(dest: &TestRegistry, archive: &Path, dir: &Path, extra: &[&std::ffi::OsStr]) -> Output {
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
        .args(extra)
        .output()
        .unwrap()
}

/// Through the binary: `export --sign-key` from a real registry, `import
/// --require-signature --key` into another; an unsigned or altered archive is refused
/// before anything is pushed.
#[test]
fn export_signs_and_import_requires_the_signature() {
    common::require_tools(&["skopeo"]);
    let keys = openssl_keys();
    let src = Source::start(Source::default_specs());
    let app = app_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let export = |out: &Path, extra: &[&std::ffi::OsStr]| {
        bin()
            .arg("export")
            .arg(app.path())
            .arg("-o")
            .arg(out)
            .args(["--registry-mirror", &src.mirror()])
            .args(extra)
            .output()
            .unwrap()
    };
    let signed = work.path().join("signed.airgap");
    ok(
        export(&signed, &["--sign-key".as_ref(), keys.key.as_os_str()]),
        "export --sign-key",
    );
    let out = ok(
        bin().arg("inspect").arg(&signed).output().unwrap(),
        "inspect",
    );
    // The fingerprint shown is openssl's DER of the public key, hashed.
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&keys.public)
        .output()
        .unwrap();
    assert!(der.status.success(), "{der:?}");
    let fingerprint = synth::sha256(&der.stdout);
    assert!(
        out.contains(&format!("signature:   ed25519, key {fingerprint}")),
        "{fingerprint} in {out}"
    );
    let unsigned = work.path().join("unsigned.airgap");
    ok(export(&unsigned, &[]), "export");

    // A signature needs the zstd footer; a bad key file stops export before any fetch.
    let o = export(
        &work.path().join("x.airgap"),
        &[
            "--sign-key".as_ref(),
            keys.key.as_os_str(),
            "--compression".as_ref(),
            "none".as_ref(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = export(
        &work.path().join("y.airgap"),
        &["--sign-key".as_ref(), keys.public.as_os_str()],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("PRIVATE KEY"),
        "{o:?}"
    );

    let dest = TestRegistry::start();
    let require = [
        "--require-signature".as_ref(),
        "--key".as_ref(),
        keys.public.as_os_str(),
    ];
    let o = import(&dest, &unsigned, &work.path().join("u"), &require);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not signed"),
        "{o:?}"
    );
    assert_eq!(dest.count_writes(), 0, "nothing pushed");

    // The upstream file altered in place and its digest in the metadata with it would need
    // the whole archive rebuilt; here the signed statement is edited instead.
    let altered = work.path().join("altered.airgap");
    std::fs::copy(&signed, &altered).unwrap();
    let (mut f, _) = footer(&altered);
    let mut st: serde_json::Value =
        serde_json::from_str(f["signature"]["statement"].as_str().unwrap()).unwrap();
    st["files"]["upstream/app.yaml"] = synth::sha256(b"other").into();
    f["signature"]["statement"] = serde_json::to_string(&st).unwrap().into();
    set_footer(&altered, &f);
    let o = import(&dest, &altered, &work.path().join("a"), &require);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match the signed statement"),
        "{o:?}"
    );
    assert_eq!(dest.count_writes(), 0, "nothing pushed");

    let dir = work.path().join("myapp");
    ok(
        import(&dest, &signed, &dir, &require),
        "import --require-signature",
    );
    for img in &src.images {
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
}
