//! tusd's flags: the same in `tusd/tusd.sh`, compose and Kubernetes.

use super::compose::compose_config;
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
