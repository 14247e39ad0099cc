//! Hostile and damaged archives: each is refused by `verify` (exit 3), `inspect` and `import`
//! (exit 1) with a message naming the entry at fault, and nothing is written outside the
//! destination or pushed. The archives are built from a valid one by rewriting its tar
//! records by hand, the way an attacker would.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::app::bin;
use common::bundle;
use common::synth::ImageSpec;
use common::TestRegistry;
use kots_bundle::archive::{ArchiveReader, Compression};
use kots_bundle::upstream::ManifestFile;

/// A valid archive of two synthetic images, written by the library itself.
async fn valid(dir: &Path, compression: Compression) -> PathBuf {
    let upstream = vec![ManifestFile {
        path: "pod.yaml".into(),
        data: b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: a:v1}\n".to_vec(),
    }];
    let path = dir.join(match compression {
        Compression::Zstd => "valid.airgap",
        Compression::None => "valid-plain.airgap",
    });
    let specs = [ImageSpec::new("a:v1", 1), ImageSpec::new("b:v1", 2)];
    bundle::archive_of(dir, &specs, &upstream, &path, compression)
        .await
        .0
}

/// One tar record as an attacker sees it: a raw header and its data.
struct Record {
    header: tar::Header,
    data: Vec<u8>,
}

fn records(plain: &Path) -> Vec<Record> {
    let mut ar = tar::Archive::new(std::fs::File::open(plain).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let header = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Record { header, data }
        })
        .collect()
}

