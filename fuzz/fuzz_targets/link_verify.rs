//! The secure_link verifier (`link::verify_request_target`) with a fixed secret
//! set and a fixed clock.
//!
//! The first input byte picks a mode:
//! - even: the rest is the raw request target (`X-Original-URI`). Checked: no
//!   panic; a valid verdict's uri equals the parsed `$uri` and its expiry is not
//!   in the past; a target nginx refuses is `bad-uri`; without an `md5` or
//!   `expires` argument it is `missing`.
//! - odd: the rest is a path, a 16-bit expiry offset and extra args. The link is
//!   signed for the *parsed* `$uri` with one of the secrets, so random bytes reach
//!   the valid/expired paths too. Checked: the verdict is valid exactly when
//!   `expires >= now`, expired otherwise, bad-uri when nginx refuses the
//!   target; a valid verdict's uri equals the parsed `$uri`.
#![no_main]

use assetgate::secret::{Secret, SecretSet};
use assetgate::token::link::{self, LinkRefusal};
use assetgate::token::nginx_uri;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;
const SECRETS: [&str; 2] = ["fuzz-secret-newest-0123456789", "fuzz-secret-older-0123456789"];

fn secrets() -> SecretSet {
    SecretSet::new(
        SECRETS
            .iter()
            .map(|s| Secret::new(s.as_bytes().to_vec()))
            .collect(),
    )
}

fn raw_target(set: &SecretSet, target: &[u8]) {
    for merge in [true, false] {
        let parsed = nginx_uri::parse_request_target(target, merge);
        match link::verify_request_target(set, target, merge, NOW) {
            Ok(v) => {
                let t = parsed.expect("a valid link has a parsable target");
                assert_eq!(v.uri(), &t.uri[..]);
                assert!(v.expires() >= NOW);
            }
            Err(d) => match &parsed {
                Err(_) => assert_eq!(d.reason(), LinkRefusal::BadUri),
                Ok(t) => {
                    assert_ne!(d.reason(), LinkRefusal::BadUri);
                    let md5 = nginx_uri::arg(t.args, b"md5").unwrap_or_default();
                    let exp = nginx_uri::arg(t.args, b"expires").unwrap_or_default();
                    assert_eq!(
                        d.reason() == LinkRefusal::Missing,
                        md5.is_empty() || exp.is_empty(),
                        "{d}"
                    );
                }
            },
        }
    }
}

fn signed_target(set: &SecretSet, data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let which = usize::from(data[0] >> 7);
    let expires = NOW + i64::from(i16::from_le_bytes([data[1], data[2]]));
    let rest = &data[3..];
    // Path up to the first '?' or '#' (raw, may hold escapes and dot segments);
    // whatever follows becomes extra arguments after ours.
    let cut = rest
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let (path, extra) = rest.split_at(cut);
    let build = |md5: &str| {
        let mut target = path.to_vec();
        target.extend_from_slice(format!("?md5={md5}&expires={expires}&").as_bytes());
        target.extend_from_slice(extra.strip_prefix(b"?").unwrap_or(extra));
        target
    };
    // The md5 does not change `$uri` (the path part is fixed), so a probe with a
    // dummy md5 tells which `$uri` to sign, or that nginx refuses the target (a
    // bad path, or bytes from `extra` nginx rejects in a request line).
    let probe = build("AAAAAAAAAAAAAAAAAAAAAA");
    for merge in [true, false] {
        let parsed = match nginx_uri::parse_request_target(&probe, merge) {
            Ok(t) => t.uri,
            Err(_) => {
                let d = link::verify_request_target(set, &probe, merge, NOW).unwrap_err();
                assert_eq!(d.reason(), LinkRefusal::BadUri);
                continue;
            }
        };
        let target = build(&link::sign(SECRETS[which].as_bytes(), &parsed, expires));
        match link::verify_request_target(set, &target, merge, NOW) {
            Ok(v) => {
                assert!(expires >= NOW, "expired link accepted");
                assert_eq!(v.uri(), &parsed[..]);
                assert_eq!(v.expires(), expires);
            }
            Err(d) => {
                assert!(expires < NOW, "signed link refused: {d}");
                assert_eq!(d.reason(), LinkRefusal::Expired, "{d}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let set = secrets();
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 0 => raw_target(&set, rest),
        Some((_, rest)) => signed_target(&set, rest),
        None => {}
    }
});
