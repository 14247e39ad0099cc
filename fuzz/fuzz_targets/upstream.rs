//! The whole upstream loader on arbitrary input, then discovery over what it loaded:
//! `upstream::load_path` on a temp directory of arbitrary files and on a `.tgz` file, and
//! `upstream::read_tgz` on arbitrary tarball bytes (raw, and gzip'd so the tar reader is
//! reached). Everything must fail cleanly: no panic, no hang, nothing outside the temp dir.
//!
//! Input layout: up to 16 files as `[name length: u8][name][content length: u16 LE][content]`,
//! then the rest is the tarball.
#![no_main]

use std::io::Write;
use std::path::Path;

use kots_bundle::discover;
use kots_bundle::upstream::{self, UpstreamOptions};
use libfuzzer_sys::fuzz_target;

/// Splits off one file record; `None` when the input is too short for one.
fn record(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    let name = rest.get(..n as usize)?;
    let rest = &rest[n as usize..];
    let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let content = rest.get(2..2 + len)?;
    Some((name, content, &rest[2 + len..]))
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fuzz-app");
    std::fs::create_dir(&root).unwrap();
    let mut rest = data;
    for _ in 0..16 {
        let Some((name, content, tail)) = record(rest) else {
            break;
        };
        rest = tail;
        // The harness itself only writes inside the root: no `..`, no absolute names.
        let name = String::from_utf8_lossy(name);
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
            .collect();
        if parts.is_empty() || parts.iter().any(|p| p.contains('\0')) {
            continue;
        }
        let path = parts.iter().fold(root.clone(), |p, c| p.join(c));
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, content);
    }
    if let Ok(up) = upstream::load_path(&root, &UpstreamOptions::default()) {
        let _ = discover::discover(&up.files);
    }

    let origin = Path::new("fuzz.tgz");
    let _ = upstream::read_tgz(rest, origin);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(rest).unwrap();
    let gz = gz.finish().unwrap();
    if let Ok(files) = upstream::read_tgz(&gz[..], origin) {
        let _ = discover::discover(&files);
    }
    let tgz = dir.path().join("fuzz-app.tgz");
    std::fs::write(&tgz, &gz).unwrap();
    if let Ok(up) = upstream::load_path(&tgz, &UpstreamOptions::default()) {
        let _ = discover::discover(&up.files);
    }
});
