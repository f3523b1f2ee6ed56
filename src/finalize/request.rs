//! One move as the mover runs it, built from a [`FinalizePlan`] (the only way
//! in: `tusd::postfinish::plan` builds plans, after verifying the signature).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::roots::Roots;
use crate::tusd::FinalizePlan;

/// One move, as the mover runs it. Private to the mover: outside it the only way
/// in is [`finalize`](super::publish::finalize), which builds it from a [`FinalizePlan`].
#[derive(Debug, Clone)]
pub(super) struct Move {
    pub(super) roots: Roots,
    /// The upload's ID: the data file must be `<dir>/<ID>`, its info
    /// `<dir>/<ID>.info` (verified against the signed fields in `signed` mode).
    pub(super) upload_id: String,
    /// `signed` mode: the part IDs a final upload's on-disk info must name,
    /// exactly (each verified as a part of this grant). `None`: `server` mode.
    pub(super) parts: Option<Vec<String>>,
    /// The data file, from the event's `Storage.Path` (untrusted).
    pub(super) source: PathBuf,
    /// The info file, from the event's `Storage.InfoPath` when there is one
    /// (untrusted; tusd v2.5+ only). `None`: looked up next to the data file, then at
    /// the top of the upload directory.
    pub(super) info_path: Option<PathBuf>,
    /// `"{prefix}/{key}"` relative to the storage root (checked again here).
    pub(super) destination: String,
    /// `[storage] overwrite`.
    pub(super) overwrite: bool,
    /// The signed fields; each must have the same value in the upload's on-disk
    /// info, and in the info of every part of a final upload.
    pub(super) expected_metadata: BTreeMap<String, String>,
    /// `[upload] check_content`: the declared type the leading bytes must match.
    pub(super) content_check: Option<String>,
}

impl Move {
    pub(super) fn from_plan(roots: &Roots, plan: &FinalizePlan) -> Move {
        Move {
            roots: roots.clone(),
            upload_id: plan.upload_id().to_owned(),
            parts: plan.identity().parts(),
            source: plan.source().to_path_buf(),
            info_path: plan.info_path().map(Path::to_path_buf),
            destination: plan.destination().to_string_lossy().into_owned(),
            overwrite: plan.overwrite(),
            expected_metadata: plan.signed_fields().clone(),
            content_check: plan.content_check().map(str::to_owned),
        }
    }
}
