//! The differential test: nginx's own `$secure_link` and the gate's verdict on the same request.

use super::*;

pub(crate) fn diff_nginx_conf(dir: &Path, gate_port: u16, ports: &[u16], merge_slashes: bool) -> String {
    let ms = if merge_slashes { "on" } else { "off" };
    let d = dir.display();
    let (diff, oracle) = (ports[0], ports[1]);
    nginx_main_conf(
        dir,
        &format!(
            r#"
upstream assetgate {{
    server 127.0.0.1:{gate_port};
    keepalive 64;
    keepalive_timeout 5s;
}}

# Native $secure_link and the gate, for the same request.
server {{
    listen 127.0.0.1:{diff};
    merge_slashes {ms};
    root {d}/www;
    add_header X-Native "[$native]" always;
    add_header X-Gate-Status "[$gate_status]" always;
    add_header X-Gate-Reason "[$gate_reason]" always;

    location / {{
        secure_link $arg_md5,$arg_expires;
        secure_link_md5 "$secure_link_expires$uri {LINK_SECRET}";
        # Evaluated here, in the rewrite phase, before try_files changes $uri.
        set $native $secure_link;
        auth_request /_assetgate_diff_gate;
        auth_request_set $gate_status $upstream_status;
        auth_request_set $gate_reason $upstream_http_x_assetgate_reason;
        error_page 403 = @denied;
        # Not `return`: it would run before auth_request.
        try_files /ok.txt =404;
    }}
    location @denied {{
        return 403;
    }}
    location = /_assetgate_diff_gate {{
        internal;
        proxy_pass http://assetgate/auth;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_pass_request_headers off;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }}
}}

# The oracle: nginx's $uri for a path, to sign chaos paths with.
server {{
    listen 127.0.0.1:{oracle};
    merge_slashes {ms};
    location / {{
        return 200 $uri;
    }}
}}
"#
        ),
    )
}

/// Requests per merge_slashes mode (about 0.5 ms each on loopback). Every run
/// draws a new seed, so coverage accumulates across CI runs.
pub(crate) const DEFAULT_DIFF_COUNT: u64 = 5000;

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) native_valid: usize,
    pub(crate) native_expired: usize,
    pub(crate) native_empty: usize,
    pub(crate) nginx_400: usize,
    pub(crate) excluded: usize,
    pub(crate) reached_gate: usize,
    pub(crate) oracle_requests: usize,
    pub(crate) gate_reasons: BTreeMap<String, usize>,
    pub(crate) by_spec: BTreeMap<&'static str, [usize; 4]>,
    pub(crate) mismatches: Vec<String>,
    pub(crate) expectation_misses: Vec<String>,
}

pub(crate) fn spec_kind(s: &Spec) -> &'static str {
    match s {
        Spec::Built(..) => "built",
        Spec::Chaos(..) => "chaos",
        Spec::Absolute(..) => "absolute",
        Spec::Bad(..) => "bad",
    }
}

