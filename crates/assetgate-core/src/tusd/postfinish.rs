//! post-finish: should this finished upload be moved into the asset tree?
//!
//! Stateless (no record from pre-create is needed): everything is re-derived
//! from the upload's metadata and re-verified.
//!
//! 1. `IsPartial` → skip (the final, concatenated upload follows).
//! 2. signature, key and visibility re-verified WITHOUT the expiry check
//!    ([`verify_signature_ignoring_expiry`]): large uploads outlive tokens.
//! 3. the upload must be complete (`Offset == Size`, length known).
//! 4. the upload policy re-checked by pre-create's own code
//!    (`rules::check_policy`) against the final size (the configuration may have
//!    changed, a deferred length was not checked at pre-create, and an event
//!    that never passed pre-create must not slip through).
//! 5. `[tusd] upload_ids = "signed"`: the upload's ID was issued by pre-create
//!    for this very grant, and so was every part of a final upload
//!    ([`super::ids::verify`], 403 `upload_id_invalid`): a token copied into a
//!    planted `.info`, or into a forged event, has no such ID. This is what
//!    makes a publish rest on pre-create's acceptance (expiry, lifetime,
//!    policy, single use at that time) rather than on the signature alone.
//! 6. `Storage.Path` must be present and absolute, and the storage a file store
//!    (`filestore` for tusd, `file_storage` for rustus); with `[storage]
//!    backend = "s3"`, `Storage` must be tusd's `s3store` in `[storage.s3]
//!    bucket` with `Key` = `upload_prefix` + the ID's object part, and the
//!    plan carries those keys ([`ObjectKeys`]), derived, not taken.
//!
//! The result is a [`FinalizePlan`], which only this module builds, and the
//! mover (`crate::finalize::finalize`) takes nothing else: the signed fields it
//! must find unchanged in the upload's own `.info`, the typed destination, and
//! (with `[upload] check_content`) the declared type the file's leading bytes
//! must match, and the upload's [`Identity`]: the mover requires the data file
//! to be `<dir>/<ID>` and, in `signed` mode, a final upload's on-disk parts to
//! be exactly the verified ones. The plan does NOT vouch for the paths: whoever can reach `/tusd`
//! can post any event, so the mover still confines `source` to `[tusd]
//! upload_dir` and the destination to `[storage] root` (symlinks included),
//! re-reads the stored `.info` and requires the plan's signed fields in it, so a
//! forged event cannot pair someone else's data file with its own token. A
//! final upload's parts are taken from that `.info` and checked there too.
//! `finalize-pending` (and any other path to the mover) plans through [`plan`]
//! as well.

use std::path::{Path, PathBuf};

use super::gate::Gate;
use super::ids::{self, Identity};
use super::protocol::Upload;
use super::reason::{ReasonCode, Rejection};
use super::rules::{check_policy, destination};
use crate::policy::Visibility;
use crate::token::upload::{self, verify_signature_ignoring_expiry, Metadata, SignatureVerified};

/// Storage types whose `Path` is a plain data file.
pub const FILE_STORES: [&str; 2] = ["filestore", "file_storage"];

/// tusd's S3 store (`[storage] backend = "s3"`).
pub const S3_STORE: &str = "s3store";

/// Where an upload on S3 is, derived from the configuration and the upload
/// ID (never taken from the hook: the hook's `Bucket` and `Key` must only
/// agree with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKeys {
    /// `[storage.s3] bucket`.
    pub bucket: String,
    /// `<upload_prefix><objectId>`: the upload's bytes.
    pub upload_key: String,
    /// `<upload_key>.info`: tusd's record of it.
    pub info_key: String,
}

/// What to move where. Only [`plan`] builds one, after the signature and key
/// were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizePlan {
    upload_id: String,
    source: PathBuf,
    info_path: Option<PathBuf>,
    destination: PathBuf,
    size: u64,
    overwrite: bool,
    check_content: bool,
    signed: Metadata,
    verified: SignatureVerified,
    identity: Identity,
    object: Option<ObjectKeys>,
}

impl FinalizePlan {
    /// With `[storage] backend = "s3"`: the upload's object keys (then
    /// [`FinalizePlan::source`] is empty: there is no file, and the mover
    /// refuses a relative source).
    pub fn object(&self) -> Option<&ObjectKeys> {
        self.object.as_ref()
    }

