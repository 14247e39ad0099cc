//! One tar entry's header records, read the way POSIX pax, GNU tar, Go's `archive/tar` (so
//! skopeo) and Python's `tarfile` all read them: a ustar or GNU header, optionally preceded by
//! one GNU long-name record or one PAX extended header of length-prefixed records
//! (`<len> <key>=<value>\n`, where a value may hold newlines). Every reader path of the
//! archive (the head, an entry found by the index, the tar walk of `verify` and of an
//! uncompressed archive) reads headers here, so they all see the same names and sizes.
//!
//! Wherever those readers would disagree (two extended headers for one entry, a GNU header
//! with bytes where Python looks for a ustar prefix, a number field Python and Go parse
//! differently, GNU sparse keys that rename a file, PAX global headers), the header is
//! refused rather than read one way.

use std::io::{self, Read};

pub(crate) const BLOCK: u64 = 512;
/// Longest GNU long name or PAX extended header accepted.
pub(crate) const MAX_EXTENDED: u64 = 64 * 1024;

/// What one entry's header records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub name: String,
    /// Size of the entry's data (PAX `size` if given, else the header's).
    pub size: u64,
    pub kind: tar::EntryType,
    /// Bytes of header records before the data: extended headers with their padded data,
    /// then the entry's own header.
    pub header_len: u64,
}

impl Header {
    /// Bytes the entry takes in the tar: headers, data, and padding to a whole block.
    pub fn record_len(&self) -> u64 {
        self.header_len + self.size + padding(self.size)
    }
}

/// What the next header position holds.
#[derive(Debug)]
pub(crate) enum Next {
    Entry(Header),
    /// A zero block: the end-of-archive marker (512 bytes consumed).
    End,
    /// Nothing at all: the stream ended exactly here.
    Eof,
}

#[derive(Debug)]
pub(crate) enum HeaderError {
    /// Reading failed (a truncated stream is `UnexpectedEof`).
    Io(io::Error),
    /// The header is malformed or ambiguous; `entry` is the best name known for it.
    Bad { entry: String, why: String },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("truncated inside a tar header")
            }
            HeaderError::Io(e) => write!(f, "{e}"),
            HeaderError::Bad { entry, why } => write!(f, "entry {entry:?}: {why}"),
        }
    }
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        HeaderError::Io(e)
    }
}

pub(crate) fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Reads the header record(s) of the next entry; the stream is then at the entry's data.
pub(crate) fn read_header(r: &mut dyn Read) -> Result<Next, HeaderError> {
    let mut block = [0u8; BLOCK as usize];
    if !read_block(r, &mut block)? {
        return Ok(Next::Eof);
    }
    if block.iter().all(|&b| b == 0) {
        return Ok(Next::End);
    }
    let mut consumed = BLOCK;
    let mut extension: Option<Extension> = None;
    loop {
        let raw = parse_block(&block)?;
        match raw.kind {
            tar::EntryType::GNULongName | tar::EntryType::XHeader => {
                let ext_name = raw.name_lossy();
                if extension.is_some() {
                    return Err(bad(
                        &ext_name,
                        "two extended headers (GNU long name or PAX) for one entry",
                    ));
                }
                if raw.size > MAX_EXTENDED {
                    return Err(bad(
                        &ext_name,
                        format!(
                            "extended header of {} bytes (at most {MAX_EXTENDED})",
                            raw.size
                        ),
                    ));
                }
                let mut data = vec![0u8; raw.size as usize];
                r.read_exact(&mut data)?;
                io::copy(&mut r.take(padding(raw.size)), &mut io::sink())?;
                consumed += raw.size + padding(raw.size);
                let parsed = if raw.kind == tar::EntryType::GNULongName {
                    long_name(&data)
                } else {
                    pax(&data)
                };
                match parsed {
                    Ok(e) => extension = Some(e),
                    // Name the entry the broken header belongs to when its header is readable.
                    Err(why) => {
                        let entry = match read_block(r, &mut block) {
                            Ok(true) => parse_block(&block).map(|h| h.name_lossy()).ok(),
                            _ => None,
                        }
                        .unwrap_or(ext_name.clone());
                        return Err(bad(
                            &entry,
                            format!("its extended header {ext_name:?} is malformed: {why}"),
                        ));
                    }
                }
                if !read_block(r, &mut block)? || block.iter().all(|&b| b == 0) {
                    return Err(bad(&ext_name, "an extended header with no entry after it"));
                }
                consumed += BLOCK;
            }
            tar::EntryType::XGlobalHeader => {
                return Err(bad(
                    &raw.name_lossy(),
                    "a PAX global header (readers apply it differently)",
                ))
            }
            tar::EntryType::GNULongLink => {
                return Err(bad(
                    &raw.name_lossy(),
                    "a GNU long link name (links are not allowed)",
                ))
            }
            kind => {
                let ext = extension.unwrap_or_default();
                let name_bytes = match ext.path {
                    Some(p) => p,
                    None => raw.name.clone(),
                };
                let shown = String::from_utf8_lossy(&name_bytes).into_owned();
                let mut name =
                    String::from_utf8(name_bytes).map_err(|_| bad(&shown, "name is not UTF-8"))?;
                if name.is_empty() {
                    return Err(bad(&shown, "empty name"));
                }
                let size = ext.size.unwrap_or(raw.size);
                if kind.is_dir() {
                    if size != 0 {
                        // Python and Go read a directory's data as the next header; GNU
                        // tar and the tar crate skip it.
                        return Err(bad(&name, "a directory with data"));
                    }
                    if name.len() > 1 {
                        name = name.strip_suffix('/').unwrap_or(&name).to_string();
                    }
                }
                return Ok(Next::Entry(Header {
                    name,
                    size,
                    kind,
                    header_len: consumed,
                }));
            }
        }
    }
}

