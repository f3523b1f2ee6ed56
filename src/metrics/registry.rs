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
//!   secret file) `applied`, `refused` (the old configuration stays) or
//!   `unchanged`.
//! - `assetgate_config_reload_refusals_total{reason}`: why refused reloads
//!   were refused (`invalid`, `dropped_keys`, `changing`, `timeout`).
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

/// A closed set of label values: the enum, `ALL` (pre-registration) and `as_str`.
macro_rules! labels {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $var),+
        }

        impl $name {
            /// Every value, for pre-registration.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// Label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }
        }
    };
}

labels!(
    /// `result` of `assetgate_config_reloads_total`.
    ReloadResult {
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
    ReloadRefusal {
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

labels!(
    /// `op` of `assetgate_state_errors_total`.
    StateOp {
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
    FailOpen {
        /// `[upload] single_use`.
        SingleUse => "single_use",
        /// Revocations on `/auth`.
        Revocation => "revocation",
    }
);

labels!(
    /// `result` of `assetgate_reconcile_total`.
    ReconcileResult {
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

/// `reason` of an `/auth` decision; also the `X-Assetgate-Reason` header of a
/// 403. One vocabulary: the link verifier's own reasons, nested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReason {
    /// The link verified and is not revoked.
    Ok,
    /// The link did not verify ([`Reason`]).
    Link(Reason),
    /// The link verified but is revoked.
    Revoked,
    /// The link verified, but revocations are out of sync with the state
    /// backend and `revocation_when_down = "fail_closed"`.
    Unavailable,
    /// nginx did not send `X-Original-URI` (a deployment fault: 500).
    NoOriginalUri,
}

impl AuthReason {
    /// Label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::Ok => "ok",
            AuthReason::Link(r) => r.as_str(),
            AuthReason::Revoked => "revoked",
            AuthReason::Unavailable => "unavailable",
            AuthReason::NoOriginalUri => NO_ORIGINAL_URI,
        }
    }

    /// The `decision` label.
    pub fn decision(self) -> Decision {
        match self {
            AuthReason::Ok => Decision::Allow,
            AuthReason::NoOriginalUri => Decision::Error,
            _ => Decision::Deny,
        }
    }
}

/// `reason` of a `/session` decision; also the `X-Assetgate-Reason` of a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionReason {
    /// What the session rules decided (`ok` or why not).
    Decided(crate::tusd::session::Reason),
    /// nginx did not send `X-Original-URI` / `X-Original-Method` (500).
    NoOriginalUri,
    /// `/session` needs `[tusd] upload_dir` and `[storage] root` (500).
    NotConfigured,
}

impl SessionReason {
    /// Label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionReason::Decided(r) => r.as_str(),
            SessionReason::NoOriginalUri => NO_ORIGINAL_URI,
            SessionReason::NotConfigured => "not-configured",
        }
    }

    /// The `decision` label.
    pub fn decision(self) -> Decision {
        match self {
            SessionReason::Decided(crate::tusd::session::Reason::Ok) => Decision::Allow,
            SessionReason::Decided(_) => Decision::Deny,
            SessionReason::NoOriginalUri | SessionReason::NotConfigured => Decision::Error,
        }
    }
}

const NO_ORIGINAL_URI: &str = "no-original-uri";

/// Position of `r` in [`Reason::ALL`] (the hot deny counters).
fn link_index(r: Reason) -> usize {
    r.index()
}

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

