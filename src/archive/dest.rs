//! Export's end of the copy engine: [`ArchiveDest`] fetches blobs ahead of the archive
//! writer, in parts over several connections, and appends them in order.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::ArchiveWriter;
use crate::copy::{BlobOpener, BlobStream, CopyError, ImageDestination};
use crate::digest::{Digest, VerifyingReader};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Reference;

/// Memory for blob parts fetched ahead of the archive writer, whatever the layer sizes, in
/// part buffers (one per connection, unless parts hit [`MAX_PART`] or [`MIN_PART`]). Through 40 ms and 40 MiB/s a connection, 8 connections ran
/// 2.05 s with 2.7 MiB parts (24 MiB) and 1.87 s with 4 MiB parts (40 MiB), 60-74 MiB peak
/// resident (scripts/bench --wan-rtt-ms 40).
const WINDOW: u64 = 40 << 20;
/// Parts are at most this large (fewer, longer requests) ...
const MAX_PART: u64 = 8 << 20;
/// ... and at least this large (a request's round trip is worth its bytes).
const MIN_PART: u64 = 1 << 20;
/// The longest part is a multiple of this.
const UNIT: u64 = 64 << 10;

/// Export's end. A tar is written in order, but its blobs need not arrive in order: each
/// blob is fetched ahead of the writer in parts (`Range` requests, several connections per
/// blob) into a bounded window of memory, and blobs are written one after another in the
/// order the copy engine handed them over, each hashed as it is written. Memory stays under
/// [`WINDOW`] whatever the layer sizes. A source that cannot serve parts is streamed whole.
pub struct ArchiveDest {
    writer: Arc<Mutex<Option<ArchiveWriter>>>,
    /// Blobs written or being written; kept apart from the writer, which a blob being
    /// written holds for as long as that takes.
    claimed: Mutex<HashSet<Digest>>,
    concurrency: usize,
    part_size: u64,
    /// Part buffers of `part_size` ([`WINDOW`] in all) for parts fetched and not yet
    /// written, granted in write order so the part the writer needs next always gets one.
    window: Arc<Semaphore>,
    /// Parts' turns to claim window memory: write order.
    memory: Arc<Parts>,
    /// Connections fetching parts at once (`--concurrency`).
    conns: Arc<Semaphore>,
    order: Arc<Order>,
    /// A source answered a ranged request with the whole blob: fetch whole from now on.
    no_parts: Arc<AtomicBool>,
    /// Part buffers, reused: fresh multi-MiB buffers freed on other threads stay in the
    /// allocator's per-thread arenas and grow the resident size well past the window.
    buffers: Buffers,
}

type Buffers = Arc<Mutex<Vec<Vec<u8>>>>;

