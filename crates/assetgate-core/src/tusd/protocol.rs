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
//! `Upload` is tusd's `FileInfo`, which tusd's filestore also writes to
//! `<ID>.info` ([`parse_file_info`]): one derived model ([`Upload`], Go's
//! field names) reads it everywhere. Leniencies, each because a real producer
//! needs it: unknown fields are allowed (tusd adds fields); `null` is the
//! default of every field (Go writes `null` for a nil map or slice); `Size`
//! `null` (rustus, deferred length) or absent is deferred; `Storage` may be
//! `null` (tusd pre-create) or `{"Type":"file_storage","Path":null}` (rustus);
//! older rustus releases spell `MetaData` `Metadata`, newer ones write `upload`
//! in lower case at the top level (other names of one field: given both ways,
//! it is given twice). No decision reads `HTTPRequest`: its shape is checked,
//! nothing of it is kept. In a v2 event v1's fields are checked as JSON, not read.
//!
//! How strictly a body is read is [`super::json`]'s part: JSON exactly as
//! `serde_json::Value` defines it, also where the model reads nothing (fuzz
//! finding F1); a struct is an object; a field given twice is refused; a
//! malformed field is named by its path (`Event.Upload.Size: invalid type:
//! string "…", expected i64`), never with its value. Anything that is not a
//! hook is a [`HookError`] (the server answers 400); an unknown hook name is
//! not, it parses to [`HookName::Other`].

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use super::json::{
    self, numbers_bools_null_are, Checked, CheckedObject, CheckedStr, JsonError, Loose, Object,
};
use crate::config::MAX_MAX_PARTS;
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
    /// The hooks this gate knows (their names are their [`HookName::label`]s).
    const KNOWN: [HookName; 7] = [
        HookName::PreCreate,
        HookName::PostCreate,
        HookName::PostReceive,
        HookName::PreFinish,
        HookName::PostFinish,
        HookName::PreTerminate,
        HookName::PostTerminate,
    ];

    /// Every metric label value, for pre-registration.
    pub const LABELS: [&'static str; 8] = {
        let mut labels = ["other"; 8];
        let mut i = 0;
        while i < HookName::KNOWN.len() {
            labels[i] = HookName::KNOWN[i].label();
            i += 1;
        }
        labels
    };

    /// Parses a hook name, ASCII case-insensitively, surrounding spaces ignored.
    pub fn parse(name: &str) -> HookName {
        let n = name.trim();
        if let Some(known) = HookName::KNOWN
            .into_iter()
            .find(|hook| n.eq_ignore_ascii_case(hook.label()))
        {
            return known;
        }
        // Kept for logs only: printable ASCII, bounded.
        let cleaned: String = n
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_OTHER_NAME)
            .collect();
        HookName::Other(cleaned)
    }

    /// The hook's name, and its closed metric label (`other` for every
    /// unknown name).
    pub const fn label(&self) -> &'static str {
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

/// `Upload`: tusd's `FileInfo`. Read strictly by [`parse`] and
/// [`parse_file_info`] (`super::json`), not by serde alone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Upload {
    /// `ID`: `""` at tusd pre-create, set by rustus.
    #[serde(rename = "ID", default, deserialize_with = "or_default")]
    pub id: String,
    /// `Size`: `None` when `null` or absent (a deferred length).
    #[serde(rename = "Size", default, deserialize_with = "count")]
    pub size: Option<u64>,
    /// `SizeIsDeferred`, also when `Size` is not there.
    #[serde(rename = "SizeIsDeferred", default, deserialize_with = "or_default")]
    pub size_is_deferred: bool,
    /// `Offset`.
    #[serde(rename = "Offset", default, deserialize_with = "count_or_zero")]
    pub offset: u64,
    /// `MetaData`, decoded (older rustus: `Metadata`; both is one too many).
    #[serde(
        rename = "MetaData",
        alias = "Metadata",
        default,
        deserialize_with = "metadata"
    )]
    pub metadata: Metadata,
    /// `IsPartial` (`Upload-Concat: partial`).
    #[serde(rename = "IsPartial", default, deserialize_with = "or_default")]
    pub is_partial: bool,
    /// `IsFinal` (`Upload-Concat: final;…`).
    #[serde(rename = "IsFinal", default, deserialize_with = "or_default")]
    pub is_final: bool,
    /// `PartialUploads`: IDs of the partial uploads of a final upload.
    #[serde(rename = "PartialUploads", default, deserialize_with = "parts")]
    pub partial_uploads: Vec<String>,
    /// `Storage`, `None` when `null`.
    #[serde(rename = "Storage", default, deserialize_with = "json::object")]
    pub storage: Option<Storage>,
}

