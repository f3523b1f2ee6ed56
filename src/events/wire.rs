//! The admin socket's wire, shared by its two ends (the daemon's server in
//! [`super::admin`], the CLI's [`super::client`]): where the socket is, and the
//! JSON bodies that are not plain store records.

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
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub created_ms: u64,
    pub body: String,
    pub key: String,
}

/// `GET /events/{id}` for a delivered id.
#[derive(Serialize, Deserialize)]
pub struct DeliveredId {
    pub id: String,
    pub state: State,
    pub delivered_ms: u64,
}
