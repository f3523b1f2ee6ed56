//! The seeds' browser upload flow, end to end, in a real browser: headless
//! Debian Chromium driven by playwright-core (`tests/browser/run.mjs`) through a
//! page (`tests/browser/page/`) that uses tus-js-client, against real peers:
//!
//! - **nginx** with the shipped files, as in `tests/e2e_stack.rs`:
//!   `nginx/assetgate.conf.example` (the upload and asset origin, "B": `/files/`
//!   to tusd, `/private/`, `/public/`) with only the upstream addresses, `listen`
//!   and `root` rewritten, each exactly once; the locations file included
//!   verbatim. A second, test-only server block is the application's origin
//!   ("A"): the page, tus-js-client's `dist/tus.min.js` from
//!   `tests/browser/node_modules` (no CDN), `/api/` proxied to the test app,
//!   and the shipped locations file again, so the page can `fetch()` its
//!   download links same-origin (the shipped `/private/` sends no CORS headers,
//!   so a script on another origin could not read the bytes).
//! - **tusd v2.9.1** (the flags of `tusd/tusd.sh`) behind nginx's `/files/`,
//!   hooks to assetgate's `/tusd`.
//! - **assetgate** on `deploy/assetgate.toml` (ports, paths and secrets from the
//!   environment).
//! - **the application** (`tests/peers/granite_app.py`, real granite-assets):
//!   the seeds' `/api/upload-url` (granite's `url`, `headers`, `key`) and a
//!   download-link endpoint (granite's signed secure_link).
//!
//! The page is on origin A and uploads to origin B, so every tus request is
//! cross-origin: the browser sends CORS preflights (OPTIONS) to `/files/`,
//! which nginx passes to tusd and tusd answers.
//!
//! Checked, as the page sees it: an upload in several chunks lands byte for
//! byte and downloads through nginx with the granite link (sha256 in the page
//! against the test's own); a forged token reaches tus-js-client's `onError`
//! with 403 and the gate's JSON body (`error.code` = `token_invalid`); a
//! `parallelUploads: 3` upload (granite's fields in `metadata` and
//! `metadataForPartialUploads`) lands once, byte for byte; the granite guide's
//! client snippet, as written (`tests/browser/page/guide_snippet.js`: granite's
//! `headers` as tus-js-client's `headers`, `removeFingerprintOnSuccess: true`),
//! lands and downloads back byte for byte through the shipped files, which
//! turn the browser's `Tus-Resumable: 1.0.0, 1.0.0` back into `1.0.0` for
//! tusd (see step 4). On the server side: the asset tree holds exactly the
//! three uploads, nginx logged the preflights, and a screenshot of the page is
//! written to `target/e2e-browser/seeds-flow/`.
//!
//! Peers are never skipped: a missing one fails the test with the command that
//! installs it (`scripts/test.sh` installs them all).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{browser_dir, chromium, node, require_node_modules, start_app, Proc};
use common::ngx::{listen_on, nginx_main_conf, shipped_site, Nginx};
use common::*;

/// What the test rewrites in the shipped files; each must occur exactly once.
const CHUNK: usize = 64 * 1024;

/// The granite-assets guide's client snippet for tusd ("Client-Side Upload
/// (JavaScript)", method = "POST"), from `new Upload(` to `upload.start();`,
/// as the guide prints it (its PDF text, one line per line, no indentation):
/// `tests/browser/page/guide_snippet.js` must contain it line for line (its
/// first statement cannot be the guide's: see that file).
const GUIDE_SNIPPET: &str = "\
const upload = new Upload(file, {
endpoint: url,
headers: headers, // includes Tus-Resumable + Upload-Metadata
removeFingerprintOnSuccess: true,
onSuccess: () => fetch('/api/confirm', { method: 'POST',
body: JSON.stringify({ key }) }),
onError: (err) => console.error('Upload failed:', err),
});
upload.start();";

fn tusd_bin() -> PathBuf {
    let bin = require_peer(
        "tusd-v2.9.1",
        &[peers_dir().join("bin/tusd-v2.9.1")],
        "GOBIN=$PWD/.peers/bin go install -ldflags \
         '-X github.com/tus/tusd/v2/cmd/tusd/cli.VersionName=v2.9.1' \
         github.com/tus/tusd/v2/cmd/tusd@v2.9.1 && mv .peers/bin/tusd .peers/bin/tusd-v2.9.1",
    );
    let out = Command::new(&bin).arg("-version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("v2.9.1"),
        "{} is not tusd v2.9.1: {text}",
        bin.display()
    );
    bin
}

