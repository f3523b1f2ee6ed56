//! Property tests over the decision core, through the public API only.
//!
//! - (a) pre-create: whatever `tusd::decide` accepts carries a token that
//!   verifies (`token::upload::verify` at that `now`, and an independent HMAC
//!   oracle under one of the configured secrets inside the window), a key the
//!   key policy and a plain traversal check pass, an allowed content type, a
//!   size within `max_size`, and a free destination (or overwrite on), and its
//!   new upload ID verifies for exactly that token's grant. Inputs:
//!   tokens minted with `token::upload::mint` for random keys, types, sizes and
//!   expiries under configured and unknown secrets, then mutated (a flipped
//!   byte of the token, key, expiry, visibility or content type, traversal
//!   segments, Unicode look-alikes, a dropped or emptied field). A clean token
//!   in every limit must be accepted.
//! - (b) post-finish: a `Verdict::Finalize(plan)` carries signed fields that
//!   verify (`verify_signature_ignoring_expiry` and the oracle), the
//!   destination `{prefix}/{key}` with a policy-valid key, and
//!   `content_check()` is Some (the signed type) iff `check_content`, and the
//!   upload's ID verifies for the grant of the signed fields. A clean, complete
//!   upload in a file store whose ID pre-create issued for its token is
//!   finalized even with an expired token.
//! - (c) links (`token::link`): whatever `verify` / `verify_request_target`
//!   allow has an md5 that an independent MD5 + base64url oracle matches under a
//!   configured secret for that `$uri` and the expiry text as sent, and is not
//!   expired. A clean link signed for the parsed `$uri` is allowed iff not expired.
//!
//! Case counts are kept moderate (see `CASES`) so the file runs in a few seconds.

use std::path::Path;
use std::time::Duration;

use assetgate_core::config::{StorageBackend, StorageConfig, UploadConfig};
use assetgate_core::policy::{self, Visibility};
use assetgate_core::secret::{Secret, SecretSet};
use assetgate_core::token::upload::{
    self, mint, Metadata, FIELDS, FIELD_CONTENT_TYPE, FIELD_EXPIRES, FIELD_KEY, FIELD_TOKEN, FIELD_VISIBILITY,
};
use assetgate_core::token::upload_id::{self, Kind, UploadIds};
use assetgate_core::token::{link, nginx_uri};
use assetgate_core::tusd::protocol::Storage;
use assetgate_core::tusd::{self, Gate, Hook, HookName, Protocol, Upload, Verdict};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

const NOW: i64 = 1_800_000_000;
const S1: &str = "prop-secret-newest-0123456789";
const S2: &str = "prop-secret-older-9876543210";
/// Never configured.
const S3: &str = "prop-secret-unknown-abcdefghij";
const CASES: u32 = 1024;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Next to this file (tests/ has no lib.rs for the default to find).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Independent oracles (no assetgate code)
// ---------------------------------------------------------------------------

/// granite's token: hex HMAC-SHA256 over `{expires}:{key}:{visibility}:{type}`.
fn oracle_token(secret: &str, meta: &Metadata) -> Option<Vec<u8>> {
    use hmac::{Hmac, Mac};
    let f = |name: &str| meta.get(name).map(String::as_str);
    let payload = format!(
        "{}:{}:{}:{}",
        f(FIELD_EXPIRES)?,
        f(FIELD_KEY)?,
        f(FIELD_VISIBILITY)?,
        f(FIELD_CONTENT_TYPE)?
    );
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(payload.as_bytes());
    Some(m.finalize().into_bytes().to_vec())
}

/// Which of `secrets` signed the metadata's token (hex, either case).
fn oracle_signer<'a>(secrets: &[&'a str], meta: &Metadata) -> Option<&'a str> {
    let given = hex::decode(meta.get(FIELD_TOKEN)?).ok()?;
    secrets
        .iter()
        .copied()
        .find(|s| oracle_token(s, meta).as_deref() == Some(&given[..]))
}

