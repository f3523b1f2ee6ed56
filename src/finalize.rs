//! Moving a finished upload out of tusd's (or rustus's) upload directory into the
//! asset tree, and finding finished uploads that were never moved.
//!
//! Synchronous and std-only: the server runs [`finalize`] on a blocking thread
//! (`spawn_blocking`), `assetgate finalize-pending` calls [`scan_pending`] and then
//! [`finalize`] for each upload it re-verified.
//!
//! # Trust
//!
//! Whoever can reach `/tusd` can post any event, so nothing in an event is believed:
//!
//! - The two roots are canonicalised once, when the daemon starts ([`Roots::new`]).
//!   A symlink *in the configured path itself* (`/srv/tusd -> /data/tusd`) is the
//!   administrator's choice and is followed then; every symlink *below* the roots is
//!   refused.
//! - The source (the event's `Storage.Path`) must be absolute, free of `..`, have a
//!   real parent inside the upload directory, and be a regular file, not a symlink,
//!   with a single link.
//! - The source must be a finished upload *according to the upload server's own
//!   `.info` file on disk*: the info file is found next to the data file (tusd:
//!   `<dir>/<ID>.info`) or at the top of the upload directory (rustus with
//!   `--dir-structure`), it must describe exactly this data file, must not be partial
//!   or of deferred length, and the data file must be exactly as long as the declared
//!   size. Without this an event could move someone's half-written upload, or any
//!   other file tusd keeps there.
//! - [`finalize`] takes a [`FinalizePlan`], which only `tusd::postfinish::plan`
//!   builds, after verifying the upload-token signature. The plan's five signed
//!   fields must be equal in the on-disk info. An attacker holding a valid token of
//!   their own therefore cannot aim it at another user's finished upload. Nothing
//!   else reaches the mover: post-finish, `finalize-pending` and any later caller
//!   plan through the same function.
//! - A final (concatenated) upload: every part its on-disk info names must be a
//!   finished partial upload whose own info carries the same signed fields (tusd
//!   lets `Upload-Concat: final` name any finished upload). The parts are removed
//!   after the publish.
//! - With `[upload] check_content` the plan carries the declared type, and the first
//!   bytes of the data file must match it before anything is published
//!   ([`FinalizeError::ContentMismatch`]): tusd v2 publishes after a pre-finish 415
//!   anyway, final uploads get no pre-finish, rustus has none, and
//!   `finalize-pending` runs no hook at all. A mismatching upload stays where it is,
//!   in the upload directory, which nothing serves.
//! - The destination (`"{prefix}/{key}"`, already checked by the caller) is checked
//!   again segment by segment, and its directories are walked (and created) one
//!   component at a time below the storage root: an existing component that is a
//!   symlink or not a directory stops the move.
//!
//! What is *not* defended: someone with write access to the upload directory or to
//! the asset tree racing the checks (swapping a directory for a symlink between the
//! check and the rename). Closing that needs `openat`/`O_NOFOLLOW`/`renameat2`, i.e.
//! `libc`, and the crate forbids `unsafe`; those directories belong to tusd, nginx
//! and assetgate only.
//!
//! # Publishing without losing or overwriting data
//!
//! - Same filesystem, `overwrite = false`: `link(src, dst)` (fails if `dst` exists:
//!   an atomic no-replace publish), fsync the destination directory, then remove the
//!   source. `overwrite = true`: `rename(src, dst)`.
//! - Different filesystem (decided from `st_dev`, and on `EXDEV` from a link or
//!   rename, e.g. across bind mounts), or a filesystem refusing hard links: copy into
//!   a temporary file `<storage root>/.assetgate-tmp/.assetgate-<random>.tmp` (in the
//!   destination directory itself when that is on another filesystem than the
//!   storage root), `sync_all`, publish it as above (link or rename), fsync the
//!   directory, then remove the source. The temporary file is removed on every
//!   failure path, and the copy stops at the next 1 MiB chunk when the daemon's
//!   shutdown grace is over ([`Cancel`], [`FinalizeError::Cancelled`]: temporary
//!   file removed, source intact).
//! - A crash (kill -9, power loss) can still leave a temporary file. Each one is
//!   held under an exclusive `flock` by the process writing it, which the kernel
//!   drops when that process dies: [`sweep_temp`] removes exactly the temporary
//!   files nobody holds (and at least a minute old, to step around a writer that
//!   created its file but has not locked it yet). The daemon sweeps at start,
//!   `finalize-pending` before it scans.
//! - An existing destination is never replaced unless `overwrite = true`; otherwise
//!   the result is [`FinalizeError::Exists`] (a conflict) and the upload stays where
//!   it is.
//! - Any error before the publish leaves the source untouched. Destination
//!   directories created on the way are left (empty) behind.
//!
//! # Idempotence
//!
//! Stateless, like the rest of the gate: a second delivery of the same event finds
//! the source gone and the destination present, and gets
//! [`Method::AlreadyFinalized`]. A crash between the publish and the removal of the
//! source is recovered the same way: when the destination is the same inode as the
//! source (hard-link publish) or has exactly the same bytes (copy publish), the
//! source is removed and the result is `AlreadyFinalized` instead of a conflict.
//!
//! # The `.info` file is removed after a successful move
//!
//! Decision: after the source is gone, its info file is removed too (and a stale info
//! whose data file is gone is removed by a later duplicate or `finalize-pending`).
//! Reasons:
//! - `finalize-pending` re-scans the upload directory; info files of moved uploads
//!   would be found forever, each needing another look.
//! - tusd's filestore answers `HEAD` from the info *and* a `stat` of the data file:
//!   with the data file gone it answers 404 whether or not the info stays, so keeping
//!   it buys nothing. rustus 0.5.10 answers `HEAD` from the info alone: keeping it
//!   makes rustus claim a complete upload whose `GET` is 404 (seen on a real run).
//!   With both gone a resuming client gets 404 and starts a new upload, which
//!   pre-create then refuses as `exists` (unless overwrite is on).
//! - The order (source first, info last) keeps the invariant "data file present ⇒
//!   info present", which the finished-upload check above relies on.
//!
//! A failure to remove the source or the info *after* the publish is not an error
//! (the asset is in place); it is reported in [`Finalized::cleanup`].
//!
//! # Info file formats (seen on real runs)
//!
//! - tusd filestore: `<dir>/<ID>.info`, Go field names `ID, Size, SizeIsDeferred,
//!   Offset, MetaData, IsPartial, IsFinal, PartialUploads, Storage{Type,Path,InfoPath}`.
//!   tusd writes the info at creation (and on `DeclareLength`/`ChangeFileInfo`) but
//!   *not after each chunk*: the on-disk `Offset` stays 0, tusd itself takes the offset
//!   from the data file's size. So "finished" is `Size == len(data file)`.
//! - rustus 0.5.10 (`file-info-storage`): `<info-dir>/<id>.info`, snake case
//!   `id, offset, length (null when deferred), path (absolute), created_at,
//!   deferred_size, is_partial, is_final, parts, storage, metadata`; the data file is
//!   `<data-dir>[/<dir-structure>]/<id>`. rustus rewrites the info after each chunk,
//!   so "finished" is `offset == length == len(data file)`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::tusd::{prefinish, Destination, FinalizePlan, Part};

/// Largest `.info` file read (tusd's are a few hundred bytes; metadata rides in one
/// HTTP header).
const MAX_INFO_BYTES: u64 = 1024 * 1024;

/// `EXDEV` on Linux and the BSDs. (`io::ErrorKind::CrossesDevices` needs Rust 1.85;
/// the crate's minimum is 1.80.)
const EXDEV: i32 = 18;

// ----------------------------------------------------------------------------------
// Errors
// ----------------------------------------------------------------------------------

