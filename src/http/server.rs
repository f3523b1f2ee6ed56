//! The HTTP server: accept loop, limits, routing, graceful shutdown.
//!
//! Hardening, because the gate sits on every private download:
//! - a header read timeout (a half-sent request head, or an idle keep-alive
//!   connection, is closed, not held), a body read timeout and a whole-request
//!   deadline;
//! - small connection buffers and a cap on request bodies;
//! - a connection budget that evicts the connection idle the longest when it
//!   is full, and a smaller budget for `/tusd` (the only endpoint that reads a
//!   body), so slow or idle clients cannot keep `/auth` and the health checks
//!   out (design notes in [`crate::http::limits`]);
//! - shutdown: readiness turns false first, the listener closes, in-flight
//!   requests finish within `server.shutdown_grace`, a second signal aborts.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::limits::{Registry, Slot};
use crate::http::tusd;
use crate::http::{auth, AppState, Resp};
use crate::metrics::{Endpoint, Limit};

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

/// Serves on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    abort: impl Future<Output = ()>,
) {
    let limits = &state.config.server;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::new(limits.max_connections));
    let evict_batch = (limits.max_connections / 8).clamp(1, 32);
    let graceful = GracefulShutdown::new();
    let reporter = tokio::spawn(state.limits.clone().run());
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let (id, slot) = registry.open();
        let st = state.clone();
        let svc_slot = slot.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_BUF_SIZE)
            .keep_alive(true)
            .serve_connection(
                io,
                service_fn(move |req| handle(st.clone(), svc_slot.clone(), req)),
            );
        let conn = graceful.watch(conn);
        state.metrics.connection_accepted();
        let gauge = state.metrics.connections().clone();
        gauge.inc();
        let (registry, limit_log) = (registry.clone(), state.limits.clone());
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
                Some(Err(e)) if e.is_timeout() => limit_log.hit(Limit::HeaderReadTimeout),
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                Some(Ok(())) => {}
                None => limit_log.hit(Limit::MaxConnections),
            }
            registry.close(id);
            gauge.dec();
            drop(permit);
        });
    }

    state.ready.store(false, Ordering::Relaxed);
    drop(listener);
    tracing::info!(
        grace_seconds = limits.shutdown_grace.as_secs(),
        "shutting down: not ready, listener closed, draining in-flight requests"
    );
    let drain = async {
        graceful.shutdown().await;
        state.finalizer.drain().await;
    };
    reporter.abort();
    let over = tokio::select! {
        () = drain => {
            tracing::info!("all connections and background moves drained");
            false
        }
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("grace period over; closing remaining connections");
            true
        }
        () = abort => {
            tracing::warn!("second signal: aborting the drain");
            true
        }
    };
    if over {
        abandon_moves(&state).await;
    }
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

/// How long abandoned moves get to stop (one copy chunk, one fsync).
const ABANDON_WAIT: Duration = Duration::from_secs(3);

async fn handle(state: Arc<AppState>, slot: Arc<Slot>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let started = Instant::now();
    slot.busy();
    let (endpoint, resp) = route(&state, req).await;
    slot.idle();
    state
        .metrics
        .observe(endpoint, resp.status(), started.elapsed().as_secs_f64());
    Ok(resp)
}

async fn route(state: &Arc<AppState>, req: Request<Incoming>) -> (Endpoint, Resp) {
    let path = req.uri().path();
    let method = req.method();
    match path {
        "/auth" => {
            if method != Method::GET && method != Method::HEAD {
                return (Endpoint::Auth, method_not_allowed("GET, HEAD"));
            }
            let cfg = state.current();
            let outcome = auth::decide(&cfg, &state.shared, req.headers(), state.clock.now());
            auth::record(&outcome, &state.metrics);
            let (parts, ()) = auth::response(&outcome).into_parts();
            let body = match outcome {
                auth::Outcome::NoOriginalUri if method == Method::GET => {
                    Bytes::from_static(auth::NO_ORIGINAL_URI_BODY.as_bytes())
                }
                _ => Bytes::new(),
            };
            (Endpoint::Auth, Response::from_parts(parts, Full::new(body)))
        }
        "/tusd" => {
            if method != Method::POST {
                return (Endpoint::Tusd, method_not_allowed("POST"));
            }
            // Refused before a byte of the body is read; hyper then closes
            // the connection rather than drain an unread body.
            let Ok(_in_flight) = state.tusd_slots.try_acquire() else {
                state.limits.hit(Limit::MaxTusdRequests);
                return (
                    Endpoint::Tusd,
                    limit_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "busy",
                        "too many hook requests at once (server.max_tusd_requests)",
                    ),
                );
            };
            let deadline = state.config.server.request_timeout;
            match tokio::time::timeout(deadline, tusd::handle(state, req)).await {
                Ok(resp) => (Endpoint::Tusd, resp),
                Err(_) => {
                    state.limits.hit(Limit::RequestTimeout);
                    (
                        Endpoint::Tusd,
                        limit_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request_timeout",
                            "the request took longer than server.request_timeout",
                        ),
                    )
                }
            }
        }
        "/session" => {
            if method != Method::GET && method != Method::HEAD {
                return (Endpoint::Session, method_not_allowed("GET, HEAD"));
            }
            // It may wait on the disk (an upload's record): bounded like /tusd.
            let deadline = state.config.server.request_timeout;
            match tokio::time::timeout(deadline, crate::http::session::handle(state, &req)).await {
                Ok(resp) => (Endpoint::Session, resp),
                Err(_) => {
                    state.limits.hit(Limit::RequestTimeout);
                    (
                        Endpoint::Session,
                        limit_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "request_timeout",
                            "the request took longer than server.request_timeout",
                        ),
                    )
                }
            }
        }
        "/healthz" => admin(method, || text(StatusCode::OK, "ok\n")),
        "/readyz" => admin(method, || {
            if state.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else if state.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "state backend unreachable\n")
            }
        }),
        "/metrics" => admin(method, || {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }),
        _ => (Endpoint::Other, text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

fn admin(method: &Method, f: impl FnOnce() -> Resp) -> (Endpoint, Resp) {
    if method == Method::GET || method == Method::HEAD {
        (Endpoint::Admin, f())
    } else {
        (Endpoint::Admin, method_not_allowed("GET, HEAD"))
    }
}

/// The answer of a limit (408 for a body too slow, 503 for a full `/tusd`
/// budget or a request over its deadline), in the hooks' JSON error shape,
/// with `Connection: close`: the connection is not reused.
pub fn limit_response(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut r = super::json_error(status, code, message);
    let h = r.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
