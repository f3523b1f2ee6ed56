//! `assetgate sign upload` and `verify upload`: the tus creation request
//! granite-assets builds, and the verdict pre-create gives it.
//!
//! - [`creation_headers`] is granite-assets 0.1.7's `build_upload_url` (its
//!   `_tus_metadata_header`): the five fields in granite's order, each
//!   `name base64(value)`, joined by `", "`; `tests/cli_upload.rs` checks the
//!   bytes against the library.
//! - [`creation_curl`] is that request as a `curl` command line. Every word is
//!   quoted with the `shlex` crate (tested against bash, dash, zsh, busybox
//!   ash, mksh; the version that fixed RUSTSEC-2024-0006's `{`/`\xa0` cases;
//!   already in the build through `cc`) rather than by hand: quoting for a
//!   shell has corner cases (`'`, `!`, `{`, non-breaking spaces) a hand-rolled
//!   escaper gets wrong. shlex leaves control characters unquoted (they cannot
//!   be quoted portably), so a word holding one is refused: what is printed
//!   must be safe to paste into an interactive shell.
//! - [`precreate_verdict`] runs the daemon's own pre-create decision
//!   ([`tusd::decide`] on a tusd v2 `pre-create` event built from the header)
//!   with the filesystem facts the daemon would ask (the destination, under
//!   `[storage] root`), so `verify upload` answers what `POST /tusd` would.
//!   Only `[upload] single_use` (whether the token was used already: the
//!   daemon's shared state) is not asked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ConfigError};
use crate::finalize;
use crate::policy::Visibility;
use crate::token::upload::{
    self, FIELD_CONTENT_TYPE, FIELD_EXPIRES, FIELD_KEY, FIELD_TOKEN, FIELD_VISIBILITY,
};
use crate::tusd::metadata::{encode_upload_metadata, parse_upload_metadata};
use crate::tusd::protocol::HttpRequest;
use crate::tusd::{self, Destination, Gate, Hook, HookName, Lookup, Protocol, Upload, Verdict};

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
    let mut out = Vec::with_capacity(words.len());
    for (word, what) in &words {
        if word.chars().any(char::is_control) {
            return Err(Unpastable {
                what: if what.is_empty() { "a word" } else { what },
            });
        }
        let quoted = shlex::try_quote(word).map_err(|_| Unpastable {
            what: if what.is_empty() { "a word" } else { what },
        })?;
        out.push(quoted.into_owned());
    }
    Ok(out.join(" "))
}

/// What pre-create would answer for a creation request with this
/// `Upload-Metadata` and `Upload-Length` (`None`: `Upload-Defer-Length: 1`)
/// at `now`, under `config`: the daemon's own decision ([`tusd::decide`]).
pub fn precreate_verdict(config: &Config, header: &str, length: Option<u64>, now: i64) -> tusd::Decision {
    let hook = Hook {
        protocol: Protocol::V2,
        name: HookName::PreCreate,
        upload: Upload {
            size: length,
            size_is_deferred: length.is_none(),
            metadata: parse_upload_metadata(header),
            ..Upload::default()
        },
        request: HttpRequest {
            method: "POST".into(),
            ..HttpRequest::default()
        },
    };
    let gate = Gate {
        upload: &config.upload,
        storage: &config.storage,
        upload_ids: config.tusd.upload_ids,
    };
    let lookup = TreeLookup {
        storage_root: config.storage.root.as_deref(),
    };
    // The new upload ID is not shown: any nonce decides the same.
    tusd::decide(&hook, gate, now, &[0; 16], &lookup)
}

/// The destination as the daemon's `/tusd` adapter asks it: by the mover's
/// rule under `[storage] root`, free when no tree is configured.
struct TreeLookup<'a> {
    storage_root: Option<&'a Path>,
}

impl Lookup for TreeLookup<'_> {
    fn destination(&self, relative: &Path) -> Destination {
        match self.storage_root {
            Some(root) => finalize::destination_state(root, relative),
            None => Destination::Free,
        }
    }
}

