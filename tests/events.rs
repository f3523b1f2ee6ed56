//! Events to the application, end to end: the real binary, real
//! tusd v2.9.1 with tuspy and granite-minted tokens, and a receiver that
//! verifies every delivery with the real `standardwebhooks` PyPI library
//! (`tests/peers/events_receiver.py`; nothing assetgate wrote checks its own
//! signatures).
//!
//! - a finished tusd upload: one verified `upload.finalized`, size and sha256
//!   of the bytes, path, key, upload ID; no token, no secret in it;
//! - the receiver answers 500 three times, then 204: delivered, one
//!   `webhook-id` across the four attempts;
//! - receiver down while uploads finish, the daemon killed -9, both back:
//!   every event delivered;
//! - a conflict with an existing asset: `upload.failed` with `reason`; a
//!   duplicate post-finish of a delivered upload sends nothing;
//! - a tampered delivery (body, signature, secret) is rejected by the library;
//! - 1,000 events with the receiver down: RSS bounded, outbox on disk, all
//!   delivered when it returns;
//! - a full outbox refuses, keeps the upload, and catches up;
//! - `assetgate events list|show|retry --dead` with the daemon running (admin
//!   socket) and stopped (the file itself);
//! - bad `[events]` config: one line naming the key, exit 64.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hooks::{metadata, post, post_finish, tusd_upload};
use common::tusd::{Tusd, Version};
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The Standard Webhooks spec's example secret (24 bytes).
const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid one (rotation, wrong-secret checks).
const OTHER_SECRET: &str = "whsec_b3RoZXItc2VjcmV0LWtleS0wMTIzNDU2Nzg5";

/// The application: `tests/peers/events_receiver.py` on a fixed port (so it
/// can go down and come back where the daemon sends).
struct Receiver {
    child: Option<Child>,
    port: u16,
    record: PathBuf,
    fail_first: u32,
}

impl Receiver {
    fn new(dir: &Path) -> Receiver {
        Receiver {
            child: None,
            port: free_port(),
            record: dir.join("deliveries.jsonl"),
            fail_first: 0,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/assets", self.port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let mut child = Command::new(peer_python())
            .arg(repo().join("tests/peers/events_receiver.py"))
            .args(["--port", &self.port.to_string(), "--secret", EVENTS_SECRET])
            .arg("--record")
            .arg(&self.record)
            .args(["--fail-first", &self.fail_first.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening"), "receiver: {line:?}");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request it got, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The verified deliveries it accepted (204), bodies parsed.
    fn accepted(&self) -> Vec<(String, Value)> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 204)
            .map(|r| {
                assert_eq!(r["verified"], true);
                let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
                (r["webhook_id"].as_str().unwrap().to_string(), body)
            })
            .collect()
    }

    fn wait_accepted(&self, n: usize, timeout: Duration, logs: impl Fn() -> String) -> Vec<(String, Value)> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.accepted().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let got = self.accepted();
        assert!(
            got.len() >= n,
            "{} of {n} events delivered after {timeout:?}; requests: {:#?}\n{}",
            got.len(),
            self.requests().iter().rev().take(5).collect::<Vec<_>>(),
            logs()
        );
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// assetgate config: storage, upload_dir, `[events]` to `receiver` with short
/// backoffs (`extra_events` lines are appended to the section).
fn gate_config(
    port: u16,
    assets: &Path,
    uploads: &Path,
    receiver: &Receiver,
    events_dir: &Path,
    extra: &str,
) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\nlog_format = \"json\"\nlog_level = \"debug\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n\
         [storage]\nroot = {:?}\n\
         [tusd]\nupload_dir = {:?}\nupload_ids = \"server\"\n\
         [events]\nurl = {:?}\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n\
         initial_backoff = \"200ms\"\nmax_backoff = \"1s\"\ntimeout = \"2s\"\n{extra}\n",
        assets.display().to_string(),
        uploads.display().to_string(),
        receiver.url(),
        events_dir.display().to_string(),
    )
}

/// A gate with hooks posted by the test (no tusd): laid-out uploads, under IDs
/// the tests choose (`upload_ids = "server"` in [`gate_config`]; the signed IDs
/// are tests/tusd_hooks.rs's and tests/lifecycle.rs's subject).
struct Gate {
    dir: tempfile::TempDir,
    port: u16,
    cfg: PathBuf,
    daemon: Option<Daemon>,
    old_logs: Vec<String>,
    /// The outbox directory on a small tmpfs of its own, the daemon and the
    /// CLI run in its namespace ([`Gate::with_small_outbox_fs`]).
    outbox_fs: Option<tmpfs::Mounts>,
}

impl Gate {
    fn new(receiver: &Receiver, events_extra: &str, tusd_extra: &str) -> Gate {
        Self::build(receiver, events_extra, tusd_extra, None)
    }

    /// The outbox directory is a tmpfs of `size` (`mount -o size=`), that the
    /// test can fill ([`tmpfs::Mounts::fill`]).
    fn with_small_outbox_fs(receiver: &Receiver, events_extra: &str, tusd_extra: &str, size: &str) -> Gate {
        Self::build(receiver, events_extra, tusd_extra, Some(size))
    }

