//! granite-assets upload tokens (tus `Upload-Metadata`), verified in tusd hooks.
//!
//! granite's `build_upload_url` puts five metadata entries on the tus creation
//! request; tusd decodes them and hands the hook plain strings:
//!
//! | field | value |
//! |---|---|
//! | `asset-key` | the logical key, e.g. `invoices/inv-001.pdf` |
//! | `content-type` | the declared MIME type, signed verbatim |
//! | `visibility` | `public` or `private` |
//! | `upload-expires` | Unix seconds, decimal |
//! | `upload-token` | hex `HMAC-SHA256(secret, "{expires}:{key}:{visibility}:{content_type}")` |
//!
//! The payload is rebuilt from the strings exactly as sent: an expiry with
//! leading zeros is signed with them, a content type with parameters is signed
//! with them. The token is 64 hex digits in either case, decoded and compared
//! in constant time ([`crate::secret::Mac::verify`], `subtle`) with the HMAC
//! under every configured secret (rotation); every secret is tried, so timing
//! does not tell which one matched. Each secret's HMAC starts from its padded
//! key states, computed once when the secret was loaded ([`crate::secret`]).
//!
//! Two entry points, two proof types, so they cannot be confused:
//!
//! - [`verify`] (pre-create): shape, key, visibility, signature, expiry and
//!   lifetime window. Returns [`UploadVerified`].
//! - [`verify_signature_ignoring_expiry`] (post-finish, finalize-pending):
//!   the same without the clock, because large uploads outlive short tokens.
//!   Returns [`SignatureVerified`].
//!
//! Checks run in this order and the first failure decides (so an answer
//! never depends on which check ran first): fields
//! missing → fields malformed → key unsafe → visibility → signature → expired →
//! lifetime too long. A field that is present but empty counts as missing
//! (rustus drops metadata keys without a value, tusd keeps them as `""`: both
//! then get the same answer).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::UploadConfig;
use crate::policy::{self, KeyError, Visibility};
use crate::secret::SecretSet;

/// Decoded tus metadata, as tusd hands it to hooks.
pub type Metadata = BTreeMap<String, String>;

/// Metadata field: the asset key.
pub const FIELD_KEY: &str = "asset-key";
/// Metadata field: the declared content type.
pub const FIELD_CONTENT_TYPE: &str = "content-type";
/// Metadata field: `public` or `private`.
pub const FIELD_VISIBILITY: &str = "visibility";
/// Metadata field: token expiry, Unix seconds.
pub const FIELD_EXPIRES: &str = "upload-expires";
/// Metadata field: the hex HMAC.
pub const FIELD_TOKEN: &str = "upload-token";
/// The five fields, in the order they are checked for presence.
pub const FIELDS: [&str; 5] = [
    FIELD_KEY,
    FIELD_CONTENT_TYPE,
    FIELD_VISIBILITY,
    FIELD_EXPIRES,
    FIELD_TOKEN,
];

type HmacSha256 = Hmac<Sha256>;

/// The reason classes of a refused upload token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UploadRefusal {
    /// A field is absent or empty.
    MetadataMissing,
    /// Non-numeric expiry, or a token that is not 64 hex digits.
    MetadataInvalid,
    /// The key breaks the key policy.
    KeyInvalid,
    /// Visibility is not `public` or `private`.
    VisibilityInvalid,
    /// The HMAC matches no configured secret.
    TokenInvalid,
    /// Signature right, token expired.
    TokenExpired,
    /// Signature right, expiry further ahead than `max_ttl` allows.
    TokenTtlTooLong,
}

impl UploadRefusal {
    /// All values.
    pub const ALL: [UploadRefusal; 7] = [
        UploadRefusal::MetadataMissing,
        UploadRefusal::MetadataInvalid,
        UploadRefusal::KeyInvalid,
        UploadRefusal::VisibilityInvalid,
        UploadRefusal::TokenInvalid,
        UploadRefusal::TokenExpired,
        UploadRefusal::TokenTtlTooLong,
    ];

