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

use common::ngx::{nginx_main_conf, Nginx};
use common::tusd::Tusd;
use common::*;

/// What the test rewrites in the shipped files; each must occur exactly once.
const SHIPPED_GATE_ADDR: &str = "server 127.0.0.1:9750;"; // assetgate-upstream.conf
const SHIPPED_TUSD_ADDR: &str = "server 127.0.0.1:1080;"; // assetgate.conf.example
const SHIPPED_LISTEN: &str = "listen 80;"; // assetgate.conf.example
const SHIPPED_ROOT: &str = "root /srv/assets;"; // assetgate.conf.example

fn replace_once(text: &str, from: &str, to: &str, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file} must contain `{from}` exactly once (the stack test rewrites it)"
    );
    text.replacen(from, to, 1)
}

struct Stack {
    gate: Daemon,
    tusd: Tusd,
    nginx: Nginx,
    assets: PathBuf,
    link_secret: String,
    upload_secret: String,
    _dir: tempfile::TempDir,
}

fn random_secret() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

impl Stack {
    fn start() -> Stack {
        let repo = repo();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let assets = dir.join("assets");
        // tusd's -upload-dir (tests/common/tusd.rs), shared with assetgate.
        let uploads = dir.join("uploads");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::create_dir_all(&uploads).unwrap();

        // Secrets as files, as systemd credentials / compose and k8s secrets.
        let link_secret = random_secret();
        let upload_secret = random_secret();
        let link_file = dir.join("secrets/link_secret");
        let upload_file = dir.join("secrets/upload_secret");
        write(&link_file, &format!("{link_secret}\n"));
        write(&upload_file, &format!("{upload_secret}\n"));

        // assetgate: the shipped example config, env overrides only.
        let s = |p: &Path| p.display().to_string();
        let gate = Daemon::start_file(
            &repo.join("deploy/assetgate.toml"),
            &[],
            &[
                ("ASSETGATE_LISTEN", "127.0.0.1:0"),
                ("ASSETGATE_STORAGE__ROOT", &s(&assets)),
                ("ASSETGATE_TUSD__UPLOAD_DIR", &s(&uploads)),
                ("ASSETGATE_LINK_SECRET_FILE", &s(&link_file)),
                ("ASSETGATE_UPLOAD_SECRET_FILE", &s(&upload_file)),
            ],
        );

        // tusd: the shipped command line, hooks to the gate.
        let tusd = Tusd::start_shipped(dir, &format!("{}/tusd", gate.url()));
        assert_eq!(tusd.upload_dir, uploads);
        let tusd_port = tusd.port;

        // nginx: the example, its includes under <conf dir>/assetgate/.
        let shipped = repo.join("nginx");
        let ngx_dir = dir.join("nginx");
        std::fs::create_dir_all(ngx_dir.join("assetgate")).unwrap();
        std::os::unix::fs::symlink(
            shipped.join("assetgate-locations.conf"),
            ngx_dir.join("assetgate/assetgate-locations.conf"),
        )
        .unwrap();
        let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
        write(
            &ngx_dir.join("assetgate/assetgate-upstream.conf"),
            &replace_once(
                &upstream,
                SHIPPED_GATE_ADDR,
                &format!("server {};", gate.addr),
                "nginx/assetgate-upstream.conf",
            ),
        );
        let example = std::fs::read_to_string(shipped.join("assetgate.conf.example")).unwrap();
        let example = replace_once(
            &example,
            SHIPPED_TUSD_ADDR,
            &format!("server 127.0.0.1:{tusd_port};"),
            "nginx/assetgate.conf.example",
        );
        let example = replace_once(
            &example,
            SHIPPED_ROOT,
            &format!("root {};", assets.display()),
            "nginx/assetgate.conf.example",
        );
        let site = ngx_dir.join("conf.d/assetgate.conf");
        let nginx = Nginx::start(&ngx_dir, 1, |ports| {
            write(
                &site,
                &replace_once(
                    &example,
                    SHIPPED_LISTEN,
                    &format!("listen 127.0.0.1:{};", ports[0]),
                    "nginx/assetgate.conf.example",
                ),
            );
            nginx_main_conf(&ngx_dir, &format!("include {};", site.display()))
        });

        Stack {
            gate,
            tusd,
            nginx,
            assets,
            link_secret,
            upload_secret,
            _dir: tmp,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.nginx.addr(0))
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

    /// tuspy uploads `file` through nginx's `/files/` with a granite token.
    fn upload(&self, file: &Path, key: &str, ct: &str, vis: &str, extra: &[&str]) -> serde_json::Value {
        let out = Command::new(peer_python())
            .arg(repo().join("tests/peers/tus_upload.py"))
            .args(["--endpoint", &format!("{}/files/", self.base_url())])
            .arg("--file")
            .arg(file)
            .args(["--key", key, "--content-type", ct, "--visibility", vis])
            .args(["--secret", &self.upload_secret])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tus client failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("client output {e}: {}", String::from_utf8_lossy(&out.stdout)))
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

    /// post-finish moves the file in the background: wait for it.
    fn wait_asset(&self, rel: &str) -> Vec<u8> {
        if let Some(b) = wait_for_file(&self.assets.join(rel), Duration::from_secs(20)) {
            return b;
        }
        panic!("{rel} never appeared in the asset tree\n{}", self.logs());
    }

    fn asset_files(&self) -> Vec<String> {
        files_under(&self.assets)
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
        assert_eq!(r["ok"], false, "{what}: {r}");
        assert_eq!(r["status"], *status, "{what}: {r}\n{}", stack.logs());
        let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {r}"));
        assert_eq!(body["error"]["code"], *code, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert!(!r["body"].as_str().unwrap().contains(&stack.upload_secret));
    }
    assert!(stack.asset_files().is_empty(), "{:?}", stack.asset_files());
}
