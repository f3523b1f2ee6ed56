//! pre-create: may this upload be created?
//!
//! The order; the first failure decides:
//!
//! 1. shape: the five granite fields present and non-empty (400
//!    `metadata_missing`), expiry decimal and token 64 hex digits (400
//!    `metadata_invalid`);
//! 2. key policy (400 `key_invalid`), visibility (400 `visibility_invalid`);
//! 3. signature under any `[upload] secrets` (403 `token_invalid`);
//! 4. expiry + skew (403 `token_expired`), lifetime ≤ `max_ttl` + skew (403
//!    `token_ttl_too_long`);
//! 5. policy: content-type allowlist (415), `max_size` against `Upload.Size`
//!    (413), deferred length (411);
//! 6. the destination `{prefix}/{key}` exists and `[storage] overwrite` is off
//!    (409 `exists`). Only the destination of the signed visibility is looked
//!    at (like granite's own `save`).
//!
//! Steps 1–4 are [`crate::token::upload::verify`]; a success is an
//! [`UploadVerified`] proof, and [`Accepted`] can only be built from one.

use std::path::PathBuf;

use super::protocol::Upload;
use super::{Gate, Lookup, Reason, Rejection};
use crate::policy;
use crate::token::upload::{self, UploadVerified};

/// A pre-create that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    verified: UploadVerified,
    destination: PathBuf,
}

impl Accepted {
    /// The verified token claims.
    pub fn verified(&self) -> &UploadVerified {
        &self.verified
    }

    /// `{prefix}/{key}`, relative to `[storage] root`.
    pub fn destination(&self) -> &std::path::Path {
        &self.destination
    }
}

/// `{public_prefix|private_prefix}/{key}` for a policy-checked key.
pub(crate) fn destination(
    visibility: policy::Visibility,
    key: &str,
    storage: &crate::config::StorageConfig,
) -> PathBuf {
    let prefix = visibility.prefix(&storage.public_prefix, &storage.private_prefix);
    let mut p = PathBuf::from(prefix);
    for segment in key.split('/') {
        p.push(segment);
    }
    p
}

/// Runs the pre-create checks at `now`.
pub fn check(upload: &Upload, gate: Gate<'_>, now: i64, lookup: &dyn Lookup) -> Result<Accepted, Rejection> {
    let verified = upload::verify(&upload.metadata, gate.upload, now)?;
    check_policy(upload, &verified, gate)?;
    let destination = destination(verified.visibility(), verified.key(), gate.storage);
    if !gate.storage.overwrite && lookup.exists(&destination) {
        return Err(Rejection::new(
            Reason::Exists,
            format!(
                "a {} asset with this key already exists and overwriting is disabled",
                verified.visibility()
            ),
        ));
    }
    Ok(Accepted {
        verified,
        destination,
    })
}

/// Content type, size and deferred length.
pub(crate) fn check_policy(
    upload: &Upload,
    verified: &impl ContentTyped,
    gate: Gate<'_>,
) -> Result<(), Rejection> {
    check_content_type(verified, gate)?;
    check_size(upload.declared_size(), gate, gate.upload.allow_deferred_length)
}

/// The content-type allowlist (also re-checked at finalize).
pub(crate) fn check_content_type(verified: &impl ContentTyped, gate: Gate<'_>) -> Result<(), Rejection> {
    let ct = verified.declared_content_type();
    if policy::content_type_allowed(&gate.upload.content_types, ct) {
        return Ok(());
    }
    Err(Rejection::new(
        Reason::ContentTypeNotAllowed,
        format!(
            "content type {} is not allowed here",
            serde_json::Value::from(truncate(ct, 128))
        ),
    ))
}

/// `max_size` and deferred length (the size part is re-checked at finalize).
pub(crate) fn check_size(size: Option<u64>, gate: Gate<'_>, allow_deferred: bool) -> Result<(), Rejection> {
    policy::check_size(size, gate.upload.max_size, allow_deferred).map_err(|e| {
        let reason = match e {
            policy::SizeError::LengthRequired => Reason::LengthRequired,
            _ => Reason::TooLarge,
        };
        Rejection::new(reason, e.to_string())
    })
}

