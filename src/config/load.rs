//! The loader: built-in defaults < TOML file < environment, with secret
//! files, into [`super::Config`], validated once; errors name the key and
//! never show a secret's value.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

use super::error::ConfigError;
use super::human::Human;
use super::read::{self, read_secret_file_stamped, MAX_CONFIG_BYTES};
use super::types::redact_url;
use super::types::{
    default_admin_socket, default_max_tusd_requests, default_worker_threads, Config, FailMode, LogFormat,
    LogLevel, Origin, RedisUrl, ServerConfig, StateBackend, StateConfig, MAX_SOCKET_PATH,
};
use crate::secret::{Secret, SecretSet, MIN_SECRET_LEN};
use assetgate_core::config::{
    LinkConfig, NginxTypes, S3Config, StorageBackend, StorageConfig, TusdConfig, UploadConfig,
    DEFAULT_MAX_PARTS, MAX_MAX_PARTS, S3_OWN_PREFIX,
};

// ---------------------------------------------------------------------------
// Raw (deserialised) shape

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    listen: String,
    log_level: String,
    log_format: String,
    link: RawLink,
    upload: RawUpload,
    storage: RawStorage,
    tusd: RawTusd,
    server: RawServer,
    events: Option<super::events::RawEvents>,
    state: RawState,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            listen: "127.0.0.1:9750".into(),
            log_level: "info".into(),
            log_format: "text".into(),
            link: RawLink::default(),
            upload: RawUpload::default(),
            storage: RawStorage::default(),
            tusd: RawTusd::default(),
            server: RawServer::default(),
            events: None,
            state: RawState::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLink {
    secrets: Vec<String>,
    merge_slashes: bool,
    max_ttl: Option<Human>,
}

impl Default for RawLink {
    fn default() -> Self {
        RawLink {
            secrets: Vec::new(),
            merge_slashes: true,
            max_ttl: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpload {
    secrets: Vec<String>,
    clock_skew: Human,
    max_ttl: Human,
    content_types: Vec<String>,
    max_size: Option<Human>,
    allow_deferred_length: bool,
    check_content: bool,
    session_binding: String,
    session_grace: Human,
    single_use: bool,
    nginx_types: Option<PathBuf>,
    max_parts: u32,
}

impl Default for RawUpload {
    fn default() -> Self {
        RawUpload {
            secrets: Vec::new(),
            clock_skew: Human::Int(30),
            max_ttl: Human::Int(86_400),
            content_types: Vec::new(),
            max_size: None,
            allow_deferred_length: false,
            check_content: false,
            session_binding: "window".into(),
            session_grace: Human::Int(3600),
            single_use: false,
            nginx_types: None,
            max_parts: DEFAULT_MAX_PARTS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    root: Option<PathBuf>,
    overwrite: bool,
    public_prefix: String,
    private_prefix: String,
    backend: String,
    s3: Option<RawS3>,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            root: None,
            overwrite: false,
            public_prefix: "public".into(),
            private_prefix: "private".into(),
            backend: "fs".into(),
            s3: None,
        }
    }
}

/// `[storage.s3]` as written. Each credential comes as the value or as a file
/// holding it (`…_file`: one line), never both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawS3 {
    endpoint: Option<String>,
    region: String,
    bucket: Option<String>,
    path_style: Option<bool>,
    upload_prefix: String,
    access_key_id: Option<String>,
    access_key_id_file: Option<PathBuf>,
    secret_access_key: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    read_access_key_id: Option<String>,
    read_access_key_id_file: Option<PathBuf>,
    read_secret_access_key: Option<String>,
    read_secret_access_key_file: Option<PathBuf>,
}

impl Default for RawS3 {
    fn default() -> Self {
        RawS3 {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: None,
            path_style: None,
            upload_prefix: "tus/".into(),
            access_key_id: None,
            access_key_id_file: None,
            secret_access_key: None,
            secret_access_key_file: None,
            read_access_key_id: None,
            read_access_key_id_file: None,
            read_secret_access_key: None,
            read_secret_access_key_file: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTusd {
    upload_dir: Option<PathBuf>,
    base_path: String,
    reconcile_interval: Human,
    abandon_after: Human,
    upload_ids: String,
}

impl Default for RawTusd {
    fn default() -> Self {
        RawTusd {
            upload_dir: None,
            base_path: "/files/".into(),
            reconcile_interval: Human::Int(60),
            abandon_after: Human::Int(86_400),
            upload_ids: "signed".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    header_read_timeout: Human,
    body_read_timeout: Human,
    request_timeout: Human,
    max_connections: u64,
    max_tusd_requests: Option<u64>,
    shutdown_grace: Human,
    max_body_bytes: Human,
    worker_threads: Option<u64>,
    admin_socket: Option<PathBuf>,
    admin_listen: Option<String>,
    admin_listen_non_loopback: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            header_read_timeout: Human::Int(10),
            body_read_timeout: Human::Int(10),
            request_timeout: Human::Int(30),
            max_connections: 4096,
            max_tusd_requests: None,
            shutdown_grace: Human::Int(10),
            max_body_bytes: Human::Int(256 * 1024),
            worker_threads: None,
            admin_socket: None,
            admin_listen: None,
            admin_listen_non_loopback: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawState {
    backend: String,
    redis_url: Option<String>,
    key_prefix: String,
    timeout: Human,
    sync_interval: Human,
    stale_after: Human,
    single_use_when_down: String,
    revocation_when_down: String,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            backend: "memory".into(),
            redis_url: None,
            key_prefix: "assetgate:".into(),
            timeout: Human::Text("100ms".into()),
            sync_interval: Human::Text("1s".into()),
            stale_after: Human::Text("10s".into()),
            single_use_when_down: "fail_closed".into(),
            revocation_when_down: "fail_closed".into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Loading

/// Where configuration comes from: the optional file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE` (takes precedence over `ASSETGATE_CONFIG`).
    pub file: Option<PathBuf>,
}

/// Loads, merges and validates the configuration from the process environment.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    // `XDG_RUNTIME_DIR`: where the admin socket goes by default.
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("ASSETGATE_") || k == "XDG_RUNTIME_DIR")
        .collect();
    load_from(sources, &env)
}

/// Like [`load`] with an explicit environment (tests).
pub fn load_from(sources: &Sources, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    let file = sources.file.clone().or_else(|| {
        get("ASSETGATE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });

    let mut figment = Figment::new();
    let mut origin = Origin::default();
    if let Some(path) = &file {
        let read = read::read(path, MAX_CONFIG_BYTES)
            .map_err(|e| ConfigError::new("--config", format!("{}: {e}", path.display())))?;
        let text = read
            .text()
            .map_err(|e| ConfigError::new("--config", format!("{}: {e}", path.display())))?;
        origin.file = Some((read.stamp, keys_of(text)));
        origin.read.push((path.clone(), read.stamp));
        figment = figment.merge(FileLayer {
            path: path.clone(),
            text: text.to_owned(),
        });
    }
    // Only documented names map onto keys: `ASSETGATE_LISTEN` and friends, and
    // `ASSETGATE_<SECTION>__<KEY>`. Secret variables are handled below. The list
    // is passed in (not read by figment from the process) so tests are hermetic.
    for (name, value) in env {
        let Some(key) = env_key(name) else {
            continue;
        };
        // A secret is the text as given: parsed, a key ID of digits would
        // become an integer (and its error would have to describe it).
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        let value: figment::value::Value = if is_secret_key(&segments) {
            value.clone().into()
        } else {
            value.parse().expect("figment parses any string")
        };
        figment = figment.merge((key, value));
    }

    let mut secret_files = Vec::new();
    for (section, var) in [("link", "LINK"), ("upload", "UPLOAD")] {
        let one = format!("ASSETGATE_{var}_SECRET");
        let many = format!("ASSETGATE_{var}_SECRET_FILE");
        match (get(&one), get(&many)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    format!("{section}.secrets"),
                    format!("both {one} and {many} are set; set only one"),
                ))
            }
            (Some(v), None) => figment = figment.merge((format!("{section}.secrets"), vec![v])),
            (None, Some(path)) => {
                let (secrets, stamp) = read_secret_file_stamped(Path::new(&path))
                    .map_err(|e| ConfigError::new(format!("{section}.secrets ({many})"), e))?;
                figment = figment.merge((format!("{section}.secrets"), secrets));
                origin.read.push((PathBuf::from(&path), stamp));
                secret_files.push(PathBuf::from(path));
            }
            (None, None) => {}
        }
    }

    // `[events]`: the same two variables as link/upload (`ASSETGATE_EVENTS_SECRET`,
    // `ASSETGATE_EVENTS_SECRET_FILE`, the latter also spelt `…EVENTS__SECRET_FILE`).
    // They replace both `secret` and `secrets` of the file layer.
    let events_env = super::events::secrets_from_env(&get)?;

    let raw: Raw = figment.extract().map_err(figment_error)?;
    let runtime_dir = get("XDG_RUNTIME_DIR");
    let uid = rustix::process::geteuid().as_raw();
    let mut config = validate(raw, file, events_env, runtime_dir.as_deref(), uid)?;
    config.secret_files = secret_files;
    config.origin = origin;
    Ok(config)
}

/// The dotted key an environment variable sets (`ASSETGATE_UPLOAD__MAX_SIZE`
/// -> `upload.max_size`, `ASSETGATE_LISTEN` -> `listen`), or `None` for a
/// variable that is not a key's: the secret variables (read apart, by
/// `load_from`), `ASSETGATE_CONFIG`, anything else. The one mapping the loader
/// uses, and the one docs/configuration.md's env column is checked against.
fn env_key(name: &str) -> Option<String> {
    let key = name.strip_prefix("ASSETGATE_")?.to_ascii_lowercase();
    if key == "events__secret_file" {
        return None; // an alias of ASSETGATE_EVENTS_SECRET_FILE, read apart
    }
    if !(key.contains("__") || matches!(key.as_str(), "listen" | "log_level" | "log_format")) {
        return None;
    }
    Some(key.replace("__", "."))
}

/// The configuration file's text as figment's TOML layer, under the file's
/// name (as `Toml::file` would be): read once, by [`read::read`].
struct FileLayer {
    path: PathBuf,
    text: String,
}

impl figment::Provider for FileLayer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Toml::string(&self.text).data()
    }
}

/// The dotted keys a TOML text sets (`upload.max_size`; tables are not keys
/// themselves), as figment parses it. Empty when it does not parse: loading
/// then fails with the parser's error anyway.
fn keys_of(text: &str) -> BTreeSet<String> {
    use figment::value::{Dict, Value};
    fn walk(dict: &Dict, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, v) in dict {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Dict(_, d) => walk(d, &key, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(data) = figment::Provider::data(&Toml::string(text)) {
        for dict in data.values() {
            walk(dict, "", &mut out);
        }
    }
    out
}

/// Words that make a key secret-ish wherever it appears (`[link] secrets`,
/// `[events] secret`, `signing_secret_file`, ...): an error about such a key
/// never shows its value. Matched on the key's name, so a section added later
/// is covered without being listed here.
const SECRET_KEY_WORDS: [&str; 7] = [
    "secret",
    "access_key",
    "password",
    "passwd",
    "token",
    "credential",
    "private_key",
];

/// Whether any segment of a dotted key path names a secret.
fn is_secret_key(path: &[String]) -> bool {
    path.iter().any(|segment| {
        let segment = segment.to_ascii_lowercase();
        SECRET_KEY_WORDS.iter().any(|w| segment.contains(w))
    })
}

/// What kind of value was found, without the value itself.
fn kind_of(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "unit",
        Actual::Option => "an option",
        Actual::Seq => "a sequence",
        Actual::Map => "a table",
        Actual::NewtypeStruct
        | Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant
        | Actual::Other(_) => "a value",
    }
}

/// The message for an error on a secret-ish key: the expectation, the kind
/// of value found, never the value (figment's own text quotes it).
fn redacted_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!(
                "invalid type: expected {expected}, found {} (value not shown)",
                kind_of(actual)
            )
        }
        Kind::InvalidValue(actual, expected) => {
            format!(
                "invalid value: expected {expected}, found {} (value not shown)",
                kind_of(actual)
            )
        }
        Kind::InvalidLength(len, expected) => format!("invalid length {len}, expected {expected}"),
        Kind::UnknownVariant(_, expected) => {
            format!("unknown variant (value not shown), expected one of {expected:?}")
        }
        Kind::MissingField(field) => format!("missing field `{field}`"),
        Kind::DuplicateField(field) => format!("duplicate field `{field}`"),
        Kind::Unsupported(actual) | Kind::UnsupportedKey(actual, _) => {
            format!("unsupported value: found {} (value not shown)", kind_of(actual))
        }
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => {
            "integer out of range (value not shown)".into()
        }
        // Free text from a deserializer may quote the value.
        Kind::Message(_) | Kind::UnknownField(..) => "invalid value (not shown)".into(),
    }
}

fn figment_error(e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    // `upload.secrets[1]`, like the keys validation names.
    let mut path = String::new();
    for segment in &e.path {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
        }
    }
    let message = match &e.kind {
        Kind::UnknownField(field, _) => {
            if e.path.last().is_none_or(|p| p != field) {
                path = if path.is_empty() {
                    field.clone()
                } else {
                    format!("{path}.{field}")
                };
            }
            "unknown key".to_string()
        }
        other if is_secret_key(&e.path) => redacted_kind(other),
        other => one_line(&other.to_string()),
    };
    let key = if path.is_empty() {
        e.metadata
            .as_ref()
            .and_then(|m| m.source.as_ref())
            .map(|s| s.to_string())
            .unwrap_or_else(|| "config".into())
    } else {
        path
    };
    ConfigError::new(key, message)
}

/// Parser messages (TOML) span several lines with a source excerpt; the
/// contract is one line, so keep the sentences and drop the excerpt.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.contains(" | ")
                && !l.chars().all(|c| "^|- ".contains(c))
        })
        .collect::<Vec<_>>()
        .join(": ")
}

