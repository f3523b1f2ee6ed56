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
//! [`HookName::label`], [`Outcome::as_str`], [`Reason::as_str`].
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
pub mod metadata;
pub mod postfinish;
pub mod precreate;
pub mod prefinish;
pub mod protocol;
pub mod rules;
pub mod session;

use std::fmt;
use std::path::Path;

use crate::config::{StorageConfig, UploadConfig};
use crate::token::upload;
use crate::token::upload_id::{Nonce, UploadIds};

pub use answer::{answer, answer_error, answer_v1, answer_v2, Answer};
pub use postfinish::FinalizePlan;
pub use protocol::{parse, Hook, HookError, HookName, Protocol, Upload};

/// The closed set of reason codes: JSON `error.code` and the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Accepted / finalize planned.
    Ok,
    /// The upload token was refused ([`upload::Reason`]: the fields, the key
    /// policy, the signature, the expiry, the lifetime bound).
    Token(upload::Reason),
    /// Content type not in `[upload] content_types` (415).
    ContentTypeNotAllowed,
    /// An active type (HTML, SVG, XML, JavaScript) that `[upload]
    /// content_types` does not name exactly (415).
    ContentTypeActive,
    /// nginx would serve the key's extension as another type than the
    /// token's (415).
    ExtensionMismatch,
    /// Larger than `[upload] max_size` (413).
    TooLarge,
    /// Deferred length not allowed (411).
    LengthRequired,
    /// The destination exists and overwrite is off (409).
    Exists,
    /// The leading bytes contradict the declared type (415).
    ContentMismatch,
    /// A final (concatenated) upload names a part that is not a finished partial
    /// upload signed with the same token fields (403).
    ConcatInvalid,
    /// The destination's path runs through a symlink or a file inside the asset
    /// tree: the move would refuse it, so the upload is refused up front (409).
    DestinationBlocked,
    /// post-finish for a partial upload: skipped.
    Partial,
    /// post-finish for an upload whose offset is not its size: not finalized.
    Incomplete,
    /// post-finish without a usable `Storage.Path` (not a file store): not finalized.
    StorageUnsupported,
    /// `[upload] single_use`: the token was used by an earlier pre-create (403).
    TokenUsed,
    /// `[upload] single_use` and the state backend is unreachable with
    /// `single_use_when_down = "fail_closed"` (503).
    StateUnavailable,
    /// `[upload] single_use`: the token has `[upload] max_parts` partial
    /// uploads already (403).
    TooManyParts,
    /// `[upload] single_use`: this partial upload would take the token's
    /// partial uploads past `[upload] max_size` together (413).
    PartsTooLarge,
    /// `[tusd] upload_ids = "signed"`: the upload's ID was not issued by
    /// pre-create for its token (a planted `.info`, a forged post-finish, an
    /// upload from before the switch): not published.
    UploadIdInvalid,
    /// `[tusd] upload_ids = "signed"` and a pre-create from an upload server
    /// that cannot take an ID from a hook (tusd v1, rustus): a deployment
    /// fault (500).
    UploadIdsUnsupported,
    /// A hook with nothing to decide (or an unknown hook type).
    Ignored,
    /// The body is not a hook ([`HookError`]).
    BadHook,
    /// The gate failed while deciding (a bug; the answer is 500, tusd reports
    /// it to the client and the client may retry).
    Internal,
}

