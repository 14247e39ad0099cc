//! Content digests (`sha256:<hex>`) and readers that verify them while bytes stream past.
//!
//! Every blob kots-bundle moves goes through a [`VerifyingReader`] (sync) or
//! [`VerifyingStream`] (async) so a corrupt byte is caught in the same pass that moves it,
//! never in a second read.

use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex characters>")]
    Invalid(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// The hex part, e.g. the file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Path of this blob inside an OCI image layout.
    pub fn layout_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Digest(s.to_string()))
        } else {
            Err(DigestError::Invalid(s.to_string()))
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 plus a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.sha.finalize())))
    }
}

/// Why a blob's bytes did not match its descriptor.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("blob {expected}: content has digest {actual}")]
    Digest { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}{}", if *.more { " or more" } else { "" })]
    Size {
        digest: Digest,
        expected: u64,
        actual: u64,
        more: bool,
    },
}

/// The state shared by the sync and async verifiers: hashes and counts, and refuses to
/// read past the declared size so a lying size cannot make us read (or push) without end.
struct Check {
    hasher: Hasher,
    expected: Digest,
    size: u64,
}

impl Check {
    fn feed(&mut self, data: &[u8]) -> Result<(), VerifyError> {
        if self.hasher.len() + data.len() as u64 > self.size {
            return Err(VerifyError::Size {
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.hasher.len() + data.len() as u64,
                more: true,
            });
        }
        self.hasher.update(data);
        // Checked as soon as the declared size is reached, not at end of stream: an HTTP
        // body with a Content-Length is never polled for its end, so a check left to EOF
        // would never run on an upload, and the last chunk of a bad blob is withheld.
        if self.hasher.len() == self.size {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), VerifyError> {
        if self.hasher.len() != self.size {
            return Err(VerifyError::Size {
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.hasher.len(),
                more: false,
            });
        }
        let actual = self.hasher.clone().finish();
        if actual != self.expected {
            return Err(VerifyError::Digest {
                expected: self.expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// Wraps a reader; returns an error instead of EOF when the content does not match.
pub struct VerifyingReader<R> {
    inner: R,
    check: Check,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            check: Check {
                hasher: Hasher::new(),
                expected,
                size,
            },
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // Read at most one byte past the declared size so an overlong blob is noticed.
        let remaining = self.check.size - self.check.hasher.len();
        let cap = buf
            .len()
            .min(remaining.saturating_add(1).try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            self.check
                .finish()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.done = true;
            return Ok(0);
        }
        self.check
            .feed(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

/// Wraps a byte stream (an HTTP body); yields an error instead of the end when the
/// content does not match.
pub struct VerifyingStream<S> {
    inner: S,
    check: Check,
    done: bool,
}

impl<S> VerifyingStream<S> {
    pub fn new(inner: S, expected: Digest, size: u64) -> Self {
        VerifyingStream {
            inner,
            check: Check {
                hasher: Hasher::new(),
                expected,
                size,
            },
            done: false,
        }
    }
}

impl<S, E> Stream for VerifyingStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => match self.check.feed(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(e) => {
                    self.done = true;
                    Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                match self.check.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Digest::of(b"hello");
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("sha512:".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64))
            .parse::<Digest>()
            .is_err());
    }

    #[test]
    fn verifying_reader_catches_flip_and_size() {
        let data = b"some blob content".to_vec();
        let d = Digest::of(&data);
        let mut ok = VerifyingReader::new(&data[..], d.clone(), data.len() as u64);
        io::copy(&mut ok, &mut io::sink()).unwrap();

        let mut bad = data.clone();
        bad[3] ^= 1;
        let mut r = VerifyingReader::new(&bad[..], d.clone(), data.len() as u64);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("content has digest"), "{e}");

        let mut r = VerifyingReader::new(&data[..], d.clone(), 4);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("expected 4 bytes"), "{e}");

        let mut r = VerifyingReader::new(&data[..5], d, data.len() as u64);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(e.to_string().contains("got 5"), "{e}");
    }
}
