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
