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

/// The index of a zstd archive is the file's own claim about where entries are; `tar` and
/// skopeo read the frames in order. Here the index points `upstream/pod.yaml` at a frame
/// hidden inside a skippable frame (which every zstd decoder skips), holding another pod of
/// the same size: `tar` sees the benign one, a seek by the index the hidden one. All three
/// commands refuse the file before reading anything by that index.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_that_points_elsewhere_than_the_tar_walk_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = valid(tmp.path(), Compression::Zstd).await;
    let reader = ArchiveReader::open(&path).unwrap();
    let mut index = reader.index().clone();
    drop(reader);
    let data = std::fs::read(&path).unwrap();
    let footer_len = {
        let json_len =
            u64::from_le_bytes(data[data.len() - 16..data.len() - 8].try_into().unwrap());
        json_len as usize + 24
    };
    let body = &data[..data.len() - footer_len];
    let pod = index.entries["upstream/pod.yaml"];
    let mut plain = Vec::new();
    zstd::stream::read::Decoder::new(
        &data[pod.offset as usize..(pod.offset + pod.length) as usize],
    )
    .unwrap()
    .single_frame()
    .read_to_end(&mut plain)
    .unwrap();
    // Same header (name, size), other content: "image: a:v1" becomes "image: e:v1".
    let at = plain.windows(5).position(|w| w == b"a:v1}").unwrap();
    plain[at] = b'e';
    let hidden = zstd::stream::encode_all(&plain[..], 3).unwrap();
    let mut out = body.to_vec();
    out.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    out.extend_from_slice(&(hidden.len() as u32).to_le_bytes());
    let hidden_at = out.len() as u64;
    out.extend_from_slice(&hidden);
    index.entries.insert(
        "upstream/pod.yaml".into(),
        kots_bundle::archive::IndexEntry {
            offset: hidden_at,
            length: hidden.len() as u64,
            size: pod.size,
        },
    );
    let json = serde_json::to_vec(&index).unwrap();
    out.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    out.extend_from_slice(&((json.len() + 16) as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(b"KBNDLIDX");
    let hostile = tmp.path().join("hidden.airgap");
    std::fs::write(&hostile, out).unwrap();
    // tar reads the benign pod.
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(&hostile)
        .arg("upstream/pod.yaml")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&tar.stdout).contains("image: a:v1"));
    assert_refused(
        "index points into a skippable frame",
        &hostile,
        "belong to no entry",
        true,
    );
}

/// Upstream files carry a sha256 each in the metadata: a changed byte in an uncompressed
/// archive (no zstd checksum to catch it) is refused by all three commands.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_file_that_does_not_match_its_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let mut recs = records(&plain);
    let meta: serde_json::Value = serde_json::from_slice(&recs[0].data).unwrap();
    assert!(
        meta["upstreamDigests"]["pod.yaml"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "the writer records upstream digests: {meta}"
    );
    let pod = recs
        .iter_mut()
        .find(|r| name(r) == "upstream/pod.yaml")
        .unwrap();
    let at = pod.data.windows(4).position(|w| w == b"a:v1").unwrap();
    pod.data[at] = b'e'; // same size, another image
    let path = tmp.path().join("changed.airgap");
    write_records(&path, &recs);
    assert_refused("changed upstream file", &path, "upstream/pod.yaml", true);
}

/// Archives written before upstream digests existed (no `upstreamDigests`) are still read:
/// their upstream files are checked by name and size only.
#[tokio::test(flavor = "multi_thread")]
async fn archives_without_upstream_digests_are_still_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let mut recs = records(&plain);
    metadata_edit(&mut recs, |v| {
        v.as_object_mut().unwrap().remove("upstreamDigests");
    });
    let path = tmp.path().join("older.airgap");
    write_records(&path, &recs);
    for cmd in ["verify", "inspect"] {
        let out = bin().arg(cmd).arg(&path).output().unwrap();
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    }
    let reader = ArchiveReader::open(&path).unwrap();
    assert_eq!(reader.upstream_files().unwrap().len(), 1);
    // A digest list that does not match the files is refused, though.
    let mut recs = records(&plain);
    metadata_edit(&mut recs, |v| {
        v["upstreamDigests"]["other.yaml"] = v["upstreamDigests"]["pod.yaml"].clone();
    });
    write_records(&path, &recs);
    assert_refused("digest of a file not listed", &path, "other.yaml", true);
}

