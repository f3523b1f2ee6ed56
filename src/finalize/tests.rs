use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cancel::Cancel;
use super::confine::destination_state;
use super::error::{FinalizeError, MoveFailure, Op, Root, Side};
use super::faults;
use super::info::{InfoFormat, MAX_INFO_BYTES};
use super::outcome::{Cleanup, Finalized, Method};
use super::pending::{remove_abandoned, scan_pending, PendingUpload, SkipReason};
use super::publish::{finalize, run, sweep_temp, COPY_CHUNK, TEMP_DIR, TEMP_MIN_AGE};
use super::request::Move;
use super::roots::Roots;
use super::upload::part;
use crate::tusd::{Destination, FinalizePlan};

use tempfile::TempDir;

/// An upload directory and a storage root, each in its own temporary directory.
struct Env {
    /// Kept for their `Drop` (the directories go away with the test).
    _dirs: (TempDir, TempDir),
    roots: Roots,
}

impl Env {
    fn new() -> Env {
        Env::in_dirs(&std::env::temp_dir(), &std::env::temp_dir())
    }

    fn in_dirs(up_base: &Path, store_base: &Path) -> Env {
        let up = tempfile::tempdir_in(up_base).unwrap();
        let store = tempfile::tempdir_in(store_base).unwrap();
        let roots = Roots::new(up.path(), store.path()).unwrap();
        Env {
            _dirs: (up, store),
            roots,
        }
    }

    fn up(&self) -> &Path {
        self.roots.upload_dir()
    }

    fn store(&self) -> &Path {
        self.roots.storage_root()
    }

    /// A finished tusd upload `<up>/<id>` + `<up>/<id>.info`; returns the data path.
    fn tusd(&self, id: &str, data: &[u8]) -> PathBuf {
        tusd_upload(self.up(), id, data, data.len() as i64, "")
    }

    /// The move of the upload whose data file is `source`, under its own ID
    /// (the file's name), as `server` mode plans it.
    fn req(&self, source: &Path, dest: &str, overwrite: bool) -> Move {
        Move {
            roots: self.roots.clone(),
            upload_id: id_of(source),
            parts: None,
            source: source.to_path_buf(),
            info_path: None,
            destination: dest.to_string(),
            overwrite,
            expected_metadata: BTreeMap::new(),
            content_check: None,
        }
    }
}

/// Runs a move with a cancel flag nobody raises.
fn run_now(m: &Move) -> Result<Finalized, FinalizeError> {
    run(m, &Cancel::new())
}

/// The move `finalize-pending` makes of a pending upload (its info read back).
fn pending_move(p: &PendingUpload, roots: &Roots, destination: String, overwrite: bool) -> Move {
    Move {
        roots: roots.clone(),
        upload_id: p.id.clone(),
        parts: None,
        source: p.data_path.clone(),
        info_path: Some(p.info_path.clone()),
        destination,
        overwrite,
        expected_metadata: BTreeMap::new(),
        content_check: None,
    }
}

/// tusd filestore layout. `extra` is spliced into the JSON object (e.g.
/// `"IsPartial":true,`). `Offset` is 0, as tusd leaves it on disk.
fn tusd_upload(dir: &Path, id: &str, data: &[u8], size: i64, extra: &str) -> PathBuf {
    let data_path = dir.join(id);
    let info_path = dir.join(format!("{id}.info"));
    fs::write(&data_path, data).unwrap();
    let info = format!(
        r#"{{"ID":{id:?},"Size":{size},"SizeIsDeferred":false,"Offset":0,{extra}"MetaData":{{"asset-key":"k.txt","visibility":"public"}},"Storage":{{"Type":"filestore","Path":{p:?},"InfoPath":{i:?}}}}}"#,
        p = data_path.to_str().unwrap(),
        i = info_path.to_str().unwrap(),
    );
    fs::write(&info_path, info).unwrap();
    data_path
}

/// The upload ID a data file's name is.
fn id_of(data: &Path) -> String {
    data.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn info_of(data: &Path) -> PathBuf {
    let mut s = data.as_os_str().to_owned();
    s.push(".info");
    PathBuf::from(s)
}

/// Every file below `dir` whose name marks it as one of ours.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".assetgate-") {
                out.push(e.path());
            }
        }
    }
    out
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

fn assert_untouched(src: &Path, data: &[u8]) {
    assert_eq!(fs::read(src).unwrap(), data, "source must stay as it was");
    assert!(info_of(src).exists(), "info must stay");
}

// ---------------------------------------------------------------- the happy path

#[test]
fn moves_on_the_same_filesystem_and_removes_info() {
    let env = Env::new();
    let src = env.tusd("abc123", b"hello world");
    let got = run_now(&env.req(&src, "public/photos/été 2026/plage.jpg", false)).unwrap();
    let dst = env.store().join("public/photos/été 2026/plage.jpg");
    assert_eq!(got.destination, dst);
    assert_eq!(got.method, Method::Renamed);
    assert_eq!(got.bytes, 11);
    assert_eq!(got.cleanup, Cleanup::Done);
    assert_eq!(fs::read(&dst).unwrap(), b"hello world");
    assert_eq!(fs::metadata(&dst).unwrap().nlink(), 1);
    assert!(!src.exists());
    assert!(!info_of(&src).exists(), "info is removed after the move");
    assert!(temp_files(env.store()).is_empty());
}

#[test]
fn empty_file() {
    let env = Env::new();
    let src = env.tusd("empty", b"");
    let got = run_now(&env.req(&src, "public/empty.txt", false)).unwrap();
    assert_eq!((got.method, got.bytes), (Method::Renamed, 0));
    assert_eq!(fs::read(env.store().join("public/empty.txt")).unwrap(), b"");

    faults::set_force_copy(true);
    let src = env.tusd("empty2", b"");
    let got = run_now(&env.req(&src, "public/empty2.txt", false)).unwrap();
    faults::set_force_copy(false);
    assert_eq!((got.method, got.bytes), (Method::Copied, 0));
    assert_eq!(fs::read(env.store().join("public/empty2.txt")).unwrap(), b"");
    assert!(!src.exists());
}

// ---------------------------------------------------------------- destination

#[test]
fn destination_traversal_is_refused() {
    let env = Env::new();
    let src = env.tusd("trav", b"data");
    for dest in [
        "public/../../escape.txt",
        "../escape.txt",
        "/etc/escape.txt",
        "public//x",
        "public/./x",
        "public/x/",
        "",
        "public\\..\\x",
        "public/x\0y",
        "..",
    ] {
        let e = run_now(&env.req(&src, dest, false)).unwrap_err();
        assert_eq!(e, FinalizeError::DestinationOutside, "{dest:?}");
        assert_eq!(e.as_str(), "destination_outside");
    }
    assert_untouched(&src, b"data");
    assert_eq!(entries(env.store()), 0, "nothing created");
    assert!(!env.store().parent().unwrap().join("escape.txt").exists());
}

#[test]
fn symlinked_directory_in_destination_is_refused() {
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    let src = env.tusd("slink", b"data");

    symlink(outside.path(), env.store().join("public")).unwrap();
    let e = run_now(&env.req(&src, "public/a/x.txt", false)).unwrap_err();
    assert_eq!(
        e,
        FinalizeError::Symlink {
            side: Side::Destination
        }
    );
    assert_eq!(e.as_str(), "symlink");
    assert_eq!(entries(outside.path()), 0, "nothing written through the link");

    // Deeper, and pointing inside the root: still refused.
    fs::create_dir_all(env.store().join("private/real")).unwrap();
    symlink(
        env.store().join("private/real"),
        env.store().join("private/alias"),
    )
    .unwrap();
    let e = run_now(&env.req(&src, "private/alias/x.txt", false)).unwrap_err();
    assert_eq!(
        e,
        FinalizeError::Symlink {
            side: Side::Destination
        }
    );

    // The destination itself a (dangling) symlink.
    fs::create_dir_all(env.store().join("p")).unwrap();
    symlink(outside.path().join("target"), env.store().join("p/x.txt")).unwrap();
    for overwrite in [false, true] {
        let e = run_now(&env.req(&src, "p/x.txt", overwrite)).unwrap_err();
        assert_eq!(
            e,
            FinalizeError::Symlink {
                side: Side::Destination
            }
        );
    }
    assert!(!outside.path().join("target").exists());
    assert_untouched(&src, b"data");
}

#[test]
fn file_where_a_directory_is_expected() {
    let env = Env::new();
    let src = env.tusd("notdir", b"data");
    fs::write(env.store().join("public"), b"i am a file").unwrap();
    let e = run_now(&env.req(&src, "public/x.txt", false)).unwrap_err();
    assert_eq!(e, FinalizeError::DestinationNotDir);
    assert_eq!(e.as_str(), "destination_not_dir");
    assert_untouched(&src, b"data");
    assert_eq!(fs::read(env.store().join("public")).unwrap(), b"i am a file");
    assert!(temp_files(env.store()).is_empty());
}

// ---------------------------------------------------------------- source

#[test]
fn source_outside_the_upload_dir_is_refused() {
    let env = Env::new();
    let elsewhere = tempfile::tempdir().unwrap();
    // A perfectly finished-looking tusd upload, but not in the upload directory.
    let outside = tusd_upload(elsewhere.path(), "victim", b"secret", 6, "");

    let dotdot = env
        .up()
        .join("..")
        .join(elsewhere.path().file_name().unwrap())
        .join("victim");
    assert!(dotdot.exists(), "the test path must name the real file");
    let relative = PathBuf::from("victim");
    for source in [outside.clone(), dotdot, relative, env.up().to_path_buf()] {
        let e = run_now(&env.req(&source, "public/x", false)).unwrap_err();
        assert_eq!(e.reason(), MoveFailure::SourceOutside, "{source:?}: {e}");
    }
    // The info path given by the event is checked too.
    let inside = env.tusd("mine", b"mine");
    let mut r = env.req(&inside, "public/mine", false);
    r.info_path = Some(info_of(&outside));
    assert_eq!(run_now(&r).unwrap_err(), FinalizeError::InfoInvalid);

    assert_eq!(fs::read(&outside).unwrap(), b"secret");
    assert!(info_of(&outside).exists());
    assert_eq!(entries(env.store()), 0);
}

