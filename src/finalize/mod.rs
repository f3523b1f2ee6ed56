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
//! - [`finalize`] takes a [`FinalizePlan`](crate::tusd::FinalizePlan), which only `tusd::postfinish::plan`
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
//!
//! # Layout
//!
//! This file only declares and re-exports; every definition lives in a leaf
//! module, and each module imports what it uses from the sibling that defines
//! it: `roots` (the two directories), `request` (a plan as the mover runs it),
//! `cancel`, `outcome` (what a finalize returns), `error`, `confine`
//! (descriptor-relative walks, reads and removals), `info` (`.info` files),
//! `upload` (an upload's data file, info and parts, found below the upload
//! directory), `refused` (`<ID>.refused`), `publish` (the move), `pending`
//! (the scan, the abandon sweep), `faults` (fault injection for the tests).
//! Imports point down: the leaves `error`, `faults`, `outcome`, `cancel`; then
//! `confine`; `roots`, `info`, `refused`; `request`, `upload`; at the top
//! `publish` and `pending`.

#[cfg(not(target_os = "linux"))]
compile_error!("the mover (src/finalize/) needs Linux: openat2, renameat2 and linkat by descriptor");

mod cancel;
mod confine;
mod error;
mod faults;
mod info;
mod outcome;
mod pending;
mod publish;
mod refused;
mod request;
mod roots;
mod upload;

pub use cancel::Cancel;
pub use confine::destination_state;
pub use error::{FinalizeError, Op, Reason, Root, Side};
#[cfg(feature = "fuzzing")]
pub use info::parse_info_for_fuzzing;
pub use info::InfoFormat;
pub use outcome::{Cleanup, Commit, Finalized, Method, Published};
pub use pending::{remove_abandoned, scan_pending, PendingScan, PendingUpload, SkipReason, Skipped};
pub use publish::{finalize, finalize_with, sweep_temp, TEMP_DIR, TEMP_MIN_AGE};
pub use roots::Roots;
pub use upload::part;

#[cfg(test)]
mod tests;

/// The commit of [`finalize_with`] (events): kept apart from `tests.rs`.
#[cfg(test)]
mod commit_tests;
