//! tusd hooks' family (`crate::http::hooks`):
//! `assetgate_hook_decisions_total{hook,decision,reason}`. Its series at
//! start are the core's own table: each [`Reason`] under every hook
//! [`Reason::hooks`] lists (`hook="other"` for a body that is not a hook),
//! with the decision [`Outcome::of`] it.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::label::registered;
use crate::tusd::{HookName, Outcome, Reason};

/// `hook` label of a body that is not a hook.
const NOT_A_HOOK: &str = "other";

/// The hooks' family.
#[derive(Clone)]
pub struct Hooks {
    decisions: IntCounterVec,
    /// `{hook="pre-create",decision="allow",reason="ok"}`, looked up once
    /// (every upload's first hook).
    precreate_allow: IntCounter,
}

impl Hooks {
    /// Registers the family; every (hook, decision, reason) the core can
    /// decide reads 0.
    pub fn register(registry: &Registry) -> Hooks {
        let decisions = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "assetgate_hook_decisions_total",
                    "tusd hook decisions by hook, decision and reason.",
                ),
                &["hook", "decision", "reason"],
            )
            .expect("valid metric"),
        );
        for reason in Reason::ALL {
            let outcome = Outcome::of(reason).as_str();
            let mut hooks: Vec<&str> = reason.hooks().iter().map(HookName::label).collect();
            if hooks.is_empty() {
                hooks.push(NOT_A_HOOK);
            }
            for hook in hooks {
                decisions
                    .with_label_values(&[hook, outcome, reason.as_str()])
                    .inc_by(0);
            }
        }
        Hooks {
            precreate_allow: decisions.with_label_values(&["pre-create", "allow", "ok"]),
            decisions,
        }
    }

    /// Counts one tusd hook decision; `hook` is `None` for a body that is
    /// not a hook (label `other`).
    pub fn count(&self, hook: Option<&HookName>, outcome: Outcome, reason: Reason) {
        let hook = hook.map_or(NOT_A_HOOK, HookName::label);
        // Every series counted was pre-registered: a decision the core's
        // table does not list fails the tests that make it.
        debug_assert!(
            listed(hook, outcome, reason),
            "{hook} {} {}: not in tusd::Reason::hooks / Outcome::of",
            outcome.as_str(),
            reason.as_str()
        );
        if (hook, outcome, reason) == ("pre-create", Outcome::Allow, Reason::Ok) {
            return self.precreate_allow.inc();
        }
        self.decisions
            .with_label_values(&[hook, outcome.as_str(), reason.as_str()])
            .inc();
    }
}

/// Whether the core's table lists `(hook, outcome, reason)`.
fn listed(hook: &str, outcome: Outcome, reason: Reason) -> bool {
    outcome == Outcome::of(reason)
        && match reason.hooks() {
            [] => hook == NOT_A_HOOK,
            hooks => hooks.iter().any(|h| h.label() == hook),
        }
}
