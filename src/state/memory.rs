//! The `memory` backend: one process, nothing shared. Single-use marks, the
//! partial uploads counted per grant and revocations live in the daemon and
//! die with it; `assetgate revoke` reaches them through the admin listener.
//!
//! It keeps the same rules as the Redis script ([`super::redis`]), under one
//! lock: a claim is decided and written in one step, so a claim that times out
//! waiting for the lock has written nothing. Undo and its tombstones are kept
//! all the same, so both backends answer the same contract
//! (`tests/common/state.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Mutex;

use super::backend::{Ask, Backend, Fut, Nonce, StateError, Use};
use super::revocation::Revocation;
use crate::tusd::precreate::ClaimKind;

/// Expired marks, parts and tombstones are purged when this many claims ran
/// since the last purge.
const PURGE_EVERY: usize = 4096;

/// In-process state.
#[derive(Default)]
pub struct Memory {
    grants: Mutex<Grants>,
    revoked: Mutex<BTreeMap<Revocation, i64>>,
    version: AtomicU64,
}

#[derive(Default)]
struct Grants {
    by_id: HashMap<[u8; 32], Grant>,
    /// Tombstones of undone claims: a claim arriving after its own undo
    /// writes nothing.
    undone: HashMap<Nonce, Instant>,
    since_purge: usize,
}

/// One grant's single-use mark and partial uploads.
#[derive(Default)]
struct Grant {
    /// The consuming claim's nonce, and until when the mark holds.
    used: Option<(Nonce, Instant)>,
    /// The partial uploads counted: nonce and declared size.
    parts: Vec<(Nonce, u64)>,
    /// Until when `parts` hold (renewed by each part, as Redis' `PEXPIRE`).
    parts_until: Option<Instant>,
}

impl Grant {
    fn used(&self, now: Instant) -> bool {
        self.used.is_some_and(|(_, until)| until > now)
    }

    fn parts(&mut self, now: Instant) -> &mut Vec<(Nonce, u64)> {
        if self.parts_until.is_some_and(|until| until <= now) {
            self.parts.clear();
            self.parts_until = None;
        }
        &mut self.parts
    }

    fn is_empty(&mut self, now: Instant) -> bool {
        !self.used(now) && self.parts(now).is_empty()
    }
}

impl Grants {
    fn purge(&mut self, now: Instant) {
        self.by_id.retain(|_, g| !g.is_empty(now));
        self.undone.retain(|_, until| *until > now);
        self.since_purge = 0;
    }

    /// Undoes what `nonce` wrote for grant `id`, and leaves its tombstone.
    fn undo(&mut self, id: &[u8; 32], nonce: Nonce, until: Instant) {
        if let Some(g) = self.by_id.get_mut(id) {
            if g.used.is_some_and(|(n, _)| n == nonce) {
                g.used = None;
            }
            g.parts.retain(|(n, _)| *n != nonce);
        }
        self.undone.insert(nonce, until);
    }
}

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn claim<'a>(&'a self, ask: &'a Ask) -> Fut<'a, Use> {
        Box::pin(async move {
            let now = Instant::now();
            let until = now + ask.ttl;
            let mut grants = self.grants.lock().await;
            grants.since_purge += 1;
            if grants.since_purge >= PURGE_EVERY {
                grants.purge(now);
            }
            for nonce in &ask.undo {
                grants.undo(&ask.id, *nonce, until);
            }
            if grants.undone.get(&ask.nonce).is_some_and(|u| *u > now) {
                return Err(StateError::gave_up());
            }
            let g = grants.by_id.entry(ask.id).or_default();
            if g.used(now) {
                return Ok(Use::Replay);
            }
            match ask.kind {
                ClaimKind::Consume => {
                    g.used = Some((ask.nonce, until));
                    Ok(Use::First)
                }
                ClaimKind::Part {
                    size,
                    max_parts,
                    max_bytes,
                } => {
                    let parts = g.parts(now);
                    if parts.len() >= max_parts as usize {
                        return Ok(Use::TooManyParts);
                    }
                    let total = parts.iter().fold(size, |t, (_, s)| t.saturating_add(*s));
                    if max_bytes.is_some_and(|max| total > max) {
                        return Ok(Use::PartsTooLarge);
                    }
                    parts.push((ask.nonce, size));
                    g.parts_until = Some(until);
                    Ok(Use::First)
                }
            }
        })
    }

    fn undo<'a>(&'a self, ask: &'a Ask) -> Fut<'a, ()> {
        Box::pin(async move {
            let until = Instant::now() + ask.ttl;
            self.grants.lock().await.undo(&ask.id, ask.nonce, until);
            Ok(())
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
    use std::time::Duration;

    fn ask(id: [u8; 32], nonce: u8, ttl: Duration, kind: ClaimKind) -> Ask {
        Ask {
            id,
            nonce: Nonce([nonce; 16]),
            ttl,
            kind,
            undo: Vec::new(),
        }
    }

    #[tokio::test]
    async fn consume_once_then_replay_then_expire() {
        let m = Memory::default();
        let id = [7u8; 32];
        let short = Duration::from_millis(80);
        assert_eq!(
            m.claim(&ask(id, 1, short, ClaimKind::Consume)).await.unwrap(),
            Use::First
        );
        let again = ask(id, 2, Duration::from_secs(9), ClaimKind::Consume);
        assert_eq!(m.claim(&again).await.unwrap(), Use::Replay);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let after = ask(id, 3, Duration::from_secs(9), ClaimKind::Consume);
        assert_eq!(
            m.claim(&after).await.unwrap(),
            Use::First,
            "the mark ends with the token"
        );
    }

    #[tokio::test]
    async fn parts_expire_with_the_grant() {
        let m = Memory::default();
        let id = [8u8; 32];
        let part = |n, ttl| {
            ask(
                id,
                n,
                ttl,
                ClaimKind::Part {
                    size: 10,
                    max_parts: 1,
                    max_bytes: None,
                },
            )
        };
        let short = Duration::from_millis(80);
        assert_eq!(m.claim(&part(1, short)).await.unwrap(), Use::First);
        assert_eq!(m.claim(&part(2, short)).await.unwrap(), Use::TooManyParts);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(m.claim(&part(3, short)).await.unwrap(), Use::First);
        // Purged once nothing in it holds.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let mut grants = m.grants.lock().await;
        grants.purge(Instant::now());
        assert!(grants.by_id.is_empty() && grants.undone.is_empty());
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
