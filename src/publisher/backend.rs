//! Where uploads are found and where they are published: the seam a storage
//! backend plugs into. The publisher ([`super::Publisher`]) knows nothing of
//! paths or descriptors; it hands a backend the plan and gets back what
//! happened.
//!
//! One backend today: the local filesystem, [`Roots`] (tusd's upload
//! directory and the asset tree, moved by [`crate::finalize`]).

use std::io;

use crate::finalize::{
    self, Cancel, Commit, FinalizeError, Finalized, PendingScan, PendingUpload, Roots, TEMP_MIN_AGE,
};
use crate::tusd::FinalizePlan;

/// A store of finished uploads and of published assets.
pub trait Backend: Send + Sync {
    /// Removes what interrupted publishes left behind; how many.
    fn sweep(&self) -> io::Result<usize>;

    /// The uploads waiting: finished ones never published, records of
    /// published ones left behind, and the rest with the reason.
    fn scan(&self) -> io::Result<PendingScan>;

    /// Publishes one planned upload, checking it again against the upload's
    /// own record. `commit`, when given, runs once the asset is durably in
    /// place and before the upload is removed (`false`: the upload stays for
    /// a later pass, [`finalize::Cleanup::Held`]); without one no digest is
    /// computed. `cancel` stops a long copy (shutdown).
    fn publish(
        &self,
        plan: &FinalizePlan,
        cancel: &Cancel,
        commit: Option<Commit<'_>>,
    ) -> Result<Finalized, FinalizeError>;

    /// Removes an abandoned upload (see [`finalize::remove_abandoned`]);
    /// `Ok(false)`: left as it is.
    fn remove_abandoned(&self, upload: &PendingUpload) -> io::Result<bool>;

    /// Records that `plan`'s upload was refused for good (`refusal`, whose
    /// `upload.failed` is committed), so that no later pass publishes it or
    /// even tries. The filesystem's mover records its refusals itself
    /// (`<ID>.refused`, before reporting them): nothing to do here.
    fn record_refusal(&self, _plan: &FinalizePlan, _refusal: &FinalizeError) -> io::Result<()> {
        Ok(())
    }

    /// Removes a stale upload (the scan's `stale`: a record with neither
    /// data nor work in progress) whose token expired more than
    /// `abandon_after` ago, unless what is at `destination` (the plan's,
    /// when one could be made) says it was published from it. The filesystem
    /// keeps its stale records (published ones' leftovers the mover finishes):
    /// `Ok(false)`.
    fn remove_stale(
        &self,
        _upload: &PendingUpload,
        _destination: Option<&std::path::Path>,
    ) -> io::Result<bool> {
        Ok(false)
    }
}

/// The local filesystem: [`finalize`]'s mover below the two roots.
impl Backend for Roots {
    fn sweep(&self) -> io::Result<usize> {
        finalize::sweep_temp(self, TEMP_MIN_AGE)
    }

    fn scan(&self) -> io::Result<PendingScan> {
        finalize::scan_pending(self.upload_dir())
    }

    fn publish(
        &self,
        plan: &FinalizePlan,
        cancel: &Cancel,
        commit: Option<Commit<'_>>,
    ) -> Result<Finalized, FinalizeError> {
        match commit {
            None => finalize::finalize(self, plan, cancel),
            Some(commit) => finalize::finalize_with(self, plan, cancel, commit),
        }
    }

    fn remove_abandoned(&self, upload: &PendingUpload) -> io::Result<bool> {
        finalize::remove_abandoned(self, upload)
    }
}
