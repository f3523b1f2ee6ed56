//! `finalize-pending` and the reconciler: finding finished uploads on disk
//! that were never moved, and removing abandoned ones.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::confine::{remove_checked, DIR_FLAGS};
use super::info::{open_info, read_info, InfoError, InfoFormat, Unfinished};
use super::refused::{is_refused, remove_marker};
use super::roots::Roots;
use super::upload::part_record;

/// A finished upload found in the upload directory, or in the bucket
/// (`bucket` set: then `info_path` and `data_path` are the object keys, see
/// [`crate::s3::pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The upload ID.
    pub id: String,
    /// Which server wrote it.
    pub format: InfoFormat,
    /// Its `.info` file.
    pub info_path: PathBuf,
    /// Its data file (as recorded; [`finalize`](crate::finalize::finalize) confines it).
    pub data_path: PathBuf,
    /// Declared (and actual) size in bytes.
    pub size: u64,
    /// Whether it is the concatenation of partial uploads.
    pub is_final: bool,
    /// Whether it is a partial upload (a part of a concatenation).
    pub is_partial: bool,
    /// A final upload's parts (upload IDs), as its info names them.
    pub parts: Vec<String>,
    /// The stored metadata (decoded strings), for the caller to re-verify the
    /// upload-token and compute the destination.
    pub metadata: BTreeMap<String, String>,
    /// `Some(bucket)`: found by the S3 backend, its paths are object keys.
    pub bucket: Option<String>,
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
    /// Refused for good by the mover (its `<ID>.refused` marker): never offered
    /// for publishing again; the abandon sweep removes it in time.
    Refused,
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
            partial_uploads: self.parts.clone(),
            storage: Some(match &self.bucket {
                // What tusd's s3store would send: its `Type`, `Bucket`, `Key`
                // (the plan derives the keys again and compares).
                Some(bucket) => crate::tusd::protocol::Storage {
                    kind: Some(crate::tusd::postfinish::S3_STORE.into()),
                    path: None,
                    info_path: None,
                    bucket: Some(bucket.clone()),
                    key: Some(self.data_path.display().to_string()),
                },
                None => crate::tusd::protocol::Storage {
                    kind: None,
                    path: Some(self.data_path.display().to_string()),
                    info_path: Some(self.info_path.display().to_string()),
                    bucket: None,
                    key: None,
                },
            }),
        }
    }
}

/// Removes an abandoned upload (its token expired long ago and it never
/// finished, or the mover refused it for good): data file, `.info`, tusd's
/// `.lock` and the refusal marker, last, after reading the info again (paired
/// with `<dir>/<ID>`, see `info`) and finding it still describes the same
/// unfinished or refused upload (a client finishing meanwhile keeps it).
/// `Ok(false)`: left as it is.
pub fn remove_abandoned(roots: &Roots, upload: &PendingUpload) -> io::Result<bool> {
    let Some(r) = part_record(roots, &upload.id) else {
        return Ok(false);
    };
    let refused = is_refused(r.info.loc.dir.as_fd(), &upload.id);
    if roots.upload_dir.join(&r.info.loc.rel) != upload.info_path
        || r.info.info.metadata != upload.metadata
        || (r.part.finished && !r.part.is_partial && !refused)
    {
        return Ok(false);
    }
    // Each from the directory it was checked in, only while it is still the file
    // that was checked; tusd's `.lock` has no checked inode, it is only a name.
    // The marker goes last, so it outlives the data it guards (a crash in
    // between leaves a marker without an upload, never the reverse).
    remove_checked(r.data.dir.as_fd(), &r.data.name, &r.data_meta)?;
    remove_checked(r.info.loc.dir.as_fd(), &r.info.loc.name, &r.info.meta)?;
    let lock = format!("{}.lock", upload.id);
    match rustix::fs::unlinkat(roots.upload_fd.as_fd(), lock.as_str(), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    if refused {
        remove_marker(r.info.loc.dir.as_fd(), &upload.id)?;
    }
    Ok(true)
}

/// What [`scan_pending`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingScan {
    /// Finished uploads, sorted by info file name.
    pub finished: Vec<PendingUpload>,
    /// Info files whose data file is gone (a crash between removing the data and the
    /// info, or a hand cleanup). Passing one to [`finalize`](crate::finalize::finalize) removes the info when
    /// the destination exists ([`Method::AlreadyFinalized`](crate::finalize::Method::AlreadyFinalized)).
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
    // Canonical, as `Roots` holds it: the info files' pairing with their data
    // files (`read_info`) compares paths below it.
    let upload_dir = &fs::canonicalize(upload_dir)?;
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
            .and_then(|o| read_info(&o, upload_dir, &info_path));
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
            parts: info.parts.clone(),
            metadata: info.metadata.clone(),
            bucket: None,
        };
        let declared = info.size.unwrap_or(0);
        let skip_with = |reason| Skipped {
            info_path: info_path.clone(),
            reason,
            upload: Some(upload(declared)),
        };
        // Refused for good: never offered again (the marker is looked at before
        // anything else is concluded about the upload).
        if is_refused(dir.as_fd(), &info.id) {
            scan.skipped.push(skip_with(SkipReason::Refused));
            continue;
        }
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
