//! Bounded reads of the files the configuration comes from: the TOML file,
//! the secret files (`ASSETGATE_*_SECRET_FILE`) and `[events] ca_file`. The
//! same reader at start and on every reload (issue 19, finding 10: a FIFO
//! named as a secret file wedged the reload task for ever, and a 300 MB file
//! of NULs was read whole and taken as a secret).
//!
//! - **Only regular files.** `stat(2)` first (following symlinks: a
//!   Kubernetes mount is `name -> ..data/name`), so a FIFO, socket or device is
//!   refused before it is opened; then `open(2)` with `O_NONBLOCK` (a FIFO
//!   swapped in between opens at once instead of waiting for a writer; on a
//!   regular file the flag does nothing) and `fstat(2)` on the descriptor,
//!   which is what is read.
//! - **A cap per kind of file**, checked on the size before reading and again
//!   while reading (`take(cap + 1)`: a file may grow, and `/proc` files say 0).
//! - **Consistent**: the descriptor's size, times and inode are the same after
//!   the read as before it, else the file was being written: read again (a
//!   few times), then refused. What the caller gets is one state of the file.
//! - **Stamped**: the caller gets the file's [`Stamp`] (device, inode, size,
//!   modification and change times), so a reload can tell a file replaced
//!   whole (a new inode) from one rewritten in place, and whether a file
//!   changed again right after it was read (`crate::daemon::reload`).
//!
//! No `unsafe`: `O_NONBLOCK`/`O_NOCTTY` are passed through std's
//! `OpenOptionsExt::custom_flags` (the values from `rustix`, which the mover
//! already uses for the same purpose).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::SystemTime;

use zeroize::Zeroizing;

/// Largest configuration file read: 1 MiB. The shipped file is about 3 KiB;
/// a configuration with long type tables stays far below. TOML is parsed into
/// a tree several times its size, so the cap is also what bounds that.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Largest secret file read: 64 KiB. A secret file holds the secrets of one
/// rotation, one per line (two or three, 16 to a few hundred bytes each):
/// 64 KiB is hundreds of them, and nothing the daemon keeps in memory (or
/// hashes per request) can grow with a wrong file named by mistake.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Largest `[events] ca_file` read: 1 MiB. A private CA is one or two
/// certificates of a few KiB; Debian's whole bundle
/// (`/etc/ssl/certs/ca-certificates.crt`, about 150 certificates) is about
/// 220 KB, so even that named by mistake fits.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// How often a file found changing while read is read again before it is
/// refused.
const ATTEMPTS: usize = 3;

/// A file as it was when read: which file, and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of the file at `path` now (following symlinks).
    pub fn of_path(path: &Path) -> std::io::Result<Stamp> {
        std::fs::metadata(path).map(|m| Stamp::of(&m))
    }

    /// Whether both are the same file (device and inode), whatever its state.
    pub fn same_file(&self, other: &Stamp) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// The later of its modification and status-change times (a write, a
    /// truncation, a rename onto the name all move one of them).
    pub fn touched(&self) -> SystemTime {
        let at = |(secs, nsec): (i64, i64)| {
            let nsec = std::time::Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64);
            match u64::try_from(secs) {
                Ok(s) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s) + nsec,
                Err(_) => SystemTime::UNIX_EPOCH,
            }
        };
        at(self.modified).max(at(self.changed))
    }
}

/// Why a file was not read. Never holds any of its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// `stat`, `open` or `read` failed (the OS's message).
    #[error("cannot read it: {0}")]
    Io(String),
    /// A FIFO, socket, device or directory.
    #[error("not a regular file (a {0})")]
    NotRegular(&'static str),
    /// Beyond the cap for its kind.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// It kept changing while being read.
    #[error("it kept changing while being read (written in place?); it is read again on the next reload")]
    Changing,
    /// Not UTF-8.
    #[error("not UTF-8 text")]
    NotText,
}

/// The bytes of a file (wiped on drop: a secret file's) and its stamp after
/// the read.
pub struct FileBytes {
    /// The content, at most the cap.
    pub bytes: Zeroizing<Vec<u8>>,
    /// The file's state, the same before and after the read.
    pub stamp: Stamp,
}

impl FileBytes {
    /// The content as text.
    pub fn text(&self) -> Result<&str, ReadError> {
        std::str::from_utf8(&self.bytes).map_err(|_| ReadError::NotText)
    }
}

fn io(e: std::io::Error) -> ReadError {
    ReadError::Io(e.to_string())
}

/// What a non-regular file is, for the message.
fn regular(m: &Metadata) -> Result<(), ReadError> {
    let t = m.file_type();
    if t.is_file() {
        return Ok(());
    }
    Err(ReadError::NotRegular(if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }))
}