#[test]
fn source_symlink_pointing_outside_is_refused() {
    let env = Env::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = tusd_upload(elsewhere.path(), "victim", b"secret", 6, "");

    // A symlink named like an upload, with a matching info.
    let link = env.up().join("evil");
    symlink(&outside, &link).unwrap();
    let info = format!(
        r#"{{"ID":"evil","Size":6,"SizeIsDeferred":false,"Offset":0,"MetaData":{{}},"Storage":{{"Type":"filestore","Path":{:?}}}}}"#,
        link.to_str().unwrap()
    );
    fs::write(info_of(&link), info).unwrap();
    let e = run_now(&env.req(&link, "public/x", false)).unwrap_err();
    assert_eq!(e, FinalizeError::Symlink { side: Side::Source });

    // A symlinked directory inside the upload directory.
    symlink(elsewhere.path(), env.up().join("sub")).unwrap();
    let e = run_now(&env.req(&env.up().join("sub/victim"), "public/x", false)).unwrap_err();
    assert_eq!(e, FinalizeError::SourceOutside);

    assert_eq!(fs::read(&outside).unwrap(), b"secret");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(entries(env.store()), 0);
}

#[test]
fn symlinked_info_is_refused() {
    let env = Env::new();
    let src = env.up().join("infolink");
    fs::write(&src, b"abc").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let real_info = elsewhere.path().join("x.info");
    fs::write(
        &real_info,
        format!(
            r#"{{"ID":"infolink","Size":3,"Storage":{{"Path":{:?}}}}}"#,
            src.to_str().unwrap()
        ),
    )
    .unwrap();
    symlink(&real_info, info_of(&src)).unwrap();
    let e = run_now(&env.req(&src, "public/x", false)).unwrap_err();
    assert_eq!(e, FinalizeError::Symlink { side: Side::Info });
    assert!(src.exists());
}

#[test]
fn upload_dir_behind_a_symlink_is_resolved_once() {
    let real = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let configured = links.path().join("tusd-data");
    symlink(real.path(), &configured).unwrap();

    let roots = Roots::new(&configured, store.path()).unwrap();
    assert_eq!(roots.upload_dir(), fs::canonicalize(real.path()).unwrap());

    // tusd was started with the symlinked path and records it in Storage.Path.
    let via_link = tusd_upload(&configured, "viaLink", b"one", 3, "");
    let via_real = tusd_upload(real.path(), "viaReal", b"two", 3, "");
    for (src, dest) in [(via_link, "public/one"), (via_real, "public/two")] {
        let r = Move {
            roots: roots.clone(),
            upload_id: id_of(&src),
            parts: None,
            source: src.clone(),
            info_path: Some(info_of(&src)),
            destination: dest.into(),
            overwrite: false,
            expected_metadata: BTreeMap::new(),
            content_check: None,
        };
        assert_eq!(run_now(&r).unwrap().method, Method::Renamed, "{src:?}");
    }
    assert_eq!(fs::read(store.path().join("public/one")).unwrap(), b"one");
    assert_eq!(fs::read(store.path().join("public/two")).unwrap(), b"two");
}

#[test]
fn source_that_is_not_a_plain_file() {
    let env = Env::new();
    let d = env.up().join("adir");
    fs::create_dir(&d).unwrap();
    assert_eq!(
        run_now(&env.req(&d, "public/x", false)).unwrap_err(),
        FinalizeError::SourceNotFile
    );

    // A second hard link (none of tusd's doing).
    let src = env.tusd("twice", b"data");
    fs::hard_link(&src, env.up().join("other-name")).unwrap();
    let e = run_now(&env.req(&src, "public/x", false)).unwrap_err();
    assert_eq!(e, FinalizeError::SourceNotFile);
    assert_untouched(&src, b"data");
    assert!(!env.store().join("public/x").exists());
}

// ---------------------------------------------------------------- the info file

