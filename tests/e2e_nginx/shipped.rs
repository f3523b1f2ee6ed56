//! The shipped nginx/ config in front of the gate.

use super::*;

/// The only change made to the shipped files: the upstream address.
pub(crate) const SHIPPED_UPSTREAM_ADDR: &str = "server 127.0.0.1:9750;";

/// A regex location of the kind operators add next to the shipped include
/// (long cache times for static files). The shipped asset locations must win
/// over it (`^~`), or it serves the tree with mime.types and no gate.
pub(crate) const REGEX_LOCATION: &str =
    "location ~* \\.(css|js|mjs|svg|html?|xml|png)$ { expires 30d; try_files $uri =404; }";

/// nginx with `nginx/assetgate-upstream.conf` (address rewritten) and
/// `nginx/assetgate-locations.conf` (verbatim) in front of `gate`, next to
/// [`REGEX_LOCATION`].
pub(crate) fn shipped_nginx(dir: &Path, gate: &Daemon) -> Nginx {
    let shipped = common::repo().join("nginx");
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    assert_eq!(
        upstream.matches(SHIPPED_UPSTREAM_ADDR).count(),
        1,
        "nginx/assetgate-upstream.conf must contain `{SHIPPED_UPSTREAM_ADDR}` exactly once"
    );
    let upstream = upstream.replacen(SHIPPED_UPSTREAM_ADDR, &format!("server {};", gate.addr), 1);
    common::write(&dir.join("assetgate/assetgate-upstream.conf"), &upstream);
    common::ngx::link_types(dir);
    let locations = shipped.join("assetgate-locations.conf");
    let d = dir.display();
    Nginx::start(dir, 1, |ports| {
        nginx_main_conf(
            dir,
            &format!(
                "include {d}/assetgate/assetgate-upstream.conf;\n\
                 server {{\n\
                 listen 127.0.0.1:{};\n\
                 root {d}/assets;\n\
                 include {};\n\
                 {REGEX_LOCATION}\n\
                 }}\n",
                ports[0],
                locations.display()
            ),
        )
    })
}

/// A signed link target: `uri_raw` is what goes on the wire, `uri` is the
/// `$uri` nginx derives from it.
pub(crate) fn link_target(secret: &str, uri: &str, uri_raw: &str, expires: i64) -> Vec<u8> {
    let md5 = common::sign_link(secret, uri, &expires.to_string());
    format!("{uri_raw}?md5={md5}&expires={expires}").into_bytes()
}

