//! Downloads from an S3 bucket through the shipped nginx files (issue 21,
//! "Downloads"): a real SeaweedFS (loopback, telemetry off, started only by
//! `common::s3`), a real assetgate with `[storage] backend = "s3"` signing with
//! SeaweedFS's read-only identity, and a real nginx running
//! `nginx/assetgate-s3.conf.example` with `assetgate-s3-locations.conf` and
//! `assetgate-s3-proxy.conf` included verbatim (only the addresses rewritten).
//! The successful downloads also run on versitygw (its one identity signs).
//!
//! What is pinned down: granite links give 200 byte-equal, `Range` 206, `HEAD`
//! 200, conditional GET 304; forged 403, expired 410, revoked 403, a missing
//! object 404 (nginx's own page, no S3 XML); keys with spaces, `+`, `%` and
//! Unicode; served as signed: the type assetgate published in
//! `x-amz-meta-assetgate-type` (`x.html`, `x.shtml` signed
//! `application/octet-stream` are served `application/octet-stream` although
//! SeaweedFS stores them as `text/html`), nosniff, sandbox, `attachment` for active signed types, no
//! type on a 304, `application/octet-stream` for an object assetgate did not
//! publish; `/public/` signed without a link; no `x-amz-*` header and no
//! store body in any client response; the client's `Authorization`/`Cookie`
//! never reach the store (a recording stub in the store's place); the store
//! itself refuses an unsigned GET (403).
//!
//! Peers: nginx (apt), SeaweedFS (`scripts/s3-peers.sh`), the boto3 probe's
//! venv (`scripts/test.sh`); a missing one fails with how to install it.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::ngx::{link_types, nginx_main_conf, replace_once, Nginx};
use common::s3::{S3Engine, REGION};
use common::{bin, default_config, header, now, sign_link, Daemon, LINK_SECRET};

/// The shipped example's store address (rewritten to the engine's port).
const SHIPPED_STORE_ADDR: &str = "server 127.0.0.1:8333;";

/// Objects published in the bucket as assetgate publishes them (from an
/// upload object whose own type is the client's unsigned `text/html`): key,
/// the signed Content-Type.
const OBJECTS: &[(&str, &str)] = &[
    ("private/a.bin", "application/octet-stream"),
    ("private/with space.txt", "text/plain"),
    ("private/plus+sign.txt", "text/plain"),
    ("private/100%.txt", "text/plain"),
    ("private/été 日本.txt", "text/plain"),
    ("public/p.png", "image/png"),
    // Served as signed, whatever the key's extension says.
    ("private/x.html", "application/octet-stream"),
    // An extension assetgate-types.conf does not list: pre-create accepts it
    // signed application/octet-stream.
    ("private/x.shtml", "application/octet-stream"),
    ("private/x.svg", "text/plain; charset=utf-8"),
    // Active signed types: still served as signed, as attachments.
    ("private/page.html", "text/html"),
    ("private/icon.svg", "image/svg+xml"),
];

/// Signed types nginx serves as downloads (`Content-Disposition:
/// attachment`), as `$assetgate_disposition` does on the fs backend.
const ACTIVE: &[&str] = &["text/html", "image/svg+xml"];

/// An object put in the bucket by someone else than assetgate (no
/// `x-amz-meta-assetgate-type`), with an active Content-Type of its own:
/// served as `application/octet-stream`.
const FOREIGN: (&str, &str) = ("private/foreign.html", "text/html");

struct Stack {
    s3: S3Engine,
    gate: Daemon,
    ngx: Nginx,
    _dir: tempfile::TempDir,
}

/// The bytes of `key` (distinct per key, 70 KiB: more than one proxy buffer).
fn body_of(key: &str) -> Vec<u8> {
    (0..70 * 1024u32)
        .map(|i| {
            (i.wrapping_mul(31) ^ key.len() as u32 ^ u32::from(key.as_bytes()[i as usize % key.len()])) as u8
        })
        .collect()
}

