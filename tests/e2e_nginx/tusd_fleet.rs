//! The tusd fleet upstream (`nginx/assetgate-tusd-fleet.conf.example`): real
//! nginx, the shipped example with its one-server `upstream tusd` replaced by
//! the fleet file (only the two server addresses rewritten), two recording
//! upstreams standing in for two tusd instances.
//!
//! Every PATCH/HEAD/DELETE of one upload ID reaches the same upstream (whatever
//! the query string, `+` or `%2B`, a trailing `/`); different IDs spread over both; creation
//! POSTs go to both (no ID: round robin); the `Tus-Resumable` fix of
//! assetgate-uploads.conf still applies. With one upstream down, every request
//! (the uploads hashed to it too) reaches the other.

use super::*;

use std::sync::{Arc, Mutex};

/// What an upstream saw of one request: its `X-Case` and `Tus-Resumable`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An upstream that records the `X-Case` header of each request, answers 204
/// and closes.
struct Recorder {
    port: u16,
    seen: Seen,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let mut first = String::new();
                if r.read_line(&mut first).unwrap_or(0) == 0 {
                    continue;
                }
                let (mut case, mut resumable, mut len) = (String::new(), None, 0usize);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some((k, v)) = line.split_once(':') {
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                        match k.as_str() {
                            "x-case" => case = v,
                            "tus-resumable" => resumable = Some(v),
                            "content-length" => len = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                // Recorded before the answer: once the client has it, it is here.
                keep.lock().unwrap().push((case, resumable));
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        Recorder { port, seen }
    }

    /// Which recorder (0 or 1) saw the request with `case`, asserting exactly one did.
    fn which(recorders: &[Recorder; 2], case: &str) -> usize {
        let hits: Vec<usize> = (0..2)
            .filter(|&i| recorders[i].seen.lock().unwrap().iter().any(|(c, _)| c == case))
            .collect();
        assert_eq!(hits.len(), 1, "request {case} reached upstreams {hits:?}");
        hits[0]
    }
}

/// The one-server upstream of assetgate.conf.example, replaced by the fleet file.
const EXAMPLE_UPSTREAM: &str = "upstream tusd {\n    server 127.0.0.1:1080;\n}\n";
const FLEET_SERVERS: [&str; 2] = ["server 127.0.0.1:1080;", "server 127.0.0.1:1081;"];

fn fleet_nginx(dir: &Path, gate: &Daemon, ports: [u16; 2]) -> Nginx {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let file = "nginx/assetgate-tusd-fleet.conf.example";
    let mut fleet = std::fs::read_to_string(common::repo().join(file)).unwrap();
    for (line, port) in FLEET_SERVERS.iter().zip(ports) {
        let to = format!("server 127.0.0.1:{port};");
        fleet = common::ngx::replace_once(&fleet, line, &to, file);
    }
    let fleet_path = dir.join("tusd-fleet.conf");
    std::fs::write(&fleet_path, fleet).unwrap();
    // tusd's port as shipped: the block is then exactly the example's.
    let site = common::ngx::shipped_site(dir, gate.addr, 1080, &dir.join("assets"));
    let site = common::ngx::replace_once(
        &site,
        EXAMPLE_UPSTREAM,
        &format!("include {};\n", fleet_path.display()),
        "nginx/assetgate.conf.example",
    );
    Nginx::start(dir, 1, |ports| {
        let site_path = dir.join("site.conf");
        std::fs::write(&site_path, common::ngx::listen_on(&site, ports[0])).unwrap();
        nginx_main_conf(dir, &format!("include {};", site_path.display()))
    })
}

#[test]
pub(crate) fn tusd_fleet_routes_each_upload_to_one_tusd() {
    // session_binding = "off": every request reaches the upstream.
    let gate = Daemon::start(&format!(
        "{}session_binding = \"off\"\n",
        common::default_config()
    ));
    let recorders = [Recorder::start(), Recorder::start()];
    let tmp = tempfile::tempdir().unwrap();
    let ngx = fleet_nginx(tmp.path(), &gate, [recorders[0].port, recorders[1].port]);
    let mut n = 0;
    let mut send = |method: &str, target: &str, resumable: &str, body: &str| -> String {
        n += 1;
        let case = format!("c{n}");
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: uploads.test\r\nConnection: close\r\n\
             X-Case: {case}\r\nTus-Resumable: {resumable}\r\nUpload-Offset: 0\r\n\
             Content-Type: application/offset+octet-stream\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, _, _) = common::raw_request(ngx.addr(0), req.as_bytes());
        assert_eq!(status, 204, "{method} {target}: {}", ngx.logs());
        case
    };

