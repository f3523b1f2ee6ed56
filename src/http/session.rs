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
//! that serve `/auth`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;

use crate::finalize;
use crate::http::auth::{EscapedBytes, ORIGINAL_URI, REASON_HEADER};
use crate::http::{AppState, Resp};
use crate::metrics::{Decision, Endpoint, REASON_NOT_CONFIGURED, REASON_NO_ORIGINAL_URI};
use crate::tusd::session::{self, Policy, Reason};

/// Header nginx must send with `$request_method`.
pub const ORIGINAL_METHOD: &str = "x-original-method";
/// Header nginx sends with `$http_upload_metadata` (`token` mode).
pub const UPLOAD_METADATA: &str = "x-upload-metadata";

/// Answers one `GET /session`.
pub async fn handle<B>(state: &Arc<AppState>, req: &Request<B>) -> Resp {
    let headers = req.headers();
    let (Some(uri), Some(method)) = (
        headers.get(ORIGINAL_URI).and_then(|v| v.to_str().ok()),
        headers.get(ORIGINAL_METHOD).and_then(|v| v.to_str().ok()),
    ) else {
        state
            .metrics
            .count_decision(Endpoint::Session, Decision::Error, REASON_NO_ORIGINAL_URI);
        tracing::error!(
            endpoint = "session",
            decision = "error",
            reason = REASON_NO_ORIGINAL_URI,
            "request to /session without X-Original-URI or X-Original-Method: the nginx session location needs `proxy_set_header X-Original-URI $request_uri;` and `proxy_set_header X-Original-Method $request_method;` (denying)"
        );
        return status(StatusCode::INTERNAL_SERVER_ERROR);
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
    };
    let record = match session::needs_record(&request, &policy) {
        Err(_) => None,
        Ok(id) => {
            let Some(roots) = state.finalizer.roots().cloned() else {
                state
                    .metrics
                    .count_decision(Endpoint::Session, Decision::Error, REASON_NOT_CONFIGURED);
                tracing::error!(
                    endpoint = "session",
                    decision = "error",
                    reason = REASON_NOT_CONFIGURED,
                    "/session needs [tusd] upload_dir and [storage] root (denying)"
                );
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            };
            let id = id.to_owned();
            tokio::task::spawn_blocking(move || finalize::part(&roots, &id))
                .await
                .ok()
                .flatten()
        }
    };
    let reason = session::decide(&request, &policy, record.as_ref(), state.clock.now());
    let upload_id = match session::target(uri, &cfg.tusd.base_path) {
        Some(session::Target::Upload(id)) => id,
        _ => "",
    };
    if reason == Reason::Ok {
        state
            .metrics
            .count_decision(Endpoint::Session, Decision::Allow, reason.as_str());
        tracing::debug!(endpoint = "session", decision = "allow", reason = reason.as_str(), method = %EscapedBytes(method.as_bytes()), upload_id = %EscapedBytes(upload_id.as_bytes()), "upload request allowed");
        return status(StatusCode::NO_CONTENT);
    }
    state
        .metrics
        .count_decision(Endpoint::Session, Decision::Deny, reason.as_str());
    tracing::info!(endpoint = "session", decision = "deny", reason = reason.as_str(), method = %EscapedBytes(method.as_bytes()), upload_id = %EscapedBytes(upload_id.as_bytes()), "upload request refused");
    let mut r = status(StatusCode::FORBIDDEN);
    r.headers_mut()
        .insert(REASON_HEADER, HeaderValue::from_static(reason.as_str()));
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn status(s: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = s;
    r
}
