//! The `/session` endpoint: nginx `auth_request` in front of tusd's
//! `/files/<id>`, a thin adapter around [`crate::tusd::session`].
//!
//! nginx sends `X-Original-URI: $request_uri`, `X-Original-Method:
//! $request_method` and `X-Upload-Metadata: $http_upload_metadata` (the shipped
//! `nginx/assetgate-uploads.conf`). Answers, as for `/auth` (nginx only
//! understands 2xx, 401, 403 from an auth subrequest):
//! - allowed → `204`;
//! - refused → `403`, `Content-Length: 0`, `X-Assetgate-Reason: <reason>`
//!   (`session_expired` is turned into 410 by the shipped nginx config);
//! - no `X-Original-URI` / `X-Original-Method`, or no upload directory
//!   configured → `500` (a deployment fault, failed closed and loudly).
//!
//! The upload's record is read on the blocking pool, never on the async workers
//! that serve `/auth`; with `[storage] backend = "s3"` it is the bucket's
//! `<upload_prefix><objectId>.info`, one bounded GetObject
//! ([`crate::s3::session`]), awaited (no blocking).

use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use crate::finalize;
use crate::http::auth::{EscapedBytes, ORIGINAL_URI};
use crate::http::respond::{self, Resp};
use crate::http::AppState;
use crate::metrics::SessionReason;
use crate::tusd::session::{self, Policy, SessionRefusal};

/// Header nginx must send with `$request_method`.
pub const ORIGINAL_METHOD: &str = "x-original-method";
/// Header nginx sends with `$http_upload_metadata` (`token` mode).
pub const UPLOAD_METADATA: &str = "x-upload-metadata";

/// Answers one `GET`/`HEAD /session`.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    let outcome = decide(state, &req).await;
    record(&outcome, state);
    response(&outcome)
}

/// What `/session` decided, with what its log line names.
struct Outcome<'a> {
    reason: SessionReason,
    method: &'a str,
    upload_id: &'a str,
}

async fn decide<'a, B>(state: &Arc<AppState>, req: &'a Request<B>) -> Outcome<'a> {
    let headers = req.headers();
    let (Some(uri), Some(method)) = (
        headers.get(ORIGINAL_URI).and_then(|v| v.to_str().ok()),
        headers.get(ORIGINAL_METHOD).and_then(|v| v.to_str().ok()),
    ) else {
        return Outcome {
            reason: SessionReason::NoOriginalUri,
            method: "",
            upload_id: "",
        };
    };
    let upload_metadata = headers
        .get(UPLOAD_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let request = session::Request {
        method,
        uri,
        upload_metadata,
    };
    let cfg = state.current_owned();
    let policy = Policy {
        mode: cfg.upload.session_binding,
        grace: i64::try_from(cfg.upload.session_grace.as_secs()).unwrap_or(i64::MAX),
        base_path: &cfg.tusd.base_path,
        secrets: &cfg.upload.secrets,
        s3store: state.finalizer.store().is_some(),
    };
    let upload_id = match session::target(uri, &cfg.tusd.base_path) {
        Some(session::Target::Upload(id)) => id,
        _ => "",
    };
    let record = match (session::needs_record(&request, &policy), state.finalizer.store()) {
        (Err(_), _) => None,
        // Boxed: the SDK's GetObject future is kilobytes, and every
        // connection's request future would otherwise hold it
        // (`http::route::tests::a_request_future_holds_one_endpoint_future`).
        (Ok(id), Some(store)) => Box::pin(crate::s3::session::part(store, id)).await,
        (Ok(id), None) => {
            let Some(roots) = state.finalizer.roots().cloned() else {
                return Outcome {
                    reason: SessionReason::NotConfigured,
                    method,
                    upload_id,
                };
            };
            let id = id.to_owned();
            tokio::task::spawn_blocking(move || finalize::part(&roots, &id))
                .await
                .ok()
                .flatten()
        }
    };
    let reason = session::decide(&request, &policy, record.as_ref(), state.clock.now());
    Outcome {
        reason: SessionReason::Decided(reason),
        method,
        upload_id,
    }
}

/// The one response nginx gets (no logging here: [`record`]).
fn response(outcome: &Outcome) -> Resp {
    match outcome.reason {
        SessionReason::Decided(SessionRefusal::Ok) => respond::allowed(),
        SessionReason::Decided(reason) => respond::refused(reason.as_str()),
        SessionReason::NoOriginalUri | SessionReason::NotConfigured => respond::fault(""),
    }
}

/// Logs and counts one `/session` decision.
fn record(outcome: &Outcome, state: &AppState) {
    let reason = outcome.reason;
    state.metrics.count_session(reason);
    let (decision, reason_str) = (reason.decision().as_str(), reason.as_str());
    let method = EscapedBytes(outcome.method.as_bytes());
    let upload_id = EscapedBytes(outcome.upload_id.as_bytes());
    match reason {
        SessionReason::Decided(SessionRefusal::Ok) => tracing::debug!(endpoint = "session", decision, reason = reason_str, method = %method, upload_id = %upload_id, "upload request allowed"),
        SessionReason::Decided(_) => tracing::info!(endpoint = "session", decision, reason = reason_str, method = %method, upload_id = %upload_id, "upload request refused"),
        SessionReason::NoOriginalUri => tracing::error!(
            endpoint = "session",
            decision,
            reason = reason_str,
            "request to /session without X-Original-URI or X-Original-Method: the nginx session location needs `proxy_set_header X-Original-URI $request_uri;` and `proxy_set_header X-Original-Method $request_method;` (denying)"
        ),
        SessionReason::NotConfigured => tracing::error!(
            endpoint = "session",
            decision,
            reason = reason_str,
            "/session needs [tusd] upload_dir and [storage] root (denying)"
        ),
    }
}
