//! assetgate: makes a self-hosted tusd + nginx stack behave like presigned S3 URLs.
//!
//! # The layout (the one map of it; `docs/development.md` links here)
//!
//! Two crates in one workspace. Imports point one way, and
//! `tests/architecture.rs` fails on any import cycle in either crate and on
//! I/O in the core.
//!
//! **`crates/assetgate-core`** (re-exported here as [`token`], [`tusd`],
//! [`policy`], [`secret`], [`clock`]): what the daemon decides, with no I/O.
//! Its `Cargo.toml` names no tokio, hyper, figment, redb or redis, so the
//! compiler keeps it pure; `cargo test -p assetgate-core` runs its unit and
//! property tests in seconds with no peer.
//!
//! - [`token`]: `nginx_uri` (`$uri`/`$arg_` as nginx derives them), `link`
//!   (secure_link md5), `upload` (granite's upload-token HMAC), `upload_id`
//!   (the signed upload IDs); the proofs `LinkVerified`, `UploadVerified`,
//!   `IdVerified`.
//! - [`tusd`]: `protocol` (the derived model of tusd's hook JSON and
//!   `FileInfo`), `json` (strict reading: JSON as `Value` defines it, each
//!   field once), `metadata`, `precreate`, `prefinish`, `postfinish` (the
//!   `FinalizePlan`), `rules` (what both blocking hooks check), `ids`,
//!   `session`, `abandon`, `decide`/`verdict`/`reason` (the decision, its
//!   `ReasonCode` and `HookOutcome`), `answer` (v2 JSON / v1 status).
//! - [`policy`]: key safety, visibility, content types, served-as-signed
//!   (the extension nginx will serve by), sizes.
//! - `config`: the validated sections the decisions read (`[link]`,
//!   `[upload]`, `[storage]`, `[tusd]`); [`secret`]: secret sets
//!   (constant-time, zeroized, redacted, rotation); [`clock`]: the injected
//!   time.
//!
//! **This crate** (the binary, the CLI, every file users see):
//!
//! - [`finalize`]: the mover, synchronous and std only: `roots`, `request` (a
//!   plan as the mover runs it), `confine` (descriptor-relative walks),
//!   `info` (`.info` files paired with `<dir>/<ID>`), `upload`, `publish`
//!   (link or copy, never overwrite), `refused` (`<ID>.refused` markers),
//!   `pending` (the scan and the abandon sweep), `faults` (test injection).
//! - [`publisher`]: plan → move → event, written once (`Publisher`) and called
//!   by post-finish, the reconciler and `finalize-pending`; `backend` is the
//!   seam a storage backend implements (the filesystem's is [`finalize`]);
//!   `worker` runs publishes in the background (dedupe, drain, cancel).
//! - [`events`]: `upload.finalized` / `upload.failed`, signed (Standard
//!   Webhooks: `sign`, `payload`, `backoff`), from a durable redb outbox
//!   (`store`, `outbox`), delivered by `deliver`; `wire`/`client` are the
//!   outbox socket's protocol and the CLI's client.
//! - [`state`]: single-use marks, partial-upload counts and revocations, in
//!   memory or Redis (one Lua script); `given_up` (claims refused 503, to
//!   undo).
//! - [`http`]: the adapters: `server` (accept loop, drain), `route`,
//!   `respond` (the responses the gate makes itself: one type, named
//!   constructors, one rescue), `limits` (connection budget, body and
//!   request deadlines), `auth` (`/auth`), `hooks` (`/tusd`), `session`
//!   (`/session`), `health` (`/healthz`, `/readyz`, `/metrics`), `admin` (the
//!   revocation API on its Unix socket), `events_socket`, `socket` (private
//!   Unix sockets).
//! - [`daemon`]: `start` (`Daemon::build`: everything that can refuse to
//!   start, one `StartError`, exit 64 for configuration), `run`
//!   (`Daemon::run`: the tasks and the drain), `shutdown` (signals, stages of
//!   a stop token and a `JoinSet`), `budgets`, `reload`, `reconcile`.
//! - [`cli`]: the commands (sign, verify, check-config, finalize-pending,
//!   revoke, events).
//! - [`config`]: the loader on top of the core's types: figment layers, env,
//!   files (`read`: bounded), the redacted `check-config` view (`show`), one
//!   error (exit 64).
//! - [`metrics`]: one file per concern (http, hooks, finalize, state, reload),
//!   each registering its families from its label enums' lists, every value
//!   pre-registered; [`telemetry`]: logs (a queued writer thread, tracing's
//!   text/JSON lines byte for byte).
//!
//! Import direction: `daemon → http → {publisher, tusd, token, finalize,
//! state, events, metrics}`; nothing below `http` names `http`, `daemon` or
//! `cli`; the mover imports neither events nor metrics (the publisher counts
//! and commits them).
//!
//! Outside `src/`: `benches/` (criterion benches, the instruction check,
//! `BENCHMARKS.md`), `examples/` (event receivers: FastAPI and Node), `nginx/` and `tusd/` (the
//! files users copy; the tests use them verbatim), `deploy/`, `tests/`
//! (integration tests on the real binary and end-to-end tests against real
//! nginx, granite-assets, tusd, rustus, Redis and Chromium), `fuzz/`,
//! `docs/` (the user's documentation: the README's table of contents).
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
pub mod s3_sign;
pub mod state;
pub mod telemetry;
