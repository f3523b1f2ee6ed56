//! `assetgate sign upload` and `verify upload`: the tus creation request
//! granite-assets builds, and the verdict pre-create gives it.
//!
//! - The request itself (granite's headers, the `curl` line) is built by
//!   [`super::printed`], which the `serve --dev` banner prints too.
//! - [`precreate_verdict`] runs the daemon's own pre-create decision
//!   ([`tusd::decide`] on a tusd v2 `pre-create` event built from the header)
//!   with the filesystem facts the daemon would ask (the destination, under
//!   `[storage] root`), so `verify upload` answers what `POST /tusd` would.
//!   Only `[upload] single_use` (whether the token was used already: the
//!   daemon's shared state) is not asked.

use std::path::Path;
use std::process::ExitCode;

use super::printed::{creation_curl, creation_headers, upload_metadata, Body};
use crate::config::{Config, ConfigError};
use crate::finalize;
use crate::policy::Visibility;
use crate::tusd::metadata::parse_upload_metadata;
use crate::tusd::{self, Destination, Gate, Hook, HookName, Lookup, Protocol, Upload, Verdict};

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
