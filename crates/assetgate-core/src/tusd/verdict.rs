//! What the gate decided for one hook: the verdict, its labels, and the
//! decision the adapter answers, logs and counts.

use super::postfinish::FinalizePlan;
use super::precreate;
use super::protocol::HookName;
use super::reason::{Reason, Rejection};

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

    /// The label a decision with `reason` is counted under: each reason
    /// belongs to one (a refusal's reason never skips, a skip's never
    /// refuses), so [`Decision::outcome`] is always `Outcome::of(reason)`.
    pub fn of(reason: Reason) -> Outcome {
        match reason {
            Reason::Ok => Outcome::Allow,
            Reason::Ignored | Reason::Partial => Outcome::Skip,
            Reason::BadHook | Reason::Internal => Outcome::Error,
            _ => Outcome::Deny,
        }
    }

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
    /// the answer hands it to tusd ([`ids`](super::ids)).
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
