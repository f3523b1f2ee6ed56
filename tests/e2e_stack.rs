//! The deployment, end to end: real processes running the files users copy.
//!
//! - **nginx** runs `nginx/assetgate.conf.example`, which includes
//!   `nginx/assetgate-upstream.conf` and `nginx/assetgate-locations.conf` from
//!   `assetgate/` under the configuration directory, as on a real install. The
//!   locations file is that directory's symlink to the shipped file (verbatim).
//!   The other two are the shipped text with only what a test cannot keep
//!   rewritten, each replacement asserted to happen exactly once: the two
//!   upstream addresses (assetgate, tusd), the `listen` port and the `root`.
//! - **assetgate** runs with `deploy/assetgate.toml` itself; the environment
//!   overrides ports, paths and secrets (`ASSETGATE_LISTEN`,
//!   `ASSETGATE_STORAGE__ROOT`, `ASSETGATE_TUSD__UPLOAD_DIR`,
//!   `ASSETGATE_*_SECRET_FILE`), as the container image and the units do.
//! - **tusd v2.9.1** (the release `deploy/` ships) is the tus server behind
//!   nginx's `/files/`, run with exactly the flags of the shipped `tusd/tusd.sh`
//!   (variables from `tusd/tusd.env`): `-behind-proxy`, `-base-path /files/`,
//!   `-hooks-enabled-events pre-create,pre-finish,post-finish`,
//!   `-disable-download`, retries... Only where it listens, its upload directory
//!   and the hook URL (assetgate's `/tusd`) are replaced.
//! - **tuspy** uploads through nginx with upload tokens minted by the real
//!   **granite-assets**, and granite mints the download links.
//!
//! Checked: an upload lands in the asset tree byte for byte and downloads through
//! nginx with a granite link (200, same bytes); a forged link is 403, an expired
//! one 410; public assets need no link; rejected uploads reach the client through
//! nginx with their status and JSON body, and nothing lands; nginx exposes neither
//! `/tusd` nor `/metrics` nor the auth location.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ngx::{listen_on, nginx_main_conf, shipped_site, Nginx};
use common::tus::TusStack;
use common::tusd::Tusd;
use common::*;

