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
//! - **Only `/tusd` reads a body** on the main port, and at most
//!   `max_tusd_requests` bodies that are still arriving are read at once
//!   (below `max_connections`); more get 503 with no more of their body read
//!   than had already arrived (see "a `/tusd` place" below). `/auth`,
//!   `/session` and the health endpoints answer from the head alone; hyper
//!   closes a connection whose unread body is not already in its buffer.
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
//! - **Every listener goes through this layer** ([`crate::http::server::accept_loop`]):
//!   the main one, the admin API's socket (and its opt-in TCP listener), the
//!   outbox's admin socket. Each has its own connection budget with the same
//!   idle eviction, the same header timeout and buffer cap, and reads bodies
//!   with [`read_body`] under `body_read_timeout`. The admin listeners' budgets
//!   are small ([`ADMIN_MAX_CONNECTIONS`]): a review held 1,100 slow admin
//!   connections, which took every file descriptor and kept `/healthz` on the
//!   main port unanswered for 40 s, and trickled 80 KB over 20 of them, which
//!   took RSS from 9 to 340 MB through the pinned-buffer growth described
//!   below.
//! - **Budgets fit the open-file limit** ([`Budgets::fit`]): `accept()` failing
//!   with EMFILE comes before any eviction can help (the shipped systemd unit
//!   once allowed 1,024 files for 4,096 connections, and `/healthz` went
//!   unanswered). At start the soft limit is raised to the hard one when that
//!   is needed (what systemd asks of programs that need more than 1,024), and
//!   the budgets are clamped below it minus a reserve for the files the daemon
//!   opens itself; the clamp is logged with both numbers and shown in
//!   `assetgate_open_files_limit` and `assetgate_connection_budget{listener}`.
//! - **A `/tusd` place is for a body still arriving, not for a hook**
//!   ([`read_ready`], [`TusdBudget`]). tusd writes a hook's head and body
//!   together (Go's client flushes them from one 4 KiB buffer, a larger body
//!   in back-to-back writes), so hyper has the whole body when the handler
//!   first runs. A body that is complete without waiting for its sender
//!   (every frame there, or read from the socket in the connection's next
//!   turn, up to the end; at most [`READY_BODY_MAX`]) takes no place: it goes
//!   straight to its decision. Only a body still arriving (or longer) takes
//!   one of `max_tusd_requests` places, and when they are full, the request
//!   that has been reading its body the longest past [`TUSD_EVICT_GRACE`] is
//!   cut (408, `Connection: close`, counted as `max_tusd_requests`), else the
//!   new one is refused (503 `busy`, closed, counted the same). History: 300
//!   slow bodies from any local process once filled the budget and failed
//!   every tus upload (503 `busy`, 500 to the client); cutting slow bodies
//!   past the grace alone then fell to churn: opening new slow bodies faster
//!   than `max_tusd_requests` / 0.5 s keeps every place younger than the
//!   grace (a review, one Python process: 1,500 a second, 101 of 219
//!   well-formed hooks refused). Now slow bodies compete only with each
//!   other, however fast they churn. Per-peer budgets would not help: tusd
//!   and the attacker both come from 127.0.0.1 on a shared host or pod.
//!   What is left: a hook body that does not come whole with its head (over
//!   16 KiB, or split by a network between tusd and the gate into segments
//!   read apart) reads under a place, where such churn can still get it
//!   refused; over loopback (the systemd unit, the Kubernetes pod) tusd's
//!   bodies come whole.
//! - **Decisions wait for a turn, they are not refused**
//!   ([`TusdBudget::decision`]): every `/tusd` decision, with or without a
//!   place, takes one of `max_tusd_requests` turns, in arrival order, under
//!   `request_timeout`. Only a complete body ever holds a turn, so a slow
//!   sender cannot hold one; a decision is short (the token, then at most a
//!   few files on the blocking pool, a Redis round trip). The turns bound
//!   the files decisions open (the open-file reserve counts one per
//!   `max_tusd_requests`) and the blocking pool's share (tokio's 512
//!   threads, shared with the mover's 16 moves).
//! - **What bounds `/tusd` now**: connections by `max_connections` (a
//!   request without a place is a busy connection for the length of its
//!   decision, one request at a time per HTTP/1.1 connection); bodies still
//!   arriving by `max_tusd_requests` × `max_body_bytes`; bodies that came
//!   whole by [`READY_BODY_MAX`] plus one read buffer (16 KiB) each, copied,
//!   only while they wait for a turn or are decided: at most
//!   `max_connections` × 32 KiB in the worst case (128 MiB at the default
//!   4,096), a few KiB per hook in practice since turns are short; time by
//!   `body_read_timeout` and `request_timeout`.
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
use tokio_util::sync::CancellationToken;