impl ArchiveDest {
    /// `concurrency`: connections fetching at once (1: each blob streamed whole, in turn).
    pub fn new(writer: ArchiveWriter, concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        let part_size = (WINDOW / concurrency as u64).clamp(MIN_PART, MAX_PART) / UNIT * UNIT;
        ArchiveDest {
            writer: Arc::new(Mutex::new(Some(writer))),
            claimed: Mutex::new(HashSet::new()),
            concurrency,
            part_size,
            window: Arc::new(Semaphore::new((WINDOW / part_size).max(1) as usize)),
            memory: Arc::default(),
            conns: Arc::new(Semaphore::new(concurrency)),
            order: Arc::new(Order::default()),
            no_parts: Arc::new(AtomicBool::new(false)),
            buffers: Arc::default(),
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

    /// Appends one blob from `reader` on a blocking thread.
    async fn write_blob(
        &self,
        desc: &Descriptor,
        reader: impl Read + Send + 'static,
    ) -> Result<(), CopyError> {
        let writer = self.writer.clone();
        let desc = desc.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = writer.lock().expect("archive writer lock");
            guard.as_mut().expect("archive writer present").add_blob(
                &desc.digest,
                desc.size,
                &desc.media_type,
                reader,
            )
        })
        .await
        .map_err(|e| CopyError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// Fetches `desc` in parts (the first already opened) while earlier blobs are written,
    /// then writes it when its turn comes.
    async fn put_parts(
        &self,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
        first: BlobStream,
        mut ticket: Ticket,
    ) -> Result<(), CopyError> {
        let (tx, rx) = std::sync::mpsc::channel::<PendingPart>();
        let (size, n) = (desc.size, ticket.n);
        // Set when the first part came back as the whole blob.
        let whole = Arc::new(AtomicBool::new(false));
        let fetch = async {
            let mut tasks = tokio::task::JoinSet::new();
            self.order.scheduling.wait(n).await;
            let mut first = Some(first);
            let mut offset = 0;
            while offset < size {
                // After a whole answer to the first part the writer needs nothing more.
                if offset > 0 && whole.load(Ordering::Relaxed) {
                    break;
                }
                let len = (size - offset).min(part_len(size, self.part_size));
                // A connection first, in order; the part's memory only once its answer has
                // started: the request's round trip then costs no window, so a far registry
                // keeps every connection busy within the same memory.
                let conn = self
                    .conns
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the connection pool is never closed");
                let stream = first.take().or_else(|| blob.part(offset, len));
                let (done, pending) = tokio::sync::oneshot::channel();
                if tx.send(pending).is_err() {
                    break; // the writer failed and went away
                }
                let memory = self.memory.ticket();
                let (window, no_parts, whole) =
                    (self.window.clone(), self.no_parts.clone(), whole.clone());
                let (buffers, part_size) = (self.buffers.clone(), self.part_size);
                let digest = desc.digest.clone();
                tasks.spawn(async move {
                    let _conn = conn;
                    let part = match stream {
                        Some(mut s) => {
                            let head = s.next().await;
                            // Memory is claimed in part order, so the part the writer needs
                            // next is never starved by later ones.
                            memory.wait().await;
                            let permit = window
                                .acquire_owned()
                                .await
                                .expect("the window is never closed");
                            drop(memory);
                            let s = futures_util::stream::iter(head).chain(s).boxed();
                            let buf = buffers
                                .lock()
                                .expect("buffers lock")
                                .pop()
                                .unwrap_or_else(|| Vec::with_capacity(part_size as usize));
                            fetch_part(s, buf, &digest, offset, len, [&whole, &no_parts])
                                .await
                                .map(|p| (p, permit))
                        }
                        None => Err(std::io::Error::other(format!(
                            "blob {digest}: the source served its first part but not the part at byte {offset}"
                        ))),
                    };
                    let _ = done.send(part);
                });
                offset += len;
            }
            ticket.scheduled();
            drop(tx);
            tasks
        };
        let write = async {
            self.order.writing.wait(n).await;
            let reader = PartsReader {
                parts: rx,
                buffers: self.buffers.clone(),
                current: Vec::new(),
                at: 0,
                chunks: VecDeque::new(),
                permit: None,
                whole: None,
            };
            self.write_blob(
                desc,
                VerifyingReader::new(reader, desc.digest.clone(), size),
            )
            .await
        };
        // The part tasks live as long as `tasks`: until the blob is written (or failed).
        let (_tasks, written) = tokio::join!(fetch, write);
        ticket.written();
        written
    }
}

/// The length of each part of a blob of `size` (the last may be shorter): the blob cut
/// into equal parts of at most `max`, so its parts arrive together.
fn part_len(size: u64, max: u64) -> u64 {
    size.div_ceil(size.div_ceil(max).max(1)).max(1)
}

/// Reads a part into memory: exactly `len` bytes, or for the first part a whole blob from
/// a source that ignored the range (then the rest streams through the writer, and the
/// `whole` flags, this blob's and the destination's, are set).
async fn fetch_part(
    mut stream: BlobStream,
    mut buf: Vec<u8>,
    digest: &Digest,
    offset: u64,
    len: u64,
    whole: [&AtomicBool; 2],
) -> std::io::Result<Part> {
    // One buffer of the part's size: chunks as the network hands them over may each pin
    // a larger allocation than their length.
    buf.clear();
    // More than asked for: past the first part an error, at it a whole blob (a source that
    // ignored the range), which sets the flags.
    let whole_blob = || {
        if offset > 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("blob {digest}: the part at byte {offset} is longer than the {len} bytes asked for"),
            ));
        }
        for flag in whole {
            flag.store(true, Ordering::Relaxed);
        }
        Ok(())
    };
    while (buf.len() as u64) < len {
        let Some(chunk) = stream.next().await.transpose()? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "blob {digest}: the part at byte {offset} ended after {} of {len} bytes",
                    buf.len()
                ),
            ));
        };
        let room = len as usize - buf.len();
        if chunk.len() > room {
            whole_blob()?;
            buf.extend_from_slice(&chunk[..room]);
            let head = VecDeque::from([Bytes::from(buf), chunk.slice(room..)]);
            return Ok(Part::Whole(head, stream));
        }
        buf.extend_from_slice(&chunk);
    }
    // The answer must end here; at 0, more is a whole blob that filled the part exactly.
    if let Some(extra) = stream.next().await.transpose()? {
        if !extra.is_empty() {
            whole_blob()?;
            return Ok(Part::Whole(
                VecDeque::from([Bytes::from(buf), extra]),
                stream,
            ));
        }
    }
    Ok(Part::Bytes(buf))
}

