//! `assetgate serve`: the daemon.
//!
//! - `run` ([`serve`]): the composition root (configuration checked, logging, the
//!   connection budgets, the runtime, signals, the state backend, the
//!   listeners, the background tasks, the server until the drain is over).
//! - `budgets`: the connection budgets fitted below the open-file limit.
//! - [`reload`]: SIGHUP and watched secret/config files swap the configuration.
//! - [`reconcile`]: periodic pass publishing lost post-finishes and removing
//!   abandoned uploads.

mod budgets;
pub mod reconcile;
pub mod reload;
mod run;

pub use run::serve;