/// The metric label of a failed finalize (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A configured root is missing or not a directory.
    BadRoot,
    /// The source does not resolve inside the upload directory.
    SourceOutside,
    /// The source is not a regular file with a single link.
    SourceNotFile,
    /// The source does not exist and neither does the destination.
    SourceMissing,
    /// A symlink where a real file or directory is required.
    Symlink,
    /// The upload server's info says the upload is not complete (or is partial).
    NotFinished,
    /// No usable info file describes the source.
    InfoInvalid,
    /// The on-disk metadata differs from what the caller verified.
    MetadataMismatch,
    /// The destination is not a plain relative path below the storage root.
    DestinationOutside,
    /// An existing component of the destination path is not a directory.
    DestinationNotDir,
    /// The destination exists and overwrite is off (a conflict).
    Exists,
    /// The leading bytes contradict the declared content type.
    ContentMismatch,
    /// A part of a final upload is not this token's finished partial upload.
    ConcatInvalid,
    /// The daemon's shutdown grace ran out during the copy.
    Cancelled,
    /// An I/O error.
    Io,
}

impl Reason {
    /// All values, for metric pre-registration.
    pub const ALL: [Reason; 15] = [
        Reason::BadRoot,
        Reason::SourceOutside,
        Reason::SourceNotFile,
        Reason::SourceMissing,
        Reason::Symlink,
        Reason::NotFinished,
        Reason::InfoInvalid,
        Reason::MetadataMismatch,
        Reason::DestinationOutside,
        Reason::DestinationNotDir,
        Reason::Exists,
        Reason::ContentMismatch,
        Reason::ConcatInvalid,
        Reason::Cancelled,
        Reason::Io,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRoot => "bad_root",
            Reason::SourceOutside => "source_outside",
            Reason::SourceNotFile => "source_not_file",
            Reason::SourceMissing => "source_missing",
            Reason::Symlink => "symlink",
            Reason::NotFinished => "not_finished",
            Reason::InfoInvalid => "info_invalid",
            Reason::MetadataMismatch => "metadata_mismatch",
            Reason::DestinationOutside => "destination_outside",
            Reason::DestinationNotDir => "destination_not_dir",
            Reason::Exists => "exists",
            Reason::ContentMismatch => "content_mismatch",
            Reason::ConcatInvalid => "concat_invalid",
            Reason::Cancelled => "cancelled",
            Reason::Io => "io",
        }
    }
}

/// Which configured root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `[tusd] upload_dir`
    UploadDir,
    /// `[storage] root`
    StorageRoot,
}

/// Where a refused symlink was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The upload's data file.
    Source,
    /// The upload's `.info` file.
    Info,
    /// The destination or one of its directories.
    Destination,
}

/// The filesystem operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Resolving a path.
    Resolve,
    /// Reading file metadata.
    Stat,
    /// Reading the `.info` file.
    ReadInfo,
    /// Creating a destination directory.
    CreateDir,
    /// Creating the temporary file.
    CreateTemp,
    /// Copying the data.
    Copy,
    /// Reading the file's leading bytes for the content check.
    Sniff,
    /// Comparing source and destination after a conflict.
    Compare,
    /// `fsync` of a file or directory.
    Sync,
    /// Publishing by hard link.
    Link,
    /// Publishing by rename.
    Rename,
    /// Hashing the published bytes (for the `upload.finalized` event).
    Hash,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Resolve => "resolving a path",
            Op::Stat => "reading file metadata",
            Op::ReadInfo => "reading the upload's info file",
            Op::CreateDir => "creating a destination directory",
            Op::CreateTemp => "creating the temporary file",
            Op::Copy => "copying the data",
            Op::Sniff => "reading the file's first bytes",
            Op::Compare => "comparing with the existing destination",
            Op::Sync => "syncing to disk",
            Op::Link => "linking the destination",
            Op::Rename => "renaming into the destination",
            Op::Hash => "hashing the published file",
        }
    }
}

/// Why an upload was not moved. The upload is still in the upload directory and no
/// temporary file is left. `Display` never contains a path from the event, a token
/// or metadata: safe to log next to the (checked) asset key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinalizeError {
    /// A configured root is missing, relative, or not a directory, or the two roots
    /// are nested.
    BadRoot {
        /// Which one.
        root: Root,
    },
    /// The source is relative, contains `..`, or resolves outside the upload
    /// directory.
    SourceOutside,
    /// The source is not a regular file, or has other hard links.
    SourceNotFile,
    /// Neither the source nor the destination exists.
    SourceMissing,
    /// A symlink was met where a real file or directory is required.
    Symlink {
        /// Where.
        side: Side,
    },
    /// The upload's info says it is partial, of deferred length or incomplete, or the
    /// data file's size differs from the declared size.
    NotFinished,
    /// No info file describes this data file (missing, outside, unparsable, too big,
    /// or describing another file).
    InfoInvalid,
    /// A field the caller verified has another value in the on-disk metadata.
    MetadataMismatch,
    /// The destination is empty, absolute, or has an empty, `.`, `..`, backslash or
    /// NUL segment.
    DestinationOutside,
    /// An existing component of the destination's directory is a file.
    DestinationNotDir,
    /// The destination exists (a file, or a directory) and overwrite is off.
    Exists,
    /// `[upload] check_content`: the file's leading bytes are not what its declared
    /// content type says (e.g. a PNG declared as `application/pdf`).
    ContentMismatch {
        /// The signature family the declared type expects ("PDF", "PNG", ...).
        expected: &'static str,
    },
    /// A final upload names a part that is missing, not partial, unfinished, or
    /// created with another token.
    ConcatInvalid,
    /// The copy was stopped because the daemon's shutdown grace ran out.
    Cancelled,
    /// An I/O error.
    Io {
        /// During what.
        op: Op,
        /// The error's kind.
        kind: io::ErrorKind,
    },
}

impl FinalizeError {
    /// The metric label.
    pub fn reason(&self) -> Reason {
        match self {
            FinalizeError::BadRoot { .. } => Reason::BadRoot,
            FinalizeError::SourceOutside => Reason::SourceOutside,
            FinalizeError::SourceNotFile => Reason::SourceNotFile,
            FinalizeError::SourceMissing => Reason::SourceMissing,
            FinalizeError::Symlink { .. } => Reason::Symlink,
            FinalizeError::NotFinished => Reason::NotFinished,
            FinalizeError::InfoInvalid => Reason::InfoInvalid,
            FinalizeError::MetadataMismatch => Reason::MetadataMismatch,
            FinalizeError::DestinationOutside => Reason::DestinationOutside,
            FinalizeError::DestinationNotDir => Reason::DestinationNotDir,
            FinalizeError::Exists => Reason::Exists,
            FinalizeError::ContentMismatch { .. } => Reason::ContentMismatch,
            FinalizeError::ConcatInvalid => Reason::ConcatInvalid,
            FinalizeError::Cancelled => Reason::Cancelled,
            FinalizeError::Io { .. } => Reason::Io,
        }
    }

    /// Shorthand for `self.reason().as_str()`.
    pub fn as_str(&self) -> &'static str {
        self.reason().as_str()
    }

    /// Whether this is the "destination already exists" conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, FinalizeError::Exists)
    }

    fn io(op: Op) -> impl FnOnce(io::Error) -> FinalizeError {
        move |e| FinalizeError::Io { op, kind: e.kind() }
    }
}