enum Part {
    /// Exactly the bytes asked for, in a buffer of the pool.
    Bytes(Vec<u8>),
    /// The start of a whole blob, and the stream with the rest.
    Whole(VecDeque<Bytes>, BlobStream),
}

type PendingPart =
    tokio::sync::oneshot::Receiver<std::io::Result<(Part, tokio::sync::OwnedSemaphorePermit)>>;

/// The writer's view of a blob fetched in parts: the parts' bytes in order, each part's
/// memory given back to the window once written.
struct PartsReader {
    parts: std::sync::mpsc::Receiver<PendingPart>,
    buffers: Buffers,
    /// The part being written, from `at`; back to the pool once written.
    current: Vec<u8>,
    at: usize,
    /// The start of a whole blob.
    chunks: VecDeque<Bytes>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    whole: Option<Box<dyn Read + Send>>,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at < self.current.len() {
                let n = (self.current.len() - self.at).min(buf.len());
                buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.current.capacity() > 0 {
                let done = std::mem::take(&mut self.current);
                self.buffers.lock().expect("buffers lock").push(done);
                self.at = 0;
            }
            if let Some(chunk) = self.chunks.front_mut() {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                bytes::Buf::advance(chunk, n);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
                return Ok(n);
            }
            if let Some(whole) = &mut self.whole {
                return whole.read(buf);
            }
            self.permit = None;
            // No more parts: the fetch side granted them all.
            let Ok(pending) = self.parts.recv() else {
                return Ok(0);
            };
            let (part, permit) = pending.blocking_recv().map_err(|_| {
                std::io::Error::other("the fetch of a part stopped before it finished")
            })??;
            self.permit = Some(permit);
            match part {
                Part::Bytes(part) => self.current = part,
                Part::Whole(chunks, rest) => {
                    self.chunks = chunks;
                    let rest = rest.map(|r| r.map_err(std::io::Error::other));
                    self.whole = Some(Box::new(tokio_util::io::SyncIoBridge::new(
                        tokio_util::io::StreamReader::new(rest),
                    )));
                }
            }
        }
    }
}

/// Turns in ticket order: [`Order::scheduling`] for claiming window memory, then
/// [`Order::writing`] for the archive writer.
#[derive(Default)]
struct Order {
    next: AtomicU64,
    scheduling: Turn,
    writing: Turn,
}

impl Order {
    fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket {
            order: self.clone(),
            n: self.next.fetch_add(1, Ordering::Relaxed),
            scheduled: false,
            written: false,
        }
    }
}

/// One blob's place in the order. Dropped early (a failed copy), it gives up both of its
/// turns, so no later blob waits for it for ever.
struct Ticket {
    order: Arc<Order>,
    n: u64,
    scheduled: bool,
    written: bool,
}

