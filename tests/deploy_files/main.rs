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
//!   root; both units agree with each other, `tusd/tusd.env` and the config;
//!   the install steps run for real as the units' users (`setpriv`, as root):
//!   nginx's user stays out of the upload directory, assetgate hard-links an
//!   upload into the asset tree, nginx's user reads it there.
//! - `deploy/kubernetes/*.yaml`: the Kubernetes schemas (kubernetes-validate,
//!   strict); the pod's wiring; its probes run; the placeholder secrets refused.
//! - tusd's flags are the same in `tusd/tusd.sh`, compose and Kubernetes; the S3
//!   variants (`tusd/tusd-s3.sh`, `deploy/compose.s3.yaml` over compose.yaml,
//!   `deploy/kubernetes/assetgate-s3.yaml`) are that line with the bucket for the
//!   upload directory, validated like the originals; `deploy/assetgate-s3.toml`
//!   resolves to `deploy/assetgate.toml`'s policy, the S3 nginx servers are the
//!   shipped S3 example with addresses changed, and each variant's tusd,
//!   assetgate and nginx use one store (`s3.rs`).
//!
//! The checkers come from `.peers/tools` (`tests/peers/tools-requirements.txt`,
//! installed by `scripts/test.sh`); a missing one fails the test.

#[path = "../common/mod.rs"]
mod common;
mod compose;
mod dockerfile;
mod kubernetes;
mod s3;
mod systemd;
mod tusd_flags;

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
    tusd_script_flags("tusd/tusd.sh", "tusd/tusd.env")
}

/// tusd's flags in the script `sh`, with the variables of the env file `env`.
fn tusd_script_flags(sh: &str, env: &str) -> BTreeMap<String, String> {
    let (sh_file, env_name) = (sh, env);
    let sh = read(sh_file);
    let env = env_file(env_name);
    let exec = &sh[sh
        .find("exec tusd")
        .unwrap_or_else(|| panic!("{sh_file}: exec tusd"))..];
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
                .unwrap_or_else(|| panic!("{sh_file} uses ${name}, {env_name} does not set it"))
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