// --- processes ----------------------------------------------------------------

/// tusd v2.9.1 with the flags of `tusd/tusd.sh`, on a free port.
fn start_tusd(dir: &Path, uploads: &Path, hook_url: &str) -> (Proc, u16) {
    let bin = tusd_bin();
    let log = dir.join("tusd.log");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .args(["-base-path", "/files/", "-behind-proxy", "-max-size", "0"])
            .arg("-upload-dir")
            .arg(uploads)
            .args(["-hooks-http", hook_url])
            .args(["-hooks-enabled-events", "pre-create,pre-finish,post-finish"])
            .args(["-hooks-http-retry", "3", "-hooks-http-backoff", "1s"])
            .args(["-disable-download", "-show-greeting=false"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("spawn tusd");
        let mut p = Proc {
            child,
            log: log.clone(),
        };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if p.child.try_wait().unwrap().is_some() {
                break;
            }
            if wait_port(addr, Duration::from_millis(100)) {
                return (p, port);
            }
        }
        last = p.log_text();
    }
    panic!("tusd did not start:\n{last}");
}

// --- the stack ------------------------------------------------------------------

struct Stack {
    gate: Daemon,
    tusd: Proc,
    nginx: Nginx,
    app: Proc,
    assets: PathBuf,
    upload_secret: String,
    link_secret: String,
    dir: tempfile::TempDir,
}

impl Stack {
    /// The stack, the gate on the shipped config with `gate_env` on top.
    fn start(gate_env: &[(&str, &str)]) -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let shipped = ShippedGate::start(dir, gate_env);
        let (gate, assets) = (shipped.daemon, shipped.assets);

        let (tusd, tusd_port) = start_tusd(dir, &shipped.uploads, &format!("{}/tusd", gate.url()));

        // nginx: the shipped example (origin B) plus the application's server
        // block (origin A).
        let ngx_dir = dir.join("nginx");
        let example = shipped_site(&ngx_dir, gate.addr, tusd_port, &assets);
        let site = ngx_dir.join("conf.d/assetgate.conf");
        let app_conf = ngx_dir.join("conf.d/app.conf");
        let app_port = free_port();
        let page_dir = browser_dir().join("page");
        let tus_js = browser_dir().join("node_modules/tus-js-client/dist/tus.min.js");
        let nginx = Nginx::start(&ngx_dir, 2, |ports| {
            // ports[0]: origin B, the shipped server block (its requests go to
            // the http-level access.log); ports[1]: origin A, the application.
            write(&site, &listen_on(&example, ports[0]));
            write(
                &app_conf,
                &format!(
                    "# Test only: the application's origin. The page, tus-js-client,\n\
                     # the app's /api/, and the shipped locations (same-origin downloads).\n\
                     server {{\n\
                     listen 127.0.0.1:{a};\n\
                     server_name app;\n\
                     access_log {d}/app-access.log;\n\
                     types {{ text/html html; text/javascript js; }}\n\
                     root {assets};\n\
                     include assetgate/assetgate-locations.conf;\n\
                     location /page/ {{ alias {page}/; }}\n\
                     location /control/ {{ alias {d}/control/; }}\n\
                     location = /vendor/tus.min.js {{ alias {tus}; }}\n\
                     location /api/ {{ proxy_pass http://127.0.0.1:{app_port}; }}\n\
                     location / {{ return 404; }}\n\
                     }}\n",
                    a = ports[1],
                    d = ngx_dir.display(),
                    assets = assets.display(),
                    page = page_dir.display(),
                    tus = tus_js.display(),
                ),
            );
            // Debian's `http {}` defaults (/etc/nginx/nginx.conf), as a real
            // install has them around the shipped files: mime.types maps
            // `.html` to text/html, `.svg` to image/svg+xml.
            nginx_main_conf(
                &ngx_dir,
                &format!(
                    "include /etc/nginx/mime.types;\ndefault_type application/octet-stream;\n\
                     {TUS_LOG}\ninclude {};\ninclude {};",
                    site.display(),
                    app_conf.display()
                ),
            )
        });