impl fmt::Display for FinalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinalizeError::BadRoot {
                root: Root::UploadDir,
            } => f.write_str("tusd.upload_dir is not an existing absolute directory"),
            FinalizeError::BadRoot {
                root: Root::StorageRoot,
            } => f.write_str("storage.root is not an existing absolute directory"),
            FinalizeError::SourceOutside => {
                f.write_str("the upload's path is not inside the upload directory")
            }
            FinalizeError::SourceNotFile => {
                f.write_str("the upload's path is not a regular file with a single link")
            }
            FinalizeError::SourceMissing => {
                f.write_str("the upload's data file does not exist and neither does the destination")
            }
            FinalizeError::Symlink { side } => write!(
                f,
                "refusing a symlink in the {}",
                match side {
                    Side::Source => "upload's path",
                    Side::Info => "upload's info file path",
                    Side::Destination => "destination path",
                }
            ),
            FinalizeError::NotFinished => {
                f.write_str("the upload is not finished according to its info file")
            }
            FinalizeError::InfoInvalid => f.write_str("no valid info file describes the upload's data file"),
            FinalizeError::MetadataMismatch => {
                f.write_str("the event's verified metadata differs from the upload's stored metadata")
            }
            FinalizeError::DestinationOutside => f.write_str("the destination is not a plain relative path"),
            FinalizeError::DestinationNotDir => {
                f.write_str("a component of the destination's directory is not a directory")
            }
            FinalizeError::Exists => f.write_str("the destination already exists and overwrite is off"),
            FinalizeError::ContentMismatch { expected } => write!(
                f,
                "the file's content is not {expected}, as its declared content type says"
            ),
            FinalizeError::ConcatInvalid => f.write_str(
                "a part of this final upload is not a finished partial upload created with the same token",
            ),
            FinalizeError::Cancelled => {
                f.write_str("the copy was abandoned at shutdown (source intact, temporary file removed)")
            }
            FinalizeError::Io { op, kind } => write!(f, "i/o error while {}: {kind}", op.as_str()),
        }
    }
}

impl std::error::Error for FinalizeError {}

// ----------------------------------------------------------------------------------
// Roots, request, result
// ----------------------------------------------------------------------------------

/// The upload directory and the storage root, canonicalised once (at startup).
///
/// Only [`Roots::new`] builds one, so a [`FinalizeRequest`] always compares against
/// real, symlink-free paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    upload_dir: PathBuf,
    storage_root: PathBuf,
}

impl Roots {
    /// Canonicalise `[tusd] upload_dir` and `[storage] root`. Both must be absolute
    /// paths of existing directories, and neither may contain the other.
    pub fn new(upload_dir: &Path, storage_root: &Path) -> Result<Roots, FinalizeError> {
        let canon = |p: &Path, root: Root| -> Result<PathBuf, FinalizeError> {
            if !p.is_absolute() {
                return Err(FinalizeError::BadRoot { root });
            }
            let c = fs::canonicalize(p).map_err(|_| FinalizeError::BadRoot { root })?;
            match fs::metadata(&c) {
                Ok(m) if m.is_dir() => Ok(c),
                _ => Err(FinalizeError::BadRoot { root }),
            }
        };
        let upload_dir = canon(upload_dir, Root::UploadDir)?;
        let storage_root = canon(storage_root, Root::StorageRoot)?;
        // Nested trees would let a published asset pass for an upload (or tusd
        // write into the served tree).
        if storage_root.starts_with(&upload_dir) || upload_dir.starts_with(&storage_root) {
            return Err(FinalizeError::BadRoot {
                root: Root::StorageRoot,
            });
        }
        Ok(Roots {
            upload_dir,
            storage_root,
        })
    }

    /// The canonical upload directory.
    pub fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    /// The canonical storage root.
    pub fn storage_root(&self) -> &Path {
        &self.storage_root
    }
}

/// Stops a running copy at its next chunk (the daemon's shutdown grace is over).
/// Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has raised yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Raise it: every copy sharing this flag stops at its next chunk.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it was raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One move, as the mover runs it. Private: outside this module the only way in
/// is [`finalize`], which builds it from a [`FinalizePlan`].
#[derive(Debug, Clone)]
struct Move {
    roots: Roots,
    /// The data file, from the event's `Storage.Path` (untrusted).
    source: PathBuf,
    /// The info file, from the event's `Storage.InfoPath` when there is one
    /// (untrusted; tusd v2.5+ only). `None`: looked up next to the data file, then at
    /// the top of the upload directory.
    info_path: Option<PathBuf>,
    /// `"{prefix}/{key}"` relative to the storage root (checked again here).
    destination: String,
    /// `[storage] overwrite`.
    overwrite: bool,
    /// The signed fields; each must have the same value in the upload's on-disk
    /// info, and in the info of every part of a final upload.
    expected_metadata: BTreeMap<String, String>,
    /// `[upload] check_content`: the declared type the leading bytes must match.
    content_check: Option<String>,
}

impl Move {
    fn from_plan(roots: &Roots, plan: &FinalizePlan) -> Move {
        Move {
            roots: roots.clone(),
            source: plan.source().to_path_buf(),
            info_path: plan.info_path().map(Path::to_path_buf),
            destination: plan.destination().to_string_lossy().into_owned(),
            overwrite: plan.overwrite(),
            expected_metadata: plan.signed_fields().clone(),
            content_check: plan.content_check().map(str::to_owned),
        }
    }
}

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
    /// bytes as the destination).
    SourceLeft(io::ErrorKind),
    /// The info file could not be removed.
    InfoLeft(io::ErrorKind),
    /// The caller's commit (its event) failed: the source and its info stay,
    /// so a later pass finds the upload again, gets `AlreadyFinalized` and
    /// commits then ([`finalize_with`]).
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
    /// ([`finalize_with`]).
    pub sha256: Option<[u8; 32]>,
}

/// The published file, as [`finalize_with`] hands it to its commit.
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

/// What [`finalize_with`] calls once the asset is durably in place: `true`
/// when what it records (an event) is committed.
pub type Commit<'a> = &'a mut dyn FnMut(&Published) -> bool;

// ----------------------------------------------------------------------------------
// Info files
// ----------------------------------------------------------------------------------

/// Which upload server wrote an info file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFormat {
    /// tusd filestore (Go field names).
    Tusd,
    /// rustus `file-info-storage` (snake case).
    Rustus,
}

#[derive(Deserialize)]
struct TusdInfo {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Size", default)]
    size: i64,
    #[serde(rename = "SizeIsDeferred", default)]
    size_is_deferred: bool,
    #[serde(rename = "MetaData", default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "IsPartial", default)]
    is_partial: bool,
    #[serde(rename = "IsFinal", default)]
    is_final: bool,
    #[serde(rename = "PartialUploads", default)]
    partial_uploads: Option<Vec<String>>,
    #[serde(rename = "Storage", default)]
    storage: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RustusInfo {
    id: String,
    offset: u64,
    length: Option<u64>,
    path: Option<String>,
    #[serde(default)]
    deferred_size: bool,
    #[serde(default)]
    is_partial: bool,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    parts: Option<Vec<String>>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// One info file, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UploadInfo {
    format: InfoFormat,
    id: String,
    /// `None`: length deferred.
    size: Option<u64>,
    /// rustus only: the offset it recorded (tusd does not keep it on disk).
    offset: Option<u64>,
    is_partial: bool,
    is_final: bool,
    /// A final upload's parts (upload IDs).
    parts: Vec<String>,
    metadata: BTreeMap<String, String>,
    /// Where the data file is, resolved against the info file's location.
    data_path: PathBuf,
}

/// Why an info file could not be used.
#[derive(Debug)]
enum InfoError {
    Io(io::ErrorKind),
    Symlink,
    NotFile,
    TooBig,
    Malformed(String),
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::Io(k) => write!(f, "unreadable: {k}"),
            InfoError::Symlink => f.write_str("is a symlink"),
            InfoError::NotFile => f.write_str("is not a regular file"),
            InfoError::TooBig => write!(f, "larger than {MAX_INFO_BYTES} bytes"),
            InfoError::Malformed(m) => write!(f, "malformed: {m}"),
        }
    }
}

