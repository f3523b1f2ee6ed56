//! One upload published in the bucket: checked again against the upload
//! object itself, then written by the self-test's method without ever
//! overwriting, then the upload removed.
//!
//! Nothing from the hook body is trusted here: the caller passes the keys it
//! derived from the configuration and the verified upload ID, and the
//! verified plan's size, type and ID. The order, and why:
//!
//! 1. HeadObject of the upload: its size must be the plan's (tusd completes
//!    the multipart upload before the hooks fire). No upload object but a
//!    destination whose marker is this upload's: an earlier pass published it
//!    and stopped before the removal: finish that.
//!    With `[tusd] upload_ids = "signed"` ([`Request::check_info`]), the
//!    upload's `.info` must name the hook's full ID and the plan's size.
//! 2. `check_content`: a ranged GET of the leading
//!    [`prefinish::SNIFF_BYTES`] only. A mismatch is recorded for good
//!    (`<upload_key>.refused`, written before the refusal is reported), and
//!    a recorded refusal is looked at before anything else: no later
//!    configuration (without `check_content`) publishes those bytes.
//! 3. The publish ([`ops::rename`], [`ops::conditional_copy`] or
//!    [`ops::multipart_copy`]; [`method_for`] the size), with `If-None-Match:
//!    *`: a HeadObject of the destination first (taken by another upload, or
//!    by an object that is not assetgate's: [`PublishError::Conflict`] at
//!    once, nothing copied; this upload's: a duplicate). The conditional write
//!    stays the guard: a 412 (or, for a replayed rename, a 404 for the
//!    vanished source) is looked at by the destination's marker: this
//!    upload's is success (a duplicate post-finish, a replay), anything else
//!    is [`PublishError::Conflict`], the existing object untouched.
//! 4. SHA-256 of the published bytes: one full streamed GET of the
//!    destination (neither engine stores a whole-object SHA-256 for tusd's
//!    objects; costs one read of the object per upload, no memory beyond a
//!    chunk). The same GET's answer must carry the verified type, verbatim,
//!    in [`ops::TYPE`] (what nginx serves as `Content-Type`): else
//!    [`PublishError::TypeNotKept`], no event (the object's own
//!    `Content-Type` is not required equal: engines rewrite it, and nginx
//!    never serves it). The
//!    same GET's marker must be this upload's ([`settle`]): a write an engine
//!    answered 200 without doing, while another upload's object of the same
//!    size sits at the key, is a [`PublishError::Conflict`], never that
//!    object's SHA-256 in this upload's event.
//! 5. `commit` (the event) before the removal, as on `fs`: `false` leaves the
//!    upload for a later pass.
//! 6. DeleteObject of the upload object and its `.info`.
//!
//! Before all of it, an upload refused for good earlier (its
//! `<upload_prefix><objectId>.refused`, [`refused_key`], written by the
//! backend once the refusal's `upload.failed` is committed) is
//! [`PublishError::Refused`]: nothing read, nothing written, whatever the
//! configuration says now (as `<ID>.refused` on `fs`).

use aws_sdk_s3::Client;
use sha2::{Digest as _, Sha256};

use super::ops::{self, Attributes, Head, OpError};
use super::selftest::PublishMethod;
use crate::tusd::prefinish;

/// What to publish: keys derived by the caller from the configuration and
/// the verified upload ID, never from the hook body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// `<upload_prefix><objectId>`.
    pub upload_key: &'a str,
    /// `<upload_prefix><objectId>.info`.
    pub info_key: &'a str,
    /// `<public|private prefix>/<key>`.
    pub destination: &'a str,
    /// The verified size.
    pub size: u64,
    /// The verified Content-Type and the upload ID (the marker).
    pub attrs: Attributes<'a>,
    /// `[upload] check_content`: the declared type the leading bytes must match.
    pub content_check: Option<&'a str>,
    /// `[tusd] upload_ids = "signed"`: the upload's `.info` must name exactly
    /// `attrs.upload_id` and `size` (the signed ID proves the object ID only,
    /// the part before `+`; a forged post-finish could name another
    /// multipart ID, which would become the marker and the event's ID).
    pub check_info: bool,
}

