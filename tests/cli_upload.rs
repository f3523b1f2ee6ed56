//! `assetgate sign upload` / `verify upload` (issue 22, item 2):
//!
//! - the headers `sign upload` prints are the real granite-assets library's
//!   (`build_upload_url`, `tests/peers/granite_upload.py` with the clock
//!   pinned), byte for byte, for keys with spaces and non-ASCII, content
//!   types with parameters, both visibilities;
//! - `verify upload` gives the verdict the daemon's `POST /tusd` pre-create
//!   gives the same header under the same configuration;
//! - the `curl` `sign upload --curl` prints, run by `sh -c` as it is printed,
//!   creates an upload on a real tusd v2.9.1 that assetgate accepts and
//!   moves into the asset tree, byte for byte.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::hooks::{gate_env, json_of, post, v2_event};
use common::tusd::{tusd_bin, Tusd, Version};
use common::*;
use serde_json::{json, Value};

/// `assetgate <args>` with only the test's secrets and `config` (if any).
fn assetgate(config: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    } else {
        cmd.env("ASSETGATE_UPLOAD_SECRET", UPLOAD_SECRET)
            .env("ASSETGATE_LINK_SECRET", LINK_SECRET);
    }
    cmd.args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const NOW: i64 = 1_800_000_000;

#[test]
fn sign_upload_prints_granites_headers_byte_for_byte() {
    let cases = json!([
        {"key": "invoices/inv-001.pdf", "content_type": "application/pdf", "visibility": "private", "ttl": 3600},
        {"key": "photos/été 2026/plage.jpg", "content_type": "image/jpeg", "visibility": "public", "ttl": 600},
        {"key": "notes/a b+c=d.txt", "content_type": "text/plain; charset=utf-8", "visibility": "private", "ttl": 86400},
        {"key": "x", "content_type": "application/octet-stream", "visibility": "public", "ttl": 1},
    ]);
    let mut py = Command::new(peer_python())
        .arg(repo().join("tests/peers/granite_upload.py"))
        .args(["--secret", UPLOAD_SECRET, "--now", &NOW.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    py.stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "granite: {}", text(&out.stderr));
    let granite: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (case, made) in cases.as_array().unwrap().iter().zip(granite.as_array().unwrap()) {
        let expires = NOW + case["ttl"].as_i64().unwrap();
        let ours = assetgate(
            None,
            &[
                "sign",
                "upload",
                case["key"].as_str().unwrap(),
                "--content-type",
                case["content_type"].as_str().unwrap(),
                "--visibility",
                case["visibility"].as_str().unwrap(),
                "--expires",
                &expires.to_string(),
            ],
        );
        assert!(ours.status.success(), "{}", text(&ours.stderr));
        let printed: Vec<(String, String)> = text(&ours.stdout)
            .lines()
            .map(|l| {
                let (n, v) = l
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("not a header line: {l:?}"));
                (n.to_string(), v.to_string())
            })
            .collect();
        let theirs: Vec<(String, String)> = made["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(printed, theirs, "case {case}");
        assert!(
            printed.iter().any(|(n, _)| n == "Upload-Metadata"),
            "the header that matters is compared"
        );
    }
}

#[test]
fn verify_upload_gives_the_daemons_precreate_verdict() {
    let env = gate_env(
        "content_types = [\"image/*\", \"text/plain\"]\nmax_size = \"1KiB\"",
        "",
    );
    let cfg = env.gate.dir.path().join("assetgate.toml");
    let now = now();
    let sign = |key: &str, ct: &str, expires: i64| -> String {
        let o = assetgate(
            Some(&cfg),
            &[
                "sign",
                "upload",
                key,
                "--content-type",
                ct,
                "--expires",
                &expires.to_string(),
            ],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Upload-Metadata: "))
            .expect("an Upload-Metadata line")
            .to_string()
    };
    std::fs::create_dir_all(env.assets.join("private/taken")).unwrap();
    std::fs::write(env.assets.join("private/taken/a.png"), b"x").unwrap();
    let good = sign("cases/a.png", "image/png", now + 600);
    // The same fields, the token's last hex digit changed.
    let forged = {
        use assetgate::tusd::metadata::{encode_upload_metadata, parse_upload_metadata};
        let mut m = parse_upload_metadata(&good);
        let t = m.get_mut("upload-token").unwrap();
        let last = if t.ends_with('0') { "1" } else { "0" };
        t.replace_range(63.., last);
        let f = |k: &str| m[k].clone();
        let fields = [
            "asset-key",
            "content-type",
            "visibility",
            "upload-expires",
            "upload-token",
        ]
        .map(|k| (k, f(k)));
        encode_upload_metadata(fields.iter().map(|(k, v)| (*k, v.as_str())))
    };
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("valid", good.clone(), 10, "ok"),
        ("forged token", forged, 10, "token_invalid"),
        (
            "expired",
            sign("cases/a.png", "image/png", now - 3600),
            10,
            "token_expired",
        ),
        (
            "type not allowed",
            sign("cases/a.pdf", "application/pdf", now + 600),
            10,
            "content_type_not_allowed",
        ),
        ("too large", good.clone(), 4096, "too_large"),
        (
            "destination exists",
            sign("taken/a.png", "image/png", now + 600),
            10,
            "exists",
        ),
        (
            "key unsafe",
            sign("../a.png", "image/png", now + 600),
            10,
            "key_invalid",
        ),
    ];
    for (what, header, len, want) in cases {
        // The daemon: a tusd v2 pre-create with the header tusd decoded.
        let meta: Value =
            serde_json::to_value(assetgate::tusd::metadata::parse_upload_metadata(&header)).unwrap();
        let ev = v2_event("pre-create", meta, len, Value::Null);
        let (status, _, body) = post(env.gate.addr, ev.to_string().as_bytes(), &[]);
        assert_eq!(status, 200, "{what}");
        let answer = json_of(&body);
        let daemon = if answer["RejectUpload"] == json!(true) {
            let b: Value = serde_json::from_str(answer["HTTPResponse"]["Body"].as_str().unwrap()).unwrap();
            b["error"]["code"].as_str().unwrap().to_string()
        } else {
            "ok".to_string()
        };
        // The CLI, on the same header (pasted as a whole header line).
        let o = assetgate(
            Some(&cfg),
            &[
                "verify",
                "upload",
                &format!("Upload-Metadata: {header}"),
                "--length",
                &len.to_string(),
            ],
        );
        let said = text(&o.stdout);
        let cli = if o.status.code() == Some(0) {
            assert!(said.starts_with("valid: "), "{what}: {said}");
            "ok".to_string()
        } else {
            assert_eq!(o.status.code(), Some(1), "{what}: {said} {}", text(&o.stderr));
            said.strip_prefix("denied: ")
                .and_then(|r| r.split(' ').nth(1))
                .map(|r| r.trim_end_matches(':').to_string())
                .unwrap_or_else(|| panic!("{what}: {said}"))
        };
        assert_eq!((what, daemon.as_str()), (what, want), "the daemon's verdict");
        assert_eq!((what, cli.as_str()), (what, want), "the CLI's verdict: {said}");
    }
}

#[test]
fn sign_upload_curl_creates_an_upload_that_lands_through_real_tusd() {
    let env = gate_env("", "");
    let cfg = env.gate.dir.path().join("assetgate.toml");
    let tusd = Tusd::start(
        Version::V2,
        env.uploads.parent().unwrap(),
        &format!("{}/tusd", env.gate.url()),
        &[],
    );
    let (file, data) = random_file(env.gate.dir.path(), "it's a file.bin", 3000);
    let o = assetgate(
        Some(&cfg),
        &[
            "sign",
            "upload",
            "curl/été photo.bin",
            "--content-type",
            "application/octet-stream",
            "--ttl",
            "10m",
            "--curl",
            &tusd.endpoint(),
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let line = text(&o.stdout);
    assert_eq!(line.lines().count(), 1, "one command: {line}");
    let run = Command::new("sh").arg("-c").arg(line.trim()).output().unwrap();
    assert!(
        run.status.success(),
        "the printed curl failed: {}{}\ntusd: {}",
        text(&run.stdout),
        text(&run.stderr),
        tusd.log()
    );
    assert!(
        text(&run.stdout).starts_with("HTTP/1.1 201"),
        "{}",
        text(&run.stdout)
    );
    let landed = env.assets.join("private/curl/été photo.bin");
    let got = wait_for_file(&landed, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("nothing at {}: {:?}", landed.display(), env.gate.logs()));
    assert_eq!(got, data);
}

/// A child killed (and reaped) on drop, its process group too (`sh -c`
/// may run tusd as its own child).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command printed on the line after the first line containing `label`.
fn command_after(lines: &[String], label: &str) -> String {
    let at = lines
        .iter()
        .position(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} in the banner:\n{}", lines.join("\n")));
    lines[at + 1].trim().to_string()
}

/// Issue 22, item 3: from `serve --dev` alone (the README's first command,
/// no configuration), the commands it prints, run by `sh -c` as printed
/// (tusd v2.9.1 as `tusd` on PATH), land an upload, and the link printed
/// when it lands downloads the same bytes through the dev server.
#[test]
fn serve_dev_prints_commands_that_land_an_upload_and_a_working_link() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;

    let dir = tempfile::tempdir().unwrap();
    // `tusd` as the printed command names it: tusd v2.9.1.
    let path_dir = dir.path().join("bin");
    std::fs::create_dir(&path_dir).unwrap();
    std::os::unix::fs::symlink(tusd_bin(Version::V2), path_dir.join("tusd")).unwrap();
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    let port = free_port();
    let mut daemon = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            daemon.env_remove(k);
        }
    }
    let daemon = daemon
        .args(["serve", "--dev"])
        .env("ASSETGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("ASSETGATE_SERVER__ADMIN_SOCKET", dir.path().join("admin.sock"))
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut daemon = Killed(daemon);
    let (tx, rx) = mpsc::channel::<String>();
    let out = daemon.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let read_until = |lines: &mut Vec<String>, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The needle's line and the one after it (the command it labels).
        while lines
            .iter()
            .position(|l| l.contains(needle))
            .is_none_or(|at| at + 1 >= lines.len())
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("no {needle:?} on stdout:\n{}", lines.join("\n")),
            }
        }
    };
    let mut lines = Vec::new();
    read_until(&mut lines, "2. upload");
    let tusd_cmd = command_after(&lines, "1. run tusd");
    let curl_cmd = command_after(&lines, "2. upload");
    assert!(tusd_cmd.starts_with("tusd "), "{tusd_cmd}");
    assert!(curl_cmd.starts_with("curl "), "{curl_cmd}");
    assert!(wait_port(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20)
    ));

    // 1. tusd, as printed (exec: the child is tusd, killed on drop).
    let tusd_log = dir.path().join("tusd.log");
    let tusd = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {tusd_cmd}"))
        .env("PATH", &path)
        .stdout(std::fs::File::create(&tusd_log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("tusd.err")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let _tusd = Killed(tusd);
    let tusd_port: u16 = tusd_cmd
        .split(' ')
        .skip_while(|w| *w != "-port")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("-port N in the tusd command");
    assert!(
        wait_port(
            format!("127.0.0.1:{tusd_port}").parse().unwrap(),
            Duration::from_secs(20)
        ),
        "tusd did not start: {}",
        std::fs::read_to_string(dir.path().join("tusd.err")).unwrap_or_default()
    );

    // 2. the signed upload, as printed.
    let up = Command::new("sh").arg("-c").arg(&curl_cmd).output().unwrap();
    assert!(
        up.status.success() && text(&up.stdout).starts_with("HTTP/1.1 201"),
        "the printed upload failed: {}{}",
        text(&up.stdout),
        text(&up.stderr)
    );

    // 3. the daemon says where it landed and prints a link.
    read_until(&mut lines, "download it (signed link");
    let landed_line = lines
        .iter()
        .find_map(|l| l.split("upload landed: ").nth(1))
        .expect("an 'upload landed' line")
        .to_string();
    let landed_path = landed_line.rsplit_once(" (").unwrap().0;
    let on_disk = std::fs::read(landed_path).unwrap();
    assert_eq!(on_disk, b"hello from assetgate --dev\n");
    assert!(landed_path.starts_with(tmp.to_str().unwrap()), "{landed_path}");
    let get_cmd = command_after(&lines, "download it (signed link");
    // Served as bytes to save, never rendered (an uploaded .html or .svg
    // must not run on the daemon's origin).
    let url = get_cmd.split('\'').nth(1).expect("the link in quotes");
    let head = Command::new("curl").args(["-sS", "-I", url]).output().unwrap();
    let head = text(&head.stdout).to_ascii_lowercase();
    for h in [
        "content-type: application/octet-stream",
        "x-content-type-options: nosniff",
        "content-disposition: attachment",
        "content-security-policy: sandbox",
    ] {
        assert!(head.contains(h), "no {h:?} in the dev download:\n{head}");
    }
    let got = Command::new("sh").arg("-c").arg(&get_cmd).output().unwrap();
    assert!(got.status.success(), "{get_cmd}: {}", text(&got.stderr));
    assert_eq!(got.stdout, on_disk, "the link downloads the landed bytes");

    // The same link with its signature changed is refused by the dev server.
    let forged = get_cmd.replacen("md5=", "md5=A", 1);
    let denied = Command::new("sh").arg("-c").arg(&forged).output().unwrap();
    assert!(!denied.status.success(), "a forged link downloads: {forged}");

    // A file over the dev cap: a clear 413, not a bare 404. Signed with the
    // secret the banner printed, as an operator would with `sign link`.
    let secret = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("ASSETGATE_LINK_SECRET="))
        .expect("the banner prints the link secret")
        .to_string();
    let big_dir = std::path::Path::new(landed_path).parent().unwrap();
    std::fs::write(big_dir.join("big.bin"), vec![0u8; (16 << 20) + 1]).unwrap();
    let big_uri = format!("/{}/big.bin", landed_line_dir(landed_path, &tmp));
    let signed = Command::new(bin())
        .args(["sign", "link", &big_uri])
        .env_clear()
        .env("ASSETGATE_LINK_SECRET", &secret)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    let target = text(&signed.stdout).trim().to_string();
    let big = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .output()
        .unwrap();
    assert_eq!(text(&big.stdout), "413", "a file over the dev cap");

    // The temporary tree goes with the daemon.
    let tree = std::path::Path::new(landed_path)
        .ancestors()
        .nth(4)
        .unwrap()
        .to_path_buf();
    assert!(tree.starts_with(&tmp) && tree != tmp, "{}", tree.display());
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status();
    let _ = daemon.0.wait();
    assert!(
        !tree.exists(),
        "{} is left after the daemon stopped",
        tree.display()
    );
}

/// `private/dev` for `<tree>/assets/private/dev/hello.txt`: the landed file's
/// directory below the storage root (`assets/`), as a link names it.
fn landed_line_dir(landed: &str, tmp: &std::path::Path) -> String {
    let path = std::path::Path::new(landed);
    assert!(path.starts_with(tmp), "{landed}");
    let parent = path.parent().unwrap();
    let at = parent
        .ancestors()
        .position(|a| a.file_name().is_some_and(|n| n == "assets"))
        .expect("below assets/");
    let root = parent.ancestors().nth(at).unwrap();
    parent.strip_prefix(root).unwrap().to_str().unwrap().to_string()
}
