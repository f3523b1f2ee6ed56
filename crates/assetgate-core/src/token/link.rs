//! secure_link md5 download links, verified with nginx's semantics.
//!
//! nginx config this mirrors:
//!
//! ```nginx
//! secure_link     $arg_md5,$arg_expires;
//! secure_link_md5 "$secure_link_expires$uri SECRET";
//! ```
//!
//! nginx evaluates `"$arg_md5,$arg_expires"`, splits it at the FIRST comma (so a
//! comma in either argument makes the link invalid), parses the expiry like
//! `ngx_atotm` (digits only, > 0, no overflow of a signed 64-bit `time_t`, leading
//! zeros allowed and kept verbatim in the md5 input), limits the hash part to 24
//! bytes, decodes it like `ngx_decode_base64url` (stops at the first `=`, bytes
//! after it are ignored, exactly 22 significant characters give the 16 digest
//! bytes, unused trailing bits are not checked) and compares it with
//! `MD5("{expires}{uri} {secret}")`. Expiry is only reported when the hash
//! matched, and `expires == now` is still valid.
//!
//! The gate adds secret rotation: the link is accepted under any configured
//! secret. Each comparison is constant-time ([`subtle`]) and every secret is tried,
//! so timing does not say which secret (if any) nearly matched.

use std::borrow::Cow;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use md5::{Digest, Md5};
use subtle::{Choice, ConstantTimeEq};

use super::nginx_uri::{self, BadUri};
use crate::secret::SecretSet;

/// Longest hash argument nginx looks at (`val.len > 24` → not found).
const MAX_HASH_LEN: usize = 24;

/// base64url as nginx decodes it: no padding (we cut at the first `=`), and the
/// unused low bits of the last character are not checked.
const NGINX_BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The reason classes a denial is reported with (`X-Assetgate-Reason`, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkRefusal {
    /// Hash right under some secret, expiry in the past.
    Expired,
    /// Anything nginx's `secure_link` would not accept, other than the classes below.
    Invalid,
    /// No (or an empty) `md5` or `expires` argument.
    Missing,
    /// A request target nginx itself refuses with 400.
    BadUri,
    /// Signature right, expiry further ahead than `[link] max_ttl` allows.
    TtlTooLong,
}

impl LinkRefusal {
    /// All values, for metric pre-registration.
    pub const ALL: [LinkRefusal; 5] = [
        LinkRefusal::Expired,
        LinkRefusal::Invalid,
        LinkRefusal::Missing,
        LinkRefusal::BadUri,
        LinkRefusal::TtlTooLong,
    ];

    /// The wire name (header value and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkRefusal::Expired => "expired",
            LinkRefusal::Invalid => "invalid",
            LinkRefusal::Missing => "missing",
            LinkRefusal::BadUri => "bad-uri",
            LinkRefusal::TtlTooLong => "ttl-too-long",
        }
    }

    /// The position in [`LinkRefusal::ALL`] (index of a counter array, without a
    /// search on the hot path).
    pub fn index(self) -> usize {
        match self {
            LinkRefusal::Expired => 0,
            LinkRefusal::Invalid => 1,
            LinkRefusal::Missing => 2,
            LinkRefusal::BadUri => 3,
            LinkRefusal::TtlTooLong => 4,
        }
    }
}

