//! Running: [`Daemon::run`] composes the state, spawns every background task
//! into a [`Stage`], serves until SIGTERM/SIGINT, then drains.
//!
//! # The drain
//!
//! 1. `/readyz` turns 503 (`draining`) first, so a load balancer stops
//!    sending before anything closes.
//! 2. The work stage stops: the main listener closes and its requests in
//!    flight finish; the reload, state-sync, reconcile and events-delivery
//!    tasks end at their next stopping point (a reconcile pass or a delivery
//!    in flight finishes first). The drain waits for every
//!    one of them, then for the background moves, within
//!    `[server] shutdown_grace`; a second signal aborts the wait.
//! 3. Out of time or aborted: the moves still copying are abandoned cleanly
//!    (see [`abandon_moves`]), the tasks still running are named and aborted.
//! 4. The admin stage stops last (the admin API's socket and TCP listener,
//!    the outbox's socket, the limits reporter): `/readyz` and `/metrics`
//!    answer through the whole drain, and limit hits during it are reported;
//!    their requests in flight get what is left of the grace; their socket
//!    files are removed.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::Signal;
use tokio::time::{sleep_until, Instant};

use super::budgets::budgets_metrics;
use super::shutdown::{Signals, Stage};
use super::start::{AdminListeners, Daemon, Parts, StateParts};
use crate::clock::{Clock, SystemClock};
use crate::config::{Sources, StateBackend};
use crate::events::Outbox;
use crate::http::server::{self, Listener};
use crate::http::{admin, AppState};
use crate::publisher::{self, Finalizer};

/// How long abandoned moves get to stop (one copy chunk, one fsync).
const ABANDON_WAIT: Duration = Duration::from_secs(3);

impl Daemon {
    /// Serves until the drain after SIGTERM/SIGINT is over.
    pub fn run(self) {
        let Daemon { runtime, parts, log } = self;
        runtime.block_on(serve(parts));
        // Abandoned moves were told to stop (see `abandon_moves`); never wait
        // on a blocking thread past that.
        runtime.shutdown_timeout(Duration::from_secs(1));
        drop(log);
    }
}

