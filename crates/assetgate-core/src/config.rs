//! The configuration the pure decisions read: `[link]`, `[upload]`,
//! `[storage]` and `[tusd]`, validated. The daemon's loader (figment: defaults
//! < file < environment, secret files, redaction) builds them; nothing here
//! reads a file or the environment.

use std::path::PathBuf;
use std::time::Duration;

use std::str::FromStr;

use serde::Serialize;

use crate::policy::ContentTypePattern;
use crate::secret::{Secret, SecretSet};

/// Default `[upload] max_parts`: tus-js-client's `parallelUploads` (a handful
/// in practice) twice over, with room for parts retried after an error.
pub const DEFAULT_MAX_PARTS: u32 = 16;

/// Largest `[upload] max_parts` (each part is one entry the shared state reads
/// whole at every partial pre-create of the token).
pub const MAX_MAX_PARTS: u32 = 1024;

/// `[link]`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkConfig {
    /// Accepted secrets, newest first.
    #[serde(serialize_with = "show::secrets")]
    pub secrets: SecretSet,
    /// Must equal nginx's `merge_slashes`.
    pub merge_slashes: bool,
    /// Longest accepted remaining link lifetime (`None`: any, as nginx's
    /// `secure_link`). Also how long a prefix or key revocation is kept.
    #[serde(serialize_with = "show::link_max_ttl")]
    pub max_ttl: Option<Duration>,
}

/// `[upload]`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadConfig {
    /// Accepted HMAC secrets, newest first.
    #[serde(serialize_with = "show::secrets")]
    pub secrets: SecretSet,
    /// Tolerated clock difference with the token minter.
    #[serde(serialize_with = "show::secs")]
    pub clock_skew: Duration,
    /// Longest accepted remaining token lifetime.
    #[serde(serialize_with = "show::secs")]
    pub max_ttl: Duration,
    /// Allowed content types (globs like `image/*`); empty = any.
    pub content_types: Vec<ContentTypePattern>,
    /// Largest accepted upload in bytes (`None` = no limit).
    #[serde(serialize_with = "show::max_size")]
    pub max_size: Option<u64>,
    /// Whether uploads of deferred length are accepted.
    pub allow_deferred_length: bool,
    /// Check the file's leading bytes against the declared type (pre-finish
    /// answers 415; the mover refuses to publish).
    pub check_content: bool,
    /// How `/session` binds `PATCH`/`HEAD`/`DELETE` of an upload to its token.
    #[serde(serialize_with = "show::session_binding")]
    pub session_binding: SessionBinding,
    /// How long after its token's expiry an upload may still be resumed.
    #[serde(serialize_with = "show::secs")]
    pub session_grace: Duration,
    /// The first pre-create with a token consumes it; a replay is refused
    /// (`token_used`). Partial uploads of a concatenation do not consume it,
    /// the final upload does.
    pub single_use: bool,
    /// nginx's extension → type table for the asset tree: a key's extension
    /// must be served as its token's type ([`crate::policy::served`]).
    pub nginx_types: NginxTypes,
    /// With `single_use`: how many partial uploads one token may create
    /// (`too_many_parts` past it); their declared sizes together are bounded
    /// by `max_size` (`parts_too_large`).
    pub max_parts: u32,
}

/// `[upload] nginx_types`: the table nginx serves the asset tree with, and
/// where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxTypes {
    /// The file read, `None` for the built-in copy of `nginx/assetgate-types.conf`.
    pub path: Option<PathBuf>,
    /// The parsed table.
    pub table: std::sync::Arc<crate::policy::ServedTypes>,
}

impl NginxTypes {
    /// The shipped table, built in.
    pub fn builtin() -> Self {
        NginxTypes {
            path: None,
            table: std::sync::Arc::new(crate::policy::ServedTypes::builtin()),
        }
    }
}

impl Serialize for NginxTypes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.path {
            Some(p) => s.serialize_str(&p.display().to_string()),
            None => s.serialize_str("<built in: nginx/assetgate-types.conf>"),
        }
    }
}

/// `[upload] session_binding`: how `/session` binds `PATCH`/`HEAD`/`DELETE`
/// of an upload to the token that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionBinding {
    /// No check (tusd's own behaviour).
    Off,
    /// The stored token's window (plus grace) must be open.
    #[default]
    Window,
    /// The window, and the request carries the creating token.
    Token,
}

impl FromStr for SessionBinding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(SessionBinding::Off),
            "window" => Ok(SessionBinding::Window),
            "token" => Ok(SessionBinding::Token),
            other => Err(format!("{other:?} is not one of \"off\", \"window\", \"token\"")),
        }
    }
}

impl SessionBinding {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBinding::Off => "off",
            SessionBinding::Window => "window",
            SessionBinding::Token => "token",
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageConfig {
    /// Root of the asset tree nginx serves.
    #[serde(serialize_with = "show::path")]
    pub root: Option<PathBuf>,
    /// Whether an existing asset may be replaced.
    pub overwrite: bool,
    /// Sub-directory for public assets.
    pub public_prefix: String,
    /// Sub-directory for private assets.
    pub private_prefix: String,
    /// Where the bytes live: the asset tree (`fs`) or a bucket (`s3`).
    pub backend: StorageBackend,
    /// `[storage.s3]`: set exactly when `backend` is [`StorageBackend::S3`]
    /// (the loader refuses the section with `fs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// `[storage] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// tusd's filestore and the asset tree under `root` (one shared directory).
    Fs,
    /// tusd's s3store and a bucket (`[storage.s3]`).
    S3,
}

impl StorageBackend {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Fs => "fs",
            StorageBackend::S3 => "s3",
        }
    }
}

