//! The closed set of reason codes (the JSON `error.code` and the `reason`
//! label) and the refusal a tus client sees.

use std::fmt;

use super::protocol::HookName;
use crate::token::upload;

/// The closed set of reason codes: JSON `error.code` and the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// Accepted / finalize planned.
    Ok,
    /// The upload token was refused ([`upload::UploadRefusal`]: the fields, the key
    /// policy, the signature, the expiry, the lifetime bound).
    Token(upload::UploadRefusal),
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
    /// The store of uploads and assets did not answer a lookup the decision
    /// needs (`[storage] backend = "s3"`: whether the destination exists at
    /// pre-create, the leading bytes at pre-finish; an error or a timeout):
    /// refused, the client may retry (503).
    StorageUnavailable,
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
    /// The body is not a hook ([`HookError`](super::HookError)).
    BadHook,
    /// The gate failed while deciding (a bug; the answer is 500, tusd reports
    /// it to the client and the client may retry).
    Internal,
}

impl ReasonCode {
    /// Every value, for metric pre-registration.
    pub const ALL: [ReasonCode; 30] = [
        ReasonCode::Ok,
        ReasonCode::Token(upload::UploadRefusal::MetadataMissing),
        ReasonCode::Token(upload::UploadRefusal::MetadataInvalid),
        ReasonCode::Token(upload::UploadRefusal::KeyInvalid),
        ReasonCode::Token(upload::UploadRefusal::VisibilityInvalid),
        ReasonCode::Token(upload::UploadRefusal::TokenInvalid),
        ReasonCode::Token(upload::UploadRefusal::TokenExpired),
        ReasonCode::Token(upload::UploadRefusal::TokenTtlTooLong),
        ReasonCode::ContentTypeNotAllowed,
        ReasonCode::ContentTypeActive,
        ReasonCode::ExtensionMismatch,
        ReasonCode::TooLarge,
        ReasonCode::LengthRequired,
        ReasonCode::Exists,
        ReasonCode::ContentMismatch,
        ReasonCode::ConcatInvalid,
        ReasonCode::DestinationBlocked,
        ReasonCode::Partial,
        ReasonCode::Incomplete,
        ReasonCode::StorageUnsupported,
        ReasonCode::TokenUsed,
        ReasonCode::StateUnavailable,
        ReasonCode::StorageUnavailable,
        ReasonCode::TooManyParts,
        ReasonCode::PartsTooLarge,
        ReasonCode::UploadIdInvalid,
        ReasonCode::UploadIdsUnsupported,
        ReasonCode::Ignored,
        ReasonCode::BadHook,
        ReasonCode::Internal,
    ];

    /// The wire code / label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Ok => "ok",
            ReasonCode::Token(r) => r.as_str(),
            ReasonCode::ContentTypeNotAllowed => "content_type_not_allowed",
            ReasonCode::ContentTypeActive => "content_type_active",
            ReasonCode::ExtensionMismatch => "extension_mismatch",
            ReasonCode::TooLarge => "too_large",
            ReasonCode::LengthRequired => "length_required",
            ReasonCode::Exists => "exists",
            ReasonCode::ContentMismatch => "content_mismatch",
            ReasonCode::ConcatInvalid => "concat_invalid",
            ReasonCode::DestinationBlocked => "destination_blocked",
            ReasonCode::Partial => "partial",
            ReasonCode::Incomplete => "incomplete",
            ReasonCode::StorageUnsupported => "storage_unsupported",
            ReasonCode::TokenUsed => "token_used",
            ReasonCode::StateUnavailable => "state_unavailable",
            ReasonCode::StorageUnavailable => "storage_unavailable",
            ReasonCode::TooManyParts => "too_many_parts",
            ReasonCode::PartsTooLarge => "parts_too_large",
            ReasonCode::UploadIdInvalid => "upload_id_invalid",
            ReasonCode::UploadIdsUnsupported => "upload_ids_unsupported",
            ReasonCode::Ignored => "ignored",
            ReasonCode::BadHook => "bad_hook",
            ReasonCode::Internal => "internal",
        }
    }

    /// The HTTP status a client gets when this reason rejects an upload.
    pub fn status(self) -> u16 {
        match self {
            ReasonCode::Ok | ReasonCode::Partial | ReasonCode::Ignored => 200,
            ReasonCode::Token(
                upload::UploadRefusal::MetadataMissing
                | upload::UploadRefusal::MetadataInvalid
                | upload::UploadRefusal::KeyInvalid
                | upload::UploadRefusal::VisibilityInvalid,
            )
            | ReasonCode::BadHook => 400,
            ReasonCode::Token(_)
            | ReasonCode::ConcatInvalid
            | ReasonCode::TokenUsed
            | ReasonCode::TooManyParts
            | ReasonCode::UploadIdInvalid => 403,
            ReasonCode::StateUnavailable | ReasonCode::StorageUnavailable => 503,
            ReasonCode::ContentTypeNotAllowed
            | ReasonCode::ContentTypeActive
            | ReasonCode::ExtensionMismatch
            | ReasonCode::ContentMismatch => 415,
            ReasonCode::TooLarge | ReasonCode::PartsTooLarge => 413,
            ReasonCode::LengthRequired => 411,
            ReasonCode::Exists | ReasonCode::DestinationBlocked => 409,
            ReasonCode::Incomplete | ReasonCode::StorageUnsupported => 422,
            ReasonCode::Internal | ReasonCode::UploadIdsUnsupported => 500,
        }
    }
}

