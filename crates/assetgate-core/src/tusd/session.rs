//! Upload sessions bound to their token: may this `PATCH` / `HEAD` / `DELETE` /
//! `GET` of `/files/<id>` reach tusd?
//!
//! tusd runs no hook for requests on an existing upload (tusd issues #669,
//! #1117): whoever knows an upload URL can resume, read or delete it forever.
//! nginx asks the gate first (`auth_request` to `/session`, the shipped
//! `nginx/assetgate-uploads.conf`) and the gate answers from the upload's own
//! record (`<upload_dir>/<id>.info`, written by tusd at creation, after the
//! pre-create hook verified its token):
//!
//! - `off`: everything passes (tusd's own behaviour).
//! - `window`: the upload's stored token must still be inside its window:
//!   `now <= upload-expires + [upload] session_grace`. A resume after that is
//!   refused (`session_expired`, which the shipped nginx config turns into 410).
//! - `token`: as `window`, and the request must carry the very `Upload-Metadata`
//!   that created the upload (its five signed fields equal to the stored ones).
//!   tus-js-client and tuspy send the `headers` granite-assets returns on every
//!   request, and those include `Upload-Metadata`, so granite users change
//!   nothing. A different valid token (someone else's upload URL in hand) is
//!   `token_mismatch`.
//!
//! Creation (`POST` to the base path) and CORS preflights (`OPTIONS`) always pass:
//! pre-create decides creations. The ID is validated before any path is built;
//! an ID that is not an upload of this server is `unknown_upload`.
//!
//! On S3 (`[storage] backend = "s3"`, [`Policy::s3store`]) tusd's s3store IDs
//! are `<objectId>+<multipartId>` and the record is the bucket's
//! `<upload_prefix><objectId>.info` ([`s3store_object_id`]); the caller
//! requires the `.info`'s own ID to be the requested one.
//!
//! Pure: the record is looked up by the caller ([`super::Lookup::part`]) and the
//! time passed in.

use super::metadata::parse_upload_metadata;
use super::rules::same_signed_fields;
use super::Part;
use crate::config::SessionBinding;
use crate::secret::SecretSet;
use crate::token::upload::{verify_signature_ignoring_expiry, FIELD_TOKEN};

/// Why a session request was allowed or refused (the `X-Assetgate-Reason` value
/// and the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionRefusal {
    /// Allowed.
    Ok,
    /// The path is not `<base path>` or `<base path><id>`.
    BadUri,
    /// The ID is not one an upload server makes (refused before any path is built).
    BadId,
    /// No upload with this ID in the upload directory (or its record is unusable).
    UnknownUpload,
    /// The stored metadata's signature matches no secret: nothing to bind to.
    TokenInvalid,
    /// The token's window (plus `session_grace`) is over.
    SessionExpired,
    /// `token` mode: the request carries no `Upload-Metadata`.
    TokenMissing,
    /// `token` mode: the request's signed fields are not the upload's.
    TokenMismatch,
}

impl SessionRefusal {
    /// Every value, for metric pre-registration.
    pub const ALL: [SessionRefusal; 8] = [
        SessionRefusal::Ok,
        SessionRefusal::BadUri,
        SessionRefusal::BadId,
        SessionRefusal::UnknownUpload,
        SessionRefusal::TokenInvalid,
        SessionRefusal::SessionExpired,
        SessionRefusal::TokenMissing,
        SessionRefusal::TokenMismatch,
    ];

    /// Header value / label.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionRefusal::Ok => "ok",
            SessionRefusal::BadUri => "bad_uri",
            SessionRefusal::BadId => "bad_id",
            SessionRefusal::UnknownUpload => "unknown_upload",
            SessionRefusal::TokenInvalid => "token_invalid",
            SessionRefusal::SessionExpired => "session_expired",
            SessionRefusal::TokenMissing => "token_missing",
            SessionRefusal::TokenMismatch => "token_mismatch",
        }
    }
}

/// What the request targets, from `X-Original-URI` (query dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The base path itself (creation, preflight).
    Collection,
    /// One upload.
    Upload(&'a str),
}