    fn build(receiver: &Receiver, events_extra: &str, tusd_extra: &str, outbox_fs: Option<&str>) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        for d in ["assets", "uploads", "events"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let outbox_fs = outbox_fs.map(|size| {
            tmpfs::Mounts::new(&[(&dir.path().join("events"), &format!("size={size},mode=0700"))])
        });
        let port = free_port();
        let mut text = gate_config(
            port,
            &dir.path().join("assets"),
            &dir.path().join("uploads"),
            receiver,
            &dir.path().join("events"),
            events_extra,
        );
        if !tusd_extra.is_empty() {
            text = text.replace("[events]", &format!("{tusd_extra}\n[events]"));
        }
        let cfg = dir.path().join("assetgate.toml");
        std::fs::write(&cfg, text).unwrap();
        let mut g = Gate {
            dir,
            port,
            cfg,
            daemon: None,
            old_logs: Vec::new(),
            outbox_fs,
        };
        g.start();
        g
    }

    /// The command prefix the daemon and the CLI run with.
    fn wrapper(&self) -> Vec<std::ffi::OsString> {
        self.outbox_fs
            .as_ref()
            .map(tmpfs::Mounts::enter)
            .unwrap_or_default()
    }

    fn start(&mut self) {
        let d = Daemon::start_file_via(&self.wrapper(), &self.cfg, &[], &[]);
        assert_eq!(d.addr.port(), self.port);
        self.daemon = Some(d);
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let d = self.daemon.take().unwrap();
        self.old_logs.extend(d.logs());
        drop(d);
    }

