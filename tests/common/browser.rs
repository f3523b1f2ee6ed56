//! tus-js-client in headless Chromium: the peers (`node`, Debian's
//! `chromium`, `tests/browser/node_modules` at the lockfile's versions) and
//! the driver `tests/browser/run.mjs`, which opens a page of
//! `tests/browser/page/` and runs its steps. Used by `tests/e2e_browser.rs`
//! (fs backend) and `tests/s3_fleet.rs` (the S3 fleet).
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{peer_python, repo, require_peer};

/// `tests/browser/`.
pub fn browser_dir() -> PathBuf {
    repo().join("tests/browser")
}

/// Where the screenshot, the plan and the driver's output of test `name` go:
/// `target/e2e-browser/<name>/` (one directory per test: they run in
/// parallel).
pub fn out_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("e2e-browser")
        .join(name)
}

pub fn node() -> PathBuf {
    require_peer(
        "node",
        &[PathBuf::from("/usr/bin/node")],
        "apt-get install -y nodejs npm (Node.js >= 20, for playwright-core)",
    )
}

pub fn chromium() -> PathBuf {
    let p = PathBuf::from("/usr/bin/chromium");
    assert!(
        p.is_file(),
        "peer `chromium` not found at /usr/bin/chromium. Install it: apt-get install -y chromium\n\
         (`scripts/test.sh` installs every peer and runs the whole suite; playwright-core never \
         downloads a browser, and must not: use Debian's)"
    );
    p
}

/// `tests/browser/node_modules` as `npm ci` makes it from the committed lockfile:
/// both packages present at the locked versions.
pub fn require_node_modules() {
    let how = "npm ci --prefix tests/browser\n(`scripts/test.sh` runs it; it installs \
               tus-js-client and playwright-core, and no browser)";
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(browser_dir().join("package-lock.json")).unwrap())
            .unwrap();
    for (pkg, file) in [
        ("tus-js-client", "dist/tus.min.js"),
        ("playwright-core", "index.mjs"),
    ] {
        let dir = browser_dir().join("node_modules").join(pkg);
        let want = lock["packages"][format!("node_modules/{pkg}")]["version"]
            .as_str()
            .unwrap_or_else(|| panic!("{pkg} is not in tests/browser/package-lock.json"));
        let have = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        match have {
            None => panic!("peer `{pkg}` is not installed in tests/browser/node_modules. Install it: {how}"),
            Some(v) if v != want => {
                panic!("tests/browser/node_modules has {pkg} {v}, the lockfile pins {want}. Reinstall: {how}")
            }
            Some(_) => assert!(
                dir.join(file).is_file(),
                "{} is missing. Reinstall: {how}",
                dir.join(file).display()
            ),
        }
    }
}

/// Every browser peer, or the test fails with the command that installs it.
pub fn require_browser_peers() {
    node();
    chromium();
    require_node_modules();
}

/// Runs `node tests/browser/run.mjs PLAN` for test `name` on the page at
/// `page` (`http://…/page/`) and returns its JSON; fails after `limit`, or
/// when the driver fails, with `logs()` in the message.
pub fn run_browser(
    page: &str,
    name: &str,
    steps: serde_json::Value,
    limit: Duration,
    logs: &dyn Fn() -> String,
) -> serde_json::Value {
    let out = out_dir(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let plan = serde_json::json!({
        "page": page,
        "chromium": chromium(),
        "out": out,
        "steps": steps,
    });
    let plan_path = out.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let stdout_path = out.join("run.stdout");
    let stderr_path = out.join("run.stderr");
    let mut child = Command::new(node())
        .arg(browser_dir().join("run.mjs"))
        .arg(&plan_path)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn node");
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node tests/browser/run.mjs did not finish within {limit:?}\n{}\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "node tests/browser/run.mjs failed ({status}):\n{stderr}\n{}",
        logs()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("run.mjs printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// A child process killed on drop, with its output in files.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log_text(&self) -> String {
        let t = std::fs::read(&self.log).unwrap_or_default();
        let t = String::from_utf8_lossy(&t);
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// The application (granite-assets), on `port`; waits for "listening".
pub fn start_app(dir: &Path, port: u16, args: &[String]) -> Proc {
    let log = dir.join("app.log");
    let mut child = Command::new(peer_python())
        .arg(repo().join("tests/peers/granite_app.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn the test app");
    let mut first = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while !first.ends_with('\n') {
        match stdout.read(&mut byte) {
            Ok(1) => first.push(byte[0] as char),
            _ => break,
        }
    }
    let p = Proc { child, log };
    assert!(
        first.starts_with("listening "),
        "the test app did not start ({first:?}):\n{}",
        p.log_text()
    );
    p
}
