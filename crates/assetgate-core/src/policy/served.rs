//! Served as signed: the type nginx will send for a published file never runs
//! more than the type its token declared.
//!
//! nginx picks a static file's `Content-Type` from the request's extension, not
//! from anything assetgate knows, and granite keeps the uploader's file name in
//! the key. Without these rules a token for `a.html` declaring `image/png`
//! published HTML that nginx served as `text/html` (a stored XSS on the asset
//! origin). S3 serves the type bound into the presigned request; assetgate
//! gets the same result in three layers:
//!
//! 1. **The extension agrees with the token** ([`check_served`], at pre-create
//!    and again when a publish is planned): nginx's own type table for the
//!    asset tree ([`ServedTypes`], parsed from `nginx/assetgate-types.conf` or
//!    the operator's copy, `[upload] nginx_types`) maps the key's extension,
//!    found exactly as nginx finds it ([`extension`]), to the type nginx will
//!    send. A listed extension must map to the declared type
//!    (`extension_mismatch`); an unlisted one is served as
//!    [`DEFAULT_TYPE`], a download, which never runs anything.
//! 2. **Active types need an exact allow** ([`is_active`]): HTML, XHTML, SVG,
//!    XML and JavaScript run script when a browser opens them. They are refused
//!    (`content_type_active`) unless `[upload] content_types` names the type
//!    exactly; `image/*`, `*/*` or an empty list never allow one.
//! 3. **nginx defends what was allowed** (the shipped locations): `nosniff`
//!    everywhere, this table instead of `mime.types`, and active types sent as
//!    attachments in a CSP sandbox.
//!
//! Pure: the table is parsed from text; reading the file is the config loader's.

use std::collections::HashMap;

use super::content_type::{essence, ContentTypePattern};

/// What nginx sends for an extension the table does not list: the shipped
/// locations set `default_type application/octet-stream`, which browsers
/// download and never render.
pub const DEFAULT_TYPE: &str = "application/octet-stream";

/// The shipped table (`nginx/assetgate-types.conf`), the default of
/// `[upload] nginx_types`.
pub const BUILTIN_TYPES: &str = include_str!("../../../../nginx/assetgate-types.conf");

/// Largest types file read (nginx's own `mime.types` is about 5 KiB).
pub const MAX_TYPES_BYTES: usize = 256 * 1024;

/// nginx's extension → content-type table for the asset tree.
#[derive(Clone, PartialEq, Eq)]
pub struct ServedTypes {
    /// Extension (lower-case) → `type/subtype` (lower-case essence).
    by_extension: HashMap<String, String>,
}

impl std::fmt::Debug for ServedTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServedTypes({} extensions)", self.by_extension.len())
    }
}

/// Why a types file is refused (at config load).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypesError {
    /// Not `types { TYPE EXT…; … }`.
    #[error("line {line}: {what}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What was expected.
        what: String,
    },
    /// An extension listed twice (nginx keeps the last with a warning; a table
    /// that says two things is refused here).
    #[error("line {line}: extension {ext:?} is listed twice")]
    Duplicate {
        /// 1-based line.
        line: usize,
        /// The extension.
        ext: String,
    },
}

impl ServedTypes {
    /// The shipped table.
    pub fn builtin() -> ServedTypes {
        ServedTypes::parse(BUILTIN_TYPES).expect("nginx/assetgate-types.conf parses")
    }

