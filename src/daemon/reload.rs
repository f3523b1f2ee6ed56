//! Reloading the configuration without a restart.
//!
//! Triggers: `SIGHUP` (`systemctl reload`, `kill -HUP`), and a change of a
//! secret file named by `ASSETGATE_{LINK,UPLOAD}_SECRET_FILE` or of the
//! configuration file (a Kubernetes ConfigMap is swapped like a Secret; an
//! image without a shell has no `kill`).
//!
//! - The whole configuration is loaded again exactly as at start (defaults <
//!   file < environment, the secret files re-read by the same bounded reader,
//!   `crate::config::read`) and validated. An invalid one is refused: the
//!   running configuration stays, one log line names the key,
//!   `assetgate_config_reloads_total{result="refused"}` counts it (and
//!   `assetgate_config_reload_refusals_total{reason}` why).
//! - A valid one is installed atomically (`arc-swap`): a request loads the
//!   configuration once and finishes on it, so secrets and policy switch
//!   between two requests, never inside one.
//! - Keys read only at start (addresses, threads, `[server]`, `[state]`,
//!   paths, logging) keep their running values; a change to them logs one line
//!   naming them: a restart is needed.
//!
//! # A reload never widens the policy by omission
//!
//! A key left out of the file takes its default, and several defaults are the
//! open ones (`content_types = []` is any type, no `max_size` is no limit,
//! `check_content = false`). A file rewritten in place and cut short (a writer
//! that died, a full disk) is often still valid TOML (cut after `[upload]`, it
//! is), so validation alone would install a wider policy (issue 19, finding 9).
//! Three checks, from the cheapest to the one that decides:
//!
//! 1. *Consistent reads*: the reader refuses a file whose size, times or inode
//!    change while it is read (it reads it again first).
//! 2. *Settled files*: a file touched less than [`QUIET`] before it was read
//!    may still be being written (a SIGHUP does not wait for the watch's quiet
//!    period): the reload waits until it has been quiet that long and stats it
//!    again; changed, everything is read again ([`SETTLE_ATTEMPTS`] times, then
//!    refused as `changing`). A stamp is the inode, size and times: a rewrite
//!    of the same size within one tick of the kernel's clock is not seen (its
//!    own watch events reload again).
//! 3. *No dropped keys in place*: a reload whose configuration file lacks keys
//!    the running configuration's file had is refused (`dropped_keys`; the log
//!    names the keys, never a value) unless the file was replaced whole since
//!    (a new inode: `rename(2)`, Kubernetes' `..data` swap, `install`, most
//!    editors, every configuration-management tool). A writer cut short leaves
//!    the inode it was writing; a whole new file comes by rename. To remove
//!    keys, replace the file atomically or restart. A cut that keeps every key
//!    (inside a number) cannot be told from an edit; checks 1 and 2 make that
//!    window the writer's own pauses.
//!
//! # Bounded in time
//!
//! The reader never blocks on a FIFO or a device, but a read of a regular file
//! can still hang (a hung network file system). Each read runs on the blocking
//! pool for at most [`READ_TIMEOUT`]; past it the reload is refused
//! (`timeout`) and the next one starts fresh, so later rotations still apply.
//! A read that hangs keeps its thread until it returns; at most
//! [`MAX_STUCK_READS`] may, beyond which a reload is refused at once rather
//! than piling up threads. A late result is dropped, never installed: only the
//! reload task installs, after the read it waited for.
//!
//! # Watching secret files
//!
//! The `notify` crate (inotify on Linux; what cargo-watch, watchexec and
//! rust-analyzer use) watches the *directory* of each secret file, not the file:
//! Kubernetes updates a mounted Secret by writing a new hidden directory and
//! renaming the `..data` symlink over the old one, so the file's own inode never
//! changes and a watch on it would never fire; editors and `install` also
//! replace files by rename. Events for the file's name or Kubernetes' `..`
//! entries start a reload after a short quiet period ([`DEBOUNCE`]), so one swap
//! (several events) is one reload. Polling was the alternative: it needs no
//! thread but either wakes every interval forever or notices late; inotify
//! costs nothing while nothing changes. The quiet period is a few lines on the tokio
//! side rather than `notify-debouncer-full`: that crate runs its own timer
//! thread and hands batches over its own channel, while here file events and
//! SIGHUP must be merged into one reload queue anyway. systemd credentials (`LoadCredential=`)
//! are copied when the service starts and do not change: there, update the
//! source file and `systemctl restart`, or point `*_SECRET_FILE` at a path you
//! replace and send `systemctl reload`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, Sources, Stamp};
use crate::http::AppState;
use crate::metrics::{ReloadRefusal, ReloadResult};
use crate::secret::SecretSet;

