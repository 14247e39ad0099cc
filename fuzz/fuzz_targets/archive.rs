//! The `.airgap` reader on arbitrary bytes: opening, the layout check, full verification and
//! reading every entry must fail cleanly, never panic or read without bound.
#![no_main]

use std::io::Read;

use kots_bundle::archive::ArchiveReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.airgap");
    std::fs::write(&path, data).unwrap();
    let _ = ArchiveReader::read_metadata_only(&path);
    let Ok(reader) = ArchiveReader::open(&path) else {
        return;
    };
    let _ = reader.check_layout();
    let _ = reader.verify(|_| {});
    let _ = reader.upstream_files();
    for name in reader.index().entries.keys() {
        if let Ok(mut e) = reader.entry(name) {
            let _ = std::io::copy(&mut e.by_ref().take(1 << 20), &mut std::io::sink());
        }
    }
});