/// Exactly which part of a link failed: for logs and `assetgate verify link`.
/// Never contains a secret or the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Detail {
    /// The request target is one nginx refuses.
    #[error("nginx would refuse this request target: {0}")]
    BadUri(BadUri),
    /// No `md5=` argument (or an empty one).
    #[error("no md5 argument")]
    NoMd5,
    /// No `expires=` argument (or an empty one).
    #[error("no expires argument")]
    NoExpires,
    /// A comma in the md5 or expires argument (nginx splits at the first comma).
    #[error("a comma in the md5 or expires argument")]
    Comma,
    /// The expires argument is not 1..=2^63-1 in plain decimal digits.
    #[error("expires is not a positive decimal number of seconds that fits in 63 bits")]
    BadExpires,
    /// The md5 argument is longer than 24 bytes.
    #[error("md5 argument is {0} bytes long (nginx looks at 24 at most)")]
    HashTooLong(usize),
    /// A byte outside the base64url alphabet before any `=`.
    #[error("md5 argument has a byte outside the base64url alphabet (A-Z a-z 0-9 - _) before '='")]
    HashAlphabet,
    /// Not exactly 22 significant base64url characters.
    #[error("md5 argument has {0} significant base64url characters, 22 are needed")]
    HashLength(usize),
    /// Well-formed, but the digest matches none of the configured secrets.
    #[error("md5 does not match this path and expiry under any of the {secrets} link secret(s)")]
    Mismatch {
        /// How many secrets were tried.
        secrets: usize,
    },
    /// Hash matched, expiry further ahead than `[link] max_ttl`.
    #[error(
        "link expires in {} s, more than [link] max_ttl ({max_ttl} s)",
        .expires.saturating_sub(*.now)
    )]
    TtlTooLong {
        /// The link's expiry (Unix seconds).
        expires: i64,
        /// The verifier's clock (Unix seconds).
        now: i64,
        /// `[link] max_ttl` in seconds.
        max_ttl: i64,
    },
    /// Hash matched, expiry is in the past.
    #[error("link expired {} s ago (expires={expires}, now={now})", .now - .expires)]
    Expired {
        /// The link's expiry (Unix seconds).
        expires: i64,
        /// The verifier's clock (Unix seconds).
        now: i64,
    },
}

/// A refused link: the reason class plus the precise detail.
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
    pub fn reason(&self) -> LinkRefusal {
        match self.detail {
            Detail::BadUri(_) => LinkRefusal::BadUri,
            Detail::NoMd5 | Detail::NoExpires => LinkRefusal::Missing,
            Detail::Expired { .. } => LinkRefusal::Expired,
            Detail::TtlTooLong { .. } => LinkRefusal::TtlTooLong,
            _ => LinkRefusal::Invalid,
        }
    }

    /// What exactly failed.
    pub fn detail(&self) -> &Detail {
        &self.detail
    }
}

/// Proof that a link was verified. Only this module can build one. The `$uri`
/// is borrowed from the request target when nginx keeps the path as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkVerified<'a> {
    expires: i64,
    uri: Cow<'a, [u8]>,
}

impl LinkVerified<'_> {
    /// When the link stops being valid (Unix seconds).
    pub fn expires(&self) -> i64 {
        self.expires
    }

    /// nginx's `$uri` the link grants access to.
    pub fn uri(&self) -> &[u8] {
        &self.uri
    }

    /// The same proof, owning its `$uri`.
    pub fn into_owned(self) -> LinkVerified<'static> {
        LinkVerified {
            expires: self.expires,
            uri: Cow::Owned(self.uri.into_owned()),
        }
    }
}

/// Verifies a raw request target (`$request_uri`) as nginx's secure_link would.
pub fn verify_request_target<'a>(
    secrets: &SecretSet,
    raw_target: &'a [u8],
    merge_slashes: bool,
    now: i64,
) -> Result<LinkVerified<'a>, Denied> {
    let target = nginx_uri::parse_request_target(raw_target, merge_slashes)
        .map_err(|e| Denied::new(Detail::BadUri(e)))?;
    let md5 = nginx_uri::arg(target.args, b"md5").unwrap_or_default();
    let expires = nginx_uri::arg(target.args, b"expires").unwrap_or_default();
    check(secrets, target.uri, md5, expires, now)
}

/// The `$uri` and expiry a link names, its signature NOT checked: what
/// `assetgate revoke link` records (a revocation needs no secret, and revoking a
/// forged link is harmless). Refuses what nginx would refuse, and links without
/// a well-formed `md5` and `expires`.
pub fn identify(raw_target: &[u8], merge_slashes: bool) -> Result<(Vec<u8>, i64), Denied> {
    let target = nginx_uri::parse_request_target(raw_target, merge_slashes)
        .map_err(|e| Denied::new(Detail::BadUri(e)))?;
    let md5 = nginx_uri::arg(target.args, b"md5").unwrap_or_default();
    let expires_arg = nginx_uri::arg(target.args, b"expires").unwrap_or_default();
    if md5.is_empty() {
        return Err(Denied::new(Detail::NoMd5));
    }
    if expires_arg.is_empty() {
        return Err(Denied::new(Detail::NoExpires));
    }
    if md5.contains(&b',') || expires_arg.contains(&b',') {
        return Err(Denied::new(Detail::Comma));
    }
    let expires = parse_expires(expires_arg).ok_or(Denied::new(Detail::BadExpires))?;
    decode_hash(md5)?;
    Ok((target.uri.into_owned(), expires))
}

