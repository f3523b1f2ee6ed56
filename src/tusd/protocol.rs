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

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::token::upload::{Metadata, FIELD_KEY};

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

/// HTTP header map with case-insensitive lookup.
///
/// No decision reads the client's headers, and building them was a sixth of a
/// pre-create's cost (tusd sends `Upload-Metadata` again there, base64). So a
/// well-formed tusd v2 event keeps the `Header` object as its JSON text and
/// reads it on first use; the entries are the same either way.
#[derive(Clone, Default)]
pub struct Headers {
    /// The `Header` object's JSON text (always an object), not read yet.
    raw: Option<Box<RawValue>>,
    /// name → values, in name order (as a JSON map holds them).
    parsed: OnceLock<Vec<(String, Vec<String>)>>,
}

impl Headers {
    fn from_entries(entries: Vec<(String, Vec<String>)>) -> Self {
        Headers {
            raw: None,
            parsed: OnceLock::from(entries),
        }
    }

    fn entries(&self) -> &[(String, Vec<String>)] {
        self.parsed.get_or_init(|| match &self.raw {
            // An object (checked when it was kept): every object reads.
            Some(raw) => serde_json::from_str::<HeaderEntries>(raw.get())
                .map(|h| h.0)
                .unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// First value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v[0].as_str())
    }

    /// All values of header `name` (case-insensitive), over all spellings.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries()
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.iter().map(String::as_str))
    }

    /// Number of distinct header names as sent.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Headers").field(&self.entries()).finish()
    }
}

/// `HTTPRequest.Header` of the typed path: any JSON object, kept as text.
struct LazyHeader(Box<RawValue>);

impl<'de> Deserialize<'de> for LazyHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            // The general parser then gives the precise error.
            return Err(serde::de::Error::custom("expected a map"));
        }
        Ok(LazyHeader(raw))
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
pub fn parse(body: &[u8], hook_name_header: Option<&str>) -> Result<Hook, HookError> {
    if let Some(hook) = parse_v2_typed(body) {
        return Ok(hook);
    }
    parse_via_value(body, hook_name_header)
}

/// The fast path for a well-formed tusd v2 event: straight from the bytes into
/// the typed fields, without building a `serde_json::Value` tree first (that
/// tree was most of the allocations of a pre-create decision). It succeeds only
/// on bodies that [`parse_via_value`] reads the same way; on anything else
/// (another shape, a wrong type, a duplicate key, …) it gives up and the
/// general parser decides, with its precise errors.
fn parse_v2_typed(body: &[u8]) -> Option<Hook> {
    #[derive(Deserialize)]
    struct TypedV2<'a> {
        // Borrowed from the body (copied only if it has escapes).
        #[serde(rename = "Type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(rename = "Event")]
        event: MapOnly<TypedEvent>,
    }
    #[derive(Deserialize)]
    struct TypedEvent {
        #[serde(rename = "Upload")]
        upload: MapOnly<RawUpload>,
        #[serde(rename = "HTTPRequest", default)]
        request: Option<TypedRequest>,
    }
    #[derive(Deserialize)]
    struct TypedRequest {
        #[serde(rename = "Method", default)]
        method: Option<String>,
        #[serde(rename = "URI", default)]
        uri: Option<String>,
        #[serde(rename = "RemoteAddr", default)]
        remote_addr: Option<String>,
        #[serde(rename = "Header", default)]
        header: Option<LazyHeader>,
    }
    // UTF-8 checked once for the whole body: from a `&str`, serde_json does
    // not check each string again (one pass instead of one per string). A body
    // that is not UTF-8 is read from the bytes, as before.
    let v: TypedV2 = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text).ok()?,
        Err(_) => serde_json::from_slice(body).ok()?,
    };
    let event = v.event.0;
    Some(Hook {
        protocol: Protocol::V2,
        name: HookName::parse(&v.kind),
        upload: upload_from_raw(event.upload.0, "Event.Upload").ok()?,
        request: event
            .request
            .map(|r| HttpRequest {
                method: r.method.unwrap_or_default(),
                uri: r.uri.unwrap_or_default(),
                remote_addr: r.remote_addr.unwrap_or_default(),
                header: Headers {
                    raw: r.header.map(|h| h.0),
                    parsed: OnceLock::new(),
                },
            })
            .unwrap_or_default(),
    })
}

/// A struct that must be written as a JSON object (serde would also accept an
/// array for a struct; the general parser does not).
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Objects<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Objects<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Objects(std::marker::PhantomData)).map(MapOnly)
    }
}

