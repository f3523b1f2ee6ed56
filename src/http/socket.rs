//! Private Unix sockets: the admin API's (`[server] admin_socket`) and the
//! outbox's (`<events.dir>/admin.sock`).
//!
//! Whoever may connect to a Unix socket may use what is behind it, so access
//! is exactly the socket file's and its directory's permissions:
//!
//! - **The directory** is created 0700 when it is missing. One that exists
//!   must be a real directory (not a symlink), owned by the daemon's user and
//!   writable by nobody else: whoever may write it may replace the socket with
//!   their own, or rename it away. Anything else is refused, with the reason.
//!   systemd's `RuntimeDirectory=` (mode `RuntimeDirectoryMode=0700`) and a
//!   login session's `$XDG_RUNTIME_DIR` pass as they are.
//! - **The socket** is bound inside a fresh 0700 directory next to its final
//!   name, set 0600, then renamed onto that name: there is no moment at which
//!   it exists with the umask's permissions at a path someone else can reach.
//!   (Changing the process-wide umask instead would race with every file the
//!   other threads create meanwhile.)
//! - **A file already at that name**: a socket that something answers on is
//!   another daemon's (refused: two daemons on one socket would split the
//!   revocations between them); a socket nothing answers on was left by one
//!   that died (replaced); anything else is refused (never delete a file this
//!   daemon did not make).
//! - The socket file is removed when the listener is dropped, if it is still
//!   the one this daemon bound (same inode).
//!
//! The client side ([`check_client_dir`]): a socket in a directory that others
//! may write, or that belongs to another user, could be anyone's, and a fake
//! daemon answering "revoked" would be worse than an error.
//!
//! Crates looked at first: `tokio::net::UnixListener::bind` and std's bind
//! create the file with the umask's mode and have no way to choose one;
//! `tempfile` makes private directories but not sockets. The few lines here
//! use std's `DirBuilderExt::mode`, `rename` and `MetadataExt`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a private socket cannot be served or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The path has no directory or no file name.
    #[error("{0} is not a socket path in a directory")]
    NoDirectory(PathBuf),
    /// The directory is a symlink or not a directory.
    #[error("{0} is not a directory (a symlink is not accepted)")]
    NotADirectory(PathBuf),
    /// The directory belongs to another user.
    #[error("{dir} belongs to uid {owner}, not to this process's user (uid {uid}): whoever owns it can replace the socket")]
    OwnedByOther {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// Group or others may write the directory.
    #[error("{dir} is writable by its group or by others (mode {mode:04o}): they could replace the socket; make it 0700 (or 0755)")]
    WritableByOthers {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process answers on the socket.
    #[error("{0} is in use: another assetgate is serving it (stop it, or give this one another path)")]
    InUse(PathBuf),
    /// Something that is not a socket is at the socket's path.
    #[error("{0} exists and is not a socket: not replacing it")]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks (and creates when missing, mode 0700) the directory a socket of
/// this daemon lives in.
pub fn prepare_dir(dir: &Path) -> Result<(), SocketError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Made by someone else meanwhile: judged below like any other.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("cannot create", dir)(e)),
            }
        }
        Err(e) => return Err(io_err("cannot inspect", dir)(e)),
        Ok(_) => {}
    }
    let m = std::fs::symlink_metadata(dir).map_err(io_err("cannot inspect", dir))?;
    judge_dir(dir, &m, |owner| owner == euid())
}

/// The client's check before connecting to `socket`: its directory is
/// writable by its owner alone, and that owner is this user or root (a root
/// client trusts the directory the configuration names, whoever owns it).
pub fn check_client_dir(socket: &Path) -> Result<(), SocketError> {
    let dir = socket
        .parent()
        .ok_or_else(|| SocketError::NoDirectory(socket.to_path_buf()))?;
    let m = std::fs::metadata(dir).map_err(io_err("cannot inspect", dir))?;
    let uid = euid();
    judge_dir(dir, &m, |owner| uid == 0 || owner == uid || owner == 0)
}