    /// `Upload.ID`: the data file must be `<dir>/<ID>` (verified in `signed`
    /// mode, see [`FinalizePlan::identity`]).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// What the upload's ID proves (`[tusd] upload_ids`).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// `Storage.Path` as sent (absolute; NOT yet confined to `upload_dir`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `Storage.InfoPath` as sent (tusd v2.5+), not confined either.
    pub fn info_path(&self) -> Option<&Path> {
        self.info_path.as_deref()
    }

    /// `{public_prefix|private_prefix}/{key}`, relative to `[storage] root`.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// The expected length of the data file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `[storage] overwrite` at planning time.
    pub fn overwrite(&self) -> bool {
        self.overwrite
    }

    /// The asset key.
    pub fn key(&self) -> &str {
        self.verified.key()
    }

    /// The visibility.
    pub fn visibility(&self) -> Visibility {
        self.verified.visibility()
    }

    /// The signed content type (for content sniffing before the move).
    pub fn content_type(&self) -> &str {
        self.verified.content_type()
    }

    /// The signature proof the plan rests on.
    pub fn verified(&self) -> &SignatureVerified {
        &self.verified
    }

    /// The five signed metadata fields exactly as verified: the mover requires
    /// each, unchanged, in the upload's on-disk info (and in every part of a
    /// final upload).
    pub fn signed_fields(&self) -> &Metadata {
        &self.signed
    }

    /// The declared type the leading bytes must match before the publish, when
    /// `[upload] check_content` was on at planning time.
    pub fn content_check(&self) -> Option<&str> {
        self.check_content.then(|| self.verified.content_type())
    }
}

/// Why [`plan`] made no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPlanned {
    /// Nothing to move (a partial upload: the final one follows).
    Skip(ReasonCode),
    /// Refused: the upload stays where it is.
    Keep(Rejection),
}

impl NotPlanned {
    /// The reason code.
    pub fn reason(&self) -> ReasonCode {
        match self {
            NotPlanned::Skip(r) => *r,
            NotPlanned::Keep(r) => r.reason(),
        }
    }
}

/// Plans the move of a finished upload (an event's `Upload`, or a parsed
/// `.info` file), or says why not.
pub fn plan(upload: &Upload, gate: Gate<'_>) -> Result<FinalizePlan, NotPlanned> {
    if upload.is_partial {
        return Err(NotPlanned::Skip(ReasonCode::Partial));
    }
    let verified = verify_signature_ignoring_expiry(&upload.metadata, &gate.upload.secrets)
        .map_err(|d| NotPlanned::Keep(d.into()))?;
    let Some(size) = upload.declared_size().filter(|_| upload.is_complete()) else {
        return Err(NotPlanned::Keep(Rejection::new(
            ReasonCode::Incomplete,
            format!(
                "upload is not complete (offset {} of {})",
                upload.offset,
                upload
                    .declared_size()
                    .map_or_else(|| "a deferred length".to_string(), |s| s.to_string())
            ),
        )));
    };
    check_policy(upload, &verified, gate).map_err(NotPlanned::Keep)?;
    let identity = ids::verify(upload, &verified, gate).map_err(NotPlanned::Keep)?;
    let (source, info_path, object) = match &gate.storage.s3 {
        Some(s3) => (PathBuf::new(), None, Some(object_keys(upload, s3)?)),
        None => {
            let (source, info_path) = file_paths(upload)?;
            (source, info_path, None)
        }
    };
    let signed = upload::FIELDS
        .iter()
        .filter_map(|f| upload.metadata.get(*f).map(|v| ((*f).to_owned(), v.clone())))
        .collect();
    Ok(FinalizePlan {
        upload_id: upload.id.clone(),
        source,
        info_path,
        destination: destination(verified.visibility(), verified.key(), gate.storage),
        size,
        overwrite: gate.storage.overwrite,
        check_content: gate.upload.check_content,
        signed,
        verified,
        identity,
        object,
    })
}

fn storage_refused(why: impl Into<String>) -> NotPlanned {
    NotPlanned::Keep(Rejection::new(ReasonCode::StorageUnsupported, why.into()))
}