/// `[link] max_ttl`: a verified link must not expire further ahead than
/// `now + max_ttl` (the bound that lets a prefix or key revocation expire).
pub fn check_lifetime(v: &LinkVerified<'_>, max_ttl: Option<i64>, now: i64) -> Result<(), Denied> {
    match max_ttl {
        Some(max) if v.expires > now.saturating_add(max) => Err(Denied::new(Detail::TtlTooLong {
            expires: v.expires,
            now,
            max_ttl: max,
        })),
        _ => Ok(()),
    }
}

/// Verifies the `md5` and `expires` argument values (raw, as in the query) for
/// nginx's `$uri`.
pub fn verify<'a>(
    secrets: &SecretSet,
    uri: &'a [u8],
    md5_arg: &[u8],
    expires_arg: &[u8],
    now: i64,
) -> Result<LinkVerified<'a>, Denied> {
    check(secrets, Cow::Borrowed(uri), md5_arg, expires_arg, now)
}

fn check<'a>(
    secrets: &SecretSet,
    uri: Cow<'a, [u8]>,
    md5_arg: &[u8],
    expires_arg: &[u8],
    now: i64,
) -> Result<LinkVerified<'a>, Denied> {
    if md5_arg.is_empty() {
        return Err(Denied::new(Detail::NoMd5));
    }
    if expires_arg.is_empty() {
        return Err(Denied::new(Detail::NoExpires));
    }
    // nginx splits "$arg_md5,$arg_expires" at the first comma: a comma in the md5
    // part moves junk into the expiry, a comma in the expiry is not a digit.
    if md5_arg.contains(&b',') || expires_arg.contains(&b',') {
        return Err(Denied::new(Detail::Comma));
    }
    let expires = parse_expires(expires_arg).ok_or(Denied::new(Detail::BadExpires))?;
    let given = decode_hash(md5_arg)?;

    let mut matched = Choice::from(0u8);
    for secret in secrets.iter() {
        let digest = link_digest(expires_arg, &uri, secret.expose());
        matched |= digest.ct_eq(&given);
    }
    if !bool::from(matched) {
        return Err(Denied::new(Detail::Mismatch {
            secrets: secrets.len(),
        }));
    }
    if expires < now {
        return Err(Denied::new(Detail::Expired { expires, now }));
    }
    Ok(LinkVerified { expires, uri })
}

/// `ngx_atotm`: decimal digits only, non-empty, no overflow of i64, then > 0.
fn parse_expires(text: &[u8]) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    (value > 0).then_some(value)
}

/// `ngx_decode_base64url` under secure_link's 24-byte limit, demanding 16 bytes.
fn decode_hash(arg: &[u8]) -> Result<[u8; 16], Denied> {
    if arg.len() > MAX_HASH_LEN {
        return Err(Denied::new(Detail::HashTooLong(arg.len())));
    }
    let significant = arg.iter().position(|&b| b == b'=').unwrap_or(arg.len());
    let sig = &arg[..significant];
    if !sig
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Denied::new(Detail::HashAlphabet));
    }
    if sig.len() != 22 {
        return Err(Denied::new(Detail::HashLength(sig.len())));
    }
    let mut out = [0u8; 18];
    let n = NGINX_BASE64URL
        .decode_slice(sig, &mut out)
        .map_err(|_| Denied::new(Detail::HashAlphabet))?;
    debug_assert_eq!(n, 16, "22 base64 characters decode to 16 bytes");
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&out[..16]);
    Ok(digest)
}

/// `MD5("{expires}{uri} {secret}")`, expires as its raw text.
fn link_digest(expires_text: &[u8], uri: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(expires_text);
    h.update(uri);
    h.update(b" ");
    h.update(secret);
    h.finalize().into()
}