/// Something carrying a signed content type.
pub(crate) trait ContentTyped {
    fn declared_content_type(&self) -> &str;
}

impl ContentTyped for UploadVerified {
    fn declared_content_type(&self) -> &str {
        self.content_type()
    }
}

impl ContentTyped for upload::SignatureVerified {
    fn declared_content_type(&self) -> &str {
        self.content_type()
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
    use std::cell::Cell;
    use std::path::Path;

    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::{mint, Metadata, FIELD_TOKEN};
    use crate::tusd::testing::*;

    fn upload_with(meta: Metadata, size: Option<u64>) -> Upload {
        Upload {
            size,
            size_is_deferred: size.is_none(),
            metadata: meta,
            ..Upload::default()
        }
    }

    fn good(key: &str, ct: &str, vis: Visibility) -> Metadata {
        mint(S1.as_bytes(), key, ct, vis, NOW + 600)
    }

    fn nothing_exists(_: &Path) -> bool {
        false
    }

    fn run(upload: &Upload, up: &crate::config::UploadConfig) -> Result<Accepted, Rejection> {
        let st = storage_config();
        check(
            upload,
            Gate {
                upload: up,
                storage: &st,
            },
            NOW,
            &nothing_exists,
        )
    }

    #[test]
    fn accepted_with_destination() {
        let up = upload_config(&[S1]);
        let a = run(
            &upload_with(
                good("photos/été 2026/plage.jpg", "image/jpeg", Visibility::Public),
                Some(10),
            ),
            &up,
        )
        .unwrap();
        assert_eq!(a.destination(), Path::new("public/photos/été 2026/plage.jpg"));
        assert_eq!(a.verified().key(), "photos/été 2026/plage.jpg");
        let a = run(
            &upload_with(good("inv.pdf", "application/pdf", Visibility::Private), Some(0)),
            &up,
        )
        .unwrap();
        assert_eq!(a.destination(), Path::new("private/inv.pdf"));
    }

    #[test]
    fn every_rejection_code_in_order() {
        let mut up = upload_config(&[S1]);
        up.content_types = vec!["image/*".into()];
        up.max_size = Some(100);

        // 400 metadata_missing
        let e = run(&upload_with(Metadata::new(), Some(1)), &up).unwrap_err();
        assert_eq!((e.status(), e.reason()), (400, Reason::MetadataMissing));
        // 400 metadata_invalid (beats a disallowed type and a huge size)
        let mut m = good("a.txt", "text/plain", Visibility::Private);
        m.insert(FIELD_TOKEN.into(), "xyz".into());
        let e = run(&upload_with(m, Some(10_000)), &up).unwrap_err();
        assert_eq!((e.status(), e.reason()), (400, Reason::MetadataInvalid));
        // 400 key_invalid
        let e = run(
            &upload_with(good("a/../b.png", "image/png", Visibility::Private), Some(1)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (400, Reason::KeyInvalid));
        // 403 token_invalid (beats policy)
        let m = mint(
            b"some-other-secret-xyz",
            "a.txt",
            "text/plain",
            Visibility::Private,
            NOW + 60,
        );
        let e = run(&upload_with(m, Some(10_000)), &up).unwrap_err();
        assert_eq!((e.status(), e.reason()), (403, Reason::TokenInvalid));
        // 403 token_expired
        let m = mint(S1.as_bytes(), "a.png", "image/png", Visibility::Private, NOW - 31);
        let e = run(&upload_with(m, Some(1)), &up).unwrap_err();
        assert_eq!((e.status(), e.reason()), (403, Reason::TokenExpired));
        // 403 token_ttl_too_long
        let m = mint(
            S1.as_bytes(),
            "a.png",
            "image/png",
            Visibility::Private,
            NOW + 86_400 + 31,
        );
        let e = run(&upload_with(m, Some(1)), &up).unwrap_err();
        assert_eq!((e.status(), e.reason()), (403, Reason::TokenTtlTooLong));
        // 415 before 413
        let e = run(
            &upload_with(good("a.txt", "text/plain", Visibility::Private), Some(10_000)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (415, Reason::ContentTypeNotAllowed));
        assert!(e.message().contains("text/plain"), "{e}");
        // 413
        let e = run(
            &upload_with(good("a.png", "image/png", Visibility::Private), Some(101)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (413, Reason::TooLarge));
        assert!(run(
            &upload_with(good("a.png", "image/png", Visibility::Private), Some(100)),
            &up
        )
        .is_ok());
        // 411
        let e = run(
            &upload_with(good("a.png", "image/png", Visibility::Private), None),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (411, Reason::LengthRequired));
        up.allow_deferred_length = true;
        assert!(run(
            &upload_with(good("a.png", "image/png", Visibility::Private), None),
            &up
        )
        .is_ok());
    }

    #[test]
    fn content_type_params_and_case() {
        let mut up = upload_config(&[S1]);
        up.content_types = vec!["text/plain".into()];
        assert!(run(
            &upload_with(
                good("a.txt", "Text/Plain; charset=utf-8", Visibility::Private),
                Some(1)
            ),
            &up
        )
        .is_ok());
    }

    #[test]
    fn exists_only_when_overwrite_is_off() {
        let up = upload_config(&[S1]);
        let mut st = storage_config();
        let asked = Cell::new(0);
        let lookup = |p: &Path| {
            asked.set(asked.get() + 1);
            p == Path::new("private/a/b.txt")
        };
        let u = upload_with(good("a/b.txt", "text/plain", Visibility::Private), Some(1));
        let e = check(
            &u,
            Gate {
                upload: &up,
                storage: &st,
            },
            NOW,
            &lookup,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (409, Reason::Exists));
        assert_eq!(asked.get(), 1);
        // the public twin does not exist
        let u2 = upload_with(good("a/b.txt", "text/plain", Visibility::Public), Some(1));
        assert!(check(
            &u2,
            Gate {
                upload: &up,
                storage: &st
            },
            NOW,
            &lookup
        )
        .is_ok());
        // overwrite = true: not even asked
        st.overwrite = true;
        asked.set(0);
        assert!(check(
            &u,
            Gate {
                upload: &up,
                storage: &st
            },
            NOW,
            &lookup
        )
        .is_ok());
        assert_eq!(asked.get(), 0);
        // not asked either when an earlier check fails
        st.overwrite = false;
        let bad = upload_with(
            mint(
                b"wrong-secret-0000000",
                "a/b.txt",
                "text/plain",
                Visibility::Private,
                NOW + 5,
            ),
            Some(1),
        );
        assert_eq!(
            check(
                &bad,
                Gate {
                    upload: &up,
                    storage: &st
                },
                NOW,
                &lookup
            )
            .unwrap_err()
            .reason(),
            Reason::TokenInvalid
        );
        assert_eq!(asked.get(), 0);
    }

    #[test]
    fn partial_and_final_uploads_need_a_token_too() {
        let up = upload_config(&[S1]);
        let partial = Upload {
            is_partial: true,
            size: Some(5),
            ..Upload::default()
        };
        assert_eq!(run(&partial, &up).unwrap_err().reason(), Reason::MetadataMissing);
        let partial = Upload {
            metadata: good("big.bin", "application/octet-stream", Visibility::Private),
            ..partial
        };
        assert!(run(&partial, &up).is_ok());
        let mut up_small = upload_config(&[S1]);
        up_small.max_size = Some(8);
        let fin = Upload {
            is_final: true,
            size: Some(10), // sum of the parts
            partial_uploads: vec!["p1".into(), "p2".into()],
            metadata: good("big.bin", "application/octet-stream", Visibility::Private),
            ..Upload::default()
        };
        assert_eq!(run(&fin, &up_small).unwrap_err().reason(), Reason::TooLarge);
        assert!(run(&fin, &up).is_ok());
    }

    #[test]
    fn messages_never_contain_token_or_secret() {
        let up = upload_config(&[S1]);
        let m = mint(
            b"wrong-secret-0000000",
            "a.txt",
            "text/plain",
            Visibility::Private,
            NOW + 5,
        );
        let token = m[FIELD_TOKEN].clone();
        let e = run(&upload_with(m, Some(1)), &up).unwrap_err();
        for text in [e.body(), e.to_string()] {
            assert!(!text.contains(&token));
            assert!(!text.contains(S1));
        }
    }
}