impl Upload {
    /// The declared size, `None` when deferred (or not given).
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

/// `Upload.Storage`: where the data store keeps the upload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Storage {
    /// `Type`: `filestore` (tusd), `file_storage` (rustus), `s3store`, …
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    /// `Path`: the data file (filestore), `null` at rustus pre-create.
    #[serde(rename = "Path")]
    pub path: Option<String>,
    /// `InfoPath`: the `.info` file (tusd filestore v2.5+).
    #[serde(rename = "InfoPath")]
    pub info_path: Option<String>,
    /// `Bucket`: the bucket (tusd s3store).
    #[serde(rename = "Bucket")]
    pub bucket: Option<String>,
    /// `Key`: the upload object (tusd s3store: `<-s3-object-prefix><objectId>`).
    #[serde(rename = "Key")]
    pub key: Option<String>,
}

/// `HTTPRequest`: the client request behind the hook, read for its shape
/// only (no decision reads it).
#[derive(Deserialize)]
struct HttpRequest {
    #[serde(rename = "Method")]
    _method: Option<CheckedStr>,
    #[serde(rename = "URI")]
    _uri: Option<CheckedStr>,
    #[serde(rename = "RemoteAddr")]
    _remote_addr: Option<CheckedStr>,
    #[serde(rename = "Header")]
    _header: Option<CheckedObject>,
}

/// The top level of either shape. v1's fields are only checked here: a v1
/// hook is read again as a [`V1Body`].
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "Type", borrow, default, deserialize_with = "some")]
    kind: Option<TypeName<'a>>,
    #[serde(rename = "Event", default, deserialize_with = "some")]
    event: Option<Loose<Event>>,
    #[serde(rename = "Upload", alias = "upload", default, deserialize_with = "some")]
    upload: Option<Checked>,
    #[serde(rename = "HTTPRequest", default, deserialize_with = "some")]
    _request: Option<Checked>,
}

/// `Type`: a string names the hook; anything else (read as [`Checked`]) is a
/// v2 event without a name ([`HookError::BadType`]).
struct TypeName<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for TypeName<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = TypeName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TypeName(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TypeName(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(TypeName(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(TypeName(None))
            }
            numbers_bools_null_are!(TypeName(None));
        }
        d.deserialize_any(Text)
    }
}

/// v2's `Event`.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Upload", default)]
    upload: Loose<Upload>,
    #[serde(rename = "HTTPRequest", default, deserialize_with = "json::object")]
    _request: Option<HttpRequest>,
}

/// A v1 (rustus) hook.
#[derive(Deserialize)]
struct V1Body {
    #[serde(rename = "Upload", alias = "upload")]
    upload: Object<Upload>,
    #[serde(rename = "HTTPRequest", default, deserialize_with = "json::object")]
    _request: Option<HttpRequest>,
}

/// Every field name of the model: written as such in the path of a malformed
/// field (any other map key is the body's choice, and written `…`).
const NAMES: &str = "Type Event Upload upload HTTPRequest ID Size SizeIsDeferred Offset MetaData \
    Metadata IsPartial IsFinal PartialUploads Storage Path InfoPath Method URI RemoteAddr Header";

/// `null` reads as the default (Go writes `null` for a nil map or slice).
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// Most `MetaData` entries read. What the model keeps grows with the entries
/// (a map node and two strings each: ten times the body's bytes for a body of
/// empty ones), so their number is bounded where they are read; tus clients
/// send a handful (granite five).
pub const MAX_METADATA: usize = 256;

/// `PartialUploads`: upload IDs, at most [`MAX_MAX_PARTS`] (no configuration
/// admits more parts, and each kept ID costs more than its bytes in the body),
/// `null` as none.
fn parts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Parts(Vec<String>);
    impl<'de> Deserialize<'de> for Parts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(Parts(Vec::new()))
        }
    }
    impl<'de> Visitor<'de> for Parts {
        type Value = Parts;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of upload IDs")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Parts, A::Error> {
            while let Some(id) = seq.next_element::<String>()? {
                if self.0.len() >= MAX_MAX_PARTS as usize {
                    return Err(de::Error::custom(format_args!(
                        "more than {MAX_MAX_PARTS} partial uploads"
                    )));
                }
                self.0.push(id);
            }
            Ok(self)
        }
    }
    Option::<Parts>::deserialize(d).map(|p| p.map(|Parts(p)| p).unwrap_or_default())
}