fn secrets(key: &str, list: Vec<String>) -> Result<SecretSet, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.into_iter().enumerate() {
        if s.is_empty() {
            return Err(ConfigError::new(format!("{key}[{i}]"), "empty secret"));
        }
        crate::secret::check_text(&s).map_err(|why| ConfigError::new(format!("{key}[{i}]"), why))?;
        if s.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                format!("{key}[{i}]"),
                format!(
                    "secret is {} bytes, at least {MIN_SECRET_LEN} are required",
                    s.len()
                ),
            ));
        }
        out.push(Secret::new(s.into_bytes()));
    }
    Ok(SecretSet::new(out))
}

fn validate(
    raw: Raw,
    source: Option<PathBuf>,
    events_env: Option<Vec<String>>,
    xdg_runtime_dir: Option<&str>,
    uid: u32,
) -> Result<Config, ConfigError> {
    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|_| ConfigError::new("listen", format!("{:?} is not an IP:port address", raw.listen)))?;
    let log_level: LogLevel = raw
        .log_level
        .parse()
        .map_err(|e| ConfigError::new("log_level", format!("{:?}: {e}", raw.log_level)))?;
    let log_format: LogFormat = raw
        .log_format
        .parse()
        .map_err(|e| ConfigError::new("log_format", e))?;

    let link_max_ttl = raw
        .link
        .max_ttl
        .as_ref()
        .map(|h| h.seconds("link.max_ttl"))
        .transpose()?;
    if link_max_ttl.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::new(
            "link.max_ttl",
            "must be at least 1 second (leave it unset to accept links of any lifetime)",
        ));
    }
    let link = LinkConfig {
        secrets: secrets("link.secrets", raw.link.secrets)?,
        merge_slashes: raw.link.merge_slashes,
        max_ttl: link_max_ttl,
    };

    let mut content_types = Vec::with_capacity(raw.upload.content_types.len());
    for (i, ct) in raw.upload.content_types.iter().enumerate() {
        content_types.push(ct.parse().map_err(|_| {
            ConfigError::new(
                format!("upload.content_types[{i}]"),
                format!("{ct:?} is not a type/subtype pattern (e.g. \"image/png\", \"image/*\", \"*/*\")"),
            )
        })?);
    }
    let upload = UploadConfig {
        secrets: secrets("upload.secrets", raw.upload.secrets)?,
        clock_skew: raw.upload.clock_skew.seconds("upload.clock_skew")?,
        max_ttl: raw.upload.max_ttl.seconds("upload.max_ttl")?,
        content_types,
        max_size: raw
            .upload
            .max_size
            .map(|h| h.bytes("upload.max_size"))
            .transpose()?,
        allow_deferred_length: raw.upload.allow_deferred_length,
        check_content: raw.upload.check_content,
        session_binding: raw
            .upload
            .session_binding
            .parse()
            .map_err(|e| ConfigError::new("upload.session_binding", e))?,
        session_grace: raw.upload.session_grace.seconds("upload.session_grace")?,
        single_use: raw.upload.single_use,
        nginx_types: match &raw.upload.nginx_types {
            None => NginxTypes::builtin(),
            Some(p) => load_nginx_types(p).map_err(|e| ConfigError::new("upload.nginx_types", e))?,
        },
        max_parts: match raw.upload.max_parts {
            n @ 1..=MAX_MAX_PARTS => n,
            _ => {
                return Err(ConfigError::new(
                    "upload.max_parts",
                    format!("must be between 1 and {MAX_MAX_PARTS}"),
                ))
            }
        },
    };
    let base_path = raw.tusd.base_path.clone();
    if !base_path.starts_with('/') || base_path.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            "tusd.base_path",
            format!("{base_path:?} must be an absolute URL path like \"/files/\" (tusd's -base-path)"),
        ));
    }
    let reconcile_interval = raw.tusd.reconcile_interval.seconds("tusd.reconcile_interval")?;
    let abandon_after = raw.tusd.abandon_after.seconds("tusd.abandon_after")?;
    let upload_ids = raw
        .tusd
        .upload_ids
        .parse()
        .map_err(|e| ConfigError::new("tusd.upload_ids", e))?;

    for (key, prefix) in [
        ("storage.public_prefix", &raw.storage.public_prefix),
        ("storage.private_prefix", &raw.storage.private_prefix),
    ] {
        let ok = !prefix.is_empty()
            && prefix
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
        if !ok {
            return Err(ConfigError::new(
                key,
                format!("{prefix:?} must be a relative path of plain segments"),
            ));
        }
    }
    if raw.storage.public_prefix == raw.storage.private_prefix {
        return Err(ConfigError::new(
            "storage.private_prefix",
            "must differ from storage.public_prefix",
        ));
    }
    for (key, p) in [
        ("storage.root", &raw.storage.root),
        ("tusd.upload_dir", &raw.tusd.upload_dir),
    ] {
        if let Some(p) = p {
            if !p.is_absolute() {
                return Err(ConfigError::new(
                    key,
                    format!("{} must be an absolute path", p.display()),
                ));
            }
        }
    }

    let (backend, s3) = validate_backend(&raw.storage)?;
    if backend == StorageBackend::S3 {
        refuse_fs_only(&raw.storage, &raw.tusd)?;
    }
    let s3_signer = match &s3 {
        Some(s3) => Some(std::sync::Arc::new(crate::s3::sign::S3Signer::for_downloads(s3)?)),
        None => None,
    };

    let header_read_timeout = raw
        .server
        .header_read_timeout
        .seconds("server.header_read_timeout")?;
    if header_read_timeout.is_zero() || header_read_timeout > Duration::from_secs(30) {
        return Err(ConfigError::new(
            "server.header_read_timeout",
            "must be between 1 and 30 seconds",
        ));
    }
    let body_read_timeout = raw.server.body_read_timeout.seconds("server.body_read_timeout")?;
    if body_read_timeout.is_zero() || body_read_timeout > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "server.body_read_timeout",
            "must be between 1 and 60 seconds",
        ));
    }
    let request_timeout = raw.server.request_timeout.seconds("server.request_timeout")?;
    if request_timeout < body_read_timeout || request_timeout > Duration::from_secs(300) {
        return Err(ConfigError::new(
            "server.request_timeout",
            format!(
                "must be between server.body_read_timeout ({} s) and 300 seconds",
                body_read_timeout.as_secs()
            ),
        ));
    }
    if raw.server.max_connections < 2 {
        return Err(ConfigError::new("server.max_connections", "must be at least 2"));
    }
    let max_connections = usize::try_from(raw.server.max_connections).unwrap_or(usize::MAX);
    let max_tusd_requests = match raw.server.max_tusd_requests {
        None => default_max_tusd_requests(max_connections),
        Some(n) if n >= 1 && n < raw.server.max_connections => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                "server.max_tusd_requests",
                format!(
                    "must be at least 1 and below server.max_connections ({max_connections}), so /auth and the health checks always find a connection"
                ),
            ))
        }
    };
    let worker_threads = match raw.server.worker_threads {
        None => default_worker_threads(),
        Some(n @ 1..=256) => n as usize,
        Some(_) => {
            return Err(ConfigError::new(
                "server.worker_threads",
                "must be between 1 and 256 (leave it unset for half the CPUs)",
            ))
        }
    };
    let admin_listen = match &raw.server.admin_listen {
        None => None,
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                ConfigError::new(
                    "server.admin_listen",
                    format!("{text:?} is not an IP:port address"),
                )
            })?;
            if addr.port() != 0 && addr == listen {
                return Err(ConfigError::new(
                    "server.admin_listen",
                    "must differ from listen: nginx must never reach the admin endpoints",
                ));
            }
            if !addr.ip().is_loopback() && !raw.server.admin_listen_non_loopback {
                return Err(ConfigError::new(
                    "server.admin_listen",
                    format!(
                        "{addr} is not a loopback address: whoever reaches it can list, revoke and unrevoke links. \
                         Use the admin socket (server.admin_socket), or set server.admin_listen_non_loopback = true \
                         and restrict who reaches the address (firewall, NetworkPolicy)"
                    ),
                ));
            }
            Some(addr)
        }
    };
    let admin_socket = match raw.server.admin_socket {
        Some(p) => p,
        None => default_admin_socket(xdg_runtime_dir, uid),
    };
    validate_socket_path("server.admin_socket", &admin_socket)?;
    let state = validate_state(raw.state)?;
    let max_body_bytes = raw.server.max_body_bytes.bytes("server.max_body_bytes")?;
    if max_body_bytes == 0 || max_body_bytes > 16 * 1024 * 1024 {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            "must be between 1 byte and 16 MiB",
        ));
    }

    let events = raw
        .events
        .map(|e| super::events::validate(e, events_env))
        .transpose()?;

    Ok(Config {
        listen,
        log_level,
        log_format,
        link,
        upload,
        storage: StorageConfig {
            root: raw.storage.root,
            overwrite: raw.storage.overwrite,
            public_prefix: raw.storage.public_prefix,
            private_prefix: raw.storage.private_prefix,
            backend,
            s3,
        },
        s3_signer,
        tusd: TusdConfig {
            upload_dir: raw.tusd.upload_dir,
            base_path,
            reconcile_interval: (!reconcile_interval.is_zero()).then_some(reconcile_interval),
            abandon_after,
            upload_ids,
        },
        server: ServerConfig {
            header_read_timeout,
            body_read_timeout,
            request_timeout,
            max_connections,
            max_tusd_requests,
            shutdown_grace: raw.server.shutdown_grace.seconds("server.shutdown_grace")?,
            max_body_bytes,
            worker_threads,
            admin_socket,
            admin_listen,
            admin_listen_non_loopback: raw.server.admin_listen_non_loopback,
        },
        events,
        state,
        source,
        secret_files: Vec::new(),
        origin: Origin::default(),
    })
}