fn read_info(info_path: &Path) -> Result<UploadInfo, InfoError> {
    let meta = fs::symlink_metadata(info_path).map_err(|e| InfoError::Io(e.kind()))?;
    if meta.file_type().is_symlink() {
        return Err(InfoError::Symlink);
    }
    if !meta.is_file() {
        return Err(InfoError::NotFile);
    }
    let mut bytes = Vec::new();
    File::open(info_path)
        .and_then(|f| f.take(MAX_INFO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| InfoError::Io(e.kind()))?;
    if bytes.len() as u64 > MAX_INFO_BYTES {
        return Err(InfoError::TooBig);
    }
    parse_info(&bytes, info_path)
}

/// The `.info` parser on untrusted bytes, for the fuzz target: `Ok` with the upload
/// ID when the bytes are a usable tusd or rustus info, else the reason. Never
/// panics, whatever the input.
#[doc(hidden)]
pub fn parse_info_for_fuzzing(bytes: &[u8]) -> Result<String, String> {
    parse_info(bytes, Path::new("/uploads/x.info"))
        .map(|i| i.id)
        .map_err(|e| e.to_string())
}

/// Parse an info file's bytes; `info_path` locates the data file when the info does
/// not record an absolute one.
fn parse_info(bytes: &[u8], info_path: &Path) -> Result<UploadInfo, InfoError> {
    let malformed = |e: serde_json::Error| InfoError::Malformed(e.to_string());
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    let Some(obj) = value.as_object() else {
        return Err(InfoError::Malformed("not a JSON object".into()));
    };
    let info_dir = info_path.parent().unwrap_or(Path::new(""));
    if obj.contains_key("ID") {
        let t: TusdInfo = serde_json::from_value(value).map_err(malformed)?;
        if t.id.is_empty() {
            return Err(InfoError::Malformed("empty ID".into()));
        }
        let size = if t.size_is_deferred {
            None
        } else {
            Some(u64::try_from(t.size).map_err(|_| InfoError::Malformed("negative Size".into()))?)
        };
        // tusd's filestore: data file at Storage.Path (absolute since it joins the
        // store path at creation), else `<info without .info>`, its default layout.
        let data_path = match t.storage.as_ref().and_then(|s| s.get("Path")) {
            Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
            _ => strip_info_suffix(info_path)
                .ok_or_else(|| InfoError::Malformed("info file name does not end in .info".into()))?,
        };
        Ok(UploadInfo {
            format: InfoFormat::Tusd,
            id: t.id,
            size,
            offset: None,
            is_partial: t.is_partial,
            is_final: t.is_final,
            parts: t.partial_uploads.unwrap_or_default(),
            metadata: t.metadata.unwrap_or_default(),
            data_path,
        })
    } else if obj.contains_key("id") {
        let r: RustusInfo = serde_json::from_value(value).map_err(malformed)?;
        if r.id.is_empty() || r.id.contains('/') {
            return Err(InfoError::Malformed("bad id".into()));
        }
        // rustus records the canonical data path; without one the data sits next to
        // the info (its default, data-dir == info-dir, no dir-structure).
        let data_path = match r.path.as_deref() {
            Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
            _ => info_dir.join(&r.id),
        };
        Ok(UploadInfo {
            format: InfoFormat::Rustus,
            id: r.id,
            size: if r.deferred_size { None } else { r.length },
            offset: Some(r.offset),
            is_partial: r.is_partial,
            is_final: r.is_final,
            parts: r.parts.unwrap_or_default(),
            metadata: r.metadata,
            data_path,
        })
    } else {
        Err(InfoError::Malformed(
            "neither a tusd (ID) nor a rustus (id) info".into(),
        ))
    }
}

fn strip_info_suffix(info_path: &Path) -> Option<PathBuf> {
    let name = info_path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".info").filter(|s| !s.is_empty())?;
    Some(info_path.with_file_name(stem))
}

/// Why an upload does not count as finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unfinished {
    Partial,
    Deferred,
    InProgress,
}

impl UploadInfo {
    /// Finished = not partial, length known, and the data file exactly that long
    /// (rustus: its recorded offset too; tusd keeps no offset on disk).
    fn finished(&self, data_len: u64) -> Result<u64, Unfinished> {
        if self.is_partial {
            return Err(Unfinished::Partial);
        }
        let size = self.size.ok_or(Unfinished::Deferred)?;
        if data_len != size || self.offset.is_some_and(|o| o != size) {
            return Err(Unfinished::InProgress);
        }
        Ok(size)
    }
}

// ----------------------------------------------------------------------------------
// Path confinement
// ----------------------------------------------------------------------------------

/// Absolute, and only root + normal components (no `..`; `.` is dropped by
/// `components()` already).
fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The real path of `p` *without* following its last component: the parent is
/// canonicalised and must be inside `dir`. `Ok(None)` when the parent does not
/// exist (but lexically lies inside `dir`).
fn resolve_inside(dir: &Path, p: &Path) -> Result<Option<PathBuf>, FinalizeError> {
    if !plain_absolute(p) {
        return Err(FinalizeError::SourceOutside);
    }
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(FinalizeError::SourceOutside);
    };
    match fs::canonicalize(parent) {
        Ok(real_parent) if real_parent.starts_with(dir) => Ok(Some(real_parent.join(name))),
        Ok(_) => Err(FinalizeError::SourceOutside),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if p.starts_with(dir) {
                Ok(None)
            } else {
                Err(FinalizeError::SourceOutside)
            }
        }
        Err(e) => Err(FinalizeError::io(Op::Resolve)(e)),
    }
}

/// The destination's segments, refusing anything but plain names.
fn destination_segments(dest: &str) -> Result<Vec<&str>, FinalizeError> {
    let segs: Vec<&str> = dest.split('/').collect();
    let ok = !dest.is_empty()
        && segs
            .iter()
            .all(|s| !s.is_empty() && *s != "." && *s != ".." && !s.contains(['\\', '\0']));
    if ok {
        Ok(segs)
    } else {
        Err(FinalizeError::DestinationOutside)
    }
}

/// Walk the destination's directories below the root, one component at a time,
/// refusing symlinks and non-directories; create missing ones when `create`.
/// `Ok(None)`: a component is missing and `create` is off.
fn destination_dir(root: &Path, dirs: &[&str], create: bool) -> Result<Option<PathBuf>, FinalizeError> {
    let mut cur = root.to_path_buf();
    for seg in dirs {
        cur.push(seg);
        let meta = match fs::symlink_metadata(&cur) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                match fs::create_dir(&cur) {
                    // Lost a race with a concurrent finalize: look at what is there now.
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(FinalizeError::io(Op::CreateDir)(e)),
                }
                fs::symlink_metadata(&cur).map_err(FinalizeError::io(Op::Stat))?
            }
            Err(e) => return Err(FinalizeError::io(Op::Stat)(e)),
        };
        if meta.file_type().is_symlink() {
            return Err(FinalizeError::Symlink {
                side: Side::Destination,
            });
        }
        if !meta.is_dir() {
            return Err(FinalizeError::DestinationNotDir);
        }
    }
    Ok(Some(cur))
}

/// Where `relative` (`{prefix}/{key}`) stands below `storage_root`, by the very
/// rule the move applies (pre-create asks, so an upload the move would refuse is
/// refused before any byte is sent): a symlink or a file on the way, a symlink or
/// a directory at the name itself, or a path that is not plain, is
/// [`Destination::Blocked`]; an I/O error fails closed as
/// [`Destination::Exists`]. Reads only; creates nothing.
pub fn destination_state(storage_root: &Path, relative: &Path) -> Destination {
    let Some(rel) = relative.to_str() else {
        return Destination::Blocked;
    };
    let Ok(segs) = destination_segments(rel) else {
        return Destination::Blocked;
    };
    let Some((file_name, dirs)) = segs.split_last() else {
        return Destination::Blocked;
    };
    match destination_dir(storage_root, dirs, false) {
        Ok(None) => Destination::Free,
        Ok(Some(dir)) => match fs::symlink_metadata(dir.join(file_name)) {
            Ok(m) if m.is_file() => Destination::Exists,
            Ok(_) => Destination::Blocked,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Destination::Free,
            Err(_) => Destination::Exists,
        },
        Err(
            FinalizeError::Symlink { .. }
            | FinalizeError::DestinationNotDir
            | FinalizeError::DestinationOutside,
        ) => Destination::Blocked,
        Err(_) => Destination::Exists,
    }
}