/// `[storage.s3]`: the bucket tusd's s3store writes into and assetgate
/// publishes in. The credentials are [`Secret`]s: never shown (`check-config`
/// prints their length), never in an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible engine; `None`: AWS.
    #[serde(serialize_with = "show::endpoint")]
    pub endpoint: Option<String>,
    /// The signing region (any value for most engines; AWS's for AWS).
    pub region: String,
    /// The bucket (tusd's `-s3-bucket`).
    pub bucket: String,
    /// Path-style requests (`endpoint/bucket/key`); the default is true when
    /// `endpoint` is set (tusd's `-s3-endpoint` forces it too).
    pub path_style: bool,
    /// tusd's `-s3-object-prefix`: where uploads (and their `.info`) are.
    pub upload_prefix: String,
    /// The identity assetgate publishes with.
    #[serde(serialize_with = "show::secret")]
    pub access_key_id: Secret,
    /// Its secret key.
    #[serde(serialize_with = "show::secret")]
    pub secret_access_key: Secret,
    /// The identity whose signatures nginx relays for downloads (`None`: the
    /// main one; a read-only identity is recommended).
    #[serde(serialize_with = "show::read_identity")]
    pub read_access_key_id: Option<Secret>,
    /// Its secret key (set with `read_access_key_id`, or neither).
    #[serde(serialize_with = "show::read_identity")]
    pub read_secret_access_key: Option<Secret>,
}

/// Where assetgate's own scratch objects go in the bucket (the capability
/// self-test at start): no prefix in `[storage]`/`[storage.s3]` may overlap it.
pub const S3_OWN_PREFIX: &str = "assetgate/";

/// `[tusd]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TusdConfig {
    /// tusd's `-upload-dir` (shared volume).
    #[serde(serialize_with = "show::path")]
    pub upload_dir: Option<PathBuf>,
    /// tusd's `-base-path` (what nginx's `/session` check strips from the URI).
    pub base_path: String,
    /// How often the daemon re-scans `upload_dir` for finished uploads whose
    /// post-finish never came (`None`: never).
    #[serde(serialize_with = "show::reconcile_interval")]
    pub reconcile_interval: Option<Duration>,
    /// How long after its token's expiry an unfinished upload is removed.
    #[serde(serialize_with = "show::secs")]
    pub abandon_after: Duration,
    /// Who chooses upload IDs: `signed` (pre-create issues them and every
    /// publish verifies them; tusd v2) or `server` (tusd v1, rustus).
    #[serde(serialize_with = "show::upload_ids")]
    pub upload_ids: crate::token::upload_id::UploadIds,
}

/// Serializers for `check-config`'s view: secrets as their length, unset
/// options as `"<not set…>"`, durations and sizes as the keys take them.
pub mod show {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::Serializer;

    use crate::secret::SecretSet;

    /// An option that is not set.
    pub const NOT_SET: &str = "<not set>";

    /// `["<redacted: 24 bytes>", …]`.
    pub fn secrets<S: Serializer>(set: &SecretSet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|x| format!("<redacted: {} bytes>", x.len())))
    }

    /// An integer; past TOML's (signed 64-bit) range, its digits as a string.
    pub fn int<S: Serializer>(n: u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(n) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(&n.to_string()),
        }
    }

    /// A count (`usize`).
    pub fn count<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        int(*n as u64, s)
    }

    /// A `u64` (`#[serde(serialize_with)]` passes a reference).
    pub fn u64<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        int(*n, s)
    }

    /// Whole seconds, as an integer (keys that take seconds).
    pub fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        int(d.as_secs(), s)
    }

    /// `"10s"`, or `"250ms"` when not whole seconds (keys that take `ms`).
    pub fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            s.serialize_str(&format!("{}s", ms / 1000))
        } else {
            s.serialize_str(&format!("{ms}ms"))
        }
    }

    /// `[link] max_ttl`: seconds, or what unset means.
    pub fn link_max_ttl<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => secs(d, s),
            None => s.serialize_str(
                "<not set: links of any lifetime; prefix/key revocations kept until unrevoked>",
            ),
        }
    }

    /// `[upload] max_size`: bytes, or what unset means.
    pub fn max_size<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => int(*n, s),
            None => s.serialize_str("<not set: no size limit>"),
        }
    }

    /// `0` is how the key disables the reconciler.
    pub fn reconcile_interval<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        int(d.map_or(0, |d| d.as_secs()), s)
    }

    /// A path as text.
    pub fn path_buf<S: Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.display().to_string())
    }

    /// A secret: its length only.
    pub fn secret<S: Serializer>(x: &crate::secret::Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<redacted: {} bytes>", x.len()))
    }

    /// `[storage.s3] read_*`: the length, or that the main identity is used.
    pub fn read_identity<S: Serializer>(x: &Option<crate::secret::Secret>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) => secret(x, s),
            None => s.serialize_str("<not set: the main identity signs downloads>"),
        }
    }

    /// `[storage.s3] endpoint`, or what unset means.
    pub fn endpoint<S: Serializer>(e: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match e {
            Some(e) => s.serialize_str(e),
            None => s.serialize_str("<not set: AWS S3>"),
        }
    }

    /// An optional path, or `"<not set>"`.
    pub fn path<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_str(&p.display().to_string()),
            None => s.serialize_str(NOT_SET),
        }
    }

    /// `[tusd] upload_ids` by its config spelling.
    pub fn upload_ids<S: Serializer>(
        m: &crate::token::upload_id::UploadIds,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    /// `[upload] session_binding` by its config spelling.
    pub fn session_binding<S: Serializer>(m: &super::SessionBinding, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }
}