impl Reason {
    /// Every value, for metric pre-registration.
    pub const ALL: [Reason; 29] = [
        Reason::Ok,
        Reason::Token(upload::Reason::MetadataMissing),
        Reason::Token(upload::Reason::MetadataInvalid),
        Reason::Token(upload::Reason::KeyInvalid),
        Reason::Token(upload::Reason::VisibilityInvalid),
        Reason::Token(upload::Reason::TokenInvalid),
        Reason::Token(upload::Reason::TokenExpired),
        Reason::Token(upload::Reason::TokenTtlTooLong),
        Reason::ContentTypeNotAllowed,
        Reason::ContentTypeActive,
        Reason::ExtensionMismatch,
        Reason::TooLarge,
        Reason::LengthRequired,
        Reason::Exists,
        Reason::ContentMismatch,
        Reason::ConcatInvalid,
        Reason::DestinationBlocked,
        Reason::Partial,
        Reason::Incomplete,
        Reason::StorageUnsupported,
        Reason::TokenUsed,
        Reason::StateUnavailable,
        Reason::TooManyParts,
        Reason::PartsTooLarge,
        Reason::UploadIdInvalid,
        Reason::UploadIdsUnsupported,
        Reason::Ignored,
        Reason::BadHook,
        Reason::Internal,
    ];

    /// The wire code / label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Token(r) => r.as_str(),
            Reason::ContentTypeNotAllowed => "content_type_not_allowed",
            Reason::ContentTypeActive => "content_type_active",
            Reason::ExtensionMismatch => "extension_mismatch",
            Reason::TooLarge => "too_large",
            Reason::LengthRequired => "length_required",
            Reason::Exists => "exists",
            Reason::ContentMismatch => "content_mismatch",
            Reason::ConcatInvalid => "concat_invalid",
            Reason::DestinationBlocked => "destination_blocked",
            Reason::Partial => "partial",
            Reason::Incomplete => "incomplete",
            Reason::StorageUnsupported => "storage_unsupported",
            Reason::TokenUsed => "token_used",
            Reason::StateUnavailable => "state_unavailable",
            Reason::TooManyParts => "too_many_parts",
            Reason::PartsTooLarge => "parts_too_large",
            Reason::UploadIdInvalid => "upload_id_invalid",
            Reason::UploadIdsUnsupported => "upload_ids_unsupported",
            Reason::Ignored => "ignored",
            Reason::BadHook => "bad_hook",
            Reason::Internal => "internal",
        }
    }

    /// The HTTP status a client gets when this reason rejects an upload.
    pub fn status(self) -> u16 {
        match self {
            Reason::Ok | Reason::Partial | Reason::Ignored => 200,
            Reason::Token(
                upload::Reason::MetadataMissing
                | upload::Reason::MetadataInvalid
                | upload::Reason::KeyInvalid
                | upload::Reason::VisibilityInvalid,
            )
            | Reason::BadHook => 400,
            Reason::Token(_)
            | Reason::ConcatInvalid
            | Reason::TokenUsed
            | Reason::TooManyParts
            | Reason::UploadIdInvalid => 403,
            Reason::StateUnavailable => 503,
            Reason::ContentTypeNotAllowed
            | Reason::ContentTypeActive
            | Reason::ExtensionMismatch
            | Reason::ContentMismatch => 415,
            Reason::TooLarge | Reason::PartsTooLarge => 413,
            Reason::LengthRequired => 411,
            Reason::Exists | Reason::DestinationBlocked => 409,
            Reason::Incomplete | Reason::StorageUnsupported => 422,
            Reason::Internal | Reason::UploadIdsUnsupported => 500,
        }
    }
}

impl From<upload::Reason> for Reason {
    fn from(r: upload::Reason) -> Self {
        Reason::Token(r)
    }
}

/// Longest message kept in a rejection (keeps the v2 answer far below 5 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// A refusal a tus client can show: `{"error":{"code":…,"message":…}}`.
/// The message never contains a secret or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    message: String,
}

impl Rejection {
    /// A rejection for `reason` with a human-readable message (cut to
    /// [`MAX_MESSAGE_BYTES`] on a character boundary).
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Rejection { reason, message }
    }

    /// The reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The HTTP status for the client.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body a client gets.
    pub fn body(&self) -> String {
        serde_json::json!({"error": {"code": self.reason.as_str(), "message": self.message}}).to_string()
    }
}

impl From<upload::Denied> for Rejection {
    fn from(d: upload::Denied) -> Self {
        Rejection::new(d.reason().into(), d.detail().to_string())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.reason.as_str(), self.message)
    }
}

