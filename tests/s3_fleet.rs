//! The fleet on S3 (issue 21, "What must be true", item 1), end to end on
//! loopback: one SeaweedFS (the guarded starter of `common::s3`: loopback,
//! telemetry off), one `redis-server`, **two tusd v2.9.1** on the bucket
//! started with the shipped `tusd/tusd-s3.sh` command line (only where each
//! listens, the endpoint and its hook URL replaced), **two `assetgate serve`
//! replicas** (`[storage] backend = "s3"`, `[state] backend = "redis"`,
//! events to a receiver here), each tusd hooked to one replica, and **one
//! nginx** made of the shipped files only: `nginx/assetgate-s3.conf.example`
//! with `assetgate-s3-locations.conf`, `assetgate-s3-proxy.conf` and
//! `assetgate-uploads.conf` included verbatim, its one-server `upstream tusd`
//! replaced by `nginx/assetgate-tusd-fleet.conf.example` (`hash` on the
//! upload ID, `consistent`), the upstream file listing both replicas.
//! Rewritten, each exactly once: addresses, ports, `listen`. A second,
//! test-only server block is the application's origin for the browser (the
//! page, tus-js-client, `/api/` of `tests/peers/granite_app.py`).
//!
//! Checked:
//! - tuspy (granite-minted tokens, through nginx) and tus-js-client in
//!   headless Chromium (granite's answer from the app) upload; each lands at
//!   `<visibility>/<key>` byte for byte with the token's Content-Type and
//!   this upload's marker; exactly one `upload.finalized` per upload reaches
//!   the receiver, its Standard Webhooks signature verified by the real
//!   `standardwebhooks` library, its `sha256` the bytes'; nothing under
//!   `tus/` and no multipart upload is left open in the bucket.
//! - Kill the tusd that holds an upload mid-way, twice: tus-js-client
//!   (granite's headers as its `headers`) stops after its first chunk and
//!   waits (`pauseUntil`) while the test SIGKILLs the tusd that wrote it, then
//!   resumes (HEAD, PATCH) through nginx on the other tusd; the killed tusd
//!   is started again and nginx sends to it again (polled). Then a tuspy
//!   upload is stopped after two 3 MiB chunks, every PATCH of it on one tusd
//!   (the hash), that tusd SIGKILLed, tuspy resumes the same upload URL
//!   through nginx on the other tusd, whose replica runs its post-finish.
//!   Each lands once (one event, the bytes equal): the upload's state is in
//!   the bucket, single-use marks on Redis, the signed ID verified by either
//!   replica.
//! - What landed downloads through nginx with links minted by
//!   `examples/link_signer.py` from the event's key and visibility: 200
//!   byte-equal, `Range` 206, `HEAD` 200, for keys with a space, `+` and
//!   Unicode. A key with `%` cannot be uploaded (pre-create refuses it,
//!   `key_invalid`); `tests/s3_downloads.rs` covers downloading one.
//!
//! Peers: SeaweedFS (`scripts/s3-peers.sh`), tusd v2.9.1, redis-server,
//! nginx, the peers venv (granite-assets, tuspy, standardwebhooks, boto3),
//! node + Chromium + `tests/browser/node_modules`; a missing one fails the
//! test with the command that installs it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{browser_dir, require_browser_peers, run_browser, start_app, Proc};
use common::ngx::{link_types, nginx_main_conf, replace_once, Nginx, SHIPPED_GATE_ADDR, SHIPPED_LISTEN};
use common::redis::{redis_server, RedisServer};
use common::s3::{weed_bin, S3Engine, REGION};
use common::tus::run_client;
use common::tusd::{tusd_bin, Tusd, Version};
use common::{header, nginx, peer_python, repo, Daemon, LINK_SECRET, UPLOAD_SECRET};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The Standard Webhooks spec's example secret (as in `tests/events.rs`).
const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// What the tests rewrite in the shipped files; each occurs exactly once.
const SHIPPED_STORE_ADDR: &str = "server 127.0.0.1:8333;";
const SHIPPED_TUSD_UPSTREAM: &str = "upstream tusd {\n    server 127.0.0.1:1080;\n}\n";
const SHIPPED_FLEET_SERVERS: [&str; 2] = ["server 127.0.0.1:1080;", "server 127.0.0.1:1081;"];
/// The bound on every wait for a state (publish, delivery).
const WAIT: Duration = Duration::from_secs(30);

