//! The HTTP adapters' families (`crate::http`):
//! - `assetgate_decisions_total{endpoint,decision,reason}`: every `/auth` and
//!   `/session` decision;
//! - `assetgate_request_duration_seconds{endpoint}`: time to answer;
//! - `assetgate_http_requests_total{endpoint,status}`: every HTTP answer;
//! - `assetgate_connections_open`, `assetgate_connections_accepted_total`
//!   (with the requests, whether nginx reuses its connections);
//! - `assetgate_limit_hits_total{limit}`: slow or excess clients stopped by a
//!   `[server]` limit (the label is the key's name).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::label::{labels, registered, Label};
use crate::token::link::LinkRefusal;

labels!(
    /// Which endpoint answered.
    Endpoint "endpoint" {
        /// `/auth` (nginx auth_request).
        Auth => "auth",
        /// `/tusd` (tusd hooks).
        Tusd => "tusd",
        /// `/session` (nginx auth_request in front of tusd's `/files/<id>`).
        Session => "session",
        /// `/healthz`, `/readyz`, `/metrics`.
        Admin => "admin",
        /// Anything else (404/405).
        Other => "other",
    }
);

labels!(
    /// A `[server]` limit that stopped a slow or excess client; the label
    /// value is the name of the key that sets it, so an operator knows what
    /// to tune.
    Limit "limit" {
        /// A request head (or the next one on an idle keep-alive connection)
        /// did not arrive in time; hyper closed the connection.
        HeaderReadTimeout => "header_read_timeout",
        /// A `/tusd` body did not arrive in time: 408, connection closed.
        BodyReadTimeout => "body_read_timeout",
        /// A request took longer than the whole-request deadline: 503, closed.
        RequestTimeout => "request_timeout",
        /// Too many `/tusd` requests at once: 503 without reading the body.
        MaxTusdRequests => "max_tusd_requests",
        /// The connection budget was full: the connection idle the longest
        /// was closed to make room.
        MaxConnections => "max_connections",
    }
);

labels!(
    /// The outcome of one decision.
    AuthDecision "decision" {
        /// Access granted / upload accepted.
        Allow => "allow",
        /// Refused.
        Deny => "deny",
        /// The request could not be decided (deployment fault, bad input).
        Error => "error",
    }
);

/// `reason` of an `/auth` decision; also the `X-Assetgate-Reason` header of a
/// 403. One vocabulary: the link verifier's own reasons, nested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReason {
    /// The link verified and is not revoked.
    Ok,
    /// The link did not verify ([`LinkRefusal`]).
    Link(LinkRefusal),
    /// The link verified but is revoked.
    Revoked,
    /// The link verified, but revocations are out of sync with the state
    /// backend and `revocation_when_down = "fail_closed"`.
    Unavailable,
    /// nginx did not send `X-Original-URI` (a deployment fault: 500).
    NoOriginalUri,
    /// `backend = "s3"`: an object under the public prefix, signed without a link.
    Public,
    /// `backend = "s3"`: a method other than GET/HEAD (never signed).
    Method,
    /// `backend = "s3"`: a valid link to something other than an object under
    /// the public or private prefix (never signed).
    OutsideAssets,
}

impl AuthReason {
    /// Every value, for pre-registration.
    pub fn all() -> impl Iterator<Item = AuthReason> {
        [
            AuthReason::Ok,
            AuthReason::Revoked,
            AuthReason::Unavailable,
            AuthReason::NoOriginalUri,
            AuthReason::Public,
            AuthReason::Method,
            AuthReason::OutsideAssets,
        ]
        .into_iter()
        .chain(LinkRefusal::ALL.map(AuthReason::Link))
    }

    /// Label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::Ok => "ok",
            AuthReason::Link(r) => r.as_str(),
            AuthReason::Revoked => "revoked",
            AuthReason::Unavailable => "unavailable",
            AuthReason::NoOriginalUri => NO_ORIGINAL_URI,
            AuthReason::Public => "public",
            AuthReason::Method => "method",
            AuthReason::OutsideAssets => "outside-assets",
        }
    }

    /// The `decision` label.
    pub fn decision(self) -> AuthDecision {
        match self {
            AuthReason::Ok | AuthReason::Public => AuthDecision::Allow,
            AuthReason::NoOriginalUri => AuthDecision::Error,
            _ => AuthDecision::Deny,
        }
    }
}

/// `reason` of a `/session` decision; also the `X-Assetgate-Reason` of a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionReason {
    /// What the session rules decided (`ok` or why not).
    Decided(crate::tusd::session::SessionRefusal),
    /// nginx did not send `X-Original-URI` / `X-Original-Method` (500).
    NoOriginalUri,
    /// `/session` needs `[tusd] upload_dir` and `[storage] root` (500).
    NotConfigured,
}

impl SessionReason {
    /// Every value, for pre-registration.
    pub fn all() -> impl Iterator<Item = SessionReason> {
        [SessionReason::NoOriginalUri, SessionReason::NotConfigured]
            .into_iter()
            .chain(crate::tusd::session::SessionRefusal::ALL.map(SessionReason::Decided))
    }

