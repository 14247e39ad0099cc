//! Our tar reader against independent ones. Archives written by Python's `tarfile` (ustar,
//! GNU and PAX formats, long and non-ASCII names, a PAX comment whose value holds a newline
//! and a fake `path` record) and archives with hand-crafted PAX/GNU headers are read by our
//! reader, by Python's `tarfile` and by GNU tar (`tar -tf`, `tar -xOf`); skopeo reads the
//! images of the Python-written ones. Whenever our reader accepts an archive, all of them
//! must see the same files, name for name and byte for byte; otherwise ours must refuse it.
//! Each archive is checked uncompressed and re-packed as a zstd archive (one frame per
//! entry, footer index), so both the tar walk and the seek by index are covered.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bundle;
use common::synth::{sha256, ImageSpec};
use kots_bundle::archive::{ArchiveReader, Compression, EntryIndex, IndexEntry};
use kots_bundle::upstream::ManifestFile;

/// Python's view of a tar: `read FILE` prints its members as JSON; `write FORMAT LIST OUT`
/// writes the entries of a JSON list (name, file, optional PAX headers) in that format.
const PYTHON: &str = r#"
import hashlib, io, json, sys, tarfile

def read(path):
    try:
        members = []
        with tarfile.open(path, "r:", encoding="utf-8") as tf:
            for m in tf:
                rec = {"name": m.name, "type": m.type.decode("latin-1"), "size": m.size,
                       "offset": m.offset, "offset_data": m.offset_data}
                if m.isreg():
                    rec["sha256"] = "sha256:" + hashlib.sha256(tf.extractfile(m).read()).hexdigest()
                members.append(rec)
        print(json.dumps({"ok": True, "members": members}))
    except Exception as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))

def write(fmt, listing, out):
    fmt = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}[fmt]
    with open(listing) as f:
        entries = json.load(f)
    with tarfile.open(out, "w", format=fmt, encoding="utf-8") as tf:
        for e in entries:
            with open(e["file"], "rb") as f:
                data = f.read()
            ti = tarfile.TarInfo(e["name"])
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            if e.get("pax"):
                ti.pax_headers = e["pax"]
            tf.addfile(ti, io.BytesIO(data))

if sys.argv[1] == "read":
    read(sys.argv[2])
else:
    write(sys.argv[2], sys.argv[3], sys.argv[4])
"#;

/// Regular files in tar order: (name, sha256 of the content).
type View = Vec<(String, String)>;

struct Tools {
    dir: tempfile::TempDir,
    script: PathBuf,
}

impl Tools {
    fn new() -> Tools {
        common::require_tools(&["python3", "tar", "zstd", "skopeo"]);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tarview.py");
        std::fs::write(&script, PYTHON).unwrap();
        Tools { dir, script }
    }

    fn python_members(&self, tar: &Path) -> Result<Vec<serde_json::Value>, String> {
        let out = Command::new("python3")
            .arg(&self.script)
            .arg("read")
            .arg(tar)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("python printed no JSON ({e})"))?;
        if v["ok"] != true {
            return Err(v["error"].to_string());
        }
        Ok(v["members"].as_array().unwrap().clone())
    }

    /// A plain tar of `archive` (zstd archives are decompressed by the zstd CLI).
    fn plain(&self, archive: &Path, compression: Compression) -> PathBuf {
        match compression {
            Compression::None => archive.to_path_buf(),
            Compression::Zstd => {
                let out = self.dir.path().join("decompressed.tar");
                let st = Command::new("zstd")
                    .args(["-q", "-d", "-f", "-o"])
                    .arg(&out)
                    .arg(archive)
                    .status()
                    .unwrap();
                assert!(st.success(), "zstd -d {}", archive.display());
                out
            }
        }
    }

    fn python(&self, archive: &Path, compression: Compression) -> Result<View, String> {
        let members = self.python_members(&self.plain(archive, compression))?;
        Ok(members
            .iter()
            .filter(|m| m["type"] == "0" || m["type"] == "\u{0}")
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect())
    }

    fn gnu_tar(&self, archive: &Path, compression: Compression) -> Result<View, String> {
        let z: &[&str] = match compression {
            Compression::Zstd => &["--zstd"],
            Compression::None => &[],
        };
        let list = Command::new("tar")
            .args(z)
            .args(["--quoting-style=literal", "-tf"])
            .arg(archive)
            .output()
            .unwrap();
        if !list.status.success() {
            return Err(String::from_utf8_lossy(&list.stderr).into_owned());
        }
        let mut view = Vec::new();
        for name in String::from_utf8(list.stdout).unwrap().lines() {
            if name.ends_with('/') {
                continue;
            }
            let out = Command::new("tar")
                .args(z)
                .args(["-xOf"])
                .arg(archive)
                .arg(name)
                .output()
                .unwrap();
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            view.push((name.to_string(), sha256(&out.stdout)));
        }
        Ok(view)
    }
}