/// Whether `id` can name an upload in the upload directory: tusd's and rustus's
/// own IDs (hex, UUIDs) and nothing that could climb or hide (`/`, `..`, a
/// leading dot).
fn safe_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Upload `id` as its own `.info` (at the top of the upload directory) and its data
/// file describe it. `None`: an unsafe ID, no info, an unusable info, or a data
/// file outside the upload directory or not a regular file.
fn part_record(roots: &Roots, id: &str) -> Option<(UploadInfo, PathBuf, PathBuf, Part)> {
    if !safe_upload_id(id) {
        return None;
    }
    let info_path = roots.upload_dir.join(format!("{id}.info"));
    let info = read_info(&info_path).ok()?;
    if info.id != id {
        return None;
    }
    let data = resolve_inside(&roots.upload_dir, &info.data_path).ok()??;
    let meta = fs::symlink_metadata(&data).ok()?;
    if !meta.is_file() {
        return None;
    }
    let finished = info.size == Some(meta.len()) && info.offset.is_none_or(|o| Some(o) == info.size);
    let part = Part {
        is_partial: info.is_partial,
        finished,
        metadata: info.metadata.clone(),
    };
    Some((info, info_path, data, part))
}

/// What the upload server's own record says of upload `id`, for pre-create's
/// check of a final upload's parts (the move checks them again).
pub fn part(roots: &Roots, id: &str) -> Option<Part> {
    part_record(roots, id).map(|(_, _, _, p)| p)
}

/// Every part of a final upload is a finished partial upload carrying the
/// expected (signed) fields unchanged.
fn check_parts(
    roots: &Roots,
    parts: &[String],
    expected: &BTreeMap<String, String>,
) -> Result<(), FinalizeError> {
    if parts.is_empty() {
        return Err(FinalizeError::ConcatInvalid);
    }
    for id in parts {
        let Some((_, _, _, part)) = part_record(roots, id) else {
            return Err(FinalizeError::ConcatInvalid);
        };
        let signed = expected.iter().all(|(k, v)| part.metadata.get(k) == Some(v));
        if !part.is_partial || !part.finished || !signed {
            return Err(FinalizeError::ConcatInvalid);
        }
    }
    Ok(())
}

/// After a final upload was published: its parts (checked before the publish)
/// go too, data first, info last. Best effort; returns how many went.
fn remove_parts(roots: &Roots, parts: &[String]) -> usize {
    let mut removed = 0;
    for id in parts {
        if let Some((info, info_path, data, _)) = part_record(roots, id) {
            if info.is_partial && remove_source_and_info(&data, Some(&info_path)) == Cleanup::Done {
                removed += 1;
            }
        }
    }
    removed
}

/// The leading bytes must be what the declared type says (`[upload] check_content`).
fn check_content(source: &Path, declared: &str) -> Result<(), FinalizeError> {
    let mut head = Vec::with_capacity(prefinish::SNIFF_BYTES);
    File::open(source)
        .and_then(|f| f.take(prefinish::SNIFF_BYTES as u64).read_to_end(&mut head))
        .map_err(FinalizeError::io(Op::Sniff))?;
    prefinish::check(declared, &head).map_err(|_| FinalizeError::ContentMismatch {
        expected: prefinish::expected_signature(declared).unwrap_or("of its declared type"),
    })
}

/// The info file for `source` (a real path inside the upload directory): the one
/// given by the event if any, else `<source>.info`, else `<upload_dir>/<name>.info`.
/// `Ok(None)`: none exists.
fn locate_info(roots: &Roots, source: &Path, given: Option<&Path>) -> Result<Option<PathBuf>, FinalizeError> {
    let Some(name) = source.file_name() else {
        return Err(FinalizeError::InfoInvalid);
    };
    let mut info_name = OsString::from(name);
    info_name.push(".info");
    let candidates = match given {
        Some(g) => {
            let real = match resolve_inside(&roots.upload_dir, g) {
                Ok(Some(real)) => real,
                Ok(None) => return Ok(None),
                Err(_) => return Err(FinalizeError::InfoInvalid),
            };
            if real.file_name() != Some(info_name.as_os_str()) {
                return Err(FinalizeError::InfoInvalid);
            }
            vec![real]
        }
        None => vec![
            source.with_file_name(&info_name),
            roots.upload_dir.join(&info_name),
        ],
    };
    for c in candidates {
        match fs::symlink_metadata(&c) {
            Ok(m) if m.file_type().is_symlink() => return Err(FinalizeError::Symlink { side: Side::Info }),
            Ok(m) if m.is_file() => return Ok(Some(c)),
            Ok(_) => return Err(FinalizeError::InfoInvalid),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FinalizeError::io(Op::Stat)(e)),
        }
    }
    Ok(None)
}

/// Whether `info` describes the data file at `source` (both resolved inside the
/// upload directory).
fn describes(roots: &Roots, info: &UploadInfo, source: &Path) -> bool {
    matches!(resolve_inside(&roots.upload_dir, &info.data_path), Ok(Some(p)) if p == source)
}

// ----------------------------------------------------------------------------------
// finalize
// ----------------------------------------------------------------------------------

/// Move one finished upload into the asset tree, as `plan` says and only if the
/// upload's own record agrees. See the module docs for every rule. `cancel` stops
/// a copy between chunks (shutdown).
pub fn finalize(roots: &Roots, plan: &FinalizePlan, cancel: &Cancel) -> Result<Finalized, FinalizeError> {
    run(&Move::from_plan(roots, plan), cancel)
}

/// [`finalize`], plus the SHA-256 of the published bytes and a `commit` run
/// after the publish is durable (destination directory fsynced) and *before*
/// the upload's source and info are removed, on every successful path
/// (`AlreadyFinalized` included). A crash between the publish and the commit
/// leaves the upload where a later pass finds it; a `commit` returning `false`
/// does the same ([`Cleanup::Held`]). So "source removed" implies "committed".
pub fn finalize_with(
    roots: &Roots,
    plan: &FinalizePlan,
    cancel: &Cancel,
    commit: Commit<'_>,
) -> Result<Finalized, FinalizeError> {
    run_with(&Move::from_plan(roots, plan), cancel, &mut Some(commit))
}

/// Runs the commit, if any, hashing `dst` when no digest came with the publish.
/// `Ok(false)`: the commit failed, leave the upload in place.
fn commit_published(
    commit: &mut Option<Commit<'_>>,
    method: Method,
    bytes: u64,
    sha256: Option<[u8; 32]>,
    dst: &Path,
) -> Result<(bool, Option<[u8; 32]>), FinalizeError> {
    let Some(f) = commit.as_mut() else {
        return Ok((true, sha256));
    };
    let sha256 = match sha256 {
        Some(d) => d,
        None => {
            let mut file = File::open(dst).map_err(FinalizeError::io(Op::Hash))?;
            hash_file(&mut file)?
        }
    };
    Ok((
        f(&Published {
            method,
            bytes,
            sha256,
        }),
        Some(sha256),
    ))
}

fn hash_file(file: &mut File) -> Result<[u8; 32], FinalizeError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(h.finalize().into()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FinalizeError::io(Op::Hash)(e)),
        }
    }
}

fn run(req: &Move, cancel: &Cancel) -> Result<Finalized, FinalizeError> {
    run_with(req, cancel, &mut None)
}

