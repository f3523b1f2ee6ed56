//! assetgate: makes a self-hosted tusd + nginx stack behave like presigned S3 URLs.
//!
//! Pure cores (no I/O, the time passed in), then what acts on the world, then
//! the adapters; imports point one way, `http -> {tusd, token, finalize,
//! metrics} -> {policy, secret}`:
//!
//! - [`token`]: verification of the two token formats.
//! - [`tusd`]: tusd hook protocol (v2 and v1/rustus shapes) and the decision per hook.
//! - [`policy`]: upload policy (key safety, visibility, content types, size).
//! - [`finalize`]: the mover: finished uploads into the asset tree (confinement,
//!   no-overwrite publish, pending scan); synchronous, std only.
//! - [`publisher`]: plan -> move -> event, run in the background (the worker).
//! - [`events`]: `upload.finalized` / `upload.failed` to the application,
//!   signed (Standard Webhooks), from a durable outbox.
//! - [`state`]: single-use tokens and revocations (memory or Redis).
//! - [`http`]: the adapters: server, `/auth`, `/tusd`, `/session`, admin.
//! - [`daemon`]: start (one error), run, the background tasks and the drain
//!   (reload, reconcile, ...); [`cli`]: the commands.
//! - [`config`], [`secret`], [`metrics`], [`telemetry`], [`clock`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use assetgate_core::{clock, policy, secret, token, tusd};

pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod finalize;
pub mod http;
pub mod metrics;
pub mod publisher;
pub mod state;
pub mod telemetry;
