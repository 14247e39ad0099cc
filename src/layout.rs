//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`): the `oci:`
//! transport. `pull` keeps its images here (`DIR/images`) so a re-run fetches nothing twice;
//! `skopeo copy oci:DIR/images:REF` reads it.
//!
//! Blobs are written to a temp file and renamed into place only once their digest checked
//! out, so a blob file that exists is a verified blob.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::archive::reader_stream;
use crate::copy::{BlobOpener, BlobStream, CopyError, ImageDestination, ImageSource};
use crate::digest::{Digest, VerifyingReader};
use crate::manifest::{sniff_media_type, Descriptor, Manifest, REF_NAME_ANNOTATION};
use crate::reference::Reference;

pub struct Layout {
    root: PathBuf,
    /// Serializes `index.json` updates.
    index_lock: Mutex<()>,
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> CopyError + '_ {
    move |e| {
        CopyError::Io(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        ))
    }
}

impl Layout {
    /// Opens the layout at `root`, creating an empty one if the directory has none.
    pub fn open_or_create(root: &Path) -> Result<Layout, CopyError> {
        std::fs::create_dir_all(root.join("blobs/sha256")).map_err(io_at(root))?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Layout {
            root: root.to_path_buf(),
            index_lock: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.layout_path())
    }

    fn read_index(&self) -> Result<serde_json::Value, CopyError> {
        let p = self.root.join("index.json");
        let data = std::fs::read(&p).map_err(io_at(&p))?;
        serde_json::from_slice(&data)
            .map_err(|e| CopyError::Io(std::io::Error::other(format!("{}: {e}", p.display()))))
    }

    /// The descriptor `index.json` lists for `image`, matched by the ref-name annotation
    /// (normalized, so `nginx:1` finds `docker.io/library/nginx:1`).
    fn lookup(&self, image: &Reference) -> Result<Option<(Digest, String)>, CopyError> {
        let index = self.read_index()?;
        let found = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| {
                d["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .and_then(|n| Reference::parse(n).ok())
                    .is_some_and(|r| &r == image)
            });
        Ok(found.and_then(|d| {
            let digest = d["digest"].as_str()?.parse().ok()?;
            Some((
                digest,
                d["mediaType"].as_str().unwrap_or_default().to_string(),
            ))
        }))
    }

    /// Points `name` at `manifest` in `index.json` (replacing an older entry of that name).
    fn tag(&self, name: &Reference, manifest: &Manifest) -> Result<(), CopyError> {
        let _guard = self.index_lock.lock().expect("index lock");
        let mut index = self.read_index()?;
        let name_str = name.to_string();
        let list = index["manifests"].as_array_mut().ok_or_else(|| {
            CopyError::Io(std::io::Error::other(format!(
                "{}: index.json has no manifests list",
                self.root.display()
            )))
        })?;
        list.retain(|d| d["annotations"][REF_NAME_ANNOTATION].as_str() != Some(name_str.as_str()));
        list.push(serde_json::json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "annotations": { REF_NAME_ANNOTATION: name_str },
        }));
        write_atomic(
            &self.root.join("index.json"),
            &serde_json::to_vec_pretty(&index).expect("json"),
        )
    }

    fn write_blob_bytes(&self, digest: &Digest, data: &[u8]) -> Result<(), CopyError> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        if &Digest::of(data) != digest {
            return Err(CopyError::Io(std::io::Error::other(format!(
                "blob {digest}: content does not match"
            ))));
        }
        write_atomic(&path, data)
    }
}

/// What [`Layout::prune`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

