//! Refusals that stay refused: `<upload_dir>/<ID>.refused`.
//!
//! When the mover refuses an upload's *bytes* (`[upload] check_content`: the
//! leading bytes are not the declared type), that verdict is about the file,
//! not about the configuration of the day. The upload stays in the upload
//! directory for the operator (nothing serves it), so without a record a
//! later configuration without `check_content` (a reload, a restart, a
//! half-written file) would let the reconciler or `finalize-pending` publish
//! it after all.
//!
//! So the refusal is recorded next to the upload's `.info`, in the directory
//! the info was found in: a file `<ID>.refused`, created `O_EXCL` (mode 0600,
//! a short JSON note for the operator: reason, key, declared type, time),
//! synced with its directory *before* the refusal is reported. Its existence
//! is the record: whatever it holds, even a file cut short by a crash, or
//! anything else under that name, counts as refused (fail closed). Every
//! publish path looks at it first ([`is_refused`]: the mover before any
//! other check, the pending scan before it offers the upload to the
//! reconciler or `finalize-pending`), and the abandon sweep removes it with
//! the upload, last, once the upload's token expired more than `[tusd]
//! abandon_after` ago (so it never outlives a data file it guards).
//!
//! An operator re-admits an upload by removing the marker, then publishing
//! with `check_content` off (or copying the file into the asset tree by hand);
//! removes it by deleting `<ID>`, `<ID>.info` and `<ID>.refused`, or waits for
//! the sweep. IDs never contain a dot, so the name is never another upload's.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::confine::lstat_at;
use super::faults;

/// The marker's name for upload `id`.
pub(super) fn marker_name(id: &str) -> OsString {
    OsString::from(format!("{id}.refused"))
}

/// Whether upload `id` (whose info is in `dir`) was refused for good. Anything
/// under the marker's name counts; an error other than "not there" counts too.
pub(super) fn is_refused(dir: BorrowedFd<'_>, id: &str) -> bool {
    !matches!(lstat_at(dir, &marker_name(id)), Ok(None))
}

/// Why the mover refused an upload for good.
pub(super) struct Refusal<'a> {
    /// The metric label of the refusal (`content_mismatch`).
    pub(super) reason: &'static str,
    /// Its text, as logged.
    pub(super) detail: String,
    /// Where it would have been published (`{prefix}/{key}`).
    pub(super) destination: &'a str,
    /// The declared content type.
    pub(super) declared: &'a str,
}

/// Records the refusal of upload `id` in `dir` (its info's directory), durably:
/// created exclusively, written, synced, the directory synced. An existing
/// marker is kept as it is.
pub(super) fn mark_refused(dir: BorrowedFd<'_>, id: &str, refusal: &Refusal<'_>) -> io::Result<()> {
    faults::check(faults::Step::MarkRefused)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, marker_name(id), flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => fd,
        Err(Errno::EXIST) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut file = File::from(fd);
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let note = serde_json::json!({
        "reason": refusal.reason,
        "detail": refusal.detail,
        "destination": refusal.destination,
        "declared_type": refusal.declared,
        "refused_at": at,
        "readmit": "remove this file, then publish with [upload] check_content off (README: refused uploads)",
    });
    file.write_all(format!("{note}\n").as_bytes())?;
    file.sync_all()?;
    rustix::fs::fsync(dir)?;
    Ok(())
}

/// Removes the marker of upload `id` from `dir` (the abandon sweep, after the
/// data file and the info); a missing one is fine.
pub(super) fn remove_marker(dir: BorrowedFd<'_>, id: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, marker_name(id), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
