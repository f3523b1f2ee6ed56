//! The command line: config refusal (exit 64), sign/verify, check-config, --dev.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn run(config: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    if let Some(c) = config {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, c).unwrap();
        cmd.arg("--config").arg(p);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    // `serve` binds the admin socket: one per test, not the user's default.
    cmd.env(
        "ASSETGATE_SERVER__ADMIN_SOCKET",
        dir.path().join("run/admin.sock"),
    );
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_config_exits_64_with_one_line_naming_the_key() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("lisen = \"127.0.0.1:1\"\n", &[], "lisen"),
        ("[link]\nsecrets = [\"short\"]\n", &[], "link.secrets[0]"),
        ("[link]\nsecrets = [\"\"]\n", &[], "link.secrets[0]"),
        ("listen = \"nope\"\n", &[], "listen"),
        (
            "",
            &[("ASSETGATE_UPLOAD_SECRET_FILE", "/nonexistent/file")],
            "ASSETGATE_UPLOAD_SECRET_FILE",
        ),
        ("[upload]\nmax_size = \"lots\"\n", &[], "upload.max_size"),
        // Parsed at load, never a silent fallback to "info" / text.
        ("log_level = \"assetgate=loud\"\n", &[], "log_level"),
        ("", &[("ASSETGATE_LOG_FORMAT", "xml")], "log_format"),
        (
            "[upload]\ncontent_types = [\"image\"]\n",
            &[],
            "upload.content_types[0]",
        ),
        // The slow-client limits: a value out of range, not an unknown key.
        (
            "[server]\nbody_read_timeout = 0\n",
            &[],
            "server.body_read_timeout: must be",
        ),
        (
            "",
            &[("ASSETGATE_SERVER__REQUEST_TIMEOUT", "1s")],
            "server.request_timeout: must be",
        ),
        (
            "[server]\nmax_connections = 64\nmax_tusd_requests = 64\n",
            &[],
            "server.max_tusd_requests: must be",
        ),
        // The admin API on a non-loopback address without the opt-in key: any
        // host that reaches it could revoke and unrevoke (issue 19, finding 2).
        (
            "[server]\nadmin_listen = \"0.0.0.0:9751\"\n",
            &[],
            "server.admin_listen: 0.0.0.0:9751 is not a loopback address",
        ),
        (
            "",
            &[("ASSETGATE_SERVER__ADMIN_LISTEN", "10.0.0.1:9751")],
            "server.admin_listen_non_loopback = true",
        ),
    ];
    for (cfg, env, key) in cases {
        for sub in [&["serve"][..], &["check-config"][..]] {
            let o = run(Some(cfg), sub, env);
            assert_eq!(o.status.code(), Some(64), "{cfg:?} {sub:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
            assert!(err.contains(key), "{err:?} should name {key}");
        }
    }
    // A missing secret is named, not a secret value.
    let o = run(Some("[link]\nsecrets = [\"tiny-secret\"]\n"), &["serve"], &[]);
    assert!(!stderr(&o).contains("tiny-secret"));
    // No secret at all: refused before listening.
    let o = run(Some("listen = \"127.0.0.1:0\"\n"), &["serve"], &[]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("link.secrets"), "{}", stderr(&o));
    // Unreadable --config file.
    let o = run(None, &["--config", "/nonexistent.toml", "check-config"], &[]);
    assert_eq!(o.status.code(), Some(64));
}

/// Regression (hardening review): `[link] secrets = "…"` (a string, not a list) printed
/// `invalid type: found string "MY-SUPER-SECRET…"`. From a file or from the
/// environment, an error on a secret key names the key and the expected type,
/// exits 64, and the value appears nowhere in the output.
#[test]
fn type_error_on_a_secret_key_never_prints_the_secret() {
    const SECRET: &str = "MY-SUPER-SECRET-VALUE-0123456789";
    type Case<'a> = (Option<String>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some(format!("[link]\nsecrets = \"{SECRET}\"\n")),
            vec![],
            "link.secrets",
            "a sequence",
        ),
        (
            Some(format!("[upload]\nsecrets = \"{SECRET}\"\n")),
            vec![],
            "upload.secrets",
            "a sequence",
        ),
        (
            Some(format!(
                "[link]\nsecrets = [\"{SECRET}\", {{ x = \"{SECRET}\" }}]\n"
            )),
            vec![],
            "link.secrets[1]",
            "a string",
        ),
        (
            None,
            vec![("ASSETGATE_LINK__SECRETS", SECRET)],
            "link.secrets",
            "a sequence",
        ),
        (
            None,
            vec![("ASSETGATE_UPLOAD__SECRETS", SECRET)],
            "upload.secrets",
            "a sequence",
        ),
    ];
    for (cfg, env, key, expected) in &cases {
        for sub in [&["serve"][..], &["check-config"][..]] {
            let o = run(cfg.as_deref(), sub, env);
            let (out, err) = (stdout(&o), stderr(&o));
            assert_eq!(o.status.code(), Some(64), "{cfg:?} {env:?} {sub:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
            assert!(err.contains(&format!("{key}: ")), "{err:?} should name {key}");
            assert!(err.contains(expected), "{err:?} should name the expected type");
            assert!(
                !out.contains(SECRET) && !err.contains(SECRET),
                "secret printed: {out}{err}"
            );
        }
    }
}

