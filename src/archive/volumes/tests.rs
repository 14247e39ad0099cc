//! Volume sets written, read back as one stream, and damaged one way after another.

use std::io::Write;

use super::*;

#[test]
fn names() {
    let first = Path::new("/m/app.airgap");
    assert_eq!(volume_path(first, 1), first);
    assert_eq!(volume_path(first, 2), Path::new("/m/app.airgap.002"));
    assert_eq!(
        split_volume_name(Path::new("/m/app.airgap.010")),
        Some((first.to_path_buf(), 10))
    );
    assert_eq!(split_volume_name(Path::new("/m/app.airgap.001")), None);
    assert_eq!(split_volume_name(first), None);
    assert_eq!(split_volume_name(Path::new("app.airgap.2")), None);
}

fn write_set(dir: &Path, data: &[u8], max: u64) -> Vec<PathBuf> {
    let mut w = VolumeWriter::create(&dir.join("a.airgap"), Some(max)).unwrap();
    for chunk in data.chunks(7777) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn a_set_reads_back_as_one_stream_with_seeks_across_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(3 * MIN_VOLUME_SIZE as usize);
    let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= MIN_VOLUME_SIZE);
    }
    let v = Volumes::open(&files[0]).unwrap();
    assert_eq!(v.len(), d.len() as u64);
    let mut r = v.reader().hashing();
    let mut back = Vec::new();
    r.read_to_end(&mut back).unwrap();
    assert!(back == d);
    v.check_hashes(r.finish_hashes().unwrap().unwrap()).unwrap();
    // A read that straddles the first boundary.
    let edge = std::fs::metadata(&files[0]).unwrap().len() - FIRST_RESERVE / 2;
    let mut r = v.reader();
    r.seek(SeekFrom::Start(edge - 10)).unwrap();
    let mut buf = vec![0u8; 4000];
    r.read_exact(&mut buf).unwrap();
    assert!(buf[..] == d[edge as usize - 10..edge as usize + 3990]);
    for f in &files[1..] {
        let c = Volumes::check_one(f).unwrap();
        assert_eq!(c.checked_against.as_deref(), Some(files[0].as_path()));
    }
    assert_eq!(Volumes::check_one(&files[0]).unwrap().volume, 1);
}

#[test]
fn what_fits_one_volume_is_a_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(1000);
    let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
    assert_eq!(files.len(), 1);
    assert!(std::fs::read(&files[0]).unwrap() == d);
}

#[test]
fn missing_truncated_and_swapped_volumes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(2 * MIN_VOLUME_SIZE as usize);
    let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
    assert_eq!(files.len(), 3);
    let other = tempfile::tempdir().unwrap();
    let other_files = write_set(other.path(), &d, MIN_VOLUME_SIZE);

    let keep = std::fs::read(&files[1]).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let e = Volumes::open(&files[0]).unwrap_err().to_string();
    assert!(
        e.contains("volume 2") && e.contains("a.airgap.002") && e.contains("missing"),
        "{e}"
    );

    std::fs::write(&files[1], &keep[..keep.len() - 100]).unwrap();
    let e = Volumes::open(&files[0]).unwrap_err().to_string();
    assert!(e.contains("a.airgap.002") && e.contains("truncated"), "{e}");
    let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
    assert!(e.contains("no volume trailer"), "{e}");

    std::fs::copy(&other_files[1], &files[1]).unwrap();
    let e = Volumes::open(&files[0]).unwrap_err().to_string();
    assert!(
        e.contains("a.airgap.002") && e.contains("another export"),
        "{e}"
    );
    let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
    assert!(e.contains("another export"), "{e}");

    std::fs::write(&files[1], &keep).unwrap();
    std::fs::rename(&files[2], dir.path().join("x")).unwrap();
    std::fs::rename(&files[1], &files[2]).unwrap();
    std::fs::rename(dir.path().join("x"), &files[1]).unwrap();
    let e = Volumes::open(&files[0]).unwrap_err().to_string();
    assert!(
        e.contains("a.airgap.002") && e.contains("holds volume 3"),
        "{e}"
    );

    let e = Volumes::open(&files[2]).unwrap_err().to_string();
    assert!(e.contains("is volume 2 of 3"), "{e}");
}

#[test]
fn a_flipped_byte_is_found_in_its_volume() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(2 * MIN_VOLUME_SIZE as usize);
    let files = write_set(dir.path(), &d, MIN_VOLUME_SIZE);
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&files[1], &bytes).unwrap();
    let v = Volumes::open(&files[0]).unwrap();
    let mut r = v.reader().hashing();
    let e = v
        .check_hashes(r.finish_hashes().unwrap().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("volume 2") && e.contains("damaged"), "{e}");
    let e = Volumes::check_one(&files[1]).unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    assert!(Volumes::check_one(&files[2]).is_ok());
}
