//! Strict JSON for the upload server's wire shapes (hook bodies, `.info`
//! records): serde's derive declares them, this module reads them.
//!
//! What a text must be, beyond what the derived model says:
//!
//! - UTF-8, checked once for the whole text; serde_json then reads from a
//!   `&str` and checks no string again.
//! - JSON exactly as `serde_json::Value` defines it, also in the parts no field
//!   reads (fuzz finding F1). A derived struct skips an unknown field with
//!   serde's `IgnoredAny`, and serde_json checks only the syntax of what it
//!   skips: a lone surrogate escape, a number beyond f64 and nesting deeper
//!   than serde_json's 127 levels get through. So every struct of a model is
//!   read as an [`Object`] (or a [`Loose`] one), which has the value serde
//!   would skip read as a [`Checked`] instead: every string decoded, every
//!   number converted, the nesting counted by serde_json, nothing allocated.
//!   (serde's `flatten` would do it too, but buffers what it collects: 4 to
//!   16 MiB for a 256 KiB body, `tests/hook_allocation.rs`. Checking every
//!   text as a whole costs as much as reading it, a fifth of a pre-create;
//!   only a refused text is.)
//! - An object at the top ([`JsonError::NotAnObject`]), and a struct wherever
//!   the model has one, never an array (serde would read its items as the
//!   fields in order).
//! - Each known field once: a field given twice is refused (serde's
//!   `duplicate field`, also for two spellings of one field); unknown fields
//!   are allowed, because the upload servers add fields.
//!
//! A refused text is [`JsonError::NotJson`] if `Value` refuses it, whatever else
//! is wrong with it; otherwise the malformed field is named by its path
//! ([`serde_path_to_error`], read again only then), never with its value:
//! quoted parts of serde's messages are dropped, and a map key that is not a
//! name of the model is written `…` (the text chose it; it may be a token).

use std::fmt::{self, Write as _};
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::token::upload::FIELDS as TOKEN_FIELDS;

/// A text that is not what the model reads. No message holds a value from the
/// text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON (`serde_json::Value` refuses it): serde_json's message.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A field is not of its type: `Event.Upload.Size: invalid type: …`.
    #[error("{0}")]
    Field(String),
}

/// Reads a `T` from the object `bytes` (see the module doc). `at` names the
/// text in a field's path (`FileInfo` gives `FileInfo.Size`; `""` gives
/// `Event.Upload.Size`); `names` (separated by spaces) are the model's field
/// names, written as they are in a path (the token's metadata fields are
/// always).
pub fn read<'de, T: Deserialize<'de>>(bytes: &'de [u8], at: &str, names: &str) -> Result<T, JsonError> {
    let read = match std::str::from_utf8(bytes) {
        Ok(text) => match read_text(text, None) {
            Err(e) if e == UNNAMED => read_text(text, Some((at, names))),
            read => read,
        },
        Err(_) => Err(UNNAMED), // not_json says where
    };
    read.map_err(|e| not_json(bytes).unwrap_or(e))
}

/// A malformed field met without its path: read again to name it.
const UNNAMED: JsonError = JsonError::Field(String::new());

/// One read of `text`; `paths` (`at`, `names`) to name a malformed field, else
/// it is [`UNNAMED`] (serde_path_to_error copies every key it passes).
fn read_text<'de, T: Deserialize<'de>>(text: &'de str, paths: Option<(&str, &str)>) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let read = match paths {
        None => Loose::<T>::deserialize(&mut de).map_err(|e| (e, None)),
        Some(_) => {
            let mut track = serde_path_to_error::Track::new();
            let read = Loose::<T>::deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
            read.map_err(|e| (e, Some(track.path())))
        }
    };
    match read.and_then(|v| de.end().map(|()| v).map_err(|e| (e, None))) {
        Ok(Loose(Some(v))) => Ok(v),
        Ok(Loose(None)) => Err(JsonError::NotAnObject),
        Err((e, path)) if e.is_data() => Err(match (path, paths) {
            (Some(path), Some((at, names))) => field_error(&e, at, names, &path),
            _ => UNNAMED,
        }),
        Err((e, _)) => Err(JsonError::NotJson(redact(&e.to_string()))),
    }
}

/// `Some(NotJson)` when `bytes` is not JSON as `serde_json::Value` defines it.
#[cold]
fn not_json(bytes: &[u8]) -> Option<JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked::deserialize(&mut de).and_then(|_| de.end());
    checked.err().map(|e| JsonError::NotJson(redact(&e.to_string())))
}

/// `Event.Upload.Size: invalid type: string "…", expected i64`.
#[cold]
fn field_error(
    err: &serde_json::Error,
    at: &str,
    names: &str,
    path: &serde_path_to_error::Path,
) -> JsonError {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
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
                if names.split(' ').any(|n| n == key) || TOKEN_FIELDS.contains(&key.as_str()) =>
            {
                key
            }
            _ => "…",
        });
    }
    if out.is_empty() {
        out.push_str("body");
    }
    JsonError::Field(format!("{out}: {}", redact(message)))
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

/// A visitor's `visit_bool`, `visit_i64`, `visit_u64`, `visit_f64` and
/// `visit_unit`, each `Ok($value)`.
macro_rules! numbers_bools_null_are {
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
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
pub(super) use numbers_bools_null_are;

/// Any JSON value, read as `Value` reads it (strings decoded, numbers
/// converted, the nesting counted by serde_json) and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Any("any JSON value"))
    }
}

