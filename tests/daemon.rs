//! The real binary on 127.0.0.1:0: endpoints, metrics, hostile connections,
//! shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn link_target(secret: &str, uri: &str, expires: i64) -> String {
    format!(
        "{uri}?md5={}&expires={expires}",
        sign_link(secret, uri, &expires.to_string())
    )
}

fn auth(d: &Daemon, target: &[u8]) -> (u16, Option<String>, Vec<u8>) {
    let (status, headers, body) = get(d.addr, "/auth", &[("X-Original-URI", target)]);
    (
        status,
        header(&headers, "x-assetgate-reason").map(str::to_owned),
        body,
    )
}

#[test]
fn auth_answers_like_nginx_expects() {
    let d = Daemon::start(&default_config());
    let exp = now() + 600;

    // valid: 204, no body
    let (s, reason, body) = auth(&d, link_target(LINK_SECRET, "/private/a.txt", exp).as_bytes());
    assert_eq!((s, reason, body.len()), (204, None, 0));
    // rotation: the older secret is accepted
    let (s, _, _) = auth(&d, link_target(LINK_SECRET_OLD, "/private/a.txt", exp).as_bytes());
    assert_eq!(s, 204);
    // expired: 403 expired, Content-Length 0
    let (status, headers, body) = get(
        d.addr,
        "/auth",
        &[(
            "X-Original-URI",
            link_target(LINK_SECRET, "/private/a.txt", now() - 5).as_bytes(),
        )],
    );
    assert_eq!(status, 403);
    assert_eq!(header(&headers, "x-assetgate-reason"), Some("expired"));
    assert_eq!(header(&headers, "content-length"), Some("0"));
    assert!(body.is_empty());
    // forged
    let (s, reason, _) = auth(
        &d,
        link_target("not-the-secret-at-all", "/private/a.txt", exp).as_bytes(),
    );
    assert_eq!((s, reason.as_deref()), (403, Some("invalid")));
    // missing
    let (s, reason, _) = auth(&d, b"/private/a.txt");
    assert_eq!((s, reason.as_deref()), (403, Some("missing")));
    // bad uri
    let (s, reason, _) = auth(&d, b"/private/%zz?md5=x&expires=1");
    assert_eq!((s, reason.as_deref()), (403, Some("bad-uri")));
    // raw bytes 0x80-0xFF in the header value are accepted and hashed as-is
    let uri = "/private/\u{e9}t\u{e9}.txt";
    let md5 = sign_link(LINK_SECRET, uri, &exp.to_string());
    let raw = format!("{uri}?md5={md5}&expires={exp}");
    let (s, _, _) = auth(&d, raw.as_bytes());
    assert_eq!(s, 204, "raw UTF-8 bytes in X-Original-URI");
    // no X-Original-URI: a deployment fault, 500 with the directive named
    let (status, _, body) = get(d.addr, "/auth", &[]);
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&body).contains("X-Original-URI $request_uri"));
    assert!(d.wait_log("proxy_set_header X-Original-URI", Duration::from_secs(5)));
    // HEAD works; other methods are refused
    let (s, _, _) = raw_request(
        d.addr,
        format!(
            "HEAD /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Original-URI: {}\r\n\r\n",
            link_target(LINK_SECRET, "/p", exp)
        )
        .as_bytes(),
    );
    assert_eq!(s, 204);
    let (s, h, _) = raw_request(
        d.addr,
        b"POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((s, header(&h, "allow")), (405, Some("GET, HEAD")));
}

