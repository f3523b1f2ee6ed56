//! The S3 backend's client: one place builds it from `[storage.s3]`
//! ([`client`](mod@client)), and the capability self-test at start
//! ([`selftest`]) says which no-overwrite publish method the engine really
//! honours. [`sign`] signs the object reads `/auth` hands nginx for downloads
//! (`aws-sigv4`); [`lookup`] answers the hook decisions' two storage facts
//! (the destination, the leading bytes).
//!
//! The SDK is configured for S3-compatible engines, not only AWS: static
//! credentials from the configuration (nothing looked up in the environment,
//! a profile or instance metadata), checksums only when an operation requires
//! them (tusd is run the same way; non-AWS engines differ in what they accept),
//! rustls with ring, bounded timeouts, and path-style requests as configured.

pub mod abandon;
pub mod client;
pub mod lookup;
pub mod ops;
pub mod pending;
pub mod publish;
pub mod selftest;
pub mod session;
pub mod sign;
mod store;

pub use client::{client, copy_source};
pub use selftest::{PublishMethod, SelfTest, SelfTestError};
pub use store::{Store, SELF_TEST_TIMEOUT};
