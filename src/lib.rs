//! assetgate: makes a self-hosted tusd + nginx stack behave like presigned S3 URLs.
//!
//! The one map of the layout (docs/development.md points here). Pure cores
//! first (no I/O, the time passed in: the `assetgate-core` crate), then what
//! acts on the world, then the adapters and the daemon:
//!
//! ```text
//! crates/assetgate-core/src/   the pure core: Cargo.toml names no tokio, hyper, figment, redb, redis
//!   token/                     nginx_uri ($uri/$arg_ as nginx derives them), link (secure_link md5),
//!                              upload (upload-token HMAC), upload_id (the signed upload IDs);
//!                              proofs LinkVerified / UploadVerified / IdVerified
//!   tusd/                      protocol (the one serde model of hook JSON), metadata, precreate,
//!                              postfinish (FinalizePlan), prefinish, rules (checks both hooks share),
//!                              ids (upload IDs at pre-create and publish), session, abandon,
//!                              decide, gate, verdict, reason, answer (v2 JSON / v1 status)
//!   policy/                    key safety, content types (served as signed), sizes, visibility
//!   config.rs                  the sections the decisions read ([link], [upload], [storage], [tusd])
//!   secret.rs  clock.rs        Secret / SecretSet (redacted, zeroized, rotation); the injected clock
//! src/                         the daemon crate (re-exports the core's modules)
//!   events/{sign,backoff,payload}.rs   Standard Webhooks signing, retry schedule, event bodies
//!   What acts on the world:
//!   finalize/                  the mover (std only): mod (design notes; declares, re-exports), roots,
//!                              request (a plan as the mover runs it), outcome, cancel, error,
//!                              confine (descriptor-relative walks), info (.info files, paired with
//!                              <dir>/<ID>), upload (data file, info, parts), publish (link or copy,
//!                              no overwrite), refused (<ID>.refused markers), pending
//!                              (finalize-pending scan, abandon sweep), faults (test injection)
//!   publisher/                 plan -> move -> event, once: service (Publisher: find, publish, keep),
//!                              backend (the seam a storage backend implements; the filesystem's is
//!                              finalize), worker (background publishes, dedupe, drain, cancel);
//!                              post-finish, the reconciler and finalize-pending all call it
//!   state/                     single-use marks, partial-upload counts and revocations: memory or
//!                              Redis (one Lua script); given_up (claims refused 503, to undo)
//!   events/{store,outbox,deliver,wire,client,cli}.rs   redb outbox, delivery loop, admin socket's
//!                              wire, its client, CLI
//!   Adapters and the daemon:
//!   http/                      mod (AppState, live config), server (accept loop, drain), route (the
//!                              main listener's routes), respond (Synthetic: the responses the gate
//!                              makes itself), limits (connection budget, body and request deadlines),
//!                              auth (/auth), hooks (/tusd), session (/session), health (/healthz,
//!                              /readyz, /metrics), admin (the admin API on its Unix socket; serves
//!                              the outbox's socket too), events_socket (that socket's endpoint),
//!                              socket (private Unix sockets)
//!   daemon/                    start (Daemon::build: everything that can refuse to start, one
//!                              StartError, exit 64/1), run (Daemon::run: the tasks, the drain),
//!                              shutdown (signals; stages: a stop token and a JoinSet), budgets,
//!                              reload, reconcile
//!   cli.rs, cli/               clap commands (sign, verify, check-config, finalize-pending, revoke)
//!   config/                    figment layers (load), parsed once into types, redacted Serialize
//!                              view (show), exit 64 (error); read: the bounded reader of the config
//!                              and secret files
//!   metrics/                   one file per concern (http, hooks, finalize, state, reload): its
//!                              families and closed label enums, every value pre-registered;
//!                              at_start.prom
//!   telemetry/                 logs: queued writer thread; format.rs writes tracing-subscriber's
//!                              text/JSON lines byte for byte, without core::fmt on the hot path
//! benches/, examples/          benchmark driver, criterion benches, the hyper floor (BENCHMARKS.md),
//!                              the FastAPI event receiver
//! nginx/                       the nginx config users copy (the tests use it verbatim)
//! tusd/                        tusd command line, env file, systemd unit
//! deploy/                      the example config, image, compose, systemd, Kubernetes
//! tests/                       integration tests (real binary) and end-to-end tests against real
//!                              nginx / granite-assets / tusd / rustus, and in Chromium (tests/browser/)
//! fuzz/                        cargo-fuzz targets for the parser and the verifier
//! docs/                        the user's documentation (the README's table of contents)
//! ```
//!
//! Imports point one way: daemon -> http -> {publisher, tusd, token,
//! finalize, state, events, metrics}; nothing below http names http, daemon
//! or cli; the pure cores (token, tusd, policy) use only each other, config's
//! types and secret, and no tokio, hyper, std::fs or std::net. The mover
//! (finalize) imports neither events nor metrics: publisher (the executor)
//! counts metrics and commits events; metrics knows the cores' reason enums
//! (its labels). `tests/architecture.rs` checks what the compiler cannot (no
//! import cycles, no I/O in the core, the layers).
//!
//! The modules:
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