/// A record with any name at all (the `tar` crate's own setters refuse `..` and `/x`).
fn raw(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Record {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    Record {
        header,
        data: data.to_vec(),
    }
}

fn write_records(path: &Path, recs: &[Record]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for r in recs {
        b.append(&r.header, &r.data[..]).unwrap();
    }
    b.finish().unwrap();
}

fn name(r: &Record) -> String {
    String::from_utf8_lossy(&r.header.path_bytes()).into_owned()
}

fn is_layer(r: &Record) -> bool {
    name(r).starts_with("blobs/") && r.data.len() > 4096
}

fn metadata_edit(recs: &mut [Record], edit: impl FnOnce(&mut serde_json::Value)) {
    let m = recs
        .iter_mut()
        .find(|r| name(r) == "kots-bundle.json")
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
    edit(&mut v);
    m.data = serde_json::to_vec(&v).unwrap();
    m.header.set_size(m.data.len() as u64);
    m.header.set_cksum();
}

struct Outcome {
    verify: Output,
    inspect: Output,
    import: Output,
}

/// Runs the three commands on `archive`; import goes to a real registry that must stay empty.
fn run_all(archive: &Path, reg: &TestRegistry, dest: &Path) -> Outcome {
    let verify = bin().arg("verify").arg(archive).output().unwrap();
    let inspect = bin().arg("inspect").arg(archive).output().unwrap();
    let import = bin()
        .arg("import")
        .arg(archive)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
        .arg("--dest")
        .arg(dest)
        .output()
        .unwrap();
    Outcome {
        verify,
        inspect,
        import,
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No tag in any repository the import would have used.
fn nothing_tagged(reg: &TestRegistry) {
    for repo in ["ns/a", "ns/b"] {
        let (status, body) = reg.http_get(&format!("/v2/{repo}/tags/list"));
        let text = String::from_utf8_lossy(&body);
        assert!(
            status == 404 || text.contains("\"tags\":null") || text.contains("\"tags\":[]"),
            "{repo} has tags after a refused import: {status} {text}"
        );
    }
}

/// Each case: refused by all three commands, naming `needle`, nothing pushed or written.
fn assert_refused(case: &str, archive: &Path, needle: &str, check_inspect: bool) {
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("app");
    let o = run_all(archive, &reg, &dest);
    assert_eq!(o.verify.status.code(), Some(3), "{case}: verify exit code");
    assert!(
        stderr(&o.verify).contains(needle),
        "{case}: verify names {needle:?}: {}",
        stderr(&o.verify)
    );
    if check_inspect {
        assert_eq!(
            o.inspect.status.code(),
            Some(1),
            "{case}: inspect exit code"
        );
        assert!(
            stderr(&o.inspect).contains(needle),
            "{case}: inspect names {needle:?}: {}",
            stderr(&o.inspect)
        );
    }
    assert_eq!(o.import.status.code(), Some(1), "{case}: import exit code");
    assert!(
        stderr(&o.import).contains(needle),
        "{case}: import names {needle:?}: {}",
        stderr(&o.import)
    );
    // `dest` lives in an empty directory: an entry escaping it would land beside it.
    let written: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(written.is_empty(), "{case}: import wrote {written:?}");
    nothing_tagged(&reg);
    eprintln!("{case}: refused: {}", stderr(&o.import).trim());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tar_records_are_refused_everywhere() {
    common::require_tools(&["skopeo"]);
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let base = records(&plain);

    type Mutate = Box<dyn Fn(&mut Vec<Record>)>;
    let cases: Vec<(&str, &str, Mutate)> = vec![
        (
            "path traversal",
            "../evil.txt",
            Box::new(|r| r.push(raw("../evil.txt", tar::EntryType::Regular, None, b"x"))),
        ),
        (
            "absolute path",
            "/tmp/kots-bundle-evil.txt",
            Box::new(|r| {
                r.push(raw(
                    "/tmp/kots-bundle-evil.txt",
                    tar::EntryType::Regular,
                    None,
                    b"x",
                ))
            }),
        ),
        (
            "symlink",
            "upstream/link.yaml",
            Box::new(|r| {
                r.push(raw(
                    "upstream/link.yaml",
                    tar::EntryType::Symlink,
                    Some("/etc/passwd"),
                    b"",
                ))
            }),
        ),
        (
            "hard link",
            "upstream/hard.yaml",
            Box::new(|r| {
                r.push(raw(
                    "upstream/hard.yaml",
                    tar::EntryType::Link,
                    Some("kots-bundle.json"),
                    b"",
                ))
            }),
        ),
        (
            "duplicate entry",
            "blobs/sha256/",
            Box::new(|r| {
                let i = r.iter().position(is_layer).unwrap();
                let dup = Record {
                    header: r[i].header.clone(),
                    data: r[i].data.clone(),
                };
                r.push(dup);
            }),
        ),
        (
            "metadata references a missing blob",
            "blobs/sha256/",
            Box::new(|r| r.retain(|x| !is_layer(x) || x.data.len() < 60_000)),
        ),
        (
            "a size that lies (metadata)",
            "blobs/sha256/",
            Box::new(|r| {
                metadata_edit(r, |v| {
                    let b = &mut v["blobs"][0]["size"];
                    *b = (b.as_u64().unwrap() + 1).into();
                })
            }),
        ),
        (
            "unsupported metadata format",
            "kots-bundle.airgap/v99",
            Box::new(|r| metadata_edit(r, |v| v["format"] = "kots-bundle.airgap/v99".into())),
        ),
        (
            "metadata that is not JSON",
            "metadata",
            Box::new(|r| {
                let m = r
                    .iter_mut()
                    .find(|x| name(x) == "kots-bundle.json")
                    .unwrap();
                m.data[0] = b'<';
            }),
        ),
        (
            "a manifest whose bytes do not match its digest",
            "blobs/sha256/",
            Box::new(|r| {
                // An image manifest: the only blob with a `layers` list.
                let m = r
                    .iter_mut()
                    .filter(|x| name(x).starts_with("blobs/"))
                    .find(|x| x.data.windows(10).any(|w| w == b"\"layers\":["))
                    .unwrap();
                let at = m.data.len() - 3;
                m.data[at] = b' ';
            }),
        ),
    ];
    for (case, needle, mutate) in cases {
        let mut recs: Vec<Record> = base
            .iter()
            .map(|r| Record {
                header: r.header.clone(),
                data: r.data.clone(),
            })
            .collect();
        mutate(&mut recs);
        let path = tmp.path().join("hostile.airgap");
        write_records(&path, &recs);
        assert_refused(case, &path, needle, true);
        assert!(!Path::new("/tmp/kots-bundle-evil.txt").exists(), "{case}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_archives_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for compression in [Compression::Zstd, Compression::None] {
        let path = valid(tmp.path(), compression).await;
        let len = std::fs::metadata(&path).unwrap().len();
        let cut = tmp.path().join("cut.airgap");
        std::fs::copy(&path, &cut).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&cut)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let needle = match compression {
            Compression::Zstd => "truncated",
            Compression::None => "past the end of the file",
        };
        assert_refused(&format!("{compression:?} truncated"), &cut, needle, true);
    }
}

/// A flipped byte inside a layer: `inspect` reads no layers, so only `verify` and `import`
/// see it; the import fails on that blob's digest and tags nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_layer_byte_fails_verify_and_import_and_tags_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for compression in [Compression::Zstd, Compression::None] {
        let path = valid(tmp.path(), compression).await;
        let reader = ArchiveReader::open(&path).unwrap();
        let (entry, at) = reader
            .index()
            .entries
            .iter()
            .filter(|(n, _)| n.starts_with("blobs/"))
            .max_by_key(|(_, e)| e.size)
            .map(|(n, e)| (n.clone(), e.offset + e.length / 2))
            .unwrap();
        drop(reader);
        let mut data = std::fs::read(&path).unwrap();
        data[at as usize] ^= 0x20;
        std::fs::write(&path, data).unwrap();
        let hex = entry.trim_start_matches("blobs/sha256/").to_string();
        assert_refused(
            &format!("{compression:?} flipped layer"),
            &path,
            &hex,
            false,
        );
    }
}

/// A zstd frame that inflates to far more than its entry declares (here 256 MiB of zeros
/// after a layer's data) is refused, and never inflated in full.
#[tokio::test(flavor = "multi_thread")]
async fn a_frame_that_inflates_past_its_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = valid(tmp.path(), Compression::Zstd).await;
    let reader = ArchiveReader::open(&path).unwrap();
    let mut index = reader.index().clone();
    let (victim, e) = index
        .entries
        .iter()
        .filter(|(n, _)| n.starts_with("blobs/"))
        .max_by_key(|(_, e)| e.size)
        .map(|(n, e)| (n.clone(), *e))
        .unwrap();
    drop(reader);
    let data = std::fs::read(&path).unwrap();
    // Decode the victim's frame, append the bomb, re-encode as one frame.
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(&data[e.offset as usize..(e.offset + e.length) as usize])
        .unwrap()
        .single_frame()
        .read_to_end(&mut plain)
        .unwrap();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    std::io::Write::write_all(&mut enc, &plain).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < e.length as usize + 64 * 1024, "a compact bomb");
    // Splice it in and shift every later offset; rebuild the footer.
    let footer_len = {
        let json_len =
            u64::from_le_bytes(data[data.len() - 16..data.len() - 8].try_into().unwrap());
        json_len as usize + 24
    };
    let body_end = data.len() - footer_len;
    let mut out = Vec::new();
    out.extend_from_slice(&data[..e.offset as usize]);
    out.extend_from_slice(&bomb);
    out.extend_from_slice(&data[(e.offset + e.length) as usize..body_end]);
    let delta = bomb.len() as i64 - e.length as i64;
    for (n, x) in index.entries.iter_mut() {
        if *n == victim {
            x.length = bomb.len() as u64;
        } else if x.offset > e.offset {
            x.offset = (x.offset as i64 + delta) as u64;
        }
    }
    let json = serde_json::to_vec(&index).unwrap();
    out.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    out.extend_from_slice(&((json.len() + 16) as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(b"KBNDLIDX");
    let bombed = tmp.path().join("bomb.airgap");
    std::fs::write(&bombed, out).unwrap();
    let hex = victim.trim_start_matches("blobs/sha256/").to_string();
    // verify names the end of the tar or the entries after the bomb; import names the blob.
    let reg = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("app");
    let o = run_all(&bombed, &reg, &dest);
    assert_eq!(o.verify.status.code(), Some(3), "{}", stderr(&o.verify));
    assert_eq!(o.import.status.code(), Some(1), "{}", stderr(&o.import));
    assert!(
        stderr(&o.import).contains("more data than the entry declares"),
        "{}",
        stderr(&o.import)
    );
    assert!(stderr(&o.import).contains(&hex), "{}", stderr(&o.import));
    assert!(!dest.exists());
    nothing_tagged(&reg);
}
