//! What an event says (PURE): its deterministic id, its type, and its body,
//! serialised once, when it is created, so every retry signs the same bytes.
//!
//! `{"type", "timestamp", "data"}` as Standard Webhooks recommends. `data` of
//! `upload.finalized`: `key`, `visibility`, `content_type`, `size`, `sha256`
//! (hex, of the published bytes, computed by the mover), `path` (relative to
//! `[storage] root`), `upload_id`, `finalized_at`. `upload.failed` has the same
//! fields but `sha256`, with `reason` (a closed set: [`FAILED_REASONS`]) and
//! `failed_at` instead of `finalized_at`. Never the token, never a secret: the
//! token field is simply not among the fields copied.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::StorageConfig;
use crate::finalize::FinalizeError;
use crate::policy::Visibility;
use crate::token::upload::UploadRefusal;
use crate::token::upload::{Metadata, FIELD_CONTENT_TYPE, FIELD_KEY, FIELD_VISIBILITY};
use crate::tusd::{FinalizePlan, NotPlanned, ReasonCode};

/// The event types (closed set: also a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// The upload is published in the asset tree.
    #[serde(rename = "upload.finalized")]
    Finalized,
    /// The upload finished but will not be published.
    #[serde(rename = "upload.failed")]
    Failed,
}

impl Kind {
    /// Every value, for metric pre-registration.
    pub const ALL: [Kind; 2] = [Kind::Finalized, Kind::Failed];

    /// The wire (and label) value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Finalized => "upload.finalized",
            Kind::Failed => "upload.failed",
        }
    }
}

/// `reason` values of `upload.failed`: conflicts with an existing asset, a
/// content mismatch, a final upload whose parts do not check out, and
/// uploads the post-finish rules refuse (unverifiable token, policy).
pub const FAILED_REASONS: [ReasonCode; 10] = [
    ReasonCode::Exists,
    ReasonCode::ContentMismatch,
    ReasonCode::ConcatInvalid,
    ReasonCode::Token(UploadRefusal::TokenInvalid),
    ReasonCode::Token(UploadRefusal::MetadataMissing),
    ReasonCode::Token(UploadRefusal::MetadataInvalid),
    ReasonCode::ContentTypeNotAllowed,
    ReasonCode::ContentTypeActive,
    ReasonCode::ExtensionMismatch,
    ReasonCode::TooLarge,
];

/// One event, ready to be stored and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `webhook-id`: derived from the upload ID and the type, so the same
    /// upload never gets two events of one type.
    pub id: String,
    /// Its type.
    pub kind: Kind,
    /// Unix milliseconds at creation.
    pub created_ms: u64,
    /// The JSON body, exactly as delivered and signed.
    pub body: String,
    /// The asset key (for `events list`; `""` when unknown).
    pub key: String,
}

/// `evt_` + 32 hex digits of SHA-256 over the type and the upload ID.
/// `upload_id` falls back to the upload's data path when the upload server sent
/// no ID (the hooks' dedupe does the same).
pub fn event_id(kind: Kind, upload_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"assetgate-event\0");
    h.update(kind.as_str().as_bytes());
    h.update(b"\0");
    h.update(upload_id.as_bytes());
    let digest = h.finalize();
    format!("evt_{}", hex::encode(&digest[..16]))
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-30T19:36:36.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let mut s = String::with_capacity(24);
    crate::telemetry::format::date_time_prefix(ms / 1000, &mut s);
    s.push_str(&format!("{:03}Z", ms % 1000));
    s
}

#[derive(Serialize)]
struct Envelope<'a, D> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: &'a str,
    data: D,
}

#[derive(Serialize)]
struct FinalizedData<'a> {
    key: &'a str,
    visibility: &'a str,
    content_type: &'a str,
    size: u64,
    sha256: String,
    path: String,
    upload_id: &'a str,
    finalized_at: &'a str,
}

#[derive(Serialize)]
struct FailedData<'a> {
    key: Option<&'a str>,
    visibility: Option<&'a str>,
    content_type: Option<&'a str>,
    size: Option<u64>,
    path: Option<String>,
    upload_id: &'a str,
    reason: &'static str,
    failed_at: &'a str,
}

fn id_of(plan: &FinalizePlan) -> String {
    if plan.upload_id().is_empty() {
        plan.source().display().to_string()
    } else {
        plan.upload_id().to_owned()
    }
}

