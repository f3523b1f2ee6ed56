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
//! Scheduled by the reconciler: every pass, `S3Backend::sweep`
//! (`crate::publisher::S3Backend`) calls [`abort_stale`] with the bound of
//! `[upload] max_ttl`, `[upload] clock_skew` and `[tusd] abandon_after` as
//! configured at start.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;

use super::ops::OpError;

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

/// Aborts the multipart uploads under `prefix` initiated before `before`
/// (every page of the listing). An upload whose initiation time the engine
/// does not say is kept. `Err`: the listing failed (what was aborted before
/// is not reported; the next pass lists again).
pub async fn abort_stale(
    c: &Client,
    bucket: &str,
    prefix: &str,
    before: SystemTime,
) -> Result<Aborted, OpError> {
    let mut out = Aborted::default();
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
            let initiated = u.initiated().and_then(|t| SystemTime::try_from(*t).ok());
            let (Some(key), Some(id), Some(initiated)) = (u.key(), u.upload_id(), initiated) else {
                out.kept += 1;
                continue;
            };
            if initiated >= before {
                out.kept += 1;
                continue;
            }
            // One refusal does not stop the pass: the others are aborted,
            // this one is counted and retried by the next pass.
            match c
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
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
