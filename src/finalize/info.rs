//! The upload server's `.info` files (tusd filestore and rustus): read with a
//! size bound, parsed, paired with their data file, and checked against it.
//!
//! # Pairing
//!
//! Every reader (the mover, the pending scan and the reconciler, the abandon
//! sweep, a final upload's parts, `/session`) goes through [`read_info`], which
//! takes the data file of `<dir>/<ID>.info` to be `<dir>/<ID>` and refuses a
//! record that says otherwise ([`InfoError::Unpaired`]): its `ID` must be its
//! own file name, and its `Storage.Path` (tusd) or `path` (rustus), when it
//! has one, must name a file called `<ID>`, in the same directory for tusd,
//! below the upload directory for rustus (whose `--dir-structure` puts data
//! files in dated sub-directories). A planted `x.info` naming another
//! upload's data file describes nothing, so nothing acts on that file through
//! it (the abandon sweep once deleted a victim's upload that way). Reads stop
//! at [`MAX_INFO_BYTES`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use serde::Deserialize;

use super::confine::{beneath, open_at, Opened};
use crate::tusd::json::{self, Checked, JsonError};
use crate::tusd::protocol::parse_file_info;

/// Largest `.info` file read (tusd's are a few hundred bytes; metadata rides in one
/// HTTP header).
pub(super) const MAX_INFO_BYTES: u64 = 1024 * 1024;

/// Which upload server wrote an info file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFormat {
    /// tusd filestore (Go field names).
    Tusd,
    /// rustus `file-info-storage` (snake case).
    Rustus,
}

/// rustus's `file-info-storage` record: its own shape, snake case (a tusd
/// record is tusd's `FileInfo`, [`crate::tusd::protocol::parse_file_info`]).
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

/// [`RustusInfo`]'s field names, for the path of a malformed one.
const RUSTUS_NAMES: &str = "id offset length path deferred_size is_partial is_final parts metadata";

/// Which server wrote a record: a tusd record has an `ID`, a rustus one an
/// `id` (given, even as `null`).
#[derive(Deserialize)]
struct Writer {
    #[serde(rename = "ID", default, deserialize_with = "given")]
    tusd: bool,
    #[serde(rename = "id", default, deserialize_with = "given")]
    rustus: bool,
}

fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Checked::deserialize(d).map(|Checked| true)
}

/// One info file, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UploadInfo {
    pub(super) format: InfoFormat,
    pub(super) id: String,
    /// `None`: length deferred.
    pub(super) size: Option<u64>,
    /// rustus only: the offset it recorded (tusd does not keep it on disk).
    pub(super) offset: Option<u64>,
    pub(super) is_partial: bool,
    pub(super) is_final: bool,
    /// A final upload's parts (upload IDs).
    pub(super) parts: Vec<String>,
    pub(super) metadata: BTreeMap<String, String>,
    /// Where the data file is, resolved against the info file's location.
    pub(super) data_path: PathBuf,
}

/// Why an info file could not be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum InfoError {
    #[error("unreadable: {0}")]
    Io(io::ErrorKind),
    #[error("is a symlink")]
    Symlink,
    #[error("is not a regular file")]
    NotFile,
    #[error("larger than {MAX_INFO_BYTES} bytes")]
    TooBig,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("does not describe <dir>/<ID>: {0}")]
    Unpaired(&'static str),
}

/// Open the info file `dir/name` without following a symlink. `Ok(None)`: none.
pub(super) fn open_info(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Opened>, InfoError> {
    match open_at(dir, name) {
        Ok(opened) => Ok(opened),
        Err(Errno::LOOP) => Err(InfoError::Symlink),
        Err(Errno::NXIO | Errno::NODEV) => Err(InfoError::NotFile),
        Err(e) => Err(InfoError::Io(io::Error::from(e).kind())),
    }
}

/// Read, parse and pair an opened info file (from its descriptor): `info_path`
/// (absolute, below `upload_dir`) is where it is, and names the data file it
/// may describe (see *Pairing* above).
pub(super) fn read_info(
    opened: &Opened,
    upload_dir: &Path,
    info_path: &Path,
) -> Result<UploadInfo, InfoError> {
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
    let info = parse_info(&bytes, info_path)?;
    pair(&info, upload_dir, info_path)?;
    Ok(info)
}

/// The info at `info_path` describes `<dir>/<ID>` and nothing else.
pub(super) fn pair(info: &UploadInfo, upload_dir: &Path, info_path: &Path) -> Result<(), InfoError> {
    let stem = info_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".info"));
    if stem != Some(info.id.as_str()) {
        return Err(InfoError::Unpaired("its ID is not its file name"));
    }
    if !crate::tusd::session::safe_upload_id(&info.id) {
        return Err(InfoError::Unpaired("its ID is not an upload ID"));
    }
    if info.data_path.file_name() != Some(OsStr::new(&info.id)) {
        return Err(InfoError::Unpaired("its data path does not end in its ID"));
    }
    let outside = |_| InfoError::Unpaired("its data path is not inside the upload directory");
    let data = beneath(upload_dir, &info.data_path).map_err(outside)?;
    if info.format == InfoFormat::Tusd {
        let own = beneath(upload_dir, info_path)
            .map_err(outside)?
            .with_file_name(&info.id);
        if data != own {
            return Err(InfoError::Unpaired("its data path is not next to it"));
        }
    }
    Ok(())
}