/// Quiet period after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A file touched less than this long before it was read is checked again
/// once it has been quiet this long (the watch's quiet period).
pub const QUIET: Duration = DEBOUNCE;

/// Reads of one reload while the files keep changing right after being read.
pub const SETTLE_ATTEMPTS: usize = 3;

/// How long reading the files of one reload may take: the files are small
/// and capped (a few milliseconds on a local disk); ten seconds allows a slow
/// network file system and still lets the next rotation through.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Timed-out reads that may still hold a blocking thread.
pub const MAX_STUCK_READS: usize = 2;

/// What started a reload (log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP`.
    Signal,
    /// A watched file changed: a secret file or the configuration file.
    FileChange,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChange => "file_change",
        }
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new configuration is in force; the keys that need a restart.
    Applied(Vec<&'static str>),
    /// Nothing reloadable changed; the keys that need a restart.
    Unchanged(Vec<&'static str>),
    /// Refused: the running configuration stays.
    Refused(Refusal),
}

/// Why a reload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The new configuration is invalid: a key, or a file it names (not a
    /// regular file, too large, not text, a secret that is not printable).
    Invalid(ConfigError),
    /// The configuration file was rewritten in place without these keys,
    /// which the running configuration's file has (sorted, dotted).
    DroppedKeys(Vec<String>),
    /// The files kept changing right after being read.
    Changing,
    /// Reading the files did not finish in time (or earlier reads that did
    /// not are still running).
    TimedOut {
        /// The time allowed.
        after: Duration,
        /// Reads still running.
        stuck: usize,
    },
}

impl Refusal {
    fn reason(&self) -> ReloadRefusal {
        match self {
            Refusal::Invalid(_) => ReloadRefusal::Invalid,
            Refusal::DroppedKeys(_) => ReloadRefusal::DroppedKeys,
            Refusal::Changing => ReloadRefusal::Changing,
            Refusal::TimedOut { .. } => ReloadRefusal::Timeout,
        }
    }
}

/// `new` with every key that is only read at start taken from `running`, and
/// the names of those that differed (compared as typed values: a redacted
/// `Debug` hides a changed secret or URL path).
pub fn merge(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut restart = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if new.$($field)+ != running.$($field)+ {
                restart.push($name);
            }
            new.$($field)+ = running.$($field)+.clone();
        };
    }
    keep!("listen", listen);
    keep!("log_level", log_level);
    keep!("log_format", log_format);
    keep!("server.header_read_timeout", server.header_read_timeout);
    keep!("server.body_read_timeout", server.body_read_timeout);
    keep!("server.request_timeout", server.request_timeout);
    keep!("server.max_connections", server.max_connections);
    keep!("server.max_tusd_requests", server.max_tusd_requests);
    keep!("server.shutdown_grace", server.shutdown_grace);
    keep!("server.max_body_bytes", server.max_body_bytes);
    keep!("server.worker_threads", server.worker_threads);
    keep!("server.admin_listen", server.admin_listen);
    // Any [server] key added later is start-only too.
    keep!("server", server);
    keep!("storage.root", storage.root);
    // On S3 the prefixes are where the running publisher writes and what
    // the loader checked against the running upload prefix (apart from it,
    // from assetgate's own, from each other): a reload must not move them
    // under tusd's uploads (the gate would sign `tus/…` as public).
    if running.storage.s3.is_some() || new.storage.s3.is_some() {
        keep!("storage.public_prefix", storage.public_prefix);
        keep!("storage.private_prefix", storage.private_prefix);
    }
    // The S3 client (and the self-test's choice) are made once, at start.
    keep!("storage.backend", storage.backend);
    keep!("storage.s3", storage.s3);
    // Derived from storage.s3: the running one signs, or /auth would sign for
    // another store or bucket than the one kept (and logged as kept).
    new.s3_signer = running.s3_signer.clone();
    keep!("tusd.upload_dir", tusd.upload_dir);
    keep!("tusd.reconcile_interval", tusd.reconcile_interval);
    // The delivery loop, its client and the outbox are set up once.
    keep!("events", events);
    keep!("state", state);
    new.source = running.source.clone();
    new.secret_files = running.secret_files.clone();
    (new, restart)
}