#[test]
pub(crate) fn shipped_config_serves_and_gates_downloads() {
    let gate = Daemon::start(&common::default_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let public = b"public bytes\n".to_vec();
    let private: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let photo = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    for (path, bytes) in [
        ("assets/public/hello.txt", &public),
        ("assets/private/report.bin", &private),
        ("assets/private/été 2026/photo.jpg", &photo),
    ] {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.join(path), bytes).unwrap();
    }
    let ngx = shipped_nginx(dir, &gate);
    let mut c = Client::new(ngx.addr(0));
    let now = common::now();
    let ctx = || format!("{}\ngate logs: {:#?}", ngx.logs(), gate.logs());

    let mut check =
        |what: &str, target: &[u8], headers: &[(&str, &str)], status: u16, body: Option<&[u8]>| {
            let r = c.get_with(target, headers);
            assert_eq!(
                r.status,
                status,
                "{what}: {} -> {}\n{}",
                show(target),
                r.status,
                ctx()
            );
            if let Some(b) = body {
                assert!(
                    r.body == b,
                    "{what}: {} served different bytes\n{}",
                    show(target),
                    ctx()
                );
            }
        };

    let valid = link_target(
        LINK_SECRET,
        "/private/report.bin",
        "/private/report.bin",
        now + 300,
    );
    check("valid link", &valid, &[], 200, Some(&private));
    check(
        "valid link, encoded UTF-8 path with a space",
        &link_target(
            LINK_SECRET,
            "/private/été 2026/photo.jpg",
            "/private/%C3%A9t%C3%A9%202026/photo.jpg",
            now + 300,
        ),
        &[],
        200,
        Some(&photo),
    );
    check(
        "link signed with the older (rotated) secret",
        &link_target(
            LINK_SECRET_OLD,
            "/private/report.bin",
            "/private/report.bin",
            now + 300,
        ),
        &[],
        200,
        Some(&private),
    );
    check(
        "expired link",
        &link_target(
            LINK_SECRET,
            "/private/report.bin",
            "/private/report.bin",
            now - 60,
        ),
        &[],
        410,
        None,
    );
    check(
        "forged link (unknown secret)",
        &link_target(
            "forged-secret-0123456789",
            "/private/report.bin",
            "/private/report.bin",
            now + 300,
        ),
        &[],
        403,
        None,
    );
    let other = String::from_utf8(valid.clone())
        .unwrap()
        .replace("report.bin", "%C3%A9t%C3%A9%202026/photo.jpg");
    check("link used for another file", other.as_bytes(), &[], 403, None);
    check("no token", b"/private/report.bin", &[], 403, None);
    check(
        "md5 but no expires",
        b"/private/report.bin?md5=AAAAAAAAAAAAAAAAAAAAAA",
        &[],
        403,
        None,
    );
    check(
        "public file, no token",
        b"/public/hello.txt",
        &[],
        200,
        Some(&public),
    );
    check(
        "public file, junk token",
        b"/public/hello.txt?md5=x&expires=1",
        &[],
        200,
        Some(&public),
    );
    check("the auth location is internal", b"/_assetgate", &[], 404, None);
    check("the hook endpoint is not exposed", b"/tusd", &[], 404, None);
    // A client with ~21 KB of headers (nginx accepts up to 4 x 8 KB): they must
    // not be forwarded to the gate, whose request buffer is 16 KB.
    let big = "b".repeat(7000);
    check(
        "valid link, large client headers",
        &valid,
        &[("Cookie", &big), ("X-Big-1", &big), ("X-Big-2", &big)],
        200,
        Some(&private),
    );
}

#[test]
pub(crate) fn shipped_config_reuses_gate_connections() {
    let gate = Daemon::start(&common::default_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::write(&dir.join("assets/private/a.txt"), "private a\n");
    let ngx = shipped_nginx(dir, &gate);
    let now = common::now();
    let valid = link_target(LINK_SECRET, "/private/a.txt", "/private/a.txt", now + 600);
    let forged = link_target(WRONG_SECRET, "/private/a.txt", "/private/a.txt", now + 600);

    const N: usize = 250;
    // Several client connections, so reuse on the gate side is not an artefact
    // of one client connection.
    let mut clients: Vec<Client> = (0..5).map(|_| Client::new(ngx.addr(0))).collect();
    for i in 0..N {
        let c = &mut clients[i % 5];
        let (target, want) = if i % 3 == 0 { (&forged, 403) } else { (&valid, 200) };
        let r = c.get(target);
        assert_eq!(r.status, want, "request {i}: {}\n{}", show(target), ngx.logs());
    }

    let metrics = gate_metrics(&gate);
    let auth = metric_sum(&metrics, "assetgate_http_requests_total", "endpoint=\"auth\"");
    let accepted = metric_sum(&metrics, "assetgate_connections_accepted_total", "");
    println!(
        "{N} private downloads through nginx: gate answered {auth} auth requests on {accepted} connections"
    );
    assert!(
        auth >= N as f64,
        "gate saw {auth} auth requests for {N} private downloads\n{metrics}"
    );
    // One connection per request would be >= 250; the upstream keeps <= 16 idle,
    // and the /metrics scrape is one more.
    assert!(
        accepted <= 20.0,
        "gate accepted {accepted} connections for {auth} auth requests: nginx is not reusing them\n{metrics}\n{}",
        ngx.logs()
    );
}

#[test]
pub(crate) fn example_config_passes_nginx_t() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The example includes `assetgate/*.conf` relative to the config directory,
    // as on a real install (/etc/nginx/assetgate/): point that at the repo's files.
    std::os::unix::fs::symlink(common::repo().join("nginx"), dir.join("assetgate")).unwrap();
    let example = common::repo().join("nginx/assetgate.conf.example");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_main_conf(dir, &format!("include {};", example.display())),
    )
    .unwrap();
    let out = Command::new(common::nginx())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .expect("run nginx -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("test is successful"),
        "nginx -t refused nginx/assetgate.conf.example:\n{stderr}"
    );
}