/// The `.info` parser on untrusted bytes, for the fuzz target: `Ok` with the upload
/// ID when the bytes are a usable tusd or rustus info, else the reason. Never
/// panics, whatever the input. Only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub fn parse_info_for_fuzzing(bytes: &[u8]) -> Result<String, String> {
    parse_info(bytes, Path::new("/uploads/x.info"))
        .map(|i| i.id)
        .map_err(|e| e.to_string())
}

/// Parse an info file's bytes (as strictly as a hook body: [`crate::tusd::json`]);
/// `info_path` locates the data file when the info does not record an absolute one.
pub(super) fn parse_info(bytes: &[u8], info_path: &Path) -> Result<UploadInfo, InfoError> {
    let malformed = |e: JsonError| InfoError::Malformed(e.to_string());
    let writer: Writer = json::read(bytes, "info", "").map_err(malformed)?;
    let info_dir = info_path.parent().unwrap_or(Path::new(""));
    if writer.tusd {
        let t = parse_file_info(bytes).map_err(malformed)?;
        if t.id.is_empty() {
            return Err(InfoError::Malformed("empty ID".into()));
        }
        // tusd's filestore: data file at Storage.Path (absolute since it joins the
        // store path at creation), else `<info without .info>`, its default layout.
        let recorded = t.storage_path();
        // A relative one (tusd started with a relative -upload-dir) cannot be
        // compared with the directory, but it must still name `<ID>`.
        if recorded.is_some_and(|p| p.file_name() != Some(OsStr::new(&t.id))) {
            return Err(InfoError::Unpaired("its data path does not end in its ID"));
        }
        let data_path = match recorded {
            Some(p) if p.is_absolute() => p.to_path_buf(),
            _ => strip_info_suffix(info_path)
                .ok_or_else(|| InfoError::Malformed("info file name does not end in .info".into()))?,
        };
        Ok(UploadInfo {
            format: InfoFormat::Tusd,
            size: t.declared_size(),
            id: t.id,
            offset: None,
            is_partial: t.is_partial,
            is_final: t.is_final,
            parts: t.partial_uploads,
            metadata: t.metadata,
            data_path,
        })
    } else if writer.rustus {
        let r: RustusInfo = json::read(bytes, "info", RUSTUS_NAMES).map_err(malformed)?;
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

pub(super) fn strip_info_suffix(info_path: &Path) -> Option<PathBuf> {
    let name = info_path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".info").filter(|s| !s.is_empty())?;
    Some(info_path.with_file_name(stem))
}

/// Why an upload does not count as finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unfinished {
    Partial,
    Deferred,
    InProgress,
}

impl UploadInfo {
    /// Finished = not partial, length known, and the data file exactly that long
    /// (rustus: its recorded offset too; tusd keeps no offset on disk).
    pub(super) fn finished(&self, data_len: u64) -> Result<u64, Unfinished> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: impl AsRef<[u8]>) -> Result<UploadInfo, String> {
        parse_info(text.as_ref(), Path::new("/up/a.info")).map_err(|e| e.to_string())
    }

    /// Both records are read as strictly as a hook body (`tusd::json`): each
    /// field once, unknown fields allowed and checked like `Value` checks
    /// them, a malformed field named by its path without its value.
    #[test]
    fn records_read_strictly() {
        let tusd = parse(r#"{"ID":"a","Size":3,"New":{"x":[1]},"MetaData":{"k":"v"}}"#).unwrap();
        assert_eq!(
            (tusd.format, tusd.size, tusd.data_path.as_path()),
            (InfoFormat::Tusd, Some(3), Path::new("/up/a"))
        );
        let rustus =
            parse(r#"{"id":"a","offset":3,"length":3,"created_at":1,"storage":"file_storage"}"#).unwrap();
        assert_eq!((rustus.format, rustus.offset), (InfoFormat::Rustus, Some(3)));
        for (text, want) in [
            (
                r#"{"ID":"a","Size":3,"Size":4}"#,
                "malformed: FileInfo: duplicate field `Size`",
            ),
            (
                r#"{"id":"a","offset":1,"offset":1}"#,
                "malformed: info: duplicate field `offset`",
            ),
            (r#"{"ID":"a","ID":"a"}"#, "malformed: info: duplicate field `ID`"),
            (
                r#"{"ID":"a","MetaData":{"secret":1}}"#,
                "malformed: FileInfo.MetaData.…: invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"id":"a","offset":"secret"}"#,
                r#"malformed: info.offset: invalid type: string "…", expected u64"#,
            ),
            (r#"{"ID":null}"#, "malformed: empty ID"),
            (r#"[{"ID":"a"}]"#, "malformed: not a JSON object"),
            (
                r#"{"Id":"a"}"#,
                "malformed: neither a tusd (ID) nor a rustus (id) info",
            ),
        ] {
            assert_eq!(parse(text).map(|i| i.id), Err(want.to_owned()), "{text}");
        }
        for text in [
            &br#"{"ID":"a","New":"\udc00"}"#[..],
            br#"{"id":"a","offset":0,"New":[1e400]}"#,
            b"{\"ID\":\"a\xff\"}",
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with("malformed: not JSON: "),
                "{}: {e}",
                String::from_utf8_lossy(text)
            );
        }
    }

    /// A tusd record without `Size` has no known length (it used to be read
    /// as 0); tusd always writes one.
    #[test]
    fn tusd_size_absent_is_deferred() {
        assert_eq!(
            parse(r#"{"ID":"a"}"#).unwrap().finished(0),
            Err(Unfinished::Deferred)
        );
        assert_eq!(parse(r#"{"ID":"a","Size":0}"#).unwrap().finished(0), Ok(0));
    }
}