    // 32 upload IDs shaped like s3store's (objectId+multipartId), fixed: the
    // hash is deterministic, so is this test.
    let ids: Vec<String> = (0..32u32)
        .map(|i| {
            format!(
                "{:032x}+{:x}Mp.{i}",
                u128::from(i) * 0x9e37_79b9_7f4a_7c15,
                i * 7919
            )
        })
        .collect();
    let mut per_upstream = [0usize; 2];
    for id in &ids {
        let encoded = id.replace('+', "%2B");
        let cases = [
            send("HEAD", &format!("/files/{id}"), "1.0.0", ""),
            send("PATCH", &format!("/files/{id}"), "1.0.0", "chunk-1"),
            send("HEAD", &format!("/files/{encoded}"), "1.0.0", ""),
            send(
                "PATCH",
                &format!("/files/{encoded}?x=1"),
                "1.0.0, 1.0.0",
                "chunk-2",
            ),
            // tusd routes `/files/<id>/` to the same upload: so must the hash
            // (the review found it hashed to "" and went round robin).
            send("PATCH", &format!("/files/{id}/"), "1.0.0", "chunk-3"),
            send("HEAD", &format!("/files/{encoded}/?x=1"), "1.0.0", ""),
            send("DELETE", &format!("/files/{id}"), "1.0.0", ""),
        ];
        let first = Recorder::which(&recorders, &cases[0]);
        for c in &cases[1..] {
            assert_eq!(
                Recorder::which(&recorders, c),
                first,
                "upload {id}: request {c} went to another tusd"
            );
        }
        per_upstream[first] += 1;
    }
    assert!(
        per_upstream.iter().all(|&k| k > 0),
        "32 upload IDs all hashed to one tusd: {per_upstream:?}"
    );

    // Creation: no ID, round robin over both.
    let posts: Vec<String> = (0..8).map(|_| send("POST", "/files/", "1.0.0", "")).collect();
    let mut post_upstreams = [0usize; 2];
    for c in &posts {
        post_upstreams[Recorder::which(&recorders, c)] += 1;
    }
    assert!(
        post_upstreams.iter().all(|&k| k > 0),
        "creations all went to one tusd: {post_upstreams:?}"
    );

    // assetgate-uploads.conf's Tus-Resumable fix is still in force.
    for r in &recorders {
        for (case, resumable) in r.seen.lock().unwrap().iter() {
            assert_eq!(resumable.as_deref(), Some("1.0.0"), "request {case}");
        }
    }
    let total: usize = recorders.iter().map(|r| r.seen.lock().unwrap().len()).sum();
    assert_eq!(total, ids.len() * 7 + posts.len());
    eprintln!("uploads per tusd: {per_upstream:?}, creations per tusd: {post_upstreams:?}");
}

/// One tusd down (its port refuses connections): every request, the uploads
/// that hash to it included, reaches the other one (nginx retries a refused
/// connection on the next peer, PATCH too, since nothing was sent), which
/// resumes them from the bucket.
#[test]
pub(crate) fn tusd_fleet_survives_one_tusd_down() {
    let gate = Daemon::start(&format!(
        "{}session_binding = \"off\"\n",
        common::default_config()
    ));
    let alive = Recorder::start();
    // A port nothing listens on any more.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let ngx = fleet_nginx(tmp.path(), &gate, [alive.port, dead]);
    let mut sent = 0;
    for i in 0..16u32 {
        // No HEAD: a 502 answer to it announces a body it does not send, which
        // raw_request cannot read; the status is what this test is about.
        for (method, body) in [("PATCH", "chunk"), ("DELETE", ""), ("POST", "")] {
            let target = if method == "POST" {
                "/files/".to_string()
            } else {
                format!("/files/{:032x}+mp{i}", u128::from(i) * 0x9e37_79b9)
            };
            let req = format!(
                "{method} {target} HTTP/1.1\r\nHost: uploads.test\r\nConnection: close\r\n\
                 X-Case: d{i}{method}\r\nTus-Resumable: 1.0.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let (status, _, _) = common::raw_request(ngx.addr(0), req.as_bytes());
            assert_eq!(
                status,
                204,
                "{method} {target} with one tusd down: {}",
                ngx.logs()
            );
            sent += 1;
        }
    }
    assert_eq!(alive.seen.lock().unwrap().len(), sent);
}
