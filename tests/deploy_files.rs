//! The deployment files, checked without a docker engine, a systemd PID 1 or a
//! cluster: each by the real checker for its format, then for what ties them
//! together (paths, ports, users, secrets), and where it can be run, run.
//!
//! - `deploy/Dockerfile`: hadolint; its HEALTHCHECK command run against a live
//!   daemon with the image's environment.
//! - `deploy/compose.yaml`: the compose-spec JSON schema (check-jsonschema) and
//!   Docker Compose's own loader (`docker-compose config`); it mounts the shipped
//!   `nginx/` and `deploy/assetgate.toml`; `deploy/nginx/default.conf` is the
//!   shipped example with only the upstream addresses changed; assetgate's
//!   environment and config load.
//! - `deploy/systemd/assetgate.service`, `tusd/tusd.service`:
//!   `systemd-analyze verify` and `security` (exposure threshold) on an install
//!   root; both units agree with each other, `tusd/tusd.env` and the config.
//! - `deploy/kubernetes/*.yaml`: the Kubernetes schemas (kubernetes-validate,
//!   strict); the pod's wiring; its probes run; the placeholder secrets refused.
//! - tusd's flags are the same in `tusd/tusd.sh`, compose and Kubernetes.
//!
//! The checkers come from `.peers/tools` (`tests/peers/tools-requirements.txt`,
//! installed by `scripts/test.sh`); a missing one fails the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------
// helpers

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd`, asserts exit 0, returns stdout + stderr.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(o.status.success(), "{what} failed ({}):\n{}", o.status, text(&o));
    text(&o)
}

fn repo_file(rel: &str) -> PathBuf {
    repo().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a YAML file, as JSON (PyYAML from the tools venv).
fn yaml_docs(rel: &str) -> Vec<Value> {
    let out = run_ok(
        Command::new(tool("python")).args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
            &repo_file(rel).display().to_string(),
        ]),
        &format!("parse {rel}"),
    );
    serde_json::from_str(&out).unwrap()
}

/// `deploy/assetgate.toml` as JSON.
fn deploy_config() -> Value {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::file_exact(repo_file("deploy/assetgate.toml")))
        .extract()
        .unwrap()
}

fn config_str(path: &str) -> String {
    let mut v = &deploy_config();
    for k in path.split('.') {
        v = &v[k];
    }
    v.as_str()
        .unwrap_or_else(|| panic!("deploy/assetgate.toml: {path} is not a string"))
        .to_string()
}

/// `[upload] max_size` in bytes.
fn config_max_size() -> u64 {
    let s = config_str("upload.max_size");
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let mult = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("unit {other} in upload.max_size: extend this test"),
    };
    n.parse::<u64>().unwrap() * mult
}

/// `assetgate check-config` with exactly `env` as the ASSETGATE_* environment.
fn check_config(env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("check-config");
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
}

/// Two secret files (newest first would be one per line) in `dir`.
fn secret_files(dir: &Path) -> (PathBuf, PathBuf) {
    let link = dir.join("link_secret");
    let upload = dir.join("upload_secret");
    std::fs::write(&link, "link-secret-for-a-test-0123456789\n").unwrap();
    std::fs::write(&upload, "upload-secret-for-a-test-0123456789\n").unwrap();
    (link, upload)
}

/// The `-flag=value` / `-flag` arguments of a tusd command line, as a map.
fn tusd_flags(args: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a.strip_prefix('-').unwrap_or_else(|| panic!("not a flag: {a}"));
        if let Some((k, v)) = name.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        } else if args.get(i + 1).is_some_and(|n| !n.starts_with('-')) {
            out.insert(name.to_string(), args[i + 1].clone());
            i += 1;
        } else {
            out.insert(name.to_string(), "true".to_string());
        }
        i += 1;
    }
    out
}

/// `KEY=value` lines of an env file.
fn env_file(rel: &str) -> BTreeMap<String, String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// tusd's flags in `tusd/tusd.sh`, with the variables of `tusd/tusd.env`.
fn tusd_sh_flags() -> BTreeMap<String, String> {
    let sh = read("tusd/tusd.sh");
    let env = env_file("tusd/tusd.env");
    let exec = &sh[sh.find("exec tusd").expect("tusd.sh: exec tusd")..];
    let line = exec.replace("\\\n", " ");
    let line = line.lines().next().unwrap();
    // Words, double quotes grouping (all tusd.sh needs).
    let mut words = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    for ch in line.chars() {
        match ch {
            '"' => (quoted, any) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    let mut args = Vec::new();
    for tok in words.into_iter().skip(2) {
        // ${NAME:?msg} / ${NAME:-default}
        let tok = if let Some(inner) = tok.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
            let name = inner.split(':').next().unwrap();
            env.get(name)
                .cloned()
                .unwrap_or_else(|| panic!("tusd.sh uses ${name}, tusd.env does not set it"))
        } else {
            tok
        };
        args.push(tok);
    }
    tusd_flags(&args)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A daemon on 127.0.0.1 for running health checks against.
fn live_daemon() -> Daemon {
    Daemon::start(&default_config())
}

// ---------------------------------------------------------------------------
// Dockerfile

/// Instructions of a Dockerfile: (INSTRUCTION, rest), continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, rest) = cur.split_once(' ').unwrap();
        out.push((ins.to_ascii_uppercase(), rest.trim().to_string()));
        cur.clear();
    }
    out
}

#[test]
fn dockerfile_passes_hadolint() {
    let out = run_ok(
        Command::new(tool("hadolint"))
            .arg("--no-color")
            .arg(repo_file("deploy/Dockerfile")),
        "hadolint deploy/Dockerfile",
    );
    assert!(out.trim().is_empty(), "hadolint has remarks:\n{out}");
}

#[test]
fn dockerfile_runtime_image_and_its_healthcheck() {
    let ins = dockerfile();
    let froms: Vec<&str> = ins
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, r)| r.as_str())
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let runtime = *froms.last().unwrap();
    assert!(
        runtime.starts_with("gcr.io/distroless/") || runtime.contains("slim"),
        "small runtime image: {runtime}"
    );
    let last_from = ins.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let runtime_ins = &ins[last_from..];
    let get = |name: &str| -> Vec<&str> {
        runtime_ins
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };

    let user = get("USER");
    assert_eq!(user.len(), 1, "one USER in the runtime stage");
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as root: {}", user[0]);

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in get("ENV") {
        for kv in e.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap();
            env.insert(k.into(), v.into());
        }
    }
    assert_eq!(env["ASSETGATE_LISTEN"], "0.0.0.0:9750");
    assert_eq!(get("EXPOSE"), vec!["9750"]);
    // The config the image points at is deploy/assetgate.toml, built in.
    let cfg = &env["ASSETGATE_CONFIG"];
    let run = ins
        .iter()
        .find(|(i, r)| i == "RUN" && r.contains("deploy/assetgate.toml"));
    assert!(
        run.is_some_and(|(_, r)| r.contains(&format!("/out{cfg}"))),
        "the image must install deploy/assetgate.toml at {cfg}"
    );
    let ignore = read("deploy/Dockerfile.dockerignore");
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src", "!deploy/assetgate.toml"] {
        assert!(
            ignore.lines().any(|l| l.trim() == needed),
            "Dockerfile.dockerignore must keep {needed}"
        );
    }
    let entry: Vec<String> = serde_json::from_str(get("ENTRYPOINT")[0]).unwrap();
    let cmd: Vec<String> = serde_json::from_str(get("CMD")[0]).unwrap();
    assert_eq!(entry, vec!["/usr/local/bin/assetgate".to_string()]);
    assert_eq!(cmd, vec!["serve".to_string()]);

    // HEALTHCHECK [options] CMD ["/usr/local/bin/assetgate", ...], exec form (no
    // shell in distroless), run here with the image's environment; only the port
    // is the test daemon's.
    let hc = get("HEALTHCHECK");
    assert_eq!(hc.len(), 1);
    let argv: Vec<String> =
        serde_json::from_str(hc[0].split_once(" CMD ").expect("HEALTHCHECK ... CMD [...]").1)
            .expect("HEALTHCHECK CMD in exec form");
    assert_eq!(argv[0], entry[0]);
    let mut gate = live_daemon();
    let env_for = |port: u16| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| match k.as_str() {
                "ASSETGATE_LISTEN" => (k.clone(), format!("0.0.0.0:{port}")),
                "ASSETGATE_CONFIG" => (
                    k.clone(),
                    repo_file("deploy/assetgate.toml").display().to_string(),
                ),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    let probe = |port: u16| {
        let mut cmd = Command::new(bin());
        cmd.args(&argv[1..]);
        for (k, _) in std::env::vars() {
            if k.starts_with("ASSETGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env_for(port)).output().unwrap()
    };
    let port = gate.addr.port();
    let o = probe(port);
    assert!(o.status.success(), "healthy daemon: {}", text(&o));
    assert!(text(&o).contains("/healthz: 200"), "{}", text(&o));
    gate.terminate();
    assert_eq!(gate.wait_exit(Duration::from_secs(20)), Some(0));
    let o = probe(port);
    assert_eq!(o.status.code(), Some(1), "stopped daemon: {}", text(&o));
}

// ---------------------------------------------------------------------------
// compose

/// `docker-compose config` as JSON: the file as Compose loads it (paths
/// absolute, short syntax expanded).
fn compose_config() -> Value {
    let out = Command::new(docker_compose())
        .arg("-f")
        .arg(repo_file("deploy/compose.yaml"))
        .args(["config", "--format", "json"])
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "docker-compose config: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn compose_file_is_valid() {
    let file = repo_file("deploy/compose.yaml");
    let out = run_ok(
        Command::new(tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&file),
        "compose-spec schema",
    );
    assert!(out.contains("ok -- validation done"), "{out}");
    // Compose's own loader: references (volumes, networks, secrets), types, merge.
    let out = run_ok(
        Command::new(docker_compose())
            .arg("-f")
            .arg(&file)
            .args(["config", "--quiet"])
            .env_remove("COMPOSE_FILE"),
        "docker-compose config",
    );
    assert!(out.trim().is_empty(), "docker-compose config has remarks:\n{out}");
}

/// The mount of `service` whose target is `target`.
fn mount<'a>(svc: &'a Value, target: &str) -> &'a Value {
    svc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["target"] == target)
        .unwrap_or_else(|| panic!("no mount at {target}: {}", svc["volumes"]))
}

#[test]
fn compose_runs_the_shipped_files() {
    let c = compose_config();
    let svc = |name: &str| &c["services"][name];
    let (nginx, tusd, gate) = (svc("nginx"), svc("tusd"), svc("assetgate"));

    // nginx: the shipped nginx/ directory itself, read-only, where
    // deploy/nginx/default.conf includes it from.
    let m = mount(nginx, "/etc/nginx/assetgate");
    assert_eq!(m["type"], "bind");
    assert_eq!(m["source"], repo_file("nginx").display().to_string());
    assert_eq!(m["read_only"], true);
    let m = mount(nginx, "/etc/nginx/conf.d/default.conf");
    assert_eq!(
        m["source"],
        repo_file("deploy/nginx/default.conf").display().to_string()
    );
    assert_eq!(m["read_only"], true);
    assert!(read("deploy/nginx/default.conf").contains("include assetgate/assetgate-locations.conf;"));

    // assetgate: deploy/assetgate.toml itself, where ASSETGATE_CONFIG points.
    let env = &gate["environment"];
    let cfg_target = env["ASSETGATE_CONFIG"].as_str().unwrap();
    let m = mount(gate, cfg_target);
    assert_eq!(
        m["source"],
        repo_file("deploy/assetgate.toml").display().to_string()
    );
    assert_eq!(m["read_only"], true);

    // Only nginx is published; assetgate and tusd are on the internal network only.
    for (name, s) in c["services"].as_object().unwrap() {
        if name != "nginx" {
            assert!(s["ports"].is_null(), "{name} must not publish ports");
            assert_eq!(
                s["networks"].as_object().unwrap().keys().collect::<Vec<_>>(),
                vec!["internal"],
                "{name}"
            );
        }
        assert_eq!(s["read_only"], true, "{name}: read-only root filesystem");
    }
    assert_eq!(c["networks"]["internal"]["internal"], true);
    assert!(nginx["networks"].get("internal").is_some());
    let ports = nginx["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["target"], 80);

    // Built from deploy/Dockerfile, listening where tusd's hooks and nginx's
    // upstream (default.conf) point.
    assert_eq!(gate["build"]["dockerfile"], "deploy/Dockerfile");
    assert_eq!(gate["build"]["context"], repo().display().to_string());
    let listen = env["ASSETGATE_LISTEN"].as_str().unwrap();
    let port = listen.rsplit(':').next().unwrap();
    assert!(read("deploy/nginx/default.conf").contains(&format!("server assetgate:{port};")));
    let flags = tusd_flags(&strings(&tusd["command"]));
    assert_eq!(flags["hooks-http"], format!("http://assetgate:{port}/tusd"));
    assert_eq!(
        read("deploy/nginx/default.conf")
            .matches(&format!("server tusd:{};", flags["port"]))
            .count(),
        1
    );

    // Shared volumes at the config's paths: tusd's upload dir (same absolute path
    // in both), the asset tree (nginx's root, read-only there).
    let upload_dir = config_str("tusd.upload_dir");
    let root = config_str("storage.root");
    assert_eq!(flags["upload-dir"], upload_dir);
    let up = mount(tusd, &upload_dir);
    assert_eq!(up["type"], "volume");
    assert_eq!(mount(gate, &upload_dir)["source"], up["source"]);
    let assets = mount(gate, &root);
    assert_eq!(assets["type"], "volume");
    let served = mount(nginx, &root);
    assert_eq!(served["source"], assets["source"]);
    assert_eq!(served["read_only"], true);
    assert!(read("deploy/nginx/default.conf").contains(&format!("root {root};")));
    assert!(flags["max-size"].parse::<u64>().unwrap() >= config_max_size());

    // Secrets: compose secrets files, named by the *_SECRET_FILE variables.
    for (var, name) in [
        ("ASSETGATE_LINK_SECRET_FILE", "link_secret"),
        ("ASSETGATE_UPLOAD_SECRET_FILE", "upload_secret"),
    ] {
        assert_eq!(env[var], format!("/run/secrets/{name}"));
        assert!(gate["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == name));
        assert!(c["secrets"][name]["file"].as_str().is_some());
    }
    assert!(env.get("ASSETGATE_LINK_SECRET").is_none() && env.get("ASSETGATE_UPLOAD_SECRET").is_none());

    // Fleet mode: replicas share their state through the redis service, which
    // persists it (appendonly) on its own volume.
    assert!(gate["deploy"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(env["ASSETGATE_STATE__BACKEND"], "redis");
    let redis = svc("redis");
    assert_eq!(env["ASSETGATE_STATE__REDIS_URL"], "redis://redis:6379/0");
    assert!(gate["depends_on"].get("redis").is_some());
    let cmd = strings(&redis["command"]);
    assert!(cmd.windows(2).any(|w| w == ["--appendonly", "yes"]), "{cmd:?}");
    assert_eq!(mount(redis, "/data")["type"], "volume");
}

#[test]
fn compose_environment_and_config_load() {
    let c = compose_config();
    let gate = &c["services"]["assetgate"];
    let tmp = tempfile::tempdir().unwrap();
    let (link, upload) = secret_files(tmp.path());
    // Container paths -> the files behind them here.
    let env: Vec<(String, String)> = gate["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap();
            let v = match v {
                "/run/secrets/link_secret" => link.display().to_string(),
                "/run/secrets/upload_secret" => upload.display().to_string(),
                _ if k == "ASSETGATE_CONFIG" => mount(gate, v)["source"].as_str().unwrap().to_string(),
                _ => v.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let o = check_config(&env);
    assert!(o.status.success(), "{env:?}: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("listen = \"0.0.0.0:9750\""), "{out}");
    assert!(out.contains("secrets = [\"<redacted"), "{out}");
    assert!(!text(&o).contains("warning"), "{}", text(&o));
}

/// nginx's tokens: comments dropped, split at whitespace (enough for comparing
/// configs that use no quoted `#` or whitespace inside strings other than `""`).
fn nginx_tokens(conf: &str) -> Vec<String> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Replaces the token sequence `from` by `to` in `toks`, asserting exactly one
/// occurrence.
fn splice_once(toks: &[String], from: &[String], to: &[String], what: &str) -> Vec<String> {
    let hits: Vec<usize> = (0..=toks.len().saturating_sub(from.len()))
        .filter(|&i| toks[i..i + from.len()] == *from)
        .collect();
    assert_eq!(hits.len(), 1, "{what}: {from:?} found {} times", hits.len());
    let i = hits[0];
    [&toks[..i], to, &toks[i + from.len()..]].concat()
}

