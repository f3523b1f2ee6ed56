//! SigV4 for the S3 download relay: `/auth` answers an allowed download with
//! the headers of a signed `GET`/`HEAD` of the object, and nginx sets them on
//! its `proxy_pass` to the bucket (`nginx/assetgate-s3-locations.conf`). nginx
//! cannot sign (no njs); the store never sees an unsigned request.
//!
//! The signature comes from `aws-sigv4` (the AWS SDK's own signer; no
//! hand-written SigV4), set for S3: the path signed exactly as sent
//! (`PercentEncodingMode::Single`, `UriPathNormalizationMode::Disabled`), in
//! headers, with `x-amz-content-sha256`. What is signed is what nginx sends:
//! the method (`X-Original-Method`, GET or HEAD only), the path this module
//! encodes (nginx sends a variable `proxy_pass` URI verbatim), `host`,
//! `x-amz-date` and `x-amz-content-sha256`. `Range`, `If-*` are not signed, so
//! nginx may pass the client's (206, 304 work).
//!
//! Payload hash: the SHA-256 of the empty body, not `UNSIGNED-PAYLOAD`. Both
//! are accepted for a GET; the empty hash is the true value of what nginx
//! sends (no body), so the signature also covers "no body", and it is a
//! constant (no hashing per request).
//!
//! The signing key: `aws-sigv4`'s `sign` derives it per request (four
//! HMAC-SHA256 of a few bytes) and takes no precomputed key; caching it per
//! day would need the canonical request and string to sign, which the crate
//! keeps private, i.e. writing SigV4 by hand. What it costs per `/auth` is in
//! BENCHMARKS.md (instructions, `benches/decisions_ir.rs`).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::config::{ConfigError, S3Config};
use crate::secret::Secret;

/// SHA-256 of the empty body: the `x-amz-content-sha256` of every relayed
/// request (GET and HEAD carry no body).
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Bytes an S3 key keeps as they are in a path: RFC 3986's unreserved set and
/// `/` (the separator). Everything else is `%XX` (upper-case hex), which is
/// both what S3's canonical URI expects and what nginx forwards untouched.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Why `aws-sigv4` could not sign (its parameter or request errors).
pub type SignError = Box<dyn std::error::Error + Send + Sync>;

/// The only methods the relay signs: reads. A link is a read; signing a `PUT`
/// or `DELETE` with the same identity would let a link holder write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectMethod {
    /// `GET` (also nginx's own method for a `Range` request).
    Get,
    /// `HEAD`.
    Head,
}

impl ObjectMethod {
    /// From nginx's `X-Original-Method` (`$request_method`): `None` for any
    /// other method.
    pub fn from_header(value: &[u8]) -> Option<ObjectMethod> {
        match value {
            b"GET" => Some(ObjectMethod::Get),
            b"HEAD" => Some(ObjectMethod::Head),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ObjectMethod::Get => "GET",
            ObjectMethod::Head => "HEAD",
        }
    }
}

/// Signs object reads for one bucket with one identity (built once per
/// configuration, shared by every `/auth`).
pub struct S3Signer {
    identity: Identity,
    region: String,
    /// `Host` nginx sends to the store (and that is signed).
    host: String,
    /// `/<bucket>` (path style) or empty (virtual-hosted): the path before the key.
    path_prefix: String,
    /// `scheme://host`, only to give `aws-sigv4` an absolute URI.
    origin: String,
}

impl std::fmt::Debug for S3Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Signer")
            .field("region", &self.region)
            .field("host", &self.host)
            .field("path_prefix", &self.path_prefix)
            .finish_non_exhaustive()
    }
}

/// The headers of one signed object request, for nginx to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRead {
    /// The request path, encoded: `proxy_pass http://store$path` sends it as is.
    pub path: String,
    /// `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
    pub date: String,
    /// `x-amz-content-sha256`.
    pub content_sha256: &'static str,
    /// `Authorization`.
    pub authorization: String,
}