impl Ticket {
    fn scheduled(&mut self) {
        if !std::mem::replace(&mut self.scheduled, true) {
            self.order.scheduling.pass(self.n);
        }
    }
    fn written(&mut self) {
        if !std::mem::replace(&mut self.written, true) {
            self.order.writing.pass(self.n);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.scheduled();
        self.written();
    }
}

/// Parts numbered as they are scheduled (blobs schedule in turn, so this is write order).
#[derive(Default)]
struct Parts {
    next: AtomicU64,
    turn: Turn,
}

impl Parts {
    fn ticket(self: &Arc<Self>) -> PartTurn {
        PartTurn {
            parts: self.clone(),
            n: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// One part's turn; passed when dropped, so a part that failed holds up no other.
struct PartTurn {
    parts: Arc<Parts>,
    n: u64,
}

impl PartTurn {
    async fn wait(&self) {
        self.parts.turn.wait(self.n).await;
    }
}

impl Drop for PartTurn {
    fn drop(&mut self) {
        self.parts.turn.pass(self.n);
    }
}

/// Whose turn it is: the lowest ticket not yet passed.
struct Turn {
    passed: Mutex<(u64, BTreeSet<u64>)>,
    now: tokio::sync::watch::Sender<u64>,
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            passed: Mutex::new((0, BTreeSet::new())),
            now: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Turn {
    async fn wait(&self, ticket: u64) {
        let mut now = self.now.subscribe();
        // The sender lives as long as `self`, so this ends only when the turn comes.
        let _ = now.wait_for(|t| *t >= ticket).await;
    }

    /// Tickets may finish out of order (one dropped early); the turn moves past every
    /// consecutive one that did.
    fn pass(&self, ticket: u64) {
        let mut st = self.passed.lock().expect("turn lock");
        st.1.insert(ticket);
        loop {
            let next = st.0;
            if !st.1.remove(&next) {
                break;
            }
            st.0 += 1;
        }
        self.now.send_replace(st.0);
    }
}

#[async_trait]
impl ImageDestination for ArchiveDest {
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    async fn has_blob(&self, _target: &Reference, desc: &Descriptor) -> Result<bool, CopyError> {
        Ok(self
            .claimed
            .lock()
            .expect("claimed lock")
            .contains(&desc.digest))
    }

    async fn put_blob(
        &self,
        _target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<(), CopyError> {
        if !self
            .claimed
            .lock()
            .expect("claimed lock")
            .insert(desc.digest.clone())
        {
            return Ok(());
        }
        let mut ticket = self.order.ticket();
        let parts = self.concurrency > 1 && desc.size > 0 && !self.no_parts.load(Ordering::Relaxed);
        if let Some(first) = parts
            .then(|| blob.part(0, part_len(desc.size, self.part_size)))
            .flatten()
        {
            return self.put_parts(desc, blob, first, ticket).await;
        }
        // Whole, in turn: the source verifies the stream.
        self.order.scheduling.wait(ticket.n).await;
        ticket.scheduled();
        self.order.writing.wait(ticket.n).await;
        let stream = blob.open().map(|r| r.map_err(std::io::Error::other));
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let written = self.write_blob(desc, reader).await;
        ticket.written();
        written
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

#[cfg(test)]
mod tests {
    use super::part_len;

    #[test]
    fn a_blob_is_cut_into_equal_parts_of_at_most_the_part_size() {
        const MIB: u64 = 1 << 20;
        // 12 MiB and a tar header in parts of at most 5 MiB: three of a third each.
        let size = 12 * MIB + 1536;
        let len = part_len(size, 5 * MIB);
        assert_eq!(len, size.div_ceil(3));
        assert_eq!(size.div_ceil(len), 3);
        assert_eq!(part_len(10 * MIB, 5 * MIB), 5 * MIB);
        assert_eq!(part_len(10 * MIB + 1, 5 * MIB), (10 * MIB + 1).div_ceil(3));
        assert_eq!(part_len(1, 5 * MIB), 1);
        assert_eq!(part_len(5 * MIB, 5 * MIB), 5 * MIB);
    }
}
