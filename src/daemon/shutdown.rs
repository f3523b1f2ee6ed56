//! One way to stop (kubert's `shutdown.rs` is the model): the signals,
//! registered before anything binds, and the [`Stage`]s the background tasks
//! run in.
//!
//! A stage is a stop token and a `JoinSet`: every task of the stage is spawned
//! into the set and handed the token; stopping the stage cancels the token,
//! each task ends at its next stopping point (an accept loop closes its
//! listener and waits for its connections, a periodic task ends between two
//! runs), and joining the set waits for all of them. What does not end in
//! time is named in the log and aborted. Nothing the daemon runs for its whole
//! life is spawned outside a stage.
//!
//! # Why a `CancellationToken`
//!
//! tokio-util's token (already in the tree through redis) and not a `watch`
//! channel: a shutdown happens once and never reverts, which is the token's
//! whole contract. `cancelled()` can be awaited by any number of tasks, is
//! cancel-safe in a `select!`, and there is no sender to keep alive: a
//! dropped `watch::Sender` wakes every receiver, which each task would have to
//! tell from a shutdown. linkerd's `drain` (kubert's) joins "signal" and "wait
//! until every holder dropped its handle", but cannot say which task still
//! holds one; the `JoinSet` waits, names and aborts.

use std::collections::HashMap;
use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

/// SIGTERM and SIGINT (each one: the first starts the drain, a second aborts
/// it), and SIGHUP (the reload task's). Registered before anything binds:
/// SIGHUP's default action would kill the daemon in the middle of a move
/// (exit 129, no drain); from here on it is caught for the life of the
/// process (tokio never restores a default action).
pub(super) struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Registers the handlers (inside the runtime): the stop signals, and
    /// the SIGHUP stream for [`crate::daemon::reload::run`].
    pub(super) fn register() -> std::io::Result<(Signals, Signal)> {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        let hup = signal(SignalKind::hangup())?;
        Ok((Signals { term, int }, hup))
    }

    /// The next SIGTERM or SIGINT (one received since registration counts).
    pub(super) async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Background tasks stopped together: one token tells them, one `JoinSet`
/// waits for them.
pub(super) struct Stage {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Stage {
    /// An empty stage.
    pub(super) fn new() -> Self {
        Stage {
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Spawns the task `start` makes from the stage's stop token; `name`
    /// says which one in the drain's log lines. Inside the runtime.
    pub(super) fn spawn<F>(&mut self, name: &'static str, start: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tasks.spawn(start(self.stop.clone()));
        self.names.insert(handle.id(), name);
    }

    /// Tells every task to stop (again: nothing more).
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits until every task has ended (each logged at debug, a panic as an
    /// error). Cancel-safe: a task that ended is forgotten, the others are
    /// waited for again by the next call.
    pub(super) async fn join(&mut self) {
        while let Some(ended) = self.tasks.join_next_with_id().await {
            let id = match &ended {
                Ok((id, ())) => *id,
                Err(e) => e.id(),
            };
            let task = self.names.remove(&id).unwrap_or("unnamed");
            match ended {
                Ok(_) => tracing::debug!(task, "background task stopped"),
                Err(e) if e.is_panic() => tracing::error!(task, "background task panicked"),
                Err(_) => tracing::debug!(task, "background task aborted"),
            }
        }
    }

    /// The tasks still running, by name (sorted; `None`: none), for the log
    /// line of a drain that ran out of time.
    pub(super) fn running(&self) -> Option<String> {
        let mut names: Vec<&str> = self.names.values().copied().collect();
        names.sort_unstable();
        (!names.is_empty()).then(|| names.join(", "))
    }

    /// Aborts the tasks still running and waits for them to unwind (each
    /// at its next await; a blocking read it waited on runs on, unwatched).
    pub(super) async fn abort(&mut self) {
        self.tasks.abort_all();
        self.join().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Every task that watches the token ends on `stop`, and `join` waits
    /// for the slow one's last step (its work after the token fired).
    #[tokio::test]
    async fn stop_ends_every_task_and_join_waits_for_all_of_them() {
        let mut stage = Stage::new();
        let finished = Arc::new(AtomicUsize::new(0));
        for name in ["a", "b", "c"] {
            let finished = finished.clone();
            stage.spawn(name, move |stop| async move {
                stop.cancelled().await;
                // Work after the signal (a connection's last answer).
                tokio::time::sleep(Duration::from_millis(20)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(stage.running().as_deref(), Some("a, b, c"));
        stage.stop();
        stage.join().await;
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        assert_eq!(stage.running(), None);
    }

    /// A task that ignores the token is still running when the bound is
    /// over: the stage names it, and `abort` ends it.
    #[tokio::test]
    async fn a_task_that_ignores_stop_is_named_then_aborted() {
        let mut stage = Stage::new();
        stage.spawn("polite", |stop| async move { stop.cancelled().await });
        stage.spawn("deaf", |_stop| std::future::pending());
        stage.stop();
        let joined = tokio::time::timeout(Duration::from_millis(200), stage.join()).await;
        assert!(joined.is_err(), "join cannot end while `deaf` runs");
        assert_eq!(
            stage.running().as_deref(),
            Some("deaf"),
            "`polite` was joined; cancel-safe"
        );
        stage.abort().await;
        assert_eq!(stage.running(), None);
    }

    /// The first SIGTERM is seen once, the second again (the drain's abort).
    #[tokio::test]
    async fn each_sigterm_is_one_next() {
        let (mut signals, _hup) = Signals::register().unwrap();
        let me = rustix::process::getpid();
        for _ in 0..2 {
            rustix::process::kill_process(me, rustix::process::Signal::TERM).unwrap();
            tokio::time::timeout(Duration::from_secs(5), signals.next())
                .await
                .expect("the signal is seen");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(50), signals.next())
                .await
                .is_err(),
            "no third signal"
        );
    }
}
