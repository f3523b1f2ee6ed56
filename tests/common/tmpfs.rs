//! Small filesystems of a test's own: tmpfs mounts that really fill up (a full
//! disk under the events outbox) or that are another filesystem than the upload
//! directory (the mover's copy path), without touching the host's mounts.
//!
//! The mounts live in a private mount namespace held by one helper process
//! (`unshare --mount`, as root; `unshare --user --map-root-user --mount` for
//! anyone else). The daemon and the CLI run inside it through `nsenter` (it
//! `exec`s, so the child's pid is the daemon's); the test reaches the same files
//! from outside through `/proc/<holder>/root/…`. The helper waits on its stdin:
//! when the test ends, however it ends, the pipe closes, the helper exits and
//! the namespace and its mounts go with it. Nothing is left mounted on the
//! host.
//!
//! A machine where neither `unshare` form works (no util-linux, user
//! namespaces disabled and not root) fails the test with what was tried; it
//! never skips.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The namespace with its tmpfs mounts, alive as long as this value.
pub struct Mounts {
    holder: Child,
    /// Kept open: closing it ends the holder.
    _stdin: ChildStdin,
    user_ns: bool,
}

fn is_root() -> bool {
    // The owner of /proc/self is this process's effective uid.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

impl Mounts {
    /// Mounts a tmpfs at each `(dir, options)` (`dir` must exist; options as
    /// for `mount -o`, e.g. `size=2m,mode=0755`) in a new mount namespace.
    pub fn new(mounts: &[(&Path, &str)]) -> Mounts {
        let user_ns = !is_root();
        let mut script = String::from("set -e\n");
        let mut args: Vec<OsString> = Vec::new();
        for (i, (dir, opts)) in mounts.iter().enumerate() {
            assert!(
                dir.is_dir(),
                "{} must exist before it is mounted on",
                dir.display()
            );
            script.push_str(&format!(
                "mount -t tmpfs -o '{opts}' assetgate-test \"${}\"\n",
                i + 1
            ));
            args.push(dir.as_os_str().to_owned());
        }
        script.push_str("echo mounted\nexec cat >/dev/null\n");
        let mut cmd = Command::new("unshare");
        if user_ns {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let how = if user_ns {
            "unshare --user --map-root-user --mount (util-linux; unprivileged user namespaces enabled), or run the test as root"
        } else {
            "unshare --mount as root (util-linux)"
        };
        let mut holder = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot set up a test tmpfs: `unshare` did not start ({e}); this test needs {how}")
        });
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "cannot set up a test tmpfs with {how}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdin = holder.stdin.take().unwrap();
        Mounts {
            holder,
            _stdin: stdin,
            user_ns,
        }
    }

    /// `path` (as the daemon sees it) reached from outside the namespace.
    pub fn outside(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").expect("an absolute path");
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(rel)
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn enter(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["nsenter".into(), "-t".into(), self.holder.id().to_string().into()];
        if self.user_ns {
            v.push("-U".into());
            v.push("--preserve-credentials".into());
        }
        v.push("-m".into());
        v.push("--".into());
        v
    }

    /// Fills the filesystem holding `dir` (as the daemon sees it) with one
    /// file, `dir/filler`, until it answers ENOSPC. Returns the filler's path
    /// from outside (remove it to give the space back).
    pub fn fill(&self, dir: &Path) -> PathBuf {
        let path = self.outside(&dir.join("filler"));
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Whatever a partial page left, and the page cache's own accounting:
        // one byte more must not fit.
        let _ = f.sync_all();
        let mut probe = std::fs::File::create(self.outside(&dir.join("probe"))).unwrap();
        let err = probe.write_all(&chunk).and_then(|()| probe.sync_all());
        let _ = std::fs::remove_file(self.outside(&dir.join("probe")));
        assert_eq!(
            err.as_ref().err().and_then(std::io::Error::raw_os_error),
            Some(28),
            "the test filesystem is not full after filling it: {err:?}"
        );
        path
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The command prefix that runs a program with umask 000 (everything it
/// creates gets exactly the mode it asks for).
pub fn umask_000() -> Vec<OsString> {
    ["sh", "-c", "umask 000 && exec \"$@\"", "sh"]
        .iter()
        .map(OsString::from)
        .collect()
}
