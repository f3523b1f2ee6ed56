//! The reconciler's view of the bucket: the uploads tusd's s3store keeps under
//! `[storage.s3] upload_prefix`, sorted like the filesystem's
//! [`scan_pending`](crate::finalize::scan_pending), and the removal of
//! abandoned ones.
//!
//! What s3store leaves, per upload `<objectId>+<multipartId>` (measured on
//! both engines, docs/s3-groundwork.md): `<prefix><objectId>.info` (tusd's
//! `FileInfo`, written at creation: its `Offset` is not kept current), an open
//! multipart upload on `<prefix><objectId>` while data comes in (and a
//! `<prefix><objectId>.part` for a short tail), and once finished the object
//! `<prefix><objectId>` itself. So, per `.info`:
//!
//! - the object exists with the declared size: finished;
//! - no object, and the `.info`'s multipart upload is still open: in progress;
//! - a refusal marker `<prefix><objectId>.refused` (the publish found a
//!   content mismatch): refused for good, skipped (removed with the upload once
//!   abandoned);
//! - no object and no open multipart upload: stale (a publish that stopped
//!   between the write and the removal, whose rename took the object away,
//!   or a hand cleanup); the publish finishes it when the destination holds
//!   this upload's marker, and refuses it (`SourceMissing`) otherwise; once
//!   its token expired more than `abandon_after` ago, [`remove_stale`]
//!   removes it (unless the destination carries its marker).
//!
//! An upload with a `<prefix><objectId>.refused` beside its `.info` was
//! refused for good (`crate::publisher::S3Backend`'s `record_refusal`): listed as
//! [`SkipReason::Refused`], never offered, removed with its note by
//! [`remove_abandoned`].
//!
//! Nothing here decides: the publish checks everything again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use aws_sdk_s3::Client;

use super::ops::refused_key;
use super::ops::{self, OpError};
use crate::finalize::{InfoFormat, PendingScan, PendingUpload, SkipReason, Skipped};
use crate::tusd::protocol::parse_file_info;

/// Largest `.info` read (tusd's are well under 4 KiB; metadata is bounded by
/// pre-create's limits): a larger one is reported, not read.
pub const MAX_INFO_BYTES: u64 = 64 * 1024;