/// With `[storage] backend = "s3"`, the keys that only mean something for the
/// filesystem are refused when the operator set them (none has a default that
/// sets it: `root` and `upload_dir` default to unset, `overwrite` to
/// `false`), rather than silently ignored: the uploads and the assets are in
/// the bucket, and a publish there never replaces an object (`If-None-Match:
/// *`, whatever `overwrite` says).
fn refuse_fs_only(storage: &RawStorage, tusd: &RawTusd) -> Result<(), ConfigError> {
    let elsewhere =
        "is for backend = \"fs\" only; with backend = \"s3\" the uploads and the assets are in the bucket \
                     ([storage.s3]): remove it";
    if storage.root.is_some() {
        return Err(ConfigError::new("storage.root", elsewhere));
    }
    if tusd.upload_dir.is_some() {
        return Err(ConfigError::new("tusd.upload_dir", elsewhere));
    }
    // On S3 nothing compares a hook with the upload's stored `.info` the way
    // the filesystem mover does: the signed ID (pre-create's, verified on
    // every later hook) is what ties a post-finish to the upload its token
    // created. Without it, a forged post-finish with one's own token and
    // another user's finished upload ID would publish their bytes.
    if tusd.upload_ids.trim() == "server" {
        return Err(ConfigError::new(
            "tusd.upload_ids",
            "\"server\" is for backend = \"fs\" only; with backend = \"s3\" the upload IDs must be \"signed\" \
             (tusd v2: the hook's ID is the proof it names the upload its token created): remove it",
        ));
    }
    if storage.overwrite {
        return Err(ConfigError::new(
            "storage.overwrite",
            "true is for backend = \"fs\" only; with backend = \"s3\" a publish never replaces an object \
             (conditional writes, If-None-Match: *): remove it",
        ));
    }
    Ok(())
}

/// `[storage] backend` and `[storage.s3]`: the section exactly with `s3`,
/// every prefix apart from the others and from assetgate's own
/// ([`S3_OWN_PREFIX`]), each credential from its value or its file.
fn validate_backend(raw: &RawStorage) -> Result<(StorageBackend, Option<S3Config>), ConfigError> {
    let backend = match raw.backend.as_str() {
        "fs" => StorageBackend::Fs,
        "s3" => StorageBackend::S3,
        other => {
            return Err(ConfigError::new(
                "storage.backend",
                format!("{other:?}: expected \"fs\" or \"s3\""),
            ))
        }
    };
    let s3 = match (backend, &raw.s3) {
        (StorageBackend::Fs, None) => return Ok((backend, None)),
        (StorageBackend::Fs, Some(_)) => {
            return Err(ConfigError::new(
                "storage.s3",
                "set, but storage.backend is \"fs\": set backend = \"s3\" or remove the section",
            ))
        }
        (StorageBackend::S3, None) => {
            return Err(ConfigError::new(
                "storage.s3",
                "backend = \"s3\" needs the [storage.s3] section (at least bucket and the credentials)",
            ))
        }
        (StorageBackend::S3, Some(s3)) => s3,
    };
    let endpoint = match &s3.endpoint {
        None => None,
        Some(e) => Some(validate_endpoint(e)?),
    };
    if s3.region.is_empty() || !s3.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ConfigError::new(
            "storage.s3.region",
            format!("{:?} is not a region name (e.g. \"us-east-1\")", s3.region),
        ));
    }
    let bucket = match &s3.bucket {
        None => {
            return Err(ConfigError::new(
                "storage.s3.bucket",
                "missing: the bucket tusd writes into (its -s3-bucket)",
            ))
        }
        Some(b) => b.clone(),
    };
    // S3's rules for bucket names: 3 to 63 of a-z 0-9 . -, starting and
    // ending with a letter or digit (no path, no `/`).
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !bucket_ok {
        return Err(ConfigError::new(
            "storage.s3.bucket",
            format!("{bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')"),
        ));
    }
    let prefix = &s3.upload_prefix;
    let prefix_ok = prefix.ends_with('/')
        && prefix
            .trim_end_matches('/')
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'));
    if !prefix_ok {
        return Err(ConfigError::new(
            "storage.s3.upload_prefix",
            format!("{prefix:?} must be plain segments ending in '/' (e.g. \"tus/\"), as tusd's -s3-object-prefix"),
        ));
    }
    let overlaps = |a: &str, b: &str| a.starts_with(b) || b.starts_with(a);
    for (key, other) in [
        ("storage.public_prefix", format!("{}/", raw.public_prefix)),
        ("storage.private_prefix", format!("{}/", raw.private_prefix)),
        ("assetgate's own prefix", S3_OWN_PREFIX.to_string()),
    ] {
        if overlaps(prefix, &other) {
            return Err(ConfigError::new(
                "storage.s3.upload_prefix",
                format!("{prefix:?} overlaps {key} ({other:?}): uploads and published objects must not share a prefix"),
            ));
        }
    }
    for (key, p) in [
        ("storage.public_prefix", &raw.public_prefix),
        ("storage.private_prefix", &raw.private_prefix),
    ] {
        if overlaps(&format!("{p}/"), S3_OWN_PREFIX) {
            return Err(ConfigError::new(
                key,
                format!("{p:?} overlaps assetgate's own prefix ({S3_OWN_PREFIX:?}) in the bucket"),
            ));
        }
    }
    // On S3 the gate itself decides that a path is public (signed without a
    // link, `http::auth`), by prefix: a private prefix inside the public one
    // (or the reverse) would make private objects public. (On fs nginx's
    // longest `^~` match routes them; in a bucket there is no such routing.)
    let (public, private) = (
        format!("{}/", raw.public_prefix),
        format!("{}/", raw.private_prefix),
    );
    if overlaps(&public, &private) {
        return Err(ConfigError::new(
            "storage.private_prefix",
            format!(
                "{:?} overlaps storage.public_prefix ({:?}): with backend = \"s3\" they must be apart",
                raw.private_prefix, raw.public_prefix
            ),
        ));
    }
    let access_key_id = s3_secret(
        "storage.s3.access_key_id",
        &s3.access_key_id,
        &s3.access_key_id_file,
    )?
    .ok_or_else(|| ConfigError::new("storage.s3.access_key_id", "missing (or set access_key_id_file)"))?;
    let secret_access_key = s3_secret(
        "storage.s3.secret_access_key",
        &s3.secret_access_key,
        &s3.secret_access_key_file,
    )?
    .ok_or_else(|| {
        ConfigError::new(
            "storage.s3.secret_access_key",
            "missing (or set secret_access_key_file)",
        )
    })?;
    let read_access_key_id = s3_secret(
        "storage.s3.read_access_key_id",
        &s3.read_access_key_id,
        &s3.read_access_key_id_file,
    )?;
    let read_secret_access_key = s3_secret(
        "storage.s3.read_secret_access_key",
        &s3.read_secret_access_key,
        &s3.read_secret_access_key_file,
    )?;
    match (&read_access_key_id, &read_secret_access_key) {
        (Some(_), None) => {
            return Err(ConfigError::new(
                "storage.s3.read_secret_access_key",
                "missing: set with read_access_key_id (or neither)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "storage.s3.read_access_key_id",
                "missing: set with read_secret_access_key (or neither)",
            ))
        }
        _ => {}
    }
    Ok((
        backend,
        Some(S3Config {
            path_style: s3.path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            region: s3.region.clone(),
            bucket,
            upload_prefix: prefix.clone(),
            access_key_id,
            secret_access_key,
            read_access_key_id,
            read_secret_access_key,
        }),
    ))
}

/// `http://host:port` or `https://host[:port]`, nothing else (no user, path
/// or query: the SDK adds the bucket and key).
fn validate_endpoint(e: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError::new(
            "storage.s3.endpoint",
            format!(
                "{:?} must be http://host:port or https://host[:port] (no user, path or query)",
                redact_url(e)
            ),
        )
    };
    let uri: http::Uri = e.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority = uri.authority().ok_or_else(bad)?;
    if !scheme_ok
        || authority.as_str().contains('@')
        || authority.host().is_empty()
        || uri.query().is_some()
        || !matches!(uri.path(), "" | "/")
    {
        return Err(bad());
    }
    Ok(format!("{}://{}", uri.scheme_str().unwrap_or("http"), authority))
}

/// One credential: the value, or the one line of its file; never both. The
/// error names the key and never shows the value.
fn s3_secret(
    key: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let text = match (value, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key,
                format!("both {key} and {key}_file are set; set only one"),
            ))
        }
        (None, None) => return Ok(None),
        (Some(v), None) => v.clone(),
        (None, Some(path)) => {
            let lines = read_secret_file_stamped(path)
                .map_err(|e| ConfigError::new(format!("{key}_file"), e))?
                .0;
            match <[String; 1]>::try_from(lines) {
                Ok([one]) => one,
                Err(_) => {
                    return Err(ConfigError::new(
                        format!("{key}_file"),
                        format!(
                            "{}: more than one line; the file holds one credential",
                            path.display()
                        ),
                    ))
                }
            }
        }
    };
    if text.is_empty() {
        return Err(ConfigError::new(key, "empty"));
    }
    crate::secret::check_text(&text).map_err(|why| ConfigError::new(key, why))?;
    if text.contains(' ') {
        return Err(ConfigError::new(key, "contains a space (value not shown)"));
    }
    Ok(Some(Secret::new(text.into_bytes())))
}

/// Reads and parses an nginx `types { … }` file (a regular file of at most
/// [`assetgate_core::policy::served::MAX_TYPES_BYTES`]).
fn load_nginx_types(path: &Path) -> Result<NginxTypes, String> {
    let file = read::read(path, assetgate_core::policy::served::MAX_TYPES_BYTES as u64)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let text = file.text().map_err(|e| format!("{}: {e}", path.display()))?;
    let table =
        assetgate_core::policy::ServedTypes::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(NginxTypes {
        path: Some(path.to_path_buf()),
        table: std::sync::Arc::new(table),
    })
}