/// The md5 argument nginx expects for `uri` and `expires` under `secret`.
pub fn sign(secret: &[u8], uri: &[u8], expires: i64) -> String {
    let digest = link_digest(expires.to_string().as_bytes(), uri, secret);
    NGINX_BASE64URL.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretSet;

    fn set(secrets: &[&str]) -> SecretSet {
        SecretSet::from_texts(secrets)
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn nginx_documentation_vector() {
        // nginx docs: md5 of "2147483647/s/link127.0.0.1 secret" (the doc's
        // expression includes $remote_addr; our uri slot carries it verbatim).
        let d = link_digest(b"2147483647", b"/s/link127.0.0.1", b"secret");
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d),
            "_e4Nc3iduzkWRm01TBBNYw"
        );
    }

    #[test]
    fn nginx_tests_vector() {
        // nginx-tests secure_link.t: md5 of "secret/test.html" (no expiry, no space).
        let d: [u8; 16] = Md5::digest(b"secret/test.html").into();
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d),
            "q-5vpkjBkRXXtkUMXiJVHA"
        );
    }

    fn check(secrets: &[&str], target: &str, now: i64) -> Result<LinkVerified<'static>, Denied> {
        verify_request_target(&set(secrets), target.as_bytes(), true, now).map(LinkVerified::into_owned)
    }

    fn link(secret: &str, uri: &str, expires: i64) -> String {
        format!(
            "{uri}?md5={}&expires={expires}",
            sign(secret.as_bytes(), uri.as_bytes(), expires)
        )
    }

    const S1: &str = "first-secret-0123456789";
    const S2: &str = "second-secret-0123456789";

    #[test]
    fn valid_link_and_boundary() {
        let l = link(S1, "/private/a.txt", NOW);
        let ok = check(&[S1], &l, NOW).unwrap();
        assert_eq!(ok.expires(), NOW);
        assert_eq!(ok.uri(), b"/private/a.txt");
        let err = check(&[S1], &l, NOW + 1).unwrap_err();
        assert_eq!(err.reason(), LinkRefusal::Expired);
        assert_eq!(
            err.detail(),
            &Detail::Expired {
                expires: NOW,
                now: NOW + 1
            }
        );
    }

    #[test]
    fn rotation_accepts_older_secret() {
        let l = link(S2, "/private/a.txt", NOW + 60);
        assert!(check(&[S1, S2], &l, NOW).is_ok());
        assert_eq!(
            check(&[S1], &l, NOW).unwrap_err().detail(),
            &Detail::Mismatch { secrets: 1 }
        );
    }

    #[test]
    fn expiry_only_reported_when_hash_matches() {
        let l = link(S2, "/private/a.txt", NOW - 10);
        assert_eq!(check(&[S1], &l, NOW).unwrap_err().reason(), LinkRefusal::Invalid);
        assert_eq!(check(&[S2], &l, NOW).unwrap_err().reason(), LinkRefusal::Expired);
    }

    #[test]
    fn md5_is_over_decoded_normalised_uri() {
        let md5 = sign(S1.as_bytes(), "/private/été 2026/x.jpg".as_bytes(), NOW);
        let t = format!("/private//%C3%A9t%C3%A9%202026/./x.jpg?md5={md5}&expires={NOW}");
        assert!(check(&[S1], &t, NOW).is_ok());
    }

    #[test]
    fn missing_arguments() {
        assert_eq!(check(&[S1], "/a", NOW).unwrap_err().detail(), &Detail::NoMd5);
        assert_eq!(
            check(&[S1], "/a?md5=&expires=5", NOW).unwrap_err().detail(),
            &Detail::NoMd5
        );
        assert_eq!(
            check(&[S1], "/a?md5=q-5vpkjBkRXXtkUMXiJVHA", NOW)
                .unwrap_err()
                .detail(),
            &Detail::NoExpires
        );
        assert_eq!(
            check(&[S1], "/a?md5=x", NOW).unwrap_err().reason(),
            LinkRefusal::Missing
        );
    }

    #[test]
    fn bad_uri() {
        let e = check(&[S1], "/a%zz?md5=x&expires=1", NOW).unwrap_err();
        assert_eq!(e.reason(), LinkRefusal::BadUri);
        assert_eq!(
            check(&[S1], "/../x", NOW).unwrap_err().reason(),
            LinkRefusal::BadUri
        );
    }

    #[test]
    fn expires_parsing() {
        assert_eq!(parse_expires(b"0"), None);
        assert_eq!(parse_expires(b"000"), None);
        assert_eq!(parse_expires(b"-5"), None);
        assert_eq!(parse_expires(b"+5"), None);
        assert_eq!(parse_expires(b" 5"), None);
        assert_eq!(parse_expires(b"0005"), Some(5));
        assert_eq!(parse_expires(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_expires(b"9223372036854775808"), None);
        assert_eq!(parse_expires(b"99999999999999999999"), None);
    }

    #[test]
    fn leading_zero_expiry_is_signed_verbatim() {
        let uri = "/private/a";
        let exp = format!("00{}", NOW + 5);
        let d = link_digest(exp.as_bytes(), uri.as_bytes(), S1.as_bytes());
        let md5 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        assert!(check(&[S1], &format!("{uri}?md5={md5}&expires={exp}"), NOW).is_ok());
        // the re-formatted number does not match
        let md5b = sign(S1.as_bytes(), uri.as_bytes(), NOW + 5);
        assert_eq!(
            check(&[S1], &format!("{uri}?md5={md5b}&expires={exp}"), NOW)
                .unwrap_err()
                .reason(),
            LinkRefusal::Invalid
        );
    }

    #[test]
    fn base64url_rules() {
        let uri = "/p";
        let md5 = sign(S1.as_bytes(), uri.as_bytes(), NOW);
        let t = |m: &str| check(&[S1], &format!("{uri}?md5={m}&expires={NOW}"), NOW);
        assert!(t(&md5).is_ok());
        assert!(t(&format!("{md5}=")).is_ok());
        assert!(t(&format!("{md5}==")).is_ok());
        assert!(
            t(&format!("{md5}=!")).is_ok(),
            "bytes after '=' are ignored, 24 bytes in all"
        );
        assert_eq!(
            t(&format!("{md5}=!!")).unwrap_err().detail(),
            &Detail::HashTooLong(25)
        );
        assert_eq!(t(&md5[..21]).unwrap_err().detail(), &Detail::HashLength(21));
        assert_eq!(
            t(&format!("{md5}A")).unwrap_err().detail(),
            &Detail::HashLength(23)
        );
        assert_eq!(
            t(&format!("{}%3D", &md5[..20])).unwrap_err().detail(),
            &Detail::HashAlphabet
        );
        assert_eq!(
            t(&format!("{}.{}", &md5[..10], &md5[11..])).unwrap_err().detail(),
            &Detail::HashAlphabet
        );
        // standard alphabet is not base64url
        let std = md5.replace('-', "+").replace('_', "/");
        if std != md5 {
            assert_eq!(t(&std).unwrap_err().detail(), &Detail::HashAlphabet);
        }
        // the low 4 bits of the last character are not checked: 16 variants pass
        let last = md5.as_bytes()[21];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&a| a == last).unwrap();
        let mut passing = 0;
        for (j, &c) in alphabet.iter().enumerate() {
            let mut v = md5.clone().into_bytes();
            v[21] = c;
            let ok = t(std::str::from_utf8(&v).unwrap()).is_ok();
            assert_eq!(ok, j >> 4 == idx >> 4, "char {}", c as char);
            passing += usize::from(ok);
        }
        assert_eq!(passing, 16);
    }

    /// Regression (found by tests/e2e_nginx.rs): an absolute-form request line
    /// without a path, `GET http://host?md5=...&expires=...`, gives nginx
    /// `$request_uri` = `?md5=...` and `$uri` = `/`; native secure_link accepts a
    /// link signed for `/`, the gate used to answer `bad-uri`.
    #[test]
    fn absolute_form_without_path_is_a_link_to_root() {
        let md5 = sign(S1.as_bytes(), b"/", NOW);
        assert!(check(&[S1], &format!("?md5={md5}&expires={NOW}"), NOW).is_ok());
        assert_eq!(
            check(&[S1], &format!("?md5={md5}&expires={NOW}"), NOW + 1)
                .unwrap_err()
                .reason(),
            LinkRefusal::Expired
        );
        assert_eq!(check(&[S1], "?", NOW).unwrap_err().reason(), LinkRefusal::Missing);
    }

    #[test]
    fn commas_and_first_arg_wins() {
        let uri = "/p";
        let md5 = sign(S1.as_bytes(), uri.as_bytes(), NOW);
        let ok = format!("{uri}?MD5={md5}&md5=AAAAAAAAAAAAAAAAAAAAAA&Expires={NOW}&expires=1");
        assert!(check(&[S1], &ok, NOW).is_ok());
        let bad = format!("{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&md5={md5}&expires={NOW}");
        assert_eq!(
            check(&[S1], &bad, NOW).unwrap_err().reason(),
            LinkRefusal::Invalid
        );
        let comma = format!("{uri}?md5={md5},&expires={NOW}");
        assert_eq!(check(&[S1], &comma, NOW).unwrap_err().detail(), &Detail::Comma);
    }
}
