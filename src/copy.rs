//! The one copy engine: moves images from any [`ImageSource`] to any [`ImageDestination`]
//! (registry, `.airgap` archive, OCI layout). `export`, `import` and `pull` are this engine
//! with different ends.
//!
//! A copy has two steps. [`resolve`] fetches an image's manifests (small) so the whole plan is
//! known before any layer moves; [`copy_images`] then moves each distinct blob once per
//! destination repository (the first upload streams from the source, later repositories
//! mount it when the destination can), concurrently, and pushes manifests only after their
//! blobs and indexes after their manifests, byte for byte, so every digest stays the same.

mod resolve;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{stream, Stream, StreamExt, TryStreamExt};

use crate::digest::Digest;
use crate::manifest::{Descriptor, Manifest};
use crate::reference::Reference;

pub use resolve::{resolve, ResolvedImage};

/// A blob's bytes as they arrive.
pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What a copy failed on. The engine knows no transport: each maps its own errors into
/// [`CopyError::Transport`] (`From` impls beside the transport), and the message is theirs.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    #[error("{image}: {why}")]
    Image { image: String, why: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn image_err(image: &Reference, why: impl Into<String>) -> CopyError {
    CopyError::Image {
        image: image.to_string(),
        why: why.into(),
    }
}

/// Where images come from.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// A manifest of `image` by tag or digest.
    async fn manifest(&self, image: &Reference, reference: &str) -> Result<Manifest, CopyError>;
    /// A blob of `image` as a stream that fetches lazily, verified against the descriptor as
    /// it streams. Called again for each retry of an upload.
    fn blob(&self, image: &Reference, desc: &Descriptor) -> BlobStream;
    /// Bytes `offset..offset + len` of a blob, fetched lazily and not verified, for
    /// destinations that fetch one blob over several connections; `None` when this source
    /// cannot serve parts. See [`BlobOpener::part`].
    fn blob_part(
        &self,
        _image: &Reference,
        _desc: &Descriptor,
        _offset: u64,
        _len: u64,
    ) -> Option<BlobStream> {
        None
    }
}

/// How a destination reads the blob it is given: whole, or in parts.
pub trait BlobOpener: Send + Sync {
    /// The whole blob, verified against its descriptor as it streams; called again for each
    /// retry.
    fn open(&self) -> BlobStream;
    /// Bytes `offset..offset + len`, unverified (the caller hashes the parts together, in
    /// order), or `None` when the source cannot serve parts. A source that ignores ranges
    /// answers the part at 0 with the whole blob: more than `len` bytes.
    fn part(&self, offset: u64, len: u64) -> Option<BlobStream>;
}

/// Where images go.
#[async_trait]
pub trait ImageDestination: Send + Sync {
    /// How many blob transfers may run at once.
    fn concurrency(&self) -> usize;
    async fn has_blob(&self, target: &Reference, desc: &Descriptor) -> Result<bool, CopyError>;
    /// Makes `target` hold the blob: [`BlobOutcome::Existed`] when it had it, else it is
    /// written from `blob`. The default asks first, then writes; a registry does both in one
    /// request where it can.
    async fn ensure_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<BlobOutcome, CopyError> {
        if self.has_blob(target, desc).await? {
            return Ok(BlobOutcome::Existed);
        }
        self.put_blob(target, desc, blob).await?;
        Ok(BlobOutcome::Copied)
    }
    /// Makes a blob that is already in `from` available in `target`: a cross-repository
    /// mount where the destination has them (no HEAD first: the mount answers for itself),
    /// else whatever it takes, an upload from `blob` at worst. The default suits
    /// destinations with one blob store for every image (archive, layout): the blob is
    /// there already, or it is written.
    async fn mount_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        _from: &Reference,
        blob: &dyn BlobOpener,
    ) -> Result<BlobOutcome, CopyError> {
        self.ensure_blob(target, desc, blob).await
    }
    /// Called once the images that need copying are known (after their manifests were
    /// checked), before any blob moves, with their targets: a destination checks here that
    /// it will accept them.
    async fn prepare(&self, _targets: &[&Reference]) -> Result<(), CopyError> {
        Ok(())
    }
    async fn put_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        blob: &dyn BlobOpener,
    ) -> Result<(), CopyError>;
    /// Whether `reference` (tag or digest) of `target` already resolves to `digest`.
    async fn has_manifest(
        &self,
        target: &Reference,
        reference: &str,
        digest: &Digest,
    ) -> Result<bool, CopyError>;
    async fn put_manifest(
        &self,
        target: &Reference,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), CopyError>;
}

