//! An upload as the upload directory holds it: its data file, its `.info`
//! (paired with `<dir>/<ID>`, see `info`), a final upload's parts. Found from
//! the upload directory's descriptor (`confine`), checked on what was opened,
//! and removed, data first and info last, only while each name still holds
//! the file that was checked.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::confine::{beneath, open_at, open_dir_beneath, read_full_at, remove_checked, Opened, Removal};
use super::error::{FinalizeError, Op, Side};
use super::info::{open_info, read_info, InfoError, UploadInfo};
use super::outcome::Cleanup;
use super::roots::Roots;
use crate::tusd::{prefinish, Part};

/// A name in a directory of the upload directory, that directory held open.
#[derive(Debug)]
pub(super) struct Located {
    /// Plain names below the upload directory (what tells which info file
    /// describes which data file).
    pub(super) rel: PathBuf,
    /// The directory holding the name.
    pub(super) dir: OwnedFd,
    /// The last component of `rel`.
    pub(super) name: OsString,
}

/// Open the directory of `rel` (plain names below the upload directory, see
/// [`beneath`]). `Ok(None)`: a directory on the way does not exist.
pub(super) fn locate(roots: &Roots, rel: &Path) -> Result<Option<Located>, FinalizeError> {
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
pub(super) enum SourceState {
    Open(Located, Opened),
    /// Gone (a duplicate delivery?); `None`: its directory is gone too.
    Missing(Option<Located>),
}

pub(super) fn open_source(roots: &Roots, source: &Path) -> Result<SourceState, FinalizeError> {
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

/// A part of a final upload, as its own info and data file describe it.
pub(super) struct PartRecord {
    pub(super) info: InfoFile,
    pub(super) data: Located,
    pub(super) data_meta: Metadata,
    pub(super) part: Part,
}

/// Upload `id` as its own `.info` (at the top of the upload directory) and its data
/// file describe it. `None`: an unsafe ID, no info, an unusable info, or a data
/// file outside the upload directory, behind a symlink, or not a regular file.
pub(super) fn part_record(roots: &Roots, id: &str) -> Option<PartRecord> {
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
pub(super) fn check_parts(
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
        let signed = expected.iter().all(|(k, v)| {
            part.metadata
                .get(k)
                .is_some_and(|got| crate::tusd::rules::same_field(k, got, v))
        });
        if !part.is_partial || !part.finished || !signed {
            return Err(FinalizeError::ConcatInvalid);
        }
    }
    Ok(())
}

/// After a final upload was published: its parts (checked before the publish)
/// go too, data first, info last. Best effort; returns how many went.
pub(super) fn remove_parts(roots: &Roots, parts: &[String]) -> usize {
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
pub(super) fn check_content(source: &File, declared: &str) -> Result<(), FinalizeError> {
    let mut head = vec![0u8; prefinish::SNIFF_BYTES];
    let n = read_full_at(source, &mut head, 0).map_err(FinalizeError::io(Op::Sniff))?;
    prefinish::check(declared, &head[..n]).map_err(|_| FinalizeError::ContentMismatch {
        expected: prefinish::expected_signature(declared).unwrap_or("of its declared type"),
    })
}

/// An upload's info file: where it is, what `fstat` said of it, what it says.
#[derive(Debug)]
pub(super) struct InfoFile {
    pub(super) loc: Located,
    pub(super) meta: Metadata,
    pub(super) info: UploadInfo,
}

/// Open and parse the info file at `loc`. `Ok(None)`: there is none.
pub(super) fn read_info_file(roots: &Roots, loc: Located) -> Result<Option<InfoFile>, InfoError> {
    let Some(opened) = open_info(loc.dir.as_fd(), &loc.name)? else {
        return Ok(None);
    };
    let info = read_info(&opened, &roots.upload_dir, &roots.upload_dir.join(&loc.rel))?;
    Ok(Some(InfoFile {
        loc,
        meta: opened.meta,
        info,
    }))
}

/// The info file for the data file at `source`: the one given by the event if any,
/// else `<source>.info`, else `<upload_dir>/<name>.info`. `Ok(None)`: none exists.
pub(super) fn locate_info(
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
pub(super) fn describes(roots: &Roots, info: &UploadInfo, source: &Located) -> bool {
    matches!(beneath(&roots.upload_dir, &info.data_path), Ok(rel) if rel == source.rel)
}

/// Source first, info last (see the module docs); a missing file is fine. Each is
/// removed from the directory it was checked in, and only while its name still
/// holds the file that was checked: a name that holds another file by now is left
/// alone and reported with the kind `Other`.
pub(super) fn remove_source_and_info(
    source: Option<(&Located, &Metadata)>,
    info: Option<&InfoFile>,
) -> Cleanup {
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
