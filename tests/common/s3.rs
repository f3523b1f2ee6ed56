//! S3-compatible engines run by a test (issue 21): SeaweedFS (`weed mini`) and
//! versitygw (posix backend), each on loopback, on free ports, with its data
//! in a tempdir; the boto3 client of `tests/peers/s3_probe.py` to look at what
//! landed; and the socket check that proves a process talks to nothing but
//! 127.0.0.1. `scripts/s3-peers.sh` builds the engines into
//! `.peers/bin/weed-<version>` and `.peers/bin/versitygw-<version>`.
//!
//! SeaweedFS's `weed mini` reports anonymous statistics to the internet unless
//! told not to, and binds every interface unless told otherwise: the flags of
//! [`SeaweedFs::start`] (`-ip`, `-ip.bind`, `-master.telemetry=false`) are the
//! only way it is ever started here, and [`SeaweedFs::assert_loopback_only`]
//! checks the result.
#![allow(dead_code)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{free_port, kill_child, peer_python, peers_dir, repo, require_peer, wait_port};

/// The SeaweedFS Go module version `tests/peers/seaweedfs/go.mod` pins (no
/// semver tags upstream: a pseudo-version). Also in `scripts/s3-peers.sh`.
pub const SEAWEEDFS_VERSION: &str = "v0.0.0-20261109003541-7506e5f91cd6";
/// The versitygw release. Also in `scripts/s3-peers.sh`.
pub const VERSITYGW_VERSION: &str = "v1.8.0";

/// The region every engine and client here uses.
pub const REGION: &str = "us-east-1";

/// The `weed` binary, or the test fails with how to build it.
pub fn weed_bin() -> PathBuf {
    let name = format!("weed-{SEAWEEDFS_VERSION}");
    require_peer(
        &name,
        &[peers_dir().join("bin").join(&name)],
        "scripts/s3-peers.sh   (or: . scripts/s3-peers.sh && seaweedfs_install; \
         builds tests/peers/seaweedfs: cd tests/peers/seaweedfs && go build -o \
         ../../../.peers/bin/weed-v0.0.0-20261109003541-7506e5f91cd6 github.com/seaweedfs/seaweedfs/weed)",
    )
}

/// The `versitygw` binary, or the test fails with how to install it.
pub fn versitygw_bin() -> PathBuf {
    let name = format!("versitygw-{VERSITYGW_VERSION}");
    require_peer(
        &name,
        &[peers_dir().join("bin").join(&name)],
        "scripts/s3-peers.sh   (or: d=$(mktemp -d) && GOBIN=$d CGO_ENABLED=0 go install \
         github.com/versity/versitygw/cmd/versitygw@v1.8.0 && mv \"$d/versitygw\" \
         .peers/bin/versitygw-v1.8.0)",
    )
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    SeaweedFs,
    Versitygw,
}

/// A running S3 engine on loopback, killed on drop; one bucket created.
pub struct S3Engine {
    pub engine: Engine,
    child: Option<Child>,
    /// The S3 port on 127.0.0.1.
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    /// A read-only identity (SeaweedFS: action `Read` only; versitygw: the
    /// main one, it has no second identity from the command line).
    pub read_access_key: String,
    pub read_secret_key: String,
    /// Created at start.
    pub bucket: String,
    /// Data directory and log.
    pub dir: tempfile::TempDir,
    /// Files it leaves outside `dir`, removed on drop.
    litter: Vec<PathBuf>,
}

/// Generous: `weed mini` starts master, volume, filer, S3 and admin in turn.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Starts tried with fresh ports before a test fails ([`S3Engine::seaweedfs`]).
const START_ATTEMPTS: usize = 3;

impl S3Engine {
    /// SeaweedFS `weed mini` with [`seaweedfs_args`] (loopback, telemetry
    /// off), checked by [`check_seaweedfs_args`] before it runs; one admin
    /// identity from an identities file, no anonymous access.
    pub fn seaweedfs(bucket: &str) -> S3Engine {
        Self::start_with_retries(|| Self::try_seaweedfs(bucket))
    }

