//! The S3 backend (issue 21) against the real engines on loopback
//! (`common::s3`): the capability self-test at start chooses, by effect,
//! the method each engine really honours: SeaweedFS renames (RenameObject
//! moves, and refuses an existing destination with 412 leaving it intact);
//! versitygw gets the portable multipart copy (its RenameObject writes an
//! empty destination and its CopyObject ignores `If-None-Match: *`). The
//! choice is exported as `assetgate_s3_publish_method{method}`, and the
//! scratch keys are gone afterwards.
//!
//! Peers: `scripts/s3-peers.sh` builds the engines; a missing one fails the
//! test with the command that installs it.

mod common;

use assetgate::config::{load_from, Sources};
use assetgate::metrics::{Metrics, PublishMethod};
use assetgate::s3::Store;
use common::s3::S3Engine;

/// `[storage.s3]` for `engine`, through the loader (credentials from the
/// environment, as a deployment would set them).
fn s3_config(engine: &S3Engine) -> assetgate::config::S3Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assetgate.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            engine.endpoint(),
            engine.bucket
        ),
    )
    .unwrap();
    let env = [
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", engine.access_key.as_str()),
        (
            "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
            engine.secret_key.as_str(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = load_from(&Sources { file: Some(path) }, &env).unwrap();
    config.storage.s3.unwrap()
}

fn self_test(engine: &S3Engine) -> (Store, String) {
    let config = s3_config(engine);
    let metrics = Metrics::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(Store::start(&config, &metrics)).unwrap();
    (store, metrics.render())
}

/// Exactly `chosen` at 1 in the exposition, every other method at 0.
fn assert_exported(exposition: &str, chosen: PublishMethod) {
    for m in PublishMethod::ALL {
        let line = format!(
            "assetgate_s3_publish_method{{method=\"{}\"}} {}",
            m.as_str(),
            u8::from(m == chosen)
        );
        assert!(exposition.contains(&line), "{line} not in:\n{exposition}");
    }
}

/// Nothing left under assetgate's own prefix: objects or multipart uploads.
fn assert_scratch_removed(engine: &S3Engine) {
    let left = engine.must(&["list", &engine.bucket, "assetgate/"]);
    assert_eq!(left["objects"], serde_json::json!([]), "{left:#}");
    assert_eq!(left["uploads"], serde_json::json!([]), "{left:#}");
}

#[test]
fn seaweedfs_gets_rename() {
    let weed = S3Engine::seaweedfs("assets");
    let (store, exposition) = self_test(&weed);
    assert_eq!(store.method, PublishMethod::Rename);
    assert_exported(&exposition, PublishMethod::Rename);
    assert_scratch_removed(&weed);
}

#[test]
fn versitygw_gets_the_portable_multipart_copy() {
    let vgw = S3Engine::versitygw("assets");
    let (store, exposition) = self_test(&vgw);
    assert_eq!(store.method, PublishMethod::MultipartCopy);
    assert_exported(&exposition, PublishMethod::MultipartCopy);
    assert_scratch_removed(&vgw);
}

/// Wrong credentials: the self-test refuses to start, saying the bucket
/// could not be used (not that no method is honoured), and shows no secret.
#[test]
fn wrong_credentials_refuse_to_start_without_the_secret() {
    let vgw = S3Engine::versitygw("assets");
    let mut config = s3_config(&vgw);
    config.secret_access_key = assetgate::secret::Secret::new(b"WRONG-SECRET-NEVER-SHOWN".to_vec());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(Store::start(&config, &Metrics::new())).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("could not use the bucket"), "{shown}");
    assert!(
        !shown.contains("NEVER-SHOWN") && !shown.contains(&vgw.secret_key),
        "{shown}"
    );
}
