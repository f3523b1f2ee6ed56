//! Rendering a [`Decision`] for the protocol that asked.
//!
//! - tusd v2: ALWAYS `200`, `application/json`, a JSON object of at most 5 KiB
//!   (`{}` when there is nothing to say). A non-2xx or non-JSON answer is a hook
//!   *failure* for tusd (the client would get a 500 with our body in tusd's
//!   error text), so a refusal is `{"RejectUpload":true,"HTTPResponse":{…}}`
//!   with the status and JSON body inside and string header values. At
//!   pre-finish only `HTTPResponse` applies, so `RejectUpload` is left out.
//!   An accepted pre-create with a new upload ID (`[tusd] upload_ids =
//!   "signed"`, see [`super::ids`]) is `{"ChangeFileInfo":{"ID":"<id>"}}`: tusd
//!   creates the upload under that ID and keeps the metadata it received (a
//!   `ChangeFileInfo` without `MetaData` changes none).
//! - tusd v1 / rustus: accept with `200 {}`; reject with the 4xx and the JSON
//!   error body directly, which reach the client unchanged.
//! - post-* hooks: `{}` / 200 in both styles, even when finalize was refused
//!   (tusd ignores post-hook answers; the refusal is logged and counted).

use serde_json::json;

use super::protocol::{HookError, HookName, Protocol};
use super::{Decision, ReasonCode, Rejection, Verdict};

/// The most tusd v2 reads from a hook answer.
pub const V2_MAX_BODY: usize = 5 * 1024;

/// The JSON content type of every answer.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// A rendered answer for the server to send as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: String) -> Self {
        Answer {
            status,
            content_type: CONTENT_TYPE_JSON,
            body: body.into_bytes(),
        }
    }

    fn empty_ok() -> Self {
        Answer::json(200, "{}".into())
    }
}

/// Renders a decision in the style of `protocol`.
pub fn answer(protocol: Protocol, decision: &Decision) -> Answer {
    match protocol {
        Protocol::V2 => answer_v2(decision),
        Protocol::V1 => answer_v1(decision),
    }
}

