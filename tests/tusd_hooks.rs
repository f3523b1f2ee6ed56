//! `POST /tusd` through the real binary: tusd v2 payloads (shape from tusd's
//! documented hook protocol, see tests/fixtures/tusd-v2/), the v1/rustus shape,
//! bad input, post-finish moves with a tusd filestore layout, forged events,
//! `finalize-pending`, and shutdown with a hook request in flight.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::hooks::*;
use common::*;
use serde_json::{json, Value};

fn env(extra: &str) -> Env {
    gate_env(extra, "")
}

#[test]
fn v2_pre_create_accept_and_reject_in_tusd_protocol() {
    let e = env("");
    let m = metadata(
        UPLOAD_SECRET,
        "photos/été 2026/plage.jpg",
        "public",
        "image/jpeg",
        now() + 600,
    );
    let (s, h, b) = post(
        e.gate.addr,
        v2_event("pre-create", m.clone(), 1000, Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!((s, header(&h, "content-type")), (200, Some("application/json")));
    // Accepted: tusd is handed the upload's ID, issued for this token's grant
    // (the test's own oracle checks it), fresh each time.
    let first = accepted_id(&b, &m);
    let (_, _, b) = post(
        e.gate.addr,
        v2_event("pre-create", m.clone(), 1000, Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_ne!(accepted_id(&b, &m), first, "IDs never repeat");

    // rotation: an older secret is accepted (the ID is issued under the newest)
    let old = metadata(UPLOAD_SECRET_OLD, "a/b.png", "private", "image/png", now() + 600);
    let (s, _, b) = post(
        e.gate.addr,
        v2_event("pre-create", old.clone(), 10, Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(s, 200);
    accepted_id(&b, &old);

    // tampered: still HTTP 200 (a 4xx would be a hook failure for tusd v2), with
    // RejectUpload and the client's status, body and string header values.
    let mut bad = m.clone();
    bad["visibility"] = json!("private");
    let (s, _, b) = post(
        e.gate.addr,
        v2_event("pre-create", bad, 1000, Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(s, 200);
    assert!(b.len() <= 5 * 1024);
    let v = json_of(&b);
    assert_eq!(v["RejectUpload"], true, "{v}");
    assert_eq!(v["HTTPResponse"]["StatusCode"], 403);
    assert_eq!(v["HTTPResponse"]["Header"]["Content-Type"], "application/json");
    let client_body = json_of(v["HTTPResponse"]["Body"].as_str().unwrap().as_bytes());
    assert_eq!(client_body["error"]["code"], "token_invalid");
    assert!(
        !b.windows(64)
            .any(|w| w == m["upload-token"].as_str().unwrap().as_bytes()),
        "token echoed"
    );

    // unknown and non-deciding hook types: {} / 200
    for kind in ["post-receive", "post-create", "pre-access", "made-up"] {
        let (s, _, b) = post(
            e.gate.addr,
            v2_event(kind, m.clone(), 1000, Value::Null)
                .to_string()
                .as_bytes(),
            &[],
        );
        assert_eq!((s, json_of(&b)), (200, json!({})), "{kind}");
    }
    // The log is written by a queued thread: wait for the refusal's line
    // (under load it can come after the answer), then read all of it.
    assert!(
        e.gate
            .wait_log("\"reason\":\"token_invalid\"", Duration::from_secs(10)),
        "{}",
        e.gate.logs().join("\n")
    );
    let logs = e.gate.logs().join("\n");
    assert!(
        !logs.contains(m["upload-token"].as_str().unwrap()),
        "token in the logs"
    );
    assert!(!logs.contains(UPLOAD_SECRET));
}

#[test]
fn v1_and_rustus_shape_reject_with_the_status_itself() {
    // default_config() ends inside [upload]; tusd v1 and rustus take no ID from
    // a hook: they need `upload_ids = "server"`.
    let e = gate_env("max_size = 100\n", "upload_ids = \"server\"");
    let m = metadata(UPLOAD_SECRET, "a.txt", "private", "text/plain", now() + 60);
    let ev = v2_event("pre-create", m, 1000, Value::Null);
    let v1 = json!({"Upload": ev["Event"]["Upload"], "HTTPRequest": ev["Event"]["HTTPRequest"]});
    // header name matched case-insensitively (rustus sends `hook-name`)
    for name in ["Hook-Name", "hook-name"] {
        let (s, h, b) = post(e.gate.addr, v1.to_string().as_bytes(), &[(name, "pre-create")]);
        assert_eq!((s, header(&h, "content-type")), (413, Some("application/json")));
        assert_eq!(json_of(&b)["error"]["code"], "too_large");
    }
    let mut ok = v1.clone();
    ok["Upload"]["Size"] = json!(50);
    let (s, _, b) = post(
        e.gate.addr,
        ok.to_string().as_bytes(),
        &[("hook-name", "pre-create")],
    );
    assert_eq!((s, json_of(&b)), (200, json!({})));
}

/// `[tusd] upload_ids = "signed"` (the default) with an upload server that
/// cannot take an ID from a hook: every pre-create is refused, before any
/// check, with a status and a message that say what to set.
#[test]
fn v1_and_rustus_pre_create_in_signed_mode_says_what_to_set() {
    let e = env("");
    let m = metadata(UPLOAD_SECRET, "a.txt", "private", "text/plain", now() + 60);
    let ev = v2_event("pre-create", m, 10, Value::Null);
    let v1 = json!({"Upload": ev["Event"]["Upload"], "HTTPRequest": ev["Event"]["HTTPRequest"]});
    for name in ["Hook-Name", "hook-name"] {
        let (s, h, b) = post(e.gate.addr, v1.to_string().as_bytes(), &[(name, "pre-create")]);
        assert_eq!((s, header(&h, "content-type")), (500, Some("application/json")));
        let v = json_of(&b);
        assert_eq!(v["error"]["code"], "upload_ids_unsupported", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("upload_ids = \"server\""), "{msg}");
    }
    assert_eq!(
        metric(
            &e.gate,
            "assetgate_hook_decisions_total{decision=\"deny\",hook=\"pre-create\",reason=\"upload_ids_unsupported\"}"
        ),
        2
    );
}

#[test]
fn bad_input_gets_a_clear_answer_and_the_daemon_goes_on() {
    let mut e = env("[server]\nmax_body_bytes = 4096\n");
    let cases: [(&[u8], u16); 4] = [
        (b"not json at all", 400),
        (b"[1,2,3]", 400),
        (br#"{"Type":"pre-create","Event":{"HTTPRequest":{}}}"#, 400),
        (
            br#"{"Type":"pre-create","Event":{"Upload":{"MetaData":{"asset-key":5}}}}"#,
            400,
        ),
    ];
    for (body, status) in cases {
        let (s, h, b) = post(e.gate.addr, body, &[]);
        assert_eq!(s, status, "{}", String::from_utf8_lossy(body));
        assert_eq!(header(&h, "content-type"), Some("application/json"));
        let v = json_of(&b);
        assert_eq!(v["error"]["code"], "bad_hook");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // oversized body: refused before parsing
    let big = vec![b' '; 8192];
    let (s, _, b) = post(e.gate.addr, &big, &[]);
    assert_eq!(s, 413);
    assert!(String::from_utf8_lossy(&b).contains("max_body_bytes"));
    // wrong method
    let (s, h, _) = get(e.gate.addr, "/tusd", &[]);
    assert_eq!((s, header(&h, "allow")), (405, Some("POST")));

    assert!(e.gate.alive());
    assert_eq!(
        metric(
            &e.gate,
            "assetgate_hook_decisions_total{decision=\"error\",hook=\"other\",reason=\"bad_hook\"}"
        ),
        5
    );
    assert!(e.gate.wait_log("not a tusd hook", Duration::from_secs(5)));
}

fn wait_file(p: &Path) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if let Ok(b) = std::fs::read(p) {
            return b;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never appeared", p.display());
}

#[test]
fn post_finish_moves_once_and_forged_events_move_nothing() {
    let e = env("");
    let meta = metadata(
        UPLOAD_SECRET,
        "invoices/inv 001.pdf",
        "private",
        "application/pdf",
        now() - 3600,
    );
    let id = signed_id(&meta, 1);
    let (path, info) = tusd_upload(&e.uploads, &id, &meta, b"%PDF-1.7 hello");
    let ev = post_finish(&id, &meta, 14, &path, &info);
    let (s, _, b) = post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(
        (s, json_of(&b)),
        (200, json!({})),
        "answered at once, expired token is fine at finish"
    );
    let dest = e.assets.join("private/invoices/inv 001.pdf");
    assert_eq!(wait_file(&dest), b"%PDF-1.7 hello");
    let end = Instant::now() + Duration::from_secs(5);
    while path.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!path.exists(), "the upload left upload_dir");

    // duplicate delivery: harmless
    let (s, _, _) = post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    assert!(
        e.gate.wait_log("already_finalized", Duration::from_secs(5))
            || e.gate.wait_log("source_missing", Duration::from_secs(1))
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"%PDF-1.7 hello");

    // forged: an attacker with a valid token of their own aims it at a victim's
    // upload: the victim's ID was not issued for the attacker's token.
    let victim = metadata(
        UPLOAD_SECRET,
        "victim/secret.pdf",
        "private",
        "application/pdf",
        now() + 60,
    );
    let vid = signed_id(&victim, 2);
    let (vpath, vinfo) = tusd_upload(&e.uploads, &vid, &victim, b"victim bytes");
    let attacker = metadata(
        UPLOAD_SECRET,
        "public-drop.pdf",
        "public",
        "application/pdf",
        now() + 60,
    );
    let forged = post_finish(&vid, &attacker, 12, &vpath, &vinfo);
    let (s, _, _) = post(e.gate.addr, forged.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    assert!(
        e.gate.wait_log("upload_id_invalid", Duration::from_secs(10)),
        "{:#?}",
        e.gate.logs()
    );
    // ...nor with an ID issued for the attacker's own token: the data file
    // must be <dir>/<ID>.
    let forged = post_finish(&signed_id(&attacker, 3), &attacker, 12, &vpath, &vinfo);
    post(e.gate.addr, forged.to_string().as_bytes(), &[]);
    assert!(
        e.gate.wait_log("id_mismatch", Duration::from_secs(10)),
        "{:#?}",
        e.gate.logs()
    );
    assert!(!e.assets.join("public/public-drop.pdf").exists());
    assert_eq!(std::fs::read(&vpath).unwrap(), b"victim bytes");

    // forged path outside upload_dir
    let outside = e._dir.path().join("elsewhere.pdf");
    std::fs::write(&outside, b"x").unwrap();
    let ev = post_finish(
        &signed_id(&attacker, 4),
        &attacker,
        1,
        &outside,
        &e._dir.path().join("elsewhere.pdf.info"),
    );
    post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    assert!(
        e.gate.wait_log("source_outside", Duration::from_secs(10)),
        "{:#?}",
        e.gate.logs()
    );
    assert!(outside.exists());
    assert!(!e.assets.join("public/public-drop.pdf").exists());

    assert_eq!(metric(&e.gate, "assetgate_finalize_total{result=\"renamed\"}"), 1);
}

#[test]
fn finalize_pending_moves_what_was_missed_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    let done = metadata(
        UPLOAD_SECRET,
        "a/done.txt",
        "public",
        "text/plain",
        now() - 99_999,
    );
    tusd_upload(&uploads, &signed_id(&done, 1), &done, b"finished");
    let forged = metadata(
        "a-different-secret-value",
        "a/forged.txt",
        "public",
        "text/plain",
        now(),
    );
    tusd_upload(&uploads, "2222", &forged, b"forged");
    // unfinished: info says 100 bytes, data has 3
    let (p, info) = tusd_upload(&uploads, "3333", &done, b"abc");
    let mut i: Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    i["Size"] = json!(100);
    std::fs::write(&info, i.to_string()).unwrap();

    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n",
            default_config(),
            assets.display().to_string(),
            uploads.display().to_string()
        ),
    )
    .unwrap();
    let run = || {
        std::process::Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("finalize-pending")
            .output()
            .unwrap()
    };
    let o = run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("1 moved"), "{out}");
    assert_eq!(
        std::fs::read(assets.join("public/a/done.txt")).unwrap(),
        b"finished"
    );
    assert!(!assets.join("public/a/forged.txt").exists());
    assert!(uploads.join("2222").exists(), "a forged upload stays where it is");
    assert!(out.contains("kept 2222"), "{out}");
    assert!(p.exists(), "an unfinished upload stays where it is");
    let o = run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success());
    assert!(out.contains("0 moved"), "second run moves nothing: {out}");
}

#[test]
fn shutdown_lets_an_in_flight_hook_request_finish() {
    let mut e = env("");
    let m = metadata(UPLOAD_SECRET, "late.txt", "private", "text/plain", now() + 600);
    let body = v2_event("pre-create", m.clone(), 5, Value::Null).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut s = TcpStream::connect(e.gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /tusd HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(first).unwrap();
    // make sure the request is being read before the signal
    assert!(wait_connections(&e.gate, 1));
    e.gate.terminate();
    assert!(e.gate.wait_log("shutting down", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(rest).unwrap();
    let (status, _, b) = read_response(&mut s);
    assert_eq!(status, 200);
    accepted_id(&b, &m);
    assert_eq!(e.gate.wait_exit(Duration::from_secs(15)), Some(0));
    let mut buf = [0u8; 8];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "connection closed after the answer"
    );
}

fn wait_connections(d: &Daemon, n: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        // /metrics itself is one connection; the in-flight one is the other
        if metric(d, "assetgate_connections_open") > n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not a pdf at all";

/// Regression (hardening 2, real-tusd 2): tusd v2 fires post-finish after a
/// pre-finish 415; the mover must check the bytes itself.
#[test]
fn check_content_is_enforced_by_the_mover_after_a_pre_finish_415() {
    // default_config() ends in [upload]
    let e = env("check_content = true\n");
    let meta = metadata(
        UPLOAD_SECRET,
        "scan.pdf",
        "private",
        "application/pdf",
        now() + 600,
    );
    let id = signed_id(&meta, 1);
    let (path, info) = tusd_upload(&e.uploads, &id, &meta, PNG);
    // pre-finish: the client is told 415 content_mismatch
    let mut pre = post_finish(&id, &meta, PNG.len(), &path, &info);
    pre["Type"] = json!("pre-finish");
    let (s, _, b) = post(e.gate.addr, pre.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    let v = json_of(&b);
    assert_eq!(v["HTTPResponse"]["StatusCode"], 415, "{v}");
    assert!(v["HTTPResponse"]["Body"]
        .as_str()
        .unwrap()
        .contains("content_mismatch"));
    // ...and tusd fires post-finish anyway: nothing is published.
    let ev = post_finish(&id, &meta, PNG.len(), &path, &info);
    let (s, _, _) = post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    assert!(
        e.gate.wait_log("upload NOT published", Duration::from_secs(10)),
        "{:#?}",
        e.gate.logs()
    );
    assert!(!e.assets.join("private/scan.pdf").exists());
    assert_eq!(std::fs::read(&path).unwrap(), PNG, "stays in upload_dir");
    assert!(info.exists());
    assert!(
        e.uploads.join(format!("{id}.refused")).exists(),
        "the refusal is recorded"
    );
    assert_eq!(
        metric(&e.gate, "assetgate_finalize_total{result=\"content_mismatch\"}"),
        1
    );
    let line = e
        .gate
        .logs()
        .into_iter()
        .find(|l| l.contains("upload NOT published"))
        .unwrap();
    assert!(
        line.contains("content_mismatch") && line.contains("PDF"),
        "{line}"
    );
}

/// Regression (hardening 2): `finalize-pending` runs no hook; the mover checks.
#[test]
fn finalize_pending_never_publishes_mismatching_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    let bad = metadata(UPLOAD_SECRET, "a.pdf", "public", "application/pdf", now());
    let bad_id = signed_id(&bad, 1);
    tusd_upload(&uploads, &bad_id, &bad, PNG);
    let good = metadata(UPLOAD_SECRET, "b.pdf", "public", "application/pdf", now());
    tusd_upload(&uploads, &signed_id(&good, 2), &good, b"%PDF-1.4 real");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}check_content = true\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n",
            default_config(),
            assets.display().to_string(),
            uploads.display().to_string()
        ),
    )
    .unwrap();
    let run = || {
        let o = std::process::Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("finalize-pending")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = run();
    assert!(out.contains("1 moved"), "{out}");
    assert!(out.contains("content_mismatch"), "{out}");
    assert!(assets.join("public/b.pdf").exists());
    assert!(!assets.join("public/a.pdf").exists());
    assert!(uploads.join(&bad_id).exists() && uploads.join(format!("{bad_id}.info")).exists());

    // Finding 8: the same run again with check_content gone from the
    // configuration (a reload, a restart, a half-written file) does not
    // publish it either: the refusal was recorded.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("check_content = true\n", "")).unwrap();
    let out = run();
    assert!(out.contains("0 moved"), "{out}");
    assert!(out.contains("Refused"), "{out}");
    assert!(
        !assets.join("public/a.pdf").exists(),
        "published after check_content was dropped"
    );
    assert!(uploads.join(&bad_id).exists());
}

/// Regression (hardening 1): a final upload built from someone else's partial
/// upload is refused at pre-create (and, for a forged post-finish, at the move).
#[test]
fn concatenation_of_someone_elses_part_is_refused() {
    let e = env("");
    let victim = metadata(
        UPLOAD_SECRET,
        "me/private.pdf",
        "private",
        "application/pdf",
        now() + 600,
    );
    let vpart = signed_part_id(&victim, 1);
    let (vpath, vinfo) = tusd_upload(&e.uploads, &vpart, &victim, b"%PDF victim bytes");
    let mut i: Value = serde_json::from_str(&std::fs::read_to_string(&vinfo).unwrap()).unwrap();
    i["IsPartial"] = json!(true);
    std::fs::write(&vinfo, i.to_string()).unwrap();

    let attacker = metadata(
        UPLOAD_SECRET,
        "leak.pdf",
        "public",
        "application/pdf",
        now() + 600,
    );
    let mut ev = v2_event("pre-create", attacker.clone(), 17, json!(null));
    ev["Event"]["Upload"]["IsFinal"] = json!(true);
    ev["Event"]["Upload"]["PartialUploads"] = json!([vpart]);
    let (s, _, b) = post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    let v = json_of(&b);
    assert_eq!(v["RejectUpload"], true, "{v}");
    assert_eq!(v["HTTPResponse"]["StatusCode"], 403, "{v}");
    assert!(
        v["HTTPResponse"]["Body"]
            .as_str()
            .unwrap()
            .contains("concat_invalid"),
        "{v}"
    );

    // The victim's own final upload of the same part is fine.
    let mut own = v2_event("pre-create", victim.clone(), 17, json!(null));
    own["Event"]["Upload"]["IsFinal"] = json!(true);
    own["Event"]["Upload"]["PartialUploads"] = json!([vpart]);
    let (_, _, b) = post(e.gate.addr, own.to_string().as_bytes(), &[]);
    accepted_id(&b, &victim);

    // A forged post-finish of a final upload tusd did build from it: its part
    // was not issued for the attacker's token, so it is not even planned.
    let aid = signed_id(&attacker, 2);
    let (fpath, finfo) = tusd_upload(&e.uploads, &aid, &attacker, b"%PDF victim bytes");
    let mut i: Value = serde_json::from_str(&std::fs::read_to_string(&finfo).unwrap()).unwrap();
    i["IsFinal"] = json!(true);
    i["PartialUploads"] = json!([vpart]);
    std::fs::write(&finfo, i.to_string()).unwrap();
    let mut pf = post_finish(&aid, &attacker, 17, &fpath, &finfo);
    pf["Event"]["Upload"]["IsFinal"] = json!(true);
    pf["Event"]["Upload"]["PartialUploads"] = json!([vpart]);
    post(e.gate.addr, pf.to_string().as_bytes(), &[]);
    let denied =
        "assetgate_hook_decisions_total{decision=\"deny\",hook=\"post-finish\",reason=\"concat_invalid\"}";
    let end = Instant::now() + Duration::from_secs(10);
    while metric(&e.gate, denied) == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(&e.gate, denied), 1, "{:#?}", e.gate.logs());
    // The same event naming no parts (the record still does): the mover
    // refuses, the record's parts being none the plan verified.
    let mut pf = post_finish(&aid, &attacker, 17, &fpath, &finfo);
    pf["Event"]["Upload"]["IsFinal"] = json!(true);
    post(e.gate.addr, pf.to_string().as_bytes(), &[]);
    assert!(
        e.gate.wait_log("upload NOT moved", Duration::from_secs(10)),
        "{:#?}",
        e.gate.logs()
    );
    assert!(!e.assets.join("public/leak.pdf").exists());
    assert_eq!(std::fs::read(&vpath).unwrap(), b"%PDF victim bytes");
    assert_eq!(
        metric(&e.gate, "assetgate_finalize_total{result=\"concat_invalid\"}"),
        1
    );
}

/// Regression (hardening 8): a key whose path runs through a symlink inside the
/// asset tree is refused at pre-create, not left stuck until the move.
#[test]
fn pre_create_refuses_a_key_through_a_symlink() {
    let e = env("");
    let elsewhere = e._dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(e.assets.join("public")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, e.assets.join("public/linked")).unwrap();
    let meta = metadata(UPLOAD_SECRET, "linked/x.txt", "public", "text/plain", now() + 600);
    let ev = v2_event("pre-create", meta, 3, json!(null));
    let (_, _, b) = post(e.gate.addr, ev.to_string().as_bytes(), &[]);
    let v = json_of(&b);
    assert_eq!(v["HTTPResponse"]["StatusCode"], 409, "{v}");
    assert!(
        v["HTTPResponse"]["Body"]
            .as_str()
            .unwrap()
            .contains("destination_blocked"),
        "{v}"
    );
    let ok = metadata(UPLOAD_SECRET, "plain/x.txt", "public", "text/plain", now() + 600);
    let (_, _, b) = post(
        e.gate.addr,
        v2_event("pre-create", ok.clone(), 3, json!(null))
            .to_string()
            .as_bytes(),
        &[],
    );
    accepted_id(&b, &ok);
}

/// Regression (hardening 5): temporary files a killed move left are swept at
/// start (only ours, only unlocked ones), and counted.
#[test]
fn stale_temp_files_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let assets = dir.path().join("assets");
    let tmp = assets.join(".assetgate-tmp");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    for name in [".assetgate-0123456789abcdef.tmp", "unrelated.tmp"] {
        let f = std::fs::File::create(tmp.join(name)).unwrap();
        f.set_len(1 << 20).unwrap();
        f.set_modified(old).unwrap();
    }
    let cfg = format!(
        "{}\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n",
        default_config(),
        assets.display().to_string(),
        uploads.display().to_string()
    );
    let gate = Daemon::start(&cfg);
    assert!(!tmp.join(".assetgate-0123456789abcdef.tmp").exists());
    assert!(tmp.join("unrelated.tmp").exists());
    assert_eq!(metric(&gate, "assetgate_temp_files_removed_total"), 1);
    assert!(gate.wait_log("removed temporary files", Duration::from_secs(2)));
}

/// Regression (hardening 6): a copy still running when the shutdown grace is
/// over is abandoned cleanly (temporary file removed, source intact, logged and
/// counted) and the process exits within the grace plus a bound, not when the
/// copy would have ended.
#[test]
fn shutdown_abandons_a_copy_cleanly_within_the_grace() {
    // upload_dir on tmpfs, the asset tree on the disk: a cross-filesystem copy.
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "needs /dev/shm (tmpfs) for a cross-filesystem copy");
    let up = tempfile::tempdir_in(shm).unwrap();
    let store = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\nreconcile_interval = 0\n[server]\nshutdown_grace = 0\n",
        default_config(),
        store.path().display().to_string(),
        up.path().display().to_string()
    );
    let mut gate = Daemon::start(&cfg);
    let meta = metadata(
        UPLOAD_SECRET,
        "big/video.mp4",
        "private",
        "video/mp4",
        now() + 600,
    );
    let len: usize = 1 << 30; // 1 GiB: copying takes well over the 0.3 s below
    let id = signed_id(&meta, 1);
    let path = up.path().join(&id);
    let info = up.path().join(format!("{id}.info"));
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len as u64).unwrap();
    }
    let info_json = json!({"ID": id, "Size": len, "SizeIsDeferred": false, "Offset": 0,
        "MetaData": meta, "IsPartial": false, "IsFinal": false, "PartialUploads": null,
        "Storage": {"Type": "filestore", "Path": path, "InfoPath": info}});
    std::fs::write(&info, info_json.to_string()).unwrap();
    let ev = post_finish(&id, &meta, len, &path, &info);
    let (s, _, _) = post(gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    gate.terminate();
    let code = gate.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{:#?}", gate.logs());
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    let logs = gate.logs().join("\n");
    assert!(logs.contains("abandoning the moves in progress"), "{logs}");
    assert!(logs.contains("\"reason\":\"cancelled\""), "{logs}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len as u64,
        "source intact"
    );
    assert!(info.exists());
    assert!(!store.path().join("private/big/video.mp4").exists());
    let tmp = store.path().join(".assetgate-tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