/// Splits the request path below `base` (e.g. `/files/`). `None`: not below it,
/// or more than one segment (tusd's filestore IDs have none).
pub fn target<'a>(uri: &'a str, base: &str) -> Option<Target<'a>> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    let base_trimmed = base.trim_end_matches('/');
    if path == base_trimmed || path == base {
        return Some(Target::Collection);
    }
    let rest = path.strip_prefix(base_trimmed)?.strip_prefix('/')?;
    // rustus answers PATCH URIs with a trailing slash
    let id = rest.strip_suffix('/').unwrap_or(rest);
    if id.is_empty() || id.contains('/') {
        return None;
    }
    Some(Target::Upload(id))
}

/// Whether `id` can name an upload: tusd's and rustus's own IDs (hex, UUIDs),
/// never anything that could climb or hide (`/`, `..`, `%`, a leading dot).
pub fn safe_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// tusd's s3store ID `<objectId>+<multipartId>`: the object ID (which names
/// the `.info` key), when both parts are there and neither could climb or
/// hide (the object ID as [`safe_upload_id`]; the multipart ID, the engine's,
/// of URL-unreserved bytes only, at most 512).
pub fn s3store_object_id(id: &str) -> Option<&str> {
    let (object_id, multipart_id) = id.split_once('+')?;
    let multipart_ok = !multipart_id.is_empty()
        && multipart_id.len() <= 512
        && multipart_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    (safe_upload_id(object_id) && multipart_ok).then_some(object_id)
}

/// The request, as nginx forwards it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `$request_method`.
    pub method: &'a str,
    /// `$request_uri`.
    pub uri: &'a str,
    /// `$http_upload_metadata`, `None` when absent or empty.
    pub upload_metadata: Option<&'a str>,
}

/// The settings a session decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `[upload] session_binding`.
    pub mode: SessionBinding,
    /// `[upload] session_grace`, seconds.
    pub grace: i64,
    /// `[tusd] base_path`.
    pub base_path: &'a str,
    /// `[upload] secrets`.
    pub secrets: &'a SecretSet,
    /// `[storage] backend = "s3"`: upload IDs are tusd's s3store
    /// `<objectId>+<multipartId>` ([`s3store_object_id`]).
    pub s3store: bool,
}

/// Whether the request needs the upload's record at all (and for which ID).
/// `Err`: decided without it.
pub fn needs_record<'a>(req: &Request<'a>, policy: &Policy<'_>) -> Result<&'a str, SessionRefusal> {
    if policy.mode == SessionBinding::Off {
        return Err(SessionRefusal::Ok);
    }
    match target(req.uri, policy.base_path) {
        None => Err(SessionRefusal::BadUri),
        Some(Target::Collection) => match req.method {
            "POST" | "OPTIONS" => Err(SessionRefusal::Ok),
            _ => Err(SessionRefusal::BadUri),
        },
        Some(Target::Upload(_)) if req.method == "OPTIONS" => Err(SessionRefusal::Ok),
        Some(Target::Upload(id)) if policy.s3store && s3store_object_id(id).is_none() => {
            Err(SessionRefusal::BadId)
        }
        Some(Target::Upload(id)) if !policy.s3store && !safe_upload_id(id) => Err(SessionRefusal::BadId),
        Some(Target::Upload(id)) => Ok(id),
    }
}

