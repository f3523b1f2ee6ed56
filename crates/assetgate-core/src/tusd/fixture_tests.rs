//! Data-file tests: granite-minted vectors and hook fixtures (see
//! `tests/vectors/README.md` and `tests/fixtures/README.md`).

use std::path::Path;

use serde_json::Value;

use super::metadata::parse_upload_metadata;
use super::testing::{storage_config, upload_config};
use super::*;
use crate::config::UploadConfig;
use crate::token::upload::{
    sign, verify_signature_ignoring_expiry, verify_with, Metadata, UploadRefusal, Window, FIELD_CONTENT_TYPE,
    FIELD_EXPIRES, FIELD_KEY, FIELD_TOKEN, FIELD_VISIBILITY,
};

const VECTORS: &str = include_str!("../../../../tests/vectors/granite-uploads.json");

struct Vector {
    key: String,
    content_type: String,
    visibility: String,
    expires: String,
    ttl: i64,
    minted_at: i64,
    token: String,
    header: String,
    metadata: Metadata,
    secret: String,
}

struct Vectors {
    version: String,
    newest: String,
    older: String,
    list: Vec<Vector>,
}

fn vectors() -> Vectors {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let s = |x: &Value| x.as_str().unwrap().to_owned();
    let list = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| Vector {
            key: s(&x["key"]),
            content_type: s(&x["content_type"]),
            visibility: s(&x["visibility"]),
            expires: s(&x["expires"]),
            ttl: x["ttl_seconds"].as_i64().unwrap(),
            minted_at: x["minted_at"].as_i64().unwrap(),
            token: s(&x["token"]),
            header: s(&x["upload_metadata_header"]),
            metadata: serde_json::from_value(x["metadata"].clone()).unwrap(),
            secret: s(&x["secret"]),
        })
        .collect();
    Vectors {
        version: s(&v["version"]),
        newest: s(&v["secrets"]["newest"]),
        older: s(&v["secrets"]["older"]),
        list,
    }
}

fn config(secrets: &[&str]) -> UploadConfig {
    upload_config(secrets)
}

#[test]
fn vector_file_covers_the_cases() {
    let v = vectors();
    assert_eq!(v.version, "0.1.7", "regenerate the vectors when granite changes");
    assert!(v.list.len() >= 8);
    let any = |f: &dyn Fn(&Vector) -> bool| v.list.iter().any(f);
    assert!(any(&|x| x.secret == "older"));
    assert!(any(&|x| x.secret == "newest"));
    assert!(any(&|x| x.visibility == "public"));
    assert!(any(&|x| x.visibility == "private"));
    assert!(any(&|x| x.key == "photos/été 2026/plage.jpg"));
    assert!(any(&|x| !x.key.is_ascii()));
    assert!(any(&|x| x.content_type.contains(';')));
    assert!(any(&|x| x.ttl > 86_400));
}

#[test]
fn header_decodes_like_tusd_to_the_recorded_metadata() {
    for v in vectors().list {
        let decoded = parse_upload_metadata(&v.header);
        assert_eq!(decoded, v.metadata, "{}", v.key);
        assert_eq!(decoded[FIELD_KEY], v.key);
        assert_eq!(decoded[FIELD_CONTENT_TYPE], v.content_type);
        assert_eq!(decoded[FIELD_VISIBILITY], v.visibility);
        assert_eq!(decoded[FIELD_EXPIRES], v.expires);
        assert_eq!(decoded[FIELD_TOKEN], v.token);
        assert_eq!(decoded.len(), 5);
    }
}

#[test]
fn our_signer_reproduces_granite() {
    let vs = vectors();
    for v in &vs.list {
        let secret = if v.secret == "older" {
            &vs.older
        } else {
            &vs.newest
        };
        assert_eq!(
            sign(
                secret.as_bytes(),
                &v.expires,
                &v.key,
                &v.visibility,
                &v.content_type
            ),
            v.token,
            "{}",
            v.key
        );
    }
}

