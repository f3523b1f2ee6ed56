//! A real `redis-server` (Debian package `redis-server`) run by a test: loopback,
//! a free port, no persistence (`--save ""`, no AOF), its files in a tempdir.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The redis-server binary.
pub fn redis_server() -> PathBuf {
    super::require_peer(
        "redis-server",
        &[PathBuf::from("/usr/bin/redis-server")],
        "apt-get install -y redis-server",
    )
}

/// A running redis-server, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free loopback port.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RedisServer {
            child: None,
            port: super::free_port(),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new(redis_server())
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        assert!(
            super::wait_port(self.addr(), Duration::from_secs(10)),
            "redis-server did not listen on {}",
            self.addr()
        );
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL: a crash; nothing is saved).
    pub fn kill(&mut self) {
        super::kill_child(&mut self.child);
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stalls it (SIGSTOP): connections stay open, the kernel still accepts
    /// and buffers what clients send, nothing is answered or executed until
    /// [`RedisServer::resume`]. A Redis busy with a slow command, a fork on a
    /// big dataset or a paused VM looks like this to its clients.
    pub fn stall(&self) {
        self.signal("-STOP");
    }

    /// Ends a [`RedisServer::stall`] (SIGCONT): Redis runs what was buffered.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let st = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .expect("run kill(1)");
        assert!(st.success(), "kill {sig} {pid}: {st}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        self.kill();
    }
}
