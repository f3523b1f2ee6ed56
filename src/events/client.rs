//! The CLI's end of the admin socket ([`super::wire`]): `assetgate events …`
//! and `finalize-pending` while the daemon holds the outbox. One blocking
//! HTTP/1.1 request per call, with a timeout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::payload::Event;
use super::store::{Record, Retried, State};
use super::wire::{DeliveredId, WireEvent, SOCKET};

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