/// Reads a whole block; `false` if the stream ended before its first byte.
fn read_block(r: &mut dyn Read, block: &mut [u8; BLOCK as usize]) -> io::Result<bool> {
    let mut got = 0;
    while got < block.len() {
        match r.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn bad(entry: &str, why: impl Into<String>) -> HeaderError {
    HeaderError::Bad {
        entry: entry.to_string(),
        why: why.into(),
    }
}

/// One header block, checked.
struct RawHeader {
    /// The name as the block spells it (ustar prefix joined), raw bytes.
    name: Vec<u8>,
    size: u64,
    kind: tar::EntryType,
}

impl RawHeader {
    fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

const POSIX_MAGIC: &[u8] = b"ustar\x0000";
const GNU_MAGIC: &[u8] = b"ustar  \x00";

fn parse_block(block: &[u8; BLOCK as usize]) -> Result<RawHeader, HeaderError> {
    let name_field = until_nul(&block[..100]);
    let shown = String::from_utf8_lossy(name_field).into_owned();
    let fail = |why: String| bad(&shown, why);
    let posix = &block[257..265] == POSIX_MAGIC;
    let gnu = &block[257..265] == GNU_MAGIC;
    if !posix && !gnu {
        return Err(fail(
            "a tar header that is neither POSIX ustar nor GNU (old v7 headers are read \
             differently by different tools)"
                .into(),
        ));
    }
    let field =
        |range: std::ops::Range<usize>, what: &str| number(&block[range], what).map_err(&fail);
    let cksum = field(148..156, "checksum")?;
    let computed: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if cksum != computed {
        return Err(fail("tar header checksum mismatch".into()));
    }
    // Python's tarfile and Go parse these and stop or fail on a bad one: refuse it here.
    for (range, what) in [
        (100..108, "mode"),
        (108..116, "uid"),
        (116..124, "gid"),
        (136..148, "mtime"),
        (329..337, "device major"),
        (337..345, "device minor"),
    ] {
        field(range, what)?;
    }
    let size = field(124..136, "size")?;
    if block[500..].iter().any(|&b| b != 0) {
        // Go reads a header ending in "tar\0" as the star format, with a shorter prefix.
        return Err(fail("bytes in the tar header's padding".into()));
    }
    let mut name = name_field.to_vec();
    if posix {
        let prefix = until_nul(&block[345..500]);
        if !prefix.is_empty() {
            name = [prefix, b"/", name_field].concat();
        }
    } else if block[345..500].iter().any(|&b| b != 0) {
        // GNU keeps times and sparse maps there, which Python reads as a ustar prefix.
        return Err(fail(
            "a GNU header with access times, sparse data or a prefix (unsupported)".into(),
        ));
    }
    Ok(RawHeader {
        name,
        size,
        kind: tar::EntryType::new(block[156]),
    })
}

fn until_nul(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// A numeric header field: octal digits (spaces around, NUL-terminated), or GNU base-256.
/// Anything that Python, Go and GNU tar might read differently is refused: digits after a
/// NUL (Python stops at the NUL, Go trims it), signs, negative base-256.
fn number(field: &[u8], what: &str) -> Result<u64, String> {
    let invalid = || format!("{what} field is not a valid number");
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] != 0x80 {
            return Err(invalid());
        }
        let mut n: u64 = 0;
        for &b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(b)))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(invalid)?;
        }
        return Ok(n);
    }
    let text = until_nul(field);
    if field[text.len()..].iter().any(|&b| b != 0 && b != b' ') {
        return Err(invalid());
    }
    let digits = std::str::from_utf8(text)
        .map_err(|_| invalid())?
        .trim_matches(' ');
    if digits.is_empty() {
        return Ok(0);
    }
    if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(invalid());
    }
    u64::from_str_radix(digits, 8)
        .ok()
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(invalid)
}