fn run_with(
    req: &Move,
    cancel: &Cancel,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let roots = &req.roots;
    let segs = destination_segments(&req.destination)?;
    let (file_name, dirs) = segs.split_last().ok_or(FinalizeError::DestinationOutside)?;

    // The source: a real path inside the upload directory, maybe gone already.
    let source = resolve_inside(&roots.upload_dir, &req.source)?;
    let src_meta = match &source {
        Some(s) => match fs::symlink_metadata(s) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(FinalizeError::io(Op::Stat)(e)),
        },
        None => None,
    };
    let (Some(source), Some(src_meta)) = (source.clone(), src_meta) else {
        return already_finalized(req, source.as_deref(), dirs, file_name, commit);
    };
    if src_meta.file_type().is_symlink() {
        return Err(FinalizeError::Symlink { side: Side::Source });
    }
    if !src_meta.is_file() {
        return Err(FinalizeError::SourceNotFile);
    }

    // Finished, according to the upload server's own record of it.
    let info_path =
        locate_info(roots, &source, req.info_path.as_deref())?.ok_or(FinalizeError::InfoInvalid)?;
    let info = read_info(&info_path).map_err(|e| match e {
        InfoError::Symlink => FinalizeError::Symlink { side: Side::Info },
        _ => FinalizeError::InfoInvalid,
    })?;
    if !describes(roots, &info, &source) {
        return Err(FinalizeError::InfoInvalid);
    }
    let size = info
        .finished(src_meta.len())
        .map_err(|_| FinalizeError::NotFinished)?;
    for (k, v) in &req.expected_metadata {
        if info.metadata.get(k) != Some(v) {
            return Err(FinalizeError::MetadataMismatch);
        }
    }
    if info.is_final {
        check_parts(roots, &info.parts, &req.expected_metadata)?;
    }
    if let Some(declared) = &req.content_check {
        check_content(&source, declared)?;
    }

    // The destination.
    let dir = destination_dir(&roots.storage_root, dirs, true)?.ok_or(FinalizeError::DestinationNotDir)?;
    let dst = dir.join(file_name);
    let dst_meta = match fs::symlink_metadata(&dst) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(FinalizeError::io(Op::Stat)(e)),
    };
    if let Some(m) = &dst_meta {
        if m.file_type().is_symlink() {
            return Err(FinalizeError::Symlink {
                side: Side::Destination,
            });
        }
        if !m.is_file() {
            return Err(FinalizeError::Exists);
        }
        // Checked before anything else: a crash after a hard-link publish leaves
        // source and destination as one inode (and `rename` between two links of
        // one inode does nothing at all).
        if same_inode(&src_meta, m) {
            return recovered(dst, size, &source, &info_path, commit);
        }
    }
    // A second link is none of tusd's doing: refuse rather than publish an inode
    // that is also reachable elsewhere.
    if src_meta.nlink() != 1 {
        return Err(FinalizeError::SourceNotFile);
    }
    if dst_meta.is_some() && !req.overwrite {
        return conflict(&source, &dst, size, &info_path, commit);
    }

    let dir_meta = fs::metadata(&dir).map_err(FinalizeError::io(Op::Stat))?;
    let mut method = Method::Renamed;
    let mut sha256 = None;
    if src_meta.dev() != dir_meta.dev() || faults::force_copy() {
        method = Method::Copied;
    } else {
        // The data reaches the disk before its name does.
        sync_file(&source)?;
        // Opened before the publish: the hash reads the very inode published.
        let mut inode = match commit {
            Some(_) => Some(File::open(&source).map_err(FinalizeError::io(Op::Hash))?),
            None => None,
        };
        match publish(&source, &dst, req.overwrite) {
            Ok(()) => {
                if let Some(f) = inode.as_mut() {
                    sha256 = Some(hash_file(f)?);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return conflict(&source, &dst, size, &info_path, commit);
            }
            Err(e) if falls_back_to_copy(&e) => method = Method::Copied,
            Err(e) => {
                return Err(FinalizeError::io(if req.overwrite {
                    Op::Rename
                } else {
                    Op::Link
                })(e))
            }
        }
    }
    if method == Method::Copied {
        let tmp_dir = temp_dir_for(roots, &dir, &dir_meta)?;
        let want = commit.is_some();
        match copy_publish(&source, &src_meta, &tmp_dir, &dst, req.overwrite, cancel, want) {
            Ok(digest) => sha256 = digest,
            Err(FinalizeError::Exists) => return conflict(&source, &dst, size, &info_path, commit),
            Err(e) => return Err(e),
        }
    }
    sync_dir(&dir)?;
    let (committed, sha256) = commit_published(commit, method, size, sha256, &dst)?;
    if !committed {
        return Ok(Finalized {
            destination: dst,
            method,
            bytes: size,
            cleanup: Cleanup::Held,
            sha256,
        });
    }
    let cleanup = remove_source_and_info(&source, Some(&info_path));
    if info.is_final && cleanup == Cleanup::Done {
        remove_parts(roots, &info.parts);
    }
    Ok(Finalized {
        destination: dst,
        method,
        bytes: size,
        cleanup,
        sha256,
    })
}

/// The source is gone: a duplicate delivery if the destination is there.
fn already_finalized(
    req: &Move,
    source: Option<&Path>,
    dirs: &[&str],
    file_name: &str,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let Some(dir) = destination_dir(&req.roots.storage_root, dirs, false)? else {
        return Err(FinalizeError::SourceMissing);
    };
    let dst = dir.join(file_name);
    let meta = match fs::symlink_metadata(&dst) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FinalizeError::SourceMissing),
        Err(e) => return Err(FinalizeError::io(Op::Stat)(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(FinalizeError::Symlink {
            side: Side::Destination,
        });
    }
    if !meta.is_file() {
        return Err(FinalizeError::SourceMissing);
    }
    let (committed, sha256) = commit_published(commit, Method::AlreadyFinalized, meta.len(), None, &dst)?;
    if !committed {
        return Ok(Finalized {
            destination: dst,
            method: Method::AlreadyFinalized,
            bytes: meta.len(),
            cleanup: Cleanup::Held,
            sha256,
        });
    }
    // A crash between removing the data file and removing its info leaves a stale
    // info behind: remove it, but only one that really describes this data file.
    let mut cleanup = Cleanup::Done;
    if let Some(source) = source {
        if let Ok(Some(info_path)) = locate_info(&req.roots, source, req.info_path.as_deref()) {
            if let Ok(info) = read_info(&info_path) {
                if describes(&req.roots, &info, source) {
                    cleanup = remove_source_and_info(source, Some(&info_path));
                }
            }
        }
    }
    Ok(Finalized {
        destination: dst,
        method: Method::AlreadyFinalized,
        bytes: meta.len(),
        cleanup,
        sha256,
    })
}

/// The destination exists and is not to be replaced. If it holds exactly the
/// source's bytes (a crash after a copy publish, or a racing duplicate), the work is
/// done; otherwise a conflict.
fn conflict(
    source: &Path,
    dst: &Path,
    size: u64,
    info_path: &Path,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let (Ok(s), Ok(d)) = (fs::symlink_metadata(source), fs::symlink_metadata(dst)) else {
        return Err(FinalizeError::Exists);
    };
    if d.is_file() && !d.file_type().is_symlink() && (same_inode(&s, &d) || same_bytes(source, dst)?) {
        return recovered(dst.to_path_buf(), size, source, info_path, commit);
    }
    Err(FinalizeError::Exists)
}

