//! The hook request: one POST body (+ the `Hook-Name` header) into a typed [`Hook`].
//!
//! Two shapes share one endpoint:
//!
//! - tusd v2: `{"Type":"pre-create","Event":{"Upload":{…},"HTTPRequest":{…}}}`,
//!   no `Hook-Name` header. Recognised by a top-level `Type` or `Event`.
//! - tusd v1 and rustus (`--hooks-format tusd`): `{"Upload":{…},"HTTPRequest":{…}}`
//!   with the hook name in the `Hook-Name` header (rustus: `hook-name`; the
//!   caller matches the header name case-insensitively and passes the value).
//!
//! Field names are Go's (`ID`, `Size`, `SizeIsDeferred`, `Offset`, `MetaData`,
//! `IsPartial`, `IsFinal`, `PartialUploads`, `Storage`, `HTTPRequest {Method,
//! URI, RemoteAddr, Header}`). Unknown fields are ignored. Leniencies, each
//! because a real producer needs it:
//!
//! - `MetaData` may be `{}`, `null` or absent; older rustus releases spell it
//!   `Metadata`, which is accepted as an alias.
//! - `Size` may be `null` (rustus, deferred length): read as deferred.
//! - `Storage` may be `null` (tusd pre-create) or `{"Type":"file_storage","Path":null}`
//!   (rustus pre-create).
//! - `HTTPRequest.Header` values may be arrays of strings (tusd, rustus) or
//!   plain strings; names are looked up case-insensitively.
//! - newer rustus releases write `upload` in lower case at the top level: accepted.
//!
//! Anything else that is not a hook is a [`HookError`] (the server answers 400).
//! Unknown hook names are not errors: they parse to [`HookName::Other`].
//!
//! One serde model reads both shapes, in one pass over the body for a
//! well-formed hook (see [`parse`]). What it accepts is JSON exactly as
//! `serde_json::Value` defines it, also in the parts it does not use: unknown
//! fields are checked, not skipped (fuzz finding F1). A field given twice is
//! read as JSON reads it, the last one counts; every one of them must have the
//! field's type. A struct (`Event`, `Upload`, `Storage`, `HTTPRequest`) is a
//! JSON object, never an array. A malformed field is named by its path in the
//! error (`Event.Upload.Size: invalid type: string "…", expected i64`), never
//! with its value.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::token::upload::{Metadata, FIELDS as TOKEN_FIELDS, FIELD_KEY};

/// Which answer style the sender expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// tusd v2: always 200 + JSON (`RejectUpload`, `HTTPResponse`).
    V2,
    /// tusd v1 / rustus: the status and body reach the client directly.
    V1,
}

impl Protocol {
    /// Label value (`v2`, `v1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V2 => "v2",
            Protocol::V1 => "v1",
        }
    }
}

/// The hook type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HookName {
    /// Blocking: before an upload is created (the token check).
    PreCreate,
    /// After creation.
    PostCreate,
    /// Progress.
    PostReceive,
    /// Blocking (tusd v2): the data is complete, before the client's last response.
    PreFinish,
    /// The upload is complete (finalize).
    PostFinish,
    /// Blocking (tusd v2.7+): before a termination.
    PreTerminate,
    /// After a termination.
    PostTerminate,
    /// A name this gate does not know; answered `{}` / 200.
    Other(String),
}

/// Longest unknown hook name kept (for logs); longer ones are cut.
const MAX_OTHER_NAME: usize = 64;

impl HookName {
    /// Every metric label value, for pre-registration.
    pub const LABELS: [&'static str; 8] = [
        "pre-create",
        "post-create",
        "post-receive",
        "pre-finish",
        "post-finish",
        "pre-terminate",
        "post-terminate",
        "other",
    ];

    /// Parses a hook name, ASCII case-insensitively, surrounding spaces ignored.
    pub fn parse(name: &str) -> HookName {
        let n = name.trim();
        let known = [
            ("pre-create", HookName::PreCreate),
            ("post-create", HookName::PostCreate),
            ("post-receive", HookName::PostReceive),
            ("pre-finish", HookName::PreFinish),
            ("post-finish", HookName::PostFinish),
            ("pre-terminate", HookName::PreTerminate),
            ("post-terminate", HookName::PostTerminate),
        ];
        for (text, hook) in known {
            if n.eq_ignore_ascii_case(text) {
                return hook;
            }
        }
        // Kept for logs only: printable ASCII, bounded.
        let cleaned: String = n
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_OTHER_NAME)
            .collect();
        HookName::Other(cleaned)
    }

    /// The closed metric label (`other` for every unknown name).
    pub fn label(&self) -> &'static str {
        match self {
            HookName::PreCreate => "pre-create",
            HookName::PostCreate => "post-create",
            HookName::PostReceive => "post-receive",
            HookName::PreFinish => "pre-finish",
            HookName::PostFinish => "post-finish",
            HookName::PreTerminate => "pre-terminate",
            HookName::PostTerminate => "post-terminate",
            HookName::Other(_) => "other",
        }
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookName::Other(name) => write!(f, "other({name})"),
            known => f.write_str(known.label()),
        }
    }
}

/// `Upload.Storage`: where the data store keeps the upload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Storage {
    /// `Type`: `filestore` (tusd), `file_storage` (rustus), `s3store`, …
    pub kind: Option<String>,
    /// `Path`: the data file (filestore), `null` at rustus pre-create.
    pub path: Option<String>,
    /// `InfoPath`: the `.info` file (tusd filestore v2.5+).
    pub info_path: Option<String>,
}

/// `Upload` (tusd's `FileInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upload {
    /// `ID`: `""` at tusd pre-create, set by rustus.
    pub id: String,
    /// `Size`: `None` when the length is deferred (or `Size` is `null`).
    pub size: Option<u64>,
    /// `SizeIsDeferred`.
    pub size_is_deferred: bool,
    /// `Offset`.
    pub offset: u64,
    /// `MetaData`, decoded.
    pub metadata: Metadata,
    /// `IsPartial` (`Upload-Concat: partial`).
    pub is_partial: bool,
    /// `IsFinal` (`Upload-Concat: final;…`).
    pub is_final: bool,
    /// `PartialUploads`: IDs of the partial uploads of a final upload.
    pub partial_uploads: Vec<String>,
    /// `Storage`, `None` when `null`.
    pub storage: Option<Storage>,
}

impl Upload {
    /// The declared size, `None` when deferred.
    pub fn declared_size(&self) -> Option<u64> {
        if self.size_is_deferred {
            None
        } else {
            self.size
        }
    }

    /// Whether all bytes were received (`Offset == Size`, length known).
    pub fn is_complete(&self) -> bool {
        self.declared_size() == Some(self.offset)
    }

    /// The `asset-key` metadata value, as sent (for log lines).
    pub fn asset_key(&self) -> Option<&str> {
        self.metadata.get(FIELD_KEY).map(String::as_str)
    }

    /// `Storage.Path`, when present and non-empty.
    pub fn storage_path(&self) -> Option<&Path> {
        self.storage
            .as_ref()
            .and_then(|s| s.path.as_deref())
            .filter(|p| !p.is_empty())
            .map(Path::new)
    }
}

/// HTTP header map with case-insensitive lookup: `HTTPRequest.Header` as a
/// JSON map holds it (names in order, each once: the last one sent). A value
/// that is neither a string nor an array drops its header; of an array, the
/// strings are kept.
///
/// No decision reads the client's headers, and building them as a map of
/// strings was a sixth of a pre-create's cost (tusd sends `Upload-Metadata`
/// again there, base64). So they are read in the same pass as the rest of the
/// hook into one buffer: per header its name, the number of its values, the
/// values; a number is a little-endian `u32`, a string its length then its
/// UTF-8.
#[derive(Clone, Default)]
pub struct Headers {
    records: Vec<u8>,
}

