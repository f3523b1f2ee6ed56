//! The nginx `auth_request` endpoint: a thin adapter around [`crate::token::link`].
//!
//! nginx only understands 2xx (allow), 401, 403 from an auth subrequest; any
//! other status becomes a 500 for the client. So the answers are:
//! - valid link → `204`, no body (keepalive to the gate needs body-less answers);
//! - denied → `403`, `Content-Length: 0`, `X-Assetgate-Reason: <reason>`
//!   (the link's own reasons, `revoked`, and `unavailable` when revocations
//!   cannot be kept in sync and `[state] revocation_when_down = "fail_closed"`);
//! - no `X-Original-URI` → `500`: a deployment fault, failed closed and loudly.
//!
//! With `[storage] backend = "s3"` an allow also carries the signed object
//! request nginx relays to the bucket ([`crate::s3::sign`]): `X-Assetgate-S3-Path`
//! (the encoded path, for `proxy_pass http://store$path`), `X-Assetgate-S3-Host`,
//! `X-Amz-Date`, `X-Amz-Content-Sha256` and `Authorization`. Only `GET` and
//! `HEAD` (`X-Original-Method`) are signed: any other method, or none, is
//! denied (`method`). The public prefix needs no link there (the bucket is
//! never anonymous: nginx asks for a signature for `/public/` too), decided on
//! the path as nginx normalises it, so `/public/../private/x` needs a link.
//! Only objects under the public or the private prefix are ever signed: a
//! valid link to anything else (tusd's uploads under `upload_prefix`, the
//! self-test's scratch keys, the bucket's root: a listing) is denied
//! (`outside-assets`), whatever nginx's locations route here.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use hyper::body::Incoming;

use crate::config::Config;
use crate::http::respond::{self, Resp};
use crate::http::AppState;
use crate::metrics::{AuthReason, Metrics};
use crate::s3::sign::{ObjectMethod, S3Signer};
use crate::state::{Shared, Standing};
use crate::token::link::{self, Denied, LinkVerified};

/// Header nginx must send with `$request_uri`.
pub const ORIGINAL_URI: &str = "x-original-uri";

/// Answers one `GET`/`HEAD /auth`: decided from its headers alone, logged
/// and counted, answered.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    let config = state.current();
    let now = state.clock.now();
    let outcome = decide(&config, &state.shared, req.headers(), now);
    record(&outcome, &state.metrics);
    let resp = response(&outcome, req.method());
    match &config.s3_signer {
        Some(signer) => relay(resp, &outcome, req.headers(), signer, now),
        None => resp,
    }
}

/// Header nginx sends with `$request_method` (the subrequest itself is a GET).
pub const ORIGINAL_METHOD: &str = "x-original-method";

/// The signed object request's headers on an allow (`backend = "s3"`).
pub const S3_PATH: HeaderName = HeaderName::from_static("x-assetgate-s3-path");
/// `Host` the signature covers.
pub const S3_HOST: HeaderName = HeaderName::from_static("x-assetgate-s3-host");
const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// Adds the signed object request to an allow (S3 backend); a signing
/// failure (none is known: the inputs are encoded here) fails closed, 500.
fn relay(mut resp: Resp, outcome: &AuthOutcome, headers: &HeaderMap, signer: &S3Signer, now: i64) -> Resp {
    let uri: &[u8] = match outcome {
        AuthOutcome::Allow(v) => v.uri(),
        AuthOutcome::Public(uri) => uri,
        _ => return resp,
    };
    let method = headers
        .get(ORIGINAL_METHOD)
        .and_then(|m| ObjectMethod::from_header(m.as_bytes()));
    let (Some(method), Some(key)) = (method, uri.strip_prefix(b"/")) else {
        // decide() refused both already; never sign what it did not check.
        return respond::fault("");
    };
    let signed = match signer.sign_read(method, key, now) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(endpoint = "auth", error = %e, "signing the object request failed (denying)");
            return respond::fault("");
        }
    };
    let h = resp.headers_mut();
    let pairs = [
        (S3_PATH, signed.path.as_str()),
        (S3_HOST, signer.host()),
        (AMZ_DATE, signed.date.as_str()),
        (AMZ_CONTENT_SHA256, signed.content_sha256),
        (http::header::AUTHORIZATION, signed.authorization.as_str()),
    ];
    for (name, value) in pairs {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                h.insert(name, v);
            }
            Err(_) => return respond::fault(""),
        }
    }
    resp
}

