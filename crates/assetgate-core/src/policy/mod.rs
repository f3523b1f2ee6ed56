//! Upload policy: asset-key safety, visibility, content-type allowlist, size.
//!
//! Pure functions, no I/O. The key rules are exactly this list and
//! nothing more: granite-assets allows Unicode letters and spaces in keys
//! (`photos/été 2026/plage.jpg`), so those pass. Refused:
//!
//! - empty keys, keys over [`MAX_KEY_BYTES`] bytes, segments over
//!   [`MAX_SEGMENT_BYTES`] bytes;
//! - absolute keys (leading `/`);
//! - empty segments (`a//b`, a trailing `/`), `.` and `..` segments;
//! - a backslash anywhere (Windows separators, and nginx would not map it);
//! - control characters (C0, DEL, C1: [`char::is_control`]);
//! - `?`, `#`, `%`: a key with these cannot round-trip through a download URL
//!   (granite puts the raw key into the URL, nginx decodes `$uri`).
//!
//! Content types are matched case-insensitively on `type/subtype`, parameters
//! (`; charset=…`) ignored; the signature still covers the exact string.
//!
//! [`served`]: whether nginx will serve a key with the type its token declares
//! (extension table, active types).

use std::fmt;

pub mod served;

pub use served::{check_served, ServeError, ServedTypes};

/// Longest accepted key, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest accepted key segment, in bytes (most filesystems' `NAME_MAX`).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Why a key is refused. Never carries the key itself (the caller logs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("asset key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_BYTES`].
    #[error("asset key is {0} bytes long, at most {max} are allowed", max = MAX_KEY_BYTES)]
    TooLong(usize),
    /// Starts with `/`.
    #[error("asset key must not start with '/'")]
    Absolute,
    /// `//` or a trailing `/`.
    #[error("asset key has an empty path segment ('//' or a trailing '/')")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("asset key has a '.' or '..' path segment")]
    DotSegment,
    /// A segment longer than [`MAX_SEGMENT_BYTES`].
    #[error("asset key has a path segment of {0} bytes, at most {max} are allowed", max = MAX_SEGMENT_BYTES)]
    SegmentTooLong(usize),
    /// A `\`.
    #[error("asset key contains a backslash")]
    Backslash,
    /// A control character.
    #[error("asset key contains a control character")]
    Control,
    /// `?`, `#` or `%`.
    #[error("asset key contains {0:?}, which cannot round-trip through a URL")]
    Reserved(char),
}

/// Checks an asset key against the key policy.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if key.starts_with('/') {
        return Err(KeyError::Absolute);
    }
    // Character classes first: a backslash or control character is the more
    // precise diagnosis than whatever segment it happens to sit in.
    for c in key.chars() {
        match c {
            '\\' => return Err(KeyError::Backslash),
            '?' | '#' | '%' => return Err(KeyError::Reserved(c)),
            c if c.is_control() => return Err(KeyError::Control),
            _ => {}
        }
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(KeyError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(KeyError::DotSegment);
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(KeyError::SegmentTooLong(segment.len()));
        }
    }
    Ok(())
}

/// Where an asset lives: granite's two sub-trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Served as is under `[storage] public_prefix`.
    Public,
    /// Served behind secure_link under `[storage] private_prefix`.
    Private,
}

