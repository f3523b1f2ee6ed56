//! The S3 operations a publish is made of, shared by the self-test (which
//! proves them on scratch keys) and the publisher: the three no-overwrite
//! methods, and the answers sorted into what the callers decide on (a 412,
//! a missing object, anything else with its status and S3 code).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_sdk_s3::Client;

use super::client::copy_source;

/// The user metadata naming the upload a published object came from
/// (`x-amz-meta-assetgate-upload`).
pub const MARKER: &str = "assetgate-upload";

/// The user metadata carrying the verified token's Content-Type, verbatim
/// (`x-amz-meta-assetgate-type`). What the shipped nginx serves as
/// `Content-Type` (nginx/assetgate-s3-proxy.conf), never the object's own
/// `Content-Type`: an engine may store another type than the one it was
/// given (SeaweedFS replaces `application/octet-stream` by a type guessed
/// from the key's extension), and tusd's s3store sets the upload object's
/// type from the client's unsigned `filetype`. User metadata is stored and
/// returned as given (the self-test proves it at start).
pub const TYPE: &str = "assetgate-type";

/// Where an upload's final refusal is recorded:
/// `<upload_prefix><objectId>.refused` beside its `.info` (as `<ID>.refused`
/// on `fs`): its existence is the record; the reconciler removes it with the
/// abandoned upload, last.
pub fn refused_key(upload_key: &str) -> String {
    format!("{upload_key}.refused")
}

/// Largest part of an UploadPartCopy (S3's limit).
pub const MAX_COPY_PART: u64 = 5 * 1024 * 1024 * 1024;

/// How an S3 call failed, as the callers decide on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// 412: a conditional write found the destination taken.
    #[error("412 PreconditionFailed")]
    Precondition,
    /// 404: no such key (or upload).
    #[error("404 NoSuchKey")]
    NotFound,
    /// Anything else: the status (none: no answer) and S3's error code.
    #[error("{}", describe(*.status, .code))]
    Other {
        /// HTTP status, when an answer came.
        status: Option<u16>,
        /// S3's error code, or the SDK's description of what went wrong.
        code: String,
    },
}

fn describe(status: Option<u16>, code: &str) -> String {
    match status {
        Some(s) => format!("{s} {code}"),
        None => format!("no answer: {code}"),
    }
}

impl<E> From<SdkError<E, HttpResponse>> for OpError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(e: SdkError<E, HttpResponse>) -> Self {
        let status = e.raw_response().map(|r| r.status().as_u16());
        match status {
            Some(412) => OpError::Precondition,
            Some(404) => OpError::NotFound,
            _ => OpError::Other {
                status,
                code: e
                    .code()
                    .map(str::to_owned)
                    .unwrap_or_else(|| aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
            },
        }
    }
}

/// An object's size and what the publish set on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes.
    pub size: u64,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `x-amz-meta-assetgate-upload`.
    pub marker: Option<String>,
    /// `x-amz-meta-assetgate-type` ([`TYPE`]).
    pub signed_type: Option<String>,
}

/// HeadObject: `None` when there is no such key.
pub async fn head(c: &Client, bucket: &str, key: &str) -> Result<Option<Head>, OpError> {
    match c.head_object().bucket(bucket).key(key).send().await {
        Ok(h) => Ok(Some(Head {
            size: h
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            content_type: h.content_type().map(str::to_owned),
            marker: h.metadata().and_then(|m| m.get(MARKER)).cloned(),
            signed_type: h.metadata().and_then(|m| m.get(TYPE)).cloned(),
        })),
        Err(e) => match OpError::from(e) {
            OpError::NotFound => Ok(None),
            e => Err(e),
        },
    }
}

/// PutObject of `bytes` (scratch keys only: uploads come from tusd).
pub async fn put(c: &Client, bucket: &str, key: &str, bytes: &[u8]) -> Result<(), OpError> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await?;
    Ok(())
}

/// GetObject of `range` (`bytes=0-261`) or the whole object, read into memory
/// (scratch keys and leading bytes only; a whole upload is streamed).
pub async fn get(c: &Client, bucket: &str, key: &str, range: Option<String>) -> Result<Vec<u8>, OpError> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range)
        .send()
        .await?;
    let body = out.body.collect().await.map_err(|e| OpError::Other {
        status: None,
        code: format!("reading the body: {e}"),
    })?;
    Ok(body.into_bytes().to_vec())
}

/// DeleteObject (S3 answers 204 for a key that is not there too).
pub async fn delete(c: &Client, bucket: &str, key: &str) -> Result<(), OpError> {
    c.delete_object().bucket(bucket).key(key).send().await?;
    Ok(())
}