/// A header's number of values while the headers are read: dropped (neither
/// a string nor an array).
const DROPPED: u32 = u32::MAX;

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (n, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_le_bytes(*n))
}

fn take_str<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let n = usize::try_from(take_u32(rest)?).ok()?;
    let (s, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    std::str::from_utf8(s).ok()
}

/// The values of one header.
#[derive(Clone)]
struct Values<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.left = self.left.checked_sub(1)?;
        take_str(&mut self.rest)
    }
}

impl Headers {
    /// Each header's name and values.
    fn entries(&self) -> impl Iterator<Item = (&str, Values<'_>)> + '_ {
        let mut rest = &self.records[..];
        std::iter::from_fn(move || {
            let name = take_str(&mut rest)?;
            let left = take_u32(&mut rest)?;
            let values = Values { rest, left };
            for _ in 0..left {
                take_str(&mut rest)?;
            }
            Some((name, values))
        })
    }

    /// First value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .find_map(|(_, mut values)| values.next())
    }

    /// All values of header `name` (case-insensitive), over all spellings.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values)
    }

    /// Number of distinct header names as sent.
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Names and values, as strings.
    fn strings(&self) -> Vec<(&str, Vec<&str>)> {
        self.entries().map(|(n, v)| (n, v.collect())).collect()
    }

    fn push_u32(&mut self, n: u32) {
        self.records.extend_from_slice(&n.to_le_bytes());
    }

    fn push_str<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        let n = u32::try_from(s.len()).map_err(|_| E::custom("a header longer than 4 GiB"))?;
        self.push_u32(n);
        self.records.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// Name order, each name once (the last sent), no dropped header: what
    /// Go sends anyway (then this is not called), rustus does not.
    #[cold]
    fn canonicalise(&mut self) {
        let mut all: Vec<(&str, Option<Vec<&str>>)> = Vec::new();
        let mut rest = &self.records[..];
        while let (Some(name), Some(left)) = (take_str(&mut rest), take_u32(&mut rest)) {
            let values = (left != DROPPED).then(|| (0..left).filter_map(|_| take_str(&mut rest)).collect());
            all.push((name, values));
        }
        // The last sent first; a stable sort keeps it first among its name.
        all.reverse();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.dedup_by(|later, first| later.0 == first.0);
        let mut canonical = Headers {
            records: Vec::with_capacity(self.records.len()),
        };
        for (name, values) in all {
            let Some(values) = values else { continue };
            // Lengths that fitted before fit again.
            let _ = canonical.push_str::<serde_json::Error>(name);
            canonical.push_u32(u32::try_from(values.len()).unwrap_or(DROPPED));
            for v in values {
                let _ = canonical.push_str::<serde_json::Error>(v);
            }
        }
        *self = canonical;
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.strings() == other.strings()
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Headers").field(&self.strings()).finish()
    }
}

/// `HTTPRequest`: the client request that caused the hook.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// `Method`.
    pub method: String,
    /// `URI`.
    pub uri: String,
    /// `RemoteAddr` (tusd `ip:port`, rustus without port).
    pub remote_addr: String,
    /// `Header`.
    pub header: Headers,
}

/// One parsed hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Which answer style.
    pub protocol: Protocol,
    /// Which hook.
    pub name: HookName,
    /// The upload.
    pub upload: Upload,
    /// The causing request (absent in some producers' events).
    pub request: HttpRequest,
}

/// A body that is not a hook. The message says what is wrong without echoing
/// values from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookError {
    /// Not JSON at all.
    NotJson(String),
    /// JSON, but not an object.
    NotAnObject,
    /// Neither `Type`/`Event` (v2) nor `Upload` (v1).
    UnknownShape,
    /// v2: `Type` missing or not a string.
    BadType,
    /// v2: `Event` missing or not an object.
    NoEvent,
    /// v2: `Event` has no `Upload` object.
    NoUpload,
    /// v1: a bare `Upload` without a `Hook-Name` header.
    NoHookName,
    /// A field has the wrong type.
    Field(String),
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::NotJson(e) => write!(f, "hook body is not JSON: {e}"),
            HookError::NotAnObject => f.write_str("hook body is not a JSON object"),
            HookError::UnknownShape => f.write_str(
                "hook body is neither a tusd v2 event ({\"Type\",\"Event\"}) nor a tusd v1 hook ({\"Upload\"} with a Hook-Name header)",
            ),
            HookError::BadType => f.write_str("tusd v2 event has no string \"Type\""),
            HookError::NoEvent => f.write_str("tusd v2 event has no \"Event\" object"),
            HookError::NoUpload => f.write_str("tusd v2 event has no \"Event.Upload\" object"),
            HookError::NoHookName => {
                f.write_str("tusd v1 hook without a Hook-Name header (or with an empty one)")
            }
            HookError::Field(e) => write!(f, "malformed hook: {e}"),
        }
    }
}

impl std::error::Error for HookError {}

/// Parses one hook POST body. `hook_name_header` is the value of the request's
/// `Hook-Name` header (matched case-insensitively by the caller), if any.
///
/// One pass from the text (UTF-8 checked once for the whole body, so
/// serde_json does not check each string again) into the typed fields, in
/// place, without a `serde_json::Value` tree. Only a refused body costs more:
/// it is read again to name the malformed field's path
/// ([`serde_path_to_error`]), and checked as a whole, so that a body that is
/// not JSON is [`HookError::NotJson`] whatever else is wrong with it.
pub fn parse(body: &[u8], hook_name_header: Option<&str>) -> Result<Hook, HookError> {
    let read = match std::str::from_utf8(body) {
        Ok(text) => match read_hook(text, hook_name_header, Paths::Skipped) {
            Err(e) if e == MALFORMED => read_hook(text, hook_name_header, Paths::Recorded),
            read => read,
        },
        Err(_) => Err(MALFORMED), // not_json says where
    };
    read.map_err(|e| not_json(body).unwrap_or(e))
}

/// Parses a tusd filestore `.info` file (a serialised `FileInfo`, the same
/// shape as `Upload`), for finalize-pending.
pub fn parse_file_info(bytes: &[u8]) -> Result<Upload, HookError> {
    let read_info = |paths| {
        let mut upload = Upload::default();
        let mut fields = UploadFields::new(&mut upload);
        match read_text(
            std::str::from_utf8(bytes).map_err(|_| MALFORMED)?,
            Lenient(&mut fields, Depth::TOP),
            "FileInfo",
            paths,
        )? {
            true => Ok(upload),
            false => Err(HookError::NotAnObject),
        }
    };
    let read = match read_info(Paths::Skipped) {
        Err(e) if e == MALFORMED => read_info(Paths::Recorded),
        read => read,
    };
    read.map_err(|e| not_json(bytes).unwrap_or(e))
}

/// Whether a read records the path of a malformed field (only needed when
/// there is one: serde_path_to_error copies every key it passes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paths {
    Skipped,
    Recorded,
}

/// A malformed field met without [`Paths::Recorded`]: read again to name it.
const MALFORMED: HookError = HookError::Field(String::new());

