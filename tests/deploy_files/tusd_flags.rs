//! tusd's flags: the same in `tusd/tusd.sh`, compose and Kubernetes, and in
//! their S3 variants.

use super::compose::{compose_config, compose_config_of};
use super::kubernetes::pod_container;
use super::*;

#[test]
fn tusd_flags_are_the_same_everywhere() {
    let sh = tusd_sh_flags();
    let upload_dir = config_str("tusd.upload_dir");
    for (flag, want) in [
        ("behind-proxy", "true"),
        ("disable-download", "true"),
        ("base-path", "/files/"),
        ("hooks-enabled-events", "pre-create,pre-finish,post-finish"),
        ("upload-dir", upload_dir.as_str()),
    ] {
        assert_eq!(sh.get(flag).map(String::as_str), Some(want), "tusd.sh -{flag}");
    }
    // The pod is localhost, like a host: the same command line.
    let k8s = pod_container("tusd");
    assert_eq!(strings(&k8s["command"]), vec!["tusd".to_string()]);
    assert_eq!(
        tusd_flags(&strings(&k8s["args"])),
        sh,
        "Kubernetes tusd args vs tusd/tusd.sh"
    );
    // compose: only where tusd listens and where assetgate is differ.
    let c = compose_config();
    let mut compose = tusd_flags(&strings(&c["services"]["tusd"]["command"]));
    let mut sh_rest = sh.clone();
    for k in ["host", "port", "hooks-http"] {
        compose.remove(k);
        sh_rest.remove(k);
    }
    assert_eq!(compose, sh_rest, "compose tusd command vs tusd/tusd.sh");
    // Parallel uploads stay on: the gate checks the parts (docs/tusd.md, tusd.sh).
    assert!(
        !sh.contains_key("disable-concatenation"),
        "concatenation is part of the tested setup (tests/e2e_tusd.rs)"
    );

    // The images are the release the end-to-end tests run (tests/common/tusd.rs).
    let image = format!("tusproject/tusd:{}", common::tusd::Version::V2.tag());
    assert_eq!(
        c["services"]["tusd"]["image"],
        image.as_str(),
        "compose tusd image"
    );
    for name in ["tusd", "volume-dirs"] {
        assert_eq!(
            pod_container(name)["image"],
            image.as_str(),
            "Kubernetes {name} image"
        );
    }
}

/// The S3 variants: `tusd/tusd-s3.sh` (+ `tusd-s3.env`), `deploy/compose.s3.yaml`
/// over compose.yaml, `deploy/kubernetes/assetgate-s3.yaml`. Each is tusd.sh's
/// command line with `-upload-dir` replaced by the bucket; the bucket and the
/// object prefix are the same everywhere (only the endpoint, like the listen
/// address and the hook URL, depends on where tusd runs); the AWS settings are
/// the same; no credential is written in any of them.
#[test]
fn tusd_s3_flags_are_the_same_everywhere() {
    let mut fs = tusd_sh_flags();
    fs.remove("upload-dir");
    let sh = tusd_script_flags("tusd/tusd-s3.sh", "tusd/tusd-s3.env");
    let env = env_file("tusd/tusd-s3.env");
    let s3_flags = ["s3-bucket", "s3-endpoint", "s3-object-prefix"];
    let without_s3 = |flags: &BTreeMap<String, String>| {
        let mut f = flags.clone();
        for k in s3_flags {
            f.remove(k);
        }
        f
    };
    assert_eq!(without_s3(&sh), fs, "tusd-s3.sh vs tusd.sh without -upload-dir");
    for k in s3_flags {
        assert!(sh.contains_key(k), "tusd-s3.sh: -{k}");
    }
    assert!(!sh.contains_key("upload-dir"));
    let prefix = &sh["s3-object-prefix"];
    assert!(
        prefix.ends_with('/') && !["public/", "private/"].contains(&prefix.as_str()),
        "-s3-object-prefix {prefix:?}: a folder of its own, apart from the published assets"
    );
    // The AWS settings tusd's SDK needs for S3-compatible engines.
    let aws: BTreeMap<String, String> = [
        (
            "AWS_REGION",
            env.get("AWS_REGION").expect("tusd-s3.env: AWS_REGION").as_str(),
        ),
        ("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required"),
        ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in &aws {
        assert_eq!(env.get(k), Some(v), "tusd-s3.env {k}");
    }
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(!env.contains_key(k), "tusd-s3.env must not hold {k}");
    }

    // Kubernetes: the pod's tusd, like the host's (loopback), the same line.
    let docs = yaml_docs("deploy/kubernetes/assetgate-s3.yaml");
    let pod = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let k8s = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tusd")
        .expect("assetgate-s3.yaml: tusd container");
    assert_eq!(strings(&k8s["command"]), vec!["tusd".to_string()]);
    let k8s_flags = tusd_flags(&strings(&k8s["args"]));
    let mut k8s_rest = k8s_flags.clone();
    let mut sh_rest = sh.clone();
    k8s_rest.remove("s3-endpoint");
    sh_rest.remove("s3-endpoint");
    assert_eq!(k8s_rest, sh_rest, "Kubernetes S3 tusd args vs tusd/tusd-s3.sh");
    let mut k8s_env = BTreeMap::new();
    for e in k8s["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        if let Some(v) = e["value"].as_str() {
            k8s_env.insert(name, v.to_string());
        } else {
            assert!(
                e["valueFrom"]["secretKeyRef"]["name"].is_string(),
                "Kubernetes tusd env {name}: a value or a Secret"
            );
            assert!(name.starts_with("AWS_") && !aws.contains_key(&name), "{name}");
        }
    }
    assert_eq!(k8s_env, aws, "Kubernetes tusd env vs tusd/tusd-s3.env");
    assert!(k8s.get("volumeMounts").is_none(), "tusd on S3 mounts no volume");

    // compose: the override over compose.yaml.
    let c = compose_config_of(&["deploy/compose.yaml", "deploy/compose.s3.yaml"]);
    let t = &c["services"]["tusd"];
    let mut compose = tusd_flags(&strings(&t["command"]));
    let mut sh_rest = sh.clone();
    for k in ["host", "port", "hooks-http", "s3-endpoint"] {
        compose.remove(k);
        sh_rest.remove(k);
    }
    assert_eq!(
        compose, sh_rest,
        "compose.s3.yaml tusd command vs tusd/tusd-s3.sh"
    );
    let env_of = |k: &str| t["environment"][k].as_str().map(str::to_string);
    for (k, v) in &aws {
        assert_eq!(env_of(k).as_ref(), Some(v), "compose.s3.yaml tusd {k}");
    }
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert_eq!(env_of(k), None, "compose.s3.yaml: {k} in the environment");
    }
    let creds = env_of("AWS_SHARED_CREDENTIALS_FILE").expect("compose.s3.yaml: credentials file");
    let secrets: Vec<&str> = t["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(creds, "/run/secrets/tusd_s3_credentials");
    assert_eq!(secrets, ["tusd_s3_credentials"]);
    assert!(
        t.get("volumes").is_none(),
        "tusd on S3 mounts no volume: {}",
        t["volumes"]
    );
}

