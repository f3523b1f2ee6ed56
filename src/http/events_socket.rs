//! The outbox's admin socket (`<events.dir>/admin.sock`, see
//! [`crate::events::wire`]): its one endpoint, for `assetgate events …` and
//! `finalize-pending`; [`crate::http::admin::serve_outbox`] serves it through
//! the limits layer of every listener.
//!
//! - `GET /events?state=pending|dead&limit=N`: records (JSON array).
//! - `GET /events/{id}`: one record, or `{"id","state":"delivered","delivered_ms"}`.
//! - `POST /events/{id}/retry`, `POST /events/retry-dead`.
//! - `POST /events`: enqueue an event (`finalize-pending` while the daemon runs).

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::events::payload::Event;
use crate::events::store::{Enqueued, Retried, State, StoreError};
use crate::events::wire::{DeliveredId, WireEvent};
use crate::events::Outbox;
use crate::http::limits::{self, or_deadline, BodyError};
use crate::http::respond::{json, Synthetic};
use crate::http::{AppState, Resp};
use crate::metrics::Limit;

/// Most bytes a request to the socket may carry (an event of `POST /events`).
pub const MAX_BODY: u64 = 64 * 1024;

/// Answers one request to the socket: its body read under
/// `body_read_timeout` (at most [`MAX_BODY`]), the whole under
/// `request_timeout`, every error through `SocketError::rescue`.
pub async fn handle(state: Arc<AppState>, outbox: Arc<Outbox>, req: Request<Incoming>) -> Resp {
    let answer = async {
        match endpoint(&state, outbox, req).await {
            Ok(r) => r,
            Err(e) => {
                e.record(&state);
                e.rescue().into()
            }
        }
    };
    let timeout = state.config.server.request_timeout;
    or_deadline(&state.limits, tokio::time::timeout(timeout, answer).await)
}

/// Why a request to the socket is answered with an error:
/// [`SocketError::rescue`] is the socket's one place each becomes a response.
#[derive(Debug)]
enum SocketError {
    /// The body could not be read: over [`MAX_BODY`], too slow, broken.
    Body(BodyError),
    /// `POST /events` without an event.
    NotAnEvent,
    /// No event with that id.
    NoSuchEvent,
    /// A retry of an event already delivered.
    Delivered,
    /// The outbox failed (or its task did).
    Store(String),
    /// No such endpoint.
    Unknown,
}

impl SocketError {
    /// The socket's rescue.
    fn rescue(self) -> Synthetic {
        match self {
            SocketError::Body(BodyError::TooLarge) => {
                Synthetic::admin(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
            }
            SocketError::Body(BodyError::TimedOut) => Synthetic::body_timeout(),
            SocketError::Body(_) => Synthetic::admin(StatusCode::BAD_REQUEST, "unreadable body"),
            SocketError::NotAnEvent => Synthetic::admin(StatusCode::BAD_REQUEST, "not an event"),
            SocketError::NoSuchEvent => Synthetic::admin(StatusCode::NOT_FOUND, "no such event"),
            SocketError::Delivered => Synthetic::admin(StatusCode::CONFLICT, "already delivered"),
            SocketError::Store(e) => Synthetic::admin(StatusCode::INTERNAL_SERVER_ERROR, e),
            SocketError::Unknown => Synthetic::admin(StatusCode::NOT_FOUND, "unknown admin request"),
        }
    }

    /// Counts a body too slow (the other errors are the CLI's or the
    /// outbox's own, answered with what went wrong).
    fn record(&self, state: &AppState) {
        if let SocketError::Body(BodyError::TimedOut) = self {
            state.limits.hit(Limit::BodyReadTimeout);
        }
    }
}

async fn endpoint(state: &AppState, ob: Arc<Outbox>, req: Request<Incoming>) -> Result<Resp, SocketError> {
    let (parts, body) = req.into_parts();
    let body = limits::read_body(body, MAX_BODY, state.config.server.body_read_timeout)
        .await
        .map_err(SocketError::Body)?;
    let query = parts.uri.query().unwrap_or("");
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let now = ob.now_ms();
    match (parts.method, segments.as_slice()) {
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
            let records = blocking(&ob, move |o| o.store().list(state, limit)).await?;
            Ok(json(StatusCode::OK, &records))
        }
        (Method::GET, ["events", id]) => {
            let id = (*id).to_owned();
            let found = blocking(&ob, {
                let id = id.clone();
                move |o| o.store().get(&id)
            })
            .await?;
            match found {
                Some(Ok(r)) => Ok(json(StatusCode::OK, &r)),
                Some(Err(at)) => Ok(json(
                    StatusCode::OK,
                    &DeliveredId {
                        id,
                        state: State::Delivered,
                        delivered_ms: at,
                    },
                )),
                None => Err(SocketError::NoSuchEvent),
            }
        }
        (Method::POST, ["events", "retry-dead"]) => {
            let n = blocking(&ob, move |o| o.store().retry_dead(now)).await?;
            ob.wake();
            Ok(json(StatusCode::OK, &serde_json::json!({ "retried": n })))
        }
        (Method::POST, ["events", id, "retry"]) => {
            let id = (*id).to_owned();
            match blocking(&ob, move |o| o.store().retry(&id, now)).await? {
                Retried::Queued => {
                    ob.wake();
                    Ok(json(StatusCode::OK, &serde_json::json!({ "retried": 1 })))
                }
                Retried::Delivered => Err(SocketError::Delivered),
                Retried::NotFound => Err(SocketError::NoSuchEvent),
            }
        }
        (Method::POST, ["events"]) => {
            let w: WireEvent = serde_json::from_slice(&body).map_err(|_| SocketError::NotAnEvent)?;
            let event = Event {
                id: w.id,
                kind: w.kind,
                created_ms: w.created_ms,
                body: w.body,
                key: w.key,
            };
            let (status, result) = match blocking(&ob, move |o| o.enqueue(&event)).await? {
                Enqueued::New => (StatusCode::CREATED, "enqueued"),
                Enqueued::Duplicate(_) => (StatusCode::OK, "duplicate"),
                Enqueued::Refused => (StatusCode::INSUFFICIENT_STORAGE, "refused"),
            };
            Ok(json(status, &serde_json::json!({ "result": result })))
        }
        _ => Err(SocketError::Unknown),
    }
}

/// `f` on the blocking pool (redb's calls block).
async fn blocking<T: Send + 'static>(
    ob: &Arc<Outbox>,
    f: impl FnOnce(&Outbox) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SocketError> {
    let ob = ob.clone();
    match tokio::task::spawn_blocking(move || f(&ob)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SocketError::Store(e.to_string())),
        Err(e) => Err(SocketError::Store(e.to_string())),
    }
}