    /// Starts an engine, again with fresh ports (at most [`START_ATTEMPTS`]
    /// times) when an attempt lost a port to another process: the ports are
    /// chosen by binding port 0 and releasing it, and another test starting
    /// at the same moment may take one before the engine binds it (seen under
    /// load: SeaweedFS's filer "address already in use", then the test waited
    /// the whole start timeout). What the tests check is never retried: only
    /// the start, and every failed attempt's log is kept in the final panic.
    fn start_with_retries(mut attempt: impl FnMut() -> Result<S3Engine, String>) -> S3Engine {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match attempt() {
                Ok(e) => return e,
                Err(why) => {
                    eprintln!(
                        "S3 engine start failed, trying again with fresh ports: {}",
                        why.lines().next().unwrap_or("")
                    );
                    failures.push(why);
                }
            }
        }
        panic!(
            "the S3 engine did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_seaweedfs(bucket: &str) -> Result<S3Engine, String> {
        let dir = tempfile::tempdir().unwrap();
        let (access_key, secret_key) = ("assetgate-test".to_string(), super::random_secret());
        let reader = ("assetgate-reader".to_string(), super::random_secret());
        let identities = serde_json::json!({"identities": [{
            "name": "assetgate-test",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }, {
            "name": "assetgate-reader",
            "credentials": [{"accessKey": reader.0, "secretKey": reader.1}],
            "actions": ["Read"],
        }]});
        let config = dir.path().join("identities.json");
        std::fs::write(&config, identities.to_string()).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = free_port();
        let args = seaweedfs_args(dir.path(), &data, &config, port);
        // The guard runs before weed does: without these flags it never starts.
        if let Err(why) = check_seaweedfs_args(&args) {
            panic!("refusing to start SeaweedFS: {why} ({args:?})");
        }
        // `weed mini` puts its gRPC sockets at fixed /tmp paths (named by
        // port); they outlive a SIGKILL, so drop removes them.
        let litter = ["master", "volume", "filer", "s3", "admin"]
            .into_iter()
            .filter_map(|svc| {
                let flag = format!("-{svc}.port.grpc=");
                let port = args.iter().find_map(|a| a.strip_prefix(&flag))?;
                Some(PathBuf::from(format!("/tmp/seaweedfs-{svc}-grpc-{port}.sock")))
            })
            .collect();
        let keys = (access_key, secret_key, reader);
        Self::spawn(
            Engine::SeaweedFs,
            weed_bin(),
            args,
            dir,
            port,
            keys,
            bucket,
            litter,
        )
    }

    /// versitygw with its posix backend over `<dir>/root`, on 127.0.0.1 only,
    /// root credentials from the command line.
    pub fn versitygw(bucket: &str) -> S3Engine {
        Self::start_with_retries(|| Self::try_versitygw(bucket))
    }