/// `[storage] backend = "fs"`: a file store's absolute `Path` (and `InfoPath`).
fn file_paths(upload: &Upload) -> Result<(PathBuf, Option<PathBuf>), NotPlanned> {
    let storage = upload.storage.as_ref();
    if let Some(kind) = storage.and_then(|s| s.kind.as_deref()) {
        if !FILE_STORES.contains(&kind) {
            return Err(storage_refused(
                "upload is not in a file store (only tusd filestore / rustus file_storage can be finalized)",
            ));
        }
    }
    let source = match upload.storage_path() {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        _ => return Err(storage_refused("upload has no absolute Storage.Path")),
    };
    let info_path = storage
        .and_then(|s| s.info_path.as_deref())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    Ok((source, info_path))
}

/// `[storage] backend = "s3"`: the keys derived from the configuration and
/// the upload ID (`objectId+multipartId`); the hook's `Type`, `Bucket` and
/// `Key` must be exactly those, or nothing is planned.
fn object_keys(upload: &Upload, s3: &crate::config::S3Config) -> Result<ObjectKeys, NotPlanned> {
    let storage = upload.storage.as_ref();
    if storage.and_then(|s| s.kind.as_deref()) != Some(S3_STORE) {
        return Err(storage_refused(
            "upload is not in tusd's s3store ([storage] backend = \"s3\")",
        ));
    }
    if storage.and_then(|s| s.bucket.as_deref()) != Some(s3.bucket.as_str()) {
        return Err(storage_refused("Storage.Bucket is not [storage.s3] bucket"));
    }
    // tusd's s3store: `<objectId>+<multipartId>`; the object ID names the key
    // and must stay one segment below the prefix.
    let object_id = match upload.id.split_once('+') {
        Some((o, m))
            if !o.is_empty() && !m.is_empty() && !o.contains(['/', '\\']) && o != "." && o != ".." =>
        {
            o
        }
        _ => {
            return Err(storage_refused(
                "the upload ID is not an s3store ID (objectId+multipartId)",
            ))
        }
    };
    let upload_key = format!("{}{object_id}", s3.upload_prefix);
    if storage.and_then(|s| s.key.as_deref()) != Some(upload_key.as_str()) {
        return Err(storage_refused(
            "Storage.Key is not [storage.s3] upload_prefix + the upload's object ID",
        ));
    }
    Ok(ObjectKeys {
        bucket: s3.bucket.clone(),
        info_key: format!("{upload_key}.info"),
        upload_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::upload::UploadRefusal;
    use crate::token::upload::{mint, FIELD_EXPIRES, FIELD_KEY};
    use crate::token::upload_id::UploadIds;
    use crate::tusd::protocol::Storage;
    use crate::tusd::testing::*;
    use crate::tusd::Verdict;

    /// The post-finish verdict, as `tusd::decide` makes it of a plan.
    fn decide(upload: &Upload, gate: Gate<'_>) -> Verdict {
        match plan(upload, gate) {
            Ok(p) => Verdict::Finalize(Box::new(p)),
            Err(NotPlanned::Skip(r)) => Verdict::Skip(r),
            Err(NotPlanned::Keep(r)) => Verdict::Keep(r),
        }
    }

    fn finished(key: &str, vis: Visibility, expires: i64) -> Upload {
        Upload {
            id: "abc123".into(),
            size: Some(42),
            offset: 42,
            metadata: mint(S1.as_bytes(), key, "image/png", vis, expires),
            storage: Some(Storage {
                kind: Some("filestore".into()),
                path: Some("/var/tusd/abc123".into()),
                info_path: Some("/var/tusd/abc123.info".into()),
                bucket: None,
                key: None,
            }),
            ..Upload::default()
        }
    }

    fn run(u: &Upload) -> Verdict {
        let up = upload_config(&[S2, S1]);
        let st = storage_config();
        decide(
            u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: UploadIds::Server,
            },
        )
    }

    fn keep_reason(v: Verdict) -> ReasonCode {
        match v {
            Verdict::Keep(r) => r.reason(),
            other => panic!("expected Keep, got {other:?}"),
        }
    }

    #[test]
    fn plan_for_expired_but_valid_token() {
        // token expired long ago: still finalized (expiry is a pre-create matter)
        let u = finished("photos/été 2026/plage.png", Visibility::Public, NOW - 1_000_000);
        let Verdict::Finalize(p) = run(&u) else { panic!() };
        assert_eq!(p.source(), Path::new("/var/tusd/abc123"));
        assert_eq!(p.info_path(), Some(Path::new("/var/tusd/abc123.info")));
        assert_eq!(p.destination(), Path::new("public/photos/été 2026/plage.png"));
        assert_eq!(p.key(), "photos/été 2026/plage.png");
        assert_eq!(p.visibility(), Visibility::Public);
        assert_eq!(p.content_type(), "image/png");
        assert_eq!(p.size(), 42);
        assert_eq!(p.upload_id(), "abc123");
        assert!(!p.overwrite());
        let u = finished("x.png", Visibility::Private, NOW);
        let Verdict::Finalize(p) = run(&u) else { panic!() };
        assert_eq!(p.destination(), Path::new("private/x.png"));
    }

    #[test]
    fn partial_is_skipped_even_without_token() {
        let u = Upload {
            is_partial: true,
            ..Upload::default()
        };
        assert_eq!(run(&u), Verdict::Skip(ReasonCode::Partial));
    }

    /// `[storage] backend = "s3"`, bucket `assets`, prefix `tus/`.
    fn run_s3(u: &Upload) -> Verdict {
        let up = upload_config(&[S2, S1]);
        let mut st = storage_config();
        st.backend = crate::config::StorageBackend::S3;
        st.s3 = Some(crate::config::S3Config {
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
        decide(
            u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: UploadIds::Server,
            },
        )
    }

    /// What tusd's s3store sends (measured: `{"Bucket","Key","Type"}`).
    fn on_s3(id: &str, bucket: &str, key: &str) -> Upload {
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.id = id.into();
        u.storage = Some(Storage {
            kind: Some(S3_STORE.into()),
            path: None,
            info_path: None,
            bucket: Some(bucket.into()),
            key: Some(key.into()),
        });
        u
    }

    /// On S3 the plan's keys come from the configuration and the upload ID;
    /// the hook's Type, Bucket and Key must agree exactly, else nothing is
    /// planned (storage_unsupported): a forged hook cannot point the publish
    /// at another object or bucket.
    #[test]
    fn s3_plans_derive_the_keys_and_trust_nothing_of_the_hook() {
        let Verdict::Finalize(p) = run_s3(&on_s3("0a1b+mp.x_y", "assets", "tus/0a1b")) else {
            panic!("planned")
        };
        assert_eq!(
            p.object(),
            Some(&ObjectKeys {
                bucket: "assets".into(),
                upload_key: "tus/0a1b".into(),
                info_key: "tus/0a1b.info".into(),
            })
        );
        assert_eq!(p.source(), Path::new(""), "no file: the mover refuses it");
        for u in [
            on_s3("0a1b+mp", "other", "tus/0a1b"),
            on_s3("0a1b+mp", "assets", "tus/other"),
            on_s3("0a1b+mp", "assets", "0a1b"),
            on_s3("0a1b+mp", "assets", "private/a.png"),
            on_s3("0a1b", "assets", "tus/0a1b"),
            on_s3("+mp", "assets", "tus/"),
            on_s3("a/b+mp", "assets", "tus/a/b"),
            on_s3("..+mp", "assets", "tus/.."),
            {
                let mut u = on_s3("0a1b+mp", "assets", "tus/0a1b");
                u.storage.as_mut().unwrap().kind = Some("filestore".into());
                u
            },
            {
                let mut u = on_s3("0a1b+mp", "assets", "tus/0a1b");
                u.storage = None;
                u
            },
        ] {
            assert_eq!(keep_reason(run_s3(&u)), ReasonCode::StorageUnsupported, "{u:?}");
        }
        // An s3store upload with backend = "fs" is not planned either.
        assert_eq!(
            keep_reason(run(&on_s3("0a1b+mp", "assets", "tus/0a1b"))),
            ReasonCode::StorageUnsupported
        );
        // And a filestore plan carries no object.
        let Verdict::Finalize(p) = run(&finished("a.png", Visibility::Private, NOW)) else {
            panic!("planned")
        };
        assert_eq!(p.object(), None);
    }

    #[test]
    fn final_upload_is_finalized() {
        let mut u = finished("big.png", Visibility::Private, NOW);
        u.is_final = true;
        u.partial_uploads = vec!["p1".into(), "p2".into()];
        assert!(matches!(run(&u), Verdict::Finalize(_)));
    }

    #[test]
    fn tampered_or_unsafe_is_kept() {
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.metadata.insert(FIELD_KEY.into(), "b.png".into());
        assert_eq!(
            keep_reason(run(&u)),
            ReasonCode::Token(UploadRefusal::TokenInvalid)
        );
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.metadata.insert(FIELD_EXPIRES.into(), (NOW + 1).to_string());
        assert_eq!(
            keep_reason(run(&u)),
            ReasonCode::Token(UploadRefusal::TokenInvalid)
        );
        let u = finished("../../etc/cron.d/x", Visibility::Private, NOW);
        assert_eq!(keep_reason(run(&u)), ReasonCode::Token(UploadRefusal::KeyInvalid));
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.metadata.clear();
        assert_eq!(
            keep_reason(run(&u)),
            ReasonCode::Token(UploadRefusal::MetadataMissing)
        );
    }

    #[test]
    fn incomplete_or_no_file_store_is_kept() {
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.offset = 41;
        assert_eq!(keep_reason(run(&u)), ReasonCode::Incomplete);
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.size = None;
        u.size_is_deferred = true;
        assert_eq!(keep_reason(run(&u)), ReasonCode::Incomplete);
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.storage = None;
        assert_eq!(keep_reason(run(&u)), ReasonCode::StorageUnsupported);
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.storage.as_mut().unwrap().path = Some("relative/abc".into());
        assert_eq!(keep_reason(run(&u)), ReasonCode::StorageUnsupported);
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.storage.as_mut().unwrap().kind = Some("s3store".into());
        assert_eq!(keep_reason(run(&u)), ReasonCode::StorageUnsupported);
        // rustus: file_storage, no InfoPath
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.storage = Some(Storage {
            kind: Some("file_storage".into()),
            path: Some("/data/abc".into()),
            info_path: None,
            bucket: None,
            key: None,
        });
        let Verdict::Finalize(p) = run(&u) else { panic!() };
        assert_eq!(p.info_path(), None);
    }

    #[test]
    fn policy_rechecked() {
        let mut up = upload_config(&[S1]);
        up.content_types = vec!["application/pdf".parse().unwrap()];
        let st = storage_config();
        let u = finished("a.png", Visibility::Private, NOW);
        let v = decide(
            &u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: UploadIds::Server,
            },
        );
        assert_eq!(keep_reason(v), ReasonCode::ContentTypeNotAllowed);
        let mut up = upload_config(&[S1]);
        up.max_size = Some(41);
        let v = decide(
            &u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: UploadIds::Server,
            },
        );
        assert_eq!(keep_reason(v), ReasonCode::TooLarge);
        // Served as signed, re-checked when a publish is planned: a finished
        // `a.html` declared `image/png` (created before the rule, or never
        // through pre-create) is kept.
        assert_eq!(
            keep_reason(run(&finished("a.html", Visibility::Public, NOW))),
            ReasonCode::ExtensionMismatch
        );
    }

    #[test]
    fn empty_file() {
        let mut u = finished("empty.png", Visibility::Private, NOW);
        u.size = Some(0);
        u.offset = 0;
        let Verdict::Finalize(p) = run(&u) else { panic!() };
        assert_eq!(p.size(), 0);
    }

    #[test]
    fn the_plan_carries_the_signed_fields_and_the_content_check() {
        let mut u = finished("a.png", Visibility::Private, NOW);
        u.metadata.insert("filename".into(), "not signed".into());
        let Verdict::Finalize(p) = run(&u) else { panic!() };
        let fields: Vec<&str> = p.signed_fields().keys().map(String::as_str).collect();
        let mut want = upload::FIELDS.to_vec();
        want.sort_unstable();
        assert_eq!(fields, want, "exactly the five signed fields");
        for (k, v) in p.signed_fields() {
            assert_eq!(u.metadata.get(k), Some(v));
        }
        assert_eq!(p.content_check(), None, "check_content is off by default");

        let mut up = upload_config(&[S2, S1]);
        up.check_content = true;
        let st = storage_config();
        let Verdict::Finalize(p) = decide(
            &u,
            Gate {
                upload: &up,
                storage: &st,
                upload_ids: UploadIds::Server,
            },
        ) else {
            panic!()
        };
        assert_eq!(p.content_check(), Some("image/png"));
    }
}
