//! The tus `Upload-Metadata` header, parsed exactly as tusd does.
//!
//! tusd (`ParseMetadataHeader`, v1 and v2): split on `,`, trim each element,
//! split it on single spaces; more than two parts, or an empty key → element
//! dropped; a key alone → `""`; the value is standard *padded* base64 (Go's
//! `base64.StdEncoding`, which skips `\r`/`\n` and does not check unused
//! trailing bits), invalid → element dropped silently; duplicate keys: the last
//! wins. Go turns the decoded bytes into a string as they are; JSON encoding of
//! the hook then replaces invalid UTF-8 with U+FFFD, which is what
//! [`String::from_utf8_lossy`] does here.
//!
//! Hooks receive the decoded map; this helper exists to prove that what a
//! client (granite) sends decodes to what the hook verifies, and for tooling.

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::token::upload::Metadata;

/// Go's `base64.StdEncoding`: padding required, trailing bits not checked.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes an `Upload-Metadata` header value like tusd.
pub fn parse_upload_metadata(header: &str) -> Metadata {
    let mut meta = Metadata::new();
    for element in header.split(',') {
        // Go's strings.TrimSpace trims Unicode white space, as str::trim does.
        let parts: Vec<&str> = element.trim().split(' ').collect();
        if parts.len() > 2 {
            continue;
        }
        let key = parts[0];
        if key.is_empty() {
            continue;
        }
        let value = match parts.get(1) {
            None => String::new(),
            Some(encoded) => {
                let cleaned: String = encoded.chars().filter(|c| *c != '\r' && *c != '\n').collect();
                match GO_STD.decode(cleaned) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(_) => continue,
                }
            }
        };
        meta.insert(key.to_owned(), value);
    }
    meta
}

/// Encodes metadata as granite does: `name base64(value)` joined by `", "`,
/// in the given order.
pub fn encode_upload_metadata<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    entries
        .into_iter()
        .map(|(k, v)| format!("{k} {}", GO_STD.encode(v.as_bytes())))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tusd_rules() {
        // from tusd's own example
        assert_eq!(
            parse_upload_metadata("name bHVucmpzLnBuZw==,type aW1hZ2UvcG5n"),
            m(&[("name", "lunrjs.png"), ("type", "image/png")])
        );
        // key alone → "", empty elements skipped, surrounding spaces trimmed
        assert_eq!(
            parse_upload_metadata(" ,  flag , a YQ== ,,"),
            m(&[("flag", ""), ("a", "a")])
        );
        // more than two parts (double space too) → dropped
        assert_eq!(parse_upload_metadata("a YQ== x, b  Yg=="), Metadata::new());
        // invalid base64 or missing padding → dropped
        assert_eq!(parse_upload_metadata("a YQ, b !!!!, c Yw=="), m(&[("c", "c")]));
        // duplicate: last wins
        assert_eq!(parse_upload_metadata("a YQ==, a Yg=="), m(&[("a", "b")]));
        // trailing bits are not checked by Go's StdEncoding ("YR==" decodes like "YQ==")
        assert_eq!(parse_upload_metadata("a YR=="), m(&[("a", "a")]));
        // URL-safe alphabet is not standard base64
        assert_eq!(parse_upload_metadata("a _-8="), Metadata::new());
        // invalid UTF-8 becomes U+FFFD, as in the JSON tusd sends
        assert_eq!(parse_upload_metadata("a /w=="), m(&[("a", "\u{fffd}")]));
        assert_eq!(parse_upload_metadata(""), Metadata::new());
    }

    #[test]
    fn round_trip_granite_style() {
        let entries = [
            ("asset-key", "photos/été 2026/plage.jpg"),
            ("content-type", "image/jpeg; q=1, x=2"),
            ("visibility", "public"),
        ];
        let header = encode_upload_metadata(entries);
        assert!(header.contains(", content-type "));
        assert_eq!(parse_upload_metadata(&header), m(&entries));
    }
}
