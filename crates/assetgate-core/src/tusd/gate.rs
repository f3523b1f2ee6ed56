//! What a decision reads: the configuration ([`Gate`]) and the facts from the
//! filesystem the daemon answers ([`Lookup`]).

use std::path::Path;

use super::protocol::Upload;
use crate::config::{StorageConfig, UploadConfig};
use crate::token::upload_id::UploadIds;

/// The configuration the decisions read.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// `[upload]`.
    pub upload: &'a UploadConfig,
    /// `[storage]`.
    pub storage: &'a StorageConfig,
    /// `[tusd] upload_ids`: whether pre-create issues upload IDs and every
    /// publish requires them ([`ids`](super::ids)).
    pub upload_ids: UploadIds,
}

/// The facts a decision needs from outside (the filesystem, or the bucket with
/// `[storage] backend = "s3"`), asked by the pure code and answered by the
/// server.
pub trait Lookup {
    /// The state of `relative` (`{prefix}/{key}`, under `[storage] root`, or
    /// the object key in the bucket), by the mover's own rule
    /// (`finalize::destination_state`). An I/O error other than "not found"
    /// should answer [`Destination::Exists`] on the filesystem (fail closed:
    /// the upload is refused with 409 rather than risk an overwrite later); a
    /// store that did not answer, [`Destination::Unavailable`] (503).
    fn destination(&self, relative: &Path) -> Destination;

    /// The first bytes (up to [`prefinish::SNIFF_BYTES`](super::prefinish::SNIFF_BYTES)) of a finished upload,
    /// for pre-finish content sniffing; `Ok(None)` = sniffing disabled or the
    /// data is not readable within `upload_dir` (then pre-finish decides
    /// nothing); `Err` = the store did not answer (pre-finish refuses with
    /// `storage_unavailable` once the token's signature verified).
    fn leading_bytes(&self, _upload: &Upload) -> Result<Option<Vec<u8>>, StoreUnavailable> {
        Ok(None)
    }

    /// What the upload server's own record says of the upload `id` (a part named
    /// by a final upload). `None`: no such upload, an unsafe ID, or its record is
    /// unreadable (a final upload naming it is refused).
    fn part(&self, _id: &str) -> Option<Part> {
        None
    }
}

/// Where a destination stands, by the mover's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nothing there; every existing directory on the way is a real directory.
    Free,
    /// A file (or a directory) is there already.
    Exists,
    /// A component on the way is a symlink or not a directory: the move would
    /// refuse it, whatever `overwrite` says.
    Blocked,
    /// The store did not answer (an S3 error or timeout): nothing is known,
    /// so the upload is refused (`storage_unavailable`, 503; deny by default).
    Unavailable,
}

/// The store holding the uploads and assets did not answer a lookup (an S3
/// error or timeout; the adapter logs which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// A part of a final upload, as its `.info` on disk describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `IsPartial` (tusd) / `is_partial` (rustus).
    pub is_partial: bool,
    /// The data file is exactly as long as the declared size.
    pub finished: bool,
    /// The stored metadata.
    pub metadata: crate::token::upload::Metadata,
}

/// Any `Fn(&Path) -> bool` is an existence check (no sniffing, no parts).
impl<F: Fn(&Path) -> bool> Lookup for F {
    fn destination(&self, relative: &Path) -> Destination {
        if self(relative) {
            Destination::Exists
        } else {
            Destination::Free
        }
    }
}
