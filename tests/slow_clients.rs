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
    // A slow body is cut by its deadline (408, body_read_timeout) or, when
    // the /tusd budget is full, by a newer request once past the grace (408,
    // max_tusd_requests); a newer one that finds nobody past the grace is
    // refused (503, max_tusd_requests). Every one of them is counted.
    let cut = metric(addr, "assetgate_limit_hits_total{limit=\"max_tusd_requests\"} ");
    assert!(
        metric_408.zip(cut).is_some_and(|(t, c)| (t + c) as usize >= closed_408 + closed_503),
        "limit hits counted: body_read_timeout {metric_408:?}, max_tusd_requests {cut:?}; 408s seen: {closed_408}, 503s: {closed_503}"
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
/// jemalloc's background thread returns freed pages over its 10 s decay (on a
/// loaded machine the thread runs late: the wait ends as soon as it is back).
const SETTLE: Duration = Duration::from_secs(30);

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

// ---------------------------------------------------------------------------
// Every listener goes through the same limits layer (issue 19, findings 3, 4
// and 13).

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The admin API on TCP as well (an opt-in), with `[server]` keys `extra`.
fn admin_config(extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n\
         [server]\nadmin_listen = \"127.0.0.1:0\"\n{extra}"
    )
}

/// The admin API's connection budget (`limits::ADMIN_MAX_CONNECTIONS`).
const ADMIN_CAP: usize = 16;

/// Finding 3: the admin listener collected bodies as hyper's read buffers
/// handed them out, each trickled byte pinning one: a review took RSS from 9
/// to 340 MB with 80 KB trickled over 20 admin connections. Bodies are now
/// copied out (limits::read_body) as on the main port; the deadlines are set
/// long here so that the copy, not a timeout, is what keeps memory flat.
#[test]
fn admin_bodies_trickled_byte_by_byte_keep_memory_flat() {
    // As many as the admin budget holds: a 17th connection, when the budget
    // is full, evicts whichever of the first sixteen has not had its head read
    // yet (an idle one, by design), which a loaded machine makes likely (a
    // CI run saw a reset here). The review's 20 x 4 KB is 16 x 4 KB here: on
    // the old code that was already 255 MB of growth.
    const CONNS: usize = ADMIN_CAP;
    const BODY: usize = 4096;
    let d = Daemon::start(&admin_config("body_read_timeout = 60\nrequest_timeout = 120\n"));
    let admin = d.admin.expect("admin_listen is set");
    let pid = d.child.id();
    for _ in 0..20 {
        let (s, _, _) = raw_request(
            admin,
            format!("GET /revocations HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(s, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(pid);

    let mut socks: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let mut s = TcpStream::connect(admin).unwrap();
            s.set_nodelay(true).unwrap();
            write!(
                s,
                "POST /revocations HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
                 Connection: close\r\nContent-Length: {BODY}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    let mut peak = baseline;
    for round in 0..BODY - 1 {
        for s in socks.iter_mut() {
            s.write_all(b" ").unwrap();
        }
        std::thread::sleep(Duration::from_micros(300));
        if round % 256 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    peak = peak.max(rss_kib(pid));
    // The last byte: every body is whole (and not JSON): each is answered,
    // those that waited for a place in the budget too.
    let mut statuses = Vec::new();
    for s in socks.iter_mut() {
        s.write_all(b" ").unwrap();
    }
    for s in socks.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        statuses.push(read_response(s).0);
    }
    eprintln!(
        "admin trickle: {CONNS} connections x {BODY} bytes one at a time: RSS baseline {baseline} KiB, peak {peak} KiB"
    );
    assert!(
        peak < baseline + 16 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB while {} KB were trickled",
        CONNS * BODY / 1000
    );
    assert_eq!(statuses, vec![400; CONNS], "every body read and answered");
}

/// Finding 3: 1,100 slow admin connections held every file descriptor and
/// kept `/healthz` on the main port unanswered for 40 s. The admin listener
/// now has its own small budget: the rest wait in the kernel's backlog, which
/// costs the daemon no descriptor. The daemon runs under a 512-file limit
/// (`prlimit`) and 600 admin connections hold a body open.
#[test]
fn slow_admin_connections_cannot_take_the_main_listeners_files() {
    const SLOW: usize = 600;
    let d = Daemon::start_under(
        &["prlimit", "--nofile=512:512"],
        &admin_config("body_read_timeout = 60\nrequest_timeout = 120\n"),
        &[],
    );
    let admin = d.admin.expect("admin_listen is set");
    let pid = d.child.id();
    assert_eq!(probe(d.addr, "/healthz", "").0, 200);
    let before = open_fds(pid);
    let held: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(5)).unwrap();
            write!(
                s,
                "POST /revocations HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{"
            )
            .unwrap();
            s
        })
        .collect();
    // What the daemon takes in, it takes at once.
    std::thread::sleep(Duration::from_secs(1));
    let during = open_fds(pid);
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(probe(d.addr, "/healthz", ""));
    }
    eprintln!(
        "{SLOW} slow admin connections: daemon fds {before} before, {during} during; /healthz {answers:?}"
    );
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "/healthz during {SLOW} slow admin connections: {answers:?}\n{}",
        d.logs().join("\n")
    );
    assert!(
        during <= before + ADMIN_CAP + 4,
        "the admin listener took {} descriptors (its budget is {ADMIN_CAP})",
        during - before
    );
    drop(held);
}

