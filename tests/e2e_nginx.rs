//! End-to-end tests against a real nginx (Debian package `nginx`, 1.22.1 on the
//! CI image), started by the test on loopback ports with its own config in a
//! tempdir. No mocks: a missing nginx fails the test with the install command.
//!
//! - **Differential** (`differential_merge_slashes_{on,off}`): one nginx server
//!   block computes the native `$secure_link` for a request *and* asks assetgate
//!   through `auth_request`; both verdicts come back in response headers.
//!   Thousands of generated request targets are sent over raw TCP (the exact
//!   bytes reach nginx) and every verdict must agree:
//!   native `1` ⇔ gate 204, native `0` ⇔ gate 403 `expired`, native empty ⇔ gate
//!   403 `invalid`/`missing`; targets nginx refuses with 400 never reach the gate.
//!   `ASSETGATE_DIFF_COUNT` (default 5000 per mode) and `ASSETGATE_DIFF_SEED`
//!   (replay) control the run; the seed is printed.
//!
//!   Many targets must be *valid* links, or the test would only prove that both
//!   sides deny garbage. Two generators produce signed links:
//!   - *built* paths: the normalised `$uri` is chosen first and then encoded with
//!     changes whose effect is known by construction (`%XX`, `%2F`, `/./`,
//!     `seg/../`, extra slashes, trailing `/.`), so the link is signed for the
//!     `$uri` nginx will compute; the test also checks nginx agrees with that
//!     intent (native verdict as designed), so a generator slip cannot quietly
//!     turn "valid" cases into "invalid" ones;
//!   - *chaos* paths: random token soup (`..`, `%2E%2E`, `%25`, `#`, `?`, UTF-8,
//!     bad escapes, ...) whose `$uri` is asked from nginx itself (an oracle server
//!     that answers `return 200 $uri;`) and then signed.
//!
//! - **Shipped config** (`shipped_config_*`): nginx with `nginx/*.conf` included
//!   verbatim (only the upstream address is rewritten to the test's assetgate),
//!   an asset tree, and the behaviour users rely on: 200 with the file, 410 for
//!   expired, 403 for forged or missing tokens, public files without a token,
//!   connections to the gate reused.
//!
//! - **Example config**: `nginx -t` accepts `nginx/assetgate.conf.example`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::ngx::{nginx_main_conf, Nginx};
use common::{Daemon, LINK_SECRET, LINK_SECRET_OLD, UPLOAD_SECRET};

// ---------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client that sends the request target byte for byte

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `[value]` header as written by the differential server.
    fn bracketed(&self, name: &str) -> String {
        let v = self.header(name).unwrap_or("");
        v.strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v)
            .to_string()
    }
}

struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    fn get(&mut self, target: &[u8]) -> Resp {
        self.get_with(target, &[])
    }

    fn get_with(&mut self, target: &[u8], headers: &[(&str, &str)]) -> Resp {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: assetgate.test\r\n");
        for (k, v) in headers {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        for _ in 0..2 {
            let reused = self.conn.is_some();
            if !reused {
                let s =
                    TcpStream::connect(self.addr).unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_nodelay(true).unwrap();
                self.conn = Some(BufReader::new(s));
            }
            let conn = self.conn.as_mut().unwrap();
            let result = conn.get_mut().write_all(&req).and_then(|()| read_response(conn));
            match result {
                Ok(Some(r)) => {
                    if r.header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                    {
                        self.conn = None;
                    }
                    return r;
                }
                // The server closed an idle keep-alive connection: reconnect once.
                Ok(None) | Err(_) if reused => self.conn = None,
                Ok(None) => panic!("{}: closed without a response to {}", self.addr, show(target)),
                Err(e) => panic!("{}: {e} while requesting {}", self.addr, show(target)),
            }
        }
        panic!("{}: no response to {}", self.addr, show(target));
    }
}

/// Reads one response; `None` if the connection was closed before it began.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Resp>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    let status_line = String::from_utf8_lossy(&line).into_owned();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(bad("connection closed in the response head".into()));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(bad("chunked responses are not expected from these servers".into()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().map_err(|_| bad(format!("bad content-length {v:?}"))))
        .transpose()?
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(Resp {
        status,
        headers,
        body,
    }))
}

/// A request target as an escaped string, for messages.
fn show(target: &[u8]) -> String {
    format!("\"{}\"", target.escape_ascii())
}

/// Sum of the samples of a Prometheus family whose labels contain `filter`.
fn metric_sum(text: &str, family: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(filter))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad metric line {l:?}"))
        })
        .sum()
}

fn gate_metrics(gate: &Daemon) -> String {
    let (status, _, body) = common::get(gate.addr, "/metrics", &[]);
    assert_eq!(status, 200, "GET /metrics");
    String::from_utf8(body).unwrap()
}

/// Unix time as seconds with a fraction.
fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

// ---------------------------------------------------------------------------
// Link signing (test-side, straight from the md-5 crate)

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// A secret assetgate does not know.
const WRONG_SECRET: &str = "wrong-secret-not-configured-0123";

fn digest(expires: &[u8], uri: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(expires);
    h.update(uri);
    h.update(b" ");
    h.update(secret);
    h.finalize().into()
}

/// nginx's `md5` argument for `$uri` and the raw `expires` text.
fn link_md5(expires: &[u8], uri: &[u8], secret: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest(expires, uri, secret))
        .into_bytes()
}

