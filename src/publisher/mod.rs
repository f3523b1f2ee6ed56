//! Publishing finished uploads: plan -> move -> event, composed once.
//!
//! Three callers publish, and differ only in how they report:
//!
//! - `/tusd` post-finish hands its plan to the background worker
//!   ([`Finalizer::spawn`]: blocking pool, dedupe by upload ID, at most 16 at
//!   once, drained and cancelled at shutdown; logs and metrics);
//! - the reconciler (`crate::daemon::reconcile`) finds uploads whose
//!   post-finish was lost ([`Publisher::find`], [`plan`]) and hands their plans
//!   to the same worker, logging a refusal once per upload;
//! - `assetgate finalize-pending` finds and publishes in its own process,
//!   printing one line per upload.
//!
//! Each runs the same [`Publisher`]: [`Publisher::publish`] moves a verified
//! plan through a [`Backend`] (the mover, [`crate::finalize`], is the local
//! filesystem's) and commits `upload.finalized` before the upload is removed,
//! or `upload.failed` for a refusal that is the upload's fate;
//! [`Publisher::keep`] commits `upload.failed` for a found upload that
//! post-finish's rules keep. A storage backend plugs in by implementing
//! [`Backend`]: the publisher hands it the plan, never paths.
//!
//! The mover is synchronous and knows neither events nor metrics; this module
//! imports both.

mod backend;
mod s3;
mod service;
mod worker;

pub use backend::Backend;
pub use s3::{S3Backend, Stale};
pub use service::{plan, Found, Publisher, Report};
pub use worker::{report_sweep, sweep_temp_at_start, Finalizer, Landed, OnPublished};

#[cfg(test)]
mod tests;