fn stack() -> Stack {
    stack_on(S3Engine::seaweedfs("assets"))
}

fn stack_on(s3: S3Engine) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    publish_objects(&s3);
    let f = dir.path().join("obj");
    std::fs::write(&f, body_of(FOREIGN.0)).unwrap();
    s3.must(&["put", &s3.bucket, FOREIGN.0, f.to_str().unwrap(), FOREIGN.1]);
    let config = format!(
        "{}\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\n\
         bucket = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         read_access_key_id = \"{}\"\nread_secret_access_key = \"{}\"\n",
        default_config(),
        s3.endpoint(),
        s3.bucket,
        s3.access_key,
        s3.secret_key,
        s3.read_access_key,
        s3.read_secret_key,
    );
    let gate = Daemon::start(&config);
    let ngx = shipped_s3_site(dir.path(), gate.addr, s3.port);
    Stack {
        s3,
        gate,
        ngx,
        _dir: dir,
    }
}

/// [`OBJECTS`] published by `assetgate::s3::publish` with the self-test's
/// method, each from an upload object made as tusd's s3store makes it (its
/// own type the client's unsigned `filetype`, here `text/html`).
fn publish_objects(s3: &S3Engine) {
    use assetgate::s3::ops::{self, Attributes};
    use assetgate::s3::publish::{publish, Request};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assetgate.toml");
    common::write(
        &path,
        &format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            s3.endpoint(),
            s3.bucket
        ),
    );
    let env = [
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", s3.access_key.clone()),
        ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", s3.secret_key.clone()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let sources = assetgate::config::Sources { file: Some(path) };
    let config = assetgate::config::load_from(&sources, &env).unwrap();
    let config = config.storage.s3.unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = assetgate::s3::Store::start(&config, &assetgate::metrics::Metrics::new())
            .await
            .unwrap();
        let (c, bucket) = (&store.client, config.bucket.as_str());
        for (i, (key, signed)) in OBJECTS.iter().enumerate() {
            let id = format!("obj{i}+mp");
            let (upload_key, info_key) = (format!("tus/{id}"), format!("tus/{id}.info"));
            let body = body_of(key);
            c.put_object()
                .bucket(bucket)
                .key(&upload_key)
                .content_type("text/html")
                .metadata("filetype", "text/html")
                .body(body.clone().into())
                .send()
                .await
                .unwrap();
            ops::put(c, bucket, &info_key, b"{}").await.unwrap();
            let req = Request {
                bucket,
                upload_key: &upload_key,
                info_key: &info_key,
                destination: key,
                size: body.len() as u64,
                attrs: Attributes {
                    content_type: signed,
                    upload_id: &id,
                },
                content_check: None,
                check_info: false,
            };
            publish(c, store.method, req, &mut |_, _| true)
                .await
                .unwrap_or_else(|e| panic!("publishing {key}: {e}"));
        }
    });
}

/// The shipped S3 example with the shipped includes under `dir/assetgate/`
/// (verbatim but for the gate's and the store's addresses and `listen`).
fn shipped_s3_site(dir: &Path, gate: SocketAddr, store_port: u16) -> Nginx {
    let shipped = common::repo().join("nginx");
    link_types(dir);
    for f in [
        "assetgate-s3-locations.conf",
        "assetgate-s3-proxy.conf",
        "assetgate-uploads.conf",
    ] {
        std::os::unix::fs::symlink(shipped.join(f), dir.join("assetgate").join(f)).unwrap();
    }
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    common::write(
        &dir.join("assetgate/assetgate-upstream.conf"),
        &replace_once(
            &upstream,
            common::ngx::SHIPPED_GATE_ADDR,
            &format!("server {gate};"),
            "nginx/assetgate-upstream.conf",
        ),
    );
    let example = std::fs::read_to_string(shipped.join("assetgate-s3.conf.example")).unwrap();
    let example = replace_once(
        &example,
        SHIPPED_STORE_ADDR,
        &format!("server 127.0.0.1:{store_port};"),
        "nginx/assetgate-s3.conf.example",
    );
    Nginx::start(dir, 1, |ports| {
        let site = replace_once(
            &example,
            common::ngx::SHIPPED_LISTEN,
            &format!("listen 127.0.0.1:{};", ports[0]),
            "nginx/assetgate-s3.conf.example",
        );
        nginx_main_conf(dir, &site)
    })
}