/// Decimal digits only, fitting in i64.
fn oracle_expires(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// No traversal: relative, no empty, `.` or `..` segment, no backslash.
fn oracle_key_confined(key: &str) -> bool {
    !key.starts_with('/')
        && !key.contains('\\')
        && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// nginx secure_link: the md5 argument (up to the first `=`, 22 base64url
/// characters, the low 4 bits of the last one unused) equals
/// MD5(`{expires text}{uri} {secret}`).
fn oracle_link_md5(secret: &str, uri: &[u8], md5_arg: &[u8], expires_arg: &[u8]) -> bool {
    use md5::{Digest, Md5};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if md5_arg.len() > 24 {
        return false;
    }
    let sig = md5_arg.split(|&b| b == b'=').next().unwrap_or_default();
    let Some(vals) = sig
        .iter()
        .map(|c| ALPHABET.iter().position(|a| a == c))
        .collect::<Option<Vec<usize>>>()
    else {
        return false;
    };
    if vals.len() != 22 {
        return false;
    }
    let mut h = Md5::new();
    h.update(expires_arg);
    h.update(uri);
    h.update(b" ");
    h.update(secret.as_bytes());
    let digest = h.finalize();
    // 128 bits as 6-bit groups: 21 full groups and 2 bits in the 22nd.
    let bit = |i: usize| (digest[i / 8] >> (7 - i % 8)) & 1;
    (0..22).all(|g| {
        let bits = if g < 21 { 6 } else { 2 };
        let want = (0..bits).fold(0usize, |acc, k| (acc << 1) | usize::from(bit(g * 6 + k)));
        vals[g] >> (6 - bits) == want
    })
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes().to_vec())
}

fn secret_set(names: &[&str]) -> SecretSet {
    SecretSet::new(names.iter().map(|s| Secret::new(s.as_bytes().to_vec())).collect())
}

/// A segment the key policy accepts (letters of several scripts, spaces).
fn good_segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9éüñ日本語😀 _+,;:()-][a-zA-Z0-9éüñ日本語😀 ._+,;:()-]{0,11}"
}

fn good_key() -> impl Strategy<Value = String> {
    prop::collection::vec(good_segment(), 1..4).prop_map(|s| s.join("/"))
}

/// Any key, hostile ones included.
fn any_key() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        60 => good_segment(),
        1 => Just(String::from("..")),
        1 => Just(String::from(".")),
        1 => Just(String::new()),
        1 => Just(String::from("a\\..\\b")),
        1 => Just(String::from("%2e%2e")),
        1 => Just(String::from("x?y#z")),
        1 => Just(String::from("\u{0}\u{7f}\u{85}")),
        1 => Just(String::from("\u{2025}")),      // two dot leader
        1 => Just(String::from("\u{ff0e}\u{ff0e}")), // fullwidth dots
        1 => Just(String::from("\u{2215}etc")),   // division slash
        1 => Just("s".repeat(256)),
    ];
    (prop::collection::vec(segment, 1..5), prop::bool::weighted(0.1)).prop_map(|(s, abs)| {
        let k = s.join("/");
        if abs {
            format!("/{k}")
        } else {
            k
        }
    })
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "image/png",
            "image/jpeg",
            "IMAGE/PNG",
            "image/png; charset=x",
            "application/pdf",
            "text/plain",
            "text/plain; charset=utf-8",
            "video/mp4",
            "text/html",
            "image/svg+xml",
            "application/x-msdownload",
            "nonsense",
            "image/",
            "/png",
            "image:png/x",
            "image/png\u{0}",
            "ｉｍａｇｅ/png",
        ])
        .prop_map(String::from),
        "[a-z]{1,6}/[a-z0-9.+-]{1,8}",
    ]
}