/// Finding 4: the shipped unit allowed 1,024 files for 4,096 connections, so
/// `accept()` failed with EMFILE before any eviction could make room, and
/// `/healthz` went unanswered. The budgets are now fitted below the
/// open-file limit at start, logged with both numbers: here a 256-file limit
/// (hard, so it cannot be raised) and 600 connections that send half a head.
#[test]
fn budgets_fit_a_low_open_file_limit() {
    const CONNS: usize = 600;
    let d = Daemon::start_under(&["prlimit", "--nofile=256:256"], &config_default_budget(), &[]);
    let pid = d.child.id();
    let held: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&d.addr, Duration::from_secs(5)).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(probe(d.addr, "/healthz", ""));
    }
    let fds = open_fds(pid);
    let accept_failures = d.logs().iter().filter(|l| l.contains("accept failed")).count();
    eprintln!(
        "prlimit 256, {CONNS} connections: daemon fds {fds}, /healthz {answers:?}, accept failures logged {accept_failures}"
    );
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "/healthz with {CONNS} connections under a 256-file limit: {answers:?}\n{}",
        d.logs().join("\n")
    );
    assert_eq!(
        accept_failures,
        0,
        "accept() hit the limit:\n{}",
        d.logs().join("\n")
    );
    assert!(fds < 256, "{fds} descriptors open");
    assert!(metric(d.addr, "assetgate_limit_hits_total{limit=\"max_connections\"} ").unwrap() > 0);
    drop(held);

    // The clamp: logged once at start with both numbers, and in the metrics.
    let line = d
        .logs()
        .into_iter()
        .find(|l| l.contains("connection budgets lowered"))
        .unwrap_or_else(|| panic!("no clamp logged:\n{}", d.logs().join("\n")));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["open_files"], 256, "{line}");
    assert_eq!(v["configured_max_connections"], 4096, "{line}");
    let budget = v["max_connections"].as_u64().unwrap();
    assert!(budget > 0 && budget < 256, "{line}");
    assert_eq!(metric(d.addr, "assetgate_open_files_limit "), Some(256));
    assert_eq!(
        metric(d.addr, "assetgate_connection_budget{listener=\"listen\"} "),
        Some(budget)
    );
}

fn config_default_budget() -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n[upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n"
    )
}

