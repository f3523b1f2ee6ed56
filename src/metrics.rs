//! Prometheus metrics, registered once, with closed label sets.
//!
//! Families:
//! - `assetgate_decisions_total{endpoint,decision,reason}`: every gate decision.
//! - `assetgate_request_duration_seconds{endpoint}`: time to answer.
//! - `assetgate_http_requests_total{endpoint,status}`: every HTTP answer.
//! - `assetgate_connections_open`: connections being served.
//! - `assetgate_connections_accepted_total`: connections accepted (with
//!   `assetgate_http_requests_total` it shows whether nginx reuses them).
//! - `assetgate_config_reloads_total{result}`: reloads (SIGHUP, a changed
//!   secret file) `applied`, `refused` (invalid: the old configuration stays)
//!   or `unchanged`.
//! - `assetgate_state_up`: 1 while the state backend answers, else 0.
//! - `assetgate_state_errors_total{op}`: failed state operations.
//! - `assetgate_state_fail_open_total{feature}`: requests let through unchecked
//!   because the backend was down and the feature is `fail_open`.
//! - `assetgate_revocations`: revocations in force (as last synced).
//! - `assetgate_limit_hits_total{limit}`: slow or excess clients stopped by a
//!   `[server]` limit (the label is the key's name).
//! - `assetgate_sighup_total`: SIGHUPs received (each starts a reload).
//! - `assetgate_build_info{version}`: always 1.
//!
//! Label values come from enums' `as_str`, never from request data, so the
//! series count is bounded.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::token::link::Reason;

/// Which endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/auth` (nginx auth_request).
    Auth,
    /// `/tusd` (tusd hooks).
    Tusd,
    /// `/session` (nginx auth_request in front of tusd's `/files/<id>`).
    Session,
    /// `/healthz`, `/readyz`, `/metrics`.
    Admin,
    /// Anything else (404/405).
    Other,
}

impl Endpoint {
    /// All values.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Auth,
        Endpoint::Tusd,
        Endpoint::Session,
        Endpoint::Admin,
        Endpoint::Other,
    ];

    fn index(self) -> usize {
        match self {
            Endpoint::Auth => 0,
            Endpoint::Tusd => 1,
            Endpoint::Session => 2,
            Endpoint::Admin => 3,
            Endpoint::Other => 4,
        }
    }

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Auth => "auth",
            Endpoint::Tusd => "tusd",
            Endpoint::Session => "session",
            Endpoint::Admin => "admin",
            Endpoint::Other => "other",
        }
    }
}

/// A `[server]` limit that stopped a slow or excess client; the label value is
/// the name of the key that sets it, so an operator knows what to tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A request head (or the next one on an idle keep-alive connection) did
    /// not arrive in time; hyper closed the connection.
    HeaderReadTimeout,
    /// A `/tusd` body did not arrive in time: 408, connection closed.
    BodyReadTimeout,
    /// A request took longer than the whole-request deadline: 503, closed.
    RequestTimeout,
    /// Too many `/tusd` requests at once: 503 without reading the body.
    MaxTusdRequests,
    /// The connection budget was full: the connection idle the longest was
    /// closed to make room.
    MaxConnections,
}

impl Limit {
    /// All values.
    pub const ALL: [Limit; 5] = [
        Limit::HeaderReadTimeout,
        Limit::BodyReadTimeout,
        Limit::RequestTimeout,
        Limit::MaxTusdRequests,
        Limit::MaxConnections,
    ];

    /// Position in [`Limit::ALL`].
    pub fn index(self) -> usize {
        match self {
            Limit::HeaderReadTimeout => 0,
            Limit::BodyReadTimeout => 1,
            Limit::RequestTimeout => 2,
            Limit::MaxTusdRequests => 3,
            Limit::MaxConnections => 4,
        }
    }