/// What the gate decided for one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A blocking hook passes (`{}` / 200).
    Accept,
    /// A blocking hook is refused: the client sees the status and body.
    Reject(Rejection),
    /// post-finish: move the upload as planned (answer `{}` / 200 at once, move
    /// in the background).
    Finalize(Box<FinalizePlan>),
    /// post-finish refused: the upload stays in `upload_dir` (`{}` / 200, but
    /// logged and counted as a denial).
    Keep(Rejection),
    /// Nothing to decide (`{}` / 200).
    Skip(Reason),
}

/// The label of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted or finalize planned.
    Allow,
    /// Rejected or kept back.
    Deny,
    /// Nothing decided.
    Skip,
    /// Not a hook (parse error).
    Error,
}

impl Outcome {
    /// Every label value.
    pub const ALL: [Outcome; 4] = [Outcome::Allow, Outcome::Deny, Outcome::Skip, Outcome::Error];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Skip => "skip",
            Outcome::Error => "error",
        }
    }
}

/// One decision: what to answer, log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The hook decided.
    pub hook: HookName,
    /// The verdict.
    pub verdict: Verdict,
    /// `asset-key` as sent (for the log line; may be unsafe, log it escaped).
    pub key: Option<String>,
    /// `Upload.ID` (empty at tusd pre-create).
    pub upload_id: String,
    /// An accepted pre-create's proof (the verified token and its
    /// destination): what `[upload] single_use` consumes takes it
    /// ([`precreate::Accepted::claim`]), so a refused token cannot be consumed.
    pub accepted: Option<precreate::Accepted>,
    /// An accepted pre-create's new upload ID (`[tusd] upload_ids = "signed"`):
    /// the answer hands it to tusd ([`ids`]).
    pub assigned_id: Option<String>,
}

impl Decision {
    /// The `decision` label.
    pub fn outcome(&self) -> Outcome {
        match self.verdict {
            Verdict::Accept | Verdict::Finalize(_) => Outcome::Allow,
            Verdict::Reject(_) | Verdict::Keep(_) => Outcome::Deny,
            Verdict::Skip(_) => Outcome::Skip,
        }
    }

    /// The `reason` label.
    pub fn reason(&self) -> Reason {
        match &self.verdict {
            Verdict::Accept | Verdict::Finalize(_) => Reason::Ok,
            Verdict::Reject(r) | Verdict::Keep(r) => r.reason(),
            Verdict::Skip(r) => *r,
        }
    }

    /// The finalize plan, if any.
    pub fn plan(&self) -> Option<&FinalizePlan> {
        match &self.verdict {
            Verdict::Finalize(p) => Some(p),
            _ => None,
        }
    }
}

/// The configuration the decisions read.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// `[upload]`.
    pub upload: &'a UploadConfig,
    /// `[storage]`.
    pub storage: &'a StorageConfig,
    /// `[tusd] upload_ids`: whether pre-create issues upload IDs and every
    /// publish requires them ([`ids`]).
    pub upload_ids: UploadIds,
}

/// The facts a decision needs from outside (the filesystem), asked by the pure
/// code and answered by the server.
pub trait Lookup {
    /// The state of `relative` (`{prefix}/{key}`, under `[storage] root`), by the
    /// mover's own rule (`finalize::destination_state`). An I/O error other than
    /// "not found" should answer [`Destination::Exists`] (fail closed: the upload
    /// is refused with 409 rather than risk an overwrite later).
    fn destination(&self, relative: &Path) -> Destination;

    /// The first bytes (up to [`prefinish::SNIFF_BYTES`]) of a finished upload,
    /// for pre-finish content sniffing; `None` = sniffing disabled or the data
    /// is not readable within `upload_dir` (then pre-finish decides nothing).
    fn leading_bytes(&self, _upload: &Upload) -> Option<Vec<u8>> {
        None
    }

