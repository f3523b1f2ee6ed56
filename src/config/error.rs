//! A configuration problem: the key it concerns and why, never a secret's
//! value; exit code 64.

/// Exit code for a configuration error: 64 (`EX_USAGE`), as linkerd does
/// (`EX_CONFIG` would be 78); docs/configuration.md documents it.
pub const EXIT_CONFIG: i32 = 64;

/// A refused configuration: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error: {key}: {message}")]
pub struct ConfigError {
    /// Dotted key (or environment variable) at fault.
    pub key: String,
    /// What is wrong, without any secret value.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Prints the error (one line naming the key) and gives exit code 64.
    pub fn exit(&self) -> std::process::ExitCode {
        eprintln!("{self}");
        std::process::ExitCode::from(EXIT_CONFIG as u8)
    }

    /// No secret for `[section]` (`var`: `LINK` or `UPLOAD`), saying how to set one.
    pub fn no_secret(section: &str, var: &str) -> Self {
        ConfigError {
            key: format!("{section}.secrets"),
            message: format!(
                "no secret configured: set [{section}] secrets, ASSETGATE_{var}_SECRET or ASSETGATE_{var}_SECRET_FILE (or run `assetgate serve --dev`)"
            ),
        }
    }
}
