//! Stale multipart uploads under `[storage.s3] upload_prefix`: tusd's s3store
//! keeps an unfinished upload as an open multipart upload (its parts cost
//! storage until aborted). One that was started so long ago that its token
//! has expired and `[tusd] abandon_after` has passed since is aborted.
//!
//! The age bound is conservative without reading the `.info`: pre-create
//! accepts a token whose remaining lifetime is at most `[upload] max_ttl`
//! (plus the clock skew allowed), and tusd starts the multipart upload at
//! creation, so the token expired by `initiated + max_ttl + clock_skew` at the
//! latest. [`stale_before`] is that bound moved back by `abandon_after`.
//!
//! The same sweep aborts the publish's own half-done multipart copies under
//! the public and private prefixes (a kill -9 or a shutdown during
//! UploadPartCopy leaves one; a failed one is aborted where it fails,
//! `crate::s3::ops::multipart_copy`), once older than [`PUBLISH_STALE_AFTER`].
//!
//! Scheduled by the reconciler: every pass, `S3Backend::sweep`
//! (`crate::publisher::S3Backend`) calls [`abort_stale`] with the bound of
//! `[upload] max_ttl`, `[upload] clock_skew` and `[tusd] abandon_after` as
//! configured at start.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;

use super::ops::OpError;

/// Age after which a multipart upload under the public or private prefix is
/// a dead publish: a day. A publish's multipart copy is server-side and
/// lasts from seconds to minutes (parts of 5 GiB, copied inside the store);
/// a day is far beyond the longest one (and beyond any clock difference
/// between replicas and the store), so a live publish is never aborted, and
/// the parts of a dead one cost storage for a day at most. Nothing else of
/// assetgate's makes multipart uploads there; another writer's, if any, is
/// not assetgate's to keep and would be aborted as well (said in the docs).
pub const PUBLISH_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Multipart uploads initiated before this instant are stale.
pub fn stale_before(
    now: SystemTime,
    max_ttl: Duration,
    clock_skew: Duration,
    abandon_after: Duration,
) -> SystemTime {
    // Not before the epoch (a SystemTime may be, on Linux): nothing
    // initiated then exists, and the instant stays printable.
    now.checked_sub(max_ttl + clock_skew + abandon_after)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Aborted {
    /// Aborted.
    pub aborted: usize,
    /// Under the prefix but not stale yet.
    pub kept: usize,
    /// Stale, but the abort failed (logged; the next pass retries).
    pub failed: usize,
}

/// An open multipart upload, as ListMultipartUploads names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Its object key.
    pub key: String,
    /// Its upload ID.
    pub upload_id: String,
    /// When it was started, when the engine says.
    pub initiated: Option<SystemTime>,
}

/// Every open multipart upload under `prefix`, all pages.
///
/// Pages follow with the previous page's `NextKeyMarker` and
/// `NextUploadIdMarker`, as S3 defines it. versitygw v1.8.0 refuses its own
/// `NextUploadIdMarker` (`400 InvalidArgument: Invalid uploadId marker`,
/// measured with 1,005 uploads): once an upload-ID marker is refused, the
/// listing goes on by `KeyMarker` alone, which starts after every upload of
/// that key. Nothing is lost under `upload_prefix` (tusd's s3store has one
/// multipart upload per object key); elsewhere a second upload of the last
/// key of a page is found by the next listing, once the first is gone.
pub async fn list_open(c: &Client, bucket: &str, prefix: &str) -> Result<Vec<Open>, OpError> {
    let mut out = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    let mut by_key = false;
    loop {
        let sent = c
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(if by_key { None } else { id_marker.clone() })
            .send()
            .await
            .map_err(OpError::from);
        let page = match sent {
            Ok(p) => p,
            Err(OpError::Other {
                status: Some(400),
                code,
            }) if code == "InvalidArgument" && !by_key && id_marker.is_some() => {
                tracing::debug!(
                    prefix,
                    "S3: the engine refuses its own upload-ID marker; listing on by key marker alone"
                );
                by_key = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        for u in page.uploads() {
            if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                out.push(Open {
                    key: key.to_owned(),
                    upload_id: id.to_owned(),
                    initiated: u.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
        }
        if page.is_truncated() != Some(true) {
            return Ok(out);
        }
        let next_key = page.next_key_marker().map(str::to_owned);
        let next_id = page.next_upload_id_marker().map(str::to_owned);
        // No way on, or no progress (by key, the same key again): stop
        // rather than loop; the next pass lists again.
        if next_key.is_none() && next_id.is_none() || (by_key && next_key == key_marker) {
            return Ok(out);
        }
        key_marker = next_key;
        id_marker = next_id;
    }
}

/// Aborts the multipart uploads under `prefix` initiated before `before`
/// (every page of the listing, [`list_open`]). An upload whose initiation
/// time the engine does not say is kept. `Err`: the listing failed (nothing
/// aborted; the next pass lists again).
pub async fn abort_stale(
    c: &Client,
    bucket: &str,
    prefix: &str,
    before: SystemTime,
) -> Result<Aborted, OpError> {
    let mut out = Aborted::default();
    for u in list_open(c, bucket, prefix).await? {
        let Some(initiated) = u.initiated else {
            out.kept += 1;
            continue;
        };
        if initiated >= before {
            out.kept += 1;
            continue;
        }
        let key = u.key.as_str();
        // One refusal does not stop the pass: the others are aborted,
        // this one is counted and retried by the next pass.
        match c
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&u.upload_id)
            .send()
            .await
            .map_err(OpError::from)
        {
            // Gone meanwhile (tusd finished it, or another replica aborted it).
            Ok(_) | Err(OpError::NotFound) => {
                tracing::info!(key, "S3: stale multipart upload aborted");
                out.aborted += 1;
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "S3: a stale multipart upload could not be aborted (the next pass retries)");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_adds_the_token_lifetime_skew_and_grace() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = Duration::from_secs(3600);
        assert_eq!(
            stale_before(now, 24 * h, Duration::from_secs(30), 24 * h),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - 48 * 3600 - 30)
        );
        assert_eq!(stale_before(now, 1000 * h, h, h), SystemTime::UNIX_EPOCH);
    }
}
