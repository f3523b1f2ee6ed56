//! Asset-key safety: the rules listed in [`super`]'s module doc.

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
