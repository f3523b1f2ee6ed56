//! The nginx `auth_request` endpoint: a thin adapter around [`crate::token::link`].
//!
//! nginx only understands 2xx (allow), 401, 403 from an auth subrequest; any
//! other status becomes a 500 for the client. So the answers are:
//! - valid link → `204`, no body (keepalive to the gate needs body-less answers);
//! - denied → `403`, `Content-Length: 0`, `X-Assetgate-Reason: <reason>`
//!   (the link's own reasons, `revoked`, and `unavailable` when revocations
//!   cannot be kept in sync and `[state] revocation_when_down = "fail_closed"`);
//! - no `X-Original-URI` → `500`: a deployment fault, failed closed and loudly.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request};
use hyper::body::Incoming;

use crate::config::Config;
use crate::http::respond::{self, Resp};
use crate::http::AppState;
use crate::metrics::{AuthReason, Metrics};
use crate::state::{Shared, Standing};
use crate::token::link::{self, Denied, LinkVerified};

/// Header nginx must send with `$request_uri`.
pub const ORIGINAL_URI: &str = "x-original-uri";

/// Answers one `GET`/`HEAD /auth`: decided from its headers alone, logged
/// and counted, answered.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    let outcome = decide(&state.current(), &state.shared, req.headers(), state.clock.now());
    record(&outcome, &state.metrics);
    response(&outcome, req.method())
}

/// What the gate decided for one auth subrequest.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The link is valid.
    Allow(LinkVerified<'a>),
    /// The link is refused.
    Deny(Denied),
    /// The link is valid but revoked (`assetgate revoke`).
    Revoked(LinkVerified<'a>),
    /// The link is valid, but whether it is revoked cannot be known.
    Unavailable,
    /// nginx did not send `X-Original-URI`: the auth location is misconfigured.
    NoOriginalUri,
}

/// Decides an auth subrequest from its headers: the link (pure), its lifetime
/// bound, then the revocations (a lock-free snapshot: no I/O on this path).
pub fn decide<'a>(config: &Config, shared: &Shared, headers: &'a HeaderMap, now: i64) -> Outcome<'a> {
    let Some(target) = headers.get(ORIGINAL_URI) else {
        return Outcome::NoOriginalUri;
    };
    let link = &config.link;
    let verified =
        match link::verify_request_target(&link.secrets, target.as_bytes(), link.merge_slashes, now) {
            Ok(v) => v,
            Err(d) => return Outcome::Deny(d),
        };
    let max_ttl = link
        .max_ttl
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if let Err(d) = link::check_lifetime(&verified, max_ttl, now) {
        return Outcome::Deny(d);
    }
    match shared.standing(
        verified.uri(),
        verified.expires(),
        &config.storage.private_prefix,
        now,
    ) {
        Standing::Clear => Outcome::Allow(verified),
        Standing::Revoked => Outcome::Revoked(verified),
        Standing::Unavailable => Outcome::Unavailable,
    }
}

impl Outcome<'_> {
    /// The `reason` label and `X-Assetgate-Reason` value.
    pub fn reason(&self) -> AuthReason {
        match self {
            Outcome::Allow(_) => AuthReason::Ok,
            Outcome::Deny(d) => AuthReason::Link(d.reason()),
            Outcome::Revoked(_) => AuthReason::Revoked,
            Outcome::Unavailable => AuthReason::Unavailable,
            Outcome::NoOriginalUri => AuthReason::NoOriginalUri,
        }
    }
}

/// The one response nginx gets for `outcome` (no logging here: [`record`]);
/// the 500's explanation is for a person's `GET`, never for a `HEAD`.
pub fn response(outcome: &Outcome, method: &Method) -> Resp {
    match outcome {
        Outcome::Allow(v) => {
            let mut r = respond::allowed();
            // Bounds how long a proxy_cache'd allow may be reused.
            if let Ok(h) = HeaderValue::from_bytes(accel_expires(v.expires(), &mut [0u8; 24])) {
                r.headers_mut().insert(ACCEL_EXPIRES, h);
            }
            r
        }
        Outcome::Deny(_) | Outcome::Revoked(_) | Outcome::Unavailable => {
            respond::refused(outcome.reason().as_str())
        }
        Outcome::NoOriginalUri if method == Method::GET => respond::fault(NO_ORIGINAL_URI_BODY),
        Outcome::NoOriginalUri => respond::fault(""),
    }
}

