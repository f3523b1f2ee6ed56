//! `[storage] backend = "s3"` and `[storage.s3]`: the minimal piece the
//! download relay (`/auth` signing object requests for nginx, issue 21) needs.
//!
//! The S3 backend's own work (publish, reconciler, session binding) adds its
//! keys here too (`upload_prefix`, the main identity's use by the client);
//! this file only reads what signing a download needs: where the store is
//! (`endpoint`, `path_style`), `region`, `bucket`, and the identity nginx's
//! requests are signed with: `read_access_key_id` / `read_secret_access_key`
//! when set (a read-only identity: a leaked signature can only read), else
//! `access_key_id` / `secret_access_key`. Each secret may come from a file
//! (`…_file`, one line); `ASSETGATE_STORAGE__S3__…` reaches these keys through
//! the generic env mapping (`load_from`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::read::read_secret_file;

/// `[storage] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The asset tree on a local (or shared) file system: nginx serves files.
    Fs,
    /// An S3-compatible bucket: nginx proxies to it with headers `/auth` signs.
    S3,
}

/// `[storage.s3]`, as the raw TOML/env layer gives it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawS3 {
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    path_style: Option<bool>,
    upload_prefix: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    read_access_key_id: Option<String>,
    read_secret_access_key: Option<String>,
    read_secret_access_key_file: Option<PathBuf>,
}

/// The validated `[storage.s3]` (only with `backend = "s3"`).
#[derive(Debug, Clone, Serialize)]
pub struct S3Config {
    /// `http://host:port` of an S3-compatible store; `None`: AWS
    /// (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// The signing region.
    pub region: String,
    /// The bucket holding `public/` and `private/`.
    pub bucket: String,
    /// `/<bucket>/<key>` on the endpoint (true) or `<bucket>.<host>/<key>`.
    pub path_style: bool,
    /// tusd's `-s3-object-prefix` (read by the S3 backend, not by the relay).
    pub upload_prefix: String,
    /// The identity download requests are signed with (the read-only one
    /// when configured).
    pub download_identity: S3Identity,
    /// Signs the object reads `/auth` hands nginx (built once per
    /// configuration; a reload builds a new one).
    #[serde(skip)]
    pub signer: std::sync::Arc<crate::s3_sign::S3Signer>,
}

/// Equal when every key is (the signer is derived from them; the secrets
/// compared in constant time).
impl PartialEq for S3Config {
    fn eq(&self, o: &Self) -> bool {
        self.endpoint == o.endpoint
            && self.region == o.region
            && self.bucket == o.bucket
            && self.path_style == o.path_style
            && self.upload_prefix == o.upload_prefix
            && self.download_identity == o.download_identity
    }
}

impl PartialEq for S3Identity {
    fn eq(&self, o: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.access_key_id == o.access_key_id
            && self.read_only == o.read_only
            && bool::from(
                self.secret_access_key
                    .as_bytes()
                    .ct_eq(o.secret_access_key.as_bytes()),
            )
    }
}

/// An access key pair. `Debug` and `check-config` show the key ID (AWS does
/// not treat it as secret) and the secret as its length only.
#[derive(Clone)]
pub struct S3Identity {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: zeroize::Zeroizing<String>,
    /// `read_…` (true) or the main identity.
    pub read_only: bool,
}

impl std::fmt::Debug for S3Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Identity")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Serialize for S3Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("S3Identity", 3)?;
        st.serialize_field("access_key_id", &self.access_key_id)?;
        st.serialize_field(
            "secret_access_key",
            &format!("<redacted: {} bytes>", self.secret_access_key.len()),
        )?;
        st.serialize_field("read_only", &self.read_only)?;
        st.end()
    }
}

