//! Issue 19, finding 12 and its class: every file, directory and socket that
//! assetgate creates gets the mode chosen for who must read it, whatever the
//! umask. The daemon and the CLI run here with umask 000, so a site that asks
//! for nothing in particular (0666, 0777) shows as world-writable.
//!
//! What each creation site gives, and why:
//!
//! | what | mode | who needs it |
//! | --- | --- | --- |
//! | `events.dir` (created) | 0700 | assetgate alone (`src/events/store.rs`) |
//! | `outbox.redb` | 0600 (narrowed at open) | assetgate alone |
//! | `admin.sock` | 0600 from its first moment | assetgate's user (and root) |
//! | directories in the asset tree | the parent's read/search bits, never group/other write | nginx reads them as it reads the root (`confine::asset_dir_mode`) |
//! | `.assetgate-tmp` | 0700 | assetgate alone |
//! | a published copy | the upload's mode & 0644 | nginx reads it as tusd's umask allowed |
//! | a copy's temporary file | 0600 until complete | assetgate alone |
//!
//! The asset tree is a tmpfs (`tests/common/tmpfs.rs`) so the uploads cross a
//! filesystem and the copy path (`.assetgate-tmp`) runs; its root is 2750, as in
//! the shipped systemd install, so the setgid bit is seen carried down.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::hooks::{metadata, post, post_finish, signed_id, tusd_upload};
use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every entry under `dir`, depth first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// What was wrong, all of it (one run shows every site that fails).
#[derive(Default)]
struct Wrong(Vec<String>);

impl Wrong {
    fn mode(&mut self, p: &Path, want: u32, why: &str) {
        let got = mode(p);
        if got != want {
            self.0
                .push(format!("{} is {got:04o}, want {want:04o} ({why})", p.display()));
        }
    }

    /// Nothing under `dir` is writable by group or others.
    fn none_writable_by_others(&mut self, dir: &Path) {
        for p in walk(dir) {
            if mode(&p) & 0o022 != 0 {
                self.0
                    .push(format!("{} is {:04o}: writable by others", p.display(), mode(&p)));
            }
        }
    }

    fn outbox(&mut self, events: &Path) {
        assert!(events.is_dir());
        self.mode(events, 0o700, "events.dir: assetgate alone");
        self.mode(&events.join("outbox.redb"), 0o600, "the outbox: assetgate alone");
        let names: Vec<_> = std::fs::read_dir(events)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        if !names.iter().all(|n| n == "outbox.redb" || n == "admin.sock") {
            self.0.push(format!("left in {}: {names:?}", events.display()));
        }
    }

    /// An asset directory: the root's 0750 and its setgid bit, whatever the umask.
    fn asset_dir(&mut self, p: &Path) {
        assert!(p.is_dir(), "{}", p.display());
        self.mode(p, 0o2750, "an asset directory: the root's read bits");
    }

