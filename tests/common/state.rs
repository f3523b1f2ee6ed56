//! The single-use contract every state backend keeps, run on the library's
//! backends directly: `tests/state_memory.rs` (memory) and `tests/fleet.rs`
//! (a real `redis-server`). The same steps, the same answers.
#![allow(dead_code)]

use std::time::Duration;

use assetgate::state::{Ask, Backend, Nonce, Use};
use assetgate::tusd::precreate::ClaimKind;

const TTL: Duration = Duration::from_secs(60);

fn grant() -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&Nonce::random().0);
    id
}

fn consume(id: [u8; 32], nonce: Nonce, undo: &[Nonce]) -> Ask {
    Ask {
        id,
        nonce,
        ttl: TTL,
        kind: ClaimKind::Consume,
        undo: undo.to_vec(),
    }
}

fn part(
    id: [u8; 32],
    nonce: Nonce,
    size: u64,
    max_parts: u32,
    max_bytes: Option<u64>,
    undo: &[Nonce],
) -> Ask {
    Ask {
        id,
        nonce,
        ttl: TTL,
        kind: ClaimKind::Part {
            size,
            max_parts,
            max_bytes,
        },
        undo: undo.to_vec(),
    }
}

/// Runs the contract on `b`.
pub async fn contract(b: &dyn Backend) {
    let n = Nonce::random;

    // Consume once; a replay, whatever its nonce, is refused.
    let id = grant();
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::First);
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::Replay);

    // Partial uploads: at most 3, at most 100 declared bytes together, and
    // none once the token is consumed.
    let id = grant();
    let p = |size, undo: &[Nonce]| part(id, n(), size, 3, Some(100), undo);
    assert_eq!(b.claim(&p(40, &[])).await.unwrap(), Use::First);
    let second = p(40, &[]);
    assert_eq!(b.claim(&second).await.unwrap(), Use::First);
    assert_eq!(b.claim(&p(21, &[])).await.unwrap(), Use::PartsTooLarge);
    assert_eq!(b.claim(&p(20, &[])).await.unwrap(), Use::First, "exactly 100");
    assert_eq!(b.claim(&p(0, &[])).await.unwrap(), Use::TooManyParts);
    // Undoing a part frees its place and its bytes.
    b.undo(&second).await.unwrap();
    b.undo(&second).await.unwrap();
    assert_eq!(b.claim(&p(40, &[])).await.unwrap(), Use::First);
    assert_eq!(b.claim(&p(0, &[])).await.unwrap(), Use::TooManyParts);
    // The final upload consumes the token; no part after it.
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::First);
    assert_eq!(b.claim(&p(0, &[])).await.unwrap(), Use::Replay);
    // Without a byte bound, only the count.
    let id = grant();
    for _ in 0..2 {
        let big = part(id, n(), u64::MAX / 4, 2, None, &[]);
        assert_eq!(b.claim(&big).await.unwrap(), Use::First);
    }
    assert_eq!(
        b.claim(&part(id, n(), 1, 2, None, &[])).await.unwrap(),
        Use::TooManyParts
    );

    // A claim that ran although its request gave up (the stall of issue 19,
    // finding 5), then its undo: the token is usable, once.
    let id = grant();
    let stalled = consume(id, n(), &[]);
    assert_eq!(b.claim(&stalled).await.unwrap(), Use::First);
    b.undo(&stalled).await.unwrap();
    assert_eq!(
        b.claim(&consume(id, n(), &[])).await.unwrap(),
        Use::First,
        "the retry"
    );
    assert_eq!(
        b.claim(&consume(id, n(), &[])).await.unwrap(),
        Use::Replay,
        "a second use"
    );
    // A late undo removes only what its own nonce wrote.
    b.undo(&stalled).await.unwrap();
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::Replay);

    // The undo runs first and the claim after it (another connection): the
    // claim writes nothing and fails; the retry is the first use.
    let id = grant();
    let late = consume(id, n(), &[]);
    b.undo(&late).await.unwrap();
    assert!(b.claim(&late).await.is_err(), "a claim after its undo");
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::First);
    let late_part = part(id, n(), 1, 5, None, &[]);
    b.undo(&late_part).await.unwrap();
    assert!(b.claim(&late_part).await.is_err());

    // The undo never ran: the next claim of the grant carries the given-up
    // nonce and undoes it in the same step (the replica's second layer).
    let id = grant();
    let stalled = consume(id, n(), &[]);
    assert_eq!(b.claim(&stalled).await.unwrap(), Use::First);
    let retry = consume(id, n(), &[stalled.nonce]);
    assert_eq!(b.claim(&retry).await.unwrap(), Use::First, "the retry");
    let again = consume(id, n(), &[stalled.nonce]);
    assert_eq!(
        b.claim(&again).await.unwrap(),
        Use::Replay,
        "carrying it twice undoes nothing more"
    );
    // ... and for a part: its place is freed before the count.
    let id = grant();
    let stalled = part(id, n(), 5, 1, None, &[]);
    assert_eq!(b.claim(&stalled).await.unwrap(), Use::First);
    assert_eq!(
        b.claim(&part(id, n(), 5, 1, None, &[])).await.unwrap(),
        Use::TooManyParts
    );
    let retry = part(id, n(), 5, 1, None, &[stalled.nonce]);
    assert_eq!(b.claim(&retry).await.unwrap(), Use::First);

    // An undo of a nonce that wrote nothing changes nothing.
    let id = grant();
    assert_eq!(b.claim(&consume(id, n(), &[])).await.unwrap(), Use::First);
    b.undo(&consume(id, n(), &[])).await.unwrap();
    assert_eq!(b.claim(&consume(id, n(), &[n()])).await.unwrap(), Use::Replay);
}
