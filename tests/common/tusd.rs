//! tusd, the tus server the deployment ships, as a real process: v2.9.1 (the
//! version `deploy/` and `tusd/` name) and v1.13.0 (the last v1 release, whose
//! hook protocol is the `Hook-Name` one). `scripts/test.sh` builds both into
//! `.peers/bin/tusd-<version>`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, peers_dir, repo, require_peer, wait_port};

/// A tusd release the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// v2.9.1: JSON answers (`{"Type","Event"}` requests, no `Hook-Name`).
    V2,
    /// v1.13.0: the hook's status and body are the answer (`Hook-Name` header).
    /// Its `-help` takes the same flags [`Tusd::start`] passes (`-upload-dir`
    /// included); it differs in `-hooks-http-backoff` (whole seconds, `1`, not a
    /// duration) and has no `-hooks-http-timeout` and no `-disable-concatenation`.
    V1,
}

impl Version {
    /// The release tag, as `tusd -version` prints it.
    pub fn tag(self) -> &'static str {
        match self {
            Version::V2 => "v2.9.1",
            Version::V1 => "v1.13.0",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Version::V2 => "github.com/tus/tusd/v2",
            Version::V1 => "github.com/tus/tusd",
        }
    }

    /// How `scripts/test.sh` installs it (Go, no cgo, the version string set).
    pub fn install_command(self) -> String {
        let (tag, module) = (self.tag(), self.module());
        format!(
            "d=$(mktemp -d) && GOBIN=$d CGO_ENABLED=0 go install \
             -ldflags \"-X {module}/cmd/tusd/cli.VersionName={tag}\" {module}/cmd/tusd@{tag} \
             && mkdir -p .peers/bin && mv \"$d/tusd\" .peers/bin/tusd-{tag}"
        )
    }
}

/// The tusd binary of `version`; fails the test with the install command when
/// it is missing or reports another version.
pub fn tusd_bin(version: Version) -> PathBuf {
    let name = format!("tusd-{}", version.tag());
    let bin = require_peer(
        &name,
        &[peers_dir().join("bin").join(&name)],
        &version.install_command(),
    );
    let out = Command::new(&bin)
        .arg("-version")
        .output()
        .expect("run tusd -version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim() == format!("Version: {}", version.tag())),
        "{} is not tusd {} (`-version` says {text:?}). Reinstall it: {}",
        bin.display(),
        version.tag(),
        version.install_command()
    );
    bin
}

/// The hooks every test enables, as the shipped command line (no spaces: tusd
/// refuses `pre-create, post-finish`).
pub const HOOK_EVENTS: &str = "pre-create,pre-finish,post-finish";

/// A running tusd; killed on drop. Its stdout and stderr (one log, appended
/// across restarts) stay in `log` for failure messages.
pub struct Tusd {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    /// Extra environment (the S3 store's region and credentials).
    env: Vec<(String, String)>,
    /// Which release.
    pub version: Version,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `-upload-dir` (absolute; shared with assetgate's `[tusd] upload_dir`).
    pub upload_dir: PathBuf,
    /// stdout + stderr.
    pub log: PathBuf,
}

impl Tusd {
    /// Starts tusd on a free loopback port with `<dir>/uploads` as upload
    /// directory, HTTP hooks to `hook_url` for [`HOOK_EVENTS`], no download
    /// endpoint, base path `/files/`, plus `extra` flags; waits until it listens.
    pub fn start(version: Version, dir: &Path, hook_url: &str, extra: &[&str]) -> Tusd {
        Self::start_env(version, dir, hook_url, extra, Vec::new())
    }

    /// Like [`start`](Self::start) with extra environment variables (the S3
    /// store's `AWS_*`: see `common::s3::S3Engine::tusd_env`).
    pub fn start_env(
        version: Version,
        dir: &Path,
        hook_url: &str,
        extra: &[&str],
        env: Vec<(String, String)>,
    ) -> Tusd {
        let port = free_port();
        let upload_dir = dir.join("uploads");
        let mut args: Vec<String> = vec![
            "-host=127.0.0.1".into(),
            format!("-port={port}"),
            format!("-upload-dir={}", upload_dir.display()),
            format!("-hooks-http={hook_url}"),
            format!("-hooks-enabled-events={HOOK_EVENTS}"),
            "-disable-download".into(),
            "-base-path=/files/".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(version, dir, port, upload_dir, args, env)
    }

    /// Starts tusd v2.9.1 with exactly the flags of the shipped `tusd/tusd.sh`
    /// (variables from `tusd/tusd.env`), only where it listens, its upload
    /// directory and the hook URL replaced.
    pub fn start_shipped(dir: &Path, hook_url: &str) -> Tusd {
        let port = free_port();
        let upload_dir = dir.join("uploads");
        let args = shipped_args(&[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("upload-dir", &upload_dir.display().to_string()),
            ("hooks-http", hook_url),
        ]);
        Self::spawn(Version::V2, dir, port, upload_dir, args, Vec::new())
    }

    /// Starts tusd v2.9.1 with exactly the flags of the shipped
    /// `tusd/tusd-s3.sh` (variables from `tusd/tusd-s3.env`), only where it
    /// listens, the S3 endpoint and the hook URL replaced; `env` is its whole
    /// AWS environment (the script reads it from the caller).
    pub fn start_shipped_s3(dir: &Path, hook_url: &str, endpoint: &str, env: Vec<(String, String)>) -> Tusd {
        let port = free_port();
        let args = shipped_args_of(
            "tusd/tusd-s3.sh",
            "tusd/tusd-s3.env",
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("s3-endpoint", endpoint),
                ("hooks-http", hook_url),
            ],
        );
        Self::spawn(Version::V2, dir, port, dir.join("uploads"), args, env)
    }