    /// Label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionReason::Decided(r) => r.as_str(),
            SessionReason::NoOriginalUri => NO_ORIGINAL_URI,
            SessionReason::NotConfigured => "not-configured",
        }
    }

    /// The `decision` label.
    pub fn decision(self) -> AuthDecision {
        match self {
            SessionReason::Decided(crate::tusd::session::SessionRefusal::Ok) => AuthDecision::Allow,
            SessionReason::Decided(_) => AuthDecision::Deny,
            SessionReason::NoOriginalUri | SessionReason::NotConfigured => AuthDecision::Error,
        }
    }
}

const NO_ORIGINAL_URI: &str = "no-original-uri";

/// The HTTP adapters' families.
#[derive(Clone)]
pub struct Http {
    decisions: IntCounterVec,
    http: IntCounterVec,
    connections: IntGauge,
    accepted: IntCounter,
    /// Limit hits, in [`Limit::ALL`] order.
    limits: [IntCounter; Limit::ALL.len()],
    hot: Hot,
}

/// Series touched on every `/auth` and `/tusd` request, looked up once: a
/// `with_label_values` hashes the labels and takes a lock on each call.
#[derive(Clone)]
struct Hot {
    /// Request duration per endpoint, in [`Endpoint::ALL`] order.
    duration: [Histogram; Endpoint::ALL.len()],
    http_auth_204: IntCounter,
    http_auth_403: IntCounter,
    http_tusd_200: IntCounter,
    auth_allow: IntCounter,
    /// Auth denials, in [`LinkRefusal::ALL`] order.
    auth_deny: [IntCounter; LinkRefusal::ALL.len()],
}

impl Http {
    /// Registers the families; every `/auth` and `/session` reason reads 0.
    pub fn register(registry: &Registry) -> Http {
        let decisions = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "assetgate_decisions_total",
                    "Gate decisions by endpoint, decision and reason.",
                ),
                &[Endpoint::NAME, AuthDecision::NAME, "reason"],
            )
            .expect("valid metric"),
        );
        let duration = registered(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "assetgate_request_duration_seconds",
                    "Time from request head to response, by endpoint.",
                )
                .buckets(vec![
                    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
                    1.0,
                ]),
                &[Endpoint::NAME],
            )
            .expect("valid metric"),
        );
        let http = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "assetgate_http_requests_total",
                    "HTTP answers by endpoint and status code.",
                ),
                &[Endpoint::NAME, "status"],
            )
            .expect("valid metric"),
        );
        let connections = registered(
            registry,
            IntGauge::new("assetgate_connections_open", "Connections being served.").expect("valid metric"),
        );
        let accepted = registered(
            registry,
            IntCounter::new(
                "assetgate_connections_accepted_total",
                "Connections accepted since start.",
            )
            .expect("valid metric"),
        );
        let limit_hits = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "assetgate_limit_hits_total",
                    "Slow or excess clients stopped by a [server] limit, by the limit's key.",
                ),
                &[Limit::NAME],
            )
            .expect("valid metric"),
        );
        let hot = Hot {
            duration: Endpoint::ALL.map(|e| duration.with_label_values(&[e.as_str()])),
            http_auth_204: http.with_label_values(&["auth", "204"]),
            http_auth_403: http.with_label_values(&["auth", "403"]),
            http_tusd_200: http.with_label_values(&["tusd", "200"]),
            auth_allow: decisions.with_label_values(&["auth", "allow", AuthReason::Ok.as_str()]),
            auth_deny: LinkRefusal::ALL.map(|r| decisions.with_label_values(&["auth", "deny", r.as_str()])),
        };
        let h = Http {
            decisions,
            http,
            connections,
            accepted,
            limits: Limit::ALL.map(|l| limit_hits.with_label_values(&[l.as_str()])),
            hot,
        };
        for r in AuthReason::all() {
            h.decision(Endpoint::Auth, r.decision(), r.as_str(), 0);
        }
        for r in SessionReason::all() {
            h.decision(Endpoint::Session, r.decision(), r.as_str(), 0);
        }
        h
    }

    fn decision(&self, endpoint: Endpoint, decision: AuthDecision, reason: &'static str, by: u64) {
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

    /// Counts one accepted connection.
    pub fn connection_accepted(&self) {
        self.accepted.inc();
    }

    /// The open-connections gauge.
    pub fn connections(&self) -> &IntGauge {
        &self.connections
    }
}

/// Position of `r` in [`LinkRefusal::ALL`] (the hot deny counters).
fn link_index(r: LinkRefusal) -> usize {
    r.index()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_deny_counters_follow_the_reason_order() {
        for (i, r) in LinkRefusal::ALL.into_iter().enumerate() {
            assert_eq!(link_index(r), i, "{r:?}");
        }
    }

    #[test]
    fn label_positions_follow_all() {
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
        for (i, l) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(l.index(), i, "{l:?}");
        }
    }
}
