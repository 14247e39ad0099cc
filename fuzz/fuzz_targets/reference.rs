//! Image references: parsing never panics, and what parses round-trips through its text.
#![no_main]

use kots_bundle::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a normalized reference parses");
        assert_eq!(again, r);
        let _ = r.familiar_names();
    }
});
