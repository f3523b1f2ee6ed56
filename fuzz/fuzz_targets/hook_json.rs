//! The tusd hook parser (`tusd::parse`) and the decision core (`tusd::decide`,
//! `tusd::answer`) on attacker-shaped input, with two fixed gate configurations,
//! a fixed clock and a [`Lookup`] that answers from the input.
//!
//! Input: three control bytes, then the hook body.
//!
//! - byte 0, the `Hook-Name` header: `% 4 == 1` a name from [`NAMES`] (picked by
//!   `/ 4`); `== 2` the first line of the body (lossy UTF-8; the body is what
//!   follows the `\n`); otherwise no header.
//! - byte 1, the lookup: bits 0-1 the destination (free, exists, blocked, the
//!   store not answering);
//!   bits 2-3 the parts of a final upload (none; finished partial carrying the
//!   upload's own fields; the same with another token; flags from bits 6-7);
//!   bits 4-5 the leading bytes for pre-finish (none, PNG, PDF, empty).
//! - byte 2, the configuration: bit 0 picks gate A or B; bits 1-2 re-sign the
//!   parsed metadata before deciding (no; the newest secret; the older one; a
//!   secret the gate does not know), so mutated keys, types and expiries reach
//!   the checks behind the signature.
//!
//! Checked (none of these can be false):
//! - no panic, whatever the bytes;
//! - a body is refused as not JSON (`HookError::NotJson`) exactly when
//!   `serde_json::from_slice::<Value>` refuses it (fuzz/findings F1: no part of
//!   the body, read or not, escapes the check);
//! - parsing is independent of the JSON spelling: a body and its re-serialised
//!   `serde_json::Value` parse alike (if an object of the body gives a key
//!   twice, the re-serialised one has only the last: then the body parses
//!   alike or is refused), and so does the re-serialised body with an unknown
//!   top-level field in front;
//! - a v1 hook has a non-empty header and its name is that header's;
//! - the decision names the hook, key and upload ID it was given; only the
//!   blocking hooks accept/reject, only post-finish finalizes/keeps;
//! - pre-create Accept ⇒ `token::upload::verify` is Ok for the gate at `NOW`, the
//!   key passes `policy::check_key`, the content type the allowlist, the size
//!   `policy::check_size`, the one destination asked is `{prefix}/{key}` and was
//!   free (or existing with overwrite on), every part of a final upload was
//!   asked and is a finished partial upload with the same signed fields;
//! - pre-finish Accept ⇒ leading bytes were given, the signature verifies, the
//!   bytes match the signed type;
//! - post-finish Finalize(plan) ⇒ complete, not partial, the plan's signed
//!   fields verify (ignoring expiry) and are the upload's, the destination is
//!   `{prefix}/{key}` with a policy-valid key, `content_check()` is Some iff
//!   `check_content`, the source is the absolute `Storage.Path` of a file store;
//! - a rejection is a 4xx whose message is at most `MAX_MESSAGE_BYTES` and never
//!   holds the upload token;
//! - the answer is a JSON object; v2: always 200 and at most 5 KiB, `{}` unless
//!   rejected, a rejection carries its status and error code; v1: the
//!   rejection's status and body, else 200 `{}`; a parse error answers 400
//!   `bad_hook` without echoing a token-like run of the body.
#![no_main]

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use assetgate::config::{StorageBackend, StorageConfig, UploadConfig};
use assetgate::policy::{self, Visibility};
use assetgate::secret::{Secret, SecretSet};
use assetgate::token::upload::{
    self, Metadata, FIELDS, FIELD_CONTENT_TYPE, FIELD_EXPIRES, FIELD_KEY, FIELD_TOKEN, FIELD_VISIBILITY,
};
use assetgate::token::upload_id::{self, Kind, UploadIds};
use assetgate::tusd::answer::V2_MAX_BODY;
use assetgate::tusd::postfinish::FILE_STORES;
use assetgate::tusd::{
    self, prefinish, Decision, Destination, Gate, Hook, HookName, Lookup, HookOutcome, Part, Protocol, ReasonCode,
    Rejection, Upload, Verdict, MAX_MESSAGE_BYTES,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// granite's test secrets (`tests/vectors/granite-uploads.json`), so the
/// fixture seeds carry real tokens.
const NEWEST: &str = "test-upload-secret-newest-0123456789";
const OLDER: &str = "test-upload-secret-older-9876543210";
const UNKNOWN: &str = "a-secret-the-gate-does-not-know";
/// The vectors' `minted_at`.
const NOW: i64 = 1_795_354_482;

const NAMES: [&str; 11] = [
    "pre-create",
    "post-finish",
    "pre-finish",
    "post-create",
    "post-receive",
    "pre-terminate",
    "post-terminate",
    " PRE-CREATE ",
    "Post-Finish",
    "",
    "whatever",
];

const HEADS: [Option<&[u8]>; 4] = [
    None,
    Some(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
    Some(b"%PDF-1.7\n"),
    Some(b""),
];

struct Fixed {
    upload: UploadConfig,
    storage: StorageConfig,
    upload_ids: UploadIds,
}

fn secrets(list: &[&str]) -> SecretSet {
    SecretSet::new(list.iter().map(|s| Secret::new(s.as_bytes().to_vec())).collect())
}

/// Gate A: both secrets, any type, no size limit, deferred length allowed,
/// no overwrite. Gate B: the newest secret only, an allowlist, 2 MiB, length
/// required, content check, overwrite, nested prefixes.
fn gates() -> &'static [Fixed; 2] {
    static GATES: OnceLock<[Fixed; 2]> = OnceLock::new();
    GATES.get_or_init(|| {
        [
            Fixed {
                upload: UploadConfig {
                    secrets: secrets(&[NEWEST, OLDER]),
                    clock_skew: Duration::from_secs(30),
                    max_ttl: Duration::from_secs(86_400),
                    content_types: Vec::new(),
                    max_size: None,
                    allow_deferred_length: true,
                    check_content: false,
                    session_binding: Default::default(),
                    session_grace: std::time::Duration::from_secs(3600),
                    single_use: false,
                    max_parts: assetgate::config::DEFAULT_MAX_PARTS,
                    nginx_types: assetgate::config::NginxTypes::builtin(),
                },
                storage: StorageConfig {
                    root: Some(PathBuf::from("/srv/assets")),
                    overwrite: false,
                    public_prefix: "public".into(),
                    private_prefix: "private".into(),
                    backend: StorageBackend::Fs,
                    s3: None,
                },
                upload_ids: UploadIds::Server,
            },
            Fixed {
                upload: UploadConfig {
                    secrets: secrets(&[NEWEST]),
                    clock_skew: Duration::from_secs(5),
                    max_ttl: Duration::from_secs(3_600),
                    content_types: vec!["image/*".parse().unwrap(), "application/pdf".parse().unwrap(), "text/plain".parse().unwrap()],
                    max_size: Some(2 << 20),
                    allow_deferred_length: false,
                    check_content: true,
                    session_binding: Default::default(),
                    session_grace: std::time::Duration::from_secs(3600),
                    single_use: false,
                    max_parts: assetgate::config::DEFAULT_MAX_PARTS,
                    nginx_types: assetgate::config::NginxTypes::builtin(),
                },
                storage: StorageConfig {
                    root: Some(PathBuf::from("/srv/assets")),
                    overwrite: true,
                    public_prefix: "www/pub".into(),
                    private_prefix: "vault".into(),
                    backend: StorageBackend::Fs,
                    s3: None,
                },
                upload_ids: UploadIds::Signed,
            },
        ]
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PartMode {
    None,
    /// A finished partial upload with the asking upload's own fields.
    Good,
    /// The same, but another token.
    OtherToken,
    Flags {
        is_partial: bool,
        finished: bool,
    },
}

struct FuzzLookup<'a> {
    dest: Destination,
    part: PartMode,
    head: Option<&'static [u8]>,
    meta: &'a Metadata,
    asked_dest: RefCell<Vec<PathBuf>>,
    asked_parts: RefCell<Vec<String>>,
    asked_head: Cell<bool>,
}

impl FuzzLookup<'_> {
    fn parts_are_good(&self) -> bool {
        match self.part {
            PartMode::Good => true,
            PartMode::Flags { is_partial, finished } => is_partial && finished,
            PartMode::None | PartMode::OtherToken => false,
        }
    }
}

impl Lookup for FuzzLookup<'_> {
    fn destination(&self, relative: &Path) -> Destination {
        self.asked_dest.borrow_mut().push(relative.to_path_buf());
        self.dest
    }

    fn leading_bytes(&self, _upload: &Upload) -> Result<Option<Vec<u8>>, assetgate::tusd::StoreUnavailable> {
        self.asked_head.set(true);
        Ok(self.head.map(<[u8]>::to_vec))
    }

    fn part(&self, id: &str) -> Option<Part> {
        self.asked_parts.borrow_mut().push(id.to_owned());
        let mut metadata = self.meta.clone();
        let (is_partial, finished) = match self.part {
            PartMode::None => return None,
            PartMode::Good => (true, true),
            PartMode::OtherToken => {
                let other = if metadata.get(FIELD_TOKEN).map(String::as_str) == Some(&"0".repeat(64)) {
                    "1".repeat(64)
                } else {
                    "0".repeat(64)
                };
                metadata.insert(FIELD_TOKEN.into(), other);
                (true, true)
            }
            PartMode::Flags { is_partial, finished } => (is_partial, finished),
        };
        Some(Part {
            is_partial,
            finished,
            metadata,
        })
    }
}

/// Re-signs the five fields as they are (when the four signed ones are present).
fn resign(meta: &mut Metadata, secret: &str) {
    let get = |f: &str| meta.get(f).cloned();
    if let (Some(key), Some(ct), Some(vis), Some(exp)) = (
        get(FIELD_KEY),
        get(FIELD_CONTENT_TYPE),
        get(FIELD_VISIBILITY),
        get(FIELD_EXPIRES),
    ) {
        let token = upload::sign(secret.as_bytes(), &exp, &key, &vis, &ct);
        meta.insert(FIELD_TOKEN.into(), token);
    }
}

/// `{prefix}/{key}` as the issue defines it.
fn expected_destination(storage: &StorageConfig, vis: Visibility, key: &str) -> String {
    format!(
        "{}/{key}",
        vis.prefix(&storage.public_prefix, &storage.private_prefix)
    )
}

/// Runs of at least 32 hex digits (token-like) in `bytes`.
fn hex_runs(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|b| !b.is_ascii_hexdigit())
        .filter(|run| run.len() >= 32)
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}