/// What the served-as-signed rule accepts, said independently of
/// `policy::served`: an active type only when a pattern names it exactly
/// (no `*`), and a key whose last segment's extension (after a `.` that does
/// not open the segment) is either unknown to the shipped table or mapped to
/// the declared type. `policy::served`'s own tests and the nginx differential
/// cover the table and the extension rules case by case; this keeps the
/// composition honest.
fn served_as_signed(gate: &GateCfg, key: &str, ct: &str) -> bool {
    let Some((t, s)) = policy::essence(ct) else {
        return true; // refused earlier, by the allowlist
    };
    let active = t == "text" && ["html", "xml", "xsl"].contains(&s.as_str())
        || t == "application"
            && [
                "xml",
                "xhtml+xml",
                "javascript",
                "x-javascript",
                "ecmascript",
                "x-ecmascript",
            ]
            .contains(&s.as_str())
        || s.ends_with("+xml")
        || t == "text"
            && [
                "javascript",
                "ecmascript",
                "jscript",
                "livescript",
                "x-javascript",
                "x-ecmascript",
            ]
            .contains(&s.as_str())
        || t == "text"
            && s.strip_prefix("javascript1.")
                .is_some_and(|v| ["0", "1", "2", "3", "4", "5"].contains(&v));
    let named = gate
        .patterns
        .iter()
        .any(|p| !p.as_str().contains('*') && p.as_str().eq_ignore_ascii_case(&format!("{t}/{s}")));
    if active && !named {
        return false;
    }
    let last = key.rsplit('/').next().unwrap_or(key);
    let ext = match last.rfind('.') {
        Some(i) if i > 0 => last[i + 1..].to_ascii_lowercase(),
        _ => return true,
    };
    let table = policy::ServedTypes::builtin();
    match table.entries().iter().find(|(e, _)| *e == ext) {
        None => true,
        Some((_, served)) => *served == format!("{t}/{s}"),
    }
}

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![Just(Visibility::Public), Just(Visibility::Private)]
}

#[derive(Debug, Clone)]
struct GateCfg {
    secrets: Vec<&'static str>,
    skew: i64,
    max_ttl: i64,
    patterns: Vec<assetgate_core::policy::ContentTypePattern>,
    max_size: Option<u64>,
    allow_deferred: bool,
    check_content: bool,
    overwrite: bool,
    public_prefix: &'static str,
    private_prefix: &'static str,
}

impl GateCfg {
    fn upload(&self) -> UploadConfig {
        UploadConfig {
            secrets: secret_set(&self.secrets),
            clock_skew: Duration::from_secs(self.skew as u64),
            max_ttl: Duration::from_secs(self.max_ttl as u64),
            content_types: self.patterns.clone(),
            max_size: self.max_size,
            allow_deferred_length: self.allow_deferred,
            check_content: self.check_content,
            session_binding: Default::default(),
            session_grace: std::time::Duration::from_secs(3600),
            single_use: false,
            nginx_types: assetgate_core::config::NginxTypes::builtin(),
            max_parts: assetgate_core::config::DEFAULT_MAX_PARTS,
        }
    }

    fn storage(&self) -> StorageConfig {
        StorageConfig {
            root: Some("/srv/assets".into()),
            overwrite: self.overwrite,
            public_prefix: self.public_prefix.into(),
            private_prefix: self.private_prefix.into(),
            backend: StorageBackend::Fs,
            s3: None,
        }
    }

    fn prefix(&self, v: Visibility) -> &'static str {
        match v {
            Visibility::Public => self.public_prefix,
            Visibility::Private => self.private_prefix,
        }
    }
}

fn gate_cfg() -> impl Strategy<Value = GateCfg> {
    let secrets = prop_oneof![
        5 => Just(vec![S1, S2]),
        2 => Just(vec![S1]),
        1 => Just(vec![S2]),
        1 => Just(vec![]),
    ];
    let patterns = prop_oneof![
        2 => Just(Vec::new()),
        1 => Just(vec!["*/*"]),
        3 => prop::sample::subsequence(
            vec!["image/*", "application/pdf", "text/plain", "*/*", "video/mp4", "IMAGE/PNG"],
            1..4,
        ),
    ]
    .prop_map(|p| p.into_iter().map(|p| p.parse().unwrap()).collect::<Vec<_>>());
    let prefixes = prop::sample::select(vec![("public", "private"), ("www/pub", "vault"), ("p", "q/r/s")]);
    (
        secrets,
        0i64..120,
        prop_oneof![60i64..200_000, Just(3_600), Just(86_400)],
        patterns,
        prop::option::weighted(0.6, 0u64..5_000),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prefixes,
    )
        .prop_map(
            |(secrets, skew, max_ttl, patterns, max_size, allow_deferred, check_content, overwrite, p)| {
                GateCfg {
                    secrets,
                    skew,
                    max_ttl,
                    patterns,
                    max_size,
                    allow_deferred,
                    check_content,
                    overwrite,
                    public_prefix: p.0,
                    private_prefix: p.1,
                }
            },
        )
}