    /// What the upload server's own record says of the upload `id` (a part named
    /// by a final upload). `None`: no such upload, an unsafe ID, or its record is
    /// unreadable (a final upload naming it is refused).
    fn part(&self, _id: &str) -> Option<Part> {
        None
    }
}

/// Where a destination stands, by the mover's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nothing there; every existing directory on the way is a real directory.
    Free,
    /// A file (or a directory) is there already.
    Exists,
    /// A component on the way is a symlink or not a directory: the move would
    /// refuse it, whatever `overwrite` says.
    Blocked,
}

/// A part of a final upload, as its `.info` on disk describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `IsPartial` (tusd) / `is_partial` (rustus).
    pub is_partial: bool,
    /// The data file is exactly as long as the declared size.
    pub finished: bool,
    /// The stored metadata.
    pub metadata: crate::token::upload::Metadata,
}

/// Any `Fn(&Path) -> bool` is an existence check (no sniffing, no parts).
impl<F: Fn(&Path) -> bool> Lookup for F {
    fn destination(&self, relative: &Path) -> Destination {
        if self(relative) {
            Destination::Exists
        } else {
            Destination::Free
        }
    }
}

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
        HookName::PostFinish => postfinish::decide(upload, gate),
        HookName::PreFinish => match lookup.leading_bytes(upload) {
            Some(head) => prefinish::decide(upload, gate, &head),
            None => Verdict::Skip(Reason::Ignored),
        },
        _ => Verdict::Skip(Reason::Ignored),
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

#[cfg(any(test, feature = "testing"))]
pub mod testing {
    //! Shared test configuration (feature `testing`: the daemon's tests use
    //! it too).
    #![allow(missing_docs)]
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::{StorageConfig, UploadConfig};
    use crate::secret::SecretSet;

    pub const S1: &str = "newest-upload-secret-0123";
    pub const S2: &str = "older-upload-secret-45678";
    pub const NOW: i64 = 1_800_000_000;

    pub fn upload_config(secrets: &[&str]) -> UploadConfig {
        UploadConfig {
            secrets: SecretSet::from_texts(secrets),
            clock_skew: Duration::from_secs(30),
            max_ttl: Duration::from_secs(86_400),
            content_types: Vec::new(),
            max_size: None,
            allow_deferred_length: false,
            check_content: false,
            session_binding: Default::default(),
            session_grace: std::time::Duration::from_secs(3600),
            single_use: false,
            nginx_types: crate::config::NginxTypes::builtin(),
            max_parts: crate::config::DEFAULT_MAX_PARTS,
        }
    }

    pub fn storage_config() -> StorageConfig {
        StorageConfig {
            root: Some(PathBuf::from("/srv/assets")),
            overwrite: false,
            public_prefix: "public".into(),
            private_prefix: "private".into(),
        }
    }
}

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_distinct_and_statuses() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
        assert_eq!(Reason::Exists.status(), 409);
        assert_eq!(Reason::TooLarge.status(), 413);
        assert_eq!(Reason::TooManyParts.status(), 403);
        assert_eq!(Reason::PartsTooLarge.status(), 413);
        assert_eq!(Reason::LengthRequired.status(), 411);
        assert_eq!(Reason::ContentTypeNotAllowed.status(), 415);
        assert_eq!(Reason::Token(upload::Reason::TokenExpired).status(), 403);
        assert_eq!(Reason::Token(upload::Reason::KeyInvalid).status(), 400);
    }

    #[test]
    fn rejection_body_and_truncation() {
        let r = Rejection::new(Reason::Exists, "asset exists");
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "exists");
        assert_eq!(v["error"]["message"], "asset exists");
        let long = Rejection::new(Reason::Token(upload::Reason::KeyInvalid), "é".repeat(2000));
        assert!(long.message().len() <= MAX_MESSAGE_BYTES);
        assert!(long.message().len() >= MAX_MESSAGE_BYTES - 1);
    }
}