    fn assert_none(&self) {
        assert!(
            self.0.is_empty(),
            "{} wrong:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

struct Setup {
    dir: tempfile::TempDir,
    fs: tmpfs::Mounts,
    cfg: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        for d in ["uploads", "assets", "state"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let assets = dir.path().join("assets");
        let fs = tmpfs::Mounts::new(&[(&assets, "size=4m,mode=2750")]);
        let cfg = dir.path().join("assetgate.toml");
        let s = Setup { dir, fs, cfg };
        s.config(&s.events_dir());
        s
    }

    fn config(&self, events: &Path) {
        std::fs::write(
            &self.cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n\
                 [link]\nsecrets = [\"{LINK_SECRET}\"]\n\
                 [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n\
                 [storage]\nroot = {:?}\n\
                 [tusd]\nupload_dir = {:?}\nreconcile_interval = 0\n\
                 [events]\nurl = \"http://127.0.0.1:{}/hooks\"\n\
                 secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ndir = {:?}\n",
                self.assets().display().to_string(),
                self.uploads().display().to_string(),
                free_port(),
                events.display().to_string(),
            ),
        )
        .unwrap();
    }

    fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    /// As the daemon sees it.
    fn assets(&self) -> PathBuf {
        self.dir.path().join("assets")
    }

    /// As the test sees it (the tmpfs is in the daemon's mount namespace).
    fn assets_outside(&self) -> PathBuf {
        self.fs.outside(&self.assets())
    }

    fn events_dir(&self) -> PathBuf {
        self.dir.path().join("state/events")
    }

    /// nsenter … sh -c 'umask 000 && exec "$@"' sh
    fn wrapper(&self) -> Vec<std::ffi::OsString> {
        let mut w = self.fs.enter();
        w.extend(tmpfs::umask_000());
        w
    }

    /// `assetgate --config … ARGS` with umask 000, in the namespace.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let w = self.wrapper();
        let out = Command::new(&w[0])
            .args(&w[1..])
            .arg(bin())
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .env_remove("ASSETGATE_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A finished upload laid out as tusd does, under the ID pre-create
    /// would have issued (the default `[tusd] upload_ids = "signed"`; `nonce`
    /// tells uploads apart), its data file `data_mode`.
    fn upload(&self, nonce: u8, key: &str, data: &[u8], data_mode: u32) -> (PathBuf, serde_json::Value) {
        let meta = metadata(
            UPLOAD_SECRET,
            key,
            "private",
            "application/octet-stream",
            now() + 3600,
        );
        let id = signed_id(&meta, nonce);
        let id = id.as_str();
        let (path, info) = tusd_upload(&self.uploads(), id, &meta, data);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(data_mode)).unwrap();
        (path.clone(), post_finish(id, &meta, data.len(), &path, &info))
    }
}

#[test]
fn everything_assetgate_creates_has_its_mode_whatever_the_umask() {
    let s = Setup::new();
    let daemon = Daemon::start_file_via(&s.wrapper(), &s.cfg, &[], &[]);

    // The daemon: the outbox, its socket, a published copy and its directories.
    let (_, ev) = s.upload(1, "a/b/c.bin", b"published by a copy", 0o640);
    let (status, _, body) = post(daemon.addr, ev.to_string().as_bytes(), &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let published = s.assets_outside().join("private/a/b/c.bin");
    assert!(
        wait_for_file(&published, Duration::from_secs(10)).is_some(),
        "{:#?}",
        daemon.logs()
    );
    assert!(
        daemon.logs().iter().any(|l| l.contains("\"method\":\"copied\"")),
        "the copy path ran: {:#?}",
        daemon.logs()
    );
    let mut wrong = Wrong::default();
    let events = s.events_dir();
    wrong.outbox(&events);
    let sock = events.join("admin.sock");
    assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    wrong.mode(&sock, 0o600, "the admin socket: assetgate alone");
    for d in ["private", "private/a", "private/a/b"] {
        wrong.asset_dir(&s.assets_outside().join(d));
    }
    wrong.mode(
        &s.assets_outside().join(".assetgate-tmp"),
        0o2700,
        "assetgate alone (setgid from the root)",
    );
    wrong.mode(&published, 0o640, "the upload's mode");
    wrong.none_writable_by_others(&s.assets_outside());
    wrong.none_writable_by_others(&s.dir.path().join("state"));
    drop(daemon);

    // The CLI with the daemon stopped: `events list` creates a missing outbox,
    // `finalize-pending` publishes (a world-writable upload: its copy is not)
    // and creates directories and an outbox of its own.
    let cli_events = s.dir.path().join("state/cli-events");
    s.config(&cli_events);
    s.cli(&["events", "list"]);
    wrong.outbox(&cli_events);
    std::fs::remove_dir_all(&cli_events).unwrap();
    s.upload(2, "d/e/f.bin", b"moved by finalize-pending", 0o666);
    let out = s.cli(&["finalize-pending"]);
    let published = s.assets_outside().join("private/d/e/f.bin");
    assert!(published.is_file(), "{}", String::from_utf8_lossy(&out.stdout));
    wrong.mode(
        &published,
        0o644,
        "the upload's mode less write for group and others",
    );
    for d in ["private/d", "private/d/e"] {
        wrong.asset_dir(&s.assets_outside().join(d));
    }
    wrong.outbox(&cli_events);
    wrong.none_writable_by_others(&s.assets_outside());
    wrong.none_writable_by_others(&s.dir.path().join("state"));
    wrong.assert_none();
}