/// `MetaData`: strings by name, each name once, `null` as none. `Value` (and
/// a plain map) would keep the last of two `asset-key`s; which of two the
/// token's fields are must not depend on position, so a name given twice
/// (also spelled with escapes) is a malformed body, as a known field given
/// twice is. tusd writes metadata from a Go map, so it never sends one.
fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
    struct Unique(Metadata);
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Unique(Metadata::new()))
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Unique, A::Error> {
            while let Some(name) = map.next_key::<String>()? {
                if self.0.len() >= MAX_METADATA {
                    return Err(de::Error::custom(format_args!(
                        "more than {MAX_METADATA} metadata entries"
                    )));
                }
                let value = map.next_value::<String>()?;
                if self.0.insert(name, value).is_some() {
                    // Not the name: the text chose it, and it may be a token.
                    return Err(de::Error::custom("a metadata name given twice"));
                }
            }
            Ok(self)
        }
    }
    Option::<Unique>::deserialize(d).map(|m| m.map(|Unique(m)| m).unwrap_or_default())
}

/// A field that counts as given also when it is `null`.
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `Offset`: [`count`], `null` is 0.
fn count_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    count(d).map(Option::unwrap_or_default)
}

/// `Size`, `Offset`: an integer from 0 to `i64::MAX` (Go's `int64`), or `null`.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<i64>::deserialize(d)? else {
        return Ok(None);
    };
    u64::try_from(n)
        .map(Some)
        .map_err(|_| de::Error::invalid_value(Unexpected::Signed(n), &"a non-negative integer"))
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
}

/// A body that is not a hook. The message says what is wrong without echoing
/// values from the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// Not JSON at all.
    #[error("hook body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("hook body is not a JSON object")]
    NotAnObject,
    /// Neither `Type`/`Event` (v2) nor `Upload` (v1).
    #[error(
        "hook body is neither a tusd v2 event ({{\"Type\",\"Event\"}}) nor a tusd v1 hook ({{\"Upload\"}} with a Hook-Name header)"
    )]
    UnknownShape,
    /// v2: `Type` not a string.
    #[error("tusd v2 event has no string \"Type\"")]
    BadType,
    /// v2: `Event` missing or not an object.
    #[error("tusd v2 event has no \"Event\" object")]
    NoEvent,
    /// v2: `Event` has no `Upload` object.
    #[error("tusd v2 event has no \"Event.Upload\" object")]
    NoUpload,
    /// v1: a bare `Upload` without a `Hook-Name` header.
    #[error("tusd v1 hook without a Hook-Name header (or with an empty one)")]
    NoHookName,
    /// A field has the wrong type.
    #[error("malformed hook: {0}")]
    Field(String),
}

impl From<JsonError> for HookError {
    fn from(e: JsonError) -> HookError {
        match e {
            JsonError::NotJson(e) => HookError::NotJson(e),
            JsonError::NotAnObject => HookError::NotAnObject,
            JsonError::Field(e) => HookError::Field(e),
        }
    }
}

/// Parses one hook POST body. `hook_name_header` is the value of the request's
/// `Hook-Name` header (matched case-insensitively by the caller), if any.
///
/// A v2 event is read in one pass; a v1 hook in two, since what tells the
/// shapes apart (a top-level `Type` or `Event`) may come after v1's fields.
pub fn parse(body: &[u8], hook_name_header: Option<&str>) -> Result<Hook, HookError> {
    let top: Body<'_> = json::read(body, "", NAMES)?;
    if top.kind.is_some() || top.event.is_some() {
        let Some(TypeName(Some(name))) = top.kind else {
            return Err(HookError::BadType);
        };
        let name = HookName::parse(&name);
        let Some(Loose(Some(event))) = top.event else {
            return Err(HookError::NoEvent);
        };
        let Loose(Some(upload)) = event.upload else {
            return Err(HookError::NoUpload);
        };
        return Ok(Hook {
            protocol: Protocol::V2,
            name,
            upload: sized(upload),
        });
    }
    if top.upload.is_none() {
        return Err(HookError::UnknownShape);
    }
    let name = match hook_name_header.map(str::trim) {
        Some(n) if !n.is_empty() => HookName::parse(n),
        _ => return Err(HookError::NoHookName),
    };
    let v1: V1Body = json::read(body, "", NAMES)?;
    Ok(Hook {
        protocol: Protocol::V1,
        name,
        upload: sized(v1.upload.0),
    })
}

