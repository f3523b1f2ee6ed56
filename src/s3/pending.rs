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
//!   this upload's marker, and refuses it (`SourceMissing`) otherwise.
//!
//! Nothing here decides: the publish checks everything again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use aws_sdk_s3::Client;

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
    let mut out = HashSet::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let page = c
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await?;
        for u in page.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                out.insert((k.to_owned(), id.to_owned()));
            }
        }
        if page.is_truncated() != Some(true) {
            return Ok(out);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(out);
        }
    }
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
        let refused = objects.contains_key(&super::publish::refused_key(&data_key));
        match objects.get(&data_key) {
            _ if upload.is_partial => scan.skipped.push(skip_with(SkipReason::Partial, upload)),
            // Refused for good (a content mismatch): never offered again.
            _ if refused => scan.skipped.push(skip_with(SkipReason::Refused, upload)),
            Some(&len) if len == upload.size && !open => scan.finished.push(upload),
            Some(_) => scan.skipped.push(skip_with(SkipReason::InProgress, upload)),
            None if open => scan.skipped.push(skip_with(SkipReason::InProgress, upload)),
            None => scan.stale.push(upload),
        }
    }
    Ok(scan)
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
    let marker = super::publish::refused_key(data_key);
    let refused = ops::head(c, bucket, &marker).await?.is_some();
    // A finished upload stays, unless it was refused for good.
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
    // The refusal marker last: it never outlives the data it guards.
    for key in [
        format!("{data_key}.part"),
        data_key.to_owned(),
        info_key.to_owned(),
        marker,
    ] {
        match ops::delete(c, bucket, &key).await {
            Ok(()) | Err(OpError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
