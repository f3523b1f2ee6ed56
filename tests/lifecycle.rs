//! The life of an upload, through the real binary with tusd filestore layouts
//! laid out by hand: the reconciler publishes what post-finish missed, removes
//! abandoned uploads, and `/session` binds requests on an upload to its token.
//! Uploads meant to be published carry the ID pre-create would have issued
//! (`signed_id`, `[tusd] upload_ids = "signed"`, the default); planted records
//! and refused uploads stay unpublished whatever later passes and
//! configurations say. (The same with the real tusd and nginx:
//! tests/e2e_tusd.rs.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::hooks::*;
use common::*;
use serde_json::{json, Value};

/// `upload` and `tusd` go after default_config()'s `[upload]` and `[tusd]` sections.
fn env(upload: &str, tusd: &str) -> Env {
    gate_env(upload, tusd)
}

fn set_info(info: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(info).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(info, v.to_string()).unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn metric_now(d: &Daemon, prefix: &str) -> u64 {
    metric(d, prefix)
}

#[test]
fn reconciler_publishes_a_lost_post_finish_once() {
    let e = env("", "reconcile_interval = \"1s\"");
    let meta = metadata(
        UPLOAD_SECRET,
        "lost/report.pdf",
        "private",
        "application/pdf",
        now() - 60,
    );
    let (path, info) = tusd_upload(&e.uploads, &signed_id(&meta, 1), &meta, b"%PDF-1.7 lost");
    // A post-finish racing the reconciler for a second upload: one publish.
    let meta2 = metadata(
        UPLOAD_SECRET,
        "raced.pdf",
        "public",
        "application/pdf",
        now() + 60,
    );
    let raced = signed_id(&meta2, 2);
    let (p2, i2) = tusd_upload(&e.uploads, &raced, &meta2, b"%PDF-1.7 raced");
    post(
        e.gate.addr,
        post_finish(&raced, &meta2, 14, &p2, &i2).to_string().as_bytes(),
        &[],
    );
    let dest = e.assets.join("private/lost/report.pdf");
    wait_until("the lost upload to be published", Duration::from_secs(10), || {
        dest.exists()
    });
    assert_eq!(std::fs::read(&dest).unwrap(), b"%PDF-1.7 lost");
    wait_until("the sources to leave upload_dir", Duration::from_secs(5), || {
        !path.exists() && !info.exists() && !p2.exists()
    });
    assert_eq!(
        std::fs::read(e.assets.join("public/raced.pdf")).unwrap(),
        b"%PDF-1.7 raced"
    );
    assert!(e.gate.wait_log("was never published", Duration::from_secs(1)));
    // Two uploads, two publishes, whatever ran first.
    // (counted when the move returns, just after the source went)
    wait_until("both moves to be counted", Duration::from_secs(5), || {
        metric_now(&e.gate, "assetgate_finalize_total{result=\"renamed\"}") == 2
    });
    assert!(metric_now(&e.gate, "assetgate_reconcile_total{result=\"published\"}") >= 1);
    // A few more passes: nothing else happens, nothing is logged again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        metric_now(&e.gate, "assetgate_finalize_total{result=\"renamed\"}"),
        2
    );
    let lines = e
        .gate
        .logs()
        .iter()
        .filter(|l| l.contains("was never published"))
        .count();
    assert!(lines <= 2, "logged once per upload, not per pass: {lines}");
}

#[test]
fn reconciler_keeps_what_post_finish_would_refuse_and_logs_it_once() {
    let e = env("check_content = true", "reconcile_interval = \"1s\"");
    let png = b"\x89PNG\r\n\x1a\n not a pdf";
    let meta = metadata(UPLOAD_SECRET, "fake.pdf", "public", "application/pdf", now());
    let (path, _) = tusd_upload(&e.uploads, &signed_id(&meta, 1), &meta, png);
    let forged = metadata(
        "not-the-upload-secret-000",
        "f.pdf",
        "public",
        "application/pdf",
        now(),
    );
    let (fpath, _) = tusd_upload(&e.uploads, "forged01", &forged, b"%PDF forged");
    // The forged one is kept on every pass; the mismatching one is refused
    // once, recorded, and never offered to the mover again.
    wait_until("three passes", Duration::from_secs(10), || {
        metric_now(&e.gate, "assetgate_reconcile_total{result=\"kept\"}") >= 3
    });
    assert_eq!(
        metric_now(&e.gate, "assetgate_finalize_total{result=\"content_mismatch\"}"),
        1
    );
    assert!(path.exists() && fpath.exists());
    assert!(!e.assets.join("public/fake.pdf").exists());
    assert!(!e.assets.join("public/f.pdf").exists());
    let kept_lines = e
        .gate
        .logs()
        .iter()
        .filter(|l| l.contains("cannot be published"))
        .count();
    assert_eq!(kept_lines, 1, "the forged one, once");
}

