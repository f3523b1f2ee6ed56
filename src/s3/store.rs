//! What the daemon keeps of the S3 backend ([`Store`]): built at start,
//! after the capability self-test.

use std::time::Duration;

use aws_sdk_s3::Client;

use super::client::client;
use super::ops::OpError;
use super::selftest::{self, PublishMethod, SelfTestError};
use crate::config::S3Config;

/// What the daemon keeps of the S3 backend: the client, its section, and
/// the publish method the self-test proved at start.
#[derive(Debug, Clone)]
pub struct Store {
    /// The main identity's client ([`client`]).
    pub client: Client,
    /// `[storage.s3]`.
    pub config: S3Config,
    /// The self-test's choice.
    pub method: PublishMethod,
}

/// How long the self-test at start may take in all (a dozen small requests).
pub const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Store {
    /// Builds the client and runs the self-test; logs and exports the choice.
    pub async fn start(config: &S3Config, metrics: &crate::metrics::Metrics) -> Result<Store, SelfTestError> {
        let client = client(config);
        let outcome = tokio::time::timeout(SELF_TEST_TIMEOUT, selftest::run(&client, &config.bucket))
            .await
            .map_err(|_| {
                SelfTestError::Bucket(OpError::Other {
                    status: None,
                    code: format!("no outcome within {} s", SELF_TEST_TIMEOUT.as_secs()),
                })
            })??;
        for (method, why) in &outcome.refused {
            tracing::info!(
                method = method.as_str(),
                why = why.as_str(),
                "S3 self-test: publish method refused"
            );
        }
        tracing::info!(
            method = outcome.method.as_str(),
            bucket = config.bucket.as_str(),
            "S3 self-test: publishing with this no-overwrite method"
        );
        metrics.set_s3_publish_method(outcome.method);
        Ok(Store {
            client,
            config: config.clone(),
            method: outcome.method,
        })
    }
}