/// The general parser: JSON value first, then shape checks with precise errors.
fn parse_via_value(body: &[u8], hook_name_header: Option<&str>) -> Result<Hook, HookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| HookError::NotJson(redact(&e.to_string())))?;
    let Value::Object(mut top) = value else {
        return Err(HookError::NotAnObject);
    };

    if top.contains_key("Type") || top.contains_key("Event") {
        let name = match top.get("Type") {
            Some(Value::String(t)) => HookName::parse(t),
            _ => return Err(HookError::BadType),
        };
        let Some(Value::Object(mut event)) = top.remove("Event") else {
            return Err(HookError::NoEvent);
        };
        let upload = match event.remove("Upload") {
            Some(v @ Value::Object(_)) => upload_from(v, "Event.Upload")?,
            _ => return Err(HookError::NoUpload),
        };
        let request = request_from(event.remove("HTTPRequest"), "Event.HTTPRequest")?;
        return Ok(Hook {
            protocol: Protocol::V2,
            name,
            upload,
            request,
        });
    }

    let upload_value = top.remove("Upload").or_else(|| top.remove("upload"));
    let Some(upload_value) = upload_value else {
        return Err(HookError::UnknownShape);
    };
    if !upload_value.is_object() {
        return Err(HookError::Field("\"Upload\" is not an object".into()));
    }
    let name = match hook_name_header.map(str::trim) {
        Some(n) if !n.is_empty() => HookName::parse(n),
        _ => return Err(HookError::NoHookName),
    };
    let upload = upload_from(upload_value, "Upload")?;
    let request = request_from(top.remove("HTTPRequest"), "HTTPRequest")?;
    Ok(Hook {
        protocol: Protocol::V1,
        name,
        upload,
        request,
    })
}

/// Parses a tusd filestore `.info` file (a serialised `FileInfo`, the same
/// shape as `Upload`), for finalize-pending.
pub fn parse_file_info(bytes: &[u8]) -> Result<Upload, HookError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| HookError::NotJson(redact(&e.to_string())))?;
    if !value.is_object() {
        return Err(HookError::NotAnObject);
    }
    upload_from(value, "FileInfo")
}

#[derive(Deserialize)]
struct RawUpload {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Size", default)]
    size: Option<i64>,
    #[serde(rename = "SizeIsDeferred", default)]
    size_is_deferred: Option<bool>,
    #[serde(rename = "Offset", default)]
    offset: Option<i64>,
    #[serde(rename = "MetaData", alias = "Metadata", default)]
    metadata: Option<Metadata>,
    #[serde(rename = "IsPartial", default)]
    is_partial: Option<bool>,
    #[serde(rename = "IsFinal", default)]
    is_final: Option<bool>,
    #[serde(rename = "PartialUploads", default)]
    partial_uploads: Option<Vec<String>>,
    #[serde(rename = "Storage", default)]
    storage: Option<RawStorage>,
}

#[derive(Deserialize)]
struct RawStorage {
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Path", default)]
    path: Option<String>,
    #[serde(rename = "InfoPath", default)]
    info_path: Option<String>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(rename = "Method", default)]
    method: Option<String>,
    #[serde(rename = "URI", default)]
    uri: Option<String>,
    #[serde(rename = "RemoteAddr", default)]
    remote_addr: Option<String>,
    #[serde(rename = "Header", default)]
    header: Option<HeaderEntries>,
}

