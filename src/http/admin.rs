//! The admin API: where `assetgate revoke` reaches a daemon whose revocations
//! live in its memory. nginx never talks to it.
//!
//! Where it is served:
//!
//! - **`[server] admin_socket`**, always: a Unix socket, mode 0600 in a
//!   directory of the daemon's user that nobody else may write
//!   ([`crate::http::socket`]). Only that user (and root) may connect; in a
//!   Kubernetes pod the other containers, which share the pod's loopback, do
//!   not see the socket's volume at all.
//! - **`[server] admin_listen`**, only when set: the same API on TCP, loopback
//!   unless `admin_listen_non_loopback` allows another address. Every local
//!   user (and every container of a pod) can reach a loopback port.
//!
//! One handler for both, and it refuses what a browser could send: any
//! request with an `Origin` (or `Sec-Fetch-Site`) header, a `Host` that is not
//! `localhost` or the admin address (a DNS-rebinding page names its own
//! host), and a `POST`/`DELETE` whose `Content-Type` is not
//! `application/json` (a page may POST `text/plain` to any address without a
//! CORS preflight). The CLI sends none of those.
//!
//! Both listeners go through the limits layer of the main one
//! ([`crate::http::server::accept_loop`]): a small connection budget with idle
//! eviction, the header timeout, small buffers; bodies read with
//! [`limits::read_body`] under `body_read_timeout`, every request under
//! `request_timeout`.
//!
//! - `GET /revocations` → `{"revocations":[{"kind","value","until"}]}`
//! - `POST /revocations` `{"kind":"link|prefix|key","value":"…"}` → `{"until":…}`
//! - `DELETE /revocations` (same body) → `{"removed":true|false}`
//! - `GET /healthz` → `ok`
//!
//! With the Redis backend the CLI writes to Redis itself and every replica
//! picks the change up; this API answers the same requests there too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::http::limits::{self, or_deadline, BodyError};
use crate::http::respond::{json, Synthetic};
use crate::http::server::{self, Layer, Listener};
use crate::http::{AppState, Resp};
use crate::metrics::{Endpoint, Limit};
use crate::state::revocation::{Invalid, Revocation};
use crate::token::link;

/// Largest admin request body.
const MAX_BODY: u64 = 64 * 1024;

/// Which listener a request came through: what its `Host` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The Unix socket (`[server] admin_socket`).
    Socket,
    /// The TCP listener (`[server] admin_listen`), at this bound address.
    Tcp(SocketAddr),
}

/// One revocation request, as the CLI sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokeRequest {
    /// `link`, `prefix` or `key`.
    pub kind: String,
    /// The link (URL or request target), the `$uri` prefix, or the asset key.
    pub value: String,
}

/// One revocation in force, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listed {
    /// `link`, `prefix` or `key`.
    pub kind: String,
    /// What is revoked, for people (a link's `$uri` and expiry).
    pub value: String,
    /// Unix seconds when it lapses; `null`: never (until `unrevoke`).
    pub until: Option<i64>,
}

impl Listed {
    /// From a stored revocation.
    pub fn new(r: &Revocation, until: i64) -> Self {
        Listed {
            kind: r.kind().into(),
            value: r.display_value(),
            until: (until != crate::state::NEVER).then_some(until),
        }
    }
}

/// Parses what the CLI was given: `link` takes a full URL
/// (`https://host/private/a?md5=…&expires=…`) or a request target.
pub fn revocation(kind: &str, value: &str, merge_slashes: bool) -> Result<Revocation, Invalid> {
    match kind {
        "link" => {
            let target = match value.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => value,
            };
            let (uri, expires) = link::identify(target.as_bytes(), merge_slashes)
                .map_err(|d| Invalid(format!("not a signed link: {d}")))?;
            Ok(Revocation::Link { uri, expires })
        }
        "prefix" => Revocation::prefix(value),
        "key" => Revocation::key(value),
        other => Err(Invalid(format!("{other:?}: expected link, prefix or key"))),
    }
}

