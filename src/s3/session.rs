//! The session binding's record on S3 (`/session` with `[storage] backend =
//! "s3"`): the upload's `<upload_prefix><objectId>.info`, which tusd's
//! s3store writes once at creation (after pre-create verified the token),
//! read with one ranged GetObject per `PATCH`/`HEAD`/`GET`/`DELETE`.
//!
//! Cost, measured on SeaweedFS (`tests/s3_backend.rs`
//! `seaweedfs_session_binding_reads_the_info_from_the_bucket`): one GET of a
//! few hundred bytes per request nginx asks about; no cache (see
//! docs/s3-groundwork.md for the figure and why none is needed yet).
//!
//! Bounded: at most [`MAX_INFO_BYTES`] are asked for (a larger `.info` is not
//! tusd's and counts as no record), within [`READ_TIMEOUT`]. Fails closed:
//! no record (`unknown_upload`, 403) when the object is missing, too large,
//! not a tusd `FileInfo`, names another upload, or the store does not answer
//! (logged).

use std::time::Duration;

use crate::s3::ops::{self, OpError};
use crate::s3::pending::MAX_INFO_BYTES;
use crate::s3::Store;
use crate::tusd::protocol::parse_file_info;
use crate::tusd::session::s3store_object_id;
use crate::tusd::Part;

/// How long one `.info` read may take: nginx holds the client's request
/// meanwhile (the client's own operation timeout is for publishes, minutes).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The record of upload `id` (`<objectId>+<multipartId>`), or `None`.
pub async fn part(store: &Store, id: &str) -> Option<Part> {
    let object_id = s3store_object_id(id)?;
    let key = format!("{}{object_id}.info", store.config.upload_prefix);
    // One byte more than allowed tells "too large" from "exactly the bound".
    let range = format!("bytes=0-{MAX_INFO_BYTES}");
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        ops::get(&store.client, &store.config.bucket, &key, Some(range)),
    )
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(OpError::NotFound)) => return None,
        Ok(Err(e)) => {
            tracing::warn!(key = key.as_str(), error = %e, "/session: reading the upload's .info from the bucket failed (denying)");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                key = key.as_str(),
                timeout_s = READ_TIMEOUT.as_secs(),
                "/session: the bucket did not answer for the upload's .info in time (denying)"
            );
            return None;
        }
    };
    if bytes.len() as u64 > MAX_INFO_BYTES {
        return None;
    }
    let info = parse_file_info(&bytes).ok()?;
    // The `.info` must be this very upload's (same object and multipart ID).
    if info.id != id {
        return None;
    }
    Some(Part {
        is_partial: info.is_partial,
        // s3store's `.info` is written at creation only: whether the data is
        // complete is not in it (and /session does not ask).
        finished: false,
        metadata: info.metadata,
    })
}