#[test]
fn every_vector_verifies_with_rotation() {
    let vs = vectors();
    let both = config(&[&vs.newest, &vs.older]);
    let newest_only = config(&[&vs.newest]);
    let window = Window::from_config(&both);
    for v in &vs.list {
        let got = verify_with(&v.metadata, &both.secrets, window, v.minted_at);
        if v.ttl > window.max_ttl + window.clock_skew {
            assert_eq!(
                got.unwrap_err().reason(),
                UploadRefusal::TokenTtlTooLong,
                "{}",
                v.key
            );
            continue;
        }
        let ok = got.unwrap_or_else(|e| panic!("{}: {e}", v.key));
        assert_eq!(ok.key(), v.key);
        assert_eq!(ok.content_type(), v.content_type);
        assert_eq!(ok.visibility().as_str(), v.visibility);
        assert_eq!(ok.expires().to_string(), v.expires);

        let only_newest = verify_with(&v.metadata, &newest_only.secrets, window, v.minted_at);
        if v.secret == "older" {
            assert_eq!(
                only_newest.unwrap_err().reason(),
                UploadRefusal::TokenInvalid,
                "{}",
                v.key
            );
        } else {
            assert!(only_newest.is_ok(), "{}", v.key);
        }
    }
}

#[test]
fn expiry_of_vectors_uses_the_injected_clock() {
    let vs = vectors();
    let c = config(&[&vs.newest, &vs.older]);
    let w = Window::from_config(&c);
    for v in vs.list.iter().filter(|v| v.ttl <= w.max_ttl) {
        let expires: i64 = v.expires.parse().unwrap();
        assert!(verify_with(&v.metadata, &c.secrets, w, expires + w.clock_skew).is_ok());
        assert_eq!(
            verify_with(&v.metadata, &c.secrets, w, expires + w.clock_skew + 1)
                .unwrap_err()
                .reason(),
            UploadRefusal::TokenExpired
        );
        // finalize ignores the clock entirely
        assert!(verify_signature_ignoring_expiry(&v.metadata, &c.secrets).is_ok());
    }
}

#[test]
fn tampering_any_vector_field_breaks_it() {
    let vs = vectors();
    let c = config(&[&vs.newest, &vs.older]);
    let w = Window::from_config(&c);
    for v in vs.list.iter().filter(|v| v.ttl <= w.max_ttl) {
        let flipped_vis = if v.visibility == "public" {
            "private"
        } else {
            "public"
        };
        let mut token = v.token.clone().into_bytes();
        token[63] = if token[63] == b'0' { b'1' } else { b'0' };
        let edits: Vec<(&str, String)> = vec![
            (FIELD_KEY, format!("{}x", v.key)),
            (FIELD_KEY, v.key.replacen('/', "/x", 1)),
            (FIELD_CONTENT_TYPE, v.content_type.to_uppercase()),
            (FIELD_CONTENT_TYPE, format!("{} ", v.content_type)),
            (FIELD_VISIBILITY, flipped_vis.to_string()),
            (FIELD_EXPIRES, format!("0{}", v.expires)),
            (FIELD_EXPIRES, (v.expires.parse::<i64>().unwrap() - 1).to_string()),
            (FIELD_TOKEN, String::from_utf8(token).unwrap()),
        ];
        for (field, value) in edits {
            if v.metadata[field] == value {
                continue; // e.g. a content type already upper case
            }
            let mut m = v.metadata.clone();
            m.insert(field.to_owned(), value.clone());
            let e = verify_with(&m, &c.secrets, w, v.minted_at).unwrap_err();
            assert_eq!(
                e.reason(),
                UploadRefusal::TokenInvalid,
                "{} {field}={value:?}",
                v.key
            );
        }
        // upper-case hex of the same token is the same token
        let mut m = v.metadata.clone();
        m.insert(FIELD_TOKEN.into(), v.token.to_uppercase());
        assert!(verify_with(&m, &c.secrets, w, v.minted_at).is_ok());
    }
}

// ---------------------------------------------------------------------------
// Hook fixtures

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../../tests/fixtures/", $name))
    };
}

/// The clock the fixtures' tokens were minted at.
fn fixture_now() -> i64 {
    vectors().list[0].minted_at
}

fn none_exist(_: &Path) -> bool {
    false
}

struct Env {
    upload: UploadConfig,
    storage: crate::config::StorageConfig,
}

impl Env {
    fn new() -> Self {
        let vs = vectors();
        Env {
            upload: config(&[&vs.newest, &vs.older]),
            storage: storage_config(),
        }
    }

