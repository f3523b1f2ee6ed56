//! The HTTP adapters: thin layers between hyper and the pure cores.
//!
//! - [`server`]: accept loop, graceful shutdown, readiness.
//! - [`route`]: the main listener's routes (which endpoint answers a path).
//! - [`respond`]: the responses the gate makes itself (errors, limits).
//! - [`limits`]: connection budget, body deadlines, slow-client accounting.
//! - [`auth`]: nginx `auth_request` (`/auth`) around [`crate::token::link`].
//! - [`hooks`]: tusd's hooks (`/tusd`) around [`crate::tusd`] and [`crate::finalize`].
//! - [`session`]: upload-session check for nginx (`/session`).
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`admin`]: the admin API (revocations) on its Unix socket, and on TCP
//!   when asked.
//! - [`events_socket`]: the outbox's admin socket (`assetgate events`).
//! - [`socket`]: private Unix sockets (permissions, stale files), for the
//!   admin API and the outbox.

pub mod admin;
pub mod auth;
pub mod dev_files;
pub mod events_socket;
pub mod health;
pub mod hooks;
pub mod limits;
pub mod respond;
pub mod route;
pub mod server;
pub mod session;
pub mod socket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publisher::Finalizer;
use limits::{Budgets, LimitLog, TusdBudget, TUSD_EVICT_GRACE};
pub use respond::Resp;

/// Everything a request handler needs.
pub struct AppState {
    /// The configuration the daemon started with: authoritative for the keys
    /// that are not reloadable (listen, `[server]`, `[state]`, paths). Request
    /// handlers read [`AppState::current`] instead.
    pub config: Config,
    /// The configuration in force: swapped whole by a reload (SIGHUP, a changed
    /// secret file); a request keeps the one it loaded until it is answered.
    live: arc_swap::ArcSwap<Config>,
    /// Single-use tokens and revocations.
    pub shared: Arc<crate::state::Shared>,
    /// Metric families.
    pub metrics: Metrics,
    /// The clock (injected for tests).
    pub clock: Arc<dyn Clock>,
    /// Background moves of finished uploads.
    pub finalizer: Arc<Finalizer>,
    /// Slow and excess clients: counted per client, logged per storm.
    pub limits: Arc<LimitLog>,
    /// The connection budgets in force: `[server]`'s, fitted below the
    /// open-file limit at start.
    pub budgets: Budgets,
    /// `/tusd`: places for bodies still arriving, and turns to decide (`budgets.max_tusd_requests`).
    tusd: TusdBudget,
    ready: AtomicBool,
    /// `serve --dev`: private assets are also downloadable from the main
    /// listener ([`dev_files`]).
    pub dev: bool,
}

impl AppState {
    /// New state, ready.
    pub fn new(config: Config, metrics: Metrics, clock: Arc<dyn Clock>, finalizer: Arc<Finalizer>) -> Self {
        let shared = Arc::new(crate::state::Shared::new(
            Arc::new(crate::state::memory::Memory::default()),
            config.state.clone(),
            metrics.clone(),
        ));
        let budgets = Budgets::from_config(&config.server);
        AppState {
            live: arc_swap::ArcSwap::from_pointee(config.clone()),
            shared,
            budgets,
            tusd: TusdBudget::new(budgets.max_tusd_requests, TUSD_EVICT_GRACE),
            limits: Arc::new(LimitLog::new(metrics.clone())),
            config,
            metrics,
            clock,
            finalizer,
            ready: AtomicBool::new(true),
            dev: false,
        }
    }

    /// `serve --dev`: also serve private assets behind their links
    /// ([`dev_files`]).
    pub fn with_dev_files(mut self, dev: bool) -> Self {
        self.dev = dev;
        self
    }

    /// The state handle to use (the configured backend; a new state has the
    /// memory one).
    pub fn with_shared(mut self, shared: Arc<crate::state::Shared>) -> Self {
        self.shared = shared;
        self
    }

    /// The budgets to serve with (fitted to the open-file limit).
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self.tusd = TusdBudget::new(budgets.max_tusd_requests, TUSD_EVICT_GRACE);
        self
    }

    /// The configuration in force (cheap: no lock, no allocation).
    pub fn current(&self) -> arc_swap::Guard<Arc<Config>> {
        self.live.load()
    }

    /// The configuration in force, owned: for handlers that await while they
    /// use it (a guard is for short, non-suspending reads).
    pub fn current_owned(&self) -> Arc<Config> {
        self.live.load_full()
    }

    /// Installs a reloaded configuration; requests already running finish on
    /// the one they loaded.
    pub fn install(&self, config: Config) {
        self.live.store(Arc::new(config));
    }

    /// Whether `/readyz` answers 200: not draining, and the state backend
    /// answers.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.shared.is_up()
    }

    /// Turns `/readyz` to 503 `draining`: the first step of a shutdown,
    /// before anything closes.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        !self.ready.load(Ordering::Relaxed)
    }
}