/// The configuration file as the running configuration read it: which file,
/// and the keys it set.
type FileKeys = (Stamp, BTreeSet<String>);

/// The keys of `running` (the running configuration's file) that `new`
/// lacks, when `new` is the same file rewritten in place; none when the file
/// was replaced whole (a new inode) or there is no file.
pub fn dropped_keys(running: Option<&FileKeys>, new: Option<&FileKeys>) -> Vec<String> {
    match (running, new) {
        (Some((was, old_keys)), Some((now, new_keys))) if was.same_file(now) => {
            old_keys.difference(new_keys).cloned().collect()
        }
        _ => Vec::new(),
    }
}

/// Installs `new` unless it is refused. `running_file`: the configuration
/// file the running configuration was read from. `dev`: the running secrets
/// were generated (`serve --dev`) and stay when the file and environment
/// still name none.
pub fn decide(
    state: &AppState,
    mut new: Config,
    running_file: Option<&FileKeys>,
    dev: bool,
) -> ReloadOutcome {
    let running = state.current_owned();
    if dev {
        keep_if_empty(&mut new.link.secrets, &running.link.secrets);
        keep_if_empty(&mut new.upload.secrets, &running.upload.secrets);
        // The temporary upload tree `--dev` made (`super::dev::Playground`)
        // stays too: a reload of a configuration that names no tree is not
        // a change that needs a restart.
        if new.storage.root.is_none() && new.tusd.upload_dir.is_none() {
            new.storage.root.clone_from(&running.storage.root);
            new.tusd.upload_dir.clone_from(&running.tusd.upload_dir);
        }
    }
    if new.link.secrets.is_empty() && new.upload.secrets.is_empty() {
        return ReloadOutcome::Refused(Refusal::Invalid(ConfigError {
            key: "link.secrets".into(),
            message: "the new configuration has no secret at all".into(),
        }));
    }
    let dropped = dropped_keys(running_file, new.origin.file.as_ref());
    if !dropped.is_empty() {
        return ReloadOutcome::Refused(Refusal::DroppedKeys(dropped));
    }
    let (new, restart) = merge(&running, new);
    if new == *running {
        return ReloadOutcome::Unchanged(restart);
    }
    state.install(new);
    ReloadOutcome::Applied(restart)
}

fn keep_if_empty(new: &mut SecretSet, running: &SecretSet) {
    if new.is_empty() {
        *new = running.clone();
    }
}

/// Loads a configuration (the files read on the calling thread).
pub type Loader = Arc<dyn Fn(&Sources) -> Result<Config, ConfigError> + Send + Sync>;

/// Runs reloads one after the other: reads the files on the blocking pool,
/// bounded in time, and decides in the task.
pub struct Reloader {
    state: Arc<AppState>,
    sources: Sources,
    dev: bool,
    load: Loader,
    timeout: Duration,
    /// Timed-out reads still running.
    stuck: Arc<AtomicUsize>,
    /// The configuration file the running configuration was read from
    /// (updated by every reload that is not refused).
    file: Option<FileKeys>,
}

impl Reloader {
    /// Reloads `state`'s configuration from `sources` with [`config::load`].
    pub fn new(state: Arc<AppState>, sources: Sources, dev: bool) -> Self {
        let file = state.config.origin.file.clone();
        Reloader {
            state,
            sources,
            dev,
            load: Arc::new(config::load),
            timeout: READ_TIMEOUT,
            stuck: Arc::new(AtomicUsize::new(0)),
            file,
        }
    }

    /// Another loader and read timeout (tests).
    pub fn with_loader(mut self, load: Loader, timeout: Duration) -> Self {
        self.load = load;
        self.timeout = timeout;
        self
    }