pub(crate) fn differential(merge_slashes: bool) {
    let count = env_u64("ASSETGATE_DIFF_COUNT").unwrap_or(DEFAULT_DIFF_COUNT) as usize;
    let seed = env_u64("ASSETGATE_DIFF_SEED").unwrap_or_else(rand::random);
    let mode = if merge_slashes { "on" } else { "off" };
    println!("differential merge_slashes={mode}: seed {seed}, {count} requests (replay: ASSETGATE_DIFF_SEED={seed})");

    let gate = Daemon::start(&format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\", \"{LINK_SECRET_OLD}\"]\nmerge_slashes = {merge_slashes}\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::write(&dir.join("www/ok.txt"), "ok\n");
    let ngx = Nginx::start(dir, 2, |ports| {
        diff_nginx_conf(dir, gate.addr.port(), ports, merge_slashes)
    });
    let mut client = Client::new(ngx.addr(0));
    let mut oracle = Client::new(ngx.addr(1));
    let mut gen = Gen::new(seed, merge_slashes);
    let mut t = Tally::default();
    let started = Instant::now();

    for i in 0..count {
        let now = common::now();
        let case = gen.case(i, now, &mut oracle);
        if matches!(case.spec, Spec::Chaos(..)) {
            t.oracle_requests += 1;
        }
        let t0 = unix_now().as_secs() as i64;
        let r = client.get(&case.target);
        let t1 = unix_now().as_secs() as i64;

        let native = r.bracketed("x-native");
        let gate_status = r.bracketed("x-gate-status");
        let reason = r.bracketed("x-gate-reason");
        let describe = || {
            format!(
                "{} [{:?}] -> nginx {} native=[{native}] gate=[{gate_status}] reason=[{reason}] expect={:?} (clock {t0}..{t1})",
                show(&case.target),
                case.spec,
                r.status,
                case.expect
            )
        };

        let class = if r.status == 400 && gate_status.is_empty() {
            t.nginx_400 += 1;
            3
        } else {
            if gate_status.is_empty() {
                t.mismatches.push(format!("gate not consulted: {}", describe()));
                continue;
            }
            t.reached_gate += 1;
            let near_now = case.expires.is_some_and(|e| e >= t0 - 1 && e <= t1 + 1);
            if t0 != t1 && near_now {
                // The second ticked during the request: nginx and the gate may
                // each have read either side of it. Not comparable.
                t.excluded += 1;
                continue;
            }
            let gate_verdict = match (gate_status.as_str(), reason.as_str()) {
                ("204", _) => "allow",
                ("403", "expired") => "expired",
                ("403", "invalid" | "missing") => "invalid",
                _ => "other",
            };
            *t.gate_reasons
                .entry(if gate_status == "204" {
                    "allow".to_string()
                } else {
                    reason.clone()
                })
                .or_default() += 1;
            let (native_verdict, want_status, class) = match native.as_str() {
                "1" => ("allow", 200, 0),
                "0" => ("expired", 403, 1),
                "" => ("invalid", 403, 2),
                _ => ("?", 0, 2),
            };
            if native_verdict != gate_verdict || r.status != want_status {
                t.mismatches.push(describe());
            }
            match class {
                0 => t.native_valid += 1,
                1 => t.native_expired += 1,
                _ => t.native_empty += 1,
            }
            class
        };
        t.by_spec.entry(spec_kind(&case.spec)).or_default()[class] += 1;

        // The generator's intent, checked against nginx itself.
        let intended = match case.expect {
            Expect::Hash(e) if e < t0 => Some(1),
            Expect::Hash(_) => Some(0),
            Expect::Invalid => Some(2),
            Expect::BadRequest => Some(3),
            Expect::Unknown => None,
        };
        if intended.is_some_and(|want| want != class) {
            t.expectation_misses.push(describe());
        }
    }
    let wall = started.elapsed();

    let metrics = gate_metrics(&gate);
    let gate_auth = metric_sum(&metrics, "assetgate_http_requests_total", "endpoint=\"auth\"");
    let classes = format!(
        "native \"1\"={} \"0\"={} \"\"={} | nginx 400={} | excluded (second ticked, expires within 1 s)={} | \
         mismatches={} | generator misses={}",
        t.native_valid,
        t.native_expired,
        t.native_empty,
        t.nginx_400,
        t.excluded,
        t.mismatches.len(),
        t.expectation_misses.len()
    );
    println!(
        "differential merge_slashes={mode}: {count} requests in {:.1} s (+{} oracle requests)\n  {classes}\n  \
         gate verdicts: {:?}\n  per generator [1, 0, \"\", 400]: {:?}\n  gate /auth requests: {gate_auth}",
        wall.as_secs_f64(),
        t.oracle_requests,
        t.gate_reasons,
        t.by_spec
    );

    let context = format!(
        "merge_slashes={mode}, seed {seed} (replay: ASSETGATE_DIFF_SEED={seed} ASSETGATE_DIFF_COUNT={count} \
         cargo test --test e2e_nginx differential)\n{classes}\n{}",
        ngx.logs()
    );
    assert!(
        t.mismatches.is_empty(),
        "nginx and assetgate disagree on {} of {count} requests; first ones:\n{}\n{context}",
        t.mismatches.len(),
        t.mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        t.expectation_misses.is_empty(),
        "nginx did not answer as the generator intended for {} requests (the generator's model of nginx is \
         wrong, or nginx changed); first ones:\n{}\n{context}",
        t.expectation_misses.len(),
        t.expectation_misses
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every request that nginx did not refuse reached the gate once; the 400s never did.
    assert_eq!(
        gate_auth as usize, t.reached_gate,
        "gate /auth requests vs requests nginx forwarded\n{context}"
    );
    assert_eq!(t.reached_gate + t.nginx_400, count, "{context}");
    // Each class must be well represented, or the comparison proves little.
    let floor = (count / 20).max(1);
    for (name, n) in [
        ("native \"1\" (valid)", t.native_valid),
        ("native \"0\" (expired)", t.native_expired),
        ("native \"\" (invalid)", t.native_empty),
        ("nginx 400", t.nginx_400),
    ] {
        assert!(
            n >= floor,
            "only {n} requests in class {name} (want >= {floor})\n{context}"
        );
    }
    assert!(
        t.excluded <= count / 100 + 3,
        "{} requests excluded at second boundaries: too many to trust the comparison\n{context}",
        t.excluded
    );
}

#[test]
pub(crate) fn differential_merge_slashes_on() {
    differential(true);
}

#[test]
pub(crate) fn differential_merge_slashes_off() {
    differential(false);
}
