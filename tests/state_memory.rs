//! Shared state with the default `memory` backend, on the real binary:
//! single-use upload tokens (plain, partial and final uploads; the partial
//! uploads a token may create, bounded in number and size) and revocations
//! through the CLI and the admin listener (never the port nginx uses); and the
//! backend's single-use contract on the library (`tests/common/state.rs`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::hooks::*;
use common::*;
use serde_json::{json, Value};

fn config_with_link(extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\"]\n{extra}\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n"
    )
}

fn env(extra: &str) -> Env {
    // Accepted is `{}` and parts have the IDs chosen here: IDs pre-create
    // issues (`signed`) are tests/tusd_hooks.rs's subject.
    gate_env(extra, "upload_ids = \"server\"")
}

/// The pre-create answer: `Ok(())` accepted, `Err((status, code))` refused.
fn pre_create(gate: &Daemon, ev: &Value) -> Result<(), (u64, String)> {
    let (s, _, b) = post(gate.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(s, 200);
    let v = json_of(&b);
    if v == json!({}) {
        return Ok(());
    }
    let status = v["HTTPResponse"]["StatusCode"].as_u64().unwrap();
    let body: Value = serde_json::from_str(v["HTTPResponse"]["Body"].as_str().unwrap()).unwrap();
    Err((status, body["error"]["code"].as_str().unwrap().to_string()))
}

fn plain(meta: &Value, size: u64) -> Value {
    v2_event("pre-create", meta.clone(), size, Value::Null)
}

fn partial(meta: &Value) -> Value {
    partial_of(meta, Some(4))
}

/// A partial upload's pre-create declaring `size` bytes (`None`: deferred).
fn partial_of(meta: &Value, size: Option<u64>) -> Value {
    let mut ev = v2_event("pre-create", meta.clone(), size.unwrap_or(0), Value::Null);
    ev["Event"]["Upload"]["IsPartial"] = json!(true);
    if size.is_none() {
        ev["Event"]["Upload"]["Size"] = Value::Null;
        ev["Event"]["Upload"]["SizeIsDeferred"] = json!(true);
    }
    ev
}

fn finished_part(uploads: &Path, id: &str, meta: &Value) {
    let (_, info) = tusd_upload(uploads, id, meta, b"part");
    let mut i: Value = serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    i["IsPartial"] = json!(true);
    i["Offset"] = json!(4);
    std::fs::write(&info, i.to_string()).unwrap();
}

fn final_of(meta: &Value, parts: &[&str]) -> Value {
    let mut ev = v2_event("pre-create", meta.clone(), 8, Value::Null);
    ev["Event"]["Upload"]["IsFinal"] = json!(true);
    ev["Event"]["Upload"]["PartialUploads"] = json!(parts);
    ev
}

fn used() -> Result<(), (u64, String)> {
    Err((403, "token_used".into()))
}

#[test]
fn single_use_tokens_plain_partial_and_final() {
    // default_config() ends inside [upload].
    let e = env("single_use = true\nmax_size = 1000\n");
    let gate = &e.gate;
    let meta = |key: &str| metadata(UPLOAD_SECRET, key, "private", "text/plain", now() + 600);

    // A plain upload consumes its token; a replay is refused with its own code.
    let a = meta("a.txt");
    assert_eq!(pre_create(gate, &plain(&a, 10)), Ok(()));
    assert_eq!(pre_create(gate, &plain(&a, 10)), used());
    // The same grant signed with the older secret is the same token.
    let a_old = metadata(
        UPLOAD_SECRET_OLD,
        "a.txt",
        "private",
        "text/plain",
        a["upload-expires"].as_str().unwrap().parse().unwrap(),
    );
    assert_eq!(pre_create(gate, &plain(&a_old, 10)), used());
    // Another token is not affected.
    assert_eq!(pre_create(gate, &plain(&meta("b.txt"), 10)), Ok(()));

    // A pre-create refused by the pure checks does not consume the token
    // (the size is not signed: the same token then passes).
    let c = meta("c.txt");
    assert_eq!(pre_create(gate, &plain(&c, 5000)), Err((413, "too_large".into())));
    assert_eq!(pre_create(gate, &plain(&c, 10)), Ok(()));

    // Concatenation: the parts only check the token, the final consumes it.
    let d = meta("d.txt");
    assert_eq!(pre_create(gate, &partial(&d)), Ok(()));
    assert_eq!(pre_create(gate, &partial(&d)), Ok(()));
    finished_part(&e.uploads, "part1", &d);
    finished_part(&e.uploads, "part2", &d);
    assert_eq!(pre_create(gate, &final_of(&d, &["part1", "part2"])), Ok(()));
    assert_eq!(pre_create(gate, &final_of(&d, &["part1", "part2"])), used());
    assert_eq!(
        pre_create(gate, &partial(&d)),
        used(),
        "a spent token starts no new part"
    );

    assert_eq!(
        gate.metric(
            "assetgate_hook_decisions_total{decision=\"deny\",hook=\"pre-create\",reason=\"token_used\"}"
        ),
        4.0
    );
    let logs = gate.logs().join("\n");
    assert!(
        !logs.contains(a["upload-token"].as_str().unwrap()),
        "token in logs"
    );
}

/// Issue 19, finding 11: one token created 30 parts before its final, each up
/// to `max_size`. With `single_use`, a token's partial uploads are bounded: at
/// most `[upload] max_parts` (default 16), their declared sizes together at
/// most `max_size`; a refused part is not counted.
#[test]
fn single_use_bounds_the_partial_uploads_of_a_token() {
    let e = env("single_use = true\nmax_size = 1000\nallow_deferred_length = true\n");
    let gate = &e.gate;
    let meta = |key: &str| metadata(UPLOAD_SECRET, key, "private", "text/plain", now() + 600);
    let refused = |code: &str| {
        Err((
            (if code == "too_many_parts" { 403 } else { 413 }),
            code.to_string(),
        ))
    };

    // The count: 16 parts by default, then too_many_parts.
    let a = meta("count.bin");
    for i in 0..16 {
        assert_eq!(pre_create(gate, &partial_of(&a, Some(10))), Ok(()), "part {i}");
    }
    assert_eq!(
        pre_create(gate, &partial_of(&a, Some(10))),
        refused("too_many_parts")
    );
    assert_eq!(
        pre_create(gate, &partial_of(&a, Some(0))),
        refused("too_many_parts")
    );
    // Another token is not affected.
    assert_eq!(
        pre_create(gate, &partial_of(&meta("other.bin"), Some(10))),
        Ok(())
    );

    // The size: the parts' declared sizes together at most max_size (1000).
    let b = meta("size.bin");
    assert_eq!(pre_create(gate, &partial_of(&b, Some(600))), Ok(()));
    assert_eq!(
        pre_create(gate, &partial_of(&b, Some(401))),
        refused("parts_too_large")
    );
    assert_eq!(
        pre_create(gate, &partial_of(&b, Some(400))),
        Ok(()),
        "exactly max_size"
    );
    assert_eq!(
        pre_create(gate, &partial_of(&b, Some(1))),
        refused("parts_too_large")
    );
    // A part over max_size alone is the policy's too_large, as before.
    assert_eq!(
        pre_create(gate, &partial_of(&meta("one.bin"), Some(1001))),
        Err((413, "too_large".into()))
    );
    // A deferred length counts as max_size: one such part takes it all.
    let c = meta("deferred.bin");
    assert_eq!(pre_create(gate, &partial_of(&c, None)), Ok(()));
    assert_eq!(
        pre_create(gate, &partial_of(&c, Some(1))),
        refused("parts_too_large")
    );

    for (reason, n) in [("too_many_parts", 2.0), ("parts_too_large", 3.0)] {
        assert_eq!(
            gate.metric(&format!(
                "assetgate_hook_decisions_total{{decision=\"deny\",hook=\"pre-create\",reason=\"{reason}\"}}"
            )),
            n
        );
    }
    let logs = gate.logs().join("\n");
    assert!(logs.contains("max_parts (16)"), "the reason is logged");
}

/// `[upload] max_parts` is read, and without `max_size` only the count bounds.
#[test]
fn max_parts_is_configurable_and_the_count_alone_bounds_without_max_size() {
    let e = env("single_use = true\nmax_parts = 2\n");
    let a = metadata(UPLOAD_SECRET, "two.bin", "private", "text/plain", now() + 600);
    for _ in 0..2 {
        assert_eq!(pre_create(&e.gate, &partial_of(&a, Some(u64::MAX >> 2))), Ok(()));
    }
    assert_eq!(
        pre_create(&e.gate, &partial_of(&a, Some(1))),
        Err((403, "too_many_parts".into()))
    );
    // Every reason code is pre-registered, these two included.
    let e = env("");
    let (_, _, metrics) = get(e.gate.addr, "/metrics", &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    for reason in ["too_many_parts", "parts_too_large"] {
        let line = format!(
            "assetgate_hook_decisions_total{{decision=\"deny\",hook=\"pre-create\",reason=\"{reason}\"}} 0"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }
    // Without single_use, nothing is counted.
    let a = metadata(UPLOAD_SECRET, "free.bin", "private", "text/plain", now() + 600);
    for _ in 0..20 {
        assert_eq!(pre_create(&e.gate, &partial_of(&a, Some(1))), Ok(()));
    }
}

#[tokio::test]
async fn the_memory_backend_keeps_the_single_use_contract() {
    common::state::contract(&assetgate::state::memory::Memory::default()).await;
}

#[test]
fn without_single_use_a_token_may_be_reused() {
    let e = env("");
    let a = metadata(UPLOAD_SECRET, "a.txt", "private", "text/plain", now() + 600);
    assert_eq!(pre_create(&e.gate, &plain(&a, 10)), Ok(()));
    assert_eq!(pre_create(&e.gate, &plain(&a, 10)), Ok(()));
}

fn cli(gate: &Daemon, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(gate.dir.path().join("assetgate.toml"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ASSETGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ASSETGATE_SERVER__ADMIN_SOCKET", &gate.admin_socket);
    cmd.args(args).output().unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn link(uri: &str, expires: i64) -> String {
    format!(
        "{uri}?md5={}&expires={expires}",
        sign_link(LINK_SECRET, uri, &expires.to_string())
    )
}

fn auth(gate: &Daemon, target: &str) -> (u16, Option<String>) {
    let (s, h, _) = get(gate.addr, "/auth", &[("X-Original-URI", target.as_bytes())]);
    (s, header(&h, "x-assetgate-reason").map(str::to_owned))
}

fn revoked() -> (u16, Option<String>) {
    (403, Some("revoked".into()))
}

#[test]
fn revocations_through_the_cli_and_the_admin_listener() {
    let gate = Daemon::start(&config_with_link("max_ttl = \"7d\""));
    let exp = now() + 3600;
    let one = link("/private/one.txt", exp);
    let other = link("/private/one.txt", exp + 1);
    assert_eq!(auth(&gate, &one).0, 204);
    assert_eq!(gate.metric("assetgate_revocations"), 0.0);

    // One link, given as the full URL it was handed out as.
    let o = cli(&gate, &["revoke", "link", &format!("https://cdn.example{one}")]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("until {exp}")),
        "a link is kept until it expires: {}",
        out(&o)
    );
    assert_eq!(auth(&gate, &one), revoked());
    assert_eq!(auth(&gate, &other).0, 204, "another link to the same file");

    // A prefix and a key: kept for [link] max_ttl.
    let o = cli(&gate, &["revoke", "prefix", "/private/user-42/"]);
    assert!(
        o.status.success() && !out(&o).contains("until unrevoked"),
        "{}",
        out(&o)
    );
    assert_eq!(auth(&gate, &link("/private/user-42/a/b.jpg", exp)), revoked());
    assert_eq!(auth(&gate, &link("/private/user-420/b.jpg", exp)).0, 204);
    let o = cli(&gate, &["revoke", "key", "invoices/inv-001.pdf"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        auth(&gate, &link("/private/invoices/inv-001.pdf", exp)),
        revoked()
    );

    let o = cli(&gate, &["revoked", "list"]);
    let listed = out(&o);
    assert!(listed.contains("link\t/private/one.txt"), "{listed}");
    assert!(listed.contains("prefix\t/private/user-42/"), "{listed}");
    assert!(listed.contains("key\tinvoices/inv-001.pdf"), "{listed}");
    assert_eq!(gate.metric("assetgate_revocations"), 3.0);

    let o = cli(&gate, &["unrevoke", "prefix", "/private/user-42/"]);
    assert!(out(&o).contains("unrevoked"), "{}", out(&o));
    assert_eq!(auth(&gate, &link("/private/user-42/a/b.jpg", exp)).0, 204);
    let o = cli(&gate, &["unrevoke", "prefix", "/private/user-42/"]);
    assert!(out(&o).contains("was not revoked"), "{}", out(&o));

    // Bad values are refused by the CLI (exit 64), never sent.
    let o = cli(&gate, &["revoke", "link", "/private/one.txt"]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));
    let o = cli(&gate, &["revoke", "prefix", "/"]);
    assert_eq!(o.status.code(), Some(64), "{}", out(&o));

    // The port nginx uses has no revocation endpoint.
    let (s, _, _) = get(gate.addr, "/revocations", &[]);
    assert_eq!(s, 404);
    assert_eq!(
        gate.metric("assetgate_decisions_total{decision=\"deny\",endpoint=\"auth\",reason=\"revoked\"}"),
        3.0
    );
    // The daemon being gone is a clear failure, not a hang.
    drop(gate);
}

#[test]
fn link_max_ttl_refuses_longer_links() {
    let gate = Daemon::start(&config_with_link("max_ttl = 3600"));
    assert_eq!(auth(&gate, &link("/private/a", now() + 3000)).0, 204);
    assert_eq!(
        auth(&gate, &link("/private/a", now() + 7200)),
        (403, Some("ttl-too-long".into()))
    );
}
