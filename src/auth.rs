//! The nginx `auth_request` endpoint: a thin adapter around [`crate::token::link`].
//!
//! nginx only understands 2xx (allow), 401, 403 from an auth subrequest; any
//! other status becomes a 500 for the client. So the answers are:
//! - valid link → `204`, no body (keepalive to the gate needs body-less answers);
//! - denied → `403`, `Content-Length: 0`, `X-Assetgate-Reason: <reason>`;
//! - no `X-Original-URI` → `500`: a deployment fault, failed closed and loudly.

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::config::LinkConfig;
use crate::metrics::{Decision, Endpoint, Metrics, REASON_NO_ORIGINAL_URI, REASON_OK};
use crate::token::link::{self, Denied, LinkVerified};

/// Header nginx must send with `$request_uri`.
pub const ORIGINAL_URI: &str = "x-original-uri";
/// Header carrying the denial reason class.
pub const REASON_HEADER: &str = "x-assetgate-reason";

/// What the gate decided for one auth subrequest.
#[derive(Debug)]
pub enum Outcome {
    /// The link is valid.
    Allow(LinkVerified),
    /// The link is refused.
    Deny(Denied),
    /// nginx did not send `X-Original-URI`: the auth location is misconfigured.
    NoOriginalUri,
}

/// Decides an auth subrequest from its headers.
pub fn decide(link: &LinkConfig, headers: &HeaderMap, now: i64) -> Outcome {
    let Some(target) = headers.get(ORIGINAL_URI) else {
        return Outcome::NoOriginalUri;
    };
    match link::verify_request_target(&link.secrets, target.as_bytes(), link.merge_slashes, now) {
        Ok(v) => Outcome::Allow(v),
        Err(d) => Outcome::Deny(d),
    }
}

/// Logs and counts the outcome, and maps it to the one response nginx gets.
pub fn respond(outcome: &Outcome, metrics: &Metrics) -> Response<()> {
    match outcome {
        Outcome::Allow(v) => {
            metrics.count_decision(Endpoint::Auth, Decision::Allow, REASON_OK);
            tracing::info!(
                endpoint = "auth",
                decision = "allow",
                reason = REASON_OK,
                uri = %String::from_utf8_lossy(v.uri()).escape_debug(),
                expires = v.expires(),
                "link accepted"
            );
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::NO_CONTENT;
            // Bounds how long a proxy_cache'd allow may be reused.
            if let Ok(h) = HeaderValue::from_str(&format!("@{}", v.expires())) {
                r.headers_mut().insert("x-accel-expires", h);
            }
            r
        }
        Outcome::Deny(d) => {
            let reason = d.reason().as_str();
            metrics.count_decision(Endpoint::Auth, Decision::Deny, reason);
            tracing::info!(
                endpoint = "auth",
                decision = "deny",
                reason,
                detail = %d.detail(),
                "link refused"
            );
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::FORBIDDEN;
            r.headers_mut()
                .insert(REASON_HEADER, HeaderValue::from_static(reason));
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        }
        Outcome::NoOriginalUri => {
            metrics.count_decision(Endpoint::Auth, Decision::Error, REASON_NO_ORIGINAL_URI);
            tracing::error!(
                endpoint = "auth",
                decision = "error",
                reason = REASON_NO_ORIGINAL_URI,
                "request to /auth without X-Original-URI: the nginx auth location needs `proxy_set_header X-Original-URI $request_uri;` (denying)"
            );
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// Body for the 500 answer (only humans read it; nginx discards it).
pub const NO_ORIGINAL_URI_BODY: &str =
    "assetgate: missing X-Original-URI header; add `proxy_set_header X-Original-URI $request_uri;` to the nginx auth location\n";
