//! The application-side link signers (`examples/link_signer.py`,
//! `examples/link_signer.mjs`) mint granite-assets' download links byte for byte,
//! without the asset tree granite needs (what an S3 deployment lacks).
//!
//! - Stored vectors (`tests/vectors/granite-links.json`, made by the real
//!   library): each signer's `url` equals granite's stored `url`; its encoded
//!   form equals the vector's `request_target` (what `requests` sends).
//! - Generated cases (spaces, `+`, `%`, `?`, `#`, non-ASCII keys; both
//!   visibilities; base URLs with and without a path; a fixed expiry): the live
//!   library (`tests/peers/granite_cases.py`, clock pinned) is the oracle for
//!   `url`; `assetgate sign link` is the oracle for the encoded form.
//! - Every private link each signer makes is accepted by `assetgate verify link`
//!   (the daemon's own verifier) under a config listing the secret.
//! - The link made from the `upload.finalized` event (`from_event`/`fromEvent`)
//!   is the same link; an `upload.failed` event gives none.
//! - Keys nginx would rewrite (`..`, `//`, leading or trailing `/`, control
//!   characters) are refused by both signers.
//!
//! Needs the peers venv (granite-assets) and Node.js >= 20; without them the
//! test fails with the install command, it never skips.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{bin, peer_python, repo, require_peer};
use serde_json::{json, Value};

/// A fixed expiry for the generated cases (2033-05-18).
const EXPIRES: i64 = 2_000_000_000;
const GENERATED_SECRET: &str = "signer-test-secret-5e1f0c77";

/// One link to mint: what the application knows.
#[derive(Clone, Debug)]
struct Case {
    base_url: String,
    secret: String,
    key: String,
    visibility: &'static str,
    expires: i64,
    /// The type of the event handed to `from_event`/`fromEvent`.
    event_type: &'static str,
}

impl Case {
    fn to_json(&self) -> Value {
        json!({
            "base_url": self.base_url, "secret": self.secret, "key": self.key,
            "visibility": self.visibility, "expires": self.expires,
            "event": self.event(),
        })
    }

    /// The event the application received for this asset, in the shape of
    /// docs/events.md (assetgate's `upload.finalized` body).
    fn event(&self) -> Value {
        json!({
            "type": self.event_type,
            "timestamp": "2026-11-30T20:03:00.094Z",
            "data": {
                "key": self.key, "visibility": self.visibility,
                "content_type": "application/octet-stream", "size": 48213,
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "path": format!("{}/{}", self.visibility, self.key),
                "upload_id": "07fc4c0fc6434c2f01bd1e0c066c2e53",
                "finalized_at": "2026-11-30T20:03:00.094Z",
            },
        })
    }

    /// nginx's `$uri` for the link (what is signed), from granite's formula.
    fn uri(&self) -> String {
        let after_scheme = &self.base_url[self.base_url.find("://").unwrap() + 3..];
        let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        format!("{}/{}/{}", path.trim_end_matches('/'), self.visibility, self.key)
    }

    fn origin(&self) -> &str {
        let start = self.base_url.find("://").unwrap() + 3;
        let end = self.base_url[start..]
            .find('/')
            .map_or(self.base_url.len(), |i| start + i);
        &self.base_url[..end]
    }
}

/// The stored granite vectors as cases, with granite's `url` and `request_target`.
fn stored() -> Vec<(Case, String, String)> {
    let path = repo().join("tests/vectors/granite-links.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["generator"], "granite-assets");
    let secrets = &doc["secrets"];
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}")).to_owned();
            let case = Case {
                base_url: s("base_url"),
                secret: secrets[s("secret")].as_str().unwrap().to_owned(),
                key: s("key"),
                visibility: "private",
                expires: v["expires"].as_i64().unwrap(),
                event_type: "upload.finalized",
            };
            (case, s("url"), s("request_target"))
        })
        .collect()
}

/// Keys granite signs and nginx keeps as they are, chosen for what an encoder
/// gets wrong.
const KEYS: &[&str] = &[
    "plain.txt",
    "with space/and  two.pdf",
    "a+b=c/1+1.txt",
    "percent/100%.txt",
    "percent/%41%2F%zz.bin",
    "query?x=1#frag.txt",
    "été/naïve café.jpg",
    "写真/東京 タワー.png",
    "emoji/🎉 party.gif",
    "sub-delims/!$&'()*,;=:@~.txt",
    "brackets/[x]{y}<z>|^`\"\\.txt",
    "nbsp/a\u{a0}b.txt",
];

const BASE_URLS: &[&str] = &[
    "https://media.example.com/assets",
    "http://127.0.0.1:8080/",
    "https://cdn.example.com/static/media/",
];