/// The application's webhook receiver: `tests/peers/events_receiver.py`
/// (the real `standardwebhooks` library verifies every delivery).
struct Receiver {
    child: Child,
    port: u16,
    record: PathBuf,
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let record = dir.join("deliveries.jsonl");
        let mut child = Command::new(peer_python())
            .arg(repo().join("tests/peers/events_receiver.py"))
            .args(["--port", "0", "--secret", EVENTS_SECRET, "--record"])
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("receiver: {line:?}"));
        Receiver { child, port, record }
    }

    /// Every request it got: verified ones answered 204, others 401.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The verified, accepted deliveries' bodies.
    fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 204 && r["verified"] == true)
            .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fleet {
    s3: S3Engine,
    _redis: RedisServer,
    receiver: Receiver,
    gates: Vec<Daemon>,
    /// `tusds[i]` posts its hooks to `gates[i]`.
    tusds: Vec<Tusd>,
    ngx: Nginx,
    app: Proc,
    dir: tempfile::TempDir,
}

/// A replica's configuration: the S3 backend with the engine's read-only
/// identity for downloads (the main one comes from the environment), the
/// shared Redis, events to the receiver from an outbox of its own.
fn gate_config(s3: &S3Engine, redis: &RedisServer, receiver: &Receiver, events_dir: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\nsingle_use = true\n\
         [state]\nbackend = \"redis\"\nredis_url = \"{}\"\n\
         [storage]\nbackend = \"s3\"\n\
         [storage.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\nbucket = \"{}\"\n\
         read_access_key_id = \"{}\"\nread_secret_access_key = \"{}\"\n\
         [events]\nurl = \"http://127.0.0.1:{}/hooks/assets\"\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n\
         initial_backoff = \"200ms\"\nmax_backoff = \"1s\"\ntimeout = \"2s\"\n",
        redis.url(),
        s3.endpoint(),
        s3.bucket,
        s3.read_access_key,
        s3.read_secret_key,
        receiver.port,
        events_dir.display().to_string(),
    )
}