/// What the gate decided for one auth subrequest.
#[derive(Debug)]
pub enum AuthOutcome<'a> {
    /// The link is valid.
    Allow(LinkVerified<'a>),
    /// `backend = "s3"`: an object under the public prefix (no link needed;
    /// the normalised `$uri`).
    Public(Cow<'a, [u8]>),
    /// The link is refused.
    Deny(Denied),
    /// The link is valid but revoked (`assetgate revoke`).
    Revoked(LinkVerified<'a>),
    /// The link is valid, but whether it is revoked cannot be known.
    Unavailable,
    /// nginx did not send `X-Original-URI`: the auth location is misconfigured.
    NoOriginalUri,
    /// `backend = "s3"`: `X-Original-Method` is not `GET` or `HEAD` (or absent).
    Method,
    /// `backend = "s3"`: a valid link to a path that is not an object under
    /// the public or private prefix (never signed).
    OutsideAssets,
}

/// Whether the normalised `uri` names an object under `/<prefix>/`: the
/// prefix, a `/`, and at least one byte more.
fn under(uri: &[u8], prefix: &str) -> bool {
    uri.strip_prefix(b"/")
        .and_then(|rest| rest.strip_prefix(prefix.as_bytes()))
        .is_some_and(|rest| rest.first() == Some(&b'/') && rest.len() > 1)
}

/// The normalised `$uri` of `raw` when it lies under `/<public_prefix>/` and
/// not under `/<private_prefix>/` (the configuration keeps them apart on S3;
/// this keeps a private object from being public even if it did not).
fn public_uri<'a>(
    raw: &'a [u8],
    merge_slashes: bool,
    public_prefix: &str,
    private_prefix: &str,
) -> Option<Cow<'a, [u8]>> {
    let target = crate::token::nginx_uri::parse_request_target(raw, merge_slashes).ok()?;
    (under(&target.uri, public_prefix) && !under(&target.uri, private_prefix)).then_some(target.uri)
}

/// Decides an auth subrequest from its headers: the link (pure), its lifetime
/// bound, then the revocations (a lock-free snapshot: no I/O on this path).
pub fn decide<'a>(config: &Config, shared: &Shared, headers: &'a HeaderMap, now: i64) -> AuthOutcome<'a> {
    let Some(target) = headers.get(ORIGINAL_URI) else {
        return AuthOutcome::NoOriginalUri;
    };
    let link = &config.link;
    if config.storage.s3.is_some() {
        // Only reads are ever signed (a link is a read; the identity may write).
        let method = headers.get(ORIGINAL_METHOD).map(|m| m.as_bytes());
        if method.and_then(ObjectMethod::from_header).is_none() {
            return AuthOutcome::Method;
        }
        if let Some(uri) = public_uri(
            target.as_bytes(),
            link.merge_slashes,
            &config.storage.public_prefix,
            &config.storage.private_prefix,
        ) {
            return AuthOutcome::Public(uri);
        }
    }
    let verified =
        match link::verify_request_target(&link.secrets, target.as_bytes(), link.merge_slashes, now) {
            Ok(v) => v,
            Err(d) => return AuthOutcome::Deny(d),
        };
    let max_ttl = link
        .max_ttl
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if let Err(d) = link::check_lifetime(&verified, max_ttl, now) {
        return AuthOutcome::Deny(d);
    }
    let storage = &config.storage;
    if storage.s3.is_some()
        && !under(verified.uri(), &storage.private_prefix)
        && !under(verified.uri(), &storage.public_prefix)
    {
        return AuthOutcome::OutsideAssets;
    }
    match shared.standing(
        verified.uri(),
        verified.expires(),
        &config.storage.private_prefix,
        now,
    ) {
        Standing::Clear => AuthOutcome::Allow(verified),
        Standing::Revoked => AuthOutcome::Revoked(verified),
        Standing::Unavailable => AuthOutcome::Unavailable,
    }
}