/// The model's top level, then the shape decision.
///
/// A v2 event is recognised by a top-level `Type` or `Event`, which may come
/// after v1's fields (`Upload`, `upload`, `HTTPRequest`), so these are kept as
/// text until the shape is known, then read (v1) or checked (v2: unused).
fn read_hook(text: &str, hook_name_header: Option<&str>, paths: Paths) -> Result<Hook, HookError> {
    let mut hook = Hook {
        protocol: Protocol::V2,
        name: HookName::PreCreate,
        upload: Upload::default(),
        request: HttpRequest::default(),
    };
    let mut top = TopFields::new(&mut hook);
    if !read_text(text, Lenient(&mut top, Depth::TOP), "", paths)? {
        return Err(HookError::NotAnObject);
    }
    let TopFields {
        kind,
        event,
        event_upload,
        upload,
        upload_lower,
        request,
        ..
    } = top;
    let inside = Depth::TOP.child();
    if kind.is_some() || event != Seen::Absent {
        for unused in [upload, upload_lower, request].into_iter().flatten() {
            check_text(unused, inside)?;
        }
        hook.name = match kind {
            Some(Some(kind)) => HookName::parse(&kind),
            _ => return Err(HookError::BadType),
        };
        if event != Seen::Read {
            return Err(HookError::NoEvent);
        }
        if event_upload != Seen::Read {
            return Err(HookError::NoUpload);
        }
        return Ok(hook);
    }

    let (upload, spare) = match (upload, upload_lower) {
        (Some(upload), spare) => (upload, spare),
        (None, Some(upload)) => (upload, None),
        (None, None) => return Err(HookError::UnknownShape),
    };
    if let Some(spare) = spare {
        check_text(spare, inside)?;
    }
    if !upload.get().starts_with('{') {
        return Err(HookError::Field("\"Upload\" is not an object".into()));
    }
    hook.name = match hook_name_header.map(str::trim) {
        Some(n) if !n.is_empty() => HookName::parse(n),
        _ => return Err(HookError::NoHookName),
    };
    hook.protocol = Protocol::V1;
    let mut fields = UploadFields::new(&mut hook.upload);
    read_text(upload.get(), Lenient(&mut fields, inside), "Upload", paths)?;
    if let Some(request) = request {
        read_text(
            request.get(),
            Nullable(&mut hook.request, inside),
            "HTTPRequest",
            paths,
        )?;
    }
    Ok(hook)
}

/// Reads all of `text` with `seed`; `at` is the path of `text` in the body.
/// A malformed field is [`MALFORMED`], or named by its path if `paths` says so.
fn read_text<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
    at: &str,
    paths: Paths,
) -> Result<S::Value, HookError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let read = match paths {
        Paths::Skipped => seed.deserialize(&mut de).map_err(|e| (e, None)),
        Paths::Recorded => {
            let mut track = serde_path_to_error::Track::new();
            let read = seed.deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
            read.map_err(|e| (e, Some(track.path())))
        }
    };
    match read.and_then(|v| de.end().map(|()| v).map_err(|e| (e, None))) {
        Ok(v) => Ok(v),
        Err((e, path)) if e.is_data() => Err(match path {
            Some(path) => field_error(&e, at, &path),
            None => MALFORMED,
        }),
        Err((e, _)) => Err(HookError::NotJson(redact(&e.to_string()))),
    }
}

/// `Event.Upload.Size: invalid type: string "…", expected i64`.
#[cold]
fn field_error(err: &serde_json::Error, at: &str, path: &serde_path_to_error::Path) -> HookError {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    HookError::Field(format!("{}: {}", field_path(at, path), redact(message)))
}

/// `Event.Upload.Size`, `Upload.PartialUploads[2]`: the path of a malformed
/// field. A map key that is not a name of the model (a `MetaData` key other
/// than the token's five) is written `…`: the body chose it.
fn field_path(at: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = String::from(at);
    for segment in path {
        if let serde_path_to_error::Segment::Seq { index } = segment {
            let _ = write!(out, "[{index}]");
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(match segment {
            serde_path_to_error::Segment::Map { key }
                if KNOWN_NAMES.contains(&key.as_str()) || TOKEN_FIELDS.contains(&key.as_str()) =>
            {
                key
            }
            _ => "…",
        });
    }
    if out.is_empty() {
        out.push_str("body");
    }
    out
}

/// Every field name of the model.
const KNOWN_NAMES: [&str; 21] = [
    "Type",
    "Event",
    "Upload",
    "upload",
    "HTTPRequest",
    "ID",
    "Size",
    "SizeIsDeferred",
    "Offset",
    "MetaData",
    "Metadata",
    "IsPartial",
    "IsFinal",
    "PartialUploads",
    "Storage",
    "Path",
    "InfoPath",
    "Method",
    "URI",
    "RemoteAddr",
    "Header",
];

/// `Some(NotJson)` when `body` is not JSON as `serde_json::Value` defines it.
/// Only a refused body is checked as a whole.
#[cold]
fn not_json(body: &[u8]) -> Option<HookError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let checked = Skip(Depth::TOP).deserialize(&mut de).and_then(|()| de.end());
    checked.err().map(|e| HookError::NotJson(redact(&e.to_string())))
}

/// Checks `raw`, a value kept as text at `depth` in the body, as `Value`
/// would have read it there.
fn check_text(raw: &RawValue, depth: Depth) -> Result<(), HookError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Skip(depth)
        .deserialize(&mut de)
        .map_err(|e| HookError::NotJson(redact(&e.to_string())))
}

/// How deep a value is: the number of arrays and objects around it.
///
/// serde_json refuses a 128th level of nesting (its recursion limit; `Value`
/// obeys it). It counts by itself in the body, but not inside a value kept as
/// text and read apart (v1's fields, until the shape is known), nor in the
/// text serde's `IgnoredAny` skips; so the model counts too, from where the
/// value is in the body.
#[derive(Debug, Clone, Copy)]
struct Depth(u8);

impl Depth {
    /// The body itself.
    const TOP: Depth = Depth(0);
    /// serde_json's limit: the most arrays and objects around a value.
    const MAX: u8 = 127;

    /// The depth of the values inside an array or object at `self`.
    fn enter<E: de::Error>(self) -> Result<Depth, E> {
        if self.0 >= Depth::MAX {
            return Err(E::custom("recursion limit exceeded"));
        }
        Ok(Depth(self.0 + 1))
    }

    /// [`Depth::enter`] for a fixed place of the model (never near the limit).
    const fn child(self) -> Depth {
        Depth(self.0 + 1)
    }
}

/// A visitor's `visit_bool`, `visit_i64`, `visit_u64` and `visit_f64`, each
/// answering `Ok($value)`.
macro_rules! numbers_and_bools_are {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Any JSON value, read and dropped. Unlike serde's `IgnoredAny` (which
/// serde_json skips over checking only the syntax), every string is decoded
/// (a lone surrogate escape is refused) and every number converted (one beyond
/// f64 is refused), and the nesting is counted: what `Value` refuses, this
/// refuses (F1).
#[derive(Clone, Copy)]
struct Skip(Depth);

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    numbers_and_bools_are!(());
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq, self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        skip_map(map, self.0)
    }
}

/// Drops the elements of an array at `depth`, each checked ([`Skip`]).
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A, depth: Depth) -> Result<(), A::Error> {
    let inner = Skip(depth.enter()?);
    while seq.next_element_seed(inner)?.is_some() {}
    Ok(())
}

/// Drops the entries of an object at `depth`, each checked ([`Skip`]).
fn skip_map<'de, A: MapAccess<'de>>(mut map: A, depth: Depth) -> Result<(), A::Error> {
    let inner = Skip(depth.enter()?);
    while map.next_key_seed(inner)?.is_some() {
        map.next_value_seed(inner)?;
    }
    Ok(())
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// A struct of the model, read in place from a JSON object, field by field.
/// Every field a body gives is read with its type (also one given twice: the
/// last counts); an unknown field is checked ([`Skip`]) and dropped.
trait Fields<'de> {
    /// Reads the value of field `name`; `depth` is the depth of the values of
    /// this object.
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error>;
    /// After the last field.
    fn finish(&mut self) {}
}

