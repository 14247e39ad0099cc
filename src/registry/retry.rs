//! Where requests retry: which failures are worth another try (5xx but 501, 429, dropped
//! connections, timeouts), how long to wait (exponential backoff with jitter, or the
//! registry's `Retry-After`), and the one loop every registry request goes through.
//!
//! Uploads are not idempotent at the HTTP level, so the upload is the unit that is retried:
//! `put_blob` hands the whole POST+PUT sequence to [`Retrier::run`] and a retry starts a new
//! upload.
//!
//! A failure is said once per registry: when many transfers meet the same DNS or connection
//! failure, the first retry is a warning and the others are only logged at debug level; the
//! final error names the registry.

use std::collections::HashSet;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// How often and how patiently to retry a failed request.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = never retry).
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of the backoff delay.
    pub max_delay: Duration,
    /// Upper bound for a registry's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first): exponential, with "equal
    /// jitter" (half fixed, half random) so parallel transfers do not retry in lockstep.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(random_unit())
    }

    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// A number in [0, 1) from the std hasher's per-process random keys: enough for jitter
/// without another dependency.
fn random_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let r = std::collections::hash_map::RandomState::new().hash_one(nanos);
    (r >> 11) as f64 / (1u64 << 53) as f64
}

/// Statuses worth another try: server trouble (not 501 Not Implemented, which will not
/// change) and rate limiting.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// Transport failures worth another try: connection refused/reset, timeouts, a body cut
/// short. Not when our own request body failed verification (the source is corrupt: a
/// retry would read the same bad bytes), and not TLS trust failures, which will not heal.
pub(crate) fn is_retryable_error(e: &reqwest::Error) -> bool {
    if has_invalid_data_source(e) || super::scheme::is_tls_error(e) {
        return false;
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

fn has_invalid_data_source(e: &(dyn std::error::Error + 'static)) -> bool {
    super::scheme::causes(e).iter().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and falls back to
/// the backoff).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The outcome of one try.
pub(crate) enum Attempt<T, E> {
    /// Final: success, or a failure a retry will not fix.
    Done(Result<T, E>),
    /// Worth another try; `last` is returned when the budget is spent.
    Retry {
        last: Result<T, E>,
        after: Option<Duration>,
        why: String,
    },
}

impl<T, E: std::fmt::Display> Attempt<T, E> {
    /// A failure: worth another try when `retryable`, final otherwise.
    pub fn failed(e: E, retryable: bool) -> Attempt<T, E> {
        if retryable {
            Attempt::Retry {
                why: e.to_string(),
                last: Err(e),
                after: None,
            }
        } else {
            Attempt::Done(Err(e))
        }
    }
}

/// The retry loop, and what it has already told the user.
#[derive(Debug, Default)]
pub(crate) struct Retrier {
    pub policy: RetryPolicy,
    /// `registry` + reason of every retry warned about.
    said: Mutex<HashSet<String>>,
}

impl Retrier {
    pub fn new(policy: RetryPolicy) -> Retrier {
        Retrier {
            policy,
            said: Mutex::new(HashSet::new()),
        }
    }

    /// Runs `op` until it is done or the policy's attempts are spent. `what` names the
    /// request (method and URL, no query) in the warning; headers and credentials are never
    /// logged.
    pub async fn run<T, E, F, Fut>(&self, registry: &str, what: &str, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let attempts = self.policy.attempts.max(1);
        let mut tried = 0;
        loop {
            tried += 1;
            match op().await {
                Attempt::Done(r) => return r,
                Attempt::Retry { last, after, why } => {
                    if tried >= attempts {
                        return last;
                    }
                    let delay = self.policy.delay(tried - 1, after);
                    let first = self
                        .said
                        .lock()
                        .unwrap()
                        .insert(format!("{registry}\n{why}"));
                    if first {
                        tracing::warn!(
                            "{what}: {why}; retrying in {:.1}s (attempt {}/{attempts}; further retries for this reason are not shown)",
                            delay.as_secs_f64(),
                            tried + 1
                        );
                    } else {
                        tracing::debug!(
                            "{what}: {why}; retrying in {:.1}s (attempt {}/{attempts})",
                            delay.as_secs_f64(),
                            tried + 1
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_parse_and_dates_do_not() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-3"), None);
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..8 {
            let full = (p.base_delay * 2u32.pow(retry)).min(p.max_delay);
            let d = p.backoff(retry);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
        assert!(p.backoff(40) <= p.max_delay);
    }

    #[test]
    fn statuses() {
        for s in [500, 502, 503, 504, 429] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [501, 400, 401, 403, 404, 200, 201] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    #[tokio::test]
    async fn run_stops_at_budget_and_returns_last() {
        let p = Retrier::new(RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_retry_after: Duration::from_millis(5),
            ..RetryPolicy::default()
        });
        let mut n = 0;
        let r: Result<u32, String> = p
            .run("r", "GET x", || {
                n += 1;
                let n = n;
                async move {
                    Attempt::Retry {
                        last: Err(format!("fail {n}")),
                        after: None,
                        why: "503".into(),
                    }
                }
            })
            .await;
        assert_eq!(r, Err("fail 3".to_string()));
        assert_eq!(n, 3);

        let mut n = 0;
        let r: Result<u32, String> = p
            .run("r", "GET x", || {
                n += 1;
                let n = n;
                async move {
                    if n < 2 {
                        Attempt::Retry {
                            last: Err("x".into()),
                            after: Some(Duration::from_secs(1)),
                            why: "429".into(),
                        }
                    } else {
                        Attempt::Done(Ok(n))
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(2));
        // Both loops retried for "503"/"429" on registry r: each reason noted once.
        assert_eq!(p.said.lock().unwrap().len(), 2);
    }
}