/// What an extended header changes about the entry after it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extension {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

fn long_name(data: &[u8]) -> Result<Extension, String> {
    let name = until_nul(data);
    if data[name.len()..].iter().any(|&b| b != 0) {
        return Err("GNU long name with bytes after its terminating NUL".into());
    }
    if name.is_empty() {
        return Err("empty GNU long name".into());
    }
    Ok(Extension {
        path: Some(name.to_vec()),
        size: None,
    })
}

/// Parses PAX extended header records by their decimal length prefix, as POSIX specifies:
/// each record is `<len> <key>=<value>\n`, `<len>` counting the whole record, and the value
/// may hold any byte including newlines. The records must fill the data exactly.
fn pax(data: &[u8]) -> Result<Extension, String> {
    let mut ext = Extension::default();
    let mut keys = std::collections::HashSet::new();
    let mut pos = 0usize;
    let mut n = 0usize;
    while pos < data.len() {
        n += 1;
        let rest = &data[pos..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 10 || rest.get(digits) != Some(&b' ') {
            return Err(format!(
                "record {n} does not start with a decimal length and a space"
            ));
        }
        let len: usize = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("record {n} has a bad length"))?;
        if len > rest.len() {
            return Err(format!(
                "record {n} claims {len} bytes, only {} remain",
                rest.len()
            ));
        }
        // Shortest record: "<len> k=\n".
        if len < digits + 4 {
            return Err(format!("record {n} claims {len} bytes, too short"));
        }
        let record = &rest[digits + 1..len];
        let Some(body) = record.strip_suffix(b"\n") else {
            return Err(format!("record {n} does not end with a newline"));
        };
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return Err(format!("record {n} has no '='"));
        };
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        let key = std::str::from_utf8(key)
            .ok()
            .filter(|k| !k.is_empty() && !k.contains('\0'))
            .ok_or_else(|| format!("record {n} has an empty or non-UTF-8 keyword"))?;
        if !keys.insert(key.to_string()) {
            return Err(format!("keyword {key:?} appears twice"));
        }
        match key {
            "path" => {
                if value.is_empty() {
                    return Err("an empty path".into());
                }
                ext.path = Some(value.to_vec());
            }
            "size" => ext.size = Some(decimal(value).ok_or("size is not a decimal number")?),
            "uid" | "gid" => {
                decimal(value).ok_or_else(|| format!("{key} is not a decimal number"))?;
            }
            "mtime" | "atime" | "ctime" if !is_pax_time(value) => {
                return Err(format!("{key} is not a time"));
            }
            k if k.starts_with("GNU.sparse.") => {
                // Python and Go rename or re-size the entry by these; sparse files are
                // never part of an archive.
                return Err(format!("GNU sparse keyword {k:?}"));
            }
            _ => {} // POSIX: unknown keywords are ignored (comment, charset, xattrs, ...)
        }
        pos += len;
    }
    Ok(ext)
}

fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse()
        .ok()
        .filter(|&n| n <= i64::MAX as u64)
}