/// Logs and counts `outcome` (one line; never the link's query string).
pub fn record(outcome: &Outcome, metrics: &Metrics) {
    let reason = outcome.reason();
    metrics.count_auth(reason);
    let (decision, reason) = (reason.decision().as_str(), reason.as_str());
    match outcome {
        Outcome::Allow(v) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            uri = %EscapedBytes(v.uri()),
            expires = v.expires(),
            "link accepted"
        ),
        Outcome::Deny(d) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            detail = %d.detail(),
            "link refused"
        ),
        Outcome::Revoked(v) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            uri = %EscapedBytes(v.uri()),
            expires = v.expires(),
            "link revoked"
        ),
        Outcome::Unavailable => tracing::warn!(
            endpoint = "auth",
            decision,
            reason,
            "valid link refused: revocations are out of sync with the state backend ([state] revocation_when_down = \"fail_closed\")"
        ),
        Outcome::NoOriginalUri => tracing::error!(
            endpoint = "auth",
            decision,
            reason,
            "request to /auth without X-Original-URI: the nginx auth location needs `proxy_set_header X-Original-URI $request_uri;` (denying)"
        ),
    }
}

/// `X-Accel-Expires`, as a static name (no parsing per response).
const ACCEL_EXPIRES: http::HeaderName = http::HeaderName::from_static("x-accel-expires");

/// `@{expires}` written into `buf` (no heap string).
fn accel_expires(expires: i64, buf: &mut [u8; 24]) -> &[u8] {
    use std::io::Write as _;
    let mut rest = &mut buf[..];
    let _ = write!(rest, "@{expires}");
    let n = 24 - rest.len();
    &buf[..n]
}

/// Displays bytes exactly as `String::from_utf8_lossy(b).escape_debug()`, without
/// the two passes and the allocation when nothing needs escaping (the common
/// case: a plain ASCII path).
pub struct EscapedBytes<'a>(pub &'a [u8]);

impl std::fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = self
            .0
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'));
        match std::str::from_utf8(self.0) {
            Ok(s) if plain => f.write_str(s),
            _ => std::fmt::Display::fmt(&String::from_utf8_lossy(self.0).escape_debug(), f),
        }
    }
}

/// Body for the 500 answer (only humans read it; nginx discards it).
pub const NO_ORIGINAL_URI_BODY: &str =
    "assetgate: missing X-Original-URI header; add `proxy_set_header X-Original-URI $request_uri;` to the nginx auth location\n";

#[cfg(test)]
mod tests {
    use super::{accel_expires, EscapedBytes};

    #[test]
    fn accel_expires_is_at_unix_seconds() {
        assert_eq!(accel_expires(1795358082, &mut [0; 24]), b"@1795358082");
        assert_eq!(
            accel_expires(i64::MAX, &mut [0; 24]),
            format!("@{}", i64::MAX).as_bytes()
        );
    }

    #[test]
    fn escaped_bytes_match_lossy_escape_debug() {
        let cases: [&[u8]; 9] = [
            b"/private/a.txt",
            b"/a b/c~d+e",
            b"/q\"uote",
            b"/it's",
            b"/back\\slash",
            b"/tab\there\n",
            "/été/日本".as_bytes(),
            b"/\xff\xfe",
            b"",
        ];
        for c in cases {
            let want = String::from_utf8_lossy(c).escape_debug().to_string();
            assert_eq!(EscapedBytes(c).to_string(), want, "{c:?}");
        }
        for b in 0u8..=255 {
            let c = [b'/', b];
            let want = String::from_utf8_lossy(&c).escape_debug().to_string();
            assert_eq!(EscapedBytes(&c).to_string(), want, "{b:#x}");
        }
    }
}
