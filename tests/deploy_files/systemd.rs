//! `deploy/systemd/assetgate.service` and `tusd/tusd.service`: `systemd-analyze
//! verify` and `security`, and what the two units must agree on.

use super::*;

/// `(section, key, value)` of a unit file.
pub(super) fn unit(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(rel).lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{rel}: {l}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

pub(super) fn unit_values(u: &[(String, String, String)], key: &str) -> Vec<String> {
    u.iter()
        .filter(|(_, k, _)| k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

pub(super) fn unit_one(u: &[(String, String, String)], key: &str) -> String {
    let v = unit_values(u, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v[0].clone()
}

/// A root with the host's systemd units, the two shipped units and stand-ins
/// for their executables (only their being executable is checked).
pub(super) fn systemd_root() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let host_units = Path::new("/usr/lib/systemd/system");
    assert!(
        host_units.join("sysinit.target").is_file(),
        "systemd's units are missing: apt-get install -y systemd"
    );
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(host_units)
            .arg(r.join("usr/lib/systemd/")),
        "copy systemd's units",
    );
    let etc = r.join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    for rel in ["deploy/systemd/assetgate.service", "tusd/tusd.service"] {
        let u = unit(rel);
        std::fs::copy(repo_file(rel), etc.join(Path::new(rel).file_name().unwrap())).unwrap();
        for key in ["ExecStart", "ExecReload"] {
            for exec in unit_values(&u, key) {
                let exe = exec.split_whitespace().next().unwrap();
                let stand_in = r.join(exe.trim_start_matches('/'));
                std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
                std::fs::write(&stand_in, "#!/bin/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
    root
}

pub(super) fn systemd_analyze() -> PathBuf {
    require_peer(
        "systemd-analyze",
        &[PathBuf::from("/usr/bin/systemd-analyze")],
        "apt-get install -y systemd",
    )
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let root = systemd_root();
    let r = root.path();
    // verify: syntax, unknown keys/sections (warnings count as failures),
    // executables, dependencies.
    let o = Command::new(systemd_analyze())
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(["assetgate.service", "tusd.service"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&o)
    );
    // security: the overall exposure (0-100, shown /10) stays at most 1.5 ("OK").
    for name in ["assetgate.service", "tusd.service"] {
        let o = Command::new(systemd_analyze())
            .args(["security", "--offline=true", "--threshold=15", "--no-pager"])
            .arg(format!("--root={}", r.display()))
            .arg(r.join("etc/systemd/system").join(name))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "systemd-analyze security {name}:\n{}",
            text(&o)
        );
    }
}

#[test]
fn systemd_units_agree_with_each_other_and_the_config() {
    let gate = unit("deploy/systemd/assetgate.service");
    let tusd = unit("tusd/tusd.service");
    let tusd_env = env_file("tusd/tusd.env");
    let upload_dir = config_str("tusd.upload_dir");
    let root = config_str("storage.root");
    let listen = config_str("listen");

    // The shared group and tusd's group-writable uploads.
    assert_eq!(unit_one(&gate, "Group"), "assets");
    assert_eq!(unit_one(&tusd, "Group"), "assets");
    assert_eq!(unit_one(&tusd, "UMask"), "0007");
    assert_ne!(unit_one(&gate, "User"), unit_one(&tusd, "User"));
    // Writable: the asset tree and the upload dir for assetgate, the upload dir
    // for tusd; the same paths as the config and tusd's env file.
    assert_eq!(tusd_env["TUSD_UPLOAD_DIR"], upload_dir);
    let rw = |u: &[(String, String, String)]| -> Vec<String> {
        let mut v: Vec<String> = unit_values(u, "ReadWritePaths")
            .iter()
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        v.sort();
        v
    };
    let mut want = vec![root.clone(), upload_dir.clone()];
    want.sort();
    assert_eq!(rw(&gate), want);
    assert_eq!(rw(&tusd), vec![upload_dir.clone()]);
    for u in [&gate, &tusd] {
        assert_eq!(unit_one(u, "ProtectSystem"), "strict");
        assert_eq!(unit_one(u, "NoNewPrivileges"), "yes");
        assert_eq!(unit_one(u, "IPAddressAllow"), "localhost");
    }
    // Loopback only, where tusd's hooks and nginx's upstream point.
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    assert_eq!(tusd_env["ASSETGATE_HOOK_URL"], format!("http://{listen}/tusd"));
    assert_eq!(tusd_sh_flags()["hooks-http"], format!("http://{listen}/tusd"));
    assert!(read("nginx/assetgate-upstream.conf").contains(&format!("server {listen};")));
    assert!(tusd_env["TUSD_MAX_SIZE"].parse::<u64>().unwrap() >= config_max_size());
    // Ordering: tusd's hooks need assetgate.
    assert!(unit_one(&tusd, "After")
        .split_whitespace()
        .any(|u| u == "assetgate.service"));
    assert!(unit_one(&tusd, "Wants")
        .split_whitespace()
        .any(|u| u == "assetgate.service"));
    // The admin socket: in the directory systemd makes for the service
    // (owned by User=, 0700), where deploy/assetgate.toml puts it, so the
    // daemon and `assetgate revoke` with the same file find it.
    let socket = config_str("server.admin_socket");
    let runtime_dir = unit_one(&gate, "RuntimeDirectory");
    assert_eq!(
        Path::new(&socket).parent().unwrap(),
        Path::new("/run").join(&runtime_dir),
        "{socket}"
    );
    assert_eq!(unit_one(&gate, "RuntimeDirectoryMode"), "0700");
    // Open files: above every connection budget and the daemon's own files
    // (src/http/limits.rs: connections + 16 per admin socket + one per /tusd
    // request + 128 + event deliveries), at the defaults and the largest
    // [events] concurrency.
    let nofile: u64 = unit_one(&gate, "LimitNOFILE")
        .parse()
        .expect("LimitNOFILE=<number>");
    let needed = 4096 + 16 * 3 + 256 + 128 + 256;
    assert!(nofile >= needed, "LimitNOFILE={nofile}, needs {needed}");

    // `systemctl reload` is SIGHUP: the daemon reloads its configuration.
    assert_eq!(unit_values(&gate, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);

    // The unit's command line and environment load with deploy/assetgate.toml:
    // ExecStart's --config is where the install puts it, credentials are
    // %d/<name> for each LoadCredential.
    let exec = unit_one(&gate, "ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[1..], ["--config", "/etc/assetgate/assetgate.toml", "serve"]);
    let creds: Vec<String> = unit_values(&gate, "LoadCredential")
        .iter()
        .map(|c| c.split(':').next().unwrap().to_string())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    secret_files(tmp.path());
    let mut env = vec![(
        "ASSETGATE_CONFIG".to_string(),
        repo_file("deploy/assetgate.toml").display().to_string(),
    )];
    let mut used = Vec::new();
    for e in unit_values(&gate, "Environment") {
        let (k, v) = e.split_once('=').unwrap();
        let name = v
            .strip_prefix("%d/")
            .unwrap_or_else(|| panic!("{k} should be %d/<credential>"));
        assert!(
            creds.iter().any(|c| c == name),
            "{k}={v}: no LoadCredential={name}:..."
        );
        used.push(name.to_string());
        env.push((k.to_string(), tmp.path().join(name).display().to_string()));
    }
    used.sort();
    let mut creds_sorted = creds.clone();
    creds_sorted.sort();
    assert_eq!(used, creds_sorted, "every credential is used");
    let o = check_config(&env);
    assert!(o.status.success(), "{env:?}: {}", text(&o));
    assert!(!text(&o).contains("warning"), "{}", text(&o));
}
