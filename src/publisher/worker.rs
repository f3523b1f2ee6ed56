//! The background worker: publishes handed over by `/tusd` post-finish and
//! the reconciler run the [`Publisher`] on the blocking pool, at most
//! `MOVES_AT_ONCE` (16) at a time, deduplicated by upload ID, drained at
//! shutdown and cancelled when the grace is over; each outcome is logged and
//! counted here.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore};

use super::backend::Backend;
use super::service::{Publisher, Report};
use crate::events::{Outbox, Sink};
use crate::finalize::{self, Cancel, Cleanup, FinalizeError, Roots};
use crate::metrics::{FinalizeResult, Metrics};
use crate::tusd::FinalizePlan;

/// Upper bound on background moves running or queued at once.
const MAX_BACKGROUND: u32 = 1024;

/// Moves running on the blocking pool at once; the rest wait as tasks. A
/// burst (the reconciler finding a thousand lost post-finishes) otherwise
/// takes one blocking thread per move, and with `[events]` each move also
/// waits for its fsync'd commit: 512 threads and 70 MB more RSS in the
/// 1,000-event test, for no speed-up on a disk-bound job.
const MOVES_AT_ONCE: usize = 16;

/// Background publishing: the roots, the publisher, in-flight uploads, and a
/// tracker that shutdown drains.
pub struct Finalizer {
    roots: Option<Roots>,
    /// Where publishes go: the roots (`fs`), or the bucket (`s3`).
    backend: Option<Arc<dyn Backend>>,
    publisher: Option<Arc<Publisher>>,
    in_flight: Mutex<HashSet<String>>,
    tracker: Arc<Semaphore>,
    workers: Semaphore,
    cancel: Cancel,
    metrics: Metrics,
    /// Told of every publish (`serve --dev` prints where it landed).
    on_published: Option<OnPublished>,
    /// `[storage] backend = "s3"`: the bucket, for what reads it outside a
    /// publish (`/session`'s record).
    store: Option<crate::s3::Store>,
}

/// What [`Finalizer::on_published`] is told: an upload published by the
/// background worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The asset key.
    pub key: String,
    /// Its visibility.
    pub visibility: crate::policy::Visibility,
    /// Where it is: `[storage] root` / `{prefix}/{key}`.
    pub path: std::path::PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// A listener for publishes (called on the worker's task; must not block).
pub type OnPublished = Arc<dyn Fn(&Landed) + Send + Sync>;

impl Finalizer {
    /// `roots` is `None` when `[storage] root` or `[tusd] upload_dir` is not
    /// configured: then uploads are only gated, never moved.
    pub fn new(roots: Option<Roots>, metrics: Metrics) -> Self {
        let backend = roots.clone().map(|r| Arc::new(r) as Arc<dyn Backend>);
        Finalizer::with_backend(roots, backend, metrics)
    }

    /// `[storage] backend = "s3"`: publishes go to `backend` (the bucket);
    /// there are no roots (nothing on S3 reads the upload directory; the
    /// pre-finish content check is not built for S3 yet, issue 21). `store`
    /// serves `/session`'s reads of the upload's `.info`.
    pub fn s3(backend: Arc<dyn Backend>, store: crate::s3::Store, metrics: Metrics) -> Self {
        Finalizer {
            store: Some(store),
            ..Finalizer::with_backend(None, Some(backend), metrics)
        }
    }

    fn with_backend(roots: Option<Roots>, backend: Option<Arc<dyn Backend>>, metrics: Metrics) -> Self {
        Finalizer {
            metrics,
            publisher: backend.clone().map(|b| Arc::new(Publisher::new(b))),
            backend,
            roots,
            in_flight: Mutex::new(HashSet::new()),
            tracker: Arc::new(Semaphore::new(MAX_BACKGROUND as usize)),
            workers: Semaphore::new(MOVES_AT_ONCE),
            cancel: Cancel::new(),
            on_published: None,
            store: None,
        }
    }

    /// Calls `listener` after each publish of the background worker (post-finish,
    /// reconcile): `serve --dev` prints where the upload landed and a link.
    pub fn on_published(mut self, listener: OnPublished) -> Self {
        self.on_published = Some(listener);
        self
    }

    /// With `[events]`: every move commits its event to `outbox` before it is
    /// done (see `crate::events`).
    pub fn with_events(mut self, outbox: Option<Arc<Outbox>>) -> Self {
        self.publisher = self
            .backend
            .clone()
            .map(|b| Arc::new(Publisher::new(b).with_events(outbox.map(Sink::Local))));
        self
    }

    /// The bucket, with `[storage] backend = "s3"`.
    pub fn store(&self) -> Option<&crate::s3::Store> {
        self.store.as_ref()
    }

    /// The resolved roots, if finalizing is configured.
    pub fn roots(&self) -> Option<&Roots> {
        self.roots.as_ref()
    }

    /// The publisher, if finalizing is configured.
    pub fn publisher(&self) -> Option<&Arc<Publisher>> {
        self.publisher.as_ref()
    }

    /// Waits until every background move has finished.
    pub async fn drain(&self) {
        let _all = self.tracker.acquire_many(MAX_BACKGROUND).await;
    }

    /// The shutdown grace is over: running copies stop at their next chunk
    /// (temporary file removed, source intact, logged and counted as
    /// `cancelled`); moves not started yet do not start.
    pub fn abandon(&self) {
        self.cancel.cancel();
    }

    /// How many moves are running or queued.
    pub fn running(&self) -> usize {
        MAX_BACKGROUND as usize - self.tracker.available_permits()
    }

