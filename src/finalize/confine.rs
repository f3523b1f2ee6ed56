//! Confinement: every path below a root is walked from the root's descriptor
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), never by name, and
//! every file is checked, read and removed through descriptors: the directory
//! walks (source side and destination side), `fstat`, positional reads, and
//! the removal of a name only while it still holds the file that was checked.
//! Knows no roots and no uploads (`upload` does).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{FinalizeError, Op, Side};
use super::faults;
use crate::tusd::Destination;

/// A directory held open for `*at` calls, listing and `fsync`: read-only, never
/// reached through a symlink as its last component, closed on exec.
pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A file opened to be checked and read: never through a symlink (`ELOOP`), never
/// blocking on a FIFO planted under the name (its type is checked on the descriptor
/// right after), never becoming a controlling terminal.
pub(super) const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` answered `ENOSYS` (Linux before 5.6) or `EPERM` (a seccomp
/// filter that predates it): from then on directories are walked name by name.
pub(super) static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl FinalizeError {
    pub(super) fn errno(op: Op) -> impl FnOnce(Errno) -> FinalizeError {
        move |e| FinalizeError::io(op)(e.into())
    }
}

/// Absolute, and only root + normal components (no `..`; `.` is dropped by
/// `components()` already).
pub(super) fn plain_absolute(p: &Path) -> bool {
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
pub(super) fn beneath(root: &Path, p: &Path) -> Result<PathBuf, FinalizeError> {
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
pub(super) fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
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
pub(super) fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
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
pub(super) struct Node {
    pub(super) kind: FileType,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
}

impl Node {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    pub(super) fn of(st: &rustix::fs::Stat) -> Node {
        Node {
            kind: FileType::from_raw_mode(st.st_mode as _),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
        }
    }

    pub(super) fn is(&self, m: &Metadata) -> bool {
        self.dev == m.dev() && self.ino == m.ino()
    }
}

/// `dir/name` without following a symlink; `None`: nothing there.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Node>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Node::of(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstat` of a descriptor.
pub(super) fn node_of(fd: BorrowedFd<'_>) -> Result<Node, Errno> {
    rustix::fs::fstat(fd).map(|st| Node::of(&st))
}

// The link count, which `Node` leaves out (a removed directory has none).
#[allow(clippy::unnecessary_cast)]
pub(super) fn removed(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).map_or(true, |st| st.st_nlink as u64 == 0)
}

/// A file opened by name, and what `fstat` says of *that* file: every check and
/// every read is on the descriptor, never on the name again.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) meta: Metadata,
}

/// `dir/name` opened without following a symlink (`ELOOP`); `None`: nothing there.
pub(super) fn open_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Opened>, Errno> {
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

/// The destination's segments, refusing anything but plain names.
pub(super) fn destination_segments(dest: &str) -> Result<Vec<&str>, FinalizeError> {
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

/// The mode of a directory the mover creates in the asset tree: its parent's
/// read and search bits, never write for group or others (only assetgate
/// writes the tree), whatever the umask (which can only narrow it). nginx reads
/// the tree as the operator let it read the root: through the group in the
/// systemd install (`/srv/assets` 2750, and the kernel carries the setgid bit
/// down), through "others" in the containers (nginx's workers drop the pod's
/// supplementary groups), so a fixed mode would be too wide for one or too
/// narrow for the other.
pub(super) fn asset_dir_mode(parent: BorrowedFd<'_>) -> Mode {
    let parent = rustix::fs::fstat(parent).map_or(0, |st| st.st_mode);
    Mode::from_raw_mode(0o700 | (parent & 0o055))
}

/// Walk the destination's directories from `root`, one `openat(O_NOFOLLOW |
/// O_DIRECTORY)` at a time, refusing symlinks and non-directories; create missing
/// ones (`mkdirat`) when `create`. Returns the last one, held open: the publish
/// happens in *that* directory, whatever is done to the path meanwhile.
/// `Ok(None)`: a component is missing and `create` is off.
pub(super) fn destination_dir(
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
                match rustix::fs::mkdirat(cur.as_fd(), seg, asset_dir_mode(cur.as_fd())) {
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

/// The bytes of the published asset `relative` below the storage root's
/// descriptor `root` ([`super::Roots::read_published`]).
pub(super) fn read_published(root: BorrowedFd<'_>, relative: &Path, max: u64) -> io::Result<Vec<u8>> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain path below the storage root",
        )
    };
    let rel = relative.to_str().ok_or_else(invalid)?;
    let segs = destination_segments(rel).map_err(|_| invalid())?;
    let (name, dirs) = segs.split_last().ok_or_else(invalid)?;
    let dir = open_dir_beneath(root, &dirs.iter().collect::<PathBuf>()).map_err(io::Error::from)?;
    let opened = open_at(dir.as_fd(), OsStr::new(name))
        .map_err(io::Error::from)?
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    if !opened.meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    if opened.meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            "over the dev download cap",
        ));
    }
    let mut bytes = Vec::with_capacity(opened.meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(&opened.file, max), &mut bytes)?;
    Ok(bytes)
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

/// Fills `buf` from offset `at` (positional reads: the file offset is never used,
/// so the content check, the comparison and the copy cannot disturb each other).
pub(super) fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
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

/// What [`remove_checked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    Removed,
    /// Nothing under the name.
    Absent,
    /// The name holds another file now: left alone.
    Replaced,
}

/// Removes `dir/name` if it still is the file described by `meta`.
pub(super) fn remove_checked(dir: BorrowedFd<'_>, name: &OsStr, meta: &Metadata) -> io::Result<Removal> {
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
