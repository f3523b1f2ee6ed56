//! Moving a finished upload out of tusd's (or rustus's) upload directory into the
//! asset tree, and finding finished uploads that were never moved.
//!
//! Synchronous, std plus `rustix`'s safe wrappers of the `*at` syscalls, Linux only
//! (`openat2`, `renameat2`, `linkat` by descriptor; a `compile_error!` says so
//! elsewhere): the server runs [`finalize`] on a blocking thread (`spawn_blocking`),
//! `assetgate finalize-pending` calls [`scan_pending`] and then [`finalize`] for each
//! upload it re-verified.
//!
//! # Trust
//!
//! Whoever can reach `/tusd` can post any event, so nothing in an event is believed:
//!
//! - The two roots are canonicalised and opened once, when the daemon starts
//!   ([`Roots::new`]). A symlink *in the configured path itself* (`/srv/tusd ->
//!   /data/tusd`) is the administrator's choice and is followed then; every symlink
//!   *below* the roots is refused, and everything below them is reached from the
//!   two directory descriptors (see *Races* below).
//! - The source (the event's `Storage.Path`) must be absolute, free of `..`, and
//!   name the upload directory (by its canonical path, or by another path of the
//!   same directory, such as the symlinked one tusd was started with) followed by
//!   plain names, none of them a symlink. It is opened, and then it must be a
//!   regular file with a single link; every check from here on is made on the
//!   opened file, not on its name.
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
//! # Races: what is defended, what is not
//!
//! Someone with write access to the upload directory (whoever shares tusd's or
//! rustus's user) or to the asset tree can change it at any moment, also between a
//! check and the operation it guards: swap a directory or a file for a symlink,
//! rename one away, put another file under a checked name. Nothing here is checked
//! through a path and then used through that path again:
//!
//! - Both roots are held open from [`Roots::new`] on; every later lookup starts
//!   from one of the two descriptors.
//! - The directory of the source (and of an info file) is opened with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`; where
//!   the kernel has no `openat2` (before 5.6, or behind a seccomp filter that
//!   predates it), with `openat(O_NOFOLLOW | O_DIRECTORY)` one name at a time, which
//!   refuses the same. The file itself is opened with `O_NOFOLLOW` (and
//!   `O_NONBLOCK`, so a FIFO under the name cannot hang the mover). The checks read
//!   the descriptors: `fstat` for the type, the link count and the size, the info's
//!   bytes, the leading bytes for the content check; the copy reads the same
//!   descriptor.
//! - The inode published is the one that was checked: it is linked by its
//!   descriptor (`linkat(fd, "", AT_EMPTY_PATH)`, allowed since Linux 6.10 for a
//!   file the caller opened; before that, our own `/proc/self/fd/N` with
//!   `AT_SYMLINK_FOLLOW`, as `open(2)` documents for `O_TMPFILE`; without `/proc`
//!   either, copied from the descriptor), never by the name it was opened under.
//!   A name swapped after the checks publishes nothing of the swapper's.
//! - The destination's directories are walked and created from the storage root's
//!   descriptor (`openat(O_NOFOLLOW | O_DIRECTORY)`, `mkdirat`); the publish, the
//!   `fsync` and the temporary files use the directories held open (`linkat`,
//!   `renameat2(RENAME_NOREPLACE)`, `renameat`, `openat(O_CREAT | O_EXCL |
//!   O_NOFOLLOW)`, `unlinkat`). A directory swapped for a symlink after the walk
//!   receives nothing: the file lands in the directory that was checked (inside the
//!   root, under whatever name it has by then; [`Finalized::destination`] is the
//!   name it had), or, if that directory was removed, the move fails with the
//!   source intact. The same holds for `.assetgate-tmp`.
//! - Removals (source, info, parts, swept temporary files) are `unlinkat` in the
//!   directory the file was found in, and only while its name still holds the inode
//!   that was checked; a name that holds another file by then is left alone
//!   ([`Cleanup::SourceLeft`] or [`Cleanup::InfoLeft`] with `Other`).
//!
//! The tests swap directories and names at these points (`faults::on`) and check
//! that nothing is read from or written to a place outside the roots.
//!
//! What remains:
//! - Root, or the owner of a root directory or of a directory above one, can do
//!   anything. The configured paths are resolved once, at start: whoever can
//!   change them before that chooses the roots.
//! - A removal looks at the inode, then unlinks the name: two steps. Whoever wins
//!   that window can make the mover remove a file *in the upload directory* that
//!   they could remove themselves; nothing outside it (in the asset tree: only a
//!   file they put under one of the mover's temporary names).
//! - The data file's owner (tusd) can still write to the checked inode, or give it
//!   a second link, after the checks: the content check, the size and the link count
//!   describe it at check time (a copy notices a size change and stops with
//!   [`FinalizeError::NotFinished`]). tusd does not write to a finished upload.
//! - Whoever can write to the asset tree can replace a published file, or anything
//!   else there; nginx serves what is there.
//! - [`scan_pending`] reads info files by descriptor but only looks at data files
//!   by path, and pre-create's [`destination_state`] and [`part`] answer from what
//!   they see at the time: all three report, the move decides (and checks again).
//! - A directory the daemon holds open stays the root even if the configured path
//!   is later pointed elsewhere (a remount, a replaced directory): restart then.
//!
//! # Publishing without losing or overwriting data
//!
//! - Same filesystem, `overwrite = false`: link the checked inode at `dst` (by
//!   descriptor, see *Races*; fails if `dst` exists: an atomic no-replace publish),
//!   fsync the destination directory, then remove the source. `overwrite = true`:
//!   the same link when `dst` is free; otherwise the inode is linked under a
//!   temporary name in `.assetgate-tmp` (below) and `renameat` over `dst` (atomic:
//!   readers see the old file or the new one).
//! - Different filesystem (decided from `st_dev`, and on `EXDEV` from a link or
//!   rename, e.g. across bind mounts), a filesystem refusing hard links, or no way
//!   to link by descriptor: copy (from the checked descriptor) into a temporary
//!   file `<storage root>/.assetgate-tmp/.assetgate-<random>.tmp` (in the
//!   destination directory itself when that is on another filesystem than the
//!   storage root), created `O_EXCL` with mode 0600, `sync_all`, give it the
//!   source's mode, publish it with `renameat2(RENAME_NOREPLACE)` (a link where the
//!   filesystem lacks that flag) or, for overwrite, `renameat`; fsync the
//!   directory, then remove the source. The temporary file is removed on every
//!   failure path, and the copy stops at the next 1 MiB chunk when the daemon's
//!   shutdown grace is over ([`Cancel`], [`FinalizeError::Cancelled`]: temporary
//!   file removed, source intact).
//! - A crash (kill -9, power loss) can still leave a temporary file. Each one is
//!   held under an exclusive `flock` by the process writing it, which the kernel
//!   drops when that process dies: [`sweep_temp`] removes exactly the temporary
//!   files nobody holds (and at least [`TEMP_MIN_AGE`] old, to step around a writer
//!   that created its file but has not locked it yet). The daemon sweeps at start,
//!   `finalize-pending` before it scans. A temporary *link* of an overwrite is
//!   locked the same way (the lock is on the inode it shares with the source); left
//!   by a crash, it is a second link of the source, which is refused as
//!   [`FinalizeError::SourceNotFile`] until the next sweep removes it.
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
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Deserialize;