impl Visibility {
    /// Parses granite's wire value (exactly `public` or `private`, as signed).
    pub fn parse(text: &str) -> Option<Visibility> {
        match text {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// The storage prefix for this visibility.
    pub fn prefix<'a>(self, public_prefix: &'a str, private_prefix: &'a str) -> &'a str {
        match self {
            Visibility::Public => public_prefix,
            Visibility::Private => private_prefix,
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `type/subtype` of a content type, parameters dropped, lower-cased. `None`
/// when there is no `/` or either side is empty.
pub fn essence(content_type: &str) -> Option<(String, String)> {
    let main = content_type.split(';').next().unwrap_or("").trim();
    let (t, s) = main.split_once('/')?;
    let (t, s) = (t.trim(), s.trim());
    // RFC 9110 tokens on both sides: no ':' (granite joins the signed fields
    // with ':'; a type holding one could be read with shifted boundaries), no
    // quotes, spaces or slashes.
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if t.is_empty() || s.is_empty() || !t.chars().all(tchar) || !s.chars().all(tchar) {
        return None;
    }
    Some((t.to_ascii_lowercase(), s.to_ascii_lowercase()))
}

/// One `[upload] content_types` entry, parsed when the configuration is
/// loaded: `type/subtype`, each side a token (RFC 9110 characters, and `*`)
/// compared case-insensitively, where `*` matches any run of characters within
/// that side (`image/*`, `*/*`, `application/vnd.ms-*`).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentTypePattern {
    /// As configured (shown by `check-config`).
    text: String,
    main: Side,
    sub: Side,
}

/// One side of a pattern, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Side {
    /// `*`: anything.
    Any,
    /// No `*`: this exact token.
    Exact(String),
    /// A `*` among other characters.
    Glob(Vec<char>),
}

impl Side {
    fn parse(text: &str) -> Option<Side> {
        let token = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b));
        if !token {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        Some(if lower.bytes().all(|b| b == b'*') {
            Side::Any
        } else if lower.contains('*') {
            Side::Glob(lower.chars().collect())
        } else {
            Side::Exact(lower)
        })
    }

    /// `text` is lower-case.
    fn matches(&self, text: &str) -> bool {
        match self {
            Side::Any => true,
            Side::Exact(e) => e == text,
            Side::Glob(p) => glob(p, text),
        }
    }
}

/// A `[upload] content_types` entry that is not `type/subtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a type/subtype pattern")]
pub struct NotAPattern;

impl std::str::FromStr for ContentTypePattern {
    type Err = NotAPattern;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (main, sub) = text.split_once('/').ok_or(NotAPattern)?;
        Ok(ContentTypePattern {
            text: text.to_string(),
            main: Side::parse(main).ok_or(NotAPattern)?,
            sub: Side::parse(sub).ok_or(NotAPattern)?,
        })
    }
}

impl ContentTypePattern {
    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the (lower-cased) essence `main/sub` matches.
    fn matches(&self, main: &str, sub: &str) -> bool {
        self.main.matches(main) && self.sub.matches(sub)
    }

    /// Whether this entry names the (lower-cased) essence `main/sub` exactly,
    /// without a `*`: what an active type needs ([`served::is_active`]).
    pub(crate) fn names_exactly(&self, main: &str, sub: &str) -> bool {
        matches!((&self.main, &self.sub), (Side::Exact(m), Side::Exact(s)) if m == main && s == sub)
    }
}

impl fmt::Display for ContentTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ContentTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentTypePattern({:?})", self.text)
    }
}

impl serde::Serialize for ContentTypePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Whether `content_type` is allowed by `patterns` (`[upload] content_types`).
///
/// The type must always be a well-formed `type/subtype` (tokens, parameters
/// ignored); an empty list then allows any such type. Otherwise it must match
/// one pattern ([`ContentTypePattern`]).
pub fn content_type_allowed(patterns: &[ContentTypePattern], content_type: &str) -> bool {
    let Some((t, s)) = essence(content_type) else {
        return false;
    };
    patterns.is_empty() || patterns.iter().any(|p| p.matches(&t, &s))
}

/// `*` matches any (possibly empty) run of characters; everything else literally.
fn glob(p: &[char], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point (classic, linear-ish).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Why the declared size is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// `Upload.Size` is over `[upload] max_size`.
    #[error("upload of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// Declared size in bytes.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The length is deferred and `[upload] allow_deferred_length` is false.
    #[error("the upload length must be declared when the upload is created (Upload-Length)")]
    LengthRequired,
}

