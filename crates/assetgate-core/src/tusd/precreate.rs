//! pre-create: may this upload be created?
//!
//! The checks, in order; the first failure decides:
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
//! 6. the destination `{prefix}/{key}` runs through a symlink or a file inside
//!    the asset tree (409 `destination_blocked`: the mover would refuse it, so
//!    the upload would be stuck), or exists and `[storage] overwrite` is off
//!    (409 `exists`). Only the destination of the signed visibility is looked
//!    at (like granite's own `save`).
//! 7. a final (concatenated) upload: every part it names must be a finished
//!    partial upload whose stored metadata carries the very same five signed
//!    fields (403 `concat_invalid`). tusd lets `Upload-Concat: final` name ANY
//!    finished upload by ID, so without this a valid token of one's own could
//!    publish someone else's bytes. The mover checks the parts again.
//!
//! Steps 1–4 are [`crate::token::upload::verify`]; a success is an
//! [`UploadVerified`] proof, and [`Accepted`] can only be built from one.

use std::path::PathBuf;

use super::protocol::Upload;
use super::rules::{check_policy, destination, same_signed_fields};
use super::{Destination, Gate, Lookup, ReasonCode, Rejection};
use crate::config::UploadConfig;
use crate::token::upload::{self, UploadVerified};

/// A pre-create that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    verified: UploadVerified,
    destination: PathBuf,
    partial: bool,
    /// `Upload.Size` (`None`: deferred length).
    size: Option<u64>,
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

impl Accepted {
    /// What `[upload] single_use` consumes or counts for this pre-create:
    /// only an accepted upload has one, so the adapter cannot consume a token
    /// the pure checks refused. A partial upload (`Upload.IsPartial`) does
    /// not consume the token; it is counted against `upload`'s bounds
    /// ([`ClaimKind::Part`]). Computed only when single_use is on: a SHA-256
    /// of the grant (two blocks), a fifth of a pre-create's cost.
    pub fn claim(&self, upload: &UploadConfig) -> Claim {
        let kind = if self.partial {
            ClaimKind::Part {
                // A deferred length counts as the most it may become.
                size: self.size.or(upload.max_size).unwrap_or(0),
                max_parts: upload.max_parts,
                max_bytes: upload.max_size,
            }
        } else {
            ClaimKind::Consume
        };
        Claim {
            id: self.verified.grant_id(),
            expires: self.verified.expires(),
            kind,
        }
    }
}

/// A single-use token to consume, or a partial upload to count, from an
/// accepted pre-create.
///
/// Identity: SHA-256 of the token's signed fields (expiry, key, visibility,
/// content type): the same grant whichever secret signed it, and no token
/// value in the shared store. Concatenation: partial uploads do not consume
/// the token, they are counted (while the token is unused, at most
/// `[upload] max_parts` of them, their declared sizes together at most
/// `max_size`); the final upload (or a plain one) consumes it. So
/// `parallelUploads` works, a finished upload's token cannot start another,
/// a token cannot park unbounded parts, and resuming needs no new pre-create
/// at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    id: [u8; 32],
    expires: i64,
    kind: ClaimKind,
}

/// What a [`Claim`] does in the shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// A plain or final upload: consumes the token unless it is used.
    Consume,
    /// A partial upload: counted for the grant unless the token is used, the
    /// grant has `max_parts` parts already, or their declared sizes with this
    /// one would pass `max_bytes`.
    Part {
        /// The declared size (`[upload] max_size` for a deferred length, 0
        /// when that is unset too).
        size: u64,
        /// `[upload] max_parts`.
        max_parts: u32,
        /// `[upload] max_size` (`None`: no bound on the total).
        max_bytes: Option<u64>,
    },
}

impl Claim {
    /// The shared-store identity.
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// The token's expiry (the mark is kept until then plus the skew).
    pub fn expires(&self) -> i64 {
        self.expires
    }

    /// Consume, or count a part.
    pub fn kind(&self) -> ClaimKind {
        self.kind
    }
}