/// How the minted metadata is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// XOR a byte of a field's value (at an index) with a non-zero mask.
    Flip(&'static str, Index, u8),
    /// Upper-case hex: the same token.
    TokenUpper,
    /// A leading zero on the expiry (signed without it).
    ExpiryZero,
    /// The other visibility.
    OtherVisibility,
    /// Visibility in capitals.
    VisibilityCase,
    /// Parameters appended to the content type.
    TypeParam,
    /// A traversal segment put in front of the key.
    KeyTraversal(&'static str),
    /// A Unicode look-alike of the key's first ASCII letter.
    KeyLookalike,
    Drop(&'static str),
    Empty(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop::sample::select(FIELDS.to_vec());
    prop_oneof![
        16 => Just(Mutation::None),
        4 => (field.clone(), any::<Index>(), 1u8..=255).prop_map(|(f, i, m)| Mutation::Flip(f, i, m)),
        1 => Just(Mutation::TokenUpper),
        1 => Just(Mutation::ExpiryZero),
        1 => Just(Mutation::OtherVisibility),
        1 => Just(Mutation::VisibilityCase),
        1 => Just(Mutation::TypeParam),
        1 => prop::sample::select(vec!["../", "./", "/", "..\\", "a/../../"]).prop_map(Mutation::KeyTraversal),
        1 => Just(Mutation::KeyLookalike),
        1 => field.clone().prop_map(Mutation::Drop),
        1 => field.prop_map(Mutation::Empty),
    ]
}

fn apply(m: &Mutation, meta: &mut Metadata) {
    let edit = |meta: &mut Metadata, f: &str, g: &dyn Fn(&str) -> String| {
        if let Some(v) = meta.get(f).cloned() {
            meta.insert(f.to_owned(), g(&v));
        }
    };
    match m {
        Mutation::None => {}
        Mutation::Flip(f, i, mask) => edit(meta, f, &|v| {
            let mut b = v.as_bytes().to_vec();
            if !b.is_empty() {
                let at = i.index(b.len());
                b[at] ^= mask;
            }
            String::from_utf8_lossy(&b).into_owned()
        }),
        Mutation::TokenUpper => edit(meta, FIELD_TOKEN, &|v| v.to_ascii_uppercase()),
        Mutation::ExpiryZero => edit(meta, FIELD_EXPIRES, &|v| format!("0{v}")),
        Mutation::OtherVisibility => edit(meta, FIELD_VISIBILITY, &|v| {
            if v == "public" { "private" } else { "public" }.to_owned()
        }),
        Mutation::VisibilityCase => edit(meta, FIELD_VISIBILITY, &|v| v.to_ascii_uppercase()),
        Mutation::TypeParam => edit(meta, FIELD_CONTENT_TYPE, &|v| format!("{v}; x=1")),
        Mutation::KeyTraversal(t) => edit(meta, FIELD_KEY, &|v| format!("{t}{v}")),
        Mutation::KeyLookalike => edit(meta, FIELD_KEY, &|v| {
            v.replacen('a', "\u{430}", 1).replacen('e', "\u{435}", 1)
        }),
        Mutation::Drop(f) => {
            meta.remove(*f);
        }
        Mutation::Empty(f) => edit(meta, f, &|_| String::new()),
    }
}

fn signer() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just(S1), 3 => Just(S2), 1 => Just(S3)]
}

/// Expiry offsets from NOW: around the edges of the window and far away.
fn expiry_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -150i64..150,
        6 => -30i64..3_600,
        2 => -250_000i64..250_000,
        1 => (0i64..200_000).prop_map(|x| x + 30),
        1 => Just(i64::MAX - NOW),
    ]
}

fn hook(name: HookName, upload: Upload) -> Hook {
    Hook {
        protocol: Protocol::V2,
        name,
        upload,
    }
}

// ---------------------------------------------------------------------------
// (a) pre-create
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PreCreate {
    gate: GateCfg,
    key: String,
    ct: String,
    vis: Visibility,
    offset: i64,
    secret: &'static str,
    mutation: Mutation,
    /// `None`: deferred length.
    size: Option<u64>,
    exists: bool,
}

fn precreate(key: BoxedStrategy<String>) -> impl Strategy<Value = PreCreate> {
    (
        gate_cfg(),
        key,
        content_type(),
        visibility(),
        expiry_offset(),
        signer(),
        mutation(),
        prop::option::weighted(0.9, 0u64..3_000),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(gate, key, ct, vis, offset, secret, mutation, size, exists)| PreCreate {
                gate,
                key,
                ct,
                vis,
                offset,
                secret,
                mutation,
                size,
                exists,
            },
        )
}