#[test]
fn abandoned_uploads_are_removed_and_nothing_else() {
    let e = env("", "reconcile_interval = \"1s\"\nabandon_after = \"1h\"");
    let old = now() - 7200;
    // unfinished, token expired 2 h ago: goes, with tusd's .lock
    let m = metadata(
        UPLOAD_SECRET,
        "a/old.bin",
        "private",
        "application/octet-stream",
        old,
    );
    let (gone, gone_info) = tusd_upload(&e.uploads, "old00001", &m, b"abc");
    set_info(&gone_info, |v| v["Size"] = json!(100));
    let lock = e.uploads.join("old00001.lock");
    std::fs::write(&lock, b"1234").unwrap();
    // a finished part of a parallel upload whose final never came: goes
    let (part, part_info) = tusd_upload(&e.uploads, "part0001", &m, b"part");
    set_info(&part_info, |v| v["IsPartial"] = json!(true));
    // unfinished, token expired only 10 min ago: stays
    let recent = metadata(
        UPLOAD_SECRET,
        "a/recent.bin",
        "private",
        "application/octet-stream",
        now() - 600,
    );
    let (stays, stays_info) = tusd_upload(&e.uploads, "recent01", &recent, b"abc");
    set_info(&stays_info, |v| v["Size"] = json!(100));
    // unfinished, expired long ago, but no token the gate can verify: stays, counted
    let forged = metadata(
        "not-the-upload-secret-000",
        "a/x.bin",
        "private",
        "application/octet-stream",
        old,
    );
    let (unattributed, ui) = tusd_upload(&e.uploads, "forged02", &forged, b"abc");
    set_info(&ui, |v| v["Size"] = json!(100));
    // finished, expired long ago: published, never removed
    let (fin, _) = tusd_upload(&e.uploads, &signed_id(&m, 1), &m, b"done");

    wait_until("the abandoned uploads to go", Duration::from_secs(10), || {
        !gone.exists() && !part.exists()
    });
    assert!(!gone_info.exists() && !lock.exists() && !part_info.exists());
    wait_until("the finished one to be published", Duration::from_secs(5), || {
        e.assets.join("private/a/old.bin").exists()
    });
    assert_eq!(
        std::fs::read(e.assets.join("private/a/old.bin")).unwrap(),
        b"done"
    );
    // published by link first, the source removed right after
    wait_until(
        "the finished upload to leave upload_dir",
        Duration::from_secs(5),
        || !fin.exists(),
    );
    assert!(stays.exists() && stays_info.exists());
    assert!(unattributed.exists() && ui.exists());
    assert_eq!(
        metric_now(&e.gate, "assetgate_reconcile_total{result=\"abandoned_removed\"}"),
        2
    );
    assert!(metric_now(&e.gate, "assetgate_reconcile_total{result=\"unattributable\"}") >= 1);
    assert!(e
        .gate
        .wait_log("removed an abandoned upload", Duration::from_secs(1)));
}

#[test]
fn reconcile_interval_zero_disables_it() {
    let e = env("", "reconcile_interval = \"0\"");
    let meta = metadata(UPLOAD_SECRET, "stay.pdf", "private", "application/pdf", now());
    let (path, _) = tusd_upload(&e.uploads, &signed_id(&meta, 1), &meta, b"%PDF stay");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(path.exists());
    assert_eq!(
        metric_now(&e.gate, "assetgate_reconcile_total{result=\"published\"}"),
        0
    );
}

fn session(d: &Daemon, method: &str, uri: &str, upload_metadata: Option<&str>) -> (u16, Option<String>) {
    let mut h: Vec<(&str, &[u8])> = vec![
        ("X-Original-URI", uri.as_bytes()),
        ("X-Original-Method", method.as_bytes()),
    ];
    if let Some(m) = upload_metadata {
        h.push(("X-Upload-Metadata", m.as_bytes()));
    }
    let (s, headers, _) = get(d.addr, "/session", &h);
    (s, header(&headers, "x-assetgate-reason").map(str::to_owned))
}