fn toks(s: &str) -> Vec<String> {
    nginx_tokens(s)
}

#[test]
fn compose_nginx_conf_is_the_shipped_example() {
    // The example with the upstream file inlined and the two addresses changed
    // must be deploy/nginx/default.conf, token for token.
    let example = toks(&read("nginx/assetgate.conf.example"));
    let upstream = toks(&read("nginx/assetgate-upstream.conf"));
    let want = splice_once(
        &example,
        &toks("include assetgate/assetgate-upstream.conf;"),
        &upstream,
        "the example includes the upstream file",
    );
    let want = splice_once(
        &want,
        &toks("server 127.0.0.1:9750;"),
        &toks("server assetgate:9750;"),
        "assetgate address",
    );
    let want = splice_once(
        &want,
        &toks("server 127.0.0.1:1080;"),
        &toks("server tusd:8080;"),
        "tusd address",
    );
    let have = toks(&read("deploy/nginx/default.conf"));
    if have != want {
        let at = have
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(have.len().min(want.len()));
        panic!(
            "deploy/nginx/default.conf differs from nginx/assetgate.conf.example (+ upstream file, addresses) at token {at}:\n  have: {:?}\n  want: {:?}",
            &have[at.saturating_sub(3)..(at + 8).min(have.len())],
            &want[at.saturating_sub(3)..(at + 8).min(want.len())]
        );
    }
}

