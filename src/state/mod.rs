//! Shared state: single-use upload tokens and revocations, behind one trait.
//!
//! # Design
//!
//! - [`Backend`] is the one trait: `memory` ([`memory::Memory`], in the
//!   process, one replica) or `redis` ([`redis::Redis`], Redis 7 / Valkey shared
//!   by every replica). Chosen at start by `[state] backend`; not reloadable.
//! - **Single-use tokens** need an atomic test-and-set shared by the fleet, so
//!   each accepted pre-create asks the backend once (one Lua script in Redis),
//!   within `[state] timeout`. The pre-create decision itself stays pure: it
//!   hands the adapter a [`crate::tusd::precreate::Claim`] only after every
//!   other check passed. A plain or final upload consumes the token; a partial
//!   upload is counted against the grant's bounds (`[upload] max_parts`, and
//!   `max_size` for the parts' declared sizes together), in the same step that
//!   checks the token is not consumed.
//! - **A claim that gave up is undone.** Each claim writes a fresh random
//!   [`Nonce`] (the mark's value, the part's field). When it gets no answer
//!   within `[state] timeout` and pre-create answers 503 (`fail_closed`), the
//!   command may still run later: a stalled Redis (a slow command, a fork, a
//!   paused VM) runs what it had buffered when it resumes. So [`Shared`]
//!   queues an undo of that nonce right away, on the same multiplexed
//!   connection: Redis runs one connection's commands in order, so the undo
//!   runs right after the stalled claim, before anything the client's retry
//!   sends through this replica. An undo removes only what its own nonce
//!   wrote and leaves a tombstone, so it is idempotent and a claim arriving
//!   after its undo writes nothing. Second layer, for an undo queued on
//!   another connection (a reconnect in between) or not queued at all: the
//!   replica remembers the given-up nonces ([`given_up`], bounded, expiring
//!   with the token) and its next claim of the same grant undoes them first,
//!   in the same atomic step. A retry on *another* replica relies on the
//!   first layer alone: it is refused `token_used` only if Redis runs it
//!   between the stalled claim and its undo, i.e. in the milliseconds Redis
//!   takes to drain the stalled replica's backlog after resuming (a retry
//!   sent while Redis is still stalled gets 503 again and is undone too).
//!   `fail_open` accepts the upload unchecked and undoes nothing: the late
//!   claim then marks a token that did create an upload.
//! - **Revocations** are read on every `/auth` and written rarely, so they are
//!   *replicated*, not queried: each replica holds the set as an immutable
//!   snapshot ([`RevocationSet`] in an `ArcSwap`) and `/auth` reads it without
//!   any I/O, lock or allocation (one length check when nothing is revoked). The
//!   memory backend swaps the snapshot at once on a write; with Redis a sync
//!   task compares a version key every `[state] sync_interval` and reloads the
//!   set when it changed, so a revocation is honoured fleet-wide within
//!   `sync_interval` (+ one round trip).
//! - **Backend down** (Redis only): the sync and every command are bounded by
//!   `[state] timeout`; the first failure logs one ERROR line, sets
//!   `assetgate_state_up` to 0 and `/readyz` to 503; recovery logs one line and
//!   flips both back. Meanwhile each feature does what its `*_when_down` says:
//!   pre-create with a single-use token is refused (503 `state_unavailable`) or
//!   accepted unchecked; `/auth` keeps using the last snapshot for
//!   `[state] stale_after`, then denies valid links (403 `unavailable`, 503
//!   through the shipped nginx) or keeps allowing them on the stale set.

mod backend;
pub mod given_up;
pub mod memory;
pub mod redis;
pub mod revocation;

pub use backend::{Ask, Backend, Fut, Nonce, StateError, Use};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use revocation::{Revocation, RevocationSet, NEVER};

use crate::config::{FailMode, StateBackend, StateConfig};
use crate::metrics::Metrics;
use crate::metrics::{FailOpen, StateOp};
use crate::tusd::precreate::Claim;

/// How long an undo may wait for the connection (a reconnect) before it is
/// left to the next claim of its grant on this replica.
const UNDO_WITHIN: Duration = Duration::from_secs(10);

/// Builds the configured backend (Redis connects lazily: the daemon starts,
/// not ready, while Redis is down).
pub fn backend(config: &StateConfig) -> Result<Arc<dyn Backend>, StateError> {
    Ok(match &config.backend {
        StateBackend::Memory => Arc::new(memory::Memory::default()),
        StateBackend::Redis { url } => Arc::new(redis::Redis::new(url, &config.key_prefix, config.timeout)?),
    })
}