    /// `f` on the blocking pool, for at most the read timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let stuck = self.stuck.load(Ordering::Acquire);
        if stuck >= MAX_STUCK_READS {
            return Err(Refusal::TimedOut {
                after: self.timeout,
                stuck,
            });
        }
        let mut task = tokio::task::spawn_blocking(f);
        match tokio::time::timeout(self.timeout, &mut task).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Refusal::Invalid(ConfigError::new(
                "reload",
                format!("the reload task failed: {e}"),
            ))),
            Err(_) => {
                let stuck = self.stuck.fetch_add(1, Ordering::AcqRel) + 1;
                let count = self.stuck.clone();
                // The thread cannot be stopped; its result is dropped.
                tokio::spawn(async move {
                    let _ = task.await;
                    count.fetch_sub(1, Ordering::AcqRel);
                });
                Err(Refusal::TimedOut {
                    after: self.timeout,
                    stuck,
                })
            }
        }
    }

    /// Reads the configuration until the files it was read from are settled.
    async fn read_settled(&self) -> Result<Config, Refusal> {
        for _ in 0..SETTLE_ATTEMPTS {
            let (load, sources) = (self.load.clone(), self.sources.clone());
            let new = self
                .blocking(move || load(&sources))
                .await?
                .map_err(Refusal::Invalid)?;
            if self.settled(&new.origin.read).await? {
                return Ok(new);
            }
        }
        Err(Refusal::Changing)
    }

    /// Whether the files read are as they were read [`QUIET`] after the
    /// last touch of any of them (at once when that is long past).
    async fn settled(&self, read: &[(PathBuf, Stamp)]) -> Result<bool, Refusal> {
        let Some(latest) = read.iter().map(|(_, s)| s.touched()).max() else {
            return Ok(true);
        };
        // A time in the future (clock steps, another host's clock) counts as now.
        let age = SystemTime::now().duration_since(latest).unwrap_or_default();
        if age >= QUIET {
            return Ok(true);
        }
        tokio::time::sleep(QUIET - age).await;
        let read = read.to_vec();
        self.blocking(move || {
            read.iter()
                .all(|(path, stamp)| Stamp::of_path(path).ok() == Some(*stamp))
        })
        .await
    }

    /// One reload: read, decide, then log and count it.
    pub async fn run_once(&mut self, trigger: Trigger) -> ReloadOutcome {
        let outcome = match self.read_settled().await {
            Ok(new) => {
                let file = new.origin.file.clone();
                let outcome = decide(&self.state, new, self.file.as_ref(), self.dev);
                if !matches!(outcome, ReloadOutcome::Refused(_)) {
                    self.file = file;
                }
                outcome
            }
            Err(refusal) => ReloadOutcome::Refused(refusal),
        };
        report(&self.state, trigger, &outcome);
        outcome
    }
}

/// Logs and counts a reload.
fn report(state: &AppState, trigger: Trigger, outcome: &ReloadOutcome) {
    let trigger = trigger.as_str();
    const REFUSED: &str = "configuration reload refused, the running configuration stays";
    match outcome {
        ReloadOutcome::Applied(restart) => {
            state.metrics.count_reload(ReloadResult::Applied);
            let cfg = state.current();
            tracing::info!(
                trigger,
                link_secrets = cfg.link.secrets.len(),
                upload_secrets = cfg.upload.secrets.len(),
                "configuration reloaded: new secrets and policy in force"
            );
            log_restart(restart);
        }
        ReloadOutcome::Unchanged(restart) => {
            state.metrics.count_reload(ReloadResult::Unchanged);
            tracing::info!(trigger, "configuration reloaded: nothing changed");
            log_restart(restart);
        }
        ReloadOutcome::Refused(refusal) => {
            state.metrics.count_reload_refusal(refusal.reason());
            let reason = refusal.reason().as_str();
            match refusal {
                Refusal::Invalid(e) => {
                    tracing::error!(trigger, reason, key = e.key.as_str(), "{REFUSED}: {e}")
                }
                Refusal::DroppedKeys(keys) => tracing::error!(
                    trigger,
                    reason,
                    key = "--config",
                    dropped = keys.join(", "),
                    "{REFUSED}: the configuration file was rewritten in place without keys the running configuration has \
                     ({}): a half-written file? To remove keys, replace the file atomically (write a temporary file, \
                     rename it over) or restart",
                    keys.join(", ")
                ),
                Refusal::Changing => tracing::error!(
                    trigger,
                    reason,
                    key = "--config",
                    "{REFUSED}: the files kept changing right after being read (written in place?); \
                     the next change reloads again"
                ),
                Refusal::TimedOut { after, stuck } => tracing::error!(
                    trigger,
                    reason,
                    key = "reload",
                    stuck,
                    "{REFUSED}: reading the configuration and secret files did not finish within {after:?} \
                     (a hung file system?); {stuck} read(s) still running"
                ),
            }
        }
    }
}

