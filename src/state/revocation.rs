//! Revocations (pure): what is revoked, how long it is kept, and the set `/auth`
//! consults.
//!
//! Three kinds, each kept until the longest remaining lifetime of what it
//! revokes, then dropped by itself:
//!
//! | kind | matches a verified link when | kept until |
//! |---|---|---|
//! | `link URL` | its `$uri` and `expires` are the revoked link's (every spelling of the same link: other secrets, padding, leading zeros) | the link's `expires` |
//! | `prefix P` | its `$uri` starts with `P` (bytes, as nginx decodes `$uri`) | now + `[link] max_ttl` |
//! | `key K` | its `$uri` is `/{private_prefix}/{K}` (granite's layout, base path empty) | now + `[link] max_ttl` |
//!
//! Without `[link] max_ttl` a link may live for ever (nginx's own rule), so a
//! prefix or key revocation is kept until `unrevoke` (`until` = [`NEVER`]).
//!
//! The set is an immutable snapshot swapped in whole (`arc-swap`) by whoever
//! learns of a change: the memory backend at once, the Redis sync loop within
//! `[state] sync_interval`. `/auth` reads it without locking and, when it is
//! empty (the common case), with one length check.

use std::collections::HashMap;

/// `until` of a revocation that never expires by itself.
pub const NEVER: i64 = i64::MAX;

/// Longest prefix or key accepted (bytes).
pub const MAX_VALUE_LEN: usize = 4096;

/// One revoked thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Revocation {
    /// One link: its nginx `$uri` and expiry.
    Link {
        /// nginx's `$uri` (decoded, normalised).
        uri: Vec<u8>,
        /// The link's `expires`.
        expires: i64,
    },
    /// Every link whose `$uri` starts with these bytes.
    Prefix(Vec<u8>),
    /// Every link to the private asset with this key.
    Key(String),
}

/// Why a revocation request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Revocation {
    /// The kind, as the CLI and the admin API spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Revocation::Link { .. } => "link",
            Revocation::Prefix(_) => "prefix",
            Revocation::Key(_) => "key",
        }
    }

    /// A prefix revocation, checked: absolute, not empty, bounded.
    pub fn prefix(p: &str) -> Result<Self, Invalid> {
        if !p.starts_with('/') || p.len() > MAX_VALUE_LEN {
            return Err(Invalid(format!(
                "a prefix is an absolute $uri prefix like /private/user-42/ (at most {MAX_VALUE_LEN} bytes)"
            )));
        }
        if p == "/" {
            return Err(Invalid(
                "the prefix / would revoke every link: drop the link secret instead".into(),
            ));
        }
        Ok(Revocation::Prefix(p.as_bytes().to_vec()))
    }

    /// A key revocation, checked by the upload key policy's basic rules.
    pub fn key(k: &str) -> Result<Self, Invalid> {
        if k.is_empty() || k.starts_with('/') || k.len() > MAX_VALUE_LEN || k.chars().any(char::is_control) {
            return Err(Invalid(
                "a key is an asset key like invoices/inv-001.pdf (no leading /)".into(),
            ));
        }
        Ok(Revocation::Key(k.to_string()))
    }

    /// The stored form (Redis member, memory map key): `link:{expires}:{uri}`,
    /// `prefix:{bytes}`, `key:{key}`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Revocation::Link { uri, expires } => {
                let mut v = format!("link:{expires}:").into_bytes();
                v.extend_from_slice(uri);
                v
            }
            Revocation::Prefix(p) => [b"prefix:".as_slice(), p].concat(),
            Revocation::Key(k) => format!("key:{k}").into_bytes(),
        }
    }

    /// Inverse of [`Revocation::encode`]; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if let Some(rest) = b.strip_prefix(b"link:") {
            let colon = rest.iter().position(|&c| c == b':')?;
            let expires: i64 = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            return Some(Revocation::Link {
                uri: rest[colon + 1..].to_vec(),
                expires,
            });
        }
        if let Some(rest) = b.strip_prefix(b"prefix:") {
            return Some(Revocation::Prefix(rest.to_vec()));
        }
        if let Some(rest) = b.strip_prefix(b"key:") {
            return Some(Revocation::Key(String::from_utf8(rest.to_vec()).ok()?));
        }
        None
    }

    /// The value shown to people (`revoked list`): the `$uri` escaped.
    pub fn display_value(&self) -> String {
        match self {
            Revocation::Link { uri, expires } => {
                format!(
                    "{} (expires {expires})",
                    String::from_utf8_lossy(uri).escape_debug()
                )
            }
            Revocation::Prefix(p) => String::from_utf8_lossy(p).escape_debug().to_string(),
            Revocation::Key(k) => k.escape_debug().to_string(),
        }
    }

    /// When this revocation may be forgotten, issued at `now`: a link at its
    /// expiry; a prefix or key after `[link] max_ttl` (the longest a link minted
    /// before `now` can still live), or [`NEVER`] without one.
    pub fn until(&self, now: i64, link_max_ttl: Option<i64>) -> i64 {
        match (self, link_max_ttl) {
            (Revocation::Link { expires, .. }, None) => *expires,
            (Revocation::Link { expires, .. }, Some(max)) => (*expires).min(now.saturating_add(max)),
            (_, Some(max)) => now.saturating_add(max),
            (_, None) => NEVER,
        }
    }
}

