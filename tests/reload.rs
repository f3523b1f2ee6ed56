//! Reload without restart, on the real binary: SIGHUP and a
//! Kubernetes-style swap of a mounted secret reload secrets and policy; an
//! invalid configuration is refused with one line naming the key and the old
//! one stays; start-only keys keep their running value with a log line. A
//! configuration file cut short while written in place never widens the
//! policy (issue 19, finding 9); configuration and secret files are read with
//! bounds (size, file type, text, time), at start and on reload (finding 10).

mod common;

use std::path::Path;
use std::time::Duration;

use common::hooks::{json_of, metadata, post, v2_event};
use common::*;
use serde_json::Value;

const OLD: &str = "link-secret-old-0123456789";
const NEW: &str = "link-secret-new-9876543210";
const APPLIED: &str = "assetgate_config_reloads_total{result=\"applied\"}";
const REFUSED: &str = "assetgate_config_reloads_total{result=\"refused\"}";

fn link(secret: &str, uri: &str) -> String {
    let exp = now() + 600;
    format!(
        "{uri}?md5={}&expires={exp}",
        sign_link(secret, uri, &exp.to_string())
    )
}

fn auth(d: &Daemon, secret: &str) -> u16 {
    get(
        d.addr,
        "/auth",
        &[("X-Original-URI", link(secret, "/private/r.txt").as_bytes())],
    )
    .0
}

fn config(extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n{extra}"
    )
}

