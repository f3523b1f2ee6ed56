//! The validated configuration the daemon runs on: the core's sections
//! ([`assetgate_core::config`]) and the daemon's own ([server], [state],
//! [events], logging). Built by [`super::load`]; nothing here reads a file or
//! the environment.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::events::EventsConfig;
use super::read::Stamp;
use super::show;
use assetgate_core::config::{LinkConfig, StorageConfig, TusdConfig, UploadConfig};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?}: expected \"text\" or \"json\"")),
        }
    }
}

/// `log_level`: a tracing filter (`info`, `assetgate=debug,warn`), parsed into
/// its directives when the configuration is loaded; the logger is built from
/// them ([`LogLevel::env_filter`]) and cannot fail or fall back.
#[derive(Clone)]
pub struct LogLevel {
    text: String,
    directives: Vec<tracing_subscriber::filter::Directive>,
}

impl std::str::FromStr for LogLevel {
    type Err = tracing_subscriber::filter::ParseError;

    /// As [`tracing_subscriber::EnvFilter::try_new`] reads it: comma-separated
    /// directives, empty ones skipped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let directives = s
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(LogLevel {
            text: s.to_string(),
            directives,
        })
    }
}

impl LogLevel {
    /// The filter as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The subscriber's filter, from the parsed directives.
    pub fn env_filter(&self) -> tracing_subscriber::EnvFilter {
        self.directives
            .iter()
            .cloned()
            .fold(tracing_subscriber::EnvFilter::default(), |f, d| {
                f.add_directive(d)
            })
    }
}

impl fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogLevel({:?})", self.text)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for LogLevel {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for LogLevel {}

impl PartialEq<&str> for LogLevel {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The validated configuration.
///
/// `Serialize` is what `check-config` prints ([`Config::redacted_toml`]):
/// every field, secrets as their length only (the secret types have no
/// `Serialize`; `config::show` renders them), unset options as `"<not set…>"`.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// tracing filter directive (`info`, `assetgate=debug`, ...).
    pub log_level: LogLevel,
    /// Log format.
    pub log_format: LogFormat,
    /// Download links (nginx secure_link).
    pub link: LinkConfig,
    /// Upload tokens (tusd pre-create).
    pub upload: UploadConfig,
    /// The asset tree finished uploads are moved into.
    pub storage: StorageConfig,
    /// Signs the object reads `/auth` hands nginx with `[storage] backend =
    /// "s3"` (derived from `storage.s3`, not a key). Like `storage.s3` it is
    /// start-only: a reload keeps the running one (`daemon::reload::merge`),
    /// so a new identity needs a restart.
    #[serde(skip)]
    pub s3_signer: Option<std::sync::Arc<crate::s3::sign::S3Signer>>,
    /// Where tusd keeps uploads.
    pub tusd: TusdConfig,
    /// HTTP server limits.
    pub server: ServerConfig,
    /// `[events]`: signed notifications to the application (`None`: no section,
    /// no events).
    pub events: Option<EventsConfig>,
    /// Shared state: single-use upload tokens and revocations.
    pub state: StateConfig,
    /// Where the file layer came from, for `check-config` (its header comment,
    /// not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The secret files named by `ASSETGATE_{LINK,UPLOAD}_SECRET_FILE`, which
    /// the daemon watches to reload (not a key).
    #[serde(skip)]
    pub secret_files: Vec<PathBuf>,
    /// The files this configuration was read from, as they were (not a key):
    /// what a reload compares with (`crate::daemon::reload`).
    #[serde(skip)]
    pub origin: Origin,
}

/// Two configurations are equal when every key is (secrets compared in
/// constant time, tables by content, not as `check-config` shows them);
/// where they were read from ([`Origin`]: file stamps) is not part of it. A
/// reload compares by this (`crate::daemon::reload`). Written out so that a
/// new field does not compile until it is placed here.
impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        let Config {
            listen,
            log_level,
            log_format,
            link,
            upload,
            storage,
            s3_signer: _,
            tusd,
            server,
            events,
            state,
            source,
            secret_files,
            origin: _,
        } = self;
        *listen == other.listen
            && *log_level == other.log_level
            && *log_format == other.log_format
            && *link == other.link
            && *upload == other.upload
            && *storage == other.storage
            && *tusd == other.tusd
            && *server == other.server
            && *events == other.events
            && *state == other.state
            && *source == other.source
            && *secret_files == other.secret_files
    }
}

