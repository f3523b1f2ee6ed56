//! Upload IDs in the hooks: pre-create issues them, every publish requires
//! them (`[tusd] upload_ids`; the construction is in
//! [`crate::token::upload_id`]).
//!
//! - pre-create, `signed` (the default): a tusd v2 pre-create that passed every
//!   check is answered `{"ChangeFileInfo":{"ID":"<id>"}}` with a fresh ID bound
//!   to the verified grant ([`issue`]); tusd names the upload's data file and
//!   `.info` after it. A final (concatenated) upload's parts must carry IDs
//!   issued for the same grant as partial uploads ([`check_parts`]). A tusd v1
//!   or rustus pre-create (`Hook-Name` protocol) is refused before anything
//!   else with 500 `upload_ids_unsupported`: those servers take no ID from a
//!   hook, so their uploads could never be published, and the message says
//!   what to set.
//! - publish (post-finish, the reconciler, `finalize-pending`, a final upload's
//!   parts), `signed`: [`verify`] turns the upload's ID and its parts' IDs into
//!   an [`Identity`] the finalize plan carries; the mover then requires the
//!   data file to be `<dir>/<id>` and a final upload's on-disk parts to be
//!   exactly the verified ones. An ID that does not verify is kept with
//!   `upload_id_invalid`: a planted `.info` (a copied token under a name of the
//!   planter's choosing), a forged post-finish, an upload created before the
//!   switch to `signed`.
//! - on S3 (`[storage] backend = "s3"`, and only there), tusd's s3store names
//!   the upload `<objectId>+<multipartId>`, `objectId` being the ID pre-create
//!   handed it: the part before the first `+` is what verifies
//!   ([`issued_part`]). With the filesystem backend a `+` stays in the ID,
//!   which then never verifies.
//! - `server`: no ID is issued or required ([`Identity::Server`]); see
//!   docs/upload-lifecycle.md for what that trusts.

use super::protocol::{Hook, Protocol, Upload};
use super::{Gate, ReasonCode, Rejection};
use crate::token::upload::{SignatureVerified, UploadVerified};
use crate::token::upload_id::{self, IdVerified, Kind, Nonce, UploadIds};

/// What a finalize plan knows about the upload's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// `signed`: the upload's ID and, for a final upload, each part's ID, all
    /// issued by pre-create for the upload's own grant.
    Signed {
        /// The upload's ID (a whole upload's).
        id: IdVerified,
        /// A final upload's parts, in order (partial uploads' IDs).
        parts: Vec<IdVerified>,
    },
    /// `server`: IDs are the upload server's, nothing to verify.
    Server,
}

impl Identity {
    /// The verified part IDs a final upload's on-disk record must name, in
    /// order; `None` in `server` mode (the mover checks the parts' records only).
    pub fn parts(&self) -> Option<Vec<String>> {
        match self {
            Identity::Signed { parts, .. } => Some(parts.iter().map(|p| p.id().to_owned()).collect()),
            Identity::Server => None,
        }
    }
}

/// pre-create in `signed` mode from an upload server that cannot take an ID
/// from a hook: refused before any check, with what to set.
pub fn refuse_unsupported(hook: &Hook, gate: Gate<'_>) -> Result<(), Rejection> {
    if gate.upload_ids == UploadIds::Signed && hook.protocol == Protocol::V1 {
        return Err(Rejection::new(
            ReasonCode::UploadIdsUnsupported,
            "this upload server (tusd v1 or rustus: Hook-Name protocol) cannot take an upload ID from the pre-create hook, \
             so its uploads could never be published; set [tusd] upload_ids = \"server\" in assetgate's configuration \
             (see docs/upload-lifecycle.md for what that trusts), or run tusd v2",
        ));
    }
    Ok(())
}

/// The ID to answer an accepted pre-create with (`signed` mode), for the
/// fully verified token `verified` (only pre-create's check builds one);
/// `None` in `server` mode. `nonce`: fresh random bytes.
pub fn issue(upload: &Upload, verified: &UploadVerified, gate: Gate<'_>, nonce: &Nonce) -> Option<String> {
    if gate.upload_ids != UploadIds::Signed {
        return None;
    }
    // A token verified, so there is a secret.
    let secret = gate.upload.secrets.newest()?;
    Some(upload_id::issue(
        secret,
        nonce,
        &verified.grant_id(),
        kind_of(upload),
    ))
}

fn kind_of(upload: &Upload) -> Kind {
    if upload.is_partial {
        Kind::Partial
    } else {
        Kind::Whole
    }
}

/// `signed` mode: every part a final upload names was issued, as a partial
/// upload, for this same grant. Pre-create and the publish both ask it.
pub fn check_parts(upload: &Upload, grant: &[u8; 32], gate: Gate<'_>) -> Result<Vec<IdVerified>, Rejection> {
    if gate.upload_ids != UploadIds::Signed || !upload.is_final {
        return Ok(Vec::new());
    }
    upload
        .partial_uploads
        .iter()
        .map(|id| {
            upload_id::verify(&gate.upload.secrets, issued_part(id, gate), grant, Kind::Partial).map_err(
                |e| {
                    Rejection::new(
                        ReasonCode::ConcatInvalid,
                        format!("concatenation refused: a named part's ID does not verify: {e}"),
                    )
                },
            )
        })
        .collect()
}