use crate::http::respond::{Resp, Synthetic};
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

    /// Writes the summary lines (at most one per [`REPORT_WINDOW`]) until
    /// `stop` is cancelled, then the last one: the hits of the window the
    /// shutdown cut short are logged, not lost.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let windows = async {
            loop {
                self.wake.notified().await;
                self.report();
                tokio::time::sleep(REPORT_WINDOW).await;
            }
        };
        stop.run_until_cancelled(windows).await;
        self.report();
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
// Budgets and the open-file limit

/// Connections each admin listener serves at once (the admin API's socket,
/// its opt-in TCP listener, the outbox's socket): the CLI uses one at a time;
/// when full, the one idle the longest is evicted, the rest wait in the
/// kernel's backlog, which holds no file descriptor of the daemon.
pub const ADMIN_MAX_CONNECTIONS: usize = 16;

/// Files the daemon keeps for itself whatever the traffic: stdio, the runtime
/// (epoll, wakers, signals), the log writer, the watcher of config and secret
/// files, the outbox (redb), Redis, the listeners, the mover's directory
/// handles and its 16 moves at once (each a source, a destination, their
/// directories), a reload reading its files.
pub const RESERVED_FILES: u64 = 128;

/// Fewest main connections the daemon starts with; below that the open-file
/// limit is an error to fix, not a budget to run with.
pub const MIN_CONNECTIONS: usize = 16;

/// The connection budgets in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Main listener (`[server] max_connections`).
    pub max_connections: usize,
    /// `/tusd` requests at once (`[server] max_tusd_requests`).
    pub max_tusd_requests: usize,
    /// Each admin listener's connections.
    pub admin_connections: usize,
}

/// The budgets were lowered to fit the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamped {
    /// The soft `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// Files kept out of the budgets ([`RESERVED_FILES`], one per `/tusd`
    /// request, one per event delivery).
    pub reserved: u64,
    /// The configured budgets.
    pub from: Budgets,
}

/// The open-file limit leaves too little for the daemon to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the open-file limit (RLIMIT_NOFILE) is {open_files}: with {reserved} kept for the daemon's own files and \
     {admin} for the admin listeners, fewer than {MIN_CONNECTIONS} connections are left; raise it \
     (systemd: LimitNOFILE=, a shell: ulimit -n, a container: --ulimit nofile=)"
)]
pub struct TooFewFiles {
    /// The soft limit.
    pub open_files: u64,
    /// Kept for the daemon's own files.
    pub reserved: u64,
    /// Kept for the admin listeners.
    pub admin: u64,
}

impl Budgets {
    /// The configured budgets.
    pub fn from_config(c: &crate::config::ServerConfig) -> Self {
        Budgets {
            max_connections: c.max_connections,
            max_tusd_requests: c.max_tusd_requests,
            admin_connections: ADMIN_MAX_CONNECTIONS,
        }
    }

    /// Files these budgets may hold at once: every connection, one more
    /// file per `/tusd` request (its decision may open one on the blocking
    /// pool), `deliveries` event deliveries, [`RESERVED_FILES`].
    pub fn files_needed(&self, admin_listeners: usize, deliveries: usize) -> u64 {
        (self.max_connections + self.admin_connections * admin_listeners) as u64 + self.reserved(deliveries)
    }

    fn reserved(&self, deliveries: usize) -> u64 {
        RESERVED_FILES + self.max_tusd_requests as u64 + deliveries as u64
    }