/// A Unix socket path: absolute, in a directory (not `/` itself), short
/// enough for `sun_path`.
fn validate_socket_path(key: &str, p: &Path) -> Result<(), ConfigError> {
    if !p.is_absolute() || p.parent().is_none_or(|d| d == Path::new("/")) || p.file_name().is_none() {
        return Err(ConfigError::new(
            key,
            format!(
                "{} must be an absolute path in a directory of its own (e.g. /run/assetgate/admin.sock)",
                p.display()
            ),
        ));
    }
    let max = MAX_SOCKET_PATH;
    if p.as_os_str().len() > max {
        return Err(ConfigError::new(
            key,
            format!(
                "{} is too long for a Unix socket path ({max} bytes at most)",
                p.display()
            ),
        ));
    }
    Ok(())
}

fn validate_state(raw: RawState) -> Result<StateConfig, ConfigError> {
    let backend = match (raw.backend.as_str(), raw.redis_url) {
        ("memory", None) => StateBackend::Memory,
        ("memory", Some(_)) => {
            return Err(ConfigError::new(
                "state.redis_url",
                "set only with backend = \"redis\"",
            ))
        }
        ("redis", None) => {
            return Err(ConfigError::new(
                "state.redis_url",
                "backend = \"redis\" needs redis_url (e.g. \"redis://127.0.0.1:6379/0\")",
            ))
        }
        ("redis", Some(url)) => StateBackend::Redis {
            url: validate_redis_url(&url)?,
        },
        (other, _) => {
            return Err(ConfigError::new(
                "state.backend",
                format!("{other:?}: expected \"memory\" or \"redis\""),
            ))
        }
    };
    let key_prefix = raw.key_prefix;
    if key_prefix.is_empty() || key_prefix.len() > 64 || key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "state.key_prefix",
            "must be 1 to 64 printable ASCII characters without spaces",
        ));
    }
    let timeout = raw.timeout.duration("state.timeout")?;
    if timeout < Duration::from_millis(5) || timeout > Duration::from_secs(5) {
        return Err(ConfigError::new("state.timeout", "must be between 5ms and 5s"));
    }
    let sync_interval = raw.sync_interval.duration("state.sync_interval")?;
    if sync_interval < Duration::from_millis(50) || sync_interval > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "state.sync_interval",
            "must be between 50ms and 60s",
        ));
    }
    let stale_after = raw.stale_after.duration("state.stale_after")?;
    if stale_after < sync_interval * 2 {
        return Err(ConfigError::new(
            "state.stale_after",
            "must be at least twice state.sync_interval",
        ));
    }
    let mode = |key: &str, v: &str| match v {
        "fail_closed" => Ok(FailMode::Closed),
        "fail_open" => Ok(FailMode::Open),
        other => Err(ConfigError::new(
            key,
            format!("{other:?}: expected \"fail_closed\" or \"fail_open\""),
        )),
    };
    Ok(StateConfig {
        backend,
        key_prefix,
        timeout,
        sync_interval,
        stale_after,
        single_use_when_down: mode("state.single_use_when_down", &raw.single_use_when_down)?,
        revocation_when_down: mode("state.revocation_when_down", &raw.revocation_when_down)?,
    })
}

