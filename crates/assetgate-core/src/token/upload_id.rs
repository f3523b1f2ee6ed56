//! Upload IDs that carry pre-create's acceptance: what every publish path
//! requires before it moves an upload into the asset tree.
//!
//! # Why
//!
//! An upload's `.info` is written by tusd, but a file in the upload directory
//! proves nothing about who wrote it, and neither does a post-finish event
//! (whoever reaches `/tusd` can post one). A token copied from a victim's
//! `.info` into a planted one is a valid token: signature-only checks
//! (post-finish, the reconciler, `finalize-pending`) would publish the
//! planter's bytes at the victim's key, whether or not the token had expired,
//! and whatever pre-create would have said.
//!
//! So pre-create makes its acceptance durable in the one thing tusd v2 lets the
//! hook choose and then keeps on disk and in every later event: the upload ID
//! (`ChangeFileInfo.ID`; tusd uses it as the data file's name, `<dir>/<id>`,
//! and the info's, `<dir>/<id>.info`). An ID is
//!
//! ```text
//! hex(nonce) ‖ hex(HMAC-SHA256(upload secret,
//!                 "assetgate upload-id v1\0" ‖ kind ‖ nonce ‖ grant)[..16])
//! ```
//!
//! - `nonce`: 16 fresh random bytes per pre-create (the caller draws them; this
//!   module is pure and takes them as an input, like the time), so IDs never
//!   repeat and cannot be guessed: tusd has no collision check and would
//!   truncate an existing upload on a reused ID.
//! - `grant`: the identity of the verified token, SHA-256 of its signed fields
//!   ([`super::upload::UploadVerified::grant_id`], the identity `[upload]
//!   single_use` marks too). The ID is therefore bound to the key, visibility,
//!   content type and expiry pre-create accepted: it verifies against an
//!   upload's stored token only if pre-create accepted that very grant.
//! - `kind`: a partial upload (a part of a concatenation) or a whole one (a
//!   plain or final upload, the ones that are published). A part's ID never
//!   verifies as a publishable upload.
//! - 128 bits of tag: forging one is as hard as forging the HMAC.
//!
//! The result is 64 lowercase hex digits: within tusd's ID alphabet, no `/`, no
//! `.`, and [`crate::tusd::session::safe_upload_id`] accepts it. Only lowercase
//! verifies, so one upload has one spelling.
//!
//! Verification ([`verify`]) tries every configured upload secret, compares in
//! constant time (`subtle`) and does not stop at the first match, like the
//! token itself: an ID issued before a rotation verifies as long as its secret
//! is still configured. A success is an [`IdVerified`], which only this module
//! builds and which the finalize plan carries to the mover.

use subtle::ConstantTimeEq;

use crate::secret::{Secret, SecretSet};

/// Random bytes per ID.
pub const NONCE_BYTES: usize = 16;

/// Bytes of the HMAC kept in the ID.
const TAG_BYTES: usize = 16;

/// Length of an ID in characters (hex).
pub const ID_LEN: usize = 2 * (NONCE_BYTES + TAG_BYTES);

/// Domain separation: this MAC is never a token or any other tag made with
/// the upload secret.
const DOMAIN: &[u8] = b"assetgate upload-id v1\0";

/// The random input of one ID.
pub type Nonce = [u8; NONCE_BYTES];

/// What an ID was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain or final (concatenated) upload: the ones that are published.
    Whole,
    /// A partial upload, a part of a later final upload.
    Partial,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Whole => b'w',
            Kind::Partial => b'p',
        }
    }
}

/// `[tusd] upload_ids`: who chooses upload IDs, and so what a publish trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadIds {
    /// pre-create issues every ID ([`issue`]) and every publish path requires it
    /// to verify ([`verify`]). Needs tusd v2 (`ChangeFileInfo.ID`).
    #[default]
    Signed,
    /// The upload server chooses IDs (tusd v1, rustus: they take no ID from a
    /// hook). A publish then trusts that whoever wrote an upload's `.info` with
    /// a valid token went through pre-create: the upload directory must be
    /// writable by the upload server and assetgate only.
    Server,
}