    /// Fits the budgets below `open_files` (the soft `RLIMIT_NOFILE`): the
    /// main budget and the `/tusd` budget shrink together (the latter to at
    /// most a third of what is left, so `/auth` keeps two thirds); the admin
    /// budgets stay. `Ok((budgets, None))` when they fit as configured.
    pub fn fit(
        self,
        open_files: u64,
        admin_listeners: usize,
        deliveries: usize,
    ) -> Result<(Budgets, Option<Clamped>), TooFewFiles> {
        if self.files_needed(admin_listeners, deliveries) <= open_files {
            return Ok((self, None));
        }
        let admin = (self.admin_connections * admin_listeners) as u64;
        let fixed = RESERVED_FILES + deliveries as u64 + admin;
        let too_few = TooFewFiles {
            open_files,
            reserved: RESERVED_FILES + deliveries as u64,
            admin,
        };
        // What is left is shared by connections and /tusd's extra files.
        let left = usize::try_from(open_files.saturating_sub(fixed)).unwrap_or(usize::MAX);
        let tusd = self.max_tusd_requests.min(left / 3).max(1);
        let main = left.saturating_sub(tusd).min(self.max_connections);
        if main < MIN_CONNECTIONS.max(tusd + 1) {
            return Err(too_few);
        }
        let fitted = Budgets {
            max_connections: main,
            max_tusd_requests: tusd,
            admin_connections: self.admin_connections,
        };
        Ok((
            fitted,
            Some(Clamped {
                open_files,
                reserved: fitted.reserved(deliveries),
                from: self,
            }),
        ))
    }
}