impl Fleet {
    fn start() -> Fleet {
        // Every peer first: a missing one fails here, with its install command.
        weed_bin();
        tusd_bin(Version::V2);
        redis_server();
        nginx();
        peer_python();
        require_browser_peers();

        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Engine::seaweedfs("assets");
        let redis = RedisServer::start();
        let receiver = Receiver::start(dir.path());
        let env = [
            ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", s3.access_key.as_str()),
            ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", s3.secret_key.as_str()),
        ];
        let gates: Vec<Daemon> = (0..2)
            .map(|i| {
                let events = dir.path().join(format!("events-{i}"));
                std::fs::create_dir_all(&events).unwrap();
                Daemon::start_with(&gate_config(&s3, &redis, &receiver, &events), &[], &env)
            })
            .collect();
        for g in &gates {
            assert_eq!(
                g.metric("assetgate_s3_publish_method{method=\"rename\"}"),
                1.0,
                "{:#?}",
                g.logs()
            );
        }
        let tusds: Vec<Tusd> = gates
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let d = dir.path().join(format!("tusd-{i}"));
                std::fs::create_dir_all(&d).unwrap();
                Tusd::start_shipped_s3(&d, &format!("{}/tusd", g.url()), &s3.endpoint(), s3.tusd_env())
            })
            .collect();
        let ngx_dir = dir.path().join("nginx");
        let app_port = common::free_port();
        let ngx = shipped_fleet_site(
            &ngx_dir,
            &gates.iter().map(|g| g.addr).collect::<Vec<_>>(),
            [tusds[0].port, tusds[1].port],
            s3.port,
            app_port,
        );
        // The application: granite mints the browser's upload parameters.
        // granite's storage_path is an empty directory: on S3 the app has no
        // asset tree (downloads are minted by examples/link_signer.py).
        let no_tree = dir.path().join("app-storage");
        std::fs::create_dir_all(&no_tree).unwrap();
        let origin = format!("http://{}", ngx.addr(0));
        let app = start_app(
            dir.path(),
            app_port,
            &[
                "--storage".into(),
                no_tree.display().to_string(),
                "--base-url".into(),
                origin.clone(),
                "--tusd-url".into(),
                origin,
                "--upload-secret".into(),
                UPLOAD_SECRET.into(),
                "--link-secret".into(),
                LINK_SECRET.into(),
            ],
        );
        Fleet {
            s3,
            _redis: redis,
            receiver,
            gates,
            tusds,
            ngx,
            app,
            dir,
        }
    }

    /// nginx's shipped server block: uploads and downloads.
    fn origin(&self) -> String {
        format!("http://{}", self.ngx.addr(0))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.tusds.iter().enumerate() {
            let log = t.log();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "--- tusd {i} (last 40 lines) ---\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        for (i, g) in self.gates.iter().enumerate() {
            let logs = g.logs();
            out.push_str(&format!(
                "--- assetgate {i} (last 40 lines) ---\n{}\n",
                logs[logs.len().saturating_sub(40)..].join("\n")
            ));
        }
        out.push_str(&format!("--- app ---\n{}\n", self.app.log_text()));
        out.push_str(&self.ngx.logs());
        out
    }

    /// tuspy through nginx with a granite token for `key` (`extra`: more
    /// `tus_upload.py` flags).
    fn tuspy(&self, file: &Path, key: &str, ct: &str, vis: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--file", file.to_str().unwrap()];
        args.extend(["--key", key, "--content-type", ct, "--visibility", vis]);
        args.extend_from_slice(extra);
        let endpoint = format!("{}/files/", self.origin());
        run_client("tus_upload.py", &endpoint, UPLOAD_SECRET, &args, || self.logs())
    }

    /// Waits until `<vis>/<key>` is in the bucket; asserts its bytes, type
    /// and marker (`upload_id`, when known).
    fn assert_landed(&self, vis: &str, key: &str, ct: &str, bytes: &[u8], upload_id: Option<&str>) {
        let object = format!("{vis}/{key}");
        let got = poll(WAIT, || {
            let got = self.s3.must(&["get", &self.s3.bucket, &object]);
            (got["ok"] == true).then_some(got)
        })
        .unwrap_or_else(|| panic!("{object} never landed\n{}", self.logs()));
        assert_eq!(got["size"], bytes.len() as u64, "{object}: {got}");
        assert_eq!(got["sha256"], sha256_hex(bytes), "{object}: other bytes");
        assert_eq!(got["content_type"], ct, "{object}: {got}");
        if let Some(id) = upload_id {
            assert_eq!(got["metadata"]["assetgate-upload"], id, "{object}: {got}");
        }
        assert!(
            got["metadata"].get("upload-token").is_none(),
            "{object}: the upload token was copied onto the published object: {got}"
        );
    }

    /// The sum of a metric over both replicas.
    fn total(&self, series: &str) -> f64 {
        self.gates.iter().map(|g| g.metric(series)).sum()
    }

    /// The tusd (index) whose log shows `id`'s chunks written, with how many;
    /// fails unless exactly one has any (sticky routing).
    fn holder(&self, id: &str) -> (usize, usize) {
        let counts: Vec<usize> = self.tusds.iter().map(|t| chunks_written(t, id)).collect();
        let holders: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
        assert_eq!(
            holders.len(),
            1,
            "the PATCHes of {id} were not all sent to one tusd: chunks per tusd {counts:?}\n{}",
            self.logs()
        );
        (holders[0], counts[holders[0]])
    }
}

/// The IDs of the uploads tusd created (`UploadCreated … id=<id>`).
fn created(tusd: &Tusd) -> Vec<String> {
    tusd.log()
        .lines()
        .filter(|l| l.contains("event=UploadCreated"))
        .filter_map(|l| l.split(" id=").nth(1)?.split(' ').next().map(str::to_string))
        .collect()
}