/// Our reader: open, full verify, then every entry in file order read through the index.
fn ours(archive: &Path) -> Result<View, String> {
    let r = ArchiveReader::open(archive).map_err(|e| e.to_string())?;
    r.verify(|_| {}).map_err(|e| e.to_string())?;
    let mut entries: Vec<(&String, &IndexEntry)> = r.index().entries.iter().collect();
    entries.sort_by_key(|(_, e)| e.offset);
    let mut view = Vec::new();
    for (name, _) in entries {
        let mut data = Vec::new();
        r.entry(name)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut data)
            .map_err(|e| e.to_string())?;
        view.push((name.clone(), sha256(&data)));
    }
    Ok(view)
}

#[derive(Debug)]
enum Outcome {
    Agreed(View),
    Refused(String),
}

/// The differential property: ours refuses, or all readers see the same files.
fn check(tools: &Tools, case: &str, archive: &Path, compression: Compression) -> Outcome {
    let mine = ours(archive);
    let python = tools.python(archive, compression);
    let tar = tools.gnu_tar(archive, compression);
    match mine {
        Err(why) => {
            eprintln!("{case} ({compression:?}): ours refuses: {why}");
            Outcome::Refused(why)
        }
        Ok(view) => {
            assert_eq!(
                python.as_ref(),
                Ok(&view),
                "{case} ({compression:?}): Python's tarfile sees other files than ours"
            );
            assert_eq!(
                tar.as_ref(),
                Ok(&view),
                "{case} ({compression:?}): GNU tar sees other files than ours"
            );
            eprintln!(
                "{case} ({compression:?}): all agree on {} files",
                view.len()
            );
            Outcome::Agreed(view)
        }
    }
}

/// One entry as raw tar bytes (header records, data, padding), with the name the footer
/// index of a zstd re-pack gives it and its content size.
#[derive(Clone)]
struct Raw {
    index_name: String,
    bytes: Vec<u8>,
    size: u64,
}

const END: [u8; 1024] = [0; 1024];

fn write_plain(path: &Path, entries: &[Raw], end: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    for e in entries {
        f.write_all(&e.bytes).unwrap();
    }
    f.write_all(end).unwrap();
}