/// The S3 variants load and validate like the originals: the merged compose
/// document against the compose-spec schema (the override alone uses Compose's
/// `!reset` tag, which only Compose reads), the Kubernetes file strictly; and
/// the Kubernetes variant is assetgate.yaml except for the tusd container.
#[test]
fn tusd_s3_variants_validate() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("compose.merged.json");
    let c = compose_config_of(&["deploy/compose.yaml", "deploy/compose.s3.yaml"]);
    std::fs::write(&merged, c.to_string()).unwrap();
    let out = run_ok(
        Command::new(tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&merged),
        "compose-spec schema (compose.yaml + compose.s3.yaml)",
    );
    assert!(out.contains("ok -- validation done"), "{out}");

    let rel = "deploy/kubernetes/assetgate-s3.yaml";
    let out = run_ok(
        Command::new(tool("kubernetes-validate"))
            .args(["--strict"])
            .arg(repo_file(rel)),
        &format!("kubernetes-validate --strict {rel}"),
    );
    assert!(
        !out.contains("ERROR") && !out.contains("WARN") && out.contains("passed"),
        "{rel}:\n{out}"
    );
    let without_tusd = |mut docs: Vec<Value>| {
        for d in &mut docs {
            if let Some(cs) = d["spec"]["template"]["spec"]["containers"].as_array_mut() {
                cs.retain(|c| c["name"] != "tusd");
            }
        }
        docs
    };
    assert_eq!(
        without_tusd(yaml_docs(rel)),
        without_tusd(yaml_docs("deploy/kubernetes/assetgate.yaml")),
        "{rel} differs from assetgate.yaml outside the tusd container"
    );
}