/// How many chunk writes of upload `id` tusd logged (`ChunkWriteComplete`).
fn chunks_written(tusd: &Tusd, id: &str) -> usize {
    tusd.log()
        .lines()
        .filter(|l| l.contains("ChunkWriteComplete") && l.contains(id))
        .count()
}

/// The shipped S3 example with its includes under `dir/assetgate/` (the
/// locations, proxy and uploads files verbatim; the upstream file with one
/// `server` line per replica), its `upstream tusd` replaced by the shipped
/// fleet upstream (the two tusd ports), plus the test-only application
/// server block on `ports[1]` (the page, tus-js-client, `/api/`).
fn shipped_fleet_site(
    dir: &Path,
    gates: &[SocketAddr],
    tusd_ports: [u16; 2],
    store_port: u16,
    app_port: u16,
) -> Nginx {
    let shipped = repo().join("nginx");
    link_types(dir);
    for f in [
        "assetgate-s3-locations.conf",
        "assetgate-s3-proxy.conf",
        "assetgate-uploads.conf",
    ] {
        std::os::unix::fs::symlink(shipped.join(f), dir.join("assetgate").join(f)).unwrap();
    }
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    let servers: Vec<String> = gates.iter().map(|g| format!("server {g};")).collect();
    common::write(
        &dir.join("assetgate/assetgate-upstream.conf"),
        &replace_once(
            &upstream,
            SHIPPED_GATE_ADDR,
            &servers.join("\n    "),
            "nginx/assetgate-upstream.conf",
        ),
    );
    let file = "nginx/assetgate-tusd-fleet.conf.example";
    let mut fleet = std::fs::read_to_string(repo().join(file)).unwrap();
    for (line, port) in SHIPPED_FLEET_SERVERS.iter().zip(tusd_ports) {
        fleet = replace_once(&fleet, line, &format!("server 127.0.0.1:{port};"), file);
    }
    let fleet_path = dir.join("assetgate/assetgate-tusd-fleet.conf");
    common::write(&fleet_path, &fleet);
    let file = "nginx/assetgate-s3.conf.example";
    let example = std::fs::read_to_string(shipped.join("assetgate-s3.conf.example")).unwrap();
    let example = replace_once(
        &example,
        SHIPPED_STORE_ADDR,
        &format!("server 127.0.0.1:{store_port};"),
        file,
    );
    let example = replace_once(
        &example,
        SHIPPED_TUSD_UPSTREAM,
        &format!("include {};\n", fleet_path.display()),
        file,
    );
    let page = browser_dir().join("page");
    let tus_js = browser_dir().join("node_modules/tus-js-client/dist/tus.min.js");
    Nginx::start(dir, 2, |ports| {
        let site = replace_once(
            &example,
            SHIPPED_LISTEN,
            &format!("listen 127.0.0.1:{};", ports[0]),
            file,
        );
        let site_path = dir.join("site.conf");
        std::fs::write(&site_path, site).unwrap();
        let app = format!(
            "# Test only: the application's origin (the page, tus-js-client, /api/).\n\
             server {{\n\
             listen 127.0.0.1:{};\n\
             types {{ text/html html; text/javascript js; }}\n\
             location /page/ {{ alias {}/; }}\n\
             location = /vendor/tus.min.js {{ alias {}; }}\n\
             location /control/ {{ alias {}/control/; }}\n\
             location /api/ {{ proxy_pass http://127.0.0.1:{app_port}; }}\n\
             location / {{ return 404; }}\n\
             }}\n",
            ports[1],
            page.display(),
            tus_js.display(),
            dir.display(),
        );
        nginx_main_conf(dir, &format!("include {};\n{app}", site_path.display()))
    })
}