/// One image to copy and where it goes.
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub image: ResolvedImage,
    /// Destination name with the source's tag and/or digest.
    pub target: Reference,
}

impl CopyJob {
    /// The image under its own name: into an archive or a layout, which keep source names.
    pub fn in_place(image: &ResolvedImage) -> CopyJob {
        CopyJob {
            image: image.clone(),
            target: image.source.clone(),
        }
    }
}

/// Progress callbacks; all are cheap and called from the copy tasks.
pub trait CopyObserver: Send + Sync {
    /// The bytes this copy will move: set once the plan is known and again whenever it
    /// changes (a blob the destination turns out to have; a mount that became an upload),
    /// always before those bytes move. Blobs that are mounted or present are not in it.
    fn to_send(&self, _total: u64) {}
    fn bytes(&self, _n: u64) {}
    fn blob_done(&self, _target: &Reference, _desc: &Descriptor, _outcome: BlobOutcome) {}
    fn image_done(&self, _job: &CopyJob, _skipped: bool) {}
}

/// A no-op observer.
pub struct Quiet;
impl CopyObserver for Quiet {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Copied = 0,
    Existed = 1,
    Mounted = 2,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub images_copied: usize,
    pub images_up_to_date: usize,
    pub blobs_copied: usize,
    pub blobs_existed: usize,
    pub blobs_mounted: usize,
    pub bytes_copied: u64,
}

/// How many small requests (HEADs, session checks) may be in flight for a pool of
/// `concurrency` transfers: they carry no bytes, so more of them at once hides the round
/// trip at little cost to the registry, and a bound keeps the connections moderate.
pub fn lookups(concurrency: usize) -> usize {
    (concurrency * 4).clamp(8, 32)
}

/// The tag or digest a job's top manifest is pushed under.
pub fn target_reference(target: &Reference) -> &str {
    match (target.tag(), target.digest()) {
        (Some(t), _) => t,
        (None, Some(d)) => d.as_str(),
        (None, None) => "latest",
    }
}

