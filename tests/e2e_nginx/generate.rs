//! The generator of request targets: signed links built for a known `$uri`, and chaos.

use super::*;

/// What the md5 argument looks like.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Md5V {
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

pub(crate) const MD5_FIXED: [Md5V; 24] = [
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
pub(crate) fn md5_variant(v: Md5V, uri: &[u8], exp: &[u8]) -> (Vec<u8>, bool) {
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
pub(crate) enum ExpV {
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

pub(crate) const EXP_ALL: [ExpV; 22] = [
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
pub(crate) const EXP_INVALID: [ExpV; 13] = [
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
pub(crate) fn exp_variant(v: ExpV, now: i64) -> (Vec<u8>, Option<i64>) {
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
pub(crate) enum Layout {
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
pub(crate) const LAYOUT_GIVEN: [Layout; 10] = [
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
pub(crate) const LAYOUT_OTHER: [Layout; 14] = [
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
pub(crate) enum Effective {
    /// The ones we wrote.
    Given,
    /// The expires `1` placed first.
    ExpiresOne,
    /// None that can verify.
    Denied,
}

pub(crate) fn layout(l: Layout, m: &[u8], e: &[u8], rng: &mut StdRng) -> (Vec<u8>, Effective) {
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
pub(crate) enum Bad {
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

pub(crate) const BAD_ALL: [Bad; 13] = [
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
pub(crate) enum Expect {
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
pub(crate) enum Spec {
    Built(Md5V, ExpV, Layout),
    Chaos(Md5V, ExpV, Layout),
    /// Absolute-form request line (`GET http://host/path?... HTTP/1.1`); with
    /// `true`, no path at all (`http://host?md5=...`): nginx's `$request_uri`
    /// is then `?md5=...` and its `$uri` is `/`.
    Absolute(Md5V, ExpV, Layout, bool),
    Bad(Bad),
}

pub(crate) struct Case {
    pub(crate) target: Vec<u8>,
    pub(crate) spec: Spec,
    /// The expires value we wrote, if it parses (for the one-second boundary).
    pub(crate) expires: Option<i64>,
    pub(crate) expect: Expect,
}

/// Tokens for chaos paths, with weights (rare ones make nginx answer 400).
pub(crate) const CHAOS: &[(&[u8], u32)] = &[
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
pub(crate) const PIECES: &[&[u8]] = &[
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

pub(crate) struct Gen {
    pub(crate) rng: StdRng,
    pub(crate) merge_slashes: bool,
    pub(crate) script: Vec<Spec>,
}

/// A raw path and the `$uri` nginx derives from it, known by construction.
pub(crate) struct Built {
    pub(crate) raw: Vec<u8>,
    pub(crate) uri: Vec<u8>,
}

impl Gen {
    pub(crate) fn new(seed: u64, merge_slashes: bool) -> Gen {
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

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    pub(crate) fn random_md5(&mut self) -> Md5V {
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

    pub(crate) fn random_exp(&mut self) -> ExpV {
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

    pub(crate) fn random_layout(&mut self) -> Layout {
        let r: f64 = self.rng.gen();
        if r < 0.4 {
            Layout::Std
        } else if r < 0.78 {
            self.pick(&LAYOUT_GIVEN)
        } else {
            self.pick(&LAYOUT_OTHER)
        }
    }

    pub(crate) fn spec(&mut self, i: usize) -> Spec {
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

    pub(crate) fn slash(&mut self) -> &'static [u8] {
        let r: f64 = self.rng.gen();
        if r < 0.85 {
            b"/"
        } else if r < 0.95 {
            b"%2F"
        } else {
            b"%2f"
        }
    }

    pub(crate) fn dot(&mut self) -> &'static [u8] {
        self.pick(&[b".".as_slice(), b"%2E", b"%2e"])
    }

    pub(crate) fn dotdot(&mut self) -> &'static [u8] {
        self.pick(&[b"..".as_slice(), b"%2E%2E", b".%2e", b"%2E."])
    }

    pub(crate) fn segment(&mut self) -> Vec<u8> {
        let n = self.rng.gen_range(1..=2);
        (0..n).flat_map(|_| self.pick(PIECES).to_vec()).collect()
    }

    /// Percent-encodes what must be, and some of the rest (same `$uri`).
    pub(crate) fn encode(&mut self, seg: &[u8]) -> Vec<u8> {
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
    pub(crate) fn noise(&mut self, raw: &mut Vec<u8>) {
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

    pub(crate) fn built_path(&mut self) -> Built {
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

    pub(crate) fn chaos_path(&mut self) -> Vec<u8> {
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
    pub(crate) fn link(
        &mut self,
        uri: &[u8],
        m: Md5V,
        e: ExpV,
        l: Layout,
        now: i64,
    ) -> (Vec<u8>, Expect, Option<i64>) {
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

    pub(crate) fn case(&mut self, i: usize, now: i64, oracle: &mut Client) -> Case {
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
