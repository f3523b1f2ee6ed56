//! The admin listener (`[server] admin_listen`, loopback by default): where
//! `assetgate revoke` reaches a daemon whose revocations live in its memory.
//! nginx never talks to it; it is a separate socket from `listen`, so the
//! shipped nginx configuration cannot reach it even by mistake.
//!
//! - `GET /revocations` → `{"revocations":[{"kind","value","until"}]}`
//! - `POST /revocations` `{"kind":"link|prefix|key","value":"…"}` → `{"until":…}`
//! - `DELETE /revocations` (same body) → `{"removed":true|false}`
//! - `GET /healthz` → `ok`
//!
//! With the Redis backend the CLI writes to Redis itself and every replica
//! picks the change up; this listener answers the same requests there too.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::http::{AppState, Resp};
use crate::state::revocation::{Invalid, Revocation};
use crate::token::link;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

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

/// Serves the admin API on `listener` for the life of the runtime.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let st = state.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(5))
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(handle(&st, req).await) }
                }),
            );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (Method::GET, "/revocations") => match state.shared.list(state.clock.now()).await {
            Ok(list) => {
                let items: Vec<Listed> = list.iter().map(|(r, u)| Listed::new(r, *u)).collect();
                json(StatusCode::OK, &serde_json::json!({ "revocations": items }))
            }
            Err(e) => unavailable(&e),
        },
        (m @ (Method::POST | Method::DELETE), "/revocations") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::BAD_REQUEST, "unreadable or oversized body"),
            };
            let Ok(r) = serde_json::from_slice::<RevokeRequest>(&body) else {
                return error(StatusCode::BAD_REQUEST, "expected {\"kind\":…,\"value\":…}");
            };
            let cfg = state.current_owned();
            let entry = match revocation(&r.kind, &r.value, cfg.link.merge_slashes) {
                Ok(e) => e,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
            };
            let now = state.clock.now();
            if m == Method::POST {
                let max_ttl = cfg
                    .link
                    .max_ttl
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let until = entry.until(now, max_ttl);
                match state.shared.revoke(&entry, until, now).await {
                    Ok(()) => {
                        tracing::info!(kind = entry.kind(), value = %entry.display_value(), until, "revoked");
                        json(StatusCode::OK, &Listed::new(&entry, until))
                    }
                    Err(e) => unavailable(&e),
                }
            } else {
                match state.shared.unrevoke(&entry, now).await {
                    Ok(removed) => {
                        tracing::info!(kind = entry.kind(), value = %entry.display_value(), removed, "unrevoked");
                        json(StatusCode::OK, &serde_json::json!({ "removed": removed }))
                    }
                    Err(e) => unavailable(&e),
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn unavailable(e: &crate::state::StateError) -> Resp {
    error(StatusCode::SERVICE_UNAVAILABLE, &format!("state backend: {e}"))
}

fn error(status: StatusCode, message: &str) -> Resp {
    json(status, &serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, v: &impl Serialize) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).expect("JSON values serialise"),
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

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
