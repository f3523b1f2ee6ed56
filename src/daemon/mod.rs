//! The daemon's background tasks.
//!
//! - [`reload`]: SIGHUP and watched secret/config files swap the configuration.
//! - [`reconcile`]: periodic pass publishing lost post-finishes and removing
//!   abandoned uploads.

pub mod reconcile;
pub mod reload;
