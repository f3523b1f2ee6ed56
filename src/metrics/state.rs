//! The state backend's families (`crate::state`):
//! - `assetgate_state_up`: 1 while the backend answers, else 0;
//! - `assetgate_state_errors_total{op}`: failed state operations;
//! - `assetgate_state_fail_open_total{feature}`: requests let through
//!   unchecked because the backend was down and the feature is `fail_open`;
//! - `assetgate_revocations`: revocations in force (as last synced).

use prometheus::{IntGauge, Registry};

use super::label::{labels, registered, Counters};

labels!(
    /// `op` of `assetgate_state_errors_total`.
    StateOp "op" {
        /// Checking or consuming a single-use token.
        SingleUse => "single_use",
        /// Syncing revocations.
        Sync => "sync",
        /// Adding or removing a revocation.
        Revoke => "revoke",
        /// Listing revocations.
        List => "list",
    }
);

labels!(
    /// `feature` of `assetgate_state_fail_open_total`.
    FailOpen "feature" {
        /// `[upload] single_use`.
        SingleUse => "single_use",
        /// Revocations on `/auth`.
        Revocation => "revocation",
    }
);

/// The state backend's families.
#[derive(Clone)]
pub struct State {
    up: IntGauge,
    errors: Counters<StateOp>,
    fail_open: Counters<FailOpen>,
    revocations: IntGauge,
}

impl State {
    /// Registers the families (the backend counts as up until it fails).
    pub fn register(registry: &Registry) -> State {
        let up = registered(
            registry,
            IntGauge::new(
                "assetgate_state_up",
                "1 while the state backend ([state] backend) answers, 0 while it does not.",
            )
            .expect("valid metric"),
        );
        up.set(1);
        State {
            up,
            errors: Counters::register(
                registry,
                "assetgate_state_errors_total",
                "State backend operations that failed (unreachable, timed out), by operation.",
            ),
            fail_open: Counters::register(
                registry,
                "assetgate_state_fail_open_total",
                "Requests let through unchecked because the state backend was down and the feature is fail_open.",
            ),
            revocations: registered(
                registry,
                IntGauge::new(
                    "assetgate_revocations",
                    "Revocations in force on this replica (as last synced).",
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Sets `assetgate_state_up`.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Counts one failed state operation.
    pub fn count_error(&self, op: StateOp) {
        self.errors.inc(op);
    }

    /// Counts one request let through unchecked.
    pub fn count_fail_open(&self, feature: FailOpen) {
        self.fail_open.inc(feature);
    }

    /// Sets `assetgate_revocations`.
    pub fn set_revocations(&self, n: usize) {
        self.revocations.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