/// tusd v2 style.
pub fn answer_v2(decision: &Decision) -> Answer {
    let rejection = match (&decision.verdict, &decision.assigned_id) {
        (Verdict::Reject(r), _) => r,
        (Verdict::Accept, Some(id)) if decision.hook == HookName::PreCreate => {
            // The ID is 64 hex digits (ours): nothing to escape, so the
            // object is written directly (a JSON value and its serializer
            // cost a tenth of a pre-create).
            debug_assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            let mut body = String::with_capacity(32 + id.len());
            body.push_str(r#"{"ChangeFileInfo":{"ID":""#);
            body.push_str(id);
            body.push_str(r#""}}"#);
            return Answer::json(200, body);
        }
        _ => return Answer::empty_ok(),
    };
    let render = |r: &Rejection| {
        let http = json!({
            "StatusCode": r.status(),
            "Body": r.body(),
            "Header": {"Content-Type": CONTENT_TYPE_JSON},
        });
        let v = if decision.hook == HookName::PreFinish {
            json!({"HTTPResponse": http})
        } else {
            json!({"RejectUpload": true, "HTTPResponse": http})
        };
        v.to_string()
    };
    let mut body = render(rejection);
    if body.len() > V2_MAX_BODY {
        // Cannot happen with our messages (capped at 1 KiB), but the 5 KiB limit
        // is tusd's hard rule: drop the message rather than break the hook.
        body = render(&Rejection::new(rejection.reason(), rejection.reason().as_str()));
    }
    Answer::json(200, body)
}

/// tusd v1 / rustus style.
pub fn answer_v1(decision: &Decision) -> Answer {
    match &decision.verdict {
        Verdict::Reject(r) => Answer::json(r.status(), r.body()),
        _ => Answer::empty_ok(),
    }
}

/// The answer to a body that is not a hook: 400 with the JSON error body.
pub fn answer_error(err: &HookError) -> Answer {
    let r = Rejection::new(ReasonCode::BadHook, err.to_string());
    Answer::json(r.status(), r.body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::upload::UploadRefusal;

    fn decision(hook: HookName, verdict: Verdict) -> Decision {
        Decision {
            hook,
            verdict,
            key: Some("a.txt".into()),
            upload_id: String::new(),
            accepted: None,
            assigned_id: None,
        }
    }

    fn parse(a: &Answer) -> serde_json::Value {
        serde_json::from_slice(&a.body).unwrap()
    }

    #[test]
    fn v2_reject_shape() {
        let d = decision(
            HookName::PreCreate,
            Verdict::Reject(Rejection::new(
                ReasonCode::Token(UploadRefusal::TokenExpired),
                "upload token expired 5 s ago",
            )),
        );
        let a = answer_v2(&d);
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "application/json");
        let v = parse(&a);
        assert_eq!(v["RejectUpload"], true);
        assert_eq!(v["HTTPResponse"]["StatusCode"], 403);
        assert_eq!(v["HTTPResponse"]["Header"]["Content-Type"], "application/json");
        let inner: serde_json::Value =
            serde_json::from_str(v["HTTPResponse"]["Body"].as_str().unwrap()).unwrap();
        assert_eq!(inner["error"]["code"], "token_expired");
        assert_eq!(inner["error"]["message"], "upload token expired 5 s ago");
    }

    #[test]
    fn v2_accepted_pre_create_hands_tusd_the_new_id() {
        let mut d = decision(HookName::PreCreate, Verdict::Accept);
        let id = "ab".repeat(32);
        d.assigned_id = Some(id.clone());
        let a = answer_v2(&d);
        assert_eq!(a.status, 200);
        assert_eq!(parse(&a), json!({"ChangeFileInfo": {"ID": id}}));
        // A refusal (single_use after the ID was chosen) wins over the ID.
        d.verdict = Verdict::Reject(Rejection::new(ReasonCode::TokenUsed, "used"));
        assert_eq!(parse(&answer_v2(&d))["RejectUpload"], true);
        // v1 cannot take an ID: its answer never carries one.
        d.verdict = Verdict::Accept;
        assert_eq!(answer_v1(&d).body, b"{}");
    }

    #[test]
    fn v2_pre_finish_has_no_reject_upload() {
        let d = decision(
            HookName::PreFinish,
            Verdict::Reject(Rejection::new(ReasonCode::ContentMismatch, "not PNG")),
        );
        let v = parse(&answer_v2(&d));
        assert!(v.get("RejectUpload").is_none());
        assert_eq!(v["HTTPResponse"]["StatusCode"], 415);
    }

    #[test]
    fn v2_everything_else_is_empty_object() {
        for verdict in [
            Verdict::Accept,
            Verdict::Skip(ReasonCode::Ignored),
            Verdict::Keep(Rejection::new(
                ReasonCode::Token(UploadRefusal::TokenInvalid),
                "x",
            )),
        ] {
            let a = answer_v2(&decision(HookName::PostFinish, verdict));
            assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        }
    }

    #[test]
    fn v2_body_stays_under_5k() {
        let huge = "\"\\".repeat(5000);
        let d = decision(
            HookName::PreCreate,
            Verdict::Reject(Rejection::new(ReasonCode::Token(UploadRefusal::KeyInvalid), huge)),
        );
        let a = answer_v2(&d);
        assert!(a.body.len() <= V2_MAX_BODY, "{}", a.body.len());
        assert_eq!(parse(&a)["HTTPResponse"]["StatusCode"], 400);
    }

    #[test]
    fn v1_styles() {
        let d = decision(
            HookName::PreCreate,
            Verdict::Reject(Rejection::new(ReasonCode::Exists, "exists")),
        );
        let a = answer_v1(&d);
        assert_eq!(a.status, 409);
        assert_eq!(parse(&a)["error"]["code"], "exists");
        let ok = answer_v1(&decision(HookName::PreCreate, Verdict::Accept));
        assert_eq!((ok.status, ok.body.as_slice()), (200, &b"{}"[..]));
        let keep = answer_v1(&decision(
            HookName::PostFinish,
            Verdict::Keep(Rejection::new(
                ReasonCode::Token(UploadRefusal::TokenInvalid),
                "x",
            )),
        ));
        assert_eq!(keep.status, 200);
        assert_eq!(answer(Protocol::V1, &d), a);
    }

    #[test]
    fn error_answer() {
        let a = answer_error(&HookError::NoUpload);
        assert_eq!(a.status, 400);
        let v = parse(&a);
        assert_eq!(v["error"]["code"], "bad_hook");
        assert!(v["error"]["message"].as_str().unwrap().contains("Upload"));
    }
}