/// Runs the pre-create checks at `now`.
pub fn check(upload: &Upload, gate: Gate<'_>, now: i64, lookup: &dyn Lookup) -> Result<Accepted, Rejection> {
    let verified = upload::verify(&upload.metadata, gate.upload, now)?;
    check_policy(upload, &verified, gate)?;
    let destination = destination(verified.visibility(), verified.key(), gate.storage);
    match lookup.destination(&destination) {
        Destination::Free => {}
        Destination::Blocked => {
            return Err(Rejection::new(
                ReasonCode::DestinationBlocked,
                "the asset key's path is blocked in the asset tree (a symlink or a file where a directory belongs)",
            ))
        }
        Destination::Unavailable => {
            return Err(Rejection::new(
                ReasonCode::StorageUnavailable,
                "whether an asset with this key exists cannot be checked right now (the store did not answer); try again shortly",
            ))
        }
        Destination::Exists if gate.storage.overwrite => {}
        Destination::Exists => {
            return Err(Rejection::new(
                ReasonCode::Exists,
                format!(
                    "a {} asset with this key already exists and overwriting is disabled",
                    verified.visibility()
                ),
            ))
        }
    }
    if upload.is_final {
        check_parts(upload, lookup)?;
    }
    Ok(Accepted {
        verified,
        destination,
        partial: upload.is_partial,
        size: upload.declared_size(),
    })
}

