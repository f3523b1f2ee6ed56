//! The daemon's outbox (the store, the delivery loop's wake-up, the metrics)
//! and the CLI's way to it (a [`Sink`]).

use std::sync::Arc;

use super::backoff::{MillisClock, SystemMillis};
use super::client::Client;
use super::metrics::{EventMetrics, EventResult};
use super::payload::Event;
use super::store::{Availability, Enqueued, Store, StoreError};
use super::wire::socket_path;
use crate::config::EventsConfig;

/// The daemon's outbox: the store, the delivery loop's wake-up, the metrics.
pub struct Outbox {
    store: Store,
    wake: tokio::sync::Notify,
    metrics: Option<EventMetrics>,
    clock: Arc<dyn MillisClock>,
}

/// Where the publisher (`crate::publisher`) commits events: the outbox this
/// process holds (the daemon; `finalize-pending` with the daemon stopped), or
/// the daemon's, through its admin socket.
pub enum Sink {
    /// This process holds the outbox.
    Local(Arc<Outbox>),
    /// The daemon does.
    Remote(Client),
}

impl Outbox {
    /// The daemon's outbox around an opened `store`: logs what its open found
    /// (a directory wider than 0700; a file it could not open: why events are
    /// degraded), and from now on every change of its availability, in the
    /// log and in `assetgate_events_outbox_available`.
    pub fn new(store: Store, metrics: Option<EventMetrics>) -> Outbox {
        for note in store.notes() {
            tracing::warn!("{note}");
        }
        let now = store.availability();
        if let Some(m) = &metrics {
            m.availability(&now);
        }
        if let Availability::Unavailable(why) = &now {
            tracing::error!(
                error = %why,
                "events outbox unavailable at start (the daemon runs; events are degraded): finished uploads are published and stay in upload_dir until their events can be committed; it is opened again at each use, so events resume by themselves once the disk has space"
            );
        }
        let m = metrics.clone();
        store.observe(Box::new(move |a| {
            if let Some(m) = &m {
                m.availability(a);
            }
            match a {
                Availability::Unavailable(why) => tracing::error!(
                    error = %why,
                    "events outbox unavailable: new events are not committed; finished uploads are published and stay in upload_dir until their events can be (the reconciler commits them); the file is opened again at its next use"
                ),
                Availability::Available => tracing::info!(
                    "events outbox available again (the file was opened again): events resume; uploads held meanwhile get theirs at the next reconcile pass"
                ),
            }
        }));
        Outbox {
            store,
            wake: tokio::sync::Notify::new(),
            metrics,
            clock: Arc::new(SystemMillis),
        }
    }

    /// The store (blocking calls).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Unix ms now.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Commits `event` (blocking: an fsync). Logs a refusal or a store error
    /// once per event; counts every outcome; wakes the delivery loop.
    pub fn enqueue(&self, event: &Event) -> Result<Enqueued, StoreError> {
        let r = self.store.enqueue(event);
        let label = match &r {
            Ok(Enqueued::New) => EventResult::Enqueued,
            Ok(Enqueued::Duplicate(_)) => EventResult::Duplicate,
            Ok(Enqueued::Refused) => EventResult::Refused,
            Err(_) => EventResult::StoreError,
        };
        if let Some(m) = &self.metrics {
            m.count(event.kind, label);
        }
        match &r {
            Ok(Enqueued::New) => self.wake.notify_one(),
            Ok(Enqueued::Duplicate(state)) => tracing::debug!(
                event_id = %event.id,
                event_type = event.kind.as_str(),
                state = state.as_str(),
                "event already in the outbox (or delivered): not enqueued again"
            ),
            Ok(Enqueued::Refused) => tracing::error!(
                event_id = %event.id,
                event_type = event.kind.as_str(),
                "events outbox full (events.max_events): event refused; a finalized upload stays in upload_dir until there is room"
            ),
            // Already logged once, when the outbox became unavailable.
            Err(e @ StoreError::Unavailable(_)) => tracing::debug!(
                event_id = %event.id,
                event_type = event.kind.as_str(),
                error = %e,
                "cannot commit the event to the outbox; the upload stays in upload_dir"
            ),
            Err(e) => tracing::error!(
                event_id = %event.id,
                event_type = event.kind.as_str(),
                error = %e,
                "cannot commit the event to the outbox; the upload stays in upload_dir"
            ),
        }
        r
    }

    /// Wakes the delivery loop (new event, `events retry`).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn metrics(&self) -> Option<&EventMetrics> {
        self.metrics.as_ref()
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}

impl Sink {
    /// Commits `event`: `true` when it is in the outbox (new or already there).
    pub fn enqueue(&self, event: &Event) -> bool {
        match self {
            Sink::Local(o) => matches!(o.enqueue(event), Ok(Enqueued::New | Enqueued::Duplicate(_))),
            Sink::Remote(c) => match c.enqueue(event) {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("warning: cannot hand the event to the daemon: {e}");
                    false
                }
            },
        }
    }

    /// Unix ms now (the outbox's clock when this process holds it).
    pub fn now_ms(&self) -> u64 {
        match self {
            Sink::Local(o) => o.now_ms(),
            Sink::Remote(_) => SystemMillis.now_ms(),
        }
    }
}

/// Opens the outbox for `serve`, before anything listens: a directory that
/// cannot be created or written, a socket path too long, or a store another
/// process keeps locked (5 s of tries: an `assetgate events` command may be
/// holding it briefly) is a configuration error naming `events.dir` (exit 64).
/// A file that cannot be opened for want of space (or EIO) is not: the daemon
/// starts with the outbox unavailable ([`Outbox::new`] says so) and opens it
/// once it can ([`store`](super::store)).
pub fn open_at_start(cfg: &EventsConfig) -> Result<Store, crate::config::ConfigError> {
    let key = "events.dir";
    let err = |m: String| crate::config::ConfigError::new(key, m);
    socket_path(&cfg.dir).map_err(err)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open_or_unavailable(&cfg.dir, cfg.max_events, cfg.keep_delivered) {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(StoreError::Locked) => {
                return Err(err(format!(
                    "the outbox in {} is held by another process (another `assetgate serve` on the same directory?)",
                    cfg.dir.display()
                )))
            }
            Err(e) => {
                return Err(err(format!(
                    "cannot open the outbox in {}: {e}",
                    cfg.dir.display()
                )))
            }
        }
    }
}

/// The sink `finalize-pending` commits through: the outbox itself when no
/// daemon holds it, else the daemon's admin socket.
pub fn sink_for_cli(cfg: &EventsConfig) -> Result<Sink, String> {
    match Store::open(&cfg.dir, cfg.max_events, cfg.keep_delivered) {
        Ok(s) => Ok(Sink::Local(Arc::new(Outbox::new(s, None)))),
        Err(StoreError::Locked) => Ok(Sink::Remote(Client::new(&cfg.dir))),
        Err(e) => Err(format!("cannot open the outbox in {}: {e}", cfg.dir.display())),
    }
}
