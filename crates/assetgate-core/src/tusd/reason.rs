//! The closed set of reason codes (the JSON `error.code` and the `reason`
//! label) and the refusal a tus client sees.

use std::fmt;

use super::protocol::HookName;
use crate::token::upload;

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
    /// The body is not a hook ([`HookError`](super::HookError)).
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

/// Which hooks can decide with which reason: one table, next to the
/// reasons, for whoever needs to know without running a decision (the
/// daemon pre-registers one `assetgate_hook_decisions_total` series per hook
/// listed, and asserts in debug builds that every decision it counts is
/// listed here). Keep it true when a check moves between hooks.
impl Reason {
    /// The hooks whose decision can carry this reason. Empty for `bad_hook`
    /// and `internal`: no hook was decided (counted as `hook="other"`).
    pub fn hooks(self) -> &'static [HookName] {
        use upload::Reason as Token;
        // The token's signature-only reasons: post-finish re-verifies the
        // signature (no expiry), and so does pre-finish before sniffing.
        const SIGNED: &[HookName] = &[HookName::PreCreate, HookName::PreFinish, HookName::PostFinish];
        const PRE_CREATE: &[HookName] = &[HookName::PreCreate];
        // The policy checks pre-create and the publish plan share (rules.rs).
        const PLANNED: &[HookName] = &[HookName::PreCreate, HookName::PostFinish];
        const POST_FINISH: &[HookName] = &[HookName::PostFinish];
        const PRE_FINISH: &[HookName] = &[HookName::PreFinish];
        const PARTS: &[HookName] = &[HookName::PreFinish, HookName::PostFinish];
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
            Reason::Ok => SIGNED,
            Reason::Token(
                Token::MetadataMissing
                | Token::MetadataInvalid
                | Token::KeyInvalid
                | Token::VisibilityInvalid
                | Token::TokenInvalid,
            ) => SIGNED,
            Reason::Token(Token::TokenExpired | Token::TokenTtlTooLong) => PRE_CREATE,
            Reason::ContentTypeNotAllowed
            | Reason::ContentTypeActive
            | Reason::ExtensionMismatch
            | Reason::TooLarge
            | Reason::ConcatInvalid => PLANNED,
            Reason::LengthRequired
            | Reason::Exists
            | Reason::DestinationBlocked
            | Reason::TokenUsed
            | Reason::StateUnavailable
            | Reason::TooManyParts
            | Reason::PartsTooLarge
            | Reason::UploadIdsUnsupported => PRE_CREATE,
            Reason::Incomplete | Reason::StorageUnsupported | Reason::UploadIdInvalid => POST_FINISH,
            Reason::ContentMismatch => PRE_FINISH,
            Reason::Partial => PARTS,
            Reason::Ignored => NOTHING_TO_DECIDE,
            Reason::BadHook | Reason::Internal => &[],
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