    fn spawn(
        version: Version,
        dir: &Path,
        port: u16,
        upload_dir: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Tusd {
        std::fs::create_dir_all(&upload_dir).unwrap();
        let mut t = Tusd {
            child: None,
            bin: tusd_bin(version),
            args,
            env,
            version,
            port,
            upload_dir,
            log: dir.join(format!("tusd-{}.log", version.tag())),
        };
        t.launch();
        t
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "tusd is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn tusd");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        if !wait_port(addr, Duration::from_secs(20)) {
            panic!(
                "tusd {} did not start ({:?}):\n{}",
                self.version.tag(),
                self.args,
                self.log()
            );
        }
    }

    /// Its pid while it runs (to signal it from another thread; [`restart`]
    /// reaps it).
    ///
    /// [`restart`]: Self::restart
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills tusd (SIGKILL: nothing gets a chance to clean up).
    pub fn kill(&mut self) {
        super::kill_child(&mut self.child);
    }

    /// Starts it again with the same flags, port and upload directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The tus endpoint, `http://127.0.0.1:PORT/files/`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/files/", self.port)
    }

    /// Everything tusd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The upload directory's data files (everything but `.info` and `.lock`).
    pub fn data_files(&self) -> Vec<String> {
        super::files_under(&self.upload_dir)
            .into_iter()
            .filter(|f| !f.ends_with(".info") && !f.ends_with(".lock"))
            .collect()
    }
}

impl Drop for Tusd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The flags of the shipped `tusd/tusd.sh`'s `exec tusd …` line, as
/// `-name=value` / `-name`, with `${VAR:?…}` / `${VAR:-default}` taken from
/// `tusd/tusd.env`, and each `overrides` flag (which must occur exactly once)
/// given its new value.
pub fn shipped_args(overrides: &[(&str, &str)]) -> Vec<String> {
    shipped_args_of("tusd/tusd.sh", "tusd/tusd.env", overrides)
}

/// [`shipped_args`] for another shipped script and its env file.
pub fn shipped_args_of(script: &str, env_file_name: &str, overrides: &[(&str, &str)]) -> Vec<String> {
    let env = env_file(&repo().join(env_file_name));
    let sh = std::fs::read_to_string(repo().join(script)).unwrap();
    let exec = &sh[sh
        .find("exec tusd")
        .unwrap_or_else(|| panic!("{script}: `exec tusd`"))
        + "exec tusd".len()..];
    let mut words = Vec::new();
    for line in exec.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        words.extend(shell_words(line.trim_end_matches('\\'), &env));
    }
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut it = words.into_iter().peekable();
    while let Some(w) = it.next() {
        let name = w
            .strip_prefix('-')
            .unwrap_or_else(|| panic!("{script}: `{w}` is not a flag"))
            .to_string();
        if let Some((n, v)) = name.split_once('=') {
            flags.push((n.to_string(), Some(v.to_string())));
        } else if it.peek().is_some_and(|next| !next.starts_with('-')) {
            flags.push((name, it.next()));
        } else {
            flags.push((name, None));
        }
    }
    for (name, value) in overrides {
        let hits: Vec<_> = flags.iter_mut().filter(|(n, _)| n == name).collect();
        assert_eq!(hits.len(), 1, "{script} must set -{name} exactly once");
        for (_, v) in hits {
            *v = Some(value.to_string());
        }
    }
    flags
        .into_iter()
        .map(|(n, v)| match v {
            Some(v) => format!("-{n}={v}"),
            None => format!("-{n}"),
        })
        .collect()
}

/// `KEY=VALUE` lines of an environment file.
pub fn env_file(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Splits one line of the shell script into words: whitespace separates,
/// double quotes group, `${NAME…}` expands from `env` (all tusd.sh uses).
fn shell_words(line: &str, env: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut in_word) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let expr: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (expr.split(":?").next().unwrap().to_string(), None),
                };
                let value = env
                    .get(&name)
                    .cloned()
                    .or(default)
                    .unwrap_or_else(|| panic!("tusd.sh uses ${{{name}}}, tusd.env does not set it"));
                cur.push_str(&value);
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}