/// Replaces `path` atomically (write aside, rename over), as `install` or an
/// editor would.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn sighup_rotates_secrets_refuses_invalid_config_and_keeps_start_only_keys() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("link_secret");
    std::fs::write(&secret, format!("{OLD}\n")).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_LINK_SECRET_FILE", secret.to_str().unwrap()),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 403));

    // Add the new secret (newest first) and reload: both are accepted.
    replace(&secret, &format!("{NEW}\n{OLD}\n"));
    d.hup();
    assert!(
        d.wait_metric(APPLIED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 204));

    // An invalid configuration is refused: one line naming the key, counted,
    // and the running configuration stays.
    std::fs::write(&cfg, config("max_size = \"lots\"\n")).unwrap();
    d.hup();
    assert!(
        d.wait_metric(REFUSED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    // Log lines go through a queue: the counter can be ahead of the line.
    assert!(d.wait_log("reload refused", Duration::from_secs(5)));
    let refused: Vec<String> = d
        .logs()
        .into_iter()
        .filter(|l| l.contains("reload refused"))
        .collect();
    // One line per refused reload (the file watch and SIGHUP may both fire).
    assert!((1..=2).contains(&refused.len()), "{refused:#?}");
    for line in &refused {
        assert!(line.contains("\"key\":\"upload.max_size\""), "{line}");
        assert!(!line.contains(NEW) && !line.contains(OLD));
    }
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 204));
    // So is a secret file that became invalid.
    replace(&secret, "short\n");
    d.hup();
    assert!(
        d.wait_metric(REFUSED, 2.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert!(d.wait_log("\"key\":\"link.secrets[0]\"", Duration::from_secs(5)));
    assert_eq!(auth(&d, NEW), 204);

    // Start-only keys: the running values stay, one line says a restart is needed.
    let port = d.addr.port();
    std::fs::write(
        &cfg,
        config("[server]\nworker_threads = 3\n").replace("127.0.0.1:0", "127.0.0.1:1"),
    )
    .unwrap();
    replace(&secret, &format!("{NEW}\n"));
    d.hup();
    assert!(
        d.wait_metric(APPLIED, 2.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert!(
        d.wait_log("restart to apply them", Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    let line = d
        .logs()
        .into_iter()
        .find(|l| l.contains("restart to apply them"))
        .unwrap();
    assert!(line.contains("listen, server.worker_threads"), "{line}");
    assert_eq!(d.addr.port(), port);
    let (s, _, _) = get(d.addr, "/healthz", &[]);
    assert_eq!(s, 200, "still on the old address");

    // The old secret was dropped: its links fail, the new ones work.
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (403, 204));
}

/// Kubernetes updates a mounted Secret by writing a new `..<timestamp>`
/// directory and renaming a `..data` symlink over the old one; the file the
/// gate was told about (`link_secret -> ..data/link_secret`) never changes
/// inode. The gate reloads without any signal.
#[test]
fn kubernetes_secret_swap_reloads_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("secrets");
    std::fs::create_dir_all(mount.join("..2026_11_30_a")).unwrap();
    std::fs::write(mount.join("..2026_11_30_a/link_secret"), format!("{OLD}\n")).unwrap();
    std::os::unix::fs::symlink("..2026_11_30_a", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/link_secret", mount.join("link_secret")).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let file = mount.join("link_secret");
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_LINK_SECRET_FILE", file.to_str().unwrap()),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 403));

    let swap = |name: &str, text: &str| {
        std::fs::create_dir_all(mount.join(name)).unwrap();
        std::fs::write(mount.join(name).join("link_secret"), text).unwrap();
        let _ = std::fs::remove_file(mount.join("..data_tmp"));
        std::os::unix::fs::symlink(name, mount.join("..data_tmp")).unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    };
    swap("..2026_11_30_b", &format!("{NEW}\n{OLD}\n"));
    assert!(
        d.wait_metric(APPLIED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 204));
    assert!(d.wait_log("\"trigger\":\"file_change\"", Duration::from_secs(5)));

    // A bad secret swapped in is refused; the running secrets stay.
    swap("..2026_11_30_c", "tiny\n");
    assert!(
        d.wait_metric(REFUSED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 204));

    swap("..2026_11_30_d", &format!("{NEW}\n"));
    assert!(
        d.wait_metric(APPLIED, 2.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (403, 204));
}

/// The configuration file is watched too (a Kubernetes ConfigMap is swapped
/// like a Secret, and a distroless image has no `kill`): replacing it reloads.
#[test]
fn replacing_the_config_file_reloads_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assetgate.toml");
    let with_links = |list: &str| format!("{}[link]\nsecrets = [{list}]\n", config(""));
    std::fs::write(&cfg, with_links(&format!("\"{OLD}\""))).unwrap();
    let d = Daemon::start_file(&cfg, &[], &[("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0")]);
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 403));
    replace(&cfg, &with_links(&format!("\"{NEW}\", \"{OLD}\"")));
    assert!(
        d.wait_metric(APPLIED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 204));
    // Written in place, slowly (six pieces 100 ms apart): one reload, of the
    // whole file, once it has been quiet for 200 ms.
    let whole = with_links(&format!("\"{NEW}\""));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&cfg).unwrap();
        for piece in whole.as_bytes().chunks(whole.len().div_ceil(6)) {
            f.write_all(piece).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    assert!(
        d.wait_metric(APPLIED, 2.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (403, 204));
    assert_eq!(d.metric(REFUSED), 0.0, "a half-written file was never loaded");
}

/// The error code of a pre-create for `key` declared `ct`, `size` bytes long
/// (`None`: accepted).
fn precreate(d: &Daemon, key: &str, ct: &str, size: u64) -> Option<String> {
    let m = metadata(UPLOAD_SECRET, key, "public", ct, now() + 600);
    let (s, _, b) = post(
        d.addr,
        v2_event("pre-create", m, size, Value::Null)
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    if v["RejectUpload"] != true {
        return None;
    }
    let body = json_of(v["HTTPResponse"]["Body"].as_str().unwrap().as_bytes());
    Some(body["error"]["code"].as_str().unwrap().to_string())
}

/// Reloads that ended, whatever their result.
fn reloads(d: &Daemon) -> f64 {
    d.metric(APPLIED) + d.metric(REFUSED) + d.metric(UNCHANGED)
}

const UNCHANGED: &str = "assetgate_config_reloads_total{result=\"unchanged\"}";

/// Waits until more than `before` reloads ended.
fn wait_reload(d: &Daemon, before: f64) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while reloads(d) <= before {
        assert!(
            std::time::Instant::now() < end,
            "no reload ended: {:#?}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 19, finding 9: the file rewritten in place and cut right after
/// `[upload]` is valid TOML; loaded, it allowed any type, any size and no
/// content check. A reload that drops keys the running file has is refused
/// unless the file was replaced whole (a new inode); removing a key by an
/// atomic replacement still works.
#[test]
fn a_config_cut_in_place_never_widens_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assetgate.toml");
    let head = format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{OLD}\"]\n[upload]\n"
    );
    let policy = "content_types = [\"image/png\"]\nmax_size = 1000\ncheck_content = true\n";
    std::fs::write(&cfg, format!("{head}{policy}")).unwrap();
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_UPLOAD_SECRET", UPLOAD_SECRET),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let refused_by_policy = |d: &Daemon| {
        (
            precreate(d, "a.txt", "text/plain", 10),
            precreate(d, "b.png", "image/png", 5000),
        )
    };
    let policy_holds = (
        Some("content_type_not_allowed".to_string()),
        Some("too_large".to_string()),
    );
    assert_eq!(refused_by_policy(&d), policy_holds);
    assert_eq!(precreate(&d, "c.png", "image/png", 10), None);

    // Rewritten in place (same inode) and cut after `[upload]`: a writer
    // that died, a full disk. The watch and a SIGHUP both reload it.
    let before = reloads(&d);
    std::fs::write(&cfg, &head).unwrap();
    d.hup();
    wait_reload(&d, before);
    assert_eq!(refused_by_policy(&d), policy_holds, "{:#?}", d.logs());
    assert!(d.wait_metric(REFUSED, 1.0, Duration::from_secs(5)));
    assert_eq!(d.metric(APPLIED), 0.0);
    assert_eq!(
        d.metric("assetgate_config_reload_refusals_total{reason=\"dropped_keys\"}"),
        d.metric(REFUSED)
    );
    assert!(d.wait_log("reload refused", Duration::from_secs(5)));
    let line = d
        .logs()
        .into_iter()
        .find(|l| l.contains("reload refused"))
        .unwrap();
    assert!(
        line.contains("upload.check_content, upload.content_types, upload.max_size"),
        "{line}"
    );
    assert!(line.contains("rename"), "says how to remove keys: {line}");
    assert!(
        !line.contains("image/png") && !line.contains("1000"),
        "no values: {line}"
    );

    // The same keys written in place with other values: applied (an
    // in-place write is refused only when it drops keys).
    let before = reloads(&d);
    std::fs::write(&cfg, format!("{head}{}", policy.replace("1000", "6000"))).unwrap();
    d.hup();
    wait_reload(&d, before);
    assert!(
        d.wait_metric(APPLIED, 1.0, Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    assert_eq!(precreate(&d, "b.png", "image/png", 5000), None);

    // A whole file put in place by rename (a new inode) may remove keys.
    replace(&cfg, &format!("{head}content_types = [\"image/png\"]\n"));
    d.hup();
    assert!(
        d.wait_metric(APPLIED, 2.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!(precreate(&d, "b.png", "image/png", 50_000), None);
    assert_eq!(
        precreate(&d, "a.txt", "text/plain", 10).as_deref(),
        Some("content_type_not_allowed")
    );
}

/// `mkfifo path`.
fn mkfifo(path: &Path) {
    let s = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(s.success());
}

/// Issue 19, finding 10: a FIFO named as the secret file wedged the reload
/// task for ever (open(2) waits for a writer), so every later rotation was
/// silently never applied. It is refused at once, and the next rotation
/// applies.
#[test]
fn a_fifo_as_secret_file_is_refused_and_later_rotations_apply() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("link_secret");
    std::fs::write(&secret, format!("{OLD}\n")).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_LINK_SECRET_FILE", secret.to_str().unwrap()),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(auth(&d, OLD), 204);

    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &secret).unwrap();
    d.hup();
    assert!(
        d.wait_metric(REFUSED, 1.0, Duration::from_secs(10)),
        "the reload never ended: {:#?}",
        d.logs()
    );
    assert!(
        d.wait_log("not a regular file", Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    assert_eq!(auth(&d, OLD), 204, "the running secrets stay");

    // The next rotation is applied.
    replace(&secret, &format!("{NEW}\n"));
    d.hup();
    assert!(
        d.wait_metric(APPLIED, 1.0, Duration::from_secs(10)),
        "{:#?}",
        d.logs()
    );
    assert_eq!((auth(&d, OLD), auth(&d, NEW)), (403, 204));
}

/// Peak resident memory (VmHWM) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A sparse file of `len` NUL bytes (no disk used).
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

/// Issue 19, finding 10: a 300 MB file of NULs was read whole and accepted
/// as a secret (RSS 931 MB). Secret and configuration files beyond their
/// caps are refused without being read; the peak RSS stays small.
#[test]
fn huge_secret_and_config_files_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("link_secret");
    std::fs::write(&secret, format!("{OLD}\n")).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_LINK_SECRET_FILE", secret.to_str().unwrap()),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let huge = dir.path().join("huge");
    sparse(&huge, 300 << 20);
    std::fs::rename(&huge, &secret).unwrap();
    d.hup();
    assert!(
        d.wait_metric(REFUSED, 1.0, Duration::from_secs(20)),
        "{:#?}",
        d.logs()
    );
    assert!(
        d.wait_log("larger than", Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    assert_eq!(auth(&d, OLD), 204);

    // The configuration file too (the secret file is fine again).
    std::fs::write(dir.path().join("ok"), format!("{OLD}\n")).unwrap();
    std::fs::rename(dir.path().join("ok"), &secret).unwrap();
    sparse(&huge, 300 << 20);
    std::fs::rename(&huge, &cfg).unwrap();
    d.hup();
    assert!(
        d.wait_metric(REFUSED, 2.0, Duration::from_secs(20)),
        "{:#?}",
        d.logs()
    );
    assert_eq!(auth(&d, OLD), 204);
    let peak = peak_rss_kib(d.child.id());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// Issue 19, finding 10: secrets are text, one per line (granite-assets
/// passes them as `str`; nginx's `secure_link_md5` reads them from its
/// config). A secret file holding a NUL or another control character is a
/// wrong file, not a secret: refused, naming the key and the line, never
/// showing the value.
#[test]
fn secrets_with_nul_or_control_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("link_secret");
    std::fs::write(&secret, format!("{OLD}\n")).unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let d = Daemon::start_file(
        &cfg,
        &[],
        &[
            ("ASSETGATE_LINK_SECRET_FILE", secret.to_str().unwrap()),
            ("ASSETGATE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let mut refused = 0.0;
    for bad in [
        format!("{NEW}\nlink-secret-with-a-\0-inside-01\n"),
        format!("link-secret-with-an-\x1b[0m-escape\n{OLD}\n"),
        format!("{}\n", "\0".repeat(4096)),
    ] {
        replace(&secret, &bad);
        d.hup();
        refused += 1.0;
        assert!(
            d.wait_metric(REFUSED, refused, Duration::from_secs(10)),
            "{bad:?}: {:#?}",
            d.logs()
        );
        assert_eq!((auth(&d, OLD), auth(&d, NEW)), (204, 403), "{bad:?}");
    }
    assert!(
        d.wait_log("control character", Duration::from_secs(5)),
        "{:#?}",
        d.logs()
    );
    let logs = d.logs().join("\n");
    assert!(
        logs.contains("\"key\":\"link.secrets (ASSETGATE_LINK_SECRET_FILE)\""),
        "{logs}"
    );
    assert!(!logs.contains("-inside-") && !logs.contains("-escape"), "{logs}");
    assert_eq!(d.metric(APPLIED), 0.0);
}

/// `assetgate check-config` with `env`, killed after 10 s: its exit code
/// (`None`: it hung) and stderr.
fn check_config(cfg: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("--config").arg(cfg).arg("check-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read as _;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

/// The same bounded reader at start: a FIFO, a huge file or a NUL secret is a
/// configuration error (exit 64, one line naming the key), never a hang.
#[test]
fn start_refuses_unbounded_files_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let huge = dir.path().join("huge");
    sparse(&huge, 300 << 20);
    let nul = dir.path().join("nul");
    std::fs::write(&nul, "link-secret-with-a-\0-inside-01\n").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, format!("{OLD}\n")).unwrap();
    for (config, var, file, key, why) in [
        (
            &cfg,
            "ASSETGATE_LINK_SECRET_FILE",
            &fifo,
            "ASSETGATE_LINK_SECRET_FILE",
            "not a regular file",
        ),
        (
            &cfg,
            "ASSETGATE_UPLOAD_SECRET_FILE",
            &huge,
            "ASSETGATE_UPLOAD_SECRET_FILE",
            "larger than",
        ),
        (
            &cfg,
            "ASSETGATE_LINK_SECRET_FILE",
            &nul,
            "ASSETGATE_LINK_SECRET_FILE",
            "control character",
        ),
        (
            &fifo,
            "ASSETGATE_LINK_SECRET_FILE",
            &good,
            "--config",
            "not a regular file",
        ),
        (
            &huge,
            "ASSETGATE_LINK_SECRET_FILE",
            &good,
            "--config",
            "larger than",
        ),
    ] {
        let (code, err) = check_config(config, &[(var, file.to_str().unwrap())]);
        assert_eq!(code, Some(64), "{config:?} {var}={file:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key) && err.contains(why), "{err}");
        assert!(!err.contains("-inside-"), "{err}");
    }
}
