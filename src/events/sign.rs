//! Standard Webhooks signatures (PURE: no I/O, the time passed in).
//!
//! `webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`,
//! one `v1,…` per configured secret, space-separated, so a receiver holding
//! either the old or the new secret verifies during a rotation. The key is the
//! base64 part of the spec's `whsec_<base64>` form, decoded. Nothing here
//! verifies: the tests check deliveries with the real `standardwebhooks`
//! library, and the published test vector (`tests/vectors/standard-webhooks.json`).

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The spec's bounds on the decoded key (192 to 512 bits).
pub const MIN_KEY_BYTES: usize = 24;
/// See [`MIN_KEY_BYTES`].
pub const MAX_KEY_BYTES: usize = 64;

/// One signing key, from its `whsec_<base64>` form. Redacted `Debug`, no
/// `Display`, wiped on drop.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

/// Why a configured secret was refused (never quotes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No `whsec_` prefix.
    #[error("not a Standard Webhooks secret: expected \"whsec_\" followed by base64 (value not shown)")]
    NotWhsec,
    /// The part after `whsec_` is not standard base64.
    #[error("the part after \"whsec_\" is not standard base64 (value not shown)")]
    NotBase64,
    /// The decoded key is shorter or longer than the spec allows.
    #[error("the key is {0} bytes once decoded; the spec asks for {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")]
    Length(usize),
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (padding optional, as the reference libraries
    /// accept it).
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let b64 = text.trim().strip_prefix("whsec_").ok_or(SecretError::NotWhsec)?;
        let key = STANDARD
            .decode(b64)
            .or_else(|_| STANDARD_NO_PAD.decode(b64))
            .map_err(|_| SecretError::NotBase64)?;
        let key = Zeroizing::new(key);
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(WebhookSecret(key))
    }

    /// Decoded key length (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a parsed secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Constant-time in the bytes (`subtle`): comparing configurations (a
/// reload) says nothing about a key through timing.
impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.0.as_slice(), other.0.as_slice()).into()
    }
}

impl Eq for WebhookSecret {}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret(<redacted, {} bytes>)", self.0.len())
    }
}

/// The configured secrets, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<WebhookSecret>);

impl WebhookSecrets {
    /// From secrets ordered newest first.
    pub fn new(secrets: Vec<WebhookSecret>) -> Self {
        WebhookSecrets(secrets)
    }

    /// All of them, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &WebhookSecret> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `webhook-signature` header value: one `v1,…` per secret, separated
    /// by single spaces.
    pub fn header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|s| s.sign(msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        secret: String,
        msg_id: String,
        timestamp: i64,
        payload: String,
        signature: String,
    }

    fn vectors() -> Vec<Vector> {
        #[derive(serde::Deserialize)]
        struct File {
            vectors: Vec<Vector>,
        }
        let text = include_str!("../../tests/vectors/standard-webhooks.json");
        serde_json::from_str::<File>(text).unwrap().vectors
    }

    #[test]
    fn the_published_test_vector_reproduces() {
        let vs = vectors();
        assert!(!vs.is_empty());
        for v in vs {
            let s = WebhookSecret::parse(&v.secret).unwrap();
            assert_eq!(s.sign(&v.msg_id, v.timestamp, v.payload.as_bytes()), v.signature);
            // Any change to what is signed changes the signature.
            assert_ne!(
                s.sign(&v.msg_id, v.timestamp + 1, v.payload.as_bytes()),
                v.signature
            );
            assert_ne!(
                s.sign("msg_other", v.timestamp, v.payload.as_bytes()),
                v.signature
            );
            assert_ne!(
                s.sign(&v.msg_id, v.timestamp, b"{\"test\": 2432232315}"),
                v.signature
            );
        }
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let v = &vectors()[0];
        let old = WebhookSecret::parse("whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LTAxMjM0").unwrap();
        let set = WebhookSecrets::new(vec![WebhookSecret::parse(&v.secret).unwrap(), old.clone()]);
        let h = set.header(&v.msg_id, v.timestamp, v.payload.as_bytes());
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], v.signature);
        assert_eq!(parts[1], old.sign(&v.msg_id, v.timestamp, v.payload.as_bytes()));
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::NotWhsec
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::Length(5)
        );
        // unpadded base64 is accepted, like the reference libraries do
        assert!(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let shown = format!("{s:?} {:?}", WebhookSecrets::new(vec![s.clone()]));
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
