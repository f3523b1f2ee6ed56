//! `$uri` and `$arg_NAME` derived from `$request_uri` exactly as nginx does.
//!
//! nginx hands the gate the client's raw request target (`X-Original-URI:
//! $request_uri`); the md5 in a secure link is computed over nginx's *normalised*
//! `$uri`, so the gate must redo nginx's normalisation byte for byte. This is a
//! port of the behaviour of `ngx_http_parse_complex_uri` (percent-decoding where
//! the decoded byte is processed again as if it were literal, `merge_slashes`,
//! dot segments) and `ngx_http_arg` (first case-insensitive match, raw value),
//! written from nginx's documented and observed behaviour. It is differentially
//! tested against a real nginx in `tests/e2e_nginx.rs`.
//!
//! Anything nginx itself refuses with `400 Bad Request` is a [`BadUri`]: nginx
//! never forwards such a request, so only a hostile or misconfigured caller can
//! make us see one, and the gate denies it.

use std::borrow::Cow;

/// Why nginx would refuse the request target with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadUri {
    /// The target is empty or starts with neither `/` nor `?`.
    #[error("request target starts with neither '/' nor '?'")]
    NotOriginForm,
    /// A raw space, control byte or DEL in the target (nginx rejects it in the
    /// request line).
    #[error("raw space or control byte in the request target")]
    ControlByte,
    /// `%` not followed by two hex digits.
    #[error("'%' not followed by two hex digits")]
    MalformedEscape,
    /// `%00` decodes to a NUL byte.
    #[error("%00 in the path")]
    EncodedNul,
    /// `..` segments climb above the root.
    #[error("'..' climbs above the root")]
    AboveRoot,
}

/// The parts of a request target nginx works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    /// nginx's `$uri`: decoded and normalised path (raw bytes, may be non-UTF-8).
    /// Borrowed from the target when nginx keeps the path byte for byte.
    pub uri: Cow<'a, [u8]>,
    /// nginx's `$args`: the raw query, without `?`, up to the first `#`.
    pub args: &'a [u8],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Usual,
    Slash,
    Dot,
    DotDot,
}

/// Parses a raw request target (`$request_uri`) into nginx's `$uri` and `$args`.
///
/// `$request_uri` starts with `/`, except for an absolute-form request line
/// without a path (`GET http://host?md5=... HTTP/1.1`): nginx then sets
/// `$request_uri` to `?md5=...` and `$uri` to `/` (its `empty_path_in_uri`).
pub fn parse_request_target(raw: &[u8], merge_slashes: bool) -> Result<RequestTarget<'_>, BadUri> {
    let empty_path = raw.first() == Some(&b'?');
    if raw.first() != Some(&b'/') && !empty_path {
        return Err(BadUri::NotOriginForm);
    }
    // The request-line parser rejects these anywhere in the target, query included.
    if raw.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(BadUri::ControlByte);
    }
    if !empty_path {
        if let Some(plain) = plain_target(raw) {
            return Ok(plain);
        }
    }
    parse_full(raw, merge_slashes, empty_path)
}

