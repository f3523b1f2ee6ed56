//! The S3 backend's families:
//! - `assetgate_s3_publish_method{method}`: 1 for the no-overwrite publish
//!   method the self-test at start chose (`crate::s3::selftest`), 0 for the
//!   others; all 0 with `[storage] backend = "fs"`;
//! - `assetgate_s3_stale_multipart_uploads_total{result}`: the stale
//!   multipart uploads under `upload_prefix` the reconciler's passes aborted
//!   (`aborted`) or could not (`failed`; the next pass retries)
//!   (`crate::s3::abandon`).

use prometheus::{IntGaugeVec, Opts, Registry};

use super::label::{labels, registered, Counters, Label};

labels!(
    /// `method` of `assetgate_s3_publish_method`, best first (the order the
    /// self-test tries them in).
    PublishMethod "method" {
        /// RenameObject with `If-None-Match: *`.
        Rename => "rename",
        /// CopyObject with `If-None-Match: *`.
        ConditionalCopy => "conditional_copy",
        /// CreateMultipartUpload + UploadPartCopy + CompleteMultipartUpload
        /// with `If-None-Match: *` (the portable method).
        MultipartCopy => "multipart_copy",
    }
);

labels!(
    /// `result` of `assetgate_s3_stale_multipart_uploads_total`.
    MultipartAbort "result" {
        /// AbortMultipartUpload done.
        Aborted => "aborted",
        /// AbortMultipartUpload refused or unanswered (logged; retried by
        /// the next pass).
        Failed => "failed",
    }
);

/// The S3 backend's families.
#[derive(Clone)]
pub struct S3 {
    method: IntGaugeVec,
    stale_multipart: Counters<MultipartAbort>,
}

impl S3 {
    /// Registers the families, every method at 0.
    pub fn register(registry: &Registry) -> S3 {
        let method = registered(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "assetgate_s3_publish_method",
                    "The no-overwrite publish method the S3 self-test at start chose (1), by method; all 0 with backend = \"fs\".",
                ),
                &[PublishMethod::NAME],
            )
            .expect("valid metric"),
        );
        for m in PublishMethod::ALL {
            method.with_label_values(&[m.as_str()]).set(0);
        }
        let stale_multipart = Counters::register(
            registry,
            "assetgate_s3_stale_multipart_uploads_total",
            "Stale multipart uploads under [storage.s3] upload_prefix (tusd's unfinished uploads whose token expired more than [tusd] abandon_after ago, by their start) the reconciler's passes handled, by result: aborted, failed (the next pass retries).",
        );
        S3 {
            method,
            stale_multipart,
        }
    }

    /// Counts `n` stale multipart uploads handled with `result`.
    pub fn count_stale_multipart(&self, result: MultipartAbort, n: usize) {
        self.stale_multipart.inc_by(result, n as u64);
    }

    /// `chosen` at 1, the others at 0.
    pub fn set_method(&self, chosen: PublishMethod) {
        for m in PublishMethod::ALL {
            self.method
                .with_label_values(&[m.as_str()])
                .set(i64::from(m == chosen));
        }
    }
}