/// Rewrites the first single-platform image manifest of `recs` with `edit`, and everything
/// that names it (its blob entry, index.json, the metadata's image and blob records), so
/// the archive is consistent except for what `edit` changed.
fn rewrite_manifest(recs: &mut [Record], edit: impl FnOnce(&mut serde_json::Value)) {
    let i = recs
        .iter()
        .position(|x| {
            name(x).starts_with("blobs/") && x.data.windows(10).any(|w| w == b"\"layers\":[")
        })
        .unwrap();
    let old_hex = name(&recs[i])
        .trim_start_matches("blobs/sha256/")
        .to_string();
    let mut m: serde_json::Value = serde_json::from_slice(&recs[i].data).unwrap();
    edit(&mut m);
    let data = serde_json::to_vec(&m).unwrap();
    let new_hex = common::synth::sha256(&data)["sha256:".len()..].to_string();
    recs[i] = raw(
        &format!("blobs/sha256/{new_hex}"),
        tar::EntryType::Regular,
        None,
        &data,
    );
    let swap = |text: &[u8]| -> Vec<u8> {
        String::from_utf8(text.to_vec())
            .unwrap()
            .replace(&old_hex, &new_hex)
            .into_bytes()
    };
    let size = data.len();
    for r in recs.iter_mut() {
        if name(r) == "index.json" {
            let mut idx: serde_json::Value = serde_json::from_slice(&swap(&r.data)).unwrap();
            for d in idx["manifests"].as_array_mut().unwrap() {
                if d["digest"].as_str().unwrap().ends_with(&new_hex) {
                    d["size"] = size.into();
                }
            }
            r.data = serde_json::to_vec(&idx).unwrap();
            r.header.set_size(r.data.len() as u64);
            r.header.set_cksum();
        }
    }
    metadata_edit(recs, |v| {
        let text = serde_json::to_string(v)
            .unwrap()
            .replace(&old_hex, &new_hex);
        *v = serde_json::from_str(&text).unwrap();
        let mut total = 0u64;
        for b in v["blobs"].as_array_mut().unwrap() {
            if b["digest"].as_str().unwrap().ends_with(&new_hex) {
                b["size"] = size.into();
            }
            total += b["size"].as_u64().unwrap();
        }
        v["totalSize"] = total.into();
    });
}

/// A manifest whose layer descriptor claims 10^15 bytes: verify used to accept it (every
/// blob matched its digest) and import then failed mid-push blaming the network.
#[tokio::test(flavor = "multi_thread")]
async fn a_descriptor_size_that_lies_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let mut recs = records(&plain);
    rewrite_manifest(&mut recs, |m| {
        m["layers"][0]["size"] = 1_000_000_000_000_000u64.into()
    });
    let path = tmp.path().join("size-lie.airgap");
    write_records(&path, &recs);
    assert_refused("layer size of 1e15", &path, "1000000000000000", true);

    // index.json's descriptor of an image says another size than its stored manifest.
    let mut recs = records(&plain);
    let idx = recs.iter_mut().find(|r| name(r) == "index.json").unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&idx.data).unwrap();
    let size = v["manifests"][0]["size"].as_u64().unwrap();
    v["manifests"][0]["size"] = (size + 7).into();
    idx.data = serde_json::to_vec(&v).unwrap();
    idx.header.set_size(idx.data.len() as u64);
    idx.header.set_cksum();
    write_records(&path, &recs);
    assert_refused(
        "index.json size",
        &path,
        &format!("is {} bytes", size + 7),
        true,
    );
}

/// `app.name` names the directory import writes: an absolute path or one with `..` must
/// not send it anywhere else. Import runs without `--dest`, in an empty working directory.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_name_that_is_a_path_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let outside = work.path().join("escaped");
    let absolute = work.path().join("absolute");
    for evil in [
        absolute.display().to_string(),
        "../escaped".to_string(),
        "a/../../escaped".to_string(),
    ] {
        let mut recs = records(&plain);
        metadata_edit(&mut recs, |v| v["app"]["name"] = evil.clone().into());
        let path = tmp.path().join("app-name.airgap");
        write_records(&path, &recs);
        let reg = TestRegistry::start();
        let import = bin()
            .current_dir(&cwd)
            .arg("import")
            .arg(&path)
            .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
            .output()
            .unwrap();
        assert_eq!(import.status.code(), Some(1), "{evil}: {}", stderr(&import));
        assert!(stderr(&import).contains("app.name"), "{}", stderr(&import));
        assert!(
            !outside.exists() && !absolute.exists(),
            "{evil}: import wrote outside"
        );
        assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0, "{evil}");
        nothing_tagged(&reg);
        for (cmd, code) in [("verify", 3), ("inspect", 1)] {
            let out = bin().arg(cmd).arg(&path).output().unwrap();
            assert_eq!(out.status.code(), Some(code), "{cmd} {evil}");
            assert!(stderr(&out).contains("app.name"), "{cmd}: {}", stderr(&out));
        }
    }
}