/// Checks a declared size. `size` is `None` when the length is deferred.
///
/// A deferred length, when allowed, cannot be checked here (the size is not
/// known yet): tusd's own `-max-size` must then enforce the limit when the
/// length is declared.
pub fn check_size(
    size: Option<u64>,
    max_size: Option<u64>,
    allow_deferred_length: bool,
) -> Result<(), SizeError> {
    match size {
        None if allow_deferred_length => Ok(()),
        None => Err(SizeError::LengthRequired),
        Some(size) => match max_size {
            Some(max) if size > max => Err(SizeError::TooLarge { size, max }),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_granite_allows_pass() {
        for k in [
            "invoices/inv-001.pdf",
            "photos/été 2026/plage.jpg",
            "a",
            "日本語/ファイル.png",
            "with space/and+plus/and,comma/and;semi/and:colon/x",
            "...",
            ".hidden/x",
            "x..y/z",
            "emoji/😀.gif",
        ] {
            assert_eq!(check_key(k), Ok(()), "{k:?}");
        }
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Empty),
            ("/etc/passwd", KeyError::Absolute),
            ("/", KeyError::Absolute),
            ("a//b", KeyError::EmptySegment),
            ("a/", KeyError::EmptySegment),
            ("../x", KeyError::DotSegment),
            ("a/../../x", KeyError::DotSegment),
            ("a/./b", KeyError::DotSegment),
            (".", KeyError::DotSegment),
            ("..", KeyError::DotSegment),
            ("a\\b", KeyError::Backslash),
            ("..\\x", KeyError::Backslash),
            ("a\u{0}b", KeyError::Control),
            ("a\nb", KeyError::Control),
            ("a\tb", KeyError::Control),
            ("a\u{7f}b", KeyError::Control),
            ("a\u{85}b", KeyError::Control),
            ("a?b", KeyError::Reserved('?')),
            ("a#b", KeyError::Reserved('#')),
            ("a%2e%2e/b", KeyError::Reserved('%')),
        ];
        for (k, want) in cases {
            assert_eq!(check_key(k), Err(*want), "{k:?}");
        }
    }

    #[test]
    fn key_lengths() {
        let seg = "é".repeat(127); // 254 bytes
        assert_eq!(check_key(&format!("{seg}a")), Ok(()));
        assert_eq!(check_key(&format!("{seg}ab")), Err(KeyError::SegmentTooLong(256)));
        let long = format!("{}{}", format!("{}/", "a".repeat(100)).repeat(10), "a".repeat(13));
        assert_eq!(long.len(), 1023);
        assert_eq!(check_key(&long), Ok(()));
        assert_eq!(check_key(&format!("{long}b")), Ok(()));
        assert_eq!(check_key(&format!("{long}bc")), Err(KeyError::TooLong(1025)));
    }

    /// The messages, byte for byte (logs, hook answers and tests carry them).
    #[test]
    fn error_messages() {
        for (e, want) in [
            (KeyError::Empty, "asset key is empty"),
            (
                KeyError::TooLong(1025),
                "asset key is 1025 bytes long, at most 1024 are allowed",
            ),
            (KeyError::Absolute, "asset key must not start with '/'"),
            (
                KeyError::EmptySegment,
                "asset key has an empty path segment ('//' or a trailing '/')",
            ),
            (KeyError::DotSegment, "asset key has a '.' or '..' path segment"),
            (
                KeyError::SegmentTooLong(256),
                "asset key has a path segment of 256 bytes, at most 255 are allowed",
            ),
            (KeyError::Backslash, "asset key contains a backslash"),
            (KeyError::Control, "asset key contains a control character"),
            (
                KeyError::Reserved('%'),
                "asset key contains '%', which cannot round-trip through a URL",
            ),
        ] {
            assert_eq!(e.to_string(), want);
        }
        assert_eq!(
            SizeError::TooLarge { size: 11, max: 10 }.to_string(),
            "upload of 11 bytes is larger than the limit of 10 bytes"
        );
        assert_eq!(
            SizeError::LengthRequired.to_string(),
            "the upload length must be declared when the upload is created (Upload-Length)"
        );
    }

    #[test]
    fn key_error_messages_do_not_echo_the_key() {
        assert!(!KeyError::DotSegment.to_string().contains("etc"));
        assert!(KeyError::Reserved('#').to_string().contains("'#'"));
    }

    #[test]
    fn visibility() {
        assert_eq!(Visibility::parse("public"), Some(Visibility::Public));
        assert_eq!(Visibility::parse("private"), Some(Visibility::Private));
        assert_eq!(Visibility::parse("Public"), None);
        assert_eq!(Visibility::parse(" private"), None);
        assert_eq!(Visibility::parse(""), None);
        assert_eq!(Visibility::Public.prefix("pub", "priv"), "pub");
        assert_eq!(Visibility::Private.prefix("pub", "priv"), "priv");
    }

    fn pats(p: &[&str]) -> Vec<ContentTypePattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn content_types() {
        let any: Vec<ContentTypePattern> = Vec::new();
        assert!(content_type_allowed(
            &any,
            "application/x-whatever; charset=\"a:b\""
        ));
        // malformed types are refused even with no allowlist
        assert!(!content_type_allowed(&any, "whatever"));
        assert!(!content_type_allowed(&any, "te xt/plain"));
    }

    #[test]
    fn shifted_signature_boundaries_are_not_a_content_type() {
        // granite signs "{expires}:{key}:{visibility}:{content_type}". A key
        // holding ":public:" could be re-read as key "a", visibility "public",
        // content type "b:private:image/png": that must not be a content type.
        let any: Vec<ContentTypePattern> = Vec::new();
        assert!(!content_type_allowed(&any, "b:private:image/png"));
        assert!(!content_type_allowed(&any, "image/png\""));
        assert_eq!(essence("b:private:image/png"), None);
        let images = pats(&["image/*", "application/pdf"]);
        assert!(content_type_allowed(&images, "image/png"));
        assert!(content_type_allowed(&images, "IMAGE/PNG"));
        assert!(content_type_allowed(&images, "Image/Svg+Xml; charset=utf-8"));
        assert!(content_type_allowed(&images, "application/pdf"));
        assert!(content_type_allowed(&images, "application/PDF;version=1.7"));
        assert!(!content_type_allowed(&images, "application/pdfx"));
        assert!(!content_type_allowed(&images, "text/plain"));
        assert!(!content_type_allowed(&images, "image"));
        assert!(!content_type_allowed(&images, "image/"));
        assert!(!content_type_allowed(&images, "/png"));
        assert!(!content_type_allowed(&images, "image/png/x"));
        assert!(!content_type_allowed(&images, ""));
        let all = pats(&["*/*"]);
        assert!(content_type_allowed(&all, "text/plain; charset=utf-8"));
        assert!(!content_type_allowed(&all, "nonsense"));
        let upper = pats(&["TEXT/Plain"]);
        assert!(content_type_allowed(&upper, "text/plain"));
        let vnd = pats(&["application/vnd.ms-*"]);
        assert!(content_type_allowed(&vnd, "application/vnd.ms-excel"));
        assert!(!content_type_allowed(&vnd, "application/vnd.oasis"));
    }

    #[test]
    fn glob_matching() {
        let glob = |p: &str, t: &str| glob(&p.chars().collect::<Vec<_>>(), t);
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("**", "x"));
    }

    /// A pattern is parsed once, at config load: what is not `type/subtype`
    /// (tokens, `*`) is refused there, and each side is kept lower-cased as
    /// `*`, an exact token, or a glob, with the text as configured.
    #[test]
    fn patterns_are_parsed_once() {
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "*",
            "image/png/x",
            "im age/png",
            "image/png ",
            "text/plain;charset=utf-8",
            "a:b/c",
            "é/x",
        ] {
            assert_eq!(bad.parse::<ContentTypePattern>(), Err(NotAPattern), "{bad:?}");
        }
        let p: ContentTypePattern = "Image/*".parse().unwrap();
        assert_eq!(
            (p.main.clone(), p.sub.clone()),
            (Side::Exact("image".into()), Side::Any)
        );
        assert_eq!(p.to_string(), "Image/*");
        let p: ContentTypePattern = "application/VND.ms-*".parse().unwrap();
        assert_eq!(p.sub, Side::Glob("vnd.ms-*".chars().collect()));
        assert!(p.matches("application", "vnd.ms-excel"));
        assert!(!p.matches("application", "vnd.oasis"));
        let p: ContentTypePattern = "*/**".parse().unwrap();
        assert_eq!((p.main, p.sub), (Side::Any, Side::Any));
    }

    #[test]
    fn sizes() {
        assert_eq!(check_size(Some(10), None, false), Ok(()));
        assert_eq!(check_size(Some(10), Some(10), false), Ok(()));
        assert_eq!(check_size(Some(0), Some(0), false), Ok(()));
        assert_eq!(
            check_size(Some(11), Some(10), false),
            Err(SizeError::TooLarge { size: 11, max: 10 })
        );
        assert_eq!(check_size(None, Some(10), false), Err(SizeError::LengthRequired));
        assert_eq!(check_size(None, None, false), Err(SizeError::LengthRequired));
        assert_eq!(check_size(None, Some(10), true), Ok(()));
    }
}