    /// The wire code (JSON `error.code`, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            UploadRefusal::MetadataMissing => "metadata_missing",
            UploadRefusal::MetadataInvalid => "metadata_invalid",
            UploadRefusal::KeyInvalid => "key_invalid",
            UploadRefusal::VisibilityInvalid => "visibility_invalid",
            UploadRefusal::TokenInvalid => "token_invalid",
            UploadRefusal::TokenExpired => "token_expired",
            UploadRefusal::TokenTtlTooLong => "token_ttl_too_long",
        }
    }
}

/// Exactly what failed. Never contains a secret, the token, or the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Detail {
    /// This metadata field is absent or empty.
    #[error("upload metadata has no {0:?} value")]
    Missing(&'static str),
    /// `upload-expires` is not plain decimal digits fitting in 63 bits.
    #[error("upload-expires is not a decimal number of Unix seconds")]
    BadExpires,
    /// `upload-token` is not 64 hex digits (its length in bytes).
    #[error("upload-token must be 64 hexadecimal characters (got {0} bytes, or a non-hex character)")]
    BadToken(usize),
    /// The key breaks the key policy.
    #[error("{0}")]
    Key(KeyError),
    /// `visibility` is not `public`/`private`.
    #[error("visibility must be \"public\" or \"private\"")]
    Visibility,
    /// Well-formed, signature matches none of the secrets.
    #[error("{}", if *.secrets == 0 {
        "upload token cannot be verified: no upload secret is configured"
    } else {
        "upload token does not match this key, visibility, content type and expiry"
    })]
    Mismatch {
        /// How many secrets were tried.
        secrets: usize,
    },
    /// `now > expires + skew`.
    #[error("upload token expired {} s ago", .now.saturating_sub(*.expires))]
    Expired {
        /// Token expiry.
        expires: i64,
        /// Verifier clock.
        now: i64,
        /// Tolerated skew, seconds.
        skew: i64,
    },
    /// `expires > now + max_ttl + skew`.
    #[error(
        "upload token expires in {} s, more than the {max_ttl} s this server accepts",
        .expires.saturating_sub(*.now)
    )]
    TtlTooLong {
        /// Token expiry.
        expires: i64,
        /// Verifier clock.
        now: i64,
        /// Longest accepted lifetime, seconds.
        max_ttl: i64,
    },
}

/// A refused upload token: reason class plus detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", self.reason().as_str())]
pub struct Denied {
    detail: Detail,
}

impl Denied {
    fn new(detail: Detail) -> Self {
        Denied { detail }
    }

    /// The reason class.
    pub fn reason(&self) -> UploadRefusal {
        match self.detail {
            Detail::Missing(_) => UploadRefusal::MetadataMissing,
            Detail::BadExpires | Detail::BadToken(_) => UploadRefusal::MetadataInvalid,
            Detail::Key(_) => UploadRefusal::KeyInvalid,
            Detail::Visibility => UploadRefusal::VisibilityInvalid,
            Detail::Mismatch { .. } => UploadRefusal::TokenInvalid,
            Detail::Expired { .. } => UploadRefusal::TokenExpired,
            Detail::TtlTooLong { .. } => UploadRefusal::TokenTtlTooLong,
        }
    }

    /// What exactly failed.
    pub fn detail(&self) -> &Detail {
        &self.detail
    }
}

/// The claims a valid token grants, shared by both proof types.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    key: String,
    visibility: Visibility,
    content_type: String,
    expires: i64,
    /// [`Grant::id`], computed once: pre-create asks it for the upload ID,
    /// a final upload's parts and the single-use claim.
    id: std::sync::OnceLock<[u8; 32]>,
}