#[test]
fn only_finished_uploads_described_by_their_info_move() {
    let env = Env::new();
    let cases: Vec<(PathBuf, FinalizeError)> = vec![
        // Data shorter than declared (tusd leaves Offset 0 on disk: size decides).
        (
            tusd_upload(env.up(), "short", b"abc", 10, ""),
            FinalizeError::NotFinished,
        ),
        (
            tusd_upload(env.up(), "longer", b"abcdef", 3, ""),
            FinalizeError::NotFinished,
        ),
        (
            tusd_upload(env.up(), "partial", b"abc", 3, r#""IsPartial":true,"#),
            FinalizeError::NotFinished,
        ),
        (
            {
                // Not given twice: a record that repeats a field is malformed.
                let src = tusd_upload(env.up(), "deferred", b"", 0, "");
                let info = fs::read_to_string(info_of(&src)).unwrap();
                let info = info.replace(r#""SizeIsDeferred":false"#, r#""SizeIsDeferred":true"#);
                fs::write(info_of(&src), info).unwrap();
                src
            },
            FinalizeError::NotFinished,
        ),
    ];
    for (src, want) in &cases {
        assert_eq!(
            &run_now(&env.req(src, "public/x", false)).unwrap_err(),
            want,
            "{src:?}"
        );
        assert!(src.exists() && info_of(src).exists());
    }

    // No info at all (another of tusd's files, or a random one).
    let bare = env.up().join("bare");
    fs::write(&bare, b"x").unwrap();
    assert_eq!(
        run_now(&env.req(&bare, "public/x", false)).unwrap_err(),
        FinalizeError::InfoInvalid
    );
    // The info of one upload describing another data file.
    let a = env.tusd("aaaa", b"aaaa");
    let b = env.up().join("bbbb");
    fs::write(&b, b"bbbb").unwrap();
    fs::copy(info_of(&a), info_of(&b)).unwrap();
    assert_eq!(
        run_now(&env.req(&b, "public/x", false)).unwrap_err(),
        FinalizeError::InfoInvalid
    );
    // An info path from the event that is not this upload's.
    let mut r = env.req(&b, "public/x", false);
    r.info_path = Some(info_of(&a));
    assert_eq!(run_now(&r).unwrap_err(), FinalizeError::InfoInvalid);
    // Garbage.
    let g = env.up().join("garbage");
    fs::write(&g, b"g").unwrap();
    fs::write(info_of(&g), b"{not json").unwrap();
    assert_eq!(
        run_now(&env.req(&g, "public/x", false)).unwrap_err(),
        FinalizeError::InfoInvalid
    );
    assert_eq!(entries(env.store()), 0, "refused before any directory is made");
}

#[test]
fn metadata_must_match_what_the_caller_verified() {
    let env = Env::new();
    let src = env.tusd("meta", b"data");
    let mut r = env.req(&src, "public/k.txt", false);
    r.expected_metadata.insert("asset-key".into(), "k.txt".into());
    r.expected_metadata.insert("visibility".into(), "private".into());
    let e = run_now(&r).unwrap_err();
    assert_eq!(e, FinalizeError::MetadataMismatch);
    assert_untouched(&src, b"data");

    r.expected_metadata.insert("visibility".into(), "public".into());
    assert_eq!(run_now(&r).unwrap().method, Method::Renamed);
}

// ---------------------------------------------------------------- conflicts

#[test]
fn existing_destination_is_kept_without_overwrite() {
    let env = Env::new();
    let src = env.tusd("conf", b"new data");
    fs::create_dir_all(env.store().join("public")).unwrap();
    let dst = env.store().join("public/x.txt");
    fs::write(&dst, b"old data").unwrap();

    let e = run_now(&env.req(&src, "public/x.txt", false)).unwrap_err();
    assert_eq!(e, FinalizeError::Exists);
    assert!(e.is_conflict());
    assert_eq!(e.as_str(), "exists");
    assert_untouched(&src, b"new data");
    assert_eq!(fs::read(&dst).unwrap(), b"old data");

    // Same length, other bytes: still a conflict (not mistaken for a recovery).
    fs::write(&dst, b"NEW DATA").unwrap();
    assert_eq!(
        run_now(&env.req(&src, "public/x.txt", false)).unwrap_err(),
        FinalizeError::Exists
    );
    // A directory at the destination.
    fs::create_dir(env.store().join("public/d")).unwrap();
    for overwrite in [false, true] {
        assert_eq!(
            run_now(&env.req(&src, "public/d", overwrite)).unwrap_err(),
            FinalizeError::Exists
        );
    }
    // The copy path says the same, and leaves no temporary file.
    faults::set_force_copy(true);
    let e = run_now(&env.req(&src, "public/x.txt", false)).unwrap_err();
    faults::set_force_copy(false);
    assert_eq!(e, FinalizeError::Exists);
    assert_untouched(&src, b"new data");
    assert_eq!(fs::read(&dst).unwrap(), b"NEW DATA");
    assert!(temp_files(env.store()).is_empty());
}

#[test]
fn existing_destination_is_replaced_with_overwrite() {
    let env = Env::new();
    fs::create_dir_all(env.store().join("public")).unwrap();
    let dst = env.store().join("public/x.txt");
    fs::write(&dst, b"old").unwrap();

    let src = env.tusd("ow1", b"newer");
    let got = run_now(&env.req(&src, "public/x.txt", true)).unwrap();
    assert_eq!(got.method, Method::Renamed);
    assert_eq!(fs::read(&dst).unwrap(), b"newer");
    assert!(!src.exists() && !info_of(&src).exists());

    faults::set_force_copy(true);
    let src = env.tusd("ow2", b"newest");
    let got = run_now(&env.req(&src, "public/x.txt", true)).unwrap();
    faults::set_force_copy(false);
    assert_eq!(got.method, Method::Copied);
    assert_eq!(fs::read(&dst).unwrap(), b"newest");
    assert!(!src.exists());
    assert!(temp_files(env.store()).is_empty());
}

#[test]
fn destination_appearing_during_the_move_is_not_replaced() {
    for force_copy in [false, true] {
        let env = Env::new();
        let src = env.tusd("race", b"mine");
        faults::set_force_copy(force_copy);
        faults::set_race(true);
        let e = run_now(&env.req(&src, "public/r.txt", false)).unwrap_err();
        faults::set_race(false);
        faults::set_force_copy(false);
        assert_eq!(e, FinalizeError::Exists, "force_copy={force_copy}");
        assert_eq!(fs::read(env.store().join("public/r.txt")).unwrap(), b"racer");
        assert_untouched(&src, b"mine");
        assert!(temp_files(env.store()).is_empty());
    }
}

// ---------------------------------------------------------------- idempotence

#[test]
fn duplicate_delivery_is_harmless() {
    let env = Env::new();
    let src = env.tusd("dup", b"data");
    let r = env.req(&src, "public/dup.txt", false);
    assert_eq!(run_now(&r).unwrap().method, Method::Renamed);
    for overwrite in [false, true] {
        let mut again = r.clone();
        again.overwrite = overwrite;
        let got = run_now(&again).unwrap();
        assert_eq!(got.method, Method::AlreadyFinalized);
        assert_eq!(got.bytes, 4);
    }
    assert_eq!(fs::read(env.store().join("public/dup.txt")).unwrap(), b"data");

    // Neither source nor destination: an error, not a success.
    let e = run_now(&env.req(&env.up().join("never"), "public/never", false)).unwrap_err();
    assert_eq!(e, FinalizeError::SourceMissing);
    let e = run_now(&env.req(&env.up().join("no/such/dir/x"), "nope/never", false)).unwrap_err();
    assert_eq!(e, FinalizeError::SourceMissing);
    assert!(!env.store().join("nope").exists(), "a miss creates nothing");
}

#[test]
fn duplicate_removes_a_stale_info() {
    let env = Env::new();
    let src = env.tusd("stale", b"data");
    fs::create_dir(env.store().join("public")).unwrap();
    fs::rename(&src, env.store().join("public/s.txt")).unwrap(); // crashed before removing the info
    let got = run_now(&env.req(&src, "public/s.txt", false)).unwrap();
    assert_eq!(
        (got.method, got.cleanup),
        (Method::AlreadyFinalized, Cleanup::Done)
    );
    assert!(!info_of(&src).exists());
}

#[test]
fn crash_after_link_publish_is_recovered() {
    for overwrite in [false, true] {
        let env = Env::new();
        let src = env.tusd("crash1", b"data");
        fs::create_dir(env.store().join("public")).unwrap();
        let dst = env.store().join("public/c.txt");
        fs::hard_link(&src, &dst).unwrap(); // published, source not yet removed
        let got = run_now(&env.req(&src, "public/c.txt", overwrite)).unwrap();
        assert_eq!(got.method, Method::AlreadyFinalized, "overwrite={overwrite}");
        assert!(!src.exists(), "source removed (overwrite={overwrite})");
        assert!(!info_of(&src).exists());
        assert_eq!(fs::read(&dst).unwrap(), b"data");
    }
}

#[test]
fn crash_after_copy_publish_is_recovered() {
    let env = Env::new();
    let src = env.tusd("crash2", b"same bytes");
    fs::create_dir(env.store().join("public")).unwrap();
    let dst = env.store().join("public/c.txt");
    fs::write(&dst, b"same bytes").unwrap(); // another inode, same content
    let got = run_now(&env.req(&src, "public/c.txt", false)).unwrap();
    assert_eq!(got.method, Method::AlreadyFinalized);
    assert!(!src.exists() && !info_of(&src).exists());
    assert_eq!(fs::read(&dst).unwrap(), b"same bytes");
}

// ---------------------------------------------------------------- failures midway

#[test]
fn failure_midway_leaves_the_source_and_no_temp_file() {
    use faults::Step;
    for (force_copy, step) in [
        (true, Step::CreateTemp),
        (true, Step::AfterCopy),
        (true, Step::Publish),
        (false, Step::Publish),
    ] {
        let env = Env::new();
        let src = env.tusd("mid", b"precious data");
        faults::set_force_copy(force_copy);
        faults::fail_at(Some(step));
        let e = run_now(&env.req(&src, "public/deep/x.bin", false)).unwrap_err();
        faults::fail_at(None);
        faults::set_force_copy(false);
        assert_eq!(e.reason(), MoveFailure::Io, "{step:?}");
        assert_untouched(&src, b"precious data");
        assert!(!env.store().join("public/deep/x.bin").exists(), "{step:?}");
        assert_eq!(temp_files(env.store()), Vec::<PathBuf>::new(), "{step:?}");

        // And the next attempt succeeds.
        let got = run_now(&env.req(&src, "public/deep/x.bin", false)).unwrap();
        assert_eq!(got.method, Method::Renamed);
    }
}

// ---------------------------------------------------------------- cross-filesystem

/// `/dev/shm` is a tmpfs, the temporary directory is on disk: a real `EXDEV`.
fn cross_fs_bases() -> (PathBuf, PathBuf) {
    let shm = PathBuf::from("/dev/shm");
    let disk = std::env::temp_dir();
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    assert_ne!(
        dev(&shm),
        dev(&disk),
        "this test needs /dev/shm and {} on different filesystems",
        disk.display()
    );
    (shm, disk)
}

#[test]
fn cross_filesystem_copy() {
    let (shm, disk) = cross_fs_bases();
    for (up, store) in [(&shm, &disk), (&disk, &shm)] {
        let env = Env::in_dirs(up, store);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let src = env.tusd("xdev", &data);
        fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
        let got = run_now(&env.req(&src, "public/big/file.bin", false)).unwrap();
        assert_eq!(got.method, Method::Copied, "{up:?} -> {store:?}");
        assert_eq!(got.bytes, data.len() as u64);
        let dst = env.store().join("public/big/file.bin");
        assert_eq!(fs::read(&dst).unwrap(), data);
        assert_eq!(fs::metadata(&dst).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(!src.exists() && !info_of(&src).exists());
        assert!(temp_files(env.store()).is_empty());

        // Conflict across filesystems: nothing replaced, nothing left over.
        let src = env.tusd("xdev2", b"other");
        let e = run_now(&env.req(&src, "public/big/file.bin", false)).unwrap_err();
        assert_eq!(e, FinalizeError::Exists);
        assert_untouched(&src, b"other");
        assert_eq!(fs::read(&dst).unwrap(), data);
        assert!(temp_files(env.store()).is_empty());

        // With overwrite: replaced by a copy.
        let got = run_now(&env.req(&src, "public/big/file.bin", true)).unwrap();
        assert_eq!(got.method, Method::Copied);
        assert_eq!(fs::read(&dst).unwrap(), b"other");

        // Duplicate across filesystems.
        let got = run_now(&env.req(&src, "public/big/file.bin", true)).unwrap();
        assert_eq!(got.method, Method::AlreadyFinalized);
    }
}

#[test]
fn cross_filesystem_failure_leaves_no_temp_file() {
    let (shm, disk) = cross_fs_bases();
    let env = Env::in_dirs(&shm, &disk);
    let src = env.tusd("xfail", b"precious");
    faults::fail_at(Some(faults::Step::Publish));
    let e = run_now(&env.req(&src, "public/x", false)).unwrap_err();
    faults::fail_at(None);
    assert_eq!(e.reason(), MoveFailure::Io);
    assert_untouched(&src, b"precious");
    assert!(temp_files(env.store()).is_empty());
    assert!(!env.store().join("public/x").exists());
}

// ---------------------------------------------------------------- roots, labels

#[test]
fn roots_must_be_existing_absolute_directories() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    fs::write(&f, b"").unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    let ok = d.path();
    for (up, store, root) in [
        (Path::new("relative"), ok, Root::UploadDir),
        (&d.path().join("missing"), ok, Root::UploadDir),
        (ok, &f, Root::StorageRoot),
        (ok, ok, Root::StorageRoot),
        (ok, &d.path().join("sub"), Root::StorageRoot),
        (&d.path().join("sub"), ok, Root::StorageRoot),
    ] {
        assert_eq!(
            Roots::new(up, store).unwrap_err(),
            FinalizeError::BadRoot { root }
        );
    }
}

#[test]
fn reason_labels_are_distinct_snake_case() {
    let labels: std::collections::BTreeSet<&str> = MoveFailure::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), MoveFailure::ALL.len());
    for l in labels {
        assert!(l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{l}");
    }
    // Messages carry no path from the event, only fixed text and the error kind.
    let e = FinalizeError::Io {
        op: Op::Link,
        kind: io::ErrorKind::NotFound,
    };
    assert_eq!(
        e.to_string(),
        "i/o error while linking the destination: entity not found"
    );
}

// ---------------------------------------------------------------- scanner

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

#[test]
fn scan_tusd_fixture() {
    let env = Env::new();
    let dir = env.up();
    for e in fs::read_dir(fixture("tusd")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "info") {
            let text = fs::read_to_string(&p)
                .unwrap()
                .replace("@DIR@", dir.to_str().unwrap());
            fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
        }
    }
    let data = |id: &str, len: usize| fs::write(dir.join(id), vec![b'x'; len]).unwrap();
    data("0a1b2c3d4e5f60718293a4b5c6d7e8f9", 11); // finished
    data("1b2c3d4e5f60718293a4b5c6d7e8f90a", 4096); // in progress
    data("2c3d4e5f60718293a4b5c6d7e8f90a1b", 10); // deferred
    data("3d4e5f60718293a4b5c6d7e8f90a1b2c", 5); // partial
    data("4e5f60718293a4b5c6d7e8f90a1b2c3d", 5); // final
    data("5f60718293a4b5c6d7e8f90a1b2c3d4e", 3); // finished, old shape
                                                 // 60718293… has no data and a truncated info: malformed wins.
    fs::create_dir(dir.join("dir.info")).unwrap(); // not a file: ignored
    fs::write(dir.join("0a1b2c3d4e5f60718293a4b5c6d7e8f9.lock"), b"").unwrap();

    let scan = scan_pending(dir).unwrap();
    let ids: Vec<&str> = scan.finished.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "4e5f60718293a4b5c6d7e8f90a1b2c3d",
            "5f60718293a4b5c6d7e8f90a1b2c3d4e"
        ]
    );
    let first = &scan.finished[0];
    assert_eq!(first.format, InfoFormat::Tusd);
    assert_eq!(first.size, 11);
    assert_eq!(first.data_path, dir.join("0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
    assert_eq!(first.metadata["asset-key"], "invoices/inv-001.pdf");
    assert_eq!(first.metadata["upload-expires"], "1893456000");
    assert!(scan.finished[1].is_final);
    assert!(scan.finished[2].metadata.is_empty());
    assert!(scan.stale.is_empty());

    let reasons: Vec<(String, SkipReason)> = scan
        .skipped
        .iter()
        .map(|s| {
            (
                s.info_path.file_name().unwrap().to_string_lossy()[..4].to_string(),
                s.reason.clone(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(reasons[0], ("1b2c".into(), SkipReason::InProgress));
    assert_eq!(reasons[1], ("2c3d".into(), SkipReason::Deferred));
    assert_eq!(reasons[2], ("3d4e".into(), SkipReason::Partial));
    assert_eq!(reasons[3].0, "6071");
    assert!(
        matches!(&reasons[3].1, SkipReason::Malformed(m) if m.contains("EOF")),
        "{reasons:?}"
    );

    // What the CLI does next: move every finished one.
    for u in &scan.finished {
        let got = run_now(&pending_move(u, &env.roots, format!("private/{}", u.id), false)).unwrap();
        assert_eq!(got.method, Method::Renamed);
        assert_eq!(got.bytes, u.size);
    }
    let again = scan_pending(dir).unwrap();
    assert!(again.finished.is_empty() && again.stale.is_empty());
    // The final upload's part went with it; the other three stay.
    assert_eq!(again.skipped.len(), 3, "{:?}", again.skipped);
    assert!(!dir.join("3d4e5f60718293a4b5c6d7e8f90a1b2c").exists());
    assert!(!dir.join("3d4e5f60718293a4b5c6d7e8f90a1b2c.info").exists());
}

#[test]
fn scan_reports_stale_infos() {
    let env = Env::new();
    let src = env.tusd("gone", b"data");
    let moved = env.store().join("k.txt");
    fs::rename(&src, &moved).unwrap();
    let scan = scan_pending(env.up()).unwrap();
    assert!(scan.finished.is_empty());
    assert_eq!(scan.stale.len(), 1);
    let got = run_now(&pending_move(&scan.stale[0], &env.roots, "k.txt".into(), false)).unwrap();
    assert_eq!(got.method, Method::AlreadyFinalized);
    assert!(!info_of(&src).exists());
}

/// Copy a real rustus layout, relocating its recorded absolute paths.
fn rustus_layout(layout: &str, into: &Path) {
    let from = fixture(&format!("rustus/{layout}/data"));
    let original = format!("/tmp/rustus-fixture/{layout}/data");
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(from.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                fs::create_dir(into.join(&r)).unwrap();
                stack.push(r);
            } else if r.extension().is_some_and(|x| x == "info") {
                let text = fs::read_to_string(e.path()).unwrap();
                assert!(text.contains(&original), "fixture produced elsewhere? {r:?}");
                fs::write(into.join(&r), text.replace(&original, into.to_str().unwrap())).unwrap();
            } else {
                fs::copy(e.path(), into.join(&r)).unwrap();
            }
        }
    }
}

#[test]
fn scan_real_rustus_layout() {
    let env = Env::new();
    rustus_layout("flat", env.up());
    let scan = scan_pending(env.up()).unwrap();

    let finished: Vec<(&str, &str, u64, bool)> = scan
        .finished
        .iter()
        .map(|u| (&u.id[..4], u.metadata["asset-key"].as_str(), u.size, u.is_final))
        .collect();
    assert_eq!(
        finished,
        [
            ("1cf5", "empty.txt", 0, false),
            ("7111", "concat.txt", 18, true),
            ("e6a0", "photos/été 2026/plage.txt", 30, false),
        ]
    );
    assert!(scan.finished.iter().all(|u| u.format == InfoFormat::Rustus));
    assert_eq!(scan.finished[2].metadata["upload-expires"], "0001893456000");
    assert_eq!(scan.finished[2].metadata["upload-token"].len(), 64);

    let mut skipped: Vec<(&str, SkipReason)> = scan
        .skipped
        .iter()
        .map(|s| {
            (
                s.info_path.file_name().unwrap().to_str().unwrap(),
                s.reason.clone(),
            )
        })
        .map(|(n, r)| (&n[..4], r))
        .collect();
    skipped.sort_by_key(|(n, _)| *n);
    assert_eq!(
        skipped,
        [
            ("2625", SkipReason::InProgress),
            ("8ba5", SkipReason::Partial),
            ("a75c", SkipReason::Deferred),
            ("f388", SkipReason::Partial),
        ]
    );

    for u in &scan.finished {
        let dest = format!("public/{}", u.metadata["asset-key"]);
        let got = run_now(&pending_move(u, &env.roots, dest.clone(), false)).unwrap();
        assert_eq!(got.method, Method::Renamed);
        assert_eq!(fs::metadata(env.store().join(&dest)).unwrap().len(), u.size);
        assert!(!u.info_path.exists() && !u.data_path.exists());
    }
    assert_eq!(
        fs::read(env.store().join("public/photos/été 2026/plage.txt")).unwrap(),
        b"hello rustus finalize fixture\n"
    );
    assert_eq!(
        fs::read(env.store().join("public/concat.txt")).unwrap(),
        b"part-one part-two\n"
    );
}

#[test]
fn rustus_dir_structure_layout() {
    let env = Env::new();
    rustus_layout("dated", env.up());
    let scan = scan_pending(env.up()).unwrap();
    assert_eq!(scan.finished.len(), 1, "{scan:?}");
    let u = &scan.finished[0];
    assert!(
        u.data_path.starts_with(env.up().join("2026/11")),
        "{:?}",
        u.data_path
    );

    // The post-finish way: only the data path from the event, the info is looked up
    // at the top of the upload directory; the event's metadata must match it.
    let mut r = env.req(&u.data_path, "public/dated.txt", false);
    r.expected_metadata
        .insert("asset-key".into(), "photos/été 2026/plage.txt".into());
    let got = run_now(&r).unwrap();
    assert_eq!(got.method, Method::Renamed);
    assert!(!u.info_path.exists());
}

// ---------------------------------------------------------------- the plan, end to end

/// A finished tusd upload whose stored metadata is `meta` (JSON object text).
fn tusd_upload_meta(
    dir: &Path,
    id: &str,
    data: &[u8],
    flags: &str,
    meta: &BTreeMap<String, String>,
) -> PathBuf {
    let data_path = dir.join(id);
    fs::write(&data_path, data).unwrap();
    let info = serde_json::json!({
        "ID": id, "Size": data.len(), "SizeIsDeferred": false, "Offset": 0,
        "MetaData": meta,
        "Storage": {"Type": "filestore", "Path": data_path, "InfoPath": info_of(&data_path)},
    });
    let mut text = info.to_string();
    // splice flags such as `"IsPartial":true,` / `"IsFinal":true,"PartialUploads":[..],`
    text.insert_str(1, flags);
    fs::write(info_of(&data_path), text).unwrap();
    data_path
}

fn signed(key: &str, ct: &str, vis: crate::policy::Visibility) -> BTreeMap<String, String> {
    crate::token::upload::mint(crate::tusd::testing::S1.as_bytes(), key, ct, vis, 1_900_000_000)
}

/// The plan post-finish makes of a tusd event for `data` with `meta`.
fn plan_for(
    data: &Path,
    meta: &BTreeMap<String, String>,
    check_content: bool,
    is_final: bool,
) -> FinalizePlan {
    use crate::tusd::testing::{storage_config, upload_config, S1};
    let mut up = upload_config(&[S1]);
    up.check_content = check_content;
    let st = storage_config();
    let len = fs::metadata(data).unwrap().len();
    let upload = crate::tusd::Upload {
        id: data.file_name().unwrap().to_string_lossy().into_owned(),
        size: Some(len),
        offset: len,
        metadata: meta.clone(),
        is_final,
        storage: Some(crate::tusd::protocol::Storage {
            kind: Some("filestore".into()),
            path: Some(data.display().to_string()),
            info_path: Some(info_of(data).display().to_string()),
            bucket: None,
            key: None,
        }),
        ..crate::tusd::Upload::default()
    };
    crate::tusd::postfinish::plan(
        &upload,
        crate::tusd::Gate {
            upload: &up,
            storage: &st,
            upload_ids: crate::token::upload_id::UploadIds::Server,
        },
    )
    .unwrap()
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR more png bytes";
const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n";

#[test]
fn the_plan_reaches_the_move_and_its_signed_fields_bind_it() {
    use crate::policy::Visibility::*;
    let env = Env::new();
    let meta = signed("docs/a.pdf", "application/pdf", Private);
    let src = tusd_upload_meta(env.up(), "p1", PDF, "", &meta);
    let plan = plan_for(&src, &meta, false, false);
    let got = finalize(&env.roots, &plan, &Cancel::new()).unwrap();
    assert_eq!(got.destination, env.store().join("private/docs/a.pdf"));
    assert_eq!(fs::read(&got.destination).unwrap(), PDF);

    // A plan verified over the attacker's own token, aimed at the victim's upload
    // (same path, other stored metadata): refused by the on-disk record.
    let victim = signed("secret.pdf", "application/pdf", Private);
    let src = tusd_upload_meta(env.up(), "victim", PDF, "", &victim);
    let attacker = signed("mine.pdf", "application/pdf", Public);
    let plan = plan_for(&src, &attacker, false, false);
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::MetadataMismatch
    );
    assert_untouched(&src, PDF);
}

#[test]
fn content_check_runs_in_the_mover() {
    use crate::policy::Visibility::*;
    for copy in [false, true] {
        let env = Env::new();
        faults::set_force_copy(copy);
        // A PNG declared as application/pdf: never published, stays as it was.
        let meta = signed("x.pdf", "application/pdf", Private);
        let src = tusd_upload_meta(env.up(), "png", PNG, "", &meta);
        let plan = plan_for(&src, &meta, true, false);
        let e = finalize(&env.roots, &plan, &Cancel::new()).unwrap_err();
        assert_eq!(e, FinalizeError::ContentMismatch { expected: "PDF" });
        assert_eq!(e.as_str(), "content_mismatch");
        assert_untouched(&src, PNG);
        assert!(!env.store().join("private/x.pdf").exists());
        assert!(temp_files(env.store()).is_empty());
        // The same bytes in another upload without the check (it is opt-in)
        // are published.
        let other = tusd_upload_meta(env.up(), "png2", PNG, "", &meta);
        let plan = plan_for(&other, &meta, false, false);
        assert!(finalize(&env.roots, &plan, &Cancel::new()).is_ok());
        // A real PDF with the check on is published.
        let meta = signed("y.pdf", "application/pdf", Private);
        let src = tusd_upload_meta(env.up(), "pdf", PDF, "", &meta);
        let plan = plan_for(&src, &meta, true, false);
        assert!(finalize(&env.roots, &plan, &Cancel::new()).is_ok());
        faults::set_force_copy(false);
    }
}

#[test]
fn a_final_upload_is_published_only_from_this_tokens_partial_uploads() {
    use crate::policy::Visibility::*;
    let env = Env::new();
    let meta = signed("big.bin", "application/octet-stream", Public);
    let parts_flags = r#""IsPartial":true,"#;
    let p1 = tusd_upload_meta(env.up(), "part1", b"hello ", parts_flags, &meta);
    let p2 = tusd_upload_meta(env.up(), "part2", b"world", parts_flags, &meta);
    let final_flags = r#""IsFinal":true,"PartialUploads":["part1","part2"],"#;
    let fin = tusd_upload_meta(env.up(), "final", b"hello world", final_flags, &meta);
    let plan = plan_for(&fin, &meta, false, true);
    let got = finalize(&env.roots, &plan, &Cancel::new()).unwrap();
    assert_eq!(fs::read(&got.destination).unwrap(), b"hello world");
    for p in [&p1, &p2] {
        assert!(!p.exists() && !info_of(p).exists(), "parts go after the publish");
    }

    // The victim's private part inside the attacker's final upload.
    let victim = signed("private-report.pdf", "application/pdf", Private);
    let v = tusd_upload_meta(env.up(), "vpart", b"victim bytes", parts_flags, &victim);
    let attacker = signed("leak.bin", "application/octet-stream", Public);
    let a = tusd_upload_meta(env.up(), "apart", b"x", parts_flags, &attacker);
    let flags = r#""IsFinal":true,"PartialUploads":["apart","vpart"],"#;
    let fin = tusd_upload_meta(env.up(), "afinal", b"xvictim bytes", flags, &attacker);
    let plan = plan_for(&fin, &attacker, false, true);
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::ConcatInvalid
    );
    assert!(!env.store().join("public/leak.bin").exists());
    assert_untouched(&v, b"victim bytes");
    assert_untouched(&a, b"x");
    assert_untouched(&fin, b"xvictim bytes");

    // A finished upload that is not partial, an unknown part, no parts, an
    // unsafe ID: all refused.
    let whole = tusd_upload_meta(env.up(), "whole", b"w", "", &attacker);
    for parts in [r#"["whole"]"#, r#"["nope"]"#, "[]", r#"["../whole"]"#, "null"] {
        let flags = format!(r#""IsFinal":true,"PartialUploads":{parts},"#);
        let fin = tusd_upload_meta(env.up(), "f2", b"w", &flags, &attacker);
        let plan = plan_for(&fin, &attacker, false, true);
        assert_eq!(
            finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
            FinalizeError::ConcatInvalid,
            "{parts}"
        );
    }
    assert_untouched(&whole, b"w");
    // An unfinished part (data shorter than its size).
    let short = tusd_upload_meta(env.up(), "short", b"abc", parts_flags, &attacker);
    fs::write(&short, b"ab").unwrap();
    assert!(!part(&env.roots, "short").unwrap().finished);
    assert!(part(&env.roots, "../short").is_none());
    assert!(part(&env.roots, ".short").is_none());
}

#[test]
fn a_cancelled_copy_leaves_the_source_and_no_temp_file() {
    let env = Env::new();
    let src = env.tusd("big", &vec![7u8; 3 * COPY_CHUNK + 5]);
    faults::set_force_copy(true);
    let cancel = Cancel::new();
    cancel.cancel();
    let e = run(&env.req(&src, "public/big.bin", false), &cancel).unwrap_err();
    faults::set_force_copy(false);
    assert_eq!(e, FinalizeError::Cancelled);
    assert_eq!(e.as_str(), "cancelled");
    assert!(fs::read(&src).unwrap().len() == 3 * COPY_CHUNK + 5);
    assert!(info_of(&src).exists());
    assert!(!env.store().join("public/big.bin").exists());
    assert!(temp_files(env.store()).is_empty());
}

#[test]
fn copies_go_through_the_temp_dir_and_the_sweep_removes_only_dead_ones() {
    let env = Env::new();
    let src = env.tusd("c", b"copy me");
    faults::set_force_copy(true);
    run_now(&env.req(&src, "public/c.txt", false)).unwrap();
    faults::set_force_copy(false);
    let tmp = env.store().join(TEMP_DIR);
    assert!(tmp.is_dir(), "copies are staged in {TEMP_DIR}");
    assert_eq!(entries(&tmp), 0);

    let old = SystemTime::now() - Duration::from_secs(3600);
    let make = |name: &str, age: SystemTime| {
        let p = tmp.join(name);
        let f = File::create(&p).unwrap();
        f.set_modified(age).unwrap();
        p
    };
    let dead = make(".assetgate-00112233aabbccdd.tmp", old);
    let young = make(".assetgate-0011223344556677.tmp", SystemTime::now());
    let other = make("not-ours.tmp", old);
    let alive = make(".assetgate-8899aabbccddeeff.tmp", old);
    let holder = File::open(&alive).unwrap();
    holder.lock().unwrap();

    assert_eq!(sweep_temp(&env.roots, TEMP_MIN_AGE).unwrap(), 1);
    assert!(!dead.exists(), "a dead writer's file goes");
    assert!(young.exists(), "a file younger than the minimum age stays");
    assert!(other.exists(), "a file not named like ours stays");
    assert!(
        alive.exists(),
        "a file whose writer is alive (holds the lock) stays"
    );
    drop(holder);
    assert_eq!(sweep_temp(&env.roots, TEMP_MIN_AGE).unwrap(), 1);
    assert!(!alive.exists());
    assert_eq!(
        sweep_temp(&env.roots, Duration::ZERO).unwrap(),
        1,
        "young, unlocked"
    );
    assert!(other.exists());
    // No temp dir yet: nothing to do.
    let fresh = Env::new();
    assert_eq!(sweep_temp(&fresh.roots, Duration::ZERO).unwrap(), 0);
}

#[test]
fn destination_state_follows_the_moves_rule() {
    let env = Env::new();
    let root = env.store();
    let st = |p: &str| destination_state(root, Path::new(p));
    assert_eq!(st("public/a/b.txt"), Destination::Free);
    fs::create_dir_all(root.join("public/a")).unwrap();
    assert_eq!(st("public/a/b.txt"), Destination::Free);
    fs::write(root.join("public/a/b.txt"), b"x").unwrap();
    assert_eq!(st("public/a/b.txt"), Destination::Exists);
    // a file where a directory belongs
    assert_eq!(st("public/a/b.txt/c"), Destination::Blocked);
    // a symlinked directory on the way, even to a harmless place
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), root.join("public/link")).unwrap();
    assert_eq!(st("public/link/x.txt"), Destination::Blocked);
    // a symlink or a directory at the name itself
    symlink(root.join("public/a/b.txt"), root.join("public/a/l.txt")).unwrap();
    assert_eq!(st("public/a/l.txt"), Destination::Blocked);
    assert_eq!(st("public/a"), Destination::Blocked);
    assert_eq!(st("public/../x"), Destination::Blocked);
}

// ---------------------------------------------------------------- races after the checks
//
// Someone with write access to the upload directory or to the asset tree changes it
// between the checks and the publish (`faults::on`). Whatever they swap, nothing is
// read from or written to a place outside the two roots, and the bytes published
// are the ones that were checked.

/// Every entry below `dir`, recursively (files, directories, symlinks).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn destination_directory_swapped_for_a_symlink_after_the_checks() {
    // (copy, overwrite, destination already there, directory removed rather than renamed)
    let cases = [
        (false, false, false, false),
        (false, false, false, true),
        (false, true, false, false),
        (false, true, true, false),
        (true, false, false, false),
        (true, false, false, true),
        (true, true, true, false),
    ];
    for (force_copy, overwrite, existing, remove) in cases {
        let case = format!("copy={force_copy} overwrite={overwrite} existing={existing} remove={remove}");
        let env = Env::new();
        let outside = tempfile::tempdir().unwrap();
        let src = env.tusd("swapdst", b"mine");
        let a = env.store().join("public/a");
        let moved = env.store().join("public/a.moved");
        if existing {
            fs::create_dir_all(&a).unwrap();
            fs::write(a.join("x.txt"), b"old").unwrap();
        }
        let (link, target, gone) = (a.clone(), outside.path().to_path_buf(), moved.clone());
        faults::on(faults::Step::AfterChecks, move || {
            if remove {
                fs::remove_dir(&link).unwrap();
            } else {
                fs::rename(&link, &gone).unwrap();
            }
            symlink(&target, &link).unwrap();
        });
        faults::set_force_copy(force_copy);
        let got = run_now(&env.req(&src, "public/a/x.txt", overwrite));
        faults::set_force_copy(false);

        assert_eq!(
            tree(outside.path()),
            Vec::<PathBuf>::new(),
            "written through the link: {case}"
        );
        match got {
            // Published into the directory that was checked, wherever it is now.
            Ok(_) if !remove => {
                assert_eq!(fs::read(moved.join("x.txt")).unwrap(), b"mine", "{case}");
                assert!(!src.exists(), "{case}");
            }
            // That directory was removed: nothing published, nothing lost.
            Err(e) if remove => {
                assert_eq!(e.reason(), MoveFailure::Io, "{case}: {e}");
                assert_untouched(&src, b"mine");
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(temp_files(env.store()).is_empty(), "{case}");
    }
}

#[test]
fn source_directory_swapped_for_a_symlink_after_the_checks() {
    for force_copy in [false, true] {
        let env = Env::new();
        // A look-alike outside the upload directory: same ID, same size, its own info.
        let outside = tempfile::tempdir().unwrap();
        let secret = tusd_upload(outside.path(), "up1", b"secret", 6, "");
        let before = tree(outside.path());
        let sub = env.up().join("sub");
        fs::create_dir(&sub).unwrap();
        let src = tusd_upload(&sub, "up1", b"mine!!", 6, "");
        let (link, target, moved) = (
            sub.clone(),
            outside.path().to_path_buf(),
            env.up().join("sub.moved"),
        );
        faults::on(faults::Step::AfterChecks, move || {
            fs::rename(&link, &moved).unwrap();
            symlink(&target, &link).unwrap();
        });
        faults::set_force_copy(force_copy);
        let got = run_now(&env.req(&src, "public/x.txt", false));
        faults::set_force_copy(false);

        let dst = env.store().join("public/x.txt");
        let published = fs::read(&dst).ok();
        assert_ne!(
            published.as_deref(),
            Some(&b"secret"[..]),
            "copy={force_copy}: read outside"
        );
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        assert_eq!(
            fs::metadata(&secret).unwrap().nlink(),
            1,
            "copy={force_copy}: linked outside"
        );
        assert_eq!(tree(outside.path()), before, "copy={force_copy}: outside changed");
        // The checked file is what was published.
        assert_eq!(got.unwrap().bytes, 6);
        assert_eq!(published.as_deref(), Some(&b"mine!!"[..]));
    }
}

#[test]
fn source_file_swapped_for_a_symlink_after_the_checks() {
    for (force_copy, overwrite) in [(false, false), (false, true), (true, false), (true, true)] {
        let case = format!("copy={force_copy} overwrite={overwrite}");
        let env = Env::new();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"secret").unwrap();
        let src = env.tusd("leaf", b"mine!!");
        if overwrite {
            fs::create_dir_all(env.store().join("public")).unwrap();
            fs::write(env.store().join("public/x.txt"), b"old").unwrap();
        }
        let (name, target, moved) = (src.clone(), secret.clone(), env.up().join("leaf.moved"));
        faults::on(faults::Step::AfterChecks, move || {
            fs::rename(&name, &moved).unwrap();
            symlink(&target, &name).unwrap();
        });
        faults::set_force_copy(force_copy);
        let got = run_now(&env.req(&src, "public/x.txt", overwrite));
        faults::set_force_copy(false);

        let dst = env.store().join("public/x.txt");
        let meta = fs::symlink_metadata(&dst).unwrap();
        assert!(meta.is_file(), "{case}: a symlink was published");
        assert_eq!(fs::read(&dst).unwrap(), b"mine!!", "{case}");
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        let got = got.unwrap();
        // The name now holds someone else's symlink: left alone, and said so.
        assert!(
            fs::symlink_metadata(&src).unwrap().file_type().is_symlink(),
            "{case}"
        );
        assert_eq!(got.cleanup, Cleanup::SourceLeft(io::ErrorKind::Other), "{case}");
        assert!(temp_files(env.store()).is_empty(), "{case}");
    }
}

#[test]
fn temp_directory_swapped_for_a_symlink_during_a_copy() {
    use std::cell::Cell;
    use std::rc::Rc;
    let env = Env::new();
    let outside = tempfile::tempdir().unwrap();
    let src = env.tusd("tmpswap", b"private bytes");
    let tmp = env.store().join(TEMP_DIR);
    fs::create_dir(&tmp).unwrap();
    let (link, target, moved) = (
        tmp.clone(),
        outside.path().to_path_buf(),
        env.store().join("tmp.moved"),
    );
    faults::on(faults::Step::CreateTemp, move || {
        fs::rename(&link, &moved).unwrap();
        symlink(&target, &link).unwrap();
    });
    // Looked at just before the publish, while the copy exists.
    let seen = Rc::new(Cell::new(usize::MAX));
    let (seen2, out) = (seen.clone(), outside.path().to_path_buf());
    faults::on(faults::Step::Publish, move || seen2.set(tree(&out).len()));
    faults::set_force_copy(true);
    let got = run_now(&env.req(&src, "public/t.bin", false));
    faults::set_force_copy(false);

    assert_eq!(seen.get(), 0, "the copy was written outside the storage root");
    assert_eq!(tree(outside.path()), Vec::<PathBuf>::new());
    assert_eq!(got.unwrap().method, Method::Copied);
    assert_eq!(
        fs::read(env.store().join("public/t.bin")).unwrap(),
        b"private bytes"
    );
    assert_eq!(
        entries(&env.store().join("tmp.moved")),
        0,
        "temporary file removed"
    );
}

// ---------------------------------------------------------------- fallbacks

/// Linux before 5.6 (or a seccomp filter that predates `openat2`): directories are
/// walked one `openat(O_NOFOLLOW)` at a time, with the same answers.
#[test]
fn without_openat2_the_walk_refuses_the_same_symlinks() {
    faults::set_unsupported(&[faults::Feature::Openat2]);
    source_symlink_pointing_outside_is_refused();
    symlinked_info_is_refused();
    source_outside_the_upload_dir_is_refused();
    upload_dir_behind_a_symlink_is_resolved_once();
    rustus_dir_structure_layout();
    source_directory_swapped_for_a_symlink_after_the_checks();
    a_final_upload_is_published_only_from_this_tokens_partial_uploads();
    faults::set_unsupported(&[]);
}

/// The inode that was checked is published by its descriptor: `AT_EMPTY_PATH`
/// (Linux 6.10+), else `/proc/self/fd`, else a copy from the descriptor. Each way
/// publishes the checked file, not what its name holds by then.
#[test]
fn publishing_by_descriptor_falls_back_to_proc_then_to_a_copy() {
    use faults::Feature::{EmptyPath, ProcFd};
    for (missing, method) in [
        (&[][..], Method::Renamed),
        (&[EmptyPath][..], Method::Renamed),
        (&[EmptyPath, ProcFd][..], Method::Copied),
    ] {
        faults::set_unsupported(missing);
        for overwrite in [false, true] {
            let env = Env::new();
            let src = env.tusd("fd", b"by descriptor");
            fs::create_dir(env.store().join("public")).unwrap();
            let dst = env.store().join("public/fd.txt");
            if overwrite {
                fs::write(&dst, b"old").unwrap();
            }
            let got = run_now(&env.req(&src, "public/fd.txt", overwrite)).unwrap();
            assert_eq!(got.method, method, "{missing:?} overwrite={overwrite}");
            assert_eq!(fs::read(&dst).unwrap(), b"by descriptor");
            assert_eq!(fs::metadata(&dst).unwrap().nlink(), 1, "no second name left");
            assert!(!src.exists() && !info_of(&src).exists());
            assert!(temp_files(env.store()).is_empty());
        }
        source_file_swapped_for_a_symlink_after_the_checks();
        faults::set_unsupported(&[]);
    }
}

/// A filesystem without `RENAME_NOREPLACE`: the copy is published by a link, which
/// refuses an existing name the same way, and its temporary name is removed.
#[test]
fn without_renameat2_a_copy_is_published_by_a_link() {
    faults::set_unsupported(&[faults::Feature::Renameat2]);
    faults::set_force_copy(true);
    let env = Env::new();
    let src = env.tusd("nr", b"copied");
    let got = run_now(&env.req(&src, "public/nr.txt", false)).unwrap();
    assert_eq!(got.method, Method::Copied);
    let dst = env.store().join("public/nr.txt");
    assert_eq!(fs::read(&dst).unwrap(), b"copied");
    assert_eq!(fs::metadata(&dst).unwrap().nlink(), 1);
    assert!(temp_files(env.store()).is_empty());

    let other = env.tusd("nr2", b"other");
    let e = run_now(&env.req(&other, "public/nr.txt", false)).unwrap_err();
    assert_eq!(e, FinalizeError::Exists);
    assert_untouched(&other, b"other");
    assert_eq!(fs::read(&dst).unwrap(), b"copied");
    assert!(temp_files(env.store()).is_empty());
    faults::set_force_copy(false);
    faults::set_unsupported(&[]);
}

/// Overwrite on one filesystem links the checked inode under a temporary name in
/// `.assetgate-tmp`, then renames it over the destination. A crash in between
/// leaves that name (a second link of the source, so the source is refused as
/// `SourceNotFile`) until the sweep, which spares it while its writer holds the
/// lock on the inode.
#[test]
fn overwrite_stages_the_inode_and_the_sweep_knows_a_crashed_stage() {
    let env = Env::new();
    let src = env.tusd("stage", b"new bytes");
    fs::create_dir(env.store().join("public")).unwrap();
    let dst = env.store().join("public/s.txt");
    fs::write(&dst, b"old").unwrap();
    let tmp = env.store().join(TEMP_DIR);
    fs::create_dir(&tmp).unwrap();
    let staged = tmp.join(".assetgate-0123456789abcdef.tmp");
    fs::hard_link(&src, &staged).unwrap(); // the crash
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::open(&src).unwrap().set_modified(old).unwrap();

    assert_eq!(
        run_now(&env.req(&src, "public/s.txt", true)).unwrap_err(),
        FinalizeError::SourceNotFile
    );
    assert_eq!(fs::read(&dst).unwrap(), b"old");
    let writer = File::open(&src).unwrap();
    writer.lock().unwrap();
    assert_eq!(
        sweep_temp(&env.roots, TEMP_MIN_AGE).unwrap(),
        0,
        "its writer is alive"
    );
    drop(writer);
    assert_eq!(sweep_temp(&env.roots, TEMP_MIN_AGE).unwrap(), 1);
    assert_untouched(&src, b"new bytes");

    let got = run_now(&env.req(&src, "public/s.txt", true)).unwrap();
    assert_eq!(got.method, Method::Renamed);
    assert_eq!(fs::read(&dst).unwrap(), b"new bytes");
    assert_eq!(fs::metadata(&dst).unwrap().nlink(), 1);
    assert_eq!(entries(&tmp), 0);
}

/// A racing duplicate publishes this very inode between the checks and an
/// overwrite: `rename` between two links of one inode does nothing, so the
/// temporary name must be removed by hand, not forgotten.
#[test]
fn overwrite_racing_a_duplicate_of_the_same_inode_leaves_no_temp_name() {
    let env = Env::new();
    let src = env.tusd("dupino", b"same inode");
    fs::create_dir(env.store().join("public")).unwrap();
    let dst = env.store().join("public/d.txt");
    fs::write(&dst, b"old").unwrap();
    let (from, to) = (src.clone(), dst.clone());
    faults::on(faults::Step::AfterChecks, move || {
        fs::remove_file(&to).unwrap();
        fs::hard_link(&from, &to).unwrap();
    });
    let got = run_now(&env.req(&src, "public/d.txt", true)).unwrap();
    assert_eq!(got.method, Method::Renamed);
    assert_eq!(fs::read(&dst).unwrap(), b"same inode");
    assert!(!src.exists() && !info_of(&src).exists());
    assert_eq!(temp_files(env.store()), Vec::<PathBuf>::new());
    assert_eq!(fs::metadata(&dst).unwrap().nlink(), 1);
}

// ---------------------------------------------------------------- issue 19: refusals stay refused

/// Finding 8: an upload whose bytes `check_content` refused was kept in the
/// upload directory, and a later configuration without `check_content` (a
/// reload, a restart) made the reconciler publish it. The refusal is now
/// recorded (`<ID>.refused`) and every publish path honours it; the abandon
/// sweep removes it with the upload.
#[test]
fn regression_a_content_refusal_survives_a_configuration_without_check_content() {
    use crate::policy::Visibility::*;
    for copy in [false, true] {
        let env = Env::new();
        faults::set_force_copy(copy);
        // HTML declared as a PNG, refused with the check on.
        let meta = signed("e.png", "image/png", Public);
        let html = b"<html><script>alert(1)</script></html>";
        let src = tusd_upload_meta(env.up(), "html", html, "", &meta);
        let plan = plan_for(&src, &meta, true, false);
        assert_eq!(
            finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
            FinalizeError::ContentMismatch { expected: "PNG" }
        );
        let marker = env.up().join("html.refused");
        let note: serde_json::Value = serde_json::from_slice(&fs::read(&marker).unwrap()).unwrap();
        assert_eq!(note["reason"], "content_mismatch");
        assert_eq!(note["destination"], "public/e.png");
        assert_eq!(fs::metadata(&marker).unwrap().permissions().mode() & 0o777, 0o600);

        // Reload / restart without check_content: post-finish, the reconciler
        // and finalize-pending all plan without the check now.
        let plan = plan_for(&src, &meta, false, false);
        let e = finalize(&env.roots, &plan, &Cancel::new()).unwrap_err();
        assert_eq!((e.clone(), e.as_str()), (FinalizeError::Refused, "refused"));
        assert_untouched(&src, html);
        assert!(!env.store().join("public/e.png").exists());
        // The scan does not offer it for publishing any more.
        let scan = scan_pending(env.up()).unwrap();
        assert!(scan.finished.is_empty(), "{scan:?}");
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].reason, SkipReason::Refused);
        // Refusing again keeps the first record.
        let before = fs::read(&marker).unwrap();
        let plan = plan_for(&src, &meta, true, false);
        assert_eq!(
            finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
            FinalizeError::Refused
        );
        assert_eq!(fs::read(&marker).unwrap(), before);

        // The abandon sweep removes it all, the marker last.
        let u = scan.skipped[0].upload.clone().unwrap();
        assert!(remove_abandoned(&env.roots, &u).unwrap());
        assert!(!src.exists() && !info_of(&src).exists() && !marker.exists());
        faults::set_force_copy(false);
    }
}