/// Every string `inspect` prints from the archive is escaped: a version, source or
/// platform holding terminal escape sequences cannot rewrite the operator's screen.
#[tokio::test(flavor = "multi_thread")]
async fn inspect_prints_hostile_strings_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = valid(tmp.path(), Compression::None).await;
    let mut recs = records(&plain);
    metadata_edit(&mut recs, |v| {
        v["app"]["version"] = "1.0\u{1b}[2J\u{1b}[H".into();
        v["app"]["source"] = "src\r\u{1b}]0;pwned\u{7}".into();
        v["images"][0]["platforms"] = serde_json::json!(["linux/amd64\u{1b}[31m"]);
        v["tool"]["version"] = "\u{202e}0.1".into();
    });
    let path = tmp.path().join("escapes.airgap");
    write_records(&path, &recs);
    let out = bin().arg("inspect").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "raw control characters in: {text:?}"
    );
    assert!(text.contains("1.0\\u{1b}[2J"), "{text}");
    assert!(text.contains("src\\r\\u{1b}]0;pwned\\u{7}"), "{text}");
}

/// Exit codes: a file that cannot be read is a failure (1), only a damaged archive is 3.
#[tokio::test(flavor = "multi_thread")]
async fn verify_exits_1_when_the_file_cannot_be_read() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.airgap");
    let out = bin().arg("verify").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.airgap"), "{}", stderr(&out));
    let out = bin().arg("verify").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a directory: {}", stderr(&out));
    let junk = tmp.path().join("junk.airgap");
    std::fs::write(&junk, b"not an archive at all").unwrap();
    let out = bin().arg("verify").arg(&junk).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "junk: {}", stderr(&out));
}

/// The writer refuses what the reader would refuse, and export refuses it before it sends
/// a single request (here: no request reaches the registry the images live on).
#[tokio::test(flavor = "multi_thread")]
async fn export_refuses_what_the_reader_would_before_any_download() {
    use kots_bundle::archive::{start, App, ZstdOptions};
    use kots_bundle::export::{export, ExportOptions};
    use kots_bundle::reference::Reference;
    use kots_bundle::registry::{Client, RegistryOptions};
    use kots_bundle::upstream::Upstream;

    let tmp = tempfile::tempdir().unwrap();
    let file = |p: &str| ManifestFile {
        path: p.into(),
        data: b"kind: ConfigMap\n".to_vec(),
    };
    let app = |name: &str| App {
        name: name.into(),
        version: None,
        source: "test".into(),
        release: None,
    };
    let out = tmp.path().join("out.airgap");
    for (app_name, files, needle) in [
        ("app", vec![file("a\\b.yaml")], "backslash"),
        (
            "app",
            vec![file("a"), file("a/b.yaml")],
            "also the directory",
        ),
        (
            "app",
            vec![file(&format!("{}.yaml", "x".repeat(300)))],
            "longer than",
        ),
        ("app", vec![file("ok.yaml\n")], "control character"),
        ("../app", vec![file("a.yaml")], "app name"),
    ] {
        let e = start(
            &out,
            app(app_name),
            &[],
            &files,
            Compression::Zstd,
            ZstdOptions::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("{files:?} written"));
        assert!(e.to_string().contains(needle), "{e}");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "left a file"
        );

        let reg = TestRegistry::start();
        let upstream = Upstream {
            source: "test".into(),
            release: None,
            name: Some(app_name.into()),
            version: None,
            files: files.clone(),
        };
        let images = vec![Reference::parse(&format!("{}/lib/img:v1", reg.addr)).unwrap()];
        let opts = ExportOptions {
            output: out.clone(),
            platforms: Vec::new(),
            attached: false,
            compression: Compression::Zstd,
            zstd: ZstdOptions::default(),
            concurrency: 2,
            quiet: true,
            max_volume_size: None,
            sign_key: None,
            since: None,
        };
        let client = Client::new(RegistryOptions::default()).unwrap();
        let e = export(&upstream, app_name, &images, client, &opts)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains(needle), "{e}");
        let log = reg.log();
        assert!(
            !log.contains("response completed"),
            "export sent requests before refusing: {log}"
        );
    }
}