/// The parse differential: refused as not JSON exactly when `Value` refuses
/// the body, and spelling-independent results.
fn check_spellings(body: &[u8], header: Option<&str>, parsed: &Result<Hook, tusd::HookError>) {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(e) => {
            // F1 (fuzz/findings/README.md), fixed: nothing that is not JSON
            // parses, however little of it the hook uses.
            assert!(
                matches!(parsed, Err(tusd::HookError::NotJson(_))),
                "not JSON ({e}), yet {parsed:?}"
            );
            return;
        }
    };
    assert!(
        !matches!(parsed, Err(tusd::HookError::NotJson(_))),
        "JSON, yet refused as not JSON: {parsed:?}"
    );
    let canonical = serde_json::to_vec(&value).expect("a Value serialises");
    let again = tusd::parse(&canonical, header);
    if assetgate::tusd::json::repeats_a_key(body) {
        assert!(
            parsed.is_err() || parsed.as_ref().ok() == again.as_ref().ok(),
            "a key given twice: the last one is not what counts"
        );
    } else {
        assert_eq!(
            parsed.as_ref().ok(),
            again.as_ref().ok(),
            "re-serialised body parses differently"
        );
    }
    if value.is_object() {
        // An unknown field in front changes nothing.
        let mut unknown = b"{\"X-Unknown\":[{\"Type\":0}],".to_vec();
        unknown.extend_from_slice(&canonical[1..]);
        if canonical.len() == 2 {
            unknown.truncate(unknown.len() - 2);
            unknown.push(b'}');
        }
        assert_eq!(
            again.as_ref().ok(),
            tusd::parse(&unknown, header).as_ref().ok(),
            "an unknown field changes the hook"
        );
    }
}

