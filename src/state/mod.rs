//! Shared state: single-use upload tokens and revocations, behind one trait.
//!
//! # Design
//!
//! - [`Backend`] is the one trait: `memory` ([`memory::Memory`], in the
//!   process, one replica) or `redis` ([`redis::Redis`], Redis 7 / Valkey shared
//!   by every replica). Chosen at start by `[state] backend`; not reloadable.
//! - **Single-use tokens** need an atomic test-and-set shared by the fleet, so
//!   each accepted pre-create asks the backend once (`SET key NX PX` in Redis),
//!   within `[state] timeout`. The pre-create decision itself stays pure: it
//!   hands the adapter a [`crate::tusd::precreate::Claim`] only after every
//!   other check passed.
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

pub mod memory;
pub mod redis;
pub mod revocation;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use revocation::{Revocation, RevocationSet, NEVER};

use crate::config::{FailMode, StateBackend, StateConfig};
use crate::metrics::Metrics;
use crate::metrics::{FailOpen, StateOp};
use crate::tusd::precreate::Claim;

/// A boxed backend future (the trait is used as `dyn Backend`).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The backend could not answer (unreachable, timed out, refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// What consuming a single-use token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The token was not used before: it is now.
    First,
    /// The token was used already: refuse (`token_used`).
    Replay,
}

/// The shared-state operations; every replica of a fleet must see the same
/// answers.
pub trait Backend: Send + Sync {
    /// `memory` or `redis`.
    fn name(&self) -> &'static str;
    /// Atomically marks `id` used for `ttl` unless it already is.
    fn consume<'a>(&'a self, id: &'a [u8; 32], ttl: Duration) -> Fut<'a, Use>;
    /// Whether `id` is marked used.
    fn is_used<'a>(&'a self, id: &'a [u8; 32]) -> Fut<'a, bool>;
    /// Records a revocation kept until `until` (Unix seconds; [`NEVER`]).
    fn revoke<'a>(&'a self, entry: &'a Revocation, until: i64, now: i64) -> Fut<'a, ()>;
    /// Drops a revocation; `false` if it was not there.
    fn unrevoke<'a>(&'a self, entry: &'a Revocation) -> Fut<'a, bool>;
    /// Every revocation in force at `now`, with its `until`.
    fn list<'a>(&'a self, now: i64) -> Fut<'a, Vec<(Revocation, i64)>>;
    /// A value that changes whenever the revocations change (the sync loop
    /// reloads the set when it differs from the last one seen).
    fn version<'a>(&'a self) -> Fut<'a, Option<u64>>;
}

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

    /// Consumes (or, for a partial upload, only checks) a single-use claim at
    /// `now`; the mark lives until the token's expiry plus `skew`.
    pub async fn consume(&self, claim: &Claim, now: i64, skew: Duration) -> Result<Use, StateError> {
        let id = claim.id();
        let result = if claim.is_partial() {
            self.bounded(StateOp::SingleUse, self.backend.is_used(id))
                .await
                .map(|used| if used { Use::Replay } else { Use::First })
        } else {
            let remaining = claim.expires().saturating_sub(now).max(0) as u64;
            let ttl = Duration::from_secs(remaining.saturating_add(skew.as_secs()).max(1));
            self.bounded(StateOp::SingleUse, self.backend.consume(id, ttl))
                .await
        };
        if result.is_ok() {
            self.set_up(true, "");
        }
        result
    }

    /// What pre-create does when [`Shared::consume`] failed.
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

    /// Runs [`Shared::sync`] every `sync_interval` until the process ends.
    pub async fn run_sync(self: Arc<Self>, clock: Arc<dyn crate::clock::Clock>) {
        let mut tick = tokio::time::interval(self.config.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _ = self.sync(clock.now()).await;
        }
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
