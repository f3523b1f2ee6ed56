//! nginx run by a test: foreground, single process, everything it writes in
//! its own directory, on free loopback ports.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx (single process, foreground), killed on drop.
pub struct Nginx {
    pub child: Child,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
}

/// Top-level nginx.conf around `http` (the inside of `http { }`): everything
/// nginx writes (pid, lock, logs, temp files) stays in `dir`.
pub fn nginx_main_conf(dir: &Path, http: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         lock_file {d}/nginx.lock;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/client_body_temp;\n\
         proxy_temp_path {d}/proxy_temp;\n\
         fastcgi_temp_path {d}/fastcgi_temp;\n\
         uwsgi_temp_path {d}/uwsgi_temp;\n\
         scgi_temp_path {d}/scgi_temp;\n\
         {http}\n\
         }}\n"
    )
}

impl Nginx {
    /// Writes `conf(ports)` to `dir/nginx.conf` for `n` free loopback ports and
    /// starts nginx; retries with other ports if one was taken meanwhile.
    pub fn start(dir: &Path, n: usize, conf: impl Fn(&[u16]) -> String) -> Nginx {
        let bin = super::nginx();
        let conf_path = dir.join("nginx.conf");
        let mut failures = Vec::new();
        for _attempt in 0..4 {
            let mut ports: Vec<u16> = Vec::new();
            while ports.len() < n {
                let p = super::free_port();
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            std::fs::write(&conf_path, conf(&ports)).unwrap();
            let _ = std::fs::remove_file(dir.join("error.log"));
            let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
            let child = Command::new(&bin)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn nginx");
            let mut ngx = Nginx {
                child,
                dir: dir.to_path_buf(),
                ports,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = ngx.child.try_wait().unwrap() {
                    failures.push(format!("nginx exited ({status}):\n{}", ngx.logs()));
                    break;
                }
                let up = ngx
                    .ports
                    .iter()
                    .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok());
                if up {
                    if ngx.logs().contains("bind() to") {
                        // Someone else holds one of the ports; nginx is retrying.
                        failures.push(format!("port taken:\n{}", ngx.logs()));
                        break;
                    }
                    return ngx;
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on {:?} within 20 s:\n{}",
                    ngx.ports,
                    ngx.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            // `ngx` is dropped (killed) here.
            if !failures.last().unwrap().contains("Address already in use") {
                break;
            }
        }
        panic!(
            "could not start nginx with {}:\n{}",
            conf_path.display(),
            failures.join("\n---\n")
        );
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }

    /// The last lines of nginx's error log and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in ["stderr.log", "error.log"] {
            let text = std::fs::read(self.dir.join(f)).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!("--- nginx {f} (last {} lines) ---\n", tail.len()));
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with `from` replaced by `to`, which must occur exactly once in the
/// shipped `file` (so a rewrite can never silently miss).
pub fn replace_once(text: &str, from: &str, to: &str, file: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{file} must contain `{from}` exactly once (the stack tests rewrite it)"
    );
    text.replacen(from, to, 1)
}

/// The asset tree's type table, which the shipped locations include as
/// `assetgate/assetgate-types.conf` (relative to nginx's configuration directory).
pub const TYPES: &str = "assetgate-types.conf";

/// Links the shipped type table to `conf_dir/assetgate/`, where the shipped
/// locations include it from.
pub fn link_types(conf_dir: &Path) {
    std::fs::create_dir_all(conf_dir.join("assetgate")).unwrap();
    std::os::unix::fs::symlink(
        super::repo().join("nginx").join(TYPES),
        conf_dir.join("assetgate").join(TYPES),
    )
    .unwrap();
}

/// What the stack tests rewrite in the shipped files.
pub const SHIPPED_GATE_ADDR: &str = "server 127.0.0.1:9750;"; // assetgate-upstream.conf
/// tusd's address in assetgate.conf.example.
pub const SHIPPED_TUSD_ADDR: &str = "server 127.0.0.1:1080;";
/// The listen line of assetgate.conf.example.
pub const SHIPPED_LISTEN: &str = "listen 80;";
/// The root of assetgate.conf.example.
pub const SHIPPED_ROOT: &str = "root /srv/assets;";

/// The shipped nginx/ files laid out under `ngx_dir/assetgate/` as the example's
/// `include`s expect them (the locations and uploads files verbatim, symlinked;
/// the upstream with the gate's address), and the example's text with tusd's
/// address and the root rewritten; its `listen 80;` is left for [`listen_on`].
pub fn shipped_site(ngx_dir: &Path, gate: SocketAddr, tusd_port: u16, root: &Path) -> String {
    let shipped = super::repo().join("nginx");
    std::fs::create_dir_all(ngx_dir.join("assetgate")).unwrap();
    for f in ["assetgate-locations.conf", "assetgate-uploads.conf", TYPES] {
        std::os::unix::fs::symlink(shipped.join(f), ngx_dir.join("assetgate").join(f)).unwrap();
    }
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    super::write(
        &ngx_dir.join("assetgate/assetgate-upstream.conf"),
        &replace_once(
            &upstream,
            SHIPPED_GATE_ADDR,
            &format!("server {gate};"),
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
    replace_once(
        &example,
        SHIPPED_ROOT,
        &format!("root {};", root.display()),
        "nginx/assetgate.conf.example",
    )
}

/// The example's server block listening on loopback `port`.
pub fn listen_on(example: &str, port: u16) -> String {
    replace_once(
        example,
        SHIPPED_LISTEN,
        &format!("listen 127.0.0.1:{port};"),
        "nginx/assetgate.conf.example",
    )
}

/// nginx with the shipped `nginx/assetgate-locations.conf` (verbatim) in one
/// server block rooted at `root`, and the shipped upstream file with its one
/// `server` line replaced by one per gate (the fleet: replicas behind one
/// upstream).
pub fn shipped_fleet(dir: &Path, gates: &[SocketAddr], root: &Path) -> Nginx {
    let shipped = super::repo().join("nginx");
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    let servers: Vec<String> = gates.iter().map(|g| format!("server {g};")).collect();
    super::write(
        &dir.join("assetgate/assetgate-upstream.conf"),
        &replace_once(
            &upstream,
            SHIPPED_GATE_ADDR,
            &servers.join("\n    "),
            "nginx/assetgate-upstream.conf",
        ),
    );
    link_types(dir);
    let locations = shipped.join("assetgate-locations.conf");
    let d = dir.display();
    Nginx::start(dir, 1, |ports| {
        nginx_main_conf(
            dir,
            &format!(
                "include {d}/assetgate/assetgate-upstream.conf;\n\
                 server {{\n\
                 listen 127.0.0.1:{};\n\
                 root {};\n\
                 include {};\n\
                 }}\n",
                ports[0],
                root.display(),
                locations.display()
            ),
        )
    })
}