impl S3Signer {
    /// The signer of a `[storage.s3]`: the read-only identity
    /// (`read_access_key_id` / `read_secret_access_key`) when it is set, so a
    /// leaked signature can only read; else the main one.
    pub fn for_downloads(s3: &S3Config) -> Result<S3Signer, ConfigError> {
        let (id, secret, id_key, secret_key) = match (&s3.read_access_key_id, &s3.read_secret_access_key) {
            (Some(id), Some(secret)) => (
                id,
                secret,
                "storage.s3.read_access_key_id",
                "storage.s3.read_secret_access_key",
            ),
            _ => (
                &s3.access_key_id,
                &s3.secret_access_key,
                "storage.s3.access_key_id",
                "storage.s3.secret_access_key",
            ),
        };
        // The loader reads credentials as text, so this cannot fail today;
        // said by key (never the value) if it ever does.
        fn text<'a>(v: &'a Secret, key: &'static str) -> Result<&'a str, ConfigError> {
            std::str::from_utf8(v.expose()).map_err(|_| ConfigError::new(key, "is not UTF-8 text"))
        }
        Ok(S3Signer::new(
            s3.endpoint.as_deref(),
            &s3.region,
            &s3.bucket,
            s3.path_style,
            text(id, id_key)?,
            text(secret, secret_key)?,
        ))
    }

    /// A signer for `bucket` on `endpoint` (`scheme://host[:port]`; `None`:
    /// AWS, `https://s3.<region>.amazonaws.com`), path style or virtual-hosted.
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        bucket: &str,
        path_style: bool,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> S3Signer {
        let aws = format!("https://s3.{region}.amazonaws.com");
        let endpoint = endpoint.unwrap_or(&aws);
        let (scheme, authority) = endpoint.split_once("://").unwrap_or(("https", endpoint));
        let authority = authority.trim_end_matches('/');
        let bucket_path = percent_encoding::utf8_percent_encode(bucket, KEY).to_string();
        let (host, path_prefix) = if path_style {
            (authority.to_owned(), format!("/{bucket_path}"))
        } else {
            (format!("{bucket}.{authority}"), String::new())
        };
        let identity =
            Credentials::new(access_key_id, secret_access_key, None, None, "assetgate-config").into();
        S3Signer {
            identity,
            region: region.to_owned(),
            origin: format!("{scheme}://{host}"),
            host,
            path_prefix,
        }
    }

    /// The `Host` the signature covers (nginx: `proxy_set_header Host`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The encoded request path of the object `key` (no leading `/`).
    pub fn object_path(&self, key: &[u8]) -> String {
        let mut path = String::with_capacity(self.path_prefix.len() + 1 + key.len());
        path.push_str(&self.path_prefix);
        path.push('/');
        path.extend(percent_encoding::percent_encode(key, KEY));
        path
    }

