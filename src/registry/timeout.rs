//! When a registry that has gone quiet is given up on: a connect timeout, and an idle rule
//! for every byte that should be moving (the answer's head, a body we read, an upload we
//! send). "Idle" means less than [`MIN_PROGRESS`] bytes in [`Timeouts::idle`], not only "no
//! byte at all": a peer that trickles one byte every few seconds defeats a per-read timeout
//! and would otherwise keep a transfer open, silently, for ever.
//!
//! A stall is an ordinary retryable failure: the request (or the blob, from where it
//! stopped) is tried again within the retry budget, and the last error names the registry
//! and the request.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Fewer bytes than this in one idle period is a stall. 1 KiB a minute is far below any
/// link a registry can be used over, and far above what a trickling peer sends.
pub const MIN_PROGRESS: u64 = 1024;

/// After an upload's last byte the registry may still be moving the blob inside its storage
/// (S3 and GCS copy it server-side): it gets this many idle periods to answer.
pub const COMMIT_PERIODS: u32 = 10;

/// How long to wait for a registry. Defaults suit far registries (satellite links, other
/// continents): a minute of silence is a dead connection, not a slow one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and TLS handshake.
    pub connect: Duration,
    /// The longest a transfer may move less than [`MIN_PROGRESS`] bytes, and the longest
    /// wait for an answer's head.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// The wait for the answer to an upload whose body has been sent.
    pub fn commit(&self) -> Duration {
        self.idle.saturating_mul(COMMIT_PERIODS)
    }
}

/// Seconds as people write them: `1.5 s` stays 1.5.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Counts the bytes of an upload body as the HTTP stack takes them, so the wait for the
/// answer can tell a slow upload (fine) from one the registry stopped reading (a stall).
#[derive(Default)]
pub(crate) struct Meter {
    sent: AtomicU64,
    /// The body's size; 0 for requests without a streamed body.
    expected: AtomicU64,
    finished: Mutex<Option<Instant>>,
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    /// Wraps an upload body of `size` bytes so that this meter sees it move.
    pub fn wrap<S>(self: &Arc<Self>, body: S, size: u64) -> Metered<S> {
        self.expected.store(size, Ordering::Relaxed);
        Metered {
            inner: body,
            meter: self.clone(),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn finished(&self) -> Option<Instant> {
        *self.finished.lock().unwrap()
    }
}

/// An upload body that reports to its [`Meter`]. The body counts as sent when its declared
/// size has gone out (the HTTP stack may never poll past the last byte).
pub(crate) struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            let m = &self.meter;
            let now = m.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            let expected = m.expected.load(Ordering::Relaxed);
            if expected > 0 && now >= expected {
                m.finished.lock().unwrap().get_or_insert_with(Instant::now);
            }
        }
        item
    }
}

/// Why the wait for an answer was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// No answer within the idle time (nothing was being uploaded).
    NoAnswer(Duration),
    /// The upload moved less than [`MIN_PROGRESS`] bytes in the idle time.
    Upload { sent: u64, of: u64, idle: Duration },
    /// The whole upload went out and no answer came within the commit time.
    NoAnswerAfterUpload(Duration),
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::NoAnswer(d) => write!(f, "no answer within {}", secs(*d)),
            Stall::Upload { sent, of, idle } => write!(
                f,
                "the upload stalled at byte {sent} of {of} (less than {MIN_PROGRESS} bytes taken in {})",
                secs(*idle)
            ),
            Stall::NoAnswerAfterUpload(d) => {
                write!(f, "no answer within {} after the upload was sent", secs(*d))
            }
        }
    }
}

/// Resolves when the request behind `meter` has stalled; race it against the request.
pub(crate) async fn watch(meter: &Meter, t: &Timeouts) -> Stall {
    let mut seen = 0;
    loop {
        tokio::time::sleep(t.idle).await;
        if let Some(done) = meter.finished() {
            tokio::time::sleep_until(done + t.commit()).await;
            return Stall::NoAnswerAfterUpload(t.commit());
        }
        let expected = meter.expected.load(Ordering::Relaxed);
        if expected == 0 {
            return Stall::NoAnswer(t.idle);
        }
        let now = meter.sent();
        if now - seen < MIN_PROGRESS {
            return Stall::Upload {
                sent: now,
                of: expected,
                idle: t.idle,
            };
        }
        seen = now;
    }
}

/// A response body that fails with [`io::ErrorKind::TimedOut`] when less than
/// [`MIN_PROGRESS`] bytes arrive in an idle period.
pub(crate) struct Watched<S> {
    inner: S,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    window: u64,
}

impl<S> Watched<S> {
    /// The caller names what the body is in its own messages.
    pub fn new(inner: S, idle: Duration) -> Watched<S> {
        Watched {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            window: 0,
        }
    }
}

impl<S> Stream for Watched<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.window += chunk.len() as u64;
                if self.window >= MIN_PROGRESS {
                    self.window = 0;
                    let next = Instant::now() + self.idle;
                    self.sleep.as_mut().reset(next);
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(io::Error::other(super::scheme::error_chain(&e)))))
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let msg = format!(
                "stalled (less than {MIN_PROGRESS} bytes in {})",
                secs(self.idle)
            );
            // Fire once; a caller that keeps polling gets the same verdict again later.
            let next = Instant::now() + self.idle;
            self.sleep.as_mut().reset(next);
            return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, msg))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(1),
            idle: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_body_gets_one_idle_period() {
        let m = Meter::new();
        assert_eq!(watch(&m, &quick()).await, Stall::NoAnswer(quick().idle));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_that_keeps_moving_is_not_a_stall_and_one_that_stops_is() {
        let m = Meter::new();
        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, io::Error>(Bytes::from(vec![0u8; 4096]))),
        );
        let mut body = m.wrap(chunks, 10 * 4096 + 1);
        let t = quick();
        let watcher = watch(&m, &t);
        tokio::pin!(watcher);
        // 4 KiB a second: slower than the idle period in total, never a stall.
        for _ in 0..10 {
            tokio::select! {
                s = &mut watcher => panic!("stalled while moving: {s}"),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            body.next().await.unwrap().unwrap();
        }
        // One byte short of the declared size, and nothing more comes.
        assert_eq!(
            watcher.await,
            Stall::Upload {
                sent: 40960,
                of: 40961,
                idle: t.idle
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_sent_upload_gets_the_commit_time() {
        let m = Meter::new();
        let mut body = m.wrap(
            futures_util::stream::iter([Ok::<_, io::Error>(Bytes::from_static(b"abc"))]),
            3,
        );
        body.next().await.unwrap().unwrap();
        let start = Instant::now();
        let s = watch(&m, &quick()).await;
        assert_eq!(s, Stall::NoAnswerAfterUpload(quick().commit()));
        assert!(start.elapsed() >= quick().commit());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_and_a_steady_one_is_not() {
        // One byte every 500 ms: never silent for 2 s, yet a stall.
        let trickle = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((Ok::<_, reqwest::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let mut w = Watched::new(Box::pin(trickle), quick().idle);
        let mut got = 0;
        let err = loop {
            match w.next().await.unwrap() {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().starts_with("stalled"), "{err}");
        assert!(got < 5, "{got}");

        let steady = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (n < 20).then(|| (Ok::<_, reqwest::Error>(Bytes::from(vec![1u8; 2048])), n + 1))
        });
        let w = Watched::new(Box::pin(steady), quick().idle);
        let all: Vec<_> = w.collect().await;
        assert_eq!(all.len(), 20);
        assert!(all.iter().all(Result::is_ok));
    }
}