/// nginx's full path parser (after the checks above).
fn parse_full(raw: &[u8], merge_slashes: bool, empty_path: bool) -> Result<RequestTarget<'_>, BadUri> {
    let mut u: Vec<u8> = Vec::with_capacity(raw.len() + 1);
    if empty_path {
        // nginx writes the missing path as "/" and then parses the target as
        // usual: the `?` that follows starts the args.
        u.push(b'/');
    }
    let mut state = State::Usual;
    let mut i = 0;
    let mut args_start: Option<usize> = None;

    'walk: while i < raw.len() {
        let mut ch = raw[i];
        i += 1;
        // `ch` is either a literal byte, or a decoded `%XX` that nginx feeds back
        // into the state machine as if it were literal. Decoded `%`, `#` and `?`
        // are the exceptions: emitted as data, state back to "usual".
        if ch == b'%' {
            let hi = raw.get(i).copied().and_then(hex_val);
            let lo = raw.get(i + 1).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(BadUri::MalformedEscape);
            };
            i += 2;
            ch = (hi << 4) | lo;
            match ch {
                0 => return Err(BadUri::EncodedNul),
                b'%' | b'#' | b'?' => {
                    u.push(ch);
                    state = State::Usual;
                    continue;
                }
                _ => {}
            }
        } else if ch == b'?' {
            args_start = Some(i);
            // nginx's `args:` exit: the path ends here as it stands; a pending
            // `.` or `..` segment is resolved only for `/`-, `?`- and `#`-exits
            // that the states below handle explicitly.
            if state == State::Dot {
                u.pop();
            } else if state == State::DotDot {
                back_up(&mut u)?;
            }
            break 'walk;
        } else if ch == b'#' {
            if state == State::Dot {
                u.pop();
            } else if state == State::DotDot {
                back_up(&mut u)?;
            }
            return Ok(RequestTarget {
                uri: Cow::Owned(u),
                args: &[],
            });
        }

        state = match (state, ch) {
            (_, b'/') if state == State::Dot => {
                u.pop();
                State::Slash
            }
            (State::DotDot, b'/') => {
                back_up(&mut u)?;
                State::Slash
            }
            (State::Slash, b'/') => {
                if !merge_slashes {
                    u.push(b'/');
                }
                State::Slash
            }
            (_, b'/') => {
                u.push(b'/');
                State::Slash
            }
            (State::Slash, b'.') => {
                u.push(b'.');
                State::Dot
            }
            (State::Dot, b'.') => {
                u.push(b'.');
                State::DotDot
            }
            (_, c) => {
                u.push(c);
                State::Usual
            }
        };
    }

    let args = match args_start {
        Some(start) => {
            let rest = &raw[start..];
            match rest.iter().position(|&b| b == b'#') {
                Some(end) => &rest[..end],
                None => rest,
            }
        }
        None => {
            // End of input: a trailing `/.` or `/..` is resolved like a slash.
            if state == State::Dot {
                u.pop();
            } else if state == State::DotDot {
                back_up(&mut u)?;
            }
            &[][..]
        }
    };
    Ok(RequestTarget {
        uri: Cow::Owned(u),
        args,
    })
}

/// The fast path: a target (starting with `/`, free of control bytes) whose path
/// nginx's parser would copy unchanged, i.e. one without `%` (decoding), `//`
/// (merging, or kept as is: either way not handled here), `/.` (a possible dot
/// segment) and `#` (a fragment). The state machine above only ever changes a
/// path at those bytes, so `$uri` is the path itself: no copy needed. `None`
/// sends everything else down the full parser.
fn plain_target(raw: &[u8]) -> Option<RequestTarget<'_>> {
    let mut prev = 0u8;
    let mut end = raw.len();
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'?' => {
                end = i;
                break;
            }
            b'%' | b'#' => return None,
            b'/' | b'.' if prev == b'/' => return None,
            _ => {}
        }
        prev = b;
    }
    let args = match raw.get(end + 1..) {
        Some(rest) => match rest.iter().position(|&b| b == b'#') {
            Some(hash) => &rest[..hash],
            None => rest,
        },
        None => &[][..],
    };
    Some(RequestTarget {
        uri: Cow::Borrowed(&raw[..end]),
        args,
    })
}