/// `sign upload`'s inputs.
#[derive(Debug)]
pub struct SignUpload<'a> {
    /// The asset key.
    pub key: &'a str,
    /// The declared content type.
    pub content_type: &'a str,
    /// `public` or `private`.
    pub visibility: Visibility,
    /// Unix seconds.
    pub expires: i64,
    /// `--curl URL`.
    pub curl: Option<&'a str>,
    /// `--file PATH`.
    pub file: Option<&'a Path>,
    /// `--length N`.
    pub length: Option<u64>,
}

/// `assetgate sign upload`: exit 0 printed, 2 bad input, 64 no secret.
pub fn sign(config: &Config, args: &SignUpload<'_>, now: i64) -> ExitCode {
    let Some(secret) = config.upload.secrets.newest() else {
        return ConfigError::exit(&ConfigError::no_secret("upload", "UPLOAD"));
    };
    let metadata = upload_metadata(
        secret.expose(),
        args.key,
        args.content_type,
        args.visibility,
        args.expires,
    );
    let body = match (args.file, args.length) {
        (Some(path), _) => match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Some(Body::File {
                path: path.to_path_buf(),
                len: m.len(),
            }),
            Ok(_) => return usage(format_args!("{} is not a regular file", path.display())),
            Err(e) => return usage(format_args!("cannot read {}: {e}", path.display())),
        },
        (None, Some(len)) => Some(Body::Empty { len }),
        (None, None) => None,
    };
    let length = match &body {
        Some(Body::File { len, .. } | Body::Empty { len }) => Some(*len),
        None => None,
    };
    // What the gate would answer: a request it refuses is still printed
    // (granite signs it too), with the reason on stderr.
    let decision = precreate_verdict(config, &metadata, length, now);
    if let Verdict::Reject(r) = &decision.verdict {
        eprintln!(
            "warning: with this configuration pre-create would refuse it: {} {} ({})",
            r.status(),
            r.reason().as_str(),
            r.message()
        );
    }
    match (args.curl, body) {
        (Some(url), Some(body)) => match creation_curl(url, &metadata, &body) {
            Ok(line) => println!("{line}"),
            Err(e) => return usage(format_args!("{e}")),
        },
        // clap requires --file or --length with --curl.
        (Some(_), None) => return usage(format_args!("--curl needs --file or --length")),
        (None, _) => {
            for (name, value) in creation_headers(&metadata) {
                println!("{name}: {value}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// `assetgate verify upload`: exit 0 accepted, 1 refused, 64 no secret.
pub fn verify(config: &Config, header: &str, length: Option<u64>, now: i64) -> ExitCode {
    if config.upload.secrets.is_empty() {
        return ConfigError::exit(&ConfigError::no_secret("upload", "UPLOAD"));
    }
    // A pasted header line (`Upload-Metadata: …`) or its value alone.
    let value = header.trim();
    let value = match value.split_once(':') {
        Some((name, rest)) if name.trim().eq_ignore_ascii_case("upload-metadata") => rest.trim(),
        _ => value,
    };
    let decision = precreate_verdict(config, value, length, now);
    match (&decision.verdict, &decision.accepted) {
        (Verdict::Accept, Some(accepted)) => {
            let v = accepted.verified();
            println!(
                "valid: key {:?}, {}, content type {:?}, expires {} (in {} s); lands at {}",
                v.key(),
                v.visibility(),
                v.content_type(),
                v.expires(),
                v.expires() - now,
                accepted.destination().display()
            );
            if config.upload.single_use {
                println!("([upload] single_use: whether it was used already is the daemon's shared state, not checked here)");
            }
            ExitCode::SUCCESS
        }
        (Verdict::Reject(r), _) => {
            println!("denied: {} {}: {}", r.status(), r.reason().as_str(), r.message());
            ExitCode::from(1)
        }
        (other, _) => {
            println!("denied: {other:?}");
            ExitCode::from(1)
        }
    }
}

fn usage(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

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
