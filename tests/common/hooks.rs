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

/// Test-side oracle for the upload ID pre-create issues in `signed` mode
/// (`[tusd] upload_ids`, independent of the crate): hex(nonce) ‖ hex(first 16
/// bytes of HMAC-SHA256(secret, "assetgate upload-id v1\0" ‖ kind ‖ nonce ‖
/// grant)), grant = SHA-256("assetgate single-use v1\0" ‖
/// "{expires}:{key}:{visibility}:{content_type}"). `partial`: a part's ID.
pub fn upload_id_for(secret: &str, meta: &Value, partial: bool, nonce: &[u8; 16]) -> String {
    use hmac::{Hmac, Mac};
    use sha2::Digest;
    let f = |k: &str| meta[k].as_str().unwrap().to_string();
    let expires: i64 = f("upload-expires").parse().unwrap();
    let mut g = sha2::Sha256::new();
    g.update(b"assetgate single-use v1\0");
    g.update(
        format!(
            "{expires}:{}:{}:{}",
            f("asset-key"),
            f("visibility"),
            f("content-type")
        )
        .as_bytes(),
    );
    let grant = g.finalize();
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(b"assetgate upload-id v1\0");
    m.update(if partial { b"p" } else { b"w" });
    m.update(nonce);
    m.update(&grant);
    format!(
        "{}{}",
        hex::encode(nonce),
        hex::encode(&m.finalize().into_bytes()[..16])
    )
}

/// The ID pre-create issues for a whole upload with `meta` (under
/// [`UPLOAD_SECRET`], the newest), `nonce` telling uploads apart.
pub fn signed_id(meta: &Value, nonce: u8) -> String {
    upload_id_for(UPLOAD_SECRET, meta, false, &[nonce; 16])
}

/// The same for a partial upload (a part of a concatenation).
pub fn signed_part_id(meta: &Value, nonce: u8) -> String {
    upload_id_for(UPLOAD_SECRET, meta, true, &[nonce; 16])
}

/// Whether `id` is one pre-create issued (under [`UPLOAD_SECRET`]) for `meta`.
pub fn issued_for(id: &str, meta: &Value, partial: bool) -> bool {
    let Some(nonce) = id.get(..32).and_then(|n| hex::decode(n).ok()) else {
        return false;
    };
    let nonce: [u8; 16] = nonce.try_into().unwrap();
    id == upload_id_for(UPLOAD_SECRET, meta, partial, &nonce)
}

/// An accepted v2 pre-create's answer: `{"ChangeFileInfo":{"ID":…}}` with an
/// ID issued for `meta`; returns the ID.
pub fn accepted_id(answer: &[u8], meta: &Value) -> String {
    let v = json_of(answer);
    let id = v["ChangeFileInfo"]["ID"]
        .as_str()
        .unwrap_or_else(|| panic!("not accepted with an ID: {v}"));
    assert_eq!(
        v,
        json!({"ChangeFileInfo": {"ID": id}}),
        "nothing else in the answer"
    );
    assert!(issued_for(id, meta, false), "{id} was not issued for {meta}");
    id.to_string()
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