/// The same entries as a kots-bundle zstd archive: one frame per entry, one for the end
/// blocks, then the footer index (format spec, section 4).
fn write_zstd(path: &Path, entries: &[Raw], end: &[u8]) {
    let mut out = Vec::new();
    let mut index = EntryIndex::default();
    let frame = |data: &[u8]| {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    for e in entries {
        let f = frame(&e.bytes);
        index.entries.insert(
            e.index_name.clone(),
            IndexEntry {
                offset: out.len() as u64,
                length: f.len() as u64,
                size: e.size,
            },
        );
        out.extend_from_slice(&f);
    }
    out.extend_from_slice(&frame(end));
    let json = serde_json::to_vec(&index).unwrap();
    out.extend_from_slice(&0x184D_2A5Bu32.to_le_bytes());
    out.extend_from_slice(&((json.len() + 16) as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(b"KBNDLIDX");
    std::fs::write(path, out).unwrap();
}

/// A valid archive of one image and `upstream`, written by our own writer, uncompressed.
async fn base(dir: &Path, upstream: &[ManifestFile]) -> PathBuf {
    let path = dir.join("base.airgap");
    bundle::archive_of(
        dir,
        &[ImageSpec::new("diff:v1", 7)],
        upstream,
        &path,
        Compression::None,
    )
    .await
    .0
}

/// The base archive's entries in file order, as (name, content, raw bytes).
fn base_entries(path: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let r = ArchiveReader::open(path).unwrap();
    let file = std::fs::read(path).unwrap();
    let mut entries: Vec<(String, IndexEntry)> = r
        .index()
        .entries
        .iter()
        .map(|(n, e)| (n.clone(), *e))
        .collect();
    entries.sort_by_key(|(_, e)| e.offset);
    entries
        .into_iter()
        .map(|(name, e)| {
            let mut content = Vec::new();
            r.entry(&name).unwrap().read_to_end(&mut content).unwrap();
            let raw = file[e.offset as usize..(e.offset + e.length) as usize].to_vec();
            (name, content, raw)
        })
        .collect()
}

fn upstream_files() -> Vec<ManifestFile> {
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: a, image: diff:v1}}\n"
        )
        .into_bytes()
    };
    vec![
        ManifestFile {
            path: "pod.yaml".into(),
            data: pod("benign"),
        },
        // Over 100 bytes: a GNU long name from our writer, a ustar prefix or a PAX path
        // from Python.
        ManifestFile {
            path: format!("charts/{}/templates/deployment.yaml", "sub".repeat(30)),
            data: pod("long"),
        },
        ManifestFile {
            path: "ünïcödé/pod.yaml".into(),
            data: pod("unicode"),
        },
    ]
}

/// A name longer than a ustar prefix split allows (GNU long name or PAX path only).
fn very_long_file() -> ManifestFile {
    ManifestFile {
        path: format!("{}/x.yaml", "d".repeat(250)),
        data: b"kind: ConfigMap\n".to_vec(),
    }
}

/// A PAX record: `<len> <key>=<value>\n`, `<len>` counting the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// The newline attack: a comment value holding a line that a line-by-line reader takes for
/// a `path` record (its length is right for that line alone).
fn sneaky_value(path: &str) -> Vec<u8> {
    [b"harmless\n".to_vec(), pax_record("path", path.as_bytes())].concat()
}

fn sneaky_comment(path: &str) -> Vec<u8> {
    pax_record("comment", &sneaky_value(path))
}

fn python_write(
    tools: &Tools,
    format: &str,
    entries: &[(String, Vec<u8>, Option<serde_json::Value>)],
    out: &Path,
) {
    let mut listing = Vec::new();
    for (i, (name, data, pax)) in entries.iter().enumerate() {
        let file = tools.dir.path().join(format!("content-{i}"));
        std::fs::write(&file, data).unwrap();
        let mut e = serde_json::json!({"name": name, "file": file});
        if let Some(p) = pax {
            e["pax"] = p.clone();
        }
        listing.push(e);
    }
    let list = tools.dir.path().join("listing.json");
    std::fs::write(&list, serde_json::to_vec(&listing).unwrap()).unwrap();
    let st = Command::new("python3")
        .arg(&tools.script)
        .args(["write", format])
        .arg(&list)
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "python3 writes a {format} tar");
}

