//! Claims this replica gave up on: remembered so that the next claim of the
//! same grant here undoes them first.
//!
//! A claim that timed out may still reach the backend later (a stalled Redis
//! runs what it had buffered when it resumes). [`super::Shared`] queues its
//! undo right behind it on the same connection, which Redis runs in order;
//! this list is the second layer, for an undo that could not be queued or was
//! queued on another connection (a reconnect in between): every later claim of
//! the grant on this replica carries the given-up nonces, and the backend
//! undoes them in the same atomic step before deciding. An undo is idempotent
//! and leaves a tombstone, so carrying one more than needed costs nothing.
//!
//! Bounded: at most [`MAX_GIVEN_UP`] nonces in all and [`MAX_PER_GRANT`] per
//! grant (the oldest is dropped past that), each kept until its token expires
//! (the claim's `ttl`), forgotten as soon as an undo of it was confirmed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backend::Nonce;

/// Most given-up claims remembered at once (about 100 bytes each). Past it a
/// new one is not remembered: its queued undo alone covers it.
pub const MAX_GIVEN_UP: usize = 16_384;

/// Most given-up claims remembered per grant (a client retrying through a
/// long outage; tus-js-client retries 4 times by default).
pub const MAX_PER_GRANT: usize = 32;

/// The given-up claims, by grant.
#[derive(Default)]
pub struct GivenUp {
    inner: Mutex<Inner>,
    /// `inner.len`, read without the lock: a claim costs one atomic load when
    /// nothing was given up.
    len: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    by_grant: HashMap<[u8; 32], Vec<(Nonce, Instant)>>,
    len: usize,
}

impl Inner {
    /// Drops the expired nonces of every grant.
    fn purge(&mut self, now: Instant) {
        let mut len = 0;
        self.by_grant.retain(|_, v| {
            v.retain(|(_, until)| *until > now);
            len += v.len();
            !v.is_empty()
        });
        self.len = len;
    }
}

impl GivenUp {
    /// The unexpired given-up nonces of grant `id` (usually none).
    pub fn pending(&self, id: &[u8; 32]) -> Vec<Nonce> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let now = Instant::now();
        self.lock()
            .by_grant
            .get(id)
            .map(|v| {
                v.iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(n, _)| *n)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembers `nonce` of grant `id` for `ttl`; `false` when full.
    pub fn remember(&self, id: &[u8; 32], nonce: Nonce, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.len >= MAX_GIVEN_UP {
            inner.purge(now);
        }
        let remembered = inner.len < MAX_GIVEN_UP;
        if remembered {
            let v = inner.by_grant.entry(*id).or_default();
            let before = v.len();
            v.retain(|(_, until)| *until > now);
            if v.len() >= MAX_PER_GRANT {
                v.remove(0);
            }
            v.push((nonce, now + ttl));
            let after = v.len();
            inner.len = inner.len + after - before;
        }
        self.len.store(inner.len, Ordering::Relaxed);
        remembered
    }

    /// Forgets `nonces` of grant `id`: their undo ran.
    pub fn settled(&self, id: &[u8; 32], nonces: &[Nonce]) {
        if nonces.is_empty() || self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.lock();
        let Some(v) = inner.by_grant.get_mut(id) else {
            return;
        };
        let before = v.len();
        v.retain(|(n, _)| !nonces.contains(n));
        let after = v.len();
        if after == 0 {
            inner.by_grant.remove(id);
        }
        inner.len -= before - after;
        self.len.store(inner.len, Ordering::Relaxed);
    }

    /// How many given-up claims are remembered.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned list is still a
        // consistent list.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_until_settled_or_expired() {
        let g = GivenUp::default();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let (n1, n2, n3) = (Nonce([1; 16]), Nonce([2; 16]), Nonce([3; 16]));
        assert!(g.pending(&a).is_empty());
        assert!(g.remember(&a, n1, Duration::from_secs(60)));
        assert!(g.remember(&a, n2, Duration::from_secs(60)));
        assert!(g.remember(&b, n3, Duration::from_millis(30)));
        assert_eq!(g.len(), 3);
        assert_eq!(g.pending(&a), vec![n1, n2]);
        assert_eq!(g.pending(&b), vec![n3]);
        g.settled(&a, &[n1]);
        assert_eq!(g.pending(&a), vec![n2]);
        assert_eq!(g.len(), 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(g.pending(&b).is_empty(), "expires with its token");
        g.settled(&a, &[n2]);
        g.settled(&b, &[n3]);
        assert!(g.is_empty());
    }

    #[test]
    fn bounded_per_grant_and_in_all() {
        let g = GivenUp::default();
        let id = [9u8; 32];
        for i in 0..MAX_PER_GRANT + 5 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(g.remember(&id, Nonce(n), Duration::from_secs(60)));
        }
        let pending = g.pending(&id);
        assert_eq!(pending.len(), MAX_PER_GRANT, "the oldest are dropped");
        assert_eq!(pending[0].0[0], 5);
        assert_eq!(g.len(), MAX_PER_GRANT);

        let g = GivenUp::default();
        for i in 0..MAX_GIVEN_UP {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(g.remember(&id, Nonce([1; 16]), Duration::from_secs(60)));
        }
        assert!(!g.remember(&[0xff; 32], Nonce([2; 16]), Duration::from_secs(60)));
        assert_eq!(g.len(), MAX_GIVEN_UP);
        assert!(g.pending(&[0xff; 32]).is_empty());
    }
}
