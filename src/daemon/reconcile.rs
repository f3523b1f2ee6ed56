//! The reconciler: the daemon re-scans `[tusd] upload_dir` every
//! `[tusd] reconcile_interval` and
//!
//! 1. publishes finished uploads whose post-finish never arrived (gate down,
//!    network, tusd's request context cancelled: tusd never redelivers a post
//!    hook), under exactly the post-finish rules: the publisher finds them
//!    ([`Publisher::find`]) and [`FinishedScan`] entries are planned by
//!    [`publisher::plan`] (as `finalize-pending` does: the token's signature,
//!    pre-create's policy rules, and with `[tusd] upload_ids = "signed"` the ID
//!    pre-create issued for that token) and handed to the same background
//!    worker as post-finish, deduplicated by upload ID; those the rules keep get
//!    their `upload.failed` ([`Publisher::keep`]). A record that is not paired
//!    with its data file (`<dir>/<ID>`) is never offered, nor is an upload the
//!    mover refused for good (`<ID>.refused`);
//! 2. removes abandoned uploads (see [`crate::tusd::abandon`]): unfinished, or
//!    finished parts, or refused for good, whose verified token expired more
//!    than `[tusd] abandon_after` ago; anything it cannot attribute to a
//!    verified token is counted and left. Stale records past the same bound
//!    are offered to the backend too (`Backend::remove_stale`: on S3 an
//!    `.info` whose multipart upload was aborted; the filesystem keeps its
//!    own);
//! 3. sweeps the temporary files of crashed copies (the backend's sweep, for
//!    the filesystem [`finalize::sweep_temp`]; on S3 it aborts stale multipart
//!    uploads, `crate::s3::abandon`). The sweep runs right after the scan
//!    (see [`Publisher::find`]), before 1 and 2 act on the scan.
//!
//! A refusal that repeats on every pass (a content mismatch, a conflict with an
//! existing asset, an unattributable upload) is logged once per upload and
//! reason, not once per pass.
//!
//! [`FinishedScan`]: finalize::PendingScan::finished

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::finalize::{self, PendingScan};
use crate::http::AppState;
use crate::metrics::ReconcileResult;
use crate::publisher::{self, report_sweep, Publisher};
use crate::tusd::{abandon, Gate, Part};

/// One pass's counts (also what the tests read).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Finished uploads handed to the mover.
    pub published: usize,
    /// Finished uploads post-finish rules refuse (forged, unverifiable, policy).
    pub kept: usize,
    /// Abandoned uploads removed.
    pub abandoned: usize,
    /// Uploads without a verified token, left alone.
    pub unattributable: usize,
    /// Temporary files of crashed copies removed.
    pub temp_removed: usize,
}

/// Remembers what was already logged, so a refusal repeating every pass is
/// logged once.
#[derive(Default)]
pub struct Seen(HashMap<String, &'static str>);

impl Seen {
    /// `true` the first time `id` is seen with `what`.
    fn first(&mut self, id: &str, what: &'static str) -> bool {
        self.0.insert(id.to_owned(), what) != Some(what)
    }

    /// Forget uploads no longer in the directory (bounds the memory).
    fn retain(&mut self, present: &std::collections::HashSet<String>) {
        self.0.retain(|id, _| present.contains(id));
    }
}

/// Runs a pass every `interval` until `stop` is cancelled. A pass under way
/// then finishes (the drain waits for it: the moves it started are drained
/// with the others); none starts after.
pub async fn run(state: Arc<AppState>, interval: Duration, stop: CancellationToken) {
    let Some(publisher) = state.finalizer.publisher().cloned() else {
        return;
    };
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: let the daemon settle first
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        pass(&state, &publisher, &mut seen).await;
    }
}

/// One pass; the filesystem work runs on the blocking pool.
pub async fn pass(state: &Arc<AppState>, publisher: &Arc<Publisher>, seen: &mut Seen) -> Pass {
    let mut out = Pass::default();
    let p = publisher.clone();
    let found = match tokio::task::spawn_blocking(move || p.find()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "reconcile pass failed");
            state.metrics.count_reconcile(ReconcileResult::Error, 1);
            return out;
        }
    };
    out.temp_removed = report_sweep(&found.swept, &state.metrics);
    let scan: PendingScan = match found.scan {
        Ok(s) => s,
        Err(e) => {
            if seen.first("", "scan_error") {
                tracing::error!(error = %e, "cannot scan upload_dir");
            }
            state.metrics.count_reconcile(ReconcileResult::Error, 1);
            return out;
        }
    };
    let present = scan
        .finished
        .iter()
        .chain(scan.stale.iter())
        .map(|p| p.id.clone())
        .chain(
            scan.skipped
                .iter()
                .filter_map(|s| s.upload.as_ref().map(|u| u.id.clone())),
        )
        .collect();
    seen.retain(&present);
    let cfg = state.current_owned();
    publish_finished(state, publisher, &scan, &cfg, seen, &mut out).await;
    remove_abandoned(state, publisher, &scan, &cfg, seen, &mut out).await;
    out
}