fn check_rejection(r: &Rejection, meta: &Metadata) {
    // 500 only for a deployment fault: signed upload IDs with a v1 server.
    assert!(
        (400..500).contains(&r.status()) || r.reason() == ReasonCode::UploadIdsUnsupported,
        "{r}"
    );
    assert!(
        !matches!(r.reason(), ReasonCode::Ok | ReasonCode::Ignored | ReasonCode::Partial),
        "{r}"
    );
    assert!(r.message().len() <= MAX_MESSAGE_BYTES);
    if let Some(token) = meta.get(FIELD_TOKEN).filter(|t| t.len() >= 16) {
        // The content type is echoed on purpose; a token inside it is not a leak.
        let echoed = meta
            .get(FIELD_CONTENT_TYPE)
            .is_some_and(|ct| ct.contains(token.as_str()));
        assert!(
            echoed || !r.message().contains(token.as_str()),
            "token in message: {r}"
        );
    }
}

fn check_precreate_accept(u: &Upload, g: &Fixed, lk: &FuzzLookup<'_>) {
    let v = upload::verify(&u.metadata, &g.upload, NOW).expect("accepted pre-create: token verifies");
    assert_eq!(Some(v.key()), u.asset_key());
    policy::check_key(v.key()).expect("accepted pre-create: key passes the policy");
    assert!(
        policy::content_type_allowed(&g.upload.content_types, v.content_type()),
        "accepted pre-create: type not allowed: {:?}",
        v.content_type()
    );
    policy::check_size(
        u.declared_size(),
        g.upload.max_size,
        g.upload.allow_deferred_length,
    )
    .expect("accepted pre-create: size within the policy");
    let want = expected_destination(&g.storage, v.visibility(), v.key());
    let asked = lk.asked_dest.borrow();
    assert_eq!(asked.len(), 1, "one destination asked");
    assert_eq!(asked[0].to_str(), Some(want.as_str()));
    match lk.dest {
        Destination::Free => {}
        Destination::Exists => assert!(g.storage.overwrite, "accepted over an existing asset"),
        Destination::Blocked => panic!("accepted a blocked destination"),
        Destination::Unavailable => panic!("accepted though the store did not answer"),
    }
    if u.is_final {
        assert!(
            !u.partial_uploads.is_empty(),
            "final upload without parts accepted"
        );
        assert_eq!(*lk.asked_parts.borrow(), u.partial_uploads, "every part asked");
        assert!(lk.parts_are_good(), "final upload accepted with a bad part");
    }
}

