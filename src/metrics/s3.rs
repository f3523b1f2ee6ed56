//! The S3 backend's families:
//! - `assetgate_s3_publish_method{method}`: 1 for the no-overwrite publish
//!   method the self-test at start chose (`crate::s3::selftest`), 0 for the
//!   others; all 0 with `[storage] backend = "fs"`.

use prometheus::{IntGaugeVec, Opts, Registry};

use super::label::{labels, registered, Label};

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

/// The S3 backend's families.
#[derive(Clone)]
pub struct S3 {
    method: IntGaugeVec,
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
        S3 { method }
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