/// The files a configuration was read from, as they were when read.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The configuration file: its stamp and the keys it sets (dotted:
    /// `upload.max_size`), read from the file itself (not the environment).
    pub file: Option<(Stamp, BTreeSet<String>)>,
    /// Every file read (the configuration file, the link and upload secret
    /// files) and its stamp.
    pub read: Vec<(PathBuf, Stamp)>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerConfig {
    /// A client must send its whole request head within this time. hyper starts
    /// the clock as soon as a connection waits for a head, so this is also the
    /// idle keep-alive timeout.
    #[serde(serialize_with = "show::secs")]
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this time after its head
    /// (total, not per chunk: one byte every second would defeat a per-chunk
    /// timeout).
    #[serde(serialize_with = "show::secs")]
    pub body_read_timeout: Duration,
    /// Whole-request deadline, from the complete head to the response (body
    /// and decision); with `header_read_timeout`, every request is bounded.
    #[serde(serialize_with = "show::secs")]
    pub request_timeout: Duration,
    /// Connections open at once. When full, the connection idle the longest is
    /// closed to make room; when none is idle, new ones wait in the backlog.
    #[serde(serialize_with = "show::count")]
    pub max_connections: usize,
    /// `/tusd` requests served at once (the only endpoint that reads a body);
    /// more get 503 at once. Below `max_connections`, so slow hook bodies can
    /// never take every connection from `/auth` and the health checks.
    #[serde(serialize_with = "show::count")]
    pub max_tusd_requests: usize,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(serialize_with = "show::secs")]
    pub shutdown_grace: Duration,
    /// Largest accepted request body (hook JSON).
    #[serde(serialize_with = "show::u64")]
    pub max_body_bytes: u64,
    /// Threads of the async runtime that serve requests.
    #[serde(serialize_with = "show::count")]
    pub worker_threads: usize,
    /// The admin API's Unix socket (revocations; `assetgate revoke` with the
    /// memory backend): mode 0600 in a directory of the daemon's user that no
    /// one else may write (created 0700 when missing). Default
    /// `$XDG_RUNTIME_DIR/assetgate/admin.sock`, else
    /// `/tmp/assetgate-<uid>/admin.sock`: the same for the daemon and the
    /// CLI of one user.
    #[serde(serialize_with = "show::path_buf")]
    pub admin_socket: PathBuf,
    /// The same admin API on TCP as well (`None`: not served): an explicit
    /// opt-in, loopback only unless `admin_listen_non_loopback`.
    #[serde(serialize_with = "show::admin_listen")]
    pub admin_listen: Option<SocketAddr>,
    /// Allows a non-loopback `admin_listen` (refused otherwise): whoever
    /// reaches that address can revoke and unrevoke links.
    pub admin_listen_non_loopback: bool,
}

/// `[state]`: where single-use marks and revocations live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateConfig {
    /// The backend (`backend` and `redis_url`).
    #[serde(flatten)]
    pub backend: StateBackend,
    /// Prefix of every Redis key (several deployments may share one Redis).
    pub key_prefix: String,
    /// Budget of one Redis command (connect included); `/auth` never waits
    /// on Redis at all.
    #[serde(serialize_with = "show::duration")]
    pub timeout: Duration,
    /// How often each replica checks Redis for changed revocations: the bound
    /// within which a revocation is honoured fleet-wide.
    #[serde(serialize_with = "show::duration")]
    pub sync_interval: Duration,
    /// How old the last successful sync may grow before the backend counts as
    /// down for revocations (`revocation_when_down` then applies).
    #[serde(serialize_with = "show::duration")]
    pub stale_after: Duration,
    /// What pre-create does when a single-use token cannot be checked.
    pub single_use_when_down: FailMode,
    /// What `/auth` does when revocations cannot be kept in sync.
    pub revocation_when_down: FailMode,
}

