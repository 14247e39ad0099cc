//! The manifest walker (image discovery) on arbitrary YAML/JSON: never panics, and every
//! image it reports (candidates included) is a valid normalized reference.
#![no_main]

use kots_bundle::discover;
use kots_bundle::reference::Reference;
use kots_bundle::upstream::ManifestFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files = [
        ManifestFile {
            path: "fuzz.yaml".into(),
            data: data.to_vec(),
        },
        ManifestFile {
            path: "fuzz.json".into(),
            data: data.to_vec(),
        },
    ];
    let found = discover::discover(&files);
    for r in found.listed() {
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }
    for p in &found.problems {
        let _ = p.to_string();
    }
});
