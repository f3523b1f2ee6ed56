//! Publishing finished uploads: the executor around the mover ([`crate::finalize`]).
//!
//! The mover is synchronous and knows neither events nor metrics; this module
//! runs it (on the blocking pool, deduplicated, drained at shutdown), commits
//! the events and counts the outcomes.

mod worker;

pub use worker::{sweep_temp_at_start, Finalizer};
