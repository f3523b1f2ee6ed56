//! `assetgate events list|show ID|retry ID|retry --dead`: on the outbox
//! directory itself when no daemon holds it, through the daemon's admin
//! socket when one does ([`super::wire`], served by
//! [`crate::http::events_socket`], reached with [`super::client`]).
//! Either way the same store operations run, in one process.

use std::process::ExitCode;

use clap::Subcommand;

use super::backoff::{MillisClock, SystemMillis};
use super::client::{Client, Shown};
use super::payload::rfc3339;
use super::store::{Record, Retried, State, Store, StoreError};
use crate::config::EventsConfig;

/// `assetgate events …`
#[derive(Subcommand, Debug)]
pub enum EventsCmd {
    /// Pending and dead events (oldest first).
    List {
        /// Only `pending` or `dead` ones.
        #[arg(long, value_parser = ["pending", "dead"])]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One event: its state, attempts, last error and body.
    Show {
        /// The event id (`webhook-id`).
        id: String,
    },
    /// Queue an event (or every dead one) for an attempt now; its max_age
    /// counts from now.
    Retry {
        /// The event id.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        /// Every dead event.
        #[arg(long)]
        dead: bool,
    },
}

enum Backend {
    Direct(Store),
    Daemon(Client),
}

impl Backend {
    fn open(cfg: &EventsConfig) -> Result<Backend, String> {
        match Store::open(&cfg.dir, cfg.max_events, cfg.keep_delivered) {
            Ok(s) => Ok(Backend::Direct(s)),
            Err(StoreError::Locked) => Ok(Backend::Daemon(Client::new(&cfg.dir))),
            Err(e) => Err(format!("cannot open the outbox in {}: {e}", cfg.dir.display())),
        }
    }
}

/// Runs one `events` command (exit 0 done, 1 not found / failed).
pub fn run(cfg: &EventsConfig, cmd: &EventsCmd) -> ExitCode {
    let backend = match Backend::open(cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = SystemMillis.now_ms();
    let r = match cmd {
        EventsCmd::List { state, limit } => {
            let state = match state.as_deref() {
                Some("pending") => Some(State::Pending),
                Some("dead") => Some(State::Dead),
                _ => None,
            };
            let list = match &backend {
                Backend::Direct(s) => s.list(state, *limit).map_err(|e| e.to_string()),
                Backend::Daemon(c) => c.list(state, *limit),
            };
            list.map(|records| {
                println!("ID\tTYPE\tSTATE\tATTEMPTS\tCREATED\tNEXT\tKEY\tLAST_ERROR");
                for r in &records {
                    println!("{}", line(r));
                }
                true
            })
        }
        EventsCmd::Show { id } => {
            let shown = match &backend {
                Backend::Direct(s) => s
                    .get(id)
                    .map(|f| {
                        f.map(|r| match r {
                            Ok(rec) => Shown::Record(Box::new(rec)),
                            Err(at) => Shown::Delivered(at),
                        })
                    })
                    .map_err(|e| e.to_string()),
                Backend::Daemon(c) => c.show(id),
            };
            shown.map(|s| match s {
                Some(Shown::Record(r)) => {
                    println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
                    true
                }
                Some(Shown::Delivered(at)) => {
                    println!("{id}: delivered at {}", rfc3339(at));
                    true
                }
                None => {
                    eprintln!("{id}: no such event");
                    false
                }
            })
        }
        EventsCmd::Retry { dead: true, .. } => {
            let n = match &backend {
                Backend::Direct(s) => s.retry_dead(now).map_err(|e| e.to_string()),
                Backend::Daemon(c) => c.retry_dead(),
            };
            n.map(|n| {
                println!("{n} dead events queued again");
                true
            })
        }
        EventsCmd::Retry { id: Some(id), .. } => {
            let r = match &backend {
                Backend::Direct(s) => s.retry(id, now).map_err(|e| e.to_string()),
                Backend::Daemon(c) => c.retry(id),
            };
            r.map(|r| match r {
                Retried::Queued => {
                    println!("{id}: queued for delivery");
                    true
                }
                Retried::Delivered => {
                    eprintln!("{id}: already delivered");
                    false
                }
                Retried::NotFound => {
                    eprintln!("{id}: no such event");
                    false
                }
            })
        }
        EventsCmd::Retry { id: None, .. } => Ok(false),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn line(r: &Record) -> String {
    let next = if r.state == State::Pending {
        rfc3339(r.next_attempt_ms)
    } else {
        "-".into()
    };
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        r.id,
        r.kind.as_str(),
        r.state.as_str(),
        r.attempts,
        rfc3339(r.created_ms),
        next,
        r.key.escape_debug(),
        r.last_error.as_deref().unwrap_or("-").escape_debug()
    )
}
