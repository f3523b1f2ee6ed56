//! `deploy/Dockerfile`: hadolint, the runtime image, and its HEALTHCHECK run
//! against a live daemon.

use super::*;

/// Instructions of a Dockerfile: (INSTRUCTION, rest), continuation lines joined.
pub(super) fn dockerfile() -> Vec<(String, String)> {
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
