//! Slow and excess clients: the connection budget, the body reader, and the
//! one log line per storm.
//!
//! Design notes. An adversarial run (a hardening review) held 4,300
//! connections with `POST /tusd` bodies trickling in one byte every 2 s: none
//! was ever closed, the budget (`max_connections`) was full, `/healthz` and
//! `/auth` waited in the backlog until their clients gave up, and memory grew
//! with every byte. What holds now:
//!
//! - **Every phase of a request is bounded.** The head (and the idle time
//!   before it on a keep-alive connection) by `header_read_timeout` (hyper
//!   starts that clock as soon as the connection waits for a head); the body by
//!   `body_read_timeout`, counted from the complete head and total, not per
//!   chunk; body and decision together by `request_timeout` (on `/tusd` and
//!   `/session`, the endpoints that wait on anything).
//! - **Only `/tusd` reads a body**, and at most `max_tusd_requests` of them run
//!   at once (below `max_connections`); more get 503 without a byte of their
//!   body being read. `/auth`, `/session` and the admin endpoints answer from the head
//!   alone; hyper closes a connection whose unread body is not already in its
//!   buffer.
//! - **A full budget evicts, it does not wait**: every connection is either
//!   busy (inside a request, so bounded by the timeouts above) or idle (waiting
//!   for a head: an idle keep-alive, a fresh connection, a half-sent head). When
//!   the budget is full, the connection idle the longest is closed to make room
//!   for the new one, so a flood of idle or slow-head connections cannot keep
//!   nginx's `/auth` subrequests or a health check out. nginx does the same
//!   with its own keep-alive connections when `worker_connections` runs out
//!   ("worker_connections are not enough, reusing connections"), and retries a
//!   request that fails on a cached keep-alive connection, so an eviction
//!   racing nginx's next request costs a reconnect, not an error.
//! - **Bodies are copied, not referenced**: hyper hands a body out as slices of
//!   its 8 KiB read buffer; collecting them as they are pins one such buffer
//!   per chunk, so a body sent one byte at a time held kilobytes per byte.
//!   [`read_body`] copies each chunk into one buffer and lets hyper reuse its
//!   own.
//! - **Logged per storm, counted per client**: every hit increments
//!   `assetgate_limit_hits_total{limit}`; the log gets the first hit of a quiet
//!   period at once and then at most one summary line per
//!   [`REPORT_WINDOW`] with the counts per limit, never a line per connection.

//!
//! Crates looked at first: tower-http's `RequestBodyTimeoutLayer` /
//! `TimeoutBody` resets its timer at every frame ("the total time ... could
//! exceed the timeout"), which is exactly what one byte every 2 s exploits;
//! a total deadline is `tokio::time::timeout` around the read, used here.
//! tracing-throttle (0.x, a year old) deduplicates identical events in a
//! subscriber layer; what is wanted here is one line with a count per limit,
//! from counters the metric needs anyway, and the log pipeline
//! (`telemetry/`) stays as it is. hyper and hyper-util have no connection
//! budget: the accept loop is ours, so is the eviction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::metrics::{Limit, Metrics};

/// At most one summary log line per window while limits keep being hit.
pub const REPORT_WINDOW: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Limit hits: metric per client, log per storm

/// Counts limit hits for the metric and for the next summary line.
pub struct LimitLog {
    metrics: Metrics,
    pending: [AtomicU64; 5],
    wake: Notify,
}