        let app = start_app(
            dir,
            app_port,
            &[
                "--storage".into(),
                assets.display().to_string(),
                "--base-url".into(),
                format!("http://{}", nginx.addr(1)),
                "--tusd-url".into(),
                format!("http://{}", nginx.addr(0)),
                "--upload-secret".into(),
                shipped.upload_secret.clone(),
                "--link-secret".into(),
                shipped.link_secret.clone(),
            ],
        );

        Stack {
            gate,
            tusd,
            nginx,
            app,
            assets,
            upload_secret: shipped.upload_secret,
            link_secret: shipped.link_secret,
            dir: tmp,
        }
    }

    /// Origin B: the shipped server block (`/files/`, `/private/`).
    fn upload_origin(&self) -> String {
        format!("http://{}", self.nginx.addr(0))
    }

    /// Origin A: the page and the application.
    fn page_origin(&self) -> String {
        format!("http://{}", self.nginx.addr(1))
    }

    /// Requests nginx logged for the shipped server block (origin B).
    fn upload_access_log(&self) -> String {
        std::fs::read_to_string(self.nginx.dir.join("access.log")).unwrap_or_default()
    }

    /// The same requests with the tus headers the browser sent ([`TUS_LOG`]).
    fn tus_log(&self) -> String {
        std::fs::read_to_string(self.nginx.dir.join("tus.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "{}\n--- nginx access.log (origin B) ---\n{}\n--- tusd ---\n{}\n--- app ---\n{}\n--- assetgate ---\n{}",
            self.nginx.logs(),
            self.upload_access_log(),
            self.tusd.log_text(),
            self.app.log_text(),
            self.gate.logs().join("\n")
        )
    }
}

/// A second access log of the shipped server block (test only, in the http
/// context): method, path, status and the `Tus-Resumable` and
/// `Upload-Metadata` headers as the browser sent them (before nginx).
const TUS_LOG: &str = "log_format tus '$request_method $uri $status \
                       tr=\"$http_tus_resumable\" md=\"$http_upload_metadata\"';\n\
                       access_log tus.log tus;";

/// Runs `node tests/browser/run.mjs PLAN` for test `name` on the stack's
/// page ([`common::browser::run_browser`]).
fn run_browser(stack: &Stack, name: &str, steps: serde_json::Value, limit: Duration) -> serde_json::Value {
    let page = format!("{}/page/", stack.page_origin());
    common::browser::run_browser(&page, name, steps, limit, &|| stack.logs())
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

fn count(requests: &serde_json::Value, method: &str) -> usize {
    requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.as_str().unwrap().starts_with(&format!("{method} ")))
        .count()
}