/// `f` until it gives a value, every 100 ms, at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `len` bytes starting with `magic` (what pre-finish's content check
/// looks for), the rest random.
fn bytes_of(dir: &Path, name: &str, magic: &[u8], len: usize) -> (PathBuf, Vec<u8>) {
    let (path, mut data) = common::random_file(dir, name, len);
    data[..magic.len()].copy_from_slice(magic);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// The tus upload ID of an upload URL (`…/files/<id>`).
fn id_of(url: &str) -> String {
    url.split_once("/files/").expect("a tus URL").1.to_string()
}

/// `examples/link_signer.py --encoded` for `key` and `visibility` (as the
/// application takes them from the event): the link's path and query.
fn signed_target(fleet: &Fleet, key: &str, visibility: &str) -> String {
    let secret_file = fleet.dir.path().join("link_secret");
    std::fs::write(&secret_file, format!("{LINK_SECRET}\n")).unwrap();
    let o = Command::new(peer_python())
        .arg(repo().join("examples/link_signer.py"))
        .args(["--base-url", &fleet.origin(), "--secret-file"])
        .arg(&secret_file)
        .args(["--ttl", "600", "--encoded", key, visibility])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "link_signer.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let url = String::from_utf8(o.stdout).unwrap().trim_end().to_string();
    url.strip_prefix(&fleet.origin())
        .unwrap_or_else(|| panic!("{url} is not on {}", fleet.origin()))
        .to_string()
}

/// GET 200 byte-equal with the type, `Range` 206, `HEAD` 200 with the
/// length, through nginx with the signed link.
fn assert_downloads(fleet: &Fleet, key: &str, visibility: &str, ct: &str, bytes: &[u8]) {
    let addr = fleet.ngx.addr(0);
    let target = signed_target(fleet, key, visibility);
    let (status, h, body) = common::close_request(addr, "GET", &target, &[]);
    assert_eq!(status, 200, "GET {target}\n{}", fleet.logs());
    assert!(
        body == bytes,
        "GET {target}: {} bytes, not the upload's {}",
        body.len(),
        bytes.len()
    );
    assert_eq!(header(&h, "content-type"), Some(ct), "GET {target}");
    let (status, h, body) = common::close_request(addr, "GET", &target, &[("Range", "bytes=100-1123")]);
    assert_eq!(status, 206, "Range {target}\n{}", fleet.logs());
    assert_eq!(body, bytes[100..1124].to_vec(), "Range {target}");
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes 100-1123/{}", bytes.len()).as_str())
    );
    let (status, h, body) = common::close_request(addr, "HEAD", &target, &[]);
    assert_eq!(status, 200, "HEAD {target}\n{}", fleet.logs());
    assert!(body.is_empty(), "HEAD {target} has a body");
    assert_eq!(
        header(&h, "content-length"),
        Some(bytes.len().to_string().as_str()),
        "HEAD {target}"
    );
}

/// What was uploaded: key, visibility, type, bytes, tus upload ID.
struct Landed {
    key: String,
    visibility: &'static str,
    ct: &'static str,
    bytes: Vec<u8>,
    id: String,
}