/// Parsed by the client's own parser (`redis::parse_redis_url` and the
/// connection-info conversion) so what passes here is what connects later.
fn validate_redis_url(url: &str) -> Result<RedisUrl, ConfigError> {
    use redis::IntoConnectionInfo as _;
    let shown = redact_url(url);
    if url.starts_with("rediss://") {
        return Err(ConfigError::new(
            "state.redis_url",
            format!("{shown}: TLS (rediss://) is not built in; reach Redis over loopback, a private network or a unix socket"),
        ));
    }
    if !(url.starts_with("redis://") || url.starts_with("unix://") || url.starts_with("redis+unix://")) {
        return Err(ConfigError::new(
            "state.redis_url",
            format!("{shown}: expected redis://host:port/db or unix:///path"),
        ));
    }
    match url.into_connection_info() {
        Ok(_) => Ok(RedisUrl(url.to_string())),
        Err(e) => Err(ConfigError::new(
            "state.redis_url",
            format!("{shown}: {}", one_line(&e.to_string()).replace(url, &shown)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Stamp, MAX_SECRET_FILE_BYTES};
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn with_file(f: &tempfile::NamedTempFile) -> Sources {
        Sources {
            file: Some(f.path().to_path_buf()),
        }
    }

    #[test]
    fn defaults() {
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9750");
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.link.merge_slashes);
        assert!(c.link.secrets.is_empty());
        assert_eq!(c.upload.clock_skew, Duration::from_secs(30));
        assert_eq!(c.upload.max_ttl, Duration::from_secs(86_400));
        assert!(!c.storage.overwrite);
        assert_eq!(c.storage.public_prefix, "public");
        assert_eq!(c.server.max_body_bytes, 256 * 1024);
    }

    #[test]
    fn file_then_env_precedence() {
        let f = file(
            "listen = \"127.0.0.1:1000\"\nlog_format = \"json\"\n[link]\nsecrets = [\"newest-secret-0001\", \"older-secret-00002\"]\nmerge_slashes = false\n[upload]\nmax_size = \"5GiB\"\nmax_ttl = \"24h\"\n",
        );
        let c = load_from(&with_file(&f), &[]).unwrap();
        assert_eq!(c.listen.port(), 1000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.link.secrets.len(), 2);
        assert_eq!(c.link.secrets.newest().unwrap().expose(), b"newest-secret-0001");
        assert!(!c.link.merge_slashes);
        assert_eq!(c.upload.max_size, Some(5 * 1024 * 1024 * 1024));
        assert_eq!(c.upload.max_ttl, Duration::from_secs(86_400));

        let c = load_from(
            &with_file(&f),
            &env(&[
                ("ASSETGATE_LISTEN", "127.0.0.1:2000"),
                ("ASSETGATE_LINK_SECRET", "from-the-env-0123456"),
                ("ASSETGATE_LINK__MERGE_SLASHES", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(c.link.secrets.len(), 1);
        assert_eq!(c.link.secrets.newest().unwrap().expose(), b"from-the-env-0123456");
        assert!(c.link.merge_slashes);
    }

    #[test]
    fn worker_threads_default_to_half_the_cpus_and_are_bounded() {
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(c.server.worker_threads, default_worker_threads());
        assert!(c.server.worker_threads >= 1);
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_SERVER__WORKER_THREADS", "3")]),
        )
        .unwrap();
        assert_eq!(c.server.worker_threads, 3);
        assert!(c.redacted_toml().contains("worker_threads = 3\n"));
        for bad in ["0", "257"] {
            let e = load_from(
                &Sources::default(),
                &env(&[("ASSETGATE_SERVER__WORKER_THREADS", bad)]),
            )
            .unwrap_err();
            assert_eq!(e.key, "server.worker_threads", "{bad}");
        }
    }

    #[test]
    fn slow_client_limits_default_and_are_validated() {
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.server.request_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_connections, 4096);
        assert_eq!(c.server.max_tusd_requests, 256);
        let out = c.redacted_toml();
        for line in [
            "body_read_timeout = 10\n",
            "request_timeout = 30\n",
            "max_tusd_requests = 256\n",
        ] {
            assert!(out.contains(line), "{out}");
        }
        let c = load_from(
            &Sources::default(),
            &env(&[
                ("ASSETGATE_SERVER__BODY_READ_TIMEOUT", "2s"),
                ("ASSETGATE_SERVER__REQUEST_TIMEOUT", "1m"),
                ("ASSETGATE_SERVER__MAX_CONNECTIONS", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.body_read_timeout, Duration::from_secs(2));
        assert_eq!(c.server.request_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_tusd_requests, 50, "half of a small budget");
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_SERVER__MAX_TUSD_REQUESTS", "4095")]),
        )
        .unwrap();
        assert_eq!(c.server.max_tusd_requests, 4095);

        for (text, key) in [
            ("[server]\nbody_read_timeout = 0\n", "server.body_read_timeout"),
            ("[server]\nbody_read_timeout = 61\n", "server.body_read_timeout"),
            (
                "[server]\nbody_read_timeout = \"soon\"\n",
                "server.body_read_timeout",
            ),
            (
                "[server]\nbody_read_timeout = 20\nrequest_timeout = 10\n",
                "server.request_timeout",
            ),
            ("[server]\nrequest_timeout = 301\n", "server.request_timeout"),
            ("[server]\nrequest_timeout = -1\n", "server.request_timeout"),
            ("[server]\nmax_connections = 1\n", "server.max_connections"),
            ("[server]\nmax_tusd_requests = 0\n", "server.max_tusd_requests"),
            ("[server]\nmax_tusd_requests = 4096\n", "server.max_tusd_requests"),
            (
                "[server]\nmax_connections = 10\nmax_tusd_requests = 10\n",
                "server.max_tusd_requests",
            ),
        ] {
            let e = err(text, &[]);
            assert_eq!(e.key, key, "{text:?}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn config_file_from_env_variable() {
        let f = file("listen = \"127.0.0.1:3000\"\n");
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_CONFIG", f.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 3000);
    }

    #[test]
    fn secret_file_one_per_line() {
        let f = file("\n  first-secret-abcdef  \r\nsecond-secret-abcdef\n\n");
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_UPLOAD_SECRET_FILE", f.path().to_str().unwrap())]),
        )
        .unwrap();
        let got: Vec<&[u8]> = c.upload.secrets.iter().map(|s| s.expose()).collect();
        assert_eq!(
            got,
            vec![&b"first-secret-abcdef"[..], &b"second-secret-abcdef"[..]]
        );
    }

    /// Issue 19, finding 10: every file the configuration names goes
    /// through the bounded reader: the link, upload and events secret files
    /// and the configuration file itself. A FIFO is refused without waiting
    /// for a writer, a file past its cap without being read, a secret that is
    /// not printable text naming its line, never its value.
    #[test]
    fn files_are_read_with_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_SECRET_FILE_BYTES + 1)
            .unwrap();
        let nul = dir.path().join("nul");
        std::fs::write(&nul, "first-secret-abcdef\n\nsecond-\0-SECRET-abcdef\n").unwrap();
        let bom = dir.path().join("bom");
        std::fs::write(&bom, "\u{feff}whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_string();
        for (var, file, key, why) in [
            (
                "ASSETGATE_LINK_SECRET_FILE",
                &fifo,
                "link.secrets",
                "not a regular file (a FIFO)",
            ),
            (
                "ASSETGATE_UPLOAD_SECRET_FILE",
                &huge,
                "upload.secrets",
                "larger than 65536 bytes",
            ),
            (
                "ASSETGATE_LINK_SECRET_FILE",
                &nul,
                "link.secrets",
                "line 3: contains a control character (a NUL byte)",
            ),
            (
                "ASSETGATE_EVENTS_SECRET_FILE",
                &fifo,
                "events.secrets",
                "not a regular file",
            ),
            (
                "ASSETGATE_EVENTS__SECRET_FILE",
                &bom,
                "events.secrets",
                "byte-order mark",
            ),
        ] {
            let e = load_from(&Sources::default(), &[(var.to_string(), path(file))]).unwrap_err();
            assert_eq!(e.key, format!("{key} ({var})"), "{e}");
            assert!(e.message.contains(why), "{e}");
            assert!(
                !e.to_string().contains("SECRET-abcdef") && !e.to_string().contains("MfKQ"),
                "{e}"
            );
        }
        // In the TOML file and the environment, too.
        let e = err("[link]\nsecrets = [\"link-secret-\\u0000-0123\"]\n", &[]);
        assert_eq!(e.key, "link.secrets[0]");
        assert!(e.message.contains("NUL"), "{e}");
        let e = err("", &[("ASSETGATE_UPLOAD_SECRET", "upload-secret-\x1b[0m-0123")]);
        assert_eq!(e.key, "upload.secrets[0]");

        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        for (file, why) in [
            (&fifo, "not a regular file (a FIFO)"),
            (&huge, "larger than 1048576 bytes"),
        ] {
            let e = load_from(
                &Sources {
                    file: Some(file.clone()),
                },
                &[],
            )
            .unwrap_err();
            assert_eq!(e.key, "--config");
            assert!(e.message.contains(why), "{e}");
        }
    }

    /// The keys a configuration file sets, for the reload's dropped-key check:
    /// dotted leaves, not the tables.
    #[test]
    fn origin_records_the_file_and_its_keys() {
        let f =
            file("listen = \"127.0.0.1:1\"\n[upload]\nmax_size = 5\n[tusd]\n[link]\nmerge_slashes = true\n");
        let c = load_from(&with_file(&f), &[]).unwrap();
        let (stamp, keys) = c.origin.file.clone().unwrap();
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            vec!["link.merge_slashes", "listen", "upload.max_size"]
        );
        assert!(stamp.same_file(&Stamp::of_path(f.path()).unwrap()));
        assert_eq!(c.origin.read.len(), 1);
        assert!(load_from(&Sources::default(), &[]).unwrap().origin.file.is_none());
    }

    fn err(text: &str, e: &[(&str, &str)]) -> ConfigError {
        let f = file(text);
        load_from(&with_file(&f), &env(e)).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(err("lisen = \"x\"\n", &[]).key, "lisen");
        assert_eq!(err("[link]\nsecret = [\"x\"]\n", &[]).key, "link.secret");
        assert_eq!(err("[link]\nsecrets = [\"\"]\n", &[]).key, "link.secrets[0]");
        let short = err("[link]\nsecrets = [\"long-enough-secret\", \"short\"]\n", &[]);
        assert_eq!(short.key, "link.secrets[1]");
        assert!(short.message.contains("5 bytes"), "{short}");
        assert!(
            !short.to_string().contains("short\""),
            "never echo a secret: {short}"
        );
        assert_eq!(err("listen = \"nowhere\"\n", &[]).key, "listen");
        assert_eq!(err("", &[("ASSETGATE_LISTEN", "1.2.3.4")]).key, "listen");
        assert_eq!(err("log_format = \"xml\"\n", &[]).key, "log_format");
        assert_eq!(
            err("[upload]\nmax_size = \"5 parsecs\"\n", &[]).key,
            "upload.max_size"
        );
        assert_eq!(
            err("[upload]\ncontent_types = [\"image\"]\n", &[]).key,
            "upload.content_types[0]"
        );
        assert_eq!(err("[storage]\nroot = \"relative\"\n", &[]).key, "storage.root");
        assert_eq!(
            err("[server]\nheader_read_timeout = 60\n", &[]).key,
            "server.header_read_timeout"
        );
        assert_eq!(err("", &[("ASSETGATE_LINK__NOPE", "1")]).key, "link.nope");
        let missing = err("", &[("ASSETGATE_LINK_SECRET_FILE", "/nonexistent/secret")]);
        assert!(missing.key.contains("ASSETGATE_LINK_SECRET_FILE"), "{missing}");
        let both = err(
            "",
            &[
                ("ASSETGATE_LINK_SECRET", "aaaaaaaaaaaaaaaaaaaa"),
                ("ASSETGATE_LINK_SECRET_FILE", "/x"),
            ],
        );
        assert_eq!(both.key, "link.secrets");
        assert_eq!(err("listen = 5\n", &[]).key, "listen");
    }

    #[test]
    fn toml_syntax_errors_are_one_line() {
        let e = err("[upload]\nmax_size = 1\n[upload]\n", &[]);
        let shown = e.to_string();
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(shown.contains("duplicate key"), "{shown}");
        let e = err("listen = \n", &[]);
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }

    /// The one line `main` prints, byte for byte.
    #[test]
    fn config_error_message() {
        let e = ConfigError::new("upload.max_size", "\"lots\" is not a size");
        assert_eq!(
            e.to_string(),
            "config error: upload.max_size: \"lots\" is not a size"
        );
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn unreadable_config_file() {
        let e = load_from(
            &Sources {
                file: Some("/nonexistent/assetgate.toml".into()),
            },
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "--config");
    }

    #[test]
    fn redacted_output_has_no_secret() {
        let f = file("[link]\nsecrets = [\"this-is-the-secret-value\"]\n");
        let c = load_from(&with_file(&f), &[]).unwrap();
        let out = c.redacted_toml();
        assert!(!out.contains("this-is-the-secret-value"));
        assert!(out.contains("<redacted: 24 bytes>"), "{out}");
    }

    /// Regression (hardening review): a type error on a secret key echoed the secret
    /// (`invalid type: found string "MY-SUPER-SECRET…"`). Whatever the layer
    /// (file or environment) and whatever the mistake, an error on a secret-ish
    /// key names the key and the expected type, never the value.
    #[test]
    fn type_errors_on_secret_keys_never_echo_the_value() {
        const SECRET: &str = "MY-SUPER-SECRET-VALUE-0123456789";
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                format!("[link]\nsecrets = \"{SECRET}\"\n"),
                vec![],
                "link.secrets",
                "sequence",
            ),
            (
                format!("[upload]\nsecrets = \"{SECRET}\"\n"),
                vec![],
                "upload.secrets",
                "sequence",
            ),
            (
                "[link]\nsecrets = 123456789012345678\n".into(),
                vec![],
                "link.secrets",
                "sequence",
            ),
            (
                format!("[link]\nsecrets = {{ a = \"{SECRET}\" }}\n"),
                vec![],
                "link.secrets",
                "sequence",
            ),
            (
                "[upload]\nsecrets = [\"long-enough-secret-1\", 123456789012345678]\n".into(),
                vec![],
                "upload.secrets[1]",
                "string",
            ),
            (
                String::new(),
                vec![("ASSETGATE_LINK__SECRETS", SECRET)],
                "link.secrets",
                "sequence",
            ),
            (
                String::new(),
                vec![("ASSETGATE_UPLOAD__SECRETS", SECRET)],
                "upload.secrets",
                "sequence",
            ),
            (
                String::new(),
                vec![("ASSETGATE_UPLOAD__SECRETS", "123456789012345678")],
                "upload.secrets",
                "sequence",
            ),
        ];
        for (text, e, key, expected) in &cases {
            let error = err(text, e);
            let shown = error.to_string();
            assert_eq!(error.key, *key, "{shown}");
            assert!(shown.contains(expected), "{shown} should name the expected type");
            assert_eq!(shown.lines().count(), 1, "{shown}");
            for leak in [SECRET, "123456789012345678"] {
                assert!(!shown.contains(leak), "secret value echoed: {shown}");
            }
        }
        // A key a future section may add is judged by its name, not by a list
        // of today's sections.
        for path in [
            vec!["events".to_string(), "secret".into()],
            vec!["webhook".to_string(), "signing_secret_file".into()],
            vec!["db".to_string(), "password".into()],
        ] {
            assert!(is_secret_key(&path), "{path:?}");
        }
        assert!(!is_secret_key(&["server".to_string(), "max_connections".into()]));
        // Other keys keep their value in the message: it helps and is harmless.
        let shown = err("log_format = 5\n", &[]).to_string();
        assert!(shown.contains("log_format") && shown.contains('5'), "{shown}");
    }

    /// The admin API: a Unix socket by default (per user, the same path for
    /// the daemon and the CLI), TCP only when asked, loopback unless the
    /// opt-in key says otherwise.
    #[test]
    fn admin_socket_and_listen() {
        let uid = rustix::process::geteuid().as_raw();
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(
            c.server.admin_socket,
            PathBuf::from(format!("/tmp/assetgate-{uid}/admin.sock"))
        );
        let c = load_from(
            &Sources::default(),
            &env(&[("XDG_RUNTIME_DIR", "/run/user/1000")]),
        )
        .unwrap();
        assert_eq!(
            c.server.admin_socket,
            PathBuf::from("/run/user/1000/assetgate/admin.sock")
        );
        // A relative runtime directory is not one (the XDG spec: ignore it).
        let c = load_from(&Sources::default(), &env(&[("XDG_RUNTIME_DIR", "run")])).unwrap();
        assert!(
            c.server.admin_socket.starts_with("/tmp/"),
            "{:?}",
            c.server.admin_socket
        );
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_SERVER__ADMIN_SOCKET", "/run/assetgate/admin.sock")]),
        )
        .unwrap();
        assert_eq!(c.server.admin_socket, PathBuf::from("/run/assetgate/admin.sock"));
        let long = format!("/run/{}/admin.sock", "d".repeat(100));
        for bad in ["admin.sock", "/admin.sock", long.as_str()] {
            let e = err(&format!("[server]\nadmin_socket = {bad:?}\n"), &[]);
            assert_eq!(e.key, "server.admin_socket", "{bad}: {e}");
        }

        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:9751")]),
        )
        .unwrap();
        assert_eq!(c.server.admin_listen, Some("127.0.0.1:9751".parse().unwrap()));
        for addr in ["0.0.0.0:9751", "10.1.2.3:9751", "[::]:9751"] {
            let e = err(&format!("[server]\nadmin_listen = {addr:?}\n"), &[]);
            assert_eq!(e.key, "server.admin_listen", "{addr}: {e}");
            assert!(e.message.contains("server.admin_listen_non_loopback"), "{e}");
            let text = format!("[server]\nadmin_listen = {addr:?}\nadmin_listen_non_loopback = true\n");
            let f = file(&text);
            let c = load_from(&with_file(&f), &[]).unwrap();
            assert_eq!(c.server.admin_listen, Some(addr.parse().unwrap()));
        }
    }

    #[test]
    fn state_section() {
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(c.state.backend, StateBackend::Memory);
        assert_eq!(c.state.timeout, Duration::from_millis(100));
        assert_eq!(c.state.single_use_when_down, FailMode::Closed);
        assert_eq!(c.server.admin_listen, None, "no TCP admin listener by default");
        assert!(!c.upload.single_use);
        assert_eq!(c.upload.max_parts, DEFAULT_MAX_PARTS);
        assert_eq!(c.link.max_ttl, None);
        let c = load_from(
            &Sources::default(),
            &env(&[
                ("ASSETGATE_STATE__BACKEND", "redis"),
                (
                    "ASSETGATE_STATE__REDIS_URL",
                    "redis://user:hunter2-password@127.0.0.1:6390/2",
                ),
                ("ASSETGATE_STATE__REVOCATION_WHEN_DOWN", "fail_open"),
                ("ASSETGATE_LINK__MAX_TTL", "7d"),
                ("ASSETGATE_UPLOAD__MAX_PARTS", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(c.upload.max_parts, 4);
        let StateBackend::Redis { url } = &c.state.backend else {
            panic!("redis")
        };
        assert_eq!(url.expose(), "redis://user:hunter2-password@127.0.0.1:6390/2");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!c.redacted_toml().contains("hunter2"), "{}", c.redacted_toml());
        assert_eq!(c.state.revocation_when_down, FailMode::Open);
        assert_eq!(c.link.max_ttl, Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn bad_state_config_names_the_key() {
        for (text, key) in [
            ("[state]\nbackend = \"etcd\"\n", "state.backend"),
            ("[state]\nbackend = \"redis\"\n", "state.redis_url"),
            (
                "[state]\nbackend = \"redis\"\nredis_url = \"http://x\"\n",
                "state.redis_url",
            ),
            (
                "[state]\nbackend = \"redis\"\nredis_url = \"redis://:pw@[::1\"\n",
                "state.redis_url",
            ),
            (
                "[state]\nbackend = \"redis\"\nredis_url = \"rediss://h:6379\"\n",
                "state.redis_url",
            ),
            ("[state]\nredis_url = \"redis://h:6379\"\n", "state.redis_url"),
            ("[state]\ntimeout = \"1ms\"\n", "state.timeout"),
            ("[state]\nsync_interval = \"soon\"\n", "state.sync_interval"),
            ("[state]\nstale_after = \"1s\"\n", "state.stale_after"),
            (
                "[state]\nsingle_use_when_down = \"maybe\"\n",
                "state.single_use_when_down",
            ),
            ("[state]\nkey_prefix = \"a b\"\n", "state.key_prefix"),
            ("[server]\nadmin_listen = \"loopback\"\n", "server.admin_listen"),
            ("[link]\nmax_ttl = 0\n", "link.max_ttl"),
            ("[upload]\nmax_parts = 0\n", "upload.max_parts"),
            ("[upload]\nmax_parts = 1025\n", "upload.max_parts"),
            ("[upload]\nmax_parts = -1\n", "upload.max_parts"),
        ] {
            let e = err(text, &[]);
            assert_eq!(e.key, key, "{text}: {e}");
            assert_eq!(e.to_string().lines().count(), 1);
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
    }

    /// Every key the file layer accepts, asked of the deserializer itself: a
    /// table refuses an unknown key with the list of its keys
    /// (`deny_unknown_fields`, on every section), and a key that is not a
    /// table refuses a table. No list to keep in step by hand.
    fn accepted_keys() -> Vec<String> {
        fn probe(path: &mut Vec<String>, out: &mut Vec<String>) {
            let header = if path.is_empty() {
                String::new()
            } else {
                format!("[{}]\n", path.join("."))
            };
            let text = format!("{header}__probe__ = 1\n");
            let e = Figment::from(Toml::string(&text))
                .extract::<Raw>()
                .err()
                .expect("an unknown key is refused");
            match &e.kind {
                figment::error::Kind::UnknownField(field, keys) if field == "__probe__" => {
                    for key in keys.iter() {
                        path.push(key.to_string());
                        probe(path, out);
                        path.pop();
                    }
                }
                _ => out.push(path.join(".")),
            }
        }
        let mut out = Vec::new();
        probe(&mut Vec::new(), &mut out);
        out
    }

    fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
        let (sections, last) = match key.rsplit_once('.') {
            Some((sections, last)) => (sections.split('.').collect(), last),
            None => (Vec::new(), key),
        };
        let mut t = table;
        for s in sections {
            t = t.get(s)?.as_table()?;
        }
        t.get(last)
    }

    /// All the keys of `table`, dotted.
    fn keys_of(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v.as_table() {
                Some(t) => keys_of(t, &key, out),
                None => out.push(key),
            }
        }
    }

    const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn with_events() -> Config {
        let f = file(
            "[events]\nurl = \"http://app:8000/hooks/assets?token=abc\"\ndir = \"/var/lib/assetgate/events\"\n",
        );
        load_from(
            &with_file(&f),
            &env(&[("ASSETGATE_EVENTS_SECRET", EVENTS_SECRET)]),
        )
        .unwrap()
    }

    /// `check-config` is the serialized Config: every key the configuration
    /// accepts is shown (the default configuration's, and `[events]`' once the
    /// section is there), and it shows no key the configuration does not take.
    /// `upload.check_content` was once left out of the hand-written output.
    #[test]
    fn check_config_shows_every_key() {
        let keys = accepted_keys();
        for k in [
            "listen",
            "upload.check_content",
            "state.redis_url",
            "events.keep_delivered",
        ] {
            assert!(
                keys.iter().any(|x| x == k),
                "{k} not found by the probe: {keys:?}"
            );
        }
        let default = load_from(&Sources::default(), &[]).unwrap().redacted_toml();
        let default: toml::Table = toml::from_str(&default).unwrap();
        let events = with_events().redacted_toml();
        let events: toml::Table = toml::from_str(&events).unwrap();
        let f = file(S3_BASE);
        let s3 = load_from(&with_file(&f), &env(&s3_env()))
            .unwrap()
            .redacted_toml();
        let s3: toml::Table = toml::from_str(&s3).unwrap();
        for key in &keys {
            // `[events] secret` is the one-secret spelling of `secrets`; a
            // `[storage.s3] …_file` is the other spelling of its credential.
            if key == "events.secret" || (key.starts_with("storage.s3.") && key.ends_with("_file")) {
                continue;
            }
            let shown = if key.starts_with("events.") {
                &events
            } else if key.starts_with("storage.s3.") {
                &s3
            } else {
                &default
            };
            assert!(lookup(shown, key).is_some(), "check-config does not show {key}");
        }
        let mut shown = Vec::new();
        keys_of(&events, "", &mut shown);
        keys_of(&s3, "", &mut shown);
        for key in shown {
            assert!(
                keys.contains(&key),
                "check-config shows {key}, which is not a key"
            );
        }
    }

    /// The code spans of a Markdown table cell (`` `a` or `b` `` -> a, b).
    fn code_spans(cell: &str) -> Vec<&str> {
        cell.split('`').skip(1).step_by(2).collect()
    }

    /// docs/configuration.md, the configuration reference: one table row per
    /// key, `| key | default | env | meaning |`. Checked against the loader,
    /// not against a list kept by hand:
    /// - every key the loader accepts (asked of the deserializer,
    ///   [`accepted_keys`]) has exactly one row, and every row is such a key;
    /// - a row's env names are the loader's for that key ([`env_key`]), or, for
    ///   the secrets, variables that do load that key's secrets;
    /// - a default written as a value (a code span) is the built-in one: set
    ///   explicitly, in the file and through the env name, it leaves
    ///   `check-config` unchanged. A default in words is allowed only where
    ///   there is no value to write: `check-config` shows a placeholder
    ///   (`"<not set…>"`), the key is required (`[events]`), or the default
    ///   depends on the machine.
    #[test]
    fn the_reference_lists_every_key() {
        const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        const LINK_SECRET: &str = "a-link-secret-0123456789";
        // No value to write: required with [events], or the machine's.
        // With backend = "s3": the bucket is required, path_style follows
        // endpoint, and a credential's file is the other way to set it.
        const NO_DEFAULT: [&str; 12] = [
            "events.url",
            "events.dir",
            "events.secret",
            "events.secrets",
            "server.worker_threads",
            "server.admin_socket",
            "storage.s3.bucket",
            "storage.s3.path_style",
            "storage.s3.access_key_id_file",
            "storage.s3.secret_access_key_file",
            "storage.s3.read_access_key_id_file",
            "storage.s3.read_secret_access_key_file",
        ];
        let text = std::fs::read_to_string(REFERENCE).unwrap();
        let mut errors = Vec::new();

        // The rows: a table line whose first cell is a code span.
        let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "not a row of four cells: {line}");
            let key = code_spans(cells[0])[0].to_owned();
            let env = code_spans(cells[2])
                .into_iter()
                .filter(|s| s.starts_with("ASSETGATE_"))
                .map(str::to_owned)
                .collect();
            if rows.iter().any(|(k, _, _)| *k == key) {
                errors.push(format!("{key}: two rows"));
            }
            rows.push((key, cells[1].to_owned(), env));
        }

        let accepted = accepted_keys();
        for key in &accepted {
            if !rows.iter().any(|(k, _, _)| k == key) {
                errors.push(format!(
                    "{key}: a key of the configuration, missing from {REFERENCE}"
                ));
            }
        }
        for (key, _, _) in &rows {
            if !accepted.contains(key) {
                errors.push(format!(
                    "{key}: in {REFERENCE}, but not a key of the configuration"
                ));
            }
        }

        // What a configuration shows (check-config), its comment lines left out.
        let shown = |file_text: &str, env_vars: &[(&str, &str)]| -> Result<String, String> {
            let f = file(file_text);
            let config = load_from(&with_file(&f), &env(env_vars)).map_err(|e| e.to_string())?;
            Ok(config
                .redacted_toml()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"))
        };
        let events_base = "[events]\nurl = \"http://app:8000/hooks\"\ndir = \"/var/lib/assetgate/events\"\n";
        let events_env = [("ASSETGATE_EVENTS_SECRET", EVENTS_SECRET)];
        let default_shown = shown("", &[]).unwrap();
        let default_table: toml::Table = toml::from_str(&default_shown).unwrap();
        let events_shown = shown(events_base, &events_env).unwrap();
        let events_table: toml::Table = toml::from_str(&events_shown).unwrap();
        // `[storage.s3]` keys are read only with backend = "s3".
        let s3_base = "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"uploads\"\n";
        let s3_env = [
            ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", "AKIDEXAMPLE0001"),
            ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", "s3-secret-0123456789"),
        ];
        let s3_shown = shown(s3_base, &s3_env).unwrap();
        let s3_table: toml::Table = toml::from_str(&s3_shown).unwrap();
        let secret_file = file(&format!("{LINK_SECRET}\n"));
        let events_secret_file = file(&format!("{EVENTS_SECRET}\n"));

        for (key, default, env_names) in rows.iter().filter(|(k, _, _)| accepted.contains(k)) {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
            let is_events = section == "events";
            let is_s3 = section == "storage.s3";
            let is_secret = name == "secrets" || key == "events.secret";

            // The env column.
            if env_names.is_empty() {
                errors.push(format!("{key}: no env name"));
            }
            for var in env_names {
                if is_secret {
                    // A secret variable loads this key's secrets (one here).
                    let value = match (var.ends_with("_FILE"), is_events) {
                        (false, false) => LINK_SECRET.to_owned(),
                        (false, true) => EVENTS_SECRET.to_owned(),
                        (true, false) => secret_file.path().to_str().unwrap().to_owned(),
                        (true, true) => events_secret_file.path().to_str().unwrap().to_owned(),
                    };
                    let base = if is_events { events_base } else { "" };
                    let secrets = format!("{section}.secrets");
                    let loaded = shown(base, &[(var.as_str(), value.as_str())])
                        .map(|s| toml::from_str::<toml::Table>(&s).unwrap());
                    let count = loaded
                        .as_ref()
                        .ok()
                        .and_then(|t| lookup(t, &secrets)?.as_array().map(Vec::len));
                    if count != Some(1) {
                        errors.push(format!("{key}: {var} does not load {secrets}: {loaded:?}"));
                    }
                } else if env_key(var).as_deref() != Some(key.as_str()) {
                    errors.push(format!(
                        "{key}: {var} is not its env name (the loader reads it as {:?})",
                        env_key(var)
                    ));
                }
            }

            // The default column.
            let value = default.strip_prefix('`').and_then(|rest| rest.split('`').next());
            let Some(value) = value else {
                let placeholder = lookup(&default_table, key)
                    .or_else(|| lookup(&events_table, key))
                    .or_else(|| lookup(&s3_table, key))
                    .and_then(toml::Value::as_str)
                    .is_some_and(|s| s.starts_with('<'));
                if !placeholder && !NO_DEFAULT.contains(&key.as_str()) {
                    errors.push(format!(
                        "{key}: the default is in words ({default:?}); write the value, as in the file"
                    ));
                }
                continue;
            };
            let (base, base_shown, base_env): (&str, &str, &[(&str, &str)]) = if is_events {
                (events_base, &events_shown, &events_env)
            } else if is_s3 {
                (s3_base, &s3_shown, &s3_env)
            } else {
                ("", &default_shown, &[])
            };
            let line = format!("{name} = {value}\n");
            let file_text = match (is_events || is_s3, section) {
                (true, _) => format!("{base}{line}"),
                (false, "") => line,
                (false, section) => format!("[{section}]\n{line}"),
            };
            // Where a configuration differs from the default: this key's value.
            let at = |s: &str| {
                toml::from_str::<toml::Table>(s)
                    .ok()
                    .and_then(|t| lookup(&t, key).map(toml::Value::to_string))
            };
            let mut differs = |what: String, got: Result<String, String>| match got {
                Ok(s) if s == base_shown => {}
                Ok(s) => errors.push(format!(
                    "{key}: {what} is not the default: check-config shows {:?}, by default {:?}",
                    at(&s),
                    at(base_shown)
                )),
                Err(e) => errors.push(format!("{key}: {what} does not load: {e}")),
            };
            differs(format!("{value} in the file"), shown(&file_text, base_env));
            if is_secret {
                continue; // set through the secret variables, checked above
            }
            // The env name, set to the documented default (a TOML string's
            // quotes are not part of an environment value).
            let env_value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            for var in env_names {
                let mut vars = base_env.to_vec();
                vars.push((var.as_str(), env_value));
                differs(format!("{var}={env_value}"), shown(base, &vars));
            }
        }
        assert!(errors.is_empty(), "{REFERENCE}:\n{}", errors.join("\n"));
    }

    /// What `check-config` shows is what is in force: its output, less the
    /// values it hides (`"<redacted…>"`, `"<not set…>"`, the events URL's
    /// path) and given the same environment, loads back to the same output.
    #[test]
    fn check_config_round_trips() {
        let every_key_set = "listen = \"127.0.0.1:1234\"\nlog_level = \"assetgate=debug,info\"\nlog_format = \"json\"\n\
            [link]\nmerge_slashes = false\nmax_ttl = \"7d\"\n\
            [upload]\nclock_skew = \"1m\"\nmax_ttl = \"2h\"\ncontent_types = [\"image/*\", \"Application/PDF\"]\nmax_size = \"5GiB\"\n\
            allow_deferred_length = true\ncheck_content = true\nsession_binding = \"token\"\nsession_grace = 7200\nsingle_use = true\nmax_parts = 3\n\
            [storage]\nroot = \"/srv/a\"\noverwrite = true\npublic_prefix = \"pub\"\nprivate_prefix = \"priv/x\"\n\
            [tusd]\nupload_dir = \"/srv/t\"\nbase_path = \"/up/\"\nreconcile_interval = 0\nabandon_after = \"3d\"\nupload_ids = \"server\"\n\
            [server]\nheader_read_timeout = 5\nbody_read_timeout = \"20s\"\nrequest_timeout = \"1m\"\nmax_connections = 100\n\
            max_tusd_requests = 10\nshutdown_grace = 3\nmax_body_bytes = \"1MiB\"\nworker_threads = 3\nadmin_listen = \"127.0.0.1:0\"\n\
            admin_socket = \"/run/ag/admin.sock\"\nadmin_listen_non_loopback = true\n\
            [state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6390/1\"\nkey_prefix = \"x:\"\ntimeout = \"250ms\"\n\
            sync_interval = \"2s\"\nstale_after = \"5s\"\nsingle_use_when_down = \"fail_open\"\nrevocation_when_down = \"fail_open\"\n\
            [events]\ndir = \"/var/lib/ev\"\ntimeout = \"1500ms\"\nmax_age = \"1h\"\nconcurrency = 2\ninitial_backoff = \"50ms\"\n\
            max_backoff = \"1m\"\nmax_events = 7\nkeep_delivered = \"1d\"\n";
        let environment = env(&[
            ("ASSETGATE_LINK_SECRET", "link-secret-0123456789"),
            ("ASSETGATE_UPLOAD_SECRET", "upload-secret-0123456789"),
            ("ASSETGATE_EVENTS_SECRET", EVENTS_SECRET),
            ("ASSETGATE_EVENTS__URL", "http://app:8000/hooks"),
        ]);
        fn hidden(v: &toml::Value) -> bool {
            match v {
                toml::Value::String(s) => s.starts_with('<') || s.contains('…'),
                toml::Value::Array(a) => a.iter().any(hidden),
                _ => false,
            }
        }
        fn strip(t: &mut toml::Table) {
            t.retain(|_, v| !hidden(v));
            for (_, v) in t.iter_mut() {
                if let toml::Value::Table(t) = v {
                    strip(t);
                }
            }
        }
        for (text, environment) in [("", Vec::new()), (every_key_set, environment)] {
            let f = file(text);
            let first = load_from(&with_file(&f), &environment).unwrap();
            let shown = toml::to_string(&first).unwrap();
            let mut table: toml::Table = toml::from_str(&shown).unwrap();
            strip(&mut table);
            let again = file(&toml::to_string(&table).unwrap());
            let second = load_from(&with_file(&again), &environment).unwrap();
            assert_eq!(toml::to_string(&second).unwrap(), shown);
        }
    }

    /// No secret value, and no part of one, is in `check-config`'s output:
    /// link, upload and events secrets, the Redis password, the events URL's
    /// path and query.
    #[test]
    fn check_config_never_shows_a_secret() {
        let f = file(
            "[link]\nsecrets = [\"LINK-SECRET-NEWEST-0001\", \"LINK-SECRET-OLDER-00002\"]\n\
             [state]\nbackend = \"redis\"\nredis_url = \"redis://user:REDIS-PASSWORD-42@127.0.0.1:6390/2\"\n\
             [events]\nurl = \"http://app:8000/hooks/TOKEN-IN-PATH?key=TOKEN-IN-QUERY\"\ndir = \"/var/lib/ev\"\n",
        );
        let c = load_from(
            &with_file(&f),
            &env(&[
                ("ASSETGATE_UPLOAD_SECRET", "UPLOAD-SECRET-FROM-ENV-3"),
                ("ASSETGATE_EVENTS_SECRET", EVENTS_SECRET),
            ]),
        )
        .unwrap();
        let out = c.redacted_toml();
        for secret in [
            "LINK-SECRET",
            "UPLOAD-SECRET",
            &EVENTS_SECRET[6..],
            "REDIS-PASSWORD",
            "TOKEN-IN-PATH",
            "TOKEN-IN-QUERY",
        ] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        for shown in [
            "secrets = [\"<redacted: 23 bytes>\", \"<redacted: 23 bytes>\"]",
            "secrets = [\"<redacted: 24 bytes>\"]",
            "secrets = [\"<redacted: whsec_, 24 bytes>\"]",
            "redis_url = \"redis://user:<redacted>@127.0.0.1:6390/2\"",
            "url = \"http://app:8000/…\"",
        ] {
            assert!(out.contains(shown), "{shown} not in:\n{out}");
        }
    }

    /// `log_level` and `log_format` are parsed once, at load: a bad value is
    /// a config error naming the key (from the file or the environment), and
    /// the logger's filter is built from the parsed directives, the same
    /// filter `EnvFilter::try_new` makes of the text (no "info" fallback).
    #[test]
    fn log_level_and_format_are_parsed_at_load() {
        for good in [
            "info",
            "INFO",
            "off",
            "assetgate=debug,warn",
            "warn,assetgate[request]=trace",
            "info,",
            "",
        ] {
            let level: LogLevel = good.parse().unwrap();
            assert_eq!(level, good);
            assert_eq!(
                level.env_filter().to_string(),
                tracing_subscriber::EnvFilter::try_new(good).unwrap().to_string(),
                "{good:?}"
            );
        }
        let c = load_from(
            &Sources::default(),
            &env(&[("ASSETGATE_LOG_LEVEL", "assetgate=debug")]),
        )
        .unwrap();
        assert_eq!(c.log_level.as_str(), "assetgate=debug");
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        for (text, environment, key) in [
            ("log_level = \"assetgate=loud\"\n", vec![], "log_level"),
            ("log_level = \"info,=\"\n", vec![], "log_level"),
            ("", vec![("ASSETGATE_LOG_LEVEL", "verbose=yes")], "log_level"),
            ("log_format = \"JSON\"\n", vec![], "log_format"),
            ("", vec![("ASSETGATE_LOG_FORMAT", "logfmt")], "log_format"),
        ] {
            let e = err(text, &environment);
            assert_eq!(e.key, key, "{text:?} {environment:?}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
    }

    fn text(t: &str) -> Human {
        Human::Text(t.into())
    }

    #[test]
    fn human_units() {
        // The four cases of the hand-written parser this replaced.
        assert_eq!(text("90").seconds("k").unwrap(), Duration::from_secs(90));
        assert_eq!(text("2h").seconds("k").unwrap(), Duration::from_secs(7200));
        assert!(text("h").seconds("k").is_err());
        assert_eq!(text("1 KiB").bytes("k").unwrap(), 1024);
    }

    /// Every spelling the docs, deploy/, the examples and the tests use
    /// (durations: integer seconds, "30s" "60s" "15m" "1m" "24h" "1h" "7d"
    /// "3d", "0"; "100ms" "250ms" "50ms" where milliseconds are taken; sizes:
    /// integer bytes, "512KiB" "5GiB" "10MB" "1 KiB") reads as before, and
    /// what the crates would read differently from nginx or from a whole
    /// second is refused, naming the key.
    #[test]
    fn duration_and_size_spellings() {
        let secs = |t: &str| text(t).seconds("k").map(|d| d.as_secs());
        for (t, want) in [
            ("0", 0),
            ("90", 90),
            (" 60 ", 60),
            ("30s", 30),
            ("60s", 60),
            ("1m", 60),
            ("15m", 900),
            ("1h", 3600),
            ("24h", 86_400),
            ("24 h", 86_400),
            ("3d", 3 * 86_400),
            ("7d", 7 * 86_400),
            // humantime's, new
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("2days", 2 * 86_400),
            ("1.5m", 90),
            ("1w", 7 * 86_400),
        ] {
            assert_eq!(secs(t), Ok(want), "{t:?}");
        }
        assert_eq!(Human::Int(42).seconds("k").unwrap(), Duration::from_secs(42));
        for bad in ["", "soon", "-1", "h", "5 parsecs", "1500ms", "0.5s", "1e3s"] {
            let e = text(bad).seconds("tusd.abandon_after").unwrap_err();
            assert_eq!(e.key, "tusd.abandon_after", "{bad:?}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }

        let ms = |t: &str| text(t).duration("k").map(|d| d.as_millis());
        for (t, want) in [
            ("100ms", 100),
            ("250ms", 250),
            ("50ms", 50),
            ("1ms", 1),
            ("1s", 1000),
            ("10s", 10_000),
            ("2", 2000),
            ("10m", 600_000),
            ("3d", 3 * 86_400_000),
            ("1.5s", 1500),
        ] {
            assert_eq!(ms(t), Ok(want), "{t:?}");
        }
        assert!(text("99999999999999999999ms").duration("k").is_err());

        let bytes = |t: &str| text(t).bytes("k");
        for (t, want) in [
            ("262144", 262_144),
            ("512KiB", 512 * 1024),
            ("1 KiB", 1024),
            ("5GiB", 5 << 30),
            ("10MB", 10_000_000),
            ("1MiB", 1 << 20),
            ("100B", 100),
            ("2TiB", 2 << 40),
            // bytesize's, new
            ("5gib", 5 << 30),
            ("1.5KiB", 1536),
        ] {
            assert_eq!(bytes(t).map_err(|e| e.to_string()), Ok(want), "{t:?}");
        }
        for bad in [
            "",
            "lots",
            "5 parsecs",
            "16m",
            "5G",
            "1Ki",
            "-1KiB",
            "99999999999EiB",
        ] {
            let e = bytes(bad).unwrap_err();
            assert_eq!(e.key, "k", "{bad:?}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
    }

    const S3_BASE: &str = "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:8333\"\nbucket = \"assets\"\n";
    const S3_KEY_ID: &str = "AKID-NEVER-SHOWN-01";
    const S3_SECRET: &str = "S3-SECRET-NEVER-SHOWN-0123456789";

    fn s3_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", S3_KEY_ID),
            ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", S3_SECRET),
        ]
    }

    /// `backend = "s3"`: the section validated into `S3Config`, path style
    /// on with an endpoint, the credentials from env or `_file`, and
    /// `check-config` showing neither the key ID nor the secret.
    #[test]
    fn storage_s3_loads_and_hides_its_credentials() {
        let f = file(S3_BASE);
        let c = load_from(&with_file(&f), &env(&s3_env())).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::S3);
        let s3 = c.storage.s3.as_ref().unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(s3.path_style, "an endpoint means path style by default");
        assert_eq!(
            (s3.region.as_str(), s3.bucket.as_str(), s3.upload_prefix.as_str()),
            ("us-east-1", "assets", "tus/")
        );
        assert_eq!(s3.access_key_id.expose(), S3_KEY_ID.as_bytes());
        assert_eq!(s3.secret_access_key.expose(), S3_SECRET.as_bytes());
        assert!(s3.read_access_key_id.is_none());
        let out = c.redacted_toml();
        assert!(out.contains("backend = \"s3\""), "{out}");
        assert!(out.contains("[storage.s3]"), "{out}");
        assert!(
            !out.contains("AKID-NEVER") && !out.contains("NEVER-SHOWN"),
            "{out}"
        );
        assert!(!format!("{c:?}").contains("NEVER-SHOWN"));

        // Files instead, and a read-only identity; a digits-only key ID stays text.
        let id = file("0123456789\n");
        let secret = file(&format!("{S3_SECRET}\n"));
        let f = file(&format!(
            "{S3_BASE}path_style = false\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
            id.path(),
            secret.path()
        ));
        let c = load_from(
            &with_file(&f),
            &env(&[
                ("ASSETGATE_STORAGE__S3__READ_ACCESS_KEY_ID", "0000000042"),
                (
                    "ASSETGATE_STORAGE__S3__READ_SECRET_ACCESS_KEY",
                    "READ-SECRET-NEVER-SHOWN-1",
                ),
            ]),
        )
        .unwrap();
        let s3 = c.storage.s3.as_ref().unwrap();
        assert!(!s3.path_style);
        assert_eq!(s3.access_key_id.expose(), b"0123456789");
        assert_eq!(s3.read_access_key_id.as_ref().unwrap().expose(), b"0000000042");
        let out = c.redacted_toml();
        assert!(
            !out.contains("0000000042") && !out.contains("NEVER-SHOWN"),
            "{out}"
        );

        // AWS: no endpoint, virtual-host style.
        let f =
            file("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"assets\"\nregion = \"eu-west-3\"\n");
        let c = load_from(&with_file(&f), &env(&s3_env())).unwrap();
        let s3 = c.storage.s3.as_ref().unwrap();
        assert!(s3.endpoint.is_none() && !s3.path_style);
        // The default backend is fs, with no section.
        let c = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(
            (c.storage.backend, c.storage.s3.is_none()),
            (StorageBackend::Fs, true)
        );
    }

    /// Every refusal names its key, and none shows a credential.
    #[test]
    fn storage_s3_refusals_name_the_key_never_the_secret() {
        let base_env = s3_env();
        let key_file = file(&format!("{S3_SECRET}\nsecond-line\n"));
        let two_lines = format!("{S3_BASE}secret_access_key_file = {:?}\n", key_file.path());
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            ("[storage]\nbackend = \"nfs\"\n".into(), vec![], "storage.backend"),
            ("[storage.s3]\nbucket = \"assets\"\n".into(), vec![], "storage.s3"),
            ("[storage]\nbackend = \"s3\"\n".into(), vec![], "storage.s3"),
            (
                "[storage]\nbackend = \"s3\"\n[storage.s3]\n".into(),
                base_env.clone(),
                "storage.s3.bucket",
            ),
            (
                format!("{S3_BASE}bukket = 1\n"),
                base_env.clone(),
                "storage.s3.bukket",
            ),
            (
                S3_BASE.replace("\"assets\"", "\"Assets/x\""),
                base_env.clone(),
                "storage.s3.bucket",
            ),
            (
                format!("{S3_BASE}region = \"us east\"\n"),
                base_env.clone(),
                "storage.s3.region",
            ),
            (
                S3_BASE.replace("http://127.0.0.1:8333", "ftp://h:1"),
                base_env.clone(),
                "storage.s3.endpoint",
            ),
            (
                S3_BASE.replace("http://127.0.0.1:8333", "http://u:pw@h:1"),
                base_env.clone(),
                "storage.s3.endpoint",
            ),
            (
                S3_BASE.replace("http://127.0.0.1:8333", "http://h:1/bucket"),
                base_env.clone(),
                "storage.s3.endpoint",
            ),
            (
                format!("{S3_BASE}upload_prefix = \"tus\"\n"),
                base_env.clone(),
                "storage.s3.upload_prefix",
            ),
            (
                format!("{S3_BASE}upload_prefix = \"public/tus/\"\n"),
                base_env.clone(),
                "storage.s3.upload_prefix",
            ),
            (
                format!("{S3_BASE}upload_prefix = \"assetgate/\"\n"),
                base_env.clone(),
                "storage.s3.upload_prefix",
            ),
            (
                format!("[storage]\nprivate_prefix = \"assetgate\"\n{}", &S3_BASE[10..]),
                base_env.clone(),
                "storage.private_prefix",
            ),
            // The reviewer's case: the private prefix inside the public one
            // (the gate would sign private objects without a link), and the
            // reverse.
            (
                format!(
                    "[storage]\npublic_prefix = \"media\"\nprivate_prefix = \"media/private\"\n{}",
                    &S3_BASE[10..]
                ),
                base_env.clone(),
                "storage.private_prefix",
            ),
            (
                format!(
                    "[storage]\npublic_prefix = \"assets/pub\"\nprivate_prefix = \"assets\"\n{}",
                    &S3_BASE[10..]
                ),
                base_env.clone(),
                "storage.private_prefix",
            ),
            (S3_BASE.into(), vec![base_env[1]], "storage.s3.access_key_id"),
            (S3_BASE.into(), vec![base_env[0]], "storage.s3.secret_access_key"),
            (
                format!("{S3_BASE}secret_access_key = \"{S3_SECRET}\"\nsecret_access_key_file = \"/x\"\n"),
                vec![base_env[0]],
                "storage.s3.secret_access_key",
            ),
            (two_lines, vec![base_env[0]], "storage.s3.secret_access_key_file"),
            (
                format!("{S3_BASE}secret_access_key = [\"{S3_SECRET}\"]\n"),
                vec![base_env[0]],
                "storage.s3.secret_access_key",
            ),
            (
                format!("{S3_BASE}access_key_id = [\"{S3_KEY_ID}\"]\n"),
                vec![base_env[1]],
                "storage.s3.access_key_id",
            ),
            (
                S3_BASE.into(),
                vec![
                    base_env[0],
                    (
                        "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
                        "S3-SECRET NEVER-SHOWN",
                    ),
                ],
                "storage.s3.secret_access_key",
            ),
            (
                S3_BASE.into(),
                [
                    base_env.clone(),
                    vec![("ASSETGATE_STORAGE__S3__READ_ACCESS_KEY_ID", S3_KEY_ID)],
                ]
                .concat(),
                "storage.s3.read_secret_access_key",
            ),
        ];
        for (text, vars, key) in cases {
            let e = err(&text, &vars);
            assert_eq!(e.key, key, "{text:?} {vars:?}: {e}");
            let shown = e.to_string();
            assert!(
                !shown.contains("NEVER-SHOWN") && !shown.contains(S3_SECRET),
                "{shown}"
            );
        }
    }

    /// `backend = "s3"` refuses the filesystem-only keys the operator set
    /// (file or environment), naming the key; their defaults (unset, `false`)
    /// and `overwrite = false` written out pass; the same keys with `fs` load.
    #[test]
    fn storage_s3_refuses_the_filesystem_keys() {
        let base_env = s3_env();
        let storage = |extra: &str| S3_BASE.replace("[storage]\n", &format!("[storage]\n{extra}"));
        type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case> = vec![
            (
                storage("root = \"/srv/assets\"\n"),
                base_env.clone(),
                "storage.root",
            ),
            (
                S3_BASE.into(),
                [base_env.clone(), vec![("ASSETGATE_STORAGE__ROOT", "/srv/assets")]].concat(),
                "storage.root",
            ),
            (
                format!("[tusd]\nupload_dir = \"/srv/tusd-uploads\"\n{S3_BASE}"),
                base_env.clone(),
                "tusd.upload_dir",
            ),
            (
                S3_BASE.into(),
                [
                    base_env.clone(),
                    vec![("ASSETGATE_TUSD__UPLOAD_DIR", "/srv/tusd-uploads")],
                ]
                .concat(),
                "tusd.upload_dir",
            ),
            (
                storage("overwrite = true\n"),
                base_env.clone(),
                "storage.overwrite",
            ),
            (
                S3_BASE.into(),
                [base_env.clone(), vec![("ASSETGATE_STORAGE__OVERWRITE", "true")]].concat(),
                "storage.overwrite",
            ),
            (
                format!("[tusd]\nupload_ids = \"server\"\n{S3_BASE}"),
                base_env.clone(),
                "tusd.upload_ids",
            ),
            (
                S3_BASE.into(),
                [base_env.clone(), vec![("ASSETGATE_TUSD__UPLOAD_IDS", "server")]].concat(),
                "tusd.upload_ids",
            ),
        ];
        for (text, vars, key) in cases {
            let e = err(&text, &vars);
            assert_eq!(e.key, key, "{text:?} {vars:?}: {e}");
            assert!(e.to_string().contains("backend = \"s3\""), "{e}");
        }
        let f = file(&storage("overwrite = false\n"));
        let c = load_from(&with_file(&f), &env(&base_env)).unwrap();
        assert_eq!(
            (c.storage.root, c.tusd.upload_dir, c.storage.overwrite),
            (None, None, false)
        );
        let f =
            file("[storage]\nroot = \"/srv/assets\"\noverwrite = true\n[tusd]\nupload_dir = \"/srv/t\"\n");
        let c = load_from(&with_file(&f), &[]).unwrap();
        assert!(c.storage.root.is_some() && c.tusd.upload_dir.is_some() && c.storage.overwrite);
    }
}
