//! The HTTP adapters: thin layers between hyper and the pure cores.
//!
//! - [`server`]: accept loop, routing, graceful shutdown, readiness.
//! - [`limits`]: connection budget, body deadlines, slow-client accounting.
//! - [`auth`]: nginx `auth_request` (`/auth`) around [`crate::token::link`].
//! - [`tusd`]: tusd hooks (`/tusd`) around [`crate::tusd`] and [`crate::finalize`].
//! - [`session`]: upload-session check for nginx (`/session`).
//! - [`admin`]: the loopback admin listener (revocations).

pub mod admin;
pub mod auth;
pub mod limits;
pub mod server;
pub mod session;
pub mod tusd;

pub use server::{AppState, Resp};