fn decide_precreate(c: &PreCreate) -> (Metadata, tusd::Decision) {
    let mut meta = mint(
        c.secret.as_bytes(),
        &c.key,
        &c.ct,
        c.vis,
        NOW.saturating_add(c.offset),
    );
    apply(&c.mutation, &mut meta);
    let upload = Upload {
        size: c.size,
        size_is_deferred: c.size.is_none(),
        metadata: meta.clone(),
        ..Upload::default()
    };
    let (up, st) = (c.gate.upload(), c.gate.storage());
    let gate = Gate {
        upload: &up,
        storage: &st,
        upload_ids: UploadIds::Signed,
    };
    let exists = c.exists;
    let lookup = move |_: &Path| exists;
    let d = tusd::decide(
        &hook(HookName::PreCreate, upload),
        gate,
        NOW,
        &[0x5a; 16],
        &lookup,
    );
    (meta, d)
}

fn check_precreate(c: &PreCreate) -> Result<bool, TestCaseError> {
    let (meta, decision) = decide_precreate(c);
    let accepted = match &decision.verdict {
        Verdict::Accept => true,
        Verdict::Reject(r) => {
            prop_assert!((400..500).contains(&r.status()));
            false
        }
        other => return Err(TestCaseError::fail(format!("pre-create decided {other:?}"))),
    };
    if accepted {
        let up = c.gate.upload();
        let v = upload::verify(&meta, &up, NOW);
        prop_assert!(v.is_ok(), "accepted, but verify says {:?}", v);
        let v = v.unwrap();
        let signer = oracle_signer(&c.gate.secrets, &meta);
        prop_assert!(signer.is_some(), "accepted without a configured secret's HMAC");
        let expires = oracle_expires(&meta[FIELD_EXPIRES]);
        prop_assert!(expires.is_some());
        let expires = expires.unwrap();
        prop_assert!(
            NOW <= expires.saturating_add(c.gate.skew),
            "accepted an expired token"
        );
        prop_assert!(
            expires <= NOW.saturating_add(c.gate.max_ttl).saturating_add(c.gate.skew),
            "accepted a token living longer than max_ttl"
        );
        let key = &meta[FIELD_KEY];
        prop_assert_eq!(v.key(), key.as_str());
        prop_assert!(
            policy::check_key(key).is_ok(),
            "accepted key {:?} fails the policy",
            key
        );
        prop_assert!(oracle_key_confined(key), "accepted a traversal key {:?}", key);
        prop_assert!(
            policy::content_type_allowed(&c.gate.patterns, &meta[FIELD_CONTENT_TYPE]),
            "accepted a type the allowlist refuses"
        );
        match c.size {
            None => prop_assert!(c.gate.allow_deferred, "accepted a deferred length"),
            Some(s) => prop_assert!(c.gate.max_size.is_none_or(|m| s <= m), "accepted {} bytes", s),
        }
        prop_assert!(!c.exists || c.gate.overwrite, "accepted over an existing asset");
        let id = decision.assigned_id.as_deref().unwrap_or("");
        let ok = upload_id::verify(&up.secrets, id, &v.grant_id(), Kind::Whole);
        prop_assert!(ok.is_ok(), "accepted with an ID that does not verify: {:?}", ok);
    } else {
        prop_assert!(decision.assigned_id.is_none(), "an ID for a refused upload");
    }
    Ok(accepted)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn precreate_accept_implies_every_check(c in precreate(any_key().boxed())) {
        check_precreate(&c)?;
    }

    /// The other direction, for clean inputs: a token minted by a configured
    /// secret for a good key, inside every limit, is accepted.
    #[test]
    fn precreate_clean_token_in_limits_is_accepted(mut c in precreate(good_key().boxed())) {
        c.mutation = Mutation::None;
        let in_window = c.offset >= -c.gate.skew && c.offset <= c.gate.max_ttl + c.gate.skew;
        let size_ok = match c.size {
            None => c.gate.allow_deferred,
            Some(s) => c.gate.max_size.is_none_or(|m| s <= m),
        };
        let clean = c.gate.secrets.contains(&c.secret)
            && in_window
            && size_ok
            && policy::content_type_allowed(&c.gate.patterns, &c.ct)
            && served_as_signed(&c.gate, &c.key, &c.ct)
            && (!c.exists || c.gate.overwrite);
        let accepted = check_precreate(&c)?;
        prop_assert_eq!(accepted, clean, "clean = {}", clean);
    }
}