impl LimitLog {
    /// A log that counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        LimitLog {
            metrics,
            pending: Default::default(),
            wake: Notify::new(),
        }
    }

    /// One client stopped by `limit`.
    pub fn hit(&self, limit: Limit) {
        self.metrics.count_limit(limit);
        self.pending[limit.index()].fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Writes the summary lines; runs for the life of the server.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            self.report();
            tokio::time::sleep(REPORT_WINDOW).await;
        }
    }

    /// Logs (and resets) the counts since the last line, if any.
    fn report(&self) {
        let n = |l: Limit| self.pending[l.index()].swap(0, Ordering::Relaxed);
        let counts = Limit::ALL.map(n);
        if counts.iter().all(|&c| c == 0) {
            return;
        }
        let [header_read_timeout, body_read_timeout, request_timeout, max_tusd_requests, max_connections] =
            counts;
        // hyper's header timeout also closes idle keep-alive connections (Go's
        // HTTP client, tusd's, keeps them 90 s): alone, that is routine.
        if body_read_timeout + request_timeout + max_tusd_requests + max_connections == 0 {
            tracing::debug!(
                header_read_timeout,
                "client limits hit: connections closed by server.header_read_timeout (idle keep-alive or slow head)"
            );
            return;
        }
        tracing::warn!(
            header_read_timeout,
            body_read_timeout,
            request_timeout,
            max_tusd_requests,
            max_connections,
            window_seconds = REPORT_WINDOW.as_secs(),
            "client limits hit: slow or excess clients closed or refused (counts since the previous line; at most one line per window)"
        );
    }
}

// ---------------------------------------------------------------------------
// Connection budget

/// `Slot::state` of a connection inside a request, or accepted and not yet
/// polled: its head may be waiting in the socket, unread because the workers
/// are busy. Evicting it would punish exactly the client that is quick.
const BUSY: u64 = u64::MAX;
/// `Slot::state` of a connection chosen for eviction.
const EVICTED: u64 = u64::MAX - 1;

/// One open connection, as the budget sees it.
pub struct Slot {
    /// Milliseconds since the registry's epoch at which the connection became
    /// idle, or [`BUSY`] / [`EVICTED`].
    state: AtomicU64,
    epoch: Instant,
    evict: Notify,
}

impl Slot {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(EVICTED - 1)
    }

    /// The connection started a request: not evictable until it ends.
    pub fn busy(&self) {
        self.state.store(BUSY, Ordering::Relaxed);
    }

    /// The connection answered its request and waits for the next head.
    pub fn idle(&self) {
        self.state.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves when the budget chose this connection for eviction. The
    /// caller re-checks [`Slot::is_evicted`]: a request that started since
    /// cancels the eviction.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Whether the connection is still idle and chosen for eviction.
    pub fn is_evicted(&self) -> bool {
        self.state.load(Ordering::Relaxed) == EVICTED
    }
}

/// Every open connection and whether it is idle.
pub struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Registry {
    /// An empty registry for up to `capacity` connections.
    pub fn new(capacity: usize) -> Self {
        Registry {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(HashMap::with_capacity(capacity)),
        }
    }

    /// Registers a new connection, not evictable until its task first runs
    /// and calls [`Slot::idle`] (or serves a request).
    pub fn open(&self) -> (u64, Arc<Slot>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: AtomicU64::new(BUSY),
            epoch: self.epoch,
            evict: Notify::new(),
        });
        self.lock().insert(id, slot.clone());
        (id, slot)
    }

    /// Forgets a closed connection.
    pub fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Marks the `n` connections idle the longest for eviction and wakes
    /// them; returns how many. Fewer when fewer are idle (a busy connection,
    /// or one already being evicted, is never chosen). One scan serves a batch,
    /// as nginx's `ngx_drain_connections` closes up to 32 at once, so a flood
    /// of new connections does not pay a scan of the whole budget each.
    pub fn evict_longest_idle(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let slots = self.lock();
        let mut idle: Vec<(u64, &Arc<Slot>)> = slots
            .values()
            .map(|s| (s.state.load(Ordering::Relaxed), s))
            .filter(|(state, _)| *state < EVICTED)
            .collect();
        if idle.len() > n {
            idle.select_nth_unstable_by_key(n - 1, |(state, _)| *state);
            idle.truncate(n);
        }
        let mut evicted = 0;
        for (since, slot) in idle {
            // A request that started since the scan keeps its connection.
            if slot
                .state
                .compare_exchange(since, EVICTED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                slot.evict.notify_one();
                evicted += 1;
            }
        }
        evicted
    }

    /// Open connections (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------
