//! `assetgate serve`: the composition root. Secrets and roots checked, logging
//! started, the connection budgets fitted below the open-file limit, the
//! runtime built, signal handlers installed before anything binds, the state
//! backend, the listeners (the main port; the admin API's socket, and its TCP
//! listener when asked; the outbox's socket), the background tasks, then the
//! server until the drain is over.

use std::process::ExitCode;
use std::sync::Arc;

use super::budgets::{budgets_metrics, fit_budgets};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Sources, EXIT_CONFIG};
use crate::finalize::{self, Finalizer, Roots};
use crate::http::server::{self, Listener};
use crate::http::{admin, socket, AppState};
use crate::metrics::Metrics;
use crate::secret::{Secret, SecretSet};
use crate::telemetry;
use crate::token::link;

/// Runs the daemon until the drain after SIGTERM/SIGINT is over (exit 0), or
/// refuses to start (exit 64 for a bad configuration, 1 when a listener or the
/// runtime cannot be set up).
pub fn serve(mut config: Config, sources: Sources, dev: bool) -> ExitCode {
    if dev {
        config.link.secrets = SecretSet::new(vec![Secret::generate(24)]);
        config.upload.secrets = SecretSet::new(vec![Secret::generate(24)]);
    } else if config.link.secrets.is_empty() && config.upload.secrets.is_empty() {
        return ConfigError::exit(&ConfigError::no_secret("link", "LINK"));
    }
    let roots = match Roots::from_config(&config) {
        Ok(r) => r,
        Err(e) => return ConfigError::exit(&e),
    };
    let events_store = match config
        .events
        .as_ref()
        .map(crate::events::open_at_start)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return ConfigError::exit(&e),
    };
    // Held to the end of `serve`: dropping it writes out every queued log line.
    let _log_guard = telemetry::init(&config.log_level, config.log_format);
    if roots.is_none() {
        tracing::warn!("[storage] root or [tusd] upload_dir not set: uploads are gated but never moved into the asset tree");
    }
    if config.link.secrets.is_empty() {
        tracing::warn!("no link secret configured: every download link will be denied");
    }
    if config.upload.secrets.is_empty() {
        tracing::warn!("no upload secret configured: every upload will be rejected");
    }

    let budgets = match fit_budgets(&config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.worker_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Signal handlers first: from here on SIGHUP never kills the daemon
        // (it is queued until the reload task takes it).
        let metrics = Metrics::new();
        let (first, second, hup) = signals();
        let backend = match crate::state::backend(&config.state) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("config error: state.redis_url: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        };
        let shared = Arc::new(crate::state::Shared::new(
            backend,
            config.state.clone(),
            metrics.clone(),
        ));
        let listener = match server::bind(config.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        // The admin API on TCP too: only when asked (config.rs refuses a
        // non-loopback address without its opt-in key).
        let admin_tcp = match config.server.admin_listen {
            None => None,
            Some(at) => match server::bind(at) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("cannot listen on {at} ([server] admin_listen): {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        // A directory someone else may write, a socket another daemon
        // answers on, a file that is not a socket: refused, saying which.
        let mut admin_socket = match socket::bind(&config.server.admin_socket) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot serve the admin API on [server] admin_socket: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin_unix = match admin_socket.take_listener() {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot serve the admin API on [server] admin_socket: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let admin_tcp_addr = admin_tcp.as_ref().and_then(|l| l.local_addr().ok());
        let admin_addr = admin_tcp_addr.map(|a| a.to_string());
        budgets_metrics(&metrics, &budgets);
        if dev {
            print_dev_banner(&config, &addr);
        }
        if let Some(roots) = &roots {
            finalize::sweep_temp_at_start(roots, &metrics);
        }
        let outbox = events_store.map(|store| {
            let m = crate::events::metrics::EventMetrics::register(&metrics);
            Arc::new(crate::events::Outbox::new(store, Some(m)))
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // A first sync before serving, so a replica starts with the fleet's
        // revocations (bounded by [state] timeout; failing, it starts not ready).
        let _ = shared.sync(clock.now()).await;
        if config.state.backend != crate::config::StateBackend::Memory {
            tokio::spawn(shared.clone().run_sync(clock.clone()));
        }
        let finalizer = Arc::new(Finalizer::new(roots, metrics.clone()).with_events(outbox.clone()));
        let state = Arc::new(
            AppState::new(config, metrics, clock, finalizer)
                .with_shared(shared.clone())
                .with_budgets(budgets.fitted),
        );
        crate::daemon::reload::spawn(state.clone(), sources, dev, hup);
        let admin_path = admin_socket.path().display().to_string();
        {
            let st = state.clone();
            tokio::spawn(async move {
                // Owned by the task: the socket file goes with the runtime.
                let _socket = admin_socket;
                admin::serve(Listener::Unix(admin_unix), admin::Via::Socket, st).await;
            });
        }
        if let (Some(l), Some(at)) = (admin_tcp, admin_tcp_addr) {
            tokio::spawn(admin::serve(Listener::Tcp(l), admin::Via::Tcp(at), state.clone()));
        }
        // [events] is read at start only (a reload keeps it; see reload::merge).
        if let (Some(outbox), Some(cfg)) = (outbox, state.config.events.clone()) {
            serve_events_socket(&state, &outbox, &cfg.dir);
            // Until shutdown: not "while ready", which is also false while
            // the state backend does not answer.
            let st = state.clone();
            tokio::spawn(crate::events::deliver::run(outbox, cfg, move || {
                !st.is_draining()
            }));
        }
        if let Some(interval) = state.config.tusd.reconcile_interval {
            if state.finalizer.roots().is_some() {
                tokio::spawn(crate::daemon::reconcile::run(state.clone(), interval));
            }
        }
        tracing::info!(
            addr = %addr,
            admin = admin_addr.as_deref(),
            admin_socket = %admin_path,
            state = shared.backend_name(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        server::serve(listener, state, first, second).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    // Abandoned moves were told to stop (see `server::serve`); never wait on a
    // blocking thread past that.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// The outbox's admin socket (`<events.dir>/admin.sock`), through the limits
/// layer. A failure is logged and the daemon runs on: the CLI then says that
/// the socket does not answer.
fn serve_events_socket(state: &Arc<AppState>, outbox: &Arc<crate::events::Outbox>, dir: &std::path::Path) {
    let path = dir.join(crate::events::admin::SOCKET);
    let mut bound = match socket::bind(&path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot serve the events admin socket: `assetgate events` needs the daemon stopped");
            return;
        }
    };
    let listener = match bound.take_listener() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot serve the events admin socket");
            return;
        }
    };
    let (outbox, state) = (outbox.clone(), state.clone());
    tokio::spawn(async move {
        let _socket = bound;
        admin::serve_outbox(Listener::Unix(listener), outbox, state).await;
    });
}

/// Futures for the first and the second SIGTERM/SIGINT, and the SIGHUP stream
/// for [`crate::daemon::reload::spawn`]. Registered before anything binds: SIGHUP's
/// default action would kill the daemon in the middle of a move (exit 129, no
/// drain); from here on it is caught for the life of the process.
fn signals() -> (
    impl std::future::Future<Output = ()>,
    impl std::future::Future<Output = ()>,
    tokio::signal::unix::Signal,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        let mut n = 0;
        while n < 2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            n += 1;
            let _ = tx.send(n);
        }
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<u32>, count: u32| async move {
        let _ = rx.wait_for(|n| *n >= count).await;
    };
    (wait(rx.clone(), 1), wait(rx, 2), hup)
}

fn print_dev_banner(config: &Config, addr: &str) {
    let link_secret = config.link.secrets.newest().expect("dev mode sets a link secret");
    let upload_secret = config
        .upload
        .secrets
        .newest()
        .expect("dev mode sets an upload secret");
    let expires = SystemClock.now() + 3600;
    let path = "/private/hello.txt";
    let md5 = link::sign(link_secret.expose(), path.as_bytes(), expires);
    let target = format!("{path}?md5={md5}&expires={expires}");
    eprintln!(
        "\nassetgate --dev: secrets generated for this run only (never use --dev in production)\n\
         \x20 ASSETGATE_LINK_SECRET={}\n\
         \x20 ASSETGATE_UPLOAD_SECRET={}\n\
         \x20 signed link (valid 1 h): {target}\n\
         \x20 check it:  curl -i -H 'X-Original-URI: {target}' http://{addr}/auth\n\
         \x20 (204 = valid; 403 + X-Assetgate-Reason = denied)\n",
        String::from_utf8_lossy(link_secret.expose()),
        String::from_utf8_lossy(upload_secret.expose()),
    );
}