// ---------------------------------------------------------------------------
// (b) post-finish
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PostFinish {
    pre: PreCreate,
    size: u64,
    offset_delta: u64,
    deferred: bool,
    partial: bool,
    kind: Option<&'static str>,
    path: Option<&'static str>,
}

fn postfinish(key: BoxedStrategy<String>) -> impl Strategy<Value = PostFinish> {
    (
        precreate(key),
        0u64..3_000,
        prop_oneof![4 => Just(0u64), 1 => 1u64..10],
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::sample::select(vec![
            Some("filestore"),
            Some("file_storage"),
            Some("s3store"),
            None,
        ]),
        prop::sample::select(vec![
            Some("/srv/tusd/0a1b2c"),
            Some("/srv/tusd/../etc/x"),
            Some("relative/0a1b2c"),
            Some(""),
            None,
        ]),
    )
        .prop_map(
            |(pre, size, offset_delta, deferred, partial, kind, path)| PostFinish {
                pre,
                size,
                offset_delta,
                deferred,
                partial,
                kind,
                path,
            },
        )
}

fn check_postfinish(c: &PostFinish) -> Result<bool, TestCaseError> {
    let p = &c.pre;
    let mut meta = mint(
        p.secret.as_bytes(),
        &p.key,
        &p.ct,
        p.vis,
        NOW.saturating_add(p.offset),
    );
    // The ID pre-create would have issued for the token as minted (under the
    // secret that minted it, configured or not), before any mutation; a token
    // no pre-create accepts (an unsafe key) gets one for no grant.
    let grant = upload::verify_signature_ignoring_expiry(&meta, &SecretSet::new(vec![secret(p.secret)]))
        .map_or([0; 32], |v| v.grant_id());
    let id = upload_id::issue(&secret(p.secret), &[0xa5; 16], &grant, Kind::Whole);
    apply(&p.mutation, &mut meta);
    let upload = Upload {
        id,
        size: Some(c.size),
        size_is_deferred: c.deferred,
        offset: c.size.saturating_sub(c.offset_delta),
        metadata: meta.clone(),
        is_partial: c.partial,
        storage: Some(Storage {
            kind: c.kind.map(String::from),
            path: c.path.map(String::from),
            info_path: None,
            bucket: None,
            key: None,
        }),
        ..Upload::default()
    };
    let (up, st) = (p.gate.upload(), p.gate.storage());
    let gate = Gate {
        upload: &up,
        storage: &st,
        upload_ids: UploadIds::Signed,
    };
    let d = tusd::decide(
        &hook(HookName::PostFinish, upload),
        gate,
        NOW,
        &[0; 16],
        &|_: &Path| false,
    );
    let Verdict::Finalize(plan) = &d.verdict else {
        prop_assert!(
            matches!(d.verdict, Verdict::Keep(_) | Verdict::Skip(_)),
            "{:?}",
            d.verdict
        );
        return Ok(false);
    };
    let signed = plan.signed_fields();
    let v = upload::verify_signature_ignoring_expiry(signed, &up.secrets);
    prop_assert!(v.is_ok(), "planned, but the signed fields fail: {:?}", v);
    prop_assert!(
        oracle_signer(&p.gate.secrets, signed).is_some(),
        "no configured secret's HMAC"
    );
    for f in FIELDS {
        prop_assert_eq!(
            signed.get(f),
            meta.get(f),
            "signed field {} differs from the event's",
            f
        );
    }
    prop_assert!(
        policy::check_key(plan.key()).is_ok(),
        "planned key {:?} fails the policy",
        plan.key()
    );
    prop_assert!(oracle_key_confined(plan.key()));
    let want = format!("{}/{}", p.gate.prefix(plan.visibility()), plan.key());
    prop_assert_eq!(plan.destination().to_str(), Some(want.as_str()));
    prop_assert_eq!(plan.content_check().is_some(), p.gate.check_content);
    if let Some(ct) = plan.content_check() {
        prop_assert_eq!(ct, meta[FIELD_CONTENT_TYPE].as_str());
    }
    let grant = v.unwrap().grant_id();
    let id = upload_id::verify(&up.secrets, plan.upload_id(), &grant, Kind::Whole);
    prop_assert!(id.is_ok(), "planned with an ID that does not verify: {:?}", id);
    prop_assert!(!c.partial && !c.deferred && c.offset_delta == 0);
    Ok(true)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn finalize_plan_implies_signed_fields_and_destination(c in postfinish(any_key().boxed())) {
        check_postfinish(&c)?;
    }

    /// Clean, complete uploads in a file store are finalized, expired token or not.
    #[test]
    fn finalize_clean_complete_upload_is_planned(mut c in postfinish(good_key().boxed())) {
        c.pre.mutation = Mutation::None;
        let clean = c.pre.gate.secrets.contains(&c.pre.secret)
            && !c.partial
            && !c.deferred
            && c.offset_delta == 0
            && policy::content_type_allowed(&c.pre.gate.patterns, &c.pre.ct)
            && served_as_signed(&c.pre.gate, &c.pre.key, &c.pre.ct)
            && c.pre.gate.max_size.is_none_or(|m| c.size <= m)
            && c.kind.is_none_or(|k| k != "s3store")
            && c.path.is_some_and(|p| p.starts_with('/'));
        let planned = check_postfinish(&c)?;
        prop_assert_eq!(planned, clean, "clean = {}", clean);
    }
}

