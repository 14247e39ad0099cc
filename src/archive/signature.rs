//! Signed archives: an ed25519 signature over a *statement* that names, by sha256, the
//! metadata, the layout files, every upstream file, the footer's entry index and every blob
//! (digest and size). The signature lives in the footer of a zstd archive, so older
//! readers, which ignore unknown footer fields, read signed archives as before.
//!
//! Keys are what `openssl genpkey -algorithm ed25519` writes (PKCS#8 PEM) and `openssl pkey
//! -pubout` derives (SubjectPublicKeyInfo PEM); signing and checking is `ring`'s, the same
//! library the TLS stack runs on. Format: `bundle-format/README.md`, section 8.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use super::{ArchiveError, ArchiveReader, EntryIndex, IndexEntry, METADATA_ENTRY};
use crate::digest::Digest;

/// The `format` of a signed statement.
pub const STATEMENT_FORMAT: &str = "kots-bundle.signature/v1";
/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What the footer carries: the statement exactly as signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureBlock {
    pub algorithm: String,
    /// The signer's public key, SubjectPublicKeyInfo DER, base64.
    pub public_key: String,
    /// The signed statement (JSON text, the bytes signed).
    pub statement: String,
    /// base64 of the 64-byte ed25519 signature over `statement`.
    pub signature: String,
}

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub format: String,
    /// sha256 of each non-blob entry's content: `kots-bundle.json`, `oci-layout`,
    /// `index.json`, `upstream/...`.
    pub files: BTreeMap<String, Digest>,
    /// Every blob: digest -> size.
    pub blobs: BTreeMap<Digest, u64>,
    /// sha256 of the footer's entry index (`entries` serialized as compact JSON, keys
    /// sorted).
    pub index: Digest,
}

impl Statement {
    /// The statement for an archive whose entries are `entries` and whose non-blob files
    /// have the digests `files`.
    pub fn new(entries: &BTreeMap<String, IndexEntry>, files: BTreeMap<String, Digest>) -> Self {
        let blobs = entries
            .iter()
            .filter_map(|(name, e)| {
                let hex = name.strip_prefix("blobs/sha256/")?;
                Some((format!("sha256:{hex}").parse().ok()?, e.size))
            })
            .collect();
        Statement {
            format: STATEMENT_FORMAT.to_string(),
            files,
            blobs,
            index: index_digest(entries),
        }
    }
}

/// sha256 of the entry index as signed: `entries` as compact JSON (a `BTreeMap`, so keys
/// sorted), re-serialized from what was parsed, so only its meaning counts.
pub fn index_digest(entries: &BTreeMap<String, IndexEntry>) -> Digest {
    Digest::of(&serde_json::to_vec(entries).expect("serializable"))
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// An ed25519 private key for `export --sign-key`.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().fingerprint())
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM ed25519 key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem_file(path: &Path) -> Result<SigningKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = pem_body(&text, "PRIVATE KEY").ok_or_else(|| {
            format!(
                "{}: no \"PRIVATE KEY\" PEM block (make one with `openssl genpkey -algorithm \
                 ed25519 -out KEY`)",
                path.display()
            )
        })?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| format!("{}: not an ed25519 private key ({e})", path.display()))?;
        Ok(SigningKey { pair })
    }

    pub fn public(&self) -> PublicKey {
        let raw: [u8; 32] = self
            .pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("ed25519 public keys are 32 bytes");
        PublicKey { raw }
    }

    /// Signs `statement`, returning the footer's block.
    pub fn sign(&self, statement: &Statement) -> SignatureBlock {
        let text = serde_json::to_string(statement).expect("serializable");
        let sig = self.pair.sign(text.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        SignatureBlock {
            algorithm: "ed25519".into(),
            public_key: b64.encode(self.public().spki()),
            statement: text,
            signature: b64.encode(sig.as_ref()),
        }
    }
}

/// An ed25519 public key for `verify --key` and `import --key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM (`openssl pkey -in KEY -pubout`).
    pub fn from_pem_file(path: &Path) -> Result<PublicKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = pem_body(&text, "PUBLIC KEY").ok_or_else(|| {
            format!(
                "{}: no \"PUBLIC KEY\" PEM block (derive it with `openssl pkey -in KEY -pubout \
                 -out PUB`)",
                path.display()
            )
        })?;
        Self::from_spki(&der)
            .ok_or_else(|| format!("{}: not an ed25519 public key", path.display()))
    }

    fn from_spki(der: &[u8]) -> Option<PublicKey> {
        let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
        Some(PublicKey {
            raw: raw.try_into().ok()?,
        })
    }

    pub fn spki(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        der
    }

    /// sha256 of the SubjectPublicKeyInfo DER (`openssl pkey -pubin -in PUB -outform DER |
    /// sha256sum`).
    pub fn fingerprint(&self) -> Digest {
        Digest::of(&self.spki())
    }
}

/// Who signed an archive, when it is signed.
pub fn signer(index: &EntryIndex) -> Option<Result<PublicKey, String>> {
    let block = index.signature.as_ref()?;
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(&block.public_key)
            .ok()
            .and_then(|d| PublicKey::from_spki(&d))
            .ok_or_else(|| "the signature's public key is not an ed25519 key".to_string()),
    )
}

