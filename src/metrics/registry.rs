//! The daemon's one [`Metrics`] handle: the registry, every concern's
//! families (registered by the concern's own `register`, next to its label
//! enums), `assetgate_build_info`, and the text exposition.

use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::finalize::{Finalize, FinalizeResult, ReconcileResult};
use super::hooks::Hooks;
use super::http::{AuthReason, Endpoint, Http, Limit, SessionReason};
use super::label::registered;
use super::reload::{Reload, ReloadRefusal, ReloadResult};
use super::state::{FailOpen, State, StateOp};

/// All metric families of the daemon (cheap to clone: every family is
/// shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http: Http,
    hooks: Hooks,
    finalize: Finalize,
    state: State,
    reload: Reload,
    s3: super::s3::S3,
}

impl Metrics {
    /// Registers every family; every closed label value reads 0.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("assetgate_build_info", "Build information; always 1."),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            http: Http::register(&registry),
            hooks: Hooks::register(&registry),
            finalize: Finalize::register(&registry),
            state: State::register(&registry),
            reload: Reload::register(&registry),
            s3: super::s3::S3::register(&registry),
            registry,
        }
    }

    /// Registers a family defined elsewhere (`crate::events::metrics`, present
    /// only with an `[events]` section; the daemon's budget gauges).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("families are registered once");
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }

    // What each concern counts (the families' own methods; kept here under
    // the names the emitters call).

    /// The S3 self-test's choice: `method` at 1, the others at 0.
    pub fn set_s3_publish_method(&self, method: super::PublishMethod) {
        self.s3.set_method(method);
    }

    /// Counts `n` stale multipart uploads a reconciler pass handled on S3.
    pub fn count_s3_stale_multipart(&self, result: super::MultipartAbort, n: usize) {
        self.s3.count_stale_multipart(result, n);
    }

    /// Counts one `/auth` decision.
    pub fn count_auth(&self, reason: AuthReason) {
        self.http.count_auth(reason);
    }

    /// Counts one `/session` decision.
    pub fn count_session(&self, reason: SessionReason) {
        self.http.count_session(reason);
    }

    /// Records one HTTP answer and its latency.
    pub fn observe(&self, endpoint: Endpoint, status: http::StatusCode, seconds: f64) {
        self.http.observe(endpoint, status, seconds);
    }

    /// Counts one client stopped by `limit`.
    pub fn count_limit(&self, limit: Limit) {
        self.http.count_limit(limit);
    }

    /// Counts one accepted connection.
    pub fn connection_accepted(&self) {
        self.http.connection_accepted();
    }

    /// The open-connections gauge.
    pub fn connections(&self) -> &IntGauge {
        self.http.connections()
    }

    /// Counts one tusd hook decision; `hook` is `None` for a body that is not a
    /// hook (label `other`).
    pub fn count_hook(
        &self,
        hook: Option<&crate::tusd::HookName>,
        outcome: crate::tusd::HookOutcome,
        reason: crate::tusd::ReasonCode,
    ) {
        self.hooks.count(hook, outcome, reason);
    }

    /// Counts one finalize result.
    pub fn count_finalize(&self, result: FinalizeResult) {
        self.finalize.count(result);
    }

    /// Counts temporary files removed by a sweep.
    pub fn count_temp_swept(&self, n: usize) {
        self.finalize.count_temp_swept(n);
    }

    /// Counts what a reconciler pass did.
    pub fn count_reconcile(&self, result: ReconcileResult, n: usize) {
        self.finalize.count_reconcile(result, n);
    }

    /// Sets `assetgate_state_up`.
    pub fn set_state_up(&self, up: bool) {
        self.state.set_up(up);
    }

    /// Counts one failed state operation.
    pub fn count_state_error(&self, op: StateOp) {
        self.state.count_error(op);
    }

    /// Counts one request let through unchecked.
    pub fn count_fail_open(&self, feature: FailOpen) {
        self.state.count_fail_open(feature);
    }

    /// Sets `assetgate_revocations`.
    pub fn set_revocations(&self, n: usize) {
        self.state.set_revocations(n);
    }

    /// Counts one reload.
    pub fn count_reload(&self, result: ReloadResult) {
        self.reload.count(result);
    }

    /// Counts one refused reload (`result="refused"`) and why.
    pub fn count_reload_refusal(&self, reason: ReloadRefusal) {
        self.reload.count_refusal(reason);
    }

    /// Counts one SIGHUP.
    pub fn count_sighup(&self) {
        self.reload.count_sighup();
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
    use crate::token::link::LinkRefusal;

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
        .chain(crate::finalize::MoveFailure::ALL.map(FinalizeResult::Failed));
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
        .chain(LinkRefusal::ALL.map(AuthReason::Link));
        all(
            "assetgate_decisions_total",
            "reason",
            auth.map(AuthReason::as_str).collect(),
            "endpoint=\"auth\"",
        );
        let session = [SessionReason::NoOriginalUri, SessionReason::NotConfigured]
            .into_iter()
            .chain(crate::tusd::session::SessionRefusal::ALL.map(SessionReason::Decided));
        all(
            "assetgate_decisions_total",
            "reason",
            session.map(SessionReason::as_str).collect(),
            "endpoint=\"session\"",
        );
        all(
            "assetgate_hook_decisions_total",
            "reason",
            strs(&crate::tusd::ReasonCode::ALL.map(|r| r.as_str())),
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
    fn families_render_with_zeroed_series() {
        let m = Metrics::new();
        m.count_auth(AuthReason::Link(LinkRefusal::Expired));
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
