//! Micro-benchmarks of the `/auth` hot path: nginx's `$uri` parser, `$arg_`
//! lookup, and full secure_link verification, on a plain link (the common case:
//! no normalisation, borrowed `$uri`) and a complex one (percent-escapes, dot
//! segments, doubled slashes: the full parser).
//!
//!     cargo bench --bench link_verify

use std::hint::black_box;

use assetgate::secret::{Secret, SecretSet};
use assetgate::token::{link, nginx_uri};
use criterion::{criterion_group, criterion_main, Criterion};

const NOW: i64 = 1_800_000_000;
const EXPIRES: i64 = NOW + 3600;
const SECRET: &str = "bench-link-secret-5f1c2a9e7d";

/// (name, request target path as sent, `$uri` nginx derives from it)
const PATHS: [(&str, &str, &str); 2] = [
    (
        "plain",
        "/private/bench/file-0001.bin",
        "/private/bench/file-0001.bin",
    ),
    (
        "complex",
        "/private//reports/./Q1%202026/../Q2%202026/summ%C3%A9ry%20final.pdf",
        "/private/reports/Q2 2026/summéry final.pdf",
    ),
];

fn target(path: &str, uri: &str, secret: &str) -> String {
    let md5 = link::sign(secret.as_bytes(), uri.as_bytes(), EXPIRES);
    format!("{path}?md5={md5}&expires={EXPIRES}")
}

fn benches(c: &mut Criterion) {
    let one = SecretSet::new(vec![Secret::new(SECRET.as_bytes().to_vec())]);
    let two = SecretSet::new(vec![
        Secret::new(b"bench-link-secret-newer-0a1b2c".to_vec()),
        Secret::new(SECRET.as_bytes().to_vec()),
    ]);
    for (name, path, uri) in PATHS {
        let t = target(path, uri, SECRET);
        let raw = t.as_bytes();
        let parsed = nginx_uri::parse_request_target(raw, true).unwrap();
        assert_eq!(
            &parsed.uri[..],
            uri.as_bytes(),
            "{name}: the bench's expected $uri"
        );
        c.bench_function(&format!("parse_request_target/{name}"), |b| {
            b.iter(|| nginx_uri::parse_request_target(black_box(raw), true))
        });
        c.bench_function(&format!("verify_request_target/{name}/1-secret"), |b| {
            b.iter(|| link::verify_request_target(&one, black_box(raw), true, NOW).unwrap())
        });
        c.bench_function(&format!("verify_request_target/{name}/2-secrets"), |b| {
            b.iter(|| link::verify_request_target(&two, black_box(raw), true, NOW).unwrap())
        });
    }
    let forged = target(PATHS[0].1, PATHS[0].2, "not-the-secret-0123456789");
    c.bench_function("verify_request_target/plain/forged", |b| {
        b.iter(|| link::verify_request_target(&one, black_box(forged.as_bytes()), true, NOW).unwrap_err())
    });
    let args = b"utm_source=x&md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1800003600";
    c.bench_function("arg/expires", |b| {
        b.iter(|| nginx_uri::arg(black_box(args), b"expires"))
    });
}

criterion_group! {
    name = link_verify;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(link_verify);
