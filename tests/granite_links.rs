//! Download links minted by the real granite-assets library are accepted.
//!
//! - Stored vectors (`tests/vectors/granite-links.json`, made by
//!   `tests/vectors/mint_granite_links.py` with the pinned library): every
//!   `request_target` is sent as `X-Original-URI` to the real binary; `valid` →
//!   204, `expired` → 403 `expired`. The `older` vectors only pass because the
//!   older secret is listed (rotation): with the newest secret alone they are
//!   `invalid`.
//! - Live: the peers venv mints fresh links right now (library default TTL) and
//!   the daemon accepts them. Without the venv this test fails with the install
//!   command, it never skips.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{get, header, peer_python, repo, sign_link, Daemon, LINK_SECRET, LINK_SECRET_OLD};
use serde_json::Value;

/// One vector as the mint script writes it.
#[derive(Debug)]
struct Vector {
    key: String,
    request_target: String,
    uri: String,
    md5: String,
    expires: i64,
    secret: String,
    expect: String,
}

struct Doc {
    version: String,
    newest: String,
    older: String,
    vectors: Vec<Vector>,
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field {name:?} missing or not a string in {v}"))
}

fn parse_doc(text: &str) -> Doc {
    let v: Value = serde_json::from_str(text).expect("vectors are JSON");
    assert_eq!(str_field(&v, "generator"), "granite-assets");
    let vectors = v["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .map(|x| Vector {
            key: str_field(x, "key").to_owned(),
            request_target: str_field(x, "request_target").to_owned(),
            uri: str_field(x, "uri").to_owned(),
            md5: str_field(x, "md5").to_owned(),
            expires: x["expires"].as_i64().expect("expires is an integer"),
            secret: str_field(x, "secret").to_owned(),
            expect: str_field(x, "expect").to_owned(),
        })
        .collect();
    Doc {
        version: str_field(&v, "version").to_owned(),
        newest: str_field(&v["secrets"], "newest").to_owned(),
        older: str_field(&v["secrets"], "older").to_owned(),
        vectors,
    }
}

