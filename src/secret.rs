//! Secrets as a type: redacted `Debug`, no `Display`/`Serialize`, wiped on drop.

use std::fmt;

use zeroize::Zeroizing;

/// Shortest secret accepted from configuration.
pub const MIN_SECRET_LEN: usize = 16;

/// One shared secret (HMAC key or secure_link secret).
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps raw secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret bytes, for the one place that feeds them to a MAC or digest.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A fresh random secret of `len` bytes of entropy, as URL-safe text.
    pub fn generate(len: usize) -> Self {
        use base64::Engine as _;
        let mut raw = Zeroizing::new(vec![0u8; len]);
        getrandom::getrandom(&mut raw).expect("the OS random source is available");
        Secret::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&*raw)
                .into_bytes(),
        )
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.0.len())
    }
}

/// The accepted secrets of one trust boundary, newest first (rotation).
#[derive(Clone, Debug, Default)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    /// A set from secrets ordered newest first.
    pub fn new(secrets: Vec<Secret>) -> Self {
        SecretSet(secrets)
    }

    /// The secret new tokens are signed with.
    pub fn newest(&self) -> Option<&Secret> {
        self.0.first()
    }

    /// All accepted secrets, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no secret is configured (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(b"super-secret-value-123".to_vec());
        let shown = format!("{:?}", SecretSet::new(vec![s]));
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn generated_secrets_differ_and_are_long_enough() {
        let a = Secret::generate(32);
        let b = Secret::generate(32);
        assert!(a.len() >= MIN_SECRET_LEN);
        assert_ne!(a.expose(), b.expose());
    }
}