fn is_pax_time(v: &[u8]) -> bool {
    let v = v.strip_prefix(b"-").unwrap_or(v);
    let (whole, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.len() <= 19 && s.iter().all(u8::is_ascii_digit);
    digits(whole) && frac.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        if (len.to_string().len() + body.len()) != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    fn header_block(name: &str, kind: u8, size: u64, gnu: bool) -> Vec<u8> {
        let mut h = if gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(size);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn with_data(mut out: Vec<u8>, data: &[u8]) -> Vec<u8> {
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64) as usize, 0);
        out
    }

    fn parse(bytes: &[u8]) -> Result<Next, HeaderError> {
        read_header(&mut &bytes[..])
    }

    fn entry(bytes: &[u8]) -> Header {
        match parse(bytes) {
            Ok(Next::Entry(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    fn refused(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(HeaderError::Bad { entry, why }) => format!("{entry}: {why}"),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn records_are_read_by_length_not_by_line() {
        assert_eq!(record("path", "a"), "9 path=a\n");
        // A comment whose value holds a newline and something that looks like a record.
        let sneaky = record("comment", "x\n30 path=upstream/evil.yaml\n");
        let ext = pax(sneaky.as_bytes()).unwrap();
        assert_eq!(ext, Extension::default());
        let both = format!("{sneaky}{}", record("path", "upstream/a\nb"));
        assert_eq!(
            pax(both.as_bytes()).unwrap().path.unwrap(),
            b"upstream/a\nb"
        );
        let sized = record("size", "12");
        assert_eq!(pax(sized.as_bytes()).unwrap().size, Some(12));
    }

    #[test]
    fn malformed_pax_is_refused() {
        for bad in [
            "99 path=a\n",              // longer than the data
            "3 path=a\n",               // shorter than itself
            "9 path=a\r",               // no newline
            "9 path-a\n",               // no '='
            "x path=a\n",               // no length
            "+9 path=a\n",              // a sign
            "9 path=a\ngarbage",        // bytes after the last record
            "9 path=a\n9 path=b\n",     // a keyword twice
            "7 path=\n",                // empty path
            "10 size=1x\n",             // not a number
            "25 GNU.sparse.name=abc\n", // renames the file in Python and Go
            "10 mtime=x\n",
        ] {
            assert!(pax(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        assert!(pax(b"").is_ok());
    }

    #[test]
    fn headers_with_extensions() {
        let plain = with_data(header_block("upstream/a.yaml", b'0', 3, false), b"abc");
        let h = entry(&plain);
        assert_eq!(
            (h.name.as_str(), h.size, h.header_len),
            ("upstream/a.yaml", 3, 512)
        );
        assert_eq!(h.record_len(), 1024);

        let p = record("path", "upstream/long\nname.yaml") + &record("size", "5");
        let mut bytes = with_data(
            header_block("PaxHeader/x", b'x', p.len() as u64, false),
            p.as_bytes(),
        );
        bytes.extend(with_data(
            header_block("upstream/short", b'0', 0, false),
            b"hello",
        ));
        let h = entry(&bytes);
        assert_eq!(h.name, "upstream/long\nname.yaml");
        assert_eq!((h.size, h.header_len), (5, 1536));

        let long = format!("upstream/{}", "n".repeat(150));
        let mut bytes = with_data(
            header_block("././@LongLink", b'L', long.len() as u64 + 1, true),
            format!("{long}\0").as_bytes(),
        );
        bytes.extend(header_block("upstream/nnnn", b'0', 0, true));
        assert_eq!(entry(&bytes).name, long);

        // A broken PAX header is reported with the name of the entry it belongs to.
        let broken = "99 path=x\n";
        let mut bytes = with_data(
            header_block("PaxHeader/pod", b'x', 10, false),
            broken.as_bytes(),
        );
        bytes.extend(header_block("upstream/pod.yaml", b'0', 0, false));
        let why = refused(&bytes);
        assert!(
            why.starts_with("upstream/pod.yaml:") && why.contains("record 1"),
            "{why}"
        );

        // Two extended headers for one entry.
        let p = record("path", "upstream/a");
        let mut bytes = with_data(header_block("P", b'x', p.len() as u64, false), p.as_bytes());
        bytes.extend(with_data(
            header_block("P", b'x', p.len() as u64, false),
            p.as_bytes(),
        ));
        bytes.extend(header_block("upstream/b", b'0', 0, false));
        assert!(refused(&bytes).contains("two extended headers"));
    }

    #[test]
    fn ambiguous_headers_are_refused() {
        let mut gnu = header_block("upstream/a", b'0', 0, true);
        gnu[345] = b'x'; // Python would read "x/upstream/a"
        let t = tar::Header::from_byte_slice(&gnu).clone();
        let mut t = t;
        t.set_cksum();
        assert!(refused(t.as_bytes()).contains("GNU header"));

        let mut v7 = header_block("upstream/a", b'0', 0, false);
        v7[257..265].copy_from_slice(&[0; 8]);
        let mut t = tar::Header::from_byte_slice(&v7).clone();
        t.set_cksum();
        assert!(refused(t.as_bytes()).contains("neither POSIX"));

        assert!(number(b"\x0000012 \0", "size").is_err()); // Go: 10, Python: 0
        assert_eq!(number(b"0000012\0", "size"), Ok(10));
        assert_eq!(number(b"   12 \0\0", "size"), Ok(10));
        assert_eq!(number(b"\0\0\0\0", "size"), Ok(0));
        assert!(number(b"-0000012", "size").is_err());
        assert!(number(b"\xff\xff\xff\xff", "size").is_err());
        assert_eq!(number(&[0x80, 0, 0, 1, 0], "size"), Ok(256));

        assert!(refused(&header_block("g", b'g', 0, false)).contains("global"));
        let dir = with_data(header_block("upstream/d/", b'5', 3, false), b"abc");
        assert!(refused(&dir).contains("directory with data"));
        let dir = header_block("upstream/d/", b'5', 0, false);
        assert_eq!(entry(&dir).name, "upstream/d");
    }

    #[test]
    fn end_and_eof() {
        assert!(matches!(parse(&[]), Ok(Next::Eof)));
        assert!(matches!(parse(&[0u8; 1024]), Ok(Next::End)));
        assert!(matches!(parse(&[1u8; 100]), Err(HeaderError::Io(_))));
    }
}