/// Python's members of a tar it wrote, cut into raw entries (by its own offsets) for the
/// zstd re-pack, and the bytes after the last entry.
fn python_raw(tools: &Tools, tar: &Path) -> (Vec<Raw>, Vec<u8>) {
    let bytes = std::fs::read(tar).unwrap();
    let members = tools.python_members(tar).unwrap();
    let mut raws = Vec::new();
    let mut end = 0usize;
    for m in &members {
        let start = m["offset"].as_u64().unwrap() as usize;
        let size = m["size"].as_u64().unwrap();
        let data = m["offset_data"].as_u64().unwrap() as usize;
        end = data + size.div_ceil(512) as usize * 512;
        raws.push(Raw {
            index_name: m["name"].as_str().unwrap().to_string(),
            bytes: bytes[start..end].to_vec(),
            size,
        });
    }
    (raws, bytes[end..].to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn python_written_archives_read_the_same_everywhere() {
    let tools = Tools::new();
    let work = tempfile::tempdir().unwrap();
    for (format, long) in [("ustar", false), ("gnu", true), ("pax", true)] {
        let dir = work.path().join(format);
        std::fs::create_dir_all(&dir).unwrap();
        let mut upstream = upstream_files();
        if long {
            upstream.push(very_long_file());
        }
        let base = base(&dir, &upstream).await;
        let entries: Vec<(String, Vec<u8>, Option<serde_json::Value>)> = base_entries(&base)
            .into_iter()
            .map(|(name, content, _)| {
                // PAX: the newline attack on the pod, written by a standard writer.
                let pax = (format == "pax" && name == "upstream/pod.yaml").then(|| {
                    let value = String::from_utf8(sneaky_value("upstream/evil.yaml")).unwrap();
                    serde_json::json!({ "comment": value })
                });
                (name, content, pax)
            })
            .collect();
        let expected: View = entries
            .iter()
            .map(|(n, c, _)| (n.clone(), sha256(c)))
            .collect();
        let plain = dir.join(format!("python-{format}.airgap"));
        python_write(&tools, format, &entries, &plain);
        let case = format!("python {format}");
        match check(&tools, &case, &plain, Compression::None) {
            Outcome::Agreed(view) => assert_eq!(view, expected, "{case}"),
            Outcome::Refused(why) => panic!("{case}: a valid archive is refused: {why}"),
        }
        // skopeo (Go's archive/tar) finds the image by its name and reads the same manifest.
        let reader = ArchiveReader::open(&plain).unwrap();
        let image = &reader.metadata().images[0];
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!(
                "oci-archive:{}:{}",
                plain.display(),
                image.reference
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{case}: skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            sha256(&out.stdout),
            image.digest.to_string(),
            "{case}: skopeo"
        );

        let (raws, end) = python_raw(&tools, &plain);
        let zstd = dir.join(format!("python-{format}-zstd.airgap"));
        write_zstd(&zstd, &raws, &end);
        match check(&tools, &case, &zstd, Compression::Zstd) {
            Outcome::Agreed(view) => assert_eq!(view, expected, "{case} zstd"),
            Outcome::Refused(why) => panic!("{case} zstd: a valid archive is refused: {why}"),
        }
    }
}

// --- hand-crafted headers ---------------------------------------------------------------

fn header(name: &[u8], kind: u8, size: u64, gnu: bool) -> tar::Header {
    let mut h = if gnu {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    h
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

fn rec(h: &tar::Header, data: &[u8]) -> Vec<u8> {
    [h.as_bytes().as_slice(), &padded(data)].concat()
}

/// A PAX extended header record for the entry after it.
fn pax(records: &[u8]) -> Vec<u8> {
    rec(
        &header(b"PaxHeaders/entry", b'x', records.len() as u64, false),
        records,
    )
}

fn gnu_long(name: &[u8]) -> Vec<u8> {
    let mut data = name.to_vec();
    data.push(0);
    rec(
        &header(b"././@LongLink", b'L', data.len() as u64, true),
        &data,
    )
}

/// What a case should come to.
enum Expect {
    /// Accepted, with the upstream files (name, content) every reader sees.
    Agree(Vec<(String, Vec<u8>)>),
    /// Refused, the message naming this.
    Refuse(&'static str),
}

struct Case {
    name: &'static str,
    /// The upstream entries' raw bytes, and the name a zstd index gives each.
    upstream: Vec<Raw>,
    /// upstreamFiles of the metadata (relative paths), with their contents.
    listed: Vec<(String, Vec<u8>)>,
    expect: Expect,
}

fn raw(index_name: &str, bytes: Vec<u8>, size: usize) -> Raw {
    Raw {
        index_name: index_name.to_string(),
        bytes,
        size: size as u64,
    }
}

fn cases() -> Vec<Case> {
    let benign = b"kind: Pod\nmetadata: {name: benign}\n".to_vec();
    let evil = b"kind: Pod\nmetadata: {name: evil}\n".to_vec();
    let pod = |content: &[u8]| vec![("upstream/pod.yaml".to_string(), content.to_vec())];
    let listed = |path: &str, c: &[u8]| vec![(path.to_string(), c.to_vec())];
    let ustar = |name: &str, data: &[u8]| {
        rec(
            &header(name.as_bytes(), b'0', data.len() as u64, false),
            data,
        )
    };
    let mut cases = Vec::new();

    // A comment whose value holds "\n<len> path=upstream/evil.yaml\n": a line-by-line reader
    // takes the entry for upstream/evil.yaml, POSIX readers for upstream/pod.yaml.
    let bytes = [
        pax(&sneaky_comment("upstream/evil.yaml")),
        ustar("upstream/pod.yaml", &benign),
    ]
    .concat();
    cases.push(Case {
        name: "newline in a PAX value",
        upstream: vec![raw("upstream/pod.yaml", bytes, benign.len())],
        listed: listed("pod.yaml", &benign),
        expect: Expect::Agree(pod(&benign)),
    });

    let bytes = [
        pax(&pax_record("path", b"upstream/pod.yaml")),
        ustar("upstream/decoy.yaml", &evil),
    ]
    .concat();
    cases.push(Case {
        name: "PAX path overrides the ustar name",
        upstream: vec![raw("upstream/pod.yaml", bytes, evil.len())],
        listed: listed("pod.yaml", &evil),
        expect: Expect::Agree(pod(&evil)),
    });

    // The header says 0 bytes; PAX says the real size. A reader ignoring PAX `size` would
    // read the pod's bytes as the next header.
    let mut h = header(b"upstream/pod.yaml", b'0', 0, false);
    h.set_cksum();
    let bytes = [
        pax(&pax_record("size", evil.len().to_string().as_bytes())),
        h.as_bytes().to_vec(),
        padded(&evil),
    ]
    .concat();
    cases.push(Case {
        name: "PAX size overrides the header size",
        upstream: vec![raw("upstream/pod.yaml", bytes, evil.len())],
        listed: listed("pod.yaml", &evil),
        expect: Expect::Agree(pod(&evil)),
    });

    let long = format!("upstream/{}/pod.yaml", "l".repeat(140));
    let bytes = [
        gnu_long(long.as_bytes()),
        rec(
            &header(&long.as_bytes()[..100], b'0', benign.len() as u64, true),
            &benign,
        ),
    ]
    .concat();
    cases.push(Case {
        name: "GNU long name",
        upstream: vec![raw(&long, bytes, benign.len())],
        listed: listed(&long["upstream/".len()..], &benign),
        expect: Expect::Agree(vec![(long.clone(), benign.clone())]),
    });

    // Refused: each is read differently by some reader, or malformed.
    let refuse = |name: &'static str, bytes: Vec<u8>, needle: &'static str| Case {
        name,
        upstream: vec![raw("upstream/pod.yaml", bytes, 0)],
        listed: listed("pod.yaml", b""),
        expect: Expect::Refuse(needle),
    };
    let empty_pod = ustar("upstream/pod.yaml", b"");
    cases.push(refuse(
        "PAX record longer than its header",
        [pax(b"99 path=upstream/x.yaml\n"), empty_pod.clone()].concat(),
        "upstream/pod.yaml",
    ));
    cases.push(refuse(
        "PAX record without its newline",
        [pax(b"26 path=upstream/pod.yaml "), empty_pod.clone()].concat(),
        "does not end with a newline",
    ));
    cases.push(refuse(
        "bytes after the last PAX record",
        [
            pax(&[
                pax_record("mtime", b"1"),
                b"22 path=upstream/x.yaml".to_vec(),
            ]
            .concat()),
            empty_pod.clone(),
        ]
        .concat(),
        "record 2",
    ));
    cases.push(refuse(
        "PAX path with a newline",
        [
            pax(&pax_record("path", b"upstream/pod.yaml\n")),
            empty_pod.clone(),
        ]
        .concat(),
        "control character",
    ));
    cases.push(refuse(
        "GNU sparse name",
        [
            pax(&pax_record("GNU.sparse.name", b"upstream/evil.yaml")),
            empty_pod.clone(),
        ]
        .concat(),
        "GNU sparse",
    ));
    cases.push(refuse(
        "a keyword twice",
        [
            pax(&[
                pax_record("path", b"upstream/pod.yaml"),
                pax_record("path", b"upstream/evil.yaml"),
            ]
            .concat()),
            empty_pod.clone(),
        ]
        .concat(),
        "appears twice",
    ));
    cases.push(refuse(
        "GNU long name and PAX path",
        [
            gnu_long(b"upstream/evil.yaml"),
            pax(&pax_record("path", b"upstream/pod.yaml")),
            empty_pod.clone(),
        ]
        .concat(),
        "two extended headers",
    ));
    cases.push(refuse(
        "a GNU header with a ustar prefix",
        {
            let mut h = header(b"pod.yaml", b'0', 0, true);
            h.as_mut_bytes()[345..353].copy_from_slice(b"upstream");
            h.set_cksum();
            h.as_bytes().to_vec()
        },
        "GNU header",
    ));
    cases.push(refuse(
        "a size field Python and Go read differently",
        {
            let mut h = header(b"upstream/pod.yaml", b'0', 0, false);
            h.as_mut_bytes()[124..136].copy_from_slice(b"\x000000000012\0");
            h.set_cksum();
            [h.as_bytes().to_vec(), padded(&[b'x'; 10])].concat()
        },
        "size field",
    ));
    cases.push(refuse(
        "a PAX global header",
        [
            rec(&header(b"pax_global_header", b'g', 0, false), b""),
            empty_pod.clone(),
        ]
        .concat(),
        "global",
    ));
    cases.push(refuse(
        "a directory with data",
        [
            rec(&header(b"upstream/d/", b'5', 600, false), &[0u8; 600]),
            empty_pod.clone(),
        ]
        .concat(),
        "directory with data",
    ));
    cases
}

/// Builds a full archive around `case`'s upstream entries: the base archive's metadata
/// (with upstreamFiles and their digests set to `listed`), layout files and blobs.
fn build(
    case: &Case,
    base: &[(String, Vec<u8>, Vec<u8>)],
    listed_override: Option<&[(String, Vec<u8>)]>,
) -> (Vec<Raw>, Vec<u8>) {
    let listed = listed_override.unwrap_or(&case.listed);
    let mut out = Vec::new();
    for (name, content, raw_bytes) in base {
        if name == "kots-bundle.json" {
            let mut meta: serde_json::Value = serde_json::from_slice(content).unwrap();
            meta["upstreamFiles"] = listed.iter().map(|(p, _)| serde_json::json!(p)).collect();
            meta["upstreamDigests"] = listed
                .iter()
                .map(|(p, c)| (p.clone(), serde_json::json!(sha256(c))))
                .collect::<serde_json::Map<_, _>>()
                .into();
            let data = serde_json::to_vec(&meta).unwrap();
            let h = header(b"kots-bundle.json", b'0', data.len() as u64, false);
            out.push(raw(name, rec(&h, &data), data.len()));
        } else if name == "index.json" {
            out.push(raw(name, raw_bytes.clone(), content.len()));
            out.extend(case.upstream.iter().cloned());
        } else if !name.starts_with("upstream/") {
            out.push(raw(name, raw_bytes.clone(), content.len()));
        }
    }
    (out, END.to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_crafted_headers_are_read_as_posix_says_or_refused() {
    let tools = Tools::new();
    let work = tempfile::tempdir().unwrap();
    let base_path = base(
        work.path(),
        &[ManifestFile {
            path: "pod.yaml".into(),
            data: b"x".to_vec(),
        }],
    )
    .await;
    let base = base_entries(&base_path);
    let mut failures = Vec::new();
    for case in cases() {
        let (entries, end) = build(&case, &base, None);
        for compression in [Compression::None, Compression::Zstd] {
            let path = work.path().join("crafted.airgap");
            match compression {
                Compression::None => write_plain(&path, &entries, &end),
                Compression::Zstd => write_zstd(&path, &entries, &end),
            }
            let outcome = check(&tools, case.name, &path, compression);
            match (&case.expect, outcome) {
                (Expect::Agree(files), Outcome::Agreed(view)) => {
                    let upstream: View = view
                        .into_iter()
                        .filter(|(n, _)| n.starts_with("upstream/"))
                        .collect();
                    let want: View = files.iter().map(|(n, c)| (n.clone(), sha256(c))).collect();
                    if upstream != want {
                        failures.push(format!(
                            "{} ({compression:?}): read {upstream:?}",
                            case.name
                        ));
                    }
                }
                (Expect::Refuse(needle), Outcome::Refused(why)) => {
                    if !why.contains(needle) {
                        failures.push(format!(
                            "{} ({compression:?}): refused without naming {needle:?}: {why}",
                            case.name
                        ));
                    }
                }
                (Expect::Agree(_), Outcome::Refused(why)) => {
                    failures.push(format!("{} ({compression:?}): refused: {why}", case.name))
                }
                (Expect::Refuse(_), Outcome::Agreed(_)) => {
                    failures.push(format!("{} ({compression:?}): accepted", case.name))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The attack in full: the metadata and the zstd index name the entry the way a
/// line-by-line PAX reader does (upstream/evil.yaml), while tar and Python see
/// upstream/pod.yaml. Our reader must not read it as evil.yaml anywhere: `verify`,
/// `inspect` and `import` all refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pax_newline_cannot_make_import_read_another_name_than_tar() {
    let tools = Tools::new();
    let work = tempfile::tempdir().unwrap();
    let base_path = base(
        work.path(),
        &[ManifestFile {
            path: "pod.yaml".into(),
            data: b"x".to_vec(),
        }],
    )
    .await;
    let base = base_entries(&base_path);
    let evil = b"kind: Pod\nmetadata: {name: evil}\n".to_vec();
    let bytes = [
        pax(&sneaky_comment("upstream/evil.yaml")),
        rec(
            &header(b"upstream/pod.yaml", b'0', evil.len() as u64, false),
            &evil,
        ),
    ]
    .concat();
    let case = Case {
        name: "newline attack",
        upstream: vec![raw("upstream/evil.yaml", bytes, evil.len())],
        listed: vec![("evil.yaml".to_string(), evil.clone())],
        expect: Expect::Refuse("upstream/"),
    };
    let (entries, end) = build(&case, &base, None);
    for compression in [Compression::None, Compression::Zstd] {
        let path = work.path().join(format!("attack-{compression:?}.airgap"));
        match compression {
            Compression::None => write_plain(&path, &entries, &end),
            Compression::Zstd => write_zstd(&path, &entries, &end),
        }
        // tar sees pod.yaml, and no evil.yaml.
        let tar = tools.gnu_tar(&path, compression).unwrap();
        assert!(tar.iter().any(|(n, _)| n == "upstream/pod.yaml"), "{tar:?}");
        assert!(
            !tar.iter().any(|(n, _)| n == "upstream/evil.yaml"),
            "{tar:?}"
        );
        assert!(matches!(
            check(&tools, "attack", &path, compression),
            Outcome::Refused(_)
        ));
        for (cmd, code) in [("verify", 3), ("inspect", 1)] {
            let out = common::app::bin().arg(cmd).arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{cmd} ({compression:?}): {err}"
            );
            assert!(err.contains("upstream/"), "{cmd} names the entry: {err}");
        }
        let reg = common::TestRegistry::start();
        let dest = work.path().join(format!("app-{compression:?}"));
        let out = common::app::bin()
            .arg("import")
            .arg(&path)
            .args(["--registry-endpoint", &reg.addr, "--image-namespace", "ns"])
            .arg("--dest")
            .arg(&dest)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "import ({compression:?})");
        assert!(!dest.exists(), "import wrote the app directory");
    }
}
