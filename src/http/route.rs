//! The main listener's routes: which endpoint answers a path, with which
//! methods, under which deadline; every answer timed and counted here.
//!
//! Every endpoint is a `handle` with one signature, `(&Arc<AppState>,
//! Request<Incoming>) -> Resp`; this module only dispatches to them.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request};
use hyper::body::Incoming;

use crate::http::limits::under_deadline;
use crate::http::respond::Synthetic;
use crate::http::{auth, health, hooks, session, AppState, Resp};
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

/// Answers one request of the main listener.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let route = Route::of(req.uri().path());
    let (endpoint, resp) = match route {
        Some(route) => (route.endpoint(), dispatch(&state, route, req).await),
        None => (Endpoint::Other, Synthetic::not_found().into()),
    };
    state
        .metrics
        .observe(endpoint, resp.status(), started.elapsed().as_secs_f64());
    resp
}

async fn dispatch(state: &Arc<AppState>, route: Route, req: Request<Incoming>) -> Resp {
    if !route.allows(req.method()) {
        return Synthetic::method_not_allowed(route.allow()).into();
    }
    // The endpoints that wait on anything (a body, a decision on the blocking
    // pool, an upload's record) run under `[server] request_timeout`; the
    // /tusd budget (places for bodies still arriving, turns to decide) is
    // the handler's (hooks.rs, limits.rs).
    let deadline = state.config.server.request_timeout;
    match route {
        Route::Auth => auth::handle(state, req).await,
        Route::Tusd => under_deadline(&state.limits, deadline, hooks::handle(state, req)).await,
        Route::Session => under_deadline(&state.limits, deadline, session::handle(state, req)).await,
        Route::Healthz => health::healthz(state, req).await,
        Route::Readyz => health::readyz(state, req).await,
        Route::Metrics => health::metrics(state, req).await,
    }
}