    /// Parses an nginx `types { … }` block (comments allowed, nothing else).
    /// Types must be well-formed `type/subtype`; extensions non-empty, without
    /// `.` or `/` (nginx never sees one in an extension), and are lower-cased
    /// as nginx does.
    pub fn parse(text: &str) -> Result<ServedTypes, TypesError> {
        let tokens = tokenize(text);
        let syntax = |line: usize, what: &str| TypesError::Syntax {
            line,
            what: what.to_string(),
        };
        let mut it = tokens.iter();
        match (it.next(), it.next()) {
            (Some((_, Tok::Word("types"))), Some((_, Tok::Open))) => {}
            (Some((l, _)), _) => return Err(syntax(*l, "expected `types {`")),
            (None, _) => return Err(syntax(1, "expected `types {`, found nothing")),
        }
        let mut by_extension = HashMap::new();
        loop {
            let (line, ty) = match it.next() {
                Some((_, Tok::Close)) => break,
                Some((l, Tok::Word(w))) => (*l, *w),
                Some((l, _)) => return Err(syntax(*l, "expected a content type or `}`")),
                None => return Err(syntax(text.lines().count().max(1), "missing `}`")),
            };
            let Some((t, s)) = essence(ty).filter(|_| !ty.contains(';')) else {
                return Err(syntax(line, &format!("{ty:?} is not a type/subtype")));
            };
            let ty = format!("{t}/{s}");
            let mut any = false;
            loop {
                match it.next() {
                    Some((_, Tok::Semi)) if any => break,
                    Some((l, Tok::Word(ext))) => {
                        if ext.is_empty() || ext.contains(['.', '/']) || ext.bytes().any(|b| b <= b' ') {
                            return Err(syntax(*l, &format!("{ext:?} is not a file extension")));
                        }
                        let ext = ext.to_ascii_lowercase();
                        if by_extension.insert(ext.clone(), ty.clone()).is_some() {
                            return Err(TypesError::Duplicate { line: *l, ext });
                        }
                        any = true;
                    }
                    Some(_) | None if !any => {
                        return Err(syntax(line, &format!("{ty} lists no extension")));
                    }
                    Some((l, _)) => return Err(syntax(*l, "expected an extension or `;`")),
                    None => return Err(syntax(line, "missing `;`")),
                }
            }
        }
        if let Some((l, _)) = it.next() {
            return Err(syntax(*l, "nothing may follow the `types` block"));
        }
        Ok(ServedTypes { by_extension })
    }

    /// The type nginx sends for `key` (`[storage] public_prefix/…/key`):
    /// the table's entry for its extension, or [`DEFAULT_TYPE`].
    pub fn served_type(&self, key: &str) -> &str {
        extension(key)
            .and_then(|ext| self.lookup(ext))
            .unwrap_or(DEFAULT_TYPE)
    }

    /// The table's type for `ext` (ASCII case-insensitive, as nginx).
    fn lookup(&self, ext: &str) -> Option<&str> {
        if ext.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_extension
                .get(&ext.to_ascii_lowercase())
                .map(String::as_str)
        } else {
            self.by_extension.get(ext).map(String::as_str)
        }
    }

    /// Every (extension, type) pair, sorted (tests and `check-config`).
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .by_extension
            .iter()
            .map(|(e, t)| (e.as_str(), t.as_str()))
            .collect();
        v.sort_unstable();
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Open,
    Close,
    Semi,
}

/// nginx's tokens for this subset: words, `{`, `}`, `;`; `#` to the end of the
/// line is a comment. Each token with its 1-based line.
fn tokenize(text: &str) -> Vec<(usize, Tok<'_>)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let code = line.split('#').next().unwrap_or("");
        let mut rest = code;
        while !rest.is_empty() {
            rest = rest.trim_start();
            let Some(c) = rest.chars().next() else { break };
            let (tok, len) = match c {
                '{' => (Tok::Open, 1),
                '}' => (Tok::Close, 1),
                ';' => (Tok::Semi, 1),
                _ => {
                    let end = rest
                        .find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ';'))
                        .unwrap_or(rest.len());
                    (Tok::Word(&rest[..end]), end)
                }
            };
            out.push((line_no, tok));
            rest = &rest[len..];
        }
    }
    out
}

/// The extension nginx finds in `…/key` (`ngx_http_set_exten`): what follows
/// the last `.` of the last segment, unless that `.` opens the segment
/// (`.png` has none). `x.` has an empty one, which no type matches.
pub fn extension(key: &str) -> Option<&str> {
    let segment = key.rsplit('/').next().unwrap_or(key);
    match segment.rfind('.') {
        Some(0) | None => None,
        Some(i) => Some(&segment[i + 1..]),
    }
}

/// Whether a browser runs script in a document of this type (lower-case
/// essence): HTML, XHTML and every XML type (`*+xml`, SVG included: XML
/// documents run `<script>` in XHTML or SVG elements and XSLT), XSL, and the
/// JavaScript types a browser executes (WHATWG's JavaScript MIME type list).
pub fn is_active(main: &str, sub: &str) -> bool {
    match (main, sub) {
        ("text", "html" | "xml" | "xsl") => true,
        ("application", "xml" | "xhtml+xml") => true,
        (_, s) if s.ends_with("+xml") => true,
        ("text", s) if is_javascript_text(s) => true,
        ("application", "javascript" | "x-javascript" | "ecmascript" | "x-ecmascript") => true,
        _ => false,
    }
}