/// assetgate's `[storage.s3] upload_prefix` must be tusd's `-s3-object-prefix`
/// (`postfinish::plan` refuses a hook whose `Storage.Key` is elsewhere, and the
/// reconciler lists only under it). For each shipped S3 variant: tusd's prefix
/// from its command line, assetgate's as `assetgate check-config` resolves it
/// with `deploy/assetgate.toml` (less its filesystem keys, which `s3`
/// refuses) and that variant's `ASSETGATE_STORAGE__…` environment (the default when neither sets it), and the commented example
/// in `deploy/assetgate.toml`.
#[test]
fn tusd_s3_prefix_is_assetgates_upload_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (link, upload) = secret_files(tmp.path());
    let key_file = tmp.path().join("s3_secret");
    std::fs::write(&key_file, "s3-secret-for-a-test\n").unwrap();
    // deploy/assetgate.toml is the fs configuration: with backend = "s3" its
    // filesystem keys (`root`, `upload_dir`) are refused at load (exit 64),
    // so the S3 variants' assetgate reads it without them.
    let shipped = read("deploy/assetgate.toml");
    let without_fs: String = shipped
        .lines()
        .filter(|l| !l.starts_with("root = ") && !l.starts_with("upload_dir = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        shipped.lines().count() - without_fs.lines().count(),
        2,
        "deploy/assetgate.toml: one root and one upload_dir line"
    );
    let config_file = tmp.path().join("assetgate.toml");
    std::fs::write(&config_file, without_fs).unwrap();
    // The upload_prefix assetgate uses with the shipped config file and the
    // variant's storage environment.
    let assetgate_prefix = |variant: &str, storage_env: &BTreeMap<String, String>| {
        let mut env: BTreeMap<String, String> = [
            ("ASSETGATE_CONFIG", config_file.display().to_string()),
            ("ASSETGATE_LINK_SECRET_FILE", link.display().to_string()),
            ("ASSETGATE_UPLOAD_SECRET_FILE", upload.display().to_string()),
            // What check-config needs to show [storage.s3] at all, unless the
            // variant says it.
            ("ASSETGATE_STORAGE__BACKEND", "s3".to_string()),
            ("ASSETGATE_STORAGE__S3__BUCKET", "assets".to_string()),
            ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", "test-key-id".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in storage_env {
            // Credential files are container paths: a file here instead.
            let v = if k.ends_with("_FILE") {
                key_file.display().to_string()
            } else {
                v.clone()
            };
            env.insert(k.clone(), v);
        }
        if !env
            .keys()
            .any(|k| k.starts_with("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY"))
        {
            env.insert(
                "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY_FILE".into(),
                key_file.display().to_string(),
            );
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let o = check_config(&env);
        assert!(o.status.success(), "{variant}: check-config: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let line = out
            .lines()
            .find(|l| l.starts_with("upload_prefix = "))
            .unwrap_or_else(|| panic!("{variant}: no upload_prefix in check-config:\n{out}"));
        line["upload_prefix = ".len()..].trim_matches('"').to_string()
    };
    let storage_env = |pairs: Vec<(String, String)>| -> BTreeMap<String, String> {
        pairs
            .into_iter()
            .filter(|(k, _)| k.starts_with("ASSETGATE_STORAGE__"))
            .collect()
    };

    // tusd/tusd-s3.sh with tusd-s3.env, beside deploy/assetgate.toml alone.
    let sh = tusd_script_flags("tusd/tusd-s3.sh", "tusd/tusd-s3.env");
    let host = assetgate_prefix("tusd/tusd-s3.env", &BTreeMap::new());
    assert_eq!(
        sh["s3-object-prefix"], host,
        "tusd/tusd-s3.env TUSD_S3_OBJECT_PREFIX vs assetgate's upload_prefix (deploy/assetgate.toml)"
    );
    // The commented [storage.s3] example in deploy/assetgate.toml.
    let toml = read("deploy/assetgate.toml");
    let example = toml
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("upload_prefix = "))
        .expect("deploy/assetgate.toml: the upload_prefix example");
    let example = example.split('#').next().unwrap().trim().trim_matches('"');
    assert_eq!(
        sh["s3-object-prefix"], example,
        "tusd/tusd-s3.env vs deploy/assetgate.toml's upload_prefix example"
    );

    // compose.s3.yaml over compose.yaml.
    let c = compose_config_of(&["deploy/compose.yaml", "deploy/compose.s3.yaml"]);
    let tusd = tusd_flags(&strings(&c["services"]["tusd"]["command"]));
    let gate_env = c["services"]["assetgate"]["environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        tusd["s3-object-prefix"],
        assetgate_prefix("compose.s3.yaml", &storage_env(gate_env)),
        "compose.s3.yaml: tusd's -s3-object-prefix vs assetgate's upload_prefix"
    );

    // assetgate-s3.yaml: the pod's tusd and its assetgate sidecar.
    let docs = yaml_docs("deploy/kubernetes/assetgate-s3.yaml");
    let pod = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"];
    let container = |name: &str| {
        ["containers", "initContainers"]
            .iter()
            .flat_map(|k| pod[k].as_array().cloned().unwrap_or_default())
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("assetgate-s3.yaml: no container {name}"))
    };
    let tusd = tusd_flags(&strings(&container("tusd")["args"]));
    let gate_env = container("assetgate")["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e["value"].as_str().unwrap_or("/from/a/secret");
            (e["name"].as_str().unwrap().to_string(), v.to_string())
        })
        .collect();
    assert_eq!(
        tusd["s3-object-prefix"],
        assetgate_prefix("assetgate-s3.yaml", &storage_env(gate_env)),
        "assetgate-s3.yaml: tusd's -s3-object-prefix vs assetgate's upload_prefix"
    );
}