/// 1. Finished uploads (and stale infos of published ones) through
///    post-finish's rules: plans to the worker, refusals logged once and
///    given their `upload.failed`.
async fn publish_finished(
    state: &Arc<AppState>,
    publisher: &Arc<Publisher>,
    scan: &PendingScan,
    cfg: &Config,
    seen: &mut Seen,
    out: &mut Pass,
) {
    let gate = Gate {
        upload: &cfg.upload,
        storage: &cfg.storage,
        upload_ids: cfg.tusd.upload_ids,
    };
    let mut kept = Vec::new();
    for p in scan.finished.iter().chain(scan.stale.iter()) {
        match publisher::plan(p, gate) {
            Ok(plan) => {
                if seen.first(&p.id, "publish") {
                    tracing::info!(
                        upload_id = %p.id.escape_debug(),
                        key = %plan.key().escape_debug(),
                        "reconcile: a finished upload was never published (post-finish lost?): moving it now"
                    );
                }
                out.published += 1;
                state.finalizer.spawn(&plan, "reconcile");
            }
            Err(v) => {
                out.kept += 1;
                let reason = v.reason().as_str();
                if seen.first(&p.id, reason) {
                    tracing::warn!(upload_id = %p.id.escape_debug(), reason, "reconcile: a finished upload cannot be published; it stays in upload_dir");
                }
                kept.push((p.clone(), v));
            }
        }
    }
    // `upload.failed`, once per upload (the event id is derived from the
    // upload ID; the outbox drops a second one): blocking, an fsync each.
    if !kept.is_empty() {
        let (p, storage) = (publisher.clone(), cfg.storage.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for (found, verdict) in &kept {
                p.keep(found, verdict, &storage);
            }
        })
        .await;
    }
    state
        .metrics
        .count_reconcile(ReconcileResult::Published, out.published);
    state.metrics.count_reconcile(ReconcileResult::Kept, out.kept);
}

/// 2. Abandoned uploads: unfinished, parts or refused for good, whose verified
///    token expired more than `abandon_after` ago, removed through the backend.
async fn remove_abandoned(
    state: &Arc<AppState>,
    publisher: &Arc<Publisher>,
    scan: &PendingScan,
    cfg: &Config,
    seen: &mut Seen,
    out: &mut Pass,
) {
    let now = state.clock.now();
    let after = i64::try_from(cfg.tusd.abandon_after.as_secs()).unwrap_or(i64::MAX);
    let mut doomed = Vec::new();
    for s in &scan.skipped {
        let Some(u) = &s.upload else { continue };
        if s.reason == finalize::SkipReason::Refused && seen.first(&u.id, "refused") {
            tracing::info!(upload_id = %u.id.escape_debug(), "reconcile: an upload refused earlier (its .refused marker) is kept unpublished until abandon_after");
        }
        // Unfinished work, a part, or an upload refused for good: none of them
        // will be published, so each goes once its token is long expired.
        let record = Part {
            is_partial: u.is_partial,
            finished: false,
            metadata: u.metadata.clone(),
        };
        match abandon::decide(&record, &cfg.upload.secrets, now, after) {
            Ok(()) => doomed.push(u.clone()),
            Err(abandon::Keep::Unattributable) => {
                out.unattributable += 1;
                if seen.first(&u.id, "unattributable") {
                    tracing::warn!(upload_id = %u.id.escape_debug(), "reconcile: an unfinished upload carries no token the gate can verify; left alone");
                }
            }
            Err(_) => {}
        }
    }
    // Stale records (neither data nor work in progress, e.g. an upload whose
    // multipart upload the sweep aborted) past the same bound: offered to the
    // backend with the token's destination, whose marker keeps a published
    // one (the filesystem keeps them all).
    let mut stale = Vec::new();
    for u in &scan.stale {
        let record = Part {
            is_partial: u.is_partial,
            finished: false,
            metadata: u.metadata.clone(),
        };
        if abandon::decide(&record, &cfg.upload.secrets, now, after).is_ok() {
            // From the verified token alone (a stale record is often of an
            // unfinished upload, which post-finish's plan refuses).
            let destination =
                crate::token::upload::verify_signature_ignoring_expiry(&u.metadata, &cfg.upload.secrets)
                    .ok()
                    .map(|v| crate::tusd::rules::destination(v.visibility(), v.key(), &cfg.storage));
            stale.push((u.clone(), destination));
        }
    }
    if !doomed.is_empty() || !stale.is_empty() {
        let p = publisher.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let abandoned = doomed.into_iter().map(|u| (p.backend().remove_abandoned(&u), u));
            let stale = stale
                .into_iter()
                .map(|(u, d)| (p.backend().remove_stale(&u, d.as_deref()), u));
            abandoned.chain(stale).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (result, u) in removed {
            match result {
                Ok(true) => {
                    out.abandoned += 1;
                    tracing::info!(
                        upload_id = %u.id.escape_debug(),
                        key = %u.metadata.get(crate::token::upload::FIELD_KEY).map(String::as_str).unwrap_or("").escape_debug(),
                        partial = u.is_partial,
                        "reconcile: removed an abandoned upload (token expired more than abandon_after ago)"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    if seen.first(&u.id, "remove_error") {
                        tracing::warn!(upload_id = %u.id.escape_debug(), error = %e, "reconcile: could not remove an abandoned upload");
                    }
                    state.metrics.count_reconcile(ReconcileResult::Error, 1);
                }
            }
        }
    }
    state
        .metrics
        .count_reconcile(ReconcileResult::AbandonedRemoved, out.abandoned);
    state
        .metrics
        .count_reconcile(ReconcileResult::Unattributable, out.unattributable);
}