impl AuthOutcome<'_> {
    /// The `reason` label and `X-Assetgate-Reason` value.
    pub fn reason(&self) -> AuthReason {
        match self {
            AuthOutcome::Allow(_) => AuthReason::Ok,
            AuthOutcome::Public(_) => AuthReason::Public,
            AuthOutcome::Method => AuthReason::Method,
            AuthOutcome::OutsideAssets => AuthReason::OutsideAssets,
            AuthOutcome::Deny(d) => AuthReason::Link(d.reason()),
            AuthOutcome::Revoked(_) => AuthReason::Revoked,
            AuthOutcome::Unavailable => AuthReason::Unavailable,
            AuthOutcome::NoOriginalUri => AuthReason::NoOriginalUri,
        }
    }
}

/// The one response nginx gets for `outcome` (no logging here: [`record`]);
/// the 500's explanation is for a person's `GET`, never for a `HEAD`.
pub fn response(outcome: &AuthOutcome, method: &Method) -> Resp {
    match outcome {
        AuthOutcome::Public(_) => respond::allowed(),
        AuthOutcome::Allow(v) => {
            let mut r = respond::allowed();
            // Bounds how long a proxy_cache'd allow may be reused.
            if let Ok(h) = HeaderValue::from_bytes(accel_expires(v.expires(), &mut [0u8; 24])) {
                r.headers_mut().insert(ACCEL_EXPIRES, h);
            }
            r
        }
        AuthOutcome::Deny(_)
        | AuthOutcome::Revoked(_)
        | AuthOutcome::Unavailable
        | AuthOutcome::Method
        | AuthOutcome::OutsideAssets => respond::refused(outcome.reason().as_str()),
        AuthOutcome::NoOriginalUri if method == Method::GET => respond::fault(NO_ORIGINAL_URI_BODY),
        AuthOutcome::NoOriginalUri => respond::fault(""),
    }
}