fn is_javascript_text(sub: &str) -> bool {
    matches!(
        sub,
        "javascript" | "ecmascript" | "jscript" | "livescript" | "x-javascript" | "x-ecmascript"
    ) || sub
        .strip_prefix("javascript1.")
        .is_some_and(|v| matches!(v, "0" | "1" | "2" | "3" | "4" | "5"))
}

/// Why a declared type would not be served as signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// An active type without an exact `[upload] content_types` entry.
    #[error(
        "{declared} can run script in a browser; it is allowed only when [upload] content_types names it exactly"
    )]
    Active {
        /// The declared essence.
        declared: String,
    },
    /// nginx would serve the key's extension as another type.
    #[error("files named *.{extension} are served as {served}, but the token declares {declared}")]
    ExtensionMismatch {
        /// The key's extension (as nginx reads it, lower-cased).
        extension: String,
        /// What nginx sends for it.
        served: String,
        /// The declared essence.
        declared: String,
    },
}

/// Whether a file published at `key` with the declared (signed) type would be
/// served as signed: an active type needs an exact entry in `patterns`, and
/// the type nginx sends for the key's extension must be the declared type or
/// [`DEFAULT_TYPE`]. `declared` must already be well-formed (the allowlist
/// check runs first); a malformed one is refused as a mismatch.
pub fn check_served(
    key: &str,
    declared: &str,
    patterns: &[ContentTypePattern],
    types: &ServedTypes,
) -> Result<(), ServeError> {
    let (t, s) = essence(declared).unwrap_or_default();
    let declared = format!("{t}/{s}");
    if is_active(&t, &s) && !patterns.iter().any(|p| p.names_exactly(&t, &s)) {
        return Err(ServeError::Active { declared });
    }
    let served = types.served_type(key);
    if served == DEFAULT_TYPE || served == declared {
        return Ok(());
    }
    Err(ServeError::ExtensionMismatch {
        extension: extension(key).unwrap_or("").to_ascii_lowercase(),
        served: served.to_string(),
        declared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<ContentTypePattern> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn extensions_as_nginx_finds_them() {
        for (key, want) in [
            ("a.html", Some("html")),
            ("dir/a.b.PNG", Some("PNG")),
            ("x.tar.gz", Some("gz")),
            (".png", None),
            ("dir/.png", None),
            ("dir/.hidden.png", Some("png")),
            ("noext", None),
            ("a.b/noext", None),
            ("x.", Some("")),
            ("été/photo.jpeg", Some("jpeg")),
        ] {
            assert_eq!(extension(key), want, "{key:?}");
        }
    }

    #[test]
    fn the_shipped_table() {
        let t = ServedTypes::builtin();
        assert_eq!(t.served_type("a.png"), "image/png");
        assert_eq!(t.served_type("A.PNG"), "image/png");
        assert_eq!(t.served_type("a.jpg"), "image/jpeg");
        assert_eq!(t.served_type("a.html"), "text/html");
        assert_eq!(t.served_type("a.svg"), "image/svg+xml");
        assert_eq!(t.served_type("a.exe"), DEFAULT_TYPE);
        assert_eq!(t.served_type("a"), DEFAULT_TYPE);
        assert_eq!(t.served_type("a."), DEFAULT_TYPE);
        assert_eq!(t.served_type(".html"), DEFAULT_TYPE);
        // Every active type in the table is one `is_active` knows, and every
        // line the file marks "# active" is one of them.
        for line in BUILTIN_TYPES
            .lines()
            .filter(|l| l.contains("# active") && !l.trim_start().starts_with('#'))
        {
            let ty = line.split_whitespace().next().unwrap();
            let (m, s) = ty.split_once('/').unwrap();
            assert!(is_active(m, s), "{ty} is marked active but is_active disagrees");
        }
        for (ext, ty) in t.entries() {
            let (m, s) = ty.split_once('/').unwrap();
            if is_active(m, s) {
                assert!(
                    BUILTIN_TYPES
                        .lines()
                        .any(|l| l.contains(ext) && l.contains(ty) && l.contains("# active")),
                    "{ty} ({ext}) is active: mark it so in nginx/assetgate-types.conf"
                );
            }
        }
    }

    #[test]
    fn active_types() {
        for (m, s) in [
            ("text", "html"),
            ("application", "xhtml+xml"),
            ("image", "svg+xml"),
            ("text", "xml"),
            ("application", "xml"),
            ("application", "rss+xml"),
            ("text", "xsl"),
            ("text", "javascript"),
            ("application", "javascript"),
            ("application", "x-javascript"),
            ("text", "ecmascript"),
            ("text", "javascript1.5"),
        ] {
            assert!(is_active(m, s), "{m}/{s}");
        }
        for (m, s) in [
            ("image", "png"),
            ("text", "plain"),
            ("application", "pdf"),
            ("application", "json"),
            ("text", "css"),
            ("application", "octet-stream"),
            ("text", "javascript1.9"),
            ("image", "svg"),
        ] {
            assert!(!is_active(m, s), "{m}/{s}");
        }
    }

    /// The review's cases: each refused, with the reason that names it.
    #[test]
    fn served_as_signed() {
        let t = ServedTypes::builtin();
        let shipped = pats(&["image/*", "video/mp4", "application/pdf", "text/plain"]);
        let check = |key: &str, ct: &str, p: &[ContentTypePattern]| check_served(key, ct, p, &t);
        // a.html declared image/png: nginx would send text/html.
        assert_eq!(
            check("a.html", "image/png", &shipped),
            Err(ServeError::ExtensionMismatch {
                extension: "html".into(),
                served: "text/html".into(),
                declared: "image/png".into()
            })
        );
        assert_eq!(
            check("dir/E.HTML", "image/png", &shipped)
                .unwrap_err()
                .to_string(),
            "files named *.html are served as text/html, but the token declares image/png"
        );
        // SVG allowed by image/*: active, refused without an exact entry.
        assert_eq!(
            check("s.svg", "image/svg+xml", &shipped),
            Err(ServeError::Active {
                declared: "image/svg+xml".into()
            })
        );
        assert_eq!(check("s.svg", "image/svg+xml", &pats(&["*/*"])).unwrap_err().to_string(),
            "image/svg+xml can run script in a browser; it is allowed only when [upload] content_types names it exactly");
        assert!(check("s.svg", "image/svg+xml", &[]).is_err());
        // Named exactly: allowed (nginx sandboxes it), still tied to its extension.
        let svg = pats(&["image/svg+xml"]);
        assert_eq!(check("s.svg", "Image/SVG+XML; charset=utf-8", &svg), Ok(()));
        assert!(check("s.png", "image/svg+xml", &svg).is_err());
        assert_eq!(
            check("s", "image/svg+xml", &svg),
            Ok(()),
            "no extension: a download"
        );
        // text/plain with HTML bytes at t.txt: served text/plain (+ nosniff).
        assert_eq!(check("t.txt", "text/plain", &shipped), Ok(()));
        assert!(check("t.html", "text/plain", &shipped).is_err());
        // Passive matches, and unlisted extensions (downloads).
        assert_eq!(check("a.png", "image/png", &shipped), Ok(()));
        assert_eq!(check("a.JPG", "image/jpeg", &shipped), Ok(()));
        assert_eq!(check("a.bin", "image/png", &shipped), Ok(()));
        assert_eq!(
            check("a.png", "image/jpeg", &shipped).unwrap_err().to_string(),
            "files named *.png are served as image/png, but the token declares image/jpeg"
        );
    }

    #[test]
    fn types_files() {
        let t = ServedTypes::parse("types {\n  image/png png PNG2; # c\n text/plain txt;\n}\n").unwrap();
        assert_eq!(
            t.entries(),
            vec![("png", "image/png"), ("png2", "image/png"), ("txt", "text/plain")]
        );
        let t = ServedTypes::parse("# only a comment\ntypes{}").unwrap();
        assert!(t.entries().is_empty());
        for (bad, want) in [
            ("", "line 1: expected `types {`, found nothing"),
            ("mime { }", "line 1: expected `types {`"),
            ("types {\n image/png;\n}", "line 2: image/png lists no extension"),
            (
                "types {\n image png;\n}",
                "line 2: \"image\" is not a type/subtype",
            ),
            (
                "types {\n image/png p.ng;\n}",
                "line 2: \"p.ng\" is not a file extension",
            ),
            (
                "types {\n image/png png;\n image/gif PNG;\n}",
                "line 3: extension \"png\" is listed twice",
            ),
            ("types {\n image/png png", "line 2: missing `;`"),
            ("types {\n image/png png;\n", "line 2: missing `}`"),
            (
                "types { } types { }",
                "line 1: nothing may follow the `types` block",
            ),
            (
                "types {\n text/plain;charset=utf-8 txt;\n}",
                "line 2: text/plain lists no extension",
            ),
        ] {
            assert_eq!(ServedTypes::parse(bad).unwrap_err().to_string(), want, "{bad:?}");
        }
    }
}
