//! The one place the S3 client is built from `[storage.s3]` ([`client`]),
//! and how a key is named as a copy source ([`copy_source`]).

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    timeout::TimeoutConfig, Builder, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::S3Config;

/// Connecting to the engine: a local or in-region endpoint answers well
/// within it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One operation, retries included (a CopyObject of a large object is one
/// request, the engine copying server-side: bounded generously).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The client for `[storage.s3]` with the main identity (publish, delete,
/// list; the read identity only signs downloads).
pub fn client(config: &S3Config) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // The secrets leave their wrapper here only, into the SDK's own
    // credentials type (redacted Debug too).
    let key_id = String::from_utf8_lossy(config.access_key_id.expose()).into_owned();
    let secret = String::from_utf8_lossy(config.secret_access_key.expose()).into_owned();
    let mut conf = Builder::new()
        .http_client(http)
        .region(Region::new(config.region.clone()))
        .force_path_style(config.path_style)
        .credentials_provider(Credentials::new(key_id, secret, None, None, "assetgate-config"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(endpoint) = &config.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Client::from_conf(conf.build())
}

/// What CopyObject, UploadPartCopy and RenameObject leave unencoded in a
/// key: the unreserved characters and `/` (the separator stays a separator).
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// `bucket/key` as `x-amz-copy-source` (and `x-amz-rename-source`) take it:
/// the key URL-encoded, so spaces, `+`, `%` and Unicode name the key they
/// are and nothing else.
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, KEY_SET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_the_key_but_not_its_slashes() {
        assert_eq!(copy_source("b", "tus/abc"), "b/tus/abc");
        assert_eq!(
            copy_source("b", "private/a b+c%d/é.png"),
            "b/private/a%20b%2Bc%25d/%C3%A9.png"
        );
    }
}