impl std::str::FromStr for UploadIds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "signed" => Ok(UploadIds::Signed),
            "server" => Ok(UploadIds::Server),
            other => Err(format!(
                "{other:?} is not one of \"signed\" (tusd v2: pre-create issues signed upload IDs) or \"server\" (tusd v1, rustus)"
            )),
        }
    }
}

impl UploadIds {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadIds::Signed => "signed",
            UploadIds::Server => "server",
        }
    }
}

/// Proof that an upload ID was issued by pre-create for a grant (under a
/// configured upload secret). Only [`verify`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdVerified {
    id: String,
    kind: Kind,
}

impl IdVerified {
    /// The ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it was issued for.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Why an ID does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdDenied {
    /// Not 64 lowercase hex digits: not an ID this gate issues (an upload
    /// created before `[tusd] upload_ids = "signed"`, or by another server).
    #[error("the upload ID is not one assetgate's pre-create issues (64 lowercase hex digits)")]
    Malformed,
    /// Well formed, but not issued for this token's grant under any configured
    /// upload secret.
    #[error("the upload ID was not issued by pre-create for this upload's token (under any configured upload secret)")]
    Mismatch,
}

/// The tag of `nonce` for `grant` and `kind` under `secret`.
fn tag(secret: &Secret, nonce: &Nonce, grant: &[u8; 32], kind: Kind) -> [u8; TAG_BYTES] {
    let mut mac = secret.hmac_sha256();
    mac.update(DOMAIN);
    mac.update(&[kind.byte()]);
    mac.update(nonce);
    mac.update(grant);
    let full = mac.finalize();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

/// A new ID for an accepted pre-create: `nonce` fresh from the OS, `secret`
/// the newest upload secret, `grant` the verified token's identity.
pub fn issue(secret: &Secret, nonce: &Nonce, grant: &[u8; 32], kind: Kind) -> String {
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(&hex::encode(nonce));
    id.push_str(&hex::encode(tag(secret, nonce, grant, kind)));
    id
}

/// Whether `id` was issued for `grant` and `kind` under one of `secrets`.
pub fn verify(secrets: &SecretSet, id: &str, grant: &[u8; 32], kind: Kind) -> Result<IdVerified, IdDenied> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if id.len() != ID_LEN || !id.as_bytes().iter().all(lower_hex) {
        return Err(IdDenied::Malformed);
    }
    let raw = hex::decode(id).map_err(|_| IdDenied::Malformed)?;
    let (nonce, given) = raw.split_at(NONCE_BYTES);
    let nonce: Nonce = nonce.try_into().map_err(|_| IdDenied::Malformed)?;
    let mut matched = subtle::Choice::from(0u8);
    // Every secret is tried (no early exit): timing does not say which matched.
    for secret in secrets.iter() {
        matched |= tag(secret, &nonce, grant, kind).ct_eq(given);
    }
    if bool::from(matched) {
        Ok(IdVerified {
            id: id.to_owned(),
            kind,
        })
    } else {
        Err(IdDenied::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: Nonce = [7u8; NONCE_BYTES];

    fn secrets(texts: &[&str]) -> SecretSet {
        SecretSet::from_texts(texts)
    }

    #[test]
    fn an_issued_id_verifies_for_its_grant_and_kind_only() {
        let set = secrets(&["upload-id-secret-0123456"]);
        let grant = [1u8; 32];
        let id = issue(set.newest().unwrap(), &NONCE, &grant, Kind::Whole);
        assert_eq!(id.len(), ID_LEN);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(id.starts_with(&hex::encode(NONCE)));
        assert!(crate::tusd::session::safe_upload_id(&id));

        let ok = verify(&set, &id, &grant, Kind::Whole).unwrap();
        assert_eq!((ok.id(), ok.kind()), (id.as_str(), Kind::Whole));
        assert_eq!(
            verify(&set, &id, &[2u8; 32], Kind::Whole),
            Err(IdDenied::Mismatch),
            "another grant"
        );
        assert_eq!(
            verify(&set, &id, &grant, Kind::Partial),
            Err(IdDenied::Mismatch),
            "a whole upload's ID is no part's"
        );
        let part = issue(set.newest().unwrap(), &NONCE, &grant, Kind::Partial);
        assert_ne!(part, id);
        assert_eq!(
            verify(&set, &part, &grant, Kind::Whole),
            Err(IdDenied::Mismatch),
            "a part's ID is never a publishable upload's"
        );
        assert!(verify(&set, &part, &grant, Kind::Partial).is_ok());
    }

    #[test]
    fn modes_parse() {
        for m in [UploadIds::Signed, UploadIds::Server] {
            assert_eq!(m.as_str().parse::<UploadIds>(), Ok(m));
        }
        assert!("Signed".parse::<UploadIds>().is_err());
        assert_eq!(UploadIds::default(), UploadIds::Signed);
    }

    #[test]
    fn rotation_and_other_secrets() {
        let old = secrets(&["older-upload-secret-45678"]);
        let grant = [9u8; 32];
        let id = issue(old.newest().unwrap(), &NONCE, &grant, Kind::Whole);
        let rotated = secrets(&["newest-upload-secret-0123", "older-upload-secret-45678"]);
        assert!(
            verify(&rotated, &id, &grant, Kind::Whole).is_ok(),
            "old secret still configured"
        );
        let dropped = secrets(&["newest-upload-secret-0123"]);
        assert_eq!(
            verify(&dropped, &id, &grant, Kind::Whole),
            Err(IdDenied::Mismatch)
        );
        assert_eq!(
            verify(&SecretSet::default(), &id, &grant, Kind::Whole),
            Err(IdDenied::Mismatch),
            "no secret: nothing verifies"
        );
    }

    #[test]
    fn anything_else_is_malformed_or_a_mismatch() {
        let set = secrets(&["upload-id-secret-0123456"]);
        let grant = [1u8; 32];
        let id = issue(set.newest().unwrap(), &NONCE, &grant, Kind::Whole);
        let malformed = [
            String::new(),
            // tusd's own IDs: 32 hex digits
            "0123456789abcdef0123456789abcdef".to_string(),
            id.to_uppercase(),
            format!("{id}0"),
            id[..ID_LEN - 1].to_string(),
            format!("{}g", &id[..ID_LEN - 1]),
            format!("../{}", &id[3..]),
        ];
        for bad in &malformed {
            assert_eq!(
                verify(&set, bad, &grant, Kind::Whole),
                Err(IdDenied::Malformed),
                "{bad:?}"
            );
        }
        // One digit of the tag or of the nonce changed.
        for at in [0, NONCE_BYTES * 2, ID_LEN - 1] {
            let mut b = id.clone().into_bytes();
            b[at] = if b[at] == b'0' { b'1' } else { b'0' };
            let flipped = String::from_utf8(b).unwrap();
            assert_eq!(
                verify(&set, &flipped, &grant, Kind::Whole),
                Err(IdDenied::Mismatch),
                "{at}"
            );
        }
    }

    /// The construction, against the `hmac` crate: the fast MAC and the domain,
    /// kind, nonce and grant in that order.
    #[test]
    fn matches_a_plain_hmac() {
        use hmac::{Hmac, Mac};
        let key = "upload-id-secret-0123456";
        let grant = [3u8; 32];
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(b"assetgate upload-id v1\0p");
        mac.update(&NONCE);
        mac.update(&grant);
        let want = format!(
            "{}{}",
            hex::encode(NONCE),
            hex::encode(&mac.finalize().into_bytes()[..16])
        );
        let set = secrets(&[key]);
        assert_eq!(issue(set.newest().unwrap(), &NONCE, &grant, Kind::Partial), want);
    }
}
