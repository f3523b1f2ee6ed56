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

#[cfg(test)]
mod tests {
    use crate::config::{load_from, Sources};

    const S3: &[(&str, &str)] = &[
        ("ASSETGATE_LINK_SECRET", "link-secret-0123456789abcdef"),
        ("ASSETGATE_STORAGE__BACKEND", "s3"),
        ("ASSETGATE_STORAGE__S3__REGION", "us-east-1"),
        ("ASSETGATE_STORAGE__S3__BUCKET", "assets"),
        ("ASSETGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:8333"),
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", "main"),
        ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", "main-secret-value"),
    ];

    fn load(
        extra: &[(&str, &str)],
        without: &[&str],
    ) -> Result<crate::config::Config, crate::config::ConfigError> {
        let env: Vec<(String, String)> = S3
            .iter()
            .filter(|(k, _)| !without.contains(k))
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_from(&Sources::default(), &env)
    }

    #[test]
    fn fs_is_the_default_and_needs_no_s3_section() {
        let env = vec![(
            "ASSETGATE_LINK_SECRET".to_string(),
            "link-secret-0123456789abcdef".to_string(),
        )];
        let c = load_from(&Sources::default(), &env).unwrap();
        assert_eq!(c.storage_backend, super::StorageBackend::Fs);
        assert!(c.storage_s3.is_none());
    }

    #[test]
    fn the_read_only_identity_signs_when_set() {
        let c = load(&[], &[]).unwrap();
        let s3 = c.storage_s3.unwrap();
        assert!(s3.path_style, "an endpoint means path style by default");
        assert_eq!(s3.download_identity.access_key_id, "main");
        assert!(!s3.download_identity.read_only);
        let c = load(
            &[
                ("ASSETGATE_STORAGE__S3__READ_ACCESS_KEY_ID", "reader"),
                (
                    "ASSETGATE_STORAGE__S3__READ_SECRET_ACCESS_KEY",
                    "reader-secret-value",
                ),
            ],
            &[],
        )
        .unwrap();
        let id = &c.storage_s3.as_ref().unwrap().download_identity;
        assert_eq!(id.access_key_id, "reader");
        assert!(id.read_only);
        // Shown and debugged without the secret.
        let shown = c.redacted_toml();
        assert!(
            !shown.contains("reader-secret-value") && !shown.contains("main-secret-value"),
            "{shown}"
        );
        assert!(shown.contains("<redacted: 19 bytes>"), "{shown}");
        assert!(!format!("{c:?}").contains("reader-secret-value"));
    }

    #[test]
    fn the_secret_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s3-secret");
        std::fs::write(&f, "file-secret-value\n").unwrap();
        let path = f.to_str().unwrap();
        let c = load(
            &[("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY_FILE", path)],
            &["ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY"],
        )
        .unwrap();
        assert_eq!(
            c.storage_s3.unwrap().download_identity.secret_access_key.as_str(),
            "file-secret-value"
        );
        let e = load(&[("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY_FILE", path)], &[]).unwrap_err();
        assert_eq!(e.key, "storage.s3.secret_access_key");
    }

    #[test]
    fn bad_s3_sections_name_the_key() {
        /// Extra variables, variables left out, the key the error names.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
        let cases: &[Case] = &[
            (&[], &["ASSETGATE_STORAGE__S3__REGION"], "storage.s3.region"),
            (&[], &["ASSETGATE_STORAGE__S3__BUCKET"], "storage.s3.bucket"),
            (
                &[],
                &[
                    "ASSETGATE_STORAGE__S3__ACCESS_KEY_ID",
                    "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
                ],
                "storage.s3.access_key_id",
            ),
            (
                &[],
                &["ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY"],
                "storage.s3.secret_access_key",
            ),
            (
                &[],
                &["ASSETGATE_STORAGE__S3__ACCESS_KEY_ID"],
                "storage.s3.access_key_id",
            ),
            (
                &[("ASSETGATE_STORAGE__S3__ENDPOINT", "127.0.0.1:8333")],
                &["ASSETGATE_STORAGE__S3__ENDPOINT"],
                "storage.s3.endpoint",
            ),
            (
                &[("ASSETGATE_STORAGE__S3__ENDPOINT", "http://127.0.0.1:8333/bucket")],
                &["ASSETGATE_STORAGE__S3__ENDPOINT"],
                "storage.s3.endpoint",
            ),
            (
                &[("ASSETGATE_STORAGE__BACKEND", "gcs")],
                &["ASSETGATE_STORAGE__BACKEND"],
                "storage.backend",
            ),
        ];
        for (extra, without, key) in cases {
            let e = load(extra, without).unwrap_err();
            assert_eq!(e.key, *key, "{extra:?} without {without:?}: {e}");
            assert!(!e.to_string().contains("main-secret-value"), "{e}");
        }
    }
}