/// `signed`: an accepted pre-create carries a new ID issued for its grant; a
/// plan's ID was issued for the grant of its signed fields.
fn check_id(g: &Fixed, id: Option<&str>, grant: &[u8; 32], kind: Kind) {
    match g.upload_ids {
        UploadIds::Signed => {
            let id = id.expect("signed: an ID");
            upload_id::verify(&g.upload.secrets, id, grant, kind).expect("signed: the ID verifies");
        }
        UploadIds::Server => assert!(id.is_none_or(|_| kind == Kind::Whole)),
    }
}

fn check_plan(u: &Upload, g: &Fixed, plan: &tusd::FinalizePlan) {
    assert!(!u.is_partial && u.is_complete());
    assert_eq!(Some(plan.size()), u.declared_size());
    assert_eq!(plan.upload_id(), u.id);
    let signed = plan.signed_fields();
    let v = upload::verify_signature_ignoring_expiry(signed, &g.upload.secrets)
        .expect("finalize plan: signed fields verify");
    assert_eq!(signed.len(), FIELDS.len());
    for f in FIELDS {
        assert_eq!(
            signed.get(f),
            u.metadata.get(f),
            "signed field {f} is the upload's"
        );
    }
    assert_eq!(
        (v.key(), v.visibility(), v.content_type()),
        (plan.key(), plan.visibility(), plan.content_type())
    );
    policy::check_key(plan.key()).expect("finalize plan: key passes the policy");
    let want = expected_destination(&g.storage, plan.visibility(), plan.key());
    assert_eq!(plan.destination().to_str(), Some(want.as_str()));
    assert_eq!(
        plan.content_check(),
        g.upload.check_content.then_some(plan.content_type())
    );
    assert!(policy::content_type_allowed(
        &g.upload.content_types,
        plan.content_type()
    ));
    policy::check_size(Some(plan.size()), g.upload.max_size, false).expect("finalize plan: size");
    assert!(plan.source().is_absolute());
    assert_eq!(Some(plan.source()), u.storage_path());
    let kind = u.storage.as_ref().and_then(|s| s.kind.as_deref());
    assert!(
        kind.is_none_or(|k| FILE_STORES.contains(&k)),
        "not a file store: {kind:?}"
    );
    assert_eq!(plan.overwrite(), g.storage.overwrite);
}