/// Serves the admin API on `listener` until `stop` is cancelled (the daemon
/// stops it after the drain of the main port: `/readyz` says `draining`
/// meanwhile), then lets the requests in flight finish.
pub async fn serve(listener: Listener, via: Via, state: Arc<AppState>, stop: CancellationToken) {
    let layer = Layer {
        name: match via {
            Via::Socket => "admin_socket",
            Via::Tcp(_) => "admin_listen",
        },
        max_connections: state.budgets.admin_connections,
        header_read_timeout: state.config.server.header_read_timeout,
        limits: state.limits.clone(),
        metrics: None,
    };
    let graceful = GracefulShutdown::new();
    let st = state.clone();
    server::accept_loop(listener, layer, &graceful, stop.cancelled(), move |req| {
        let st = st.clone();
        async move { answer(&st, via, req).await }
    })
    .await;
    graceful.shutdown().await;
}

/// Serves the outbox's admin socket (`<events.dir>/admin.sock`, answered by
/// [`crate::http::events_socket::handle`]) through the same limits layer: its own
/// small budget, the header timeout, bodies copied under `body_read_timeout`,
/// every request under `request_timeout`. Only `assetgate events` and
/// `finalize-pending` use it; no browser can reach a Unix socket. Until `stop`
/// is cancelled, then the requests in flight finish.
pub async fn serve_outbox(
    listener: Listener,
    outbox: Arc<crate::events::Outbox>,
    state: Arc<AppState>,
    stop: CancellationToken,
) {
    let layer = Layer {
        name: "events_socket",
        max_connections: state.budgets.admin_connections,
        header_read_timeout: state.config.server.header_read_timeout,
        limits: state.limits.clone(),
        metrics: None,
    };
    let graceful = GracefulShutdown::new();
    server::accept_loop(listener, layer, &graceful, stop.cancelled(), move |req| {
        crate::http::events_socket::handle(state.clone(), outbox.clone(), req)
    })
    .await;
    graceful.shutdown().await;
}

/// One request, under `request_timeout`, counted as `endpoint="admin"`.
async fn answer(state: &Arc<AppState>, via: Via, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let deadline = state.config.server.request_timeout;
    let resp = or_deadline(
        &state.limits,
        tokio::time::timeout(deadline, handle(state, via, req)).await,
    );
    state
        .metrics
        .observe(Endpoint::Admin, resp.status(), started.elapsed().as_secs_f64());
    resp
}

/// Why a request is refused before it reaches an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It carries `Origin` or `Sec-Fetch-Site`: a browser sent it.
    FromBrowser,
    /// Its `Host` is neither `localhost` nor the admin address.
    ForeignHost,
    /// A `POST`/`DELETE` without `Content-Type: application/json`.
    NotJson,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::FromBrowser => "from_browser",
            Refusal::ForeignHost => "foreign_host",
            Refusal::NotJson => "not_json",
        }
    }
}

/// The browser checks: `Ok` for what the CLI (or curl) sends.
pub fn check(via: Via, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site") {
        return Err(Refusal::FromBrowser);
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| host_allowed(via, h)) {
        return Err(Refusal::ForeignHost);
    }
    if matches!(*method, Method::POST | Method::DELETE) {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Refusal::NotJson);
        }
    }
    Ok(())
}

/// `localhost`, a loopback address, or the address the TCP listener is bound
/// to (any address when bound to all of them): never a DNS name another
/// host's page could resolve to us. On TCP the port must be the listener's.
fn host_allowed(via: Via, host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, p)) => match p.strip_prefix(':') {
                Some(p) => (ip, Some(p)),
                None => return false,
            },
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        },
    };
    let port: Option<u16> = match port {
        Some(p) => match p.parse() {
            Ok(p) => Some(p),
            Err(_) => return false,
        },
        None => None,
    };
    let ip: Option<IpAddr> = name.parse().ok();
    let local = name.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback());
    match via {
        Via::Socket => local,
        Via::Tcp(bound) => {
            let address = ip.is_some_and(|ip| ip == bound.ip() || bound.ip().is_unspecified());
            (local || address) && port.unwrap_or(80) == bound.port()
        }
    }
}

/// Why an admin request is answered with an error: [`AdminError::rescue`]
/// is the admin API's one place each becomes a response.
#[derive(Debug)]
enum AdminError {
    /// What a browser sends ([`check`]).
    Refused(Refusal),
    /// The body could not be read: over [`MAX_BODY`], too slow, broken.
    Body(BodyError),
    /// The body is not `{"kind":…,"value":…}`.
    NotARequest,
    /// Not a revocation ([`revocation`]).
    Invalid(Invalid),
    /// The state backend did not answer.
    State(crate::state::StateError),
    /// No such endpoint.
    NotFound,
}