/// The revocations in force, indexed for `/auth`.
#[derive(Debug, Default, Clone)]
pub struct RevocationSet {
    /// `$uri` → `(expires, until)` of each revoked link to it.
    links: HashMap<Vec<u8>, Vec<(i64, i64)>>,
    keys: HashMap<String, i64>,
    prefixes: Vec<(Vec<u8>, i64)>,
    len: usize,
}

impl RevocationSet {
    /// A set from `(revocation, until)` pairs; entries already past `now` are
    /// left out.
    pub fn new(entries: impl IntoIterator<Item = (Revocation, i64)>, now: i64) -> Self {
        let mut s = RevocationSet::default();
        for (r, until) in entries {
            if until < now {
                continue;
            }
            match r {
                Revocation::Link { uri, expires } => {
                    s.links.entry(uri).or_default().push((expires, until));
                }
                Revocation::Key(k) => {
                    s.keys.insert(k, until);
                }
                Revocation::Prefix(p) => s.prefixes.push((p, until)),
            }
        }
        s.len = s.links.values().map(Vec::len).sum::<usize>() + s.keys.len() + s.prefixes.len();
        s
    }

    /// Number of revocations held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is revoked (then [`RevocationSet::revokes`] is one
    /// comparison).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a verified link (`$uri`, `expires`) is revoked at `now`.
    /// Prefixes are scanned in order (a handful is the expected size).
    pub fn revokes(&self, uri: &[u8], expires: i64, private_prefix: &str, now: i64) -> bool {
        if self.len == 0 {
            return false;
        }
        let live = |until: &i64| *until >= now;
        if let Some(revoked) = self.links.get(uri) {
            if revoked.iter().any(|(e, until)| *e == expires && live(until)) {
                return true;
            }
        }
        if !self.keys.is_empty() {
            let key = uri
                .strip_prefix(b"/")
                .and_then(|u| u.strip_prefix(private_prefix.as_bytes()))
                .and_then(|u| u.strip_prefix(b"/"))
                .and_then(|k| std::str::from_utf8(k).ok());
            if key.and_then(|k| self.keys.get(k)).is_some_and(live) {
                return true;
            }
        }
        self.prefixes
            .iter()
            .any(|(p, until)| uri.starts_with(p) && live(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn encode_decode_round_trip() {
        for r in [
            Revocation::Link {
                uri: b"/private/a b/\xff:x".to_vec(),
                expires: 1_800_000_600,
            },
            Revocation::prefix("/private/user-42/").unwrap(),
            Revocation::key("invoices/été.pdf").unwrap(),
        ] {
            assert_eq!(Revocation::decode(&r.encode()), Some(r.clone()), "{r:?}");
        }
        assert_eq!(Revocation::decode(b"nope:x"), None);
        assert_eq!(Revocation::decode(b"link:12x:/a"), None);
    }

    #[test]
    fn values_are_checked() {
        assert!(Revocation::prefix("private/").is_err());
        assert!(Revocation::prefix("/").is_err());
        assert!(Revocation::key("/abs").is_err());
        assert!(Revocation::key("").is_err());
        assert!(Revocation::key("a\nb").is_err());
    }

    #[test]
    fn until_is_the_longest_remaining_lifetime() {
        let link = Revocation::Link {
            uri: b"/private/a".to_vec(),
            expires: NOW + 600,
        };
        assert_eq!(link.until(NOW, None), NOW + 600);
        assert_eq!(link.until(NOW, Some(60)), NOW + 60);
        let p = Revocation::prefix("/private/u/").unwrap();
        assert_eq!(p.until(NOW, Some(86_400)), NOW + 86_400);
        assert_eq!(p.until(NOW, None), NEVER);
    }

    #[test]
    fn matching() {
        let set = RevocationSet::new(
            [
                (
                    Revocation::Link {
                        uri: b"/private/one.txt".to_vec(),
                        expires: NOW + 100,
                    },
                    NOW + 100,
                ),
                (Revocation::prefix("/private/user-42/").unwrap(), NEVER),
                (Revocation::key("docs/k.pdf").unwrap(), NOW + 10),
                (Revocation::prefix("/private/gone/").unwrap(), NOW - 1),
            ],
            NOW,
        );
        assert_eq!(set.len(), 3, "the expired entry is left out");
        let r = |uri: &str, exp: i64, now: i64| set.revokes(uri.as_bytes(), exp, "private", now);
        assert!(r("/private/one.txt", NOW + 100, NOW));
        assert!(
            !r("/private/one.txt", NOW + 101, NOW),
            "another link to the same file"
        );
        assert!(r("/private/user-42/a/b.jpg", NOW + 5, NOW));
        assert!(!r("/private/user-420/a.jpg", NOW + 5, NOW));
        assert!(r("/private/docs/k.pdf", NOW + 5, NOW));
        assert!(
            !r("/private/docs/k.pdf", NOW + 5, NOW + 11),
            "kept until its bound only"
        );
        assert!(!r("/public/docs/k.pdf", NOW + 5, NOW));
        assert!(!r("/private/gone/x", NOW + 5, NOW));
        assert!(RevocationSet::default().is_empty());
        assert!(!RevocationSet::default().revokes(b"/private/x", NOW, "private", NOW));
    }
}
