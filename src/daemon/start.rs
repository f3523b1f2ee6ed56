//! Starting: [`Daemon::build`] does everything that can refuse to start
//! (secrets, roots, the events store, the open-file budget, the runtime, the
//! signal handlers, the state backend, every listener and socket) and says
//! why with one [`StartError`], mapped to one exit code: 64 for a
//! configuration, 1 for the rest. Nothing is served before it returns.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Runtime;
use tokio::signal::unix::Signal;

use super::budgets::{fit_budgets, Fitted};
use super::shutdown::Signals;
use crate::config::{Config, ConfigError, Sources, EXIT_CONFIG};
use crate::events::store::Store;
use crate::finalize::Roots;
use crate::http::limits::TooFewFiles;
use crate::http::server;
use crate::http::socket::{self, PrivateSocket};
use crate::metrics::Metrics;
use crate::secret::{Secret, SecretSet};
use crate::state::Shared;
use crate::telemetry::{self, FlushGuard};

/// `assetgate serve`: builds the daemon and runs it until the drain after
/// SIGTERM/SIGINT is over (exit 0), or says why it cannot start (exit 64 for
/// a configuration, 1 for the rest).
pub fn serve(config: Config, sources: Sources, dev: bool) -> ExitCode {
    match Daemon::build(config, sources, dev) {
        Ok(daemon) => {
            daemon.run();
            ExitCode::SUCCESS
        }
        Err(e) => e.exit(),
    }
}