    fn gate(&self) -> Gate<'_> {
        Gate {
            upload: &self.upload,
            storage: &self.storage,
            upload_ids: crate::token::upload_id::UploadIds::Server,
        }
    }

    fn run(&self, body: &[u8], hook_name: Option<&str>) -> (Protocol, Decision, Answer) {
        self.run_with(body, hook_name, fixture_now(), &none_exist)
    }

    fn run_with(
        &self,
        body: &[u8],
        hook_name: Option<&str>,
        now: i64,
        lookup: &dyn Lookup,
    ) -> (Protocol, Decision, Answer) {
        let hook = parse(body, hook_name).unwrap();
        let (p, d) = (hook.protocol, decide(&hook, self.gate(), now, &[0; 16], lookup));
        let a = answer(p, &d);
        (p, d, a)
    }
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap()
}

fn is_empty_ok(a: &Answer) -> bool {
    a.status == 200 && a.content_type == "application/json" && a.body == b"{}"
}

#[test]
fn v2_fixture_headers_match_their_metadata() {
    for body in [
        &fixture!("tusd-v2/pre-create.json")[..],
        fixture!("tusd-v2/pre-create-older-secret.json"),
        fixture!("tusd-v2/pre-create-partial.json"),
        fixture!("tusd-v2/pre-create-final.json"),
        fixture!("rustus-v1/pre-create.json"),
    ] {
        let hook = parse(body, Some("pre-create")).unwrap();
        // The hook keeps no header: the one sent is read from the JSON.
        let v: Value = serde_json::from_slice(body).unwrap();
        let headers = v.get("Event").unwrap_or(&v)["HTTPRequest"]["Header"]
            .as_object()
            .unwrap();
        let (_, raw) = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Upload-Metadata"))
            .unwrap();
        assert_eq!(
            parse_upload_metadata(raw[0].as_str().unwrap()),
            hook.upload.metadata
        );
    }
}

#[test]
fn v2_pre_create_accepted() {
    let env = Env::new();
    let (p, d, a) = env.run(fixture!("tusd-v2/pre-create.json"), None);
    assert_eq!(p, Protocol::V2);
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!((d.outcome(), d.reason()), (HookOutcome::Allow, ReasonCode::Ok));
    assert_eq!(d.key.as_deref(), Some("photos/été 2026/plage.jpg"));
    assert!(is_empty_ok(&a));
}

#[test]
fn v2_pre_create_exists() {
    let env = Env::new();
    let exists = |p: &Path| p == Path::new("public/photos/été 2026/plage.jpg");
    let (_, d, a) = env.run_with(fixture!("tusd-v2/pre-create.json"), None, fixture_now(), &exists);
    assert_eq!(d.reason(), ReasonCode::Exists);
    assert_eq!(a.status, 200, "v2 rejections are 200 + RejectUpload");
    let v = json(&a);
    assert_eq!(v["RejectUpload"], true);
    assert_eq!(v["HTTPResponse"]["StatusCode"], 409);
}