fn path_string(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `upload.finalized` for `plan`, published with `size` bytes of digest `sha256`.
pub fn finalized(plan: &FinalizePlan, size: u64, sha256: &[u8; 32], now_ms: u64) -> Event {
    let at = rfc3339(now_ms);
    let body = Envelope {
        kind: Kind::Finalized.as_str(),
        timestamp: &at,
        data: FinalizedData {
            key: plan.key(),
            visibility: plan.visibility().as_str(),
            content_type: plan.content_type(),
            size,
            sha256: hex::encode(sha256),
            path: path_string(plan.destination()),
            upload_id: plan.upload_id(),
            finalized_at: &at,
        },
    };
    Event {
        id: event_id(Kind::Finalized, &id_of(plan)),
        kind: Kind::Finalized,
        created_ms: now_ms,
        body: serde_json::to_string(&body).expect("events serialise"),
        key: plan.key().to_owned(),
    }
}

/// `upload.failed` for a planned (verified) upload the mover refused.
pub fn failed_plan(plan: &FinalizePlan, reason: ReasonCode, now_ms: u64) -> Event {
    let at = rfc3339(now_ms);
    let body = Envelope {
        kind: Kind::Failed.as_str(),
        timestamp: &at,
        data: FailedData {
            key: Some(plan.key()),
            visibility: Some(plan.visibility().as_str()),
            content_type: Some(plan.content_type()),
            size: Some(plan.size()),
            path: Some(path_string(plan.destination())),
            upload_id: plan.upload_id(),
            reason: reason.as_str(),
            failed_at: &at,
        },
    };
    Event {
        id: event_id(Kind::Failed, &id_of(plan)),
        kind: Kind::Failed,
        created_ms: now_ms,
        body: serde_json::to_string(&body).expect("events serialise"),
        key: plan.key().to_owned(),
    }
}

/// `upload.failed` for a finished upload found on disk that the post-finish
/// rules refuse (the reconciler, `finalize-pending`). The fields are the
/// upload's stored metadata: with `token_invalid` they were NOT verified.
pub fn failed_stored(
    upload_id: &str,
    metadata: &Metadata,
    size: Option<u64>,
    storage: &StorageConfig,
    reason: ReasonCode,
    now_ms: u64,
) -> Event {
    let at = rfc3339(now_ms);
    let key = metadata.get(FIELD_KEY).map(String::as_str);
    let vis = metadata.get(FIELD_VISIBILITY).map(String::as_str);
    let path = match (key, vis.and_then(Visibility::parse)) {
        (Some(k), Some(v)) if crate::policy::check_key(k).is_ok() => {
            Some(path_string(&crate::tusd::rules::destination(v, k, storage)))
        }
        _ => None,
    };
    let body = Envelope {
        kind: Kind::Failed.as_str(),
        timestamp: &at,
        data: FailedData {
            key,
            visibility: vis,
            content_type: metadata.get(FIELD_CONTENT_TYPE).map(String::as_str),
            size,
            path,
            upload_id,
            reason: reason.as_str(),
            failed_at: &at,
        },
    };
    Event {
        id: event_id(Kind::Failed, upload_id),
        kind: Kind::Failed,
        created_ms: now_ms,
        body: serde_json::to_string(&body).expect("events serialise"),
        key: key.unwrap_or("").to_owned(),
    }
}

/// The `reason` of `upload.failed` for a refusal by the mover, or `None`
/// when the refusal is not the upload's fate: a transient error (I/O,
/// shutdown) retried by the next pass, or a forged or misdirected event
/// (paths outside the roots, metadata that does not match the upload's own
/// record), which says nothing about the real upload.
pub fn failed_reason(e: &FinalizeError) -> Option<ReasonCode> {
    match e {
        FinalizeError::Exists => Some(ReasonCode::Exists),
        FinalizeError::ContentMismatch { .. } => Some(ReasonCode::ContentMismatch),
        FinalizeError::ConcatInvalid => Some(ReasonCode::ConcatInvalid),
        _ => None,
    }
}

/// The `reason` of `upload.failed` for a finished upload on disk that the
/// post-finish rules keep, or `None` (incomplete, not a file store: nothing
/// final about it).
pub fn kept_reason(v: &NotPlanned) -> Option<ReasonCode> {
    match v {
        NotPlanned::Keep(r) => {
            let reason = r.reason();
            FAILED_REASONS.contains(&reason).then_some(reason)
        }
        NotPlanned::Skip(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_per_upload_and_type() {
        let a = event_id(Kind::Finalized, "abc");
        assert_eq!(a, event_id(Kind::Finalized, "abc"));
        assert_ne!(a, event_id(Kind::Failed, "abc"));
        assert_ne!(a, event_id(Kind::Finalized, "abd"));
        assert!(a.starts_with("evt_") && a.len() == 36, "{a}");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_614_265_330_042), "2021-02-25T15:02:10.042Z");
    }
}