/// The soft and hard `RLIMIT_NOFILE` (`None`: unlimited).
pub fn open_files_limit() -> (Option<u64>, Option<u64>) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (l.current, l.maximum)
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted`, up to the hard limit;
/// returns the soft limit in force afterwards. systemd keeps the soft limit at
/// 1,024 for programs that use `select()` and expects the others to raise it
/// themselves (systemd 240's release notes); Go's runtime does it at start.
pub fn raise_open_files(wanted: u64) -> Result<u64, (u64, std::io::Error)> {
    let (soft, hard) = open_files_limit();
    let soft = soft.unwrap_or(u64::MAX);
    if soft >= wanted {
        return Ok(soft);
    }
    let target = hard.map_or(wanted, |h| h.min(wanted));
    if target <= soft {
        return Ok(soft);
    }
    let new = rustix::process::Rlimit {
        current: Some(target),
        maximum: hard,
    };
    match rustix::process::setrlimit(rustix::process::Resource::Nofile, new) {
        Ok(()) => Ok(target),
        Err(e) => Err((soft, e.into())),
    }
}

// ---------------------------------------------------------------------------
// The /tusd budget: places for bodies still arriving, turns for decisions

/// How long a `/tusd` request may read its body under a place in the budget
/// before a newer one may take that place when the budget is full. Only a
/// body that did not come whole with its head reads under a place
/// ([`read_ready`]); one that then arrives at the speed of a local socket
/// takes microseconds, far below this even on a loaded machine.
pub const TUSD_EVICT_GRACE: Duration = Duration::from_millis(500);

/// The most of a body [`read_ready`] takes without a place in the `/tusd`
/// budget (the last frame may add up to one of hyper's read buffers, 16 KiB).
/// A tusd hook is a few KiB (the upload's metadata and the client's request
/// headers, which nginx caps at 8 KiB each by default); tusd's Go client
/// writes it with its head in one flush of its 4 KiB buffer, or a few
/// back-to-back writes.
pub const READY_BODY_MAX: usize = 16 * 1024;

/// Turns [`read_ready`] gives the connection to read more of a body from its
/// socket (a few KiB each): more than a [`READY_BODY_MAX`] body written in
/// 4 KiB writes needs.
const READY_TURNS: u32 = 32;

/// `HookSlot::state` once the body is read: deciding, never evicted.
const DECIDING: u64 = u64::MAX;

/// One `/tusd` request in flight: reading its body since (ms since the
/// budget's epoch), or [`DECIDING`], or [`EVICTED`].
#[derive(Debug)]
struct HookSlot {
    state: AtomicU64,
    evict: Notify,
}

impl HookSlot {
    /// The body is complete: from now on the request is never evicted.
    /// `false` when it already was (the body is then refused).
    fn finish_reading(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            match s {
                EVICTED => return false,
                DECIDING => return true,
                since => {
                    match self
                        .state
                        .compare_exchange(since, DECIDING, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return true,
                        Err(now) => s = now,
                    }
                }
            }
        }
    }
}

/// The `/tusd` budget (`server.max_tusd_requests`): places for requests whose
/// body is still arriving, fair by progress ([`TusdBudget::admit`]), and turns
/// for decisions, waited for ([`TusdBudget::decision`]); see the module notes.
#[derive(Debug)]
pub struct TusdBudget {
    cap: usize,
    grace_ms: u64,
    epoch: Instant,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<HookSlot>>>,
    deciding: tokio::sync::Semaphore,
}

/// The budget is full and no request in it has been reading its body for
/// longer than the grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl TusdBudget {
    /// A budget of `cap` requests reading their body (one reading it for
    /// `grace` may be cut) and `cap` decisions at once.
    pub fn new(cap: usize, grace: Duration) -> Self {
        TusdBudget {
            cap,
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(HashMap::with_capacity(cap)),
            deciding: tokio::sync::Semaphore::new(cap),
        }
    }

    /// A turn to decide a hook whose body is read, waited for in arrival
    /// order (tokio's semaphore is fair), never refused: only a complete body
    /// ever holds one, so slow senders cannot keep tusd's hooks waiting. The
    /// caller's deadline (`server.request_timeout`) bounds the wait. This
    /// bounds what decisions hold at once: a file each (the open-file reserve
    /// counts one per `max_tusd_requests`) and the blocking pool's threads.
    pub async fn decision(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.deciding
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(EVICTED - 1)
    }

    /// A place for a new request: a free one, or the one of the request that
    /// has been reading its body the longest, past the grace (it is woken to
    /// answer 408). `Err(Full)` when neither exists.
    pub fn admit(&self) -> Result<HookTicket<'_>, Full> {
        let now = self.now_ms();
        let mut slots = self.lock();
        if slots.len() >= self.cap {
            let oldest = slots
                .iter()
                .map(|(id, s)| (*id, s.state.load(Ordering::Acquire), s))
                .filter(|(_, since, _)| *since < EVICTED && now.saturating_sub(*since) >= self.grace_ms)
                .min_by_key(|(_, since, _)| *since)
                .map(|(id, since, s)| (id, since, s.clone()));
            let Some((id, since, victim)) = oldest else {
                return Err(Full);
            };
            // Lost to its body completing meanwhile: it decides, and this
            // request is refused like any other when the budget is full.
            if victim
                .state
                .compare_exchange(since, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Err(Full);
            }
            slots.remove(&id);
            victim.evict.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(HookSlot {
            state: AtomicU64::new(now),
            evict: Notify::new(),
        });
        slots.insert(id, slot.clone());
        Ok(HookTicket {
            budget: self,
            id,
            slot,
        })
    }

    /// Requests in flight (tests).
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<HookSlot>>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A `/tusd` request's place in the budget; given back on drop.
#[derive(Debug)]
pub struct HookTicket<'a> {
    budget: &'a TusdBudget,
    id: u64,
    slot: Arc<HookSlot>,
}

impl HookTicket<'_> {
    /// The request's body, tracked: its end moves the request from reading to
    /// deciding (never evicted after that); an evicted request's body ends in
    /// an error, so the hook is never decided on.
    pub fn track<B>(&self, body: B) -> Tracked<B> {
        Tracked {
            inner: body,
            slot: self.slot.clone(),
        }
    }

    /// Resolves when a newer request took this one's place (it was still
    /// reading its body past the grace). The handler has not decided anything
    /// then: the tracked body has not ended.
    pub async fn evicted(&self) {
        loop {
            self.slot.evict.notified().await;
            if self.slot.state.load(Ordering::Acquire) == EVICTED {
                return;
            }
        }
    }
}

impl Drop for HookTicket<'_> {
    fn drop(&mut self) {
        self.budget.lock().remove(&self.id);
    }
}

/// The request was cut for a newer one.
#[derive(Debug, thiserror::Error)]
#[error("evicted: the request body was still arriving when the /tusd budget was needed")]
pub struct Evicted;

/// A request body whose end is reported to its [`HookTicket`].
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    slot: Arc<HookSlot>,
}

impl<B> hyper::body::Body for Tracked<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) if !this.slot.finish_reading() => Poll::Ready(Some(Err(Evicted.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claims the end before `poll_frame` reported it: the end is
        // where reading turns into deciding.
        false
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------
// The whole-request deadline

/// The answer of a request run under `[server] request_timeout`
/// (`tokio::time::timeout(request_timeout, answer).await`), or, past it,
/// 503 `request_timeout` with the connection closed
/// ([`Synthetic::deadline`]), counted. Every endpoint that waits on anything
/// runs under it: `/tusd` (body and decision), `/session` (an upload's
/// record), both admin APIs.
///
/// It takes the timeout's result, not the future: a wrapper future would
/// keep the endpoint's future twice in its state (the argument, and the
/// timeout that took it), and every in-flight request's connection task
/// holds this state (`/tusd`'s future is ~2 KiB; a slow-body flood holds
/// thousands).
pub fn or_deadline(limits: &LimitLog, answer: Result<Resp, tokio::time::error::Elapsed>) -> Resp {
    answer.unwrap_or_else(|_| {
        limits.hit(Limit::RequestTimeout);
        Synthetic::deadline().into()
    })
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
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    // Content-Length was checked against the cap by the caller; never trust
    // it for more than the cap.
    let received = BytesMut::with_capacity(hint.min(cap));
    finish_body(received, body, max, tokio::time::Instant::now() + timeout).await
}

/// Reads the rest of a body after `received` (what [`read_ready`] took), at
/// most `max` bytes in all, complete by `deadline`; copied as [`read_body`]
/// does.
pub async fn finish_body<B>(
    mut received: BytesMut,
    rest: B,
    max: u64,
    deadline: tokio::time::Instant,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let read = async move {
        let mut body = std::pin::pin!(rest);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.into()))?;
            if let Ok(data) = frame.into_data() {
                copy_within(&mut received, &data, max)?;
            }
        }
        Ok(received.freeze())
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

fn copy_within(out: &mut BytesMut, data: &[u8], max: usize) -> Result<(), BodyError> {
    if out.len() + data.len() > max {
        return Err(BodyError::TooLarge);
    }
    out.extend_from_slice(data);
    Ok(())
}

/// What [`read_ready`] found of a body.
#[derive(Debug)]
pub enum Ready<B> {
    /// The whole body: it was there, the end too.
    Whole(Bytes),
    /// Still arriving (or longer than [`READY_BODY_MAX`]): what was there,
    /// copied, and the rest of the body to read ([`finish_body`]).
    Arriving {
        /// The bytes read so far.
        received: BytesMut,
        /// The body, from where the copy stopped.
        rest: B,
    },
}

/// Reads what of `body` is there without waiting for its sender: frames
/// already received, and those the connection reads from its socket when
/// given one turn (hyper's HTTP/1 connection reads the body in the same task
/// that runs the handler, one frame ahead of it). A body that needs a wait
/// with nothing new is still arriving; so is one past [`READY_BODY_MAX`]. At
/// most `max` bytes in all ([`BodyError::TooLarge`]).
///
/// A hook from tusd comes whole: its head and body are written together and
/// hyper reads them in one go before the handler first runs. A slow sender's
/// body never does, whatever its pace: it needs a wait after its first
/// frames.
pub async fn read_ready<B>(body: B, max: u64) -> Result<Ready<B>, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use std::task::Poll;
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut received = BytesMut::with_capacity(hint.min(max).min(READY_BODY_MAX));
    let mut body = body;
    // Whether the connection had its turn since the last frame, and how many
    // it had: bounded as the bytes are, whatever the frames hold.
    let (mut yielded, mut turns) = (false, 0);
    loop {
        if received.len() >= READY_BODY_MAX || turns > READY_TURNS {
            return Ok(Ready::Arriving { received, rest: body });
        }
        let next = std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut body).poll_frame(cx))).await;
        match next {
            Poll::Ready(None) => return Ok(Ready::Whole(received.freeze())),
            Poll::Ready(Some(Err(e))) => return Err(BodyError::Read(e.into())),
            Poll::Ready(Some(Ok(frame))) => {
                yielded = false;
                if let Ok(data) = frame.into_data() {
                    copy_within(&mut received, &data, max)?;
                }
            }
            Poll::Pending if !yielded => {
                (yielded, turns) = (true, turns + 1);
                tokio::task::yield_now().await;
            }
            Poll::Pending => return Ok(Ready::Arriving { received, rest: body }),
        }
    }
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

    fn budgets(main: usize, tusd: usize) -> Budgets {
        Budgets {
            max_connections: main,
            max_tusd_requests: tusd,
            admin_connections: ADMIN_MAX_CONNECTIONS,
        }
    }

    #[test]
    fn budgets_fit_the_open_file_limit() {
        let configured = budgets(4096, 256);
        // systemd's unit before the fix: 1,024 files for 4,096 connections.
        let (fitted, clamped) = configured.fit(1024, 3, 0).unwrap();
        let c = clamped.expect("lowered");
        assert_eq!(c.from, configured);
        assert_eq!(c.open_files, 1024);
        assert!(fitted.max_tusd_requests < fitted.max_connections);
        assert_eq!(fitted.admin_connections, ADMIN_MAX_CONNECTIONS);
        // Every file the budgets may hold, and the reserve, fit below the limit.
        assert!(fitted.files_needed(3, 0) <= 1024, "{fitted:?}");
        assert_eq!(fitted.max_connections + fitted.max_tusd_requests, 1024 - 128 - 48);
        // Enough files: as configured.
        let wanted = configured.files_needed(3, 4);
        assert_eq!(configured.fit(wanted, 3, 4).unwrap(), (configured, None));
        assert!(configured.fit(wanted - 1, 3, 4).unwrap().1.is_some());
        // Event deliveries come out of the budget too.
        let (with_events, _) = configured.fit(1024, 3, 64).unwrap();
        assert!(with_events.max_connections < fitted.max_connections);
        // Too few to run: an error naming the numbers.
        let e = configured.fit(180, 3, 0).unwrap_err();
        assert_eq!((e.open_files, e.reserved, e.admin), (180, 128, 48));
        assert!(e.to_string().contains("LimitNOFILE"), "{e}");
        // A small configured budget is never raised.
        let small = budgets(100, 10);
        assert_eq!(small.fit(1 << 20, 1, 0).unwrap(), (small, None));
    }

    #[test]
    fn tusd_budget_cuts_the_oldest_slow_body_past_the_grace() {
        let b = TusdBudget::new(2, Duration::from_millis(30));
        let first = b.admit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let second = b.admit().unwrap();
        // Full, nobody past the grace: refused.
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        // Both past the grace: the one reading the longest goes.
        let third = b.admit().unwrap();
        assert_eq!(first.slot.state.load(Ordering::Acquire), EVICTED);
        assert_ne!(second.slot.state.load(Ordering::Acquire), EVICTED);
        assert_eq!(b.in_flight(), 2);
        // A request deciding (its body read) is never cut.
        assert!(second.slot.finish_reading());
        assert!(third.slot.finish_reading());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_err(), "every request in flight is deciding");
        // The evicted one's body can no longer end: its hook is never decided.
        assert!(!first.slot.finish_reading());
        drop(first);
        assert_eq!(b.in_flight(), 2, "the evicted ticket held no place");
        drop(second);
        assert_eq!(b.in_flight(), 1);
        let _fourth = b.admit().unwrap();
    }

    #[tokio::test]
    async fn an_evicted_body_ends_in_an_error_and_wakes_its_request() {
        let b = TusdBudget::new(1, Duration::ZERO);
        let slow = b.admit().unwrap();
        // The rest of its body arrives only after it was cut.
        let body = slow.track(Full::new(Bytes::from_static(b"{}")));
        let _new = b.admit().unwrap();
        // Woken at once (hooks.rs answers 408 then, dropping the read).
        tokio::time::timeout(Duration::from_secs(5), slow.evicted())
            .await
            .expect("the evicted request is woken");
        // Had the handler gone on, its body would never have ended well.
        let r = read_body(body, 1 << 20, Duration::from_secs(1)).await;
        assert!(
            matches!(&r, Err(BodyError::Read(e)) if e.is::<Evicted>()),
            "{r:?}"
        );
        // A body that completes first moves to deciding and ends normally.
        let b = TusdBudget::new(1, Duration::ZERO);
        let t = b.admit().unwrap();
        let body = t.track(Full::new(Bytes::from_static(b"{}")));
        assert_eq!(read_body(body, 10, Duration::from_secs(1)).await.unwrap(), "{}");
        assert!(b.admit().is_err(), "deciding: not evicted");
    }

    /// What a scripted body does at each poll.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Frame(&'static [u8]),
        /// Nothing yet (the next poll goes on with the script).
        Pending,
    }

    /// A body that follows its script, then ends.
    #[derive(Debug)]
    struct Script(std::collections::VecDeque<Step>);

    fn script(steps: &[Step]) -> Script {
        Script(steps.iter().copied().collect())
    }

    impl hyper::body::Body for Script {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::task::Poll;
            match self.0.pop_front() {
                None => Poll::Ready(None),
                Some(Step::Frame(b)) => {
                    Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b)))))
                }
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    #[tokio::test]
    async fn a_body_there_with_its_head_is_whole_without_waiting() {
        use Step::*;
        // tusd's hook: hyper read head and body together.
        let r = read_ready(Full::new(Bytes::from_static(b"{\"Type\":1}")), 1024).await;
        assert!(matches!(&r, Ok(Ready::Whole(b)) if b == "{\"Type\":1}"), "{r:?}");
        // Nothing at all (Content-Length: 0).
        let r = read_ready(Full::new(Bytes::new()), 1024).await;
        assert!(matches!(&r, Ok(Ready::Whole(b)) if b.is_empty()), "{r:?}");
        // The rest in the socket, read by the connection on its next turn
        // (a body written in a few back-to-back writes).
        let r = read_ready(
            script(&[Frame(b"ab"), Pending, Frame(b"cd"), Pending, Frame(b"e")]),
            1024,
        )
        .await;
        assert!(matches!(&r, Ok(Ready::Whole(b)) if b == "abcde"), "{r:?}");
        // Over the cap: refused whatever its pace.
        let r = read_ready(Full::new(Bytes::from_static(b"0123456789!")), 10).await;
        assert!(matches!(r, Err(BodyError::TooLarge)), "{r:?}");
    }

    #[tokio::test]
    async fn a_body_that_needs_a_wait_is_still_arriving_and_keeps_its_bytes() {
        use Step::*;
        // A slow sender: a turn with nothing new.
        let r = read_ready(script(&[Frame(b"{"), Pending, Pending, Frame(b"}")]), 1024).await;
        let Ok(Ready::Arriving { received, rest }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(&received[..], b"{");
        // Nothing is lost: the rest is read after what was received.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        assert_eq!(finish_body(received, rest, 1024, deadline).await.unwrap(), "{}");
        // Headers only, the body not yet sent.
        let r = read_ready(script(&[Pending, Pending, Frame(b"{}")]), 1024).await;
        assert!(
            matches!(&r, Ok(Ready::Arriving { received, .. }) if received.is_empty()),
            "{r:?}"
        );
        // A body longer than READY_BODY_MAX takes the budgeted path even when
        // it is all there.
        static BIG: [u8; READY_BODY_MAX] = [b' '; READY_BODY_MAX];
        let r = read_ready(script(&[Frame(&BIG), Frame(b"{}")]), 1 << 20).await;
        let Ok(Ready::Arriving { received, rest }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(received.len(), READY_BODY_MAX);
        let whole = finish_body(received, rest, 1 << 20, deadline).await.unwrap();
        assert_eq!(whole.len(), READY_BODY_MAX + 2);
        // The cap counts what was received before.
        let r = read_ready(script(&[Frame(b"0123"), Pending, Pending, Frame(b"456789!")]), 10).await;
        let Ok(Ready::Arriving { received, rest }) = r else {
            panic!("{r:?}")
        };
        let r = finish_body(received, rest, 10, deadline).await;
        assert!(matches!(r, Err(BodyError::TooLarge)), "{r:?}");
        // Frames trickled one per turn stop at READY_TURNS.
        let trickle: Vec<Step> = (0..100).flat_map(|_| [Frame(b" "), Pending]).collect();
        let r = read_ready(script(&trickle), 1024).await;
        assert!(
            matches!(&r, Ok(Ready::Arriving { received, .. }) if received.len() == READY_TURNS as usize + 1),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn decisions_wait_for_a_turn_and_are_not_refused() {
        let b = TusdBudget::new(1, Duration::ZERO);
        let first = b.decision().await;
        // Every place for bodies still arriving is free meanwhile.
        let _arriving = b.admit().unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.decision()).await;
        assert!(waiting.is_err(), "a second decision waits");
        drop(first);
        let _turn = tokio::time::timeout(Duration::from_secs(5), b.decision())
            .await
            .expect("its turn comes when the first is answered");
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