/// Logs and counts `outcome` (one line; never the link's query string).
pub fn record(outcome: &AuthOutcome, metrics: &Metrics) {
    let reason = outcome.reason();
    metrics.count_auth(reason);
    let (decision, reason) = (reason.decision().as_str(), reason.as_str());
    match outcome {
        AuthOutcome::Allow(v) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            uri = %EscapedBytes(v.uri()),
            expires = v.expires(),
            "link accepted"
        ),
        AuthOutcome::Public(uri) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            uri = %EscapedBytes(uri),
            "public object signed"
        ),
        AuthOutcome::Method => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            "method refused: only GET and HEAD (X-Original-Method) are signed for the bucket"
        ),
        AuthOutcome::OutsideAssets => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            "valid link refused: only objects under the public and private prefixes are signed for the bucket"
        ),
        AuthOutcome::Deny(d) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            detail = %d.detail(),
            "link refused"
        ),
        AuthOutcome::Revoked(v) => tracing::info!(
            endpoint = "auth",
            decision,
            reason,
            uri = %EscapedBytes(v.uri()),
            expires = v.expires(),
            "link revoked"
        ),
        AuthOutcome::Unavailable => tracing::warn!(
            endpoint = "auth",
            decision,
            reason,
            "valid link refused: revocations are out of sync with the state backend ([state] revocation_when_down = \"fail_closed\")"
        ),
        AuthOutcome::NoOriginalUri => tracing::error!(
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
    use super::{accel_expires, decide, relay, response, AuthOutcome, EscapedBytes};
    use crate::config::{self, Config, Sources};
    use crate::metrics::Metrics;
    use crate::state::{self, Shared};
    use crate::token::link;
    use http::{HeaderMap, Method};

    const NOW: i64 = 1_800_000_000;
    const SECRET: &str = "auth-test-link-secret-0123456789";

    fn cfg(s3: bool) -> Config {
        let mut env: Vec<(String, String)> = vec![("ASSETGATE_LINK_SECRET".into(), SECRET.into())];
        if s3 {
            for (k, v) in [
                ("ASSETGATE_STORAGE__BACKEND", "s3"),
                ("ASSETGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:8333"),
                ("ASSETGATE_STORAGE__S3__REGION", "us-east-1"),
                ("ASSETGATE_STORAGE__S3__BUCKET", "assets"),
                ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", "main"),
                ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", "main-secret"),
                ("ASSETGATE_STORAGE__S3__READ_ACCESS_KEY_ID", "reader"),
                ("ASSETGATE_STORAGE__S3__READ_SECRET_ACCESS_KEY", "reader-secret"),
            ] {
                env.push((k.into(), v.into()));
            }
        }
        config::load_from(&Sources::default(), &env).unwrap()
    }

    async fn shared(c: &Config) -> Shared {
        let s = Shared::new(state::backend(&c.state).unwrap(), c.state.clone(), Metrics::new());
        s.sync(NOW).await.unwrap();
        s
    }

    fn headers(target: &str, method: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-original-uri", target.parse().unwrap());
        if let Some(m) = method {
            h.insert("x-original-method", m.parse().unwrap());
        }
        h
    }

    fn link_to(uri: &str, raw_path: &str) -> String {
        let md5 = link::sign(SECRET.as_bytes(), uri.as_bytes(), NOW + 60);
        format!("{raw_path}?md5={md5}&expires={}", NOW + 60)
    }

    /// An allowed link on S3 carries the signed read: the read-only identity,
    /// the key encoded once, the Host the signature covers.
    #[tokio::test]
    async fn s3_allow_carries_the_signed_object_request() {
        let c = cfg(true);
        let sh = shared(&c).await;
        let target = link_to("/private/a b+c.txt", "/private/a%20b+c.txt");
        let h = headers(&target, Some("GET"));
        let outcome = decide(&c, &sh, &h, NOW);
        assert!(matches!(outcome, AuthOutcome::Allow(_)), "{outcome:?}");
        let r = relay(
            response(&outcome, &Method::GET),
            &outcome,
            &h,
            c.s3_signer.as_deref().unwrap(),
            NOW,
        );
        assert_eq!(r.status(), 204);
        let get = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            get("x-assetgate-s3-path").as_deref(),
            Some("/assets/private/a%20b%2Bc.txt")
        );
        assert_eq!(get("x-assetgate-s3-host").as_deref(), Some("127.0.0.1:8333"));
        assert_eq!(get("x-amz-date").as_deref(), Some("20270115T080000Z"));
        assert_eq!(
            get("x-amz-content-sha256").as_deref(),
            Some(crate::s3::sign::EMPTY_PAYLOAD_SHA256)
        );
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=reader/20270115/us-east-1/s3/aws4_request, "),
            "{auth}"
        );
    }

    /// Only GET and HEAD are signed: a link holder must not get a signed
    /// DELETE or PUT. Without `X-Original-Method` nothing is signed either.
    #[tokio::test]
    async fn s3_signs_reads_only() {
        let c = cfg(true);
        let sh = shared(&c).await;
        let target = link_to("/private/a.txt", "/private/a.txt");
        for m in [Some("DELETE"), Some("PUT"), Some("POST"), Some("get"), None] {
            let h = headers(&target, m);
            let outcome = decide(&c, &sh, &h, NOW);
            assert!(matches!(outcome, AuthOutcome::Method), "{m:?}: {outcome:?}");
            let r = relay(
                response(&outcome, &Method::GET),
                &outcome,
                &h,
                c.s3_signer.as_deref().unwrap(),
                NOW,
            );
            assert_eq!(r.status(), 403);
            assert_eq!(r.headers()["x-assetgate-reason"], "method");
            assert!(r.headers().get("authorization").is_none());
        }
        let h = headers(&target, Some("HEAD"));
        assert!(matches!(decide(&c, &sh, &h, NOW), AuthOutcome::Allow(_)));
        // The fs backend is unchanged: nginx serves files, the method is not its concern.
        let fs = cfg(false);
        let h = headers(&target, Some("DELETE"));
        assert!(matches!(decide(&fs, &sh, &h, NOW), AuthOutcome::Allow(_)));
    }

    /// `/public/` needs no link on S3, judged on the normalised path: a
    /// traversal into `/private/` needs one. On fs, /auth is not asked for
    /// public files and still wants a link.
    #[tokio::test]
    async fn s3_public_prefix_needs_no_link_but_traversal_does() {
        let c = cfg(true);
        let sh = shared(&c).await;
        for t in ["/public/a.png", "/public//x/%C3%A9.png"] {
            let h = headers(t, Some("GET"));
            let outcome = decide(&c, &sh, &h, NOW);
            assert!(matches!(outcome, AuthOutcome::Public(_)), "{t}: {outcome:?}");
        }
        for t in [
            "/public/../private/a.png",
            "/public/%2E%2E/private/a.png",
            "/publicx/a.png",
            "/public/",
            "/private/a.png",
        ] {
            let h = headers(t, Some("GET"));
            let outcome = decide(&c, &sh, &h, NOW);
            assert!(matches!(outcome, AuthOutcome::Deny(_)), "{t}: {outcome:?}");
        }
        let fs = cfg(false);
        let h = headers("/public/a.png", Some("GET"));
        let outcome = decide(&fs, &sh, &h, NOW);
        assert!(matches!(outcome, AuthOutcome::Deny(_)), "{outcome:?}");
    }

    /// On S3 only objects under the two prefixes are signed. A valid link
    /// to tusd's uploads (`tus/…`, the `.info` holds the upload token), the
    /// self-test's scratch keys, the bucket's root (a listing) or a prefix
    /// itself is denied `outside-assets`; on fs the same links are allowed
    /// (nginx serves only its own locations there). And a path under both
    /// prefixes (a configuration the loader refuses on S3) is not public.
    #[tokio::test]
    async fn s3_signs_only_objects_under_the_asset_prefixes() {
        let c = cfg(true);
        let sh = shared(&c).await;
        for uri in [
            "/tus/abc.info",
            "/assetgate/selftest/x",
            "/",
            "/private",
            "/private/",
            "/privatex/a",
        ] {
            let h = headers(&link_to(uri, uri), Some("GET"));
            let outcome = decide(&c, &sh, &h, NOW);
            assert!(
                matches!(outcome, AuthOutcome::OutsideAssets),
                "{uri}: {outcome:?}"
            );
            let r = response(&outcome, &Method::GET);
            assert_eq!(r.status(), 403);
            assert_eq!(r.headers()["x-assetgate-reason"], "outside-assets");
            assert!(r.headers().get("authorization").is_none());
        }
        let h = headers(&link_to("/private/a.txt", "/private/a.txt"), Some("GET"));
        assert!(matches!(decide(&c, &sh, &h, NOW), AuthOutcome::Allow(_)));
        let h = headers(&link_to("/public/a.txt", "/public/a.txt"), Some("GET"));
        assert!(matches!(decide(&c, &sh, &h, NOW), AuthOutcome::Public(_)));
        let fs = cfg(false);
        let h = headers(&link_to("/tus/abc.info", "/tus/abc.info"), Some("GET"));
        assert!(matches!(decide(&fs, &sh, &h, NOW), AuthOutcome::Allow(_)));
        // Built by hand: the loader refuses overlapping prefixes on S3.
        assert!(super::public_uri(b"/media/a.png", true, "media", "media/private").is_some());
        assert!(super::public_uri(b"/media/private/a.png", true, "media", "media/private").is_none());
    }

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