/// Served as signed, as nginx really does it: for every extension of the
/// shipped table (`nginx/assetgate-types.conf`), and for the edge cases of how
/// nginx finds an extension, the `Content-Type` the shipped locations send is
/// the type assetgate's pre-create rule expects for that key
/// (`policy::ServedTypes::served_type`), public and private. Every answer
/// carries `nosniff` and a CSP sandbox; active types come as attachments.
#[test]
pub(crate) fn shipped_locations_serve_the_table_assetgate_checks() {
    use assetgate::policy::served::{is_active, DEFAULT_TYPE};
    let gate = Daemon::start(&common::default_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let table = assetgate::policy::ServedTypes::builtin();
    let mut keys: Vec<String> = table
        .entries()
        .iter()
        .map(|(ext, _)| format!("f.{ext}"))
        .collect();
    keys.extend(
        [
            "UPPER.PNG",
            "Mixed.Html",
            ".png",
            "dir.png/noext",
            "x.",
            "x.tar.gz",
            "a.exe",
            "a.shtml",
            "a.svgz",
            "a.css",
            "noext",
            ".hidden.svg",
            "a.b.c.JS",
        ]
        .map(String::from),
    );
    for k in &keys {
        for vis in ["public", "private"] {
            common::write(&dir.join("assets").join(vis).join(k), "<script>1</script>\n");
        }
    }
    let ngx = shipped_nginx(dir, &gate);
    let mut c = Client::new(ngx.addr(0));
    let now = common::now();
    let mut active_seen = 0;
    for key in &keys {
        let want = table.served_type(key);
        let (m, s) = want.split_once('/').unwrap();
        for vis in ["public", "private"] {
            let uri = format!("/{vis}/{key}");
            let target = if vis == "public" {
                uri.clone().into_bytes()
            } else {
                link_target(LINK_SECRET, &uri, &uri, now + 300)
            };
            let r = c.get(&target);
            assert_eq!(r.status, 200, "{uri}\n{}", ngx.logs());
            assert_eq!(
                r.header("content-type"),
                Some(want),
                "{uri}: nginx and assetgate disagree on the served type"
            );
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{uri}");
            assert_eq!(r.header("content-security-policy"), Some("sandbox"), "{uri}");
            let attachment = is_active(m, s).then_some("attachment");
            assert_eq!(r.header("content-disposition"), attachment, "{uri} ({want})");
            active_seen += usize::from(attachment.is_some());
        }
        if ["a.exe", "noext", ".png", "x."].contains(&key.as_str()) {
            assert_eq!(want, DEFAULT_TYPE, "{key}");
        }
    }
    assert!(active_seen >= 8, "the table's active types were exercised");
    // REGEX_LOCATION (which matches .html, .svg, .png) never takes a request
    // from the asset locations: the gate is asked for /private/ (no link:
    // 403), and no answer has its `expires` header.
    for target in [&b"/private/f.html"[..], b"/private/f.svg", b"/private/f.png"] {
        let r = c.get(target);
        assert_eq!(r.status, 403, "{}: the regex location served it", show(target));
    }
    for target in [&b"/public/f.html"[..], b"/public/f.svg", b"/public/f.png"] {
        let r = c.get(target);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("cache-control"),
            None,
            "{}: served by the regex location",
            show(target)
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{}",
            show(target)
        );
    }
    // Error pages are sandboxed and not sniffed, but not attachments.
    let r = c.get(b"/public/missing.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    assert_eq!(r.header("content-disposition"), None);
}

/// The upstream the shipped `/files/` location proxies to, standing in for
/// tusd: records each request's method, target and headers (as received, in
/// order), answers 204 and closes.
struct HeaderRecorder {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

/// One request the upstream got: "METHOD target", and its headers (names
/// lowercased) in order.
type Recorded = (String, Vec<(String, String)>);

impl HeaderRecorder {
    fn start() -> HeaderRecorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let mut first = String::new();
                if r.read_line(&mut first).unwrap_or(0) == 0 {
                    continue;
                }
                let mut headers = Vec::new();
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some((k, v)) = line.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    line.clear();
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                // Recorded before the answer: once the client has its
                // answer, the request is in `seen`.
                let target = first.split(' ').take(2).collect::<Vec<_>>().join(" ");
                keep.lock().unwrap().push((target, headers));
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        HeaderRecorder { port, seen }
    }
}

/// Issue 22: the granite guide's snippet in a browser sends `Tus-Resumable:
/// 1.0.0, 1.0.0` (tus-js-client's own joined with granite's), which tusd
/// refuses with 412. The shipped `/files/` location (`assetgate-uploads.conf`
/// with the map of `assetgate-upstream.conf`, from the shipped example) hands
/// the upstream one `Tus-Resumable: 1.0.0` for that, on creation, PATCH and
/// HEAD alike, and changes nothing else: another value passes as it came, no
/// header stays no header, and every other header (granite's `Upload-Metadata`
/// and `Content-Length: 0` among them) reaches the upstream unchanged.
/// (`tests/e2e_browser.rs` runs the snippet itself in Chromium against tusd.)
#[test]
pub(crate) fn shipped_uploads_location_hands_tusd_one_tus_resumable() {
    // session_binding = "off": every request reaches the upstream.
    let gate = Daemon::start(&format!(
        "{}session_binding = \"off\"\n",
        common::default_config()
    ));
    let upstream = HeaderRecorder::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let site = common::ngx::shipped_site(dir, gate.addr, upstream.port, &dir.join("assets"));
    let ngx = Nginx::start(dir, 1, |ports| {
        let site_path = dir.join("site.conf");
        std::fs::write(&site_path, common::ngx::listen_on(&site, ports[0])).unwrap();
        nginx_main_conf(dir, &format!("include {};", site_path.display()))
    });
    let md = "asset-key YS9iLnBkZg==, upload-token ZGVhZGJlZWY=";
    // (method, target, the request's Tus-Resumable lines, what the upstream must get)
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("POST", "/files/", &["1.0.0, 1.0.0"], &["1.0.0"]),
        ("PATCH", "/files/abc123", &["1.0.0, 1.0.0"], &["1.0.0"]),
        ("HEAD", "/files/abc123", &["1.0.0, 1.0.0"], &["1.0.0"]),
        ("POST", "/files/", &["1.0.0,1.0.0"], &["1.0.0"]),
        ("POST", "/files/", &["1.0.0 , 1.0.0, 1.0.0"], &["1.0.0"]),
        ("POST", "/files/", &["1.0.0"], &["1.0.0"]),
        // Two header lines: one to tusd.
        ("POST", "/files/", &["1.0.0", "1.0.0"], &["1.0.0"]),
        // Not a repeated 1.0.0: as it came (tusd answers 412 as before).
        ("POST", "/files/", &["1.0.0, 0.2.2"], &["1.0.0, 0.2.2"]),
        ("POST", "/files/", &["0.2.2"], &["0.2.2"]),
        ("POST", "/files/", &["1.0.0, 1.0.0,"], &["1.0.0, 1.0.0,"]),
        // None stays none (preflights, GET).
        ("OPTIONS", "/files/", &[], &[]),
        ("POST", "/files/", &[], &[]),
    ];
    for (i, (method, target, sent, want)) in cases.iter().enumerate() {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: uploads.test\r\nConnection: close\r\n\
             Upload-Metadata: {md}\r\nUpload-Length: 42\r\nX-Case: {i}\r\nContent-Length: 0\r\n"
        );
        for v in *sent {
            req.push_str(&format!("Tus-Resumable: {v}\r\n"));
        }
        req.push_str("\r\n");
        let (status, _, _) = common::raw_request(ngx.addr(0), req.as_bytes());
        assert_eq!(status, 204, "{method} {target} {sent:?}: {}", ngx.logs());
        let seen = upstream.seen.lock().unwrap().last().cloned().unwrap();
        let get = |name: &str| -> Vec<&str> {
            seen.1
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(seen.0, format!("{method} {target}"));
        assert_eq!(get("x-case"), [i.to_string().as_str()]);
        assert_eq!(get("tus-resumable"), *want, "{method} {target} with {sent:?}");
        assert_eq!(get("upload-metadata"), [md], "{method} {target} with {sent:?}");
        assert_eq!(get("upload-length"), ["42"]);
        assert_eq!(get("content-length"), ["0"]);
    }
    assert_eq!(upstream.seen.lock().unwrap().len(), cases.len());
}
