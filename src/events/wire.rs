//! The outbox's admin socket: `<events.dir>/admin.sock`, HTTP/1.1 over a Unix
//! socket, served by the daemon (which holds the outbox: redb allows one
//! process) for `assetgate events …` and `finalize-pending`. This module is
//! its wire, shared by its two ends (the daemon's endpoint,
//! [`crate::http::events_socket`], and the CLI's [`super::client`]): where
//! the socket is, and the JSON bodies that are not plain store records.
//!
//! Why a Unix socket in the outbox directory rather than a loopback port:
//! access is exactly the directory's (whoever may read or delete the outbox
//! file may use it, nobody else), there is no port to pick, expose or
//! firewall, and the CLI finds it from the same `events.dir` it would open.
//! The daemon creates it as every private socket of its own (mode 0600, a
//! directory nobody else may write, a stale socket replaced, a live one
//! refused) and serves it through the main listener's limits layer, with its
//! own small connection budget.
//! `curl --unix-socket …/admin.sock http://assetgate/events` works too.
//!
//! - `GET /events?state=pending|dead&limit=N`: records (JSON array).
//! - `GET /events/{id}`: one record, or `{"id","state":"delivered","delivered_ms"}`.
//! - `POST /events/{id}/retry`, `POST /events/retry-dead`.
//! - `POST /events`: enqueue an event (`finalize-pending` while the daemon runs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::payload::Kind;
use super::store::State;
use crate::config::MAX_SOCKET_PATH;

/// The socket's file name inside `events.dir`.
pub const SOCKET: &str = "admin.sock";

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
pub struct WireEvent {
    /// The event's id.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// When it was created (Unix ms).
    pub created_ms: u64,
    /// The signed body.
    pub body: String,
    /// The asset key it is about.
    pub key: String,
}

/// `GET /events/{id}` for a delivered id.
#[derive(Serialize, Deserialize)]
pub struct DeliveredId {
    /// The event's id.
    pub id: String,
    /// Always [`State::Delivered`].
    pub state: State,
    /// When it was delivered (Unix ms).
    pub delivered_ms: u64,
}