/// `[storage.s3]` refusals: exit 64 on one line naming the key, the
/// credentials nowhere in the output (from the file or the environment).
#[test]
fn storage_s3_refusals_exit_64_without_the_credentials() {
    const SECRET: &str = "S3-CLI-SECRET-NEVER-PRINTED-01";
    const KEY_ID: &str = "AKID-CLI-NEVER-PRINTED";
    let base = "[link]\nsecrets = [\"cli-link-secret-0000000\"]\n[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"assets\"\n";
    let creds = [
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", KEY_ID),
        ("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", SECRET),
    ];
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            base.replace("bucket = \"assets\"\n", ""),
            creds.to_vec(),
            "storage.s3.bucket",
        ),
        (base.into(), vec![creds[0]], "storage.s3.secret_access_key"),
        (
            format!("{base}secret_access_key = [\"{SECRET}\"]\n"),
            vec![creds[0]],
            "storage.s3.secret_access_key",
        ),
        (
            format!("{base}access_key_id = {{ a = \"{KEY_ID}\" }}\n"),
            vec![creds[1]],
            "storage.s3.access_key_id",
        ),
        (
            base.into(),
            vec![
                creds[0],
                (
                    "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
                    "S3-CLI-SECRET NEVER-PRINTED-01",
                ),
            ],
            "storage.s3.secret_access_key",
        ),
        // The filesystem's keys were silently ignored with s3: refused.
        (
            base.replace("backend = \"s3\"\n", "backend = \"s3\"\nroot = \"/srv/assets\"\n"),
            creds.to_vec(),
            "storage.root",
        ),
        (
            format!("[tusd]\nupload_dir = \"/srv/tusd-uploads\"\n{base}"),
            creds.to_vec(),
            "tusd.upload_dir",
        ),
        (
            base.into(),
            [creds.to_vec(), vec![("ASSETGATE_TUSD__UPLOAD_DIR", "/srv/t")]].concat(),
            "tusd.upload_dir",
        ),
        (
            base.replace("backend = \"s3\"\n", "backend = \"s3\"\noverwrite = true\n"),
            creds.to_vec(),
            "storage.overwrite",
        ),
    ];
    for (cfg, env, key) in &cases {
        let o = run(Some(cfg), &["check-config"], env);
        let (out, err) = (stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(64), "{cfg:?} {env:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(&format!("{key}: ")), "{err:?} should name {key}");
        assert!(
            !format!("{out}{err}").contains("NEVER-PRINTED"),
            "credential printed: {out}{err}"
        );
    }
    // Accepted: check-config shows the section, the credentials by length.
    let o = run(Some(base), &["check-config"], &creds);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        out.contains("[storage.s3]") && out.contains("<redacted: 30 bytes>"),
        "{out}"
    );
    assert!(!out.contains("NEVER-PRINTED"), "{out}");
}

const CFG: &str = "[link]\nsecrets = [\"cli-newest-secret-0000\", \"cli-older-secret-00000\"]\n";

