//! The outbox's admin socket (`<events.dir>/admin.sock`, see
//! [`crate::events::admin`]): its one endpoint, for `assetgate events …` and
//! `finalize-pending`; [`crate::http::admin::serve_outbox`] serves it.
//!
//! - `GET /events?state=pending|dead&limit=N`: records (JSON array).
//! - `GET /events/{id}`: one record, or `{"id","state":"delivered","delivered_ms"}`.
//! - `POST /events/{id}/retry`, `POST /events/retry-dead`.
//! - `POST /events`: enqueue an event (`finalize-pending` while the daemon runs).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;

use crate::events::admin::{DeliveredId, WireEvent};
use crate::events::payload::Event;
use crate::events::store::{Enqueued, Retried, State, StoreError};
use crate::events::Outbox;
use crate::http::limits::{self, BodyError};
use crate::http::respond;
use crate::http::{AppState, Resp};
use crate::metrics::Limit;

/// One request to the socket (its body read under `body_read_timeout`, the
/// whole under `request_timeout`), as [`crate::http::admin::serve_outbox`]
/// serves it.
pub async fn answer(st: Arc<AppState>, ob: Arc<Outbox>, req: Request<Incoming>) -> Resp {
    let work = async {
        let (parts, body) = req.into_parts();
        let timeout = st.config.server.body_read_timeout;
        match limits::read_body(body, MAX_BODY, timeout).await {
            Ok(b) => handle(ob, Request::from_parts(parts, b)).await,
            Err(BodyError::TooLarge) => error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            Err(BodyError::TimedOut) => {
                st.limits.hit(Limit::BodyReadTimeout);
                respond::limit_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body did not arrive within server.body_read_timeout",
                )
            }
            Err(_) => error(StatusCode::BAD_REQUEST, "unreadable body"),
        }
    };
    match tokio::time::timeout(st.config.server.request_timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            st.limits.hit(Limit::RequestTimeout);
            respond::limit_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "the request took longer than server.request_timeout",
            )
        }
    }
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(v).expect("serialises"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg }))
}

async fn blocking<T: Send + 'static>(
    ob: &Arc<Outbox>,
    f: impl FnOnce(&Outbox) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    let ob = ob.clone();
    match tokio::task::spawn_blocking(move || f(&ob)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
    }
}

/// Most bytes a request to the socket may carry (an event of `POST /events`).
pub const MAX_BODY: u64 = 64 * 1024;

/// Answers one request, its body already read (at most [`MAX_BODY`]). The
/// socket is served by the HTTP adapter ([`crate::daemon`] binds it, the
/// limits layer of every listener serves it), as the main port is.
pub async fn handle(ob: Arc<Outbox>, req: Request<Bytes>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let now = ob.now_ms();
    let r = match (method, segments.as_slice()) {
        (Method::GET, ["events"]) => {
            let mut state = None;
            let mut limit = 100usize;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("state", "pending")) => state = Some(State::Pending),
                    Some(("state", "dead")) => state = Some(State::Dead),
                    Some(("limit", n)) => limit = n.parse().unwrap_or(100),
                    _ => {}
                }
            }
            blocking(&ob, move |o| o.store().list(state, limit))
                .await
                .map(|v| json(StatusCode::OK, &v))
        }
        (Method::GET, ["events", id]) => {
            let id = (*id).to_owned();
            blocking(&ob, {
                let id = id.clone();
                move |o| o.store().get(&id)
            })
            .await
            .map(|found| match found {
                Some(Ok(r)) => json(StatusCode::OK, &r),
                Some(Err(at)) => json(
                    StatusCode::OK,
                    &DeliveredId {
                        id,
                        state: State::Delivered,
                        delivered_ms: at,
                    },
                ),
                None => error(StatusCode::NOT_FOUND, "no such event"),
            })
        }
        (Method::POST, ["events", "retry-dead"]) => {
            blocking(&ob, move |o| o.store().retry_dead(now)).await.map(|n| {
                ob.wake();
                json(StatusCode::OK, &serde_json::json!({ "retried": n }))
            })
        }
        (Method::POST, ["events", id, "retry"]) => {
            let id = (*id).to_owned();
            blocking(&ob, move |o| o.store().retry(&id, now))
                .await
                .map(|r| match r {
                    Retried::Queued => {
                        ob.wake();
                        json(StatusCode::OK, &serde_json::json!({ "retried": 1 }))
                    }
                    Retried::Delivered => error(StatusCode::CONFLICT, "already delivered"),
                    Retried::NotFound => error(StatusCode::NOT_FOUND, "no such event"),
                })
        }
        (Method::POST, ["events"]) => {
            let body = req.into_body();
            let Ok(w) = serde_json::from_slice::<WireEvent>(&body) else {
                return error(StatusCode::BAD_REQUEST, "not an event");
            };
            let event = Event {
                id: w.id,
                kind: w.kind,
                created_ms: w.created_ms,
                body: w.body,
                key: w.key,
            };
            blocking(&ob, move |o| o.enqueue(&event)).await.map(|r| {
                let (status, result) = match r {
                    Enqueued::New => (StatusCode::CREATED, "enqueued"),
                    Enqueued::Duplicate(_) => (StatusCode::OK, "duplicate"),
                    Enqueued::Refused => (StatusCode::INSUFFICIENT_STORAGE, "refused"),
                };
                json(status, &serde_json::json!({ "result": result }))
            })
        }
        _ => Ok(error(StatusCode::NOT_FOUND, "unknown admin request")),
    };
    r.unwrap_or_else(|e| e)
}
