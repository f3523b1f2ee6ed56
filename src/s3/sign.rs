//! SigV4 for the S3 download relay: `/auth` answers an allowed download with
//! the headers of a signed `GET`/`HEAD` of the object, and nginx sets them on
//! its `proxy_pass` to the bucket (`nginx/assetgate-s3-locations.conf`). nginx
//! cannot sign (no njs); the store never sees an unsigned request.
//!
//! What is signed is what nginx sends:
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
//! The signing key is cached per day. `aws-sigv4`'s `sign()` derives it on
//! every call (four HMAC-SHA256) and takes no precomputed key: 59,014 of the
//! 145,170 instructions of a signed `/auth` went there. So the relay builds
//! the two short texts SigV4 signs itself, for the one request shape it ever
//! signs (GET or HEAD, no query, the headers `host`, `x-amz-content-sha256`,
//! `x-amz-date`, the empty payload), and leaves the cryptography to
//! `aws-sigv4`: `generate_signing_key` (once per UTC day and identity) and
//! `calculate_signature`. The result is checked against `aws-sigv4`'s own
//! `sign()`, set for S3 (the path signed exactly as sent:
//! `PercentEncodingMode::Single`, `UriPathNormalizationMode::Disabled`,
//! `x-amz-content-sha256`), over generated keys, times and both methods
//! (`tests::the_cached_key_signs_as_aws_sigv4_does`), and that reference
//! against AWS's published example (`tests::aws_get_object_vector`).
//! What it costs per `/auth` is in BENCHMARKS.md (`auth_s3_sign`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

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

/// Why a read could not be signed: a time outside what SigV4 dates can say
/// (before 1970 or after 9999).
pub type SignError = Box<dyn std::error::Error + Send + Sync>;