#[test]
fn sign_then_verify_round_trip() {
    let o = run(
        Some(CFG),
        &["sign", "link", "/private/été 2026/a b.jpg", "--ttl", "60"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let link = stdout(&o).trim().to_owned();
    assert!(
        link.starts_with("/private/%C3%A9t%C3%A9%202026/a%20b.jpg?md5="),
        "{link}"
    );
    let o = run(Some(CFG), &["verify", "link", &link], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("valid"), "{}", stdout(&o));

    // independently computed by the test oracle
    let o = run(
        Some(CFG),
        &["sign", "link", "/private/x", "--expires", "2000000000"],
        &[],
    );
    let expect = format!(
        "/private/x?md5={}&expires=2000000000",
        sign_link("cli-newest-secret-0000", "/private/x", "2000000000")
    );
    assert_eq!(stdout(&o).trim(), expect);

    // expired, explained
    let o = run(
        Some(CFG),
        &["verify", "link", &expect, "--now", "2000000001"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("expired: link expired 1 s ago"),
        "{}",
        stdout(&o)
    );

    // a non-normal path cannot be signed
    let o = run(Some(CFG), &["sign", "link", "/a//b"], &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn verify_explains_which_part_failed() {
    let cases = [
        ("/p", "missing: no md5 argument"),
        ("/p?md5=AAAAAAAAAAAAAAAAAAAAAA", "missing: no expires argument"),
        (
            "/p?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=-1",
            "invalid: expires is not",
        ),
        (
            "/p?md5=AAAAAAAAAAAAAAAAAAAAA&expires=5",
            "21 significant base64url characters",
        ),
        (
            "/p?md5=AAAAAAAAAAAAAAAAAAAA+A&expires=5",
            "outside the base64url alphabet",
        ),
        (
            "/p?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=5",
            "under any of the 2 link secret(s)",
        ),
        ("/../p?md5=x&expires=1", "bad-uri"),
    ];
    for (target, want) in cases {
        let o = run(Some(CFG), &["verify", "link", target, "--now", "1"], &[]);
        assert_eq!(o.status.code(), Some(1), "{target}");
        assert!(stdout(&o).contains(want), "{target}: {}", stdout(&o));
    }
}

#[test]
fn check_config_redacts_secrets() {
    let o = run(Some(CFG), &["check-config"], &[]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(!out.contains("cli-newest-secret"), "{out}");
    assert!(
        out.contains("secrets = [\"<redacted: 22 bytes>\", \"<redacted: 22 bytes>\"]"),
        "{out}"
    );
    assert!(out.contains("listen = \"127.0.0.1:9750\""));
    assert!(stderr(&o).contains("no upload secret"));
}

#[test]
fn dev_mode_prints_a_link_that_works() {
    let port = free_port();
    let run_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--dev"])
        .env("ASSETGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "ASSETGATE_SERVER__ADMIN_SOCKET",
            run_dir.path().join("admin.sock"),
        )
        .env_remove("ASSETGATE_CONFIG")
        // The temporary upload tree: in the test's directory (a kill leaves it).
        .env("TMPDIR", run_dir.path())
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner is on stdout (the logs on stderr).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut target = None;
    let mut secret_line = None;
    for line in lines.by_ref().take(40) {
        let line = line.unwrap();
        if line.contains("ASSETGATE_LINK_SECRET=") {
            secret_line = Some(line.clone());
        }
        if let Some(rest) = line.split("X-Original-URI: ").nth(1) {
            target = Some(rest.split('\'').next().unwrap().to_owned());
            assert!(line.contains(&format!("http://127.0.0.1:{port}/auth")), "{line}");
        }
        if line.contains("(204 = valid") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let target = target.expect("a curl example");
    assert!(secret_line.is_some());
    assert!(wait_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(10)
    ));
    let (s, _, _) = get(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "/auth",
        &[("X-Original-URI", target.as_bytes())],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(s, 204, "the printed example link is accepted");
}

#[test]
fn healthcheck_asks_the_listen_address() {
    let mut gate = Daemon::start(&default_config());
    let port = gate.addr.port();
    let hc = |listen: String, extra: &[&str]| {
        let mut args = vec!["healthcheck"];
        args.extend_from_slice(extra);
        run(None, &args, &[("ASSETGATE_LISTEN", &listen)])
    };
    let o = hc(format!("127.0.0.1:{port}"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("http://127.0.0.1:{port}/healthz: 200"));
    // A wildcard listen address (the container image's) is checked on loopback.
    let o = hc(format!("0.0.0.0:{port}"), &["--ready"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(stdout(&o).trim(), format!("http://127.0.0.1:{port}/readyz: 200"));

    gate.terminate();
    assert_eq!(gate.wait_exit(Duration::from_secs(20)), Some(0));
    let o = hc(format!("127.0.0.1:{port}"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("/healthz: "), "{}", stdout(&o));
}

#[test]
fn healthcheck_fails_on_anything_but_200() {
    use std::io::{Read, Write};
    for answer in [
        &b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"[..],
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"",
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        let o = run(None, &["healthcheck"], &[("ASSETGATE_LISTEN", &addr.to_string())]);
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request:?}");
        assert_eq!(
            o.status.code(),
            Some(1),
            "{:?}: {}",
            String::from_utf8_lossy(answer),
            stdout(&o)
        );
    }
}

/// `assetgate serve` on `config`: its exit code and stderr, or `None` (killed)
/// if it is still running after 10 s.
fn serve_briefly(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, config).unwrap();
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("--config")
        .arg(&p)
        .arg("serve")
        .env(
            "ASSETGATE_SERVER__ADMIN_SOCKET",
            dir.path().join("run/admin.sock"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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

/// `serve` refuses a bad `[state]` before it binds anything: exit 64, one line
/// naming the key, never the Redis password.
#[test]
fn bad_state_config_is_refused_at_start() {
    let port = free_port();
    for (state, key) in [
        ("backend = \"etcd\"", "state.backend"),
        ("backend = \"redis\"", "state.redis_url"),
        (
            "backend = \"redis\"\nredis_url = \"redis://:s3cret-pw@127.0.0.1:notaport/0\"",
            "state.redis_url",
        ),
        (
            "backend = \"redis\"\nredis_url = \"https://127.0.0.1:6379\"",
            "state.redis_url",
        ),
        (
            "revocation_when_down = \"sometimes\"",
            "state.revocation_when_down",
        ),
    ] {
        let cfg = format!("{}listen = \"127.0.0.1:{port}\"\n[state]\n{state}\n", "");
        let cfg = format!("{cfg}[link]\nsecrets = [\"{LINK_SECRET}\"]\n");
        let (code, err) = serve_briefly(&cfg);
        assert_eq!(code, Some(64), "{state}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{state}: {err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "nothing was bound"
        );
    }
}
