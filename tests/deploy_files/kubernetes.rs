//! `deploy/kubernetes/`: the schemas (strict), the pod's wiring, its probes
//! run, the placeholder secrets refused.

use super::*;

pub(super) fn k8s_docs() -> Vec<Value> {
    yaml_docs("deploy/kubernetes/assetgate.yaml")
}

pub(super) fn pod_spec() -> Value {
    k8s_docs()
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()["spec"]["template"]["spec"]
        .clone()
}

/// A container of the pod, from `containers` or `initContainers`.
pub(super) fn pod_container(name: &str) -> Value {
    let spec = pod_spec();
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub(super) fn container_env(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

pub(super) fn volume_mount<'a>(c: &'a Value, path: &str) -> &'a Value {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c["name"]))
}

#[test]
fn kubernetes_manifests_validate() {
    for rel in [
        "deploy/kubernetes/assetgate.yaml",
        "deploy/kubernetes/secret.example.yaml",
        "deploy/kubernetes/redis.yaml",
    ] {
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
    }
}

#[test]
fn kubernetes_sidecar_wiring_and_probes() {
    let spec = pod_spec();
    let gate = pod_container("assetgate");
    let nginx = pod_container("nginx");
    let tusd = pod_container("tusd");
    let env = container_env(&gate);
    let upload_dir = config_str("tusd.upload_dir");
    let root = config_str("storage.root");

    // A native sidecar: an init container that keeps running.
    assert_eq!(gate["restartPolicy"], "Always");
    assert!(spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "assetgate"));
    // The pod's loopback only, where the shipped nginx upstream and tusd.sh point.
    let listen = &env["ASSETGATE_LISTEN"];
    assert_eq!(listen, &config_str("listen"));
    assert!(read("nginx/assetgate-upstream.conf").contains(&format!("server {listen};")));
    assert!(gate["ports"].is_null(), "assetgate declares no port");
    // Fleet mode: the state in Redis, at the Service deploy/kubernetes/redis.yaml
    // defines, persisted, reachable from the assetgate pods only.
    assert_eq!(env["ASSETGATE_STATE__BACKEND"], "redis");
    let redis = yaml_docs("deploy/kubernetes/redis.yaml");
    let service = redis.iter().find(|d| d["kind"] == "Service").unwrap();
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        env["ASSETGATE_STATE__REDIS_URL"],
        format!(
            "redis://{}:{port}/0",
            service["metadata"]["name"].as_str().unwrap()
        )
    );
    let deployment = redis.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let cmd = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["command"]);
    assert!(cmd.windows(2).any(|w| w == ["--appendonly", "yes"]), "{cmd:?}");
    let policy = redis.iter().find(|d| d["kind"] == "NetworkPolicy").unwrap();
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "assetgate"
    );
    for c in [&gate, &tusd] {
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["runAsNonRoot"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
    }

    // Files: the ConfigMaps are made from the shipped files (see the manifest's
    // header); every key the pod uses must be one of them.
    let volumes: BTreeMap<String, Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let manifest = read("deploy/kubernetes/assetgate.yaml");
    assert!(manifest.contains("kubectl create configmap assetgate-config --from-file=deploy/assetgate.toml"));
    assert!(manifest.contains("kubectl create configmap assetgate-nginx --from-file=nginx/"));
    let cfg = Path::new(&env["ASSETGATE_CONFIG"]);
    let m = volume_mount(&gate, cfg.parent().unwrap().to_str().unwrap());
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-config"
    );
    assert_eq!(cfg.file_name().unwrap(), "assetgate.toml");
    let m = volume_mount(&nginx, "/etc/nginx/assetgate");
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-nginx"
    );
    let m = volume_mount(&nginx, "/etc/nginx/conf.d/default.conf");
    assert_eq!(
        volumes[m["name"].as_str().unwrap()]["configMap"]["name"],
        "assetgate-nginx"
    );
    let example = m["subPath"].as_str().unwrap();
    assert!(repo_file("nginx").join(example).is_file(), "nginx/{example}");
    assert!(read(&format!("nginx/{example}")).contains(&format!("root {root};")));

    // Storage: one volume; tusd's upload dir and nginx's root are its
    // sub-directories at the config's paths; assetgate mounts the parent, so
    // both are on one mount (hard links, no copies).
    let data = |c: &Value, path: &str| -> (String, Option<String>) {
        let m = volume_mount(c, path);
        (
            m["name"].as_str().unwrap().to_string(),
            m["subPath"].as_str().map(str::to_string),
        )
    };
    let (tv, tsub) = data(&tusd, &upload_dir);
    let (nv, nsub) = data(&nginx, &root);
    assert_eq!(volume_mount(&nginx, &root)["readOnly"], true);
    let parent = Path::new(&upload_dir).parent().unwrap();
    assert_eq!(Path::new(&root).parent().unwrap(), parent);
    let (gv, gsub) = data(&gate, parent.to_str().unwrap());
    assert_eq!((tv.as_str(), nv.as_str()), (gv.as_str(), gv.as_str()));
    assert_eq!(gsub, None);
    let name = |p: &str| Path::new(p).file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(tsub, Some(name(&upload_dir)));
    assert_eq!(nsub, Some(name(&root)));
    assert!(volumes[&gv]["persistentVolumeClaim"].is_object() || volumes[&gv]["emptyDir"].is_object());

    // The admin socket: under a volume mounted by the assetgate container
    // alone (the pod's containers share loopback, not this), an emptyDir above
    // the socket's directory: an emptyDir is world-writable, so the daemon
    // creates the directory (0700) inside it rather than use it.
    let socket = config_str("server.admin_socket");
    let socket_dir = Path::new(&socket).parent().unwrap();
    let run = gate["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| socket_dir.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("nothing writable mounted above {socket}"));
    let run_path = run["mountPath"].as_str().unwrap();
    assert_ne!(
        Path::new(run_path),
        socket_dir,
        "the emptyDir must be above the socket's directory"
    );
    assert!(run["readOnly"].is_null() || run["readOnly"] == false);
    let run_volume = run["name"].as_str().unwrap();
    assert!(
        volumes[run_volume]["emptyDir"].is_object(),
        "{}",
        volumes[run_volume]
    );
    for c in [&nginx, &tusd] {
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(
            !mounts.iter().any(|m| m["name"] == run_volume),
            "{} mounts the admin socket's volume",
            c["name"]
        );
    }

    // Secrets: files from the Secret, named by the *_SECRET_FILE variables; the
    // example Secret has exactly those keys.
    let secret_example = yaml_docs("deploy/kubernetes/secret.example.yaml");
    let secret = &secret_example[0];
    for var in ["ASSETGATE_LINK_SECRET_FILE", "ASSETGATE_UPLOAD_SECRET_FILE"] {
        let p = Path::new(&env[var]);
        let m = volume_mount(&gate, p.parent().unwrap().to_str().unwrap());
        let v = &volumes[m["name"].as_str().unwrap()];
        assert_eq!(v["secret"]["secretName"], secret["metadata"]["name"]);
        let key = p.file_name().unwrap().to_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "secret.example.yaml lacks {key}"
        );
    }

    // The probes, run: exec commands of the image's binary against a live
    // daemon, with the pod's environment (the port is the test daemon's).
    let mut live = live_daemon();
    let tmp = tempfile::tempdir().unwrap();
    let (link, upload) = secret_files(tmp.path());
    let pod_env = |port: u16| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "ASSETGATE_LISTEN" => format!("127.0.0.1:{port}"),
                    "ASSETGATE_CONFIG" => repo_file("deploy/assetgate.toml").display().to_string(),
                    "ASSETGATE_LINK_SECRET_FILE" => link.display().to_string(),
                    "ASSETGATE_UPLOAD_SECRET_FILE" => upload.display().to_string(),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    };
    let probes = [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ];
    for (probe, path) in probes {
        let argv = strings(&gate[probe]["exec"]["command"]);
        assert_eq!(argv[0], "/usr/local/bin/assetgate", "{probe}");
        let o = Command::new(bin())
            .args(&argv[1..])
            .env_clear()
            .envs(pod_env(live.addr.port()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{probe}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("{path}: 200")),
            "{probe}: {}",
            text(&o)
        );
    }
    live.terminate();
    assert_eq!(live.wait_exit(Duration::from_secs(20)), Some(0));
    let argv = strings(&gate["livenessProbe"]["exec"]["command"]);
    let o = Command::new(bin())
        .args(&argv[1..])
        .env_clear()
        .envs(pod_env(live.addr.port()))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "liveness against a stopped daemon: {}",
        text(&o)
    );
    // ... and the pod's environment with real secrets is a valid configuration.
    let o = check_config(&pod_env(9750));
    assert!(o.status.success(), "{}", text(&o));

    // Only nginx's port is in the Service.
    let svc = k8s_docs().into_iter().find(|d| d["kind"] == "Service").unwrap();
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["targetPort"], "http");
    assert!(nginx["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "http" && p["containerPort"] == 80));
}

#[test]
fn kubernetes_example_secret_is_refused_until_replaced() {
    let docs = yaml_docs("deploy/kubernetes/secret.example.yaml");
    let data = docs[0]["stringData"].as_object().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (key, var, cfg_key) in [
        ("link_secret", "ASSETGATE_LINK_SECRET_FILE", "link.secrets"),
        ("upload_secret", "ASSETGATE_UPLOAD_SECRET_FILE", "upload.secrets"),
    ] {
        let f = tmp.path().join(key);
        std::fs::write(&f, data[key].as_str().unwrap()).unwrap();
        let o = check_config(&[
            (
                "ASSETGATE_CONFIG".into(),
                repo_file("deploy/assetgate.toml").display().to_string(),
            ),
            (var.into(), f.display().to_string()),
        ]);
        assert_eq!(
            o.status.code(),
            Some(64),
            "{key}: placeholder accepted: {}",
            text(&o)
        );
        assert!(text(&o).contains(cfg_key), "{}", text(&o));
    }
}
