//! assetgate: makes a self-hosted tusd + nginx stack behave like presigned S3 URLs.
//!
//! - [`token`]: pure verification of the two token formats (no I/O).
//! - [`auth`]: the nginx `auth_request` endpoint around [`token::link`].
//! - [`policy`]: upload policy (key safety, visibility, content types, size).
//! - [`tusd`]: tusd hook protocol (v2 and v1/rustus shapes) and decisions.
//! - [`server`]: hyper accept loop, routing, graceful shutdown; [`limits`]:
//!   connection budget, body deadlines, slow-client accounting.
//! - [`finalize`]: moving finished uploads into the asset tree (post-finish,
//!   `finalize-pending`).
//! - [`config`], [`secret`], [`metrics`], [`telemetry`], [`cli`], [`clock`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod finalize;
pub mod hooks;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod reload;
pub mod revoke;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod token;
pub mod tusd;