/// What a published object carries.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The verified token's Content-Type: set as the object's
    /// `Content-Type` and, verbatim, as [`TYPE`] (what nginx serves).
    pub content_type: &'a str,
    /// The upload ID, as the marker.
    pub upload_id: &'a str,
}

/// The rename method: the upload object first gets Content-Type, the
/// marker and [`TYPE`] in place (CopyObject onto itself, `MetadataDirective:
/// REPLACE`: a rename keeps what the source carries, and tusd's object
/// carries the client's unsigned `filetype` as its type and metadata: all
/// replaced),
/// then RenameObject `src` -> `dst` with `If-None-Match: *` on the
/// destination.
pub async fn rename(
    c: &Client,
    bucket: &str,
    src: &str,
    dst: &str,
    attrs: Attributes<'_>,
) -> Result<(), OpError> {
    c.copy_object()
        .bucket(bucket)
        .key(src)
        .copy_source(copy_source(bucket, src))
        .metadata_directive(MetadataDirective::Replace)
        .content_type(attrs.content_type)
        .metadata(MARKER, attrs.upload_id)
        .metadata(TYPE, attrs.content_type)
        .send()
        .await?;
    c.rename_object()
        .bucket(bucket)
        .key(dst)
        .rename_source(copy_source(bucket, src))
        .destination_if_none_match("*")
        .send()
        .await?;
    Ok(())
}

/// CopyObject `src` -> `dst` with `If-None-Match: *`, Content-Type, the
/// marker and [`TYPE`] (`MetadataDirective: REPLACE`: nothing of tusd's
/// object's own metadata is copied).
pub async fn conditional_copy(
    c: &Client,
    bucket: &str,
    src: &str,
    dst: &str,
    attrs: Attributes<'_>,
) -> Result<(), OpError> {
    c.copy_object()
        .bucket(bucket)
        .key(dst)
        .copy_source(copy_source(bucket, src))
        .if_none_match("*")
        .metadata_directive(MetadataDirective::Replace)
        .content_type(attrs.content_type)
        .metadata(MARKER, attrs.upload_id)
        .metadata(TYPE, attrs.content_type)
        .send()
        .await?;
    Ok(())
}

/// The portable method: CreateMultipartUpload (Content-Type, marker,
/// [`TYPE`]; the parts bring bytes only),
/// UploadPartCopy of `size` bytes in parts of at most [`MAX_COPY_PART`],
/// CompleteMultipartUpload with `If-None-Match: *`. On any failure the
/// multipart upload is aborted (nothing is left half-made).
pub async fn multipart_copy(
    c: &Client,
    bucket: &str,
    src: &str,
    dst: &str,
    size: u64,
    attrs: Attributes<'_>,
) -> Result<(), OpError> {
    let up = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(dst)
        .content_type(attrs.content_type)
        .metadata(MARKER, attrs.upload_id)
        .metadata(TYPE, attrs.content_type)
        .send()
        .await?;
    let Some(id) = up.upload_id().map(str::to_owned) else {
        return Err(OpError::Other {
            status: Some(200),
            code: "CreateMultipartUpload answered without an UploadId".into(),
        });
    };
    let result = copy_parts(c, bucket, src, dst, size, &id).await;
    if result.is_err() {
        // Best effort: what is left (this abort failing, or a kill -9 before
        // it) is aborted by the reconciler's sweep under the public and
        // private prefixes once a day old (`abandon::PUBLISH_STALE_AFTER`).
        let _ = c
            .abort_multipart_upload()
            .bucket(bucket)
            .key(dst)
            .upload_id(&id)
            .send()
            .await;
    }
    result
}

async fn copy_parts(
    c: &Client,
    bucket: &str,
    src: &str,
    dst: &str,
    size: u64,
    id: &str,
) -> Result<(), OpError> {
    let mut parts = Vec::new();
    let mut start = 0u64;
    let mut number = 1i32;
    loop {
        let mut req = c
            .upload_part_copy()
            .bucket(bucket)
            .key(dst)
            .upload_id(id)
            .part_number(number)
            .copy_source(copy_source(bucket, src));
        // A 0-byte object is one part copied whole (no range can name it).
        let end = size.min(start.saturating_add(MAX_COPY_PART));
        if size > 0 {
            req = req.copy_source_range(format!("bytes={start}-{}", end - 1));
        }
        let out = req.send().await?;
        let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned);
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(etag)
                .build(),
        );
        if end >= size {
            break;
        }
        start = end;
        number += 1;
    }
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(dst)
        .upload_id(id)
        .if_none_match("*")
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await?;
    Ok(())
}
