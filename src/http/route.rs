//! The main listener's routes: which endpoint answers a path and method,
//! under which deadline; every answer counted.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::http::hooks;
use crate::http::respond::{limit_response, method_not_allowed, text};
use crate::http::{auth, AppState, Resp};
use crate::metrics::{Endpoint, Limit};

/// Answers one request of the main listener.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let (endpoint, resp) = route(&state, req).await;
    state
        .metrics
        .observe(endpoint, resp.status(), started.elapsed().as_secs_f64());
    resp
}

async fn route(state: &Arc<AppState>, req: Request<Incoming>) -> (Endpoint, Resp) {
    let path = req.uri().path();
    let method = req.method();
    match path {
        "/auth" => {
            if method != Method::GET && method != Method::HEAD {
                return (Endpoint::Auth, method_not_allowed("GET, HEAD"));
            }
            let cfg = state.current();
            let outcome = auth::decide(&cfg, &state.shared, req.headers(), state.clock.now());
            auth::record(&outcome, &state.metrics);
            let (parts, ()) = auth::response(&outcome).into_parts();
            let body = match outcome {
                auth::Outcome::NoOriginalUri if method == Method::GET => {
                    Bytes::from_static(auth::NO_ORIGINAL_URI_BODY.as_bytes())
                }
                _ => Bytes::new(),
            };
            (Endpoint::Auth, Response::from_parts(parts, Full::new(body)))
        }
        "/tusd" => {
            if method != Method::POST {
                return (Endpoint::Tusd, method_not_allowed("POST"));
            }
            // The /tusd budget (places for bodies still arriving, turns to
            // decide) is the handler's (hooks.rs, limits.rs); the deadline is
            // the same as /session's.
            let deadline = state.config.server.request_timeout;
            let decided = tokio::time::timeout(deadline, hooks::handle(state, req)).await;
            match decided {
                Ok(resp) => (Endpoint::Tusd, resp),
                Err(_) => {
                    state.limits.hit(Limit::RequestTimeout);
                    (
                        Endpoint::Tusd,
                        limit_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request_timeout",
                            "the request took longer than server.request_timeout",
                        ),
                    )
                }
            }
        }
        "/session" => {
            if method != Method::GET && method != Method::HEAD {
                return (Endpoint::Session, method_not_allowed("GET, HEAD"));
            }
            // It may wait on the disk (an upload's record): bounded like /tusd.
            let deadline = state.config.server.request_timeout;
            match tokio::time::timeout(deadline, crate::http::session::handle(state, &req)).await {
                Ok(resp) => (Endpoint::Session, resp),
                Err(_) => {
                    state.limits.hit(Limit::RequestTimeout);
                    (
                        Endpoint::Session,
                        limit_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request_timeout",
                            "the request took longer than server.request_timeout",
                        ),
                    )
                }
            }
        }
        "/healthz" => admin(method, || text(StatusCode::OK, "ok\n")),
        "/readyz" => admin(method, || {
            if state.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else if state.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "state backend unreachable\n")
            }
        }),
        "/metrics" => admin(method, || {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }),
        _ => (Endpoint::Other, text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

fn admin(method: &Method, f: impl FnOnce() -> Resp) -> (Endpoint, Resp) {
    if method == Method::GET || method == Method::HEAD {
        (Endpoint::Admin, f())
    } else {
        (Endpoint::Admin, method_not_allowed("GET, HEAD"))
    }
}