// ---------------------------------------------------------------------------
// (c) download links
// ---------------------------------------------------------------------------

fn uri_path() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        12 => "[a-zA-Z0-9._~-]{1,10}".prop_map(String::into_bytes),
        1 => Just(b"a b".to_vec()),
        1 => Just(b"..".to_vec()),
        1 => Just(b".".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"%2e%2E".to_vec()),
        1 => Just(b"%2F".to_vec()),
        1 => Just("été".as_bytes().to_vec()),
        1 => Just(b"%C3%A9".to_vec()),
    ];
    prop::collection::vec(segment, 1..5).prop_map(|s| {
        let mut out = Vec::new();
        for seg in s {
            out.push(b'/');
            out.extend_from_slice(&seg);
        }
        out
    })
}

#[derive(Debug, Clone)]
enum LinkMutation {
    None,
    FlipMd5(Index, u8),
    /// Only the unused low bits of the last character change.
    TrailingBits,
    /// `=` and junk after the 22 characters (nginx ignores them).
    Padding(&'static str),
    ExpiryZero,
    ExpiryPlusOne,
    Comma,
    OtherUri,
    EmptyMd5,
    EmptyExpires,
}

fn link_mutation() -> impl Strategy<Value = LinkMutation> {
    prop_oneof![
        10 => Just(LinkMutation::None),
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| LinkMutation::FlipMd5(i, m)),
        1 => Just(LinkMutation::TrailingBits),
        1 => prop::sample::select(vec!["=", "==", "=x", "=AA"]).prop_map(LinkMutation::Padding),
        1 => Just(LinkMutation::ExpiryZero),
        1 => Just(LinkMutation::ExpiryPlusOne),
        1 => Just(LinkMutation::Comma),
        1 => Just(LinkMutation::OtherUri),
        1 => Just(LinkMutation::EmptyMd5),
        1 => Just(LinkMutation::EmptyExpires),
    ]
}

#[derive(Debug, Clone)]
struct LinkCase {
    secrets: Vec<&'static str>,
    signer: &'static str,
    path: Vec<u8>,
    offset: i64,
    mutation: LinkMutation,
    merge: bool,
}

fn link_case() -> impl Strategy<Value = LinkCase> {
    (
        prop_oneof![5 => Just(vec![S1, S2]), 2 => Just(vec![S1]), 1 => Just(vec![S2]), 1 => Just(vec![])],
        signer(),
        uri_path(),
        prop_oneof![2 => -100i64..100, 3 => 0i64..1_000_000, 1 => -1_000_000i64..0],
        link_mutation(),
        any::<bool>(),
    )
        .prop_map(|(secrets, signer, path, offset, mutation, merge)| LinkCase {
            secrets,
            signer,
            path,
            offset,
            mutation,
            merge,
        })
}

