//! tusd hooks: the pure core of the `/tusd` endpoint.
//!
//! ```text
//! body + Hook-Name ──parse──▶ Hook ──decide──▶ Decision ──answer──▶ Answer {status, type, body}
//!                    (protocol)       (precreate, postfinish,        (answer)
//!                                      prefinish)
//! ```
//!
//! Nothing here does I/O. The two facts that need the filesystem are asked
//! through [`Lookup`]: whether a destination exists (pre-create, when
//! `[storage] overwrite = false`) and, optionally, the leading bytes of a
//! finished upload (pre-finish content sniffing). The server adapts
//! [`Answer`] to hyper, logs one line per [`Decision`] (hook, decision, reason,
//! key; never the token) and counts it with the closed labels
//! [`HookName::label`], [`HookOutcome::as_str`], [`ReasonCode::as_str`].
//!
//! # Decisions per hook
//!
//! - `pre-create`: the token, policy and destination checks in order, first failure decides
//!   (see [`precreate`]), then the upload ID ([`ids`]). Accept → v2
//!   `{"ChangeFileInfo":{"ID":…}}` with a fresh signed ID (`[tusd] upload_ids =
//!   "signed"`, the default) or `{}` (`"server"`); reject → v2 `RejectUpload` +
//!   `HTTPResponse`, v1 the 4xx itself.
//! - `post-finish`: [`postfinish`] re-verifies the signature (no expiry), the
//!   key and (`signed`) the upload's ID from the event's metadata and produces a
//!   [`FinalizePlan`] for the mover
//!   (`src/finalize/`). Partial uploads are skipped. The answer is `{}` in all
//!   cases (tusd ignores post-hook answers).
//! - `pre-finish`: content sniffing when the caller supplies leading bytes
//!   ([`prefinish`]); otherwise nothing to decide.
//! - every other hook, known or not: nothing to decide, `{}` / 200.
//!
//! # Parallel uploads (tus concatenation)
//!
//! tus clients upload parts in parallel as *partial* uploads
//! (`Upload-Concat: partial`, `IsPartial`) and then create a *final* upload
//! (`Upload-Concat: final;<urls>`, `IsFinal`) that tusd concatenates. What tusd v2
//! shows the pre-create hook:
//!
//! - each partial: `IsPartial: true`, `Size` = the part's length, `MetaData` =
//!   that request's `Upload-Metadata`;
//! - the final: `IsFinal: true`, `PartialUploads` = the part IDs, `Size` = the
//!   sum of the parts (tusd already checked they are complete), `MetaData` = the
//!   final request's `Upload-Metadata`. It has no data of its own; tusd fires
//!   `post-finish` for it right after concatenating.
//!
//! Decision: every one of them is a pre-create like any other and runs ALL the
//! checks on its own metadata (token, window, content type, size against
//! `max_size`, existing destination). A partial cannot get through without a
//! token, so nobody can park data in `upload_dir` with a leaked URL alone; the
//! final is checked because its metadata decides where the file lands.
//! `post-finish` skips partials (their bytes are not the asset) and finalizes
//! the final. With `[upload] single_use` the adapter then counts each accepted
//! partial against the token's bounds (`max_parts`, `max_size` together:
//! [`precreate::ClaimKind::Part`]) and the final consumes the token.
//!
//! Client side: tus-js-client (`parallelUploads > 1`) sends `metadata` only on
//! the final upload; partial uploads carry `metadataForPartialUploads`, which
//! defaults to `{}`, and would be refused with `metadata_missing`. Pass granite's
//! five fields in both:
//!
//! ```js
//! new tus.Upload(file, { endpoint, parallelUploads: 4,
//!   metadata: graniteFields, metadataForPartialUploads: graniteFields })
//! ```

pub mod abandon;
pub mod answer;
pub mod ids;
pub mod json;
pub mod metadata;
pub mod postfinish;
pub mod precreate;
pub mod prefinish;
pub mod protocol;
pub mod rules;
pub mod session;

mod decide;
mod gate;
mod reason;
mod verdict;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use answer::{answer, answer_error, answer_v1, answer_v2, Answer};
pub use decide::decide;
pub use gate::{Destination, Gate, Lookup, Part, StoreUnavailable};
pub use postfinish::{FinalizePlan, NotPlanned};
pub use protocol::{parse, Hook, HookError, HookName, Protocol, Upload};
pub use reason::{ReasonCode, Rejection, MAX_MESSAGE_BYTES};
pub use verdict::{Decision, HookOutcome, Verdict};

#[cfg(test)]
mod fixture_tests;