impl Grant {
    /// SHA-256 over `{expires}:{key}:{visibility}:{content_type}`, domain
    /// separated. The domain says "single-use" because the single-use marks
    /// were its first user: marks already stored in Redis keep matching.
    fn id(&self) -> [u8; 32] {
        *self.id.get_or_init(|| {
            use sha2::Digest;
            let mut h = Sha256::new();
            h.update(b"assetgate single-use v1\0");
            // `{expires}:{key}:{visibility}:{content_type}`, written piece by
            // piece (no formatting machinery on the pre-create path).
            let mut digits = [0u8; 20];
            h.update(decimal(self.expires, &mut digits));
            h.update(b":");
            h.update(self.key.as_bytes());
            h.update(b":");
            h.update(self.visibility.as_str().as_bytes());
            h.update(b":");
            h.update(self.content_type.as_bytes());
            h.finalize().into()
        })
    }
}

/// `n` in decimal, in `buf` (an `i64` fits in 20 bytes with its sign).
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

macro_rules! grant_accessors {
    ($t:ident) => {
        impl $t {
            /// The asset key (policy-checked).
            pub fn key(&self) -> &str {
                &self.0.key
            }
            /// The signed visibility.
            pub fn visibility(&self) -> Visibility {
                self.0.visibility
            }
            /// The signed content type, exactly as sent.
            pub fn content_type(&self) -> &str {
                &self.0.content_type
            }
            /// The signed expiry (Unix seconds).
            pub fn expires(&self) -> i64 {
                self.0.expires
            }
            /// The grant's identity: SHA-256 of its signed fields (expiry,
            /// key, visibility, content type), the same whichever secret
            /// signed it. What `[upload] single_use` marks and what an upload
            /// ID is bound to ([`crate::token::upload_id`]).
            pub fn grant_id(&self) -> [u8; 32] {
                self.0.id()
            }
        }
    };
}

/// Proof that the upload token was fully verified (signature AND expiry window)
/// at `now`. Only [`verify`] builds one: pre-create decisions take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadVerified(Grant);
grant_accessors!(UploadVerified);

/// Proof that the token's signature and key were verified, expiry NOT checked.
/// Only [`verify_signature_ignoring_expiry`] builds one: finalize takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureVerified(Grant);
grant_accessors!(SignatureVerified);

/// The lifetime window, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `[upload] clock_skew`.
    pub clock_skew: i64,
    /// `[upload] max_ttl`.
    pub max_ttl: i64,
}

impl Window {
    /// The window configured in `[upload]`.
    pub fn from_config(config: &UploadConfig) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Window {
            clock_skew: secs(config.clock_skew),
            max_ttl: secs(config.max_ttl),
        }
    }
}

/// Full pre-create verification under `[upload]` at `now` (Unix seconds).
pub fn verify(meta: &Metadata, config: &UploadConfig, now: i64) -> Result<UploadVerified, Denied> {
    verify_with(meta, &config.secrets, Window::from_config(config), now)
}

/// [`verify`] with explicit secrets and window.
pub fn verify_with(
    meta: &Metadata,
    secrets: &SecretSet,
    window: Window,
    now: i64,
) -> Result<UploadVerified, Denied> {
    let grant = check_signature(meta, secrets)?;
    let expires = grant.expires;
    if now > expires.saturating_add(window.clock_skew) {
        return Err(Denied::new(Detail::Expired {
            expires,
            now,
            skew: window.clock_skew,
        }));
    }
    if expires
        > now
            .saturating_add(window.max_ttl)
            .saturating_add(window.clock_skew)
    {
        return Err(Denied::new(Detail::TtlTooLong {
            expires,
            now,
            max_ttl: window.max_ttl,
        }));
    }
    Ok(UploadVerified(grant))
}

/// Signature-only verification for finalize: shape, key, visibility and HMAC
/// under any secret; the expiry is NOT compared with any clock (an upload that
/// was accepted at pre-create may finish long after its token expired).
pub fn verify_signature_ignoring_expiry(
    meta: &Metadata,
    secrets: &SecretSet,
) -> Result<SignatureVerified, Denied> {
    check_signature(meta, secrets).map(SignatureVerified)
}

