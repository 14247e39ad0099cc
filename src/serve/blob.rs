//! A blob out of the archive as an HTTP body: streamed through a small bounded channel from
//! a blocking reader (memory stays flat whatever the layer's size), the whole blob hashed as
//! it is read, and the response's last bytes held back until the digest is proven. A blob
//! that does not match ends in an error instead: hyper then cuts the connection, so the
//! client sees a short body, never a complete response with bad bytes.
//!
//! A Range request reads the whole blob too (the bytes before and after the range are
//! hashed, not sent): a part cannot be checked on its own.

use std::io::Read;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;

use crate::archive::ArchiveReader;
use crate::digest::Digest;

use super::Body;

const CHUNK: usize = 256 * 1024;
/// Chunks in flight per response: with [`CHUNK`], at most about 1 MiB per client.
const IN_FLIGHT: usize = 2;

/// The body of a GET of `digest` (`size` bytes), or of `range` of it.
pub fn body(
    reader: Arc<ArchiveReader>,
    digest: Digest,
    size: u64,
    range: RangeInclusive<u64>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Frame<Bytes>>>(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send(&reader, &digest, size, range, &tx) {
            tracing::error!(
                "blob {digest} in {}: {e}; the response was cut short (run `kots-bundle verify` on the archive)",
                reader.path().display()
            );
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    http_body_util::BodyExt::boxed(StreamBody::new(stream))
}

/// Why sending stopped early without an error of the blob's own.
struct Gone;

fn send(
    reader: &ArchiveReader,
    digest: &Digest,
    size: u64,
    range: RangeInclusive<u64>,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Frame<Bytes>>>,
) -> std::io::Result<()> {
    let mut blob = reader.blob(digest).map_err(std::io::Error::from)?;
    let (start, end) = (*range.start(), *range.end());
    let mut pos = 0u64;
    // The last piece of the response, sent only once the whole blob has matched.
    let mut held: Option<Bytes> = None;
    let push = |held: &mut Option<Bytes>, next: Bytes| -> Result<(), Gone> {
        if let Some(prev) = held.replace(next) {
            tx.blocking_send(Ok(Frame::data(prev))).map_err(|_| Gone)?;
        }
        Ok(())
    };
    loop {
        let mut buf = vec![0u8; CHUNK];
        // VerifyingReader: the read that reaches the declared size fails if the digest
        // does not match, so the last chunk of a bad blob never comes back.
        let n = blob.read(&mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let chunk = Bytes::from(buf);
        let (from, to) = (pos, pos + n as u64); // [from, to)
        pos = to;
        if to > start && from <= end {
            let a = start.saturating_sub(from) as usize;
            let b = ((end + 1).min(to) - from) as usize;
            if push(&mut held, chunk.slice(a..b)).is_err() {
                return Ok(()); // the client went away
            }
        }
    }
    if pos != size {
        return Err(std::io::Error::other(format!(
            "read {pos} bytes, the index says {size}"
        )));
    }
    if let Some(last) = held {
        let _ = tx.blocking_send(Ok(Frame::data(last)));
    }
    Ok(())
}