/// Parses a tusd filestore `.info` file (a serialised `FileInfo`, the same
/// model as `Upload`).
pub fn parse_file_info(bytes: &[u8]) -> Result<Upload, JsonError> {
    json::read(bytes, "FileInfo", NAMES).map(sized)
}

/// A length that is not there is deferred, whatever `SizeIsDeferred` says.
fn sized(mut upload: Upload) -> Upload {
    upload.size_is_deferred |= upload.size.is_none();
    upload
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::json::repeats_a_key;
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
    /// unchecked: escapes, numbers and nesting depth in unknown fields, in
    /// `Header` (checked, not kept), in v1 fields of a v2 body. Each body is
    /// refused as not JSON iff `serde_json::Value` refuses it.
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
    /// exactly when `Value` says so, each reads as its re-serialised `Value`
    /// does (unless it gives a field twice: then it is refused), and the
    /// mutations of the tusd v2 pre-create fixture give what is pinned here.
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
            ("\"Type\": \"", "\"Type\": \"x\", \"Type\": \"", "Field(\"body: duplicate field `Type`\")"),
            ("\"Size\": ", "\"Size\": -", "Field(\"Event.Upload.Size: invalid value: integer `-1048576`, expected a non-negative integer\")"),
            ("\"Size\": ", "\"Size\": 1.5, \"S\": ", "Field(\"Event.Upload.Size: invalid type: floating point `1.5`, expected i64\")"),
            ("\"Size\": ", "\"Size\": null, \"S\": ", "Ok"),
            ("\"MetaData\": {", "\"Metadata\": {}, \"MetaData\": {", "Field(\"Event.Upload: duplicate field `MetaData`\")"),
            ("\"MetaData\": {", "\"MetaData\": {\"n\": 1, ", "Field(\"Event.Upload.MetaData.…: invalid type: integer `1`, expected a string\")"),
            ("\"HTTPRequest\": {", "\"HTTPRequest\": null, \"H\": {", "Ok"),
            // A struct is an object; serde would read an array's items as its
            // fields in order (this used to be read as an empty request).
            ("\"HTTPRequest\": {", "\"HTTPRequest\": [], \"H\": {", "Field(\"Event.HTTPRequest: invalid type: sequence, expected a JSON object\")"),
            (
                "\"Header\": {",
                "\"Header\": {\"A\": [1, \"b\"], \"B\": null, \"C\": \"c\", ",
                "Ok",
            ),
            ("\"Storage\": null", "\"Storage\": {\"Path\": \"/p\"}", "Ok"),
            ("\"ID\": \"", "\"ID\": \"x\", \"ID\": \"", "Field(\"Event.Upload: duplicate field `ID`\")"),
            ("\"Event\": {", "\"Event\": {\"Upload\": {}, ", "Field(\"Event: duplicate field `Upload`\")"),
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
        // A field given twice is refused, whatever it holds.
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

    /// `HTTPRequest` is checked for its shape and dropped: a hook reads the
    /// same with any well-formed request, or none.
    #[test]
    fn http_request_checked_not_kept() {
        let without = v2(r#"{"Type":"pre-create","Event":{"Upload":{"ID":"a"}}}"#).unwrap();
        for request in [
            "null",
            "{}",
            r#"{"Method":"POST","URI":"/files/","RemoteAddr":"127.0.0.1","Header":{"A":["1"],"B":"2","C":null,"D":[1,{"x":[]}],"A":[]}}"#,
            r#"{"Method":null,"URI":"\u00e9","Header":null,"X":[1e5]}"#,
        ] {
            let body = format!(
                r#"{{"Type":"pre-create","Event":{{"HTTPRequest":{request},"Upload":{{"ID":"a"}}}}}}"#
            );
            assert_eq!(v2(&body).as_ref(), Ok(&without), "{request}");
            let body = format!(r#"{{"HTTPRequest":{request},"Upload":{{"ID":"a"}}}}"#);
            let h = parse(body.as_bytes(), Some("pre-create")).unwrap();
            assert_eq!(h.upload, without.upload, "{request}");
        }
        for (request, want) in [
            ("[]", "invalid type: sequence, expected a JSON object"),
            (
                r#"{"Method":1}"#,
                "Method: invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"Header":["A"]}"#,
                "Header: invalid type: sequence, expected a map",
            ),
            (r#"{"URI":"/a","URI":"/b"}"#, "duplicate field `URI`"),
        ] {
            let body =
                format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"HTTPRequest":{request}}}}}"#);
            let e = v2(&body).unwrap_err();
            let HookError::Field(message) = &e else {
                panic!("{request}: {e:?}")
            };
            assert!(
                message.starts_with("Event.HTTPRequest") && message.ends_with(want),
                "{request}: {message}"
            );
        }
    }

    /// A malformed field is named by its path (serde_path_to_error), in either
    /// shape, also after a kept `Header` or v1 fields; a `MetaData` key other
    /// than the token's five is not repeated; no value is.
    #[test]
    fn field_errors_name_the_path() {
        let cases: [(&[u8], Option<&str>, &str); 12] = [
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
                br#"{"Type":"pre-create","Event":{"Upload":{"Storage":{"Path":false}}}}"#,
                None,
                "Event.Upload.Storage.Path: invalid type: boolean `false`, expected a string",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"Storage":{"Path":"/p","Path":"/q"}}}}"#,
                None,
                "Event.Upload.Storage: duplicate field `Path`",
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
                r#"upload.IsFinal: invalid type: string "…", expected a boolean"#,
            ),
            (
                br#"{"HTTPRequest":{"Header":{"A":["b"]},"Method":["POST"]},"Upload":{}}"#,
                Some("pre-create"),
                "HTTPRequest.Method: invalid type: sequence, expected a string",
            ),
            (
                br#"{"Upload":{},"HTTPRequest":"GET"}"#,
                Some("pre-create"),
                r#"HTTPRequest: invalid type: string "…", expected a JSON object"#,
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
            Err(JsonError::Field(
                "FileInfo.Size: invalid value: integer `-5`, expected a non-negative integer".into()
            ))
        );
        assert_eq!(parse_file_info(b"[]"), Err(JsonError::NotAnObject));
        assert!(matches!(
            parse_file_info(b"{\"ID\":\"\\ud800\"}"),
            Err(JsonError::NotJson(_))
        ));
    }

    /// Newer rustus: `upload` in lower case, another name of `Upload` (both is
    /// the field given twice). In a v2 event v1's fields are checked as JSON,
    /// not read.
    #[test]
    fn v1_fields_lower_case_and_unused() {
        let h = parse(br#"{"upload":{"ID":"u","Size":3}}"#, Some("post-create")).unwrap();
        assert_eq!((h.protocol, h.upload.id.as_str()), (Protocol::V1, "u"));
        assert_eq!(
            parse(
                br#"{"upload":{"ID":"u"},"Upload":{"ID":"u"}}"#,
                Some("pre-create")
            ),
            Err(HookError::Field("body: duplicate field `Upload`".into()))
        );
        for body in [
            &br#"{"Upload":5,"HTTPRequest":[1],"Event":{"Upload":{"ID":"e"}},"Type":"post-finish"}"#[..],
            br#"{"upload":{"Size":"x"},"Event":{"Upload":{"ID":"e"}},"Type":"post-finish"}"#,
        ] {
            let h = parse(body, None).unwrap();
            assert_eq!((h.protocol, h.upload.id.as_str()), (Protocol::V2, "e"));
        }
        assert!(matches!(
            parse(br#"{"Upload":{},"HTTPRequest":"\ud800"}"#, Some("pre-create")),
            Err(HookError::NotJson(_))
        ));
        assert_eq!(
            parse(br#"{"upload":[]}"#, Some("pre-create")),
            Err(HookError::Field(
                "upload: invalid type: sequence, expected a JSON object".into()
            ))
        );
        assert_eq!(
            parse(br#"{"HTTPRequest":{}}"#, Some("pre-create")),
            Err(HookError::UnknownShape)
        );
    }

    /// A field of the model given twice (JSON allows it, tusd never does it)
    /// is refused, in every struct of either shape; an unknown field given
    /// twice is not, and a metadata key given twice is read as JSON reads it
    /// (the last counts).
    #[test]
    fn repeated_fields_refused() {
        for (body, name, field) in [
            (
                &br#"{"Type":"post-create","Type":"pre-create","Event":{"Upload":{}}}"#[..],
                None,
                "body: duplicate field `Type`",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{}},"Event":{"Upload":{}}}"#,
                None,
                "body: duplicate field `Event`",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{},"Upload":{}}}"#,
                None,
                "Event: duplicate field `Upload`",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"ID":"a","ID":"b"}}}"#,
                None,
                "Event.Upload: duplicate field `ID`",
            ),
            (
                br#"{"Type":"pre-create","Event":{"Upload":{"Size":"1","Size":1}}}"#,
                None,
                "Event.Upload.Size: invalid type",
            ),
            (
                br#"{"Upload":{"ID":"a"},"Upload":{"ID":"b"}}"#,
                Some("pre-create"),
                "body: duplicate field `Upload`",
            ),
            (
                br#"{"Upload":{},"HTTPRequest":{},"HTTPRequest":{}}"#,
                Some("pre-create"),
                "body: duplicate field `HTTPRequest`",
            ),
            (
                br#"{"Upload":{"IsFinal":true,"IsFinal":false}}"#,
                Some("pre-create"),
                "Upload: duplicate field `IsFinal`",
            ),
        ] {
            let got = parse(body, name);
            assert!(
                matches!(&got, Err(HookError::Field(e)) if e.starts_with(field)),
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
        // A metadata name given twice, also spelled with an escape: which one
        // the token's fields are must not depend on position.
        for body in [
            &br#"{"Type":"pre-create","Event":{"Upload":{"MetaData":{"k":"1","k":"2"}}}}"#[..],
            br#"{"Type":"pre-create","Event":{"Upload":{"MetaData":{"asset-key":"a","asset\u002dkey":"b"}}}}"#,
            br#"{"Upload":{"MetaData":{"k":"1","k":"1"}}}"#,
        ] {
            let name = (body[2] == b'U').then_some("pre-create");
            let got = parse(body, name);
            assert!(
                matches!(&got, Err(HookError::Field(e)) if e.ends_with("MetaData: a metadata name given twice")),
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
        // Unknown fields may repeat (tusd adds fields; none of them is read).
        let h = parse(
            br#"{"X":1,"Type":"pre-create","X":2,"Event":{"Upload":{"ID":"a","MetaData":{"k":"1"},"Y":[],"Y":{}}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(h.upload.metadata.get("k").map(String::as_str), Some("1"));
        // Not JSON comes first, whatever else is wrong.
        assert!(matches!(
            parse(br#"{"Upload":{"X":1e999},"Upload":{}}"#, Some("pre-create")),
            Err(HookError::NotJson(_))
        ));
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
        assert_eq!(
            HookName::LABELS,
            [
                "pre-create",
                "post-create",
                "post-receive",
                "pre-finish",
                "post-finish",
                "pre-terminate",
                "post-terminate",
                "other"
            ]
        );
    }

    #[test]
    fn file_info() {
        let u = parse_file_info(
            br#"{"ID":"abc","Size":5,"SizeIsDeferred":false,"Offset":5,"MetaData":{"asset-key":"k"},"IsPartial":false,"IsFinal":false,"PartialUploads":null,"Storage":{"Type":"filestore","Path":"/d/abc","InfoPath":"/d/abc.info"}}"#,
        )
        .unwrap();
        assert_eq!(u.asset_key(), Some("k"));
        assert!(u.is_complete());
        // As strict as a hook: unknown fields checked, each field once.
        let u = parse_file_info(br#"{"ID":"a","Size":1,"New":[{"x":1e5}],"Storage":{"New":null}}"#).unwrap();
        assert_eq!((u.id.as_str(), u.declared_size()), ("a", Some(1)));
        assert!(matches!(
            parse_file_info(br#"{"ID":"a","Storage":{"New":"\udc00"}}"#),
            Err(JsonError::NotJson(_))
        ));
        assert_eq!(
            parse_file_info(br#"{"ID":"a","Size":1,"Size":2}"#),
            Err(JsonError::Field("FileInfo: duplicate field `Size`".into()))
        );
    }
}

#[cfg(test)]
mod s3store_tests {
    use super::*;

    /// tusd v2.9.1's s3store `Storage`, as measured (docs/s3-groundwork.md):
    /// `Type`, `Bucket`, `Key` are read into [`Storage`].
    #[test]
    fn s3store_storage_is_read() {
        let body = br#"{"Type":"post-finish","Event":{"Upload":{"ID":"0a1b+mp","Size":3,"Offset":3,
            "MetaData":{},"Storage":{"Bucket":"uploads","Key":"tus/0a1b","Type":"s3store"}},
            "HTTPRequest":{"Method":"PATCH","URI":"/files/0a1b+mp","RemoteAddr":"127.0.0.1:1","Header":{}}}}"#;
        let hook = parse(body, None).unwrap();
        assert_eq!(
            hook.upload.storage,
            Some(Storage {
                kind: Some("s3store".into()),
                path: None,
                info_path: None,
                bucket: Some("uploads".into()),
                key: Some("tus/0a1b".into()),
            })
        );
    }
}