impl ArchiveReader {
    /// Checks the archive's signature with `key` and that the archive is what was signed:
    /// the metadata, layout files and upstream files' digests (as the metadata lists them
    /// and as stored), every blob's digest and size, and the entry index. Names what
    /// changed. Blob *content* is checked against those digests as it is read (`verify`
    /// reads all of it; import as it pushes).
    pub fn check_signature(&self, key: &PublicKey) -> Result<(), ArchiveError> {
        let err = |why: String| ArchiveError::Signature {
            path: self.path().to_path_buf(),
            why,
        };
        let Some(block) = &self.index().signature else {
            return Err(err(format!(
                "the archive is not signed (expected a signature by key {})",
                key.fingerprint()
            )));
        };
        match signer(self.index()).expect("signed") {
            Ok(by) if by != *key => {
                return Err(err(format!(
                    "signed by key {}, not by the key given ({})",
                    by.fingerprint(),
                    key.fingerprint()
                )))
            }
            Ok(_) => {}
            Err(why) => return Err(err(why)),
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&block.signature)
            .map_err(|_| err("the signature is not base64".into()))?;
        UnparsedPublicKey::new(&ED25519, key.raw)
            .verify(block.statement.as_bytes(), &sig)
            .map_err(|_| {
                err(
                    "the signature does not match the signed statement: the statement or the \
                     signature was altered"
                        .into(),
                )
            })?;
        let st: Statement = serde_json::from_str(&block.statement)
            .map_err(|e| err(format!("signed statement unreadable: {e}")))?;
        if st.format != STATEMENT_FORMAT {
            return Err(err(format!(
                "signed statement format {:?} is not supported (reads {STATEMENT_FORMAT})",
                st.format
            )));
        }
        let meta = self.metadata();
        // What the metadata says, against what was signed: names the blob or file.
        for b in &meta.blobs {
            match st.blobs.get(&b.digest) {
                None => {
                    return Err(err(format!(
                        "blob {} is in the archive but was not signed: a blob was replaced or \
                         added",
                        b.digest
                    )))
                }
                Some(&size) if size != b.size => {
                    return Err(err(format!(
                        "blob {} is {} bytes, signed as {size}",
                        b.digest, b.size
                    )))
                }
                Some(_) => {}
            }
        }
        let listed: std::collections::HashSet<&Digest> =
            meta.blobs.iter().map(|b| &b.digest).collect();
        if let Some(d) = st.blobs.keys().find(|d| !listed.contains(d)) {
            return Err(err(format!(
                "signed blob {d} is not in the archive: a blob was replaced or removed"
            )));
        }
        for (name, signed) in &st.files {
            let Some(path) = name.strip_prefix(super::UPSTREAM_DIR) else {
                continue;
            };
            match meta.upstream_digests.get(path) {
                Some(d) if d == signed => {}
                Some(d) => {
                    return Err(err(format!(
                        "upstream file {path:?} changed since signing (signed {signed}, the \
                         archive has {d})"
                    )))
                }
                None => {
                    return Err(err(format!(
                        "signed upstream file {path:?} is not in the archive"
                    )))
                }
            }
        }
        if let Some(p) = meta.upstream_files.iter().find(|p| {
            !st.files
                .contains_key(&format!("{}{p}", super::UPSTREAM_DIR))
        }) {
            return Err(err(format!(
                "upstream file {p:?} is in the archive but was not signed"
            )));
        }
        // The stored bytes of the small files, against what was signed.
        for (name, signed) in &st.files {
            let data = self.read_small(name)?;
            let actual = Digest::of(&data);
            if &actual != signed {
                let what = match name.as_str() {
                    METADATA_ENTRY => format!("the metadata ({METADATA_ENTRY})"),
                    n => match n.strip_prefix(super::UPSTREAM_DIR) {
                        Some(p) => format!("upstream file {p:?}"),
                        None => format!("{n:?}"),
                    },
                };
                return Err(err(format!(
                    "{what} changed since signing (signed {signed}, stored {actual})"
                )));
            }
        }
        for name in self.index().entries.keys() {
            if !name.starts_with("blobs/") && !st.files.contains_key(name) {
                return Err(err(format!("entry {name:?} was not signed")));
            }
        }
        let actual = index_digest(&self.index().entries);
        if actual != st.index {
            return Err(err(
                "the entry index (the footer) changed since signing".to_string()
            ));
        }
        // Every blob the index names is in the metadata (the reader checks that at open),
        // and so was signed; a blob's own bytes are checked against its digest as it is read.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips() {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let key = SigningKey { pair };
        let public = key.public();
        assert_eq!(PublicKey::from_spki(&public.spki()), Some(public));
        assert_eq!(PublicKey::from_spki(&public.spki()[1..]), None);
        let st = Statement::new(&BTreeMap::new(), BTreeMap::new());
        let block = key.sign(&st);
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&block.signature)
            .unwrap();
        assert!(UnparsedPublicKey::new(&ED25519, public.raw)
            .verify(block.statement.as_bytes(), &sig)
            .is_ok());
        assert!(UnparsedPublicKey::new(&ED25519, public.raw)
            .verify(b"other", &sig)
            .is_err());
    }
}
