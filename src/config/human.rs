//! Durations and sizes as the config writes them (`"30s"`, `"5GiB"`, or
//! plain numbers).

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;

/// An integer, or a string with a unit (`"24h"`, `"5GiB"`).
///
/// Durations are read by `humantime` and sizes by `bytesize`, each after two
/// rules of ours: a string of digits alone is the base unit (seconds, bytes),
/// as an integer is; and what the crates accept beyond today's spellings is
/// narrowed where it would mislead (see [`Human::seconds`], [`Human::bytes`]).
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(crate) enum Human {
    Int(u64),
    Text(String),
}

impl Human {
    /// Whole seconds: an integer, or a duration (`"30s"`, `"15m"`, `"24h"`,
    /// `"7d"`, also `"1h 30m"`, `"2days"`, `"1.5h"`: humantime's units). These
    /// keys count whole seconds, so a value with a fraction of a second
    /// (`"1500ms"`) is refused rather than cut.
    pub(crate) fn seconds(&self, key: &str) -> Result<Duration, ConfigError> {
        let d = self.parse_duration(key, "integer seconds, or e.g. \"30s\", \"15m\", \"24h\", \"7d\"")?;
        if d.subsec_nanos() != 0 {
            let Human::Text(t) = self else {
                unreachable!("an integer is whole seconds")
            };
            return Err(ConfigError::new(
                key,
                format!("{t:?} is not a whole number of seconds"),
            ));
        }
        Ok(d)
    }

    /// Like [`Human::seconds`], with fractions of a second (`"100ms"`,
    /// `"1.5s"`); an integer is seconds.
    pub(crate) fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        self.parse_duration(
            key,
            "integer seconds, or e.g. \"100ms\", \"30s\", \"15m\", \"24h\", \"7d\"",
        )
    }

    fn parse_duration(&self, key: &str, expected: &str) -> Result<Duration, ConfigError> {
        let t = match self {
            Human::Int(n) => return Ok(Duration::from_secs(*n)),
            Human::Text(t) => t,
        };
        let text = t.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = text.parse() {
                return Ok(Duration::from_secs(n));
            }
        }
        humantime::parse_duration(text)
            .map_err(|e| ConfigError::new(key, format!("{t:?} is not a duration ({expected}): {e}")))
    }

    /// Bytes: an integer, or a size (`"512KiB"`, `"5GiB"`, `"10MB"`, also
    /// `"1.5GiB"`, `"5gib"`: bytesize's units, KB = 1000, KiB = 1024). The
    /// unit must end in `B`: bytesize reads `"16m"` as 16 MB, nginx as 16 MiB,
    /// so the one-letter forms are refused rather than guessed.
    pub(crate) fn bytes(&self, key: &str) -> Result<u64, ConfigError> {
        let t = match self {
            Human::Int(n) => return Ok(*n),
            Human::Text(t) => t,
        };
        let error = |why: &str| {
            ConfigError::new(
                key,
                format!("{t:?} is not a size (integer bytes, or e.g. \"512KiB\", \"5GiB\", \"10MB\"): {why}"),
            )
        };
        let text = t.trim();
        let unit = text
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_start();
        if !unit.is_empty() && !unit.ends_with(['B', 'b']) {
            return Err(error("the unit must end in B (KB, KiB, MB, MiB, ...)"));
        }
        let n = text
            .parse::<bytesize::ByteSize>()
            .map_err(|e| error(&e))?
            .as_u64();
        // bytesize saturates instead of failing on overflow.
        if n == u64::MAX && text.parse::<u64>().is_err() {
            return Err(error("too large"));
        }
        Ok(n)
    }
}