    fn d(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    fn assets(&self) -> PathBuf {
        self.dir.path().join("assets")
    }

    fn events_dir(&self) -> PathBuf {
        self.dir.path().join("events")
    }

    fn logs(&self) -> String {
        let mut l = self.old_logs.clone();
        if let Some(d) = &self.daemon {
            l.extend(d.logs());
        }
        l.join("\n")
    }

    /// Lays out a finished tusd upload and posts its post-finish.
    fn finish(&self, id: &str, key: &str, data: &[u8]) -> (PathBuf, Value) {
        // Served as signed: the type nginx serves the key's extension as
        // (application/octet-stream for an unlisted one).
        let ct = assetgate::policy::ServedTypes::builtin()
            .served_type(key)
            .to_string();
        let meta = metadata(UPLOAD_SECRET, key, "private", &ct, now() + 3600);
        let (path, info) = tusd_upload(&self.uploads(), id, &meta, data);
        let ev = post_finish(id, &meta, data.len(), &path, &info);
        let (status, _, body) = post(self.d().addr, ev.to_string().as_bytes(), &[]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        (path, ev)
    }

    fn metric(&self, series: &str) -> Option<u64> {
        let (_, _, body) = get(self.d().addr, "/metrics", &[]);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map(|v| v as u64)
    }

    fn wait_metric(&self, series: &str, want: u64, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end && self.metric(series) != Some(want) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.metric(series), Some(want), "{series}\n{}", self.logs());
    }

    fn wait_metric_at_least(&self, series: &str, want: u64, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end && self.metric(series).unwrap_or(0) < want {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.metric(series).unwrap_or(0) >= want,
            "{series}\n{}",
            self.logs()
        );
    }

    /// `assetgate --config … events ARGS`: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let wrapper = self.wrapper();
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let out = cmd
            .arg("--config")
            .arg(&self.cfg)
            .arg("events")
            .args(args)
            .env_remove("ASSETGATE_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn series(kind: &str, result: &str) -> String {
    format!("assetgate_events_total{{result=\"{result}\",type=\"{kind}\"}}")
}

/// No token, no secret, no upload-expires in what the application gets.
fn assert_clean(body: &str) {
    for s in [
        UPLOAD_SECRET,
        EVENTS_SECRET,
        "upload-token",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(!body.contains(s), "{s} in {body}");
    }
}

// ---------------------------------------------------------------------------

#[test]
fn a_finished_tusd_upload_yields_one_verified_finalized_event() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.start();
    let gate_port = free_port();
    let tusd = Tusd::start(
        Version::V2,
        tmp.path(),
        &format!("http://127.0.0.1:{gate_port}/tusd"),
        &[],
    );
    let assets = tmp.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    let cfg = tmp.path().join("assetgate.toml");
    write(
        &cfg,
        &gate_config(
            gate_port,
            &assets,
            &tusd.upload_dir,
            &receiver,
            &tmp.path().join("events"),
            "",
        ),
    );
    let gate = Daemon::start_file(&cfg, &[], &[]);
    let logs = || format!("{}\n--- tusd ---\n{}", gate.logs().join("\n"), tusd.log());

    let (file, data) = random_file(tmp.path(), "photo.bin", 300 * 1024 + 7);
    let key = "photos/été/plage.jpg";
    let out = Command::new(peer_python())
        .arg(repo().join("tests/peers/tus_upload.py"))
        .args(["--endpoint", &tusd.endpoint()])
        .arg("--file")
        .arg(&file)
        .args([
            "--key",
            key,
            "--content-type",
            "image/jpeg",
            "--visibility",
            "private",
        ])
        .args(["--secret", UPLOAD_SECRET, "--chunk-size", "65536"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(r["ok"], true, "{r}\n{}", logs());
    let upload_id = r["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();

    let got = receiver.wait_accepted(1, Duration::from_secs(20), logs);
    let (id, ev) = &got[0];
    assert!(id.starts_with("evt_"), "{id}");
    assert_eq!(ev["type"], "upload.finalized", "{ev}");
    let d = &ev["data"];
    assert_eq!(d["key"], key);
    assert_eq!(d["visibility"], "private");
    assert_eq!(d["content_type"], "image/jpeg");
    assert_eq!(d["size"], data.len() as u64);
    assert_eq!(d["sha256"], sha256_hex(&data), "sha256 of the bytes as published");
    assert_eq!(d["path"], format!("private/{key}"));
    assert_eq!(d["upload_id"], upload_id.as_str());
    assert!(d["finalized_at"].as_str().unwrap().ends_with('Z'), "{d}");
    assert!(ev["timestamp"].as_str().is_some());
    assert_eq!(
        std::fs::read(assets.join(format!("private/{key}"))).unwrap(),
        data
    );
    assert_clean(&receiver.requests()[0]["body"].to_string());

    // Exactly one: nothing more arrives, and the metrics agree.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.requests().len(), 1, "{:#?}", receiver.requests());
    let (_, _, m) = get(gate.addr, "/metrics", &[]);
    let m = String::from_utf8(m).unwrap();
    assert!(
        m.contains(&format!("{} 1", series("upload.finalized", "delivered"))),
        "{m}"
    );
    assert!(
        m.contains(&format!("{} 1", series("upload.finalized", "enqueued"))),
        "{m}"
    );
    assert!(
        m.contains("assetgate_events_outbox{state=\"pending\"} 0")
            || !m.contains("assetgate_events_outbox{state=\"pending\"} 1")
    );
    assert!(
        m.contains("assetgate_events_delivery_latency_seconds_count 1"),
        "{m}"
    );
}

#[test]
fn a_receiver_answering_500_three_times_gets_the_same_webhook_id_until_204() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.fail_first = 3;
    receiver.start();
    let gate = Gate::new(&receiver, "", "");
    let data = b"retry me".repeat(100);
    gate.finish("up-retry", "docs/retry.bin", &data);

    receiver.wait_accepted(1, Duration::from_secs(20), || gate.logs());
    let reqs = receiver.requests();
    let statuses: Vec<u64> = reqs.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![500, 500, 500, 204], "{reqs:#?}");
    let ids: std::collections::BTreeSet<&str> =
        reqs.iter().map(|r| r["webhook_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one webhook-id across retries: {ids:?}");
    assert!(
        reqs.iter().all(|r| r["verified"] == true),
        "every attempt is signed"
    );
    let bodies: std::collections::BTreeSet<&str> = reqs.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 1, "the same body on every attempt");
    gate.wait_metric(&series("upload.finalized", "retry"), 3, Duration::from_secs(5));
    gate.wait_metric(
        &series("upload.finalized", "delivered"),
        1,
        Duration::from_secs(5),
    );
    // One warning when deliveries started failing, one line when they came back.
    let logs = gate.logs();
    assert_eq!(logs.matches("event delivery failing").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("event deliveries succeed again").count(),
        1,
        "{logs}"
    );
}

#[test]
fn receiver_down_daemon_killed_both_back_every_event_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    let gate_port = free_port();
    let tusd = Tusd::start(
        Version::V2,
        tmp.path(),
        &format!("http://127.0.0.1:{gate_port}/tusd"),
        &[],
    );
    let assets = tmp.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    let cfg = tmp.path().join("assetgate.toml");
    let events_dir = tmp.path().join("events");
    write(
        &cfg,
        &gate_config(gate_port, &assets, &tusd.upload_dir, &receiver, &events_dir, ""),
    );
    let gate = Daemon::start_file(&cfg, &[], &[]);

    // The application is down while three uploads finish.
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..3 {
        let (file, data) = random_file(tmp.path(), &format!("f{i}.bin"), 20_000 + i);
        let key = format!("batch/{i}.bin");
        let out = Command::new(peer_python())
            .arg(repo().join("tests/peers/tus_upload.py"))
            .args(["--endpoint", &tusd.endpoint()])
            .arg("--file")
            .arg(&file)
            .args([
                "--key",
                &key,
                "--content-type",
                "application/octet-stream",
                "--visibility",
                "public",
            ])
            .args(["--secret", UPLOAD_SECRET])
            .output()
            .unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["ok"], true, "{r}");
        assert!(wait_for_file(&assets.join(format!("public/{key}")), Duration::from_secs(20)).is_some());
        expected.insert(key, sha256_hex(&data));
    }
    // A move is reported done (logged, counted) only once its event is on
    // disk; the file appearing is not enough (the commit follows the publish:
    // a kill in between leaves the upload for the reconciler).
    let moved = || {
        let (_, _, m) = get(gate.addr, "/metrics", &[]);
        String::from_utf8(m)
            .unwrap()
            .contains("assetgate_finalize_total{result=\"renamed\"} 3")
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !moved() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(moved(), "{}", gate.logs().join("\n"));
    assert!(events_dir.join("outbox.redb").is_file());
    let logs_before = gate.logs().join("\n");
    assert!(
        gate.wait_log("event delivery failing", Duration::from_secs(10)),
        "{logs_before}"
    );
    // kill -9, then everything back.
    drop(gate);
    receiver.start();
    let gate = Daemon::start_file(&cfg, &[], &[]);
    let got = receiver.wait_accepted(3, Duration::from_secs(20), || gate.logs().join("\n"));
    let mut seen = std::collections::BTreeMap::new();
    for (id, ev) in &got {
        assert_eq!(ev["type"], "upload.finalized");
        seen.insert(
            ev["data"]["key"].as_str().unwrap().to_string(),
            (id.clone(), ev["data"]["sha256"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(seen.len(), 3, "{got:#?}");
    for (key, sha) in &expected {
        assert_eq!(&seen[key].1, sha, "{key}");
    }
    let ids: std::collections::BTreeSet<_> = seen.values().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 3);
}

/// Regression (issue 20): the delivery loop ran "while ready", and `/readyz`
/// also says whether the state backend answers; with Redis unreachable at
/// start (or going down later) delivery stopped for good, events piling up
/// until a restart. It stops at shutdown only.
#[test]
fn events_are_delivered_while_the_state_backend_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.start();
    let nothing_there = free_port();
    let gate = Gate::new(
        &receiver,
        "",
        &format!("[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{nothing_there}/0\"\n"),
    );
    let (ready, _, _) = get(gate.d().addr, "/readyz", &[]);
    assert_eq!(ready, 503, "not ready: the state backend does not answer");
    gate.finish("down1", "down/a.bin", b"delivered anyway");
    let got = receiver.wait_accepted(1, Duration::from_secs(20), || gate.logs());
    assert_eq!(got[0].1["type"], "upload.finalized");
    assert_eq!(got[0].1["data"]["key"], "down/a.bin");
    assert!(!gate.logs().contains("event delivery stopped"), "{}", gate.logs());
}

#[test]
fn a_conflict_yields_upload_failed_and_a_duplicate_post_finish_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.start();
    let gate = Gate::new(&receiver, "", "");

    // An asset already there: the mover refuses, the upload stays.
    write(&gate.assets().join("private/taken.bin"), "the original");
    let (src, _) = gate.finish("up-conflict", "taken.bin", b"a newcomer");
    let got = receiver.wait_accepted(1, Duration::from_secs(20), || gate.logs());
    let ev = &got[0].1;
    assert_eq!(ev["type"], "upload.failed", "{ev}");
    assert_eq!(ev["data"]["reason"], "exists");
    assert_eq!(ev["data"]["key"], "taken.bin");
    assert_eq!(ev["data"]["upload_id"], "up-conflict");
    assert_eq!(ev["data"]["path"], "private/taken.bin");
    assert!(ev["data"].get("sha256").is_none(), "nothing was published: {ev}");
    assert!(src.exists(), "the upload stays in upload_dir");
    assert_eq!(
        std::fs::read_to_string(gate.assets().join("private/taken.bin")).unwrap(),
        "the original"
    );
    assert_clean(&receiver.requests()[0]["body"].to_string());

    // A published upload, then the same post-finish again (tusd retries,
    // a reconcile pass): AlreadyFinalized, same event id, nothing sent twice.
    let (_, ev) = gate.finish("up-once", "once.bin", b"only once");
    receiver.wait_accepted(2, Duration::from_secs(20), || gate.logs());
    let (status, _, _) = post(gate.d().addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(status, 200);
    gate.wait_metric(
        &series("upload.finalized", "duplicate"),
        1,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:#?}");
    assert_eq!(accepted[1].1["data"]["key"], "once.bin");
}

#[test]
fn a_tampered_delivery_is_rejected_by_the_standardwebhooks_library() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.start();
    let gate = Gate::new(&receiver, "", "");
    gate.finish("up-tamper", "t/amper.bin", b"signed bytes");
    receiver.wait_accepted(1, Duration::from_secs(20), || gate.logs());
    let delivery = receiver.requests().remove(0);

    let verify = |d: &Value, secret: &str| -> (bool, String) {
        let mut child = Command::new(peer_python())
            .arg(repo().join("tests/peers/verify_webhook.py"))
            .args(["--secret", secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(d.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // As delivered (a fresh timestamp: within the library's 5-minute window).
    assert_eq!(verify(&delivery, EVENTS_SECRET), (true, "verified\n".into()));

    let mut body = delivery.clone();
    body["body"] = Value::String(
        delivery["body"]
            .as_str()
            .unwrap()
            .replace("\"size\":12", "\"size\":13"),
    );
    assert_ne!(body["body"], delivery["body"]);
    let (ok, msg) = verify(&body, EVENTS_SECRET);
    assert!(!ok, "a changed body verifies: {msg}");

    let mut sig = delivery.clone();
    let s = delivery["webhook_signature"].as_str().unwrap().to_string();
    // Change the first character of the MAC: all six of its bits are data.
    // (The last one before `=` carries two padding bits that lenient decoders
    // ignore: `A=` -> `B=` decoded to the same MAC, 1 run in 16.)
    let (scheme, mac) = s.split_once(',').unwrap();
    let first = if mac.starts_with('A') { 'Q' } else { 'A' };
    let flipped = format!("{scheme},{first}{}", &mac[1..]);
    assert_ne!(flipped, s);
    sig["webhook_signature"] = Value::String(flipped);
    let (ok, msg) = verify(&sig, EVENTS_SECRET);
    assert!(!ok, "a changed signature verifies: {msg}");

    let mut id = delivery.clone();
    id["webhook_id"] = Value::String("evt_00000000000000000000000000000000".into());
    assert!(!verify(&id, EVENTS_SECRET).0, "another webhook-id verifies");

    assert!(!verify(&delivery, OTHER_SECRET).0, "another secret verifies");

    // And the receiver itself refuses a tampered request on the wire.
    let body = delivery["body"].as_str().unwrap().replace("t/amper", "t/ampere");
    let req = format!(
        "POST /hooks/assets HTTP/1.1\r\nHost: app\r\nConnection: close\r\nContent-Type: application/json\r\n\
         webhook-id: {}\r\nwebhook-timestamp: {}\r\nwebhook-signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        delivery["webhook_id"].as_str().unwrap(),
        delivery["webhook_timestamp"].as_str().unwrap(),
        delivery["webhook_signature"].as_str().unwrap(),
        body.len()
    );
    let (status, _, _) = raw_request(
        format!("127.0.0.1:{}", receiver.port).parse().unwrap(),
        req.as_bytes(),
    );
    assert_eq!(status, 401);
}

/// Threads of a process.
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// VmRSS / VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_thousand_events_with_the_receiver_down_stay_on_disk_in_bounded_memory() {
    const N: usize = 1000;
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    let gate = Gate::new(&receiver, "concurrency = 8", "reconcile_interval = 1");
    let pid = gate.d().child.id();
    let (idle_rss, _) = rss_kib(pid);

    // 1,000 finished uploads whose post-finish never came: the reconciler
    // publishes them, and each publish commits its event.
    for i in 0..N {
        let meta = metadata(
            UPLOAD_SECRET,
            &format!("bulk/{i:04}.bin"),
            "private",
            "application/octet-stream",
            now() + 3600,
        );
        tusd_upload(
            &gate.uploads(),
            &format!("bulk{i:04}"),
            &meta,
            format!("payload {i}").as_bytes(),
        );
    }
    let started = Instant::now();
    gate.wait_metric(
        &series("upload.finalized", "enqueued"),
        N as u64,
        Duration::from_secs(120),
    );
    let committed = started.elapsed();
    // Let a few retry rounds run against the absent receiver.
    std::thread::sleep(Duration::from_secs(3));
    let (rss_down, hwm_down) = rss_kib(pid);
    let threads_down = threads(pid);
    let outbox_bytes = std::fs::metadata(gate.events_dir().join("outbox.redb"))
        .unwrap()
        .len();
    assert!(gate.metric("assetgate_events_outbox{state=\"pending\"}").unwrap() > 0);

    receiver.start();
    let back = Instant::now();
    let got = receiver.wait_accepted(N, Duration::from_secs(120), || gate.logs());
    let drained = back.elapsed();
    let ids: std::collections::BTreeSet<_> = got.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), N, "every event once");
    let (rss_end, hwm_end) = rss_kib(pid);
    eprintln!(
        "FIGURES: {N} events: committed in {committed:?}; RSS idle {idle_rss} KiB, receiver down {rss_down} KiB (peak {hwm_down}), \
         after delivery {rss_end} KiB (peak {hwm_end}); threads {threads_down}; outbox file {outbox_bytes} bytes; all delivered {drained:?} after the receiver came back"
    );
    // Bounded: the queue lives on disk, the daemon holds batches of 2x concurrency.
    assert!(
        hwm_end < idle_rss + 32 * 1024,
        "peak RSS {hwm_end} KiB vs idle {idle_rss} KiB"
    );
    assert!(threads_down < 64, "{threads_down} threads");
    assert!(outbox_bytes < 16 * 1024 * 1024, "{outbox_bytes}");
    gate.wait_metric(
        "assetgate_events_outbox{state=\"pending\"}",
        0,
        Duration::from_secs(10),
    );
}

#[test]
fn a_full_outbox_refuses_keeps_the_upload_and_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    let gate = Gate::new(&receiver, "max_events = 1", "reconcile_interval = 1");
    gate.finish("up-first", "full/1.bin", b"first");
    gate.wait_metric(
        &series("upload.finalized", "enqueued"),
        1,
        Duration::from_secs(10),
    );
    let (second, _) = gate.finish("up-second", "full/2.bin", b"second");
    gate.wait_metric(&series("upload.finalized", "refused"), 1, Duration::from_secs(10));
    // Published, but held: its source stays until its event is committed.
    assert!(gate.assets().join("private/full/2.bin").is_file());
    assert!(second.exists(), "held in upload_dir:\n{}", gate.logs());
    assert!(gate.logs().contains("events outbox full"));

    receiver.start();
    let got = receiver.wait_accepted(2, Duration::from_secs(30), || gate.logs());
    let keys: std::collections::BTreeSet<_> = got
        .iter()
        .map(|(_, e)| e["data"]["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["full/1.bin", "full/2.bin"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(
        wait_until_gone(&second, Duration::from_secs(10)),
        "the source goes once committed"
    );
}

/// Issue 19, finding 6: one full disk used to wedge the outbox until a
/// restart (redb answers every call after an I/O error with "Previous I/O
/// error" until the file is reopened), with `/readyz` ready and nothing in the
/// metrics. The outbox is a 1 MiB tmpfs that really fills up. The first half
/// runs without the reconciler, so every commit is one the test asked for and
/// the counts are exact; the second half restarts with it.
#[test]
fn a_full_disk_under_the_outbox_holds_uploads_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    receiver.start();
    let mut gate = Gate::with_small_outbox_fs(&receiver, "", "reconcile_interval = 0", "1m");
    let available = "assetgate_events_outbox_available";
    let store_errors = series("upload.finalized", "store_error");
    let enqueued = series("upload.finalized", "enqueued");
    gate.finish("up-before", "disk/0.bin", b"before the disk filled");
    receiver.wait_accepted(1, Duration::from_secs(20), || gate.logs());
    assert_eq!(gate.metric(available), Some(1), "{}", gate.logs());
    let pid = gate.d().child.id();

    // Full: the commit fails, the upload is published but held in upload_dir
    // (the mover removes a source only once its event is committed).
    let filler = gate.outbox_fs.as_ref().unwrap().fill(&gate.events_dir());
    let (held, held_ev) = gate.finish("up-full", "disk/1.bin", b"while the disk is full");
    gate.wait_metric(&store_errors, 1, Duration::from_secs(10));
    assert!(gate.assets().join("private/disk/1.bin").is_file());
    assert!(held.exists(), "held in upload_dir:\n{}", gate.logs());
    // Visible while it lasts; readiness stays (downloads and hooks are fine).
    assert_eq!(gate.metric(available), Some(0), "{}", gate.logs());
    assert_eq!(gate.metric("assetgate_events_outbox_unavailable_total"), Some(1));
    assert!(
        gate.logs().contains("events outbox unavailable"),
        "{}",
        gate.logs()
    );
    let (status, _, _) = get(gate.d().addr, "/readyz", &[]);
    assert_eq!(status, 200);
    // tusd retrying the post-finish while the disk is still full: held again.
    let (status, _, _) = post(gate.d().addr, held_ev.to_string().as_bytes(), &[]);
    assert_eq!(status, 200);
    gate.wait_metric(&store_errors, 2, Duration::from_secs(10));
    assert!(held.exists(), "held in upload_dir:\n{}", gate.logs());

    // Space back: the very next commit succeeds, in the same process.
    std::fs::remove_file(&filler).unwrap();
    let (after, _) = gate.finish("up-after", "disk/2.bin", b"after the space came back");
    gate.wait_metric(&enqueued, 2, Duration::from_secs(10));
    assert!(
        wait_until_gone(&after, Duration::from_secs(10)),
        "{}",
        gate.logs()
    );
    assert_eq!(gate.metric(&store_errors), Some(2), "{}", gate.logs());
    assert_eq!(gate.d().child.id(), pid, "no restart");
    assert_eq!(gate.metric(available), Some(1), "{}", gate.logs());
    // The held upload: the next post-finish (or reconcile pass) commits it.
    let (status, _, _) = post(gate.d().addr, held_ev.to_string().as_bytes(), &[]);
    assert_eq!(status, 200);
    assert!(wait_until_gone(&held, Duration::from_secs(10)), "{}", gate.logs());
    let got = receiver.wait_accepted(3, Duration::from_secs(30), || gate.logs());
    let keys: std::collections::BTreeSet<_> = got
        .iter()
        .map(|(_, e)| e["data"]["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        ["disk/0.bin", "disk/1.bin", "disk/2.bin"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );

    // A restart while the disk is full, now with the reconciler: the daemon
    // starts (not exit 64). Whether this file opens and takes a commit without
    // new space depends on the free pages it already has (here it does); if
    // not, the upload is held as above. Either way its event is delivered.
    let filler = gate.outbox_fs.as_ref().unwrap().fill(&gate.events_dir());
    gate.kill();
    let text = std::fs::read_to_string(&gate.cfg).unwrap();
    let text = text.replace("reconcile_interval = 0", "reconcile_interval = 1");
    std::fs::write(&gate.cfg, &text).unwrap();
    gate.start();
    let (status, _, _) = get(gate.d().addr, "/readyz", &[]);
    assert_eq!(status, 200);
    let (held, _) = gate.finish("up-restart", "disk/3.bin", b"after a restart on a full disk");
    assert!(wait_for_file(&gate.assets().join("private/disk/3.bin"), Duration::from_secs(10)).is_some());
    std::fs::remove_file(&filler).unwrap();
    assert!(wait_until_gone(&held, Duration::from_secs(10)), "{}", gate.logs());
    gate.wait_metric(available, 1, Duration::from_secs(10));
    receiver.wait_accepted(4, Duration::from_secs(30), || gate.logs());

    // The first start of an outbox on a full disk (a new file needs space,
    // so this one cannot open): the daemon starts and says why events are
    // degraded; the first use after the space is back opens the file.
    let filler = gate.outbox_fs.as_ref().unwrap().fill(&gate.events_dir());
    gate.kill();
    let fresh = gate.events_dir().join("fresh");
    std::fs::write(
        &gate.cfg,
        text.replace(
            &format!("dir = {:?}", gate.events_dir().display().to_string()),
            &format!("dir = {:?}", fresh.display().to_string()),
        ),
    )
    .unwrap();
    gate.start();
    assert!(
        gate.d()
            .wait_log("events outbox unavailable at start", Duration::from_secs(10)),
        "{}",
        gate.logs()
    );
    assert_eq!(gate.metric(available), Some(0), "{}", gate.logs());
    let (status, _, _) = get(gate.d().addr, "/readyz", &[]);
    assert_eq!(status, 200);
    let (held, _) = gate.finish("up-fresh", "disk/4.bin", b"first start on a full disk");
    gate.wait_metric_at_least(&store_errors, 1, Duration::from_secs(10));
    assert!(gate.assets().join("private/disk/4.bin").is_file());
    assert!(held.exists(), "held in upload_dir:\n{}", gate.logs());
    assert_eq!(gate.metric(available), Some(0), "{}", gate.logs());
    std::fs::remove_file(&filler).unwrap();
    gate.wait_metric(available, 1, Duration::from_secs(10));
    assert!(wait_until_gone(&held, Duration::from_secs(10)), "{}", gate.logs());
    let got = receiver.wait_accepted(5, Duration::from_secs(30), || gate.logs());
    let mut keys: Vec<_> = got
        .iter()
        .map(|(_, e)| e["data"]["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys,
        [
            "disk/0.bin",
            "disk/1.bin",
            "disk/2.bin",
            "disk/3.bin",
            "disk/4.bin"
        ]
    );
}

fn wait_until_gone(p: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if !p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn events_cli_lists_shows_and_retries_dead_events_with_the_daemon_up_and_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::new(tmp.path());
    let mut gate = Gate::new(&receiver, "max_age = \"1s\"", "");
    gate.finish("up-dead", "cli/dead.bin", b"nobody listens");
    gate.wait_metric(&series("upload.finalized", "dead"), 1, Duration::from_secs(15));
    // The metric counts before the (queued) log line is written: wait for it.
    assert!(
        gate.d()
            .wait_log("event given up after events.max_age", Duration::from_secs(5)),
        "{}",
        gate.logs()
    );

    // Daemon running: the CLI goes through the admin socket.
    let (code, out, err) = gate.cli(&["list", "--state", "dead"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("cli/dead.bin"))
        .unwrap_or_else(|| panic!("{out}"));
    let id = line.split('\t').next().unwrap().to_string();
    assert!(line.contains("\tdead\t") && line.contains("Connect"), "{line}");
    let (code, out, _) = gate.cli(&["show", &id]);
    assert_eq!(code, Some(0));
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["state"], "dead");
    assert!(shown["attempts"].as_u64().unwrap() >= 1);
    assert!(
        shown["last_error"].as_str().unwrap().contains("Connect"),
        "{shown}"
    );
    assert_clean(&out);
    assert_eq!(gate.cli(&["show", "evt_nosuchevent"]).0, Some(1));

    receiver.start();
    let (code, out, err) = gate.cli(&["retry", "--dead"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "1 dead events queued again"),
        "{err}"
    );
    let got = receiver.wait_accepted(1, Duration::from_secs(10), || gate.logs());
    assert_eq!(got[0].0, id);
    // The receiver answers before the daemon records the delivery (at least
    // once): wait for the record (the metric counts after it) before the kill.
    gate.wait_metric(
        &series("upload.finalized", "delivered"),
        1,
        Duration::from_secs(10),
    );

    // Daemon stopped: the CLI opens the outbox file itself.
    gate.kill();
    let (code, out, err) = gate.cli(&["show", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("delivered at"), "{out}");
    let (code, out, _) = gate.cli(&["list"]);
    assert_eq!(
        (code, out.lines().count()),
        (Some(0), 1),
        "only the header: {out}"
    );
    assert_eq!(gate.cli(&["retry", &id]).0, Some(1), "already delivered");
}

#[test]
fn bad_events_config_is_refused_at_start_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a-file"), "not a directory").unwrap();
    let base = |url: &str, secret: &str, dir: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n[link]\nsecrets = [\"{LINK_SECRET}\"]\n\
             [events]\nurl = \"{url}\"\nsecret = \"{secret}\"\ndir = \"{dir}\"\n"
        )
    };
    let good_dir = tmp.path().join("events").display().to_string();
    let cases = [
        (
            "not a whsec secret",
            base(
                "http://127.0.0.1:9/h",
                "plain-shared-secret-0123456789",
                &good_dir,
            ),
            "events.secret",
            "plain-shared",
        ),
        (
            "URL without scheme",
            base(
                "app.internal:8000/hooks/assets?token=s3cr3t",
                EVENTS_SECRET,
                &good_dir,
            ),
            "events.url",
            "s3cr3t",
        ),
        (
            "unwritable dir",
            base(
                "http://127.0.0.1:9/h",
                EVENTS_SECRET,
                &tmp.path().join("a-file/events").display().to_string(),
            ),
            "events.dir",
            "MfKQ9r8",
        ),
    ];
    for (what, text, key, never) in cases {
        let cfg = tmp.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        // A daemon that does not refuse would run forever: bounded wait.
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("serve")
            .env_remove("ASSETGATE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.starts_with(&format!("config error: {key}")), "{what}: {err}");
        assert!(!err.contains(never), "{what}: shows a secret: {err}");
        let why = match key {
            "events.secret" => "not a Standard Webhooks secret",
            "events.url" => "no scheme",
            _ => "cannot open the outbox",
        };
        assert!(err.contains(why), "{what}: {err}");
    }
}

#[test]
fn the_fastapi_example_verifies_records_the_asset_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = Command::new(peer_python())
        .args(["-m", "uvicorn", "--app-dir"])
        .arg(repo().join("examples"))
        .args([
            "fastapi_receiver:app",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--log-level", "warning"])
        .env("ASSETGATE_EVENTS_SECRET", EVENTS_SECRET)
        .env("ASSETS_DB", tmp.path().join("assets.sqlite3"))
        .stderr(std::fs::File::create(tmp.path().join("uvicorn.log")).unwrap())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _app = Kill(app);
    let app_addr = format!("127.0.0.1:{port}").parse().unwrap();
    // FastAPI's imports take seconds on a loaded 2-core machine.
    assert!(
        wait_port(app_addr, Duration::from_secs(90)),
        "uvicorn did not start: {}",
        std::fs::read_to_string(tmp.path().join("uvicorn.log")).unwrap_or_default()
    );
    let mut receiver = Receiver::new(tmp.path());
    receiver.port = port; // the example, not the test receiver
    let gate = Gate::new(&receiver, "", "");

    let data = b"%PDF-1.7 an invoice".to_vec();
    gate.finish("up-app", "invoices/2026/001.pdf", &data);
    let asset = |key: &str| {
        let (status, _, body) = get(app_addr, &format!("/assets/{key}"), &[]);
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let end = Instant::now() + Duration::from_secs(20);
    while asset("invoices/2026/001.pdf").0 != 200 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, a) = asset("invoices/2026/001.pdf");
    assert_eq!(status, 200, "{}", gate.logs());
    assert_eq!(a["state"], "ready");
    assert_eq!(a["sha256"], sha256_hex(&data));
    assert_eq!(a["size"], data.len() as u64);
    assert_eq!(a["path"], "private/invoices/2026/001.pdf");

    // The same event again, signed by the library (a redelivery): 204, no
    // second record. A tampered one: 401.
    let script = r#"
import json, sys, urllib.request, datetime
from standardwebhooks.webhooks import Webhook
port, secret = sys.argv[1], sys.argv[2]
body = json.dumps({"type": "upload.finalized", "timestamp": "x", "data": {"key": "invoices/2026/001.pdf",
    "visibility": "private", "content_type": "application/pdf", "size": 1, "sha256": "00", "path": "p",
    "upload_id": "up-app", "finalized_at": "x"}})
def send(msg_id, data, sig=None):
    ts = datetime.datetime.now(datetime.timezone.utc)
    sig = sig or Webhook(secret).sign(msg_id, ts, data)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/assets", data=data.encode(), method="POST",
        headers={"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": sig})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
print(send(sys.argv[3], body), send("evt_forged", body, "v1,AAAA"))
"#;
    let (_, _, count) = get(app_addr, "/events/count", &[]);
    let before: Value = serde_json::from_slice(&count).unwrap();
    assert_eq!(before["events"], 1);
    // The id assetgate used (type + upload ID, see src/events/payload.rs);
    // `events show` confirms it is the delivered one.
    let first_id = "evt_".to_string()
        + &hex::encode(&Sha256::digest(b"assetgate-event\0upload.finalized\0up-app")[..16]);
    assert!(
        gate.cli(&["show", &first_id]).1.contains("delivered at"),
        "the id the daemon used"
    );
    let out = Command::new(peer_python())
        .args(["-c", script, &port.to_string(), EVENTS_SECRET, &first_id])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "204 401", "{out:?}");
    let (_, _, count) = get(app_addr, "/events/count", &[]);
    assert_eq!(
        serde_json::from_slice::<Value>(&count).unwrap()["events"],
        1,
        "idempotent by webhook-id"
    );
    let (_, a2) = asset("invoices/2026/001.pdf");
    assert_eq!(a2["sha256"], sha256_hex(&data), "the redelivery changed nothing");

    // A conflicting newcomer: upload.failed, and the ready asset stays ready.
    gate.finish("up-app-2", "invoices/2026/001.pdf", b"another file");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, c) = get(app_addr, "/events/count", &[]);
        if serde_json::from_slice::<Value>(&c).unwrap()["events"] == 2 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, a3) = asset("invoices/2026/001.pdf");
    assert_eq!(a3["state"], "ready", "{a3}");
    assert_eq!(a3["sha256"], sha256_hex(&data));
}
