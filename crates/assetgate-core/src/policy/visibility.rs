//! Public or private: granite's two sub-trees.

use std::fmt;

/// Where an asset lives: granite's two sub-trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Served as is under `[storage] public_prefix`.
    Public,
    /// Served behind secure_link under `[storage] private_prefix`.
    Private,
}

impl Visibility {
    /// Parses granite's wire value (exactly `public` or `private`, as signed).
    pub fn parse(text: &str) -> Option<Visibility> {
        match text {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// The storage prefix for this visibility.
    pub fn prefix<'a>(self, public_prefix: &'a str, private_prefix: &'a str) -> &'a str {
        match self {
            Visibility::Public => public_prefix,
            Visibility::Private => private_prefix,
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
