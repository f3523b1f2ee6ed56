//! The move itself: checks on the opened source, then publish by `linkat`
//! (same filesystem) or a copy staged in `.assetgate-tmp` and renamed without
//! replacing; the sweep of temporary files crashed moves left.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::cancel::Cancel;
use super::confine::{
    destination_dir, destination_segments, lstat_at, node_of, open_at, open_subdir, read_full_at,
    remove_checked, removed, Opened, Removal, DIR_FLAGS,
};
use super::error::{FinalizeError, Op, Side};
use super::faults;
use super::outcome::{Cleanup, Commit, Finalized, Method, Published};
use super::refused::{is_refused, mark_refused, Refusal};
use super::request::Move;
use super::roots::Roots;
use super::upload::{
    check_content, check_parts, describes, locate_info, open_source, remove_parts, remove_source_and_info,
    InfoFile, Located, SourceState,
};
use crate::tusd::FinalizePlan;

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
pub(super) fn commit_published(
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
pub(super) fn hash_file(file: &File) -> Result<[u8; 32], FinalizeError> {
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
pub(super) struct Checked {
    pub(super) loc: Located,
    pub(super) src: Opened,
    pub(super) info: InfoFile,
    pub(super) size: u64,
}

impl Checked {
    pub(super) fn cleanup(&self) -> Cleanup {
        remove_source_and_info(Some((&self.loc, &self.src.meta)), Some(&self.info))
    }

    /// The destination already is this upload (same inode, or same bytes):
    /// the commit and the cleanup are left.
    pub(super) fn recovered(
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
pub(super) struct Target<'a> {
    pub(super) dir: OwnedFd,
    pub(super) dev: u64,
    pub(super) name: &'a OsStr,
    /// For the result and the logs only; never opened.
    pub(super) path: PathBuf,
}

pub(super) fn run(req: &Move, cancel: &Cancel) -> Result<Finalized, FinalizeError> {
    run_with(req, cancel, &mut None)
}

pub(super) fn run_with(
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
    // The data file is `<dir>/<ID>`: the ID the plan verified (`signed`), or
    // the one the event names (`server`), never another upload's file.
    if loc.name != OsStr::new(&req.upload_id) {
        return Err(FinalizeError::IdMismatch);
    }

    // Finished, according to the upload server's own record of it.
    let info = locate_info(roots, &loc, req.info_path.as_deref())?.ok_or(FinalizeError::InfoInvalid)?;
    // Refused for good before: looked at first, whatever the plan says now.
    if is_refused(info.loc.dir.as_fd(), &req.upload_id) {
        return Err(FinalizeError::Refused);
    }
    if info.info.id != req.upload_id {
        return Err(FinalizeError::IdMismatch);
    }
    if !describes(roots, &info.info, &loc) {
        return Err(FinalizeError::InfoInvalid);
    }
    let size = info
        .info
        .finished(src.meta.len())
        .map_err(|_| FinalizeError::NotFinished)?;
    let same = |(k, v): (&String, &String)| {
        info.info
            .metadata
            .get(k)
            .is_some_and(|got| crate::tusd::rules::same_field(k, got, v))
    };
    if !req.expected_metadata.iter().all(same) {
        return Err(FinalizeError::MetadataMismatch);
    }
    if info.info.is_final {
        // `signed`: exactly the parts whose IDs the plan verified.
        if req.parts.as_ref().is_some_and(|p| *p != info.info.parts) {
            return Err(FinalizeError::ConcatInvalid);
        }
        check_parts(roots, &info.info.parts, &req.expected_metadata)?;
    }
    if let Some(declared) = &req.content_check {
        match check_content(&src.file, declared) {
            Ok(()) => {}
            Err(refused @ FinalizeError::ContentMismatch { .. }) => {
                // The verdict is on the bytes: recorded before it is reported,
                // so no later configuration publishes them (see `refused`).
                let refusal = Refusal {
                    reason: refused.as_str(),
                    detail: refused.to_string(),
                    destination: req.destination.as_str(),
                    declared,
                };
                mark_refused(info.loc.dir.as_fd(), &req.upload_id, &refusal)
                    .map_err(FinalizeError::io(Op::MarkRefused))?;
                return Err(refused);
            }
            Err(e) => return Err(e),
        }
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
pub(super) fn already_finalized(
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
pub(super) fn conflict(
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

pub(super) fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

pub(super) fn same_bytes(a: &File, b: &File) -> Result<bool, FinalizeError> {
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
pub(super) fn link_inode(file: &File, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
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
pub(super) fn link_publish(
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
pub(super) fn falls_back_to_copy(e: &io::Error) -> bool {
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
pub(super) fn temp_dir_for(roots: &Roots, dst: &Target<'_>) -> Result<OwnedFd, FinalizeError> {
    let root = roots.storage_fd.as_fd();
    // assetgate's alone (nginx never serves it), whatever the umask.
    match rustix::fs::mkdirat(root, TEMP_DIR, Mode::from_raw_mode(0o700)) {
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

/// A copy's mode: whom the upload let read it (tusd's umask), written by
/// assetgate alone, never executable or set-id.
fn published_mode(src: &Metadata) -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(src.permissions().mode() & 0o644)
}

/// Copy the checked file (from its descriptor) to a temporary file in `tmp_dir`,
/// sync it, publish it at the destination. `Err(Exists)` when the destination
/// appeared meanwhile, `Err(Cancelled)` when `cancel` was raised. The temporary
/// file never outlives this function.
pub(super) fn copy_publish(
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
        .set_permissions(published_mode(&src.meta))
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
pub(super) const COPY_CHUNK: usize = 1024 * 1024;

/// Streams `input` into `out`, feeding `hasher` the same bytes (the digest of
/// the published file, with no second read).
pub(super) fn copy_chunks(
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
pub(super) struct TempName<'d> {
    pub(super) dir: BorrowedFd<'d>,
    pub(super) name: String,
    pub(super) armed: bool,
}

impl<'d> TempName<'d> {
    /// Calls `make` with fresh random names until it does not say `EEXIST`.
    pub(super) fn fresh<T>(
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

    pub(super) fn disarm(&mut self) {
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
pub(super) struct TempFile<'d> {
    pub(super) name: TempName<'d>,
    pub(super) file: File,
}

impl<'d> TempFile<'d> {
    pub(super) fn create(dir: BorrowedFd<'d>) -> Result<TempFile<'d>, FinalizeError> {
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