fn judge_dir(dir: &Path, m: &std::fs::Metadata, owner_ok: impl Fn(u32) -> bool) -> Result<(), SocketError> {
    if !m.file_type().is_dir() {
        return Err(SocketError::NotADirectory(dir.to_path_buf()));
    }
    if !owner_ok(m.uid()) {
        return Err(SocketError::OwnedByOther {
            dir: dir.to_path_buf(),
            owner: m.uid(),
            uid: euid(),
        });
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(SocketError::WritableByOthers {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// A bound private socket; its file is removed on drop if it is still ours.
#[derive(Debug)]
pub struct PrivateSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    ino: (u64, u64),
}

impl PrivateSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, for the async runtime (non-blocking). Must be called
    /// inside the runtime.
    pub fn take_listener(&mut self) -> io::Result<tokio::net::UnixListener> {
        let l = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("listener already taken"))?;
        l.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(l)
    }
}

impl Drop for PrivateSocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a private socket at `path` (see the module notes): its directory
/// checked or created, mode 0600 from the start, a stale socket replaced, a
/// live one or any other file refused.
pub fn bind(path: &Path) -> Result<PrivateSocket, SocketError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SocketError::NoDirectory(path.to_path_buf()));
    };
    prepare_dir(dir)?;
    check_existing(path)?;

    // A private directory beside the final name: the socket is made there,
    // given its mode, and renamed into place (rename stays in one directory
    // tree, so one filesystem).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let staging = dir.join(format!(
        ".{}.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(io_err("cannot create", &staging))?;
    let result = (|| {
        let tmp = staging.join("s");
        let listener = UnixListener::bind(&tmp).map_err(io_err("cannot bind", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("cannot set the mode of", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("cannot move the socket to", path))?;
        let m = std::fs::symlink_metadata(path).map_err(io_err("cannot inspect", path))?;
        Ok(PrivateSocket {
            listener: Some(listener),
            path: path.to_path_buf(),
            ino: (m.dev(), m.ino()),
        })
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// What is at the socket's path already: nothing or a stale socket is fine.
fn check_existing(path: &Path) -> Result<(), SocketError> {
    let m = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("cannot inspect", path)(e)),
        Ok(m) => m,
    };
    if !m.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_path_buf()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.to_path_buf())),
        // Nothing listens: left by a daemon that is gone; the rename replaces it.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(io_err("cannot check", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_a_private_directory_and_socket() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run/admin.sock");
        let s = bind(&path).unwrap();
        assert_eq!(mode(&t.path().join("run")), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        // Nothing else is left in the directory (the staging directory is gone).
        let names: Vec<_> = std::fs::read_dir(t.path().join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["admin.sock"]);
        // A second daemon on the same path is refused while this one listens.
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(s);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn a_stale_socket_is_replaced_anything_else_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("run");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let path = dir.join("admin.sock");
        // Bound, then the listener dropped: a file nothing answers on.
        drop(UnixListener::bind(&path).unwrap());
        let s = bind(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(s);
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(matches!(bind(&path), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        let t = tempfile::tempdir().unwrap();
        for bad in [0o770, 0o777, 0o1777, 0o720] {
            let dir = t.path().join(format!("d{bad:o}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bad)).unwrap();
            let r = bind(&dir.join("admin.sock"));
            assert!(
                matches!(r, Err(SocketError::WritableByOthers { .. })),
                "{bad:o}: {r:?}"
            );
            assert!(check_client_dir(&dir.join("admin.sock")).is_err(), "{bad:o}");
        }
        let dir = t.path().join("ok");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(bind(&dir.join("admin.sock")).unwrap());
        // A symlink to a good directory is not the directory.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            bind(&link.join("admin.sock")),
            Err(SocketError::NotADirectory(_))
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        // `/` belongs to root; a test run as root has no other user to try.
        if euid() == 0 {
            let m = std::fs::symlink_metadata("/").unwrap();
            assert!(judge_dir(Path::new("/"), &m, |o| o == 12345).is_err());
            return;
        }
        let r = prepare_dir(Path::new("/"));
        assert!(
            matches!(r, Err(SocketError::OwnedByOther { owner: 0, .. })),
            "{r:?}"
        );
    }
}