/// Reads the regular file at `path`, at most `cap` bytes, without ever
/// blocking on a FIFO or a device (see the module doc).
pub fn read(path: &Path, cap: u64) -> Result<FileBytes, ReadError> {
    for _ in 1..ATTEMPTS {
        match read_once(path, cap) {
            Err(ReadError::Changing) => continue,
            other => return other,
        }
    }
    read_once(path, cap)
}

fn read_once(path: &Path, cap: u64) -> Result<FileBytes, ReadError> {
    let by_name = std::fs::metadata(path).map_err(io)?;
    regular(&by_name)?;
    if by_name.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    regular(&opened)?;
    if opened.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    // Sized from the descriptor (at most cap + 1): no reallocation leaves a
    // copy of a secret behind when the size is right.
    let mut bytes = Zeroizing::new(Vec::with_capacity(opened.len() as usize + 1));
    (&file).take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    let after = file.metadata().map_err(io)?;
    let stamp = Stamp::of(&after);
    if stamp != Stamp::of(&opened) {
        return Err(ReadError::Changing);
    }
    Ok(FileBytes { bytes, stamp })
}

/// The secrets of a secret file, one per line, newest first (surrounding
/// whitespace and blank lines ignored), read by the bounded reader and each
/// checked to be printable text ([`crate::secret::check_text`]). The error
/// names the file and the line, never a secret.
pub fn read_secret_file(path: &Path) -> Result<Vec<String>, String> {
    read_secret_file_stamped(path).map(|(secrets, _)| secrets)
}

pub(crate) fn read_secret_file_stamped(path: &Path) -> Result<(Vec<String>, Stamp), String> {
    let shown = path.display();
    let read = read(path, MAX_SECRET_FILE_BYTES).map_err(|e| format!("{shown}: {e}"))?;
    let text = read.text().map_err(|e| format!("{shown}: {e}"))?;
    let mut secrets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        crate::secret::check_text(line).map_err(|why| format!("{shown}: line {}: {why}", n + 1))?;
        secrets.push(line.to_owned());
    }
    if secrets.is_empty() {
        return Err(format!("{shown} holds no secret"));
    }
    Ok((secrets, read.stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn reads_a_regular_file_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "hello\n").unwrap();
        std::os::unix::fs::symlink(&p, dir.path().join("link")).unwrap();
        let got = read(&dir.path().join("link"), 100).unwrap();
        assert_eq!(got.text().unwrap(), "hello\n");
        assert_eq!(got.stamp, Stamp::of_path(&p).unwrap());
        assert!(got.stamp.same_file(&Stamp::of_path(&p).unwrap()));
    }

    /// A FIFO without a writer: open(2) without O_NONBLOCK would wait for
    /// ever (what wedged the reload task). Refused at once, also when it is
    /// reached through a symlink.
    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        std::os::unix::fs::symlink(&fifo, dir.path().join("link")).unwrap();
        for p in [fifo, dir.path().join("link")] {
            assert_eq!(read(&p, 100).err(), Some(ReadError::NotRegular("FIFO")));
        }
        assert_eq!(
            read(Path::new("/dev/zero"), 100).err(),
            Some(ReadError::NotRegular("character device"))
        );
        assert_eq!(
            read(dir.path(), 100).err(),
            Some(ReadError::NotRegular("directory"))
        );
        assert!(matches!(
            read(&dir.path().join("none"), 100),
            Err(ReadError::Io(_))
        ));
    }

    /// The cap holds on the size (a sparse 300 MiB file is not read) and on
    /// what is read (a `/proc` file says 0 bytes).
    #[test]
    fn caps_are_enforced_before_and_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge");
        File::create(&p).unwrap().set_len(300 << 20).unwrap();
        assert_eq!(read(&p, 1 << 20).err(), Some(ReadError::TooLarge(1 << 20)));
        std::fs::write(&p, "12345").unwrap();
        assert_eq!(read(&p, 4).err(), Some(ReadError::TooLarge(4)));
        assert_eq!(read(&p, 5).unwrap().bytes.len(), 5);
        let proc_file = Path::new("/proc/self/status");
        assert_eq!(std::fs::metadata(proc_file).unwrap().len(), 0, "procfs says 0");
        assert_eq!(read(proc_file, 16).err(), Some(ReadError::TooLarge(16)));
    }

    #[test]
    fn invalid_utf8_is_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"a\xffb").unwrap();
        assert_eq!(read(&p, 100).unwrap().text().err(), Some(ReadError::NotText));
    }
}
