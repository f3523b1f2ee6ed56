//! Instruction counts of the pure decisions, for the regression check in CI.
//!
//! Each benchmark runs once under callgrind (gungraun), so its count is the
//! same on every run of the same binary, whatever the machine's load: a check
//! that cannot be flaky. The inputs are built outside the measured region.
//! `benches/ir-baseline.txt` holds the committed counts; a benchmark that
//! counts more than 10 % above its line fails the run (gungraun's hard limit,
//! exit code 3). `benches/ir-check.sh` runs this (scripts/test.sh calls it)
//! and, with `--update`, rewrites the baseline from a run.
//!
//!     benches/ir-check.sh              # check against the baseline
//!     benches/ir-check.sh --update     # after an intended change: new baseline
//!
//! The cases are the request's decisions without HTTP: the `/auth` link check
//! including the `$request_uri` parse (a plain and a complex target), the
//! upload-token check alone, and the `/tusd` pre-create from body bytes to
//! answer (parse the tusd v2 fixture, decide without the filesystem, answer).
//! `auth_s3_sign.plain` is `link_verify.plain` plus what `[storage] backend =
//! "s3"` adds to an allow: the SigV4 signature of the object read nginx
//! relays (aws-sigv4, signing key derived per call); the difference of the
//! two is the price of S3 signing per `/auth`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assetgate::config::{StorageBackend, StorageConfig, UploadConfig};
use assetgate::policy::Visibility;
use assetgate::s3::sign::{ObjectMethod, S3Signer};
use assetgate::secret::{Secret, SecretSet};
use assetgate::token::upload_id::UploadIds;
use assetgate::token::{link, upload};
use assetgate::tusd::{self, Gate, Lookup, Upload};
use gungraun::{
    library_benchmark, library_benchmark_group, main, Callgrind, EventKind, LibraryBenchmarkConfig,
};

const NOW: i64 = 1_800_000_000;
const EXPIRES: i64 = NOW + 3600;
const LINK_SECRET: &str = "bench-link-secret-5f1c2a9e7d";
const UPLOAD_SECRET: &str = "bench-upload-secret-8e3b6d0a41";

/// More than this over the baseline fails.
const TOLERANCE: f64 = 0.10;

/// The committed baseline's count for `name` plus 10 %, as a hard limit. With
/// `ASSETGATE_IR_UPDATE` set (`ir-check.sh --update`), no limit.
fn limit(name: &str) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    if std::env::var_os("ASSETGATE_IR_UPDATE").is_some() {
        return config;
    }
    let baseline = include_str!("ir-baseline.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    match baseline {
        Some(ir) => {
            let max = (ir as f64 * (1.0 + TOLERANCE)).floor() as u64;
            config.tool(Callgrind::default().hard_limits([(EventKind::Ir, max)]));
        }
        None => panic!("benches/ir-baseline.txt has no line for {name}: run benches/ir-check.sh --update"),
    }
    config
}

fn link_secrets() -> SecretSet {
    SecretSet::new(vec![Secret::new(LINK_SECRET.as_bytes().to_vec())])
}

fn link_target(path: &str, uri: &str) -> (SecretSet, Vec<u8>) {
    let md5 = link::sign(LINK_SECRET.as_bytes(), uri.as_bytes(), EXPIRES);
    (
        link_secrets(),
        format!("{path}?md5={md5}&expires={EXPIRES}").into_bytes(),
    )
}

fn plain_link() -> (SecretSet, Vec<u8>) {
    link_target("/private/bench/file-0001.bin", "/private/bench/file-0001.bin")
}

fn complex_link() -> (SecretSet, Vec<u8>) {
    link_target(
        "/private//reports/./Q1%202026/../Q2%202026/summ%C3%A9ry%20final.pdf",
        "/private/reports/Q2 2026/summéry final.pdf",
    )
}

fn s3_link() -> (SecretSet, Vec<u8>, S3Signer) {
    let (secrets, target) = plain_link();
    let signer = S3Signer::new(
        Some("http://127.0.0.1:8333"),
        "us-east-1",
        "assets",
        true,
        "assetgate-reader",
        "bench-read-secret-0123456789abcdef",
    );
    // A daemon signs with the day's key it derived at the first read of the
    // day (src/s3/sign.rs): warm it here, outside the measured call, so the
    // count is the steady state of every later /auth.
    signer
        .sign_read(ObjectMethod::Get, b"private/warm-up", NOW)
        .expect("signed");
    (secrets, target, signer)
}