fn b64_index(c: u8) -> usize {
    B64URL.iter().position(|&a| a == c).unwrap()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------
// The generator

/// What the md5 argument looks like.
#[derive(Clone, Copy, Debug)]
enum Md5V {
    Exact,
    Pad1,
    Pad2,
    /// `=` then junk, 24 bytes in all (accepted).
    PadJunk24,
    /// `=` then a raw 0xFF byte, 24 bytes (accepted).
    PadHighByte24,
    /// `=%`, 24 bytes: what follows `=` is never decoded (accepted).
    PadPercent24,
    /// 25 bytes (refused).
    PadJunk25,
    Pad3,
    /// `=é`: 24 characters but 25 bytes (refused).
    PadUtf8Junk25,
    /// The last of the 22 characters replaced (16 of 64 decode the same).
    LastChar(u8),
    /// Standard alphabet (`+`, `/`) instead of base64url.
    StdAlphabet,
    Plus,
    Trunc21,
    Trunc20,
    Ext23,
    Ext23Pad,
    /// 24 significant characters (18 bytes).
    Ext24,
    /// `=` after 20 characters.
    EarlyPad,
    Flip,
    /// One character percent-encoded.
    PctEncoded,
    Hex32,
    Comma,
    WrongSecret,
    WrongUri,
    Empty,
}

const MD5_FIXED: [Md5V; 24] = [
    Md5V::Exact,
    Md5V::Pad1,
    Md5V::Pad2,
    Md5V::PadJunk24,
    Md5V::PadHighByte24,
    Md5V::PadPercent24,
    Md5V::PadJunk25,
    Md5V::Pad3,
    Md5V::PadUtf8Junk25,
    Md5V::StdAlphabet,
    Md5V::Plus,
    Md5V::Trunc21,
    Md5V::Trunc20,
    Md5V::Ext23,
    Md5V::Ext23Pad,
    Md5V::Ext24,
    Md5V::EarlyPad,
    Md5V::Flip,
    Md5V::PctEncoded,
    Md5V::Hex32,
    Md5V::Comma,
    Md5V::WrongSecret,
    Md5V::WrongUri,
    Md5V::Empty,
];

/// Returns the md5 argument and whether nginx should find the hash right.
fn md5_variant(v: Md5V, uri: &[u8], exp: &[u8]) -> (Vec<u8>, bool) {
    let mut m = link_md5(exp, uri, LINK_SECRET.as_bytes());
    match v {
        Md5V::Exact => (m, true),
        Md5V::Pad1 => (cat(&[&m, b"="]), true),
        Md5V::Pad2 => (cat(&[&m, b"=="]), true),
        Md5V::PadJunk24 => (cat(&[&m, b"=!"]), true),
        Md5V::PadHighByte24 => (cat(&[&m, b"=\xff"]), true),
        Md5V::PadPercent24 => (cat(&[&m, b"=%"]), true),
        Md5V::PadJunk25 => (cat(&[&m, b"=!!"]), false),
        Md5V::Pad3 => (cat(&[&m, b"==="]), false),
        Md5V::PadUtf8Junk25 => (cat(&[&m, "=é".as_bytes()]), false),
        Md5V::LastChar(c) => {
            let same = b64_index(c) >> 4 == b64_index(m[21]) >> 4;
            m[21] = c;
            (m, same)
        }
        Md5V::StdAlphabet => {
            let mut s: Vec<u8> = m
                .iter()
                .map(|&b| match b {
                    b'-' => b'+',
                    b'_' => b'/',
                    b => b,
                })
                .collect();
            if s == m {
                s[7] = b'/';
            }
            (s, false)
        }
        Md5V::Plus => {
            m[3] = b'+';
            (m, false)
        }
        Md5V::Trunc21 => (m[..21].to_vec(), false),
        Md5V::Trunc20 => (m[..20].to_vec(), false),
        Md5V::Ext23 => (cat(&[&m, b"A"]), false),
        Md5V::Ext23Pad => (cat(&[&m, b"A="]), false),
        Md5V::Ext24 => (cat(&[&m, b"AA"]), false),
        Md5V::EarlyPad => (cat(&[&m[..20], b"=="]), false),
        Md5V::Flip => {
            m[5] = B64URL[(b64_index(m[5]) + 1) % 64];
            (m, false)
        }
        Md5V::PctEncoded => {
            let enc = format!("%{:02X}", m[10]);
            (cat(&[&m[..10], enc.as_bytes(), &m[11..]]), false)
        }
        Md5V::Hex32 => (
            hex::encode(digest(exp, uri, LINK_SECRET.as_bytes())).into_bytes(),
            false,
        ),
        Md5V::Comma => (cat(&[&m, b","]), false),
        Md5V::WrongSecret => (link_md5(exp, uri, WRONG_SECRET.as_bytes()), false),
        Md5V::WrongUri => (link_md5(exp, &cat(&[uri, b"x"]), LINK_SECRET.as_bytes()), false),
        Md5V::Empty => (Vec::new(), false),
    }
}

/// What the expires argument looks like.
#[derive(Clone, Copy, Debug)]
enum ExpV {
    Now,
    Future(i64),
    Past(i64),
    LeadingZeros(usize, i64),
    One,
    Max,
    ZeroMax,
    Overflow,
    Overflow20,
    Zero,
    Zeros,
    Negative,
    PlusSign,
    Empty,
    Alpha,
    Sci,
    PctDigit,
    Comma,
    Hex,
    Space,
}

const EXP_ALL: [ExpV; 22] = [
    ExpV::Now,
    ExpV::Future(1),
    ExpV::Future(3600),
    ExpV::Past(1),
    ExpV::Past(3600),
    ExpV::LeadingZeros(2, 3600),
    ExpV::LeadingZeros(1, -3600),
    ExpV::One,
    ExpV::Max,
    ExpV::ZeroMax,
    ExpV::Overflow,
    ExpV::Overflow20,
    ExpV::Zero,
    ExpV::Zeros,
    ExpV::Negative,
    ExpV::PlusSign,
    ExpV::Empty,
    ExpV::Alpha,
    ExpV::Sci,
    ExpV::PctDigit,
    ExpV::Comma,
    ExpV::Hex,
];
const EXP_INVALID: [ExpV; 13] = [
    ExpV::Overflow,
    ExpV::Overflow20,
    ExpV::Zero,
    ExpV::Zeros,
    ExpV::Negative,
    ExpV::PlusSign,
    ExpV::Empty,
    ExpV::Alpha,
    ExpV::Sci,
    ExpV::PctDigit,
    ExpV::Comma,
    ExpV::Hex,
    ExpV::Space,
];

/// The raw expires text and, if nginx parses it, its value.
fn exp_variant(v: ExpV, now: i64) -> (Vec<u8>, Option<i64>) {
    let soon = now + 3600;
    let (text, value) = match v {
        ExpV::Now => (now.to_string(), Some(now)),
        ExpV::Future(d) => ((now + d).to_string(), Some(now + d)),
        ExpV::Past(d) => ((now - d).to_string(), Some(now - d)),
        ExpV::LeadingZeros(k, d) => (format!("{}{}", "0".repeat(k), now + d), Some(now + d)),
        ExpV::One => ("1".into(), Some(1)),
        ExpV::Max => (i64::MAX.to_string(), Some(i64::MAX)),
        ExpV::ZeroMax => (format!("0{}", i64::MAX), Some(i64::MAX)),
        ExpV::Overflow => ("9223372036854775808".into(), None),
        ExpV::Overflow20 => ("99999999999999999999".into(), None),
        ExpV::Zero => ("0".into(), None),
        ExpV::Zeros => ("000".into(), None),
        ExpV::Negative => (format!("-{soon}"), None),
        ExpV::PlusSign => (format!("+{soon}"), None),
        ExpV::Empty => (String::new(), None),
        ExpV::Alpha => (format!("{soon}a"), None),
        ExpV::Sci => ("1e12".into(), None),
        ExpV::PctDigit => (format!("%3{soon}"), None),
        ExpV::Comma => (format!("{soon},1"), None),
        ExpV::Hex => ("0x7fffffff".into(), None),
        ExpV::Space => (format!("%20{soon}"), None),
    };
    (text.into_bytes(), value)
}

/// How the arguments are laid out around md5 and expires.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Std,
    Reversed,
    UpperNames,
    MixedCaseNames,
    JunkBefore,
    EmptyArgsBefore,
    DecoysBefore,
    JunkAfter,
    DuplicatesAfter,
    FragmentAfter,
    Md5DuplicateFirst,
    ExpiresDuplicateFirst,
    NoMd5,
    NoExpires,
    NoQuery,
    EmptyQuery,
    GluedOnly,
    NameSuffixOnly,
    FragmentInside,
    FragmentBeforeQuery,
    DoubleQuestion,
    PlusBeforeExpires,
    Semicolon,
    EncodedName,
}

