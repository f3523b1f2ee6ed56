//! The S3-compatible engines of issue 21, as real processes on loopback
//! (groundwork: no assetgate S3 backend yet). What these tests pin down:
//! - SeaweedFS (`weed mini`, started only by `common::s3`) holds sockets on
//!   127.0.0.1 and nowhere else: no wildcard listener, no peer off loopback
//!   (its default telemetry would post to the internet).
//! - tusd v2.9.1's s3store against each engine: a tus upload lands as the
//!   object `<prefix><objectId>` with the bytes sent and the tus metadata as
//!   S3 user metadata, the upload ID is `objectId+multipartId`, and the hooks'
//!   `Storage` is exactly `{"Type":"s3store","Bucket":…,"Key":…}`, the same
//!   in pre-finish and post-finish.
//! - What each engine does with conditional PutObject, CompleteMultipartUpload,
//!   CopyObject, RenameObject and the portable UploadPartCopy publish, judged
//!   by the effect (docs/s3-groundwork.md has the table).
//!
//! - The shipped `tusd/tusd-s3.sh` command line works as shipped (versitygw).
//!
//! Peers: `scripts/s3-peers.sh` builds the engines; a missing one fails the
//! test with the command that installs it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest;

use common::s3::{check_seaweedfs_args, non_loopback, seaweedfs_args, sockets_of, Engine, S3Engine, Socket};
use common::tusd::{Tusd, Version};

/// The check itself: a wildcard listener (what `weed mini` opens without
/// `-ip.bind=127.0.0.1`) and a peer off loopback (what telemetry would be) are
/// caught; loopback sockets are not. Uses this test process's own sockets and
/// synthetic entries: SeaweedFS itself is never run off loopback.
#[test]
fn the_loopback_check_catches_wildcard_listeners_and_remote_peers() {
    let wildcard = TcpListener::bind("0.0.0.0:0").unwrap();
    let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
    let wildcard6 = TcpListener::bind("[::]:0").ok(); // where IPv6 exists
    let (wport, lport) = (
        wildcard.local_addr().unwrap().port(),
        loopback.local_addr().unwrap().port(),
    );
    let seen = sockets_of(std::process::id());
    assert!(
        seen.iter().any(|s| s.local.port() == lport),
        "the loopback listener is not among this process's sockets: {seen:#?}"
    );
    let bad = non_loopback(&seen);
    assert!(
        bad.iter().any(|s| s.local.port() == wport),
        "wildcard listener on port {wport} not caught: {seen:#?}"
    );
    if let Some(l) = &wildcard6 {
        let p = l.local_addr().unwrap().port();
        assert!(bad.iter().any(|s| s.local.port() == p), "[::]:{p} not caught");
    }
    assert!(
        !bad.iter().any(|s| s.local.port() == lport),
        "a loopback listener was flagged: {bad:#?}"
    );

    let sock = |local: &str, remote: &str| Socket {
        table: "tcp",
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state: 1,
    };
    let telemetry_like = sock("127.0.0.1:40000", "203.0.113.7:443");
    let internal = sock("127.0.0.1:40001", "127.0.0.1:8333");
    let mapped = sock("[::ffff:127.0.0.1]:40002", "[::1]:8333");
    assert_eq!(
        non_loopback(&[telemetry_like.clone(), internal, mapped]),
        vec![telemetry_like]
    );
}

/// The guard `S3Engine::seaweedfs` runs before weed: the command line it
/// builds passes; without `-master.telemetry=false`, with telemetry switched
/// back on or pointed elsewhere, bound to a wildcard or to another `-ip`, it
/// is refused (and weed is never started).
#[test]
fn seaweedfs_never_starts_without_loopback_and_telemetry_off() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let args = seaweedfs_args(p, &p.join("data"), &p.join("identities.json"), 8333);
    assert_eq!(check_seaweedfs_args(&args), Ok(()));

    let without = |flag: &str| -> Vec<String> { args.iter().filter(|a| *a != flag).cloned().collect() };
    let with = |extra: &str| -> Vec<String> {
        let mut a = args.clone();
        a.push(extra.to_string());
        a
    };
    let refused = [
        without("-master.telemetry=false"),
        without("-ip.bind=127.0.0.1"),
        without("-ip=127.0.0.1"),
        with("-master.telemetry=true"),
        with("-master.telemetry.url=http://127.0.0.1:1/"),
        with("-master.telemetry=false"), // twice: which one wins is weed's business
        with("-ip.bind=0.0.0.0"),
        with("-admin.worker.ip=0.0.0.0"),
        with("-s3.metricsIp=10.0.0.1"),
        with("-admin.allowInsecureBind"),
        with("-volume.publicUrl=example.org:8080"),
    ];
    for bad in refused {
        assert!(check_seaweedfs_args(&bad).is_err(), "accepted: {bad:?}");
    }
}

