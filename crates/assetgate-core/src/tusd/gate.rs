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

/// The facts a decision needs from outside (the filesystem), asked by the pure
/// code and answered by the server.
pub trait Lookup {
    /// The state of `relative` (`{prefix}/{key}`, under `[storage] root`), by the
    /// mover's own rule (`finalize::destination_state`). An I/O error other than
    /// "not found" should answer [`Destination::Exists`] (fail closed: the upload
    /// is refused with 409 rather than risk an overwrite later).
    fn destination(&self, relative: &Path) -> Destination;

    /// The first bytes (up to [`prefinish::SNIFF_BYTES`](super::prefinish::SNIFF_BYTES)) of a finished upload,
    /// for pre-finish content sniffing; `None` = sniffing disabled or the data
    /// is not readable within `upload_dir` (then pre-finish decides nothing).
    fn leading_bytes(&self, _upload: &Upload) -> Option<Vec<u8>> {
        None
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
}

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
