//! `deploy/systemd/assetgate.service` and `tusd/tusd.service`: `systemd-analyze
//! verify` and `security`, what the two units must agree on, and the install
//! steps at the top of assetgate's unit run for real, as the units' users
//! (`setpriv`), to see who can read and write what.

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

    // Two groups: the upload directory's (tusd, assetgate) and the asset
    // tree's (assetgate, nginx); tusd's uploads group-writable and readable by
    // others (the published inode is nginx's to read). What they allow is
    // run below (`systemd_install_keeps_nginx_out_of_the_upload_dir`).
    assert_eq!(unit_one(&gate, "Group"), "assets");
    assert_eq!(unit_one(&gate, "SupplementaryGroups"), "tusd-uploads");
    assert_eq!(unit_one(&gate, "UMask"), "0027");
    assert_eq!(unit_one(&tusd, "Group"), "tusd-uploads");
    assert_eq!(unit_one(&tusd, "UMask"), "0002");
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

/// What the install steps at the top of `deploy/systemd/assetgate.service`
/// set up: `useradd`/`usermod` memberships and `install -d` directories.
#[derive(Debug, Default)]
struct Install {
    /// user -> (primary group, supplementary groups)
    users: BTreeMap<String, (String, Vec<String>)>,
    /// path -> (owner, group, mode)
    dirs: BTreeMap<String, (String, String, u32)>,
}

impl Install {
    fn parse(unit_text: &str) -> Install {
        let mut install = Install::default();
        let lines = unit_text
            .lines()
            .skip_while(|l| !l.starts_with("# Install:"))
            .skip(1)
            .map_while(|l| l.strip_prefix("#   "));
        for line in lines {
            let cmd = line.split(" #").next().unwrap();
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let flag = |name: &str| {
                words
                    .iter()
                    .position(|w| *w == name)
                    .map(|i| words[i + 1].to_string())
            };
            match words.first().copied() {
                Some("useradd") => {
                    let name = words.last().unwrap().to_string();
                    let groups = flag("--groups")
                        .map(|g| g.split(',').map(str::to_string).collect())
                        .unwrap_or_default();
                    install.users.insert(name, (flag("--gid").unwrap(), groups));
                }
                Some("usermod") => {
                    let name = words.last().unwrap().to_string();
                    let group = flag("-aG").unwrap();
                    // a user the install does not create (nginx's): its own group
                    let entry = install.users.entry(name.clone()).or_insert((name, Vec::new()));
                    entry.1.push(group);
                }
                Some("install") if words.get(1) == Some(&"-d") && flag("-o").is_some() => {
                    let mode = u32::from_str_radix(&flag("-m").unwrap(), 8).unwrap();
                    install.dirs.insert(
                        words.last().unwrap().to_string(),
                        (flag("-o").unwrap(), flag("-g").unwrap(), mode),
                    );
                }
                _ => {}
            }
        }
        install
    }
}

/// A process of one of the units (or nginx): numeric ids for the install's
/// names (none of them need to exist on this host), its umask.
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    umask: String,
}

/// Runs `script` with `sh -c` as `who` (setpriv, no capabilities): its output.
fn run_as(who: &Identity, script: &str, stdin: &[u8], env: &[(&str, &str)]) -> Output {
    use std::io::Write as _;
    let setpriv = require_peer(
        "setpriv",
        &[PathBuf::from("/usr/bin/setpriv")],
        "apt-get install -y util-linux",
    );
    let groups: Vec<String> = who.groups.iter().map(u32::to_string).collect();
    let mut cmd = Command::new(setpriv);
    cmd.arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={}", groups.join(",")));
    }
    cmd.args(["--inh-caps=-all", "--", "sh", "-c"])
        .arg(format!("umask {} && {script}", who.umask))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Issue 19, finding 7 (a): the shipped install gave nginx's user write access