#[library_benchmark]
#[bench::plain(args = (s3_link()), config = limit("auth_s3_sign.plain"))]
fn auth_s3_sign(input: (SecretSet, Vec<u8>, S3Signer)) -> usize {
    let (secrets, target, signer) = input;
    let v = link::verify_request_target(black_box(&secrets), black_box(&target), true, NOW).expect("valid");
    let key = &v.uri()[1..];
    let signed = signer
        .sign_read(ObjectMethod::Get, black_box(key), NOW)
        .expect("signed");
    black_box(signed.authorization.len() + signed.path.len())
}

#[library_benchmark]
#[bench::plain(args = (plain_link()), config = limit("link_verify.plain"))]
#[bench::complex(args = (complex_link()), config = limit("link_verify.complex"))]
fn link_verify(input: (SecretSet, Vec<u8>)) -> i64 {
    let (secrets, target) = input;
    let v = link::verify_request_target(black_box(&secrets), black_box(&target), true, NOW);
    black_box(v.map(|v| v.expires()).unwrap_or(0))
}

fn upload_config() -> UploadConfig {
    UploadConfig {
        secrets: SecretSet::new(vec![Secret::new(UPLOAD_SECRET.as_bytes().to_vec())]),
        clock_skew: Duration::from_secs(30),
        max_ttl: Duration::from_secs(86_400),
        content_types: Vec::new(),
        max_size: None,
        allow_deferred_length: false,
        check_content: false,
        session_binding: Default::default(),
        session_grace: Duration::from_secs(3600),
        single_use: false,
        nginx_types: assetgate::config::NginxTypes::builtin(),
        max_parts: assetgate::config::DEFAULT_MAX_PARTS,
    }
}

/// The configuration lives for the whole daemon (shared, never dropped per
/// request): leaked here, so a call's count does not include dropping it
/// (the served-types table alone is ~20k instructions to free).
fn token_input() -> (&'static UploadConfig, upload::Metadata) {
    let meta = upload::mint(
        UPLOAD_SECRET.as_bytes(),
        "photos/été 2026/plage.jpg",
        "image/jpeg",
        Visibility::Public,
        EXPIRES,
    );
    (Box::leak(Box::new(upload_config())), meta)
}

#[library_benchmark]
#[bench::one_secret(args = (token_input()), config = limit("upload_verify.one_secret"))]
fn upload_verify(input: (&'static UploadConfig, upload::Metadata)) -> bool {
    let (config, meta) = input;
    black_box(upload::verify(black_box(&meta), config, NOW).is_ok())
}

struct NoFiles;

impl Lookup for NoFiles {
    fn destination(&self, _: &Path) -> tusd::Destination {
        tusd::Destination::Free
    }
    fn leading_bytes(&self, _: &Upload) -> Result<Option<Vec<u8>>, assetgate::tusd::StoreUnavailable> {
        Ok(None)
    }
}

/// The tusd v2 pre-create fixture with a fresh token, compact as tusd sends it.
fn precreate_input() -> (&'static UploadConfig, StorageConfig, Vec<u8>) {
    let (config, meta) = token_input();
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tusd-v2/pre-create.json"),
    )
    .expect("the fixture");
    let mut hook: serde_json::Value = serde_json::from_str(&fixture).expect("JSON");
    hook["Event"]["Upload"]["MetaData"] = serde_json::to_value(&meta).expect("JSON");
    let storage = StorageConfig {
        root: Some(PathBuf::from("/srv/assets")),
        overwrite: false,
        public_prefix: "public".into(),
        private_prefix: "private".into(),
        backend: StorageBackend::Fs,
        s3: None,
    };
    (config, storage, serde_json::to_vec(&hook).expect("JSON"))
}

#[library_benchmark]
#[bench::v2(args = (precreate_input()), config = limit("tusd_precreate.v2"))]
fn tusd_precreate(input: (&'static UploadConfig, StorageConfig, Vec<u8>)) -> usize {
    let (config, storage, body) = input;
    let gate = Gate {
        upload: config,
        storage: &storage,
        upload_ids: UploadIds::Signed,
    };
    let hook = tusd::parse(black_box(&body), None).expect("a hook");
    let decision = tusd::decide(&hook, gate, NOW, &[7; 16], &NoFiles);
    assert_eq!(decision.outcome().as_str(), "allow");
    black_box(tusd::answer(hook.protocol, &decision).body.len())
}

library_benchmark_group!(
    name = decisions,
    benchmarks = [link_verify, auth_s3_sign, upload_verify, tusd_precreate]
);

main!(library_benchmark_groups = decisions);