fn recovered(
    dst: PathBuf,
    size: u64,
    source: &Path,
    info_path: &Path,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let (committed, sha256) = commit_published(commit, Method::AlreadyFinalized, size, None, &dst)?;
    let cleanup = if committed {
        remove_source_and_info(source, Some(info_path))
    } else {
        Cleanup::Held
    };
    Ok(Finalized {
        destination: dst,
        method: Method::AlreadyFinalized,
        bytes: size,
        cleanup,
        sha256,
    })
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, FinalizeError> {
    let mut fa = File::open(a).map_err(FinalizeError::io(Op::Compare))?;
    let mut fb = File::open(b).map_err(FinalizeError::io(Op::Compare))?;
    let la = fa.metadata().map_err(FinalizeError::io(Op::Compare))?.len();
    let lb = fb.metadata().map_err(FinalizeError::io(Op::Compare))?.len();
    if la != lb {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(FinalizeError::io(Op::Compare))?;
        let m = read_full(&mut fb, &mut bb).map_err(FinalizeError::io(Op::Compare))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// No-replace publish is `link` (fails with `EEXIST`); replacing is `rename`.
fn publish(from: &Path, to: &Path, overwrite: bool) -> io::Result<()> {
    faults::check(faults::Step::Publish)?;
    faults::race(to);
    if overwrite {
        fs::rename(from, to)
    } else {
        fs::hard_link(from, to)
    }
}

/// `EXDEV` (a bind mount of the same filesystem has the same `st_dev`), or a
/// filesystem without hard links (`EPERM`/`EOPNOTSUPP`; also Linux's
/// `protected_hardlinks` when assetgate does not own tusd's file).
fn falls_back_to_copy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(EXDEV)
        || matches!(
            e.kind(),
            io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
        )
}

/// Where the copy's temporary file goes: `<storage root>/.assetgate-tmp/`, where
/// [`sweep_temp`] finds what a crash left; the destination directory itself when it
/// is on another filesystem than that (a mount inside the asset tree), since a
/// link cannot cross filesystems.
fn temp_dir_for(roots: &Roots, dst_dir: &Path, dst_dir_meta: &Metadata) -> Result<PathBuf, FinalizeError> {
    let dir = roots.storage_root.join(TEMP_DIR);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(FinalizeError::io(Op::CreateTemp)(e)),
    }
    let meta = fs::symlink_metadata(&dir).map_err(FinalizeError::io(Op::Stat))?;
    if meta.file_type().is_symlink() {
        return Err(FinalizeError::Symlink {
            side: Side::Destination,
        });
    }
    if !meta.is_dir() {
        return Err(FinalizeError::DestinationNotDir);
    }
    if meta.dev() == dst_dir_meta.dev() {
        Ok(dir)
    } else {
        Ok(dst_dir.to_path_buf())
    }
}

/// Copy `source` to a temporary file in `tmp_dir`, sync it, publish it at `dst`.
/// `Err(Exists)` when `dst` appeared meanwhile, `Err(Cancelled)` when `cancel` was
/// raised. The temporary file never outlives this function.
fn copy_publish(
    source: &Path,
    src_meta: &Metadata,
    tmp_dir: &Path,
    dst: &Path,
    overwrite: bool,
    cancel: &Cancel,
    digest: bool,
) -> Result<Option<[u8; 32]>, FinalizeError> {
    let mut tmp = TempFile::create(tmp_dir)?;
    let mut input = File::open(source).map_err(FinalizeError::io(Op::Copy))?;
    let mut hasher = digest.then(<sha2::Sha256 as sha2::Digest>::new);
    let copied = copy_chunks(&mut input, &mut tmp.file, cancel, hasher.as_mut())?;
    if copied != src_meta.len() {
        // The file changed under us: tusd is not done with it after all.
        return Err(FinalizeError::NotFinished);
    }
    faults::check(faults::Step::AfterCopy).map_err(FinalizeError::io(Op::Copy))?;
    tmp.file
        .set_permissions(src_meta.permissions())
        .map_err(FinalizeError::io(Op::Copy))?;
    tmp.file.sync_all().map_err(FinalizeError::io(Op::Sync))?;
    if cancel.is_cancelled() {
        return Err(FinalizeError::Cancelled);
    }
    match publish(&tmp.path, dst, overwrite) {
        // After a rename the temporary name is gone; after a link it is removed
        // when `tmp` drops.
        Ok(()) if overwrite => tmp.disarm(),
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FinalizeError::Exists),
        Err(e) => {
            return Err(FinalizeError::io(if overwrite { Op::Rename } else { Op::Link })(
                e,
            ))
        }
    }
    Ok(hasher.map(|h| sha2::Digest::finalize(h).into()))
}

/// Size of one copy step; `cancel` is looked at between steps.
const COPY_CHUNK: usize = 1024 * 1024;

/// Streams `input` into `out`, feeding `hasher` the same bytes (the digest of
/// the published file, with no second read).
fn copy_chunks(
    input: &mut File,
    out: &mut File,
    cancel: &Cancel,
    mut hasher: Option<&mut sha2::Sha256>,
) -> Result<u64, FinalizeError> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut total = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(FinalizeError::Cancelled);
        }
        faults::copy_step();
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FinalizeError::io(Op::Copy)(e)),
        };
        out.write_all(&buf[..n]).map_err(FinalizeError::io(Op::Copy))?;
        if let Some(h) = hasher.as_mut() {
            sha2::Digest::update(&mut **h, &buf[..n]);
        }
        total += n as u64;
    }
}

/// The directory below the storage root that holds the copies in progress.
pub const TEMP_DIR: &str = ".assetgate-tmp";

/// A temporary file younger than this is left alone by [`sweep_temp`] even when
/// unlocked: its writer may not have taken the lock yet.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(5);

/// Removes the temporary files that crashed moves left in
/// `<storage root>/.assetgate-tmp/`: only files named like ours, only those no
/// running process holds its lock on (a writer holds an exclusive `flock` for the
/// file's whole life; the kernel drops it when the writer dies), and only those at
/// least `min_age` old. Returns how many were removed.
pub fn sweep_temp(roots: &Roots, min_age: Duration) -> io::Result<usize> {
    let dir = roots.storage_root.join(TEMP_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(".assetgate-") && name.ends_with(".tmp")) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        if file.try_lock().is_ok() {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// A temporary file removed on drop unless disarmed.
struct TempFile {
    path: PathBuf,
    file: File,
    armed: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<TempFile, FinalizeError> {
        faults::check(faults::Step::CreateTemp).map_err(FinalizeError::io(Op::CreateTemp))?;
        let mut last = io::ErrorKind::AlreadyExists;
        for _ in 0..8 {
            let mut rnd = [0u8; 8];
            getrandom::getrandom(&mut rnd).map_err(|_| FinalizeError::Io {
                op: Op::CreateTemp,
                kind: io::ErrorKind::Other,
            })?;
            // Independent of the asset name: that may already be 255 bytes long.
            let path = dir.join(format!(".assetgate-{}.tmp", hex::encode(rnd)));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let tmp = TempFile {
                        path,
                        file,
                        armed: true,
                    };
                    // Held until the file is closed (or its writer dies): what tells
                    // `sweep_temp` that this copy is alive.
                    tmp.file.lock().map_err(FinalizeError::io(Op::CreateTemp))?;
                    return Ok(tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e.kind(),
                Err(e) => return Err(FinalizeError::io(Op::CreateTemp)(e)),
            }
        }
        Err(FinalizeError::Io {
            op: Op::CreateTemp,
            kind: last,
        })
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn sync_file(p: &Path) -> Result<(), FinalizeError> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(FinalizeError::io(Op::Sync))
}

fn sync_dir(dir: &Path) -> Result<(), FinalizeError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(FinalizeError::io(Op::Sync))
}

/// Source first, info last (see the module docs); a missing file is fine.
fn remove_source_and_info(source: &Path, info: Option<&Path>) -> Cleanup {
    let gone = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.kind()),
        _ => Ok(()),
    };
    if let Err(k) = gone(fs::remove_file(source)) {
        return Cleanup::SourceLeft(k);
    }
    if let Some(parent) = source.parent() {
        // Best effort: if the removal is lost in a crash, a later run sees the same
        // inode (or bytes) at the destination and removes the source again.
        let _ = sync_dir(parent);
    }
    if let Some(info) = info {
        if let Err(k) = gone(fs::remove_file(info)) {
            return Cleanup::InfoLeft(k);
        }
    }
    Cleanup::Done
}

// ----------------------------------------------------------------------------------
// finalize-pending
// ----------------------------------------------------------------------------------

