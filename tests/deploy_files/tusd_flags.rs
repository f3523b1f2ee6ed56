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