struct Stack {
    gate: Daemon,
    tusd: Tusd,
    nginx: Nginx,
    assets: PathBuf,
    link_secret: String,
    upload_secret: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        Stack::start_with(&[])
    }

    /// The stack with extra `ASSETGATE_*` variables for the gate.
    fn start_with(extra_env: &[(&str, &str)]) -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();

        // assetgate: the shipped example config, env overrides only, secrets
        // as files.
        let shipped = ShippedGate::start(dir, extra_env);
        let (gate, assets) = (shipped.daemon, shipped.assets);

        // tusd: the shipped command line, hooks to the gate.
        let tusd = Tusd::start_shipped(dir, &format!("{}/tusd", gate.url()));
        assert_eq!(tusd.upload_dir, shipped.uploads);
        let tusd_port = tusd.port;

        // nginx: the example, its includes under <conf dir>/assetgate/.
        let ngx_dir = dir.join("nginx");
        let example = shipped_site(&ngx_dir, gate.addr, tusd_port, &assets);
        let site = ngx_dir.join("conf.d/assetgate.conf");
        let nginx = Nginx::start(&ngx_dir, 1, |ports| {
            write(&site, &listen_on(&example, ports[0]));
            nginx_main_conf(&ngx_dir, &format!("include {};", site.display()))
        });

        Stack {
            gate,
            tusd,
            nginx,
            assets,
            link_secret: shipped.link_secret,
            upload_secret: shipped.upload_secret,
            _dir: tmp,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.nginx.addr(0))
    }

    /// A download link minted by granite for a private asset that exists;
    /// returns the request target a client sends.
    fn link(&self, key: &str, secret: &str, ttl: i64) -> String {
        let out = Command::new(peer_python())
            .arg(repo().join("tests/peers/granite_link.py"))
            .arg("--storage")
            .arg(&self.assets)
            .args(["--base-url", &self.base_url(), "--secret", secret, "--key", key])
            .arg(format!("--ttl={ttl}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "granite could not mint a link: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let url = v["url"].as_str().unwrap();
        assert!(url.starts_with(&self.base_url()), "{url}");
        v["request_target"].as_str().unwrap().to_string()
    }

    /// GET through nginx: (status, body).
    fn get(&self, target: &str) -> (u16, Vec<u8>) {
        let (status, _, body) = get(self.nginx.addr(0), target, &[]);
        (status, body)
    }
}

impl TusStack for Stack {
    /// nginx's `/files/`.
    fn endpoint(&self) -> String {
        format!("{}/files/", self.base_url())
    }

    fn upload_secret(&self) -> &str {
        &self.upload_secret
    }

    fn assets(&self) -> &Path {
        &self.assets
    }

    /// Everything the three processes logged, for failure messages.
    fn logs(&self) -> String {
        format!(
            "{}\n--- tusd ---\n{}\n--- assetgate ---\n{}",
            self.nginx.logs(),
            self.tusd.log(),
            self.gate.logs().join("\n")
        )
    }
}

#[test]
fn upload_through_nginx_then_download_with_granite_links() {
    let stack = Stack::start();
    let tmp = tempfile::tempdir().unwrap();

    // A private upload in several chunks, key with a space and UTF-8.
    let key = "reports/été 2026/q1 report.pdf";
    let (file, data) = random_file(tmp.path(), "report.pdf", 300 * 1024 + 5);
    let r = stack.upload(
        &file,
        key,
        "application/pdf",
        "private",
        &["--chunk-size", "65536"],
    );
    assert_eq!(r["ok"], true, "{r}\n{}", stack.logs());
    // The upload URL points back through nginx (-behind-proxy + X-Forwarded-*).
    let upload_url = r["url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!("{}/files/", stack.base_url())),
        "upload URL {upload_url} does not go through nginx"
    );
    assert_eq!(stack.wait_asset(&format!("private/{key}")), data);

    // Download through nginx with a granite link.
    let valid = stack.link(key, &stack.link_secret, 600);
    let (status, body) = stack.get(&valid);
    assert_eq!(status, 200, "{valid}\n{}", stack.logs());
    assert!(body == data, "{valid}: different bytes");

    let forged = stack.link(key, "not-the-link-secret-0123456789", 600);
    assert_eq!(stack.get(&forged).0, 403, "forged link {forged}");
    let expired = stack.link(key, &stack.link_secret, -60);
    assert_eq!(stack.get(&expired).0, 410, "expired link {expired}");
    let other = valid.replace("q1%20report.pdf", "q2%20report.pdf");
    assert_ne!(other, valid);
    assert_eq!(stack.get(&other).0, 403, "a link used for another path");
    let bare = valid.split('?').next().unwrap();
    assert_eq!(stack.get(bare).0, 403, "no link arguments");

    // Public: no link needed.
    let (file, public) = random_file(tmp.path(), "u1.png", 2000);
    let r = stack.upload(&file, "avatars/u1.png", "image/png", "public", &[]);
    assert_eq!(r["ok"], true, "{r}\n{}", stack.logs());
    assert_eq!(stack.wait_asset("public/avatars/u1.png"), public);
    let (status, body) = stack.get("/public/avatars/u1.png");
    assert_eq!(status, 200);
    assert!(body == public);

    // Nothing but nginx's locations is reachable from the client side.
    for path in ["/tusd", "/metrics", "/healthz", "/auth", "/_assetgate"] {
        assert_eq!(
            stack.get(path).0,
            404,
            "{path} must not be reachable through nginx"
        );
    }
    let hook = br#"{"Type":"post-finish","Event":{"Upload":{}}}"#;
    let mut post = format!(
        "POST /tusd HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        hook.len()
    )
    .into_bytes();
    post.extend_from_slice(hook);
    assert_eq!(raw_request(stack.nginx.addr(0), &post).0, 404);
}

/// A PATCH over 1 MiB passes the shipped `/files/` location: its session
/// subrequest shares the PATCH's `Content-Length`, which nginx checked against
/// that location's `client_max_body_size` (default 1m) and refused with 413
/// until `assetgate-uploads.conf` set it to 0 there (found by
/// `tests/s3_fleet.rs`; tus-js-client's default is one PATCH for the whole
/// file).
#[test]
fn chunks_over_one_mib_pass_the_session_check() {
    let stack = Stack::start();
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = random_file(tmp.path(), "big.pdf", 2 * 1024 * 1024 + 512 * 1024);
    let r = stack.upload(
        &file,
        "reports/big.pdf",
        "application/pdf",
        "private",
        &["--chunk-size", "2097152"],
    );
    assert_eq!(r["ok"], true, "{r}\n{}", stack.logs());
    assert!(stack.wait_asset("private/reports/big.pdf") == data);
}

#[test]
fn rejected_uploads_reach_the_client_through_nginx() {
    let stack = Stack::start();
    let tmp = tempfile::tempdir().unwrap();
    let (file, _) = random_file(tmp.path(), "x.bin", 3000);

    // (what, key, content type, client args, status, error code). The content
    // types allowed are deploy/assetgate.toml's.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], u64, &'a str);
    let cases: &[Case] = &[
        (
            "token signed for another content type",
            "a/t.png",
            "image/png",
            &["--tamper", "content-type=image/gif"],
            403,
            "token_invalid",
        ),
        (
            "expired token",
            "a/e.png",
            "image/png",
            &["--ttl", "-300"],
            403,
            "token_expired",
        ),
        (
            "type outside deploy/assetgate.toml's content_types",
            "a/x.exe",
            "application/x-msdownload",
            &[],
            415,
            "content_type_not_allowed",
        ),
    ];
    for (what, key, ct, extra, status, code) in cases {
        let r = stack.upload(&file, key, ct, "private", extra);
        stack.assert_refused(what, &r, *status, code);
    }
    assert!(stack.asset_files().is_empty(), "{:?}", stack.asset_files());
}

/// One request to nginx on an existing upload; (status, X-Assetgate-Reason).
fn on_upload(
    st: &Stack,
    method: &str,
    path: &str,
    upload_metadata: Option<&str>,
    body: &[u8],
) -> (u16, Option<String>) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\nContent-Length: {}\r\n",
        st.nginx.addr(0),
        body.len()
    );
    if method == "PATCH" {
        req.push_str("Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n");
    }
    if let Some(m) = upload_metadata {
        req.push_str(&format!("Upload-Metadata: {m}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // Read to the close: a HEAD answer declares a length it does not send.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(st.nginx.addr(0)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let reason = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-assetgate-reason")
            .then(|| v.trim().to_owned())
    });
    (status, reason)
}