/// The state, the tasks, the "listening" line; then the drain.
async fn serve(parts: Parts) {
    let Parts {
        state: made_of,
        sources,
        mut signals,
        hup,
        listeners,
    } = parts;
    let dev = made_of.dev;
    let addr = listeners
        .main
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Kept (a --dev run's temporary tree) until the drain is over.
    let (state, outbox, _playground) = app_state(made_of, &addr).await;
    let mut work = Stage::new();
    let st = state.clone();
    work.spawn("listen", |stop| server::serve(listeners.main, st, stop));
    spawn_tasks(&mut work, &state, outbox.clone(), sources, dev, hup);
    let admin_path = listeners.admin.socket.0.path().display().to_string();
    let admin_addr = listeners.admin.tcp.as_ref().map(|(_, at)| at.to_string());
    let mut admin = Stage::new();
    spawn_admin(&mut admin, &state, outbox, listeners.admin);
    tracing::info!(
        addr = %addr,
        admin = admin_addr.as_deref(),
        admin_socket = %admin_path,
        state = state.shared.backend_name(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    signals.next().await;
    state.start_draining();
    drain(&state, &mut work, &mut admin, &mut signals).await;
    tracing::info!("stopped");
}

/// The request handlers' state: the budget gauges, the dev banner, the
/// temporary files of crashed copies swept, the outbox, a first state sync,
/// the mover.
async fn app_state(
    parts: StateParts,
    addr: &str,
) -> (Arc<AppState>, Option<Arc<Outbox>>, Option<super::dev::Playground>) {
    let StateParts {
        config,
        dev,
        playground,
        roots,
        events_store,
        budgets,
        metrics,
        shared,
        s3,
    } = parts;
    budgets_metrics(&metrics, &budgets);
    if dev {
        // stdout: what to run; the logs are on stderr.
        print!("{}", super::dev::banner(&config, addr, playground.as_ref()));
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    if let Some(roots) = &roots {
        publisher::sweep_temp_at_start(roots, &metrics);
    }
    let outbox = events_store.map(|store| {
        let m = crate::events::metrics::EventMetrics::register(&metrics);
        Arc::new(Outbox::new(store, Some(m)))
    });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // A first sync before serving, so a replica starts with the fleet's
    // revocations (bounded by [state] timeout; failing, it starts not ready).
    let _ = shared.sync(clock.now()).await;
    let finalizer = match s3 {
        // The publisher on the bucket: its S3 calls block on this runtime from
        // the blocking pool (crate::publisher::S3Backend).
        Some(store) => {
            let stale = crate::publisher::Stale {
                max_ttl: config.upload.max_ttl,
                clock_skew: config.upload.clock_skew,
                abandon_after: config.tusd.abandon_after,
            };
            let backend = Arc::new(
                crate::publisher::S3Backend::new(store.clone(), tokio::runtime::Handle::current(), stale)
                    .with_metrics(metrics.clone())
                    .with_publish_prefixes(
                        &config.storage.public_prefix,
                        &config.storage.private_prefix,
                        crate::s3::abandon::PUBLISH_STALE_AFTER,
                    ),
            );
            Finalizer::s3(backend, store, metrics.clone())
        }
        None => Finalizer::new(roots, metrics.clone()),
    };
    let mut finalizer = finalizer.with_events(outbox.clone());
    if let (true, Ok(at)) = (dev, addr.parse()) {
        finalizer = finalizer.on_published(super::dev::landed(&config, at));
    }
    let state = AppState::new(config, metrics, clock, Arc::new(finalizer))
        .with_shared(shared)
        .with_budgets(budgets.fitted)
        .with_dev_files(dev);
    (Arc::new(state), outbox, playground)
}

/// The work stage's background tasks (the main listener is spawned by the
/// caller): stopped by the signal, drained within the grace.
fn spawn_tasks(
    work: &mut Stage,
    state: &Arc<AppState>,
    outbox: Option<Arc<Outbox>>,
    sources: Sources,
    dev: bool,
    hup: Signal,
) {
    if state.config.state.backend != StateBackend::Memory {
        let (shared, clock) = (state.shared.clone(), state.clock.clone());
        work.spawn("state_sync", |stop| shared.run_sync(clock, stop));
    }
    let st = state.clone();
    work.spawn("reload", |stop| super::reload::run(st, sources, dev, hup, stop));
    // [events] is read at start only (a reload keeps it; see reload::merge).
    if let (Some(outbox), Some(cfg)) = (outbox, state.config.events.clone()) {
        work.spawn("events", |stop| crate::events::deliver::run(outbox, cfg, stop));
    }
    if let Some(interval) = state.config.tusd.reconcile_interval {
        // Whatever the backend: the filesystem's roots or the bucket.
        if state.finalizer.publisher().is_some() {
            let st = state.clone();
            work.spawn("reconcile", |stop| super::reconcile::run(st, interval, stop));
        }
    }
}

/// The admin stage: stopped once the work is drained, what watches it (the
/// admin API answers, the limits are reported, throughout the drain).
fn spawn_admin(
    admin: &mut Stage,
    state: &Arc<AppState>,
    outbox: Option<Arc<Outbox>>,
    listeners: AdminListeners,
) {
    admin.spawn("limits", |stop| state.limits.clone().run(stop));
    let (socket, l) = listeners.socket;
    let st = state.clone();
    admin.spawn("admin_socket", |stop| async move {
        // Owned by the task: the socket file goes when it ends.
        let _socket = socket;
        admin::serve(Listener::Unix(l), admin::Via::Socket, st, stop).await;
    });
    if let Some((l, at)) = listeners.tcp {
        let st = state.clone();
        admin.spawn("admin_listen", |stop| {
            admin::serve(Listener::Tcp(l), admin::Via::Tcp(at), st, stop)
        });
    }
    if let (Some((socket, l)), Some(outbox)) = (listeners.events_socket, outbox) {
        let st = state.clone();
        admin.spawn("events_socket", |stop| async move {
            let _socket = socket;
            admin::serve_outbox(Listener::Unix(l), outbox, st, stop).await;
        });
    }
}

/// How one wait of the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// What it waited for is over.
    Done,
    /// `[server] shutdown_grace` is over.
    GraceOver,
    /// A second SIGTERM/SIGINT.
    Aborted,
}

/// Waits for `done` until the deadline or a second signal.
async fn wait(
    done: impl std::future::Future<Output = ()>,
    deadline: Instant,
    signals: &mut Signals,
) -> Ended {
    tokio::select! {
        () = done => Ended::Done,
        () = sleep_until(deadline) => Ended::GraceOver,
        () = signals.next() => Ended::Aborted,
    }
}

/// Stops `work` and waits for it and the background moves, then `admin`,
/// all within `[server] shutdown_grace` (see the module notes).
async fn drain(state: &AppState, work: &mut Stage, admin: &mut Stage, signals: &mut Signals) {
    let deadline = Instant::now() + state.config.server.shutdown_grace;
    work.stop();
    let drained = async {
        work.join().await;
        state.finalizer.drain().await;
    };
    let ended = wait(drained, deadline, signals).await;
    match ended {
        Ended::Done => tracing::info!("all connections and background moves drained"),
        Ended::GraceOver => tracing::warn!(
            tasks = work.running().as_deref(),
            "grace period over; closing remaining connections"
        ),
        Ended::Aborted => tracing::warn!("second signal: aborting the drain"),
    }
    if ended == Ended::Done {
        admin.stop();
        match wait(admin.join(), deadline, signals).await {
            Ended::Done => {}
            Ended::GraceOver => tracing::warn!(
                tasks = admin.running().as_deref(),
                "grace period over; closing remaining connections"
            ),
            Ended::Aborted => tracing::warn!("second signal: aborting the drain"),
        }
    } else {
        abandon_moves(state).await;
    }
    work.abort().await;
    admin.abort().await;
}

/// After the grace: copies still running stop at their next chunk (temporary file
/// removed, source intact; each logs its own line and counts `cancelled`). The
/// wait is bounded by one chunk, so the process exits within the grace plus
/// [`ABANDON_WAIT`] at most, whatever the size of the file.
async fn abandon_moves(state: &AppState) {
    let running = state.finalizer.running();
    if running == 0 {
        return;
    }
    tracing::warn!(
        running,
        "shutdown grace over: abandoning the moves in progress; their uploads stay in upload_dir"
    );
    state.finalizer.abandon();
    if tokio::time::timeout(ABANDON_WAIT, state.finalizer.drain())
        .await
        .is_err()
    {
        tracing::error!(
            running = state.finalizer.running(),
            "moves did not stop in time (a blocked disk?); exiting anyway, their uploads stay in upload_dir"
        );
    }
}