/// `HTTPRequest.Header`, read straight into name/values pairs. It used to go
/// through a `Map<String, Value>` first (a tree of small allocations, then
/// copied); the result is the same: entries in name order, a repeated name
/// keeps its last value, and a value that is neither a string nor an array
/// (null, a number, an object) drops the header. Inside an array, only the
/// strings are kept.
struct HeaderEntries(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for HeaderEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = HeaderEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderEntries, A::Error> {
                let mut all: Vec<(String, Option<Vec<String>>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(name) = map.next_key::<String>()? {
                    let HeaderValues(values) = map.next_value()?;
                    all.push((name, values));
                }
                // As a BTreeMap would hold them (Go already sends them sorted
                // and unique, then this is one pass).
                if !all.windows(2).all(|w| w[0].0 < w[1].0) {
                    all.reverse();
                    all.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the last sent comes first
                    all.dedup_by(|later, first| later.0 == first.0);
                }
                Ok(HeaderEntries(
                    all.into_iter()
                        .filter_map(|(name, values)| Some((name, values?)))
                        .collect(),
                ))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// One header's value: `Some` for a string or an array (its strings), `None`
/// for anything else.
struct HeaderValues(Option<Vec<String>>);

impl<'de> Deserialize<'de> for HeaderValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Values;
        impl<'de> serde::de::Visitor<'de> for Values {
            type Value = HeaderValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderValues, E> {
                Ok(HeaderValues(Some(vec![v.to_owned()])))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<HeaderValues, E> {
                Ok(HeaderValues(Some(vec![v])))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValues, A::Error> {
                let mut out = Vec::with_capacity(1);
                while let Some(StringOrOther(item)) = seq.next_element()? {
                    out.extend(item);
                }
                Ok(HeaderValues(Some(out)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderValues, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(HeaderValues(None))
            }
            fn visit_unit<E>(self) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
            fn visit_none<E>(self) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(None))
            }
        }
        d.deserialize_any(Values)
    }
}

/// An array element: its text if it is a string; anything else is skipped.
struct StringOrOther(Option<String>);

impl<'de> Deserialize<'de> for StringOrOther {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item;
        impl<'de> serde::de::Visitor<'de> for Item {
            type Value = StringOrOther;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrOther, E> {
                Ok(StringOrOther(Some(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StringOrOther, E> {
                Ok(StringOrOther(Some(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrOther, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(StringOrOther(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StringOrOther, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(StringOrOther(None))
            }
            fn visit_unit<E>(self) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_none<E>(self) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<StringOrOther, E> {
                Ok(StringOrOther(None))
            }
        }
        d.deserialize_any(Item)
    }
}

fn upload_from(value: Value, ctx: &str) -> Result<Upload, HookError> {
    let raw: RawUpload = serde_json::from_value(value)
        .map_err(|e| HookError::Field(format!("{ctx}: {}", redact(&e.to_string()))))?;
    upload_from_raw(raw, ctx)
}

fn upload_from_raw(raw: RawUpload, ctx: &str) -> Result<Upload, HookError> {
    let non_negative = |v: Option<i64>, field: &str| -> Result<Option<u64>, HookError> {
        v.map(|n| u64::try_from(n).map_err(|_| HookError::Field(format!("{ctx}.{field} is negative"))))
            .transpose()
    };
    let size = non_negative(raw.size, "Size")?;
    let offset = non_negative(raw.offset, "Offset")?.unwrap_or(0);
    let size_is_deferred = raw.size_is_deferred.unwrap_or(false) || size.is_none();
    Ok(Upload {
        id: raw.id.unwrap_or_default(),
        size,
        size_is_deferred,
        offset,
        metadata: raw.metadata.unwrap_or_default(),
        is_partial: raw.is_partial.unwrap_or(false),
        is_final: raw.is_final.unwrap_or(false),
        partial_uploads: raw.partial_uploads.unwrap_or_default(),
        storage: raw.storage.map(|s| Storage {
            kind: s.kind,
            path: s.path,
            info_path: s.info_path,
        }),
    })
}

fn request_from(value: Option<Value>, ctx: &str) -> Result<HttpRequest, HookError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(HttpRequest::default());
    };
    let raw: RawRequest = serde_json::from_value(value)
        .map_err(|e| HookError::Field(format!("{ctx}: {}", redact(&e.to_string()))))?;
    Ok(request_from_raw(Some(raw)))
}

fn request_from_raw(raw: Option<RawRequest>) -> HttpRequest {
    let Some(raw) = raw else {
        return HttpRequest::default();
    };
    // null or other types drop a header (one we cannot use, not a broken hook).
    let header = Headers::from_entries(raw.header.map(|h| h.0).unwrap_or_default());
    HttpRequest {
        method: raw.method.unwrap_or_default(),
        uri: raw.uri.unwrap_or_default(),
        remote_addr: raw.remote_addr.unwrap_or_default(),
        header,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed fast path must read every body it accepts exactly as the
    /// general parser does: all fixtures, and mutations of them.
    #[test]
    fn typed_fast_path_agrees_with_the_general_parser() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut bodies: Vec<String> = Vec::new();
        for dir in ["tusd-v2", "rustus-v1"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                bodies.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
            }
        }
        let base = bodies.clone();
        let edits: [(&str, &str); 22] = [
            ("\"Upload\": {", "\"Upload\": [], \"X\": {"),
            ("\"Upload\": {", "\"Upload\": null, \"X\": {"),
            ("\"Event\": {", "\"Event\": [], \"X\": {"),
            ("\"Type\": \"", "\"Type\": 1, \"T\": \""),
            ("\"Type\": \"", "\"Type\": \"x\", \"Type\": \""),
            ("\"Size\": ", "\"Size\": -"),
            ("\"Size\": ", "\"Size\": 1.5, \"S\": "),
            ("\"Size\": ", "\"Size\": null, \"S\": "),
            ("\"MetaData\": {", "\"Metadata\": {}, \"MetaData\": {"),
            ("\"MetaData\": {", "\"MetaData\": {\"n\": 1, "),
            ("\"HTTPRequest\": {", "\"HTTPRequest\": null, \"H\": {"),
            ("\"HTTPRequest\": {", "\"HTTPRequest\": [], \"H\": {"),
            (
                "\"Header\": {",
                "\"Header\": {\"A\": [1, \"b\"], \"B\": null, \"C\": \"c\", ",
            ),
            ("\"Storage\": null", "\"Storage\": {\"Path\": \"/p\"}"),
            ("\"ID\": \"", "\"ID\": \"x\", \"ID\": \""),
            ("\"Event\": {", "\"Event\": {\"Upload\": {}, "),
            // Header: unsorted, repeated (last wins, also a last null), nested
            // values, escapes, and not an object at all.
            (
                "\"Header\": {",
                "\"Header\": {\"Z\": [\"1\"], \"b\": [\"x\"], \"A\": [\"2\"], \"b\": \"y\", \"Z\": null, ",
            ),
            (
                "\"Header\": {",
                "\"Header\": {\"N\": [[\"a\"], {\"b\": 1}, \"c\\u00e9\\n\", true, 2.5], \"O\": {\"x\": [1]}, \"P\": [], ",
            ),
            ("\"Header\": {", "\"Header\": \"x\", \"H\": {"),
            ("\"Header\": {", "\"Header\": [], \"H\": {"),
            ("\"Header\": {", "\"Header\": null, \"H\": {"),
            ("\"Header\": {", "\"Header\": 5, \"H\": {"),
        ];
        for b in &base {
            for (from, to) in edits {
                if b.contains(from) {
                    bodies.push(b.replacen(from, to, 1));
                }
            }
        }
        let mut fast = 0;
        for b in &bodies {
            for name in [None, Some("pre-create")] {
                let general = parse_via_value(b.as_bytes(), name);
                if let Some(h) = parse_v2_typed(b.as_bytes()) {
                    fast += 1;
                    assert_eq!(Ok(h), general, "{b}");
                }
                assert_eq!(parse(b.as_bytes(), name), general, "{b}");
            }
        }
        assert!(fast >= 20, "fast path taken {fast} times");
    }

    #[test]
    fn utf8_checked_once_reads_the_same() {
        let text =
            br#"{"Type":"pre-create","Event":{"Upload":{"ID":"\u00e9t\u00e9","MetaData":{"k":"v\u00e9"}}}}"#;
        let h = parse_v2_typed(text).expect("fast path");
        assert_eq!(h.upload.id, "été");
        assert_eq!(Ok(h), parse_via_value(text, None));
        // Not UTF-8 in a field nobody reads: still read from the bytes, as before.
        let mut bytes = br#"{"Type":"pre-create","Event":{"Upload":{"X":"?"}}}"#.to_vec();
        let q = bytes.iter().position(|&b| b == b'?').unwrap();
        bytes[q] = 0xff;
        assert!(std::str::from_utf8(&bytes).is_err());
        assert_eq!(parse_v2_typed(&bytes).map(|h| h.name), Some(HookName::PreCreate));
    }

    #[test]
    fn lazy_headers_read_like_a_json_map() {
        let body = br#"{"Type":"pre-create","Event":{"Upload":{},"HTTPRequest":{"Header":{"Z":["1"],"b":["x"],"A":["2",3,"4"],"b":"y","Z":null,"E":"\u00e9"}}}}"#;
        let h = parse_v2_typed(body).expect("fast path");
        assert!(h.request.header.raw.is_some() && h.request.header.parsed.get().is_none());
        let hd = &h.request.header;
        assert_eq!(hd.len(), 3);
        assert_eq!(hd.get("b"), Some("y"));
        assert_eq!(hd.get("z"), None);
        assert_eq!(hd.get_all("a").collect::<Vec<_>>(), vec!["2", "4"]);
        assert_eq!(hd.get("e"), Some("é"));
        assert_eq!(Ok(h.clone()), parse_via_value(body, None));
        assert_eq!(
            format!("{:?}", h.request.header),
            format!("{:?}", parse_via_value(body, None).unwrap().request.header)
        );
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