    /// Hands a plan to the publisher on the blocking pool, with in-flight dedupe by
    /// upload ID (a post-finish and a reconciler pass finding the same upload run it
    /// once) and the shutdown drain. `via`: `post-finish` or `reconcile`, for the log.
    pub fn spawn(self: &Arc<Self>, plan: &FinalizePlan, via: &'static str) {
        let this = self.clone();
        let Some(publisher) = this.publisher().cloned() else {
            tracing::warn!(
                endpoint = "tusd",
                hook = "post-finish",
                upload_id = %plan.upload_id().escape_debug(),
                via,
                "upload verified but not moved: set [storage] root and [tusd] upload_dir to finalize uploads"
            );
            this.metrics.count_finalize(FinalizeResult::NotConfigured);
            return;
        };
        let Ok(permit) = this.tracker.clone().try_acquire_owned() else {
            tracing::error!(endpoint = "tusd", hook = "post-finish", "too many moves in progress; the upload stays in upload_dir (run `assetgate finalize-pending` later)");
            this.metrics.count_finalize(FinalizeResult::Busy);
            return;
        };
        let plan = plan.clone();
        let cancel = this.cancel.clone();
        let dedupe_key = if plan.upload_id().is_empty() {
            plan.source().display().to_string()
        } else {
            plan.upload_id().to_owned()
        };
        let key = plan.key().escape_debug().to_string();
        let landed = this.on_published.as_ref().and_then(|_| {
            let root = this.roots.as_ref()?.storage_root();
            Some(Landed {
                key: plan.key().to_owned(),
                visibility: plan.visibility(),
                path: root.join(plan.destination()),
                bytes: 0,
            })
        });
        tokio::spawn(async move {
            let _permit = permit;
            if !this.in_flight.lock().await.insert(dedupe_key.clone()) {
                tracing::info!(
                    endpoint = "tusd",
                    hook = "post-finish",
                    via,
                    key,
                    "duplicate delivery while the move runs: ignored"
                );
                this.metrics.count_finalize(FinalizeResult::Duplicate);
                return;
            }
            let _worker = this.workers.acquire().await;
            if cancel.is_cancelled() {
                this.in_flight.lock().await.remove(&dedupe_key);
                tracing::warn!(endpoint = "tusd", hook = "post-finish", key, "shutting down: move not started, the upload stays in upload_dir (finalize-pending or the next start publishes it)");
                this.metrics
                    .count_finalize(FinalizeResult::Failed(finalize::MoveFailure::Cancelled));
                return;
            }
            let report = tokio::task::spawn_blocking(move || publisher.publish(&plan, &cancel)).await;
            this.in_flight.lock().await.remove(&dedupe_key);
            match report {
                Ok(report) => {
                    if let (Report::Published(done), Some(mut landed), Some(tell)) =
                        (&report, landed, this.on_published.as_ref())
                    {
                        landed.bytes = done.bytes;
                        tell(&landed);
                    }
                    this.log(report, via, &key)
                }
                Err(join) => {
                    this.metrics
                        .count_finalize(FinalizeResult::Failed(finalize::MoveFailure::Io));
                    tracing::error!(endpoint = "tusd", hook = "post-finish", key, error = %join, "the move task failed; the upload stays in upload_dir");
                }
            }
        });
    }

    /// The log line and the count of one publish.
    fn log(&self, report: Report, via: &'static str, key: &str) {
        match report {
            Report::Published(done) | Report::Held(done) => {
                self.metrics.count_finalize(FinalizeResult::Done(done.method));
                if done.cleanup == Cleanup::Held {
                    tracing::warn!(endpoint = "tusd", hook = "post-finish", via, key, "asset in place, but its event could not be committed: the upload stays in upload_dir, and the next reconcile pass (or finalize-pending) commits it");
                } else if done.cleanup != Cleanup::Done {
                    tracing::warn!(endpoint = "tusd", hook = "post-finish", key, cleanup = ?done.cleanup, "asset in place, but the upload's leftovers could not be removed");
                }
                tracing::info!(
                    endpoint = "tusd",
                    hook = "post-finish",
                    via,
                    key,
                    method = done.method.as_str(),
                    bytes = done.bytes,
                    "upload moved into the asset tree"
                );
            }
            Report::NotPublished(e @ FinalizeError::ContentMismatch { .. }) => {
                self.metrics.count_finalize(FinalizeResult::Failed(e.reason()));
                tracing::warn!(
                    endpoint = "tusd",
                    hook = "post-finish",
                    via,
                    key,
                    reason = e.as_str(),
                    "upload NOT published, it stays in upload_dir (never served): {e}"
                );
            }
            Report::NotPublished(e) => {
                self.metrics.count_finalize(FinalizeResult::Failed(e.reason()));
                let conflict = e.is_conflict();
                tracing::warn!(
                    endpoint = "tusd",
                    hook = "post-finish",
                    via,
                    key,
                    reason = e.as_str(),
                    conflict,
                    "upload NOT moved, it stays in upload_dir: {e}"
                );
            }
        }
    }
}

/// Startup: remove the temporary files crashed moves left behind (see
/// [`finalize::sweep_temp`]), with a log line and a metric.
pub fn sweep_temp_at_start(roots: &Roots, metrics: &Metrics) {
    report_sweep(&finalize::sweep_temp(roots, finalize::TEMP_MIN_AGE), metrics);
}

/// The log line and the count of a sweep (at start, and by each reconcile
/// pass): how many leftovers went.
pub fn report_sweep(swept: &io::Result<usize>, metrics: &Metrics) -> usize {
    match swept {
        Ok(0) => 0,
        Ok(n) => {
            tracing::warn!(removed = n, "removed temporary files left by an interrupted move");
            metrics.count_temp_swept(*n);
            *n
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not sweep the temporary directory of the asset tree");
            0
        }
    }
}