/// `[state] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// In the process: one replica only.
    Memory,
    /// A Redis 7 / Valkey server shared by the replicas.
    Redis {
        /// `redis://[user:pass@]host:port/db` or `unix:///path`; validated.
        url: RedisUrl,
    },
}

/// A validated Redis URL; `Debug` hides a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub(super) String);

impl RedisUrl {
    /// The URL as configured (may hold a password: never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced, for logs and `check-config`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// `backend = "…"` and `redis_url` (its password redacted; `"<not set>"` with
/// the memory backend), flattened into `[state]`.
impl Serialize for StateBackend {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(2))?;
        match self {
            StateBackend::Memory => {
                map.serialize_entry("backend", "memory")?;
                map.serialize_entry("redis_url", show::NOT_SET)?;
            }
            StateBackend::Redis { url } => {
                map.serialize_entry("backend", "redis")?;
                map.serialize_entry("redis_url", &url.redacted())?;
            }
        }
        map.end()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

pub(super) fn redact_url(url: &str) -> String {
    // scheme://user:pass@host... -> scheme://user:<redacted>@host...
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:<redacted>@{host}")
            } else {
                format!("{scheme}://<redacted>@{host}")
            }
        }
        None => url.to_string(),
    }
}

/// What a feature does while the state backend is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailMode {
    /// Refuse (the default): a replayed token or a revoked link never slips
    /// through, at the price of availability.
    #[serde(rename = "fail_closed")]
    Closed,
    /// Allow, logged and counted: availability first.
    #[serde(rename = "fail_open")]
    Open,
}

impl FailMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Closed => "fail_closed",
            FailMode::Open => "fail_open",
        }
    }
}

/// Default `server.max_tusd_requests`: 256 (tusd's hooks take a millisecond;
/// 256 at once is far above real traffic), at most half the connection budget.
pub fn default_max_tusd_requests(max_connections: usize) -> usize {
    (max_connections / 2).clamp(1, 256)
}

/// Default `server.worker_threads`: half the CPUs, at least one. The gate
/// shares its machine with nginx (and tusd), whose workers take every core; a
/// decision costs microseconds, and on the 2-core benchmark machine one thread
/// answered more auth subrequests per second than two, with less CPU per
/// decision (BENCHMARKS.md).
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The admin socket's file name in its directory.
pub const ADMIN_SOCKET_NAME: &str = "admin.sock";

/// Default `[server] admin_socket`: in the user's runtime directory
/// (`$XDG_RUNTIME_DIR`, which a login session provides, mode 0700) when there
/// is one, else in `/tmp/assetgate-<uid>/` (tmux's convention: a directory per
/// user, created 0700 and refused if someone else made it). The daemon and the
/// CLI of one user, given the same configuration, compute the same path.
pub fn default_admin_socket(xdg_runtime_dir: Option<&str>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.map(Path::new).filter(|d| d.is_absolute()) {
        Some(dir) => dir.join("assetgate").join(ADMIN_SOCKET_NAME),
        None => PathBuf::from(format!("/tmp/assetgate-{uid}")).join(ADMIN_SOCKET_NAME),
    }
}

impl Config {
    /// The effective configuration as TOML (`check-config`): the derived
    /// `Serialize` of the validated values, so no key can be left out; secrets
    /// replaced by their length, the Redis password and the events URL's path
    /// hidden.
    pub fn redacted_toml(&self) -> String {
        let mut out = String::new();
        if let Some(src) = &self.source {
            out.push_str(&format!("# file layer: {}\n", src.display()));
        }
        match toml::to_string(self) {
            Ok(text) => out.push_str(&text),
            // Only a value TOML cannot hold (no such value validates today).
            Err(e) => out.push_str(&format!("# the configuration cannot be shown as TOML: {e}\n")),
        }
        out
    }
}

/// Longest Unix socket path (`sun_path` is 108 bytes with its NUL on Linux).
pub const MAX_SOCKET_PATH: usize = 107;
