//! Configuration: built-in defaults < TOML file < environment, validated once.
//!
//! The names here are a contract (docs, scripts and deployments use them):
//! `listen`, `log_level`, `log_format`, `[link]`, `[upload]`, `[storage]`,
//! `[tusd]`, `[server]`; env `ASSETGATE_CONFIG`, `ASSETGATE_LISTEN`,
//! `ASSETGATE_LOG_LEVEL`, `ASSETGATE_LOG_FORMAT`, `ASSETGATE_{LINK,UPLOAD}_SECRET`,
//! `ASSETGATE_{LINK,UPLOAD}_SECRET_FILE`, and `ASSETGATE_<SECTION>__<KEY>` for any
//! other key (e.g. `ASSETGATE_LINK__MERGE_SLASHES=false`).
//!
//! Any problem is a [`ConfigError`] naming the key; `main` prints it on one line
//! and exits 64 before anything listens.
//!
//! The file and the secret files are read by `read`: regular files only,
//! never blocking on a FIFO, capped ([`MAX_CONFIG_BYTES`],
//! [`MAX_SECRET_FILE_BYTES`], [`MAX_CA_FILE_BYTES`]), secrets printable text
//! ([`crate::secret::check_text`]); at start and on every reload alike.

//!
//! Modules, bottom up: `types` (the validated configuration), `error`,
//! `read` (bounded file reads), `human` (durations and sizes), [`events`]
//! (`[events]`), `show` (`check-config`'s serializers) and `load` (figment:
//! the only module that sees files and the environment as layers).

mod error;
pub mod events;
mod human;
mod load;
mod read;
pub mod s3;
mod show;
mod types;

pub use error::{ConfigError, EXIT_CONFIG};
pub use events::{CaFile, EventsConfig};
pub use load::{load, load_from, Sources};
pub use read::{read_secret_file, Stamp, MAX_CA_FILE_BYTES, MAX_CONFIG_BYTES, MAX_SECRET_FILE_BYTES};
pub use types::{
    default_admin_socket, default_max_tusd_requests, default_worker_threads, Config, FailMode, LogFormat,
    LogLevel, Origin, RedisUrl, ServerConfig, StateBackend, StateConfig, ADMIN_SOCKET_NAME, MAX_SOCKET_PATH,
};

// The sections the pure decisions read live in the core crate.
pub use assetgate_core::config::{
    LinkConfig, NginxTypes, StorageConfig, TusdConfig, UploadConfig, DEFAULT_MAX_PARTS, MAX_MAX_PARTS,
};