/// Copies every job's image from `source` to `dest`. Images whose top manifest the
/// destination already has under the same reference are skipped whole.
pub async fn copy_images(
    source: Arc<dyn ImageSource>,
    dest: Arc<dyn ImageDestination>,
    jobs: &[CopyJob],
    observer: Arc<dyn CopyObserver>,
) -> Result<CopyReport, CopyError> {
    let concurrency = dest.concurrency().max(1);

    // 1. Which images are already complete at the destination (HEADs, concurrently).
    let checks = stream::iter(jobs.iter().enumerate())
        .map(|(i, job)| {
            let dest = dest.clone();
            async move {
                let present = dest
                    .has_manifest(
                        &job.target,
                        target_reference(&job.target),
                        &job.image.top.digest,
                    )
                    .await?;
                Ok::<_, CopyError>((i, present))
            }
        })
        .buffer_unordered(lookups(concurrency))
        .try_collect::<Vec<_>>()
        .await?;
    let done: HashSet<usize> = checks
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(i, _)| i)
        .collect();
    let mut report = CopyReport {
        images_up_to_date: done.len(),
        ..CopyReport::default()
    };
    for i in &done {
        observer.image_done(&jobs[*i], true);
    }
    let todo: Vec<&CopyJob> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| !done.contains(i))
        .map(|(_, j)| j)
        .collect();

    dest.prepare(&todo.iter().map(|j| &j.target).collect::<Vec<_>>())
        .await?;

    // 2. Blobs: group by digest so each one's bytes move once; other repositories mount.
    let mut groups: BTreeMap<Digest, (Descriptor, Vec<&CopyJob>)> = BTreeMap::new();
    for job in &todo {
        for d in &job.image.blobs {
            let entry = groups
                .entry(d.digest.clone())
                .or_insert_with(|| (d.clone(), Vec::new()));
            if !entry.1.iter().any(|j| j.target.name() == job.target.name()) {
                entry.1.push(job);
            }
        }
    }
    // Largest first: the long transfers start early and small ones fill the gaps.
    let mut groups: Vec<_> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.0.size));
    let plan = Plan {
        observer: observer.clone(),
        to_send: AtomicU64::new(groups.iter().map(|g| g.0.size).sum()),
    };
    observer.to_send(plan.to_send.load(Ordering::Relaxed));
    let mut counts = [0usize; 3];
    let bytes = Arc::new(AtomicU64::new(0));
    // One pool for every transfer: a blob's first copy, then (once it is there) a mount
    // into each other repository that needs it, ahead of the transfers still queued.
    let mut queue: VecDeque<Transfer> = (0..groups.len()).map(Transfer::First).collect();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < concurrency {
            let Some(t) = queue.pop_front() else { break };
            let (desc, group) = &groups[t.group()];
            let (source, dest, observer) = (&*source, &*dest, &observer);
            let (bytes, plan) = (&bytes, &plan);
            running.push(async move {
                let outcome = match t {
                    Transfer::First(_) => {
                        let job = group[0];
                        let fetch = Fetch::new(source, job, desc, observer, bytes, None);
                        let outcome = dest.ensure_blob(&job.target, desc, &fetch).await?;
                        if outcome != BlobOutcome::Copied {
                            plan.less(desc.size);
                        }
                        outcome
                    }
                    Transfer::Mount(_, i) => {
                        let (job, home) = (group[i], &group[0].target);
                        let fetch = Fetch::new(source, job, desc, observer, bytes, Some(plan));
                        dest.mount_blob(&job.target, desc, home, &fetch).await?
                    }
                };
                let target = &group[t.member()].target;
                observer.blob_done(target, desc, outcome);
                Ok::<_, CopyError>((t, outcome))
            });
        }
        let Some(done) = running.next().await else {
            break;
        };
        let (t, outcome) = done?;
        counts[outcome as usize] += 1;
        if let Transfer::First(g) = t {
            for i in (1..groups[g].1.len()).rev() {
                queue.push_front(Transfer::Mount(g, i));
            }
        }
    }
    drop(running);
    report.blobs_copied = counts[BlobOutcome::Copied as usize];
    report.blobs_existed = counts[BlobOutcome::Existed as usize];
    report.blobs_mounted = counts[BlobOutcome::Mounted as usize];
    report.bytes_copied = bytes.load(Ordering::Relaxed);

    // 3. Manifests: platform manifests by digest, then the top one under its tag/digest.
    stream::iter(todo.iter())
        .map(|job| {
            let dest = dest.clone();
            let observer = observer.clone();
            async move {
                for child in &job.image.children {
                    if !dest
                        .has_manifest(&job.target, child.digest.as_str(), &child.digest)
                        .await?
                    {
                        dest.put_manifest(&job.target, child.digest.as_str(), child)
                            .await?;
                    }
                }
                dest.put_manifest(&job.target, target_reference(&job.target), &job.image.top)
                    .await?;
                observer.image_done(job, false);
                Ok::<_, CopyError>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    report.images_copied = todo.len();
    Ok(report)
}

/// One blob in the transfer pool: its first copy, or a mount into another repository.
#[derive(Debug, Clone, Copy)]
enum Transfer {
    First(usize),
    Mount(usize, usize),
}

impl Transfer {
    fn group(self) -> usize {
        match self {
            Transfer::First(g) | Transfer::Mount(g, _) => g,
        }
    }
    fn member(self) -> usize {
        match self {
            Transfer::First(_) => 0,
            Transfer::Mount(_, i) => i,
        }
    }
}

/// The bytes still planned to move, told to the observer as the plan changes.
struct Plan {
    observer: Arc<dyn CopyObserver>,
    to_send: AtomicU64,
}

impl Plan {
    fn less(&self, n: u64) {
        let now = self.to_send.fetch_sub(n, Ordering::Relaxed) - n;
        self.observer.to_send(now);
    }
    fn more(&self, n: u64) {
        let now = self.to_send.fetch_add(n, Ordering::Relaxed) + n;
        self.observer.to_send(now);
    }
}

/// One blob's bytes from the source, counted as they pass.
struct Fetch<'a> {
    source: &'a dyn ImageSource,
    image: &'a Reference,
    desc: &'a Descriptor,
    /// The blob's bytes when resolving read them already.
    fetched: Option<Bytes>,
    observer: Arc<dyn CopyObserver>,
    bytes: Arc<AtomicU64>,
    /// How far any attempt at the whole blob got: a retried upload counts only bytes past
    /// it, so progress never passes its total.
    high: Arc<AtomicU64>,
    /// For a mount that may become an upload: the plan grows by the blob's size when
    /// its bytes are first asked for.
    unplanned: Mutex<Option<&'a Plan>>,
}

impl<'a> Fetch<'a> {
    fn new(
        source: &'a dyn ImageSource,
        job: &'a CopyJob,
        desc: &'a Descriptor,
        observer: &Arc<dyn CopyObserver>,
        bytes: &Arc<AtomicU64>,
        unplanned: Option<&'a Plan>,
    ) -> Fetch<'a> {
        Fetch {
            source,
            image: &job.image.source,
            desc,
            fetched: job.image.fetched.get(&desc.digest).cloned(),
            observer: observer.clone(),
            bytes: bytes.clone(),
            high: Arc::new(AtomicU64::new(0)),
            unplanned: Mutex::new(unplanned),
        }
    }

    fn planned(&self) {
        if let Some(plan) = self.unplanned.lock().expect("plan lock").take() {
            plan.more(self.desc.size);
        }
    }
}

