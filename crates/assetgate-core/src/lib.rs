//! assetgate's pure core: what the daemon decides, with no I/O.
//!
//! - [`token`]: the two token formats (granite's upload token, nginx's
//!   secure_link download link) and the upload IDs pre-create issues.
//! - [`policy`]: key safety, content types (served as signed), sizes.
//! - [`tusd`]: the tusd hook protocol (v2 and v1/rustus shapes) and the
//!   decision per hook; the facts it needs from the filesystem are asked
//!   through [`tusd::Lookup`], answered by the daemon.
//! - [`config`]: the validated settings those decisions read.
//! - [`secret`], [`clock`]: secret sets (constant-time, zeroized, redacted)
//!   and the injected time.
//!
//! This crate's `Cargo.toml` names no I/O crate (tokio, hyper, figment, redb,
//! redis), so the compiler keeps it pure; `tests/architecture.rs` checks what
//! the compiler cannot (no `std::fs` or `std::net` outside tests, no import
//! cycles). Its tests need no peer: `cargo test -p assetgate-core` runs them
//! in seconds.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod config;
pub mod policy;
pub mod secret;
pub mod token;
pub mod tusd;