/// `backend` and, for `"s3"`, the validated `[storage.s3]`.
pub(super) fn validate(
    backend: &str,
    raw: Option<RawS3>,
) -> Result<(StorageBackend, Option<S3Config>), ConfigError> {
    match backend {
        "fs" => Ok((StorageBackend::Fs, None)),
        "s3" => {
            let raw = raw.ok_or_else(|| {
                ConfigError::new("storage.s3", "is required with [storage] backend = \"s3\"")
            })?;
            Ok((StorageBackend::S3, Some(validate_s3(raw)?)))
        }
        _ => Err(ConfigError::new("storage.backend", "must be \"fs\" or \"s3\"")),
    }
}

fn validate_s3(raw: RawS3) -> Result<S3Config, ConfigError> {
    let region = required(raw.region, "storage.s3.region")?;
    let bucket = required(raw.bucket, "storage.s3.bucket")?;
    let endpoint = match raw.endpoint {
        Some(e) => {
            let uri: http::Uri = e
                .parse()
                .map_err(|_| ConfigError::new("storage.s3.endpoint", "must be a URL (http://host:port)"))?;
            let ok_scheme = matches!(uri.scheme_str(), Some("http" | "https"));
            if !ok_scheme
                || uri.authority().is_none()
                || !matches!(uri.path(), "" | "/")
                || uri.query().is_some()
            {
                return Err(ConfigError::new(
                    "storage.s3.endpoint",
                    "must be http(s)://host[:port] without a path",
                ));
            }
            Some(e.trim_end_matches('/').to_owned())
        }
        None => None,
    };
    let path_style = raw.path_style.unwrap_or(endpoint.is_some());
    let main = identity(
        raw.access_key_id,
        raw.secret_access_key,
        raw.secret_access_key_file,
        "storage.s3.access_key_id",
        "storage.s3.secret_access_key",
        false,
    )?;
    let read = identity(
        raw.read_access_key_id,
        raw.read_secret_access_key,
        raw.read_secret_access_key_file,
        "storage.s3.read_access_key_id",
        "storage.s3.read_secret_access_key",
        true,
    )?;
    let download_identity = read.or(main).ok_or_else(|| {
        ConfigError::new(
            "storage.s3.access_key_id",
            "is required (or read_access_key_id): downloads are signed with it",
        )
    })?;
    let signer = std::sync::Arc::new(crate::s3_sign::S3Signer::new(
        endpoint.as_deref(),
        &region,
        &bucket,
        path_style,
        &download_identity.access_key_id,
        &download_identity.secret_access_key,
    ));
    Ok(S3Config {
        signer,
        endpoint,
        region,
        bucket,
        path_style,
        upload_prefix: raw.upload_prefix.unwrap_or_default(),
        download_identity,
    })
}

fn required(v: Option<String>, key: &'static str) -> Result<String, ConfigError> {
    match v {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::new(
            key,
            "is required with [storage] backend = \"s3\"",
        )),
    }
}

/// A key pair from its ID and its secret (inline or `_file`); `None` when
/// neither part is set, an error when only one is.
fn identity(
    id: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    id_key: &'static str,
    secret_key: &'static str,
    read_only: bool,
) -> Result<Option<S3Identity>, ConfigError> {
    let secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                secret_key,
                "set it or its _file variant, not both",
            ));
        }
        (Some(s), None) => Some(s),
        (None, Some(path)) => {
            let mut lines = read_secret_file(&path).map_err(|why| ConfigError::new(secret_key, why))?;
            if lines.len() != 1 {
                return Err(ConfigError::new(
                    secret_key,
                    "its _file must hold exactly one line",
                ));
            }
            lines.pop()
        }
        (None, None) => None,
    };
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok(Some(S3Identity {
            access_key_id: id,
            secret_access_key: zeroize::Zeroizing::new(secret),
            read_only,
        })),
        (Some(_), _) => Err(ConfigError::new(secret_key, "is required with its access key ID")),
        (None, Some(_)) => Err(ConfigError::new(id_key, "is required with its secret access key")),
    }
}
