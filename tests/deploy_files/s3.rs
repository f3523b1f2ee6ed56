//! The S3 variants of the deployment ([storage] backend = "s3"):
//! `deploy/assetgate-s3.toml`, `deploy/nginx/s3.conf` (compose),
//! `deploy/kubernetes/nginx-s3.conf`, and how `deploy/compose.s3.yaml` and
//! `deploy/kubernetes/assetgate-s3.yaml` wire them. What ties them together:
//! the same policy as the fs files, the shipped nginx example with only
//! addresses changed, and one store (endpoint, bucket) for tusd, assetgate and
//! nginx in each variant. (tusd's flags: `tusd_flags.rs`.)

use super::compose::{compose_config_of, mount, splice_once, toks};
use super::*;

/// `assetgate check-config` of `config` with the secrets (and, for S3, the
/// bucket's credentials) from files, plus `env`; its output as JSON.
fn resolved(config: &str, env: &[(&str, String)]) -> Value {
    use figment::providers::{Format, Toml};
    let tmp = tempfile::tempdir().unwrap();
    let (link, upload) = secret_files(tmp.path());
    let key = tmp.path().join("s3_key");
    std::fs::write(&key, "s3-key-for-a-test\n").unwrap();
    let mut all: BTreeMap<String, String> = [
        ("ASSETGATE_CONFIG", repo_file(config).display().to_string()),
        ("ASSETGATE_LINK_SECRET_FILE", link.display().to_string()),
        ("ASSETGATE_UPLOAD_SECRET_FILE", upload.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if config.contains("-s3") {
        for k in ["ACCESS_KEY_ID_FILE", "SECRET_ACCESS_KEY_FILE"] {
            all.insert(format!("ASSETGATE_STORAGE__S3__{k}"), key.display().to_string());
        }
    }
    for (k, v) in env {
        all.insert(k.to_string(), v.clone());
    }
    let all: Vec<(String, String)> = all.into_iter().collect();
    let o = check_config(&all);
    assert!(o.status.success(), "{config}: check-config: {}", text(&o));
    assert!(!text(&o).contains("warning"), "{config}: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    figment::Figment::from(Toml::string(&out))
        .extract()
        .unwrap_or_else(|e| panic!("{config}: check-config output is not TOML ({e}):\n{out}"))
}

/// `deploy/assetgate-s3.toml` is `deploy/assetgate.toml` with the storage moved
/// to a bucket: every resolved value is the same except `[storage]` and
/// `[tusd] upload_dir` (a policy changed in one and not the other fails here).
#[test]
fn s3_config_is_the_fs_config_with_the_storage_moved() {
    let mut fs = resolved("deploy/assetgate.toml", &[]);
    let mut s3 = resolved("deploy/assetgate-s3.toml", &[]);
    assert_eq!(s3["storage"]["backend"], "s3", "{}", s3["storage"]);
    assert_eq!(fs["storage"]["backend"], "fs", "{}", fs["storage"]);
    // check-config shows an unset key as "<not set>".
    let unset = |v: &Value| v.is_null() || v.as_str().is_some_and(|s| s.starts_with("<not set"));
    assert!(unset(&s3["storage"]["root"]), "{}", s3["storage"]);
    assert!(unset(&s3["tusd"]["upload_dir"]), "{}", s3["tusd"]);
    assert_eq!(
        s3["storage"]["overwrite"], fs["storage"]["overwrite"],
        "[storage] overwrite"
    );
    for v in [&mut fs, &mut s3] {
        v.as_object_mut().unwrap().remove("storage");
        v["tusd"].as_object_mut().unwrap().remove("upload_dir");
    }
    assert_eq!(
        s3, fs,
        "deploy/assetgate-s3.toml resolves to other values than deploy/assetgate.toml outside [storage]"
    );
}

/// The nginx `server` of each S3 variant is nginx/assetgate-s3.conf.example
/// with addresses changed, token for token: compose's with the upstream file
/// inlined (like deploy/nginx/default.conf) and the three services' names,
/// Kubernetes' with the store's address only (assetgate and tusd are on the
/// pod's loopback, as in the example).
#[test]
fn s3_nginx_confs_are_the_shipped_example() {
    let example = toks(&read("nginx/assetgate-s3.conf.example"));
    let same = |have: &str, want: &[String], what: &str| {
        let have = toks(&read(have));
        if have != want {
            let at = have
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(have.len().min(want.len()));
            panic!(
                "{what} differs from nginx/assetgate-s3.conf.example (addresses aside) at token {at}:\n  have: {:?}\n  want: {:?}",
                &have[at.saturating_sub(3)..(at + 8).min(have.len())],
                &want[at.saturating_sub(3)..(at + 8).min(want.len())]
            );
        }
    };
    let store = toks("server 127.0.0.1:8333;");
    let compose = splice_once(
        &example,
        &toks("include assetgate/assetgate-upstream.conf;"),
        &toks(&read("nginx/assetgate-upstream.conf")),
        "the example includes the upstream file",
    );
    let compose = splice_once(
        &compose,
        &toks("server 127.0.0.1:9750;"),
        &toks("server assetgate:9750;"),
        "assetgate address",
    );
    let compose = splice_once(
        &compose,
        &toks("server 127.0.0.1:1080;"),
        &toks("server tusd:8080;"),
        "tusd address",
    );
    let compose = splice_once(&compose, &store, &toks("server s3:8333;"), "store address");
    same("deploy/nginx/s3.conf", &compose, "deploy/nginx/s3.conf");
    let k8s = splice_once(
        &example,
        &store,
        &toks("server s3.example.internal:8333;"),
        "store address",
    );
    same(
        "deploy/kubernetes/nginx-s3.conf",
        &k8s,
        "deploy/kubernetes/nginx-s3.conf",
    );
}

/// The `server host:port` of nginx's `upstream assetgate_s3` in `conf`.
fn nginx_store(conf: &str) -> String {
    let t = toks(&read(conf));
    let at = t
        .windows(3)
        .position(|w| w == ["upstream", "assetgate_s3", "{"])
        .unwrap_or_else(|| panic!("{conf}: no upstream assetgate_s3"));
    assert_eq!(t[at + 3], "server", "{conf}: {:?}", &t[at..at + 6]);
    t[at + 4].trim_end_matches(';').to_string()
}

/// In each S3 variant, tusd, assetgate and nginx use one store: assetgate's
/// resolved `[storage.s3] endpoint` is tusd's `-s3-endpoint` and the address of
/// nginx's store upstream, its bucket tusd's `-s3-bucket`; assetgate runs
/// assetgate-s3.toml with the bucket's credentials from files (never values in
/// the environment), and nginx runs that variant's server configuration.
#[test]
fn s3_variants_use_one_store() {
    let host_of = |endpoint: &str| {
        endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };

    // compose.s3.yaml over compose.yaml.
    let c = compose_config_of(&["deploy/compose.yaml", "deploy/compose.s3.yaml"]);
    let tusd = tusd_flags(&strings(&c["services"]["tusd"]["command"]));
    let gate = &c["services"]["assetgate"];
    let env = gate["environment"].as_object().unwrap();
    let config = env["ASSETGATE_CONFIG"].as_str().unwrap();
    let file = mount(gate, config)["source"].as_str().unwrap().to_string();
    assert!(
        file.ends_with("deploy/assetgate-s3.toml"),
        "compose.s3.yaml: assetgate runs {file}"
    );
    let creds: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("ASSETGATE_STORAGE__S3__"))
        .collect();
    assert!(
        !creds.is_empty() && creds.iter().all(|k| k.ends_with("_FILE")),
        "compose.s3.yaml: the bucket's credentials as files only: {creds:?}"
    );
    let secrets: Vec<&str> = gate["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    for k in &creds {
        let path = env[k.as_str()].as_str().unwrap();
        assert!(
            secrets.contains(&path),
            "compose.s3.yaml: {k}={path} is not a mounted secret: {secrets:?}"
        );
    }
    let s3 = resolved("deploy/assetgate-s3.toml", &[]);
    assert_eq!(
        host_of(&tusd["s3-endpoint"]),
        host_of(s3["storage"]["s3"]["endpoint"].as_str().unwrap())
    );
    assert_eq!(tusd["s3-bucket"], s3["storage"]["s3"]["bucket"].as_str().unwrap());
    let nginx = &c["services"]["nginx"];
    let server = mount(nginx, "/etc/nginx/conf.d/default.conf")["source"]
        .as_str()
        .unwrap();
    assert!(
        server.ends_with("deploy/nginx/s3.conf"),
        "compose.s3.yaml: nginx runs {server}"
    );
    assert_eq!(
        host_of(&tusd["s3-endpoint"]),
        nginx_store("deploy/nginx/s3.conf"),
        "compose: nginx's store"
    );
    assert!(
        nginx["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["type"] == "bind"),
        "compose.s3.yaml: nginx reads no asset volume: {}",
        nginx["volumes"]
    );

    // assetgate-s3.yaml: one pod.
    let rel = "deploy/kubernetes/assetgate-s3.yaml";
    let docs = yaml_docs(rel);
    let pod = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let container = |name: &str| {
        ["containers", "initContainers"]
            .iter()
            .flat_map(|k| pod[k].as_array().cloned().unwrap_or_default())
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{rel}: no container {name}"))
    };
    let tusd = tusd_flags(&strings(&container("tusd")["args"]));
    let gate = container("assetgate");
    let mut endpoint_env = Vec::new();
    let mut config = String::new();
    for e in gate["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = e["value"].as_str().unwrap_or_default().to_string();
        if name == "ASSETGATE_CONFIG" {
            config = value.clone();
        }
        if name.starts_with("ASSETGATE_STORAGE__S3__") {
            if name == "ASSETGATE_STORAGE__S3__ENDPOINT" {
                endpoint_env.push(("ASSETGATE_STORAGE__S3__ENDPOINT", value));
            } else {
                assert!(
                    name.ends_with("_FILE"),
                    "{rel}: {name}: the bucket's credentials as files only"
                );
                assert!(
                    value.starts_with("/run/secrets/assetgate-s3/"),
                    "{rel}: {name}={value}: from the assetgate-s3 Secret"
                );
            }
        }
    }
    assert_eq!(
        config, "/etc/assetgate/assetgate-s3.toml",
        "{rel}: ASSETGATE_CONFIG"
    );
    assert!(
        read(rel).contains("kubectl create configmap assetgate-config --from-file=deploy/assetgate-s3.toml"),
        "{rel}: the config map is made from deploy/assetgate-s3.toml"
    );
    let s3 = resolved("deploy/assetgate-s3.toml", &endpoint_env);
    assert_eq!(
        host_of(&tusd["s3-endpoint"]),
        host_of(s3["storage"]["s3"]["endpoint"].as_str().unwrap()),
        "{rel}: assetgate's endpoint"
    );
    assert_eq!(
        tusd["s3-bucket"],
        s3["storage"]["s3"]["bucket"].as_str().unwrap(),
        "{rel}: bucket"
    );
    assert_eq!(
        host_of(&tusd["s3-endpoint"]),
        nginx_store("deploy/kubernetes/nginx-s3.conf"),
        "{rel}: nginx's store"
    );
    let nginx = container("nginx");
    let server = nginx["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/nginx/conf.d/default.conf")
        .unwrap_or_else(|| panic!("{rel}: nginx's default.conf"))
        .clone();
    assert_eq!(
        server["subPath"], "nginx-s3.conf",
        "{rel}: nginx's server configuration"
    );
    assert!(
        read(rel).contains(
            "kubectl create configmap assetgate-nginx-server --from-file=deploy/kubernetes/nginx-s3.conf"
        ),
        "{rel}: the nginx server config map is made from deploy/kubernetes/nginx-s3.conf"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
        "{rel}: no volume holds uploads or assets"
    );
}