#[test]
fn logs_name_the_reason_and_never_the_secret_or_query() {
    let d = Daemon::start(&default_config());
    let target = link_target(LINK_SECRET, "/private/log.txt", now() - 100);
    let md5 = target
        .split("md5=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    auth(&d, target.as_bytes());
    auth(
        &d,
        link_target(LINK_SECRET, "/private/log.txt", now() + 100).as_bytes(),
    );
    assert!(d.wait_log("\"decision\":\"allow\"", Duration::from_secs(5)));
    let logs = d.logs().join("\n");
    assert!(logs.contains("\"reason\":\"expired\""), "{logs}");
    for needle in [LINK_SECRET, LINK_SECRET_OLD, UPLOAD_SECRET, md5.as_str(), "md5="] {
        assert!(!logs.contains(needle), "log leaks {needle:?}:\n{logs}");
    }
}

#[test]
fn health_readiness_metrics() {
    let d = Daemon::start(&default_config());
    let (s, _, b) = get(d.addr, "/healthz", &[]);
    assert_eq!((s, b.as_slice()), (200, &b"ok\n"[..]));
    let (s, _, b) = get(d.addr, "/readyz", &[]);
    assert_eq!((s, b.as_slice()), (200, &b"ready\n"[..]));
    let (s, _, _) = get(d.addr, "/nope", &[]);
    assert_eq!(s, 404);

    auth(&d, link_target(LINK_SECRET, "/private/m", now() + 60).as_bytes());
    auth(&d, b"/private/m");
    let (s, h, body) = get(d.addr, "/metrics", &[]);
    assert_eq!(s, 200);
    assert!(header(&h, "content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    for line in [
        "assetgate_decisions_total{decision=\"allow\",endpoint=\"auth\",reason=\"ok\"} 1",
        "assetgate_decisions_total{decision=\"deny\",endpoint=\"auth\",reason=\"missing\"} 1",
        "assetgate_decisions_total{decision=\"deny\",endpoint=\"auth\",reason=\"expired\"} 0",
        "assetgate_http_requests_total{endpoint=\"auth\",status=\"204\"} 1",
        "assetgate_http_requests_total{endpoint=\"auth\",status=\"403\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("assetgate_request_duration_seconds_count{endpoint=\"auth\"} 2"));
    assert!(text.contains("assetgate_build_info{version=\""));
    assert!(text.contains("assetgate_connections_accepted_total"));
}

#[test]
fn keepalive_connection_serves_many_requests() {
    let d = Daemon::start(&default_config());
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let target = link_target(LINK_SECRET, "/private/k", now() + 60);
    for _ in 0..50 {
        write!(
            s,
            "GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: {target}\r\n\r\n"
        )
        .unwrap();
        let (status, _, _) = read_response(&mut s);
        assert_eq!(status, 204);
    }
    let (_, _, body) = get(d.addr, "/metrics", &[]);
    let text = String::from_utf8(body).unwrap();
    // 1 keepalive connection for the 50 requests, 1 for /metrics
    assert!(text.contains("assetgate_connections_accepted_total 2"), "{text}");
}

#[test]
fn half_sent_request_is_closed_and_others_are_served() {
    let cfg = default_config() + "[server]\nheader_read_timeout = 1\n";
    let d = Daemon::start(&cfg);
    // Hundreds of slow clients that never finish their request head.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Orig").unwrap();
            s
        })
        .collect();
    // Meanwhile a normal client is answered.
    let (s, _, _) = get(d.addr, "/healthz", &[]);
    assert_eq!(s, 200);
    // The half-sent requests are closed by the server (EOF or reset), not held.
    let deadline = Instant::now() + Duration::from_secs(15);
    for c in slow.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let closed = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue, // a 408 answer before closing is fine too
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(e) => panic!("connection still open: {e}"),
            }
        };
        assert!(closed);
        assert!(Instant::now() < deadline, "slow connections were held open");
    }
    // An idle connection that never sends anything is closed as well.
    let mut idle = TcpStream::connect(d.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        matches!(idle.read(&mut buf), Ok(0) | Err(_)),
        "idle connection was not closed"
    );
    let (s, _, _) = get(d.addr, "/healthz", &[]);
    assert_eq!(s, 200);
}

