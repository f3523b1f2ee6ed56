//! Reload without restart, on the real binary: SIGHUP and a
//! Kubernetes-style swap of a mounted secret reload secrets and policy; an
//! invalid configuration is refused with one line naming the key and the old
//! one stays; start-only keys keep their running value with a log line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

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