/// Why the daemon does not start. What it prints is one line (the message
/// operators and tests know); [`StartError::exit_code`] is the one mapping to
/// exit codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A configuration it cannot run with, naming the key: exit 64.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The open-file limit leaves too few connections.
    #[error("cannot start: {0}")]
    TooFewFiles(#[from] TooFewFiles),
    /// The tokio runtime could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A signal handler could not be registered.
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The main port cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[server] admin_listen` cannot be bound.
    #[error("cannot listen on {addr} ([server] admin_listen): {source}")]
    AdminListen {
        /// `[server] admin_listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[server] admin_socket` cannot be served: a directory others may
    /// write, a socket another daemon answers on, a file that is not a socket.
    #[error("cannot serve the admin API on [server] admin_socket: {0}")]
    AdminSocket(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `[storage] backend = "s3"`: the bucket cannot be used, or no
    /// no-overwrite publish method is honoured by the engine.
    #[error("cannot start with [storage.s3]: {0}")]
    S3(#[from] crate::s3::SelfTestError),
}

impl StartError {
    /// 64 (`EX_USAGE`, as linkerd) for a configuration, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => EXIT_CONFIG as u8,
            _ => 1,
        }
    }

    /// Prints the error (one line) and gives its exit code.
    pub fn exit(&self) -> ExitCode {
        eprintln!("{self}");
        ExitCode::from(self.exit_code())
    }
}

/// A daemon ready to serve: every listener bound, nothing accepted yet.
/// [`Daemon::run`] serves it.
pub struct Daemon {
    pub(super) runtime: Runtime,
    pub(super) parts: Parts,
    /// Flushes the log queue when dropped: dropped last.
    pub(super) log: FlushGuard,
}

/// What [`Daemon::run`] composes.
pub(super) struct Parts {
    /// What the request handlers' state is made of.
    pub(super) state: StateParts,
    /// Where a reload reads the configuration again.
    pub(super) sources: Sources,
    pub(super) signals: Signals,
    /// SIGHUP, for the reload task.
    pub(super) hup: Signal,
    pub(super) listeners: Listeners,
}

/// What the request handlers' state ([`crate::http::AppState`]) is made of.
pub(super) struct StateParts {
    pub(super) config: Config,
    /// Secrets generated for this run (`serve --dev`).
    pub(super) dev: bool,
    /// `serve --dev` without a tree of its own: the temporary one.
    pub(super) playground: Option<super::dev::Playground>,
    pub(super) roots: Option<Roots>,
    pub(super) events_store: Option<Store>,
    pub(super) budgets: Fitted,
    pub(super) metrics: Metrics,
    pub(super) shared: Arc<Shared>,
    /// `[storage] backend = "s3"`: the client and the self-test's choice
    /// (the background publisher's backend then).
    pub(super) s3: Option<crate::s3::Store>,
}

/// Every socket the daemon serves, bound.
pub(super) struct Listeners {
    /// `listen`.
    pub(super) main: TcpListener,
    /// The admin API's and the outbox's.
    pub(super) admin: AdminListeners,
}

/// The admin API's sockets and the outbox's.
pub(super) struct AdminListeners {
    /// `[server] admin_listen`, when asked, and its bound address.
    pub(super) tcp: Option<(TcpListener, SocketAddr)>,
    /// `[server] admin_socket` (the guard removes the file when dropped).
    pub(super) socket: (PrivateSocket, UnixListener),
    /// `<events.dir>/admin.sock`, with `[events]`; `None` when it cannot be
    /// served (logged: the daemon runs on, `assetgate events` says the
    /// socket does not answer).
    pub(super) events_socket: Option<(PrivateSocket, UnixListener)>,
}

impl Daemon {
    /// Everything that can refuse to start, in the order the operator
    /// would fix it: the configuration (secrets, roots, the events store),
    /// logging, the open-file budget, the runtime, the signal handlers
    /// (before anything binds), the state backend, the listeners. `dev`:
    /// secrets generated for this run (`serve --dev`).
    pub fn build(mut config: Config, sources: Sources, dev: bool) -> Result<Daemon, StartError> {
        let mut playground = None;
        if dev {
            config.link.secrets = SecretSet::new(vec![Secret::generate(24)]);
            config.upload.secrets = SecretSet::new(vec![Secret::generate(24)]);
            playground = super::dev::Playground::make(&mut config)?;
        } else if config.link.secrets.is_empty() && config.upload.secrets.is_empty() {
            return Err(ConfigError::no_secret("link", "LINK").into());
        }
        let roots = Roots::from_config(&config)?;
        let events_store = config
            .events
            .as_ref()
            .map(crate::events::open_at_start)
            .transpose()?;
        let log = telemetry::init(&config.log_level, config.log_format);
        if roots.is_none() && config.storage.s3.is_none() {
            tracing::warn!("[storage] root or [tusd] upload_dir not set: uploads are gated but never moved into the asset tree");
        }
        if config.link.secrets.is_empty() {
            tracing::warn!("no link secret configured: every download link will be denied");
        }
        if config.upload.secrets.is_empty() {
            tracing::warn!("no upload secret configured: every upload will be rejected");
        }
        let budgets = fit_budgets(&config).inspect_err(|e| tracing::error!("{e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.server.worker_threads)
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (metrics, signals, hup, shared, listeners) = {
            // Signal handlers, the backend's client and the listeners belong
            // to the runtime.
            let _in_runtime = runtime.enter();
            let metrics = Metrics::new();
            // From here on SIGHUP never kills the daemon (it is queued until
            // the reload task takes it).
            let (signals, hup) = Signals::register().map_err(StartError::Signals)?;
            let backend = crate::state::backend(&config.state)
                .map_err(|e| ConfigError::new("state.redis_url", e.to_string()))?;
            let shared = Arc::new(Shared::new(backend, config.state.clone(), metrics.clone()));
            let listeners = Listeners::bind(&config)?;
            (metrics, signals, hup, shared, listeners)
        };
        let s3 = match &config.storage.s3 {
            None => None,
            Some(s3) => Some(
                runtime
                    .block_on(crate::s3::Store::start(s3, &metrics))
                    .inspect_err(|e| tracing::error!("{e}"))?,
            ),
        };
        Ok(Daemon {
            runtime,
            parts: Parts {
                state: StateParts {
                    config,
                    dev,
                    playground,
                    roots,
                    events_store,
                    budgets,
                    metrics,
                    shared,
                    s3,
                },
                sources,
                signals,
                hup,
                listeners,
            },
            log,
        })
    }
}

impl Listeners {
    /// Binds every listener `config` asks for (inside the runtime).
    fn bind(config: &Config) -> Result<Listeners, StartError> {
        let main = server::bind(config.listen).map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        // The admin API on TCP too: only when asked (the configuration
        // refuses a non-loopback address without its opt-in key).
        let admin_tcp = match config.server.admin_listen {
            None => None,
            Some(addr) => {
                let l = server::bind(addr).map_err(|source| StartError::AdminListen { addr, source })?;
                let bound = l.local_addr().unwrap_or(addr);
                Some((l, bound))
            }
        };
        let admin_socket = private_socket(&config.server.admin_socket).map_err(StartError::AdminSocket)?;
        // [events] is read at start only (a reload keeps it; see reload::merge).
        let events_socket = config.events.as_ref().and_then(|events| {
            let path = events.dir.join(crate::events::wire::SOCKET);
            private_socket(&path)
                .inspect_err(|e| {
                    tracing::error!(path = %path.display(), error = %e, "cannot serve the events admin socket: `assetgate events` needs the daemon stopped");
                })
                .ok()
        });
        Ok(Listeners {
            main,
            admin: AdminListeners {
                tcp: admin_tcp,
                socket: admin_socket,
                events_socket,
            },
        })
    }
}

/// A private Unix socket ([`socket::bind`]: the directory checked, a stale
/// socket replaced, one in use refused) and its listener for the runtime.
fn private_socket(
    path: &std::path::Path,
) -> Result<(PrivateSocket, UnixListener), Box<dyn std::error::Error + Send + Sync>> {
    let mut bound = socket::bind(path)?;
    let listener = bound.take_listener()?;
    Ok((bound, listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One mapping: a configuration is 64, everything else 1 (the codes
    /// tests/cli.rs, tests/daemon.rs and tests/lifecycle.rs see).
    #[test]
    fn configuration_errors_exit_64_the_rest_1() {
        let io = || std::io::Error::other("x");
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            StartError::from(ConfigError::new("link.secrets", "none")).exit_code(),
            64
        );
        for e in [
            StartError::Runtime(io()),
            StartError::Signals(io()),
            StartError::Listen { addr, source: io() },
            StartError::AdminListen { addr, source: io() },
            StartError::AdminSocket(io().into()),
        ] {
            assert_eq!(e.exit_code(), 1, "{e}");
        }
        assert_eq!(
            StartError::from(ConfigError::new("state.redis_url", "bad")).to_string(),
            "config error: state.redis_url: bad",
            "the message printed before"
        );
    }
}
