//! The main listener's health endpoints: `/healthz` (the process answers),
//! `/readyz` (it serves: not draining, the state backend answers), `/metrics`
//! (Prometheus text). Each is a `handle` of [`crate::http::route`]'s one
//! signature.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::http::respond::text;
use crate::http::{AppState, Resp};

/// `GET /healthz`: 200 `ok` while the process answers.
pub async fn healthz(_: &Arc<AppState>, _: Request<Incoming>) -> Resp {
    text(StatusCode::OK, "ok\n")
}

/// `GET /readyz`: 200 `ready`, or 503 and why not.
pub async fn readyz(state: &Arc<AppState>, _: Request<Incoming>) -> Resp {
    if state.is_ready() {
        text(StatusCode::OK, "ready\n")
    } else if state.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "state backend unreachable\n")
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(state: &Arc<AppState>, _: Request<Incoming>) -> Resp {
    let mut r = text(StatusCode::OK, state.metrics.render());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