/// Layouts where nginx reads exactly the md5 and expires we wrote.
const LAYOUT_GIVEN: [Layout; 10] = [
    Layout::Std,
    Layout::Reversed,
    Layout::UpperNames,
    Layout::MixedCaseNames,
    Layout::JunkBefore,
    Layout::EmptyArgsBefore,
    Layout::DecoysBefore,
    Layout::JunkAfter,
    Layout::DuplicatesAfter,
    Layout::FragmentAfter,
];
const LAYOUT_OTHER: [Layout; 14] = [
    Layout::Md5DuplicateFirst,
    Layout::ExpiresDuplicateFirst,
    Layout::NoMd5,
    Layout::NoExpires,
    Layout::NoQuery,
    Layout::EmptyQuery,
    Layout::GluedOnly,
    Layout::NameSuffixOnly,
    Layout::FragmentInside,
    Layout::FragmentBeforeQuery,
    Layout::DoubleQuestion,
    Layout::PlusBeforeExpires,
    Layout::Semicolon,
    Layout::EncodedName,
];

/// Which md5/expires nginx ends up reading.
enum Effective {
    /// The ones we wrote.
    Given,
    /// The expires `1` placed first.
    ExpiresOne,
    /// None that can verify.
    Denied,
}

fn layout(l: Layout, m: &[u8], e: &[u8], rng: &mut StdRng) -> (Vec<u8>, Effective) {
    let std = cat(&[b"md5=", m, b"&expires=", e]);
    let given = |s: Vec<u8>| (s, Effective::Given);
    let denied = |s: Vec<u8>| (s, Effective::Denied);
    match l {
        Layout::Std => given(cat(&[b"?", &std])),
        Layout::Reversed => given(cat(&[b"?expires=", e, b"&md5=", m])),
        Layout::UpperNames => given(cat(&[b"?MD5=", m, b"&EXPIRES=", e])),
        Layout::MixedCaseNames => {
            let mut flip = |name: &[u8]| -> Vec<u8> {
                name.iter()
                    .map(|&c| {
                        if rng.gen_bool(0.5) {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect()
            };
            let (a, b) = (flip(b"md5"), flip(b"expires"));
            given(cat(&[b"?", &a, b"=", m, b"&", &b, b"=", e]))
        }
        Layout::JunkBefore => given(cat(&[b"?a=1&b=%zz&c&", &std])),
        Layout::EmptyArgsBefore => given(cat(&[b"?&&", &std])),
        Layout::DecoysBefore => given(cat(&[
            b"?xmd5=AAAAAAAAAAAAAAAAAAAAAA&md5x=BBBB&x_expires=1&expiresx=2&a=md5=C&",
            &std,
        ])),
        Layout::JunkAfter => given(cat(&[b"?", &std, b"&x=%zz%&"])),
        Layout::DuplicatesAfter => given(cat(&[
            b"?",
            &std,
            b"&md5=AAAAAAAAAAAAAAAAAAAAAA&EXPIRES=1&MD5=&expires=",
        ])),
        Layout::FragmentAfter => given(cat(&[b"?", &std, b"#md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1"])),
        Layout::Md5DuplicateFirst => denied(cat(&[b"?md5=AAAAAAAAAAAAAAAAAAAAAA&", &std])),
        Layout::ExpiresDuplicateFirst => (cat(&[b"?expires=1&", &std]), Effective::ExpiresOne),
        Layout::NoMd5 => denied(cat(&[b"?expires=", e])),
        Layout::NoExpires => denied(cat(&[b"?md5=", m])),
        Layout::NoQuery => denied(Vec::new()),
        Layout::EmptyQuery => denied(b"?".to_vec()),
        Layout::GluedOnly => denied(cat(&[b"?xmd5=", m, b"&xexpires=", e])),
        Layout::NameSuffixOnly => denied(cat(&[b"?md5x=", m, b"&expires_=", e])),
        Layout::FragmentInside => denied(cat(&[b"?md5=", m, b"#&expires=", e])),
        Layout::FragmentBeforeQuery => denied(cat(&[b"#?", &std])),
        Layout::DoubleQuestion => denied(cat(&[b"??", &std])),
        Layout::PlusBeforeExpires => denied(cat(&[b"?md5=", m, b"&expires=+", e])),
        Layout::Semicolon => denied(cat(&[b"?md5=", m, b";expires=", e])),
        Layout::EncodedName => denied(cat(&[b"?%6Dd5=", m, b"&expires=", e])),
    }
}

/// Requests nginx must refuse itself (400), built around a valid path.
#[derive(Clone, Copy, Debug)]
enum Bad {
    AboveRoot,
    AboveRootEncoded,
    AboveRootDeep,
    DotDotOnly,
    EncodedNul,
    NonHexEscape,
    ShortHex,
    TrailingPercent,
    Ctl,
    Del,
    Space,
    NoLeadingSlash,
    EncodedLeadingSlash,
}

const BAD_ALL: [Bad; 13] = [
    Bad::AboveRoot,
    Bad::AboveRootEncoded,
    Bad::AboveRootDeep,
    Bad::DotDotOnly,
    Bad::EncodedNul,
    Bad::NonHexEscape,
    Bad::ShortHex,
    Bad::TrailingPercent,
    Bad::Ctl,
    Bad::Del,
    Bad::Space,
    Bad::NoLeadingSlash,
    Bad::EncodedLeadingSlash,
];

/// What the generator meant nginx to answer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Hash right, expires parsed: `1`, or `0` once past.
    Hash(i64),
    /// `$secure_link` empty.
    Invalid,
    /// nginx refuses the request line itself.
    BadRequest,
    /// Not known by construction (chaos paths with their own `?`/`#`).
    Unknown,
}

#[derive(Clone, Copy, Debug)]
enum Spec {
    Built(Md5V, ExpV, Layout),
    Chaos(Md5V, ExpV, Layout),
    /// Absolute-form request line (`GET http://host/path?... HTTP/1.1`); with
    /// `true`, no path at all (`http://host?md5=...`): nginx's `$request_uri`
    /// is then `?md5=...` and its `$uri` is `/`.
    Absolute(Md5V, ExpV, Layout, bool),
    Bad(Bad),
}

struct Case {
    target: Vec<u8>,
    spec: Spec,
    /// The expires value we wrote, if it parses (for the one-second boundary).
    expires: Option<i64>,
    expect: Expect,
}

/// Tokens for chaos paths, with weights (rare ones make nginx answer 400).
const CHAOS: &[(&[u8], u32)] = &[
    (b"/", 30),
    (b"//", 8),
    (b".", 10),
    (b"..", 10),
    (b"./", 6),
    (b"../", 6),
    (b"/.", 6),
    (b"/..", 6),
    (b"%2F", 6),
    (b"%2f", 3),
    (b"%2E", 6),
    (b"%2e", 3),
    (b"%2E%2E", 5),
    (b"%2e.", 2),
    (b"%25", 3),
    (b"%252F", 2),
    (b"%3F", 3),
    (b"%3f", 1),
    (b"%23", 3),
    (b"?", 2),
    (b"#", 2),
    (b"+", 3),
    (b"a", 25),
    (b"bc", 15),
    (b"x.y", 6),
    (b"...", 2),
    ("é".as_bytes(), 3),
    (b"%C3%A9", 3),
    (b"%c3%a9", 1),
    (b"\xff", 2),
    (b"%FF", 2),
    (b";", 2),
    (b"=", 2),
    (b"&", 2),
    (b"~", 2),
    (b"md5=", 2),
    (b"%0D%0A", 2),
    (b"%20", 2),
    (b"%7F", 1),
    (b"%00", 1),
    (b"%zz", 1),
    (b"%4", 1),
    (b"%", 1),
    (b"\x01", 1),
    (b"\x7f", 1),
];

/// Pieces of path segments (never `.` or `..` alone, and no `/`).
const PIECES: &[&[u8]] = &[
    b"a",
    b"file",
    b"x1",
    b"Z-9_~",
    b"report.pdf",
    b"..a",
    b"...",
    b".hidden",
    b"a..",
    b"a.b.c",
    b"+",
    b"a+b",
    b"!$&'()*,;=:@",
    b"md5=AAAA&expires=1",
    b"\"<>\\^`{|}",
    "été".as_bytes(),
    "日本".as_bytes(),
    "😀".as_bytes(),
    b"\xff\xfe",
    b"\xc3",
    b" ",
    b"a b",
    b"%",
    b"%41",
    b"%2F",
    b"%2E%2E",
    b"?",
    b"?md5=x",
    b"#",
    b"#frag",
    b"\r\n",
    b"\x01",
    b"\x7f",
    b"\t",
];

struct Gen {
    rng: StdRng,
    merge_slashes: bool,
    script: Vec<Spec>,
}

/// A raw path and the `$uri` nginx derives from it, known by construction.
struct Built {
    raw: Vec<u8>,
    uri: Vec<u8>,
}

impl Gen {
    fn new(seed: u64, merge_slashes: bool) -> Gen {
        // Every variant once before the random part, whatever the seed.
        let mut script = Vec::new();
        let soon = ExpV::Future(3600);
        for &c in B64URL {
            script.push(Spec::Built(Md5V::LastChar(c), soon, Layout::Std));
        }
        for v in MD5_FIXED {
            script.push(Spec::Built(v, soon, Layout::Std));
            script.push(Spec::Built(v, ExpV::Past(60), Layout::Std));
        }
        for e in EXP_ALL.into_iter().chain(EXP_INVALID) {
            script.push(Spec::Built(Md5V::Exact, e, Layout::Std));
        }
        for l in LAYOUT_GIVEN.into_iter().chain(LAYOUT_OTHER) {
            script.push(Spec::Built(Md5V::Exact, soon, l));
            script.push(Spec::Built(Md5V::Exact, ExpV::Past(60), l));
        }
        for b in BAD_ALL {
            script.push(Spec::Bad(b));
        }
        for empty_path in [false, true] {
            for l in [
                Layout::Std,
                Layout::NoQuery,
                Layout::FragmentAfter,
                Layout::UpperNames,
            ] {
                script.push(Spec::Absolute(Md5V::Exact, soon, l, empty_path));
                script.push(Spec::Absolute(Md5V::Exact, ExpV::Past(60), l, empty_path));
            }
        }
        Gen {
            rng: StdRng::seed_from_u64(seed),
            merge_slashes,
            script,
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    fn random_md5(&mut self) -> Md5V {
        let r: f64 = self.rng.gen();
        if r < 0.55 {
            Md5V::Exact
        } else if r < 0.62 {
            let c = self.pick(B64URL);
            self.pick(&[
                Md5V::Pad1,
                Md5V::Pad2,
                Md5V::PadJunk24,
                Md5V::PadHighByte24,
                Md5V::PadPercent24,
                Md5V::LastChar(c),
            ])
        } else if r < 0.67 {
            Md5V::LastChar(self.pick(B64URL))
        } else {
            self.pick(&MD5_FIXED)
        }
    }

    fn random_exp(&mut self) -> ExpV {
        let r: f64 = self.rng.gen();
        if r < 0.08 {
            ExpV::Now
        } else if r < 0.48 {
            ExpV::Future(self.pick(&[1, 2, 60, 3600, 31_536_000]))
        } else if r < 0.66 {
            ExpV::Past(self.pick(&[1, 2, 60, 86_400]))
        } else if r < 0.72 {
            let k = self.rng.gen_range(1..=3);
            ExpV::LeadingZeros(k, self.pick(&[0, 60, -60]))
        } else if r < 0.78 {
            self.pick(&[ExpV::One, ExpV::Max, ExpV::ZeroMax])
        } else {
            self.pick(&EXP_INVALID)
        }
    }

    fn random_layout(&mut self) -> Layout {
        let r: f64 = self.rng.gen();
        if r < 0.4 {
            Layout::Std
        } else if r < 0.78 {
            self.pick(&LAYOUT_GIVEN)
        } else {
            self.pick(&LAYOUT_OTHER)
        }
    }

    fn spec(&mut self, i: usize) -> Spec {
        if let Some(&s) = self.script.get(i) {
            return s;
        }
        let r = self.rng.gen_range(0..100);
        if r < 58 {
            Spec::Built(self.random_md5(), self.random_exp(), self.random_layout())
        } else if r < 86 {
            Spec::Chaos(self.random_md5(), self.random_exp(), self.random_layout())
        } else if r < 91 {
            let empty_path = self.rng.gen_bool(0.4);
            Spec::Absolute(
                self.random_md5(),
                self.random_exp(),
                self.random_layout(),
                empty_path,
            )
        } else {
            Spec::Bad(self.pick(&BAD_ALL))
        }
    }

    fn slash(&mut self) -> &'static [u8] {
        let r: f64 = self.rng.gen();
        if r < 0.85 {
            b"/"
        } else if r < 0.95 {
            b"%2F"
        } else {
            b"%2f"
        }
    }

    fn dot(&mut self) -> &'static [u8] {
        self.pick(&[b".".as_slice(), b"%2E", b"%2e"])
    }

    fn dotdot(&mut self) -> &'static [u8] {
        self.pick(&[b"..".as_slice(), b"%2E%2E", b".%2e", b"%2E."])
    }

    fn segment(&mut self) -> Vec<u8> {
        let n = self.rng.gen_range(1..=2);
        (0..n).flat_map(|_| self.pick(PIECES).to_vec()).collect()
    }

    /// Percent-encodes what must be, and some of the rest (same `$uri`).
    fn encode(&mut self, seg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in seg {
            let must = b <= 0x20 || b == 0x7f || matches!(b, b'%' | b'?' | b'#');
            let p = if b >= 0x80 { 0.5 } else { 0.12 };
            if must || self.rng.gen_bool(p) {
                let s = if self.rng.gen_bool(0.5) {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                };
                out.extend_from_slice(s.as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    /// After a slash: units that leave `$uri` unchanged and end after a slash.
    fn noise(&mut self, raw: &mut Vec<u8>) {
        if !self.rng.gen_bool(0.3) {
            return;
        }
        for _ in 0..self.rng.gen_range(1..=2) {
            match self.rng.gen_range(0..3) {
                0 => {
                    let (d, s) = (self.dot(), self.slash());
                    raw.extend_from_slice(d);
                    raw.extend_from_slice(s);
                }
                1 => {
                    let seg = self.segment();
                    let seg = self.encode(&seg);
                    raw.extend_from_slice(&seg);
                    let (s1, dd, s2) = (self.slash(), self.dotdot(), self.slash());
                    raw.extend_from_slice(s1);
                    raw.extend_from_slice(dd);
                    raw.extend_from_slice(s2);
                }
                _ => {
                    // An extra slash is only invisible when slashes merge.
                    if self.merge_slashes {
                        let s = self.slash();
                        raw.extend_from_slice(s);
                    }
                }
            }
        }
    }

    fn built_path(&mut self) -> Built {
        let nseg = self.rng.gen_range(0..=5);
        let mut segs: Vec<Vec<u8>> = Vec::new();
        for _ in 0..nseg {
            if !self.merge_slashes && self.rng.gen_bool(0.12) {
                segs.push(Vec::new()); // "//" survives in $uri
            } else {
                segs.push(self.segment());
            }
        }
        let trailing = nseg > 0 && self.rng.gen_bool(0.2);
        let mut uri = b"/".to_vec();
        uri.extend_from_slice(&segs.join(&b'/'));
        if trailing {
            uri.push(b'/');
        }

        let mut raw = b"/".to_vec();
        if segs.is_empty() {
            self.noise(&mut raw);
        }
        for (i, seg) in segs.iter().enumerate() {
            if i > 0 {
                let s = self.slash();
                raw.extend_from_slice(s);
            }
            self.noise(&mut raw);
            let enc = self.encode(seg);
            raw.extend_from_slice(&enc);
        }
        if trailing {
            let s = self.slash();
            raw.extend_from_slice(s);
            self.noise(&mut raw);
        }
        // Ending in "/." or "/x/.." keeps the trailing slash.
        if (trailing || segs.is_empty()) && self.rng.gen_bool(0.2) {
            if self.rng.gen_bool(0.5) {
                let d = self.dot();
                raw.extend_from_slice(d);
            } else {
                let seg = self.segment();
                let seg = self.encode(&seg);
                raw.extend_from_slice(&seg);
                let (s, dd) = (self.slash(), self.dotdot());
                raw.extend_from_slice(s);
                raw.extend_from_slice(dd);
            }
        }
        Built { raw, uri }
    }

    fn chaos_path(&mut self) -> Vec<u8> {
        let total: u32 = CHAOS.iter().map(|(_, w)| w).sum();
        let mut p = b"/".to_vec();
        for _ in 0..self.rng.gen_range(1..=10) {
            let mut x = self.rng.gen_range(0..total);
            for (tok, w) in CHAOS {
                if x < *w {
                    p.extend_from_slice(tok);
                    break;
                }
                x -= w;
            }
        }
        p
    }

    /// The link arguments for `uri` (a suffix starting with `?` or `#`, or
    /// empty), what nginx should say, and the expires value written.
    fn link(&mut self, uri: &[u8], m: Md5V, e: ExpV, l: Layout, now: i64) -> (Vec<u8>, Expect, Option<i64>) {
        let (exp_text, exp_value) = exp_variant(e, now);
        let (md5, md5_ok) = md5_variant(m, uri, &exp_text);
        let (suffix, eff) = layout(l, &md5, &exp_text, &mut self.rng);
        let expect = match (eff, exp_value) {
            (Effective::Given, Some(v)) if md5_ok => Expect::Hash(v),
            (Effective::ExpiresOne, _) if md5_ok && exp_text == b"1" => Expect::Hash(1),
            _ => Expect::Invalid,
        };
        (suffix, expect, exp_value)
    }

    fn case(&mut self, i: usize, now: i64, oracle: &mut Client) -> Case {
        let spec = self.spec(i);
        match spec {
            Spec::Built(m, e, l) => {
                let b = self.built_path();
                let (suffix, expect, expires) = self.link(&b.uri, m, e, l, now);
                Case {
                    target: cat(&[&b.raw, &suffix]),
                    spec,
                    expires,
                    expect,
                }
            }
            Spec::Chaos(m, e, l) => {
                let path = self.chaos_path();
                let r = oracle.get(&path);
                if r.status != 200 {
                    let (suffix, _, expires) = self.link(&path, m, e, l, now);
                    let expect = if r.status == 400 {
                        Expect::BadRequest
                    } else {
                        Expect::Unknown
                    };
                    return Case {
                        target: cat(&[&path, &suffix]),
                        spec,
                        expires,
                        expect,
                    };
                }
                // nginx's own $uri for this path: sign that.
                let (mut suffix, mut expect, expires) = self.link(&r.body, m, e, l, now);
                if path.iter().any(|&b| b == b'?' || b == b'#') {
                    // The path brings its own query or fragment.
                    if suffix.first() == Some(&b'?') {
                        suffix[0] = b'&';
                    }
                    expect = Expect::Unknown;
                }
                Case {
                    target: cat(&[&path, &suffix]),
                    spec,
                    expires,
                    expect,
                }
            }
            Spec::Absolute(m, e, l, empty_path) => {
                let b = if empty_path {
                    Built {
                        raw: Vec::new(),
                        uri: b"/".to_vec(),
                    }
                } else {
                    self.built_path()
                };
                let (suffix, mut expect, expires) = self.link(&b.uri, m, e, l, now);
                if empty_path && suffix.first() == Some(&b'#') {
                    expect = Expect::Unknown; // "http://host#" is not a valid host
                }
                Case {
                    target: cat(&[b"http://assetgate.test", &b.raw, &suffix]),
                    spec,
                    expires,
                    expect,
                }
            }
            Spec::Bad(bad) => {
                let b = self.built_path();
                let raw = match bad {
                    Bad::AboveRoot => cat(&[b"/..", &b.raw]),
                    Bad::AboveRootEncoded => cat(&[b"/%2E%2E", &b.raw]),
                    Bad::AboveRootDeep => cat(&[b"/a/../..", &b.raw]),
                    Bad::DotDotOnly => b"/..".to_vec(),
                    Bad::EncodedNul => cat(&[&b.raw, b"%00"]),
                    Bad::NonHexEscape => cat(&[&b.raw, b"%zz"]),
                    Bad::ShortHex => cat(&[&b.raw, b"%4"]),
                    Bad::TrailingPercent => cat(&[&b.raw, b"%"]),
                    Bad::Ctl => cat(&[&b.raw, b"\x01"]),
                    Bad::Del => cat(&[&b.raw, b"\x7f"]),
                    Bad::Space => cat(&[&b.raw, b" x"]),
                    Bad::NoLeadingSlash => cat(&[b"x", &b.raw]),
                    Bad::EncodedLeadingSlash => cat(&[b"%2F", &b.raw[1..]]),
                };
                let (suffix, _, expires) =
                    self.link(&b.uri, Md5V::Exact, ExpV::Future(3600), Layout::Std, now);
                Case {
                    target: cat(&[&raw, &suffix]),
                    spec,
                    expires,
                    expect: Expect::BadRequest,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The differential test

fn diff_nginx_conf(dir: &Path, gate_port: u16, ports: &[u16], merge_slashes: bool) -> String {
    let ms = if merge_slashes { "on" } else { "off" };
    let d = dir.display();
    let (diff, oracle) = (ports[0], ports[1]);
    nginx_main_conf(
        dir,
        &format!(
            r#"
upstream assetgate {{
    server 127.0.0.1:{gate_port};
    keepalive 64;
    keepalive_timeout 5s;
}}

# Native $secure_link and the gate, for the same request.
server {{
    listen 127.0.0.1:{diff};
    merge_slashes {ms};
    root {d}/www;
    add_header X-Native "[$native]" always;
    add_header X-Gate-Status "[$gate_status]" always;
    add_header X-Gate-Reason "[$gate_reason]" always;

    location / {{
        secure_link $arg_md5,$arg_expires;
        secure_link_md5 "$secure_link_expires$uri {LINK_SECRET}";
        # Evaluated here, in the rewrite phase, before try_files changes $uri.
        set $native $secure_link;
        auth_request /_assetgate_diff_gate;
        auth_request_set $gate_status $upstream_status;
        auth_request_set $gate_reason $upstream_http_x_assetgate_reason;
        error_page 403 = @denied;
        # Not `return`: it would run before auth_request.
        try_files /ok.txt =404;
    }}
    location @denied {{
        return 403;
    }}
    location = /_assetgate_diff_gate {{
        internal;
        proxy_pass http://assetgate/auth;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_pass_request_headers off;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }}
}}

# The oracle: nginx's $uri for a path, to sign chaos paths with.
server {{
    listen 127.0.0.1:{oracle};
    merge_slashes {ms};
    location / {{
        return 200 $uri;
    }}
}}
"#
        ),
    )
}

/// Requests per merge_slashes mode (about 0.5 ms each on loopback). Every run
/// draws a new seed, so coverage accumulates across CI runs.
const DEFAULT_DIFF_COUNT: u64 = 5000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[derive(Default)]
struct Tally {
    native_valid: usize,
    native_expired: usize,
    native_empty: usize,
    nginx_400: usize,
    excluded: usize,
    reached_gate: usize,
    oracle_requests: usize,
    gate_reasons: BTreeMap<String, usize>,
    by_spec: BTreeMap<&'static str, [usize; 4]>,
    mismatches: Vec<String>,
    expectation_misses: Vec<String>,
}

fn spec_kind(s: &Spec) -> &'static str {
    match s {
        Spec::Built(..) => "built",
        Spec::Chaos(..) => "chaos",
        Spec::Absolute(..) => "absolute",
        Spec::Bad(..) => "bad",
    }
}

fn differential(merge_slashes: bool) {
    let count = env_u64("ASSETGATE_DIFF_COUNT").unwrap_or(DEFAULT_DIFF_COUNT) as usize;
    let seed = env_u64("ASSETGATE_DIFF_SEED").unwrap_or_else(rand::random);
    let mode = if merge_slashes { "on" } else { "off" };
    println!("differential merge_slashes={mode}: seed {seed}, {count} requests (replay: ASSETGATE_DIFF_SEED={seed})");

    let gate = Daemon::start(&format!(
        "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\nlog_level = \"info\"\n\
         [link]\nsecrets = [\"{LINK_SECRET}\", \"{LINK_SECRET_OLD}\"]\nmerge_slashes = {merge_slashes}\n\
         [upload]\nsecrets = [\"{UPLOAD_SECRET}\"]\n"
    ));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::write(&dir.join("www/ok.txt"), "ok\n");
    let ngx = Nginx::start(dir, 2, |ports| {
        diff_nginx_conf(dir, gate.addr.port(), ports, merge_slashes)
    });
    let mut client = Client::new(ngx.addr(0));
    let mut oracle = Client::new(ngx.addr(1));
    let mut gen = Gen::new(seed, merge_slashes);
    let mut t = Tally::default();
    let started = Instant::now();

    for i in 0..count {
        let now = common::now();
        let case = gen.case(i, now, &mut oracle);
        if matches!(case.spec, Spec::Chaos(..)) {
            t.oracle_requests += 1;
        }
        let t0 = unix_now().as_secs() as i64;
        let r = client.get(&case.target);
        let t1 = unix_now().as_secs() as i64;

        let native = r.bracketed("x-native");
        let gate_status = r.bracketed("x-gate-status");
        let reason = r.bracketed("x-gate-reason");
        let describe = || {
            format!(
                "{} [{:?}] -> nginx {} native=[{native}] gate=[{gate_status}] reason=[{reason}] expect={:?} (clock {t0}..{t1})",
                show(&case.target),
                case.spec,
                r.status,
                case.expect
            )
        };

        let class = if r.status == 400 && gate_status.is_empty() {
            t.nginx_400 += 1;
            3
        } else {
            if gate_status.is_empty() {
                t.mismatches.push(format!("gate not consulted: {}", describe()));
                continue;
            }
            t.reached_gate += 1;
            let near_now = case.expires.is_some_and(|e| e >= t0 - 1 && e <= t1 + 1);
            if t0 != t1 && near_now {
                // The second ticked during the request: nginx and the gate may
                // each have read either side of it. Not comparable.
                t.excluded += 1;
                continue;
            }
            let gate_verdict = match (gate_status.as_str(), reason.as_str()) {
                ("204", _) => "allow",
                ("403", "expired") => "expired",
                ("403", "invalid" | "missing") => "invalid",
                _ => "other",
            };
            *t.gate_reasons
                .entry(if gate_status == "204" {
                    "allow".to_string()
                } else {
                    reason.clone()
                })
                .or_default() += 1;
            let (native_verdict, want_status, class) = match native.as_str() {
                "1" => ("allow", 200, 0),
                "0" => ("expired", 403, 1),
                "" => ("invalid", 403, 2),
                _ => ("?", 0, 2),
            };
            if native_verdict != gate_verdict || r.status != want_status {
                t.mismatches.push(describe());
            }
            match class {
                0 => t.native_valid += 1,
                1 => t.native_expired += 1,
                _ => t.native_empty += 1,
            }
            class
        };
        t.by_spec.entry(spec_kind(&case.spec)).or_default()[class] += 1;

        // The generator's intent, checked against nginx itself.
        let intended = match case.expect {
            Expect::Hash(e) if e < t0 => Some(1),
            Expect::Hash(_) => Some(0),
            Expect::Invalid => Some(2),
            Expect::BadRequest => Some(3),
            Expect::Unknown => None,
        };
        if intended.is_some_and(|want| want != class) {
            t.expectation_misses.push(describe());
        }
    }
    let wall = started.elapsed();

    let metrics = gate_metrics(&gate);
    let gate_auth = metric_sum(&metrics, "assetgate_http_requests_total", "endpoint=\"auth\"");
    let classes = format!(
        "native \"1\"={} \"0\"={} \"\"={} | nginx 400={} | excluded (second ticked, expires within 1 s)={} | \
         mismatches={} | generator misses={}",
        t.native_valid,
        t.native_expired,
        t.native_empty,
        t.nginx_400,
        t.excluded,
        t.mismatches.len(),
        t.expectation_misses.len()
    );
    println!(
        "differential merge_slashes={mode}: {count} requests in {:.1} s (+{} oracle requests)\n  {classes}\n  \
         gate verdicts: {:?}\n  per generator [1, 0, \"\", 400]: {:?}\n  gate /auth requests: {gate_auth}",
        wall.as_secs_f64(),
        t.oracle_requests,
        t.gate_reasons,
        t.by_spec
    );

    let context = format!(
        "merge_slashes={mode}, seed {seed} (replay: ASSETGATE_DIFF_SEED={seed} ASSETGATE_DIFF_COUNT={count} \
         cargo test --test e2e_nginx differential)\n{classes}\n{}",
        ngx.logs()
    );
    assert!(
        t.mismatches.is_empty(),
        "nginx and assetgate disagree on {} of {count} requests; first ones:\n{}\n{context}",
        t.mismatches.len(),
        t.mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        t.expectation_misses.is_empty(),
        "nginx did not answer as the generator intended for {} requests (the generator's model of nginx is \
         wrong, or nginx changed); first ones:\n{}\n{context}",
        t.expectation_misses.len(),
        t.expectation_misses
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every request that nginx did not refuse reached the gate once; the 400s never did.
    assert_eq!(
        gate_auth as usize, t.reached_gate,
        "gate /auth requests vs requests nginx forwarded\n{context}"
    );
    assert_eq!(t.reached_gate + t.nginx_400, count, "{context}");
    // Each class must be well represented, or the comparison proves little.
    let floor = (count / 20).max(1);
    for (name, n) in [
        ("native \"1\" (valid)", t.native_valid),
        ("native \"0\" (expired)", t.native_expired),
        ("native \"\" (invalid)", t.native_empty),
        ("nginx 400", t.nginx_400),
    ] {
        assert!(
            n >= floor,
            "only {n} requests in class {name} (want >= {floor})\n{context}"
        );
    }
    assert!(
        t.excluded <= count / 100 + 3,
        "{} requests excluded at second boundaries: too many to trust the comparison\n{context}",
        t.excluded
    );
}

#[test]
fn differential_merge_slashes_on() {
    differential(true);
}

#[test]
fn differential_merge_slashes_off() {
    differential(false);
}

// ---------------------------------------------------------------------------
// The shipped nginx/ config

/// The only change made to the shipped files: the upstream address.
const SHIPPED_UPSTREAM_ADDR: &str = "server 127.0.0.1:9750;";

/// nginx with `nginx/assetgate-upstream.conf` (address rewritten) and
/// `nginx/assetgate-locations.conf` (verbatim) in front of `gate`.
fn shipped_nginx(dir: &Path, gate: &Daemon) -> Nginx {
    let shipped = common::repo().join("nginx");
    let upstream = std::fs::read_to_string(shipped.join("assetgate-upstream.conf")).unwrap();
    assert_eq!(
        upstream.matches(SHIPPED_UPSTREAM_ADDR).count(),
        1,
        "nginx/assetgate-upstream.conf must contain `{SHIPPED_UPSTREAM_ADDR}` exactly once"
    );
    let upstream = upstream.replacen(SHIPPED_UPSTREAM_ADDR, &format!("server {};", gate.addr), 1);
    common::write(&dir.join("assetgate/assetgate-upstream.conf"), &upstream);
    let locations = shipped.join("assetgate-locations.conf");
    let d = dir.display();
    Nginx::start(dir, 1, |ports| {
        nginx_main_conf(
            dir,
            &format!(
                "include {d}/assetgate/assetgate-upstream.conf;\n\
                 server {{\n\
                 listen 127.0.0.1:{};\n\
                 root {d}/assets;\n\
                 include {};\n\
                 }}\n",
                ports[0],
                locations.display()
            ),
        )
    })
}

/// A signed link target: `uri_raw` is what goes on the wire, `uri` is the
/// `$uri` nginx derives from it.
fn link_target(secret: &str, uri: &str, uri_raw: &str, expires: i64) -> Vec<u8> {
    let md5 = common::sign_link(secret, uri, &expires.to_string());
    format!("{uri_raw}?md5={md5}&expires={expires}").into_bytes()
}

#[test]
fn shipped_config_serves_and_gates_downloads() {
    let gate = Daemon::start(&common::default_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let public = b"public bytes\n".to_vec();
    let private: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let photo = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    for (path, bytes) in [
        ("assets/public/hello.txt", &public),
        ("assets/private/report.bin", &private),
        ("assets/private/été 2026/photo.jpg", &photo),
    ] {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.join(path), bytes).unwrap();
    }
    let ngx = shipped_nginx(dir, &gate);
    let mut c = Client::new(ngx.addr(0));
    let now = common::now();
    let ctx = || format!("{}\ngate logs: {:#?}", ngx.logs(), gate.logs());

    let mut check =
        |what: &str, target: &[u8], headers: &[(&str, &str)], status: u16, body: Option<&[u8]>| {
            let r = c.get_with(target, headers);
            assert_eq!(
                r.status,
                status,
                "{what}: {} -> {}\n{}",
                show(target),
                r.status,
                ctx()
            );
            if let Some(b) = body {
                assert!(
                    r.body == b,
                    "{what}: {} served different bytes\n{}",
                    show(target),
                    ctx()
                );
            }
        };

    let valid = link_target(
        LINK_SECRET,
        "/private/report.bin",
        "/private/report.bin",
        now + 300,
    );
    check("valid link", &valid, &[], 200, Some(&private));
    check(
        "valid link, encoded UTF-8 path with a space",
        &link_target(
            LINK_SECRET,
            "/private/été 2026/photo.jpg",
            "/private/%C3%A9t%C3%A9%202026/photo.jpg",
            now + 300,
        ),
        &[],
        200,
        Some(&photo),
    );
    check(
        "link signed with the older (rotated) secret",
        &link_target(
            LINK_SECRET_OLD,
            "/private/report.bin",
            "/private/report.bin",
            now + 300,
        ),
        &[],
        200,
        Some(&private),
    );
    check(
        "expired link",
        &link_target(
            LINK_SECRET,
            "/private/report.bin",
            "/private/report.bin",
            now - 60,
        ),
        &[],
        410,
        None,
    );
    check(
        "forged link (unknown secret)",
        &link_target(
            "forged-secret-0123456789",
            "/private/report.bin",
            "/private/report.bin",
            now + 300,
        ),
        &[],
        403,
        None,
    );
    let other = String::from_utf8(valid.clone())
        .unwrap()
        .replace("report.bin", "%C3%A9t%C3%A9%202026/photo.jpg");
    check("link used for another file", other.as_bytes(), &[], 403, None);
    check("no token", b"/private/report.bin", &[], 403, None);
    check(
        "md5 but no expires",
        b"/private/report.bin?md5=AAAAAAAAAAAAAAAAAAAAAA",
        &[],
        403,
        None,
    );
    check(
        "public file, no token",
        b"/public/hello.txt",
        &[],
        200,
        Some(&public),
    );
    check(
        "public file, junk token",
        b"/public/hello.txt?md5=x&expires=1",
        &[],
        200,
        Some(&public),
    );
    check("the auth location is internal", b"/_assetgate", &[], 404, None);
    check("the hook endpoint is not exposed", b"/tusd", &[], 404, None);
    // A client with ~21 KB of headers (nginx accepts up to 4 x 8 KB): they must
    // not be forwarded to the gate, whose request buffer is 16 KB.
    let big = "b".repeat(7000);
    check(
        "valid link, large client headers",
        &valid,
        &[("Cookie", &big), ("X-Big-1", &big), ("X-Big-2", &big)],
        200,
        Some(&private),
    );
}

#[test]
fn shipped_config_reuses_gate_connections() {
    let gate = Daemon::start(&common::default_config());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::write(&dir.join("assets/private/a.txt"), "private a\n");
    let ngx = shipped_nginx(dir, &gate);
    let now = common::now();
    let valid = link_target(LINK_SECRET, "/private/a.txt", "/private/a.txt", now + 600);
    let forged = link_target(WRONG_SECRET, "/private/a.txt", "/private/a.txt", now + 600);

    const N: usize = 250;
    // Several client connections, so reuse on the gate side is not an artefact
    // of one client connection.
    let mut clients: Vec<Client> = (0..5).map(|_| Client::new(ngx.addr(0))).collect();
    for i in 0..N {
        let c = &mut clients[i % 5];
        let (target, want) = if i % 3 == 0 { (&forged, 403) } else { (&valid, 200) };
        let r = c.get(target);
        assert_eq!(r.status, want, "request {i}: {}\n{}", show(target), ngx.logs());
    }

    let metrics = gate_metrics(&gate);
    let auth = metric_sum(&metrics, "assetgate_http_requests_total", "endpoint=\"auth\"");
    let accepted = metric_sum(&metrics, "assetgate_connections_accepted_total", "");
    println!(
        "{N} private downloads through nginx: gate answered {auth} auth requests on {accepted} connections"
    );
    assert!(
        auth >= N as f64,
        "gate saw {auth} auth requests for {N} private downloads\n{metrics}"
    );
    // One connection per request would be >= 250; the upstream keeps <= 16 idle,
    // and the /metrics scrape is one more.
    assert!(
        accepted <= 20.0,
        "gate accepted {accepted} connections for {auth} auth requests: nginx is not reusing them\n{metrics}\n{}",
        ngx.logs()
    );
}

#[test]
fn example_config_passes_nginx_t() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The example includes `assetgate/*.conf` relative to the config directory,
    // as on a real install (/etc/nginx/assetgate/): point that at the repo's files.
    std::os::unix::fs::symlink(common::repo().join("nginx"), dir.join("assetgate")).unwrap();
    let example = common::repo().join("nginx/assetgate.conf.example");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_main_conf(dir, &format!("include {};", example.display())),
    )
    .unwrap();
    let out = Command::new(common::nginx())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .expect("run nginx -t");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("test is successful"),
        "nginx -t refused nginx/assetgate.conf.example:\n{stderr}"
    );
}