/// A JSON object, its entries read as [`Checked`] and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckedObject;

impl<'de> Deserialize<'de> for CheckedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Any("a map")).map(|Checked| CheckedObject)
    }
}

/// A JSON string, decoded as `Value` decodes it and dropped: a field read for
/// its type only (an `Option<Cow<str>>` would copy it, serde borrows only a
/// bare `Cow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckedStr;

impl<'de> Deserialize<'de> for CheckedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl Visitor<'_> for Str {
            type Value = CheckedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, _: &str) -> Result<CheckedStr, E> {
                Ok(CheckedStr)
            }
        }
        d.deserialize_str(Str)
    }
}

/// A struct of a model, `T`, from a JSON object (anything else is refused),
/// its unknown fields read as [`Checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_struct(map).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// `Option<Object<T>>` as a `deserialize_with` for a struct field that is
/// a struct of the model or `null`.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}

/// `T` from the entries of `map`, what it would skip read as [`Checked`].
fn read_struct<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(Unskipping(map)))
}

/// A map whose values are read through [`Unskipped`]. (The seed of each
/// value is wrapped the same way.)
struct Unskipping<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Unskipping<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(Unskipping(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Unskipping<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Unskipped(d))
    }
}

/// A deserializer that reads the value serde asks it to skip (an unknown
/// field's, `deserialize_ignored_any`) as [`Checked`]; everything else is
/// `D`'s own (a struct inside is an [`Object`] again).
struct Unskipped<D>(D);

/// `Deserializer` methods that hand `D` the visitor as it is.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* v: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* v)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Unskipped<D> {
    type Error = D::Error;
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        let Checked = Checked::deserialize(self.0)?;
        v.visit_unit()
    }
    forward! {
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32()
        deserialize_i64() deserialize_i128() deserialize_u8() deserialize_u16() deserialize_u32()
        deserialize_u64() deserialize_u128() deserialize_f32() deserialize_f64() deserialize_char()
        deserialize_str() deserialize_string() deserialize_bytes() deserialize_byte_buf()
        deserialize_option() deserialize_unit() deserialize_seq() deserialize_map()
        deserialize_identifier() deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str) deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// An [`Object`], or `None` for any other JSON value (read as [`Checked`]):
/// for a value whose kind decides what the text is, so that the caller can
/// say what is missing (`NoEvent`) instead of serde what it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loose<T>(pub Option<T>);

impl<T> Default for Loose<T> {
    fn default() -> Self {
        Loose(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LooseVisitor<T> {
    type Value = Loose<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_struct(map).map(|t| Loose(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Any("").visit_seq(seq).map(|Checked| Loose(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Loose(None))
    }
    numbers_bools_null_are!(Loose(None));
}

/// The visitor of [`Checked`]: every value is fine, arrays and objects are
/// read to the end; `.0` is what an error says was expected.
struct Any(&'static str);

impl<'de> Visitor<'de> for Any {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    numbers_bools_null_are!(Checked);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Whether an object of `text` (valid JSON) gives a key twice (`false` for a
/// text that is not JSON). For the tests and the `hook_json` fuzz target,
/// which compare the model with `serde_json::Value` (which keeps the last of
/// repeated keys).
#[cfg(any(test, feature = "fuzzing"))]
pub fn repeats_a_key(text: &[u8]) -> bool {
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
        fn visit_str<E>(self, _: &str) -> Result<bool, E> {
            Ok(false)
        }
        numbers_bools_null_are!(false);
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
    serde_json::from_slice::<Repeats>(text).is_ok_and(|r| r.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model: one known field, unknown ones allowed.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Model {
        #[serde(rename = "N")]
        n: Option<u64>,
    }

    fn model(text: &str) -> Result<Option<u64>, JsonError> {
        read::<Model>(text.as_bytes(), "M", "N").map(|m| m.n)
    }

    #[test]
    fn reads_an_object_strictly() {
        assert_eq!(model(r#" {"X":[{"Y":null}],"N":5} "#), Ok(Some(5)));
        assert_eq!(model("[1]"), Err(JsonError::NotAnObject));
        assert_eq!(model("5"), Err(JsonError::NotAnObject));
        assert_eq!(
            model(r#"{"N":"12"}"#),
            Err(JsonError::Field(
                r#"M.N: invalid type: string "…", expected u64"#.into()
            ))
        );
        assert_eq!(
            model(r#"{"N":1,"N":1}"#),
            Err(JsonError::Field("M: duplicate field `N`".into()))
        );
        // What `Value` refuses is not JSON, also in an unknown field, and
        // before anything else.
        for bad in [r#""\udc00""#, "1e400", "-1e999", "[1,]", "tru"] {
            for text in [format!(r#"{{"X":{bad}}}"#), format!(r#"{{"N":"x","X":[{bad}]}}"#)] {
                assert!(matches!(model(&text), Err(JsonError::NotJson(_))), "{text}");
            }
        }
        assert!(matches!(model(r#"{"N":1} x"#), Err(JsonError::NotJson(_))));
        // serde_json's nesting limit, counted in the unknown field.
        let nest = |n: usize| format!(r#"{{"X":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        assert_eq!(model(&nest(126)), Ok(None));
        assert!(matches!(model(&nest(127)), Err(JsonError::NotJson(_))));
        assert!(serde_json::from_str::<serde_json::Value>(&nest(126)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nest(127)).is_err());
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
