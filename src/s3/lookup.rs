//! The hook decisions' two storage facts on S3 (`[storage] backend = "s3"`),
//! the bucket's answers to what [`crate::tusd::Lookup`] asks:
//!
//! - pre-create: does `public|private/<key>` exist? One HeadObject of the
//!   destination key, the object key the publish would write
//!   ([`destination`]);
//! - pre-finish (`[upload] check_content`): the leading bytes of the upload
//!   object `<upload_prefix><objectId>`, one ranged GetObject of exactly the
//!   [`prefinish::SNIFF_BYTES`] the filesystem check reads
//!   ([`leading_bytes`]). The key is derived from the configuration and the
//!   upload ID, never taken from the hook body (as the plan derives it).
//!
//! Each is bounded by [`LOOKUP_TIMEOUT`]; an error or a timeout is
//! [`StoreUnavailable`] (logged here, refused by the decision with
//! `storage_unavailable` and counted with it): deny by default, never an
//! unchecked accept. Answers the filesystem gives alike stay alike: a missing
//! upload object is "nothing to sniff" (`Ok(None)`), as a missing file is.

use std::time::Duration;

use super::ops::{self, OpError};
use super::Store;
use crate::tusd::session::s3store_object_id;
use crate::tusd::{prefinish, Destination, StoreUnavailable};

/// How long one lookup may take: tusd holds the client's request (the
/// creating POST, the last PATCH) while the hook waits.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `key` (the destination's object key) exists in the bucket.
pub async fn destination(store: &Store, key: &str) -> Destination {
    let bucket = &store.config.bucket;
    match tokio::time::timeout(LOOKUP_TIMEOUT, ops::head(&store.client, bucket, key)).await {
        Ok(Ok(Some(_))) => Destination::Exists,
        Ok(Ok(None)) => Destination::Free,
        Ok(Err(e)) => {
            tracing::warn!(endpoint = "tusd", hook = "pre-create", key, error = %e, "S3: whether the destination exists could not be checked (refusing: storage_unavailable)");
            Destination::Unavailable
        }
        Err(_) => {
            tracing::warn!(
                endpoint = "tusd",
                hook = "pre-create",
                key,
                timeout_s = LOOKUP_TIMEOUT.as_secs(),
                "S3: the bucket did not answer whether the destination exists in time (refusing: storage_unavailable)"
            );
            Destination::Unavailable
        }
    }
}

/// The upload object's key, `<upload_prefix><objectId>`, for the s3store
/// upload ID `upload_id`; `None` for an ID that is not s3store's.
pub fn upload_key(store: &Store, upload_id: &str) -> Option<String> {
    let object_id = s3store_object_id(upload_id)?;
    Some(format!("{}{object_id}", store.config.upload_prefix))
}

/// The first [`prefinish::SNIFF_BYTES`] of upload `upload_id`'s object;
/// `Ok(None)` when the ID is not an s3store one or the object is not there
/// (nothing to sniff, as for a missing file on `fs`).
pub async fn leading_bytes(store: &Store, upload_id: &str) -> Result<Option<Vec<u8>>, StoreUnavailable> {
    let Some(key) = upload_key(store, upload_id) else {
        return Ok(None);
    };
    let key = key.as_str();
    let bucket = &store.config.bucket;
    match tokio::time::timeout(LOOKUP_TIMEOUT, head_of(&store.client, bucket, key)).await {
        Ok(Ok(head)) => Ok(Some(head)),
        Ok(Err(OpError::NotFound)) => Ok(None),
        Ok(Err(e)) => {
            tracing::warn!(endpoint = "tusd", hook = "pre-finish", key, error = %e, "S3: the upload's leading bytes could not be read (refusing: storage_unavailable)");
            Err(StoreUnavailable)
        }
        Err(_) => {
            tracing::warn!(
                endpoint = "tusd",
                hook = "pre-finish",
                key,
                timeout_s = LOOKUP_TIMEOUT.as_secs(),
                "S3: the bucket did not give the upload's leading bytes in time (refusing: storage_unavailable)"
            );
            Err(StoreUnavailable)
        }
    }
}

/// One ranged GetObject of the first [`prefinish::SNIFF_BYTES`] of `key`
/// (an engine that ignores the range gives more: cut to the bound). The
/// publish's own content check reads the same bytes ([`super::publish`]).
/// A 0-byte object has no byte 0: S3 answers 416 to the range, which is the
/// empty head the filesystem check reads of an empty file.
pub async fn head_of(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, OpError> {
    let range = format!("bytes=0-{}", prefinish::SNIFF_BYTES - 1);
    match ops::get(c, bucket, key, Some(range)).await {
        Ok(mut head) => {
            head.truncate(prefinish::SNIFF_BYTES);
            Ok(head)
        }
        Err(OpError::Other {
            status: Some(416), ..
        }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