/// SeaweedFS started as `common::s3` starts it: every socket it holds, sampled
/// after start, during S3 traffic and after it, is on loopback; and the
/// snapshot is not vacuous (its S3 listener and several others are in it).
#[test]
fn seaweedfs_holds_sockets_on_loopback_only() {
    let weed = S3Engine::seaweedfs("probe");
    let mut all = weed.assert_loopback_only();
    let s3_listener: SocketAddr = ([127, 0, 0, 1], weed.port).into();
    assert!(
        all.iter().any(|s| s.local == s3_listener && s.state == 0x0A),
        "no listening socket on {s3_listener} among {all:#?}"
    );
    let listeners = all.iter().filter(|s| s.state == 0x0A).count();
    assert!(
        listeners >= 4,
        "expected master, volume, filer and S3 listeners (and their gRPC), saw {listeners}: {all:#?}"
    );
    for round in 0..3 {
        let key = format!("loopback/{round}");
        let put = weed.must(&["capabilities", &weed.bucket, &key]);
        assert_eq!(put["ok"], true, "{put}");
        all.extend(weed.assert_loopback_only());
    }
    assert!(
        all.iter().any(|s| s.state != 0x0A && s.table.starts_with("tcp")),
        "no connection was ever seen (master/volume/filer talk over gRPC): {all:#?}"
    );
    let mut listening: Vec<String> = all
        .iter()
        .filter(|s| s.state == 0x0A)
        .map(|s| format!("{} {}", s.table, s.local))
        .collect();
    listening.sort();
    listening.dedup();
    eprintln!(
        "SeaweedFS sockets seen: {} ({} listening: {listening:?})",
        all.len(),
        listening.len()
    );
    let log = weed.log();
    assert!(
        !log.contains("telemetry.seaweedfs.com"),
        "the log mentions the telemetry host:\n{log}"
    );
}

#[test]
fn tusd_s3store_on_seaweedfs_lands_an_upload_as_one_object() {
    tusd_lands_an_upload(S3Engine::seaweedfs("uploads"));
}

#[test]
fn tusd_s3store_on_versitygw_lands_an_upload_as_one_object() {
    tusd_lands_an_upload(S3Engine::versitygw("uploads"));
}

