//! The HTTP server: accept loop, limits, graceful shutdown (the routes:
//! [`crate::http::route`]).
//!
//! Hardening, because the gate sits on every private download:
//! - a header read timeout (a half-sent request head, or an idle keep-alive
//!   connection, is closed, not held), a body read timeout and a whole-request
//!   deadline;
//! - small connection buffers and a cap on request bodies;
//! - a connection budget that evicts the connection idle the longest when it
//!   is full, and a smaller budget for `/tusd` bodies still arriving (the only
//!   endpoint that reads a body), so slow or idle clients cannot keep `/auth`,
//!   the health checks or tusd's hooks out (design notes in
//!   [`crate::http::limits`]);
//! - shutdown: readiness turns false first, the listener closes, in-flight
//!   requests finish within `server.shutdown_grace`, a second signal aborts
//!   (the drain is the daemon's: `crate::daemon`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::http::limits::{LimitLog, Registry, REPORT_WINDOW};
use crate::http::route::handle;
use crate::http::{AppState, Resp};
use crate::metrics::Limit;

/// Cap on a connection's read buffer (hyper's own floor is 8 KiB): a request
/// head larger than this is answered 431. nginx forwards only the headers the
/// shipped config sets (`proxy_pass_request_headers off`), far below it; a
/// client's long URI in `X-Original-URI` still fits.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// Accept-queue length asked of the kernel (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). Rust's and mio's 128 overflows under
/// a connection storm: the kernel then drops new handshakes, and a health check
/// caught in one waits a full SYN retransmission (1 s) before it is even
/// queued. nginx asks 511.
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` with `LISTEN_BACKLOG` (and `SO_REUSEADDR`, as
/// `TcpListener::bind` does).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A listening socket the limits layer serves: TCP (the main port, the
/// opt-in admin port) or Unix (the admin sockets).
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix stream listener.
    Unix(tokio::net::UnixListener),
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Accepted::Tcp(s))
            }
            Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

/// The limits one listener is served with ([`accept_loop`]).
pub struct Layer {
    /// The listener's name in logs (`listen`, `admin_socket`, ...).
    pub name: &'static str,
    /// Its connection budget.
    pub max_connections: usize,
    /// `[server] header_read_timeout`.
    pub header_read_timeout: Duration,
    /// Where limit hits are counted and logged.
    pub limits: Arc<LimitLog>,
    /// The connection gauges to keep (the main listener's).
    pub metrics: Option<crate::metrics::Metrics>,
}

/// The one limits layer every listener goes through: accepts on `listener`
/// until `shutdown` resolves, each connection within the budget (the one idle
/// the longest evicted when it is full), under the header read timeout, with
/// small buffers, watched by `graceful`; `handler` answers each request.
/// Bodies and deadlines are the handler's, with [`crate::http::limits::read_body`].
pub async fn accept_loop<H, F>(
    listener: Listener,
    layer: Layer,
    graceful: &GracefulShutdown,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let max = layer.max_connections;
    let connections = Arc::new(Semaphore::new(max));
    let registry = Arc::new(Registry::new(max));
    let evict_batch = (max / 8).clamp(1, 32);
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: the budgets are set below the open-file
                    // limit, so this is another part of the process holding
                    // files. Close idle connections, back off, say so once per
                    // window, never spin.
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        registry.evict_longest_idle(evict_batch);
                    }
                    if last_warning.is_none_or(|t| t.elapsed() >= REPORT_WINDOW) {
                        tracing::warn!(listener = layer.name, error = %e, "accept failed; backing off (at most one line per 10 s)");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let room = make_room(&connections, &registry, evict_batch);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    p = room => p,
                }
            }
        };
        let open = layer.metrics.as_ref().map(|m| {
            m.connection_accepted();
            m.connections().clone()
        });
        let conn = Conn {
            registry: registry.clone(),
            permit,
            limits: layer.limits.clone(),
            header_read_timeout: layer.header_read_timeout,
            open,
            listener: layer.name,
        };
        match stream {
            Accepted::Tcp(s) => conn.spawn(TokioIo::new(s), graceful, handler.clone()),
            Accepted::Unix(s) => conn.spawn(TokioIo::new(s), graceful, handler.clone()),
        }
    }
}

/// One accepted connection, within its listener's budget.
struct Conn {
    registry: Arc<Registry>,
    permit: OwnedSemaphorePermit,
    limits: Arc<LimitLog>,
    header_read_timeout: Duration,
    /// The open-connections gauge (the main listener's).
    open: Option<prometheus::IntGauge>,
    listener: &'static str,
}

impl Conn {
    fn spawn<I, H, F>(self, io: I, graceful: &GracefulShutdown, handler: H)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let (id, slot) = self.registry.open();
        let svc_slot = slot.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(MAX_BUF_SIZE)
            .keep_alive(true)
            .serve_connection(
                io,
                service_fn(move |req| {
                    // Busy from the head to the answer: a connection inside a
                    // request is never evicted (its deadlines bound it).
                    svc_slot.busy();
                    let answer = handler(req);
                    let slot = svc_slot.clone();
                    async move {
                        let r = answer.await;
                        slot.idle();
                        Ok::<_, Infallible>(r)
                    }
                }),
            );
        let conn = graceful.watch(conn);
        if let Some(g) = &self.open {
            g.inc();
        }
        tokio::spawn(async move {
            // Evictable from now on: this first poll reads a head that is
            // already there, and a busy connection is never evicted.
            slot.idle();
            tokio::pin!(conn);
            let ended = loop {
                tokio::select! {
                    r = conn.as_mut() => break Some(r),
                    () = slot.evicted() => {
                        // Still idle: dropping the connection closes it, as
                        // hyper's graceful shutdown does with an idle one.
                        if slot.is_evicted() {
                            break None;
                        }
                    }
                }
            };
            match ended {
                Some(Err(e)) if e.is_timeout() => self.limits.hit(Limit::HeaderReadTimeout),
                Some(Err(e)) => {
                    tracing::debug!(listener = self.listener, error = %e, "connection ended with an error")
                }
                Some(Ok(())) => {}
                None => self.limits.hit(Limit::MaxConnections),
            }
            self.registry.close(id);
            if let Some(g) = &self.open {
                g.dec();
            }
            drop(self.permit);
        });
    }
}

/// Serves on `listener` until `stop` is cancelled (the daemon turned
/// readiness false first), then waits for the requests in flight; the
/// daemon's drain bounds the wait (`crate::daemon`).
pub async fn serve(listener: TcpListener, state: Arc<AppState>, stop: CancellationToken) {
    let limits = &state.config.server;
    let graceful = GracefulShutdown::new();
    let layer = Layer {
        name: "listen",
        max_connections: state.budgets.max_connections,
        header_read_timeout: limits.header_read_timeout,
        limits: state.limits.clone(),
        metrics: Some(state.metrics.clone()),
    };
    let st = state.clone();
    accept_loop(
        Listener::Tcp(listener),
        layer,
        &graceful,
        stop.cancelled(),
        move |req| handle(st.clone(), req),
    )
    .await;
    tracing::info!(
        grace_seconds = limits.shutdown_grace.as_secs(),
        "shutting down: not ready, listener closed, draining in-flight requests"
    );
    graceful.shutdown().await;
}

/// The budget is full: evicts the `batch` connections idle the longest (again
/// every 10 ms while no slot frees: requests may have started on them). The
/// batch leaves room for the next new connections without a scan each. When
/// every connection is busy, each is inside a request bounded by the timeouts,
/// so a slot frees soon anyway.
async fn make_room(connections: &Arc<Semaphore>, registry: &Registry, batch: usize) -> OwnedSemaphorePermit {
    loop {
        registry.evict_longest_idle(batch);
        tokio::select! {
            biased;
            p = connections.clone().acquire_owned() => return p.expect("the semaphore is never closed"),
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
    }
}