// Request bodies

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// More than the cap.
    #[error("body over the size cap")]
    TooLarge,
    /// Not complete by the deadline.
    #[error("body not complete by the deadline")]
    TimedOut,
    /// The connection failed (reset, malformed chunking...).
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a whole body of at most `max` bytes, complete within `timeout`
/// (total, not per chunk), copying each chunk into one buffer so none of
/// hyper's read buffers stays pinned by a slow sender.
pub async fn read_body<B>(body: B, max: u64, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let read = async move {
        let mut body = std::pin::pin!(body);
        // Content-Length was checked against the cap by the caller; never
        // trust it for more than the cap.
        let mut out = BytesMut::with_capacity(hint.min(max));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[test]
    fn eviction_takes_the_longest_idle_and_never_a_busy_one() {
        let r = Registry::new(4);
        let (a, sa) = r.open();
        sa.idle();
        std::thread::sleep(Duration::from_millis(5));
        let (_b, sb) = r.open();
        sb.idle();
        std::thread::sleep(Duration::from_millis(5));
        let (_c, sc) = r.open();
        assert!(r.evict_longest_idle(1) == 1);
        assert!(sa.is_evicted(), "a is idle the longest");
        assert!(
            r.evict_longest_idle(1) == 0 || !sc.is_evicted(),
            "c was never polled"
        );
        sc.idle();
        sa.idle();
        sb.idle();
        std::thread::sleep(Duration::from_millis(5));
        sc.idle();
        sa.busy();
        assert!(r.evict_longest_idle(1) == 1);
        assert!(sb.is_evicted(), "b is idle the longest once a is busy");
        assert!(!sa.is_evicted() && !sc.is_evicted());
        assert!(r.evict_longest_idle(1) == 1);
        assert!(sc.is_evicted());
        assert!(r.evict_longest_idle(1) == 0, "only a busy connection is left");
        sa.idle();
        assert!(r.evict_longest_idle(1) == 1);
        r.close(a);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn eviction_in_batches_takes_the_oldest_first() {
        let r = Registry::new(8);
        let slots: Vec<Arc<Slot>> = (0..6)
            .map(|_| {
                let (_, s) = r.open();
                s.idle();
                std::thread::sleep(Duration::from_millis(3));
                s
            })
            .collect();
        slots[1].busy();
        assert_eq!(r.evict_longest_idle(3), 3);
        let evicted: Vec<bool> = slots.iter().map(|s| s.is_evicted()).collect();
        assert_eq!(evicted, [true, false, true, true, false, false]);
        assert_eq!(r.evict_longest_idle(10), 2, "only the idle ones are left");
        assert_eq!(r.evict_longest_idle(0), 0);
    }

    #[test]
    fn a_request_that_starts_cancels_an_eviction() {
        let r = Registry::new(1);
        let (_, s) = r.open();
        assert!(r.evict_longest_idle(1) == 0, "not polled yet");
        s.idle();
        assert!(r.evict_longest_idle(1) == 1);
        s.busy();
        assert!(!s.is_evicted());
    }

    #[tokio::test]
    async fn body_deadline_is_total_not_per_chunk() {
        // One byte every 50 ms never stalls a chunk for long, and never ends.
        let trickle = Trickle(tokio::time::interval(Duration::from_millis(50)));
        let started = Instant::now();
        let r = read_body(trickle, 1024, Duration::from_millis(500)).await;
        assert!(matches!(r, Err(BodyError::TimedOut)), "{r:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn body_cap_and_copy() {
        let r = read_body(
            Full::new(Bytes::from_static(b"0123456789")),
            10,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"0123456789"));
        let r = read_body(
            Full::new(Bytes::from_static(b"0123456789!")),
            10,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(r, Err(BodyError::TooLarge)));
    }

    /// An endless body: one byte per tick.
    struct Trickle(tokio::time::Interval);

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_tick(cx)
                .map(|_| Some(Ok(hyper::body::Frame::data(Bytes::from_static(b" ")))))
        }
    }
}
