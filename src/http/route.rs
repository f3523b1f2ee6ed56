//! The main listener's routes: which endpoint answers a path, with which
//! methods, under which deadline; every answer timed and counted here.
//!
//! Every endpoint is a `handle` with one signature, `(&Arc<AppState>,
//! Request<Incoming>) -> Resp`; this module only dispatches to them.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request};
use hyper::body::Incoming;

use tokio::time::timeout;

use crate::http::limits::or_deadline;
use crate::http::respond::Synthetic;
use crate::http::{auth, dev_files, health, hooks, session, AppState, Resp};
use crate::metrics::Endpoint;

/// The main listener's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `/auth`: nginx `auth_request` for downloads ([`auth`]).
    Auth,
    /// `/tusd`: tusd's hooks ([`hooks`]).
    Tusd,
    /// `/session`: nginx `auth_request` for tus requests ([`session`]).
    Session,
    /// `/healthz` ([`health`]).
    Healthz,
    /// `/readyz` ([`health`]).
    Readyz,
    /// `/metrics` ([`health`]).
    Metrics,
}

impl Route {
    /// The endpoint at `path`, if any.
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/auth" => Route::Auth,
            "/tusd" => Route::Tusd,
            "/session" => Route::Session,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            _ => return None,
        })
    }

    /// The `endpoint` label of its answers.
    fn endpoint(self) -> Endpoint {
        match self {
            Route::Auth => Endpoint::Auth,
            Route::Tusd => Endpoint::Tusd,
            Route::Session => Endpoint::Session,
            Route::Healthz | Route::Readyz | Route::Metrics => Endpoint::Admin,
        }
    }

    /// The methods it answers (`Allow` of a 405).
    fn allow(self) -> &'static str {
        match self {
            Route::Tusd => "POST",
            _ => "GET, HEAD",
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Route::Tusd => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// Answers one request of the main listener: the endpoint at its path, if
/// it allows the method; timed and counted under the endpoint's label.
///
/// One `async fn`, no layer of its own per endpoint: every in-flight
/// request's connection task holds this future, so it stays the size of the
/// largest endpoint's (`/tusd`'s) plus the request.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let route = Route::of(req.uri().path());
    let state = &state;
    // The endpoints that wait on anything (a body, a decision on the blocking
    // pool, an upload's record) run under `[server] request_timeout`; the
    // /tusd budget (places for bodies still arriving, turns to decide) is
    // the handler's (hooks.rs, limits.rs).
    let deadline = state.config.server.request_timeout;
    let resp = match route {
        // `serve --dev` only; boxed: the dev download is not what every
        // request's future should be sized for.
        None if dev_files::serves(state, req.uri().path()) => Box::pin(dev_files::handle(state, req)).await,
        None => Synthetic::not_found().into(),
        Some(route) if !route.allows(req.method()) => Synthetic::method_not_allowed(route.allow()).into(),
        Some(Route::Auth) => auth::handle(state, req).await,
        Some(Route::Tusd) => or_deadline(&state.limits, timeout(deadline, hooks::handle(state, req)).await),
        Some(Route::Session) => or_deadline(
            &state.limits,
            timeout(deadline, session::handle(state, req)).await,
        ),
        Some(Route::Healthz) => health::healthz(state, req).await,
        Some(Route::Readyz) => health::readyz(state, req).await,
        Some(Route::Metrics) => health::metrics(state, req).await,
    };
    let endpoint = route.map_or(Endpoint::Other, Route::endpoint);
    state
        .metrics
        .observe(endpoint, resp.status(), started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, F: std::future::Future>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every in-flight request's connection task holds `handle`'s future,
    /// so it holds one endpoint's future (the largest: /tusd's) and the
    /// request, not a copy per layer: a slow-body flood holds thousands (a
    /// deadline wrapper that kept the /tusd future twice made it 5.8 KiB,
    /// and raised the RSS slow_clients.rs measures past its slack).
    #[test]
    fn a_request_future_holds_one_endpoint_future() {
        let (handle, tusd) = (future_size(handle), future_size(hooks::handle));
        assert!(handle <= tusd + 1024, "handle {handle} bytes, /tusd {tusd} bytes");
    }
}
