//! rustus 0.5.10, the real tus server of the upload end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, peers_dir, require_peer, wait_port};

/// The rustus binary `scripts/test.sh` installs; fails with how to install it.
pub fn rustus_bin() -> PathBuf {
    require_peer(
        "rustus",
        &[peers_dir().join("bin/rustus")],
        "cargo install rustus --version 0.5.10 --features http_notifier --locked --root .peers",
    )
}

/// A running rustus; killed on drop.
pub struct Rustus {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Data and info directory (`<dir>/uploads`, tusd's filestore layout).
    pub data: PathBuf,
    /// Its stdout (the request log).
    pub log: PathBuf,
}

impl Drop for Rustus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts rustus on a free port with `<dir>/uploads` as data and info dir,
/// tusd-format pre-create and post-finish hooks to `hook_url`, plus `extra`
/// arguments; waits until it listens.
pub fn start_rustus(dir: &Path, hook_url: &str, extra: &[&str]) -> Rustus {
    let port = free_port();
    let data = dir.join("uploads");
    std::fs::create_dir_all(&data).unwrap();
    let log = dir.join("rustus.log");
    let child = Command::new(rustus_bin())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(&data)
        .arg("--info-dir")
        .arg(&data)
        .args(["--hooks-format", "tusd", "--hooks-http-urls", hook_url])
        .args(["--hooks", "pre-create,post-finish"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("rustus.err")).unwrap())
        .spawn()
        .expect("spawn rustus");
    let rustus = Rustus {
        child,
        port,
        data,
        log,
    };
    assert!(
        wait_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(20)
        ),
        "rustus did not start: {}",
        std::fs::read_to_string(&rustus.log).unwrap_or_default()
    );
    rustus
}