fn generated() -> Vec<Case> {
    let mut out = Vec::new();
    for base in BASE_URLS {
        for key in KEYS {
            for visibility in ["private", "public"] {
                out.push(Case {
                    base_url: (*base).to_owned(),
                    secret: GENERATED_SECRET.to_owned(),
                    key: (*key).to_owned(),
                    visibility,
                    expires: EXPIRES,
                    event_type: "upload.finalized",
                });
            }
        }
    }
    out
}

/// Runs a batch program: cases as JSON on stdin, one result object per case.
fn batch(mut cmd: Command, cases: &[Case]) -> Vec<Value> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let input = Value::Array(cases.iter().map(Case::to_json).collect()).to_string();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), cases.len(), "{what}: one result per case");
    v
}

fn node() -> PathBuf {
    require_peer(
        "node",
        &[PathBuf::from("/usr/bin/node")],
        "apt-get install -y nodejs npm (Node.js >= 20)",
    )
}

/// The two signers under test, by name.
fn signers() -> Vec<(&'static str, Command)> {
    let mut py = Command::new(peer_python());
    py.arg(repo().join("examples/link_signer.py")).arg("--batch");
    let mut js = Command::new(node());
    js.arg(repo().join("examples/link_signer.mjs")).arg("--batch");
    vec![("link_signer.py", py), ("link_signer.mjs", js)]
}

fn granite(cases: &[Case]) -> Vec<String> {
    let mut cmd = Command::new(peer_python());
    cmd.arg(repo().join("tests/peers/granite_cases.py"));
    batch(cmd, cases)
        .into_iter()
        .map(|v| v["url"].as_str().unwrap().to_owned())
        .collect()
}

fn field(v: &Value, name: &str, who: &str, case: &Case) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{who} gave no {name:?} for {case:?}: {v}"))
        .to_owned()
}

/// A config file whose newest (signing) link secret is `newest`, listing `also`.
fn config(dir: &Path, newest: &str, also: &[&str]) -> PathBuf {
    let mut secrets = vec![newest];
    secrets.extend(also.iter().filter(|s| **s != newest));
    let p = dir.join(format!("{}.toml", newest));
    std::fs::write(
        &p,
        format!("[link]\nsecrets = {}\n", serde_json::to_string(&secrets).unwrap()),
    )
    .unwrap();
    p
}

fn assetgate(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config").arg(config).args(args).output().unwrap()
}

