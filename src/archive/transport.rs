//! Import's end of the copy engine: [`ArchiveSource`] reads blobs in place, many at once,
//! each from its own file handle (export's end is [`super::ArchiveDest`]).

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{ArchiveError, ArchiveReader};
use crate::copy::{BlobStream, CopyError, ImageSource};
use crate::digest::Digest;
use crate::manifest::{sniff_media_type, Descriptor, Manifest};
use crate::reference::Reference;

const CHUNK: usize = 256 * 1024;
/// Chunks are cut from blocks this large: a stream holds a few blocks at most (its channel
/// holds 4 chunks).
const BLOCK: usize = 4 * CHUNK;

/// The archive's errors as the copy engine carries them (the message is the archive's).
impl From<ArchiveError> for CopyError {
    fn from(e: ArchiveError) -> CopyError {
        CopyError::Transport(Box::new(e))
    }
}

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
            // Chunks are cut from blocks of a few chunks, and a block is reused once the
            // consumer has dropped its chunks: no fresh zeroed allocation per chunk.
            let mut block = BytesMut::new();
            loop {
                if block.capacity() < CHUNK {
                    block.reserve(BLOCK);
                }
                block.resize(CHUNK, 0);
                match r.read(&mut block) {
                    Ok(0) => return,
                    Ok(n) => {
                        block.truncate(n);
                        if tx.blocking_send(Ok(block.split().freeze())).is_err() {
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
