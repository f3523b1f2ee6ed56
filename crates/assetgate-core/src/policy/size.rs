//! The declared size against `[upload] max_size` and deferred lengths.

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