/// A gate behind real tusd v2.9.1 (hooks for pre-create, pre-finish,
/// post-finish), for tuspy uploads with granite tokens.
struct TusdGate {
    gate: Daemon,
    tusd: common::tusd::Tusd,
    assets: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl common::tus::TusStack for TusdGate {
    fn endpoint(&self) -> String {
        self.tusd.endpoint()
    }
    fn upload_secret(&self) -> &str {
        UPLOAD_SECRET
    }
    fn assets(&self) -> &std::path::Path {
        &self.assets
    }
    fn logs(&self) -> String {
        format!(
            "--- tusd ---\n{}\n--- assetgate ---\n{}",
            self.tusd.log(),
            self.gate.logs().join("\n")
        )
    }
}

impl TusdGate {
    /// The gate (with the `[server]` keys `server`, long body deadlines so
    /// that only the `/tusd` budget cuts a slow body) and tusd v2.9.1 in front.
    fn start(server: &str) -> TusdGate {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        let uploads = dir.path().join("uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        let gate = Daemon::start(&format!(
            "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
             [link]\nsecrets = [\"{LINK_SECRET}\"]\n[upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n\
             [storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n\
             [server]\nbody_read_timeout = 60\nrequest_timeout = 120\n{server}",
            assets.display().to_string(),
            uploads.display().to_string(),
        ));
        let tusd = common::tusd::Tusd::start(
            common::tusd::Version::V2,
            dir.path(),
            &format!("http://{}/tusd", gate.addr),
            &[],
        );
        TusdGate {
            gate,
            tusd,
            assets,
            _dir: dir,
        }
    }
}

/// A well-formed v2 pre-create, as tusd sends it (head and body in one
/// write): its answer, and the metadata it carried.
fn post_pre_create(addr: SocketAddr, key: &str) -> ((u16, Vec<u8>), serde_json::Value) {
    use common::hooks::{metadata, post, v2_event};
    let m = metadata(UPLOAD_SECRET, key, "public", "text/plain", now() + 600);
    let (s, _, b) = post(
        addr,
        v2_event("pre-create", m.clone(), 10, serde_json::Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    ((s, b), m)
}

/// Whether an answer is the `/tusd` budget's refusal (503 `busy`).
fn is_busy(status: u16, body: &[u8]) -> bool {
    status == 503
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["error"]["code"] == "busy")
}

/// Finding 13: 300 slow `/tusd` bodies from any local process filled
/// `max_tusd_requests` (256) and every tus upload failed with 500 (the gate's
/// 503 `busy`). Now a hook whose body came whole with its head is decided
/// without a place in that budget, and a hook request that finds the budget
/// full cuts the one that has been reading its body the longest, past a short
/// grace.
#[test]
fn slow_tusd_bodies_cannot_fail_real_uploads() {
    use common::hooks::accepted_id;
    use common::tus::TusStack;
    const SLOW: usize = 300;
    let stack = TusdGate::start("");
    let addr = stack.gate.addr;

    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            s.write_all(
                b"POST /tusd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    // Past the grace (limits::TUSD_EVICT_GRACE, 500 ms): every slow body
    // that got a place has been reading it for longer, and the budget is full.
    std::thread::sleep(Duration::from_millis(1500));

    // Well-formed hooks, as tusd sends them: accepted, not 503 busy.
    for i in 0..3 {
        let ((s, b), m) = post_pre_create(addr, &format!("h{i}.txt"));
        assert!(
            s == 200 && !is_busy(s, &b),
            "hook {i} with {SLOW} slow bodies held: {s} {}\n{}",
            String::from_utf8_lossy(&b),
            stack.logs()
        );
        accepted_id(&b, &m);
    }
    // A real upload through tusd: its three hooks get through.
    let (file, data) = random_file(stack._dir.path(), "upload.bin", 100_000);
    stack.upload_lands(
        &file,
        &data,
        "through/slow.bin",
        "application/octet-stream",
        "public",
        &[],
    );

    // The slow bodies were refused or cut, not held: with 300 of them for a
    // budget of 256, a place freed only by cutting a slow body past its grace.
    let cut = metric(addr, "assetgate_limit_hits_total{limit=\"max_tusd_requests\"} ").unwrap();
    let mut answered = (0, 0);
    for s in slow.iter_mut() {
        s.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        poll_closed(s, &mut got);
        match status_of(&got) {
            Some(408) => answered.0 += 1,
            Some(503) => answered.1 += 1,
            _ => {}
        }
    }
    eprintln!(
        "{SLOW} slow /tusd bodies: {cut} cut or refused (max_tusd_requests), {} answered 408, {} answered 503",
        answered.0, answered.1
    );
    // Each slow body beyond the budget's 256 places was refused, or cut one
    // that had been reading past the grace (connecting 300 may take longer
    // than that on a loaded machine); every one of them was counted.
    assert!(
        answered.0 + answered.1 >= (SLOW - 256) as u64,
        "slow bodies cut {} and refused {}",
        answered.0,
        answered.1
    );
    assert!(cut >= answered.0 + answered.1, "refused and cut: {cut}");
    drop(slow);
}

/// What a churning attacker saw of its slow bodies.
#[derive(Debug, Default)]
struct Churn {
    /// Slow bodies opened (head and one byte of a 100-byte body sent).
    opened: u64,
    /// Connections that could not be opened.
    failed: u64,
    /// Answered 408 (cut for a newer request) and 503 (refused).
    cut: u64,
    refused: u64,
    /// How long the attack ran.
    ran: Duration,
}

/// Opens `rate` NEW slow bodies a second until `stop`, never finishing one:
/// each stays open until the server closes it (the attacker of the review,
/// /tmp/review/starve.py, waited 30 s for an answer).
fn churn_slow_bodies(addr: SocketAddr, rate: u32, stop: Arc<AtomicBool>) -> Churn {
    let started = Instant::now();
    let mut churn = Churn::default();
    let mut open: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while churn.opened + churn.failed < due && !stop.load(Ordering::Relaxed) {
            match connect(addr, SLOW_HEAD) {
                Some(s) => {
                    open.push((s, Vec::new()));
                    churn.opened += 1;
                }
                None => churn.failed += 1,
            }
        }
        open.retain_mut(|(s, got)| {
            if !poll_closed(s, got) {
                return true;
            }
            match status_of(got) {
                Some(408) => churn.cut += 1,
                Some(503) => churn.refused += 1,
                _ => {}
            }
            false
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    churn.ran = started.elapsed();
    churn
}

/// Finding 13, second round: "fair by progress" cut a slow body only once it
/// had been reading for the grace (500 ms), so an attacker opening new slow
/// bodies faster than `max_tusd_requests` / 0.5 s kept every place younger
/// than the grace and tusd's hooks got 503 `busy` again (a review, one Python
/// process: 1,500 new slow bodies a second, 101 of 219 well-formed hooks
/// refused). A hook whose body came whole with its head no longer needs a
/// place in that budget: well-formed hooks posted for the whole attack, and a
/// real tus upload through tusd, are all accepted.
#[test]
fn churning_slow_tusd_bodies_cannot_fail_real_uploads() {
    use common::hooks::accepted_id;
    use common::tus::TusStack;
    /// New slow bodies a second, for the whole run (the review's rate): 23
    /// times what keeps every place of a 64-request budget under the grace.
    const RATE: u32 = 1500;
    const CAP: u32 = 64;
    const HOOKS_FOR: Duration = Duration::from_secs(5);
    let stack = TusdGate::start(&format!("max_tusd_requests = {CAP}\n"));
    let addr = stack.gate.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || churn_slow_bodies(addr, RATE, stop))
    };
    // The budget full of young slow bodies first.
    std::thread::sleep(Duration::from_millis(1000));

    // Well-formed hooks, one every 20 ms (the review's), for the whole attack.
    let started = Instant::now();
    let mut answers = Vec::new();
    let mut i = 0;
    while started.elapsed() < HOOKS_FOR {
        answers.push(post_pre_create(addr, &format!("h{i}.txt")));
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    // A real upload through tusd while the attack goes on: pre-create,
    // pre-finish and post-finish through the gate.
    let (file, data) = random_file(stack._dir.path(), "upload.bin", 100_000);
    let upload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stack.upload_lands(
            &file,
            &data,
            "through/churn.bin",
            "application/octet-stream",
            "public",
            &[],
        )
    }));
    stop.store(true, Ordering::Relaxed);
    let churn = attacker.join().unwrap();

    let busy = answers.iter().filter(|((s, b), _)| is_busy(*s, b)).count();
    let limit_hits = metric(addr, "assetgate_limit_hits_total{limit=\"max_tusd_requests\"} ").unwrap();
    let per_second = churn.opened as f64 / churn.ran.as_secs_f64();
    eprintln!(
        "churn: {} new slow bodies in {:?} ({per_second:.0}/s; {} connects failed), {} cut (408), {} refused (503); \
         max_tusd_requests hits {limit_hits}; well-formed hooks: {} posted, {busy} answered busy; tus upload landed: {}",
        churn.opened,
        churn.ran,
        churn.failed,
        churn.cut,
        churn.refused,
        answers.len(),
        upload.is_ok()
    );
    // The attack did what beat the previous design: new slow bodies faster
    // than the budget's places turn over at the grace (64 / 0.5 s = 128 a
    // second), and the budget was full (slow bodies cut or refused).
    assert!(
        per_second > 4.0 * f64::from(CAP) / 0.5,
        "the attacker opened only {per_second:.0} slow bodies a second"
    );
    assert!(
        churn.cut + churn.refused > u64::from(CAP) * 10,
        "the budget was not full: {churn:?}"
    );
    assert_eq!(
        busy,
        0,
        "{busy} of {} well-formed hooks refused busy during the churn\n{}",
        answers.len(),
        stack.logs()
    );
    for ((s, b), m) in &answers {
        assert_eq!(*s, 200, "{}", String::from_utf8_lossy(b));
        accepted_id(b, m);
    }
    if let Err(e) = upload {
        std::panic::resume_unwind(e);
    }
}
