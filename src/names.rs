//! The one sanitizer: every name that comes from a manifest, a release or an archive passes
//! through here before it becomes part of a path on disk.
//!
//! - [`relative_path`] is the rule for a file of the app (upstream files, archive entries):
//!   the archive writer, the archive reader, the upstream loader and the app-directory writer
//!   all call it, so what one accepts the others accept too.
//! - [`check_tree`] refuses sets of paths that cannot all exist at once (`a` beside `a/b`).
//! - [`path_component`] turns any string (a kind, a name, a namespace) into one safe file
//!   name component.
//! - [`app_name`] checks an app name (a directory and file name: DNS-1123 label style), and
//!   [`app_name_from`] derives one from free text.

use std::collections::BTreeSet;
use std::fmt;

/// Longest relative path accepted for a file of the app, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest path component (most file systems' NAME_MAX).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest app name (a DNS-1123 label).
pub const MAX_APP_NAME: usize = 63;

/// Why a path or name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(why: impl Into<String>) -> Refused {
    Refused(why.into())
}

/// Checks a `/`-separated path of a file of the app, as stored: relative, no `.`/`..` or
/// empty components, no backslash, NUL or control characters, components and the whole
/// path within [`MAX_COMPONENT_BYTES`] and [`MAX_PATH_BYTES`].
pub fn relative_path(path: &str) -> Result<(), Refused> {
    if path.is_empty() {
        return Err(refused("empty path"));
    }
    if path.starts_with('/') {
        return Err(refused("absolute path"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(refused(format!("path longer than {MAX_PATH_BYTES} bytes")));
    }
    if path.contains('\\') {
        return Err(refused("path with a backslash"));
    }
    if path.chars().any(char::is_control) {
        return Err(refused(
            "path with a NUL, newline or other control character",
        ));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(refused("path with an empty component")),
            "." | ".." => return Err(refused("path with a '.' or '..' component")),
            p if p.len() > MAX_COMPONENT_BYTES => {
                return Err(refused(format!(
                    "path component longer than {MAX_COMPONENT_BYTES} bytes"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `./a//b` -> `a/b`, then [`relative_path`]. For names from tar headers and directory
/// walks, which may spell the same path several ways; `..` is never resolved, only refused.
pub fn normalize_relative_path(raw: &str) -> Result<String, Refused> {
    let parts: Vec<&str> = raw
        .split('/')
        .enumerate()
        .filter(|(i, p)| !(p.is_empty() && *i > 0) && *p != ".")
        .map(|(_, p)| p)
        .collect();
    let joined = parts.join("/");
    relative_path(&joined)?;
    Ok(joined)
}

/// Refuses a set of paths that cannot all be files at once: a duplicate, or a path that is
/// also the directory of another (`a` beside `a/b.yaml`). Returns the offending path.
pub fn check_tree<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<(), (String, Refused)> {
    let mut files = BTreeSet::new();
    for p in paths {
        if !files.insert(p) {
            return Err((p.to_string(), refused("appears twice")));
        }
    }
    let mut dirs = BTreeSet::new();
    for p in &files {
        let mut end = 0;
        while let Some(i) = p[end..].find('/') {
            end += i;
            dirs.insert(&p[..end]);
            end += 1;
        }
    }
    if let Some(p) = files.iter().find(|p| dirs.contains(*p)) {
        return Err((
            p.to_string(),
            refused("is a file and also the directory of other files"),
        ));
    }
    Ok(())
}

/// Any string as one safe, readable file name component: lowercase ASCII letters, digits,
/// `-`, `_` and `.`; everything else becomes `-`; no leading dot; never empty; at most 100
/// bytes (a longer name is cut and keeps a short hash of the whole, so two long names that
/// share a prefix stay apart).
pub fn path_component(s: &str) -> String {
    const MAX: usize = 100;
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out = out
        .trim_matches(|c| c == '-' || c == '.')
        .replace("..", "-");
    if out.len() > MAX {
        let hash = crate::digest::Digest::of(s.as_bytes());
        let short = &hash.hex()[..8];
        out.truncate(MAX - 9);
        out = format!("{}-{short}", out.trim_end_matches(['-', '.']));
    }
    if out.is_empty() {
        "x".to_string()
    } else {
        out
    }
}

/// Checks an app name: DNS-1123 style (lowercase letters, digits, `-` and `.`; each
/// `.`-separated part starts and ends with a letter or digit), at most [`MAX_APP_NAME`]
/// bytes. It names the app directory and the `.airgap` file, so nothing else is accepted.
pub fn app_name(s: &str) -> Result<(), Refused> {
    if s.is_empty() {
        return Err(refused("the app name is empty"));
    }
    if s.len() > MAX_APP_NAME {
        return Err(refused(format!(
            "the app name is longer than {MAX_APP_NAME} characters"
        )));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ok_label = |l: &str| {
        !l.is_empty() && l.chars().all(ok_char) && !l.starts_with('-') && !l.ends_with('-')
    };
    if !s.split('.').all(ok_label) {
        return Err(refused(
            "an app name may hold only lowercase letters, digits, '-' and '.', and each \
             '.'-separated part must start and end with a letter or digit",
        ));
    }
    Ok(())
}

/// Derives an app name from free text (a slug, a directory or file name): lowercased, other
/// characters become `-`, cut to [`MAX_APP_NAME`]. `None` when nothing usable is left.
pub fn app_name_from(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            c
        } else {
            '-'
        };
        let last = out.chars().last();
        let boundary = matches!(last, None | Some('-') | Some('.'));
        if (c == '-' || c == '.') && boundary {
            if c == '.' && last == Some('-') {
                out.pop(); // `a-.b` -> `a.b`
                out.push('.');
            }
            continue;
        }
        out.push(c);
    }
    out.truncate(MAX_APP_NAME);
    let out = out.trim_end_matches(['-', '.']).to_string();
    app_name(&out).ok().map(|()| out)
}

/// A name shown to a person (in `inspect`, in errors): printable, with control characters
/// and non-ASCII escaped, so a hostile name cannot rewrite the terminal.
pub fn escaped(s: &str) -> String {
    s.escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(relative_path("a/b.yaml").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\0b",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(relative_path(&"a".repeat(256)).is_err());
        assert!(relative_path(&format!("{}/x", "a/".repeat(600))).is_err());
        assert_eq!(normalize_relative_path("./a//b/").unwrap(), "a/b");
        assert!(normalize_relative_path("a/../b").is_err());
        assert!(normalize_relative_path("/a").is_err());
    }

    #[test]
    fn trees() {
        assert!(check_tree(["a/b.yaml", "a/c.yaml", "ab"]).is_ok());
        assert_eq!(check_tree(["a", "a/b.yaml"]).unwrap_err().0, "a");
        assert_eq!(check_tree(["x/y", "x/y/z/w"]).unwrap_err().0, "x/y");
        assert_eq!(check_tree(["q", "q"]).unwrap_err().0, "q");
    }

    #[test]
    fn components_are_safe() {
        assert_eq!(path_component("Deployment"), "deployment");
        assert_eq!(path_component("../../../../outside/x"), "outside-x");
        assert_eq!(path_component(".."), "x");
        assert_eq!(path_component("a..b"), "a-b");
        assert_eq!(path_component(""), "x");
        let long = path_component(&"n".repeat(300));
        assert!(long.len() <= 100 && long.starts_with("nnn"), "{long}");
        assert_ne!(long, path_component(&"n".repeat(301)));
        for s in ["/", "\\", "a/b", "C:\\x", "\u{202e}evil"] {
            let c = path_component(s);
            assert!(
                relative_path(&c).is_ok() && !c.contains('/'),
                "{s:?} -> {c:?}"
            );
        }
    }

    #[test]
    fn app_names() {
        assert!(app_name("postgres-snapshots").is_ok());
        assert!(app_name("web-1.0").is_ok());
        for bad in [
            "", "/etc", "../x", "a b", "UPPER", "-a", "a-", "a..b", ".a", "a.", "a.-b",
        ] {
            assert!(app_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(app_name_from("My App 2").as_deref(), Some("my-app-2"));
        assert_eq!(app_name_from("../../etc").as_deref(), Some("etc"));
        assert_eq!(app_name_from("web-1.0").as_deref(), Some("web-1.0"));
        assert_eq!(app_name_from("a -. b").as_deref(), Some("a.b"));
        assert_eq!(app_name_from("---"), None);
        assert_eq!(app_name_from(&"x".repeat(80)).unwrap().len(), 63);
        assert_eq!(escaped("a\x1b[2Jb"), "a\\u{1b}[2Jb");
    }
}
