//! `assetgate revoke`, `unrevoke`, `revoked list`: the CLI side.
//!
//! The CLI reaches the revocations through the configured backend: with
//! `redis` it writes to Redis itself (every replica applies the change within
//! `[state] sync_interval`); with `memory` they live in the daemon, reached on
//! its admin socket (`[server] admin_socket`: the same configuration gives the
//! same path), never the port nginx uses. The socket's directory is checked
//! first ([`socket::check_client_dir`]): one that others may write could hold
//! anyone's socket, and a fake daemon answering "revoked" would be worse than
//! an error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StateBackend, EXIT_CONFIG};
use crate::http::admin::{self, Listed, RevokeRequest};
use crate::http::socket;
use crate::state;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `revoke KIND VALUE`.
    Revoke,
    /// `unrevoke KIND VALUE`.
    Unrevoke,
    /// `revoked list`.
    List,
}

/// Runs one action; exit 0 done, 1 backend/daemon unreachable, 64 bad value.
pub fn run(config: &Config, action: Action, kind: &str, value: &str) -> ExitCode {
    let entry = if action == Action::List {
        None
    } else {
        match admin::revocation(kind, value, config.link.merge_slashes) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("error: {kind} {value:?}: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        }
    };
    let result = match &config.state.backend {
        StateBackend::Memory => via_admin(config, action, kind, value),
        StateBackend::Redis { .. } => via_backend(config, action, entry.as_ref()),
    };
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn until_text(until: Option<i64>) -> String {
    match until {
        Some(u) => format!("until {u}"),
        None => "until unrevoked (no [link] max_ttl bounds it)".into(),
    }
}

fn via_backend(
    config: &Config,
    action: Action,
    entry: Option<&state::Revocation>,
) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let backend = state::backend(&config.state).map_err(|e| e.to_string())?;
        let now = SystemClock.now();
        let timeout = config.state.timeout.max(Duration::from_secs(2));
        let who = backend_name(config);
        let sync = config.state.sync_interval.as_millis();
        match (action, entry) {
            (Action::Revoke, Some(e)) => {
                let max_ttl = config
                    .link
                    .max_ttl
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let until = e.until(now, max_ttl);
                bounded(&who, timeout, backend.revoke(e, until, now)).await?;
                let l = Listed::new(e, until);
                Ok(vec![format!(
                    "revoked {} {} ({}); every replica refuses it within {sync} ms",
                    l.kind,
                    l.value,
                    until_text(l.until)
                )])
            }
            (Action::Unrevoke, Some(e)) => {
                let removed: bool = bounded(&who, timeout, backend.unrevoke(e)).await?;
                Ok(vec![if removed {
                    format!(
                        "unrevoked {} {}; every replica accepts it again within {sync} ms",
                        e.kind(),
                        e.display_value()
                    )
                } else {
                    format!("{} {} was not revoked", e.kind(), e.display_value())
                }])
            }
            _ => {
                let list = bounded(&who, timeout, backend.list(now)).await?;
                Ok(list_lines(list.iter().map(|(r, u)| Listed::new(r, *u)).collect()))
            }
        }
    })
}

async fn bounded<T>(who: &str, timeout: Duration, f: state::Fut<'_, T>) -> Result<T, String> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| format!("{who} did not answer within {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())
}

fn backend_name(config: &Config) -> String {
    match &config.state.backend {
        StateBackend::Memory => "the daemon".into(),
        StateBackend::Redis { url } => format!("redis at {}", url.redacted()),
    }
}

fn list_lines(items: Vec<Listed>) -> Vec<String> {
    if items.is_empty() {
        return vec!["no revocation in force".into()];
    }
    items
        .into_iter()
        .map(|l| format!("{}\t{}\t{}", l.kind, l.value, until_text(l.until)))
        .collect()
}

fn via_admin(config: &Config, action: Action, kind: &str, value: &str) -> Result<Vec<String>, String> {
    let path = &config.server.admin_socket;
    let body = serde_json::to_string(&RevokeRequest {
        kind: kind.into(),
        value: value.into(),
    })
    .expect("serialisable");
    let (method, body) = match action {
        Action::Revoke => ("POST", body),
        Action::Unrevoke => ("DELETE", body),
        Action::List => ("GET", String::new()),
    };
    let where_ = || {
        format!(
            "the daemon's admin socket {} ([server] admin_socket)",
            path.display()
        )
    };
    socket::check_client_dir(path).map_err(|e| format!("{}: {e}", where_()))?;
    let (status, reply) =
        exchange(path, method, "/revocations", &body).map_err(|e| format!("{}: {e}", where_()))?;
    let v: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|_| format!("the admin API answered {status} without JSON"))?;
    if status != 200 {
        // `{"error":"…"}`, or a limit's `{"error":{"code","message"}}`.
        let why = v["error"]
            .as_str()
            .or_else(|| v["error"]["message"].as_str())
            .unwrap_or("refused");
        return Err(format!("{status}: {why}"));
    }
    Ok(match action {
        Action::Revoke => {
            let l: Listed = serde_json::from_value(v).map_err(|e| e.to_string())?;
            vec![format!(
                "revoked {} {} ({})",
                l.kind,
                l.value,
                until_text(l.until)
            )]
        }
        Action::Unrevoke => vec![if v["removed"] == true {
            format!("unrevoked {kind} {value}")
        } else {
            format!("{kind} {value} was not revoked")
        }],
        Action::List => {
            let items: Vec<Listed> =
                serde_json::from_value(v["revocations"].clone()).map_err(|e| e.to_string())?;
            list_lines(items)
        }
    })
}

/// One HTTP/1.1 exchange on the Unix socket at `path`, `Connection: close`,
/// short timeouts; what any HTTP client would send (`curl --unix-socket`).
fn exchange(path: &Path, method: &str, target: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Error, ErrorKind};
    let timeout = Duration::from_secs(5);
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let bad = || Error::new(ErrorKind::InvalidData, "not an HTTP/1.1 response");
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let status = std::str::from_utf8(&all[..split])
        .ok()
        .and_then(|h| h.strip_prefix("HTTP/1.1 "))
        .and_then(|h| h.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, all[split + 4..].to_vec()))
}
