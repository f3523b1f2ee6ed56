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
//! - The source must be named after the plan's upload ID (`<dir>/<ID>`), and be a
//!   finished upload *according to the upload server's own `.info` file on disk*:
//!   the info file is found next to the data file (tusd: `<dir>/<ID>.info`) or at
//!   the top of the upload directory (rustus with `--dir-structure`), it is paired
//!   with `<dir>/<ID>` like every reader's (`info`, *Pairing*: its ID is its name,
//!   its recorded data path is that file), must not be partial or of deferred
//!   length, and the data file must be exactly as long as the declared size.
//!   Without this an event could move someone's half-written upload, or any other
//!   file tusd keeps there ([`FinalizeError::IdMismatch`],
//!   [`FinalizeError::InfoInvalid`]).
//! - With `[tusd] upload_ids = "signed"` (the default) the plan's ID was issued by
//!   pre-create for the plan's grant (`crate::tusd::ids`, verified in
//!   `tusd::postfinish::plan`): the published file is the one tusd created for an
//!   accepted pre-create, never a file planted next to a copied token.
//! - An upload refused for good (its `<ID>.refused` marker, written when the
//!   content check refuses its bytes) is never published ([`FinalizeError::Refused`],
//!   looked at before any other record check; see `refused`).
//! - [`finalize`] takes a [`FinalizePlan`], which only `tusd::postfinish::plan`
//!   builds, after verifying the upload-token signature. The plan's five signed
//!   fields must be equal in the on-disk info. An attacker holding a valid token of
//!   their own therefore cannot aim it at another user's finished upload. Nothing
//!   else reaches the mover: post-finish, `finalize-pending` and any later caller
//!   plan through the same function.
//! - A final (concatenated) upload: every part its on-disk info names must be a
//!   finished partial upload whose own info carries the same signed fields (tusd
//!   lets `Upload-Concat: final` name any finished upload), and, in `signed` mode,
//!   the parts named must be exactly those whose IDs the plan verified as this
//!   grant's partial uploads. The parts are removed after the publish.
//! - With `[upload] check_content` the plan carries the declared type, and the first
//!   bytes of the data file must match it before anything is published
//!   ([`FinalizeError::ContentMismatch`]): tusd v2 publishes after a pre-finish 415
//!   anyway, final uploads get no pre-finish, rustus has none, and
//!   `finalize-pending` runs no hook at all. A mismatching upload stays where it is,
//!   in the upload directory, which nothing serves, with its refusal recorded
//!   (`<ID>.refused`, written and synced before the refusal is reported) so that
//!   no later configuration publishes it.
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
//!   anything. Whoever can write the upload directory (the upload server's user,
//!   assetgate's) can replace an upload's bytes before it is published, or, once
//!   an upload is gone, put a file back under its name with its `.info` (and so
//!   its signed ID): that publishes only what the grant allows (its key, and
//!   only over an existing asset with `overwrite = true`). The shipped install
//!   gives nobody else write access (README, systemd). The configured paths are resolved once, at start: whoever can
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
//!   source's mode less any write for group and others, exec or set-id bit
//!   (`.assetgate-tmp` is 0700; directories made in the tree get their parent's
//!   read bits, see `confine::asset_dir_mode`), publish it with
//!   `renameat2(RENAME_NOREPLACE)` (a link where the
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

mod confine;
mod error;
mod info;
mod pending;
mod publish;
mod refused;
pub mod worker;

use confine::*;
pub use confine::{destination_state, part};
pub use error::*;
#[cfg(feature = "fuzzing")]
pub use info::parse_info_for_fuzzing;
pub use info::InfoFormat;
use info::*;
pub use pending::*;
pub use publish::*;
use refused::*;
pub use worker::{sweep_temp_at_start, Finalizer};

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
    /// The roots when both `[storage] root` and `[tusd] upload_dir` are set
    /// (`None`: uploads are gated, never moved); a root that cannot be resolved
    /// is a configuration error.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Roots>, crate::config::ConfigError> {
        match (&config.storage.root, &config.tusd.upload_dir) {
            (Some(root), Some(uploads)) => Roots::new(uploads, root).map(Some).map_err(|e| {
                crate::config::ConfigError::new(
                    "storage.root / tusd.upload_dir",
                    format!("{e} ({} / {})", root.display(), uploads.display()),
                )
            }),
            _ => Ok(None),
        }
    }

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
    /// The upload's ID: the data file must be `<dir>/<ID>`, its info
    /// `<dir>/<ID>.info` (verified against the signed fields in `signed` mode).
    upload_id: String,
    /// `signed` mode: the part IDs a final upload's on-disk info must name,
    /// exactly (each verified as a part of this grant). `None`: `server` mode.
    parts: Option<Vec<String>>,
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
            upload_id: plan.upload_id().to_owned(),
            parts: plan.identity().parts(),
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
        MarkRefused,
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
        /// Before the `<ID>.refused` marker is created.
        MarkRefused,
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