fn check_decision(hook: &Hook, d: &Decision, g: &Fixed, lk: &FuzzLookup<'_>) {
    let u = &hook.upload;
    assert_eq!(d.hook, hook.name);
    assert_eq!(d.key.as_deref(), u.asset_key());
    assert_eq!(d.upload_id, u.id);
    assert_eq!(d.outcome() == HookOutcome::Allow, d.reason() == ReasonCode::Ok);
    match (&hook.name, &d.verdict) {
        (HookName::PreCreate, Verdict::Accept) => {
            check_precreate_accept(u, g, lk);
            let grant = upload::verify(&u.metadata, &g.upload, NOW).unwrap().grant_id();
            let kind = if u.is_partial { Kind::Partial } else { Kind::Whole };
            check_id(g, d.assigned_id.as_deref(), &grant, kind);
        }
        (HookName::PreCreate, Verdict::Reject(r)) => check_rejection(r, &u.metadata),
        (HookName::PreFinish, Verdict::Accept) => {
            let head = lk.head.expect("pre-finish accepted without leading bytes");
            assert!(!u.is_partial);
            let v = upload::verify_signature_ignoring_expiry(&u.metadata, &g.upload.secrets)
                .expect("accepted pre-finish: signature verifies");
            prefinish::check(v.content_type(), head).expect("accepted pre-finish: bytes match");
        }
        (HookName::PreFinish, Verdict::Reject(r)) => {
            assert!(lk.head.is_some());
            check_rejection(r, &u.metadata);
        }
        (HookName::PreFinish, Verdict::Skip(ReasonCode::Ignored)) => assert!(lk.head.is_none()),
        (HookName::PreFinish | HookName::PostFinish, Verdict::Skip(ReasonCode::Partial)) => {
            assert!(u.is_partial)
        }
        (HookName::PostFinish, Verdict::Finalize(plan)) => {
            check_plan(u, g, plan);
            let grant = upload::verify_signature_ignoring_expiry(plan.signed_fields(), &g.upload.secrets)
                .unwrap()
                .grant_id();
            let id = (g.upload_ids == UploadIds::Signed).then_some(plan.upload_id());
            check_id(g, id, &grant, Kind::Whole);
        }
        (HookName::PostFinish, Verdict::Keep(r)) => check_rejection(r, &u.metadata),
        (HookName::PreCreate | HookName::PostFinish | HookName::PreFinish, v) => {
            panic!("{} cannot decide {v:?}", hook.name)
        }
        (_, Verdict::Skip(ReasonCode::Ignored)) => {}
        (name, v) => panic!("{name} has nothing to decide, got {v:?}"),
    }
}