impl AdminError {
    /// The admin API's rescue.
    fn rescue(self) -> Synthetic {
        match self {
            AdminError::Refused(Refusal::FromBrowser) => Synthetic::admin(
                StatusCode::FORBIDDEN,
                "the admin API refuses requests from browsers (an Origin or Sec-Fetch-Site header)",
            ),
            AdminError::Refused(Refusal::ForeignHost) => Synthetic::admin(
                StatusCode::FORBIDDEN,
                "Host must be localhost or the admin address (a page on another host cannot use the admin API)",
            ),
            AdminError::Refused(Refusal::NotJson) => Synthetic::admin(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST and DELETE need Content-Type: application/json",
            ),
            AdminError::Body(BodyError::TooLarge) => {
                Synthetic::admin(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 64 KiB")
            }
            AdminError::Body(BodyError::TimedOut) => Synthetic::body_timeout(),
            AdminError::Body(_) => Synthetic::admin(StatusCode::BAD_REQUEST, "unreadable body"),
            AdminError::NotARequest => {
                Synthetic::admin(StatusCode::BAD_REQUEST, "expected {\"kind\":…,\"value\":…}")
            }
            AdminError::Invalid(e) => Synthetic::admin(StatusCode::BAD_REQUEST, e.0),
            AdminError::State(e) => Synthetic::admin(StatusCode::SERVICE_UNAVAILABLE, format!("state backend: {e}")),
            AdminError::NotFound => Synthetic::admin(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Counts a body too slow (the other errors are the client's own).
    fn record(&self, state: &AppState) {
        if let AdminError::Body(BodyError::TimedOut) = self {
            state.limits.hit(Limit::BodyReadTimeout);
        }
    }
}

/// Answers one admin request (the browser checks first).
async fn handle(state: &Arc<AppState>, via: Via, req: Request<Incoming>) -> Resp {
    match endpoint(state, via, req).await {
        Ok(r) => r,
        Err(e) => {
            e.record(state);
            e.rescue().into()
        }
    }
}

async fn endpoint(state: &Arc<AppState>, via: Via, req: Request<Incoming>) -> Result<Resp, AdminError> {
    if let Err(refusal) = check(via, req.method(), req.headers()) {
        tracing::info!(
            endpoint = "admin",
            refused = refusal.as_str(),
            method = %req.method(),
            "admin request refused"
        );
        return Err(AdminError::Refused(refusal));
    }
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/healthz") => Ok(Response::new(Full::new(Bytes::from_static(b"ok\n")))),
        (Method::GET, "/revocations") => {
            let list = state
                .shared
                .list(state.clock.now())
                .await
                .map_err(AdminError::State)?;
            let items: Vec<Listed> = list.iter().map(|(r, u)| Listed::new(r, *u)).collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "revocations": items })))
        }
        (m @ (Method::POST | Method::DELETE), "/revocations") => {
            let cfg = state.current_owned();
            let timeout = state.config.server.body_read_timeout;
            let body = limits::read_body(req.into_body(), MAX_BODY, timeout)
                .await
                .map_err(AdminError::Body)?;
            let r: RevokeRequest = serde_json::from_slice(&body).map_err(|_| AdminError::NotARequest)?;
            let entry = revocation(&r.kind, &r.value, cfg.link.merge_slashes).map_err(AdminError::Invalid)?;
            let now = state.clock.now();
            if m == Method::POST {
                let max_ttl = cfg
                    .link
                    .max_ttl
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let until = entry.until(now, max_ttl);
                state
                    .shared
                    .revoke(&entry, until, now)
                    .await
                    .map_err(AdminError::State)?;
                tracing::info!(kind = entry.kind(), value = %entry.display_value(), until, "revoked");
                Ok(json(StatusCode::OK, &Listed::new(&entry, until)))
            } else {
                let removed = state
                    .shared
                    .unrevoke(&entry, now)
                    .await
                    .map_err(AdminError::State)?;
                tracing::info!(kind = entry.kind(), value = %entry.display_value(), removed, "unrevoked");
                Ok(json(StatusCode::OK, &serde_json::json!({ "removed": removed })))
            }
        }
        _ => Err(AdminError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn what_a_browser_sends_is_refused() {
        let tcp = Via::Tcp("127.0.0.1:9751".parse().unwrap());
        let json = ("content-type", "application/json");
        let ok = |via, m: Method, h: &[(&str, &str)]| check(via, &m, &headers(h));
        // What the CLI and curl send.
        assert_eq!(
            ok(Via::Socket, Method::POST, &[("host", "localhost"), json]),
            Ok(())
        );
        assert_eq!(ok(Via::Socket, Method::GET, &[("host", "localhost")]), Ok(()));
        assert_eq!(
            ok(tcp, Method::DELETE, &[("host", "127.0.0.1:9751"), json]),
            Ok(())
        );
        assert_eq!(ok(tcp, Method::GET, &[("host", "localhost:9751")]), Ok(()));
        assert_eq!(
            ok(
                tcp,
                Method::POST,
                &[
                    ("host", "localhost:9751"),
                    ("content-type", "Application/JSON; charset=utf-8")
                ]
            ),
            Ok(())
        );
        // A page's simple request: text/plain, an Origin, its own Host.
        for (via, h) in [
            (
                Via::Socket,
                vec![("host", "localhost"), json, ("origin", "https://evil.example")],
            ),
            (tcp, vec![("host", "127.0.0.1:9751"), json, ("origin", "null")]),
            (
                tcp,
                vec![("host", "127.0.0.1:9751"), json, ("sec-fetch-site", "cross-site")],
            ),
        ] {
            assert_eq!(ok(via, Method::POST, &h), Err(Refusal::FromBrowser), "{h:?}");
        }
        assert_eq!(
            ok(
                tcp,
                Method::POST,
                &[("host", "127.0.0.1:9751"), ("content-type", "text/plain")]
            ),
            Err(Refusal::NotJson)
        );
        assert_eq!(
            ok(tcp, Method::DELETE, &[("host", "127.0.0.1:9751")]),
            Err(Refusal::NotJson)
        );
        for host in [
            "rebind.evil.example:9751",
            "localhost.evil.example:9751",
            "127.0.0.1:80",
            "127.0.0.1",
            "10.0.0.1:9751",
            "127.0.0.1:9751x",
            "[::1",
            "",
        ] {
            assert_eq!(
                ok(tcp, Method::GET, &[("host", host)]),
                Err(Refusal::ForeignHost),
                "{host}"
            );
        }
        assert_eq!(ok(tcp, Method::GET, &[]), Err(Refusal::ForeignHost), "no Host");
        assert_eq!(
            ok(Via::Socket, Method::GET, &[("host", "assetgate.example")]),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(ok(Via::Socket, Method::GET, &[("host", "[::1]")]), Ok(()));
        // Bound to every address (opt-in): any address of the host, never a name.
        let any = Via::Tcp("0.0.0.0:9751".parse().unwrap());
        assert_eq!(ok(any, Method::GET, &[("host", "10.0.0.1:9751")]), Ok(()));
        assert_eq!(
            ok(any, Method::GET, &[("host", "admin.example:9751")]),
            Err(Refusal::ForeignHost)
        );
    }

    #[test]
    fn link_from_url_or_target() {
        let target = format!(
            "/private/a%20b.txt?md5={}&expires=1800000600",
            link::sign(b"s", b"/private/a b.txt", 1_800_000_600)
        );
        let want = Revocation::Link {
            uri: b"/private/a b.txt".to_vec(),
            expires: 1_800_000_600,
        };
        assert_eq!(revocation("link", &target, true).unwrap(), want);
        assert_eq!(
            revocation("link", &format!("https://cdn.example{target}"), true).unwrap(),
            want
        );
        assert!(revocation("link", "/private/a.txt", true).is_err());
        assert!(revocation("link", "/private/a.txt?md5=short&expires=1", true).is_err());
        assert!(revocation("secret", "x", true).is_err());
        assert_eq!(
            revocation("prefix", "/private/user-42/", true).unwrap(),
            Revocation::Prefix(b"/private/user-42/".to_vec())
        );
    }
}
