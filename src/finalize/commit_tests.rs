//! [`finalize_with`]'s commit: the digest of the published bytes on every path,
//! and "source removed ⇒ committed" (a failed commit holds the upload for a
//! later pass, which commits on `AlreadyFinalized`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::cancel::Cancel;
use super::error::FinalizeError;
use super::faults;
use super::outcome::{Cleanup, Finalized, Method, Published};
use super::publish::{run, run_with};
use super::request::Move;
use super::roots::Roots;

use sha2::{Digest, Sha256};

fn env() -> (tempfile::TempDir, tempfile::TempDir, Roots) {
    let up = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let roots = Roots::new(up.path(), store.path()).unwrap();
    (up, store, roots)
}

fn upload(roots: &Roots, id: &str, data: &[u8]) -> PathBuf {
    let p = roots.upload_dir().join(id);
    let i = roots.upload_dir().join(format!("{id}.info"));
    fs::write(&p, data).unwrap();
    let info = format!(
        r#"{{"ID":{id:?},"Size":{},"SizeIsDeferred":false,"Offset":0,"MetaData":{{}},"Storage":{{"Type":"filestore","Path":{p:?},"InfoPath":{i:?}}}}}"#,
        data.len()
    );
    fs::write(&i, info).unwrap();
    p
}

fn mv(roots: &Roots, source: &Path, dest: &str) -> Move {
    Move {
        roots: roots.clone(),
        upload_id: source.file_name().unwrap().to_string_lossy().into_owned(),
        parts: None,
        source: source.to_path_buf(),
        info_path: None,
        destination: dest.to_string(),
        overwrite: false,
        expected_metadata: BTreeMap::new(),
        content_check: None,
    }
}

/// Runs a move whose commit records what it saw and answers `ok`.
fn commit_run(m: &Move, ok: bool) -> (Result<Finalized, FinalizeError>, Vec<Published>) {
    let mut seen = Vec::new();
    let mut f = |p: &Published| {
        seen.push(p.clone());
        ok
    };
    let r = run_with(m, &Cancel::new(), &mut Some(&mut f));
    (r, seen)
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[test]
fn the_digest_is_of_the_published_bytes_on_the_link_and_the_copy_path() {
    for copy in [false, true] {
        let (_u, _s, roots) = env();
        let data = b"some bytes to publish".repeat(100_000);
        let src = upload(&roots, "u1", &data);
        faults::set_force_copy(copy);
        let (r, seen) = commit_run(&mv(&roots, &src, "public/a.bin"), true);
        faults::set_force_copy(false);
        let done = r.unwrap();
        assert_eq!(done.method, if copy { Method::Copied } else { Method::Renamed });
        assert_eq!(seen.len(), 1, "one commit");
        assert_eq!(seen[0].sha256, sha(&data), "copy={copy}");
        assert_eq!(seen[0].bytes, data.len() as u64);
        assert_eq!(done.sha256, Some(sha(&data)));
        assert_eq!(done.cleanup, Cleanup::Done);
        assert!(!src.exists());
    }
}

#[test]
fn a_failed_commit_holds_the_upload_and_the_next_pass_commits() {
    let (_u, _s, roots) = env();
    let data = b"held until committed".to_vec();
    let src = upload(&roots, "u2", &data);
    let m = mv(&roots, &src, "private/b.bin");

    // The publish happens, the commit fails: the source and its info stay.
    let (r, seen) = commit_run(&m, false);
    let done = r.unwrap();
    assert_eq!(done.cleanup, Cleanup::Held);
    assert_eq!(seen.len(), 1);
    assert!(src.exists() && roots.upload_dir().join("u2.info").exists());
    assert_eq!(
        fs::read(roots.storage_root().join("private/b.bin")).unwrap(),
        data
    );

    // A later pass (reconcile, duplicate post-finish): AlreadyFinalized, committed.
    let (r, seen) = commit_run(&m, true);
    let done = r.unwrap();
    assert_eq!(done.method, Method::AlreadyFinalized);
    assert_eq!(seen.len(), 1, "committed on AlreadyFinalized");
    assert_eq!(seen[0].sha256, sha(&data));
    assert_eq!(done.cleanup, Cleanup::Done);
    assert!(!src.exists() && !roots.upload_dir().join("u2.info").exists());

    // And a duplicate after that still commits (idempotent by event id upstream).
    let (r, seen) = commit_run(&m, true);
    assert_eq!(r.unwrap().method, Method::AlreadyFinalized);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sha256, sha(&data));
}

#[test]
fn a_crash_after_a_copy_publish_commits_on_recovery() {
    let (_u, _s, roots) = env();
    let data = b"copied, then the process died".to_vec();
    let src = upload(&roots, "u3", &data);
    // The copy landed (same bytes) but the source was never removed.
    fs::create_dir_all(roots.storage_root().join("public")).unwrap();
    fs::write(roots.storage_root().join("public/c.bin"), &data).unwrap();
    let (r, seen) = commit_run(&mv(&roots, &src, "public/c.bin"), true);
    assert_eq!(r.unwrap().method, Method::AlreadyFinalized);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sha256, sha(&data));
    assert!(!src.exists());
}

#[test]
fn a_conflict_commits_nothing() {
    let (_u, _s, roots) = env();
    let src = upload(&roots, "u4", b"new");
    fs::create_dir_all(roots.storage_root().join("public")).unwrap();
    fs::write(roots.storage_root().join("public/d.bin"), b"old").unwrap();
    let (r, seen) = commit_run(&mv(&roots, &src, "public/d.bin"), true);
    assert_eq!(r.unwrap_err(), FinalizeError::Exists);
    assert!(seen.is_empty());
    assert!(src.exists());
}

#[test]
fn without_a_commit_no_digest_is_computed() {
    let (_u, _s, roots) = env();
    let src = upload(&roots, "u5", b"plain");
    let done = run(&mv(&roots, &src, "public/e.bin"), &Cancel::new()).unwrap();
    assert_eq!(done.sha256, None);
}
