//! Micro-benchmarks of the `/tusd` pre-create hot path: upload-token
//! verification alone, parsing the hook body (tusd v2 fixture with fresh
//! metadata), and the whole decision (parse + policy + token, no filesystem).
//!
//!     cargo bench --bench upload_verify

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assetgate::config::{StorageBackend, StorageConfig, UploadConfig};
use assetgate::policy::Visibility;
use assetgate::secret::{Secret, SecretSet};
use assetgate::token::upload;
use assetgate::tusd::{self, Gate, Lookup, Upload};
use criterion::{criterion_group, criterion_main, Criterion};

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "bench-upload-secret-8e3b6d0a41";

struct NoFiles;

impl Lookup for NoFiles {
    fn destination(&self, _: &Path) -> assetgate::tusd::Destination {
        assetgate::tusd::Destination::Free
    }
    fn leading_bytes(&self, _: &Upload) -> Result<Option<Vec<u8>>, assetgate::tusd::StoreUnavailable> {
        Ok(None)
    }
}

fn config(secrets: &[&str]) -> UploadConfig {
    UploadConfig {
        secrets: SecretSet::new(
            secrets
                .iter()
                .map(|s| Secret::new(s.as_bytes().to_vec()))
                .collect(),
        ),
        clock_skew: Duration::from_secs(30),
        max_ttl: Duration::from_secs(86_400),
        content_types: Vec::new(),
        max_size: None,
        allow_deferred_length: false,
        check_content: false,
        session_binding: Default::default(),
        session_grace: std::time::Duration::from_secs(3600),
        single_use: false,
        nginx_types: assetgate::config::NginxTypes::builtin(),
        max_parts: assetgate::config::DEFAULT_MAX_PARTS,
    }
}

fn benches(c: &mut Criterion) {
    let meta = upload::mint(
        SECRET.as_bytes(),
        "photos/2026/bench-upload.jpg",
        "image/jpeg",
        Visibility::Public,
        NOW + 3600,
    );
    let one = config(&[SECRET]);
    let two = config(&["bench-upload-secret-newer-77aa01", SECRET]);
    c.bench_function("upload::verify/1-secret", |b| {
        b.iter(|| upload::verify(black_box(&meta), &one, NOW).unwrap())
    });
    c.bench_function("upload::verify/2-secrets", |b| {
        b.iter(|| upload::verify(black_box(&meta), &two, NOW).unwrap())
    });

    // The tusd v2 pre-create fixture, with this token's metadata.
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tusd-v2/pre-create.json"),
    )
    .unwrap();
    let mut hook: serde_json::Value = serde_json::from_str(&fixture).unwrap();
    hook["Event"]["Upload"]["MetaData"] = serde_json::to_value(&meta).unwrap();
    let body = serde_json::to_vec(&hook).unwrap();
    c.bench_function("tusd::parse/v2-pre-create", |b| {
        b.iter(|| tusd::parse(black_box(&body), None).unwrap())
    });
    let storage = StorageConfig {
        root: Some(PathBuf::from("/srv/assets")),
        overwrite: false,
        public_prefix: "public".into(),
        private_prefix: "private".into(),
        backend: StorageBackend::Fs,
        s3: None,
    };
    let gate = Gate {
        upload: &one,
        storage: &storage,
        upload_ids: assetgate::token::upload_id::UploadIds::Signed,
    };
    c.bench_function("tusd::parse+decide/v2-pre-create", |b| {
        b.iter(|| {
            let h = tusd::parse(black_box(&body), None).unwrap();
            let d = tusd::decide(&h, gate, NOW, &[7; 16], &NoFiles);
            assert_eq!(d.outcome().as_str(), "allow");
            tusd::answer(h.protocol, &d)
        })
    });
}

criterion_group! {
    name = upload_verify;
    config = Criterion::default().sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(upload_verify);