fn stored() -> Doc {
    let path = repo().join("tests/vectors/granite-links.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_doc(&text)
}

/// The granite-assets version pinned in `tests/peers/requirements.txt`.
fn pinned_version() -> String {
    let path = repo().join("tests/peers/requirements.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("granite-assets=="))
        .expect("granite-assets pinned with == in tests/peers/requirements.txt")
        .trim()
        .to_owned()
}

fn config(secrets: &[&str]) -> String {
    let list: Vec<String> = secrets
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [{}]\n",
        list.join(", ")
    )
}

/// Asks the gate about `target`; returns (status, reason header).
fn auth(d: &Daemon, target: &[u8]) -> (u16, Option<String>) {
    let (status, headers, body) = get(d.addr, "/auth", &[("X-Original-URI", target)]);
    assert!(body.is_empty(), "auth answers carry no body");
    (status, header(&headers, "x-assetgate-reason").map(str::to_owned))
}

/// What the gate must answer for a vector whose secret is configured.
fn expected(v: &Vector) -> (u16, Option<String>) {
    match v.expect.as_str() {
        "valid" => (204, None),
        "expired" => (403, Some("expired".to_owned())),
        other => panic!("unknown expect {other:?} for {v:?}"),
    }
}

/// Checks every vector against `d`; `verdict` gives the expected answer.
/// Collects all mismatches so one run shows every failing vector.
fn check_all(d: &Daemon, vectors: &[Vector], verdict: impl Fn(&Vector) -> (u16, Option<String>)) -> usize {
    let mut failures = Vec::new();
    let mut checked = 0;
    for v in vectors {
        let want = verdict(v);
        let got = auth(d, v.request_target.as_bytes());
        checked += 1;
        if got != want {
            failures.push(format!(
                "{:?} (secret {}): want {want:?}, got {got:?}",
                v.request_target, v.secret
            ));
        }
        // The same link sent the way a client that does not percent-encode
        // non-ASCII would (raw UTF-8 bytes in the request line; nginx passes
        // them through in $request_uri). Not possible with a space: nginx
        // refuses a raw space in the request line.
        if !v.uri.contains(' ') {
            let raw = format!("{}?md5={}&expires={}", v.uri, v.md5, v.expires);
            if raw != v.request_target {
                let got = auth(d, raw.as_bytes());
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "raw {raw:?} (secret {}): want {want:?}, got {got:?}",
                        v.secret
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} requests got the wrong answer:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn stored_vectors_cover_what_they_claim() {
    let doc = stored();
    assert_eq!(
        doc.version,
        pinned_version(),
        "granite-links.json was made by another granite-assets than the pinned one: regenerate it \
         (.peers/venv/bin/python tests/vectors/mint_granite_links.py)"
    );
    assert!(doc.newest.len() >= 16 && doc.older.len() >= 16 && doc.newest != doc.older);
    let vs = &doc.vectors;
    let any = |f: &dyn Fn(&Vector) -> bool| vs.iter().any(f);
    for secret in ["newest", "older"] {
        for expect in ["valid", "expired"] {
            assert!(
                any(&|v| v.secret == secret && v.expect == expect),
                "no {secret}/{expect} vector"
            );
        }
    }
    let valid = |v: &Vector| v.expect == "valid";
    assert!(any(&|v| valid(v) && v.key.contains(' ')), "a key with a space");
    assert!(
        any(&|v| valid(v) && v.key.contains("été")),
        "a key with accented Latin"
    );
    assert!(
        any(&|v| valid(v) && v.key.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
        "a CJK key"
    );
    for c in ['+', '~', '(', '\'', '!', '/'] {
        assert!(any(&|v| valid(v) && v.key.contains(c)), "a key with {c:?}");
    }
    assert!(
        any(&|v| v.uri.starts_with("/assets/private/")),
        "a base_url with a path prefix"
    );
    assert!(
        any(&|v| v.uri.starts_with("/private/")),
        "a base_url without a path"
    );
    // Every vector's md5 is what nginx computes for its `uri` (independent
    // oracle): the `uri` field really is the signed path.
    let kinds: BTreeSet<&str> = vs.iter().map(|v| v.secret.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["newest", "older"]));
    for v in vs {
        let secret = if v.secret == "newest" {
            &doc.newest
        } else {
            &doc.older
        };
        assert_eq!(sign_link(secret, &v.uri, &v.expires.to_string()), v.md5, "{v:?}");
        assert!(v.request_target.is_ascii(), "a client percent-encodes: {v:?}");
    }
}

#[test]
fn stored_vectors_accepted_under_rotation() {
    let doc = stored();
    let d = Daemon::start(&config(&[&doc.newest, &doc.older]));
    let n = check_all(&d, &doc.vectors, expected);
    assert!(n >= doc.vectors.len());
}

#[test]
fn older_vectors_need_the_older_secret() {
    let doc = stored();
    let d = Daemon::start(&config(&[&doc.newest]));
    check_all(&d, &doc.vectors, |v| {
        if v.secret == "older" {
            // Expiry is only reported when the hash matched.
            (403, Some("invalid".to_owned()))
        } else {
            expected(v)
        }
    });
}

#[test]
fn live_links_from_granite_are_accepted() {
    let python = peer_python();
    let out = Command::new(&python)
        .arg(repo().join("tests/vectors/mint_granite_links.py"))
        .arg("--live")
        .env("GRANITE_SECRET_NEWEST", LINK_SECRET)
        .env("GRANITE_SECRET_OLDER", LINK_SECRET_OLD)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "mint_granite_links.py --live failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = parse_doc(std::str::from_utf8(&out.stdout).expect("UTF-8 JSON"));
    assert_eq!(
        doc.version,
        pinned_version(),
        "the venv's granite-assets is not the pinned one"
    );
    assert_eq!(
        (doc.newest.as_str(), doc.older.as_str()),
        (LINK_SECRET, LINK_SECRET_OLD)
    );
    let valid: Vec<&Vector> = doc.vectors.iter().filter(|v| v.expect == "valid").collect();
    assert!(
        valid.iter().any(|v| v.key.contains(' ')),
        "a live key with a space"
    );
    assert!(valid.iter().any(|v| !v.key.is_ascii()), "a live non-ASCII key");
    assert!(
        valid.iter().any(|v| v.secret == "older"),
        "a live link under the older secret"
    );

    let d = Daemon::start(&common::default_config());
    check_all(&d, &doc.vectors, expected);
}