fn upload_path(url: &str) -> String {
    let i = url.find("/files/").expect("an upload URL");
    url[i..].to_string()
}

/// Upload sessions: through the shipped nginx (assetgate-uploads.conf) with the real
/// tusd and tuspy, requests on an existing upload are bound to its token.
#[test]
fn upload_sessions_are_bound_to_their_token_through_nginx() {
    let st = Stack::start_with(&[
        ("ASSETGATE_UPLOAD__SESSION_BINDING", "token"),
        ("ASSETGATE_UPLOAD__SESSION_GRACE", "0"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = random_file(dir.path(), "a.pdf", 200 * 1024);
    let ct = "application/pdf"; // deploy/assetgate.toml's allowlist
    let partly = [
        "--chunk-size",
        "65536",
        "--stop-at",
        "65536",
        "--send-metadata-header",
    ];

    // Resume within the window: tuspy sends granite's Upload-Metadata on every request.
    let a = st.upload(&file, "sess/a.pdf", ct, "private", &partly);
    assert_eq!(a["ok"], true, "{a}\n{}", st.logs());
    let a_url = a["url"].as_str().unwrap().to_string();
    // a resuming client keeps the token it created the upload with
    let a_meta = a["upload_metadata"].as_str().unwrap().to_string();
    let resume = [
        "--url",
        &a_url,
        "--send-metadata-header",
        "--upload-metadata",
        &a_meta,
    ];
    let done = st.upload(&file, "sess/a.pdf", ct, "private", &resume);
    assert_eq!(done["ok"], true, "{done}\n{}", st.logs());
    assert_eq!(
        wait_for_file(&st.assets.join("private/sess/a.pdf"), Duration::from_secs(10)).as_deref(),
        Some(&data[..])
    );

    // Another upload's valid token on this upload: 403, nothing reaches tusd.
    let b = st.upload(&file, "sess/b.pdf", ct, "private", &partly);
    assert_eq!(b["ok"], true, "{b}");
    let b_path = upload_path(b["url"].as_str().unwrap());
    let other = st.upload(&file, "sess/other.pdf", ct, "private", &partly);
    let other_path = upload_path(other["url"].as_str().unwrap());
    // the other upload's own Upload-Metadata: a valid token, for another upload
    let other_meta = stored_metadata_header(&st, &other_path);
    assert_eq!(
        on_upload(&st, "PATCH", &b_path, Some(&other_meta), b"x"),
        (403, Some("token_mismatch".into()))
    );
    assert_eq!(
        on_upload(&st, "PATCH", &b_path, None, b"x"),
        (403, Some("token_missing".into()))
    );
    // A guessed ID, and one that tries to climb: refused before any path is built.
    assert_eq!(
        on_upload(
            &st,
            "HEAD",
            "/files/0123456789abcdef0123456789abcdef",
            Some(&other_meta),
            b""
        ),
        (403, Some("unknown_upload".into()))
    );
    assert_eq!(
        on_upload(&st, "HEAD", "/files/.info", None, b""),
        (403, Some("bad_id".into()))
    );
    // nginx itself refuses a path climbing above the root (400), before any check
    assert_eq!(
        on_upload(&st, "HEAD", "/files/..%2F..%2Fetc%2Fpasswd", None, b"").0,
        400
    );

    // After the window (token of 3 s, no grace): 410.
    let c = st.upload(
        &file,
        "sess/c.pdf",
        ct,
        "private",
        &[
            "--ttl",
            "3",
            "--chunk-size",
            "65536",
            "--stop-at",
            "65536",
            "--send-metadata-header",
        ],
    );
    assert_eq!(c["ok"], true, "{c}");
    std::thread::sleep(Duration::from_millis(4500));
    let c_meta = c["upload_metadata"].as_str().unwrap().to_string();
    let late_args = [
        "--url",
        c["url"].as_str().unwrap(),
        "--send-metadata-header",
        "--upload-metadata",
        &c_meta,
    ];
    let late = st.upload(&file, "sess/c.pdf", ct, "private", &late_args);
    assert_eq!(late["ok"], false, "{late}");
    assert_eq!(late["status"], 410, "{late}\n{}", st.logs());
    assert!(!st.assets.join("private/sess/c.pdf").exists());
    assert!(!st.assets.join("private/sess/b.pdf").exists());
}

/// The Upload-Metadata header that created the upload at `path`, rebuilt from
/// tusd's own `.info` (what the client holding that upload's token sends).
fn stored_metadata_header(st: &Stack, path: &str) -> String {
    use base64::Engine;
    let id = path.trim_start_matches("/files/");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(st.tusd.upload_dir.join(format!("{id}.info"))).unwrap(),
    )
    .unwrap();
    info["MetaData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {}",
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap())
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}
