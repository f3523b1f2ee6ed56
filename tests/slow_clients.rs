//! Slow and idle clients (found by a hardening review) against the real binary, at a
//! scale a 2-core CI machine takes (loopback only, bounded loops, stops by
//! itself in about 20 s).
//!
//! The attack found against the release binary: 4,300 connections each sending
//! `POST /tusd` with `Content-Length: 100` and one body byte every 2 s were never
//! closed, `/healthz` and `/auth` timed out, memory rose from 6.6 MB to 449 MB
//! and stayed at 294 MB. Here: a budget of 200 connections, 300 slow bodies and
//! 300 idle keep-alive connections that reconnect as soon as they are dropped.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const BUDGET: usize = 200;
const SLOW: usize = 300;
const IDLE: usize = 300;
const ATTACK: Duration = Duration::from_secs(8);
/// `[server] body_read_timeout` of the daemon under test.
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// How late a slow body may be closed: timer granularity, scheduling on a
/// loaded 2-core machine, and the attacker's own 250 ms tick.
const CLOSE_SLACK: Duration = Duration::from_millis(1500);
/// Every probe during the attack must be answered within this.
const PROBE_BOUND: Duration = Duration::from_secs(1);

fn config() -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n\
         [server]\nheader_read_timeout = 3\nmax_connections = {BUDGET}\n\
         body_read_timeout = {}\nrequest_timeout = 5\nmax_tusd_requests = 50\n",
        BODY_TIMEOUT.as_secs()
    )
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// One `GET path` on a fresh connection: (status, elapsed), status 0 when it
/// failed or took longer than 3 s.
fn probe(addr: SocketAddr, path: &str, headers: &str) -> (u16, Duration) {
    let start = Instant::now();
    let attempt = || -> std::io::Result<u16> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    };
    (attempt().unwrap_or(0), start.elapsed())
}

