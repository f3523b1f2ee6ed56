//! Helpers for tests that speak the tusd hook protocol to the real binary and lay
//! out tusd filestore uploads by hand.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

/// Test-side oracle for granite's upload token (independent of the crate).
pub fn token(secret: &str, expires: &str, key: &str, vis: &str, ct: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{expires}:{key}:{vis}:{ct}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn metadata(secret: &str, key: &str, vis: &str, ct: &str, expires: i64) -> Value {
    let e = expires.to_string();
    json!({"asset-key": key, "content-type": ct, "visibility": vis,
           "upload-expires": e, "upload-token": token(secret, &e, key, vis, ct)})
}

/// A tusd v2 event built from the stored fixture, with fresh metadata.
pub fn v2_event(kind: &str, meta: Value, size: u64, storage: Value) -> Value {
    let mut ev: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/tusd-v2/pre-create.json")).unwrap(),
    )
    .unwrap();
    ev["Type"] = json!(kind);
    ev["Event"]["Upload"]["MetaData"] = meta;
    ev["Event"]["Upload"]["Size"] = json!(size);
    ev["Event"]["Upload"]["Storage"] = storage;
    ev
}

pub fn post(
    addr: std::net::SocketAddr,
    body: &[u8],
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut req = format!(
        "POST /tusd HTTP/1.1\r\nHost: gate\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in extra {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    raw_request(addr, &req)
}

pub fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

pub fn metric(d: &Daemon, line_prefix: &str) -> u64 {
    let (_, _, b) = get(d.addr, "/metrics", &[]);
    let text = String::from_utf8(b).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix} in\n{text}"))
}

pub fn tusd_upload(dir: &Path, id: &str, meta: &Value, data: &[u8]) -> (PathBuf, PathBuf) {
    let path = dir.join(id);
    let info = dir.join(format!("{id}.info"));
    std::fs::write(&path, data).unwrap();
    let info_json = json!({"ID": id, "Size": data.len(), "SizeIsDeferred": false, "Offset": 0,
        "MetaData": meta, "IsPartial": false, "IsFinal": false, "PartialUploads": null,
        "Storage": {"Type": "filestore", "Path": path, "InfoPath": info}});
    std::fs::write(&info, info_json.to_string()).unwrap();
    (path, info)
}

pub fn post_finish(id: &str, meta: &Value, size: usize, path: &Path, info: &Path) -> Value {
    let mut ev = v2_event(
        "post-finish",
        meta.clone(),
        size as u64,
        json!({"Type": "filestore", "Path": path, "InfoPath": info}),
    );
    ev["Event"]["Upload"]["ID"] = json!(id);
    ev["Event"]["Upload"]["Offset"] = json!(size);
    ev
}

/// A gate with an upload directory and an asset tree in a temporary directory.
pub struct Env {
    pub gate: Daemon,
    pub uploads: PathBuf,
    pub assets: PathBuf,
    pub _dir: tempfile::TempDir,
}

/// Starts a gate on default_config(); `upload` lines go into its `[upload]`
/// section, `tusd` lines into `[tusd]` after `upload_dir`.
pub fn gate_env(upload: &str, tusd: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    let cfg = format!(
        "{}{upload}\n[storage]\nroot = {:?}\n[tusd]\nupload_dir = {:?}\n{tusd}\n",
        default_config(),
        assets.display().to_string(),
        uploads.display().to_string()
    );
    Env {
        gate: Daemon::start(&cfg),
        uploads,
        assets,
        _dir: dir,
    }
}