/// Anything under the marker's name counts (a directory, a symlink): fail
/// closed; and a refusal that cannot be recorded is not reported as done.
#[test]
fn a_refusal_marker_is_honoured_whatever_it_is_and_must_be_written() {
    use crate::policy::Visibility::*;
    let env = Env::new();
    let meta = signed("x.pdf", "application/pdf", Private);
    let src = tusd_upload_meta(env.up(), "m1", PDF, "", &meta);
    fs::create_dir(env.up().join("m1.refused")).unwrap();
    let plan = plan_for(&src, &meta, false, false);
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::Refused
    );
    let src = tusd_upload_meta(env.up(), "m2", PDF, "", &meta);
    symlink("/nonexistent", env.up().join("m2.refused")).unwrap();
    let plan = plan_for(&src, &meta, false, false);
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::Refused
    );

    // A PNG declared as a PDF whose refusal cannot be recorded (disk full,
    // a read-only directory): an I/O error, so a later pass tries again, not
    // a refusal that the next configuration may forget.
    let src = tusd_upload_meta(env.up(), "m3", PNG, "", &meta);
    let plan = plan_for(&src, &meta, true, false);
    faults::fail_at(Some(faults::Step::MarkRefused));
    let got = finalize(&env.roots, &plan, &Cancel::new());
    faults::fail_at(None);
    assert_eq!(
        got.unwrap_err(),
        FinalizeError::Io {
            op: Op::MarkRefused,
            kind: io::ErrorKind::Other
        }
    );
    assert!(!env.up().join("m3.refused").exists());
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::ContentMismatch { expected: "PDF" }
    );
    assert!(env.up().join("m3.refused").exists());
    assert_untouched(&src, PNG);
}

