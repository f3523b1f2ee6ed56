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

mod content_type;
mod key;
mod size;
mod visibility;

pub mod served;

pub use content_type::{content_type_allowed, essence, ContentTypePattern, NotAPattern};
pub use key::{check_key, KeyError, MAX_KEY_BYTES, MAX_SEGMENT_BYTES};
pub use served::{check_served, ServeError, ServedTypes};
pub use size::{check_size, SizeError};
pub use visibility::Visibility;

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
