//! The backend interface: what a state backend (memory, Redis) answers, and
//! the claim it is asked to make.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::revocation::Revocation;
use crate::tusd::precreate::ClaimKind;

/// A boxed backend future (the trait is used as `dyn Backend`).
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The backend could not answer (unreachable, timed out, refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// What a claim found (see [`ClaimKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The token was not used before: it is now (consumed, or this partial
    /// upload counted).
    First,
    /// The token was used already: refuse (`token_used`).
    Replay,
    /// A partial upload past `[upload] max_parts` for this grant
    /// (`too_many_parts`).
    TooManyParts,
    /// A partial upload whose declared size would take the grant's parts past
    /// `[upload] max_size` together (`parts_too_large`).
    PartsTooLarge,
}

/// A random per-request value: what a claim writes, so that the request that
/// wrote it, and only it, can be undone once it gave up. Not a secret (its
/// only power is to undo a claim that was refused anyway).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    /// A fresh one from the OS random source.
    pub fn random() -> Nonce {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the OS random source is available");
        Nonce(b)
    }

    /// Lower-case hex, as stored in Redis.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({})", self.hex())
    }
}

/// One claim as the backend sees it: built by [`Shared::claim`](super::Shared::claim) from a
/// [`Claim`](crate::tusd::precreate::Claim) (which only an accepted pre-create has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The grant ([`Claim::id`](crate::tusd::precreate::Claim::id)).
    pub id: [u8; 32],
    /// This request's nonce.
    pub nonce: Nonce,
    /// How long what it writes is kept: the token's remaining life + skew.
    pub ttl: Duration,
    /// Consume the token, or count one more partial upload.
    pub kind: ClaimKind,
    /// Earlier claims of the same grant that gave up on this replica and whose
    /// undo was not confirmed: undone first, in the same atomic step.
    pub undo: Vec<Nonce>,
}

/// The shared-state operations; every replica of a fleet must see the same
/// answers.
pub trait Backend: Send + Sync {
    /// `memory` or `redis`.
    fn name(&self) -> &'static str;
    /// In one atomic step: undoes `ask.undo`, then consumes the token
    /// ([`ClaimKind::Consume`]: unless it is used) or counts a partial upload
    /// ([`ClaimKind::Part`]: unless the token is used or the grant's parts are
    /// at their bounds). A claim whose own undo already ran writes nothing and
    /// fails.
    fn claim<'a>(&'a self, ask: &'a Ask) -> Fut<'a, Use>;
    /// Undoes what `ask` wrote, if it did, and makes sure it writes nothing if
    /// it runs later; idempotent.
    fn undo<'a>(&'a self, ask: &'a Ask) -> Fut<'a, ()>;
    /// Records a revocation kept until `until` (Unix seconds; [`NEVER`](super::revocation::NEVER)).
    fn revoke<'a>(&'a self, entry: &'a Revocation, until: i64, now: i64) -> Fut<'a, ()>;
    /// Drops a revocation; `false` if it was not there.
    fn unrevoke<'a>(&'a self, entry: &'a Revocation) -> Fut<'a, bool>;
    /// Every revocation in force at `now`, with its `until`.
    fn list<'a>(&'a self, now: i64) -> Fut<'a, Vec<(Revocation, i64)>>;
    /// A value that changes whenever the revocations change (the sync loop
    /// reloads the set when it differs from the last one seen).
    fn version<'a>(&'a self) -> Fut<'a, Option<u64>>;
}

impl StateError {
    /// A claim that ran after its own undo (its request gave up).
    pub fn gave_up() -> StateError {
        StateError("the claim ran after its request gave up: nothing written".into())
    }
}