/// tusd v2.9.1 with `-s3-bucket -s3-endpoint -s3-object-prefix` against
/// `engine`, a hook recorder as the gate, one upload by raw tus requests.
fn tusd_lands_an_upload(engine: S3Engine) {
    let prefix = "tus/";
    let dir = tempfile::tempdir().unwrap();
    let hooks = HookRecorder::start();
    let endpoint = engine.endpoint();
    let flags = [
        format!("-s3-bucket={}", engine.bucket),
        format!("-s3-endpoint={endpoint}"),
        format!("-s3-object-prefix={prefix}"),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let tusd = Tusd::start_env(Version::V2, dir.path(), &hooks.url(), &flags, engine.tusd_env());
    let logs = || format!("tusd:\n{}\nengine:\n{}", tusd.log(), engine.log());

    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let metadata = format!("filename {},filetype {}", b64("cat photo.jpg"), b64("image/jpeg"));
    let addr: SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Upload-Metadata: {metadata}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    // tusd builds the absolute Location from the request's Host.
    let id = location
        .split_once("/files/")
        .unwrap_or_else(|| panic!("Location {location:?}"))
        .1
        .to_string();
    let path = format!("/files/{id}");

    let mut patch = format!(
        "PATCH {path} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    patch.extend_from_slice(&data);
    let (status, _, body) = common::raw_request(addr, &patch);
    assert_eq!(
        status,
        204,
        "patch: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );

    // post-finish is sent after the answer: wait for it (a state, bounded).
    let post_finish = hooks
        .wait_for("post-finish", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no post-finish; hooks {:#?}\n{}", hooks.bodies(), logs()));
    let pre_finish = hooks
        .wait_for("pre-finish", Duration::from_secs(1))
        .expect("pre-finish");

    // The upload ID is objectId+multipartId.
    let upload = &post_finish["Event"]["Upload"];
    assert_eq!(upload["ID"], id.as_str(), "{post_finish:#}");
    let (object_id, multipart_id) = id
        .split_once('+')
        .unwrap_or_else(|| panic!("no '+' in upload ID {id:?}"));
    assert!(!object_id.is_empty() && !multipart_id.is_empty(), "{id:?}");

    // Storage: exactly these three fields, the key under the prefix.
    let storage = &upload["Storage"];
    let want = serde_json::json!({
        "Type": "s3store",
        "Bucket": engine.bucket,
        "Key": format!("{prefix}{object_id}"),
    });
    assert_eq!(storage, &want, "post-finish Storage, {:?}", engine.engine);
    assert_eq!(
        &pre_finish["Event"]["Upload"]["Storage"], &want,
        "pre-finish Storage"
    );
    assert_eq!(upload["Size"], data.len() as u64);
    assert_eq!(upload["Offset"], data.len() as u64);

    // The object: the bytes sent, the tus metadata as user metadata.
    let key = want["Key"].as_str().unwrap();
    let got = engine.must(&["get", &engine.bucket, key]);
    assert_eq!(got["ok"], true, "{got}\n{}", logs());
    assert_eq!(got["size"], data.len() as u64, "{got}");
    assert_eq!(got["sha256"], hex::encode(sha2::Sha256::digest(&data)), "{got}");
    assert_eq!(got["metadata"]["filename"], "cat photo.jpg", "{got}");
    assert_eq!(got["metadata"]["filetype"], "image/jpeg", "{got}");

    // Beside it: the .info object (no .part: the upload was one whole part),
    // and no multipart upload left open.
    let listed = engine.must(&["list", &engine.bucket, prefix]);
    let mut keys: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, vec![key.to_string(), format!("{key}.info")], "{listed}");
    assert_eq!(listed["uploads"], serde_json::json!([]), "{listed}");
    eprintln!(
        "{:?}: Storage {} ; objects {keys:?}",
        engine.engine,
        serde_json::to_string(storage).unwrap()
    );
    if engine.engine == Engine::SeaweedFs {
        engine.assert_loopback_only();
    }
}

/// The shipped S3 command line (`tusd/tusd-s3.sh` with `tusd/tusd-s3.env`:
/// only the listen address, the endpoint and the hook URL replaced; the
/// shipped bucket and object prefix) lands an upload on versitygw, with the
/// credentials from a shared credentials file as `deploy/compose.s3.yaml`
/// gives them (`AWS_SHARED_CREDENTIALS_FILE`; no key in the environment) and
/// the env file's region and checksum settings.
#[test]
fn shipped_tusd_s3_command_line_lands_an_upload() {
    let env_file = common::tusd::env_file(&common::repo().join("tusd/tusd-s3.env"));
    let bucket = env_file["TUSD_S3_BUCKET"].clone();
    let prefix = env_file["TUSD_S3_OBJECT_PREFIX"].clone();
    let engine = S3Engine::versitygw(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("aws-credentials");
    let engine_env: std::collections::BTreeMap<String, String> = engine.tusd_env().into_iter().collect();
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            engine_env["AWS_ACCESS_KEY_ID"], engine_env["AWS_SECRET_ACCESS_KEY"]
        ),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = env_file
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        env.iter()
            .all(|(k, _)| k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY"),
        "tusd-s3.env holds a credential"
    );
    env.extend([
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            credentials.display().to_string(),
        ),
        ("AWS_CONFIG_FILE".to_string(), "/dev/null".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    let hooks = HookRecorder::start();
    let tusd = Tusd::start_shipped_s3(dir.path(), &hooks.url(), &engine.endpoint(), env);
    let logs = || format!("tusd:\n{}\nengine:\n{}", tusd.log(), engine.log());

    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let addr: SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    let id = location
        .split_once("/files/")
        .expect("Location under /files/")
        .1
        .to_string();
    let mut patch = format!(
        "PATCH /files/{id} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    patch.extend_from_slice(&data);
    let (status, _, body) = common::raw_request(addr, &patch);
    assert_eq!(
        status,
        204,
        "patch: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let post_finish = hooks
        .wait_for("post-finish", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no post-finish; hooks {:#?}\n{}", hooks.bodies(), logs()));
    let object_id = id.split_once('+').expect("objectId+multipartId").0;
    let key = format!("{prefix}{object_id}");
    assert_eq!(
        post_finish["Event"]["Upload"]["Storage"],
        serde_json::json!({"Type": "s3store", "Bucket": bucket, "Key": key}),
        "{post_finish:#}"
    );
    let got = engine.must(&["get", &bucket, &key]);
    assert_eq!(got["size"], data.len() as u64, "{got}\n{}", logs());
    assert_eq!(got["sha256"], hex::encode(sha2::Sha256::digest(&data)), "{got}");
}

/// What each engine *does* with the writes the publish step may use, judged by
/// the effect on scratch keys (`tests/peers/s3_probe.py capabilities`), as
/// measured for docs/s3-groundwork.md. These are the facts the capability
/// self-test must rediscover at start; a change here (an engine upgrade) means
/// the self-test's expectations change too.
#[test]
fn capabilities_of_seaweedfs_as_measured() {
    let weed = S3Engine::seaweedfs("caps");
    let c = weed.must(&["capabilities", &weed.bucket, "assetgate-selftest"]);
    for op in [
        "put_if_none_match",
        "complete_mpu_if_none_match",
        "copy_if_none_match",
        "rename_if_none_match",
        "portable_copy_if_none_match",
    ] {
        assert_eq!(c[op]["verdict"], "honoured", "{op}: {c:#}");
    }
    // RenameObject moves: source gone, destination the source's bytes; a
    // replay after success finds no source (404), it does not overwrite.
    assert_eq!(
        c["rename"],
        serde_json::json!({"status": 200, "source_gone": true, "destination_size": 1000, "destination_equal": true}),
        "{c:#}"
    );
    assert_eq!(c["rename_replayed"]["status"], 404, "{c:#}");
    common_capabilities(&c);
    assert_eq!(c["stored_checksums"], serde_json::json!([]), "{c:#}");
}

#[test]
fn capabilities_of_versitygw_as_measured() {
    let vgw = S3Engine::versitygw("caps");
    let c = vgw.must(&["capabilities", &vgw.bucket, "assetgate-selftest"]);
    for op in [
        "put_if_none_match",
        "complete_mpu_if_none_match",
        "portable_copy_if_none_match",
    ] {
        assert_eq!(c[op]["verdict"], "honoured", "{op}: {c:#}");
    }
    // CopyObject ignores If-None-Match: * and overwrites.
    assert_eq!(c["copy_if_none_match"]["verdict"], "ignored (overwrote)", "{c:#}");
    // RenameObject answers 200, leaves the source and writes 0 bytes: it is
    // taken for a PutObject with an empty body, which is also why the same
    // request with If-None-Match: * onto an existing key gets 412. A
    // self-test that only tried the 412 would wrongly trust rename here.
    assert_eq!(
        c["rename"],
        serde_json::json!({"status": 200, "source_gone": false, "destination_size": 0, "destination_equal": false}),
        "{c:#}"
    );
    assert_eq!(c["rename_if_none_match"]["verdict"], "honoured", "{c:#}");
    common_capabilities(&c);
    assert_eq!(
        c["stored_checksums"],
        serde_json::json!(["ChecksumCRC64NVME", "ChecksumType"]),
        "{c:#}"
    );
}

/// What both engines do alike: fresh conditional writes land; CopyObject and
/// the portable copy set Content-Type and the marker metadata; multipart
/// uploads are listed and aborted; a ranged GET answers 206.
fn common_capabilities(c: &Value) {
    let marked = serde_json::json!({"assetgate-upload": "probe"});
    assert_eq!(c["put_if_none_match_fresh"]["landed"], true, "{c:#}");
    for op in ["copy_if_none_match_fresh", "portable_copy_fresh"] {
        assert_eq!(c[op]["landed"], true, "{op}: {c:#}");
        assert_eq!(c[op]["content_type"], "image/png", "{op}: {c:#}");
        assert_eq!(c[op]["metadata"], marked, "{op}: {c:#}");
    }
    assert_eq!(
        c["list_abort_multipart"],
        serde_json::json!({"listed": true, "abort": {"status": 204}, "gone_after_abort": true}),
        "{c:#}"
    );
    assert_eq!(c["ranged_get"]["status"], 206, "{c:#}");
    assert_eq!(c["ranged_get"]["body_ok"], true, "{c:#}");
}

/// Requests the recorder received: JSON bodies.
type Bodies = Arc<Mutex<Vec<Value>>>;

/// A stand-in gate for tusd's HTTP hooks: answers every hook `200 {}` (accept,
/// change nothing) and keeps the JSON bodies.
struct HookRecorder {
    port: u16,
    bodies: Bodies,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HookRecorder {
    fn start() -> HookRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let bodies: Bodies = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bodies, stop) = (bodies.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let bodies = bodies.clone();
                            std::thread::spawn(move || record(s, &bodies));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HookRecorder {
            port,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/tusd", self.port)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The first hook of type `kind` (`post-finish`...), waiting up to `limit`.
    fn wait_for(&self, kind: &str, limit: Duration) -> Option<Value> {
        let end = Instant::now() + limit;
        loop {
            if let Some(v) = self.bodies().into_iter().find(|b| b["Type"] == kind) {
                return Some(v);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HookRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection: reads head and Content-Length body, keeps the
/// body, answers `200 {}`.
fn record(mut s: TcpStream, bodies: &Mutex<Vec<Value>>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).is_err() {
        return;
    }
    if let Ok(v) = serde_json::from_slice(&body) {
        bodies.lock().unwrap().push(v);
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
}
