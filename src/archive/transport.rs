//! The archive as a copy-engine end: [`ArchiveSource`] (import reads blobs in place, many at
//! once, each from its own file handle) and [`ArchiveDest`] (export appends blobs in order).

use std::io::Read;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{ArchiveError, ArchiveReader, ArchiveWriter};
use crate::copy::{
    sniff_media_type, CopyError, Descriptor, ImageDestination, ImageSource, Manifest,
};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::BlobStream;

const CHUNK: usize = 256 * 1024;

pub struct ArchiveSource {
    reader: Arc<ArchiveReader>,
}

impl ArchiveSource {
    pub fn new(reader: Arc<ArchiveReader>) -> Self {
        ArchiveSource { reader }
    }
}

#[async_trait]
impl ImageSource for ArchiveSource {
    async fn manifest(&self, image: &Reference, reference: &str) -> Result<Manifest, CopyError> {
        let (digest, media_type) = match reference.parse::<Digest>() {
            Ok(d) => (d, None),
            Err(_) => {
                let rec = self.reader.image(image).ok_or_else(|| CopyError::Image {
                    image: image.to_string(),
                    why: format!("not in archive {}", self.reader.path().display()),
                })?;
                (rec.digest.clone(), Some(rec.media_type.clone()))
            }
        };
        let reader = self.reader.clone();
        let d = digest.clone();
        let bytes = tokio::task::spawn_blocking(move || reader.read_blob(&d))
            .await
            .map_err(|e| CopyError::Io(std::io::Error::other(e)))??;
        let media_type = media_type
            .or_else(|| sniff_media_type(&bytes))
            .ok_or_else(|| CopyError::Image {
                image: image.to_string(),
                why: format!("manifest {digest} has no media type"),
            })?;
        Ok(Manifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest,
        })
    }

    fn blob(&self, _image: &Reference, desc: &Descriptor) -> BlobStream {
        let reader = self.reader.clone();
        let digest = desc.digest.clone();
        reader_stream(move || reader.blob(&digest).map_err(Into::into))
    }
}

/// Streams a blocking reader through a small bounded channel from a blocking thread; the
/// thread starts on first poll, so an unpolled stream costs nothing.
pub fn reader_stream<R, F>(open: F) -> BlobStream
where
    R: Read + Send + 'static,
    F: FnOnce() -> std::io::Result<R> + Send + 'static,
{
    let started = futures_util::stream::once(async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let mut r = match open() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                match r.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return; // the consumer went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    })
    .flatten();
    Box::pin(started)
}

impl From<ArchiveError> for std::io::Error {
    fn from(e: ArchiveError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Export's end: blobs are appended one at a time (a tar is sequential).
pub struct ArchiveDest {
    writer: Arc<Mutex<Option<ArchiveWriter>>>,
}

impl ArchiveDest {
    pub fn new(writer: ArchiveWriter) -> Self {
        ArchiveDest {
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Gives the writer back to finish the archive.
    pub fn into_writer(self) -> ArchiveWriter {
        self.writer
            .lock()
            .expect("archive writer lock")
            .take()
            .expect("archive writer present")
    }

    fn with<T>(&self, f: impl FnOnce(&mut ArchiveWriter) -> T) -> T {
        let mut guard = self.writer.lock().expect("archive writer lock");
        f(guard.as_mut().expect("archive writer present"))
    }
}

#[async_trait]
impl ImageDestination for ArchiveDest {
    fn concurrency(&self) -> usize {
        1
    }

    async fn has_blob(&self, _target: &Reference, desc: &Descriptor) -> Result<bool, CopyError> {
        Ok(self.with(|w| w.has_blob(&desc.digest)))
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        desc: &Descriptor,
        open: &(dyn Fn() -> BlobStream + Send + Sync),
    ) -> Result<(), CopyError> {
        let stream = open().map(|r| r.map_err(std::io::Error::other));
        let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let writer = self.writer.clone();
        let desc = desc.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = writer.lock().expect("archive writer lock");
            guard.as_mut().expect("archive writer present").add_blob(
                &desc.digest,
                desc.size,
                &desc.media_type,
                bridge,
            )
        })
        .await
        .map_err(|e| CopyError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    async fn has_manifest(
        &self,
        _target: &Reference,
        _reference: &str,
        digest: &Digest,
    ) -> Result<bool, CopyError> {
        Ok(self.with(|w| w.has_blob(digest)))
    }

    async fn put_manifest(
        &self,
        _target: &Reference,
        _reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        let m = manifest.clone();
        self.with(|w| w.add_blob(&m.digest, m.bytes.len() as u64, &m.media_type, &m.bytes[..]))?;
        Ok(())
    }
}
