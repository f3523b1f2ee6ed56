//! What shared state costs: the `/auth` revocation check (memory backend,
//! nothing revoked = the hot path; and a populated set), a whole `/auth`
//! decision with and without it, and one single-use consumption through the
//! memory backend and through a real `redis-server` on loopback (started here
//! on a free port, `--save ""`).
//!
//!     cargo bench --bench state

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use assetgate::config::{self, Sources};
use assetgate::metrics::Metrics;
use assetgate::state::{self, Revocation, Shared};
use assetgate::token::link;
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "bench-link-secret-5f1c2a9e7d";

fn cfg(env: &[(&str, &str)]) -> config::Config {
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("ASSETGATE_LINK_SECRET".into(), SECRET.into()));
    config::load_from(&Sources::default(), &env).unwrap()
}

fn shared(c: &config::Config) -> Arc<Shared> {
    Arc::new(Shared::new(
        state::backend(&c.state).unwrap(),
        c.state.clone(),
        Metrics::new(),
    ))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory_cfg = cfg(&[]);
    let empty = shared(&memory_cfg);
    rt.block_on(empty.sync(NOW)).unwrap();
    let full = shared(&memory_cfg);
    rt.block_on(async {
        for i in 0..1000 {
            let r = Revocation::Link {
                uri: format!("/private/revoked/{i}.bin").into_bytes(),
                expires: NOW + 3600,
            };
            full.revoke(&r, NOW + 3600, NOW).await.unwrap();
        }
        for i in 0..100 {
            let r = Revocation::prefix(&format!("/private/user-{i}/")).unwrap();
            full.revoke(&r, state::NEVER, NOW).await.unwrap();
        }
        for i in 0..100 {
            let r = Revocation::key(&format!("keys/{i}.pdf")).unwrap();
            full.revoke(&r, state::NEVER, NOW).await.unwrap();
        }
    });
    let uri = b"/private/bench/file-0001.bin";
    c.bench_function("standing/memory/nothing-revoked", |b| {
        b.iter(|| empty.standing(black_box(uri), NOW + 3600, "private", NOW))
    });
    c.bench_function("standing/memory/1200-revocations", |b| {
        b.iter(|| full.standing(black_box(uri), NOW + 3600, "private", NOW))
    });

    let md5 = link::sign(SECRET.as_bytes(), uri, NOW + 3600);
    let target = format!(
        "{}?md5={md5}&expires={}",
        std::str::from_utf8(uri).unwrap(),
        NOW + 3600
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-original-uri", target.parse().unwrap());
    c.bench_function("auth/verify-only (without the state lookup)", |b| {
        b.iter(|| {
            link::verify_request_target(&memory_cfg.link.secrets, black_box(target.as_bytes()), true, NOW)
                .unwrap()
        })
    });
    c.bench_function("auth/decide, memory, nothing revoked", |b| {
        b.iter(|| {
            assert!(matches!(
                assetgate::http::auth::decide(&memory_cfg, &empty, black_box(&headers), NOW),
                assetgate::http::auth::AuthOutcome::Allow(_)
            ))
        })
    });

    let mut n = 0u64;
    let mut ask = move || {
        n += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        state::Ask {
            id,
            nonce: state::Nonce::random(),
            ttl: Duration::from_secs(60),
            kind: assetgate::tusd::precreate::ClaimKind::Consume,
            undo: Vec::new(),
        }
    };
    let memory = state::memory::Memory::default();
    c.bench_function("single_use/memory/consume", |b| {
        b.iter(|| {
            let a = ask();
            rt.block_on(state::Backend::claim(&memory, &a)).unwrap()
        })
    });

    // A real redis-server on loopback.
    let Some(mut redis) = start_redis() else {
        eprintln!("redis-server not found (apt-get install -y redis-server): Redis figures skipped");
        return;
    };
    let redis_cfg = cfg(&[
        ("ASSETGATE_STATE__BACKEND", "redis"),
        (
            "ASSETGATE_STATE__REDIS_URL",
            &format!("redis://127.0.0.1:{}/0", redis.1),
        ),
    ]);
    let backend = rt.block_on(async { state::backend(&redis_cfg.state).unwrap() });
    rt.block_on(backend.version()).unwrap();
    c.bench_function("single_use/redis/consume (EVALSHA round trip)", |b| {
        b.iter(|| {
            let a = ask();
            rt.block_on(backend.claim(&a)).unwrap()
        })
    });
    c.bench_function("revocations/redis/version (one sync tick)", |b| {
        b.iter(|| rt.block_on(backend.version()).unwrap())
    });
    let _ = redis.0.kill();
    let _ = redis.0.wait();
}

fn start_redis() -> Option<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = std::env::temp_dir();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

criterion_group! {
    name = state;
    config = Criterion::default().sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(state);