    fn try_versitygw(bucket: &str) -> Result<S3Engine, String> {
        let dir = tempfile::tempdir().unwrap();
        let (access_key, secret_key) = ("assetgate-test".to_string(), super::random_secret());
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let args: Vec<String> = vec![
            format!("--access={access_key}"),
            format!("--secret={secret_key}"),
            format!("--region={REGION}"),
            format!("--port=127.0.0.1:{port}"),
            "posix".into(),
            root.display().to_string(),
        ];
        let reader = (access_key.clone(), secret_key.clone());
        let keys = (access_key, secret_key, reader);
        Self::spawn(
            Engine::Versitygw,
            versitygw_bin(),
            args,
            dir,
            port,
            keys,
            bucket,
            Vec::new(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        engine: Engine,
        bin: PathBuf,
        args: Vec<String>,
        dir: tempfile::TempDir,
        port: u16,
        (access_key, secret_key, (read_access_key, read_secret_key)): (String, String, (String, String)),
        bucket: &str,
        litter: Vec<PathBuf>,
    ) -> Result<S3Engine, String> {
        let log = File::create(dir.path().join("engine.log")).unwrap();
        let child = Command::new(bin)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the S3 engine");
        let e = S3Engine {
            engine,
            child: Some(child),
            port,
            access_key,
            secret_key,
            read_access_key,
            read_secret_key,
            bucket: bucket.to_string(),
            dir,
            litter,
        };
        // Listening, or exited (a port lost to another process: retried by
        // the caller), or neither within the timeout (a failure).
        let mut e = e;
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while !wait_port(([127, 0, 0, 1], port).into(), Duration::from_millis(250)) {
            if let Ok(Some(status)) = e.child.as_mut().expect("running").try_wait() {
                return Err(format!(
                    "{engine:?} exited ({status}) before listening on 127.0.0.1:{port}:\n{}",
                    e.log()
                ));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{engine:?} did not listen on 127.0.0.1:{port} ({args:?}):\n{}",
                e.log()
            );
        }
        // The S3 port may accept before the filer behind it is ready: retry
        // creating the bucket for a while (a state, not a timing assertion).
        let mut last = Value::Null;
        for _ in 0..120 {
            last = e.client(&["mkbucket", bucket]).unwrap_or_else(Value::String);
            if last["ok"] == true {
                return Ok(e);
            }
            if let Ok(Some(status)) = e.child.as_mut().expect("running").try_wait() {
                return Err(format!(
                    "{engine:?} exited ({status}) before the bucket was made:\n{}",
                    e.log()
                ));
            }
            // A part of weed mini that lost its port logs it and stays down
            // while the S3 port answers: start again with fresh ports.
            if e.log().contains("address already in use") {
                return Err(format!("{engine:?} lost a port:\n{}", e.log()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{engine:?}: cannot create bucket {bucket}: {last}\n{}", e.log());
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The engine's pid (for [`sockets_of`]).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// The environment tusd's s3store (aws-sdk-go-v2) needs for this engine:
    /// region, credentials, checksums only when required (the SDK's default
    /// trailing checksums are refused by some engines).
    pub fn tusd_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
            ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required"),
            // No shared config/credentials files, no instance metadata lookups.
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `tests/peers/s3_probe.py … args`: its JSON, or its stderr.
    pub fn client(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(peer_python())
            .arg(repo().join("tests/peers/s3_probe.py"))
            .args(["--endpoint", &self.endpoint()])
            .args(["--access-key", &self.access_key])
            .args(["--secret-key", &self.secret_key])
            .args(["--region", REGION])
            .args(args)
            .output()
            .expect("run tests/peers/s3_probe.py");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Like [`client`](Self::client), failing the test on an error.
    pub fn must(&self, args: &[&str]) -> Value {
        self.client(args)
            .unwrap_or_else(|e| panic!("s3_probe.py {args:?} failed: {e}\n{}", self.log()))
    }

    /// Fails the test unless every inet socket the engine holds is on
    /// loopback (see [`non_loopback`]); returns what it saw.
    pub fn assert_loopback_only(&self) -> Vec<Socket> {
        let seen = sockets_of(self.pid());
        let bad = non_loopback(&seen);
        assert!(
            bad.is_empty(),
            "{:?} holds sockets off loopback: {bad:#?}\n(all: {seen:#?})",
            self.engine
        );
        seen
    }
}

/// The `weed mini` command line: every service bound to 127.0.0.1 on a free
/// port (explicit ports: its defaults are fixed numbers that would collide
/// between tests, and derived gRPC ports (+10000) can overflow), telemetry
/// off, WebDAV, Iceberg, Lance and the admin UI off, its sockets in `dir`.
pub fn seaweedfs_args(dir: &Path, data: &Path, identities: &Path, s3_port: u16) -> Vec<String> {
    let p = |flag: &str| format!("-{flag}={}", free_port());
    vec![
        "mini".into(),
        format!("-dir={}", data.display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        // Never omit: the default posts statistics to the internet.
        "-master.telemetry=false".into(),
        format!("-s3.config={}", identities.display()),
        format!("-s3.port={s3_port}"),
        p("s3.port.grpc"),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        p("master.port"),
        p("master.port.grpc"),
        p("filer.port"),
        p("filer.port.grpc"),
        p("volume.port"),
        p("volume.port.grpc"),
        p("admin.port"),
        p("admin.port.grpc"),
        "-admin.port.legacy=0".into(),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        format!("-filer.localSocket={}", dir.join("filer.sock").display()),
        format!("-s3.localSocket={}", dir.join("s3.sock").display()),
    ]
}

/// What a `weed mini` command line must say before it may run: exactly
/// `-ip=127.0.0.1`, `-ip.bind=127.0.0.1` and `-master.telemetry=false` for
/// those settings (no other telemetry, `-ip`, bind, metrics-address or
/// public-URL flag), and no wildcard address anywhere.
pub fn check_seaweedfs_args(args: &[String]) -> Result<(), String> {
    const REQUIRED: [&str; 3] = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"];
    for want in REQUIRED {
        let n = args.iter().filter(|a| *a == want).count();
        if n != 1 {
            return Err(format!("`{want}` occurs {n} times (must be exactly once)"));
        }
    }
    let risky = [
        "telemetry",
        ".ip",
        "-ip",
        "Ip",
        "bind",
        "Bind",
        "metrics.address",
        "publicUrl",
        "externalUrl",
    ];
    for a in args.iter().filter(|a| !REQUIRED.contains(&a.as_str())) {
        let name = a.split('=').next().unwrap_or(a);
        if risky.iter().any(|r| name.contains(r)) {
            return Err(format!("`{a}` touches where SeaweedFS binds or reports"));
        }
        if a.contains("0.0.0.0") || a.contains("[::]") {
            return Err(format!("`{a}` names a wildcard address"));
        }
    }
    Ok(())
}

impl Drop for S3Engine {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        for f in &self.litter {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// One inet socket of a process, from `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub table: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's state number (`0A` = listening for TCP).
    pub state: u8,
}

/// Every inet socket `pid` has open: the socket inodes of `/proc/<pid>/fd`
/// looked up in the `/proc/<pid>/net/` tables (which list the whole network
/// namespace, hence the inode filter). Threads share the fd table, so this is
/// the whole process. A snapshot: call it more than once while the process
/// works.
pub fn sockets_of(pid: u32) -> Vec<Socket> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.contains(f[9]) {
                out.push(Socket {
                    table,
                    local: parse_proc_addr(f[1]),
                    remote: parse_proc_addr(f[2]),
                    state: u8::from_str_radix(f[3], 16).unwrap(),
                });
            }
        }
    }
    out
}

/// The sockets that are not loopback-only: a local address that is not
/// loopback (a wildcard listener counts: it accepts from every interface), or
/// a peer that is neither loopback nor unset (an unconnected or listening
/// socket has `0.0.0.0:0`).
pub fn non_loopback(sockets: &[Socket]) -> Vec<Socket> {
    let loopback = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    sockets
        .iter()
        .filter(|s| !loopback(s.local.ip()) || !(loopback(s.remote.ip()) || s.remote.ip().is_unspecified()))
        .cloned()
        .collect()
}

/// `0100007F:1F90` (IPv4: one 32-bit word in host order, little-endian here)
/// or 32 hex digits (IPv6: four such words), then the port in hex.
fn parse_proc_addr(s: &str) -> SocketAddr {
    let (ip, port) = s.split_once(':').expect("addr:port");
    let port = u16::from_str_radix(port, 16).unwrap();
    let word = |h: &str| u32::from_str_radix(h, 16).unwrap().to_le_bytes();
    let ip = if ip.len() == 8 {
        IpAddr::V4(Ipv4Addr::from(word(ip)))
    } else {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8]));
        }
        IpAddr::V6(Ipv6Addr::from(b))
    };
    SocketAddr::new(ip, port)
}