// ---------------------------------------------------------------- issue 19: info paired with <dir>/<ID>

/// What the reconciler's abandon sweep does with a scan (see
/// `daemon::reconcile`): every skipped upload whose verified token expired
/// more than `after` ago is removed.
fn abandon_sweep(roots: &Roots, now: i64, after: i64) -> usize {
    let secrets = crate::tusd::testing::upload_config(&[crate::tusd::testing::S1]).secrets;
    let scan = scan_pending(roots.upload_dir()).unwrap();
    let mut removed = 0;
    for s in &scan.skipped {
        let Some(u) = &s.upload else { continue };
        let record = crate::tusd::Part {
            is_partial: u.is_partial,
            finished: false,
            metadata: u.metadata.clone(),
        };
        if crate::tusd::abandon::decide(&record, &secrets, now, after).is_ok()
            && remove_abandoned(roots, u).unwrap()
        {
            removed += 1;
        }
    }
    removed
}

/// Finding 7 (b): a planted `.info` whose `Storage.Path` named another
/// upload's data file made the abandon sweep delete that file (`part_record`
/// did not require the data file to be `<ID>`, the mover did).
#[test]
fn regression_a_planted_info_cannot_aim_the_abandon_sweep_at_another_upload() {
    use crate::policy::Visibility::*;
    let env = Env::new();
    // The victim's upload, half-way through, with a token valid for an hour.
    let now = 1_900_000_000;
    let victim_meta = crate::token::upload::mint(
        crate::tusd::testing::S1.as_bytes(),
        "v.bin",
        "application/octet-stream",
        Private,
        now + 3600,
    );
    let victim = tusd_upload_meta(env.up(), "victim", b"first half", "", &victim_meta);
    let info = fs::read_to_string(info_of(&victim)).unwrap();
    fs::write(info_of(&victim), info.replace("\"Size\":10", "\"Size\":20")).unwrap();
    // The planter's record: its own token, long expired, the victim's data path.
    let old = crate::token::upload::mint(
        crate::tusd::testing::S1.as_bytes(),
        "p.bin",
        "application/octet-stream",
        Private,
        now - 10 * 86_400,
    );
    let planted = serde_json::json!({
        "ID": "planted", "Size": 999, "SizeIsDeferred": false, "Offset": 0, "MetaData": old,
        "Storage": {"Type": "filestore", "Path": victim, "InfoPath": env.up().join("planted.info")},
    });
    fs::write(env.up().join("planted.info"), planted.to_string()).unwrap();

    assert_eq!(abandon_sweep(&env.roots, now, 86_400), 0);
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"first half",
        "the victim's data file was deleted"
    );
    assert!(info_of(&victim).exists());
    // The scan names the planted record for what it is, and offers nothing.
    let scan = scan_pending(env.up()).unwrap();
    let planted = scan
        .skipped
        .iter()
        .find(|s| s.info_path.ends_with("planted.info"))
        .unwrap();
    assert!(planted.upload.is_none(), "{planted:?}");
    assert!(
        matches!(&planted.reason, SkipReason::Malformed(m) if m.contains("does not describe <dir>/<ID>")),
        "{planted:?}"
    );
    // Every other reader refuses it too: parts, /session.
    assert!(part(&env.roots, "planted").is_none());
}