#[test]
fn fleet_on_s3_uploads_resume_on_the_other_tusd_and_download_through_the_shipped_nginx() {
    let started = Instant::now();
    let fleet = Fleet::start();
    eprintln!("s3_fleet: stack up in {:?}", started.elapsed());
    let files = fleet.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut landed: Vec<Landed> = Vec::new();

    // 1. tuspy, public, a key with a space, `+` and Unicode; both tusd up.
    let key = "fleet/logo été+日本 1.png";
    let (path, bytes) = bytes_of(&files, "logo.png", b"\x89PNG\r\n\x1a\n", 300 * 1024 + 3);
    let r = fleet.tuspy(&path, key, "image/png", "public", &["--chunk-size", "131072"]);
    assert_eq!(r["ok"], true, "{r}\n{}", fleet.logs());
    let id = id_of(r["url"].as_str().unwrap());
    assert!(
        r["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/files/", fleet.origin())),
        "{r}: the upload URL does not go through nginx"
    );
    fleet.holder(&id);
    fleet.assert_landed("public", key, "image/png", &bytes, Some(&id));
    landed.push(Landed {
        key: key.into(),
        visibility: "public",
        ct: "image/png",
        bytes,
        id,
    });

    // 2. tus-js-client in Chromium: granite's parameters from the app, the
    // upload through nginx (cross-origin), several chunks.
    let (path, bytes) = bytes_of(&files, "chromium.pdf", b"%PDF-1.7\n", 700 * 1024 + 5);
    let page = format!("http://{}/page/", fleet.ngx.addr(1));
    let run = run_browser(
        &page,
        "s3-fleet",
        json!([{"kind": "upload", "label": "S3 fleet", "name": "chromium.pdf",
                "type": "application/pdf", "file": path, "chunkSize": 256 * 1024,
                "parallelUploads": 1, "download": false}]),
        Duration::from_secs(90),
        &|| fleet.logs(),
    );
    let r = &run["results"][0];
    assert_eq!(r["upload"]["ok"], true, "{run:#}\n{}", fleet.logs());
    assert_eq!(run["pageErrors"], json!([]), "{run:#}");
    assert_eq!(r["key"], "browser/chromium.pdf", "{run:#}");
    assert_eq!(r["sentSha256"], sha256_hex(&bytes), "the page built another File");
    let url = r["upload"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/files/", fleet.origin())),
        "{url}: not through nginx"
    );
    let id = id_of(url);
    let (_, chunks) = fleet.holder(&id);
    assert_eq!(chunks, 3, "700 KiB in 256 KiB chunks: {run:#}");
    fleet.assert_landed(
        "private",
        "browser/chromium.pdf",
        "application/pdf",
        &bytes,
        Some(&id),
    );
    landed.push(Landed {
        key: "browser/chromium.pdf".into(),
        visibility: "private",
        ct: "application/pdf",
        bytes,
        id,
    });

    // 3. tus-js-client interrupted after its first chunk (granite's headers
    // as its `headers`, the guide's way); the tusd that holds the upload is
    // SIGKILLed while the page waits; the page resumes (HEAD, then PATCH)
    // through nginx on the other tusd; then the killed tusd is started again.
    let (path, bytes) = bytes_of(&files, "resumed.pdf", b"%PDF-1.7\n", 900 * 1024 + 7);
    let known: Vec<String> = fleet.tusds.iter().flat_map(created).collect();
    let control = fleet.ngx.dir.join("control");
    std::fs::create_dir_all(&control).unwrap();
    let steps = json!([{"kind": "resume", "label": "S3 fleet, tusd killed", "name": "resumed.pdf",
                        "type": "application/pdf", "file": path, "chunkSize": 256 * 1024,
                        "download": false, "pauseUntil": "/control/go"}]);
    let (run, id, holder) = std::thread::scope(|s| {
        let browser = s.spawn(|| {
            run_browser(&page, "s3-fleet-resume", steps, Duration::from_secs(90), &|| {
                fleet.logs()
            })
        });
        // The first chunk acknowledged, on one tusd: the page has stopped.
        let (id, holder) = poll(WAIT, || {
            let id = fleet
                .tusds
                .iter()
                .flat_map(created)
                .find(|id| !known.contains(id))?;
            let counts: Vec<usize> = fleet.tusds.iter().map(|t| chunks_written(t, &id)).collect();
            (counts.iter().sum::<usize>() == 1).then(|| (id, counts.iter().position(|&n| n == 1).unwrap()))
        })
        .unwrap_or_else(|| panic!("no interrupted browser upload\n{}", fleet.logs()));
        let pid = fleet.tusds[holder].pid().expect("the holder runs");
        let st = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -KILL {pid}");
        std::fs::write(control.join("go"), "go").unwrap();
        (browser.join().unwrap(), id, holder)
    });
    let r = &run["results"][0];
    assert_eq!(r["upload"]["ok"], true, "{run:#}\n{}", fleet.logs());
    assert_eq!(r["first"]["stopped"], true, "{run:#}");
    assert_eq!(id_of(r["upload"]["url"].as_str().unwrap()), id, "{run:#}");
    let requests: Vec<&str> = r["upload"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        requests.iter().filter(|q| q.starts_with("POST ")).count(),
        1,
        "one creation, then a resume: {requests:?}"
    );
    assert!(
        requests.iter().any(|q| q.starts_with("HEAD ")),
        "the resume asked for the offset: {requests:?}"
    );
    let other = 1 - holder;
    assert_eq!(chunks_written(&fleet.tusds[holder], &id), 1, "{}", fleet.logs());
    assert_eq!(
        chunks_written(&fleet.tusds[other], &id),
        3,
        "the other tusd took the rest (900 KiB in 256 KiB chunks: 1 before, 3 after)\n{}",
        fleet.logs()
    );
    let key = "browser/resumed.pdf";
    fleet.assert_landed("private", key, "application/pdf", &bytes, Some(&id));
    landed.push(Landed {
        key: key.into(),
        visibility: "private",
        ct: "application/pdf",
        bytes,
        id,
    });
    // Both tusd again, and nginx sending to the restarted one (it marked it
    // failed for the shipped fail_timeout): creation requests (refused,
    // no token) go round robin until one reaches it.
    let mut fleet = fleet;
    let seen = |t: &Tusd| t.log().matches("event=RequestIncoming method=POST").count();
    let before = seen(&fleet.tusds[holder]);
    fleet.tusds[holder].restart();
    let back = poll(WAIT, || {
        let post = "POST /files/ HTTP/1.1\r\nHost: assets.example.com\r\nTus-Resumable: 1.0.0\r\n\
                    Upload-Length: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = common::raw_request(fleet.ngx.addr(0), post.as_bytes());
        (seen(&fleet.tusds[holder]) > before).then_some(())
    });
    assert!(
        back.is_some(),
        "nginx never sent to the restarted tusd\n{}",
        fleet.logs()
    );

    // 4. tuspy stopped after two chunks; the tusd that holds the upload is
    // SIGKILLed; tuspy resumes the same URL through nginx on the other one.
    let key = "fleet/resumed report 2026+1.pdf";
    const MIB: usize = 1024 * 1024;
    let (path, bytes) = bytes_of(&files, "resumed-tuspy.pdf", b"%PDF-1.7\n", 8 * MIB + 11);
    let chunk = (3 * MIB).to_string();
    let stop = (6 * MIB).to_string();
    let first = fleet.tuspy(
        &path,
        key,
        "application/pdf",
        "private",
        &["--chunk-size", &chunk, "--stop-at", &stop],
    );
    assert_eq!(
        (&first["ok"], &first["offset"]),
        (&json!(true), &json!(6 * MIB)),
        "{first}\n{}",
        fleet.logs()
    );
    let url = first["url"].as_str().unwrap().to_string();
    let id = id_of(&url);
    let (holder, chunks) = fleet.holder(&id);
    assert_eq!(chunks, 2, "two chunks acknowledged before the kill");
    let other = 1 - holder;
    // Mid-way, the upload's state is in the bucket: its .info, its open
    // multipart upload.
    let object_id = id.split_once('+').expect("an s3store ID").0;
    let mid = fleet
        .s3
        .must(&["list", &fleet.s3.bucket, &format!("tus/{object_id}")]);
    assert!(
        mid["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["key"] == format!("tus/{object_id}.info")),
        "{mid}"
    );
    assert_eq!(mid["uploads"].as_array().unwrap().len(), 1, "{mid}");
    let finalized = "assetgate_events_total{result=\"enqueued\",type=\"upload.finalized\"}";
    let before = fleet.gates[other].metric(finalized);
    fleet.tusds[holder].kill();
    let resumed = fleet.tuspy(
        &path,
        key,
        "application/pdf",
        "private",
        &["--chunk-size", &chunk, "--url", &url],
    );
    assert_eq!(resumed["ok"], true, "{resumed}\n{}", fleet.logs());
    assert_eq!(resumed["url"], url.as_str(), "the same upload resumed");
    assert_eq!(resumed["offset"], bytes.len(), "{resumed}");
    assert!(
        chunks_written(&fleet.tusds[other], &id) >= 1,
        "the resume did not reach the other tusd ({other})\n{}",
        fleet.logs()
    );
    fleet.assert_landed("private", key, "application/pdf", &bytes, Some(&id));
    landed.push(Landed {
        key: key.into(),
        visibility: "private",
        ct: "application/pdf",
        bytes,
        id,
    });
    // Its post-finish came from the other tusd, to the other replica.
    let after = poll(WAIT, || {
        let now = fleet.gates[other].metric(finalized);
        (now > before).then_some(now)
    });
    assert_eq!(
        after,
        Some(before + 1.0),
        "the resumed upload's post-finish on replica {other}\n{}",
        fleet.logs()
    );

    // 5. A key with `%` is refused at creation (it cannot round-trip through
    // a URL); nothing is created.
    let (path, _) = bytes_of(&files, "pct.pdf", b"%PDF-1.7\n", 1000);
    let r = fleet.tuspy(&path, "fleet/100%.pdf", "application/pdf", "private", &[]);
    assert_eq!((&r["ok"], &r["status"]), (&json!(false), &json!(400)), "{r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "key_invalid", "{r}");

    // 6. Exactly one verified upload.finalized per upload, with the bytes'
    // sha256; nothing else (no upload.failed, no second delivery).
    let n = landed.len();
    let events = poll(WAIT, || {
        let delivered = fleet.total("assetgate_events_total{result=\"delivered\",type=\"upload.finalized\"}");
        let pending = fleet.total("assetgate_events_outbox{state=\"pending\"}");
        (delivered >= n as f64 && pending == 0.0).then(|| fleet.receiver.events())
    })
    .unwrap_or_else(|| {
        panic!(
            "{n} events not delivered: {:#?}\n{}",
            fleet.receiver.requests(),
            fleet.logs()
        )
    });
    assert_eq!(
        fleet.total(finalized),
        n as f64,
        "enqueued once each\n{}",
        fleet.logs()
    );
    assert!(
        fleet.receiver.requests().iter().all(|r| r["verified"] == true),
        "a delivery failed verification: {:#?}",
        fleet.receiver.requests()
    );
    assert_eq!(events.len(), n, "{events:#?}");
    for l in &landed {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["data"]["key"] == l.key.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}: {events:#?}", l.key);
        let e = mine[0];
        assert_eq!(e["type"], "upload.finalized", "{e}");
        assert_eq!(e["data"]["visibility"], l.visibility, "{e}");
        assert_eq!(e["data"]["content_type"], l.ct, "{e}");
        assert_eq!(e["data"]["size"], l.bytes.len(), "{e}");
        assert_eq!(e["data"]["sha256"], sha256_hex(&l.bytes), "{e}");
        assert_eq!(e["data"]["upload_id"], l.id.as_str(), "{e}");
        assert_eq!(e["data"]["path"], format!("{}/{}", l.visibility, l.key), "{e}");
    }

    // 7. tusd's objects are gone, no multipart upload is left open; the
    // bucket holds exactly the three assets (and nothing of the self-test).
    let left = fleet.s3.must(&["list", &fleet.s3.bucket, ""]);
    let mut keys: Vec<&str> = left["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    keys.sort();
    let mut want: Vec<String> = landed
        .iter()
        .map(|l| format!("{}/{}", l.visibility, l.key))
        .collect();
    want.sort();
    assert_eq!(keys, want, "{left:#}");
    assert_eq!(left["uploads"], json!([]), "{left:#}");

    // 8. Downloads through nginx with links minted from the events' key and
    // visibility (examples/link_signer.py).
    for e in &events {
        let (key, vis) = (
            e["data"]["key"].as_str().unwrap(),
            e["data"]["visibility"].as_str().unwrap(),
        );
        let l = landed.iter().find(|l| l.key == key).unwrap();
        assert_downloads(&fleet, key, vis, l.ct, &l.bytes);
    }
    eprintln!("s3_fleet: done in {:?}", started.elapsed());
}