/// Where a verified link stands against the revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not revoked.
    Clear,
    /// Revoked: 403 `revoked`.
    Revoked,
    /// The revocations could not be kept in sync for `stale_after` and
    /// `revocation_when_down = "fail_closed"`: 403 `unavailable`.
    Unavailable,
}

/// `last_sync_ms` before the first successful sync: a replica that never
/// synced knows no revocation, so it is stale from the start.
const NEVER_SYNCED: u64 = u64::MAX;

/// The daemon's handle on the shared state: the backend, the replicated
/// revocation set, health.
pub struct Shared {
    backend: Arc<dyn Backend>,
    revocations: ArcSwap<RevocationSet>,
    /// Redis: the snapshot may go stale; memory: it is the truth.
    replicated: bool,
    config: StateConfig,
    metrics: Metrics,
    started: Instant,
    /// Milliseconds since `started` of the last successful sync.
    last_sync_ms: AtomicU64,
    version: tokio::sync::Mutex<Option<Option<u64>>>,
    up: AtomicBool,
    given_up: Arc<given_up::GivenUp>,
}

impl Shared {
    /// A handle on `backend`, up, with an empty revocation set (the first sync
    /// fills it).
    pub fn new(backend: Arc<dyn Backend>, config: StateConfig, metrics: Metrics) -> Self {
        let replicated = !matches!(config.backend, StateBackend::Memory);
        metrics.set_state_up(true);
        Shared {
            backend,
            revocations: ArcSwap::from_pointee(RevocationSet::default()),
            replicated,
            config,
            metrics,
            started: Instant::now(),
            last_sync_ms: AtomicU64::new(NEVER_SYNCED),
            version: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(true),
            given_up: Arc::default(),
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Whether the backend answered last time it was asked (`/readyz`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// How many revocations are in force (as last synced).
    pub fn revocation_count(&self) -> usize {
        self.revocations.load().len()
    }

    /// The `/auth` check: no I/O, no lock; one length check when nothing is
    /// revoked and the backend is the memory one.
    pub fn standing(&self, uri: &[u8], expires: i64, private_prefix: &str, now: i64) -> Standing {
        if self.replicated && self.is_stale() {
            match self.config.revocation_when_down {
                FailMode::Closed => return Standing::Unavailable,
                FailMode::Open => self.metrics.count_fail_open(FailOpen::Revocation),
            }
        }
        let set = self.revocations.load();
        if set.is_empty() || !set.revokes(uri, expires, private_prefix, now) {
            Standing::Clear
        } else {
            Standing::Revoked
        }
    }

    fn is_stale(&self) -> bool {
        let last = self.last_sync_ms.load(Ordering::Relaxed);
        if last == NEVER_SYNCED {
            return true;
        }
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(last) > self.config.stale_after.as_millis() as u64
    }

    /// Runs a single-use claim at `now` (consumes the token, or counts a
    /// partial upload); what it writes lives until the token's expiry plus
    /// `skew`. On an error with `single_use_when_down = "fail_closed"` (the
    /// caller answers 503) the claim is given up: undone in the backend, and
    /// remembered here until that is confirmed (see the module notes).
    pub async fn claim(&self, claim: &Claim, now: i64, skew: Duration) -> Result<Use, StateError> {
        let remaining = claim.expires().saturating_sub(now).max(0) as u64;
        let ask = Ask {
            id: *claim.id(),
            nonce: Nonce::random(),
            ttl: Duration::from_secs(remaining.saturating_add(skew.as_secs()).max(1)),
            kind: claim.kind(),
            undo: self.given_up.pending(claim.id()),
        };
        match self.bounded(StateOp::SingleUse, self.backend.claim(&ask)).await {
            Ok(found) => {
                self.given_up.settled(&ask.id, &ask.undo);
                self.set_up(true, "");
                Ok(found)
            }
            Err(e) => {
                if self.config.single_use_when_down == FailMode::Closed {
                    self.give_up(ask);
                }
                Err(e)
            }
        }
    }

    /// Queues the undo of a claim refused with 503, and remembers it until
    /// the undo is confirmed. Spawned, not awaited: the backend may be the
    /// one stalled, and the command is queued on the connection as soon as
    /// the task first runs, long before the client can retry.
    fn give_up(&self, mut ask: Ask) {
        if !self.given_up.remember(&ask.id, ask.nonce, ask.ttl) {
            tracing::warn!(
                backend = self.backend.name(),
                max = given_up::MAX_GIVEN_UP,
                "too many given-up single-use claims to remember: this one relies on its queued undo alone"
            );
        }
        ask.undo.clear();
        let (backend, given_up) = (self.backend.clone(), self.given_up.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(UNDO_WITHIN, backend.undo(&ask)).await {
                Ok(Ok(())) => given_up.settled(&ask.id, &[ask.nonce]),
                Ok(Err(StateError(e))) => {
                    tracing::debug!(
                        error = e,
                        "undo of a given-up claim unconfirmed: the next claim of its grant here undoes it"
                    )
                }
                Err(_) => tracing::debug!(
                    "undo of a given-up claim unconfirmed: the next claim of its grant here undoes it"
                ),
            }
        });
    }

    /// How many given-up claims await a confirmed undo.
    pub fn given_up(&self) -> usize {
        self.given_up.len()
    }

    /// What pre-create does when [`Shared::claim`] failed.
    pub fn single_use_when_down(&self) -> FailMode {
        self.config.single_use_when_down
    }

    /// Records a revocation and, for the memory backend, applies it at once.
    pub async fn revoke(&self, entry: &Revocation, until: i64, now: i64) -> Result<(), StateError> {
        self.bounded(StateOp::Revoke, self.backend.revoke(entry, until, now))
            .await?;
        self.sync(now).await
    }

    /// Drops a revocation; `false` if it was not there.
    pub async fn unrevoke(&self, entry: &Revocation, now: i64) -> Result<bool, StateError> {
        let found = self
            .bounded(StateOp::Revoke, self.backend.unrevoke(entry))
            .await?;
        self.sync(now).await?;
        Ok(found)
    }

    /// Every revocation in force, from the backend.
    pub async fn list(&self, now: i64) -> Result<Vec<(Revocation, i64)>, StateError> {
        self.bounded(StateOp::List, self.backend.list(now)).await
    }

    /// One sync: reloads the revocation set when the backend's version changed.
    pub async fn sync(&self, now: i64) -> Result<(), StateError> {
        let result = async {
            let version = self.bounded(StateOp::Sync, self.backend.version()).await?;
            let mut seen = self.version.lock().await;
            if *seen != Some(version) {
                let entries = self.bounded(StateOp::Sync, self.backend.list(now)).await?;
                let set = RevocationSet::new(entries, now);
                self.metrics.set_revocations(set.len());
                self.revocations.store(Arc::new(set));
                *seen = Some(version);
            }
            Ok::<(), StateError>(())
        }
        .await;
        match &result {
            Ok(()) => {
                self.last_sync_ms
                    .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
                self.set_up(true, "");
            }
            Err(e) => self.set_up(false, &e.0),
        }
        result
    }

    /// Runs [`Shared::sync`] every `sync_interval` until `stop` is
    /// cancelled; a sync in flight then is dropped (it only reads, bounded by
    /// `[state] timeout`).
    pub async fn run_sync(
        self: Arc<Self>,
        clock: Arc<dyn crate::clock::Clock>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let syncs = async {
            loop {
                tick.tick().await;
                let _ = self.sync(clock.now()).await;
            }
        };
        stop.run_until_cancelled(syncs).await;
    }

    async fn bounded<T>(&self, op: StateOp, fut: Fut<'_, T>) -> Result<T, StateError> {
        let result = match tokio::time::timeout(self.config.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StateError(format!(
                "no answer within [state] timeout ({} ms)",
                self.config.timeout.as_millis()
            ))),
        };
        if let Err(e) = &result {
            self.metrics.count_state_error(op);
            self.set_up(false, &e.0);
        }
        result
    }

    /// Logs transitions only: one line when the backend goes down, one when it
    /// is back.
    fn set_up(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        self.metrics.set_state_up(up);
        if up {
            tracing::info!(backend = self.backend.name(), "state backend reachable again");
        } else {
            tracing::error!(
                backend = self.backend.name(),
                error = why,
                single_use = self.config.single_use_when_down.as_str(),
                revocation = self.config.revocation_when_down.as_str(),
                "state backend unreachable: /readyz is 503 until it answers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::mint;
    use crate::tusd::testing::{storage_config, upload_config, NOW, S1};

    /// A backend that is down or up on demand and records what it is asked.
    #[derive(Default)]
    struct Scripted {
        down: AtomicBool,
        undo_confirms: AtomicBool,
        asked: Mutex<Vec<(&'static str, Ask)>>,
    }

    impl Scripted {
        fn asked(&self) -> Vec<(&'static str, Ask)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn claim<'a>(&'a self, ask: &'a Ask) -> Fut<'a, Use> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(("claim", ask.clone()));
                if self.down.load(Ordering::Relaxed) {
                    Err(StateError("down".into()))
                } else {
                    Ok(Use::First)
                }
            })
        }
        fn undo<'a>(&'a self, ask: &'a Ask) -> Fut<'a, ()> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(("undo", ask.clone()));
                if self.undo_confirms.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err(StateError("still down".into()))
                }
            })
        }
        fn revoke<'a>(&'a self, _: &'a Revocation, _: i64, _: i64) -> Fut<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn unrevoke<'a>(&'a self, _: &'a Revocation) -> Fut<'a, bool> {
            Box::pin(async { Ok(false) })
        }
        fn list<'a>(&'a self, _: i64) -> Fut<'a, Vec<(Revocation, i64)>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn version<'a>(&'a self) -> Fut<'a, Option<u64>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn shared(backend: Arc<Scripted>, mode: FailMode) -> Shared {
        let mut config = crate::config::load_from(&Default::default(), &[]).unwrap().state;
        config.single_use_when_down = mode;
        Shared::new(backend, config, Metrics::new())
    }

    fn claim(key: &str) -> Claim {
        let up = upload_config(&[S1]);
        let upload = crate::tusd::Upload {
            size: Some(5),
            metadata: mint(S1.as_bytes(), key, "text/plain", Visibility::Private, NOW + 600),
            ..Default::default()
        };
        let gate = crate::tusd::Gate {
            upload: &up,
            storage: &storage_config(),
            upload_ids: Default::default(),
        };
        crate::tusd::precreate::check(&upload, gate, NOW, &|_: &std::path::Path| false)
            .unwrap()
            .claim(&up)
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("not reached within 1 s");
    }

    /// The second layer of finding 5 (issue 19): a claim refused 503 is undone
    /// in the backend and, until that is confirmed, undone again by the next
    /// claim of the same grant on this replica.
    #[tokio::test]
    async fn a_given_up_claim_is_undone_and_carried_until_confirmed() {
        let backend = Arc::new(Scripted::default());
        let s = shared(backend.clone(), FailMode::Closed);
        let (a, b) = (claim("a.txt"), claim("b.txt"));

        backend.down.store(true, Ordering::Relaxed);
        assert!(s.claim(&a, NOW, Duration::from_secs(30)).await.is_err());
        until(|| backend.asked().len() == 2).await;
        let asked = backend.asked();
        let given_up = asked[0].1.nonce;
        assert_eq!((asked[1].0, asked[1].1.nonce), ("undo", given_up), "undo queued");
        assert_eq!(
            asked[0].1.ttl,
            Duration::from_secs(630),
            "the token's life + skew"
        );
        assert_eq!(s.given_up(), 1, "the undo was not confirmed");

        backend.down.store(false, Ordering::Relaxed);
        assert_eq!(s.claim(&b, NOW, Duration::from_secs(30)).await, Ok(Use::First));
        assert!(
            backend.asked()[2].1.undo.is_empty(),
            "another grant carries nothing"
        );
        assert_eq!(s.claim(&a, NOW, Duration::from_secs(30)).await, Ok(Use::First));
        let retry = &backend.asked()[3].1;
        assert_eq!(retry.undo, vec![given_up], "the retry undoes it first");
        assert_ne!(retry.nonce, given_up, "a fresh nonce per request");
        assert_eq!(s.given_up(), 0, "settled by the retry");

        // A confirmed undo is forgotten at once.
        backend.down.store(true, Ordering::Relaxed);
        backend.undo_confirms.store(true, Ordering::Relaxed);
        assert!(s.claim(&a, NOW, Duration::from_secs(30)).await.is_err());
        until(|| backend.asked().len() == 6).await;
        until(|| s.given_up() == 0).await;
    }

    /// fail_open accepted the upload: its claim, if it lands, is right.
    #[tokio::test]
    async fn fail_open_undoes_nothing() {
        let backend = Arc::new(Scripted::default());
        let s = shared(backend.clone(), FailMode::Open);
        backend.down.store(true, Ordering::Relaxed);
        assert!(s
            .claim(&claim("a.txt"), NOW, Duration::from_secs(30))
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(backend.asked().len(), 1, "{:?}", backend.asked());
        assert_eq!(s.given_up(), 0);
    }
}