/// Pairing, rule by rule, for every reader (`read_info` through the scan and
/// `part`): the info's ID is its name, its data path ends in its ID, tusd's
/// data file is next to it, rustus's below the upload directory.
#[test]
fn an_info_describes_its_own_data_file_only() {
    let env = Env::new();
    let up = env.up();
    let other = tempfile::tempdir().unwrap();
    fs::write(up.join("b"), b"bbbb").unwrap();
    fs::write(other.path().join("c"), b"cccc").unwrap();
    fs::create_dir(up.join("sub")).unwrap();
    fs::write(up.join("sub/d"), b"dddd").unwrap();
    let tusd = |id: &str, path: &Path| {
        serde_json::json!({"ID": id, "Size": 4, "MetaData": {}, "Storage": {"Type": "filestore", "Path": path}})
            .to_string()
    };
    let cases = [
        // (info file, contents, why not)
        ("a.info", tusd("b", &up.join("b")), "its ID is not its file name"),
        (
            "a.info",
            tusd("a", &up.join("b")),
            "its data path does not end in its ID",
        ),
        (
            "c.info",
            tusd("c", &other.path().join("c")),
            "not inside the upload directory",
        ),
        (
            "d.info",
            tusd("d", &up.join("sub/d")),
            "its data path is not next to it",
        ),
        (
            "..info",
            serde_json::json!({"ID": ".", "Size": 4, "MetaData": {}}).to_string(),
            "its ID is not an upload ID",
        ),
        // tusd started with a relative -upload-dir records a relative path
        (
            "a.info",
            tusd("a", Path::new("uploads/b")),
            "its data path does not end in its ID",
        ),
        (
            "r.info",
            serde_json::json!({"id": "r", "offset": 4, "length": 4, "path": up.join("b")}).to_string(),
            "its data path does not end in its ID",
        ),
    ];
    for (name, text, why) in cases {
        fs::write(up.join(name), &text).unwrap();
        let scan = scan_pending(up).unwrap();
        let s = scan
            .skipped
            .iter()
            .find(|s| s.info_path.file_name().unwrap() == name)
            .unwrap_or_else(|| panic!("{name}: {scan:?}"));
        assert!(
            matches!(&s.reason, SkipReason::Malformed(m) if m.contains(why)),
            "{name} {text}: {s:?}"
        );
        assert!(scan.finished.is_empty() && scan.stale.is_empty(), "{scan:?}");
        let id = name.strip_suffix(".info").unwrap();
        assert!(part(&env.roots, id).is_none(), "{name}");
        fs::remove_file(up.join(name)).unwrap();
    }
    // Paired: tusd next to its info (Storage.Path or none), rustus in a sub-directory.
    fs::write(up.join("b.info"), tusd("b", &up.join("b"))).unwrap();
    fs::write(
        up.join("d.info"),
        serde_json::json!({"id": "d", "offset": 4, "length": 4, "path": up.join("sub/d")}).to_string(),
    )
    .unwrap();
    let scan = scan_pending(up).unwrap();
    let ids: Vec<&str> = scan.finished.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["b", "d"], "{scan:?}");
}