fn tus_header(meta: &Value) -> String {
    use base64::Engine;
    meta.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let b = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
            format!("{k} {b}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn session_binds_requests_on_an_upload_to_its_token() {
    for mode in ["window", "token"] {
        let e = env(
            &format!("session_binding = \"{mode}\"\nsession_grace = \"10m\""),
            "reconcile_interval = \"0\"",
        );
        let meta = metadata(
            UPLOAD_SECRET,
            "s/a.bin",
            "private",
            "application/octet-stream",
            now() + 60,
        );
        let (_, info) = tusd_upload(&e.uploads, "sess0001", &meta, b"ab");
        set_info(&info, |v| v["Size"] = json!(10));
        let expired = metadata(
            UPLOAD_SECRET,
            "s/b.bin",
            "private",
            "application/octet-stream",
            now() - 601,
        );
        tusd_upload(&e.uploads, "sess0002", &expired, b"ab");
        let mine = tus_header(&meta);
        let ok = if mode == "token" {
            Some(mine.as_str())
        } else {
            None
        };

        assert_eq!(
            session(&e.gate, "PATCH", "/files/sess0001", ok),
            (204, None),
            "{mode}"
        );
        assert_eq!(session(&e.gate, "HEAD", "/files/sess0001", ok).0, 204);
        assert_eq!(
            session(&e.gate, "POST", "/files/", None).0,
            204,
            "creation: pre-create decides"
        );
        assert_eq!(session(&e.gate, "OPTIONS", "/files/sess0001", None).0, 204);
        assert_eq!(
            session(&e.gate, "PATCH", "/files/sess0002", Some(&tus_header(&expired))),
            (403, Some("session_expired".into()))
        );
        assert_eq!(
            session(&e.gate, "PATCH", "/files/0123456789abcdef", ok),
            (403, Some("unknown_upload".into()))
        );
        assert_eq!(
            session(&e.gate, "PATCH", "/files/..%2f..%2fetc", ok),
            (403, Some("bad_id".into()))
        );
        assert_eq!(
            session(&e.gate, "PATCH", "/files/a/b", ok),
            (403, Some("bad_uri".into()))
        );
        let other = metadata(
            UPLOAD_SECRET,
            "s/other.bin",
            "private",
            "application/octet-stream",
            now() + 60,
        );
        let with_other = session(&e.gate, "PATCH", "/files/sess0001", Some(&tus_header(&other)));
        let without = session(&e.gate, "PATCH", "/files/sess0001", None);
        if mode == "token" {
            assert_eq!(with_other, (403, Some("token_mismatch".into())));
            assert_eq!(without, (403, Some("token_missing".into())));
        } else {
            assert_eq!(with_other.0, 204, "window mode ignores the header");
            assert_eq!(without.0, 204);
        }
        // a deployment fault answers 500, never 204
        let (s, _, _) = get(e.gate.addr, "/session", &[("X-Original-URI", b"/files/sess0001")]);
        assert_eq!(s, 500);
        assert!(
            metric_now(
                &e.gate,
                "assetgate_decisions_total{decision=\"deny\",endpoint=\"session\",reason=\"session_expired\"}"
            ) >= 1
        );
    }
    // off: tusd's own behaviour
    let e = env("session_binding = \"off\"", "");
    assert_eq!(session(&e.gate, "PATCH", "/files/whatever", None).0, 204);
}

#[test]
fn bad_lifecycle_config_is_refused_naming_the_key() {
    // (what follows the default config, whose last section is [upload]; the
    // key the error must name; whether the error must be a single line)
    for (tail, key, one_line) in [
        ("session_binding = \"strict\"", "upload.session_binding", true),
        ("session_grace = \"soon\"", "upload.session_grace", true),
        (
            "[tusd]\nreconcile_interval = \"often\"",
            "tusd.reconcile_interval",
            false,
        ),
        ("[tusd]\nabandon_after = \"-1\"", "tusd.abandon_after", false),
        ("[tusd]\nbase_path = \"files\"", "tusd.base_path", false),
        ("[tusd]\nupload_ids = \"client\"", "tusd.upload_ids", false),
    ] {
        let cfg = format!("{}{tail}\n", default_config());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, cfg).unwrap();
        let o = std::process::Command::new(bin())
            .arg("--config")
            .arg(&p)
            .arg("check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(64), "{tail}: {err}");
        assert!(err.contains(key), "{err}");
        if one_line {
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
}

/// Finding 7 (c), through the daemon: an upload planted in the upload
/// directory with a token copied from a victim's `.info` was published at the
/// victim's key by the reconciler (it checked the signature only), and the
/// victim's own upload then got `exists`. Its ID was not issued by pre-create
/// for that token: kept, and the victim's upload lands.
#[test]
fn regression_reconciler_never_publishes_a_planted_info_with_a_copied_token() {
    let e = env("", "reconcile_interval = \"1s\"");
    let victim = metadata(UPLOAD_SECRET, "avatars/v.png", "public", "image/png", now() + 600);
    let vid = signed_id(&victim, 1);
    let (vpath, vinfo) = tusd_upload(&e.uploads, &vid, &victim, b"\x89PNG victim");
    set_info(&vinfo, |v| v["Size"] = json!(100)); // still uploading
                                                  // Planted: the planter's bytes, any name, the victim's metadata copied.
    let (ppath, _) = tusd_upload(
        &e.uploads,
        "0123456789abcdef0123456789abcdef",
        &victim,
        b"<script>x</script>",
    );
    let dest = e.assets.join("public/avatars/v.png");
    wait_until("two passes (or a publish)", Duration::from_secs(10), || {
        metric_now(&e.gate, "assetgate_reconcile_total{result=\"kept\"}") >= 2 || dest.exists()
    });
    assert!(
        !dest.exists(),
        "the planted bytes were published at the victim's key"
    );
    assert!(ppath.exists());
    assert!(e.gate.wait_log("upload_id_invalid", Duration::from_secs(1)));
    // The victim finishes: its upload is published, no `exists`.
    std::fs::write(&vpath, vec![b'v'; 100]).unwrap();
    wait_until("the victim's upload to land", Duration::from_secs(10), || {
        dest.exists()
    });
    assert_eq!(std::fs::read(&dest).unwrap(), vec![b'v'; 100]);
}

/// Finding 7 (b), through the daemon: a planted `.info` whose `Storage.Path`
/// names another upload's data file, with a long-expired token of its own,
/// made the abandon sweep delete the other upload.
#[test]
fn regression_abandon_sweep_never_follows_a_planted_info_to_another_upload() {
    let e = env("", "reconcile_interval = \"1s\"\nabandon_after = \"1h\"");
    let victim = metadata(
        UPLOAD_SECRET,
        "v.bin",
        "private",
        "application/octet-stream",
        now() + 600,
    );
    let (vpath, vinfo) = tusd_upload(&e.uploads, &signed_id(&victim, 1), &victim, b"half");
    set_info(&vinfo, |v| v["Size"] = json!(100));
    let old = metadata(
        UPLOAD_SECRET,
        "p.bin",
        "private",
        "application/octet-stream",
        now() - 7200,
    );
    let planted = e.uploads.join("planted1.info");
    std::fs::write(
        &planted,
        json!({"ID": "planted1", "Size": 100, "SizeIsDeferred": false, "Offset": 0, "MetaData": old,
               "Storage": {"Type": "filestore", "Path": vpath, "InfoPath": planted}})
        .to_string(),
    )
    .unwrap();
    // A real abandoned upload next to it goes, so passes are known to have run.
    let (gone, gone_info) = tusd_upload(&e.uploads, "gone0001", &old, b"abc");
    set_info(&gone_info, |v| v["Size"] = json!(100));
    wait_until("the real abandoned upload to go", Duration::from_secs(10), || {
        !gone.exists()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(vpath.exists(), "the victim's upload was deleted");
    assert_eq!(std::fs::read(&vpath).unwrap(), b"half");
    assert!(vinfo.exists());
    assert_eq!(
        metric_now(&e.gate, "assetgate_reconcile_total{result=\"abandoned_removed\"}"),
        1
    );
}

/// Finding 8, through the daemon: an upload refused by `check_content` was
/// published by the reconciler once a reload dropped `check_content`.
#[test]
fn regression_a_refused_upload_stays_refused_after_a_reload_without_check_content() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    let config = |check: bool| {
        format!(
            "{}check_content = {check}\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\nreconcile_interval = \"1s\"\n",
            default_config(),
            assets.display().to_string(),
            uploads.display().to_string()
        )
    };
    std::fs::write(&cfg, config(true)).unwrap();
    let gate = Daemon::start_file(&cfg, &[], &[]);
    // HTML declared as a PNG: refused by the content check.
    let meta = metadata(UPLOAD_SECRET, "e.png", "public", "image/png", now() + 600);
    let id = signed_id(&meta, 1);
    let (path, _) = tusd_upload(&uploads, &id, &meta, b"<html><script>alert(1)</script>");
    wait_until("the content check to refuse it", Duration::from_secs(10), || {
        metric_now(&gate, "assetgate_finalize_total{result=\"content_mismatch\"}") == 1
    });
    assert!(uploads.join(format!("{id}.refused")).exists());

    // The configuration loses check_content (replaced whole, then SIGHUP).
    let tmp = dir.path().join("assetgate.toml.new");
    std::fs::write(&tmp, config(false)).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    gate.hup();
    assert!(gate.wait_metric(
        "assetgate_config_reloads_total{result=\"applied\"}",
        1.0,
        Duration::from_secs(10)
    ));
    // Passes after the reload: a second upload proves they run (and publish).
    let other = metadata(UPLOAD_SECRET, "ok.png", "public", "image/png", now() + 600);
    tusd_upload(&uploads, &signed_id(&other, 2), &other, b"\x89PNG\r\n\x1a\n ok");
    wait_until("a pass after the reload", Duration::from_secs(10), || {
        assets.join("public/ok.png").exists()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !assets.join("public/e.png").exists(),
        "published after check_content was dropped"
    );
    assert!(path.exists());
    assert_eq!(
        metric_now(&gate, "assetgate_finalize_total{result=\"renamed\"}"),
        1,
        "only the other upload"
    );
}
