//! The outbox's admin socket: `<events.dir>/admin.sock`, HTTP/1.1 over a Unix
//! socket, served by the daemon (which holds the outbox: redb allows one
//! process) for `assetgate events …` and `finalize-pending`.
//!
//! Why a Unix socket in the outbox directory rather than a loopback port:
//! access is exactly the directory's (whoever may read or delete the outbox
//! file may use it, nobody else), there is no port to pick, expose or
//! firewall, and the CLI finds it from the same `events.dir` it would open.
//! The daemon creates it as every private socket of its own (mode 0600, a
//! directory nobody else may write, a stale socket replaced, a live one
//! refused) and serves it through the main listener's limits layer, with its
//! own small connection budget; this module answers the requests.
//! `curl --unix-socket …/admin.sock http://assetgate/events` works too.
//!
//! - `GET /events?state=pending|dead&limit=N`: records (JSON array).
//! - `GET /events/{id}`: one record, or `{"id","state":"delivered","delivered_ms"}`.
//! - `POST /events/{id}/retry`, `POST /events/retry-dead`.
//! - `POST /events`: enqueue an event (`finalize-pending` while the daemon runs).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::outbox::Outbox;
use super::payload::{Event, Kind};
use super::store::{Enqueued, Record, Retried, State, StoreError};

/// The socket's file name inside `events.dir`.
pub const SOCKET: &str = "admin.sock";

pub use crate::config::MAX_SOCKET_PATH;

/// The socket path for `dir`, or why it cannot be one.
pub fn socket_path(dir: &Path) -> Result<PathBuf, String> {
    let p = dir.join(SOCKET);
    if p.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "{} is too long for a Unix socket path ({} bytes at most)",
            p.display(),
            MAX_SOCKET_PATH
        ));
    }
    Ok(p)
}

/// What `POST /events` carries.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    id: String,
    #[serde(rename = "type")]
    kind: Kind,
    created_ms: u64,
    body: String,
    key: String,
}

/// `GET /events/{id}` for a delivered id.
#[derive(Serialize, Deserialize)]
struct DeliveredId {
    id: String,
    state: State,
    delivered_ms: u64,
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

/// The CLI's side: one blocking request per call.
pub struct Client {
    path: PathBuf,
}

/// A delivered id, as `show` reports it.
#[derive(Debug)]
pub enum Shown {
    /// Pending or dead.
    Record(Box<Record>),
    /// Delivered at (Unix ms).
    Delivered(u64),
}

impl Client {
    /// A client for the daemon serving `dir`.
    pub fn new(dir: &Path) -> Client {
        Client {
            path: dir.join(SOCKET),
        }
    }

    fn call(&self, method: &str, target: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.path).map_err(|e| {
            format!(
                "the outbox is locked by another process, but its admin socket {} does not answer: {e}",
                self.path.display()
            )
        })?;
        let timeout = Some(Duration::from_secs(30));
        s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
        s.set_write_timeout(timeout).map_err(|e| e.to_string())?;
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: assetgate\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(|e| e.to_string())?;
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("the daemon's answer has no HTTP head")?;
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("the daemon's answer has no status")?;
        let body = out[split + 4..].to_vec();
        Ok((status, body))
    }

    fn message(body: &[u8]) -> String {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
    }

    /// `POST /events`: `Ok(true)` when the event is in the outbox.
    pub fn enqueue(&self, e: &Event) -> Result<bool, String> {
        let body = serde_json::to_vec(&WireEvent {
            id: e.id.clone(),
            kind: e.kind,
            created_ms: e.created_ms,
            body: e.body.clone(),
            key: e.key.clone(),
        })
        .map_err(|e| e.to_string())?;
        let (status, body) = self.call("POST", "/events", &body)?;
        match status {
            200 | 201 => Ok(true),
            507 => Ok(false),
            _ => Err(Self::message(&body)),
        }
    }

    /// `GET /events`.
    pub fn list(&self, state: Option<State>, limit: usize) -> Result<Vec<Record>, String> {
        let q = match state {
            Some(s) => format!("/events?state={}&limit={limit}", s.as_str()),
            None => format!("/events?limit={limit}"),
        };
        let (status, body) = self.call("GET", &q, b"")?;
        if status != 200 {
            return Err(Self::message(&body));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// `GET /events/{id}`.
    pub fn show(&self, id: &str) -> Result<Option<Shown>, String> {
        let (status, body) = self.call("GET", &format!("/events/{}", url_segment(id)), b"")?;
        match status {
            200 => {
                if let Ok(d) = serde_json::from_slice::<DeliveredId>(&body) {
                    return Ok(Some(Shown::Delivered(d.delivered_ms)));
                }
                serde_json::from_slice(&body)
                    .map(|r| Some(Shown::Record(Box::new(r))))
                    .map_err(|e| e.to_string())
            }
            404 => Ok(None),
            _ => Err(Self::message(&body)),
        }
    }

    /// `POST /events/{id}/retry`.
    pub fn retry(&self, id: &str) -> Result<Retried, String> {
        let (status, body) = self.call("POST", &format!("/events/{}/retry", url_segment(id)), b"")?;
        match status {
            200 => Ok(Retried::Queued),
            409 => Ok(Retried::Delivered),
            404 => Ok(Retried::NotFound),
            _ => Err(Self::message(&body)),
        }
    }

    /// `POST /events/retry-dead`: how many.
    pub fn retry_dead(&self) -> Result<usize, String> {
        let (status, body) = self.call("POST", "/events/retry-dead", b"")?;
        if status != 200 {
            return Err(Self::message(&body));
        }
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("retried")?.as_u64())
            .map(|n| n as usize)
            .ok_or_else(|| "unexpected answer".to_string())
    }
}

/// Event ids are `evt_<hex>`; anything else is refused before it reaches a URL.
fn url_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}