impl Layout {
    /// Keeps only `keep` in `index.json`, then deletes every blob no kept image reaches
    /// (through an index's manifests, a manifest's config and layers): after an update the
    /// layout holds what the current version needs, no more.
    pub fn prune(&self, keep: &[Reference]) -> Result<Pruned, CopyError> {
        let _guard = self.index_lock.lock().expect("index lock");
        let mut index = self.read_index()?;
        let mut pruned = Pruned::default();
        let Some(list) = index["manifests"].as_array_mut() else {
            return Ok(pruned);
        };
        let before = list.len();
        list.retain(|d| {
            d["annotations"][REF_NAME_ANNOTATION]
                .as_str()
                .and_then(|n| Reference::parse(n).ok())
                .is_some_and(|r| keep.contains(&r))
        });
        pruned.images = before - list.len();
        let mut todo: Vec<(String, bool)> = list
            .iter()
            .filter_map(|d| d["digest"].as_str().map(|s| (s.to_string(), true)))
            .collect();
        if pruned.images > 0 {
            write_atomic(
                &self.root.join("index.json"),
                &serde_json::to_vec_pretty(&index).expect("json"),
            )?;
        }

        let mut live = std::collections::HashSet::new();
        while let Some((digest, is_manifest)) = todo.pop() {
            let Ok(d) = digest.parse::<Digest>() else {
                continue;
            };
            if !live.insert(d.hex().to_string()) || !is_manifest {
                continue;
            }
            // A manifest of a platform that was not kept is absent; nothing below it is here.
            let Ok(data) = std::fs::read(self.blob_path(&d)) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
                continue;
            };
            let digests = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["digest"].as_str().map(str::to_string))
                    .collect()
            };
            todo.extend(digests("manifests").into_iter().map(|x| (x, true)));
            todo.extend(digests("layers").into_iter().map(|x| (x, false)));
            if let Some(c) = v["config"]["digest"].as_str() {
                todo.push((c.to_string(), false));
            }
        }

        let dir = self.root.join("blobs/sha256");
        for entry in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temporary files of a write in progress start with a dot; only blob files go.
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if name.starts_with('.') || live.contains(&name) || !is_file {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
            pruned.blobs += 1;
            pruned.bytes += size;
        }
        Ok(pruned)
    }
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), CopyError> {
    crate::fsutil::write_atomic(path, data, false).map_err(io_at(path))
}

#[async_trait]
impl ImageSource for Layout {
    async fn manifest(&self, image: &Reference, reference: &str) -> Result<Manifest, CopyError> {
        let (digest, media_type) = match reference.parse::<Digest>() {
            Ok(d) => (d, None),
            Err(_) => {
                let (d, mt) = self.lookup(image)?.ok_or_else(|| CopyError::Image {
                    image: image.to_string(),
                    why: format!("not in the OCI layout {}", self.root.display()),
                })?;
                (d, Some(mt).filter(|m| !m.is_empty()))
            }
        };
        let path = self.blob_path(&digest);
        let data = std::fs::read(&path).map_err(io_at(&path))?;
        if Digest::of(&data) != digest {
            return Err(CopyError::Image {
                image: image.to_string(),
                why: format!("{} does not match its digest", path.display()),
            });
        }
        let media_type = media_type
            .or_else(|| sniff_media_type(&data))
            .unwrap_or_default();
        Ok(Manifest {
            bytes: Bytes::from(data),
            media_type,
            digest,
        })
    }

    fn blob(&self, _image: &Reference, desc: &Descriptor) -> BlobStream {
        let path = self.blob_path(&desc.digest);
        let (digest, size) = (desc.digest.clone(), desc.size);
        reader_stream(move || {
            let f = std::fs::File::open(&path)?;
            Ok(VerifyingReader::new(
                std::io::BufReader::with_capacity(1 << 20, f),
                digest,
                size,
            ))
        })
    }
}

#[async_trait]
impl ImageDestination for Layout {
    fn concurrency(&self) -> usize {
        4
    }

    async fn has_blob(&self, _target: &Reference, desc: &Descriptor) -> Result<bool, CopyError> {
        Ok(self.blob_path(&desc.digest).exists())
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<(), CopyError> {
        let path = self.blob_path(&desc.digest);
        let dir = path.parent().expect("blob dir").to_path_buf();
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
        // Every source stream verifies digest and size and fails at its end on a mismatch,
        // so reaching the rename means the content is right; no second hash here.
        let mut stream = blob.open();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).map_err(io_at(&path))?;
        }
        out.flush().map_err(io_at(&path))?;
        drop(out);
        tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        Ok(())
    }

    async fn has_manifest(
        &self,
        target: &Reference,
        reference: &str,
        digest: &Digest,
    ) -> Result<bool, CopyError> {
        if reference.parse::<Digest>().is_ok() {
            return Ok(self.blob_path(digest).exists());
        }
        Ok(self.lookup(target)?.is_some_and(|(d, _)| &d == digest)
            && self.blob_path(digest).exists())
    }

    async fn put_manifest(
        &self,
        target: &Reference,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        self.write_blob_bytes(&manifest.digest, &manifest.bytes)?;
        if reference.parse::<Digest>().is_err()
            || target.digest().is_some_and(|d| d.as_str() == reference)
        {
            self.tag(target, manifest)?;
        }
        Ok(())
    }
}