fn read_fields<'de, F: Fields<'de>, A: MapAccess<'de>>(
    fields: &mut F,
    mut map: A,
    depth: Depth,
) -> Result<(), A::Error> {
    let inner = depth.enter()?;
    while let Some(Key(name)) = map.next_key()? {
        fields.field(&name, &mut map, inner)?;
    }
    fields.finish();
    Ok(())
}

/// A struct at `depth` where the shape check wants it, not the type check:
/// an object is read (`true`); anything else is checked, dropped and `false`,
/// for the caller to answer (`NoEvent`, `NoUpload`, …).
struct Lenient<'a, F>(&'a mut F, Depth);

/// A struct at `depth` that may be `null` (`false`); anything else than an
/// object or `null` is a malformed field.
struct Nullable<'a, F>(&'a mut F, Depth);

impl<'de, F: Fields<'de>> DeserializeSeed<'de> for Lenient<'_, F> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: Fields<'de>> DeserializeSeed<'de> for Nullable<'_, F> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: Fields<'de>> Visitor<'de> for Lenient<'_, F> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        read_fields(self.0, map, self.1).map(|()| true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        skip_seq(seq, self.1).map(|()| false)
    }
    numbers_and_bools_are!(false);
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

impl<'de, F: Fields<'de>> Visitor<'de> for Nullable<'_, F> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        read_fields(self.0, map, self.1).map(|()| true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// What a body gave for a struct field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Seen {
    #[default]
    Absent,
    /// Something else than an object.
    NotAnObject,
    /// An object, read.
    Read,
}

impl Seen {
    fn of(read: bool) -> Seen {
        if read {
            Seen::Read
        } else {
            Seen::NotAnObject
        }
    }
}

/// The top level of either shape; v2's `Event` is read into the hook.
struct TopFields<'de, 'a> {
    hook: &'a mut Hook,
    /// `Type`: `Some(None)` when it is not a string.
    kind: Option<Option<Cow<'de, str>>>,
    event: Seen,
    /// `Event.Upload`, of the last `Event`.
    event_upload: Seen,
    /// v1's fields, as text until the shape is known.
    upload: Option<&'de RawValue>,
    upload_lower: Option<&'de RawValue>,
    request: Option<&'de RawValue>,
}

impl<'a> TopFields<'_, 'a> {
    fn new(hook: &'a mut Hook) -> Self {
        TopFields {
            hook,
            kind: None,
            event: Seen::Absent,
            event_upload: Seen::Absent,
            upload: None,
            upload_lower: None,
            request: None,
        }
    }
}

impl<'de> Fields<'de> for TopFields<'de, '_> {
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error> {
        let kept = match name {
            "Type" => {
                self.kind = Some(map.next_value_seed(TypeName(depth))?);
                return Ok(());
            }
            "Event" => {
                if self.event != Seen::Absent {
                    // Given twice: the last counts, as a whole.
                    self.hook.upload = Upload::default();
                    self.hook.request = HttpRequest::default();
                }
                let mut event = EventFields {
                    upload: &mut self.hook.upload,
                    request: &mut self.hook.request,
                    upload_seen: Seen::Absent,
                    request_seen: false,
                };
                self.event = Seen::of(map.next_value_seed(Lenient(&mut event, depth))?);
                self.event_upload = event.upload_seen;
                return Ok(());
            }
            "Upload" => &mut self.upload,
            "upload" => &mut self.upload_lower,
            "HTTPRequest" => &mut self.request,
            _ => return map.next_value_seed(Skip(depth)),
        };
        // Given twice: the last counts, the one before is checked now.
        if let Some(earlier) = kept.replace(map.next_value()?) {
            check_text(earlier, depth).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// `Type`: the string, borrowed from the body unless it has escapes; `None`
/// for anything else (checked and dropped).
#[derive(Clone, Copy)]
struct TypeName(Depth);

impl<'de> DeserializeSeed<'de> for TypeName {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TypeName {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq, self.0).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map, self.0).map(|()| None)
    }
    numbers_and_bools_are!(None);
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// v2's `Event`, read into the hook's upload and request.
struct EventFields<'a> {
    upload: &'a mut Upload,
    request: &'a mut HttpRequest,
    upload_seen: Seen,
    request_seen: bool,
}

impl<'de> Fields<'de> for EventFields<'_> {
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error> {
        match name {
            "Upload" => {
                if self.upload_seen != Seen::Absent {
                    *self.upload = Upload::default();
                }
                let mut fields = UploadFields::new(self.upload);
                self.upload_seen = Seen::of(map.next_value_seed(Lenient(&mut fields, depth))?);
            }
            "HTTPRequest" => {
                if self.request_seen {
                    *self.request = HttpRequest::default();
                }
                self.request_seen = true;
                if !map.next_value_seed(Nullable(&mut *self.request, depth))? {
                    *self.request = HttpRequest::default();
                }
            }
            _ => map.next_value_seed(Skip(depth))?,
        }
        Ok(())
    }
}

/// `Upload` (tusd's `FileInfo`), read in place. `null` is the default of every
/// field.
struct UploadFields<'a> {
    upload: &'a mut Upload,
    /// Which spellings of `MetaData` were given: both is one too many.
    metadata_spellings: (bool, bool),
}

impl<'a> UploadFields<'a> {
    fn new(upload: &'a mut Upload) -> Self {
        UploadFields {
            upload,
            metadata_spellings: (false, false),
        }
    }
}

impl<'de> Fields<'de> for UploadFields<'_> {
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error> {
        let u = &mut *self.upload;
        match name {
            "ID" => u.id = map.next_value::<Option<String>>()?.unwrap_or_default(),
            "Size" => u.size = map.next_value::<Option<Count>>()?.map(|c| c.0),
            "SizeIsDeferred" => u.size_is_deferred = map.next_value::<Option<bool>>()?.unwrap_or(false),
            "Offset" => u.offset = map.next_value::<Option<Count>>()?.map_or(0, |c| c.0),
            "MetaData" | "Metadata" => {
                let spellings = &mut self.metadata_spellings;
                *spellings = (
                    spellings.0 || name == "MetaData",
                    spellings.1 || name == "Metadata",
                );
                if *spellings == (true, true) {
                    return Err(de::Error::duplicate_field("MetaData"));
                }
                u.metadata = map.next_value::<Option<Metadata>>()?.unwrap_or_default();
            }
            "IsPartial" => u.is_partial = map.next_value::<Option<bool>>()?.unwrap_or(false),
            "IsFinal" => u.is_final = map.next_value::<Option<bool>>()?.unwrap_or(false),
            "PartialUploads" => {
                u.partial_uploads = map.next_value::<Option<Vec<String>>>()?.unwrap_or_default()
            }
            "Storage" => {
                let mut storage = Storage::default();
                let read = map.next_value_seed(Nullable(&mut storage, depth))?;
                u.storage = read.then_some(storage);
            }
            _ => map.next_value_seed(Skip(depth))?,
        }
        Ok(())
    }
    fn finish(&mut self) {
        // A length that is not there is deferred, whatever `SizeIsDeferred` says.
        self.upload.size_is_deferred |= self.upload.size.is_none();
    }
}

/// `Size`, `Offset`: an integer from 0 to `i64::MAX` (Go's `int64`).
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u64::try_from(n)
            .map(Count)
            .map_err(|_| de::Error::invalid_value(Unexpected::Signed(n), &"a non-negative integer"))
    }
}

