//! Checks shared by the hooks: pre-create decides with them, and post-finish
//! (and through it the reconciler and `finalize-pending`) runs them again on
//! what is on disk, so a rule cannot drift between the two.

use std::path::PathBuf;

use super::protocol::Upload;
use super::{Gate, ReasonCode, Rejection};
use subtle::ConstantTimeEq;

use crate::policy;
use crate::token::upload::{self, UploadVerified};

/// `{public_prefix|private_prefix}/{key}` for a policy-checked key.
pub fn destination(
    visibility: policy::Visibility,
    key: &str,
    storage: &crate::config::StorageConfig,
) -> PathBuf {
    let prefix = visibility.prefix(&storage.public_prefix, &storage.private_prefix);
    // Room for the prefix, a separator per segment and the key's characters:
    // one allocation instead of one growth per segment.
    let mut p = PathBuf::with_capacity(prefix.len() + 1 + key.len());
    p.push(prefix);
    for segment in key.split('/') {
        p.push(segment);
    }
    p
}

/// Whether the five signed fields are present and equal in both; the token
/// (a MAC) is compared in constant time. The one rule for "the same grant":
/// a final upload's parts (pre-create and the mover), a `/session` request
/// against the upload's record.
pub fn same_signed_fields(a: &upload::Metadata, b: &upload::Metadata) -> bool {
    upload::FIELDS
        .iter()
        .all(|f| matches!((a.get(*f), b.get(*f)), (Some(x), Some(y)) if same_field(f, x, y)))
}

/// One metadata field equal in both; the token in constant time.
pub fn same_field(name: &str, a: &str, b: &str) -> bool {
    if name == upload::FIELD_TOKEN {
        bool::from(a.as_bytes().ct_eq(b.as_bytes()))
    } else {
        a == b
    }
}

/// Content type (allowlist, then served as signed), size and deferred length.
pub(crate) fn check_policy(
    upload: &Upload,
    verified: &impl ContentTyped,
    gate: Gate<'_>,
) -> Result<(), Rejection> {
    check_content_type(verified, gate)?;
    check_size(upload.declared_size(), gate, gate.upload.allow_deferred_length)
}

/// The content-type allowlist, then whether nginx would serve the key as the
/// declared type (active types need an exact entry; the key's extension must
/// map to the declared type): [`policy::served`]. The same check at pre-create
/// and whenever a publish is planned.
pub(crate) fn check_content_type(verified: &impl ContentTyped, gate: Gate<'_>) -> Result<(), Rejection> {
    let ct = verified.declared_content_type();
    if !policy::content_type_allowed(&gate.upload.content_types, ct) {
        return Err(Rejection::new(
            ReasonCode::ContentTypeNotAllowed,
            format!(
                "content type {} is not allowed here",
                serde_json::Value::from(truncate(ct, 128))
            ),
        ));
    }
    policy::check_served(
        verified.signed_key(),
        ct,
        &gate.upload.content_types,
        &gate.upload.nginx_types.table,
    )
    .map_err(|e| {
        let reason = match e {
            policy::ServeError::Active { .. } => ReasonCode::ContentTypeActive,
            _ => ReasonCode::ExtensionMismatch,
        };
        Rejection::new(reason, e.to_string())
    })
}

/// `max_size` and deferred length (the size part is re-checked at finalize).
pub(crate) fn check_size(size: Option<u64>, gate: Gate<'_>, allow_deferred: bool) -> Result<(), Rejection> {
    policy::check_size(size, gate.upload.max_size, allow_deferred).map_err(|e| {
        let reason = match e {
            policy::SizeError::LengthRequired => ReasonCode::LengthRequired,
            _ => ReasonCode::TooLarge,
        };
        Rejection::new(reason, e.to_string())
    })
}

/// Something carrying a signed content type and key.
pub(crate) trait ContentTyped {
    fn declared_content_type(&self) -> &str;
    fn signed_key(&self) -> &str;
}

impl ContentTyped for UploadVerified {
    fn declared_content_type(&self) -> &str {
        self.content_type()
    }
    fn signed_key(&self) -> &str {
        self.key()
    }
}

impl ContentTyped for upload::SignatureVerified {
    fn declared_content_type(&self) -> &str {
        self.content_type()
    }
    fn signed_key(&self) -> &str {
        self.key()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(token: &str) -> upload::Metadata {
        upload::FIELDS
            .iter()
            .map(|f| {
                let v = if *f == upload::FIELD_TOKEN { token } else { "v" };
                (f.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn same_grant_needs_every_signed_field_including_the_token() {
        assert!(same_signed_fields(&fields("ab"), &fields("ab")));
        assert!(!same_signed_fields(&fields("ab"), &fields("ac")));
        let mut missing = fields("ab");
        missing.remove(upload::FIELD_KEY);
        assert!(!same_signed_fields(&missing, &fields("ab")));
        assert!(!same_field(upload::FIELD_TOKEN, "ab", "a"));
        assert!(same_field("asset-key", "k", "k"));
    }
}
