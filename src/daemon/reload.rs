//! Reloading the configuration without a restart.
//!
//! Triggers: `SIGHUP` (`systemctl reload`, `kill -HUP`), and a change of a
//! secret file named by `ASSETGATE_{LINK,UPLOAD}_SECRET_FILE` or of the
//! configuration file (a Kubernetes ConfigMap is swapped like a Secret; an
//! image without a shell has no `kill`).
//!
//! - The whole configuration is loaded again exactly as at start (defaults <
//!   file < environment, the secret files re-read) and validated. An invalid
//!   one is refused: the running configuration stays, one log line names the
//!   key, `assetgate_config_reloads_total{result="refused"}` counts it.
//! - A valid one is installed atomically (`arc-swap`): a request loads the
//!   configuration once and finishes on it, so secrets and policy switch
//!   between two requests, never inside one.
//! - Keys read only at start (addresses, threads, `[server]`, `[state]`,
//!   paths, logging) keep their running values; a change to them logs one line
//!   naming them: a restart is needed.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{self, Config, ConfigError, Sources};
use crate::http::AppState;
use crate::metrics::ReloadResult;
use crate::secret::SecretSet;

/// Quiet period after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

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
pub enum Outcome {
    /// A new configuration is in force; the keys that need a restart.
    Applied(Vec<&'static str>),
    /// Nothing reloadable changed; the keys that need a restart.
    Unchanged(Vec<&'static str>),
    /// Refused: the running configuration stays.
    Refused(ConfigError),
}

/// `new` with every key that is only read at start taken from `running`, and
/// the names of those that differed.
pub fn merge(running: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut restart = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if format!("{:?}", new.$($field)+) != format!("{:?}", running.$($field)+) {
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
    keep!("tusd.upload_dir", tusd.upload_dir);
    keep!("tusd.reconcile_interval", tusd.reconcile_interval);
    // The delivery loop, its client and the outbox are set up once.
    keep!("events", events);
    if new.state != running.state {
        restart.push("state");
    }
    new.state = running.state.clone();
    new.source = running.source.clone();
    new.secret_files = running.secret_files.clone();
    (new, restart)
}

/// A digest of everything reloadable, secrets included (never shown).
fn fingerprint(c: &Config) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(c.redacted_toml().as_bytes());
    for set in [&c.link.secrets, &c.upload.secrets] {
        for s in set.iter() {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.expose());
        }
        h.update(b"|");
    }
    h.finalize().into()
}

/// Loads the configuration again and installs it unless it is invalid.
/// `dev`: the running secrets were generated (`serve --dev`) and stay when the
/// file and environment still name none.
pub fn reload(state: &AppState, sources: &Sources, dev: bool) -> Outcome {
    let running = state.current_owned();
    let mut new = match config::load(sources) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(e),
    };
    if dev {
        keep_if_empty(&mut new.link.secrets, &running.link.secrets);
        keep_if_empty(&mut new.upload.secrets, &running.upload.secrets);
    }
    if new.link.secrets.is_empty() && new.upload.secrets.is_empty() {
        return Outcome::Refused(ConfigError {
            key: "link.secrets".into(),
            message: "the new configuration has no secret at all".into(),
        });
    }
    let (new, restart) = merge(&running, new);
    if fingerprint(&new) == fingerprint(&running) {
        return Outcome::Unchanged(restart);
    }
    state.install(new);
    Outcome::Applied(restart)
}

fn keep_if_empty(new: &mut SecretSet, running: &SecretSet) {
    if new.is_empty() {
        *new = running.clone();
    }
}

/// Runs one reload on the blocking pool (it reads files), then logs and
/// counts it.
pub async fn run_once(state: &Arc<AppState>, sources: &Sources, dev: bool, trigger: Trigger) -> Outcome {
    let (st, src) = (state.clone(), sources.clone());
    let outcome = match tokio::task::spawn_blocking(move || reload(&st, &src, dev)).await {
        Ok(o) => o,
        Err(e) => Outcome::Refused(ConfigError {
            key: "reload".into(),
            message: format!("the reload task failed: {e}"),
        }),
    };
    let trigger = trigger.as_str();
    match &outcome {
        Outcome::Applied(restart) => {
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
        Outcome::Unchanged(restart) => {
            state.metrics.count_reload(ReloadResult::Unchanged);
            tracing::info!(trigger, "configuration reloaded: nothing changed");
            log_restart(restart);
        }
        Outcome::Refused(e) => {
            state.metrics.count_reload(ReloadResult::Refused);
            tracing::error!(
                trigger,
                key = e.key.as_str(),
                "configuration reload refused, the running configuration stays: {e}"
            );
        }
    }
    outcome
}

fn log_restart(keys: &[&'static str]) {
    if !keys.is_empty() {
        tracing::warn!(
            keys = keys.join(", "),
            "changed keys that are read only at start: their running values stay; restart to apply them"
        );
    }
}

/// Starts the reload triggers: `hup` (the SIGHUP stream, registered before
/// the listener was bound, so SIGHUP never kills the daemon), and a watch on
/// the secret files' directories.
pub fn spawn(state: Arc<AppState>, sources: Sources, dev: bool, mut hup: tokio::signal::unix::Signal) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Trigger>();
    let sig_tx = tx.clone();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            metrics.count_sighup();
            if sig_tx.send(Trigger::Signal).is_err() {
                return;
            }
        }
    });
    // The secret files and the configuration file (a Kubernetes ConfigMap is
    // swapped like a Secret).
    let mut watched = state.config.secret_files.clone();
    watched.extend(state.config.source.clone());
    let watcher = watch_files(&watched, tx);
    tokio::spawn(async move {
        // Held for the life of the task: dropping it stops the watch.
        let _watcher = watcher;
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
            run_once(&state, &sources, dev, trigger).await;
        }
    });
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
    use super::*;

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

    #[test]
    fn fingerprint_sees_secret_changes_only_through_digest() {
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
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&c));
    }
}