/// A finished upload found in the upload directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The upload ID.
    pub id: String,
    /// Which server wrote it.
    pub format: InfoFormat,
    /// Its `.info` file.
    pub info_path: PathBuf,
    /// Its data file (as recorded; [`finalize`] confines it).
    pub data_path: PathBuf,
    /// Declared (and actual) size in bytes.
    pub size: u64,
    /// Whether it is the concatenation of partial uploads.
    pub is_final: bool,
    /// Whether it is a partial upload (a part of a concatenation).
    pub is_partial: bool,
    /// The stored metadata (decoded strings), for the caller to re-verify the
    /// upload-token and compute the destination.
    pub metadata: BTreeMap<String, String>,
}

/// Why an info file was not returned as finished.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Still receiving data.
    InProgress,
    /// Length not declared yet.
    Deferred,
    /// A partial upload (its final upload is what gets moved).
    Partial,
    /// Unreadable, a symlink, too large, or not a tusd/rustus info (detail included,
    /// no file content).
    Malformed(String),
}

/// An info file that was not returned as finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The info file.
    pub info_path: PathBuf,
    /// Why.
    pub reason: SkipReason,
    /// What the info says (not for [`SkipReason::Malformed`]); `size` is the
    /// declared size (0 when deferred).
    pub upload: Option<PendingUpload>,
}

impl PendingUpload {
    /// This upload as the finished upload a post-finish event would describe,
    /// so every path to the mover (post-finish, `finalize-pending`, the
    /// reconciler) plans through `tusd::postfinish::plan` with the same rules.
    pub fn as_upload(&self) -> crate::tusd::Upload {
        crate::tusd::Upload {
            id: self.id.clone(),
            size: Some(self.size),
            size_is_deferred: false,
            offset: self.size,
            metadata: self.metadata.clone(),
            is_partial: self.is_partial,
            is_final: self.is_final,
            partial_uploads: Vec::new(),
            storage: Some(crate::tusd::protocol::Storage {
                kind: None,
                path: Some(self.data_path.display().to_string()),
                info_path: Some(self.info_path.display().to_string()),
            }),
        }
    }
}

/// Removes an abandoned upload (its token expired long ago and it never
/// finished): data file, `.info` and tusd's `.lock`, after reading the info again
/// and finding it still describes the same unfinished upload (a client finishing
/// meanwhile keeps it). `Ok(false)`: left as it is.
pub fn remove_abandoned(roots: &Roots, upload: &PendingUpload) -> io::Result<bool> {
    let Some((info, info_path, data, part)) = part_record(roots, &upload.id) else {
        return Ok(false);
    };
    if info_path != upload.info_path
        || info.metadata != upload.metadata
        || (part.finished && !part.is_partial)
    {
        return Ok(false);
    }
    let lock = roots.upload_dir.join(format!("{}.lock", upload.id));
    for p in [&data, &info_path, &lock] {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What [`scan_pending`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingScan {
    /// Finished uploads, sorted by info file name.
    pub finished: Vec<PendingUpload>,
    /// Info files whose data file is gone (a crash between removing the data and the
    /// info, or a hand cleanup). Passing one to [`finalize`] removes the info when
    /// the destination exists ([`Method::AlreadyFinalized`]).
    pub stale: Vec<PendingUpload>,
    /// Everything else, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Read every `*.info` at the top of `upload_dir` (tusd's and rustus's layouts) and
/// sort the uploads into finished, stale and skipped. Only an unreadable directory
/// is an error; a bad info file is reported in [`PendingScan::skipped`].
pub fn scan_pending(upload_dir: &Path) -> io::Result<PendingScan> {
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in fs::read_dir(upload_dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "info") && path.file_stem().is_some_and(|s| !s.is_empty()) {
            names.push(path);
        }
    }
    names.sort();

    let mut scan = PendingScan::default();
    for info_path in names {
        let skip = |reason| Skipped {
            info_path: info_path.clone(),
            reason,
            upload: None,
        };
        let info = match read_info(&info_path) {
            Ok(i) => i,
            // Not an info file after all (a directory named `x.info`).
            Err(InfoError::NotFile) => continue,
            Err(e) => {
                scan.skipped.push(skip(SkipReason::Malformed(e.to_string())));
                continue;
            }
        };
        let data_len = match fs::symlink_metadata(&info.data_path) {
            Ok(m) if m.is_file() => Some(m.len()),
            Ok(_) => {
                let why = "data path is not a regular file".to_string();
                scan.skipped.push(skip(SkipReason::Malformed(why)));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                scan.skipped
                    .push(skip(SkipReason::Malformed(format!("data file: {}", e.kind()))));
                continue;
            }
        };
        let upload = |size| PendingUpload {
            id: info.id.clone(),
            format: info.format,
            info_path: info_path.clone(),
            data_path: info.data_path.clone(),
            size,
            is_final: info.is_final,
            is_partial: info.is_partial,
            metadata: info.metadata.clone(),
        };
        let declared = info.size.unwrap_or(0);
        let skip_with = |reason| Skipped {
            info_path: info_path.clone(),
            reason,
            upload: Some(upload(declared)),
        };
        match data_len {
            None if !info.is_partial => scan.stale.push(upload(declared)),
            None => scan.skipped.push(skip_with(SkipReason::Partial)),
            Some(len) => match info.finished(len) {
                Ok(size) => scan.finished.push(upload(size)),
                Err(Unfinished::Partial) => scan.skipped.push(skip_with(SkipReason::Partial)),
                Err(Unfinished::Deferred) => scan.skipped.push(skip_with(SkipReason::Deferred)),
                Err(Unfinished::InProgress) => scan.skipped.push(skip_with(SkipReason::InProgress)),
            },
        }
    }
    Ok(scan)
}

// ----------------------------------------------------------------------------------
// Fault injection (tests only)
// ----------------------------------------------------------------------------------

#[cfg(not(test))]
mod faults {
    use std::io;

    #[derive(Clone, Copy)]
    pub enum Step {
        CreateTemp,
        AfterCopy,
        Publish,
    }

    #[inline(always)]
    pub fn check(_: Step) -> io::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub fn force_copy() -> bool {
        false
    }

    #[inline(always)]
    pub fn race(_: &std::path::Path) {}

    pub fn copy_step() {}
}

/// Per-thread switches, so parallel tests do not see each other's.
#[cfg(test)]
mod faults {
    use std::cell::Cell;
    use std::io;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Step {
        CreateTemp,
        AfterCopy,
        Publish,
    }

    thread_local! {
        static FAIL_AT: Cell<Option<Step>> = const { Cell::new(None) };
        static FORCE_COPY: Cell<bool> = const { Cell::new(false) };
        static RACE: Cell<bool> = const { Cell::new(false) };
    }

    /// Another writer creates the destination between the checks and the publish.
    pub fn race(dst: &std::path::Path) {
        if RACE.with(|r| r.get()) {
            std::fs::write(dst, b"racer").unwrap();
        }
    }

    pub fn set_race(on: bool) {
        RACE.with(|r| r.set(on));
    }

    pub fn copy_step() {}

    pub fn check(step: Step) -> io::Result<()> {
        if FAIL_AT.with(|f| f.get()) == Some(step) {
            return Err(io::Error::other("injected fault"));
        }
        Ok(())
    }

    pub fn force_copy() -> bool {
        FORCE_COPY.with(|f| f.get())
    }

    pub fn fail_at(step: Option<Step>) {
        FAIL_AT.with(|f| f.set(step));
    }

    pub fn set_force_copy(on: bool) {
        FORCE_COPY.with(|f| f.set(on));
    }
}

#[cfg(test)]
mod tests;

/// The commit of [`finalize_with`] (events): kept apart from `tests.rs`.
#[cfg(test)]
#[path = "finalize/commit_tests.rs"]
mod commit_tests;