fn check_answer(protocol: Protocol, d: &Decision) {
    let a = tusd::answer(protocol, d);
    assert_eq!(a.content_type, "application/json");
    let body: Value = serde_json::from_slice(&a.body).expect("the answer is JSON");
    assert!(body.is_object());
    let rejected = match &d.verdict {
        Verdict::Reject(r) => Some(r),
        _ => None,
    };
    match (protocol, rejected) {
        // An accepted v2 pre-create in `signed` mode hands tusd the ID it
        // issued, and nothing else.
        (Protocol::V2, None) if d.hook == HookName::PreCreate && d.assigned_id.is_some() => {
            assert_eq!(a.status, 200);
            assert!(matches!(d.verdict, Verdict::Accept), "{:?}", d.verdict);
            let id = d.assigned_id.as_deref().unwrap();
            assert_eq!(body, serde_json::json!({"ChangeFileInfo": {"ID": id}}));
        }
        (Protocol::V2, None) | (Protocol::V1, None) => {
            assert_eq!(a.status, 200);
            assert_eq!(a.body, b"{}");
        }
        (Protocol::V2, Some(r)) => {
            assert_eq!(a.status, 200);
            assert!(a.body.len() <= V2_MAX_BODY, "v2 answer of {} bytes", a.body.len());
            let http = &body["HTTPResponse"];
            assert_eq!(http["StatusCode"].as_u64(), Some(u64::from(r.status())));
            let inner: Value =
                serde_json::from_str(http["Body"].as_str().expect("Body is a string")).unwrap();
            assert_eq!(inner["error"]["code"].as_str(), Some(r.reason().as_str()));
            let reject_upload = body.get("RejectUpload").and_then(Value::as_bool);
            if d.hook == HookName::PreFinish {
                assert_eq!(reject_upload, None);
            } else {
                assert_eq!(reject_upload, Some(true));
            }
        }
        (Protocol::V1, Some(r)) => {
            assert_eq!(a.status, r.status());
            assert_eq!(body["error"]["code"].as_str(), Some(r.reason().as_str()));
        }
    }
}

fn check_error(body: &[u8], e: &tusd::HookError) {
    let a = tusd::answer_error(e);
    assert_eq!(a.status, 400);
    let v: Value = serde_json::from_slice(&a.body).expect("the error answer is JSON");
    assert_eq!(v["error"]["code"].as_str(), Some("bad_hook"));
    let message = v["error"]["message"].as_str().expect("a message");
    assert!(message.len() <= MAX_MESSAGE_BYTES);
    for run in hex_runs(body) {
        assert!(
            !contains(message.as_bytes(), run),
            "error echoes a token-like value: {message}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [h, l, c, rest @ ..] = data else {
        return;
    };
    let line;
    let (header, body): (Option<&str>, &[u8]) = match h % 4 {
        1 => (Some(NAMES[usize::from(h / 4) % NAMES.len()]), rest),
        2 => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            line = String::from_utf8_lossy(&rest[..cut]);
            (Some(&line), rest.get(cut + 1..).unwrap_or_default())
        }
        _ => (None, rest),
    };

    let parsed = tusd::parse(body, header);
    check_spellings(body, header, &parsed);
    let mut hook = match parsed {
        Ok(hook) => hook,
        Err(e) => return check_error(body, &e),
    };
    if hook.protocol == Protocol::V1 {
        let name = header.map(str::trim).filter(|n| !n.is_empty());
        assert_eq!(Some(&hook.name), name.map(HookName::parse).as_ref());
    }

    let g = &gates()[usize::from(c & 1)];
    match (c >> 1) & 3 {
        1 => resign(&mut hook.upload.metadata, NEWEST),
        2 => resign(&mut hook.upload.metadata, OLDER),
        3 => resign(&mut hook.upload.metadata, UNKNOWN),
        _ => {}
    }
    let lookup = FuzzLookup {
        dest: [
            Destination::Free,
            Destination::Exists,
            Destination::Blocked,
            Destination::Unavailable,
        ][usize::from(l & 3)],
        part: match (l >> 2) & 3 {
            0 => PartMode::None,
            1 => PartMode::Good,
            2 => PartMode::OtherToken,
            _ => PartMode::Flags {
                is_partial: l & 0x40 != 0,
                finished: l & 0x80 != 0,
            },
        },
        head: HEADS[usize::from((l >> 4) & 3)],
        meta: &hook.upload.metadata,
        asked_dest: RefCell::default(),
        asked_parts: RefCell::default(),
        asked_head: Cell::new(false),
    };
    let gate = Gate {
        upload: &g.upload,
        storage: &g.storage,
        upload_ids: g.upload_ids,
    };
    let decision = tusd::decide(&hook, gate, NOW, &[7; 16], &lookup);
    check_decision(&hook, &decision, g, &lookup);
    if hook.name != HookName::PreFinish {
        assert!(!lookup.asked_head.get(), "leading bytes read outside pre-finish");
    }
    check_answer(hook.protocol, &decision);
});
