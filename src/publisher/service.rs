//! The publisher: a verified plan, a backend that moves it, the events that
//! say what became of it. Synchronous (the backend does blocking I/O, a
//! commit is an fsync): the daemon calls it on the blocking pool.

use std::io;
use std::sync::Arc;

use super::backend::Backend;
use crate::config::StorageConfig;
use crate::events::payload::{failed_plan, failed_reason, failed_stored, finalized, kept_reason};
use crate::events::Sink;
use crate::finalize::{Cancel, Cleanup, FinalizeError, Finalized, PendingScan, PendingUpload, Published};
use crate::tusd::{postfinish, FinalizePlan, Gate, NotPlanned};

/// Publishes planned uploads through a [`Backend`] and commits their events
/// (with `[events]`) to a [`Sink`].
pub struct Publisher {
    backend: Arc<dyn Backend>,
    events: Option<Sink>,
}

/// What one [`Publisher::publish`] came to.
#[derive(Debug)]
pub enum Report {
    /// The asset is in place and its event (if any) committed; `cleanup`
    /// says what of the upload was left behind.
    Published(Finalized),
    /// The asset is in place, but its event could not be committed: the
    /// upload stays where it was, and a later pass (the reconciler,
    /// `finalize-pending`) finds it, gets `AlreadyFinalized` and commits then.
    Held(Finalized),
    /// Not published; the upload stays where it was. Its `upload.failed` is
    /// committed when the refusal is the upload's fate (a conflict, a content
    /// mismatch, bad parts), not for a transient or a forged one.
    NotPublished(FinalizeError),
}

impl From<Result<Finalized, FinalizeError>> for Report {
    fn from(r: Result<Finalized, FinalizeError>) -> Report {
        match r {
            Ok(done) if done.cleanup == Cleanup::Held => Report::Held(done),
            Ok(done) => Report::Published(done),
            Err(e) => Report::NotPublished(e),
        }
    }
}

/// What [`Publisher::find`] found: the sweep of interrupted publishes, then
/// the scan of the uploads waiting.
#[derive(Debug)]
pub struct Found {
    /// How many leftovers of interrupted publishes were removed.
    pub swept: io::Result<usize>,
    /// The uploads waiting.
    pub scan: io::Result<PendingScan>,
}

/// A found upload through post-finish's rules (`tusd::postfinish::plan`: the
/// token's signature, pre-create's policy, the signed upload ID), exactly as
/// a post-finish event is planned.
pub fn plan(found: &PendingUpload, gate: Gate<'_>) -> Result<FinalizePlan, NotPlanned> {
    postfinish::plan(&found.as_upload(), gate)
}

impl Publisher {
    /// A publisher without events; see [`Publisher::with_events`].
    pub fn new(backend: Arc<dyn Backend>) -> Publisher {
        Publisher {
            backend,
            events: None,
        }
    }

    /// With `[events]`: every publish commits its event to `sink` before the
    /// upload is removed (see `crate::events`, "Commit before done").
    pub fn with_events(mut self, sink: Option<Sink>) -> Publisher {
        self.events = sink;
        self
    }

    /// The backend (the reconciler removes abandoned uploads through it).
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Scans the uploads waiting, then sweeps what interrupted publishes
    /// left (blocking). In this order because the S3 sweep aborts stale
    /// multipart uploads: scanned after it, an abandoned upload whose
    /// multipart upload the sweep just aborted would look like an
    /// interrupted publish (an `.info` with neither object nor multipart
    /// upload) and never be removed as abandoned; scanned before, it is in
    /// progress, and the abandoned-upload removal deletes its `.info` and
    /// `.part` (its abort finds the multipart upload gone, which is fine).
    /// On `fs` the two are independent (the asset tree's temporary files,
    /// `upload_dir`'s records).
    pub fn find(&self) -> Found {
        let scan = self.backend.scan();
        let swept = self.backend.sweep();
        Found { swept, scan }
    }

    /// Moves `plan`'s upload into place and commits its event (blocking).
    /// `upload.finalized` is committed after the publish and before the
    /// upload is removed, so "upload removed" implies "event committed";
    /// a refusal that is the upload's fate commits `upload.failed`.
    pub fn publish(&self, plan: &FinalizePlan, cancel: &Cancel) -> Report {
        let Some(sink) = &self.events else {
            let result = self.backend.publish(plan, cancel, None);
            if let Some(e) = result.as_ref().err().filter(|e| failed_reason(e).is_some()) {
                self.record_refusal(plan, e);
            }
            return result.into();
        };
        let mut commit = |p: &Published| sink.enqueue(&finalized(plan, p.bytes, &p.sha256, sink.now_ms()));
        let result = self.backend.publish(plan, cancel, Some(&mut commit));
        if let Some((e, reason)) = result.as_ref().err().and_then(|e| Some((e, failed_reason(e)?))) {
            // Recorded once its `upload.failed` is committed: a record
            // without its event would silence the upload for good.
            if sink.enqueue(&failed_plan(plan, reason, sink.now_ms())) {
                self.record_refusal(plan, e);
            }
        }
        result.into()
    }

    /// The backend records a final refusal; a failure is logged (the next
    /// pass tries the publish again, and refuses it again).
    fn record_refusal(&self, plan: &FinalizePlan, refusal: &FinalizeError) {
        if let Err(e) = self.backend.record_refusal(plan, refusal) {
            tracing::warn!(upload_id = plan.upload_id(), error = %e, "could not record a refusal (the next pass publishes and refuses it again)");
        }
    }

    /// A found upload post-finish's rules keep (`verdict`): it stays where it
    /// is, and gets its `upload.failed` when the verdict is final (blocking).
    /// The event's id derives from the upload ID, so a second call for the
    /// same upload commits nothing new.
    pub fn keep(&self, found: &PendingUpload, verdict: &NotPlanned, storage: &StorageConfig) {
        if let (Some(sink), Some(reason)) = (&self.events, kept_reason(verdict)) {
            sink.enqueue(&failed_stored(
                &found.id,
                &found.metadata,
                Some(found.size),
                storage,
                reason,
                sink.now_ms(),
            ));
        }
    }
}