/// `/<key>` as a client writes it (space, `%`, non-ASCII escaped; `+` raw).
fn path_of(key: &str) -> String {
    let mut out = String::from("/");
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'+' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A granite link to `key` expiring at `expires` (md5 over the decoded `$uri`).
fn link(key: &str, expires: i64) -> String {
    let md5 = sign_link(LINK_SECRET, &format!("/{key}"), &expires.to_string());
    format!("{}?md5={md5}&expires={expires}", path_of(key))
}

/// No header of the store reaches the client.
fn assert_no_store_headers(what: &str, headers: &[(String, String)]) {
    let leaked: Vec<_> = headers.iter().filter(|(k, _)| k.starts_with("x-amz-")).collect();
    assert!(
        leaked.is_empty(),
        "{what}: store headers reached the client: {leaked:?}"
    );
    if let Some(server) = header(headers, "server") {
        assert!(
            server.starts_with("nginx"),
            "{what}: the store's Server reached the client: {server}"
        );
    }
}

/// Every `Content-Type` line of a response.
fn types(headers: &[(String, String)]) -> Vec<&str> {
    headers
        .iter()
        .filter(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Served as signed: exactly one `Content-Type`, the signed one; nosniff and
/// sandbox; `attachment` exactly for the active types.
fn assert_served_as_signed(what: &str, h: &[(String, String)], signed: &str) {
    assert_eq!(types(h), vec![signed], "{what}: {h:?}");
    assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(header(h, "content-security-policy"), Some("sandbox"), "{what}");
    let attachment = ACTIVE.contains(&signed).then_some("attachment");
    assert_eq!(header(h, "content-disposition"), attachment, "{what}: {h:?}");
}

/// `$assetgate_s3_disposition` (S3) names the same active types as
/// `$assetgate_disposition` (fs): the two maps' rules are equal.
#[test]
fn the_s3_disposition_map_is_the_fs_one() {
    let conf = std::fs::read_to_string(common::repo().join("nginx/assetgate-upstream.conf")).unwrap();
    let rules = |source: &str| -> Vec<String> {
        let start = conf
            .find(&format!("map {source} "))
            .unwrap_or_else(|| panic!("no map on {source}"));
        let body = &conf[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect()
    };
    let fs = rules("$sent_http_content_type");
    assert!(fs.len() >= 4, "{fs:?}");
    assert_eq!(rules("$assetgate_s3_type"), fs);
}

#[test]
fn links_through_nginx_serve_the_objects_from_the_bucket() {
    serves_the_objects(stack());
}

/// The same on versitygw (signed with its one, main identity).
#[test]
fn links_through_nginx_serve_the_objects_from_versitygw() {
    serves_the_objects(stack_on(S3Engine::versitygw("assets")));
}

fn serves_the_objects(st: Stack) {
    let addr = st.ngx.addr(0);
    let exp = now() + 600;
    for (key, ct) in OBJECTS.iter().filter(|(k, _)| k.starts_with("private/")) {
        let want = body_of(key);
        let target = link(key, exp);
        let (status, h, body) = common::close_request(
            addr,
            "GET",
            &target,
            &[("Cookie", "session=s"), ("Authorization", "Bearer t")],
        );
        assert_eq!(
            status,
            200,
            "GET {key}: {}\n{}",
            String::from_utf8_lossy(&body),
            st.ngx.logs()
        );
        assert!(
            body == want,
            "GET {key}: {} bytes, not the object's {}",
            body.len(),
            want.len()
        );
        assert_served_as_signed(&format!("GET {key}"), &h, ct);
        assert_no_store_headers(&format!("GET {key}"), &h);

        let (status, h, body) = common::close_request(addr, "GET", &target, &[("Range", "bytes=10-19")]);
        assert_eq!(status, 206, "Range {key}");
        assert_eq!(body, want[10..20].to_vec(), "Range {key}");
        assert_served_as_signed(&format!("Range {key}"), &h, ct);
        assert_eq!(
            header(&h, "content-range"),
            Some(format!("bytes 10-19/{}", want.len()).as_str())
        );
        assert_no_store_headers(&format!("Range {key}"), &h);

        let (status, h, body) = common::close_request(addr, "HEAD", &target, &[]);
        assert_eq!(status, 200, "HEAD {key}: {}", st.ngx.logs());
        assert!(body.is_empty(), "HEAD {key} has a body");
        assert_served_as_signed(&format!("HEAD {key}"), &h, ct);
        assert_eq!(
            header(&h, "content-length"),
            Some(want.len().to_string().as_str())
        );
        assert_no_store_headers(&format!("HEAD {key}"), &h);

        let etag = header(&h, "etag").expect("an ETag").to_owned();
        let (status, h, _) = common::close_request(addr, "GET", &target, &[("If-None-Match", &etag)]);
        assert_eq!(status, 304, "If-None-Match {key}");
        assert_no_store_headers(&format!("If-None-Match {key}"), &h);
        // No type on a 304: a cache keeps the one the 200 was served with.
        assert_eq!(types(&h), Vec::<&str>::new(), "304 {key}");
    }
    // Not published by assetgate (no signed type): a download, whatever the
    // store says.
    let (status, h, body) = common::close_request(addr, "GET", &link(FOREIGN.0, exp), &[]);
    assert_eq!(status, 200, "{}", st.ngx.logs());
    assert!(body == body_of(FOREIGN.0));
    assert_served_as_signed("GET foreign object", &h, "application/octet-stream");
    assert_no_store_headers("GET foreign object", &h);
    // Public: signed by the gate without a link; the bucket is not anonymous.
    let (status, h, body) = common::close_request(addr, "GET", "/public/p.png", &[]);
    assert_eq!(status, 200, "{}", st.ngx.logs());
    assert!(body == body_of("public/p.png"));
    assert_served_as_signed("GET /public/p.png", &h, "image/png");
    assert_no_store_headers("GET /public/p.png", &h);
    assert!(
        st.gate
            .metric("assetgate_decisions_total{decision=\"allow\",endpoint=\"auth\",reason=\"public\"}")
            >= 1.0
    );
}

#[test]
fn denials_through_nginx_are_as_with_the_fs_backend() {
    let st = stack();
    let addr = st.ngx.addr(0);
    let exp = now() + 600;
    let expect = |what: &str, method: &str, target: &str, want: u16| {
        let (status, h, body) = common::close_request(addr, method, target, &[]);
        assert_eq!(status, want, "{what}: {target}\n{}", st.ngx.logs());
        assert_no_store_headers(what, &h);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("<Error>") && !text.contains("amz"),
            "{what}: store body reached the client: {text}"
        );
    };
    // Forged: the md5 of another key.
    let forged = format!(
        "{}?{}",
        path_of("private/a.bin"),
        link("private/other.bin", exp).split_once('?').unwrap().1
    );
    expect("forged", "GET", &forged, 403);
    expect("expired", "GET", &link("private/a.bin", now() - 10), 410);
    expect("no link", "GET", "/private/a.bin", 403);
    // A traversal out of /public/ is judged on the normalised path.
    expect("traversal", "GET", "/public/../private/a.bin", 403);
    expect("traversal, encoded", "GET", "/public/%2E%2E/private/a.bin", 403);
    // A missing object: the same 404 as on fs, not S3's NoSuchKey.
    expect("missing", "GET", &link("private/none.bin", exp), 404);
    expect("missing public", "GET", "/public/none.png", 404);
    // Only reads reach the store.
    expect("DELETE", "DELETE", &link("private/a.bin", exp), 403);
    let still = common::close_request(addr, "GET", &link("private/a.bin", exp), &[]);
    assert_eq!(still.0, 200, "the object survived the DELETE");
    // Revoked (`assetgate revoke link`, through the admin socket).
    let revoked = link("private/with space.txt", exp);
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(st.gate.dir.path().join("assetgate.toml"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ASSETGATE_SERVER__ADMIN_SOCKET", &st.gate.admin_socket);
    let o = cmd.args(["revoke", "link", &revoked]).output().unwrap();
    assert!(
        o.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    expect("revoked", "GET", &revoked, 403);
    let (_, h, _) = common::close_request(addr, "GET", &revoked, &[]);
    assert!(header(&h, "x-assetgate-reason").is_none());
}

/// The store refuses what nginx did not get signed: an unsigned GET straight
/// to its port, a public object included (no anonymous read).
#[test]
fn the_store_refuses_unsigned_requests() {
    let st = stack();
    let store: SocketAddr = ([127, 0, 0, 1], st.s3.port).into();
    for key in ["private/a.bin", "public/p.png"] {
        let target = format!("/{}/{}", st.s3.bucket, key);
        let (status, _, body) = common::close_request(store, "GET", &target, &[]);
        assert_eq!(
            status,
            403,
            "unsigned GET {target}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// A stub in the store's place on a free loopback port: each request's head
/// (up to the blank line) goes to `answer`, whose bytes are sent back as the
/// whole response.
fn stub_store(mut answer: impl FnMut(&str) -> Vec<u8> + Send + 'static) -> u16 {
    let stub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stub.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in stub.incoming() {
            let Ok(mut c) = conn else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = c.write_all(&answer(&String::from_utf8_lossy(&head)));
        }
    });
    port
}

/// The shipped S3 site with the stub on `store_port` as nginx's store. The
/// daemon itself runs against a real SeaweedFS: with `backend = "s3"` it runs
/// the capability self-test at start (by effect), which a stub cannot pass.
fn site_before_a_stub(store_port: u16) -> (tempfile::TempDir, S3Engine, Daemon, Nginx) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Engine::seaweedfs("assets");
    let config = format!(
        "{}\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\n\
         bucket = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        default_config(),
        s3.endpoint(),
        s3.bucket,
        s3.access_key,
        s3.secret_key,
    );
    let gate = Daemon::start(&config);
    let ngx = shipped_s3_site(dir.path(), gate.addr, store_port);
    (dir, s3, gate, ngx)
}

/// What reaches the store, recorded by a stub in its place: the signed
/// headers, the client's Range, nothing else of the client's (no Cookie, no
/// Authorization of its own, no X-Forwarded-*), the method as signed, the
/// path as signed. The daemon itself is configured with a real SeaweedFS:
/// with `backend = "s3"` it runs the capability self-test at start (by
/// effect), which a recording stub cannot pass; nginx's store upstream is the
/// stub, so the stub sees exactly what nginx relays (the `Host` signed for
/// the configured endpoint).
#[test]
fn the_store_gets_the_signed_request_and_nothing_else_of_the_client() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let rec = seen.clone();
    let port = stub_store(move |head| {
        rec.lock().unwrap().push(head.to_owned());
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nx-amz-request-id: R\r\nConnection: close\r\n\r\nok".to_vec()
    });
    let (_dir, s3, _gate, ngx) = site_before_a_stub(port);
    let target = link("private/a b.txt", now() + 600);
    let client = [
        ("Cookie", "session=secret-cookie"),
        ("Authorization", "Bearer client-token"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("Range", "bytes=0-0"),
    ];
    let (status, h, _) = common::close_request(ngx.addr(0), "GET", &target, &client);
    assert_eq!(status, 200, "{}", ngx.logs());
    assert_no_store_headers("GET via stub", &h);
    let (status, _, _) = common::close_request(ngx.addr(0), "HEAD", &target, &client);
    assert_eq!(status, 200, "{}", ngx.logs());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (req, method) in seen.iter().zip(["GET", "HEAD"]) {
        let lower = req.to_ascii_lowercase();
        assert!(
            req.starts_with(&format!("{method} /assets/private/a%20b.txt HTTP/1.1\r\n")),
            "{req}"
        );
        assert!(
            lower.contains(&format!("\r\nhost: 127.0.0.1:{}\r\n", s3.port)),
            "{req}"
        );
        assert!(
            lower.contains(&format!(
                "\r\nauthorization: aws4-hmac-sha256 credential={}/",
                s3.access_key.to_ascii_lowercase()
            )),
            "{req}"
        );
        assert!(lower.contains("\r\nx-amz-date: "), "{req}");
        assert!(
            lower.contains("\r\nx-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\r\n"),
            "{req}"
        );
        assert!(lower.contains("\r\nrange: bytes=0-0\r\n"), "{req}");
        for leaked in [
            "secret-cookie",
            "client-token",
            "6.6.6.6",
            "cookie:",
            "x-forwarded",
        ] {
            assert!(!lower.contains(leaked), "{leaked} reached the store: {req}");
        }
    }
}

/// The store's answers other than an object (200/206) or `304` never reach
/// the client as the store sent them: no S3 error document, no `Location`
/// (AWS's 301 PermanentRedirect names the bucket's regional host), no
/// `x-amz-*` (e.g. `x-amz-bucket-region`). A missing object is 404, a failed
/// precondition 412, a range past the end 416, a refused signature 403 (as a
/// denied link); anything else is 502 (a 408: nginx closes the connection
/// without an answer). A stub in the store's place answers
/// the status its key names (`private/sNNN.txt`), with an XML body, a
/// `Location` and `x-amz-bucket-region`. (The adversarial review found 301,
/// 307, 408, 413, 414, 429 and 431 passed through with the XML and the
/// `Location`.)
#[test]
fn the_store_s_errors_and_redirects_never_reach_the_client() {
    let port = stub_store(|head| {
        let status: u16 = head
            .split_once("/private/s")
            .and_then(|(_, rest)| rest.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let body =
            "<?xml version=\"1.0\"?><Error><Code>StoreSays</Code><BucketName>assets</BucketName></Error>";
        format!(
            "HTTP/1.1 {status} Store\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Location: https://assets.s3.eu-west-3.amazonaws.com/private/x\r\n\
                 x-amz-bucket-region: eu-west-3\r\nx-amz-delete-marker: true\r\nx-amz-request-id: R\r\n\
                 Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let (_dir, _s3, _gate, ngx) = site_before_a_stub(port);
    let mut wrong = Vec::new();
    for store in [
        301u16, 302, 303, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410, 411, 412, 413, 414, 415, 416,
        429, 431, 500, 501, 502, 503, 504,
    ] {
        let want = match store {
            404 | 412 | 416 | 403 => store,
            _ => 502,
        };
        let target = link(&format!("private/s{store}.txt"), now() + 600);
        let raw = common::raw_request_bytes(
            ngx.addr(0),
            format!("GET {target} HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        if raw.is_empty() {
            // nginx ends a request whose answer is 408 by closing the
            // connection (its own request-timeout handling, here for the
            // store's 408 it intercepts): nothing of the store's reaches the
            // client either.
            if store != 408 {
                wrong.push(format!(
                    "store {store}: nginx closed the connection without an answer"
                ));
            }
            continue;
        }
        let (status, h, body) = common::parse_response(&raw);
        let body = String::from_utf8_lossy(&body);
        let leaked: Vec<&(String, String)> = h
            .iter()
            .filter(|(k, _)| k.starts_with("x-amz-") || k == "location")
            .collect();
        if status != want || body.contains("StoreSays") || body.contains("<Error>") || !leaked.is_empty() {
            wrong.push(format!(
                "store {store}: client got {status} (want {want}), leaked {leaked:?}, body {body:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), ngx.logs());
}