impl<'de> Fields<'de> for Storage {
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error> {
        match name {
            "Type" => self.kind = map.next_value()?,
            "Path" => self.path = map.next_value()?,
            "InfoPath" => self.info_path = map.next_value()?,
            _ => map.next_value_seed(Skip(depth))?,
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for HttpRequest {
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A, depth: Depth) -> Result<(), A::Error> {
        match name {
            "Method" => self.method = map.next_value::<Option<String>>()?.unwrap_or_default(),
            "URI" => self.uri = map.next_value::<Option<String>>()?.unwrap_or_default(),
            "RemoteAddr" => self.remote_addr = map.next_value::<Option<String>>()?.unwrap_or_default(),
            "Header" => self.header = map.next_value_seed(HeaderMap(depth))?,
            _ => map.next_value_seed(Skip(depth))?,
        }
        Ok(())
    }
}

/// `HTTPRequest.Header` at `depth`: an object, read into [`Headers`], or
/// `null` (no headers).
#[derive(Clone, Copy)]
struct HeaderMap(Depth);

impl<'de> DeserializeSeed<'de> for HeaderMap {
    type Value = Headers;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Headers, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderMap {
    type Value = Headers;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_unit<E>(self) -> Result<Headers, E> {
        Ok(Headers::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
        let depth = self.0.enter()?;
        // Room for what a browser usually sends, in one allocation.
        let mut headers = Headers {
            records: Vec::with_capacity(1024),
        };
        let mut canonical = true;
        let mut previous: Option<Cow<'de, str>> = None;
        while let Some(Key(name)) = map.next_key()? {
            canonical &= previous.is_none_or(|p| p < name);
            headers.push_str(&name)?;
            let at = headers.records.len();
            headers.push_u32(0);
            let seed = HeaderValues {
                headers: &mut headers,
                depth,
            };
            let count = match map.next_value_seed(seed)? {
                Some(n) => u32::try_from(n).map_err(|_| de::Error::custom("too many header values"))?,
                None => DROPPED,
            };
            canonical &= count != DROPPED;
            if let Some(slot) = headers.records.get_mut(at..at + 4) {
                slot.copy_from_slice(&count.to_le_bytes());
            }
            previous = Some(name);
        }
        if !canonical {
            headers.canonicalise();
        }
        Ok(headers)
    }
}

/// One header's value, its strings added to `headers`: `Some(count)` for a
/// string or an array, `None` (checked and dropped) for anything else.
struct HeaderValues<'a> {
    headers: &'a mut Headers,
    depth: Depth,
}

impl<'de> DeserializeSeed<'de> for HeaderValues<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderValues<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.headers.push_str(v)?;
        Ok(Some(1))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let depth = self.depth.enter()?;
        let mut n = 0;
        while let Some(kept) = seq.next_element_seed(HeaderValue {
            headers: &mut *self.headers,
            depth,
        })? {
            n += usize::from(kept);
        }
        Ok(Some(n))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map, self.depth).map(|()| None)
    }
    numbers_and_bools_are!(None);
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An item of a header's array: a string is added to `headers` (`true`),
/// anything else is checked and dropped.
struct HeaderValue<'a> {
    headers: &'a mut Headers,
    depth: Depth,
}

impl<'de> DeserializeSeed<'de> for HeaderValue<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderValue<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.headers.push_str(v)?;
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        skip_seq(seq, self.depth).map(|()| false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        skip_map(map, self.depth).map(|()| false)
    }
    numbers_and_bools_are!(false);
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// serde messages quote offending values (`invalid type: string "…"`): drop
/// the quoted parts, so no metadata value (a token) is echoed back or logged.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match (c, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quotes = false;
                out.push('"');
            }
            (_, false) => out.push(c),
            (_, true) => {}
        }
    }
    if in_quotes {
        out.push('"');
    }
    out
}

