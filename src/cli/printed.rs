//! What the CLI and the `serve --dev` banner print for a person to run or
//! paste: request paths percent-encoded as a client sends them, granite's
//! tus creation headers, and that request as a `curl` command line.
//!
//! - [`creation_headers`] is granite-assets 0.1.7's `build_upload_url` (its
//!   `_tus_metadata_header`): the five fields in granite's order, each
//!   `name base64(value)`, joined by `", "`; `tests/cli_upload.rs` checks the
//!   bytes against the library.
//! - [`creation_curl`] / [`command`]: every word is quoted with the `shlex`
//!   crate (tested against bash, dash, zsh, busybox ash, mksh; the version
//!   that fixed RUSTSEC-2024-0006's `{`/`\xa0` cases; already in the build
//!   through `cc`) rather than by hand: quoting for a shell has corner cases
//!   (`'`, `!`, `{`, non-breaking spaces) a hand-rolled escaper gets wrong.
//!   shlex leaves control characters unquoted (they cannot be quoted
//!   portably), so a word holding one is refused: what is printed must be
//!   safe to paste into an interactive shell.

use std::path::PathBuf;

use crate::policy::Visibility;
use crate::token::upload::{
    self, FIELD_CONTENT_TYPE, FIELD_EXPIRES, FIELD_KEY, FIELD_TOKEN, FIELD_VISIBILITY,
};
use crate::tusd::metadata::encode_upload_metadata;

/// Percent-encodes what a client would encode in a path, so the printed link
/// reaches nginx as the same `$uri`.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Tus-Resumable`: the one tus version tusd and granite speak.
pub const TUS_RESUMABLE: &str = "1.0.0";

/// The `Upload-Metadata` value granite's `build_upload_url` sends for these
/// inputs, signed with `secret`.
pub fn upload_metadata(
    secret: &[u8],
    key: &str,
    content_type: &str,
    visibility: Visibility,
    expires: i64,
) -> String {
    let expires = expires.to_string();
    let token = upload::sign(secret, &expires, key, visibility.as_str(), content_type);
    encode_upload_metadata([
        (FIELD_KEY, key),
        (FIELD_CONTENT_TYPE, content_type),
        (FIELD_VISIBILITY, visibility.as_str()),
        (FIELD_EXPIRES, expires.as_str()),
        (FIELD_TOKEN, token.as_str()),
    ])
}

/// granite's `UploadUrlResult.headers`, in its order.
pub fn creation_headers(metadata: &str) -> [(&'static str, String); 3] {
    [
        ("Tus-Resumable", TUS_RESUMABLE.to_string()),
        ("Upload-Metadata", metadata.to_string()),
        ("Content-Length", "0".to_string()),
    ]
}

/// What the creation request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole file in the POST (tus creation-with-upload:
    /// `Content-Type: application/offset+octet-stream`); `len` bytes.
    File {
        /// The file curl sends (`--data-binary @PATH`).
        path: PathBuf,
        /// Its length: `Upload-Length`.
        len: u64,
    },
    /// No data: creation only (`Upload-Length: len`); the bytes follow with
    /// `PATCH` requests to the `Location` tusd answers.
    Empty {
        /// `Upload-Length`.
        len: u64,
    },
}

/// A word the shell would not keep as it is meant to be read: a control
/// character (shlex cannot quote it portably) or a NUL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} holds a control character: it cannot be printed as a command that is safe to paste")]
pub struct Unpastable {
    what: &'static str,
}

/// The tus creation request to `url` as one `curl` command line, every word
/// quoted by shlex. `--fail-with-body`: a refusal exits non-zero and still
/// shows tusd's answer (assetgate's reason is in it).
pub fn creation_curl(url: &str, metadata: &str, body: &Body) -> Result<String, Unpastable> {
    let len = match body {
        Body::File { len, .. } | Body::Empty { len } => *len,
    };
    let mut words: Vec<(String, &'static str)> = vec![
        ("curl".into(), ""),
        ("-sS".into(), ""),
        ("-i".into(), ""),
        ("--fail-with-body".into(), ""),
        ("-X".into(), ""),
        ("POST".into(), ""),
        ("-H".into(), ""),
        (format!("Tus-Resumable: {TUS_RESUMABLE}"), ""),
        ("-H".into(), ""),
        (format!("Upload-Length: {len}"), ""),
        ("-H".into(), ""),
        (format!("Upload-Metadata: {metadata}"), "Upload-Metadata"),
    ];
    match body {
        Body::File { path, .. } => {
            words.push(("-H".into(), ""));
            words.push(("Content-Type: application/offset+octet-stream".into(), ""));
            words.push(("--data-binary".into(), ""));
            words.push((format!("@{}", path.display()), "the file's path"));
        }
        Body::Empty { .. } => {
            words.push(("-H".into(), ""));
            words.push(("Content-Length: 0".into(), ""));
        }
    }
    words.push((url.to_string(), "the URL"));
    command(words.iter().map(|(w, what)| (w.as_str(), *what)))
}

/// `words` as one shell command line, each quoted by shlex; `what` names a
/// word in the error (`""`: "a word").
pub fn command<'a>(words: impl IntoIterator<Item = (&'a str, &'static str)>) -> Result<String, Unpastable> {
    let mut out = Vec::new();
    for (word, what) in words {
        let refuse = || Unpastable {
            what: if what.is_empty() { "a word" } else { what },
        };
        if word.chars().any(char::is_control) {
            return Err(refuse());
        }
        out.push(shlex::try_quote(word).map_err(|_| refuse())?.into_owned());
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::nginx_uri;

    #[test]
    fn encoded_paths_parse_back() {
        for p in ["/private/été 2026/plage.jpg", "/a+b/c%d", "/x?y#z", "/é/ü"] {
            let e = encode_path(p);
            let back = nginx_uri::parse_request_target(e.as_bytes(), true).unwrap();
            assert_eq!(back.uri, p.as_bytes(), "{e}");
            assert!(back.args.is_empty());
        }
    }

    #[test]
    fn curl_words_are_quoted_and_control_characters_refused() {
        let line = creation_curl(
            "http://127.0.0.1:1080/files/",
            "asset-key YQ==",
            &Body::File {
                path: "/tmp/it's here/a b.txt".into(),
                len: 3,
            },
        )
        .unwrap();
        let words = shlex::split(&line).unwrap();
        assert_eq!(words[words.len() - 2], "@/tmp/it's here/a b.txt");
        assert!(words.contains(&"Upload-Metadata: asset-key YQ==".to_string()));
        assert!(words.contains(&"Upload-Length: 3".to_string()));
        let e = creation_curl("http://x/\n; rm -rf ~", "a YQ==", &Body::Empty { len: 1 }).unwrap_err();
        assert_eq!(e.what, "the URL");
    }
}