    /// Label value: the `[server]` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::BodyReadTimeout => "body_read_timeout",
            Limit::RequestTimeout => "request_timeout",
            Limit::MaxTusdRequests => "max_tusd_requests",
            Limit::MaxConnections => "max_connections",
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Access granted / upload accepted.
    Allow,
    /// Refused.
    Deny,
    /// The request could not be decided (deployment fault, bad input).
    Error,
}

impl Decision {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// `reason` label for an auth decision without a link verdict.
pub const REASON_OK: &str = "ok";
/// `reason` label when nginx did not send `X-Original-URI`.
pub const REASON_NO_ORIGINAL_URI: &str = "no-original-uri";
/// `reason` label (and `X-Assetgate-Reason`) for a revoked link.
pub const REASON_REVOKED: &str = "revoked";
/// `reason` label (and `X-Assetgate-Reason`) when revocations are stale and
/// `revocation_when_down = "fail_closed"`.
pub const REASON_UNAVAILABLE: &str = "unavailable";
/// `result` values of `assetgate_config_reloads_total`.
pub const RELOAD_RESULTS: [&str; 3] = ["applied", "refused", "unchanged"];
/// `op` values of `assetgate_state_errors_total`.
pub const STATE_OPS: [&str; 4] = ["single_use", "sync", "revoke", "list"];
/// `feature` values of `assetgate_state_fail_open_total`.
pub const FAIL_OPEN_FEATURES: [&str; 2] = ["single_use", "revocation"];
/// `reason` label for `/session` without `[tusd] upload_dir` + `[storage] root`.
pub const REASON_NOT_CONFIGURED: &str = "not-configured";

/// Series touched on every `/auth` and `/tusd` request, looked up once: a
/// `with_label_values` hashes the labels and takes a lock on each call.
#[derive(Clone)]
struct Hot {
    /// Request duration per endpoint, in [`Endpoint::ALL`] order.
    duration: [Histogram; 5],
    http_auth_204: IntCounter,
    http_auth_403: IntCounter,
    http_tusd_200: IntCounter,
    auth_allow: IntCounter,
    /// Auth denials, in [`Reason::ALL`] order.
    auth_deny: [IntCounter; Reason::ALL.len()],
    /// `assetgate_hook_decisions_total{hook="pre-create",decision="allow",reason="ok"}`.
    precreate_allow: IntCounter,
}

/// All metric families of the daemon.
#[derive(Clone)]
pub struct Metrics {
    hot: Hot,
    registry: Registry,
    decisions: IntCounterVec,
    http: IntCounterVec,
    connections: IntGauge,
    accepted: prometheus::IntCounter,
    hooks: IntCounterVec,
    finalize: IntCounterVec,
    sighup: IntCounter,
    /// Limit hits, in [`Limit::ALL`] order.
    limits: [IntCounter; 5],
    temp_swept: IntCounter,
    reconcile: IntCounterVec,
    reloads: IntCounterVec,
    state_up: IntGauge,
    state_errors: IntCounterVec,
    fail_open: IntCounterVec,
    revocations: IntGauge,
}

impl Metrics {
    /// Registers every family and pre-creates the auth series so they read 0.
    pub fn new() -> Self {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "assetgate_decisions_total",
                "Gate decisions by endpoint, decision and reason.",
            ),
            &["endpoint", "decision", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "assetgate_request_duration_seconds",
                "Time from request head to response, by endpoint.",
            )
            .buckets(vec![
                0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let http = IntCounterVec::new(
            Opts::new(
                "assetgate_http_requests_total",
                "HTTP answers by endpoint and status code.",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let connections =
            IntGauge::new("assetgate_connections_open", "Connections being served.").expect("valid metric");
        let accepted = prometheus::IntCounter::new(
            "assetgate_connections_accepted_total",
            "Connections accepted since start.",
        )
        .expect("valid metric");
        let hooks = IntCounterVec::new(
            Opts::new(
                "assetgate_hook_decisions_total",
                "tusd hook decisions by hook, decision and reason.",
            ),
            &["hook", "decision", "reason"],
        )
        .expect("valid metric");
        let finalize = IntCounterVec::new(
            Opts::new(
                "assetgate_finalize_total",
                "Moves of finished uploads into the asset tree, by result (renamed, copied, already_finalized, or why not).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let sighup = IntCounter::new(
            "assetgate_sighup_total",
            "SIGHUPs received; each starts a configuration reload (see assetgate_config_reloads_total).",
        )
        .expect("valid metric");
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "assetgate_limit_hits_total",
                "Slow or excess clients stopped by a [server] limit, by the limit's key.",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let temp_swept = IntCounter::new(
            "assetgate_temp_files_removed_total",
            "Temporary files of interrupted moves (a crash mid-copy) removed from the asset tree's .assetgate-tmp directory.",
        )
        .expect("valid metric");
        let reconcile = IntCounterVec::new(
            Opts::new(
                "assetgate_reconcile_total",
                "What the reconciler's passes over upload_dir did: published (finished uploads whose post-finish never came, handed to the mover), kept (finished but refused by the post-finish rules), abandoned_removed, unattributable (left: no verified token), error.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "assetgate_config_reloads_total",
                "Configuration reloads (SIGHUP or a changed secret file) by result: applied, refused (invalid; the old configuration stays), unchanged.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let state_up = IntGauge::new(
            "assetgate_state_up",
            "1 while the state backend ([state] backend) answers, 0 while it does not.",
        )
        .expect("valid metric");
        let state_errors = IntCounterVec::new(
            Opts::new(
                "assetgate_state_errors_total",
                "State backend operations that failed (unreachable, timed out), by operation.",
            ),
            &["op"],
        )
        .expect("valid metric");
        let fail_open = IntCounterVec::new(
            Opts::new(
                "assetgate_state_fail_open_total",
                "Requests let through unchecked because the state backend was down and the feature is fail_open.",
            ),
            &["feature"],
        )
        .expect("valid metric");
        let revocations = IntGauge::new(
            "assetgate_revocations",
            "Revocations in force on this replica (as last synced).",
        )
        .expect("valid metric");
        let build = IntGaugeVec::new(
            Opts::new("assetgate_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

        for c in [
            Box::new(decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(http.clone()),
            Box::new(connections.clone()),
            Box::new(accepted.clone()),
            Box::new(hooks.clone()),
            Box::new(finalize.clone()),
            Box::new(sighup.clone()),
            Box::new(limit_hits.clone()),
            Box::new(temp_swept.clone()),
            Box::new(reconcile.clone()),
            Box::new(reloads.clone()),
            Box::new(state_up.clone()),
            Box::new(state_errors.clone()),
            Box::new(fail_open.clone()),
            Box::new(revocations.clone()),
            Box::new(build),
        ] {
            registry.register(c).expect("families are registered once");
        }

        let hot = Hot {
            duration: Endpoint::ALL.map(|e| duration.with_label_values(&[e.as_str()])),
            http_auth_204: http.with_label_values(&["auth", "204"]),
            http_auth_403: http.with_label_values(&["auth", "403"]),
            http_tusd_200: http.with_label_values(&["tusd", "200"]),
            auth_allow: decisions.with_label_values(&["auth", "allow", REASON_OK]),
            auth_deny: Reason::ALL.map(|r| decisions.with_label_values(&["auth", "deny", r.as_str()])),
            precreate_allow: hooks.with_label_values(&["pre-create", "allow", "ok"]),
        };
        let m = Metrics {
            hot,
            registry,
            decisions,
            http,
            connections,
            accepted,
            hooks,
            finalize,
            sighup,
            limits: Limit::ALL.map(|l| limit_hits.with_label_values(&[l.as_str()])),
            temp_swept,
            reconcile,
            reloads,
            state_up,
            state_errors,
            fail_open,
            revocations,
        };
        for r in RELOAD_RESULTS {
            m.reloads.with_label_values(&[r]).inc_by(0);
        }
        for op in STATE_OPS {
            m.state_errors.with_label_values(&[op]).inc_by(0);
        }
        for f in FAIL_OPEN_FEATURES {
            m.fail_open.with_label_values(&[f]).inc_by(0);
        }
        m.state_up.set(1);
        m.decision(Endpoint::Auth, Decision::Deny, REASON_REVOKED, 0);
        m.decision(Endpoint::Auth, Decision::Deny, REASON_UNAVAILABLE, 0);
        for r in crate::daemon::reconcile::RESULTS {
            m.reconcile.with_label_values(&[r]).inc_by(0);
        }
        m.decision(Endpoint::Auth, Decision::Allow, REASON_OK, 0);
        for r in Reason::ALL {
            m.decision(Endpoint::Auth, Decision::Deny, r.as_str(), 0);
        }
        m.decision(Endpoint::Auth, Decision::Error, REASON_NO_ORIGINAL_URI, 0);
        for r in crate::tusd::session::Reason::ALL {
            let d = if r == crate::tusd::session::Reason::Ok {
                Decision::Allow
            } else {
                Decision::Deny
            };
            m.decision(Endpoint::Session, d, r.as_str(), 0);
        }
        m.decision(Endpoint::Session, Decision::Error, REASON_NO_ORIGINAL_URI, 0);
        m.decision(Endpoint::Session, Decision::Error, REASON_NOT_CONFIGURED, 0);
        for r in crate::tusd::Reason::ALL {
            let outcome = match r {
                crate::tusd::Reason::Ok => "allow",
                crate::tusd::Reason::BadHook | crate::tusd::Reason::Internal => "error",
                crate::tusd::Reason::Ignored | crate::tusd::Reason::Partial => "skip",
                _ => "deny",
            };
            let hook = match r {
                crate::tusd::Reason::BadHook | crate::tusd::Reason::Internal => "other",
                crate::tusd::Reason::Partial
                | crate::tusd::Reason::Incomplete
                | crate::tusd::Reason::StorageUnsupported => "post-finish",
                crate::tusd::Reason::ContentMismatch => "pre-finish",
                crate::tusd::Reason::ConcatInvalid
                | crate::tusd::Reason::DestinationBlocked
                | crate::tusd::Reason::TokenUsed
                | crate::tusd::Reason::StateUnavailable => "pre-create",
                _ => "pre-create",
            };
            m.hooks.with_label_values(&[hook, outcome, r.as_str()]).inc_by(0);
        }
        for r in crate::finalize::Method::ALL {
            m.finalize.with_label_values(&[r.as_str()]).inc_by(0);
        }
        for r in crate::finalize::Reason::ALL {
            m.finalize.with_label_values(&[r.as_str()]).inc_by(0);
        }
        m
    }

    /// Registers a family defined elsewhere (`crate::events::metrics`, present
    /// only with an `[events]` section).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("families are registered once");
    }

    /// Counts what a reconciler pass did (`result` from [`crate::daemon::reconcile::RESULTS`]).
    pub fn count_reconcile(&self, result: &'static str, n: usize) {
        self.reconcile.with_label_values(&[result]).inc_by(n as u64);
    }

    /// Counts one reload (`result` from [`RELOAD_RESULTS`]).
    pub fn count_reload(&self, result: &'static str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Sets `assetgate_state_up`.
    pub fn set_state_up(&self, up: bool) {
        self.state_up.set(i64::from(up));
    }

    /// Counts one failed state operation (`op` from [`STATE_OPS`]).
    pub fn count_state_error(&self, op: &'static str) {
        self.state_errors.with_label_values(&[op]).inc();
    }

    /// Counts one request let through unchecked (`feature` from
    /// [`FAIL_OPEN_FEATURES`]).
    pub fn count_fail_open(&self, feature: &'static str) {
        self.fail_open.with_label_values(&[feature]).inc();
    }

    /// Sets `assetgate_revocations`.
    pub fn set_revocations(&self, n: usize) {
        self.revocations.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts temporary files removed by a sweep.
    pub fn count_temp_swept(&self, n: usize) {
        self.temp_swept.inc_by(n as u64);
    }

    /// Counts one tusd hook decision (labels from closed enums).
    pub fn count_hook(&self, hook: &'static str, decision: &'static str, reason: &'static str) {
        if (hook, decision, reason) == ("pre-create", "allow", "ok") {
            return self.hot.precreate_allow.inc();
        }
        self.hooks.with_label_values(&[hook, decision, reason]).inc();
    }

    /// Counts one finalize result (a `Method`, a finalize `Reason`, or one of
    /// `not_configured`, `busy`, `duplicate`).
    pub fn count_finalize(&self, result: &'static str) {
        self.finalize.with_label_values(&[result]).inc();
    }

    fn decision(&self, endpoint: Endpoint, decision: Decision, reason: &'static str, by: u64) {
        self.decisions
            .with_label_values(&[endpoint.as_str(), decision.as_str(), reason])
            .inc_by(by);
    }

    /// Counts one decision.
    pub fn count_decision(&self, endpoint: Endpoint, decision: Decision, reason: &'static str) {
        let hot = match (endpoint, decision) {
            (Endpoint::Auth, Decision::Allow) if reason == REASON_OK => Some(&self.hot.auth_allow),
            (Endpoint::Auth, Decision::Deny) => Reason::ALL
                .iter()
                .position(|r| r.as_str() == reason)
                .map(|i| &self.hot.auth_deny[i]),
            _ => None,
        };
        match hot {
            Some(c) => c.inc(),
            None => self.decision(endpoint, decision, reason, 1),
        }
    }

    /// Records one HTTP answer and its latency.
    pub fn observe(&self, endpoint: Endpoint, status: http::StatusCode, seconds: f64) {
        self.hot.duration[endpoint.index()].observe(seconds);
        match (endpoint, status.as_u16()) {
            (Endpoint::Auth, 204) => self.hot.http_auth_204.inc(),
            (Endpoint::Auth, 403) => self.hot.http_auth_403.inc(),
            (Endpoint::Tusd, 200) => self.hot.http_tusd_200.inc(),
            _ => self
                .http
                .with_label_values(&[endpoint.as_str(), status.as_str()])
                .inc(),
        }
    }

    /// Counts one client stopped by `limit`.
    pub fn count_limit(&self, limit: Limit) {
        self.limits[limit.index()].inc();
    }

    /// Counts one SIGHUP.
    pub fn count_sighup(&self) {
        self.sighup.inc();
    }

    /// Counts one accepted connection.
    pub fn connection_accepted(&self) {
        self.accepted.inc();
    }

    /// The open-connections gauge.
    pub fn connections(&self) -> &IntGauge {
        &self.connections
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_zeroed_series() {
        let m = Metrics::new();
        m.count_decision(Endpoint::Auth, Decision::Deny, Reason::Expired.as_str());
        m.observe(Endpoint::Auth, http::StatusCode::FORBIDDEN, 0.0001);
        let text = m.render();
        assert!(
            text.contains(
                "assetgate_decisions_total{decision=\"deny\",endpoint=\"auth\",reason=\"expired\"} 1"
            ),
            "{text}"
        );
        assert!(text
            .contains("assetgate_decisions_total{decision=\"deny\",endpoint=\"auth\",reason=\"bad-uri\"} 0"));
        assert!(text.contains("assetgate_http_requests_total{endpoint=\"auth\",status=\"403\"} 1"));
        assert!(text.contains("assetgate_build_info{version=\""));
        assert!(text.contains("assetgate_request_duration_seconds_bucket"));
    }
}