    /// Signs `method` of the object `key` at `unix_seconds`.
    pub fn sign_read(
        &self,
        method: ObjectMethod,
        key: &[u8],
        unix_seconds: i64,
    ) -> Result<SignedRead, SignError> {
        let path = self.object_path(key);
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_seconds).unwrap_or(0));
        let (date, authorization) = self.sign(method.as_str(), &path, &[], time)?;
        Ok(SignedRead {
            path,
            date,
            content_sha256: EMPTY_PAYLOAD_SHA256,
            authorization,
        })
    }

    /// `aws-sigv4` over `method path` with `host` and `extra` headers (the
    /// relay signs none; the AWS test vector signs `range`): `(x-amz-date,
    /// Authorization)`.
    fn sign(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        time: SystemTime,
    ) -> Result<(String, String), SignError> {
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()?
            .into();
        let uri: Cow<'_, str> = Cow::Owned(format!("{}{path}", self.origin));
        let headers = std::iter::once(("host", self.host.as_str())).chain(extra.iter().copied());
        let req = SignableRequest::new(
            method,
            uri,
            headers,
            SignableBody::Precomputed(EMPTY_PAYLOAD_SHA256.to_owned()),
        )?;
        let (instructions, _signature) = sign(req, &params)?.into_parts();
        let (mut date, mut authorization) = (String::new(), String::new());
        for (name, value) in instructions.headers() {
            match name {
                "x-amz-date" => date = value.to_owned(),
                "authorization" => authorization = value.to_owned(),
                _ => {}
            }
        }
        Ok((date, authorization))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[storage.s3]` with the main identity and, when given, a read-only one.
    fn s3_config(read: Option<(&str, &str)>) -> S3Config {
        let secret = |t: &str| Secret::new(t.as_bytes().to_vec());
        S3Config {
            endpoint: Some("http://127.0.0.1:8333".into()),
            region: "us-east-1".into(),
            bucket: "assets".into(),
            path_style: true,
            upload_prefix: "tus/".into(),
            access_key_id: secret("main"),
            secret_access_key: secret("main-secret"),
            read_access_key_id: read.map(|(id, _)| secret(id)),
            read_secret_access_key: read.map(|(_, s)| secret(s)),
        }
    }

    /// Downloads are signed with the read-only identity when it is set (a
    /// leaked signature can then only read), else with the main one; the
    /// signature itself differs with the secret, not only the key ID.
    #[test]
    fn downloads_are_signed_with_the_read_only_identity_when_set() {
        let sign = |c: &S3Config| {
            S3Signer::for_downloads(c)
                .unwrap()
                .sign_read(ObjectMethod::Get, b"private/a.txt", 1_800_000_000)
                .unwrap()
                .authorization
        };
        let main = sign(&s3_config(None));
        assert!(
            main.contains("Credential=main/20270115/us-east-1/s3/aws4_request"),
            "{main}"
        );
        let read = sign(&s3_config(Some(("reader", "reader-secret"))));
        assert!(
            read.contains("Credential=reader/20270115/us-east-1/s3/aws4_request"),
            "{read}"
        );
        let other_secret = sign(&s3_config(Some(("reader", "another-secret"))));
        assert_ne!(
            read.rsplit_once("Signature=").unwrap().1,
            other_secret.rsplit_once("Signature=").unwrap().1
        );
    }

    /// AWS's published example "GET Object" (Amazon S3 API reference,
    /// "Signature Calculations for the Authorization Header: Transferring
    /// Payload in a Single Chunk", example 1): `GET /test.txt` on
    /// `examplebucket.s3.amazonaws.com`, `Range: bytes=0-9`, empty payload
    /// hash, 2013-05-24T00:00:00Z, the documentation's example key pair.
    #[test]
    fn aws_get_object_vector() {
        let signer = S3Signer::new(
            Some("https://s3.amazonaws.com"),
            "us-east-1",
            "examplebucket",
            false,
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        assert_eq!(signer.host(), "examplebucket.s3.amazonaws.com");
        let path = signer.object_path(b"test.txt");
        assert_eq!(path, "/test.txt");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let (date, authorization) = signer
            .sign("GET", &path, &[("range", "bytes=0-9")], time)
            .unwrap();
        assert_eq!(date, "20130524T000000Z");
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// What the relay signs: no `range`, the method given, path style.
    #[test]
    fn relay_signs_host_date_and_payload_hash_only() {
        let signer = S3Signer::new(
            Some("http://127.0.0.1:8333"),
            "us-east-1",
            "assets",
            true,
            "AK",
            "SK",
        );
        assert_eq!(signer.host(), "127.0.0.1:8333");
        let get = signer
            .sign_read(ObjectMethod::Get, b"private/a.txt", 1_369_353_600)
            .unwrap();
        let head = signer
            .sign_read(ObjectMethod::Head, b"private/a.txt", 1_369_353_600)
            .unwrap();
        assert_eq!(get.path, "/assets/private/a.txt");
        assert_eq!(get.content_sha256, EMPTY_PAYLOAD_SHA256);
        assert!(
            get.authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{}",
            get.authorization
        );
        assert_ne!(get.authorization, head.authorization, "the method is signed");
    }

    /// Keys are encoded once, S3 style: unreserved bytes and `/` kept, the
    /// rest `%XX` upper case (space, `+`, `%`, UTF-8 bytes).
    #[test]
    fn object_path_encodes_every_reserved_byte() {
        let signer = S3Signer::new(Some("http://127.0.0.1:8333"), "us-east-1", "b", true, "AK", "SK");
        assert_eq!(
            signer.object_path("private/a b+c%d~e_f-g.h/é日.txt".as_bytes()),
            "/b/private/a%20b%2Bc%25d~e_f-g.h/%C3%A9%E6%97%A5.txt"
        );
        assert_eq!(
            signer.object_path(b"private/a?b#c&d=e;"),
            "/b/private/a%3Fb%23c%26d%3De%3B"
        );
    }
}