/// Which hooks can decide with which reason: one table, next to the
/// reasons, for whoever needs to know without running a decision (the
/// daemon pre-registers one `assetgate_hook_decisions_total` series per hook
/// listed, and asserts in debug builds that every decision it counts is
/// listed here). Keep it true when a check moves between hooks.
impl ReasonCode {
    /// The hooks whose decision can carry this reason. Empty for `bad_hook`
    /// and `internal`: no hook was decided (counted as `hook="other"`).
    pub fn hooks(self) -> &'static [HookName] {
        use upload::UploadRefusal as Token;
        // The token's signature-only reasons: post-finish re-verifies the
        // signature (no expiry), and so does pre-finish before sniffing.
        const SIGNED: &[HookName] = &[HookName::PreCreate, HookName::PreFinish, HookName::PostFinish];
        const PRE_CREATE: &[HookName] = &[HookName::PreCreate];
        // The policy checks pre-create and the publish plan share (rules.rs).
        const PLANNED: &[HookName] = &[HookName::PreCreate, HookName::PostFinish];
        const POST_FINISH: &[HookName] = &[HookName::PostFinish];
        const PRE_FINISH: &[HookName] = &[HookName::PreFinish];
        const PARTS: &[HookName] = &[HookName::PreFinish, HookName::PostFinish];
        // The two lookups a store answers: the destination, the leading bytes.
        const SNIFFED: &[HookName] = &[HookName::PreCreate, HookName::PreFinish];
        // Every hook without a decision of its own, known or not (`other`).
        const NOTHING_TO_DECIDE: &[HookName] = &[
            HookName::PostCreate,
            HookName::PostReceive,
            HookName::PreFinish,
            HookName::PreTerminate,
            HookName::PostTerminate,
            HookName::Other(String::new()),
        ];
        match self {
            ReasonCode::Ok => SIGNED,
            ReasonCode::Token(
                Token::MetadataMissing
                | Token::MetadataInvalid
                | Token::KeyInvalid
                | Token::VisibilityInvalid
                | Token::TokenInvalid,
            ) => SIGNED,
            ReasonCode::Token(Token::TokenExpired | Token::TokenTtlTooLong) => PRE_CREATE,
            ReasonCode::ContentTypeNotAllowed
            | ReasonCode::ContentTypeActive
            | ReasonCode::ExtensionMismatch
            | ReasonCode::TooLarge
            | ReasonCode::ConcatInvalid => PLANNED,
            ReasonCode::LengthRequired
            | ReasonCode::Exists
            | ReasonCode::DestinationBlocked
            | ReasonCode::TokenUsed
            | ReasonCode::StateUnavailable
            | ReasonCode::TooManyParts
            | ReasonCode::PartsTooLarge
            | ReasonCode::UploadIdsUnsupported => PRE_CREATE,
            ReasonCode::Incomplete | ReasonCode::StorageUnsupported | ReasonCode::UploadIdInvalid => {
                POST_FINISH
            }
            ReasonCode::ContentMismatch => PRE_FINISH,
            ReasonCode::StorageUnavailable => SNIFFED,
            ReasonCode::Partial => PARTS,
            ReasonCode::Ignored => NOTHING_TO_DECIDE,
            ReasonCode::BadHook | ReasonCode::Internal => &[],
        }
    }
}

impl From<upload::UploadRefusal> for ReasonCode {
    fn from(r: upload::UploadRefusal) -> Self {
        ReasonCode::Token(r)
    }
}

/// Longest message kept in a rejection (keeps the v2 answer far below 5 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// A refusal a tus client can show: `{"error":{"code":…,"message":…}}`.
/// The message never contains a secret or the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: ReasonCode,
    message: String,
}

impl Rejection {
    /// A rejection for `reason` with a human-readable message (cut to
    /// [`MAX_MESSAGE_BYTES`] on a character boundary).
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Self {
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
    pub fn reason(&self) -> ReasonCode {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_distinct_and_statuses() {
        let mut names: Vec<&str> = ReasonCode::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ReasonCode::ALL.len());
        assert_eq!(ReasonCode::Exists.status(), 409);
        assert_eq!(ReasonCode::TooLarge.status(), 413);
        assert_eq!(ReasonCode::TooManyParts.status(), 403);
        assert_eq!(ReasonCode::PartsTooLarge.status(), 413);
        assert_eq!(ReasonCode::LengthRequired.status(), 411);
        assert_eq!(ReasonCode::ContentTypeNotAllowed.status(), 415);
        assert_eq!(
            ReasonCode::Token(upload::UploadRefusal::TokenExpired).status(),
            403
        );
        assert_eq!(ReasonCode::Token(upload::UploadRefusal::KeyInvalid).status(), 400);
    }

    #[test]
    fn rejection_body_and_truncation() {
        let r = Rejection::new(ReasonCode::Exists, "asset exists");
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"]["code"], "exists");
        assert_eq!(v["error"]["message"], "asset exists");
        let long = Rejection::new(
            ReasonCode::Token(upload::UploadRefusal::KeyInvalid),
            "é".repeat(2000),
        );
        assert!(long.message().len() <= MAX_MESSAGE_BYTES);
        assert!(long.message().len() >= MAX_MESSAGE_BYTES - 1);
    }
}
