//! `$uri` / `$args` / `$arg_NAME` derivation (`nginx_uri`) on arbitrary bytes.
//!
//! Invariants checked, for both `merge_slashes` settings:
//! - no panic;
//! - `$uri` starts with `/`;
//! - with merge on, `$uri` never contains `//`;
//! - `$uri` has no `.` or `..` segment (`/./`, `/../`, or ending in `/.`, `/..`);
//! - normalisation is idempotent: a `$uri` with nothing left to decode
//!   (no `%`, `?`, `#`, space or control byte) parses to itself;
//! - `$args` is the raw text after the first `?` up to the first `#`, holds no
//!   `#`, and is empty when the path ended at `#` or the end of input;
//! - `arg()` agrees with a plain model (split at `&`, first piece whose name
//!   matches case-insensitively and is followed by `=`), its value holds no `&`.
#![no_main]

use assetgate::token::nginx_uri::{arg, parse_request_target, BadUri};
use libfuzzer_sys::fuzz_target;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The reference model of nginx's `ngx_http_arg`.
fn arg_model<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let n = name.len();
    if n == 0 {
        return None;
    }
    args.split(|&b| b == b'&').find_map(|piece| {
        (piece.len() > n && piece[..n].eq_ignore_ascii_case(name) && piece[n] == b'=')
            .then(|| &piece[n + 1..])
    })
}

fn check_args(data: &[u8], args: &[u8]) {
    assert!(!args.contains(&b'#'), "args hold '#': {args:?}");
    // A non-empty `args` is a sub-slice of the input, right after a '?' (an
    // empty one may be a static empty slice).
    if !args.is_empty() {
        let start = args.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start > 0 && start + args.len() <= data.len() && data[start - 1] == b'?');
    }
    let mut names: Vec<&[u8]> = vec![b"md5", b"expires", b"MD5", b"Expires", b"e", b"x=y"];
    // A name taken from the input (up to 8 bytes, no '&': a real name never has one).
    let own: Vec<u8> = data.iter().copied().take(8).filter(|&b| b != b'&').collect();
    names.push(&own);
    for name in names {
        let got = arg(args, name);
        assert_eq!(got, arg_model(args, name), "arg({args:?}, {name:?})");
        if let Some(v) = got {
            assert!(!v.contains(&b'&'));
        }
    }
}

fn check_uri(data: &[u8], uri: &[u8], merge: bool) {
    assert_eq!(
        uri.first(),
        Some(&b'/'),
        "uri must start with '/': {data:?} -> {uri:?}"
    );
    if merge {
        assert!(
            !contains(uri, b"//"),
            "'//' survived merge_slashes: {data:?} -> {uri:?}"
        );
    }
    for seg in [&b"/./"[..], b"/../"] {
        assert!(!contains(uri, seg), "dot segment left: {data:?} -> {uri:?}");
    }
    assert!(
        !uri.ends_with(b"/.") && !uri.ends_with(b"/.."),
        "trailing dot segment left: {data:?} -> {uri:?}"
    );
    let plain = !uri
        .iter()
        .any(|&b| matches!(b, b'%' | b'?' | b'#' | 0..=0x20 | 0x7f));
    if plain {
        let again = parse_request_target(uri, merge).expect("a normalised $uri parses");
        assert_eq!(
            again.uri, uri,
            "normalisation not idempotent: {data:?} -> {uri:?}"
        );
        assert!(again.args.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    for merge in [true, false] {
        match parse_request_target(data, merge) {
            Ok(t) => {
                check_uri(data, &t.uri, merge);
                check_args(data, t.args);
                if !data.contains(&b'?') {
                    assert!(t.args.is_empty());
                }
            }
            Err(BadUri::NotOriginForm) => assert_ne!(data.first(), Some(&b'/')),
            Err(_) => {}
        }
    }
});
