//! Sprig and KOTS functions kots-bundle does not implement (certificates, cluster lookups,
//! password hashing, semver constraints, network). They are defined, so a template that
//! names them parses as in KOTS (Go checks names at parse time, also in branches never
//! taken); calling one is an error that names it.

use super::Funcs;
use crate::render::template::args::call_error;

const NAMES: &[&str] = &[
    // KOTS
    "TLSCert",
    "TLSKey",
    "TLSCACert",
    "TLSCertFromCA",
    "TLSKeyFromCA",
    "KubeSeal",
    // Sprig
    "ago",
    "date_in_zone",
    "date_modify",
    "dateInZone",
    "dateModify",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "must_date_modify",
    "mustDateModify",
    "mustToDate",
    "toDate",
    "abbrevboth",
    "sha1sum",
    "getHostByName",
    "bcrypt",
    "htpasswd",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "encryptAES",
    "decryptAES",
    "semver",
    "semverCompare",
    "urlParse",
    "urlJoin",
    "hello",
];

pub fn register(m: &mut Funcs) {
    for name in NAMES {
        m.add(name, move |_| {
            Err(call_error(
                name,
                "not supported by kots-bundle's template engine",
            ))
        });
    }
}