/// Whether an object of `body` (valid JSON) gives a key twice (`false` for
/// a body that is not JSON). For the tests and the `hook_json` fuzz target,
/// which compare the model with `serde_json::Value` (which keeps the last of
/// repeated keys).
#[doc(hidden)]
pub fn repeats_a_key(body: &[u8]) -> bool {
    struct Repeats(bool);
    impl<'de> Deserialize<'de> for Repeats {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Keys).map(Repeats)
        }
    }
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut any = false;
            while let Some(Repeats(r)) = seq.next_element()? {
                any |= r;
            }
            Ok(any)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut any = false;
            while let Some(key) = map.next_key::<String>()? {
                any |= !seen.insert(key);
                any |= map.next_value::<Repeats>()?.0;
            }
            Ok(any)
        }
    }
    serde_json::from_slice::<Repeats>(body).is_ok_and(|r| r.0)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// A fuzz reproducer of `fuzz/findings/` (`hook_json` input: three control
    /// bytes, then the body).
    fn finding(input: &[u8]) -> &[u8] {
        &input[3..]
    }

    /// F1 (fuzz/findings/README.md): a body must be refused as not JSON exactly
    /// when `serde_json::Value` refuses it, also for what a parser skips.
    fn assert_refused_like_value(body: &[u8]) {
        let value = serde_json::from_slice::<Value>(body);
        assert!(value.is_err(), "the reproducer is JSON after all");
        let got = parse(body, None);
        assert!(matches!(got, Err(HookError::NotJson(_))), "{got:?}");
        let a = super::super::answer::answer_error(&got.unwrap_err());
        assert_eq!(a.status, 400);
        assert!(String::from_utf8_lossy(&a.body).contains("bad_hook"));
    }

    #[test]
    fn f1_lone_surrogate_in_an_unknown_field_is_not_json() {
        assert_refused_like_value(finding(include_bytes!(
            "../../../../fuzz/findings/f1-lone-surrogate"
        )));
    }

    #[test]
    fn f1_invalid_utf8_in_an_unknown_field_is_not_json() {
        assert_refused_like_value(finding(include_bytes!(
            "../../../../fuzz/findings/f1-invalid-utf8"
        )));
    }

    /// The rest of the F1 class, where the old parsers skipped or kept text
    /// unchecked: escapes, numbers and nesting depth in unknown fields, in the
    /// lazily read `Header`, in v1 fields of a v2 body. Each body is refused as
    /// not JSON iff `serde_json::Value` refuses it.
    #[test]
    fn f1_class_refused_exactly_like_value() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut bodies: Vec<(String, Option<&str>)> = Vec::new();
        for bad in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            "1e400",
            "-1e999",
            &format!("1{}", "0".repeat(400)),
        ] {
            for body in [
                format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"X":{bad}}}}}"#),
                format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{"X":[{bad}]}}}}}}"#),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"HTTPRequest":{{"Header":{{"A":[{bad}]}}}}}}}}"#
                ),
                format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{}}}},"Upload":{{"X":{bad}}}}}"#),
                format!(r#"{{"Upload":{{"ID":"a"}},"upload":{{"X":{bad}}}}}"#),
                format!(r#"{{"Upload":{{"ID":"a"}},"HTTPRequest":{{"Header":{{"A":{bad}}}}}}}"#),
            ] {
                bodies.push((body.clone(), None));
                bodies.push((body, Some("pre-create")));
            }
        }
        // Nesting right below and at serde_json's limit (127 levels), in each
        // place a value can be skipped or kept as text.
        for n in 120..=127 {
            for body in [
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"X":{}}}}}"#,
                    nest(n)
                ),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{"X":{}}}}}}}"#,
                    nest(n)
                ),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{"Storage":{{"X":{}}}}}}}}}"#,
                    nest(n)
                ),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"HTTPRequest":{{"Header":{{"A":{}}}}}}}}}"#,
                    nest(n)
                ),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{}}}},"Upload":{}}}"#,
                    nest(n)
                ),
                format!(
                    r#"{{"Type":"pre-create","Event":{{"Upload":{{}}}},"HTTPRequest":{{"Header":{}}}}}"#,
                    nest(n)
                ),
                format!(r#"{{"Upload":{{"X":{}}}}}"#, nest(n)),
                format!(r#"{{"Upload":{{}},"upload":{{"X":{}}}}}"#, nest(n)),
                format!(r#"{{"Upload":{{"Storage":{{"X":{}}}}}}}"#, nest(n)),
                format!(r#"{{"Upload":{{}},"HTTPRequest":{{"X":{}}}}}"#, nest(n)),
                format!(
                    r#"{{"Upload":{{}},"HTTPRequest":{{"Header":{{"A":{}}}}}}}"#,
                    nest(n)
                ),
                format!(r#"{{"X":{},"Upload":{{}}}}"#, nest(n)),
                nest(n + 1),
            ] {
                bodies.push((body, Some("pre-create")));
            }
        }
        let mut refused = 0;
        for (body, name) in &bodies {
            let got = parse(body.as_bytes(), *name);
            match serde_json::from_slice::<Value>(body.as_bytes()) {
                Err(_) => {
                    refused += 1;
                    assert!(matches!(got, Err(HookError::NotJson(_))), "{body}: {got:?}");
                }
                Ok(_) => assert!(!matches!(got, Err(HookError::NotJson(_))), "{body}: {got:?}"),
            }
        }
        assert!(refused >= 80, "{refused}");
    }

    #[test]
    fn f1_number_out_of_range_in_an_unknown_field_is_not_json() {
        assert_refused_like_value(finding(include_bytes!(
            "../../../../fuzz/findings/f1-number-out-of-range"
        )));
    }

    /// `text` re-serialised from its `serde_json::Value`: keys sorted, each
    /// once (the last), no spaces, escapes as serde_json writes them.
    fn reserialised(text: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::from_slice::<Value>(text).unwrap()).unwrap()
    }

    /// All fixtures and mutations of them (wrong types, `null`s, repeated
    /// fields, both `MetaData` spellings, headers of every shape): not JSON
    /// exactly when `Value` says so, each reads as its re-serialised `Value` does, and
    /// the mutations of the tusd v2 pre-create fixture give what is pinned
    /// here.
    #[test]
    fn mutated_fixtures_read_like_their_reserialised_json() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let mut bodies: Vec<String> = Vec::new();
        for dir in ["tusd-v2", "rustus-v1"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                bodies.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
            }
        }
        let base = bodies.clone();
        // Each edit, and what it gives on tusd-v2/pre-create.json: Ok, or the
        // error's Debug text up to its message.
        let edits: [(&str, &str, &str); 22] = [
            ("\"Upload\": {", "\"Upload\": [], \"X\": {", "NoUpload"),
            ("\"Upload\": {", "\"Upload\": null, \"X\": {", "NoUpload"),
            ("\"Event\": {", "\"Event\": [], \"X\": {", "NoEvent"),
            ("\"Type\": \"", "\"Type\": 1, \"T\": \"", "BadType"),
            ("\"Type\": \"", "\"Type\": \"x\", \"Type\": \"", "Ok"),
            ("\"Size\": ", "\"Size\": -", "Field(\"Event.Upload.Size: invalid value: integer `-1048576`, expected a non-negative integer\")"),
            ("\"Size\": ", "\"Size\": 1.5, \"S\": ", "Field(\"Event.Upload.Size: invalid type: floating point `1.5`, expected i64\")"),
            ("\"Size\": ", "\"Size\": null, \"S\": ", "Ok"),
            ("\"MetaData\": {", "\"Metadata\": {}, \"MetaData\": {", "Field(\"Event.Upload: duplicate field `MetaData`\")"),
            ("\"MetaData\": {", "\"MetaData\": {\"n\": 1, ", "Field(\"Event.Upload.MetaData.…: invalid type: integer `1`, expected a string\")"),
            ("\"HTTPRequest\": {", "\"HTTPRequest\": null, \"H\": {", "Ok"),
            // A struct is an object; serde would read an array's items as its
            // fields in order (this used to be read as an empty request).
            ("\"HTTPRequest\": {", "\"HTTPRequest\": [], \"H\": {", "Field(\"Event.HTTPRequest: invalid type: sequence, expected a JSON object or null\")"),
            (
                "\"Header\": {",
                "\"Header\": {\"A\": [1, \"b\"], \"B\": null, \"C\": \"c\", ",
                "Ok",
            ),
            ("\"Storage\": null", "\"Storage\": {\"Path\": \"/p\"}", "Ok"),
            ("\"ID\": \"", "\"ID\": \"x\", \"ID\": \"", "Ok"),
            ("\"Event\": {", "\"Event\": {\"Upload\": {}, ", "Ok"),
            // Header: unsorted, repeated (last wins, also a last null), nested
            // values, escapes, and not an object at all.
            (
                "\"Header\": {",
                "\"Header\": {\"Z\": [\"1\"], \"b\": [\"x\"], \"A\": [\"2\"], \"b\": \"y\", \"Z\": null, ",
                "Ok",
            ),
            (
                "\"Header\": {",
                "\"Header\": {\"N\": [[\"a\"], {\"b\": 1}, \"c\\u00e9\\n\", true, 2.5], \"O\": {\"x\": [1]}, \"P\": [], ",
                "Ok",
            ),
            ("\"Header\": {", "\"Header\": \"x\", \"H\": {", "Field(\"Event.HTTPRequest.Header: invalid type: string \\\"…\\\", expected a map\")"),
            ("\"Header\": {", "\"Header\": [], \"H\": {", "Field(\"Event.HTTPRequest.Header: invalid type: sequence, expected a map\")"),
            ("\"Header\": {", "\"Header\": null, \"H\": {", "Ok"),
            ("\"Header\": {", "\"Header\": 5, \"H\": {", "Field(\"Event.HTTPRequest.Header: invalid type: integer `5`, expected a map\")"),
        ];
        let pre_create = std::fs::read_to_string(root.join("tusd-v2/pre-create.json")).unwrap();
        for (from, to, want) in edits {
            let got = match parse(pre_create.replacen(from, to, 1).as_bytes(), None) {
                Ok(_) => "Ok".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            assert_eq!(got, want, "{to}");
        }
        // A field given twice: the last counts, but each must have its type.
        let twice = pre_create.replacen("\"Size\": ", "\"Size\": \"x\", \"Size\": ", 1);
        assert!(matches!(parse(twice.as_bytes(), None), Err(HookError::Field(_))));
        for b in &base {
            for (from, to, _) in edits {
                if b.contains(from) {
                    bodies.push(b.replacen(from, to, 1));
                }
            }
        }
        let mut read = 0;
        for b in &bodies {
            if serde_json::from_slice::<Value>(b.as_bytes()).is_err() {
                // An edit of an empty `Header` leaves a trailing comma.
                assert!(
                    matches!(parse(b.as_bytes(), None), Err(HookError::NotJson(_))),
                    "{b}"
                );
                continue;
            }
            let again = reserialised(b.as_bytes());
            for name in [None, Some("pre-create")] {
                let got = parse(b.as_bytes(), name);
                assert!(!matches!(got, Err(HookError::NotJson(_))), "{b}: {got:?}");
                let want = parse(&again, name);
                if repeats_a_key(b.as_bytes()) {
                    // The re-serialised body has only the last of each.
                    assert!(got.is_err() || got == want, "{b}: {got:?}");
                } else {
                    assert_eq!(got.as_ref().ok(), want.as_ref().ok(), "{b}");
                }
                read += usize::from(got.is_ok());
            }
        }
        assert!(read >= 60, "{read} bodies read");
    }

    #[test]
    fn utf8_checked_once_reads_the_same() {
        let text =
            br#"{"Type":"pre-create","Event":{"Upload":{"ID":"\u00e9t\u00e9","MetaData":{"k":"v\u00e9"}}}}"#;
        let h = parse(text, None).unwrap();
        assert_eq!(h.upload.id, "été");
        assert_eq!(h.upload.metadata.get("k").map(String::as_str), Some("vé"));
        assert_eq!(Ok(h), parse(&reserialised(text), None));
        // Not UTF-8, even in a field nobody reads: not JSON (F1; this used to
        // be read from the bytes and taken).
        let mut bytes = br#"{"Type":"pre-create","Event":{"Upload":{"X":"?"}}}"#.to_vec();
        let q = bytes.iter().position(|&b| b == b'?').unwrap();
        bytes[q] = 0xff;
        assert!(std::str::from_utf8(&bytes).is_err());
        let e = parse(&bytes, None).unwrap_err();
        assert_eq!(
            e,
            HookError::NotJson("invalid unicode code point at line 1 column 46".into())
        );
    }

    #[test]
    fn headers_read_like_a_json_map() {
        let body = br#"{"Type":"pre-create","Event":{"Upload":{},"HTTPRequest":{"Header":{"Z":["1"],"b":["x"],"A":["2",3,"4"],"b":"y","Z":null,"E":"\u00e9"}}}}"#;
        let h = parse(body, None).unwrap();
        let hd = &h.request.header;
        assert_eq!(hd.len(), 3);
        assert_eq!(hd.get("b"), Some("y"));
        assert_eq!(hd.get("z"), None);
        assert_eq!(hd.get_all("a").collect::<Vec<_>>(), vec!["2", "4"]);
        assert_eq!(hd.get("e"), Some("é"));
        // As a JSON map holds them: the re-serialised body has each name once.
        let again = parse(&reserialised(body), None).unwrap();
        assert_eq!(h, again);
        assert_eq!(
            format!("{:?}", h.request.header),
            format!("{:?}", again.request.header)
        );
        assert_eq!(
            format!("{:?}", again.request.header),
            r#"Headers([("A", ["2", "4"]), ("E", ["é"]), ("b", ["y"])])"#
        );
    }

    /// A malformed field is named by its path (serde_path_to_error), in either
    /// shape, also after a kept `Header` or v1 fields; a `MetaData` key other
    /// than the token's five is not repeated; no value is.
    #[test]
    fn field_errors_name_the_path() {
        let cases: [(&[u8], Option<&str>, &str); 11] = [
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"Size":"12"}}}"#,
                None,
                r#"Event.Upload.Size: invalid type: string "…", expected i64"#,
            ),
            (
                br#"{"Upload":{"ID":"x"},"Type":"pre-create","Event":{"HTTPRequest":{"Header":{"A":["b"]},"URI":5},"Upload":{}}}"#,
                None,
                "Event.HTTPRequest.URI: invalid type: integer `5`, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"PartialUploads":["a",7]}}}"#,
                None,
                "Event.Upload.PartialUploads[1]: invalid type: integer `7`, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"MetaData":{"upload-token":["0123456789abcdef0123456789abcdef"]}}}}"#,
                None,
                "Event.Upload.MetaData.upload-token: invalid type: sequence, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"MetaData":{"0123456789abcdef0123456789abcdef":1}}}}"#,
                None,
                "Event.Upload.MetaData.…: invalid type: integer `1`, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"Storage":{"Path":"/p","Path":false}}}}"#,
                None,
                "Event.Upload.Storage.Path: invalid type: boolean `false`, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"Offset":9223372036854775808}}}"#,
                None,
                "Event.Upload.Offset: invalid value: integer `9223372036854775808`, expected i64",
            ),
            (
                br#"{"Upload":{"Size":1,"Metadata":{},"MetaData":{}}}"#,
                Some("pre-create"),
                "Upload: duplicate field `MetaData`",
            ),
            (
                br#"{"upload":{"IsFinal":"yes"}}"#,
                Some("pre-create"),
                r#"Upload.IsFinal: invalid type: string "…", expected a boolean"#,
            ),
            (
                br#"{"HTTPRequest":{"Header":{"A":["b"]},"Method":["POST"]},"Upload":{}}"#,
                Some("pre-create"),
                "HTTPRequest.Method: invalid type: sequence, expected a string",
            ),
            (
                br#"{"Upload":{},"HTTPRequest":"GET"}"#,
                Some("pre-create"),
                r#"HTTPRequest: invalid type: string "…", expected a JSON object or null"#,
            ),
        ];
        for (body, name, want) in cases {
            assert_eq!(
                parse(body, name),
                Err(HookError::Field(want.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_file_info(br#"{"ID":"a","Size":-5}"#),
            Err(HookError::Field(
                "FileInfo.Size: invalid value: integer `-5`, expected a non-negative integer".into()
            ))
        );
        assert_eq!(parse_file_info(b"[]"), Err(HookError::NotAnObject));
        assert!(matches!(
            parse_file_info(b"{\"ID\":\"\\ud800\"}"),
            Err(HookError::NotJson(_))
        ));
    }

    /// Newer rustus: `upload` in lower case; `Upload` wins when both are
    /// given (the other one is still checked as JSON). In a v2 event v1's
    /// fields are unknown fields: checked, not read.
    #[test]
    fn v1_fields_lower_case_and_unused() {
        let h = parse(br#"{"upload":{"ID":"u","Size":3}}"#, Some("post-create")).unwrap();
        assert_eq!((h.protocol, h.upload.id.as_str()), (Protocol::V1, "u"));
        let h = parse(br#"{"upload":{"ID":5},"Upload":{"ID":"u"}}"#, Some("pre-create")).unwrap();
        assert_eq!(h.upload.id, "u");
        let h = parse(
            br#"{"Upload":5,"HTTPRequest":[1],"upload":{"Size":"x"},"Event":{"Upload":{"ID":"e"}},"Type":"post-finish"}"#,
            None,
        )
        .unwrap();
        assert_eq!((h.protocol, h.upload.id.as_str()), (Protocol::V2, "e"));
        assert!(matches!(
            parse(br#"{"Upload":{},"upload":"\ud800"}"#, Some("pre-create")),
            Err(HookError::NotJson(_))
        ));
        assert_eq!(
            parse(br#"{"upload":[]}"#, Some("pre-create")),
            Err(HookError::Field("\"Upload\" is not an object".into()))
        );
        assert_eq!(
            parse(br#"{"HTTPRequest":{}}"#, Some("pre-create")),
            Err(HookError::UnknownShape)
        );
    }

    /// A field given twice (JSON allows it, tusd never does it): the last
    /// counts, and every one must have the field's type.
    #[test]
    fn repeated_fields_last_counts_each_typed() {
        let h = parse(
            br#"{"Type":"post-create","Type":"pre-create","Event":{"Upload":{"ID":"a","Size":1,"ID":"b","Size":null},"Upload":{"ID":"c"}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(h.name, HookName::PreCreate);
        assert_eq!((h.upload.id.as_str(), h.upload.size), ("c", None));
        let h = parse(
            br#"{"Upload":{"ID":"a"},"Upload":{"ID":"b"}}"#,
            Some("pre-create"),
        )
        .unwrap();
        assert_eq!(h.upload.id, "b");
        for body in [
            &br#"{"Type":"pre-create","Event":{"Upload":{"Size":"1","Size":1}}}"#[..],
            br#"{"Type":"pre-create","Event":{"Upload":{"Size":"1"}},"Event":{"Upload":{}}}"#,
        ] {
            assert!(matches!(parse(body, None), Err(HookError::Field(_))));
        }
        // The earlier of two v1 fields is checked as JSON.
        assert!(matches!(
            parse(br#"{"Upload":{"X":1e999},"Upload":{}}"#, Some("pre-create")),
            Err(HookError::NotJson(_))
        ));
        // Not JSON comes first, whatever else is wrong.
        assert!(matches!(
            parse(
                br#"{"Type":"pre-create","Event":{"Upload":{"Size":"x"}},"X":"\ud800"}"#,
                None
            ),
            Err(HookError::NotJson(_))
        ));
    }

    fn v2(json: &str) -> Result<Hook, HookError> {
        parse(json.as_bytes(), None)
    }

    #[test]
    fn minimal_v2() {
        let h = v2(r#"{"Type":"pre-create","Event":{"Upload":{}}}"#).unwrap();
        assert_eq!(h.protocol, Protocol::V2);
        assert_eq!(h.name, HookName::PreCreate);
        assert!(h.upload.metadata.is_empty());
        assert_eq!(h.upload.size, None);
        assert!(h.upload.size_is_deferred, "no Size at all: treated as deferred");
        assert_eq!(h.request, HttpRequest::default());
    }

    #[test]
    fn v2_ignores_hook_name_header_and_unknown_fields() {
        let h = parse(
            br#"{"Type":"post-finish","Extra":1,"Event":{"New":true,"Upload":{"ID":"abc","Size":3,"Offset":3,"Future":[1],"MetaData":null,"Storage":{"Type":"filestore","Path":"/d/abc","InfoPath":"/d/abc.info","Other":"x"}},"HTTPRequest":null}}"#,
            Some("pre-create"),
        )
        .unwrap();
        assert_eq!(h.name, HookName::PostFinish);
        assert_eq!(h.upload.id, "abc");
        assert!(h.upload.is_complete());
        assert_eq!(h.upload.storage_path(), Some(Path::new("/d/abc")));
        assert_eq!(
            h.upload.storage.as_ref().unwrap().info_path.as_deref(),
            Some("/d/abc.info")
        );
    }

    #[test]
    fn v1_needs_hook_name() {
        let body = br#"{"Upload":{"ID":"x","Size":1,"MetaData":{}},"HTTPRequest":{}}"#;
        assert_eq!(parse(body, None).unwrap_err(), HookError::NoHookName);
        assert_eq!(parse(body, Some("  ")).unwrap_err(), HookError::NoHookName);
        let h = parse(body, Some("Pre-Create")).unwrap();
        assert_eq!(h.protocol, Protocol::V1);
        assert_eq!(h.name, HookName::PreCreate);
        let h = parse(body, Some("something-new")).unwrap();
        assert_eq!(h.name, HookName::Other("something-new".into()));
        assert_eq!(h.name.label(), "other");
    }

    #[test]
    fn shape_errors() {
        assert!(matches!(v2("not json"), Err(HookError::NotJson(_))));
        assert!(matches!(v2(""), Err(HookError::NotJson(_))));
        assert_eq!(v2("[1,2]").unwrap_err(), HookError::NotAnObject);
        assert_eq!(v2("{}").unwrap_err(), HookError::UnknownShape);
        assert_eq!(v2(r#"{"Event":{"Upload":{}}}"#).unwrap_err(), HookError::BadType);
        assert_eq!(
            v2(r#"{"Type":5,"Event":{"Upload":{}}}"#).unwrap_err(),
            HookError::BadType
        );
        assert_eq!(v2(r#"{"Type":"pre-create"}"#).unwrap_err(), HookError::NoEvent);
        assert_eq!(
            v2(r#"{"Type":"pre-create","Event":{"HTTPRequest":{}}}"#).unwrap_err(),
            HookError::NoUpload
        );
        assert_eq!(
            v2(r#"{"Type":"something-new","Event":{}}"#).unwrap_err(),
            HookError::NoUpload
        );
        assert_eq!(
            v2(r#"{"Type":"pre-create","Event":{"Upload":null}}"#).unwrap_err(),
            HookError::NoUpload
        );
        assert!(matches!(
            v2(r#"{"Type":"pre-create","Event":{"Upload":{"Size":"12"}}}"#),
            Err(HookError::Field(_))
        ));
        assert!(matches!(
            v2(r#"{"Type":"pre-create","Event":{"Upload":{"Size":-1}}}"#),
            Err(HookError::Field(_))
        ));
        assert!(matches!(
            parse(br#"{"Upload":[]}"#, Some("pre-create")),
            Err(HookError::Field(_))
        ));
    }

    #[test]
    fn errors_do_not_echo_values() {
        let secretish = "0123456789abcdef0123456789abcdef";
        let e = v2(&format!(
            r#"{{"Type":"pre-create","Event":{{"Upload":{{"MetaData":"{secretish}"}}}}}}"#
        ))
        .unwrap_err();
        assert!(matches!(e, HookError::Field(_)));
        assert!(!e.to_string().contains(secretish), "{e}");
        let e = v2(&format!(
            r#"{{"Type":"pre-create","Event":{{"Upload":{{"MetaData":{{"upload-token":["{secretish}"]}}}}}}}}"#
        ))
        .unwrap_err();
        assert!(!e.to_string().contains(secretish), "{e}");
    }

    #[test]
    fn headers_case_insensitive_arrays_or_strings() {
        let h = parse(
            br#"{"Upload":{"Size":0},"HTTPRequest":{"Method":"POST","URI":"/files/","RemoteAddr":"127.0.0.1","Header":{"upload-metadata":["a YQ=="],"X-One":"1","X-Null":null,"X-Mixed":["a",1,"b"]}}}"#,
            Some("pre-create"),
        )
        .unwrap();
        let hd = &h.request.header;
        assert_eq!(hd.get("Upload-Metadata"), Some("a YQ=="));
        assert_eq!(hd.get("x-one"), Some("1"));
        assert_eq!(hd.get("X-Null"), None);
        assert_eq!(hd.get_all("x-mixed").collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(h.request.remote_addr, "127.0.0.1");
    }

    #[test]
    fn rustus_metadata_alias_and_null_size() {
        let h = parse(
            br#"{"Upload":{"ID":"u","Size":null,"SizeIsDeferred":true,"Metadata":{"a":"b"},"Storage":{"Type":"file_storage","Path":null}}}"#,
            Some("pre-create"),
        )
        .unwrap();
        assert_eq!(h.upload.metadata.get("a").map(String::as_str), Some("b"));
        assert_eq!(h.upload.declared_size(), None);
        assert_eq!(h.upload.storage_path(), None);
        assert_eq!(h.upload.storage.unwrap().kind.as_deref(), Some("file_storage"));
    }

    #[test]
    fn hook_names() {
        assert_eq!(HookName::parse("POST-FINISH"), HookName::PostFinish);
        assert_eq!(HookName::parse(" pre-terminate "), HookName::PreTerminate);
        let long = HookName::parse(&format!("x\n{}", "y".repeat(200)));
        let HookName::Other(n) = &long else { panic!() };
        assert_eq!(n.len(), MAX_OTHER_NAME);
        assert!(!n.contains('\n'));
        for l in HookName::LABELS {
            assert_eq!(HookName::parse(l).label(), l);
        }
    }

    #[test]
    fn file_info() {
        let u = parse_file_info(
            br#"{"ID":"abc","Size":5,"SizeIsDeferred":false,"Offset":5,"MetaData":{"asset-key":"k"},"IsPartial":false,"IsFinal":false,"PartialUploads":null,"Storage":{"Type":"filestore","Path":"/d/abc","InfoPath":"/d/abc.info"}}"#,
        )
        .unwrap();
        assert_eq!(u.asset_key(), Some("k"));
        assert!(u.is_complete());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact(r#"invalid type: string "abc", expected"#),
            "invalid type: string \"…\", expected"
        );
        assert_eq!(redact(r#"open "abc"#), "open \"…\"");
    }
}
