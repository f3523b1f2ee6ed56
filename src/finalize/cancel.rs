//! Cancelling a running copy when the daemon's shutdown grace is over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stops a running copy at its next chunk (the daemon's shutdown grace is over).
/// Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag nobody has raised yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Raise it: every copy sharing this flag stops at its next chunk.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it was raised.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
