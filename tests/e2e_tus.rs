//! End to end with a real tus server (rustus, tusd v1 hook format), a real tus
//! client (tuspy) and upload URLs minted by the real granite-assets library.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::rustus::{start_rustus, Rustus};
use common::tus::{TusStack, REFUSALS_UPLOAD_CONFIG};
use common::*;

struct Stack {
    gate: Daemon,
    rustus: Rustus,
    assets: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// rustus takes no upload ID from a hook: `upload_ids = "server"` (docs/upload-lifecycle.md).
    fn new(extra_upload_config: &str) -> Stack {
        Self::with_ids(extra_upload_config, "server")
    }

    fn with_ids(extra_upload_config: &str, upload_ids: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        let uploads = dir.path().join("uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        let cfg = format!(
            "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"debug\"\n\
             [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
             [upload]\nsecrets = [\"{UPLOAD_SECRET}\", \"{UPLOAD_SECRET_OLD}\"]\n{extra_upload_config}\n\
             [storage]\nroot = {:?}\n\
             [tusd]\nupload_dir = {:?}\nupload_ids = \"{upload_ids}\"\n",
            assets.display().to_string(),
            uploads.display().to_string(),
        );
        let gate = Daemon::start(&cfg);
        let rustus = start_rustus(dir.path(), &format!("{}/tusd", gate.url()), &[]);
        Stack {
            gate,
            rustus,
            assets,
            _dir: dir,
        }
    }

    /// The value of one series of the gate's /metrics (`name{labels}` exactly
    /// as exposed, labels sorted).
    fn metric(&self, series: &str) -> Option<u64> {
        let (_, _, body) = get(self.gate.addr, "/metrics", &[]);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// `assetgate finalize-pending` with the gate's own config: stdout + stderr.
    fn finalize_pending(&self) -> String {
        let out = Command::new(bin())
            .arg("--config")
            .arg(self.gate.dir.path().join("assetgate.toml"))
            .arg("finalize-pending")
            .env_remove("ASSETGATE_CONFIG")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl TusStack for Stack {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/files/", self.rustus.port)
    }

    fn upload_secret(&self) -> &str {
        UPLOAD_SECRET
    }

    fn assets(&self) -> &Path {
        &self.assets
    }

    fn logs(&self) -> String {
        format!(
            "rustus log: {}\n--- assetgate ---\n{}",
            std::fs::read_to_string(&self.rustus.log).unwrap_or_default(),
            self.gate.logs().join("\n")
        )
    }
}

#[test]
fn accepted_uploads_land_byte_for_byte() {
    let mut stack = Stack::new("");
    let tmp = tempfile::tempdir().unwrap();

    // multi-chunk private upload with spaces and non-ASCII in the key
    let (f, data) = random_file(tmp.path(), "big.bin", 600 * 1024 + 17);
    let key = "photos/été 2026/plage.jpg";
    stack.upload_lands(
        &f,
        &data,
        key,
        "image/jpeg",
        "private",
        &["--chunk-size", "65536"],
    );

    // public
    let (f, data) = random_file(tmp.path(), "pub.bin", 1000);
    stack.upload_lands(&f, &data, "avatars/u1.png", "image/png", "public", &[]);

    // empty file
    let (f, data) = random_file(tmp.path(), "empty.bin", 0);
    stack.upload_lands(&f, &data, "docs/empty.txt", "text/plain", "private", &[]);

    // the finished uploads left rustus's data dir (only info files may remain)
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let data_files: Vec<_> = std::fs::read_dir(&stack.rustus.data)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_none())
            .collect();
        if data_files.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "data files left behind: {data_files:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(stack.gate.alive());
    let (_, _, m) = get(stack.gate.addr, "/metrics", &[]);
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains("assetgate_hook_decisions_total{decision=\"allow\",hook=\"pre-create\",reason=\"ok\"} 3"),
        "{m}"
    );
}

#[test]
fn rejections_reach_the_client_and_nothing_lands() {
    let mut stack = Stack::new(REFUSALS_UPLOAD_CONFIG);
    // with an existing asset for the 409 case
    stack.assert_refusals(|_, _| {});
    assert_eq!(stack.asset_files(), vec!["private/taken.png".to_string()]);
    assert_eq!(
        std::fs::read(stack.assets.join("private/taken.png")).unwrap(),
        b"original"
    );
    assert!(stack.gate.alive());
    let (s, _, _) = get(stack.gate.addr, "/healthz", &[]);
    assert_eq!(s, 200);
}

/// EXPECTED TO FAIL until the mover checks the content itself. rustus has no
/// pre-finish hook: the client is told nothing, but with `check_content` on, a
/// PNG declared as a PDF must never be published, by post-finish or by
/// finalize-pending, and stays in rustus's data directory.
#[test]
fn regression_check_content_mismatch_is_never_published() {
    let stack = Stack::new("check_content = true\n");
    let tmp = tempfile::tempdir().unwrap();
    let (f, mut data) = random_file(tmp.path(), "fake.pdf", 100 * 1024);
    data[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    std::fs::write(&f, &data).unwrap();
    let key = "docs/not really.pdf";
    let r = stack.upload(&f, key, "application/pdf", "private", &["--chunk-size", "65536"]);
    assert_eq!(r["ok"], true, "rustus has no pre-finish: {r}");
    let id = r["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    // post-finish is asynchronous: wait for the gate's decision on it, and for
    // the move (or its refusal).
    let mismatch = "assetgate_finalize_total{result=\"content_mismatch\"}";
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && stack.asset_files().is_empty() && stack.metric(mismatch) != Some(1) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stack.asset_files().is_empty(),
        "a PNG declared as PDF was published: {:?}\n{}",
        stack.asset_files(),
        stack.gate.logs().join("\n")
    );
    assert_eq!(stack.metric(mismatch), Some(1));
    let stays = || {
        assert!(
            std::fs::read(stack.rustus.data.join(&id)).unwrap() == data,
            "the upload stays in rustus's data dir"
        );
    };
    stays();
    let out = stack.finalize_pending();
    assert!(
        stack.asset_files().is_empty(),
        "finalize-pending published a PNG declared as PDF: {:?}\n{out}",
        stack.asset_files()
    );
    // Refused at post-finish, and recorded: finalize-pending does not offer it.
    assert!(out.contains("Refused"), "{out}");
    assert!(stack.rustus.data.join(format!("{id}.refused")).is_file());
    stays();
}

/// Issue 19: with `[tusd] upload_ids = "signed"` (the default) rustus cannot
/// take the ID pre-create issues, so its uploads could never be published:
/// each creation is refused, and the client is told what the operator must set.
#[test]
fn rustus_with_signed_upload_ids_is_refused_with_what_to_set() {
    let stack = Stack::with_ids("", "signed");
    let tmp = tempfile::tempdir().unwrap();
    let (f, _) = random_file(tmp.path(), "a.bin", 1000);
    let r = stack.upload(&f, "a/b.png", "image/png", "private", &[]);
    assert_eq!(
        (r["ok"].clone(), r["status"].clone()),
        (false.into(), 500.into()),
        "{r}"
    );
    let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upload_ids_unsupported", "{r}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload_ids = \"server\""),
        "{r}"
    );
    assert!(stack.asset_files().is_empty());
    assert!(stack
        .gate
        .wait_log("upload_ids_unsupported", Duration::from_secs(1)));
}
