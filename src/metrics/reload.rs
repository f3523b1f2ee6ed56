//! Configuration reloads' families (`crate::daemon::reload`):
//! - `assetgate_config_reloads_total{result}`: reloads (SIGHUP, a changed
//!   secret file) `applied`, `refused` (the old configuration stays) or
//!   `unchanged`;
//! - `assetgate_config_reload_refusals_total{reason}`: why refused reloads
//!   were refused;
//! - `assetgate_sighup_total`: SIGHUPs received (each starts a reload).

use prometheus::{IntCounter, Registry};

use super::label::{labels, registered, Counters};

labels!(
    /// `result` of `assetgate_config_reloads_total`.
    ReloadResult "result" {
        /// A new configuration is in force.
        Applied => "applied",
        /// Refused (`assetgate_config_reload_refusals_total` says why): the
        /// old configuration stays.
        Refused => "refused",
        /// Nothing changed.
        Unchanged => "unchanged",
    }
);

labels!(
    /// `reason` of `assetgate_config_reload_refusals_total`.
    ReloadRefusal "reason" {
        /// A key, or a file the configuration names, is invalid (unsafe or
        /// unreadable files included).
        Invalid => "invalid",
        /// The configuration file was rewritten in place without keys the
        /// running one has.
        DroppedKeys => "dropped_keys",
        /// The files kept changing right after being read.
        Changing => "changing",
        /// Reading the files did not finish in time.
        Timeout => "timeout",
    }
);

/// Configuration reloads' families.
#[derive(Clone)]
pub struct Reload {
    reloads: Counters<ReloadResult>,
    refusals: Counters<ReloadRefusal>,
    sighup: IntCounter,
}

impl Reload {
    /// Registers the families.
    pub fn register(registry: &Registry) -> Reload {
        Reload {
            reloads: Counters::register(
                registry,
                "assetgate_config_reloads_total",
                "Configuration reloads (SIGHUP or a changed secret file) by result: applied, refused (the old configuration stays; assetgate_config_reload_refusals_total says why), unchanged.",
            ),
            refusals: Counters::register(
                registry,
                "assetgate_config_reload_refusals_total",
                "Refused configuration reloads by reason: invalid (a key or a file it names), dropped_keys (the file rewritten in place without keys the running one has), changing (files still being written), timeout (reading the files did not finish).",
            ),
            sighup: registered(
                registry,
                IntCounter::new(
                    "assetgate_sighup_total",
                    "SIGHUPs received; each starts a configuration reload (see assetgate_config_reloads_total).",
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Counts one reload.
    pub fn count(&self, result: ReloadResult) {
        self.reloads.inc(result);
    }

    /// Counts one refused reload (`result="refused"`) and why.
    pub fn count_refusal(&self, reason: ReloadRefusal) {
        self.reloads.inc(ReloadResult::Refused);
        self.refusals.inc(reason);
    }

    /// Counts one SIGHUP.
    pub fn count_sighup(&self) {
        self.sighup.inc();
    }
}