/// Every object under `prefix` (all pages): key → size.
async fn list(c: &Client, bucket: &str, prefix: &str) -> Result<BTreeMap<String, u64>, OpError> {
    let mut out = BTreeMap::new();
    let mut token = None::<String>;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.insert(
                    k.to_owned(),
                    o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                );
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The open multipart uploads under `prefix` (all pages): `(key, upload ID)`.
async fn open_multiparts(
    c: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<HashSet<(String, String)>, OpError> {
    Ok(super::abandon::list_open(c, bucket, prefix)
        .await?
        .into_iter()
        .map(|u| (u.key, u.upload_id))
        .collect())
}

/// The upload a `.info` describes, keyed as the bucket has it
/// (`info_path`/`data_path` hold the object keys, `bucket` the bucket).
fn upload_of(bucket: &str, info_key: &str, data_key: &str, bytes: &[u8]) -> Result<PendingUpload, String> {
    let u = parse_file_info(bytes).map_err(|e| format!("not a tusd FileInfo: {e}"))?;
    Ok(PendingUpload {
        id: u.id,
        format: InfoFormat::Tusd,
        info_path: PathBuf::from(info_key),
        data_path: PathBuf::from(data_key),
        size: u.size.unwrap_or(0),
        is_final: u.is_final,
        is_partial: u.is_partial,
        parts: u.partial_uploads,
        metadata: u.metadata,
        bucket: Some(bucket.to_owned()),
    })
}

/// Reads and sorts every upload under `prefix` (see the module doc). Only a
/// failed listing is an error; a bad `.info` is reported in `skipped`.
pub async fn scan(c: &Client, bucket: &str, prefix: &str) -> Result<PendingScan, OpError> {
    let objects = list(c, bucket, prefix).await?;
    let multiparts = open_multiparts(c, bucket, prefix).await?;
    let mut scan = PendingScan::default();
    for (info_key, &info_len) in &objects {
        let Some(object_id) = info_key
            .strip_prefix(prefix)
            .and_then(|k| k.strip_suffix(".info"))
        else {
            continue;
        };
        if object_id.is_empty() || object_id.contains('/') {
            continue;
        }
        let data_key = format!("{prefix}{object_id}");
        let skip = |reason| Skipped {
            info_path: PathBuf::from(info_key),
            reason,
            upload: None,
        };
        if info_len > MAX_INFO_BYTES {
            scan.skipped.push(skip(SkipReason::Malformed(format!(
                "larger than {MAX_INFO_BYTES} bytes"
            ))));
            continue;
        }
        let bytes = match ops::get(c, bucket, info_key, None).await {
            Ok(b) => b,
            // Gone since the listing (published or removed meanwhile).
            Err(OpError::NotFound) => continue,
            Err(e) => {
                scan.skipped
                    .push(skip(SkipReason::Malformed(format!("reading it: {e}"))));
                continue;
            }
        };
        let upload = match upload_of(bucket, info_key, &data_key, &bytes) {
            Ok(u) => u,
            Err(why) => {
                scan.skipped.push(skip(SkipReason::Malformed(why)));
                continue;
            }
        };
        // s3store's ID is `<objectId>+<multipartId>`; an `.info` naming
        // another object is not this key's upload.
        let Some(multipart_id) = upload
            .id
            .split_once('+')
            .filter(|(o, _)| *o == object_id)
            .map(|(_, m)| m.to_owned())
        else {
            let why = "its ID is not <objectId>+<multipartId> of its key".to_string();
            scan.skipped.push(skip(SkipReason::Malformed(why)));
            continue;
        };
        let skip_with = |reason, u: PendingUpload| Skipped {
            info_path: PathBuf::from(info_key),
            reason,
            upload: Some(u),
        };
        let open = multiparts.contains(&(data_key.clone(), multipart_id));
        let refused = objects.contains_key(&refused_key(&data_key));
        match objects.get(&data_key) {
            // Refused for good (its `.refused`): never offered again; the
            // abandoned-upload removal takes it once its token is long expired.
            _ if refused => scan.skipped.push(skip_with(SkipReason::Refused, upload)),
            _ if upload.is_partial => scan.skipped.push(skip_with(SkipReason::Partial, upload)),
            Some(&len) if len == upload.size && !open => scan.finished.push(upload),
            Some(_) => scan.skipped.push(skip_with(SkipReason::InProgress, upload)),
            None if open => scan.skipped.push(skip_with(SkipReason::InProgress, upload)),
            None => scan.stale.push(upload),
        }
    }
    Ok(scan)
}

/// Removes a stale upload (the scan's `stale`: an `.info` with neither object
/// nor open multipart upload, e.g. after [`super::abandon::abort_stale`]
/// aborted it) whose token the caller found expired more than
/// `abandon_after` ago, unless `destination` carries this upload's marker (a
/// publish that stopped before its removal: the publish finishes that, with
/// its event). Then as [`remove_abandoned`] (which keeps it if a finished
/// object appeared meanwhile).
pub async fn remove_stale(
    c: &Client,
    bucket: &str,
    upload: &PendingUpload,
    destination: &str,
) -> Result<bool, OpError> {
    if let Some(h) = ops::head(c, bucket, destination).await? {
        if h.marker.as_deref() == Some(upload.id.as_str()) {
            return Ok(false);
        }
    }
    remove_abandoned(c, bucket, upload).await
}

/// Removes an abandoned upload: reads its `.info` again and removes nothing
/// unless it still describes the same upload (same ID and metadata) and no
/// finished object of the declared size is there (a client finishing
/// meanwhile keeps it, unless its refusal is recorded: `<data_key>.refused`);
/// then aborts its multipart upload and deletes the `.part`, the object (if
/// any), the `.info` and the refusal marker, the last two last (a crash in
/// between leaves an `.info` the next pass removes). `Ok(false)`: left as it is.
pub async fn remove_abandoned(c: &Client, bucket: &str, upload: &PendingUpload) -> Result<bool, OpError> {
    let (Some(info_key), Some(data_key)) = (upload.info_path.to_str(), upload.data_path.to_str()) else {
        return Ok(false);
    };
    let bytes = match ops::get(c, bucket, info_key, None).await {
        Ok(b) => b,
        Err(OpError::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let Ok(now) = upload_of(bucket, info_key, data_key, &bytes) else {
        return Ok(false);
    };
    if now.id != upload.id || now.metadata != upload.metadata {
        return Ok(false);
    }
    // Refused for good: its finished object goes too (never published).
    let refused = ops::head(c, bucket, &refused_key(data_key)).await?.is_some();
    if !now.is_partial && !refused {
        if let Some(h) = ops::head(c, bucket, data_key).await? {
            if h.size == now.size {
                return Ok(false);
            }
        }
    }
    if let Some((_, multipart_id)) = now.id.split_once('+') {
        match c
            .abort_multipart_upload()
            .bucket(bucket)
            .key(data_key)
            .upload_id(multipart_id)
            .send()
            .await
            .map_err(OpError::from)
        {
            Ok(_) | Err(OpError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    // The refusal last: a crash before it leaves the upload refused.
    for key in [
        format!("{data_key}.part"),
        data_key.to_owned(),
        info_key.to_owned(),
        refused_key(data_key),
    ] {
        match ops::delete(c, bucket, &key).await {
            Ok(()) | Err(OpError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
