//! `serve --dev` only: downloads of private assets straight from the daemon,
//! so a newcomer can follow a signed link with nothing but the daemon and
//! tusd running (production downloads go through nginx, which asks `/auth`).
//!
//! The request target is decided by [`auth::decide`] exactly as nginx's
//! `auth_request` would have it decided (`X-Original-URI` = the raw target),
//! logged and counted as an auth decision; an allowed link's `$uri` is read
//! below `[storage] root` with the mover's confinement
//! ([`crate::finalize::Roots::read_published`]: no symlink, plain names), up
//! to [`MAX_BYTES`]. A refusal is the `/auth` answer itself (403 and
//! `X-Assetgate-Reason`). Not routed at all without `--dev`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::http::auth::{self, AuthOutcome};
use crate::http::respond::Synthetic;
use crate::http::{AppState, Resp};

/// The largest file served (dev mode is for a look, not for transfers).
pub const MAX_BYTES: u64 = 16 << 20;

/// Whether `path` is one `--dev` serves: below `/{private_prefix}/`.
pub fn serves(state: &AppState, path: &str) -> bool {
    let prefix = &state.config.storage.private_prefix;
    state.dev
        && path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(prefix.as_str()))
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Answers one `GET`/`HEAD` of a private asset in dev mode.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Synthetic::method_not_allowed("GET, HEAD").into();
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(&target) {
        Ok(v) => {
            headers.insert(auth::ORIGINAL_URI, v);
        }
        Err(_) => return Synthetic::not_found().into(),
    }
    let cfg = state.current_owned();
    let outcome = auth::decide(&cfg, &state.shared, &headers, state.clock.now());
    auth::record(&outcome, &state.metrics);
    let uri = match &outcome {
        AuthOutcome::Allow(v) => String::from_utf8_lossy(v.uri()).into_owned(),
        _ => return auth::response(&outcome, req.method()),
    };
    let Some(roots) = state.finalizer.roots().cloned() else {
        return Synthetic::not_found().into();
    };
    let relative = uri.trim_start_matches('/').to_owned();
    let read =
        tokio::task::spawn_blocking(move || roots.read_published(Path::new(&relative), MAX_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => {
            let len = bytes.len();
            let body = if req.method() == Method::HEAD {
                Bytes::new()
            } else {
                Bytes::from(bytes)
            };
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::OK;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        Ok(Err(e)) => {
            tracing::info!(endpoint = "auth", dev = true, error = %e, "dev download: the asset cannot be read");
            Synthetic::not_found().into()
        }
        Err(e) => {
            tracing::error!(endpoint = "auth", dev = true, error = %e, "dev download task failed");
            Synthetic::internal().into()
        }
    }
}