/// `assetgate sign link <uri> --expires N`: the request target it prints.
fn assetgate_sign(config: &Path, case: &Case) -> String {
    let expires = case.expires.to_string();
    let o = assetgate(config, &["sign", "link", &case.uri(), "--expires", &expires]);
    assert!(
        o.status.success(),
        "assetgate sign link {:?}: {}",
        case.uri(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// `assetgate verify link <target> --now expires-1`: exit 0 and "valid".
fn assert_verified(config: &Path, target: &str, case: &Case, who: &str) {
    let now = (case.expires - 1).to_string();
    let o = assetgate(config, &["verify", "link", target, "--now", &now]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.starts_with("valid"),
        "assetgate verify link refused {who}'s link {target:?} for {case:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Path and query of an absolute URL made by a signer for `case`.
fn target<'a>(url: &'a str, case: &Case, who: &str) -> &'a str {
    url.strip_prefix(case.origin())
        .unwrap_or_else(|| panic!("{who}: {url:?} does not start with {:?}", case.origin()))
}

#[test]
fn signers_match_granite_and_assetgate_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let stored = stored();
    let generated = generated();
    let all_secrets: Vec<String> = stored
        .iter()
        .map(|(c, _, _)| c.secret.clone())
        .chain([GENERATED_SECRET.to_owned()])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let also: Vec<&str> = all_secrets.iter().map(String::as_str).collect();
    let configs: BTreeMap<&str, PathBuf> = also.iter().map(|s| (*s, config(dir.path(), s, &also))).collect();

    // The live library on the generated cases: the oracle for `url`.
    let live = granite(&generated);
    let mut cases: Vec<(Case, String, Option<String>)> = stored
        .into_iter()
        .map(|(c, url, rt)| (c, url, Some(rt)))
        .collect();
    cases.extend(generated.into_iter().zip(live).map(|(c, url)| (c, url, None)));
    let just_cases: Vec<Case> = cases.iter().map(|(c, _, _)| c.clone()).collect();

    // assetgate's own signer: the oracle for the encoded form.
    let by_assetgate: Vec<String> = just_cases
        .iter()
        .map(|c| assetgate_sign(&configs[c.secret.as_str()], c))
        .collect();

    let mut verified = 0;
    for (who, cmd) in signers() {
        let results = batch(cmd, &just_cases);
        for (((case, granite_url, request_target), got), ours) in
            cases.iter().zip(&results).zip(&by_assetgate)
        {
            let url = field(got, "url", who, case);
            assert_eq!(
                &url, granite_url,
                "{who}: url differs from granite's for {case:?}"
            );
            assert_eq!(
                field(got, "event_url", who, case),
                url,
                "{who}: the link from the upload.finalized event differs for {case:?}"
            );
            let encoded = field(got, "encoded", who, case);
            let encoded_target = target(&encoded, case, who);
            let want = if case.visibility == "public" {
                // Public links carry no signature: the path part of assetgate's.
                ours.split('?').next().unwrap()
            } else {
                ours.as_str()
            };
            assert_eq!(
                encoded_target, want,
                "{who}: encoded link differs from `assetgate sign link` for {case:?}"
            );
            if let Some(rt) = request_target {
                assert_eq!(
                    encoded_target, rt,
                    "{who}: encoded link differs from what requests sends for {case:?}"
                );
            }
            if case.visibility == "private" {
                assert_verified(&configs[case.secret.as_str()], encoded_target, case, who);
                verified += 1;
            } else {
                assert!(!url.contains('?') || case.key.contains('?'), "{url}");
            }
        }
    }
    // 192 stored vectors and 36 generated private cases, for each of two signers.
    assert_eq!(verified, 2 * (192 + KEYS.len() * BASE_URLS.len()));
}

#[test]
fn keys_nginx_would_rewrite_are_refused() {
    let bad = [
        "",
        "/absolute.txt",
        "a//b.txt",
        "dir/",
        "a/../b.txt",
        "./a.txt",
        "a/..",
        "tab\there.txt",
        "nul\u{0}.txt",
        "c1\u{85}.txt",
    ];
    let cases: Vec<Case> = bad
        .iter()
        .map(|k| Case {
            base_url: BASE_URLS[0].to_owned(),
            secret: GENERATED_SECRET.to_owned(),
            key: (*k).to_owned(),
            visibility: "private",
            expires: EXPIRES,
            event_type: "upload.finalized",
        })
        .collect();
    for (who, cmd) in signers() {
        for (case, got) in cases.iter().zip(batch(cmd, &cases)) {
            assert!(
                got["error"].is_string() && got.get("url").is_none(),
                "{who} signed {:?}: {got}",
                case.key
            );
        }
    }
}

/// Only an `upload.finalized` event names a published asset: an
/// `upload.failed` one (nothing was published) gives no link.
#[test]
fn only_finalized_events_give_links() {
    let cases: Vec<Case> = ["upload.failed", "upload.finalized"]
        .into_iter()
        .map(|event_type| Case {
            base_url: BASE_URLS[0].to_owned(),
            secret: GENERATED_SECRET.to_owned(),
            key: "invoices/inv-001.pdf".to_owned(),
            visibility: "private",
            expires: EXPIRES,
            event_type,
        })
        .collect();
    for (who, cmd) in signers() {
        let got = batch(cmd, &cases);
        assert!(
            got[0]["event_error"].is_string() && got[0].get("event_url").is_none(),
            "{who} made a link from an upload.failed event: {}",
            got[0]
        );
        assert_eq!(got[1]["event_url"], got[1]["url"], "{who}: {}", got[1]);
    }
}

/// The command line (`--secret-file`, `--expires`, `--encoded`) prints the link
/// granite makes, for each signer.
#[test]
fn command_line_prints_granites_link() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("link_secret");
    std::fs::write(&secret_file, format!("{GENERATED_SECRET}\n")).unwrap();
    let case = Case {
        base_url: BASE_URLS[0].to_owned(),
        secret: GENERATED_SECRET.to_owned(),
        key: "reports/Q1 2026/été+1.pdf".to_owned(),
        visibility: "private",
        expires: EXPIRES,
        event_type: "upload.finalized",
    };
    let want = granite(std::slice::from_ref(&case)).remove(0);
    let cfg = config(dir.path(), GENERATED_SECRET, &[]);
    let want_encoded = format!("{}{}", case.origin(), assetgate_sign(&cfg, &case));
    let programs = [
        (peer_python(), repo().join("examples/link_signer.py")),
        (node(), repo().join("examples/link_signer.mjs")),
    ];
    for (interpreter, script) in programs {
        for (extra, expect) in [(None, &want), (Some("--encoded"), &want_encoded)] {
            let mut cmd = Command::new(&interpreter);
            cmd.arg(&script)
                .args(["--base-url", &case.base_url, "--secret-file"])
                .arg(&secret_file)
                .args(["--expires", &EXPIRES.to_string()])
                .args(extra)
                .args([case.key.as_str(), case.visibility]);
            let o = cmd.output().unwrap();
            assert!(
                o.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(String::from_utf8(o.stdout).unwrap().trim_end(), expect, "{cmd:?}");
        }
        // A refused key: exit 2, the reason on stderr, nothing on stdout.
        let o = Command::new(&interpreter)
            .arg(&script)
            .args(["--base-url", &case.base_url, "--secret-file"])
            .arg(&secret_file)
            .args(["a/../b.txt", "private"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", script.display());
        assert!(o.stdout.is_empty());
        assert!(String::from_utf8_lossy(&o.stderr).contains("'..'"));
    }
}