#[test]
fn seeds_browser_flow_through_nginx_tusd_and_assetgate() {
    // Every peer first: a missing one fails here, with its install command.
    node();
    chromium();
    require_node_modules();
    tusd_bin();
    peer_python();
    nginx();

    let stack = Stack::start(&[]);
    let files = stack.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let (single_path, single) = random_file(&files, "seed-flow.pdf", 300 * 1024 + 5);
    let (forged_path, _) = random_file(&files, "forged.pdf", 3000);
    let (parallel_path, parallel) = random_file(&files, "parallel.pdf", 400 * 1024 + 7);
    let (guide_path, guide) = random_file(&files, "guide-snippet.pdf", 200 * 1024 + 3);

    let run = run_browser(
        &stack,
        "seeds-flow",
        serde_json::json!([
            {"kind": "upload", "label": "upload", "name": "seed-flow.pdf",
             "type": "application/pdf", "file": single_path, "chunkSize": CHUNK,
             "parallelUploads": 1},
            {"kind": "forged", "label": "forged token", "name": "forged.pdf",
             "type": "application/pdf", "file": forged_path, "chunkSize": CHUNK,
             "parallelUploads": 1},
            {"kind": "upload", "label": "parallel", "name": "parallel.pdf",
             "type": "application/pdf", "file": parallel_path, "chunkSize": CHUNK,
             "parallelUploads": 3},
            {"kind": "guide", "label": "guide snippet as written", "name": "guide-snippet.pdf",
             "type": "application/pdf", "file": guide_path, "key": "browser/guide-snippet.pdf"},
        ]),
        Duration::from_secs(90),
    );
    let ctx = || {
        format!(
            "{}\n{}",
            serde_json::to_string_pretty(&run).unwrap(),
            stack.logs()
        )
    };
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{}", ctx());
    assert_eq!(run["pageErrors"], serde_json::json!([]), "{}", ctx());
    assert_eq!(run["origin"], stack.page_origin().as_str());

    // 1. One upload in several chunks, then the download, as the page saw them.
    let r = &results[0];
    assert!(r.get("error").is_none(), "{}", ctx());
    assert_eq!(r["upload"]["ok"], true, "upload: {}", ctx());
    assert_eq!(r["key"], "browser/seed-flow.pdf");
    assert_eq!(r["endpoint"], format!("{}/files/", stack.upload_origin()));
    assert_ne!(stack.upload_origin(), stack.page_origin());
    let url = r["upload"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/files/", stack.upload_origin())),
        "upload URL {url} does not go through nginx"
    );
    assert_eq!(count(&r["upload"]["requests"], "POST"), 1, "{}", ctx());
    assert_eq!(
        count(&r["upload"]["requests"], "PATCH"),
        single.len().div_ceil(CHUNK),
        "one PATCH per chunk: {}",
        ctx()
    );
    assert_eq!(
        r["sentSha256"],
        sha256_hex(&single),
        "the page built another File"
    );
    assert_downloaded(r, &single, &ctx);
    assert_eq!(r["download"]["length"], single.len());
    let link = r["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "{}/private/browser/seed-flow.pdf?md5=",
            stack.page_origin()
        )),
        "{link}"
    );
    assert_eq!(
        std::fs::read(stack.assets.join("private/browser/seed-flow.pdf")).unwrap(),
        single
    );

    // 2. A forged token: rejected in pre-create, the JSON body reaches onError.
    let r = &results[1];
    assert!(r.get("error").is_none(), "{}", ctx());
    assert_eq!(r["upload"]["ok"], false, "a forged token was accepted: {}", ctx());
    assert_eq!(r["upload"]["status"], 403, "{}", ctx());
    assert_eq!(r["code"], "token_invalid", "{}", ctx());
    let body: serde_json::Value = serde_json::from_str(r["upload"]["body"].as_str().unwrap()).unwrap();
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        r["upload"]["requests"],
        serde_json::json!(["POST /files/ 403"]),
        "one creation request, no retry: {}",
        ctx()
    );

    // 3. parallelUploads: 3, granite's fields on every part: lands once.
    let r = &results[2];
    assert!(r.get("error").is_none(), "{}", ctx());
    assert_eq!(r["upload"]["ok"], true, "parallel upload: {}", ctx());
    assert_eq!(
        count(&r["upload"]["requests"], "POST"),
        4,
        "3 partial uploads and the final one: {}",
        ctx()
    );
    assert_downloaded(r, &parallel, &ctx);
    assert_eq!(
        std::fs::read(stack.assets.join("private/browser/parallel.pdf")).unwrap(),
        parallel
    );

    // 4. The granite guide's snippet as written (`headers: headers`, granite's
    // headers handed to tus-js-client; tests/browser/page/guide_snippet.js):
    // tus-js-client sets `Tus-Resumable` itself and the browser joins
    // granite's copy to it, `1.0.0, 1.0.0`, which tusd refuses with 412 before
    // any hook; the shipped /files/ location hands tusd `1.0.0` instead. The
    // browser refuses granite's `Content-Length: 0` and sends its own.
    let snippet = std::fs::read_to_string(browser_dir().join("page/guide_snippet.js")).unwrap();
    let unindented: Vec<&str> = snippet.lines().map(str::trim_start).collect();
    assert!(
        unindented
            .windows(GUIDE_SNIPPET.lines().count())
            .any(|w| w.iter().copied().eq(GUIDE_SNIPPET.lines())),
        "tests/browser/page/guide_snippet.js no longer holds the guide's snippet:\n{GUIDE_SNIPPET}"
    );
    let r = &results[3];
    assert!(r.get("error").is_none(), "{}", ctx());
    assert_eq!(
        r["upload"]["ok"],
        true,
        "the guide's snippet as written: {}",
        ctx()
    );
    // granite's answer, as the snippet got and used it.
    let granite_headers = &r["granite"]["headers"];
    let metadata = granite_headers["Upload-Metadata"].as_str().unwrap();
    assert_eq!(
        (
            &granite_headers["Tus-Resumable"],
            &granite_headers["Content-Length"]
        ),
        (&serde_json::json!("1.0.0"), &serde_json::json!("0")),
        "granite's headers: {granite_headers}"
    );
    assert_eq!(r["granite"]["url"], format!("{}/files/", stack.upload_origin()));
    // onSuccess posted the confirm with granite's key.
    assert_eq!(
        r["upload"]["confirmBody"],
        r#"{"key":"browser/guide-snippet.pdf"}"#,
        "{}",
        ctx()
    );
    assert_eq!(r["upload"]["confirmStatus"], 204, "{}", ctx());
    assert_downloaded(r, &guide, &ctx);
    assert_eq!(
        std::fs::read(stack.assets.join("private/browser/guide-snippet.pdf")).unwrap(),
        guide
    );
    // What the browser sent, as nginx received it: the creation and the one
    // PATCH (no chunkSize in the snippet) both with `1.0.0, 1.0.0` and
    // granite's Upload-Metadata (tus-js-client sends its `headers` on every
    // request: the upload's own token, what `session_binding = "token"`
    // checks), answered 201 and 204 by tusd.
    let tus_log = stack.tus_log();
    let doubled: Vec<&str> = tus_log
        .lines()
        .filter(|l| l.contains(r#" tr="1.0.0, 1.0.0" "#))
        .collect();
    let want_md = format!(r#"md="{metadata}""#);
    assert_eq!(doubled.len(), 2, "{tus_log}\n{}", ctx());
    assert!(
        doubled[0].starts_with("POST /files/ 201 ") && doubled[0].ends_with(&want_md),
        "{tus_log}"
    );
    assert!(
        doubled[1].starts_with("PATCH /files/")
            && doubled[1].contains(" 204 ")
            && doubled[1].ends_with(&want_md),
        "{tus_log}"
    );
    assert!(!tus_log.contains(" 412 "), "tusd refused a version:\n{tus_log}");
    // granite's `Content-Length: 0`: refused by the browser, on both requests.
    let refused = run["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l.as_str()
                .unwrap()
                .contains(r#"Refused to set unsafe header "Content-Length""#)
        })
        .count();
    assert_eq!(refused, 2, "{}", ctx());

    // Exactly the three uploads landed: no part, nothing forged.
    assert_eq!(
        files_under(&stack.assets),
        [
            "private/browser/guide-snippet.pdf",
            "private/browser/parallel.pdf",
            "private/browser/seed-flow.pdf"
        ],
        "{}",
        ctx()
    );

    // CORS: the browser preflighted the creation and the upload URLs, nginx
    // passed the preflights to tusd, and they were answered 200.
    let log = stack.upload_access_log();
    let options: Vec<&str> = log.lines().filter(|l| l.contains("\"OPTIONS ")).collect();
    assert!(
        options
            .iter()
            .any(|l| l.contains("\"OPTIONS /files/ HTTP/1.1\" 200")),
        "no preflight of POST /files/ in nginx's log:\n{log}"
    );
    assert!(
        options
            .iter()
            .any(|l| l.contains("\"OPTIONS /files/") && !l.contains("\"OPTIONS /files/ ")),
        "no preflight of an upload URL (PATCH) in nginx's log:\n{log}"
    );
    for l in &options {
        assert!(
            l.contains("HTTP/1.1\" 200 "),
            "a preflight was not answered 200: {l}"
        );
    }

    // The screenshot of the page after the run.
    let shot = std::fs::read(run["screenshot"].as_str().unwrap()).unwrap();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 5000);
}

/// What tus-js-client sends on HEAD and PATCH with granite's `headers` as its
/// `headers` (the guide's options), with the gate on the shipped config and
/// `[upload] session_binding = "token"` (every request on an upload must carry
/// the Upload-Metadata that created it): an upload in 64 KiB chunks stops
/// after its first chunk, a second Upload finds it in tus-js-client's URL
/// storage, asks where it stands (HEAD) and sends the rest. Every request
/// carried `Tus-Resumable: 1.0.0, 1.0.0` and granite's Upload-Metadata, nginx
/// let them through to tusd (the session check passed on the metadata), and
/// the bytes download back.
#[test]
fn the_guides_headers_resume_under_token_binding_in_chromium() {
    node();
    chromium();
    require_node_modules();
    tusd_bin();
    peer_python();
    nginx();

    let stack = Stack::start(&[("ASSETGATE_UPLOAD__SESSION_BINDING", "token")]);
    let files = stack.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let (path, bytes) = random_file(&files, "resumed.pdf", 3 * CHUNK + 11);
    let run = run_browser(
        &stack,
        "resume-token",
        serde_json::json!([
            {"kind": "resume", "label": "resume", "name": "resumed.pdf",
             "type": "application/pdf", "file": path, "chunkSize": CHUNK},
        ]),
        Duration::from_secs(60),
    );
    let ctx = || {
        format!(
            "{}\n{}",
            serde_json::to_string_pretty(&run).unwrap(),
            stack.logs()
        )
    };
    let r = &run["results"][0];
    assert!(r.get("error").is_none(), "{}", ctx());
    assert_eq!(r["first"]["stopped"], true, "{}", ctx());
    assert_eq!(r["upload"]["ok"], true, "the resumed upload: {}", ctx());
    // Creation, the first chunk, then (a second Upload) HEAD and the rest.
    let requests: Vec<String> = r["upload"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap()
                .split(' ')
                .map(|w| match w.strip_prefix("/files/") {
                    Some(id) if !id.is_empty() => "/files/<id>",
                    _ => w,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        requests,
        [
            "POST /files/ 201",
            "PATCH /files/<id> 204",
            "HEAD /files/<id> 200",
            "PATCH /files/<id> 204",
            "PATCH /files/<id> 204",
            "PATCH /files/<id> 204",
        ],
        "{}",
        ctx()
    );
    assert_downloaded(r, &bytes, &ctx);
    // As nginx received them: every tus request with the browser's doubled
    // Tus-Resumable and granite's Upload-Metadata.
    let metadata = r["granite"]["headers"]["Upload-Metadata"].as_str().unwrap();
    let tus_log = stack.tus_log();
    let tus: Vec<&str> = tus_log.lines().filter(|l| !l.starts_with("OPTIONS ")).collect();
    assert_eq!(tus.len(), 6, "{tus_log}");
    for l in &tus {
        assert!(
            l.contains(r#" tr="1.0.0, 1.0.0" "#) && l.ends_with(&format!(r#"md="{metadata}""#)),
            "{l}\n{tus_log}"
        );
    }
    assert!(
        tus.iter()
            .any(|l| l.starts_with("HEAD /files/") && l.contains(" 200 ")),
        "{tus_log}"
    );
}

impl common::tus::TusStack for Stack {
    /// nginx's `/files/` (origin B).
    fn endpoint(&self) -> String {
        format!("{}/files/", self.upload_origin())
    }

    fn upload_secret(&self) -> &str {
        &self.upload_secret
    }

    fn assets(&self) -> &Path {
        &self.assets
    }

    fn logs(&self) -> String {
        Stack::logs(self)
    }
}

/// Records the request lines it receives: the beacon a script in an uploaded
/// file calls if a browser ever runs it.
struct Beacon {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Beacon {
    fn start() -> Beacon {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                if r.read_line(&mut line).is_ok() && !line.is_empty() {
                    h.lock().unwrap().push(line.trim_end().to_string());
                }
                // Read the head, answer, close.
                let mut l = String::new();
                while r.read_line(&mut l).is_ok_and(|n| n > 2) {
                    l.clear();
                }
                let _ = r.get_mut().write_all(
                    b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Beacon { port, hits }
    }

    /// The `case` names that called `/ran?case`.
    fn ran(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)?
                    .strip_prefix("/ran?")
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A script that calls the beacon before the document's `load` (a synchronous
/// request), as HTML, as SVG and as XHTML-in-XML.
fn payloads(beacon: u16, case: &str) -> (String, String, String) {
    let js = format!(
        "var x=new XMLHttpRequest();x.open('GET','http://127.0.0.1:{beacon}/ran?{case}',false);try{{x.send()}}catch(e){{}}"
    );
    (
        format!("<!doctype html><title>{case}</title><script>{js}</script><p>{case}</p>\n"),
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><script><![CDATA[{js}]]></script></svg>\n"
        ),
        format!(
            "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><body><script><![CDATA[{js}]]></script></body></html>\n"
        ),
    )
}

/// Issue 19, finding 1 (stored XSS): a published file is never served with a
/// type more active than the one that was signed. In Chromium, through the
/// shipped nginx files, tusd v2.9.1 and the gate on the shipped config (with
/// `check_content` on and SVG allowed by name, so the allowed-active path is
/// exercised too):
///
/// - the review's uploads: `a.html` declared `image/png` and `e.html` with PNG
///   magic before HTML (both refused: `extension_mismatch`); `t.txt` as
///   `text/plain` with HTML bytes, `p.png` with PNG magic then HTML, and
///   `s.svg` as `image/svg+xml` with a script (all published), public and
///   private;
/// - files already in the tree that the old rules let through (HTML, SVG,
///   XML, XHTML, HTML bytes named `.png` or with no extension), public and
///   private;
///
/// each opened as a top-level document and in an iframe of another origin:
/// no script runs (the beacon hears nothing), while the same payload served as
/// plain `text/html` from the test's own location does run (the control).
#[test]
fn uploads_are_served_as_signed_in_chromium() {
    use common::tus::TusStack;
    node();
    chromium();
    require_node_modules();
    tusd_bin();
    peer_python();
    nginx();

    let stack = Stack::start(&[
        ("ASSETGATE_UPLOAD__CHECK_CONTENT", "true"),
        (
            "ASSETGATE_UPLOAD__CONTENT_TYPES",
            r#"["image/*", "image/svg+xml", "video/mp4", "application/pdf", "text/plain"]"#,
        ),
    ]);
    let beacon = Beacon::start();
    let files = stack.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = files.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

    // 1. The review's uploads.
    let mut visits: Vec<(String, String)> = Vec::new(); // (case, target on origin B)
    for vis in ["public", "private"] {
        // (name, declared type, what the file is, refused?)
        let cases = [
            ("a.html", "image/png", "html", true),
            ("e.html", "image/png", "png+html", true),
            ("t.txt", "text/plain", "html", false),
            ("p.png", "image/png", "png+html", false),
            ("s.svg", "image/svg+xml", "svg", false),
        ];
        for (name, ct, what, refused) in cases {
            let case = format!("{}-{vis}-{name}", if refused { "refused" } else { "upload" });
            let (html, svg, _) = payloads(beacon.port, &case);
            let bytes = match what {
                "html" => html.into_bytes(),
                "png+html" => [PNG, html.as_bytes()].concat(),
                _ => svg.into_bytes(),
            };
            let key = format!("xss/{vis}/{name}");
            if refused {
                let r = stack.upload(&file(name, &bytes), &key, ct, vis, &[]);
                stack.assert_refused(&key, &r, 415, "extension_mismatch");
            } else {
                stack.upload_lands(&file(name, &bytes), &bytes, &key, ct, vis, &[]);
            }
            visits.push((case, format!("/{vis}/{key}")));
        }
    }
    // A glob (`image/*`) never allows an active type: an XML image type the
    // list names only by glob is refused on the same gate.
    let (_, svg, _) = payloads(beacon.port, "glob");
    let r = stack.upload(
        &file("x", svg.as_bytes()),
        "xss/x",
        "image/x-test+xml",
        "public",
        &[],
    );
    stack.assert_refused("image/x-test+xml", &r, 415, "content_type_active");

    // 2. Files the old rules published (written into the tree directly).
    for vis in ["public", "private"] {
        for name in [
            "a.html", "a.htm", "a.shtml", "a.png", "noext", "a.svg", "a.xml", "a.xhtml",
        ] {
            let case = format!("legacy-{vis}-{name}");
            let (html, svg, xml) = payloads(beacon.port, &case);
            let bytes = match name {
                "a.svg" => svg,
                "a.xml" | "a.xhtml" => xml,
                _ => html,
            };
            write(&stack.assets.join(vis).join("legacy").join(name), &bytes);
            visits.push((case, format!("/{vis}/legacy/{name}")));
        }
    }

    // Passive types still display under the sandbox: a PDF (Chromium's viewer),
    // not a download.
    const PDF: &str = "%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
        2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
        3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n\
        trailer<</Root 1 0 R>>\n%%EOF\n";
    for vis in ["public", "private"] {
        write(&stack.assets.join(vis).join("legacy/doc.pdf"), PDF);
        visits.push((format!("pdf-{vis}"), format!("/{vis}/legacy/doc.pdf")));
    }

    // 3. The control: the same payload as plain text/html from the test's
    // own location on origin A must run, or silence proves nothing.
    let (control, _, _) = payloads(beacon.port, "control");
    write(&stack.nginx.dir.join("control/run.html"), &control);

    let now = common::now();
    let mut steps = Vec::new();
    for (case, target) in &visits {
        let url = if target.starts_with("/private/") {
            let md5 = common::sign_link(&stack.link_secret, target, &(now + 600).to_string());
            format!(
                "{}{target}?md5={md5}&expires={}",
                stack.upload_origin(),
                now + 600
            )
        } else {
            format!("{}{target}", stack.upload_origin())
        };
        for how in ["top", "iframe"] {
            steps.push(
                serde_json::json!({"kind": "visit", "label": format!("{case} ({how})"),
                                          "url": url, "how": how}),
            );
        }
    }
    for how in ["top", "iframe"] {
        steps.push(
            serde_json::json!({"kind": "visit", "label": format!("control ({how})"),
            "url": format!("{}/control/run.html", stack.page_origin()), "how": how}),
        );
    }
    let run = run_browser(
        &stack,
        "served-as-signed",
        serde_json::Value::Array(steps),
        Duration::from_secs(300),
    );
    let ctx = || {
        format!(
            "{}\n{}",
            serde_json::to_string_pretty(&run).unwrap(),
            stack.logs()
        )
    };
    for r in run["results"].as_array().unwrap() {
        assert!(r.get("error").is_none(), "{}", ctx());
    }
    assert_eq!(
        beacon.ran(),
        ["control"],
        "a script ran in a file from the asset tree (or the control did not run)\n{}",
        ctx()
    );
    // What the browser was sent, for the record: the refused uploads are not
    // there (404), the others come typed as signed.
    let by_label = |label: &str| {
        run["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == label)
            .cloned()
            .unwrap_or_else(|| panic!("no result {label}\n{}", ctx()))
    };
    for vis in ["public", "private"] {
        for name in ["a.html", "e.html"] {
            let r = by_label(&format!("refused-{vis}-{name} (top)"));
            assert_eq!(r["status"], 404, "{r}");
        }
        let r = by_label(&format!("upload-{vis}-t.txt (top)"));
        assert_eq!(r["contentType"], "text/plain", "{r}");
        let r = by_label(&format!("upload-{vis}-p.png (top)"));
        assert_eq!(r["contentType"], "image/png", "{r}");
        // Active and allowed: a download, never a document of this origin.
        let r = by_label(&format!("upload-{vis}-s.svg (top)"));
        assert!(r["download"].is_string(), "{r}");
        let r = by_label(&format!("legacy-{vis}-a.html (top)"));
        assert!(r["download"].is_string(), "{r}");
        let r = by_label(&format!("pdf-{vis} (top)"));
        assert_eq!(
            (&r["status"], &r["contentType"], &r["download"]),
            (
                &serde_json::json!(200),
                &serde_json::json!("application/pdf"),
                &serde_json::Value::Null
            ),
            "{r}"
        );
    }
    assert!(
        !files_under(&stack.assets)
            .iter()
            .any(|f| f.ends_with(".html") && f.starts_with("xss")),
        "{:?}",
        files_under(&stack.assets)
    );
}

/// The page downloaded the upload back through nginx (200) and its sha256 is
/// that of `bytes`.
fn assert_downloaded(r: &serde_json::Value, bytes: &[u8], ctx: &dyn Fn() -> String) {
    assert_eq!(r["download"]["status"], 200, "download: {}", ctx());
    assert_eq!(
        r["download"]["sha256"],
        sha256_hex(bytes),
        "downloaded bytes differ"
    );
}