#[test]
fn v2_pre_create_older_secret_and_rotation() {
    let mut env = Env::new();
    let body = fixture!("tusd-v2/pre-create-older-secret.json");
    assert_eq!(env.run(body, None).1.verdict, Verdict::Accept);
    env.upload = config(&[&vectors().newest]);
    let (_, d, a) = env.run(body, None);
    assert_eq!(
        (d.outcome(), d.reason()),
        (HookOutcome::Deny, ReasonCode::Token(UploadRefusal::TokenInvalid))
    );
    let v = json(&a);
    assert_eq!(v["HTTPResponse"]["StatusCode"], 403);
    assert_eq!(v["HTTPResponse"]["Header"]["Content-Type"], "application/json");
    let inner: Value = serde_json::from_str(v["HTTPResponse"]["Body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["error"]["code"], "token_invalid");
    let token = &parse(body, None).unwrap().upload.metadata[FIELD_TOKEN];
    assert!(!String::from_utf8_lossy(&a.body).contains(token.as_str()));
}

#[test]
fn v2_pre_create_expired_clock() {
    let env = Env::new();
    let body = fixture!("tusd-v2/pre-create.json");
    let (_, d, _) = env.run_with(body, None, fixture_now() + 3600 + 31, &none_exist);
    assert_eq!(d.reason(), ReasonCode::Token(UploadRefusal::TokenExpired));
}

#[test]
fn v2_pre_create_shapes_and_policies() {
    let mut env = Env::new();
    let (_, d, a) = env.run(fixture!("tusd-v2/pre-create-no-metadata.json"), None);
    assert_eq!(d.reason(), ReasonCode::Token(UploadRefusal::MetadataMissing));
    assert_eq!(json(&a)["HTTPResponse"]["StatusCode"], 400);

    let deferred = fixture!("tusd-v2/pre-create-deferred.json");
    let (_, d, a) = env.run(deferred, None);
    assert_eq!(d.reason(), ReasonCode::LengthRequired);
    assert_eq!(json(&a)["HTTPResponse"]["StatusCode"], 411);
    env.upload.allow_deferred_length = true;
    assert_eq!(env.run(deferred, None).1.verdict, Verdict::Accept);

    env.upload.content_types = vec!["image/*".parse().unwrap()];
    let (_, d, a) = env.run(fixture!("tusd-v2/pre-create-final.json"), None);
    assert_eq!(d.reason(), ReasonCode::ContentTypeNotAllowed);
    assert_eq!(json(&a)["HTTPResponse"]["StatusCode"], 415);
    assert_eq!(
        env.run(fixture!("tusd-v2/pre-create.json"), None).1.verdict,
        Verdict::Accept
    );
}

#[test]
fn v2_concatenation() {
    let mut env = Env::new();
    let partial = parse(fixture!("tusd-v2/pre-create-partial.json"), None).unwrap();
    assert!(partial.upload.is_partial);
    assert_eq!(
        env.run(fixture!("tusd-v2/pre-create-partial.json"), None)
            .1
            .verdict,
        Verdict::Accept
    );
    let fin = parse(fixture!("tusd-v2/pre-create-final.json"), None).unwrap();
    assert!(fin.upload.is_final);
    assert_eq!(fin.upload.partial_uploads, vec!["a1b2c3", "d4e5f6"]);
    // Parts nobody knows: refused (tusd would concatenate any finished upload).
    let (_, d, a) = env.run(fixture!("tusd-v2/pre-create-final.json"), None);
    assert_eq!(d.reason(), ReasonCode::ConcatInvalid);
    assert_eq!(json(&a)["HTTPResponse"]["StatusCode"], 403);
    // The same token's finished partial uploads: accepted.
    struct Parts(crate::token::upload::Metadata);
    impl Lookup for Parts {
        fn destination(&self, _: &Path) -> crate::tusd::Destination {
            crate::tusd::Destination::Free
        }
        fn part(&self, id: &str) -> Option<crate::tusd::Part> {
            ["a1b2c3", "d4e5f6"].contains(&id).then(|| crate::tusd::Part {
                is_partial: true,
                finished: true,
                metadata: self.0.clone(),
            })
        }
    }
    let parts = Parts(fin.upload.metadata.clone());
    let (_, d, _) = env.run_with(
        fixture!("tusd-v2/pre-create-final.json"),
        None,
        fixture_now(),
        &parts,
    );
    assert_eq!(d.verdict, Verdict::Accept);
    env.upload.max_size = Some(1_048_575);
    let (_, d, _) = env.run_with(
        fixture!("tusd-v2/pre-create-final.json"),
        None,
        fixture_now(),
        &parts,
    );
    assert_eq!(d.reason(), ReasonCode::TooLarge);
    let (_, d, a) = env.run(fixture!("tusd-v2/post-finish-partial.json"), None);
    assert_eq!(
        (d.outcome(), d.reason()),
        (HookOutcome::Skip, ReasonCode::Partial)
    );
    assert!(is_empty_ok(&a));
}

#[test]
fn v2_post_finish_plans_the_move_long_after_expiry() {
    let env = Env::new();
    let body = fixture!("tusd-v2/post-finish.json");
    let (_, d, a) = env.run_with(body, None, fixture_now() + 365 * 86_400, &none_exist);
    assert!(is_empty_ok(&a));
    assert_eq!(d.outcome(), HookOutcome::Allow);
    let plan = d.plan().expect("a finalize plan");
    assert_eq!(
        plan.source(),
        Path::new("/var/lib/tusd/uploads/0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    );
    assert_eq!(
        plan.info_path(),
        Some(Path::new(
            "/var/lib/tusd/uploads/0f1e2d3c4b5a69788796a5b4c3d2e1f0.info"
        ))
    );
    assert_eq!(plan.destination(), Path::new("private/invoices/inv-001.pdf"));
    assert_eq!(plan.size(), 1_048_576);
    assert_eq!(d.upload_id, "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
}

#[test]
fn v2_pre_finish_sniffing_is_opt_in() {
    let env = Env::new();
    let body = fixture!("tusd-v2/pre-finish.json");
    let (_, d, a) = env.run(body, None);
    assert_eq!(d.verdict, Verdict::Skip(ReasonCode::Ignored));
    assert!(is_empty_ok(&a));

    struct Head(&'static [u8]);
    impl Lookup for Head {
        fn destination(&self, _: &Path) -> crate::tusd::Destination {
            crate::tusd::Destination::Free
        }
        fn leading_bytes(&self, _: &Upload) -> Result<Option<Vec<u8>>, crate::tusd::StoreUnavailable> {
            Ok(Some(self.0.to_vec()))
        }
    }
    let (_, d, a) = env.run_with(body, None, fixture_now(), &Head(b"\xff\xd8\xff\xe0"));
    assert_eq!(d.verdict, Verdict::Accept);
    assert!(is_empty_ok(&a));
    let (_, d, a) = env.run_with(body, None, fixture_now(), &Head(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(d.reason(), ReasonCode::ContentMismatch);
    let v = json(&a);
    assert!(v.get("RejectUpload").is_none());
    assert_eq!(v["HTTPResponse"]["StatusCode"], 415);
}

#[test]
fn v2_nothing_to_decide() {
    let env = Env::new();
    for (body, hook) in [
        (&fixture!("tusd-v2/post-receive.json")[..], HookName::PostReceive),
        (fixture!("tusd-v2/post-terminate.json"), HookName::PostTerminate),
        (
            fixture!("tusd-v2/unknown-type.json"),
            HookName::Other("pre-access".into()),
        ),
    ] {
        let (_, d, a) = env.run(body, None);
        assert_eq!(d.hook, hook);
        assert_eq!(d.verdict, Verdict::Skip(ReasonCode::Ignored));
        assert_eq!(d.outcome(), HookOutcome::Skip);
        assert!(is_empty_ok(&a));
    }
}

#[test]
fn v2_event_without_upload_is_400() {
    let err = parse(fixture!("tusd-v2/no-upload.json"), None).unwrap_err();
    assert_eq!(err, HookError::NoUpload);
    let a = answer_error(&err);
    assert_eq!(a.status, 400);
    assert_eq!(json(&a)["error"]["code"], "bad_hook");
}

#[test]
fn rustus_pre_create() {
    let env = Env::new();
    let body = fixture!("rustus-v1/pre-create.json");
    assert_eq!(parse(body, None).unwrap_err(), HookError::NoHookName);
    let (p, d, a) = env.run(body, Some("pre-create"));
    assert_eq!(p, Protocol::V1);
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(d.upload_id, "5b0c3f7e-6a4d-4b8e-9f21-0c1d2e3f4a5b");
    assert!(is_empty_ok(&a));
    // rejection reaches the client directly: status + JSON body
    let (_, d, a) = env.run_with(body, Some("pre-create"), fixture_now() + 7200, &none_exist);
    assert_eq!(d.reason(), ReasonCode::Token(UploadRefusal::TokenExpired));
    assert_eq!(a.status, 403);
    assert_eq!(json(&a)["error"]["code"], "token_expired");
    let exists = |_: &Path| true;
    let (_, _, a) = env.run_with(body, Some("pre-create"), fixture_now(), &exists);
    assert_eq!(a.status, 409);
    assert_eq!(json(&a)["error"]["code"], "exists");
}

#[test]
fn rustus_deferred_and_post_finish() {
    let env = Env::new();
    let (_, d, a) = env.run(fixture!("rustus-v1/pre-create-deferred.json"), Some("pre-create"));
    assert_eq!(d.reason(), ReasonCode::LengthRequired);
    assert_eq!(a.status, 411);
    let (_, d, a) = env.run(fixture!("rustus-v1/post-finish.json"), Some("post-finish"));
    assert!(is_empty_ok(&a));
    let plan = d.plan().expect("plan");
    assert_eq!(
        plan.source(),
        Path::new("/var/lib/rustus/data/5b0c3f7e-6a4d-4b8e-9f21-0c1d2e3f4a5b")
    );
    assert_eq!(plan.info_path(), None);
    assert_eq!(plan.destination(), Path::new("private/invoices/inv-001.pdf"));
    // the same body announced as pre-create is decided as a pre-create
    let (_, d, _) = env.run(fixture!("rustus-v1/post-finish.json"), Some("pre-create"));
    assert_eq!(d.verdict, Verdict::Accept);
}

/// [`ReasonCode::hooks`] and [`HookOutcome::of`] hold for every decision the
/// fixtures give (each hook body of tusd v2, tusd v2.9.1 as captured, rustus),
/// under every variation that changes the reason: the clock (valid, expired),
/// the destination (free, existing, the store not answering), the leading
/// bytes (none, wrong, the store not answering), the
/// upload IDs (`server`, `signed`).
#[test]
fn every_decision_is_one_its_reason_lists() {
    use crate::tusd::{Destination, StoreUnavailable};
    struct World {
        destination: Destination,
        head: Result<Option<&'static [u8]>, StoreUnavailable>,
    }
    impl Lookup for World {
        fn destination(&self, _: &Path) -> Destination {
            self.destination
        }
        fn leading_bytes(&self, _: &Upload) -> Result<Option<Vec<u8>>, StoreUnavailable> {
            self.head.map(|h| h.map(<[u8]>::to_vec))
        }
    }
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut seen = std::collections::BTreeSet::new();
    for (dir, v1) in [
        ("tusd-v2", false),
        ("tusd-v2.9.1-captured", false),
        ("rustus-v1", true),
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let body = std::fs::read(&path).unwrap();
            let hook_name = HookName::LABELS.into_iter().find(|h| name.starts_with(h));
            let Ok(hook) = parse(&body, if v1 { hook_name } else { None }) else {
                continue;
            };
            for upload_ids in [
                crate::token::upload_id::UploadIds::Server,
                crate::token::upload_id::UploadIds::Signed,
            ] {
                let gate = Gate {
                    upload_ids,
                    ..env.gate()
                };
                for now in [fixture_now(), fixture_now() + 10 * 365 * 86_400] {
                    for world in [
                        World {
                            destination: Destination::Free,
                            head: Ok(None),
                        },
                        World {
                            destination: Destination::Exists,
                            head: Ok(Some(b"\x89PNG\r\n\x1a\n")),
                        },
                        // The bucket did not answer (backend = "s3").
                        World {
                            destination: Destination::Unavailable,
                            head: Err(StoreUnavailable),
                        },
                    ] {
                        let d = decide(&hook, gate, now, &[0; 16], &world);
                        let (hook_label, reason) = (d.hook.label(), d.reason());
                        assert!(
                            reason.hooks().iter().any(|h| h.label() == hook_label),
                            "{dir}/{name}: {hook_label} decided {} but ReasonCode::hooks does not list it",
                            reason.as_str()
                        );
                        assert_eq!(d.outcome(), HookOutcome::of(reason), "{dir}/{name}");
                        seen.insert((hook_label, reason.as_str()));
                    }
                }
            }
        }
    }
    // The fixtures reach every hook's own reasons, not only the happy path.
    for pair in [
        ("pre-create", "ok"),
        ("pre-create", "token_expired"),
        ("pre-create", "exists"),
        ("pre-create", "storage_unavailable"),
        ("pre-finish", "content_mismatch"),
        ("pre-finish", "storage_unavailable"),
        ("post-finish", "ok"),
        ("post-finish", "partial"),
        ("post-finish", "upload_id_invalid"),
        ("post-receive", "ignored"),
        ("other", "ignored"),
    ] {
        assert!(seen.contains(&pair), "{pair:?} not reached: {seen:?}");
    }
}
