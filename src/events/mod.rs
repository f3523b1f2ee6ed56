//! Events: the application learns that an upload landed.
//!
//! Every published upload produces one `upload.finalized` event; a finished
//! upload that will not be published (a conflict with an existing asset, a
//! content mismatch, bad concatenation parts, a token that no longer verifies)
//! produces one `upload.failed` with the reason. Each is signed per the
//! Standard Webhooks spec and POSTed to `[events] url`, at least once.
//!
//! # The path of an event
//!
//! 1. **Commit before done.** The publisher
//!    ([`crate::publisher::Publisher::publish`]) has the mover
//!    ([`crate::finalize::finalize_with`]) publish the file and fsync its
//!    directory, then commits the event through its [`Sink`] to the outbox
//!    ([`store`], redb, fsync on commit); only then are the upload's source and
//!    `.info` removed, and only then is the move logged and counted as done. A
//!    crash between the publish and the commit leaves the upload in
//!    `upload_dir`: the reconciler (or a duplicate post-finish, or
//!    `finalize-pending`) finds it, the mover answers `AlreadyFinalized`, and
//!    the event is committed then. The event id is derived from the upload ID
//!    and the type ([`payload::event_id`]), and the store refuses a second
//!    event with an id it holds or delivered recently, so every path may
//!    enqueue and none duplicates.
//! 2. **Deliver.** [`deliver`] takes due events from the outbox in small
//!    batches (memory stays flat however deep the queue), signs each attempt
//!    afresh (`webhook-timestamp` is the attempt's time, `webhook-id` the
//!    event's), and POSTs the stored body with hyper-util's client. 2xx:
//!    delivered. Anything else: retried with exponential backoff and jitter
//!    ([`backoff`]) until `max_age`, then kept as dead with its last error.
//! 3. **Operate.** `assetgate events list|show|retry` ([`cli`]) work on the
//!    outbox directory. redb allows one process: the daemon holds the file
//!    while it runs and serves those commands on a Unix socket in the same
//!    directory ([`wire`]); with the daemon stopped, the CLI opens the file
//!    itself. The directory is 0700, the file and the socket 0600 (see
//!    [`store`]): the daemon's user may use them, nobody else, and no TCP
//!    port is opened.
//! 4. **A full disk.** A commit that fails for want of space leaves the
//!    upload in `upload_dir` (1. above); the store drops redb's spent handle
//!    and opens the file again at its next use, so events resume by
//!    themselves once there is space, and a (re)start on a full disk starts
//!    with the outbox unavailable instead of failing. Shown in the log (once
//!    when it starts, once when it ends) and in
//!    `assetgate_events_outbox_available`; readiness is not touched, since
//!    everything else works and nothing is lost.
//!
//! No `[events]` section: none of this runs, the mover computes no digest,
//! and nothing changes.

pub mod backoff;
pub mod cli;
pub mod client;
pub mod deliver;
pub mod metrics;
mod outbox;
pub mod payload;
pub mod sign;
pub mod store;
pub mod wire;

pub use crate::config::EventsConfig;
pub use outbox::{open_at_start, sink_for_cli, Outbox, Sink};