#[test]
fn oversized_head_is_refused_and_daemon_lives() {
    let mut d = Daemon::start(&default_config());
    let mut req = b"GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 64 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&req); // the server may close mid-write
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    assert!(d.alive());
    let (st, _, _) = get(d.addr, "/healthz", &[]);
    assert_eq!(st, 200);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut d = Daemon::start(&default_config());
    // An idle keep-alive connection must not hold the shutdown.
    let mut idle = TcpStream::connect(d.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    d.terminate();
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0), "{:#?}", d.logs());
    let logs = d.logs().join("\n");
    assert!(logs.contains("not ready"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
}

/// A daemon running every background task it has: the main port, the
/// reload watch, the Redis state sync, the reconciler, event delivery (to a
/// receiver that is down), the admin socket and TCP listener, the outbox's
/// socket, the limits reporter.
fn everything_running(
    grace_secs: u64,
    extra: &str,
) -> (Daemon, common::redis::RedisServer, tempfile::TempDir) {
    let redis = common::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    for d in ["assets", "uploads", "events"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("events"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = |d: &str| dir.path().join(d).display().to_string();
    let cfg = format!(
        "{}[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\nreconcile_interval = 1\n\
         [server]\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = {grace_secs}\n{extra}\n\
         [state]\nbackend = \"redis\"\nredis_url = \"{}\"\nsync_interval = 1\n\
         [events]\nurl = \"http://127.0.0.1:{}/hooks\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ndir = {:?}\n",
        default_config(),
        p("assets"),
        p("uploads"),
        redis.url(),
        free_port(),
        p("events"),
    );
    let d = Daemon::start(&cfg);
    assert!(d.admin.is_some());
    (d, redis, dir)
}

/// Issue 20, one stop: SIGTERM stops every background task, and the drain
/// waits for each one ("background task stopped", at debug, names it)
/// within the grace: no task is left for the runtime to drop, the socket
/// files are removed, exit 0. A task that ignored the stop would hold the
/// drain until the grace ends ("grace period over", naming it).
#[test]
fn sigterm_stops_every_background_task_within_the_grace() {
    let (mut d, _redis, dir) = everything_running(60, "");
    assert!(d.wait_log("\"message\":\"event delivery started\"", Duration::from_secs(10)));
    assert!(
        d.wait_metric("assetgate_state_up ", 1.0, Duration::from_secs(10)),
        "Redis answers"
    );
    // A reconcile pass (1 s) and a few syncs have run.
    std::thread::sleep(Duration::from_millis(1500));
    let events_socket = dir.path().join("events/admin.sock");
    assert!(events_socket.exists() && d.admin_socket.exists());
    d.terminate();
    assert_eq!(d.wait_exit(Duration::from_secs(30)), Some(0), "{:#?}", d.logs());
    let logs = d.logs();
    let all = logs.join("\n");
    assert!(
        all.contains("all connections and background moves drained"),
        "{all}"
    );
    assert!(!all.contains("grace period over"), "{all}");
    let stopped: std::collections::BTreeSet<String> = logs
        .iter()
        .filter(|l| l.contains("\"message\":\"background task stopped\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["task"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let every: std::collections::BTreeSet<String> = [
        "listen",
        "reload",
        "state_sync",
        "reconcile",
        "events",
        "admin_socket",
        "admin_listen",
        "events_socket",
        "limits",
    ]
    .map(String::from)
    .into();
    assert_eq!(stopped, every, "{all}");
    assert!(all.contains("event delivery stopped"), "{all}");
    assert!(logs.last().unwrap().contains("\"message\":\"stopped\""), "{all}");
    assert!(!d.admin_socket.exists(), "admin socket removed");
    assert!(!events_socket.exists(), "events socket removed");
}

/// A second SIGTERM aborts the drain: a `/tusd` body half sent holds it (its
/// read timeout and the grace are a minute), the second signal ends it at
/// once, exit 0.
#[test]
fn a_second_sigterm_aborts_the_drain() {
    let (mut d, _redis, _dir) = everything_running(60, "body_read_timeout = 60\nrequest_timeout = 60\n");
    let mut s = TcpStream::connect(d.addr).unwrap();
    write!(
        s,
        "POST /tusd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"Type\":"
    )
    .unwrap();
    assert!(d.wait_metric("assetgate_connections_open", 1.0, Duration::from_secs(5)));
    d.terminate();
    assert!(
        d.wait_log("shutting down", Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    // Still draining: the request holds it.
    assert!(d.alive());
    d.terminate();
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{:#?}", d.logs());
    let all = d.logs().join("\n");
    assert!(all.contains("second signal: aborting the drain"), "{all}");
    assert!(
        !all.contains("all connections and background moves drained"),
        "{all}"
    );
    assert!(all.contains("\"message\":\"stopped\""), "{all}");
}

#[test]
fn env_overrides_file() {
    let port = free_port();
    let d = Daemon::start_with(
        &default_config(),
        &[],
        &[
            ("ASSETGATE_LISTEN", &format!("127.0.0.1:{port}")),
            ("ASSETGATE_LINK_SECRET", "env-only-link-secret-123"),
        ],
    );
    assert_eq!(d.addr.port(), port);
    let (s, _, _) = auth(
        &d,
        link_target("env-only-link-secret-123", "/p", now() + 9).as_bytes(),
    );
    assert_eq!(s, 204);
    let (s, _, _) = auth(&d, link_target(LINK_SECRET, "/p", now() + 9).as_bytes());
    assert_eq!(s, 403, "the env secret replaces the file's list");
}

/// Regression (hardening review): SIGHUP's default action killed the daemon (exit 129, no
/// log, no drain) in the middle of a move. SIGHUP is caught and counted, and
/// reloads the configuration; the daemon keeps serving.
#[test]
fn sighup_reloads_and_never_kills() {
    let mut d = Daemon::start(&default_config());
    for _ in 0..2 {
        let sent = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(d.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        d.wait_metric(
            "assetgate_config_reloads_total{result=\"unchanged\"}",
            2.0,
            Duration::from_secs(5)
        ),
        "{:#?}",
        d.logs()
    );
    assert!(
        d.wait_log("\"trigger\":\"sighup\"", Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    assert!(d.alive(), "SIGHUP killed the daemon: {:?}", d.child.try_wait());
    let (s, _, _) = auth(
        &d,
        link_target(LINK_SECRET, "/private/hup", now() + 60).as_bytes(),
    );
    assert_eq!(s, 204);
    let (_, _, body) = get(d.addr, "/metrics", &[]);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("assetgate_sighup_total 2"), "{text}");
    // SIGTERM still drains and exits 0 afterwards.
    d.terminate();
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0), "{:#?}", d.logs());
}

// ---------------------------------------------------------------------------
// The admin API (issue 19, finding 2): a private Unix socket by default, no
// TCP listener unless asked, and nothing a browser can send accepted.

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `serve` with `env` on top of a config file; exit code and stderr, or
/// `None` if still running after 10 s (then killed).
fn serve_once(config: &std::path::Path, env: &[(&str, &std::path::Path)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("--config")
        .arg(config)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn admin_socket_is_private_and_only_a_stale_one_is_replaced() {
    let mut d = Daemon::start(&default_config());
    // No TCP admin listener unless configured.
    assert_eq!(d.admin, None);
    let sock = d.admin_socket.clone();
    assert_eq!(sock, d.dir.path().join("run/admin.sock"));
    assert_eq!(mode(sock.parent().unwrap()), 0o700, "directory created 0700");
    assert_eq!(mode(&sock), 0o600);
    let (s, _, b) = unix_request(
        &sock,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((s, b.as_slice()), (200, &b"ok\n"[..]));

    // A second daemon on the same socket: refused while the first answers.
    let cfg = d.dir.path().join("assetgate.toml");
    let (code, err) = serve_once(&cfg, &[("ASSETGATE_SERVER__ADMIN_SOCKET", &sock)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use") && err.contains("admin_socket"), "{err}");
    assert!(d.alive());

    // Killed (no cleanup): the socket file stays, nothing answers on it; the
    // next daemon replaces it.
    let _ = d.child.kill();
    let _ = d.child.wait();
    assert!(sock.exists());
    let next = Daemon::start_with(
        &default_config(),
        &[],
        &[("ASSETGATE_SERVER__ADMIN_SOCKET", sock.to_str().unwrap())],
    );
    assert_eq!(next.admin_socket, sock);
    assert_eq!(mode(&sock), 0o600);
    let (s, _, _) = unix_request(
        &sock,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(s, 200);
    // SIGTERM: the daemon removes its socket.
    let mut next = next;
    next.terminate();
    assert_eq!(next.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(!sock.exists(), "socket removed at exit");

    // A directory others may write, or a file that is not a socket: refused,
    // saying why; the file is left alone.
    use std::os::unix::fs::PermissionsExt;
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = serve_once(
        &cfg,
        &[("ASSETGATE_SERVER__ADMIN_SOCKET", &open.path().join("admin.sock"))],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("writable by its group or by others"), "{err}");
    let mine = tempfile::tempdir().unwrap();
    let file = mine.path().join("admin.sock");
    std::fs::write(&file, "precious").unwrap();
    let (code, err) = serve_once(&cfg, &[("ASSETGATE_SERVER__ADMIN_SOCKET", &file)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

/// What a page the operator visits could send: a "simple" cross-origin POST
/// (`text/plain`, no CORS preflight) to a loopback port, or a request to a
/// DNS name rebound to 127.0.0.1. None of it reaches the revocations, on the
/// TCP listener (an opt-in) or the socket; what the CLI sends does.
#[test]
fn admin_api_refuses_what_a_browser_sends() {
    let d = Daemon::start(&format!(
        "{}[server]\nadmin_listen = \"127.0.0.1:0\"\n",
        default_config()
    ));
    let admin = d.admin.expect("admin_listen set");
    let body = r#"{"kind":"prefix","value":"/private/user-42/"}"#;
    let post = |host: &str, extra: &str| -> Vec<u8> {
        format!(
            "POST /revocations HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let host = admin.to_string();
    let json = "Content-Type: application/json\r\n";
    let refused: Vec<(&str, Vec<u8>, u16)> = vec![
        ("text/plain, no preflight", post(&host, "Content-Type: text/plain\r\n"), 415),
        ("no content type", post(&host, ""), 415),
        ("a form", post(&host, "Content-Type: application/x-www-form-urlencoded\r\n"), 415),
        ("an Origin", post(&host, &format!("{json}Origin: https://evil.example\r\n")), 403),
        ("a browser's fetch metadata", post(&host, &format!("{json}Sec-Fetch-Site: cross-site\r\n")), 403),
        ("a rebound name", post(&format!("rebind.evil.example:{}", admin.port()), json), 403),
        (
            "a DELETE from a page",
            format!(
                "DELETE /revocations HTTP/1.1\r\nHost: {host}\r\nOrigin: null\r\n{json}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            403,
        ),
    ];
    for (what, req, status) in &refused {
        let (s, _, b) = raw_request(admin, req);
        assert_eq!(s, *status, "{what}: {}", String::from_utf8_lossy(&b));
        assert!(String::from_utf8_lossy(&b).contains("error"), "{what}");
    }
    for (what, req, status) in &refused {
        let (s, _, _) = unix_request(&d.admin_socket, req);
        assert_eq!(s, *status, "socket, {what}");
    }
    let (_, _, list) = raw_request(
        admin,
        format!("GET /revocations HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        String::from_utf8_lossy(&list),
        r#"{"revocations":[]}"#,
        "nothing was revoked"
    );
    let (s, _, _) = raw_request(
        admin,
        format!(
            "GET /revocations HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\r\n",
            admin.port()
        )
        .as_bytes(),
    );
    assert_eq!(s, 403, "a rebound page cannot read the list either");

    // What the CLI sends: JSON, Host localhost (socket) or the address (TCP).
    let (s, _, b) = unix_request(&d.admin_socket, &post("localhost", json));
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (s, _, b) = raw_request(
        admin,
        &post(&host, "Content-Type: application/json; charset=utf-8\r\n"),
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let exp = now() + 600;
    assert_eq!(
        auth(
            &d,
            link_target(LINK_SECRET, "/private/user-42/a.txt", exp).as_bytes()
        )
        .1
        .as_deref(),
        Some("revoked")
    );
    // Refusals are logged (why, never the body) and counted.
    assert!(d.wait_log("admin request refused", Duration::from_secs(5)));
    assert!(d.metric("assetgate_http_requests_total{endpoint=\"admin\",status=\"403\"}") >= 9.0);
    assert!(d.metric("assetgate_http_requests_total{endpoint=\"admin\",status=\"415\"}") >= 6.0);
}