/// Undoes `/..` at the end of `u` and the segment before it (nginx's `u -= 4`
/// then scan back to the previous `/`). `u` ends with `/..`.
fn back_up(u: &mut Vec<u8>) -> Result<(), BadUri> {
    // Position of the byte before "/..".
    let Some(mut pos) = u.len().checked_sub(4) else {
        return Err(BadUri::AboveRoot);
    };
    loop {
        if u[pos] == b'/' {
            u.truncate(pos + 1);
            return Ok(());
        }
        if pos == 0 {
            return Err(BadUri::AboveRoot);
        }
        pos -= 1;
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// nginx's `$arg_NAME`: the first argument whose name matches `name`
/// case-insensitively (ASCII), at the start of `args` or right after `&`, and is
/// followed by `=`. The value is raw (no percent-decoding, `+` stays `+`) up to the
/// next `&`. `None` when there is no such argument.
pub fn arg<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let len = name.len();
    if len == 0 || args.len() <= len {
        return None;
    }
    // A match must leave room for the `=` after the name.
    let last_start = args.len() - len - 1;
    // Candidates start at 0 or right after a `&`: hop from one to the next.
    let mut start = 0;
    while start <= last_start {
        if args[start + len] == b'=' && args[start..start + len].eq_ignore_ascii_case(name) {
            let value = &args[start + len + 1..];
            let end = value.iter().position(|&b| b == b'&').unwrap_or(value.len());
            return Some(&value[..end]);
        }
        start += args[start..].iter().position(|&b| b == b'&')? + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(raw: &str) -> Result<String, BadUri> {
        parse_request_target(raw.as_bytes(), true).map(|t| String::from_utf8_lossy(&t.uri).into_owned())
    }

    fn uri_nomerge(raw: &str) -> Result<String, BadUri> {
        parse_request_target(raw.as_bytes(), false).map(|t| String::from_utf8_lossy(&t.uri).into_owned())
    }

    fn args(raw: &str) -> String {
        String::from_utf8(parse_request_target(raw.as_bytes(), true).unwrap().args.to_vec()).unwrap()
    }

    #[test]
    fn plain_paths_pass_through() {
        assert_eq!(uri("/").unwrap(), "/");
        assert_eq!(uri("/private/a.txt").unwrap(), "/private/a.txt");
        assert_eq!(uri("/a+b/c~d").unwrap(), "/a+b/c~d");
        assert_eq!(uri("/a.b.c/...").unwrap(), "/a.b.c/...");
        assert_eq!(uri("/a../b").unwrap(), "/a../b");
    }

    #[test]
    fn percent_decoding_and_refeeding() {
        assert_eq!(uri("/a%20b").unwrap(), "/a b");
        assert_eq!(uri("/a%2Fb").unwrap(), "/a/b");
        assert_eq!(uri("/a%2fb").unwrap(), "/a/b");
        // decoded dots are dot segments
        assert_eq!(uri("/a/%2E%2E/b").unwrap(), "/b");
        assert_eq!(uri("/a/%2e/b").unwrap(), "/a/b");
        // decoded slashes merge
        assert_eq!(uri("/a%2F%2Fb").unwrap(), "/a/b");
        assert_eq!(uri("/a/%2F/b").unwrap(), "/a/b");
        // no double decoding: %25 is a literal '%'
        assert_eq!(uri("/a%252Fb").unwrap(), "/a%2Fb");
        // decoded '?' and '#' are data
        assert_eq!(uri("/a%3Fmd5=x").unwrap(), "/a?md5=x");
        assert_eq!(uri("/a%23b").unwrap(), "/a#b");
        // after a literal-emitted '%', the state is "usual": "/." is not a dot segment start
        assert_eq!(uri("/%25/./x").unwrap(), "/%/x");
        // UTF-8, raw or encoded, same bytes
        assert_eq!(uri("/%C3%A9t%C3%A9").unwrap(), "/été");
        assert_eq!(
            &parse_request_target(b"/\xc3\xa9t\xc3\xa9", true).unwrap().uri[..],
            "/été".as_bytes()
        );
        assert_eq!(
            &parse_request_target(b"/\xff%FF", true).unwrap().uri[..],
            b"/\xff\xff"
        );
    }

    #[test]
    fn dot_segments() {
        assert_eq!(uri("/a/./b").unwrap(), "/a/b");
        assert_eq!(uri("/a/../b").unwrap(), "/b");
        assert_eq!(uri("/a/b/..").unwrap(), "/a/");
        assert_eq!(uri("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(uri("/a/b/..?x=1").unwrap(), "/a/");
        assert_eq!(uri("/a/b/.?x=1").unwrap(), "/a/b/");
        assert_eq!(uri("/a/b/..#f").unwrap(), "/a/");
        assert_eq!(uri("/./").unwrap(), "/");
        assert_eq!(uri("/.").unwrap(), "/");
        assert_eq!(uri("/a/.../b").unwrap(), "/a/.../b");
        assert_eq!(uri("/a/.b").unwrap(), "/a/.b");
        assert_eq!(uri("/a/..b").unwrap(), "/a/..b");
    }

    #[test]
    fn above_root_is_refused() {
        assert_eq!(uri("/.."), Err(BadUri::AboveRoot));
        assert_eq!(uri("/../a"), Err(BadUri::AboveRoot));
        assert_eq!(uri("/a/../../b"), Err(BadUri::AboveRoot));
        assert_eq!(uri("/%2E%2E/a"), Err(BadUri::AboveRoot));
        assert_eq!(uri("/..?a=b"), Err(BadUri::AboveRoot));
    }

    #[test]
    fn merge_slashes_setting() {
        assert_eq!(uri("//a///b").unwrap(), "/a/b");
        assert_eq!(uri_nomerge("//a///b").unwrap(), "//a///b");
        assert_eq!(uri_nomerge("/a//../b").unwrap(), "/a/b");
        assert_eq!(uri_nomerge("/a/%2F/b").unwrap(), "/a///b");
    }

    #[test]
    fn bad_escapes_and_bytes() {
        assert_eq!(uri("/a%zz"), Err(BadUri::MalformedEscape));
        assert_eq!(uri("/a%4"), Err(BadUri::MalformedEscape));
        assert_eq!(uri("/a%"), Err(BadUri::MalformedEscape));
        assert_eq!(uri("/a%00b"), Err(BadUri::EncodedNul));
        assert_eq!(uri("/a b"), Err(BadUri::ControlByte));
        assert_eq!(uri("/a?b=\x01"), Err(BadUri::ControlByte));
        assert_eq!(uri("a"), Err(BadUri::NotOriginForm));
        assert_eq!(uri(""), Err(BadUri::NotOriginForm));
        assert_eq!(uri("#a"), Err(BadUri::NotOriginForm));
        // escapes in the query are not decoded by the path parser
        assert_eq!(uri("/a?b=%zz").unwrap(), "/a");
    }

    #[test]
    fn args_are_raw_and_end_at_hash() {
        assert_eq!(args("/a?md5=x&expires=1"), "md5=x&expires=1");
        assert_eq!(args("/a?md5=x#frag"), "md5=x");
        assert_eq!(args("/a#frag?md5=x"), "");
        assert_eq!(args("/a"), "");
        assert_eq!(args("/a%3Fx?y=1"), "y=1");
        assert_eq!(uri("/a#frag").unwrap(), "/a");
    }

    /// Regression (found by tests/e2e_nginx.rs): `GET http://host?md5=... HTTP/1.1`
    /// reaches the gate as `X-Original-URI: ?md5=...`; nginx's `$uri` is `/` and
    /// the args are read as usual. The gate used to refuse it as not origin-form.
    #[test]
    fn absolute_form_without_path_is_uri_slash() {
        let t = parse_request_target(b"?md5=x&expires=1", true).unwrap();
        assert_eq!(&t.uri[..], b"/");
        assert_eq!(t.args, b"md5=x&expires=1");
        let t = parse_request_target(b"?md5=x#frag", false).unwrap();
        assert_eq!(&t.uri[..], b"/");
        assert_eq!(t.args, b"md5=x");
        let t = parse_request_target(b"?", true).unwrap();
        assert_eq!((&t.uri[..], t.args), (&b"/"[..], &b""[..]));
        let t = parse_request_target(b"?#", true).unwrap();
        assert_eq!((&t.uri[..], t.args), (&b"/"[..], &b""[..]));
        assert_eq!(uri("?a"), Ok("/".into()));
        assert_eq!(uri("?a=\x01"), Err(BadUri::ControlByte));
    }

    /// The fast path (borrowed `$uri`) must agree with the full parser on
    /// every target it takes, and must take the plain ones.
    #[test]
    fn plain_fast_path_agrees_with_the_full_parser() {
        use rand::{Rng, SeedableRng};
        let alphabet: &[&[u8]] = &[
            b"/",
            b"/",
            b"a",
            b"b",
            b".",
            b"..",
            b"%2F",
            b"%2e",
            b"%25",
            b"?",
            b"#",
            b"&",
            b"=",
            b"md5",
            b"~",
            b"+",
            b"\xc3\xa9",
            b"%",
            b"//",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut fast = 0;
        for _ in 0..50_000 {
            let mut raw = vec![b'/'];
            for _ in 0..rng.gen_range(0..12) {
                raw.extend_from_slice(alphabet[rng.gen_range(0..alphabet.len())]);
            }
            for merge in [true, false] {
                let full = parse_full(&raw, merge, false);
                if let Some(p) = plain_target(&raw) {
                    fast += 1;
                    assert_eq!(full.as_ref(), Ok(&p), "{:?}", String::from_utf8_lossy(&raw));
                }
                let got = parse_request_target(&raw, merge);
                assert_eq!(got, full, "{:?}", String::from_utf8_lossy(&raw));
            }
        }
        assert!(fast > 10_000, "fast path taken {fast} times");
        for plain in [&b"/private/a.txt?md5=x&expires=1"[..], b"/a.b/c..d/e.?x#y", b"/"] {
            let t = parse_request_target(plain, true).unwrap();
            assert!(matches!(t.uri, Cow::Borrowed(_)), "{plain:?}");
        }
    }

    #[test]
    fn arg_lookup_is_nginx_like() {
        assert_eq!(arg(b"md5=a&expires=1", b"md5"), Some(&b"a"[..]));
        assert_eq!(arg(b"MD5=a&md5=b", b"md5"), Some(&b"a"[..]));
        assert_eq!(arg(b"xmd5=a&md5=b", b"md5"), Some(&b"b"[..]));
        assert_eq!(arg(b"md5x=a&md5=b", b"md5"), Some(&b"b"[..]));
        assert_eq!(arg(b"md5", b"md5"), None);
        assert_eq!(arg(b"md5=", b"md5"), Some(&b""[..]));
        assert_eq!(arg(b"a=1&&md5=%3D+", b"md5"), Some(&b"%3D+"[..]));
        assert_eq!(arg(b"a=md5=1", b"md5"), None);
        assert_eq!(arg(b"", b"md5"), None);
        assert_eq!(arg(b"expires=1&expires=2", b"expires"), Some(&b"1"[..]));
    }

    /// `arg` hops from `&` to `&`; the plain scan of every position (its
    /// previous form) must give the same answers.
    #[test]
    fn arg_agrees_with_a_scan_of_every_position() {
        fn scan<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
            let len = name.len();
            if len == 0 || args.len() <= len {
                return None;
            }
            (0..=args.len() - len - 1).find_map(|start| {
                let hit = args[start..start + len].eq_ignore_ascii_case(name)
                    && (start == 0 || args[start - 1] == b'&')
                    && args[start + len] == b'=';
                hit.then(|| {
                    let value = &args[start + len + 1..];
                    &value[..value.iter().position(|&b| b == b'&').unwrap_or(value.len())]
                })
            })
        }
        use rand::{Rng, SeedableRng};
        let parts: &[&[u8]] = &[
            b"md5", b"MD5", b"expires", b"=", b"&", b"x", b"&&", b"md5=", b"==",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50_000 {
            let mut a = Vec::new();
            for _ in 0..rng.gen_range(0..8) {
                a.extend_from_slice(parts[rng.gen_range(0..parts.len())]);
            }
            for name in [&b"md5"[..], b"expires", b"x", b""] {
                assert_eq!(arg(&a, name), scan(&a, name), "{:?}", String::from_utf8_lossy(&a));
            }
        }
    }
}