fn metric(addr: SocketAddr, line_start: &str) -> Option<u64> {
    let (_, _, body) = get(addr, "/metrics", &[]);
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// What happened to one slow-body connection.
#[derive(Debug, Clone)]
struct SlowOutcome {
    /// From the request head sent to the server closing (None: still open
    /// when the attack stopped).
    open_for: Option<Duration>,
    /// Status line the server sent before closing, if any.
    status: Option<u16>,
}

/// A non-blocking socket the attackers poll.
struct Attacker {
    stream: Option<TcpStream>,
    since: Instant,
    got: Vec<u8>,
}

fn connect(addr: SocketAddr, first: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.write_all(first).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// `Ok(true)`: the server closed it; `Ok(false)`: still open.
fn poll_closed(s: &mut TcpStream, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn status_of(got: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(got.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

const SLOW_HEAD: &[u8] =
    b"POST /tusd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

/// `count` slow-body clients: one body byte every 250 ms, never finishing;
/// reconnect when closed, until `stop`.
fn slow_bodies(addr: SocketAddr, count: usize, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<SlowOutcome>>>) {
    let mut conns: Vec<Attacker> = (0..count)
        .map(|_| Attacker {
            stream: connect(addr, SLOW_HEAD),
            since: Instant::now(),
            got: Vec::new(),
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        for a in conns.iter_mut() {
            let closed = match a.stream.as_mut() {
                None => true,
                Some(s) => poll_closed(s, &mut a.got) || s.write_all(b" ").is_err(),
            };
            if closed {
                if a.stream.is_some() {
                    out.lock().unwrap().push(SlowOutcome {
                        open_for: Some(a.since.elapsed()),
                        status: status_of(&a.got),
                    });
                }
                a.stream = connect(addr, SLOW_HEAD);
                a.since = Instant::now();
                a.got.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for a in conns {
        if a.stream.is_some() {
            out.lock().unwrap().push(SlowOutcome {
                open_for: None,
                status: None,
            });
            if a.since.elapsed() < BODY_TIMEOUT + CLOSE_SLACK {
                // Too young to judge: drop it from the record.
                out.lock().unwrap().pop();
            }
        }
    }
}

/// `count` idle keep-alive clients: one request, then silence; reconnect at
/// once when dropped, until `stop`. Returns how many times they reconnected.
fn idle_keepalives(addr: SocketAddr, count: usize, stop: Arc<AtomicBool>) -> usize {
    const HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut conns: Vec<Option<TcpStream>> = (0..count).map(|_| connect(addr, HEAD)).collect();
    let mut reconnects = 0;
    let mut scratch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for c in conns.iter_mut() {
            let closed = match c.as_mut() {
                None => true,
                Some(s) => poll_closed(s, &mut scratch),
            };
            scratch.clear();
            if closed {
                *c = connect(addr, HEAD);
                reconnects += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reconnects
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn slow_bodies_and_idle_floods_cannot_starve_auth_or_health() {
    let d = Daemon::start(&config());
    let addr = d.addr;
    let pid = d.child.id();
    let exp = now() + 3600;
    let auth_header = format!(
        "X-Original-URI: /private/a.txt?md5={}&expires={exp}\r\n",
        sign_link(LINK_SECRET, "/private/a.txt", &exp.to_string())
    );

    // Baseline: after some ordinary traffic.
    for _ in 0..50 {
        assert_eq!(probe(addr, "/healthz", "").0, 200);
        assert_eq!(probe(addr, "/auth", &auth_header).0, 204);
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut slow_threads = Vec::new();
    for _ in 0..3 {
        let (stop, out) = (stop.clone(), outcomes.clone());
        slow_threads.push(std::thread::spawn(move || slow_bodies(addr, SLOW / 3, stop, out)));
    }
    let mut idle_threads = Vec::new();
    for _ in 0..2 {
        let stop = stop.clone();
        idle_threads.push(std::thread::spawn(move || idle_keepalives(addr, IDLE / 2, stop)));
    }

    let started = Instant::now();
    let mut health = Vec::new();
    let mut auths = Vec::new();
    let mut failures = Vec::new();
    let mut peak = baseline;
    while started.elapsed() < ATTACK {
        let (s, t) = probe(addr, "/healthz", "");
        if s != 200 || t > PROBE_BOUND {
            failures.push(format!(
                "/healthz at {:?}: status {s} in {t:?}",
                started.elapsed()
            ));
        }
        health.push(t);
        let (s, t) = probe(addr, "/auth", &auth_header);
        if s != 204 || t > PROBE_BOUND {
            failures.push(format!("/auth at {:?}: status {s} in {t:?}", started.elapsed()));
        }
        auths.push(t);
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow_threads {
        t.join().unwrap();
    }
    let reconnects: usize = idle_threads.into_iter().map(|t| t.join().unwrap()).sum();

    // After: every attacker gone; give the daemon a moment to close its ends.
    let mut after = rss_kib(pid);
    let settle = Instant::now();
    while settle.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_kib(pid);
        if after <= baseline + RSS_SLACK_KIB {
            break;
        }
    }

    let outcomes = outcomes.lock().unwrap().clone();
    health.sort();
    auths.sort();
    let closed_408 = outcomes.iter().filter(|o| o.status == Some(408)).count();
    let closed_503 = outcomes.iter().filter(|o| o.status == Some(503)).count();
    let held: Vec<&SlowOutcome> = outcomes
        .iter()
        .filter(|o| o.open_for.is_none_or(|t| t > BODY_TIMEOUT + CLOSE_SLACK))
        .collect();
    let metric_408 = metric(addr, "assetgate_limit_hits_total{limit=\"body_read_timeout\"} ");
    let evicted = metric(addr, "assetgate_limit_hits_total{limit=\"max_connections\"} ");
    eprintln!(
        "slow_clients figures: RSS baseline {baseline} KiB, peak {peak} KiB, after {after} KiB; \
         /healthz p50 {:?} max {:?}; /auth p50 {:?} max {:?} ({} probes each); \
         slow bodies closed: {} (408: {closed_408}, 503: {closed_503}), held past the timeout: {}; \
         metric body_read_timeout {metric_408:?}, idle evicted {evicted:?}; idle reconnects {reconnects}",
        percentile(&health, 0.5),
        health.last().unwrap(),
        percentile(&auths, 0.5),
        auths.last().unwrap(),
        health.len(),
        outcomes.len(),
        held.len(),
    );

    assert!(
        failures.is_empty(),
        "probes failed during the attack:\n{}",
        failures.join("\n")
    );
    assert!(
        held.is_empty(),
        "{} slow bodies were held past body_read_timeout + {CLOSE_SLACK:?}: {:?}",
        held.len(),
        &held[..held.len().min(5)]
    );
    assert!(closed_408 >= 50, "slow bodies answered 408: {closed_408}");
    assert!(
        metric_408.is_some_and(|m| m as usize >= closed_408),
        "body timeouts counted: {metric_408:?}, 408s seen: {closed_408}"
    );
    // Logged as a storm, not per connection: a few summary lines at most.
    let lines = d
        .logs()
        .iter()
        .filter(|l| l.contains("body_read_timeout") || l.contains("client limits"))
        .count();
    assert!(
        (1..=4).contains(&lines),
        "{lines} log lines for {closed_408} body timeouts:\n{}",
        d.logs().join("\n")
    );
    assert!(
        after <= baseline + RSS_SLACK_KIB,
        "RSS after the attack {after} KiB, baseline {baseline} KiB (peak {peak} KiB)"
    );
}

/// RSS the attack may leave behind once [`SETTLE`] has passed: allocator
/// caches, and the capacity of the connection registry and tokio's own tables.
const RSS_SLACK_KIB: u64 = 2 * 1024;
/// How long the memory of the attack may take to go back to the kernel:
/// jemalloc's background thread returns freed pages over its 10 s decay.
const SETTLE: Duration = Duration::from_secs(15);

/// The idle keep-alive timeout is `server.header_read_timeout`: hyper starts
/// that clock as soon as a connection waits for its next head, so a keep-alive
/// connection left idle after a request is closed when it runs out, and
/// counted.
#[test]
fn idle_keepalive_connection_is_closed_after_header_read_timeout() {
    let d = Daemon::start(&format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n[server]\nheader_read_timeout = 1\n"
    ));
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    let idle = Instant::now();
    let mut buf = [0u8; 16];
    let closed = match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    let after = idle.elapsed();
    assert!(
        closed && after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "idle keep-alive connection closed after {after:?}"
    );
    assert_eq!(
        metric(
            d.addr,
            "assetgate_limit_hits_total{limit=\"header_read_timeout\"} "
        ),
        Some(1)
    );
}
