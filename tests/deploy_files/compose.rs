//! `deploy/compose.yaml`: the compose-spec schema, Compose's own loader, the
//! shipped files it mounts, and assetgate's environment and config in it.

use super::*;

/// `docker-compose config` as JSON: the file as Compose loads it (paths
/// absolute, short syntax expanded).
pub(super) fn compose_config() -> Value {
    compose_config_of(&["deploy/compose.yaml"])
}

/// `docker-compose config` as JSON for `files` merged in order (`-f` each).
pub(super) fn compose_config_of(files: &[&str]) -> Value {
    let mut cmd = Command::new(docker_compose());
    for f in files {
        cmd.arg("-f").arg(repo_file(f));
    }
    let out = cmd
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
pub(super) fn mount<'a>(svc: &'a Value, target: &str) -> &'a Value {
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

    // The admin socket's directory: a volume of the assetgate service alone
    // (the root filesystem is read-only), anonymous so that each replica has
    // its own, initialised from the image's 0700 directory.
    let socket_dir = Path::new(&config_str("server.admin_socket"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let run = mount(gate, &socket_dir);
    assert_eq!(run["type"], "volume");
    assert!(run["source"].is_null() || run["source"] == "", "anonymous: {run}");
    for (name, s) in c["services"].as_object().unwrap() {
        if name != "assetgate" {
            let mounts = s["volumes"].as_array().cloned().unwrap_or_default();
            assert!(
                !mounts.iter().any(|m| m["target"] == socket_dir.as_str()),
                "{name} mounts the admin socket's directory"
            );
        }
    }
    assert!(read("deploy/Dockerfile").contains(&format!("install -d -m 0700 /out{socket_dir}")));

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
pub(super) fn nginx_tokens(conf: &str) -> Vec<String> {
    conf.lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Replaces the token sequence `from` by `to` in `toks`, asserting exactly one
/// occurrence.
pub(super) fn splice_once(toks: &[String], from: &[String], to: &[String], what: &str) -> Vec<String> {
    let hits: Vec<usize> = (0..=toks.len().saturating_sub(from.len()))
        .filter(|&i| toks[i..i + from.len()] == *from)
        .collect();
    assert_eq!(hits.len(), 1, "{what}: {from:?} found {} times", hits.len());
    let i = hits[0];
    [&toks[..i], to, &toks[i + from.len()..]].concat()
}

pub(super) fn toks(s: &str) -> Vec<String> {
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
