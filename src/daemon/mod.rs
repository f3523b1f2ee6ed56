//! `assetgate serve`: the daemon, one start and one stop (kubert's
//! `runtime.rs` and `shutdown.rs` are the model).
//!
//! - [`start`]: [`Daemon::build`] does everything that can refuse to start
//!   and returns one [`StartError`] (exit 64 for a configuration, 1 for the
//!   rest); [`serve`] is the CLI's entry.
//! - `run`: [`Daemon::run`] composes the state, spawns every background task,
//!   serves until SIGTERM/SIGINT and drains (the order is in its notes).
//! - `shutdown`: the signals, and the stages every background task runs in
//!   (one stop token, one `JoinSet`).
//! - `budgets`: the connection budgets fitted below the open-file limit.
//! - [`reload`]: SIGHUP and watched secret/config files swap the configuration.
//! - [`reconcile`]: periodic pass publishing lost post-finishes and removing
//!   abandoned uploads.

mod budgets;
pub mod dev;
pub mod reconcile;
pub mod reload;
mod run;
mod shutdown;
pub mod start;

pub use start::{serve, Daemon, StartError};