/// Decides a request on upload `record` (`None`: no such upload) at `now`.
pub fn decide(req: &Request<'_>, policy: &Policy<'_>, record: Option<&Part>, now: i64) -> SessionRefusal {
    if let Err(r) = needs_record(req, policy) {
        return r;
    }
    let Some(record) = record else {
        return SessionRefusal::UnknownUpload;
    };
    let Ok(stored) = verify_signature_ignoring_expiry(&record.metadata, policy.secrets) else {
        return SessionRefusal::TokenInvalid;
    };
    if now > stored.expires().saturating_add(policy.grace) {
        return SessionRefusal::SessionExpired;
    }
    if policy.mode == SessionBinding::Token {
        let Some(header) = req.upload_metadata else {
            return SessionRefusal::TokenMissing;
        };
        let sent = parse_upload_metadata(header);
        if !sent.contains_key(FIELD_TOKEN) {
            return SessionRefusal::TokenMissing;
        }
        if !same_signed_fields(&sent, &record.metadata) {
            return SessionRefusal::TokenMismatch;
        }
    }
    SessionRefusal::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::mint;
    use crate::tusd::metadata::encode_upload_metadata;

    const S1: &str = "session-secret-0123456789";
    const NOW: i64 = 1_800_000_000;

    fn secrets() -> SecretSet {
        SecretSet::from_texts(&[S1])
    }

    fn record(expires: i64) -> Part {
        Part {
            is_partial: false,
            finished: false,
            metadata: mint(
                S1.as_bytes(),
                "a/b.bin",
                "application/octet-stream",
                Visibility::Private,
                expires,
            ),
        }
    }

    fn header(meta: &crate::token::upload::Metadata) -> String {
        encode_upload_metadata(meta.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn run(
        mode: SessionBinding,
        method: &str,
        uri: &str,
        md: Option<&str>,
        rec: Option<&Part>,
        now: i64,
    ) -> SessionRefusal {
        let s = secrets();
        let policy = Policy {
            mode,
            grace: 3600,
            base_path: "/files/",
            secrets: &s,
            s3store: false,
        };
        decide(
            &Request {
                method,
                uri,
                upload_metadata: md,
            },
            &policy,
            rec,
            now,
        )
    }

    /// On S3 the ID is `<objectId>+<multipartId>` and only that shape asks for
    /// a record; with the filesystem backend a `+` is `bad_id` as before.
    #[test]
    fn s3store_ids() {
        let s = secrets();
        let policy = |s3store| Policy {
            mode: SessionBinding::Token,
            grace: 3600,
            base_path: "/files/",
            secrets: &s,
            s3store,
        };
        let ask = |uri: &'static str, s3store| {
            needs_record(
                &Request {
                    method: "PATCH",
                    uri,
                    upload_metadata: None,
                },
                &policy(s3store),
            )
        };
        assert_eq!(ask("/files/0a1b+mp.Zx_9-1~", true), Ok("0a1b+mp.Zx_9-1~"));
        assert_eq!(s3store_object_id("0a1b+mp.Zx_9-1~"), Some("0a1b"));
        assert_eq!(ask("/files/0a1b+mp", false), Err(SessionRefusal::BadId));
        assert_eq!(ask("/files/0a1b", false), Ok("0a1b"));
        for bad in [
            "/files/0a1b",
            "/files/+mp",
            "/files/0a1b+",
            "/files/..+mp",
            "/files/.x+mp",
            "/files/0a1b+m%2Fp",
            "/files/0a1b+m+p",
        ] {
            assert_eq!(ask(bad, true), Err(SessionRefusal::BadId), "{bad}");
        }
        let long = format!("0a1b+{}", "m".repeat(513));
        assert_eq!(s3store_object_id(&long), None);
    }

    #[test]
    fn targets() {
        assert_eq!(target("/files/", "/files/"), Some(Target::Collection));
        assert_eq!(target("/files", "/files/"), Some(Target::Collection));
        assert_eq!(target("/files/abc?x=1", "/files/"), Some(Target::Upload("abc")));
        assert_eq!(target("/files/abc/", "/files/"), Some(Target::Upload("abc")));
        assert_eq!(target("/files/a/b", "/files/"), None);
        assert_eq!(target("/filesabc", "/files/"), None);
        assert_eq!(target("/other/abc", "/files/"), None);
        for bad in ["..", ".hidden", "a%2F..", "a b", "", &"x".repeat(129)] {
            assert!(!safe_upload_id(bad), "{bad:?}");
        }
        for good in [
            "0a1b2c3d4e5f",
            "6f1c9a2e-6a4b-4c0e-9a62-2b7c1f0e9d31",
            "abc_def.1",
        ] {
            assert!(safe_upload_id(good), "{good:?}");
        }
    }

    #[test]
    fn window_mode() {
        let rec = record(NOW + 60);
        let r = |m: &str, uri: &str, rec: Option<&Part>, now: i64| {
            run(SessionBinding::Window, m, uri, None, rec, now)
        };
        assert_eq!(r("PATCH", "/files/abc", Some(&rec), NOW), SessionRefusal::Ok);
        assert_eq!(
            r("HEAD", "/files/abc", Some(&rec), NOW + 60 + 3600),
            SessionRefusal::Ok,
            "grace inclusive"
        );
        assert_eq!(
            r("PATCH", "/files/abc", Some(&rec), NOW + 60 + 3601),
            SessionRefusal::SessionExpired
        );
        assert_eq!(
            r("DELETE", "/files/abc", Some(&rec), NOW + 99_999),
            SessionRefusal::SessionExpired
        );
        assert_eq!(r("PATCH", "/files/abc", None, NOW), SessionRefusal::UnknownUpload);
        assert_eq!(r("PATCH", "/files/..", Some(&rec), NOW), SessionRefusal::BadId);
        assert_eq!(r("PATCH", "/files/a/b", Some(&rec), NOW), SessionRefusal::BadUri);
        assert_eq!(
            r("POST", "/files/", None, NOW),
            SessionRefusal::Ok,
            "creation: pre-create decides"
        );
        assert_eq!(
            r("OPTIONS", "/files/abc", None, NOW),
            SessionRefusal::Ok,
            "preflight"
        );
        assert_eq!(r("PATCH", "/files/", None, NOW), SessionRefusal::BadUri);
        let forged = Part {
            metadata: mint(
                b"another-secret-value-000",
                "a",
                "text/plain",
                Visibility::Public,
                NOW + 60,
            ),
            ..rec.clone()
        };
        assert_eq!(
            r("PATCH", "/files/abc", Some(&forged), NOW),
            SessionRefusal::TokenInvalid
        );
        assert_eq!(
            run(SessionBinding::Off, "PATCH", "/files/..", None, None, NOW),
            SessionRefusal::Ok
        );
    }

    #[test]
    fn token_mode() {
        let rec = record(NOW + 60);
        let same = header(&rec.metadata);
        let t = |md: Option<&str>, now: i64| {
            run(SessionBinding::Token, "PATCH", "/files/abc", md, Some(&rec), now)
        };
        assert_eq!(t(Some(&same), NOW), SessionRefusal::Ok);
        assert_eq!(t(None, NOW), SessionRefusal::TokenMissing);
        assert_eq!(t(Some("filename YS50eHQ="), NOW), SessionRefusal::TokenMissing);
        // another valid token (someone else's upload, or another key)
        let other = mint(
            S1.as_bytes(),
            "a/c.bin",
            "application/octet-stream",
            Visibility::Private,
            NOW + 60,
        );
        assert_eq!(t(Some(&header(&other)), NOW), SessionRefusal::TokenMismatch);
        // the same fields with one token digit changed
        let mut tampered = rec.metadata.clone();
        let tok = tampered.get_mut(FIELD_TOKEN).unwrap();
        let last = if tok.ends_with('0') { "1" } else { "0" };
        tok.replace_range(tok.len() - 1.., last);
        assert_eq!(t(Some(&header(&tampered)), NOW), SessionRefusal::TokenMismatch);
        // the window still applies
        assert_eq!(t(Some(&same), NOW + 60 + 3601), SessionRefusal::SessionExpired);
        // window mode ignores the header entirely
        assert_eq!(
            run(
                SessionBinding::Window,
                "PATCH",
                "/files/abc",
                Some(&header(&other)),
                Some(&rec),
                NOW
            ),
            SessionRefusal::Ok
        );
    }

    #[test]
    fn modes_parse() {
        for m in [SessionBinding::Off, SessionBinding::Window, SessionBinding::Token] {
            assert_eq!(m.as_str().parse::<SessionBinding>(), Ok(m));
        }
        assert!("Token".parse::<SessionBinding>().is_err());
        assert_eq!(SessionBinding::default(), SessionBinding::Window);
    }
}
