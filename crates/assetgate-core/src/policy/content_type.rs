//! Content types: the `type/subtype` essence and `[upload] content_types`
//! patterns (globs like `image/*`), parsed once at config load.

use std::fmt;

/// `type/subtype` of a content type, parameters dropped, lower-cased. `None`
/// when there is no `/` or either side is empty.
pub fn essence(content_type: &str) -> Option<(String, String)> {
    let main = content_type.split(';').next().unwrap_or("").trim();
    let (t, s) = main.split_once('/')?;
    let (t, s) = (t.trim(), s.trim());
    // RFC 9110 tokens on both sides: no ':' (granite joins the signed fields
    // with ':'; a type holding one could be read with shifted boundaries), no
    // quotes, spaces or slashes.
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if t.is_empty() || s.is_empty() || !t.chars().all(tchar) || !s.chars().all(tchar) {
        return None;
    }
    Some((t.to_ascii_lowercase(), s.to_ascii_lowercase()))
}

/// One `[upload] content_types` entry, parsed when the configuration is
/// loaded: `type/subtype`, each side a token (RFC 9110 characters, and `*`)
/// compared case-insensitively, where `*` matches any run of characters within
/// that side (`image/*`, `*/*`, `application/vnd.ms-*`).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentTypePattern {
    /// As configured (shown by `check-config`).
    text: String,
    main: Side,
    sub: Side,
}

/// One side of a pattern, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Side {
    /// `*`: anything.
    Any,
    /// No `*`: this exact token.
    Exact(String),
    /// A `*` among other characters.
    Glob(Vec<char>),
}

impl Side {
    fn parse(text: &str) -> Option<Side> {
        let token = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b));
        if !token {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        Some(if lower.bytes().all(|b| b == b'*') {
            Side::Any
        } else if lower.contains('*') {
            Side::Glob(lower.chars().collect())
        } else {
            Side::Exact(lower)
        })
    }

    /// `text` is lower-case.
    fn matches(&self, text: &str) -> bool {
        match self {
            Side::Any => true,
            Side::Exact(e) => e == text,
            Side::Glob(p) => glob(p, text),
        }
    }
}

/// A `[upload] content_types` entry that is not `type/subtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a type/subtype pattern")]
pub struct NotAPattern;

impl std::str::FromStr for ContentTypePattern {
    type Err = NotAPattern;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (main, sub) = text.split_once('/').ok_or(NotAPattern)?;
        Ok(ContentTypePattern {
            text: text.to_string(),
            main: Side::parse(main).ok_or(NotAPattern)?,
            sub: Side::parse(sub).ok_or(NotAPattern)?,
        })
    }
}

impl ContentTypePattern {
    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the (lower-cased) essence `main/sub` matches.
    fn matches(&self, main: &str, sub: &str) -> bool {
        self.main.matches(main) && self.sub.matches(sub)
    }

    /// Whether this entry names the (lower-cased) essence `main/sub` exactly,
    /// without a `*`: what an active type needs ([`served::is_active`]).
    pub(crate) fn names_exactly(&self, main: &str, sub: &str) -> bool {
        matches!((&self.main, &self.sub), (Side::Exact(m), Side::Exact(s)) if m == main && s == sub)
    }
}

impl fmt::Display for ContentTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for ContentTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentTypePattern({:?})", self.text)
    }
}

impl serde::Serialize for ContentTypePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Whether `content_type` is allowed by `patterns` (`[upload] content_types`).
///
/// The type must always be a well-formed `type/subtype` (tokens, parameters
/// ignored); an empty list then allows any such type. Otherwise it must match
/// one pattern ([`ContentTypePattern`]).
pub fn content_type_allowed(patterns: &[ContentTypePattern], content_type: &str) -> bool {
    let Some((t, s)) = essence(content_type) else {
        return false;
    };
    patterns.is_empty() || patterns.iter().any(|p| p.matches(&t, &s))
}

