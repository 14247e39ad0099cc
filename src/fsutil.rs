//! Small file-system helpers shared by every writer: files appear whole or not at all.

use std::io::Write as _;
use std::path::Path;

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename.
/// `secret` files are readable by their owner only (mode 0600) from the first byte.
pub fn write_atomic(path: &Path, data: &[u8], secret: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // A temp file is 0600 by default; an ordinary file gets what the umask gives (as
    // `fs::write` would), a secret one stays owner-only from the first byte.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if secret { 0o600 } else { 0o666 };
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Points `link` at `target` (a relative symlink), atomically replacing whatever link is
/// there: a new link beside it, renamed over the old one.
#[cfg(unix)]
pub fn replace_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    if let Ok(current) = std::fs::read_link(link) {
        if current == target {
            return Ok(());
        }
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_secret_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let other = tempfile::tempdir().unwrap();
            let plain = other.path().join("plain");
            std::fs::write(&plain, b"x").unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&p), mode(&plain), "an ordinary file: the umask's mode");
        }
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn symlink_is_replaced_in_one_step() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::create_dir(d.path().join("b")).unwrap();
        let link = d.path().join("current");
        replace_symlink(Path::new("a"), &link).unwrap();
        replace_symlink(Path::new("b"), &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("b"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }
}