/// to the upload directory (group `assets`, 2770), and whoever can write it
/// can plant `.info` files and delete uploads. Run as the install's users
/// (numeric ids, `setpriv`) with the units' groups and umasks: tusd writes an
/// upload, nginx's user cannot enter, list, read or write the upload directory,
/// assetgate's own `finalize-pending` hard-links the upload into the asset tree
/// (protected_hardlinks lets it: group read-write) and removes it, and nginx's
/// user reads the published file but writes nothing in the asset tree.
#[test]
fn systemd_install_keeps_nginx_out_of_the_upload_dir() {
    use common::hooks::{metadata, upload_id_for};
    use std::os::unix::fs::PermissionsExt;
    let euid = run_ok(Command::new("id").arg("-u"), "id -u");
    assert_eq!(
        euid.trim(),
        "0",
        "this test switches to the install's users with setpriv: run it as root (CI does)"
    );
    let gate_unit = unit("deploy/systemd/assetgate.service");
    let tusd_unit = unit("tusd/tusd.service");
    let install = Install::parse(&read("deploy/systemd/assetgate.service"));

    // Numeric ids for every user and group the install names.
    let mut groups: BTreeMap<String, u32> = BTreeMap::new();
    for (primary, supplementary) in install.users.values() {
        for g in std::iter::once(primary).chain(supplementary) {
            let next = 62_000 + groups.len() as u32;
            groups.entry(g.clone()).or_insert(next);
        }
    }
    let uids: BTreeMap<String, u32> = install
        .users
        .keys()
        .enumerate()
        .map(|(i, u)| (u.clone(), 61_000 + i as u32))
        .collect();
    // systemd runs a unit with Group= as its group and the user's groups from
    // the user database plus SupplementaryGroups= as supplementary ones.
    let identity = |user: &str, group: &str, extra: &[String], umask: &str| {
        let (_, member_of) = &install.users[user];
        let mut g: Vec<u32> = member_of.iter().chain(extra).map(|n| groups[n]).collect();
        g.sort_unstable();
        g.dedup();
        Identity {
            uid: uids[user],
            gid: groups[group],
            groups: g,
            umask: umask.to_string(),
        }
    };
    let of_unit = |u: &[(String, String, String)]| {
        let extra: Vec<String> = unit_values(u, "SupplementaryGroups")
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
        identity(
            &unit_one(u, "User"),
            &unit_one(u, "Group"),
            &extra,
            &unit_one(u, "UMask"),
        )
    };
    let gate = of_unit(&gate_unit);
    let tusd = of_unit(&tusd_unit);
    let nginx = identity("www-data", "www-data", &[], "0022");

    // The install's directories, below a scratch root.
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let at = |p: &str| root.path().join(p.trim_start_matches('/'));
    for (path, (owner, group, mode)) in &install.dirs {
        let dir = at(path);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(uids[owner]), Some(groups[group])).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let uploads = at(&config_str("tusd.upload_dir"));
    let assets = at(&config_str("storage.root"));
    assert!(uploads.is_dir() && assets.is_dir(), "{install:?}");

    // tusd writes a finished upload (the ID pre-create issued for its token).
    let secret = "install-test-upload-secret-0123";
    let meta = metadata(secret, "avatars/a.png", "public", "image/png", now() + 600);
    let id = upload_id_for(secret, &meta, false, &[9; 16]);
    let data = b"\x89PNG\r\n\x1a\n published bytes";
    let (path, info) = (uploads.join(&id), uploads.join(format!("{id}.info")));
    let info_json = serde_json::json!({"ID": id, "Size": data.len(), "SizeIsDeferred": false,
        "Offset": 0, "MetaData": meta, "IsPartial": false, "IsFinal": false,
        "Storage": {"Type": "filestore", "Path": path, "InfoPath": info}});
    for (file, bytes) in [(&path, &data[..]), (&info, info_json.to_string().as_bytes())] {
        let o = run_as(&tusd, &format!("cat > '{}'", file.display()), bytes, &[]);
        assert!(o.status.success(), "tusd cannot write its upload: {}", text(&o));
    }

    // nginx's user: nothing in the upload directory.
    for (what, script) in [
        (
            "create a file in",
            format!("touch '{}'", uploads.join("planted.info").display()),
        ),
        ("list", format!("ls '{}'", uploads.display())),
        ("read an upload in", format!("cat '{}'", path.display())),
        ("remove an upload from", format!("rm -f '{}'", path.display())),
    ] {
        let o = run_as(&nginx, &script, b"", &[]);
        assert!(
            !o.status.success(),
            "nginx's user can {what} the upload directory: {script}"
        );
    }
    assert!(!uploads.join("planted.info").exists() && path.exists());

    // assetgate publishes it with its own mover, by hard link.
    let cfg = root.path().join("assetgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upload]\nsecrets = [\"{secret}\"]\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n",
            assets.display().to_string(),
            uploads.display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_as(
        &gate,
        &format!(
            "'{}' --config '{}' finalize-pending",
            bin().display(),
            cfg.display()
        ),
        b"",
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("moved {id} -> public/avatars/a.png (renamed,")),
        "not published by hard link (protected_hardlinks? the upload's group and mode): {out}"
    );
    assert!(
        !path.exists() && !info.exists(),
        "assetgate removes the upload: {out}"
    );
    let published = assets.join("public/avatars/a.png");
    // nginx's user reads the published file, writes nothing in the tree; tusd
    // writes nothing there either.
    let o = run_as(&nginx, &format!("cat '{}'", published.display()), b"", &[]);
    assert!(
        o.status.success(),
        "nginx cannot read the published file: {}",
        text(&o)
    );
    assert_eq!(o.stdout, data);
    for who in [&nginx, &tusd] {
        let o = run_as(
            who,
            &format!("touch '{}'", assets.join("public/x").display()),
            b"",
            &[],
        );
        assert!(!o.status.success(), "uid {} writes the asset tree", who.uid);
    }
}