/// The headers the relay signs, in SigV4's order (lower case, sorted).
const SIGNED_HEADERS: &str = "host;x-amz-content-sha256;x-amz-date";

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
    access_key_id: String,
    secret_access_key: Secret,
    region: String,
    /// `Host` nginx sends to the store (and that is signed).
    host: String,
    /// `/<bucket>` (path style) or empty (virtual-hosted): the path before the key.
    path_prefix: String,
    /// `scheme://host`, only to give `aws-sigv4`'s `sign()` an absolute URI
    /// (the tests' reference).
    #[cfg_attr(not(test), allow(dead_code))]
    origin: String,
    /// The signing key of the last UTC day signed for: `(days since the
    /// epoch, key)`. A new day derives a new one.
    day_key: Mutex<Option<(i64, [u8; 32])>>,
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
        S3Signer {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Secret::new(secret_access_key.as_bytes().to_vec()),
            region: region.to_owned(),
            origin: format!("{scheme}://{host}"),
            host,
            path_prefix,
            day_key: Mutex::new(None),
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
        let when = time::OffsetDateTime::from_unix_timestamp(unix_seconds)?;
        let (y, m, d) = (when.year(), u8::from(when.month()), when.day());
        if !(1970..=9999).contains(&y) {
            return Err(format!("year {y} cannot be signed").into());
        }
        let day = format!("{y:04}{m:02}{d:02}");
        let mut date = String::with_capacity(16);
        let _ = write!(
            date,
            "{day}T{:02}{:02}{:02}Z",
            when.hour(),
            when.minute(),
            when.second()
        );

        // SigV4's canonical request for this one shape: no query, three
        // signed headers, the empty payload.
        let mut canonical = Sha256::new();
        for part in [
            method.as_str(),
            "\n",
            &path,
            "\n\nhost:",
            &self.host,
            "\nx-amz-content-sha256:",
            EMPTY_PAYLOAD_SHA256,
            "\nx-amz-date:",
            &date,
            "\n\n",
            SIGNED_HEADERS,
            "\n",
            EMPTY_PAYLOAD_SHA256,
        ] {
            canonical.update(part.as_bytes());
        }
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex::encode(canonical.finalize())
        );
        let signature = v4::calculate_signature(
            self.signing_key(unix_seconds.div_euclid(86_400)),
            string_to_sign.as_bytes(),
        );
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}",
            self.access_key_id
        );
        Ok(SignedRead {
            path,
            date,
            content_sha256: EMPTY_PAYLOAD_SHA256,
            authorization,
        })
    }

    /// The signing key of the UTC day `day` (days since the epoch), derived
    /// by `aws-sigv4` once per day and kept.
    fn signing_key(&self, day: i64) -> [u8; 32] {
        let mut cached = self
            .day_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((d, key)) = *cached {
            if d == day {
                return key;
            }
        }
        let secret = String::from_utf8_lossy(self.secret_access_key.expose());
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(day * 86_400).unwrap_or(0));
        let derived = v4::generate_signing_key(&secret, at, &self.region, "s3");
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.as_ref());
        *cached = Some((day, key));
        key
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode,
    };
    use aws_smithy_runtime_api::client::identity::Identity;
    use proptest::prelude::*;

    use super::*;

    impl S3Signer {
        /// The reference: `aws-sigv4`'s `sign()` over `method path` with
        /// `host` and `extra` headers (the relay signs none; the AWS example
        /// signs `range`), set for S3: `(x-amz-date, Authorization)`.
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
            let secret = String::from_utf8_lossy(self.secret_access_key.expose()).into_owned();
            let identity: Identity =
                Credentials::new(&self.access_key_id, secret, None, None, "assetgate-test").into();
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The relay's signature is `aws-sigv4`'s own, for any key (any
        /// bytes: spaces, `+`, `%`, UTF-8, `?`, `#`), any time from 1970 to
        /// 9999 (the cached key crosses days in one signer), both methods,
        /// path style or not.
        #[test]
        fn the_cached_key_signs_as_aws_sigv4_does(
            key in proptest::collection::vec(any::<u8>(), 1..64),
            times in proptest::collection::vec(0i64..253_402_300_799, 1..4),
            head in any::<bool>(),
            path_style in any::<bool>(),
        ) {
            let signer = S3Signer::new(Some("http://127.0.0.1:8333"), "eu-west-3", "assets", path_style, "AKID", "a/secret+key");
            let method = if head { ObjectMethod::Head } else { ObjectMethod::Get };
            for t in times {
                let fast = signer.sign_read(method, &key, t).unwrap();
                let time = SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64);
                let (date, authorization) = signer.sign(method.as_str(), &fast.path, &[], time).unwrap();
                prop_assert_eq!(&fast.date, &date);
                prop_assert_eq!(&fast.authorization, &authorization);
            }
        }
    }

    /// The key is derived once per UTC day: a second read the same day uses
    /// the cached key, the next day another one (and both sign as the
    /// reference does: the property above).
    #[test]
    fn the_signing_key_is_kept_for_its_day() {
        let signer = S3Signer::new(Some("http://127.0.0.1:8333"), "us-east-1", "b", true, "AK", "SK");
        let day = 1_800_000_000 / 86_400;
        signer.sign_read(ObjectMethod::Get, b"a", 1_800_000_000).unwrap();
        let first = signer.day_key.lock().unwrap().unwrap();
        assert_eq!(first.0, day);
        signer
            .sign_read(ObjectMethod::Get, b"b", 1_800_000_000 + 1)
            .unwrap();
        assert_eq!(signer.day_key.lock().unwrap().unwrap(), first);
        signer
            .sign_read(ObjectMethod::Get, b"c", (day + 1) * 86_400)
            .unwrap();
        let next = signer.day_key.lock().unwrap().unwrap();
        assert_eq!(next.0, day + 1);
        assert_ne!(next.1, first.1);
    }

    /// Times SigV4 cannot write are refused, not signed with a wrong date.
    #[test]
    fn times_outside_sigv4_dates_are_refused() {
        let signer = S3Signer::new(Some("http://127.0.0.1:8333"), "us-east-1", "b", true, "AK", "SK");
        assert!(signer.sign_read(ObjectMethod::Get, b"a", -1).is_err());
        assert!(signer
            .sign_read(ObjectMethod::Get, b"a", 253_402_300_800)
            .is_err());
        assert!(signer.sign_read(ObjectMethod::Get, b"a", 253_402_300_799).is_ok());
    }

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