/// `.info` reads stop at `MAX_INFO_BYTES`, whatever the reader.
#[test]
fn oversized_infos_are_refused_by_every_reader() {
    let env = Env::new();
    let src = env.tusd("big", b"data");
    let mut text = fs::read(info_of(&src)).unwrap();
    text.truncate(text.len() - 1);
    text.extend_from_slice(b",\"Pad\":\"");
    text.resize(MAX_INFO_BYTES as usize + 10, b'x');
    text.extend_from_slice(b"\"}");
    fs::write(info_of(&src), &text).unwrap();
    let scan = scan_pending(env.up()).unwrap();
    assert!(
        matches!(&scan.skipped[0].reason, SkipReason::Malformed(m) if m.contains("larger than")),
        "{scan:?}"
    );
    assert!(part(&env.roots, "big").is_none());
    assert_eq!(
        run_now(&env.req(&src, "public/big", false)).unwrap_err(),
        FinalizeError::InfoInvalid
    );
}

// ---------------------------------------------------------------- issue 19: signed upload IDs

/// A finished upload created as tusd v2 creates it after pre-create answered
/// with a signed ID: `<up>/<id>` + `<up>/<id>.info` carrying `meta`. `kind`
/// and `nonce` choose the ID; `flags` as in [`tusd_upload_meta`].
fn signed_upload(
    dir: &Path,
    meta: &BTreeMap<String, String>,
    kind: crate::token::upload_id::Kind,
    nonce: u8,
    data: &[u8],
    flags: &str,
) -> PathBuf {
    let id = issued_id(meta, kind, nonce);
    tusd_upload_meta(dir, &id, data, flags, meta)
}