/// `hook` label of a body that is not a hook.
const NOT_A_HOOK: &str = "other";

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
    reload_refusals: IntCounterVec,
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
                "Configuration reloads (SIGHUP or a changed secret file) by result: applied, refused (the old configuration stays; assetgate_config_reload_refusals_total says why), unchanged.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let reload_refusals = IntCounterVec::new(
            Opts::new(
                "assetgate_config_reload_refusals_total",
                "Refused configuration reloads by reason: invalid (a key or a file it names), dropped_keys (the file rewritten in place without keys the running one has), changing (files still being written), timeout (reading the files did not finish).",
            ),
            &["reason"],
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
            Box::new(reload_refusals.clone()),
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
            auth_allow: decisions.with_label_values(&["auth", "allow", AuthReason::Ok.as_str()]),
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
            reload_refusals,
            state_up,
            state_errors,
            fail_open,
            revocations,
        };
        for r in ReloadResult::ALL {
            m.reloads.with_label_values(&[r.as_str()]).inc_by(0);
        }
        for r in ReloadRefusal::ALL {
            m.reload_refusals.with_label_values(&[r.as_str()]).inc_by(0);
        }
        for op in StateOp::ALL {
            m.state_errors.with_label_values(&[op.as_str()]).inc_by(0);
        }
        for f in FailOpen::ALL {
            m.fail_open.with_label_values(&[f.as_str()]).inc_by(0);
        }
        for r in ReconcileResult::ALL {
            m.reconcile.with_label_values(&[r.as_str()]).inc_by(0);
        }
        m.state_up.set(1);
        let auth = [
            AuthReason::Ok,
            AuthReason::Revoked,
            AuthReason::Unavailable,
            AuthReason::NoOriginalUri,
        ];
        for r in auth.into_iter().chain(Reason::ALL.map(AuthReason::Link)) {
            m.decision(Endpoint::Auth, r.decision(), r.as_str(), 0);
        }
        let session = [SessionReason::NoOriginalUri, SessionReason::NotConfigured];
        for r in session
            .into_iter()
            .chain(crate::tusd::session::Reason::ALL.map(SessionReason::Decided))
        {
            m.decision(Endpoint::Session, r.decision(), r.as_str(), 0);
        }
        for r in crate::tusd::Reason::ALL {
            let outcome = match r {
                crate::tusd::Reason::Ok => crate::tusd::Outcome::Allow,
                crate::tusd::Reason::BadHook | crate::tusd::Reason::Internal => crate::tusd::Outcome::Error,
                crate::tusd::Reason::Ignored | crate::tusd::Reason::Partial => crate::tusd::Outcome::Skip,
                _ => crate::tusd::Outcome::Deny,
            };
            let hook = match r {
                crate::tusd::Reason::BadHook | crate::tusd::Reason::Internal => None,
                crate::tusd::Reason::Partial
                | crate::tusd::Reason::Incomplete
                | crate::tusd::Reason::StorageUnsupported => Some(crate::tusd::HookName::PostFinish),
                crate::tusd::Reason::ContentMismatch => Some(crate::tusd::HookName::PreFinish),
                _ => Some(crate::tusd::HookName::PreCreate),
            };
            let hook = hook.as_ref().map_or(NOT_A_HOOK, crate::tusd::HookName::label);
            m.hooks
                .with_label_values(&[hook, outcome.as_str(), r.as_str()])
                .inc_by(0);
        }
        for r in crate::finalize::Method::ALL {
            m.count_finalize_by(FinalizeResult::Done(r), 0);
        }
        for r in crate::finalize::Reason::ALL {
            m.count_finalize_by(FinalizeResult::Failed(r), 0);
        }
        for r in [
            FinalizeResult::NotConfigured,
            FinalizeResult::Busy,
            FinalizeResult::Duplicate,
        ] {
            m.count_finalize_by(r, 0);
        }
        m
    }

    /// Registers a family defined elsewhere (`crate::events::metrics`, present
    /// only with an `[events]` section).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("families are registered once");
    }

    /// Counts what a reconciler pass did.
    pub fn count_reconcile(&self, result: ReconcileResult, n: usize) {
        self.reconcile
            .with_label_values(&[result.as_str()])
            .inc_by(n as u64);
    }

    /// Counts one reload.
    pub fn count_reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.as_str()]).inc();
    }

    /// Counts one refused reload (`result="refused"`) and why.
    pub fn count_reload_refusal(&self, reason: ReloadRefusal) {
        self.reloads
            .with_label_values(&[ReloadResult::Refused.as_str()])
            .inc();
        self.reload_refusals.with_label_values(&[reason.as_str()]).inc();
    }

    /// Sets `assetgate_state_up`.
    pub fn set_state_up(&self, up: bool) {
        self.state_up.set(i64::from(up));
    }

    /// Counts one failed state operation.
    pub fn count_state_error(&self, op: StateOp) {
        self.state_errors.with_label_values(&[op.as_str()]).inc();
    }

    /// Counts one request let through unchecked.
    pub fn count_fail_open(&self, feature: FailOpen) {
        self.fail_open.with_label_values(&[feature.as_str()]).inc();
    }

    /// Sets `assetgate_revocations`.
    pub fn set_revocations(&self, n: usize) {
        self.revocations.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts temporary files removed by a sweep.
    pub fn count_temp_swept(&self, n: usize) {
        self.temp_swept.inc_by(n as u64);
    }

    /// Counts one tusd hook decision; `hook` is `None` for a body that is not a
    /// hook (label `other`).
    pub fn count_hook(
        &self,
        hook: Option<&crate::tusd::HookName>,
        outcome: crate::tusd::Outcome,
        reason: crate::tusd::Reason,
    ) {
        let hook = hook.map_or(NOT_A_HOOK, crate::tusd::HookName::label);
        if (hook, outcome, reason) == ("pre-create", crate::tusd::Outcome::Allow, crate::tusd::Reason::Ok) {
            return self.hot.precreate_allow.inc();
        }
        self.hooks
            .with_label_values(&[hook, outcome.as_str(), reason.as_str()])
            .inc();
    }

    /// Counts one finalize result.
    pub fn count_finalize(&self, result: FinalizeResult) {
        self.count_finalize_by(result, 1);
    }

    fn count_finalize_by(&self, result: FinalizeResult, by: u64) {
        self.finalize.with_label_values(&[result.as_str()]).inc_by(by);
    }

    fn decision(&self, endpoint: Endpoint, decision: Decision, reason: &'static str, by: u64) {
        self.decisions
            .with_label_values(&[endpoint.as_str(), decision.as_str(), reason])
            .inc_by(by);
    }

    /// Counts one `/auth` decision.
    pub fn count_auth(&self, reason: AuthReason) {
        match reason {
            AuthReason::Ok => self.hot.auth_allow.inc(),
            AuthReason::Link(r) => self.hot.auth_deny[link_index(r)].inc(),
            r => self.decision(Endpoint::Auth, r.decision(), r.as_str(), 1),
        }
    }

    /// Counts one `/session` decision.
    pub fn count_session(&self, reason: SessionReason) {
        self.decision(Endpoint::Session, reason.decision(), reason.as_str(), 1);
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

    /// The whole exposition at start, the events' families included: every
    /// family's name, help text and type, and every series a dashboard sees
    /// before anything happened (each at 0). A renamed family, a changed help
    /// text or label, a series no longer (or newly) pre-registered shows up
    /// as a diff against `src/metrics/at_start.prom`; after an intended
    /// change, `ASSETGATE_METRICS_UPDATE=1 cargo test --lib exposition_at_start`
    /// rewrites it (and the diff is reviewed with the change).
    #[test]
    fn exposition_at_start() {
        let m = Metrics::new();
        crate::events::metrics::EventMetrics::register(&m);
        let version = concat!("version=\"", env!("CARGO_PKG_VERSION"), "\"");
        let got = m.render().replace(version, "version=\"VERSION\"");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/at_start.prom");
        if std::env::var_os("ASSETGATE_METRICS_UPDATE").is_some() {
            std::fs::write(&path, &got).expect("write the expected exposition");
            return;
        }
        let want = std::fs::read_to_string(&path).expect("src/metrics/at_start.prom");
        let missing: Vec<&str> = want.lines().filter(|l| !got.lines().any(|g| g == *l)).collect();
        let extra: Vec<&str> = got.lines().filter(|l| !want.lines().any(|w| w == *l)).collect();
        assert!(
            got == want,
            "the exposition at start changed:\nmissing:\n{}\nnew:\n{}",
            missing.join("\n"),
            extra.join("\n")
        );
    }

    /// Every closed label value reads 0 before anything happened, so a
    /// dashboard sees the series (and a rate) from the start.
    #[test]
    fn every_label_value_is_pre_registered() {
        let text = Metrics::new().render();
        // Every (family, label="value", extra selector) that must read at start.
        let mut want: Vec<(&str, String, &str)> = Vec::new();
        let mut all = |family, label: &str, values: Vec<&'static str>, extra| {
            for v in values {
                want.push((family, format!("{label}=\"{v}\""), extra));
            }
        };
        let strs = |v: &[&'static str]| v.to_vec();
        all(
            "assetgate_config_reloads_total",
            "result",
            ReloadResult::ALL.iter().map(|r| r.as_str()).collect(),
            "",
        );
        all(
            "assetgate_config_reload_refusals_total",
            "reason",
            ReloadRefusal::ALL.iter().map(|r| r.as_str()).collect(),
            "",
        );
        all(
            "assetgate_state_errors_total",
            "op",
            StateOp::ALL.iter().map(|r| r.as_str()).collect(),
            "",
        );
        all(
            "assetgate_state_fail_open_total",
            "feature",
            FailOpen::ALL.iter().map(|r| r.as_str()).collect(),
            "",
        );
        all(
            "assetgate_reconcile_total",
            "result",
            ReconcileResult::ALL.iter().map(|r| r.as_str()).collect(),
            "",
        );
        let finalize = [
            FinalizeResult::NotConfigured,
            FinalizeResult::Busy,
            FinalizeResult::Duplicate,
        ]
        .into_iter()
        .chain(crate::finalize::Method::ALL.map(FinalizeResult::Done))
        .chain(crate::finalize::Reason::ALL.map(FinalizeResult::Failed));
        all(
            "assetgate_finalize_total",
            "result",
            finalize.map(FinalizeResult::as_str).collect(),
            "",
        );
        let auth = [
            AuthReason::Ok,
            AuthReason::Revoked,
            AuthReason::Unavailable,
            AuthReason::NoOriginalUri,
        ]
        .into_iter()
        .chain(Reason::ALL.map(AuthReason::Link));
        all(
            "assetgate_decisions_total",
            "reason",
            auth.map(AuthReason::as_str).collect(),
            "endpoint=\"auth\"",
        );
        let session = [SessionReason::NoOriginalUri, SessionReason::NotConfigured]
            .into_iter()
            .chain(crate::tusd::session::Reason::ALL.map(SessionReason::Decided));
        all(
            "assetgate_decisions_total",
            "reason",
            session.map(SessionReason::as_str).collect(),
            "endpoint=\"session\"",
        );
        all(
            "assetgate_hook_decisions_total",
            "reason",
            strs(&crate::tusd::Reason::ALL.map(|r| r.as_str())),
            "",
        );
        for (family, label, extra) in want {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(family) && l.contains(&label) && l.contains(extra)),
                "{family} {label} {extra}"
            );
        }
    }

    #[test]
    fn hot_deny_counters_follow_the_reason_order() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(link_index(r), i, "{r:?}");
        }
    }

    #[test]
    fn families_render_with_zeroed_series() {
        let m = Metrics::new();
        m.count_auth(AuthReason::Link(Reason::Expired));
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