use crate::tusd::{prefinish, Destination, FinalizePlan, Part};

/// Largest `.info` file read (tusd's are a few hundred bytes; metadata rides in one
/// HTTP header).
const MAX_INFO_BYTES: u64 = 1024 * 1024;

#[cfg(not(target_os = "linux"))]
compile_error!("the mover (src/finalize/) needs Linux: openat2, renameat2 and linkat by descriptor");

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

/// The upload directory and the storage root, canonicalised and opened once (at
/// startup).
///
/// Only [`Roots::new`] builds one. Every file below a root is reached from the
/// root's descriptor, never through the path again: the paths serve to match the
/// absolute paths in events and info files, and for messages. Holding the
/// directories open means the mover keeps working in the directories it was
/// started with; replacing one (not its contents) needs a restart.
#[derive(Debug, Clone)]
pub struct Roots {
    upload_dir: PathBuf,
    storage_root: PathBuf,
    upload_fd: Arc<OwnedFd>,
    storage_fd: Arc<OwnedFd>,
}

/// The same configured directories (the descriptors are not compared).
impl PartialEq for Roots {
    fn eq(&self, other: &Roots) -> bool {
        self.upload_dir == other.upload_dir && self.storage_root == other.storage_root
    }
}

impl Eq for Roots {}

impl Roots {
    /// Canonicalise and open `[tusd] upload_dir` and `[storage] root`. Both must be
    /// absolute paths of existing directories, and neither may contain the other.
    pub fn new(upload_dir: &Path, storage_root: &Path) -> Result<Roots, FinalizeError> {
        let canon = |p: &Path, root: Root| -> Result<PathBuf, FinalizeError> {
            if !p.is_absolute() {
                return Err(FinalizeError::BadRoot { root });
            }
            fs::canonicalize(p).map_err(|_| FinalizeError::BadRoot { root })
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
        // `O_DIRECTORY`: not a directory is a bad root; `O_NOFOLLOW`: the canonical
        // path ends in no symlink, and nothing may have put one there since.
        let open = |p: &Path, root: Root| {
            rustix::fs::open(p, DIR_FLAGS, Mode::empty())
                .map(Arc::new)
                .map_err(|_| FinalizeError::BadRoot { root })
        };
        Ok(Roots {
            upload_fd: open(&upload_dir, Root::UploadDir)?,
            storage_fd: open(&storage_root, Root::StorageRoot)?,
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
    /// bytes as the destination). `Other`: its name holds another file by now (the
    /// upload directory changed during the move), left alone.
    SourceLeft(io::ErrorKind),
    /// The info file could not be removed (`Other`: as for the source).
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

/// Open the info file `dir/name` without following a symlink. `Ok(None)`: none.
fn open_info(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Opened>, InfoError> {
    match open_at(dir, name) {
        Ok(opened) => Ok(opened),
        Err(Errno::LOOP) => Err(InfoError::Symlink),
        Err(Errno::NXIO | Errno::NODEV) => Err(InfoError::NotFile),
        Err(e) => Err(InfoError::Io(io::Error::from(e).kind())),
    }
}

/// Read and parse an opened info file (from its descriptor); `info_path`, where it
/// is, locates the data file when the info does not record it.
fn read_info(opened: &Opened, info_path: &Path) -> Result<UploadInfo, InfoError> {
    if !opened.meta.is_file() {
        return Err(InfoError::NotFile);
    }
    let mut bytes = Vec::new();
    (&opened.file)
        .take(MAX_INFO_BYTES + 1)
        .read_to_end(&mut bytes)
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
// Descriptors: every path below a root is walked from the root's descriptor
// ----------------------------------------------------------------------------------

/// A directory held open for `*at` calls, listing and `fsync`: read-only, never
/// reached through a symlink as its last component, closed on exec.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A file opened to be checked and read: never through a symlink (`ELOOP`), never
/// blocking on a FIFO planted under the name (its type is checked on the descriptor
/// right after), never becoming a controlling terminal.
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` answered `ENOSYS` (Linux before 5.6) or `EPERM` (a seccomp
/// filter that predates it): from then on directories are walked name by name.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl FinalizeError {
    fn errno(op: Op) -> impl FnOnce(Errno) -> FinalizeError {
        move |e| FinalizeError::io(op)(e.into())
    }
}

/// Absolute, and only root + normal components (no `..`; `.` is dropped by
/// `components()` already).
fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// `p`, an absolute path from an event or an info file, as plain names below
/// `root` (canonical). `p` must start with `root` itself or with another name of
/// the very same directory (the configured path behind a symlink, the path tusd was
/// started with): only those leading components, which are the administrator's,
/// are resolved here. What follows stays names, walked later from the root's
/// descriptor without following any symlink. Empty when `p` is `root` itself.
fn beneath(root: &Path, p: &Path) -> Result<PathBuf, FinalizeError> {
    if !plain_absolute(p) {
        return Err(FinalizeError::SourceOutside);
    }
    if let Ok(rel) = p.strip_prefix(root) {
        return Ok(rel.to_path_buf());
    }
    let mut ancestors: Vec<&Path> = p.ancestors().skip(1).collect();
    ancestors.reverse();
    for a in ancestors {
        match fs::canonicalize(a) {
            Ok(real) if real == root => {
                let rel = p.strip_prefix(a).map_err(|_| FinalizeError::SourceOutside)?;
                return Ok(rel.to_path_buf());
            }
            Ok(_) => {}
            // A longer path does not exist either.
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(FinalizeError::io(Op::Resolve)(e)),
        }
    }
    Err(FinalizeError::SourceOutside)
}

/// The directory `rel` (plain names; empty: `root` itself) below `root`, no symlink
/// followed on the way: one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS)`, or, where the kernel lacks it, `openat(O_NOFOLLOW)` one
/// name at a time. Both say `ELOOP` for a symlink on the way, `ENOTDIR` for a
/// component that is not a directory, `ENOENT` for a missing one.
fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    if !NO_OPENAT2.load(Ordering::Relaxed) && !faults::unsupported(faults::Feature::Openat2) {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        // Without `O_NOFOLLOW`, which would turn a symlink at the end into `ENOTDIR`:
        // `RESOLVE_NO_SYMLINKS` refuses it, and every other one, with `ELOOP`.
        let flags = DIR_FLAGS.difference(OFlags::NOFOLLOW);
        match rustix::fs::openat2(root, path, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS | Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // Only for a `..` racing a rename, which plain names do not have; the
            // walk below answers anyway.
            Err(Errno::AGAIN) => {}
            r => return r,
        }
    }
    let mut cur = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(Errno::INVAL);
        };
        cur = open_subdir(cur.as_fd(), name)?;
    }
    Ok(cur)
}

/// `dir/name` as a directory: `ELOOP` for a symlink, `ENOTDIR` for anything else
/// that is not a directory.
fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        // `O_DIRECTORY | O_NOFOLLOW` says `ENOTDIR` for a symlink too: tell them apart
        // (only to choose the error; nothing is done with the answer).
        Err(Errno::NOTDIR) if matches!(lstat_at(dir, name), Ok(Some(n)) if n.kind == FileType::Symlink) => {
            Err(Errno::LOOP)
        }
        r => r,
    }
}

/// What `fstatat(AT_SYMLINK_NOFOLLOW)` says of a name.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: FileType,
    dev: u64,
    ino: u64,
    size: u64,
}

impl Node {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Node {
        Node {
            kind: FileType::from_raw_mode(st.st_mode as _),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
        }
    }