/// The ID pre-create issues for `meta`'s grant.
fn issued_id(meta: &BTreeMap<String, String>, kind: crate::token::upload_id::Kind, nonce: u8) -> String {
    use crate::tusd::testing::{upload_config, S1};
    let up = upload_config(&[S1]);
    let grant = crate::token::upload::verify_signature_ignoring_expiry(meta, &up.secrets)
        .unwrap()
        .grant_id();
    crate::token::upload_id::issue(up.secrets.newest().unwrap(), &[nonce; 16], &grant, kind)
}

/// The plan post-finish (or the reconciler) makes of an upload in the
/// default `signed` mode.
fn signed_plan(upload: &crate::tusd::Upload) -> Result<FinalizePlan, crate::tusd::NotPlanned> {
    use crate::tusd::testing::{storage_config, upload_config, S1};
    let (up, st) = (upload_config(&[S1]), storage_config());
    crate::tusd::postfinish::plan(
        upload,
        crate::tusd::Gate {
            upload: &up,
            storage: &st,
            upload_ids: crate::token::upload_id::UploadIds::Signed,
        },
    )
}

fn kept_reason(v: crate::tusd::NotPlanned) -> &'static str {
    match v {
        crate::tusd::NotPlanned::Keep(r) => r.reason().as_str(),
        other => panic!("expected Keep, got {other:?}"),
    }
}

/// What the reconciler does with a scan: plan every finished upload under the
/// post-finish rules in `signed` mode and move what is planned.
fn reconcile_publish(roots: &Roots) -> Vec<(String, Result<Finalized, String>)> {
    let scan = scan_pending(roots.upload_dir()).unwrap();
    scan.finished
        .iter()
        .map(|p| {
            let r = match signed_plan(&p.as_upload()) {
                Ok(plan) => finalize(roots, &plan, &Cancel::new()).map_err(|e| e.as_str().to_string()),
                Err(v) => Err(kept_reason(v).to_string()),
            };
            (p.id.clone(), r)
        })
        .collect()
}

/// Finding 7 (c): a planted `.info` carrying a token copied from a victim's
/// `.info` published the planter's bytes at the victim's key (the reconciler
/// checked neither expiry nor what pre-create checked), after which the
/// victim's own upload got `exists`. Now a publish needs the ID pre-create
/// issued for that grant, which the planter cannot make.
#[test]
fn regression_a_planted_info_with_a_copied_token_publishes_nothing() {
    use crate::policy::Visibility::*;
    use crate::token::upload_id::Kind;
    let env = Env::new();
    let victim_meta = signed("avatars/victim.png", "image/png", Public);
    // The victim's upload, still in progress (only its .info is finished).
    let victim = signed_upload(env.up(), &victim_meta, Kind::Whole, 1, PNG, "");
    let info = fs::read_to_string(info_of(&victim)).unwrap();
    let full = PNG.len();
    fs::write(
        info_of(&victim),
        info.replace(&format!("\"Size\":{full}"), &format!("\"Size\":{}", full + 10)),
    )
    .unwrap();
    // The planter's upload: its own bytes under a name of its choosing (tusd's
    // own 32-hex style, or anything), the victim's token copied in.
    let planted = tusd_upload_meta(
        env.up(),
        "0123456789abcdef0123456789abcdef",
        b"<script>",
        "",
        &victim_meta,
    );

    let got = reconcile_publish(&env.roots);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, Err("upload_id_invalid".to_string()), "{got:?}");
    assert!(
        !env.store().join("public/avatars/victim.png").exists(),
        "published the planter's bytes"
    );
    assert_untouched(&planted, b"<script>");

    // The same with a forged post-finish event naming the planted upload.
    let len = 8;
    let forged = crate::tusd::Upload {
        id: "0123456789abcdef0123456789abcdef".into(),
        size: Some(len),
        offset: len,
        metadata: victim_meta.clone(),
        storage: Some(crate::tusd::protocol::Storage {
            kind: Some("filestore".into()),
            path: Some(planted.display().to_string()),
            info_path: None,
            bucket: None,
            key: None,
        }),
        ..crate::tusd::Upload::default()
    };
    assert_eq!(
        kept_reason(signed_plan(&forged).unwrap_err()),
        "upload_id_invalid"
    );
    // ... or claiming the victim's (valid) ID for the planted file: the mover
    // wants the data file to be <dir>/<ID>.
    let mut forged = forged;
    forged.id = id_of(&victim);
    let plan = signed_plan(&forged).unwrap();
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::IdMismatch
    );
    assert!(!env.store().join("public/avatars/victim.png").exists());

    // The victim finishes: its own upload lands (no `exists`).
    fs::write(info_of(&victim), info).unwrap();
    let got = reconcile_publish(&env.roots);
    let landed: Vec<_> = got
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(landed, [id_of(&victim)], "{got:?}");
    assert_eq!(
        fs::read(env.store().join("public/avatars/victim.png")).unwrap(),
        PNG
    );
}

/// An upload whose token expired long ago still lands when pre-create
/// issued its ID (large uploads outlive tokens), and IDs issued under a
/// secret still configured after a rotation verify.
#[test]
fn signed_ids_publish_after_expiry_and_across_rotation() {
    use crate::policy::Visibility::*;
    use crate::token::upload_id::Kind;
    let env = Env::new();
    let meta = crate::token::upload::mint(
        crate::tusd::testing::S1.as_bytes(),
        "old.pdf",
        "application/pdf",
        Private,
        1_000,
    );
    let src = signed_upload(env.up(), &meta, Kind::Whole, 9, PDF, "");
    let got = reconcile_publish(&env.roots);
    assert!(got[0].1.is_ok(), "{got:?}");
    assert!(!src.exists());
    // Rotation: issued under S1, verified under [S2, S1].
    let src = signed_upload(env.up(), &meta, Kind::Whole, 10, PDF, "");
    let u = scan_pending(env.up()).unwrap().finished[0].as_upload();
    use crate::tusd::testing::{storage_config, upload_config, S1, S2};
    let (st, rotated, dropped) = (storage_config(), upload_config(&[S2, S1]), upload_config(&[S2]));
    let gate = |up| crate::tusd::Gate {
        upload: up,
        storage: &st,
        upload_ids: crate::token::upload_id::UploadIds::Signed,
    };
    assert!(crate::tusd::postfinish::plan(&u, gate(&rotated)).is_ok());
    // S1 dropped: neither the token nor the ID verifies.
    assert!(crate::tusd::postfinish::plan(&u, gate(&dropped)).is_err());
    assert_untouched(&src, PDF);
}

/// A final upload in `signed` mode: its parts must carry IDs issued for the
/// same grant as partial uploads, and the on-disk record must name exactly the
/// parts the plan verified.
#[test]
fn signed_final_uploads_take_only_their_own_verified_parts() {
    use crate::policy::Visibility::*;
    use crate::token::upload_id::Kind;
    let env = Env::new();
    let meta = signed("big.bin", "application/octet-stream", Public);
    let partial = r#""IsPartial":true,"#;
    let p1 = signed_upload(env.up(), &meta, Kind::Partial, 1, b"hello ", partial);
    let p2 = signed_upload(env.up(), &meta, Kind::Partial, 2, b"world", partial);
    let (i1, i2) = (id_of(&p1), id_of(&p2));
    let final_upload = |parts: &[&str], nonce: u8| {
        let flags = format!(r#""IsFinal":true,"PartialUploads":{},"#, serde_json::json!(parts));
        signed_upload(env.up(), &meta, Kind::Whole, nonce, b"hello world", &flags)
    };
    let event = |data: &Path, parts: &[&str]| crate::tusd::Upload {
        id: id_of(data),
        size: Some(11),
        offset: 11,
        metadata: meta.clone(),
        is_final: true,
        partial_uploads: parts.iter().map(|p| p.to_string()).collect(),
        storage: Some(crate::tusd::protocol::Storage {
            kind: Some("filestore".into()),
            path: Some(data.display().to_string()),
            info_path: None,
            bucket: None,
            key: None,
        }),
        ..crate::tusd::Upload::default()
    };

    // A whole upload's ID (same grant) posing as a part: refused at planning.
    let whole = signed_upload(env.up(), &meta, Kind::Whole, 3, b"world", partial);
    let fin = final_upload(&[&i1, &id_of(&whole)], 20);
    assert_eq!(
        kept_reason(signed_plan(&event(&fin, &[&i1, &id_of(&whole)])).unwrap_err()),
        "concat_invalid"
    );
    // An event naming verified parts the record does not: refused by the mover.
    let fin = final_upload(&[&i1, &id_of(&whole)], 21);
    let plan = signed_plan(&event(&fin, &[&i1, &i2])).unwrap();
    assert_eq!(
        finalize(&env.roots, &plan, &Cancel::new()).unwrap_err(),
        FinalizeError::ConcatInvalid
    );
    assert!(!env.store().join("public/big.bin").exists());

    // The real thing, the way the reconciler finds it.
    let fin = final_upload(&[&i1, &i2], 22);
    let plan = signed_plan(
        &scan_pending(env.up())
            .unwrap()
            .finished
            .iter()
            .find(|u| u.id == id_of(&fin))
            .unwrap()
            .as_upload(),
    )
    .unwrap();
    let got = finalize(&env.roots, &plan, &Cancel::new()).unwrap();
    assert_eq!(fs::read(&got.destination).unwrap(), b"hello world");
    assert!(!p1.exists() && !p2.exists(), "parts go after the publish");
}