/// A published upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Bytes in the published object.
    pub bytes: u64,
    /// SHA-256 of those bytes, read back from the bucket.
    pub sha256: [u8; 32],
    /// Whether it was already published by an earlier pass (this one only
    /// finished the removal, or found a duplicate).
    pub already: bool,
    /// Whether the upload object and its `.info` were removed (`false`: the
    /// commit declined, or a removal failed; a later pass finishes it).
    pub removed: bool,
}

/// Why an upload was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The upload object is not the plan's size.
    #[error("the upload object is {found} bytes, not the {expected} the upload declared")]
    NotFinished {
        /// The plan's.
        expected: u64,
        /// The object's.
        found: u64,
    },
    /// Neither the upload object nor this upload's published object exists.
    #[error("the upload object does not exist and this upload's published object neither")]
    SourceMissing,
    /// `check_content`: the leading bytes are not the declared type's.
    #[error("the upload's content is not {expected}, as its declared content type says")]
    ContentMismatch {
        /// The signature family expected.
        expected: &'static str,
    },
    /// A final refusal (a content mismatch, a conflict) was recorded for this
    /// upload before (`<upload_key>.refused`): not published, whatever the
    /// configuration says now.
    #[error("the upload was refused earlier and the refusal recorded (<upload object>.refused in the bucket): not published")]
    Refused,
    /// The destination holds another upload's object (or one not published
    /// by assetgate): nothing was overwritten.
    #[error("the destination already exists (another upload's): nothing overwritten")]
    Conflict,
    /// `check_info`: the upload's `.info` names another upload ID.
    #[error("the upload's .info names another upload ID than the hook's")]
    InfoId,
    /// `check_info`: the upload's `.info` is missing, unreadable, larger than
    /// [`super::pending::MAX_INFO_BYTES`], or names another size.
    #[error("the upload's .info does not describe this upload: {0}")]
    Info(&'static str),
    /// The published object is not the size it was published with.
    #[error("the published object is {found} bytes, not {expected}")]
    Published {
        /// Expected.
        expected: u64,
        /// Read back.
        found: u64,
    },
    /// The published object does not carry the verified type in
    /// `x-amz-meta-assetgate-type` (the engine dropped or changed it): nginx
    /// would serve it as `application/octet-stream`, not as signed. No event.
    #[error("the published object's x-amz-meta-assetgate-type is {found:?}, not the signed type")]
    TypeNotKept {
        /// What the engine returned (`None`: absent).
        found: Option<String>,
    },
    /// An S3 request failed (transient or not): the upload stays.
    #[error("S3: {op}: {error}")]
    S3 {
        /// Which step.
        op: &'static str,
        /// What the engine said.
        error: OpError,
    },
}

fn s3(op: &'static str) -> impl FnOnce(OpError) -> PublishError {
    move |error| PublishError::S3 { op, error }
}