/// The part of a tusd upload ID that pre-create issued: with
/// `[storage] backend = "s3"` tusd's s3store appends `+<multipartId>` to it,
/// so the part before the first `+`; with the filesystem backend the whole ID
/// (a `+` there is not tusd's, and the ID does not verify).
pub fn issued_part<'a>(id: &'a str, gate: Gate<'_>) -> &'a str {
    match gate.storage.s3 {
        Some(_) => id.split_once('+').map_or(id, |(object_id, _)| object_id),
        None => id,
    }
}

/// The publish side: what the upload's ID (and its parts') proves for the
/// token whose signature `verified` proves, or why it is kept.
pub fn verify(upload: &Upload, verified: &SignatureVerified, gate: Gate<'_>) -> Result<Identity, Rejection> {
    if gate.upload_ids != UploadIds::Signed {
        return Ok(Identity::Server);
    }
    let grant = &verified.grant_id();
    // Only whole uploads are published: a partial upload's ID never verifies here.
    let id = upload_id::verify(
        &gate.upload.secrets,
        issued_part(&upload.id, gate),
        grant,
        Kind::Whole,
    )
    .map_err(|e| Rejection::new(ReasonCode::UploadIdInvalid, e.to_string()))?;
    let parts = check_parts(upload, grant, gate)?;
    Ok(Identity::Signed { id, parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::{mint, verify_signature_ignoring_expiry};
    use crate::tusd::testing::*;

    const NONCE: Nonce = [5u8; 16];

    fn gate_parts(
        ids: UploadIds,
    ) -> (
        crate::config::UploadConfig,
        crate::config::StorageConfig,
        UploadIds,
    ) {
        (upload_config(&[S1, S2]), storage_config(), ids)
    }

    #[test]
    fn issued_ids_verify_at_publish_and_nothing_else_does() {
        let (up, st, ids) = gate_parts(UploadIds::Signed);
        let gate = Gate {
            upload: &up,
            storage: &st,
            upload_ids: ids,
        };
        let meta = mint(S1.as_bytes(), "a.png", "image/png", Visibility::Public, NOW + 60);
        let full = crate::token::upload::verify(&meta, &up, NOW).unwrap();
        let signed = verify_signature_ignoring_expiry(&meta, &up.secrets).unwrap();
        let mut u = Upload {
            metadata: meta.clone(),
            ..Upload::default()
        };
        let id = issue(&u, &full, gate, &NONCE).unwrap();
        u.id = id.clone();
        let Identity::Signed { id: v, parts } = verify(&u, &signed, gate).unwrap() else {
            panic!()
        };
        assert_eq!((v.id(), parts.len()), (id.as_str(), 0));

        // another grant, tusd's own ID, a part's ID
        let other = verify_signature_ignoring_expiry(
            &mint(S1.as_bytes(), "b.png", "image/png", Visibility::Public, NOW + 60),
            &up.secrets,
        )
        .unwrap();
        assert_eq!(
            verify(&u, &other, gate).unwrap_err().reason(),
            ReasonCode::UploadIdInvalid
        );
        u.id = "0123456789abcdef0123456789abcdef".into();
        let e = verify(&u, &signed, gate).unwrap_err();
        assert_eq!((e.reason(), e.status()), (ReasonCode::UploadIdInvalid, 403));
        let part = Upload {
            is_partial: true,
            ..u.clone()
        };
        u.id = issue(&part, &full, gate, &NONCE).unwrap();
        assert_eq!(
            verify(&u, &signed, gate).unwrap_err().reason(),
            ReasonCode::UploadIdInvalid
        );

        // server mode: nothing issued, nothing required
        let server = Gate {
            upload_ids: UploadIds::Server,
            ..gate
        };
        assert_eq!(issue(&u, &full, server, &NONCE), None);
        assert_eq!(verify(&u, &signed, server), Ok(Identity::Server));
        assert_eq!(Identity::Server.parts(), None);
    }

    /// On S3 tusd's s3store ID is `<issued ID>+<multipartId>`: the part before
    /// `+` verifies there, and only there (a `+` in a filestore ID is refused).
    #[test]
    fn on_s3_the_part_before_the_plus_verifies_and_only_there() {
        let up = upload_config(&[S1, S2]);
        let fs = storage_config();
        let mut s3 = storage_config();
        s3.backend = crate::config::StorageBackend::S3;
        s3.s3 = Some(crate::config::S3Config {
            endpoint: Some("http://127.0.0.1:8333".into()),
            region: "us-east-1".into(),
            bucket: "assets".into(),
            path_style: true,
            upload_prefix: "tus/".into(),
            access_key_id: crate::secret::Secret::new(b"id".to_vec()),
            secret_access_key: crate::secret::Secret::new(b"secret".to_vec()),
            read_access_key_id: None,
            read_secret_access_key: None,
        });
        let on = |storage| Gate {
            upload: &up,
            storage,
            upload_ids: UploadIds::Signed,
        };
        let meta = mint(S1.as_bytes(), "a.png", "image/png", Visibility::Public, NOW + 60);
        let full = crate::token::upload::verify(&meta, &up, NOW).unwrap();
        let signed = verify_signature_ignoring_expiry(&meta, &up.secrets).unwrap();
        let issued = issue(&Upload::default(), &full, on(&s3), &NONCE).unwrap();
        let mut u = Upload {
            id: format!("{issued}+mp.Zx_9-1"),
            metadata: meta,
            ..Upload::default()
        };
        let Identity::Signed { id, .. } = verify(&u, &signed, on(&s3)).unwrap() else {
            panic!()
        };
        assert_eq!(id.id(), issued);
        // The same ID with the filesystem backend: refused.
        let e = verify(&u, &signed, on(&fs)).unwrap_err();
        assert_eq!((e.reason(), e.status()), (ReasonCode::UploadIdInvalid, 403));
        // On S3: a forged object ID with any multipart ID, tusd's own IDs, a
        // partial upload's ID: refused; the issued ID without `+` still is the
        // issued ID (the plan then refuses it as not an s3store ID).
        let part = issue(
            &Upload {
                is_partial: true,
                ..Upload::default()
            },
            &full,
            on(&s3),
            &NONCE,
        )
        .unwrap();
        for bad in [
            "0123456789abcdef0123456789abcdef+mp".to_string(),
            format!("+{issued}"),
            format!("x{issued}+mp"),
            format!("{part}+mp"),
        ] {
            u.id = bad;
            let e = verify(&u, &signed, on(&s3)).unwrap_err();
            assert_eq!(e.reason(), ReasonCode::UploadIdInvalid, "{}", u.id);
        }
        assert_eq!(issued_part(&issued, on(&s3)), issued);
        assert_eq!(issued_part(&format!("{issued}+a+b"), on(&s3)), issued);
        assert_eq!(
            issued_part(&format!("{issued}+mp"), on(&fs)),
            format!("{issued}+mp")
        );
    }

    #[test]
    fn a_final_uploads_parts_must_be_this_grants_partial_uploads() {
        let (up, st, ids) = gate_parts(UploadIds::Signed);
        let gate = Gate {
            upload: &up,
            storage: &st,
            upload_ids: ids,
        };
        let meta = mint(
            S1.as_bytes(),
            "big.bin",
            "application/octet-stream",
            Visibility::Public,
            NOW + 60,
        );
        let full = crate::token::upload::verify(&meta, &up, NOW).unwrap();
        let signed = verify_signature_ignoring_expiry(&meta, &up.secrets).unwrap();
        let grant = signed.grant_id();
        let partial = Upload {
            is_partial: true,
            metadata: meta.clone(),
            ..Upload::default()
        };
        let p1 = issue(&partial, &full, gate, &[1u8; 16]).unwrap();
        let p2 = issue(&partial, &full, gate, &[2u8; 16]).unwrap();
        let whole = issue(&Upload::default(), &full, gate, &[3u8; 16]).unwrap();
        let mut fin = Upload {
            id: issue(&Upload::default(), &full, gate, &NONCE).unwrap(),
            is_final: true,
            partial_uploads: vec![p1.clone(), p2.clone()],
            metadata: meta,
            ..Upload::default()
        };
        let got = verify(&fin, &signed, gate).unwrap();
        assert_eq!(got.parts(), Some(vec![p1.clone(), p2.clone()]));
        for bad in [whole, "0123456789abcdef0123456789abcdef".to_string()] {
            fin.partial_uploads = vec![p1.clone(), bad];
            let e = check_parts(&fin, &grant, gate).unwrap_err();
            assert_eq!(e.reason(), ReasonCode::ConcatInvalid);
            assert_eq!(
                verify(&fin, &signed, gate).unwrap_err().reason(),
                ReasonCode::ConcatInvalid
            );
        }
    }

    #[test]
    fn v1_pre_create_is_refused_in_signed_mode_only() {
        let (up, st, _) = gate_parts(UploadIds::Signed);
        let hook = crate::tusd::parse(
            br#"{"Upload":{"ID":"","Size":1,"MetaData":{}},"HTTPRequest":{"Method":"POST","URI":"/files/"}}"#,
            Some("pre-create"),
        )
        .unwrap();
        assert_eq!(hook.protocol, Protocol::V1);
        let gate = Gate {
            upload: &up,
            storage: &st,
            upload_ids: UploadIds::Signed,
        };
        let e = refuse_unsupported(&hook, gate).unwrap_err();
        assert_eq!((e.reason().as_str(), e.status()), ("upload_ids_unsupported", 500));
        assert!(e.message().contains("upload_ids = \"server\""), "{e}");
        let server = Gate {
            upload_ids: UploadIds::Server,
            ..gate
        };
        assert!(refuse_unsupported(&hook, server).is_ok());
    }
}