impl BlobOpener for Fetch<'_> {
    fn open(&self) -> BlobStream {
        self.planned();
        let (observer, bytes, high) =
            (self.observer.clone(), self.bytes.clone(), self.high.clone());
        let mut pos = 0u64;
        let stream: BlobStream = match &self.fetched {
            Some(bytes) => Box::pin(stream::iter([Ok(bytes.clone())])),
            None => self.source.blob(self.image, self.desc),
        };
        Box::pin(stream.inspect_ok(move |chunk| {
            let start = pos;
            pos += chunk.len() as u64;
            let before = high.fetch_max(pos, Ordering::Relaxed);
            let new = pos.saturating_sub(before.max(start));
            if new > 0 {
                bytes.fetch_add(new, Ordering::Relaxed);
                observer.bytes(new);
            }
        }))
    }

    fn part(&self, offset: u64, len: u64) -> Option<BlobStream> {
        if self.fetched.is_some() {
            return None; // in memory already: read whole
        }
        let stream = self.source.blob_part(self.image, self.desc, offset, len)?;
        self.planned();
        let (observer, bytes) = (self.observer.clone(), self.bytes.clone());
        Some(Box::pin(stream.inspect_ok(move |chunk| {
            let n = chunk.len() as u64;
            bytes.fetch_add(n, Ordering::Relaxed);
            observer.bytes(n);
        })))
    }
}
