//! The mover's and the reconciler's families (`crate::finalize`,
//! `crate::daemon::reconcile`):
//! - `assetgate_finalize_total{result}`: moves of finished uploads, by result;
//! - `assetgate_temp_files_removed_total`: temporary files of interrupted
//!   moves removed;
//! - `assetgate_reconcile_total{result}`: what the reconciler's passes did.

use prometheus::{IntCounter, Registry};

use super::label::{labels, registered, Counters, Label};

/// `result` of `assetgate_finalize_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizeResult {
    /// Published (or found already published).
    Done(crate::finalize::Method),
    /// Not moved, and why.
    Failed(crate::finalize::Reason),
    /// `[storage] root` or `[tusd] upload_dir` is not set.
    NotConfigured,
    /// Too many moves running or queued.
    Busy,
    /// A second delivery while the first move runs.
    Duplicate,
}

impl FinalizeResult {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalizeResult::Done(m) => m.as_str(),
            FinalizeResult::Failed(r) => r.as_str(),
            FinalizeResult::NotConfigured => "not_configured",
            FinalizeResult::Busy => "busy",
            FinalizeResult::Duplicate => "duplicate",
        }
    }
}

impl Label for FinalizeResult {
    const NAME: &'static str = "result";

    fn all() -> Vec<Self> {
        crate::finalize::Method::ALL
            .map(FinalizeResult::Done)
            .into_iter()
            .chain(crate::finalize::Reason::ALL.map(FinalizeResult::Failed))
            .chain([
                FinalizeResult::NotConfigured,
                FinalizeResult::Busy,
                FinalizeResult::Duplicate,
            ])
            .collect()
    }

    fn as_str(self) -> &'static str {
        FinalizeResult::as_str(self)
    }
}

labels!(
    /// `result` of `assetgate_reconcile_total`.
    ReconcileResult "result" {
        /// A finished upload whose post-finish never came, handed to the mover.
        Published => "published",
        /// Finished, but refused by the post-finish rules.
        Kept => "kept",
        /// An abandoned upload removed.
        AbandonedRemoved => "abandoned_removed",
        /// Left in place: no verified token to attribute it to.
        Unattributable => "unattributable",
        /// The pass (or one step of it) failed.
        Error => "error",
    }
);

/// The mover's and the reconciler's families.
#[derive(Clone)]
pub struct Finalize {
    finalize: Counters<FinalizeResult>,
    temp_swept: IntCounter,
    reconcile: Counters<ReconcileResult>,
}

impl Finalize {
    /// Registers the families.
    pub fn register(registry: &Registry) -> Finalize {
        Finalize {
            finalize: Counters::register(
                registry,
                "assetgate_finalize_total",
                "Moves of finished uploads into the asset tree, by result (renamed, copied, already_finalized, or why not).",
            ),
            temp_swept: registered(
                registry,
                IntCounter::new(
                    "assetgate_temp_files_removed_total",
                    "Temporary files of interrupted moves (a crash mid-copy) removed from the asset tree's .assetgate-tmp directory.",
                )
                .expect("valid metric"),
            ),
            reconcile: Counters::register(
                registry,
                "assetgate_reconcile_total",
                "What the reconciler's passes over upload_dir did: published (finished uploads whose post-finish never came, handed to the mover), kept (finished but refused by the post-finish rules), abandoned_removed, unattributable (left: no verified token), error.",
            ),
        }
    }

    /// Counts one finalize result.
    pub fn count(&self, result: FinalizeResult) {
        self.finalize.inc(result);
    }

    /// Counts temporary files removed by a sweep.
    pub fn count_temp_swept(&self, n: usize) {
        self.temp_swept.inc_by(n as u64);
    }

    /// Counts what a reconciler pass did.
    pub fn count_reconcile(&self, result: ReconcileResult, n: usize) {
        self.reconcile.inc_by(result, n as u64);
    }
}
