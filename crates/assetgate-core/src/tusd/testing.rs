//! Shared test configuration (feature `testing`: the daemon's tests use
//! it too).
#![allow(missing_docs)]
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{StorageBackend, StorageConfig, UploadConfig};
use crate::secret::SecretSet;

pub const S1: &str = "newest-upload-secret-0123";
pub const S2: &str = "older-upload-secret-45678";
pub const NOW: i64 = 1_800_000_000;

pub fn upload_config(secrets: &[&str]) -> UploadConfig {
    UploadConfig {
        secrets: SecretSet::from_texts(secrets),
        clock_skew: Duration::from_secs(30),
        max_ttl: Duration::from_secs(86_400),
        content_types: Vec::new(),
        max_size: None,
        allow_deferred_length: false,
        check_content: false,
        session_binding: Default::default(),
        session_grace: std::time::Duration::from_secs(3600),
        single_use: false,
        nginx_types: crate::config::NginxTypes::builtin(),
        max_parts: crate::config::DEFAULT_MAX_PARTS,
    }
}

pub fn storage_config() -> StorageConfig {
    StorageConfig {
        root: Some(PathBuf::from("/srv/assets")),
        overwrite: false,
        public_prefix: "public".into(),
        private_prefix: "private".into(),
        backend: StorageBackend::Fs,
        s3: None,
    }
}