/// `*` matches any (possibly empty) run of characters; everything else literally.
fn glob(p: &[char], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point (classic, linear-ish).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<ContentTypePattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn content_types() {
        let any: Vec<ContentTypePattern> = Vec::new();
        assert!(content_type_allowed(
            &any,
            "application/x-whatever; charset=\"a:b\""
        ));
        // malformed types are refused even with no allowlist
        assert!(!content_type_allowed(&any, "whatever"));
        assert!(!content_type_allowed(&any, "te xt/plain"));
    }

    #[test]
    fn shifted_signature_boundaries_are_not_a_content_type() {
        // granite signs "{expires}:{key}:{visibility}:{content_type}". A key
        // holding ":public:" could be re-read as key "a", visibility "public",
        // content type "b:private:image/png": that must not be a content type.
        let any: Vec<ContentTypePattern> = Vec::new();
        assert!(!content_type_allowed(&any, "b:private:image/png"));
        assert!(!content_type_allowed(&any, "image/png\""));
        assert_eq!(essence("b:private:image/png"), None);
        let images = pats(&["image/*", "application/pdf"]);
        assert!(content_type_allowed(&images, "image/png"));
        assert!(content_type_allowed(&images, "IMAGE/PNG"));
        assert!(content_type_allowed(&images, "Image/Svg+Xml; charset=utf-8"));
        assert!(content_type_allowed(&images, "application/pdf"));
        assert!(content_type_allowed(&images, "application/PDF;version=1.7"));
        assert!(!content_type_allowed(&images, "application/pdfx"));
        assert!(!content_type_allowed(&images, "text/plain"));
        assert!(!content_type_allowed(&images, "image"));
        assert!(!content_type_allowed(&images, "image/"));
        assert!(!content_type_allowed(&images, "/png"));
        assert!(!content_type_allowed(&images, "image/png/x"));
        assert!(!content_type_allowed(&images, ""));
        let all = pats(&["*/*"]);
        assert!(content_type_allowed(&all, "text/plain; charset=utf-8"));
        assert!(!content_type_allowed(&all, "nonsense"));
        let upper = pats(&["TEXT/Plain"]);
        assert!(content_type_allowed(&upper, "text/plain"));
        let vnd = pats(&["application/vnd.ms-*"]);
        assert!(content_type_allowed(&vnd, "application/vnd.ms-excel"));
        assert!(!content_type_allowed(&vnd, "application/vnd.oasis"));
    }

    #[test]
    fn glob_matching() {
        let glob = |p: &str, t: &str| glob(&p.chars().collect::<Vec<_>>(), t);
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("**", "x"));
    }

    /// A pattern is parsed once, at config load: what is not `type/subtype`
    /// (tokens, `*`) is refused there, and each side is kept lower-cased as
    /// `*`, an exact token, or a glob, with the text as configured.
    #[test]
    fn patterns_are_parsed_once() {
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "*",
            "image/png/x",
            "im age/png",
            "image/png ",
            "text/plain;charset=utf-8",
            "a:b/c",
            "é/x",
        ] {
            assert_eq!(bad.parse::<ContentTypePattern>(), Err(NotAPattern), "{bad:?}");
        }
        let p: ContentTypePattern = "Image/*".parse().unwrap();
        assert_eq!(
            (p.main.clone(), p.sub.clone()),
            (Side::Exact("image".into()), Side::Any)
        );
        assert_eq!(p.to_string(), "Image/*");
        let p: ContentTypePattern = "application/VND.ms-*".parse().unwrap();
        assert_eq!(p.sub, Side::Glob("vnd.ms-*".chars().collect()));
        assert!(p.matches("application", "vnd.ms-excel"));
        assert!(!p.matches("application", "vnd.oasis"));
        let p: ContentTypePattern = "*/**".parse().unwrap();
        assert_eq!((p.main, p.sub), (Side::Any, Side::Any));
    }
}