/// Publishes `req` by `method` (the self-test's); `commit` runs once the
/// object is in place, with its size and SHA-256, before the upload is
/// removed.
pub async fn publish(
    c: &Client,
    method: PublishMethod,
    req: Request<'_>,
    commit: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Result<Published, PublishError> {
    let b = req.bucket;
    // Refused for good before: looked at first, whatever the plan says now.
    if ops::head(c, b, &refused_key(req.upload_key))
        .await
        .map_err(s3("HeadObject refusal marker"))?
        .is_some()
    {
        return Err(PublishError::Refused);
    }
    let already = match ops::head(c, b, req.upload_key)
        .await
        .map_err(s3("HeadObject upload"))?
    {
        Some(h) if h.size != req.size => {
            return Err(PublishError::NotFinished {
                expected: req.size,
                found: h.size,
            })
        }
        Some(_) => {
            if req.check_info {
                check_info(c, &req).await?;
            }
            if let Some(declared) = req.content_check {
                if let Err(refused) = check_content(c, b, req.upload_key, declared).await {
                    if matches!(refused, PublishError::ContentMismatch { .. }) {
                        // The verdict is on the bytes: recorded before it is
                        // reported, so no later configuration publishes them.
                        mark_refused(c, &req, declared, &refused).await?;
                    }
                    return Err(refused);
                }
            }
            // Taken already: refused before any copy (a conflict loser on a
            // multipart-copy engine would otherwise be copied server-side
            // before the 412 says no). The conditional write below stays the
            // guard against a race with another publish.
            match ops::head(c, b, req.destination)
                .await
                .map_err(s3("HeadObject destination"))?
            {
                Some(Head { marker: Some(m), .. }) if m == req.attrs.upload_id => true,
                Some(_) => return Err(PublishError::Conflict),
                None => match write(c, method, &req).await {
                    Ok(()) => false,
                    Err(OpError::Precondition) | Err(OpError::NotFound) => {
                        ours(c, &req).await?;
                        true
                    }
                    Err(e) => return Err(s3("publish")(e)),
                },
            }
        }
        None => {
            ours(c, &req).await.map_err(|e| match e {
                PublishError::Conflict => PublishError::SourceMissing,
                e => e,
            })?;
            true
        }
    };
    settle(c, &req, already, commit).await
}

/// What follows a write the engine said was done (or a destination found
/// this upload's): the destination read back whole for its size and SHA-256,
/// its marker required to be this upload's (a 200 proves nothing: an engine
/// that answers a write without doing it must not get another upload's
/// object reported as this one's), then `commit`, then the upload's removal.
/// Public so the engine tests can call it as if a write had been answered
/// 200 without effect.
pub async fn settle(
    c: &Client,
    req: &Request<'_>,
    already: bool,
    commit: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Result<Published, PublishError> {
    let b = req.bucket;
    let (bytes, sha256, marker, signed_type) = digest(c, b, req.destination).await?;
    if marker.as_deref() != Some(req.attrs.upload_id) {
        return Err(PublishError::Conflict);
    }
    if signed_type.as_deref() != Some(req.attrs.content_type) {
        return Err(PublishError::TypeNotKept { found: signed_type });
    }
    if bytes != req.size {
        return Err(PublishError::Published {
            expected: req.size,
            found: bytes,
        });
    }
    let mut removed = false;
    if commit(bytes, &sha256) {
        let data = ops::delete(c, b, req.upload_key).await;
        let info = ops::delete(c, b, req.info_key).await;
        removed = data.is_ok() && info.is_ok();
        for (key, r) in [(req.upload_key, data), (req.info_key, info)] {
            if let Err(e) = r {
                tracing::warn!(key, error = %e, "S3 publish: the upload's object could not be removed (a later pass retries)");
            }
        }
    }
    Ok(Published {
        bytes,
        sha256,
        already,
        removed,
    })
}

/// Where an upload's final refusal is recorded (defined beside the markers,
/// in [`ops`], so the scan reads it without importing the publish).
pub use super::ops::refused_key;

/// The method a publish of `size` bytes uses: the self-test's, except that
/// above [`ops::MAX_COPY_PART`] (5 GiB) the portable multipart copy is used
/// for the two others as well. AWS refuses a CopyObject above 5 GiB, and the
/// rename method starts with one (the upload object copied onto itself to
/// take the Content-Type and the marker; RenameObject itself has no
/// documented size limit). The multipart copy's guard is
/// CompleteMultipartUpload with `If-None-Match: *`, honoured by AWS,
/// SeaweedFS, MinIO and versitygw (issue 21's probes).
pub fn method_for(method: PublishMethod, size: u64) -> PublishMethod {
    if size > ops::MAX_COPY_PART {
        PublishMethod::MultipartCopy
    } else {
        method
    }
}

async fn write(c: &Client, method: PublishMethod, req: &Request<'_>) -> Result<(), OpError> {
    let (b, src, dst) = (req.bucket, req.upload_key, req.destination);
    match method_for(method, req.size) {
        PublishMethod::Rename => ops::rename(c, b, src, dst, req.attrs).await,
        PublishMethod::ConditionalCopy => ops::conditional_copy(c, b, src, dst, req.attrs).await,
        PublishMethod::MultipartCopy => ops::multipart_copy(c, b, src, dst, req.size, req.attrs).await,
    }
}

/// The destination exists: is it this upload's?
async fn ours(c: &Client, req: &Request<'_>) -> Result<(), PublishError> {
    match ops::head(c, req.bucket, req.destination)
        .await
        .map_err(s3("HeadObject destination"))?
    {
        Some(Head { marker: Some(m), .. }) if m == req.attrs.upload_id => Ok(()),
        _ => Err(PublishError::Conflict),
    }
}

/// The `.info` tusd wrote names this upload's full ID and size: one ranged
/// GET of at most [`super::pending::MAX_INFO_BYTES`] (+1 to see a larger one),
/// parsed as the reconciler parses it.
async fn check_info(c: &Client, req: &Request<'_>) -> Result<(), PublishError> {
    let max = super::pending::MAX_INFO_BYTES;
    let bytes = match ops::get(c, req.bucket, req.info_key, Some(format!("bytes=0-{max}"))).await {
        Ok(b) => b,
        Err(OpError::NotFound) => return Err(PublishError::Info("no .info")),
        Err(e) => return Err(s3("GetObject .info")(e)),
    };
    if bytes.len() as u64 > max {
        return Err(PublishError::Info("larger than 64 KiB"));
    }
    let info = crate::tusd::protocol::parse_file_info(&bytes)
        .map_err(|_| PublishError::Info("not a tusd FileInfo"))?;
    if info.id != req.attrs.upload_id {
        return Err(PublishError::InfoId);
    }
    if info.size != Some(req.size) {
        return Err(PublishError::Info("its size is not the upload's"));
    }
    Ok(())
}

async fn check_content(c: &Client, bucket: &str, key: &str, declared: &str) -> Result<(), PublishError> {
    let head = super::lookup::head_of(c, bucket, key)
        .await
        .map_err(s3("GetObject leading bytes"))?;
    prefinish::check(declared, &head).map_err(|_| PublishError::ContentMismatch {
        expected: prefinish::expected_signature(declared).unwrap_or("of its declared type"),
    })
}

/// Writes the refusal marker (a short JSON note for the operator).
async fn mark_refused(
    c: &Client,
    req: &Request<'_>,
    declared: &str,
    refused: &PublishError,
) -> Result<(), PublishError> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let note = serde_json::json!({
        "reason": "content_mismatch",
        "detail": refused.to_string(),
        "destination": req.destination,
        "declared_type": declared,
        "refused_at": at,
        "readmit": "delete this object, then publish with [upload] check_content off (docs/upload-lifecycle.md: refused uploads)",
    });
    ops::put(
        c,
        req.bucket,
        &refused_key(req.upload_key),
        format!("{note}\n").as_bytes(),
    )
    .await
    .map_err(s3("PutObject refusal marker"))
}

/// Size, SHA-256, marker and [`ops::TYPE`] of an object, streamed (the
/// metadata from the same GET's answer: no request of its own).
async fn digest(
    c: &Client,
    bucket: &str,
    key: &str,
) -> Result<(u64, [u8; 32], Option<String>, Option<String>), PublishError> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3("GetObject published")(e.into()))?;
    let signed_type = out.metadata().and_then(|m| m.get(ops::TYPE)).cloned();
    let marker = out.metadata().and_then(|m| m.get(ops::MARKER)).cloned();
    let mut body = out.body;
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| PublishError::S3 {
        op: "GetObject published",
        error: OpError::Other {
            status: None,
            code: format!("reading the body: {e}"),
        },
    })? {
        bytes += chunk.len() as u64;
        hash.update(&chunk);
    }
    Ok((bytes, hash.finalize().into(), marker, signed_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn above_five_gib_every_method_copies_by_parts() {
        let all = [
            PublishMethod::Rename,
            PublishMethod::ConditionalCopy,
            PublishMethod::MultipartCopy,
        ];
        for m in all {
            assert_eq!(method_for(m, 0), m);
            assert_eq!(method_for(m, ops::MAX_COPY_PART), m);
            assert_eq!(
                method_for(m, ops::MAX_COPY_PART + 1),
                PublishMethod::MultipartCopy
            );
        }
    }
}