/// Shape → key → visibility → signature.
fn check_signature(meta: &Metadata, secrets: &SecretSet) -> Result<Grant, Denied> {
    let mut values = [""; 5];
    for (slot, field) in values.iter_mut().zip(FIELDS) {
        match meta.get(field).map(String::as_str) {
            Some(v) if !v.is_empty() => *slot = v,
            _ => return Err(Denied::new(Detail::Missing(field))),
        }
    }
    let [key, content_type, visibility_text, expires_text, token] = values;

    let expires = parse_expires(expires_text).ok_or(Denied::new(Detail::BadExpires))?;
    let tag = parse_token(token).ok_or(Denied::new(Detail::BadToken(token.len())))?;
    policy::check_key(key).map_err(|e| Denied::new(Detail::Key(e)))?;
    let visibility = Visibility::parse(visibility_text).ok_or(Denied::new(Detail::Visibility))?;

    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets.iter() {
        // Every secret is tried (no early exit): timing does not say which
        // matched. The MAC starts from the secret's precomputed key states and
        // takes the payload's parts as they are (no payload string).
        let mut mac = secret.hmac_sha256();
        for part in payload_parts(expires_text, key, visibility_text, content_type) {
            mac.update(part.as_bytes());
        }
        matched |= mac.verify(&tag);
    }
    if !bool::from(matched) {
        return Err(Denied::new(Detail::Mismatch {
            secrets: secrets.len(),
        }));
    }
    Ok(Grant {
        key: key.to_owned(),
        visibility,
        content_type: content_type.to_owned(),
        expires,
        id: std::sync::OnceLock::new(),
    })
}