/// The md5 and expires arguments for `uri`, signed and then mutated.
fn link_args(c: &LinkCase, uri: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let expires = NOW + c.offset;
    let mut md5 = link::sign(c.signer.as_bytes(), uri, expires).into_bytes();
    let mut exp = expires.to_string().into_bytes();
    match &c.mutation {
        LinkMutation::None => {}
        LinkMutation::FlipMd5(i, m) => {
            let at = i.index(md5.len());
            md5[at] ^= m;
        }
        LinkMutation::TrailingBits => {
            // The last character carries 2 significant bits: keep them.
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let last = md5.len() - 1;
            let v = A.iter().position(|&a| a == md5[last]).unwrap();
            md5[last] = A[(v & 0b11_0000) | ((v + 5) & 0b1111)];
        }
        LinkMutation::Padding(p) => md5.extend_from_slice(p.as_bytes()),
        LinkMutation::ExpiryZero => exp.insert(0, b'0'),
        LinkMutation::ExpiryPlusOne => exp = (expires + 1).to_string().into_bytes(),
        LinkMutation::Comma => md5.push(b','),
        LinkMutation::OtherUri => {
            md5 = link::sign(c.signer.as_bytes(), b"/other", expires).into_bytes();
        }
        LinkMutation::EmptyMd5 => md5.clear(),
        LinkMutation::EmptyExpires => exp.clear(),
    }
    (md5, exp)
}

fn check_link_allow(
    c: &LinkCase,
    uri: &[u8],
    md5: &[u8],
    exp: &[u8],
    got: &Result<link::LinkVerified<'_>, link::Denied>,
) -> Result<bool, TestCaseError> {
    let Ok(v) = got else {
        return Ok(false);
    };
    prop_assert_eq!(v.uri(), uri);
    prop_assert!(
        c.secrets.iter().any(|s| oracle_link_md5(s, uri, md5, exp)),
        "allowed a link no configured secret signed"
    );
    let expires = std::str::from_utf8(exp).ok().and_then(oracle_expires);
    prop_assert_eq!(Some(v.expires()), expires);
    prop_assert!(v.expires() >= NOW, "allowed an expired link");
    Ok(true)
}

proptest! {
    #![proptest_config(config())]

    /// `link::verify` on `$uri` and the raw argument values.
    #[test]
    fn link_allow_implies_md5_and_expiry(c in link_case()) {
        let set = secret_set(&c.secrets);
        let (md5, exp) = link_args(&c, &c.path);
        let got = link::verify(&set, &c.path, &md5, &exp, NOW);
        let allowed = check_link_allow(&c, &c.path, &md5, &exp, &got)?;
        if matches!(c.mutation, LinkMutation::None | LinkMutation::TrailingBits | LinkMutation::Padding(_)) {
            // nginx looks at 24 bytes at most: `=AA` after 22 is one too many.
            let want = c.secrets.contains(&c.signer) && c.offset >= 0 && md5.len() <= 24;
            prop_assert_eq!(allowed, want, "a clean link: allowed = {}", allowed);
        }
    }

    /// `link::verify_request_target` on a raw request target signed for the
    /// `$uri` nginx derives from it.
    #[test]
    fn link_request_target_allow_implies_md5_and_expiry(c in link_case()) {
        let set = secret_set(&c.secrets);
        let Ok(parsed) = nginx_uri::parse_request_target(&c.path, c.merge) else {
            // nginx refuses the path (e.g. `..` above the root): so must we.
            let mut target = c.path.clone();
            target.extend_from_slice(b"?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1");
            prop_assert!(link::verify_request_target(&set, &target, c.merge, NOW).is_err());
            return Ok(());
        };
        let uri = parsed.uri.to_vec();
        let (md5, exp) = link_args(&c, &uri);
        let mut target = c.path.clone();
        target.extend_from_slice(b"?md5=");
        target.extend_from_slice(&md5);
        target.extend_from_slice(b"&expires=");
        target.extend_from_slice(&exp);
        let got = link::verify_request_target(&set, &target, c.merge, NOW);
        let allowed = check_link_allow(&c, &uri, &md5, &exp, &got)?;
        if matches!(c.mutation, LinkMutation::None | LinkMutation::TrailingBits) {
            let want = c.secrets.contains(&c.signer) && c.offset >= 0;
            prop_assert_eq!(allowed, want, "a clean link: allowed = {}", allowed);
        }
    }
}