/// Every part of a final upload is a finished partial upload carrying the final
/// upload's five signed fields unchanged (the signature over them was verified
/// just before: equal fields mean the same token).
fn check_parts(upload: &Upload, lookup: &dyn Lookup) -> Result<(), Rejection> {
    let refuse = |why: &str| {
        Err(Rejection::new(
            ReasonCode::ConcatInvalid,
            format!("concatenation refused: {why}"),
        ))
    };
    if upload.partial_uploads.is_empty() {
        return refuse("a final upload names no partial uploads");
    }
    for id in &upload.partial_uploads {
        let Some(part) = lookup.part(id) else {
            return refuse("a named part is not a known upload");
        };
        if !part.is_partial {
            return refuse("a named part is not a partial upload");
        }
        if !part.finished {
            return refuse("a named part is not finished");
        }
        if !same_signed_fields(&upload.metadata, &part.metadata) {
            return refuse("a named part was not created with this upload's token");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::token::upload::UploadRefusal;
    use std::cell::Cell;
    use std::path::Path;

    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::{mint, Metadata, FIELD_TOKEN};
    use crate::tusd::testing::*;
    use crate::tusd::Part;

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
                upload_ids: Default::default(),
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
        up.content_types = vec!["image/*".parse().unwrap()];
        up.max_size = Some(100);

        // 400 metadata_missing
        let e = run(&upload_with(Metadata::new(), Some(1)), &up).unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (400, ReasonCode::Token(UploadRefusal::MetadataMissing))
        );
        // 400 metadata_invalid (beats a disallowed type and a huge size)
        let mut m = good("a.txt", "text/plain", Visibility::Private);
        m.insert(FIELD_TOKEN.into(), "xyz".into());
        let e = run(&upload_with(m, Some(10_000)), &up).unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (400, ReasonCode::Token(UploadRefusal::MetadataInvalid))
        );
        // 400 key_invalid
        let e = run(
            &upload_with(good("a/../b.png", "image/png", Visibility::Private), Some(1)),
            &up,
        )
        .unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (400, ReasonCode::Token(UploadRefusal::KeyInvalid))
        );
        // 403 token_invalid (beats policy)
        let m = mint(
            b"some-other-secret-xyz",
            "a.txt",
            "text/plain",
            Visibility::Private,
            NOW + 60,
        );
        let e = run(&upload_with(m, Some(10_000)), &up).unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (403, ReasonCode::Token(UploadRefusal::TokenInvalid))
        );
        // 403 token_expired
        let m = mint(S1.as_bytes(), "a.png", "image/png", Visibility::Private, NOW - 31);
        let e = run(&upload_with(m, Some(1)), &up).unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (403, ReasonCode::Token(UploadRefusal::TokenExpired))
        );
        // 403 token_ttl_too_long
        let m = mint(
            S1.as_bytes(),
            "a.png",
            "image/png",
            Visibility::Private,
            NOW + 86_400 + 31,
        );
        let e = run(&upload_with(m, Some(1)), &up).unwrap_err();
        assert_eq!(
            (e.status(), e.reason()),
            (403, ReasonCode::Token(UploadRefusal::TokenTtlTooLong))
        );
        // 415 before 413
        let e = run(
            &upload_with(good("a.txt", "text/plain", Visibility::Private), Some(10_000)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (415, ReasonCode::ContentTypeNotAllowed));
        assert!(e.message().contains("text/plain"), "{e}");
        // 415 content_type_active: allowed by the glob, but active (beats 413)
        let e = run(
            &upload_with(good("a.svg", "image/svg+xml", Visibility::Private), Some(10_000)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (415, ReasonCode::ContentTypeActive));
        // 415 extension_mismatch: nginx would serve *.html as text/html (beats 413)
        let e = run(
            &upload_with(good("a.html", "image/png", Visibility::Private), Some(10_000)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (415, ReasonCode::ExtensionMismatch));
        assert_eq!(
            e.message(),
            "files named *.html are served as text/html, but the token declares image/png"
        );
        // 413
        let e = run(
            &upload_with(good("a.png", "image/png", Visibility::Private), Some(101)),
            &up,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (413, ReasonCode::TooLarge));
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
        assert_eq!((e.status(), e.reason()), (411, ReasonCode::LengthRequired));
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
        up.content_types = vec!["text/plain".parse().unwrap()];
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
                upload_ids: Default::default(),
            },
            NOW,
            &lookup,
        )
        .unwrap_err();
        assert_eq!((e.status(), e.reason()), (409, ReasonCode::Exists));
        assert_eq!(asked.get(), 1);
        // the public twin does not exist
        let u2 = upload_with(good("a/b.txt", "text/plain", Visibility::Public), Some(1));
        assert!(check(
            &u2,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: Default::default(),
            },
            NOW,
            &lookup
        )
        .is_ok());
        // overwrite = true: asked all the same (a blocked path is refused even
        // then), and an existing asset is fine
        st.overwrite = true;
        asked.set(0);
        assert!(check(
            &u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: Default::default(),
            },
            NOW,
            &lookup
        )
        .is_ok());
        assert_eq!(asked.get(), 1);
        // not asked when an earlier check fails
        st.overwrite = false;
        asked.set(0);
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
                    storage: &st,
                    upload_ids: Default::default(),
                },
                NOW,
                &lookup
            )
            .unwrap_err()
            .reason(),
            ReasonCode::Token(UploadRefusal::TokenInvalid)
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
        assert_eq!(
            run(&partial, &up).unwrap_err().reason(),
            ReasonCode::Token(UploadRefusal::MetadataMissing)
        );
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
        assert_eq!(run(&fin, &up_small).unwrap_err().reason(), ReasonCode::TooLarge);
        // parts this lookup does not know: refused
        assert_eq!(run(&fin, &up).unwrap_err().reason(), ReasonCode::ConcatInvalid);
        let parts = Parts::signed_like(&fin.metadata, &["p1", "p2"]);
        assert!(run_with(&fin, &up, false, &parts).is_ok());
    }

    /// A lookup knowing some parts (and no destination).
    struct Parts(Vec<(String, Part)>);

    impl Parts {
        fn signed_like(meta: &Metadata, ids: &[&str]) -> Parts {
            Parts(
                ids.iter()
                    .map(|id| {
                        let part = Part {
                            is_partial: true,
                            finished: true,
                            metadata: meta.clone(),
                        };
                        ((*id).to_string(), part)
                    })
                    .collect(),
            )
        }
    }

    impl Lookup for Parts {
        fn destination(&self, _: &Path) -> Destination {
            Destination::Free
        }
        fn part(&self, id: &str) -> Option<Part> {
            self.0.iter().find(|(i, _)| i == id).map(|(_, p)| p.clone())
        }
    }

    fn run_with(
        upload: &Upload,
        up: &crate::config::UploadConfig,
        overwrite: bool,
        lookup: &dyn Lookup,
    ) -> Result<Accepted, Rejection> {
        let mut st = storage_config();
        st.overwrite = overwrite;
        check(
            upload,
            Gate {
                upload: up,
                storage: &st,
                upload_ids: Default::default(),
            },
            NOW,
            lookup,
        )
    }

    #[test]
    fn final_upload_parts_must_be_this_tokens_finished_partial_uploads() {
        let up = upload_config(&[S1]);
        let meta = good("big.bin", "application/octet-stream", Visibility::Public);
        let fin = Upload {
            is_final: true,
            size: Some(10),
            partial_uploads: vec!["p1".into(), "p2".into()],
            metadata: meta.clone(),
            ..Upload::default()
        };
        let reason = |parts: &Parts| {
            run_with(&fin, &up, false, parts)
                .map(|_| ())
                .map_err(|r| r.reason())
        };
        let good_parts = Parts::signed_like(&meta, &["p1", "p2"]);
        assert_eq!(reason(&good_parts), Ok(()));

        // the victim's part: a valid token of its own, but not this one
        let victim = good("secret/report.pdf", "application/pdf", Visibility::Private);
        let mut parts = Parts::signed_like(&meta, &["p1", "p2"]);
        parts.0[1].1.metadata = victim;
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // the same key under another token (e.g. a second, later token)
        let other = mint(
            S1.as_bytes(),
            "big.bin",
            "application/octet-stream",
            Visibility::Public,
            NOW + 601,
        );
        let mut parts = Parts::signed_like(&meta, &["p1", "p2"]);
        parts.0[0].1.metadata = other;
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // one signed field missing from the part
        let mut parts = Parts::signed_like(&meta, &["p1", "p2"]);
        parts.0[0].1.metadata.remove(FIELD_TOKEN);
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // a finished upload that is not partial (tusd accepts any finished upload)
        let mut parts = Parts::signed_like(&meta, &["p1", "p2"]);
        parts.0[0].1.is_partial = false;
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // an unfinished part
        let mut parts = Parts::signed_like(&meta, &["p1", "p2"]);
        parts.0[1].1.finished = false;
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // an unknown part
        let parts = Parts::signed_like(&meta, &["p1"]);
        assert_eq!(reason(&parts), Err(ReasonCode::ConcatInvalid));

        // no parts at all
        let empty = Upload {
            partial_uploads: vec![],
            ..fin.clone()
        };
        assert_eq!(
            run_with(&empty, &up, false, &good_parts).unwrap_err().reason(),
            ReasonCode::ConcatInvalid
        );
        let e = run_with(&fin, &up, false, &Parts(vec![])).unwrap_err();
        assert_eq!(e.reason().status(), 403);
        assert_eq!(e.reason().as_str(), "concat_invalid");
    }

    /// The store did not say whether the destination exists (backend =
    /// "s3", an error or a timeout): refused with `storage_unavailable`
    /// (503), whatever `overwrite` says (deny by default).
    #[test]
    fn an_unknown_destination_is_refused() {
        struct Unknown;
        impl Lookup for Unknown {
            fn destination(&self, _: &Path) -> Destination {
                Destination::Unavailable
            }
        }
        let up = upload_config(&[S1]);
        let u = upload_with(good("a/b.png", "image/png", Visibility::Public), Some(3));
        for overwrite in [false, true] {
            let e = run_with(&u, &up, overwrite, &Unknown).unwrap_err();
            assert_eq!(e.reason(), ReasonCode::StorageUnavailable);
            assert_eq!(e.reason().status(), 503);
        }
    }

    #[test]
    fn a_blocked_destination_is_refused_even_with_overwrite() {
        struct Blocked;
        impl Lookup for Blocked {
            fn destination(&self, _: &Path) -> Destination {
                Destination::Blocked
            }
        }
        let up = upload_config(&[S1]);
        let u = upload_with(good("a/b.png", "image/png", Visibility::Public), Some(3));
        for overwrite in [false, true] {
            let e = run_with(&u, &up, overwrite, &Blocked).unwrap_err();
            assert_eq!(e.reason(), ReasonCode::DestinationBlocked);
            assert_eq!(e.reason().status(), 409);
        }
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
