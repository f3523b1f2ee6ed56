//! One parsed hook, decided: the dispatch by hook name (see the pipeline in
//! [`super`]'s module doc).

use super::gate::{Gate, Lookup};
use super::ids;
use super::postfinish::{self, NotPlanned};
use super::precreate;
use super::prefinish;
use super::protocol::{Hook, HookName};
use super::reason::{ReasonCode, Rejection};
use super::verdict::{Decision, Verdict};
use crate::token::upload_id::Nonce;

/// Decides one parsed hook at `now` (Unix seconds). `nonce`: fresh random
/// bytes for the ID of an accepted pre-create (read only then).
pub fn decide(hook: &Hook, gate: Gate<'_>, now: i64, nonce: &Nonce, lookup: &dyn Lookup) -> Decision {
    let upload = &hook.upload;
    let mut proof = None;
    let mut assigned_id = None;
    let verdict = match &hook.name {
        HookName::PreCreate => match pre_create(hook, gate, now, nonce, lookup) {
            Ok((accepted, id)) => {
                proof = Some(accepted);
                assigned_id = id;
                Verdict::Accept
            }
            Err(r) => Verdict::Reject(r),
        },
        HookName::PostFinish => match postfinish::plan(upload, gate) {
            Ok(p) => Verdict::Finalize(Box::new(p)),
            Err(NotPlanned::Skip(r)) => Verdict::Skip(r),
            Err(NotPlanned::Keep(r)) => Verdict::Keep(r),
        },
        HookName::PreFinish => match lookup.leading_bytes(upload) {
            Ok(Some(head)) => prefinish::decide(upload, gate, Ok(&head)),
            Ok(None) => Verdict::Skip(ReasonCode::Ignored),
            Err(unavailable) => prefinish::decide(upload, gate, Err(unavailable)),
        },
        _ => Verdict::Skip(ReasonCode::Ignored),
    };
    Decision {
        hook: hook.name.clone(),
        verdict,
        key: upload.asset_key().map(str::to_owned),
        upload_id: upload.id.clone(),
        accepted: proof,
        assigned_id,
    }
}

/// pre-create: the upload server can take our ID (in `signed` mode), every
/// check of [`precreate`], a final upload's part IDs, then the new ID.
fn pre_create(
    hook: &Hook,
    gate: Gate<'_>,
    now: i64,
    nonce: &Nonce,
    lookup: &dyn Lookup,
) -> Result<(precreate::Accepted, Option<String>), Rejection> {
    ids::refuse_unsupported(hook, gate)?;
    let accepted = precreate::check(&hook.upload, gate, now, lookup)?;
    ids::check_parts(&hook.upload, &accepted.verified().grant_id(), gate)?;
    let id = ids::issue(&hook.upload, accepted.verified(), gate, nonce);
    Ok((accepted, id))
}