fn log_restart(keys: &[&'static str]) {
    if !keys.is_empty() {
        tracing::warn!(
            keys = keys.join(", "),
            "changed keys that are read only at start: their running values stay; restart to apply them"
        );
    }
}

/// Runs the reload triggers until `stop` is cancelled: `hup` (the SIGHUP
/// stream, registered before the listener was bound, so SIGHUP never kills
/// the daemon) and a watch on the secret files' directories, merged into one
/// queue; reloads run one after the other. A reload under way when `stop`
/// fires is dropped: it has installed nothing yet (a read left on the
/// blocking pool runs on, its result unused), or it is done.
pub async fn run(
    state: Arc<AppState>,
    sources: Sources,
    dev: bool,
    mut hup: tokio::signal::unix::Signal,
    stop: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Trigger>();
    let sig_tx = tx.clone();
    let metrics = state.metrics.clone();
    let signals = async move {
        while hup.recv().await.is_some() {
            metrics.count_sighup();
            if sig_tx.send(Trigger::Signal).is_err() {
                return;
            }
        }
    };
    // The secret files and the configuration file (a Kubernetes ConfigMap is
    // swapped like a Secret). Dropping the watcher (when this returns) stops
    // the watch.
    let mut watched = state.config.secret_files.clone();
    watched.extend(state.config.source.clone());
    let _watcher = watch_files(&watched, tx);
    let mut reloader = Reloader::new(state, sources, dev);
    let reloads = async move {
        while let Some(first) = rx.recv().await {
            let mut trigger = first;
            // A Kubernetes swap is several events, a file written in place
            // several writes: wait until the files have been quiet for
            // DEBOUNCE (a SIGHUP alone reloads at once).
            let mut pending = first == Trigger::FileChange;
            while pending {
                tokio::time::sleep(DEBOUNCE).await;
                pending = false;
                while let Ok(t) = rx.try_recv() {
                    pending |= t == Trigger::FileChange;
                    if t == Trigger::Signal {
                        trigger = t;
                    }
                }
            }
            while let Ok(t) = rx.try_recv() {
                if t == Trigger::Signal {
                    trigger = t;
                }
            }
            reloader.run_once(trigger).await;
        }
    };
    stop.run_until_cancelled(async { tokio::join!(signals, reloads) })
        .await;
}

/// Watches the directory of each file; `None` when there is none or the
/// watch cannot be set up (logged: SIGHUP still reloads).
fn watch_files(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<Trigger>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher as _};
    if files.is_empty() {
        return None;
    }
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(Into::into))
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.iter().any(|w| w == n) || n.to_string_lossy().starts_with(".."))
        });
        if relevant {
            let _ = tx.send(Trigger::FileChange);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the secret files; reload with SIGHUP");
            return None;
        }
    };
    let mut dirs: Vec<&Path> = files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "watching for secret file changes"),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch this secret directory; reload with SIGHUP")
            }
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::clock::SystemClock;
    use crate::metrics::Metrics;
    use crate::publisher::Finalizer;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        config::load_from(&Sources { file: Some(p) }, &[]).unwrap()
    }

    const BASE: &str = "[link]\nsecrets = [\"link-secret-0123456789\"]\n";

    #[test]
    fn start_only_keys_keep_their_running_values() {
        let running = load(BASE);
        let new = load(&format!(
            "listen = \"127.0.0.1:1\"\n[server]\nworker_threads = 7\n[upload]\nmax_size = 10\n{BASE}"
        ));
        let (merged, restart) = merge(&running, new);
        assert_eq!(restart, vec!["listen", "server.worker_threads"]);
        assert_eq!(merged.listen, running.listen);
        assert_eq!(merged.server.worker_threads, running.server.worker_threads);
        assert_eq!(merged.upload.max_size, Some(10), "policy is reloadable");
    }

    #[test]
    fn state_section_is_start_only() {
        let running = load(BASE);
        let new = load(&format!(
            "{BASE}[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1/0\"\n"
        ));
        let (merged, restart) = merge(&running, new);
        assert_eq!(restart, vec!["state"]);
        assert_eq!(merged.state, running.state);
    }

    /// `[storage.s3]` is start-only, and on S3 so are the two prefixes and
    /// the download signer derived from `storage.s3`: a reload that moves the
    /// public prefix onto tusd's uploads or points at another store is named
    /// and the running values stay (the reviewer's case: the signer was the
    /// new file's, signing for a store the log said was kept).
    #[test]
    fn on_s3_the_prefixes_and_the_signer_are_start_only() {
        let s3 = |extra_storage: &str, endpoint: &str, upload_prefix: &str| {
            load(&format!(
                "{BASE}[storage]\nbackend = \"s3\"\n{extra_storage}[storage.s3]\nendpoint = \"{endpoint}\"\nbucket = \"assets\"\n\
                 upload_prefix = \"{upload_prefix}\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n"
            ))
        };
        let running = s3("", "http://127.0.0.1:8333", "tus/");
        let new = s3("public_prefix = \"tus\"\n", "http://other.internal:9000", "up/");
        let (merged, restart) = merge(&running, new);
        assert_eq!(restart, vec!["storage.public_prefix", "storage.s3"]);
        assert_eq!(merged.storage.public_prefix, "public");
        assert_eq!(merged.storage.s3, running.storage.s3);
        let (signer, kept) = (merged.s3_signer.unwrap(), running.s3_signer.unwrap());
        assert!(std::sync::Arc::ptr_eq(&signer, &kept), "the running signer signs");
        assert_eq!(signer.host(), "127.0.0.1:8333");
        // On fs the prefixes stay reloadable.
        let (merged, restart) = merge(
            &load(BASE),
            load(&format!("{BASE}[storage]\npublic_prefix = \"pub\"\n")),
        );
        assert_eq!(restart, Vec::<&str>::new());
        assert_eq!(merged.storage.public_prefix, "pub");
    }

    /// A secret of the same length is redacted alike in `check-config`'s
    /// view; the typed comparison sees it (and nothing else differs).
    #[test]
    fn a_secret_change_redaction_hides_is_a_change() {
        let a = load(BASE);
        let mut b = load("[link]\nsecrets = [\"link-secret-9876543210\"]\n");
        b.source = a.source.clone();
        let mut c = load(BASE);
        c.source = a.source.clone();
        assert_eq!(
            a.redacted_toml(),
            b.redacted_toml(),
            "same length: redacted alike"
        );
        assert!(a != b);
        assert!(a == c, "read twice (another origin): equal");
    }

    /// `[events]` is start-only; a change to it is named even where its
    /// `Debug` is redacted: the URL shows its origin only, a secret its
    /// length only (compared as `Debug` strings, neither change was named
    /// and the restart it needs went unsaid).
    #[test]
    fn a_start_only_change_hidden_by_a_redacted_debug_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let events = |path: &str, secret: &str| {
            format!(
                "{BASE}[events]\nurl = \"http://127.0.0.1:9/{path}\"\nsecret = \"{secret}\"\ndir = {:?}\n",
                dir.path().display().to_string()
            )
        };
        const A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const B: &str = "whsec_b3RoZXItc2VjcmV0LWtleS0wMTIzNDU2";
        let running = load(&events("hooks", A));
        assert_eq!(merge(&running, load(&events("hooks", A))).1, Vec::<&str>::new());
        let other_path = load(&events("other", A));
        assert_eq!(
            format!("{:?}", other_path.events),
            format!("{:?}", running.events),
            "the path is not in Debug"
        );
        assert_eq!(merge(&running, other_path).1, vec!["events"]);
        let other_secret = load(&events("hooks", B));
        assert_eq!(
            format!("{:?}", other_secret.events),
            format!("{:?}", running.events),
            "same length: redacted alike"
        );
        let (merged, restart) = merge(&running, other_secret);
        assert_eq!(restart, vec!["events"]);
        assert!(merged.events == running.events, "the running [events] stays");
    }

    /// `[upload] nginx_types` edited in place (same path, another table): a
    /// reload installs the new table. Compared through `check-config`'s view
    /// (the path only), the reload said "nothing changed" and kept the old one.
    #[test]
    fn an_edited_nginx_types_file_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let types = dir.path().join("types.conf");
        let cfg = format!(
            "{BASE}[upload]\nnginx_types = {:?}\n",
            types.display().to_string()
        );
        std::fs::write(&types, "types {\n    image/png png;\n}\n").unwrap();
        let state = app_state(load(&cfg));
        assert_eq!(
            state.current().upload.nginx_types.table.served_type("a.webp"),
            "application/octet-stream"
        );
        std::fs::write(&types, "types {\n    image/png png;\n    image/webp webp;\n}\n").unwrap();
        assert_eq!(
            decide(&state, load(&cfg), None, false),
            ReloadOutcome::Applied(vec![])
        );
        assert_eq!(
            state.current().upload.nginx_types.table.served_type("a.webp"),
            "image/webp"
        );
        assert_eq!(
            decide(&state, load(&cfg), None, false),
            ReloadOutcome::Unchanged(vec![])
        );
    }

    /// `serve --dev`'s temporary tree is the running configuration's own: a
    /// reload of a configuration naming no tree keeps it, and says nothing
    /// needs a restart (it said `storage.root` and `tusd.upload_dir` did).
    #[test]
    fn a_dev_reload_keeps_the_temporary_tree_quietly() {
        let mut running = load(BASE);
        running.storage.root = Some("/tmp/assetgate-dev-x/assets".into());
        running.tusd.upload_dir = Some("/tmp/assetgate-dev-x/uploads".into());
        let state = app_state(running);
        assert_eq!(
            decide(&state, load(BASE), None, true),
            ReloadOutcome::Unchanged(vec![])
        );
        assert_eq!(
            state.current().storage.root.as_deref(),
            Some(Path::new("/tmp/assetgate-dev-x/assets"))
        );
    }

    fn app_state(config: Config) -> Arc<AppState> {
        let metrics = Metrics::new();
        let finalizer = Arc::new(Finalizer::new(None, metrics.clone()));
        Arc::new(AppState::new(config, metrics, Arc::new(SystemClock), finalizer))
    }

    fn load_path(p: &Path) -> Config {
        config::load_from(
            &Sources {
                file: Some(p.to_path_buf()),
            },
            &[],
        )
        .unwrap()
    }

    /// Replaces `p` whole: written aside, renamed over (a new inode).
    fn replace(p: &Path, text: &str) {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, p).unwrap();
    }

    const POLICY: &str = "[upload]\ncontent_types = [\"image/png\"]\nmax_size = 1000\ncheck_content = true\n";

    /// Issue 19, finding 9: the file rewritten in place and cut after
    /// `[upload]` loads (valid TOML, open defaults); it is refused, naming
    /// the dropped keys. The same keys in place, or fewer keys in a file
    /// replaced whole, are applied.
    #[test]
    fn keys_dropped_in_place_are_refused_unless_the_file_was_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, format!("{BASE}{POLICY}")).unwrap();
        let running = load_path(&p);
        let file = running.origin.file.clone();
        let state = app_state(running);

        std::fs::write(&p, format!("{BASE}[upload]\n")).unwrap();
        let cut = load_path(&p);
        assert_eq!(cut.upload.max_size, None, "the cut file is valid and open");
        assert_eq!(
            decide(&state, cut, file.as_ref(), false),
            ReloadOutcome::Refused(Refusal::DroppedKeys(vec![
                "upload.check_content".into(),
                "upload.content_types".into(),
                "upload.max_size".into(),
            ]))
        );
        assert_eq!(state.current().upload.max_size, Some(1000));

        std::fs::write(&p, format!("{BASE}{}", POLICY.replace("1000", "2000"))).unwrap();
        let same_keys = load_path(&p);
        assert_eq!(
            decide(&state, same_keys, file.as_ref(), false),
            ReloadOutcome::Applied(vec![])
        );
        assert_eq!(state.current().upload.max_size, Some(2000));

        replace(&p, &format!("{BASE}[upload]\ncontent_types = [\"image/png\"]\n"));
        let replaced = load_path(&p);
        assert_eq!(
            decide(&state, replaced, file.as_ref(), false),
            ReloadOutcome::Applied(vec![])
        );
        assert_eq!(state.current().upload.max_size, None);
    }

    #[test]
    fn dropped_keys_compare_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let at = |p: &Path, k: &[&str]| (Stamp::of_path(p).unwrap(), keys(k));
        let running = at(&a, &["listen", "upload.max_size"]);
        assert_eq!(
            dropped_keys(Some(&running), Some(&at(&a, &["listen", "link.secrets"]))),
            vec!["upload.max_size".to_string()]
        );
        assert!(dropped_keys(Some(&running), Some(&at(&b, &["listen"]))).is_empty());
        assert!(dropped_keys(None, Some(&at(&a, &[]))).is_empty());
    }

    /// A read that hangs (a hung file system) is refused after the read
    /// timeout and later reloads still run; at most MAX_STUCK_READS hung
    /// reads hold a thread, then a reload is refused without reading; a late
    /// result is never installed.
    #[tokio::test]
    async fn a_hung_read_is_refused_in_time_and_later_reloads_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, BASE).unwrap();
        let state = app_state(load_path(&p));
        let sources = Sources {
            file: Some(p.clone()),
        };
        let hang = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let loader: Loader = {
            let (hang, calls) = (hang.clone(), calls.clone());
            Arc::new(move |s: &Sources| {
                calls.fetch_add(1, Ordering::SeqCst);
                while hang.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                config::load_from(s, &[])
            })
        };
        let mut r =
            Reloader::new(state.clone(), sources, false).with_loader(loader, Duration::from_millis(100));
        replace(&p, "[link]\nsecrets = [\"link-secret-new-0123456789\"]\n");
        let timed_out = |stuck| {
            ReloadOutcome::Refused(Refusal::TimedOut {
                after: Duration::from_millis(100),
                stuck,
            })
        };
        assert_eq!(r.run_once(Trigger::Signal).await, timed_out(1));
        assert_eq!(r.run_once(Trigger::Signal).await, timed_out(2));
        assert_eq!(r.run_once(Trigger::Signal).await, timed_out(2));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no third thread");
        assert_eq!(state.metrics.render().matches("reason=\"timeout\"} 3").count(), 1);

        hang.store(false, Ordering::SeqCst);
        for _ in 0..500 {
            if r.stuck.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.stuck.load(Ordering::SeqCst), 0);
        assert_eq!(
            state.current().link.secrets.newest().unwrap().expose(),
            b"link-secret-0123456789",
            "the late reads were not installed"
        );
        assert_eq!(r.run_once(Trigger::Signal).await, ReloadOutcome::Applied(vec![]));
        assert_eq!(
            state.current().link.secrets.newest().unwrap().expose(),
            b"link-secret-new-0123456789"
        );
    }

    /// A file written again right after it was read (a writer still at
    /// work when a SIGHUP came): the reload waits for the file to be quiet,
    /// sees the change and reads again, so what it installs is the file as
    /// it was left, not the state it caught.
    #[tokio::test]
    async fn a_file_changed_right_after_its_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let with_size = |n: u32| format!("{BASE}[upload]\nmax_size = {n}\n");
        std::fs::write(&p, with_size(1)).unwrap();
        let state = app_state(load_path(&p));
        std::fs::write(&p, with_size(5)).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let loader: Loader = {
            let (calls, p) = (calls.clone(), p.clone());
            Arc::new(move |s: &Sources| {
                let loaded = config::load_from(s, &[]);
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The writer goes on, in place, right after the read (another
                    // size: two writes within one tick of the kernel's clock
                    // can have the same times).
                    std::fs::write(&p, with_size(60)).unwrap();
                }
                loaded
            })
        };
        let sources = Sources {
            file: Some(p.clone()),
        };
        let mut r = Reloader::new(state.clone(), sources, false).with_loader(loader, READ_TIMEOUT);
        assert_eq!(r.run_once(Trigger::Signal).await, ReloadOutcome::Applied(vec![]));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(state.current().upload.max_size, Some(60));

        // A file just written: settled when its stamp is the same after the
        // quiet period, not when it changed meanwhile.
        std::fs::write(&p, with_size(7)).unwrap();
        let stamp = Stamp::of_path(&p).unwrap();
        assert_eq!(r.settled(&[(p.clone(), stamp)]).await, Ok(true));
        std::fs::write(&p, with_size(8)).unwrap();
        let fresh = Stamp::of_path(&p).unwrap();
        // Another size: two writes within one tick of the kernel's clock can
        // have the same times.
        std::fs::write(&p, with_size(90)).unwrap();
        assert_eq!(r.settled(&[(p.clone(), fresh)]).await, Ok(false));
    }
}
