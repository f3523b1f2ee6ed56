//! Prometheus metrics, registered once, with closed label sets: one
//! [`Metrics`] handle (`registry.rs`), and each concern's families next to
//! their label enums, registered by the concern's own `register` with every
//! label value pre-registered from its enum's list (`label.rs`):
//!
//! - `http.rs`: `assetgate_decisions_total{endpoint,decision,reason}`,
//!   `assetgate_request_duration_seconds{endpoint}`,
//!   `assetgate_http_requests_total{endpoint,status}`,
//!   `assetgate_connections_open`, `assetgate_connections_accepted_total`,
//!   `assetgate_limit_hits_total{limit}`;
//! - `hooks.rs`: `assetgate_hook_decisions_total{hook,decision,reason}`
//!   (which hook decides with which reason: the core's `tusd::ReasonCode::hooks`);
//! - `finalize.rs`: `assetgate_finalize_total{result}`,
//!   `assetgate_temp_files_removed_total`, `assetgate_reconcile_total{result}`;
//! - `state.rs`: `assetgate_state_up`, `assetgate_state_errors_total{op}`,
//!   `assetgate_state_fail_open_total{feature}`, `assetgate_revocations`;
//! - `reload.rs`: `assetgate_config_reloads_total{result}`,
//!   `assetgate_config_reload_refusals_total{reason}`, `assetgate_sighup_total`;
//! - `s3.rs`: `assetgate_s3_publish_method{method}` (the S3 self-test's
//!   choice), `assetgate_s3_stale_multipart_uploads_total{result}`;
//! - `registry.rs`: `assetgate_build_info{version}` (always 1);
//! - elsewhere: the events' families (`crate::events::metrics`, only with an
//!   `[events]` section) and the connection budgets (`crate::daemon`).
//!
//! `at_start.prom` is the whole exposition at start, checked by a test.

mod finalize;
mod hooks;
mod http;
mod label;
mod registry;
mod reload;
mod s3;
mod state;

pub use finalize::{FinalizeResult, ReconcileResult};
pub use http::{AuthDecision, AuthReason, Endpoint, Limit, SessionReason};
pub use label::Label;
pub use registry::Metrics;
pub use reload::{ReloadRefusal, ReloadResult};
pub use s3::{MultipartAbort, PublishMethod};
pub use state::{FailOpen, StateOp};
