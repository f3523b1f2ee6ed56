//! What a finalize returns: how the upload got to its destination, what was
//! left undone, and the commit the caller's event rides on.

use std::io;
use std::path::PathBuf;

/// How the upload reached its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Same filesystem: hard link + unlink (no overwrite) or rename (overwrite).
    Renamed,
    /// Other filesystem: copied through a temporary file, then published.
    Copied,
    /// Nothing to do: the source was already gone and the destination present (a
    /// duplicate delivery), or the destination already was this very upload (a
    /// crash after the publish); the source, if still there, was removed.
    AlreadyFinalized,
}

impl Method {
    /// Every value, for metric pre-registration.
    pub const ALL: [Method; 3] = [Method::Renamed, Method::Copied, Method::AlreadyFinalized];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Renamed => "renamed",
            Method::Copied => "copied",
            Method::AlreadyFinalized => "already_finalized",
        }
    }
}

/// Housekeeping left undone after a successful publish (log it as a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Source and info removed (or there was nothing to remove).
    Done,
    /// The source could not be removed (a later run removes it: same inode or same
    /// bytes as the destination). `Other`: its name holds another file by now (the
    /// upload directory changed during the move), left alone.
    SourceLeft(io::ErrorKind),
    /// The info file could not be removed (`Other`: as for the source).
    InfoLeft(io::ErrorKind),
    /// The caller's commit (its event) failed: the source and its info stay,
    /// so a later pass finds the upload again, gets `AlreadyFinalized` and
    /// commits then ([`finalize_with`](crate::finalize::finalize_with)).
    Held,
}

/// A successful finalize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    /// The published file (storage root joined with the destination).
    pub destination: PathBuf,
    /// How it got there.
    pub method: Method,
    /// Bytes in the published file.
    pub bytes: u64,
    /// Removal of the source and the info file.
    pub cleanup: Cleanup,
    /// SHA-256 of the published bytes, when a commit asked for it
    /// ([`finalize_with`](crate::finalize::finalize_with)).
    pub sha256: Option<[u8; 32]>,
}

/// The published file, as [`finalize_with`](crate::finalize::finalize_with) hands it to its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// How it got there.
    pub method: Method,
    /// Bytes in the published file.
    pub bytes: u64,
    /// SHA-256 of those bytes: streamed by the copy when there is one; read
    /// once from the published inode otherwise.
    pub sha256: [u8; 32],
}

/// What [`finalize_with`](crate::finalize::finalize_with) calls once the asset is durably in place: `true`
/// when what it records (an event) is committed.
pub type Commit<'a> = &'a mut dyn FnMut(&Published) -> bool;