    fn is(&self, m: &Metadata) -> bool {
        self.dev == m.dev() && self.ino == m.ino()
    }
}

/// `dir/name` without following a symlink; `None`: nothing there.
fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Node>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Node::of(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstat` of a descriptor.
fn node_of(fd: BorrowedFd<'_>) -> Result<Node, Errno> {
    rustix::fs::fstat(fd).map(|st| Node::of(&st))
}

// The link count, which `Node` leaves out (a removed directory has none).
#[allow(clippy::unnecessary_cast)]
fn removed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).map_or(true, |st| st.st_nlink as u64 == 0)
}

/// A file opened by name, and what `fstat` says of *that* file: every check and
/// every read is on the descriptor, never on the name again.
struct Opened {
    file: File,
    meta: Metadata,
}

/// `dir/name` opened without following a symlink (`ELOOP`); `None`: nothing there.
fn open_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Opened>, Errno> {
    let fd = match rustix::fs::openat(dir, name, FILE_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    Ok(Some(Opened { file, meta }))
}

/// A name in a directory of the upload directory, that directory held open.
#[derive(Debug)]
struct Located {
    /// Plain names below the upload directory (what tells which info file
    /// describes which data file).
    rel: PathBuf,
    /// The directory holding the name.
    dir: OwnedFd,
    /// The last component of `rel`.
    name: OsString,
}

/// Open the directory of `rel` (plain names below the upload directory, see
/// [`beneath`]). `Ok(None)`: a directory on the way does not exist.
fn locate(roots: &Roots, rel: &Path) -> Result<Option<Located>, FinalizeError> {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(FinalizeError::SourceOutside);
    };
    match open_dir_beneath(roots.upload_fd.as_fd(), parent) {
        Ok(dir) => Ok(Some(Located {
            rel: rel.to_path_buf(),
            dir,
            name: name.to_owned(),
        })),
        Err(Errno::NOENT) => Ok(None),
        // A symlink on the way: wherever it points, not provably inside.
        Err(Errno::LOOP | Errno::XDEV) => Err(FinalizeError::SourceOutside),
        Err(e) => Err(FinalizeError::errno(Op::Resolve)(e)),
    }
}

/// The upload's data file, or where it would be.
enum SourceState {
    Open(Located, Opened),
    /// Gone (a duplicate delivery?); `None`: its directory is gone too.
    Missing(Option<Located>),
}

fn open_source(roots: &Roots, source: &Path) -> Result<SourceState, FinalizeError> {
    let rel = beneath(&roots.upload_dir, source)?;
    let Some(loc) = locate(roots, &rel)? else {
        return Ok(SourceState::Missing(None));
    };
    match open_at(loc.dir.as_fd(), &loc.name) {
        Ok(Some(opened)) => Ok(SourceState::Open(loc, opened)),
        Ok(None) => Ok(SourceState::Missing(Some(loc))),
        Err(Errno::LOOP) => Err(FinalizeError::Symlink { side: Side::Source }),
        // A socket or a device node.
        Err(Errno::NXIO | Errno::NODEV) => Err(FinalizeError::SourceNotFile),
        Err(e) => Err(FinalizeError::errno(Op::Stat)(e)),
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

/// Walk the destination's directories from `root`, one `openat(O_NOFOLLOW |
/// O_DIRECTORY)` at a time, refusing symlinks and non-directories; create missing
/// ones (`mkdirat`) when `create`. Returns the last one, held open: the publish
/// happens in *that* directory, whatever is done to the path meanwhile.
/// `Ok(None)`: a component is missing and `create` is off.
fn destination_dir(
    root: BorrowedFd<'_>,
    dirs: &[&str],
    create: bool,
) -> Result<Option<OwnedFd>, FinalizeError> {
    let mut cur =
        rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty()).map_err(FinalizeError::errno(Op::Stat))?;
    for seg in dirs {
        let seg = OsStr::new(seg);
        let next = match open_subdir(cur.as_fd(), seg) {
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(cur.as_fd(), seg, Mode::from_raw_mode(0o777)) {
                    // Lost a race with a concurrent finalize: look at what is there now.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(FinalizeError::errno(Op::CreateDir)(e)),
                }
                open_subdir(cur.as_fd(), seg)
            }
            r => r,
        };
        cur = match next {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(FinalizeError::Symlink {
                    side: Side::Destination,
                })
            }
            Err(Errno::NOTDIR) => return Err(FinalizeError::DestinationNotDir),
            Err(e) => return Err(FinalizeError::errno(Op::Stat)(e)),
        };
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
    // The configured path itself is followed (the administrator's choice), as in
    // `Roots::new`.
    let root = match rustix::fs::open(
        storage_root,
        DIR_FLAGS.difference(OFlags::NOFOLLOW),
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Destination::Free,
        Err(_) => return Destination::Exists,
    };
    match destination_dir(root.as_fd(), dirs, false) {
        Ok(None) => Destination::Free,
        Ok(Some(dir)) => match lstat_at(dir.as_fd(), OsStr::new(file_name)) {
            Ok(Some(n)) if n.kind == FileType::RegularFile => Destination::Exists,
            Ok(Some(_)) => Destination::Blocked,
            Ok(None) => Destination::Free,
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

/// A part of a final upload, as its own info and data file describe it.
struct PartRecord {
    info: InfoFile,
    data: Located,
    data_meta: Metadata,
    part: Part,
}

/// Upload `id` as its own `.info` (at the top of the upload directory) and its data
/// file describe it. `None`: an unsafe ID, no info, an unusable info, or a data
/// file outside the upload directory, behind a symlink, or not a regular file.
fn part_record(roots: &Roots, id: &str) -> Option<PartRecord> {
    if !crate::tusd::session::safe_upload_id(id) {
        return None;
    }
    let name = OsString::from(format!("{id}.info"));
    let info_loc = Located {
        rel: PathBuf::from(&name),
        dir: roots.upload_fd.try_clone().ok()?,
        name,
    };
    let info = read_info_file(roots, info_loc).ok()??;
    if info.info.id != id {
        return None;
    }
    let rel = beneath(&roots.upload_dir, &info.info.data_path).ok()?;
    let data = locate(roots, &rel).ok()??;
    let opened = open_at(data.dir.as_fd(), &data.name).ok()??;
    if !opened.meta.is_file() {
        return None;
    }
    let size = info.info.size;
    let finished = size == Some(opened.meta.len()) && info.info.offset.is_none_or(|o| Some(o) == size);
    let part = Part {
        is_partial: info.info.is_partial,
        finished,
        metadata: info.info.metadata.clone(),
    };
    Some(PartRecord {
        info,
        data,
        data_meta: opened.meta,
        part,
    })
}

/// What the upload server's own record says of upload `id`, for pre-create's
/// check of a final upload's parts (the move checks them again).
pub fn part(roots: &Roots, id: &str) -> Option<Part> {
    part_record(roots, id).map(|r| r.part)
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
        let Some(PartRecord { part, .. }) = part_record(roots, id) else {
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
        if let Some(r) = part_record(roots, id) {
            if r.info.info.is_partial
                && remove_source_and_info(Some((&r.data, &r.data_meta)), Some(&r.info)) == Cleanup::Done
            {
                removed += 1;
            }
        }
    }
    removed
}

/// The leading bytes must be what the declared type says (`[upload] check_content`).
fn check_content(source: &File, declared: &str) -> Result<(), FinalizeError> {
    let mut head = vec![0u8; prefinish::SNIFF_BYTES];
    let n = read_full_at(source, &mut head, 0).map_err(FinalizeError::io(Op::Sniff))?;
    prefinish::check(declared, &head[..n]).map_err(|_| FinalizeError::ContentMismatch {
        expected: prefinish::expected_signature(declared).unwrap_or("of its declared type"),
    })
}

/// An upload's info file: where it is, what `fstat` said of it, what it says.
#[derive(Debug)]
struct InfoFile {
    loc: Located,
    meta: Metadata,
    info: UploadInfo,
}

/// Open and parse the info file at `loc`. `Ok(None)`: there is none.
fn read_info_file(roots: &Roots, loc: Located) -> Result<Option<InfoFile>, InfoError> {
    let Some(opened) = open_info(loc.dir.as_fd(), &loc.name)? else {
        return Ok(None);
    };
    let info = read_info(&opened, &roots.upload_dir.join(&loc.rel))?;
    Ok(Some(InfoFile {
        loc,
        meta: opened.meta,
        info,
    }))
}

/// The info file for the data file at `source`: the one given by the event if any,
/// else `<source>.info`, else `<upload_dir>/<name>.info`. `Ok(None)`: none exists.
fn locate_info(
    roots: &Roots,
    source: &Located,
    given: Option<&Path>,
) -> Result<Option<InfoFile>, FinalizeError> {
    let mut info_name = source.name.clone();
    info_name.push(".info");
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(FinalizeError::io(Op::Stat));
    let candidates = match given {
        Some(g) => {
            let loc = match beneath(&roots.upload_dir, g).and_then(|rel| locate(roots, &rel)) {
                Ok(Some(loc)) => loc,
                Ok(None) => return Ok(None),
                Err(_) => return Err(FinalizeError::InfoInvalid),
            };
            if loc.name != info_name {
                return Err(FinalizeError::InfoInvalid);
            }
            vec![loc]
        }
        None => vec![
            Located {
                rel: source.rel.with_file_name(&info_name),
                dir: dup(&source.dir)?,
                name: info_name.clone(),
            },
            Located {
                rel: PathBuf::from(&info_name),
                dir: dup(&roots.upload_fd)?,
                name: info_name,
            },
        ],
    };
    for loc in candidates {
        match read_info_file(roots, loc) {
            Ok(Some(info)) => return Ok(Some(info)),
            Ok(None) => continue,
            Err(InfoError::Symlink) => return Err(FinalizeError::Symlink { side: Side::Info }),
            Err(_) => return Err(FinalizeError::InfoInvalid),
        }
    }
    Ok(None)
}

/// Whether `info` describes the data file at `source`: both name the same place
/// below the upload directory (neither through a symlink: the walk refuses them).
fn describes(roots: &Roots, info: &UploadInfo, source: &Located) -> bool {
    matches!(beneath(&roots.upload_dir, &info.data_path), Ok(rel) if rel == source.rel)
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

/// Runs the commit, if any, hashing `published` (a descriptor of the published
/// inode) when no digest came with the publish. `false`: the commit failed,
/// leave the upload in place.
fn commit_published(
    commit: &mut Option<Commit<'_>>,
    method: Method,
    bytes: u64,
    sha256: Option<[u8; 32]>,
    published: &File,
) -> Result<(bool, Option<[u8; 32]>), FinalizeError> {
    let Some(f) = commit.as_mut() else {
        return Ok((true, sha256));
    };
    let sha256 = match sha256 {
        Some(d) => d,
        None => hash_file(published)?,
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

/// SHA-256 of a whole file, by positional reads (the descriptor's offset is
/// left alone).
fn hash_file(file: &File) -> Result<[u8; 32], FinalizeError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = read_full_at(file, &mut buf, at).map_err(FinalizeError::io(Op::Hash))?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
}

/// An upload that passed the source checks, held by descriptors.
struct Checked {
    loc: Located,
    src: Opened,
    info: InfoFile,
    size: u64,
}

impl Checked {
    fn cleanup(&self) -> Cleanup {
        remove_source_and_info(Some((&self.loc, &self.src.meta)), Some(&self.info))
    }

    /// The destination already is this upload (same inode, or same bytes):
    /// the commit and the cleanup are left.
    fn recovered(
        &self,
        destination: PathBuf,
        commit: &mut Option<Commit<'_>>,
    ) -> Result<Finalized, FinalizeError> {
        let (committed, sha256) =
            commit_published(commit, Method::AlreadyFinalized, self.size, None, &self.src.file)?;
        Ok(Finalized {
            destination,
            method: Method::AlreadyFinalized,
            bytes: self.size,
            cleanup: if committed { self.cleanup() } else { Cleanup::Held },
            sha256,
        })
    }
}

/// The destination directory, held open, and the name in it.
struct Target<'a> {
    dir: OwnedFd,
    dev: u64,
    name: &'a OsStr,
    /// For the result and the logs only; never opened.
    path: PathBuf,
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

    // The source: opened inside the upload directory without following a symlink,
    // maybe gone already. Every check below is on what was opened.
    let (loc, src) = match open_source(roots, &req.source)? {
        SourceState::Open(loc, src) => (loc, src),
        SourceState::Missing(loc) => return already_finalized(req, loc.as_ref(), dirs, file_name, commit),
    };
    if !src.meta.is_file() {
        return Err(FinalizeError::SourceNotFile);
    }

    // Finished, according to the upload server's own record of it.
    let info = locate_info(roots, &loc, req.info_path.as_deref())?.ok_or(FinalizeError::InfoInvalid)?;
    if !describes(roots, &info.info, &loc) {
        return Err(FinalizeError::InfoInvalid);
    }
    let size = info
        .info
        .finished(src.meta.len())
        .map_err(|_| FinalizeError::NotFinished)?;
    for (k, v) in &req.expected_metadata {
        if info.info.metadata.get(k) != Some(v) {
            return Err(FinalizeError::MetadataMismatch);
        }
    }
    if info.info.is_final {
        check_parts(roots, &info.info.parts, &req.expected_metadata)?;
    }
    if let Some(declared) = &req.content_check {
        check_content(&src.file, declared)?;
    }
    let up = Checked { loc, src, info, size };

    // The destination.
    let dir =
        destination_dir(roots.storage_fd.as_fd(), dirs, true)?.ok_or(FinalizeError::DestinationNotDir)?;
    let dst = Target {
        dev: node_of(dir.as_fd()).map_err(FinalizeError::errno(Op::Stat))?.dev,
        dir,
        name: OsStr::new(file_name),
        path: dirs
            .iter()
            .fold(roots.storage_root.clone(), |p, d| p.join(d))
            .join(file_name),
    };
    let existing = lstat_at(dst.dir.as_fd(), dst.name).map_err(FinalizeError::errno(Op::Stat))?;
    if let Some(n) = &existing {
        if n.kind == FileType::Symlink {
            return Err(FinalizeError::Symlink {
                side: Side::Destination,
            });
        }
        if n.kind != FileType::RegularFile {
            return Err(FinalizeError::Exists);
        }
        // Checked before anything else: a crash after a hard-link publish leaves
        // source and destination as one inode.
        if n.is(&up.src.meta) {
            return up.recovered(dst.path, commit);
        }
    }
    // A second link is none of tusd's doing: refuse rather than publish an inode
    // that is also reachable elsewhere.
    if up.src.meta.nlink() != 1 {
        return Err(FinalizeError::SourceNotFile);
    }
    if existing.is_some() && !req.overwrite {
        return conflict(&up, &dst, commit);
    }
    faults::check(faults::Step::AfterChecks).map_err(FinalizeError::io(Op::Stat))?;

    let mut method = Method::Renamed;
    let mut sha256 = None;
    if up.src.meta.dev() != dst.dev || faults::force_copy() {
        method = Method::Copied;
    } else {
        match link_publish(roots, &up.src, &dst, req.overwrite) {
            Ok(true) => {}
            Ok(false) => method = Method::Copied,
            Err(FinalizeError::Exists) => return conflict(&up, &dst, commit),
            Err(e) => return Err(e),
        }
    }
    if method == Method::Copied {
        let tmp_dir = temp_dir_for(roots, &dst)?;
        let want = commit.is_some();
        match copy_publish(&up.src, tmp_dir.as_fd(), &dst, req.overwrite, cancel, want) {
            Ok(digest) => sha256 = digest,
            Err(FinalizeError::Exists) => return conflict(&up, &dst, commit),
            Err(e) => return Err(e),
        }
    }
    rustix::fs::fsync(&dst.dir).map_err(FinalizeError::errno(Op::Sync))?;
    // The link path published `up.src`'s very inode: hashed from that
    // descriptor (one read); the copy streamed its digest already.
    let (committed, sha256) = commit_published(commit, method, size, sha256, &up.src.file)?;
    if !committed {
        return Ok(Finalized {
            destination: dst.path,
            method,
            bytes: size,
            cleanup: Cleanup::Held,
            sha256,
        });
    }
    let cleanup = up.cleanup();
    if up.info.info.is_final && cleanup == Cleanup::Done {
        remove_parts(roots, &up.info.info.parts);
    }
    Ok(Finalized {
        destination: dst.path,
        method,
        bytes: size,
        cleanup,
        sha256,
    })
}

/// The source is gone: a duplicate delivery if the destination is there.
fn already_finalized(
    req: &Move,
    source: Option<&Located>,
    dirs: &[&str],
    file_name: &str,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let roots = &req.roots;
    let Some(dir) = destination_dir(roots.storage_fd.as_fd(), dirs, false)? else {
        return Err(FinalizeError::SourceMissing);
    };
    let node = match lstat_at(dir.as_fd(), OsStr::new(file_name)) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(FinalizeError::SourceMissing),
        Err(e) => return Err(FinalizeError::errno(Op::Stat)(e)),
    };
    if node.kind == FileType::Symlink {
        return Err(FinalizeError::Symlink {
            side: Side::Destination,
        });
    }
    if node.kind != FileType::RegularFile {
        return Err(FinalizeError::SourceMissing);
    }
    let destination = dirs
        .iter()
        .fold(roots.storage_root.clone(), |p, d| p.join(d))
        .join(file_name);
    let mut sha256 = None;
    if commit.is_some() {
        // The published file, opened without following a symlink.
        let Ok(Some(published)) = open_at(dir.as_fd(), OsStr::new(file_name)) else {
            return Err(FinalizeError::SourceMissing);
        };
        let (committed, digest) = commit_published(
            commit,
            Method::AlreadyFinalized,
            published.meta.len(),
            None,
            &published.file,
        )?;
        sha256 = digest;
        if !committed {
            return Ok(Finalized {
                destination,
                method: Method::AlreadyFinalized,
                bytes: published.meta.len(),
                cleanup: Cleanup::Held,
                sha256,
            });
        }
    }
    // A crash between removing the data file and removing its info leaves a stale
    // info behind: remove it, but only one that really describes this data file.
    let mut cleanup = Cleanup::Done;
    if let Some(source) = source {
        if let Ok(Some(info)) = locate_info(roots, source, req.info_path.as_deref()) {
            if describes(roots, &info.info, source) {
                cleanup = remove_source_and_info(None, Some(&info));
            }
        }
    }
    Ok(Finalized {
        destination,
        method: Method::AlreadyFinalized,
        bytes: node.size,
        cleanup,
        sha256,
    })
}

/// The destination exists and is not to be replaced. If it holds exactly the
/// source's bytes (a crash after a copy publish, or a racing duplicate), the work is
/// done; otherwise a conflict.
fn conflict(
    up: &Checked,
    dst: &Target<'_>,
    commit: &mut Option<Commit<'_>>,
) -> Result<Finalized, FinalizeError> {
    let Ok(Some(d)) = open_at(dst.dir.as_fd(), dst.name) else {
        return Err(FinalizeError::Exists);
    };
    if d.meta.is_file() && (same_inode(&up.src.meta, &d.meta) || same_bytes(&up.src.file, &d.file)?) {
        return up.recovered(dst.path.clone(), commit);
    }
    Err(FinalizeError::Exists)
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn same_bytes(a: &File, b: &File) -> Result<bool, FinalizeError> {
    let la = a.metadata().map_err(FinalizeError::io(Op::Compare))?.len();
    let lb = b.metadata().map_err(FinalizeError::io(Op::Compare))?.len();
    if la != lb {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut at = 0u64;
    loop {
        let n = read_full_at(a, &mut ba, at).map_err(FinalizeError::io(Op::Compare))?;
        let m = read_full_at(b, &mut bb, at).map_err(FinalizeError::io(Op::Compare))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Fills `buf` from offset `at` (positional reads: the file offset is never used,
/// so the content check, the comparison and the copy cannot disturb each other).
fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

// ----------------------------------------------------------------------------------
// Publishing
// ----------------------------------------------------------------------------------

/// Links the inode `file` refers to at `dir/name`; `EEXIST` when the name is taken.
/// By descriptor, never by the name the file was opened under: that name may hold
/// another file (or a symlink) by now.
///
/// 1. `linkat(fd, "", AT_EMPTY_PATH)`: Linux 6.10+ for a file the caller opened
///    itself, or with `CAP_DAC_READ_SEARCH`; otherwise `ENOENT`.
/// 2. `linkat("/proc/self/fd/N", AT_SYMLINK_FOLLOW)`: the way `open(2)` documents
///    for `O_TMPFILE` files; our own descriptor's magic link, never one from an
///    event or a file. Needs `/proc`.
/// 3. Neither: `Unsupported`, and the caller copies from the descriptor instead.
fn link_inode(file: &File, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    if !faults::unsupported(faults::Feature::EmptyPath) {
        match rustix::fs::linkat(file, c"", dir, name, AtFlags::EMPTY_PATH) {
            Err(Errno::NOENT) => {}
            r => return r.map_err(io::Error::from),
        }
    }
    if !faults::unsupported(faults::Feature::ProcFd) {
        let magic = format!("/proc/self/fd/{}", file.as_raw_fd());
        match rustix::fs::linkat(
            rustix::fs::CWD,
            magic.as_str(),
            dir,
            name,
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Err(Errno::NOENT) => {}
            r => return r.map_err(io::Error::from),
        }
    }
    // `ENOENT` from both: the file or the directory was removed meanwhile, or
    // neither way is open to this process.
    if removed(file.as_fd()) || removed(dir) {
        return Err(io::ErrorKind::NotFound.into());
    }
    Err(io::ErrorKind::Unsupported.into())
}

/// Same filesystem: publish the very inode that was checked. `Ok(false)`: this
/// filesystem (or kernel) cannot link it, copy instead. `Err(Exists)`: the
/// destination is there and overwrite is off.
fn link_publish(
    roots: &Roots,
    src: &Opened,
    dst: &Target<'_>,
    overwrite: bool,
) -> Result<bool, FinalizeError> {
    // The data reaches the disk before its name does.
    src.file.sync_all().map_err(FinalizeError::io(Op::Sync))?;
    faults::check(faults::Step::Publish).map_err(FinalizeError::io(if overwrite {
        Op::Rename
    } else {
        Op::Link
    }))?;
    faults::race(&dst.path);
    match link_inode(&src.file, dst.dir.as_fd(), dst.name) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && overwrite => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FinalizeError::Exists),
        Err(e) if falls_back_to_copy(&e) => return Ok(false),
        Err(e) => return Err(FinalizeError::io(Op::Link)(e)),
    }
    // Replacing: the inode under a temporary name first, renamed over the
    // destination (readers see the old file or the new one, never neither).
    let tmp_dir = temp_dir_for(roots, dst)?;
    // While the temporary name exists, `sweep_temp` must see its writer alive: the
    // lock is on the inode, which the temporary name shares.
    src.file.try_lock().map_err(|e| FinalizeError::Io {
        op: Op::Rename,
        kind: match e {
            fs::TryLockError::WouldBlock => io::ErrorKind::WouldBlock,
            fs::TryLockError::Error(e) => e.kind(),
        },
    })?;
    let staged = TempName::fresh(tmp_dir.as_fd(), Op::Link, |name| {
        link_inode(&src.file, tmp_dir.as_fd(), name)
    });
    let renamed = staged.and_then(|(mut staged, ())| {
        rustix::fs::renameat(tmp_dir.as_fd(), &staged.name, dst.dir.as_fd(), dst.name)
            .map_err(FinalizeError::errno(Op::Rename))?;
        // `rename` between two links of one inode (a racing duplicate published
        // this very upload) does nothing and leaves the temporary name.
        let _ = remove_checked(tmp_dir.as_fd(), OsStr::new(&staged.name), &src.meta);
        staged.disarm();
        Ok(true)
    });
    let _ = src.file.unlock();
    renamed
}

/// `EXDEV` (a bind mount of the same filesystem has the same `st_dev`), or a
/// filesystem without hard links (`EPERM`/`EOPNOTSUPP`; also Linux's
/// `protected_hardlinks` when assetgate does not own tusd's file), or no way to
/// link by descriptor ([`link_inode`]).
fn falls_back_to_copy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::XDEV.raw_os_error())
        || matches!(
            e.kind(),
            io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
        )
}

/// Where a temporary name goes: `<storage root>/.assetgate-tmp/`, where
/// [`sweep_temp`] finds what a crash left; the destination directory itself when it
/// is on another filesystem than that (a mount inside the asset tree), since a
/// link or a rename cannot cross filesystems. Opened from the root's descriptor,
/// never through a symlink.
fn temp_dir_for(roots: &Roots, dst: &Target<'_>) -> Result<OwnedFd, FinalizeError> {
    let root = roots.storage_fd.as_fd();
    match rustix::fs::mkdirat(root, TEMP_DIR, Mode::from_raw_mode(0o777)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(FinalizeError::errno(Op::CreateTemp)(e)),
    }
    let dir = match open_subdir(root, OsStr::new(TEMP_DIR)) {
        Ok(dir) => dir,
        Err(Errno::LOOP) => {
            return Err(FinalizeError::Symlink {
                side: Side::Destination,
            })
        }
        Err(Errno::NOTDIR) => return Err(FinalizeError::DestinationNotDir),
        Err(e) => return Err(FinalizeError::errno(Op::Stat)(e)),
    };
    if node_of(dir.as_fd()).map_err(FinalizeError::errno(Op::Stat))?.dev == dst.dev {
        Ok(dir)
    } else {
        dst.dir.try_clone().map_err(FinalizeError::io(Op::CreateTemp))
    }
}

/// Copy the checked file (from its descriptor) to a temporary file in `tmp_dir`,
/// sync it, publish it at the destination. `Err(Exists)` when the destination
/// appeared meanwhile, `Err(Cancelled)` when `cancel` was raised. The temporary
/// file never outlives this function.
fn copy_publish(
    src: &Opened,
    tmp_dir: BorrowedFd<'_>,
    dst: &Target<'_>,
    overwrite: bool,
    cancel: &Cancel,
    digest: bool,
) -> Result<Option<[u8; 32]>, FinalizeError> {
    let mut tmp = TempFile::create(tmp_dir)?;
    let mut hasher = digest.then(<sha2::Sha256 as sha2::Digest>::new);
    let copied = copy_chunks(&src.file, &mut tmp.file, cancel, hasher.as_mut())?;
    let digest = hasher.map(|h| sha2::Digest::finalize(h).into());
    if copied != src.meta.len() {
        // The file changed under us: tusd is not done with it after all.
        return Err(FinalizeError::NotFinished);
    }
    faults::check(faults::Step::AfterCopy).map_err(FinalizeError::io(Op::Copy))?;
    tmp.file
        .set_permissions(src.meta.permissions())
        .map_err(FinalizeError::io(Op::Copy))?;
    tmp.file.sync_all().map_err(FinalizeError::io(Op::Sync))?;
    if cancel.is_cancelled() {
        return Err(FinalizeError::Cancelled);
    }
    faults::check(faults::Step::Publish).map_err(FinalizeError::io(if overwrite {
        Op::Rename
    } else {
        Op::Link
    }))?;
    faults::race(&dst.path);
    let (from, to) = (tmp.name.name.as_str(), dst.name);
    if overwrite {
        rustix::fs::renameat(tmp_dir, from, dst.dir.as_fd(), to).map_err(FinalizeError::errno(Op::Rename))?;
        tmp.name.disarm();
        return Ok(digest);
    }
    if !faults::unsupported(faults::Feature::Renameat2) {
        match rustix::fs::renameat_with(tmp_dir, from, dst.dir.as_fd(), to, RenameFlags::NOREPLACE) {
            Ok(()) => {
                tmp.name.disarm();
                return Ok(digest);
            }
            Err(Errno::EXIST) => return Err(FinalizeError::Exists),
            // A filesystem (or kernel) without `RENAME_NOREPLACE`: a link fails the
            // same way on an existing name; the temporary name goes when `tmp` drops.
            Err(Errno::INVAL | Errno::NOSYS) => {}
            Err(e) => return Err(FinalizeError::errno(Op::Rename)(e)),
        }
    }
    match rustix::fs::linkat(tmp_dir, from, dst.dir.as_fd(), to, AtFlags::empty()) {
        Ok(()) => Ok(digest),
        Err(Errno::EXIST) => Err(FinalizeError::Exists),
        Err(e) => Err(FinalizeError::errno(Op::Link)(e)),
    }
}

/// Size of one copy step; `cancel` is looked at between steps.
const COPY_CHUNK: usize = 1024 * 1024;

/// Streams `input` into `out`, feeding `hasher` the same bytes (the digest of
/// the published file, with no second read).
fn copy_chunks(
    input: &File,
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
        let n = match input.read_at(&mut buf, total) {
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
/// least `min_age` old. Returns how many were removed. The directory is opened from
/// the storage root's descriptor (a symlink there is an error, `ENOTDIR`), each
/// file without following a symlink, and a name is removed only while it still
/// holds the file that was found unlocked.
pub fn sweep_temp(roots: &Roots, min_age: Duration) -> io::Result<usize> {
    let dir = match rustix::fs::openat(roots.storage_fd.as_fd(), TEMP_DIR, DIR_FLAGS, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if !(name.starts_with(".assetgate-") && name.ends_with(".tmp")) {
            continue;
        }
        let name = OsStr::new(name);
        let Ok(Some(found)) = open_at(dir.as_fd(), name) else {
            continue;
        };
        if !found.meta.is_file() {
            continue;
        }
        let age = found
            .meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        if found.file.try_lock().is_ok()
            && remove_checked(dir.as_fd(), name, &found.meta)? == Removal::Removed
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A name of ours in a temporary directory, removed on drop unless disarmed.
struct TempName<'d> {
    dir: BorrowedFd<'d>,
    name: String,
    armed: bool,
}

impl<'d> TempName<'d> {
    /// Calls `make` with fresh random names until it does not say `EEXIST`.
    fn fresh<T>(
        dir: BorrowedFd<'d>,
        op: Op,
        mut make: impl FnMut(&OsStr) -> io::Result<T>,
    ) -> Result<(TempName<'d>, T), FinalizeError> {
        let mut last = io::ErrorKind::AlreadyExists;
        for _ in 0..8 {
            let mut rnd = [0u8; 8];
            getrandom::getrandom(&mut rnd).map_err(|_| FinalizeError::Io {
                op,
                kind: io::ErrorKind::Other,
            })?;
            // Independent of the asset name: that may already be 255 bytes long.
            let name = format!(".assetgate-{}.tmp", hex::encode(rnd));
            match make(OsStr::new(&name)) {
                Ok(made) => {
                    let tmp = TempName {
                        dir,
                        name,
                        armed: true,
                    };
                    return Ok((tmp, made));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e.kind(),
                Err(e) => return Err(FinalizeError::io(op)(e)),
            }
        }
        Err(FinalizeError::Io { op, kind: last })
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

/// A temporary file, locked for its whole life, removed on drop unless disarmed.
struct TempFile<'d> {
    name: TempName<'d>,
    file: File,
}

impl<'d> TempFile<'d> {
    fn create(dir: BorrowedFd<'d>) -> Result<TempFile<'d>, FinalizeError> {
        faults::check(faults::Step::CreateTemp).map_err(FinalizeError::io(Op::CreateTemp))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Private until the copy is complete; then it gets the source's mode.
        let (name, file) = TempName::fresh(dir, Op::CreateTemp, |name| {
            rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))
                .map(File::from)
                .map_err(io::Error::from)
        })?;
        // Held until the file is closed (or its writer dies): what tells
        // `sweep_temp` that this copy is alive.
        file.lock().map_err(FinalizeError::io(Op::CreateTemp))?;
        Ok(TempFile { name, file })
    }
}

/// What [`remove_checked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Removed,
    /// Nothing under the name.
    Absent,
    /// The name holds another file now: left alone.
    Replaced,
}

/// Removes `dir/name` if it still is the file described by `meta`.
fn remove_checked(dir: BorrowedFd<'_>, name: &OsStr, meta: &Metadata) -> io::Result<Removal> {
    match lstat_at(dir, name) {
        Ok(Some(n)) if n.is(meta) => {}
        Ok(Some(_)) => return Ok(Removal::Replaced),
        Ok(None) => return Ok(Removal::Absent),
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(Removal::Removed),
        Err(Errno::NOENT) => Ok(Removal::Absent),
        Err(e) => Err(e.into()),
    }
}

/// Source first, info last (see the module docs); a missing file is fine. Each is
/// removed from the directory it was checked in, and only while its name still
/// holds the file that was checked: a name that holds another file by now is left
/// alone and reported with the kind `Other`.
fn remove_source_and_info(source: Option<(&Located, &Metadata)>, info: Option<&InfoFile>) -> Cleanup {
    let remove = |loc: &Located, meta: &Metadata| match remove_checked(loc.dir.as_fd(), &loc.name, meta) {
        Ok(Removal::Removed | Removal::Absent) => Ok(()),
        Ok(Removal::Replaced) => Err(io::ErrorKind::Other),
        Err(e) => Err(e.kind()),
    };
    if let Some((loc, meta)) = source {
        if let Err(k) = remove(loc, meta) {
            return Cleanup::SourceLeft(k);
        }
        // Best effort: if the removal is lost in a crash, a later run sees the same
        // inode (or bytes) at the destination and removes the source again.
        let _ = rustix::fs::fsync(&loc.dir);
    }
    if let Some(info) = info {
        if let Err(k) = remove(&info.loc, &info.meta) {
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
    let Some(r) = part_record(roots, &upload.id) else {
        return Ok(false);
    };
    if roots.upload_dir.join(&r.info.loc.rel) != upload.info_path
        || r.info.info.metadata != upload.metadata
        || (r.part.finished && !r.part.is_partial)
    {
        return Ok(false);
    }
    // Each from the directory it was checked in, only while it is still the file
    // that was checked; tusd's `.lock` has no checked inode, it is only a name.
    remove_checked(r.data.dir.as_fd(), &r.data.name, &r.data_meta)?;
    remove_checked(r.info.loc.dir.as_fd(), &r.info.loc.name, &r.info.meta)?;
    let lock = format!("{}.lock", upload.id);
    match rustix::fs::unlinkat(roots.upload_fd.as_fd(), lock.as_str(), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
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
    // Listed and read through one descriptor (the configured path itself is
    // followed, as in `Roots::new`); each info file is opened without following a
    // symlink. The data files are only looked at, by path: what is found here is a
    // report, and `finalize` checks everything again.
    let dir = rustix::fs::open(upload_dir, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())?;
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let path = upload_dir.join(OsStr::from_bytes(entry.file_name().to_bytes()));
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
        let name = info_path.file_name().unwrap_or_default();
        let read = open_info(dir.as_fd(), name)
            .and_then(|o| o.ok_or(InfoError::Io(io::ErrorKind::NotFound)))
            .and_then(|o| read_info(&o, &info_path));
        let info = match read {
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
        AfterChecks,
        CreateTemp,
        AfterCopy,
        Publish,
    }

    #[derive(Clone, Copy)]
    pub enum Feature {
        Openat2,
        EmptyPath,
        ProcFd,
        Renameat2,
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
    pub fn unsupported(_: Feature) -> bool {
        false
    }

    #[inline(always)]
    pub fn race(_: &std::path::Path) {}

    pub fn copy_step() {}
}

/// Per-thread switches, so parallel tests do not see each other's.
#[cfg(test)]
mod faults {
    use std::cell::{Cell, RefCell};
    use std::io;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Step {
        /// Every check passed (source, info, destination walk), nothing published yet.
        AfterChecks,
        CreateTemp,
        AfterCopy,
        Publish,
    }

    /// A kernel or filesystem feature the mover has a fallback for.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Feature {
        /// `openat2` (Linux 5.6): else directories are walked name by name.
        Openat2,
        /// `linkat(AT_EMPTY_PATH)` without `CAP_DAC_READ_SEARCH` (Linux 6.10).
        EmptyPath,
        /// `/proc/self/fd` (else, with `EmptyPath` off too, the move copies).
        ProcFd,
        /// `renameat2(RENAME_NOREPLACE)` (else link + unlink of the temporary file).
        Renameat2,
    }

    type Hook = Box<dyn FnOnce()>;

    thread_local! {
        static HOOKS: RefCell<Vec<(Step, Hook)>> = const { RefCell::new(Vec::new()) };
        static FAIL_AT: Cell<Option<Step>> = const { Cell::new(None) };
        static FORCE_COPY: Cell<bool> = const { Cell::new(false) };
        static RACE: Cell<bool> = const { Cell::new(false) };
        static UNSUPPORTED: RefCell<Vec<Feature>> = const { RefCell::new(Vec::new()) };
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

    /// Runs `f` (once) when the move reaches `step`: what another process with
    /// write access to a directory could do at that moment.
    pub fn on(step: Step, f: impl FnOnce() + 'static) {
        HOOKS.with(|h| h.borrow_mut().push((step, Box::new(f))));
    }

    pub fn check(step: Step) -> io::Result<()> {
        let due: Vec<Hook> = HOOKS.with(|h| {
            let mut h = h.borrow_mut();
            let (due, rest) = h.drain(..).partition(|(s, _)| *s == step);
            *h = rest;
            due.into_iter().map(|(_, f)| f).collect()
        });
        for f in due {
            f();
        }
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

    pub fn unsupported(feature: Feature) -> bool {
        UNSUPPORTED.with(|u| u.borrow().contains(&feature))
    }

    /// Pretend this thread's kernel and filesystems lack `features`.
    pub fn set_unsupported(features: &[Feature]) {
        UNSUPPORTED.with(|u| *u.borrow_mut() = features.to_vec());
    }
}

#[cfg(test)]
mod tests;

/// The commit of [`finalize_with`] (events): kept apart from `tests.rs`.
#[cfg(test)]
mod commit_tests;