/// Plain decimal digits (leading zeros allowed), no sign, fits in i64.
fn parse_expires(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.bytes().try_fold(0i64, |acc, b| {
        acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

/// 64 hex digits, either case.
fn parse_token(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *o = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// One hex digit, either case.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `{expires}:{key}:{visibility}:{content_type}`, the signed payload, in parts.
fn payload_parts<'a>(
    expires_text: &'a str,
    key: &'a str,
    visibility: &'a str,
    content_type: &'a str,
) -> [&'a str; 7] {
    [expires_text, ":", key, ":", visibility, ":", content_type]
}

fn payload(expires_text: &str, key: &str, visibility: &str, content_type: &str) -> String {
    payload_parts(expires_text, key, visibility, content_type).concat()
}

/// The lowercase hex token granite mints, over the strings exactly as given
/// (`expires` as text, so leading zeros can be tested).
pub fn sign(secret: &[u8], expires: &str, key: &str, visibility: &str, content_type: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(payload(expires, key, visibility, content_type).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The five metadata fields granite's `build_upload_url` sends, decoded (what
/// tusd hands the hook). For tests and the `sign` CLI.
pub fn mint(secret: &[u8], key: &str, content_type: &str, visibility: Visibility, expires: i64) -> Metadata {
    let expires = expires.to_string();
    let token = sign(secret, &expires, key, visibility.as_str(), content_type);
    [
        (FIELD_KEY, key.to_owned()),
        (FIELD_CONTENT_TYPE, content_type.to_owned()),
        (FIELD_VISIBILITY, visibility.as_str().to_owned()),
        (FIELD_EXPIRES, expires),
        (FIELD_TOKEN, token),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grant id is the SHA-256 it always was (single-use marks in Redis
    /// and issued upload IDs keep matching), computed once per proof.
    #[test]
    fn grant_id_is_the_formatted_digest_and_is_computed_once() {
        use sha2::Digest;
        for (expires, key, vis, ct) in [
            (
                1_795_358_082_i64,
                "photos/été 2026/plage.jpg",
                Visibility::Public,
                "image/jpeg",
            ),
            (0, "a", Visibility::Private, "text/plain; charset=utf-8"),
            (i64::MAX, "x/y", Visibility::Private, "application/pdf"),
            (-5, "k", Visibility::Public, "a/b"),
            (i64::MIN, "k", Visibility::Public, "a/b"),
        ] {
            let g = Grant {
                key: key.into(),
                visibility: vis,
                content_type: ct.into(),
                expires,
                id: std::sync::OnceLock::new(),
            };
            let mut h = Sha256::new();
            h.update(b"assetgate single-use v1\0");
            h.update(format!("{expires}:{key}:{vis}:{ct}").as_bytes());
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(g.id(), want, "{expires} {key}");
            assert_eq!(g.id.get(), Some(&want), "kept");
            assert_eq!(g.id(), want);
        }
    }

    const S1: &str = "newest-upload-secret-0123";
    const S2: &str = "older-upload-secret-45678";
    const NOW: i64 = 1_800_000_000;
    const WIN: Window = Window {
        clock_skew: 30,
        max_ttl: 86_400,
    };

    fn set(secrets: &[&str]) -> SecretSet {
        SecretSet::from_texts(secrets)
    }

    fn meta(key: &str, ct: &str, vis: Visibility, expires: i64) -> Metadata {
        mint(S1.as_bytes(), key, ct, vis, expires)
    }

    fn check(m: &Metadata, now: i64) -> Result<UploadVerified, Denied> {
        verify_with(m, &set(&[S1]), WIN, now)
    }

    #[test]
    fn known_answer() {
        // The payload layout is granite's: computed with
        // Python `hmac.new(b"secret", b"1700000000:a/b.txt:private:text/plain", "sha256")`.
        assert_eq!(
            sign(b"secret", "1700000000", "a/b.txt", "private", "text/plain"),
            "682011b0504f41a66682c24eb46ced35283bd59bc78d1614ca600719deb56b2d"
        );
    }

    #[test]
    fn valid_token_yields_proof() {
        let m = meta(
            "photos/été 2026/plage.jpg",
            "image/jpeg",
            Visibility::Public,
            NOW + 600,
        );
        let ok = check(&m, NOW).unwrap();
        assert_eq!(ok.key(), "photos/été 2026/plage.jpg");
        assert_eq!(ok.visibility(), Visibility::Public);
        assert_eq!(ok.content_type(), "image/jpeg");
        assert_eq!(ok.expires(), NOW + 600);
    }

    #[test]
    fn rotation() {
        let m = mint(
            S2.as_bytes(),
            "a.txt",
            "text/plain",
            Visibility::Private,
            NOW + 60,
        );
        assert!(verify_with(&m, &set(&[S1, S2]), WIN, NOW).is_ok());
        assert_eq!(
            verify_with(&m, &set(&[S1]), WIN, NOW).unwrap_err().detail(),
            &Detail::Mismatch { secrets: 1 }
        );
        let none = verify_with(&m, &SecretSet::default(), WIN, NOW).unwrap_err();
        assert_eq!(none.detail(), &Detail::Mismatch { secrets: 0 });
        assert!(none.to_string().contains("no upload secret"));
    }

    #[test]
    fn missing_and_empty_fields() {
        let full = meta("a.txt", "text/plain", Visibility::Private, NOW + 60);
        for field in FIELDS {
            let mut m = full.clone();
            m.remove(field);
            let e = check(&m, NOW).unwrap_err();
            assert_eq!(e.reason(), UploadRefusal::MetadataMissing, "{field}");
            assert_eq!(e.detail(), &Detail::Missing(field));
            let mut m = full.clone();
            m.insert(field.to_owned(), String::new());
            assert_eq!(check(&m, NOW).unwrap_err().detail(), &Detail::Missing(field));
        }
        // the first missing field in FIELDS order is reported
        assert_eq!(
            check(&Metadata::new(), NOW).unwrap_err().detail(),
            &Detail::Missing(FIELD_KEY)
        );
    }

    #[test]
    fn malformed_fields() {
        let full = meta("a.txt", "text/plain", Visibility::Private, NOW + 60);
        for bad in [
            "soon",
            "-5",
            "+5",
            " 5",
            "5 ",
            "1e9",
            "0x10",
            "99999999999999999999",
        ] {
            let mut m = full.clone();
            m.insert(FIELD_EXPIRES.into(), bad.into());
            assert_eq!(
                check(&m, NOW).unwrap_err().detail(),
                &Detail::BadExpires,
                "{bad:?}"
            );
        }
        let token = full[FIELD_TOKEN].clone();
        for bad in [
            token[..63].to_string(),
            format!("{token}0"),
            format!("{}g", &token[..63]),
            format!(" {}", &token[..63]),
            "é".repeat(32),
        ] {
            let mut m = full.clone();
            m.insert(FIELD_TOKEN.into(), bad.clone());
            let e = check(&m, NOW).unwrap_err();
            assert_eq!(e.reason(), UploadRefusal::MetadataInvalid, "{bad:?}");
            assert!(!e.to_string().contains(&token[..16]), "never echo the token: {e}");
        }
        // shape before key: an unsafe key with a bad token is a shape error
        let mut m = meta("../x", "text/plain", Visibility::Private, NOW + 60);
        m.insert(FIELD_TOKEN.into(), "zz".into());
        assert_eq!(
            check(&m, NOW).unwrap_err().reason(),
            UploadRefusal::MetadataInvalid
        );
    }

    #[test]
    fn token_hex_is_case_insensitive() {
        let mut m = meta("a.txt", "text/plain", Visibility::Private, NOW + 60);
        let upper = m[FIELD_TOKEN].to_ascii_uppercase();
        m.insert(FIELD_TOKEN.into(), upper);
        assert!(check(&m, NOW).is_ok());
    }

    #[test]
    fn key_and_visibility_before_signature() {
        // a validly signed unsafe key is refused as key_invalid
        let m = meta("../etc/passwd", "text/plain", Visibility::Private, NOW + 60);
        assert_eq!(
            check(&m, NOW).unwrap_err().detail(),
            &Detail::Key(KeyError::DotSegment)
        );
        // an unsigned unsafe key too (key check comes before the signature)
        let mut m = m.clone();
        m.insert(FIELD_TOKEN.into(), "0".repeat(64));
        assert_eq!(check(&m, NOW).unwrap_err().reason(), UploadRefusal::KeyInvalid);

        let expires = (NOW + 60).to_string();
        let mut m = meta("a.txt", "text/plain", Visibility::Private, NOW + 60);
        m.insert(FIELD_VISIBILITY.into(), "secret".into());
        m.insert(
            FIELD_TOKEN.into(),
            sign(S1.as_bytes(), &expires, "a.txt", "secret", "text/plain"),
        );
        assert_eq!(
            check(&m, NOW).unwrap_err().reason(),
            UploadRefusal::VisibilityInvalid
        );
    }

    #[test]
    fn tampering_any_field_breaks_the_signature() {
        let m = meta("a/b.txt", "text/plain", Visibility::Private, NOW + 60);
        let tampered: [(&str, &str); 4] = [
            (FIELD_KEY, "a/c.txt"),
            (FIELD_CONTENT_TYPE, "text/html"),
            (FIELD_VISIBILITY, "public"),
            (FIELD_EXPIRES, "1800000061"),
        ];
        for (field, value) in tampered {
            let mut t = m.clone();
            t.insert(field.into(), value.into());
            assert_eq!(
                check(&t, NOW).unwrap_err().reason(),
                UploadRefusal::TokenInvalid,
                "{field}"
            );
        }
        // one flipped token digit
        let mut t = m.clone();
        let mut token = t[FIELD_TOKEN].clone().into_bytes();
        token[10] = if token[10] == b'0' { b'1' } else { b'0' };
        t.insert(FIELD_TOKEN.into(), String::from_utf8(token).unwrap());
        assert_eq!(check(&t, NOW).unwrap_err().reason(), UploadRefusal::TokenInvalid);
    }

    #[test]
    fn expires_is_signed_verbatim() {
        let exp = format!("000{}", NOW + 60);
        let mut m = meta("a.txt", "text/plain", Visibility::Private, NOW + 60);
        m.insert(FIELD_EXPIRES.into(), exp.clone());
        // token over the canonical number does not cover "000…"
        assert_eq!(check(&m, NOW).unwrap_err().reason(), UploadRefusal::TokenInvalid);
        m.insert(
            FIELD_TOKEN.into(),
            sign(S1.as_bytes(), &exp, "a.txt", "private", "text/plain"),
        );
        assert_eq!(check(&m, NOW).unwrap().expires(), NOW + 60);
    }

    #[test]
    fn content_type_is_signed_verbatim() {
        let m = meta(
            "a.txt",
            "text/plain; charset=utf-8",
            Visibility::Private,
            NOW + 60,
        );
        assert!(check(&m, NOW).is_ok());
        let mut t = m.clone();
        t.insert(FIELD_CONTENT_TYPE.into(), "text/plain;charset=utf-8".into());
        assert_eq!(check(&t, NOW).unwrap_err().reason(), UploadRefusal::TokenInvalid);
    }

    #[test]
    fn expiry_window_boundaries() {
        let m = meta("a.txt", "text/plain", Visibility::Private, NOW);
        assert!(check(&m, NOW + 30).is_ok(), "expires + skew is still valid");
        let e = check(&m, NOW + 31).unwrap_err();
        assert_eq!(e.reason(), UploadRefusal::TokenExpired);
        assert_eq!(
            e.detail(),
            &Detail::Expired {
                expires: NOW,
                now: NOW + 31,
                skew: 30
            }
        );
        assert!(e.to_string().contains("31 s ago"), "{e}");

        let far = NOW + 86_400 + 30;
        let m = meta("a.txt", "text/plain", Visibility::Private, far);
        assert!(check(&m, NOW).is_ok(), "now + max_ttl + skew is still valid");
        let m = meta("a.txt", "text/plain", Visibility::Private, far + 1);
        assert_eq!(
            check(&m, NOW).unwrap_err().reason(),
            UploadRefusal::TokenTtlTooLong
        );

        // extremes do not overflow
        let m = meta("a.txt", "text/plain", Visibility::Private, i64::MAX);
        assert_eq!(
            check(&m, NOW).unwrap_err().reason(),
            UploadRefusal::TokenTtlTooLong
        );
        let m = meta("a.txt", "text/plain", Visibility::Private, 0);
        assert_eq!(check(&m, NOW).unwrap_err().reason(), UploadRefusal::TokenExpired);
    }

    #[test]
    fn expiry_only_after_signature() {
        let m = mint(
            S2.as_bytes(),
            "a.txt",
            "text/plain",
            Visibility::Private,
            NOW - 1000,
        );
        assert_eq!(check(&m, NOW).unwrap_err().reason(), UploadRefusal::TokenInvalid);
    }

    #[test]
    fn signature_only_ignores_the_clock() {
        let old = meta("a.txt", "text/plain", Visibility::Private, 1000);
        let ok = verify_signature_ignoring_expiry(&old, &set(&[S2, S1])).unwrap();
        assert_eq!(ok.key(), "a.txt");
        assert_eq!(ok.expires(), 1000);
        // but nothing else is relaxed
        let mut t = old.clone();
        t.insert(FIELD_KEY.into(), "b.txt".into());
        assert_eq!(
            verify_signature_ignoring_expiry(&t, &set(&[S1]))
                .unwrap_err()
                .reason(),
            UploadRefusal::TokenInvalid
        );
        let bad_key = meta("a/../b", "text/plain", Visibility::Private, 1000);
        assert_eq!(
            verify_signature_ignoring_expiry(&bad_key, &set(&[S1]))
                .unwrap_err()
                .reason(),
            UploadRefusal::KeyInvalid
        );
    }

    #[test]
    fn reason_codes_are_distinct() {
        let mut seen: Vec<&str> = UploadRefusal::ALL.iter().map(|r| r.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), UploadRefusal::ALL.len());
    }
}