// ---------------------------------------------------------------------------
// systemd

/// `(section, key, value)` of a unit file.
fn unit(rel: &str) -> Vec<(String, String, String)> {
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

fn unit_values(u: &[(String, String, String)], key: &str) -> Vec<String> {
    u.iter()
        .filter(|(_, k, _)| k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn unit_one(u: &[(String, String, String)], key: &str) -> String {
    let v = unit_values(u, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v[0].clone()
}

/// A root with the host's systemd units, the two shipped units and stand-ins
/// for their executables (only their being executable is checked).
fn systemd_root() -> tempfile::TempDir {
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

fn systemd_analyze() -> PathBuf {
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

// ---------------------------------------------------------------------------
// tusd, everywhere

#[test]
fn tusd_flags_are_the_same_everywhere() {
    let sh = tusd_sh_flags();
    let upload_dir = config_str("tusd.upload_dir");
    for (flag, want) in [
        ("behind-proxy", "true"),
        ("disable-download", "true"),
        ("base-path", "/files/"),
        ("hooks-enabled-events", "pre-create,pre-finish,post-finish"),
        ("upload-dir", upload_dir.as_str()),
    ] {
        assert_eq!(sh.get(flag).map(String::as_str), Some(want), "tusd.sh -{flag}");
    }
    // The pod is localhost, like a host: the same command line.
    let k8s = pod_container("tusd");
    assert_eq!(strings(&k8s["command"]), vec!["tusd".to_string()]);
    assert_eq!(
        tusd_flags(&strings(&k8s["args"])),
        sh,
        "Kubernetes tusd args vs tusd/tusd.sh"
    );
    // compose: only where tusd listens and where assetgate is differ.
    let c = compose_config();
    let mut compose = tusd_flags(&strings(&c["services"]["tusd"]["command"]));
    let mut sh_rest = sh.clone();
    for k in ["host", "port", "hooks-http"] {
        compose.remove(k);
        sh_rest.remove(k);
    }
    assert_eq!(compose, sh_rest, "compose tusd command vs tusd/tusd.sh");
    // Parallel uploads stay on: the gate checks the parts (README, tusd.sh).
    assert!(
        !sh.contains_key("disable-concatenation"),
        "concatenation is part of the tested setup (tests/e2e_tusd.rs)"
    );

    // The images are the release the end-to-end tests run (tests/common/tusd.rs).
    let image = format!("tusproject/tusd:{}", common::tusd::Version::V2.tag());
    assert_eq!(
        c["services"]["tusd"]["image"],
        image.as_str(),
        "compose tusd image"
    );
    for name in ["tusd", "volume-dirs"] {
        assert_eq!(
            pod_container(name)["image"],
            image.as_str(),
            "Kubernetes {name} image"
        );
    }
}

// ---------------------------------------------------------------------------
// Kubernetes

fn k8s_docs() -> Vec<Value> {
    yaml_docs("deploy/kubernetes/assetgate.yaml")
}

fn pod_spec() -> Value {
    k8s_docs()
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()["spec"]["template"]["spec"]
        .clone()
}

/// A container of the pod, from `containers` or `initContainers`.
fn pod_container(name: &str) -> Value {
    let spec = pod_spec();
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn container_env(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn volume_mount<'a>(c: &'a Value, path: &str) -> &'a Value {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c["name"]))
}

#[test]
fn kubernetes_manifests_validate() {
    for rel in [
        "deploy/kubernetes/assetgate.yaml",
        "deploy/kubernetes/secret.example.yaml",
        "deploy/kubernetes/redis.yaml",
    ] {
        let out = run_ok(
            Command::new(tool("kubernetes-validate"))
                .args(["--strict"])
                .arg(repo_file(rel)),
            &format!("kubernetes-validate --strict {rel}"),
        );
        assert!(
            !out.contains("ERROR") && !out.contains("WARN") && out.contains("passed"),
            "{rel}:\n{out}"
        );
    }
}

#[test]
fn kubernetes_sidecar_wiring_and_probes() {
    let spec = pod_spec();
    let gate = pod_container("assetgate");
    let nginx = pod_container("nginx");
    let tusd = pod_container("tusd");
    let env = container_env(&gate);
    let upload_dir = config_str("tusd.upload_dir");
    let root = config_str("storage.root");

    // A native sidecar: an init container that keeps running.
    assert_eq!(gate["restartPolicy"], "Always");
    assert!(spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "assetgate"));
    // The pod's loopback only, where the shipped nginx upstream and tusd.sh point.
    let listen = &env["ASSETGATE_LISTEN"];
    assert_eq!(listen, &config_str("listen"));
    assert!(read("nginx/assetgate-upstream.conf").contains(&format!("server {listen};")));
    assert!(gate["ports"].is_null(), "assetgate declares no port");
    // Fleet mode: the state in Redis, at the Service deploy/kubernetes/redis.yaml
    // defines, persisted, reachable from the assetgate pods only.
    assert_eq!(env["ASSETGATE_STATE__BACKEND"], "redis");
    let redis = yaml_docs("deploy/kubernetes/redis.yaml");
    let service = redis.iter().find(|d| d["kind"] == "Service").unwrap();
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        env["ASSETGATE_STATE__REDIS_URL"],
        format!(
            "redis://{}:{port}/0",
            service["metadata"]["name"].as_str().unwrap()
        )
    );
    let deployment = redis.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let cmd = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["command"]);
    assert!(cmd.windows(2).any(|w| w == ["--appendonly", "yes"]), "{cmd:?}");
    let policy = redis.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "assetgate"
    );
    for c in [&gate, &tusd] {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["runAsNonRoot"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
    }

    // Files: the ConfigMaps are made from the shipped files (see the manifest's
    // header); every key the pod uses must be one of them.
    let volumes: BTreeMap<String, Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let manifest = read("deploy/kubernetes/assetgate.yaml");
    assert!(manifest.contains("kubectl create configmap assetgate-config --from-file=deploy/assetgate.toml"));
    assert!(manifest.contains("kubectl create configmap assetgate-nginx --from-file=nginx/"));
    let cfg = Path::new(&env["ASSETGATE_CONFIG"]);
    let m = volume_mount(&gate, cfg.parent().unwrap().to_str().unwrap());
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-config"
    );
    assert_eq!(cfg.file_name().unwrap(), "assetgate.toml");
    let m = volume_mount(&nginx, "/etc/nginx/assetgate");
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-nginx"
    );
    let m = volume_mount(&nginx, "/etc/nginx/conf.d/default.conf");
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-nginx"
    );
    let example = m["subPath"].as_str().unwrap();
    assert!(repo_file("nginx").join(example).is_file(), "nginx/{example}");
    assert!(read(&format!("nginx/{example}")).contains(&format!("root {root};")));

    // Storage: one volume; tusd's upload dir and nginx's root are its
    // sub-directories at the config's paths; assetgate mounts the parent, so
    // both are on one mount (hard links, no copies).
    let data = |c: &Value, path: &str| -> (String, Option<String>) {
        let m = volume_mount(c, path);
        (
            m["name"].as_str().unwrap().to_string(),
            m["subPath"].as_str().map(str::to_string),
        )
    };
    let (tv, tsub) = data(&tusd, &upload_dir);
    let (nv, nsub) = data(&nginx, &root);
    assert_eq!(volume_mount(&nginx, &root)["readOnly"], true);
    let parent = Path::new(&upload_dir).parent().unwrap();
    assert_eq!(Path::new(&root).parent().unwrap(), parent);
    let (gv, gsub) = data(&gate, parent.to_str().unwrap());
    assert_eq!((tv.as_str(), nv.as_str()), (gv.as_str(), gv.as_str()));
    assert_eq!(gsub, None);
    let name = |p: &str| Path::new(p).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(tsub, Some(name(&upload_dir)));
    assert_eq!(nsub, Some(name(&root)));
    assert!(volumes[&gv]["persistentVolumeClaim"].is_object() || volumes[&gv]["emptyDir"].is_object());

    // Secrets: files from the Secret, named by the *_SECRET_FILE variables; the
    // example Secret has exactly those keys.
    let secret_example = yaml_docs("deploy/kubernetes/secret.example.yaml");
    let secret = &secret_example[0];
    for var in ["ASSETGATE_LINK_SECRET_FILE", "ASSETGATE_UPLOAD_SECRET_FILE"] {
        let p = Path::new(&env[var]);
        let m = volume_mount(&gate, p.parent().unwrap().to_str().unwrap());
        let v = &volumes[m["name"].as_str().unwrap()];
        assert_eq!(v["secret"]["secretName"], secret["metadata"]["name"]);
        let key = p.file_name().unwrap().to_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "secret.example.yaml lacks {key}"
        );
    }

    // The probes, run: exec commands of the image's binary against a live
    // daemon, with the pod's environment (the port is the test daemon's).
    let mut live = live_daemon();
    let tmp = tempfile::tempdir().unwrap();
    let (link, upload) = secret_files(tmp.path());
    let pod_env = |port: u16| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "ASSETGATE_LISTEN" => format!("127.0.0.1:{port}"),
                    "ASSETGATE_CONFIG" => repo_file("deploy/assetgate.toml").display().to_string(),
                    "ASSETGATE_LINK_SECRET_FILE" => link.display().to_string(),
                    "ASSETGATE_UPLOAD_SECRET_FILE" => upload.display().to_string(),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    };
    let probes = [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ];
    for (probe, path) in probes {
        let argv = strings(&gate[probe]["exec"]["command"]);
        assert_eq!(argv[0], "/usr/local/bin/assetgate", "{probe}");
        let o = Command::new(bin())
            .args(&argv[1..])
            .env_clear()
            .envs(pod_env(live.addr.port()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{probe}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("{path}: 200")),
            "{probe}: {}",
            text(&o)
        );
    }
    live.terminate();
    assert_eq!(live.wait_exit(Duration::from_secs(20)), Some(0));
    let argv = strings(&gate["livenessProbe"]["exec"]["command"]);
    let o = Command::new(bin())
        .args(&argv[1..])
        .env_clear()
        .envs(pod_env(live.addr.port()))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "liveness against a stopped daemon: {}",
        text(&o)
    );
    // ... and the pod's environment with real secrets is a valid configuration.
    let o = check_config(&pod_env(9750));
    assert!(o.status.success(), "{}", text(&o));

    // Only nginx's port is in the Service.
    let svc = k8s_docs().into_iter().find(|d| d["kind"] == "Service").unwrap();
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["targetPort"], "http");
    assert!(nginx["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "http" && p["containerPort"] == 80));
}

#[test]
fn kubernetes_example_secret_is_refused_until_replaced() {
    let docs = yaml_docs("deploy/kubernetes/secret.example.yaml");
    let data = docs[0]["stringData"].as_object().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (key, var, cfg_key) in [
        ("link_secret", "ASSETGATE_LINK_SECRET_FILE", "link.secrets"),
        ("upload_secret", "ASSETGATE_UPLOAD_SECRET_FILE", "upload.secrets"),
    ] {
        let f = tmp.path().join(key);
        std::fs::write(&f, data[key].as_str().unwrap()).unwrap();
        let o = check_config(&[
            (
                "ASSETGATE_CONFIG".into(),
                repo_file("deploy/assetgate.toml").display().to_string(),
            ),
            (var.into(), f.display().to_string()),
        ]);
        assert_eq!(
            o.status.code(),
            Some(64),
            "{key}: placeholder accepted: {}",
            text(&o)
        );
        assert!(text(&o).contains(cfg_key), "{}", text(&o));
    }
}
