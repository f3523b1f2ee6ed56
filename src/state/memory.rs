//! The `memory` backend: one process, nothing shared. Single-use marks and
//! revocations live in the daemon and die with it; `assetgate revoke` reaches
//! them through the admin listener.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{Backend, Fut, Revocation, Use};

/// Expired single-use marks are purged when the map grows past this many
/// entries since the last purge.
const PURGE_EVERY: usize = 4096;

/// In-process state.
#[derive(Default)]
pub struct Memory {
    used: Mutex<Used>,
    revoked: Mutex<BTreeMap<Revocation, i64>>,
    version: AtomicU64,
}

#[derive(Default)]
struct Used {
    marks: HashMap<[u8; 32], Instant>,
    since_purge: usize,
}

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn consume<'a>(&'a self, id: &'a [u8; 32], ttl: Duration) -> Fut<'a, Use> {
        Box::pin(async move {
            let now = Instant::now();
            let mut used = self.used.lock().await;
            used.since_purge += 1;
            if used.since_purge >= PURGE_EVERY {
                used.marks.retain(|_, until| *until > now);
                used.since_purge = 0;
            }
            match used.marks.get(id) {
                Some(until) if *until > now => Ok(Use::Replay),
                _ => {
                    used.marks.insert(*id, now + ttl);
                    Ok(Use::First)
                }
            }
        })
    }

    fn is_used<'a>(&'a self, id: &'a [u8; 32]) -> Fut<'a, bool> {
        Box::pin(async move {
            let now = Instant::now();
            Ok(self
                .used
                .lock()
                .await
                .marks
                .get(id)
                .is_some_and(|until| *until > now))
        })
    }

    fn revoke<'a>(&'a self, entry: &'a Revocation, until: i64, now: i64) -> Fut<'a, ()> {
        Box::pin(async move {
            let mut revoked = self.revoked.lock().await;
            revoked.retain(|_, u| *u >= now);
            revoked.insert(entry.clone(), until);
            self.version.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    fn unrevoke<'a>(&'a self, entry: &'a Revocation) -> Fut<'a, bool> {
        Box::pin(async move {
            let found = self.revoked.lock().await.remove(entry).is_some();
            self.version.fetch_add(1, Ordering::Relaxed);
            Ok(found)
        })
    }

    fn list<'a>(&'a self, now: i64) -> Fut<'a, Vec<(Revocation, i64)>> {
        Box::pin(async move {
            Ok(self
                .revoked
                .lock()
                .await
                .iter()
                .filter(|(_, u)| **u >= now)
                .map(|(r, u)| (r.clone(), *u))
                .collect())
        })
    }

    fn version<'a>(&'a self) -> Fut<'a, Option<u64>> {
        Box::pin(async move { Ok(Some(self.version.load(Ordering::Relaxed))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn consume_once_then_replay_then_expire() {
        let m = Memory::default();
        let id = [7u8; 32];
        assert!(!m.is_used(&id).await.unwrap());
        assert_eq!(
            m.consume(&id, Duration::from_millis(80)).await.unwrap(),
            Use::First
        );
        assert_eq!(m.consume(&id, Duration::from_secs(9)).await.unwrap(), Use::Replay);
        assert!(m.is_used(&id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!m.is_used(&id).await.unwrap(), "the mark ends with the token");
        assert_eq!(m.consume(&id, Duration::from_secs(9)).await.unwrap(), Use::First);
    }

    #[tokio::test]
    async fn revocations_and_version() {
        let m = Memory::default();
        let v0 = m.version().await.unwrap();
        let p = Revocation::prefix("/private/u/").unwrap();
        m.revoke(&p, 200, 100).await.unwrap();
        assert_ne!(m.version().await.unwrap(), v0);
        assert_eq!(m.list(100).await.unwrap(), vec![(p.clone(), 200)]);
        assert!(m.list(201).await.unwrap().is_empty(), "past its until");
        assert!(m.unrevoke(&p).await.unwrap());
        assert!(!m.unrevoke(&p).await.unwrap());
    }
}
