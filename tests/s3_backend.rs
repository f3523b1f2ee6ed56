//! The S3 backend (issue 21) against the real engines on loopback
//! (`common::s3`): the capability self-test at start chooses, by effect,
//! the method each engine really honours: SeaweedFS renames (RenameObject
//! moves, and refuses an existing destination with 412 leaving it intact);
//! versitygw gets the portable multipart copy (its RenameObject writes an
//! empty destination and its CopyObject ignores `If-None-Match: *`). The
//! choice is exported as `assetgate_s3_publish_method{method}`, and the
//! scratch keys are gone afterwards.
//!
//! Peers: `scripts/s3-peers.sh` builds the engines; a missing one fails the
//! test with the command that installs it.

mod common;

use assetgate::config::{load_from, Sources};
use assetgate::metrics::{Metrics, PublishMethod};
use assetgate::s3::Store;
use common::s3::S3Engine;

/// `[storage.s3]` for `engine`, through the loader (credentials from the
/// environment, as a deployment would set them).
fn s3_config(engine: &S3Engine) -> assetgate::config::S3Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assetgate.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            engine.endpoint(),
            engine.bucket
        ),
    )
    .unwrap();
    let env = [
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", engine.access_key.as_str()),
        (
            "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
            engine.secret_key.as_str(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = load_from(&Sources { file: Some(path) }, &env).unwrap();
    config.storage.s3.unwrap()
}

fn self_test(engine: &S3Engine) -> (Store, String) {
    let config = s3_config(engine);
    let metrics = Metrics::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(Store::start(&config, &metrics)).unwrap();
    (store, metrics.render())
}

/// Exactly `chosen` at 1 in the exposition, every other method at 0.
fn assert_exported(exposition: &str, chosen: PublishMethod) {
    for m in PublishMethod::ALL {
        let line = format!(
            "assetgate_s3_publish_method{{method=\"{}\"}} {}",
            m.as_str(),
            u8::from(m == chosen)
        );
        assert!(exposition.contains(&line), "{line} not in:\n{exposition}");
    }
}

/// Nothing left under assetgate's own prefix: objects or multipart uploads.
fn assert_scratch_removed(engine: &S3Engine) {
    let left = engine.must(&["list", &engine.bucket, "assetgate/"]);
    assert_eq!(left["objects"], serde_json::json!([]), "{left:#}");
    assert_eq!(left["uploads"], serde_json::json!([]), "{left:#}");
}

#[test]
fn seaweedfs_gets_rename() {
    let weed = S3Engine::seaweedfs("assets");
    let (store, exposition) = self_test(&weed);
    assert_eq!(store.method, PublishMethod::Rename);
    assert_exported(&exposition, PublishMethod::Rename);
    assert_scratch_removed(&weed);
}

#[test]
fn versitygw_gets_the_portable_multipart_copy() {
    let vgw = S3Engine::versitygw("assets");
    let (store, exposition) = self_test(&vgw);
    assert_eq!(store.method, PublishMethod::MultipartCopy);
    assert_exported(&exposition, PublishMethod::MultipartCopy);
    assert_scratch_removed(&vgw);
}

/// Wrong credentials: the self-test refuses to start, saying the bucket
/// could not be used (not that no method is honoured), and shows no secret.
#[test]
fn wrong_credentials_refuse_to_start_without_the_secret() {
    let vgw = S3Engine::versitygw("assets");
    let mut config = s3_config(&vgw);
    config.secret_access_key = assetgate::secret::Secret::new(b"WRONG-SECRET-NEVER-SHOWN".to_vec());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(Store::start(&config, &Metrics::new())).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("could not use the bucket"), "{shown}");
    assert!(
        !shown.contains("NEVER-SHOWN") && !shown.contains(&vgw.secret_key),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------
// The publish (`assetgate::s3::publish`) on both engines, by the method each
// one's self-test chose.

use assetgate::s3::ops::{self, Attributes};
use assetgate::s3::publish::{publish, PublishError, Published, Request};
use sha2::{Digest as _, Sha256};

struct Bench {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Bench {
    fn new(engine: &S3Engine) -> Bench {
        let config = s3_config(engine);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(Store::start(&config, &Metrics::new())).unwrap();
        Bench { rt, store }
    }

    fn bucket(&self) -> &str {
        &self.store.config.bucket
    }

    /// What tusd leaves for a finished upload: `tus/<id>` and `tus/<id>.info`.
    fn upload(&self, id: &str, bytes: &[u8]) {
        let c = &self.store.client;
        self.rt.block_on(async {
            ops::put(c, self.bucket(), &format!("tus/{id}"), bytes)
                .await
                .unwrap();
            ops::put(c, self.bucket(), &format!("tus/{id}.info"), b"{}")
                .await
                .unwrap();
        });
    }

    fn publish(
        &self,
        id: &str,
        destination: &str,
        size: u64,
        check: Option<&str>,
    ) -> Result<Published, PublishError> {
        let (upload_key, info_key) = (format!("tus/{id}"), format!("tus/{id}.info"));
        let req = Request {
            bucket: self.bucket(),
            upload_key: &upload_key,
            info_key: &info_key,
            destination,
            size,
            attrs: Attributes {
                content_type: "application/pdf",
                upload_id: id,
            },
            content_check: check,
            check_info: false,
        };
        self.rt.block_on(publish(
            &self.store.client,
            self.store.method,
            req,
            &mut |_, _| true,
        ))
    }

    fn head(&self, key: &str) -> Option<ops::Head> {
        self.rt
            .block_on(ops::head(&self.store.client, self.bucket(), key))
            .unwrap()
    }

    fn bytes(&self, key: &str) -> Vec<u8> {
        self.rt
            .block_on(ops::get(&self.store.client, self.bucket(), key, None))
            .unwrap()
    }
}

fn pdf(n: usize, fill: u8) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    b.resize(n, fill);
    b
}

/// Lands with the token's Content-Type and the marker, byte for byte, the
/// SHA-256 of what is in the bucket; the upload object and `.info` are gone;
/// the same publish again (a duplicate post-finish) changes nothing.
fn lands_and_duplicates_are_harmless(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let body = pdf(300_000, b'a');
    bench.upload("obj1+mp1", &body);
    let done = bench
        .publish(
            "obj1+mp1",
            "private/docs/a b+c.pdf",
            body.len() as u64,
            Some("application/pdf"),
        )
        .unwrap();
    assert_eq!(
        done,
        Published {
            bytes: body.len() as u64,
            sha256: Sha256::digest(&body).into(),
            already: false,
            removed: true
        }
    );
    let head = bench.head("private/docs/a b+c.pdf").unwrap();
    assert_eq!(head.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(head.marker.as_deref(), Some("obj1+mp1"));
    assert_eq!(bench.bytes("private/docs/a b+c.pdf"), body);
    assert!(bench.head("tus/obj1+mp1").is_none() && bench.head("tus/obj1+mp1.info").is_none());
    // A duplicate: already published, nothing rewritten.
    let again = bench
        .publish("obj1+mp1", "private/docs/a b+c.pdf", body.len() as u64, None)
        .unwrap();
    assert!(again.already, "{again:?}");
    assert_eq!(again.sha256, done.sha256);
    assert_eq!(bench.bytes("private/docs/a b+c.pdf"), body);
}

/// Two uploads race for one key: one is published, the other is a conflict;
/// the first's bytes stay, the loser's upload stays for the operator.
fn racing_uploads_one_wins(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let (a, b) = (pdf(200_000, b'A'), pdf(200_000, b'B'));
    bench.upload("objA+mp", &a);
    bench.upload("objB+mp", &b);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| bench.publish("objA+mp", "public/race.pdf", a.len() as u64, None));
        let tb = s.spawn(|| bench.publish("objB+mp", "public/race.pdf", b.len() as u64, None));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (winner, loser, winner_bytes) = match (&ra, &rb) {
        (Ok(_), Err(PublishError::Conflict)) => ("objA+mp", "objB+mp", &a),
        (Err(PublishError::Conflict), Ok(_)) => ("objB+mp", "objA+mp", &b),
        other => panic!("one published and one conflict expected: {other:?}"),
    };
    assert_eq!(bench.bytes("public/race.pdf"), *winner_bytes);
    assert_eq!(
        bench.head("public/race.pdf").unwrap().marker.as_deref(),
        Some(winner)
    );
    assert!(
        bench.head(&format!("tus/{loser}")).is_some(),
        "the loser's upload stays"
    );
    assert!(bench.head(&format!("tus/{winner}")).is_none());
}

/// An object already at the destination (not assetgate's, or another
/// upload's) is never overwritten; a content mismatch is never published.
fn nothing_is_ever_overwritten(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let existing = b"an object someone put there".to_vec();
    bench
        .rt
        .block_on(ops::put(
            &bench.store.client,
            bench.bucket(),
            "private/taken.pdf",
            &existing,
        ))
        .unwrap();
    let body = pdf(1000, b'x');
    bench.upload("objT+mp", &body);
    assert_eq!(
        bench.publish("objT+mp", "private/taken.pdf", 1000, None),
        Err(PublishError::Conflict)
    );
    assert_eq!(bench.bytes("private/taken.pdf"), existing);
    assert!(bench.head("tus/objT+mp").is_some());
    // Declared a PDF, is not one: refused before anything is written.
    bench.upload("objM+mp", &vec![0u8; 2000]);
    assert!(matches!(
        bench.publish("objM+mp", "private/m.pdf", 2000, Some("application/pdf")),
        Err(PublishError::ContentMismatch { .. })
    ));
    assert!(bench.head("private/m.pdf").is_none());
    // Not the declared size: not finished.
    assert!(matches!(
        bench.publish("objT+mp", "private/other.pdf", 999, None),
        Err(PublishError::NotFinished {
            expected: 999,
            found: 1000
        })
    ));
    assert!(bench.head("private/other.pdf").is_none());
}

#[test]
fn seaweedfs_publish_lands_and_duplicates_are_harmless() {
    lands_and_duplicates_are_harmless(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_publish_lands_and_duplicates_are_harmless() {
    lands_and_duplicates_are_harmless(&S3Engine::versitygw("assets"));
}

#[test]
fn seaweedfs_racing_uploads_one_wins() {
    racing_uploads_one_wins(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_racing_uploads_one_wins() {
    racing_uploads_one_wins(&S3Engine::versitygw("assets"));
}

#[test]
fn seaweedfs_nothing_is_ever_overwritten() {
    nothing_is_ever_overwritten(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_nothing_is_ever_overwritten() {
    nothing_is_ever_overwritten(&S3Engine::versitygw("assets"));
}

// ---------------------------------------------------------------------------
// Served as signed: what each publish method leaves for nginx to serve, for
// signed types x key extensions, from an upload object made as tusd's
// s3store makes it (its Content-Type and `filetype` metadata from the
// client's unsigned `filetype`: here `text/html`, the worst it can say).

/// Signed types: a download, two inert ones, and one with parameters (kept
/// verbatim).
const SIGNED_TYPES: &[&str] = &[
    "application/octet-stream",
    "text/plain",
    "image/png",
    "text/plain; charset=utf-8",
];
/// Key extensions: two an engine could map to an active type, one to an
/// inert one, none, and one `assetgate-types.conf` does not list (so
/// pre-create accepts it signed `application/octet-stream`, as on the fs
/// backend, where nginx serves it as that) but an engine's own table may.
const EXTENSIONS: &[&str] = &[".html", ".svg", ".png", "", ".shtml"];

/// Publishes every signed type x extension by each of `methods` and
/// requires what nginx serves (`x-amz-meta-assetgate-type`) to be the
/// signed type verbatim, and nothing of tusd's metadata on the published
/// object. The objects' own `Content-Type` (which nginx does not serve) is
/// printed as a table (`--no-capture`): the engines' behaviour, recorded.
fn served_types_are_the_signed_ones(engine: &S3Engine, methods: &[PublishMethod]) {
    let bench = Bench::new(engine);
    let c = &bench.store.client;
    // The bytes of an HTML page: an engine that sniffs content would say so.
    let body = b"<!doctype html><html><script>alert(document.domain)</script></html>\n".to_vec();
    let mut table = vec![format!(
        "{:?}: method | signed | key | stored Content-Type | x-amz-meta-assetgate-type",
        engine.engine
    )];
    let mut wrong = Vec::new();
    for &method in methods {
        for (t, signed) in SIGNED_TYPES.iter().enumerate() {
            for ext in EXTENSIONS {
                let id = format!("{}-{t}-{}+mp", method.as_str(), ext.trim_start_matches('.'));
                let (upload_key, info_key) = (format!("tus/{id}"), format!("tus/{id}.info"));
                let destination = format!("private/{}/{t}/x{ext}", method.as_str());
                bench.rt.block_on(async {
                    c.put_object()
                        .bucket(bench.bucket())
                        .key(&upload_key)
                        .content_type("text/html")
                        .metadata("filetype", "text/html")
                        .metadata("filename", format!("x{ext}"))
                        .body(body.clone().into())
                        .send()
                        .await
                        .unwrap();
                    ops::put(c, bench.bucket(), &info_key, b"{}").await.unwrap();
                });
                let req = Request {
                    bucket: bench.bucket(),
                    upload_key: &upload_key,
                    info_key: &info_key,
                    destination: &destination,
                    size: body.len() as u64,
                    attrs: Attributes {
                        content_type: signed,
                        upload_id: &id,
                    },
                    content_check: None,
                    check_info: false,
                };
                let outcome = bench.rt.block_on(publish(c, method, req, &mut |_, _| true));
                let head = bench
                    .rt
                    .block_on(c.head_object().bucket(bench.bucket()).key(&destination).send());
                let Ok(head) = head else {
                    wrong.push(format!(
                        "{method:?} {signed:?} x{ext}: not published ({outcome:?})"
                    ));
                    continue;
                };
                let meta = head.metadata().cloned().unwrap_or_default();
                let served = meta.get(ops::TYPE).cloned();
                table.push(format!(
                    "{} | {signed} | x{ext} | {} | {}",
                    method.as_str(),
                    head.content_type().unwrap_or("(none)"),
                    served.as_deref().unwrap_or("(none)"),
                ));
                if outcome.is_err() || served.as_deref() != Some(*signed) {
                    wrong.push(format!(
                        "{method:?} {signed:?} x{ext}: nginx would serve {served:?} (publish: {outcome:?})"
                    ));
                }
                for tusds in ["filetype", "filename"] {
                    if let Some(v) = meta.get(tusds) {
                        wrong.push(format!(
                            "{method:?} {signed:?} x{ext}: tusd's unsigned {tusds} {v:?} was published"
                        ));
                    }
                }
                assert!(
                    bench.bytes(&destination) == body,
                    "{method:?} {signed:?} x{ext}: not the upload's bytes"
                );
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(
        wrong.is_empty(),
        "not served as signed:\n{}\n\n{}",
        wrong.join("\n"),
        table.join("\n")
    );

    // The check after the write: an object with this upload's marker but
    // another (or no) signed type, as an engine that dropped it would leave
    // (or an assetgate before this check), is not reported published: no
    // event, the upload stays.
    for (n, found) in [(0, None), (1, Some("text/html"))] {
        let id = format!("kept{n}+mp");
        let destination = format!("private/kept{n}.html");
        bench.upload(&id, &body);
        bench.rt.block_on(async {
            let mut put = c
                .put_object()
                .bucket(bench.bucket())
                .key(&destination)
                .metadata(ops::MARKER, &id)
                .body(body.clone().into());
            if let Some(t) = found {
                put = put.metadata(ops::TYPE, t);
            }
            put.send().await.unwrap();
        });
        let (upload_key, info_key) = (format!("tus/{id}"), format!("tus/{id}.info"));
        let req = Request {
            bucket: bench.bucket(),
            upload_key: &upload_key,
            info_key: &info_key,
            destination: &destination,
            size: body.len() as u64,
            attrs: Attributes {
                content_type: "application/octet-stream",
                upload_id: &id,
            },
            content_check: None,
            check_info: false,
        };
        let mut committed = false;
        let outcome = bench
            .rt
            .block_on(publish(c, bench.store.method, req, &mut |_, _| {
                committed = true;
                true
            }));
        assert_eq!(
            outcome,
            Err(PublishError::TypeNotKept {
                found: found.map(str::to_owned)
            }),
            "{destination}"
        );
        assert!(!committed, "{destination}: committed");
        assert!(
            bench.head(&upload_key).is_some(),
            "{destination}: the upload was removed"
        );
    }
}

/// SeaweedFS: all three methods (the self-test chooses rename there; the
/// other two are what it would fall back to).
#[test]
fn seaweedfs_serves_the_signed_type_whatever_the_key() {
    served_types_are_the_signed_ones(
        &S3Engine::seaweedfs("assets"),
        &[
            PublishMethod::Rename,
            PublishMethod::ConditionalCopy,
            PublishMethod::MultipartCopy,
        ],
    );
}

/// versitygw: the portable method (its choice) and the conditional copy on
/// fresh keys (its RenameObject writes empty objects: never chosen there).
#[test]
fn versitygw_serves_the_signed_type_whatever_the_key() {
    served_types_are_the_signed_ones(
        &S3Engine::versitygw("assets"),
        &[PublishMethod::ConditionalCopy, PublishMethod::MultipartCopy],
    );
}

// ---------------------------------------------------------------------------
// Behind the publisher's seam: a hook's upload planned by post-finish's
// rules, published by `Publisher` over `S3Backend`, as the daemon will.

use std::sync::Arc;
use std::time::Duration;

use assetgate::finalize::{Cancel, Cleanup, FinalizeError, Method};
use assetgate::policy::Visibility;
use assetgate::publisher::{Publisher, Report, S3Backend};
use assetgate::tusd::protocol::Storage;
use assetgate::tusd::{postfinish, Gate, Upload};

const UPLOAD_SECRET: &str = "s3-backend-upload-secret-01";

/// The planned publish of `bytes` as upload `<object>+mp` to `private/<key>`,
/// the hook's Storage as tusd's s3store sends it.
fn planned(engine: &S3Engine, object: &str, key: &str, bytes: &[u8]) -> assetgate::tusd::FinalizePlan {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assetgate.toml");
    std::fs::write(
        &path,
        format!(
            "[upload]\ncheck_content = true\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            engine.endpoint(),
            engine.bucket
        ),
    )
    .unwrap();
    let env = [
        ("ASSETGATE_UPLOAD_SECRET", UPLOAD_SECRET),
        ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", engine.access_key.as_str()),
        (
            "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
            engine.secret_key.as_str(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = load_from(&Sources { file: Some(path) }, &env).unwrap();
    let upload = Upload {
        id: format!("{object}+mp"),
        size: Some(bytes.len() as u64),
        offset: bytes.len() as u64,
        metadata: assetgate::token::upload::mint(
            UPLOAD_SECRET.as_bytes(),
            key,
            "application/pdf",
            Visibility::Private,
            4_102_444_800,
        ),
        storage: Some(Storage {
            kind: Some("s3store".into()),
            path: None,
            info_path: None,
            bucket: Some(engine.bucket.clone()),
            key: Some(format!("tus/{object}")),
        }),
        ..Upload::default()
    };
    // The publisher is what this exercises, with an upload ID made up here:
    // the plan is built with `server` IDs (not verified), which the loader
    // refuses with backend = "s3" (a daemon on S3 verifies signed IDs).
    let gate = Gate {
        upload: &config.upload,
        storage: &config.storage,
        upload_ids: assetgate::token::upload_id::UploadIds::Server,
    };
    postfinish::plan(&upload, gate).unwrap()
}

fn through_the_publisher(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let publisher = Publisher::new(Arc::new(S3Backend::new(
        bench.store.clone(),
        bench.rt.handle().clone(),
        assetgate::publisher::Stale {
            max_ttl: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(60),
            abandon_after: Duration::from_secs(86400),
        },
    )));
    let body = pdf(50_000, b'p');
    bench.upload("objP", &body);
    let plan = planned(engine, "objP", "report 1.pdf", &body);
    let Report::Published(done) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("published")
    };
    assert_eq!(done.bytes, body.len() as u64);
    assert_eq!(done.cleanup, Cleanup::Done);
    assert_eq!(done.destination, std::path::Path::new("private/report 1.pdf"));
    assert_eq!(bench.bytes("private/report 1.pdf"), body);
    assert_eq!(
        bench.head("private/report 1.pdf").unwrap().marker.as_deref(),
        Some("objP+mp")
    );
    // The duplicate post-finish.
    let Report::Published(again) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("a duplicate is harmless")
    };
    assert_eq!(again.method, Method::AlreadyFinalized);
    // Another upload for the same key: the conflict, as on fs.
    bench.upload("objQ", &pdf(10, b'q'));
    let other = planned(engine, "objQ", "report 1.pdf", &pdf(10, b'q'));
    match publisher.publish(&other, &Cancel::new()) {
        Report::NotPublished(e) => assert_eq!(e, FinalizeError::Exists),
        r => panic!("conflict expected: {r:?}"),
    }
    assert_eq!(bench.bytes("private/report 1.pdf"), body);
}

#[test]
fn seaweedfs_through_the_publisher() {
    through_the_publisher(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_through_the_publisher() {
    through_the_publisher(&S3Engine::versitygw("assets"));
}

// ---------------------------------------------------------------------------
// End to end: `assetgate serve` with backend = "s3" (self-test at start,
// logged and exported), tusd v2.9.1's s3store hooking into it, one upload by
// raw tus requests: it lands at private/<key> with the token's type and the
// marker, and tusd's objects are gone. With `[tusd] upload_ids = "signed"`
// the ID pre-create issued is the part of tusd's `<objectId>+<multipartId>`
// before `+`, and a forged ID is refused.

use common::tusd::{Tusd, Version};
use common::Daemon;

/// `assetgate serve` with `config` and `engine`'s credentials from the
/// environment (never in the file).
fn start_gate(engine: &S3Engine, config: &str) -> Daemon {
    Daemon::start_with(
        config,
        &[],
        &[
            ("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", engine.access_key.as_str()),
            (
                "ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY",
                engine.secret_key.as_str(),
            ),
        ],
    )
}

/// [`start_gate`], once its capability self-test chose a publish method.
fn started_gate(engine: &S3Engine, config: &str) -> Daemon {
    let gate = start_gate(engine, config);
    assert!(
        gate.wait_log(
            "S3 self-test: publishing with this no-overwrite method",
            Duration::from_secs(5)
        ),
        "{:#?}",
        gate.logs()
    );
    gate
}

fn serve_publishes_a_tusd_upload(engine: &S3Engine, method: &str) {
    serve_publishes_a_tusd_upload_with(engine, method, "signed");
}

/// `ids`: `[tusd] upload_ids`. Returns the daemon and the upload's tus ID.
fn serve_publishes_a_tusd_upload_with(engine: &S3Engine, method: &str, ids: &str) -> (Daemon, String) {
    let config = format!(
        "{}[tusd]\nupload_ids = \"{ids}\"\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket
    );
    let gate = started_gate(engine, &config);
    let line = format!("assetgate_s3_publish_method{{method=\"{method}\"}}");
    assert_eq!(gate.metric(&line), 1.0, "{line}");
    assert!(
        !gate.logs().iter().any(|l| l.contains(&engine.secret_key)),
        "the secret key is in the log"
    );

    let dir = tempfile::tempdir().unwrap();
    let flags = [
        format!("-s3-bucket={}", engine.bucket),
        format!("-s3-endpoint={}", engine.endpoint()),
        "-s3-object-prefix=tus/".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let hook_url = format!("http://{}/tusd", gate.addr);
    let tusd = Tusd::start_env(Version::V2, dir.path(), &hook_url, &flags, engine.tusd_env());
    let logs = || {
        format!(
            "tusd:\n{}\nassetgate:\n{:#?}\nengine:\n{}",
            tusd.log(),
            gate.logs(),
            engine.log()
        )
    };

    let data = pdf(120_000, b'e');
    let metadata = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        "e2e/report.pdf",
        "application/pdf",
        Visibility::Private,
        common::now() + 3600,
    );
    use base64::Engine as _;
    let header = metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Upload-Metadata: {header}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    let id = location.split_once("/files/").expect("a tus URL").1.to_string();
    let mut patch = format!(
        "PATCH /files/{id} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    patch.extend_from_slice(&data);
    let (status, _, body) = common::raw_request(addr, &patch);
    assert_eq!(
        status,
        204,
        "patch: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );

    // post-finish runs after tusd's answer: wait for the published object
    // (a state, bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = engine.must(&["get", &engine.bucket, "private/e2e/report.pdf"]);
        if got["ok"] == true || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got["ok"], true, "{got}\n{}", logs());
    assert_eq!(got["size"], data.len() as u64, "{got}");
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(&data)), "{got}");
    assert_eq!(got["content_type"], "application/pdf", "{got}");
    assert_eq!(got["metadata"]["assetgate-upload"], id.as_str(), "{got}");
    // tusd's objects are removed after the publish (same bounded wait).
    let left = loop {
        let left = engine.must(&["list", &engine.bucket, "tus/"]);
        if left["objects"] == serde_json::json!([]) || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(left["objects"], serde_json::json!([]), "{left}\n{}", logs());
    assert_eq!(left["uploads"], serde_json::json!([]), "{left}");
    (gate, id)
}

/// `upload_ids = "signed"` on SeaweedFS: tusd v2.9.1's s3store takes the ID
/// pre-create issued as its object ID (`<issued>+<multipartId>`) and the
/// upload lands; a forged post-finish (a valid token, an object ID nobody
/// issued) is kept with `upload_id_invalid` and publishes nothing.
#[test]
fn seaweedfs_signed_ids_land_and_forged_ids_do_not() {
    let engine = S3Engine::seaweedfs("assets");
    let (gate, id) = serve_publishes_a_tusd_upload_with(&engine, "rename", "signed");
    let (object_id, multipart) = id.split_once('+').expect("an s3store ID");
    assert!(!multipart.is_empty(), "{id}");
    // pre-create's ID: 32 hex digits of nonce and 32 of MAC.
    assert!(
        object_id.len() == 64 && object_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let meta = common::hooks::metadata(
        common::UPLOAD_SECRET,
        "forged/x.pdf",
        "private",
        "application/pdf",
        common::now() + 3600,
    );
    let forged_object = "0123456789abcdef".repeat(4);
    let mut ev = common::hooks::v2_event(
        "post-finish",
        meta,
        10,
        serde_json::json!({"Type": "s3store", "Bucket": engine.bucket, "Key": format!("tus/{forged_object}")}),
    );
    ev["Event"]["Upload"]["ID"] = serde_json::json!(format!("{forged_object}+{multipart}"));
    ev["Event"]["Upload"]["Offset"] = serde_json::json!(10);
    common::hooks::post(gate.addr, ev.to_string().as_bytes(), &[]);
    let line =
        "assetgate_hook_decisions_total{decision=\"deny\",hook=\"post-finish\",reason=\"upload_id_invalid\"}";
    assert_eq!(gate.metric(line), 1.0, "{line}\n{:#?}", gate.logs());
    let got = engine.must(&["get", &engine.bucket, "private/forged/x.pdf"]);
    assert_eq!(got["ok"], false, "{got}");
}

// ---------------------------------------------------------------------------
// Session binding on S3: nginx's `/session` subrequest is answered from the
// bucket's `<upload_prefix><objectId>.info` (`assetgate::s3::session`).

/// `session_binding = "token"` through the shipped nginx uploads location on
/// SeaweedFS and versitygw (tusd v2.9.1 s3store, upload_ids = "signed"): a PATCH and a HEAD
/// with the creating Upload-Metadata resume; with another valid token's they
/// are refused (403 token_mismatch), an unknown object ID is unknown_upload,
/// and the upload lands once finished.
#[test]
fn seaweedfs_session_binding_reads_the_info_from_the_bucket() {
    session_binding_reads_the_info_from_the_bucket(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_session_binding_reads_the_info_from_the_bucket() {
    session_binding_reads_the_info_from_the_bucket(&S3Engine::versitygw("assets"));
}

/// The daemon (`[upload] session_binding = mode`, `upload_ids = "signed"`),
/// tusd v2.9.1 s3store and nginx with the shipped uploads location, on
/// `engine`.
struct SessionStack {
    ngx: common::ngx::Nginx,
    tusd: Tusd,
    gate: Daemon,
    _dir: tempfile::TempDir,
}

impl SessionStack {
    fn start(engine: &S3Engine, mode: &str) -> SessionStack {
        use common::ngx::{nginx_main_conf, Nginx};
        let config = format!(
            "{}session_binding = \"{mode}\"\n[tusd]\nupload_ids = \"signed\"\n[storage]\nbackend = \"s3\"\n\
             [storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            common::default_config(),
            engine.endpoint(),
            engine.bucket
        );
        let gate = started_gate(engine, &config);
        let dir = tempfile::tempdir().unwrap();
        let flags = [
            format!("-s3-bucket={}", engine.bucket),
            format!("-s3-endpoint={}", engine.endpoint()),
            "-s3-object-prefix=tus/".to_string(),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let hook_url = format!("http://{}/tusd", gate.addr);
        let tusd = Tusd::start_env(Version::V2, dir.path(), &hook_url, &flags, engine.tusd_env());
        let ngx_dir = dir.path().join("nginx");
        std::fs::create_dir_all(ngx_dir.join("assets")).unwrap();
        let site = common::ngx::shipped_site(&ngx_dir, gate.addr, tusd.port, &ngx_dir.join("assets"));
        let ngx = Nginx::start(&ngx_dir, 1, |ports| {
            let site_path = ngx_dir.join("site.conf");
            std::fs::write(&site_path, common::ngx::listen_on(&site, ports[0])).unwrap();
            nginx_main_conf(&ngx_dir, &format!("include {};", site_path.display()))
        });
        SessionStack {
            ngx,
            tusd,
            gate,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        format!(
            "tusd:\n{}\nassetgate:\n{:#?}\n{}",
            self.tusd.log(),
            self.gate.logs(),
            self.ngx.logs()
        )
    }
}

/// `Upload-Metadata` of a private PDF upload to `key`, expiring at `expires`.
fn upload_metadata_header(key: &str, expires: i64) -> String {
    use base64::Engine as _;
    assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        key,
        "application/pdf",
        Visibility::Private,
        expires,
    )
    .iter()
    .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
    .collect::<Vec<_>>()
    .join(",")
}

/// A raw request through nginx: status, `X-Assetgate-Reason` and
/// `Upload-Offset` (HEAD: no body follows its Content-Length, so read to the
/// close).
fn through(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Option<String>, Option<String>) {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_string())
    };
    (status, field("x-assetgate-reason"), field("upload-offset"))
}

fn session_binding_reads_the_info_from_the_bucket(engine: &S3Engine) {
    let stack = SessionStack::start(engine, "token");
    let (gate, ngx) = (&stack.gate, &stack.ngx);
    let logs = || stack.logs();
    let header_of = |key: &str| upload_metadata_header(key, common::now() + 3600);
    let mine = header_of("session/mine.pdf");
    let theirs = header_of("session/theirs.pdf");
    let data = pdf(90_000, b's');
    let half = data.len() / 2;
    let addr = ngx.addr(0);
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Upload-Metadata: {mine}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    let id = location.split_once("/files/").expect("a tus URL").1.to_string();
    assert!(id.contains('+'), "an s3store ID: {id}");

    let patch = |md: &str, offset: usize, bytes: &[u8]| {
        let mut req = format!(
            "PATCH /files/{id} HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
             Upload-Metadata: {md}\r\nContent-Type: application/offset+octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
        .into_bytes();
        req.extend_from_slice(bytes);
        common::raw_request(addr, &req)
    };
    // HEAD: no body follows its Content-Length (read to the close).
    let head = |md: &str, id: &str| {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "HEAD /files/{id} HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\n\
             Upload-Metadata: {md}\r\nConnection: close\r\n\r\n"
        );
        c.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.trim().to_string())
        };
        (status, field("x-assetgate-reason"), field("upload-offset"))
    };
    let (status, _, body) = patch(&mine, 0, &data[..half]);
    assert_eq!(
        status,
        204,
        "first PATCH: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );

    // Another valid token's Upload-Metadata: refused before tusd.
    let (status, headers, _) = patch(&theirs, half, &data[half..]);
    assert_eq!(
        (status, common::header(&headers, "x-assetgate-reason")),
        (403, Some("token_mismatch")),
        "{}",
        logs()
    );
    assert_eq!(head(&theirs, &id), (403, Some("token_mismatch".into()), None));
    // No Upload-Metadata at all; an object ID the bucket has no .info for.
    let (multipart, object_id) = (id.split_once('+').unwrap().1, id.split_once('+').unwrap().0);
    let (status, headers, _) = patch("", half, &data[half..]);
    assert_eq!(
        (status, common::header(&headers, "x-assetgate-reason")),
        (403, Some("token_missing"))
    );
    let unknown = format!("{}+{multipart}", "0".repeat(object_id.len()));
    assert_eq!(head(&mine, &unknown), (403, Some("unknown_upload".into()), None));
    // This upload's object ID with another multipart ID: its .info names
    // another upload.
    let other = format!("{object_id}+x{multipart}");
    assert_eq!(head(&mine, &other), (403, Some("unknown_upload".into()), None));
    // The right one: HEAD shows the offset, the PATCH finishes it.
    assert_eq!(
        head(&mine, &id),
        (200, None, Some(half.to_string())),
        "{}",
        logs()
    );
    // What one decision costs (one ranged GET of the .info each): 200 asked
    // straight of the gate, every one allowed; the time is printed, not
    // asserted (`--no-capture` shows it; docs/s3-groundwork.md has the figure).
    const ASKED: u32 = 200;
    let uri = format!("/files/{id}");
    let started = std::time::Instant::now();
    for _ in 0..ASKED {
        let (status, _, _) = common::get(
            gate.addr,
            "/session",
            &[
                ("X-Original-URI", uri.as_bytes()),
                ("X-Original-Method", b"PATCH"),
                ("X-Upload-Metadata", mine.as_bytes()),
            ],
        );
        assert_eq!(status, 204);
    }
    eprintln!(
        "/session on S3: {ASKED} decisions in {:?}, {:?} each",
        started.elapsed(),
        started.elapsed() / ASKED
    );
    let (status, _, body) = patch(&mine, half, &data[half..]);
    assert_eq!(
        status,
        204,
        "second PATCH: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = engine.must(&["get", &engine.bucket, "private/session/mine.pdf"]);
        if got["ok"] == true || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got["ok"], true, "{got}\n{}", logs());
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(&data)), "{got}");
    for (reason, want) in [
        ("ok", 4.0 + f64::from(ASKED)),
        ("token_mismatch", 2.0),
        ("token_missing", 1.0),
        ("unknown_upload", 2.0),
    ] {
        let decision = if reason == "ok" { "allow" } else { "deny" };
        let line = format!(
            "assetgate_decisions_total{{decision=\"{decision}\",endpoint=\"session\",reason=\"{reason}\"}}"
        );
        assert_eq!(gate.metric(&line), want, "{line}\n{}", logs());
    }
}

#[test]
fn seaweedfs_serve_publishes_a_tusd_upload() {
    serve_publishes_a_tusd_upload(&S3Engine::seaweedfs("assets"), "rename");
}

#[test]
fn versitygw_serve_publishes_a_tusd_upload() {
    serve_publishes_a_tusd_upload(&S3Engine::versitygw("assets"), "multipart_copy");
}

// ---------------------------------------------------------------------------
// Stale multipart uploads under the upload prefix (`assetgate::s3::abandon`).

fn stale_multipart_uploads_are_aborted(engine: &S3Engine) {
    use assetgate::s3::abandon::abort_stale;
    use std::time::SystemTime;
    let bench = Bench::new(engine);
    let c = &bench.store.client;
    let b = bench.bucket().to_string();
    let start = |key: &'static str| {
        bench.rt.block_on(async {
            c.create_multipart_upload()
                .bucket(&b)
                .key(key)
                .send()
                .await
                .unwrap();
        })
    };
    start("tus/old1");
    start("tus/old2");
    start("private/not-under-the-prefix");
    // Nothing is stale yet: an instant well before they started.
    let past = SystemTime::now() - Duration::from_secs(3600);
    let none = bench.rt.block_on(abort_stale(c, &b, "tus/", past)).unwrap();
    assert_eq!((none.aborted, none.kept), (0, 2));
    // All under the prefix are stale for a bound in the future; the other stays.
    let future = SystemTime::now() + Duration::from_secs(3600);
    let done = bench.rt.block_on(abort_stale(c, &b, "tus/", future)).unwrap();
    assert_eq!((done.aborted, done.kept), (2, 0));
    let left = engine.must(&["list", &b, ""]);
    let keys: Vec<&str> = left["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["private/not-under-the-prefix"], "{left}");
}

#[test]
fn seaweedfs_stale_multipart_uploads_are_aborted() {
    stale_multipart_uploads_are_aborted(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_stale_multipart_uploads_are_aborted() {
    stale_multipart_uploads_are_aborted(&S3Engine::versitygw("assets"));
}

// ---------------------------------------------------------------------------
// The reconciler on S3: `assetgate serve` with backend = "s3" lists the
// `.info` objects under the upload prefix and publishes what post-finish never
// did, through the same publisher as post-finish (one event each).

const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `assetgate serve` on `engine` with `[tusd] reconcile_interval` and
/// `[events]` to a port nothing listens on (the events stay in the outbox,
/// counted by `assetgate_events_total`).
fn s3_gate(engine: &S3Engine, reconcile: &str, events_dir: &std::path::Path) -> Daemon {
    let nothing = common::free_port();
    let config = format!(
        "{}[tusd]\nupload_ids = \"signed\"\nreconcile_interval = \"{reconcile}\"\n\
         [storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
         [events]\nurl = \"http://127.0.0.1:{nothing}/events\"\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket,
        events_dir.display().to_string(),
    );
    started_gate(engine, &config)
}

/// tusd v2.9.1 on `engine` hooking into `gate`, post-finish NOT enabled: a
/// finished upload gets no post-finish (as when the hook is lost).
fn tusd_without_post_finish(engine: &S3Engine, dir: &std::path::Path, gate: &Daemon) -> Tusd {
    let flags = [
        format!("-s3-bucket={}", engine.bucket),
        format!("-s3-endpoint={}", engine.endpoint()),
        "-s3-object-prefix=tus/".to_string(),
        "-hooks-enabled-events=pre-create,pre-finish".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let hook_url = format!("http://{}/tusd", gate.addr);
    Tusd::start_env(Version::V2, dir, &hook_url, &flags, engine.tusd_env())
}

/// One whole upload of `data` to `key` (private PDF) by raw tus requests;
/// the upload ID.
fn tus_upload(tusd: &Tusd, key: &str, data: &[u8]) -> String {
    let metadata = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        key,
        "application/pdf",
        Visibility::Private,
        common::now() + 3600,
    );
    use base64::Engine as _;
    let header = metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Upload-Metadata: {header}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        data.len()
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        tusd.log()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    let id = location.split_once("/files/").expect("a tus URL").1.to_string();
    let mut patch = format!(
        "PATCH /files/{id} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    patch.extend_from_slice(data);
    let (status, _, body) = common::raw_request(addr, &patch);
    assert_eq!(
        status,
        204,
        "patch: {}\n{}",
        String::from_utf8_lossy(&body),
        tusd.log()
    );
    id
}

/// Waits (bounded) until `private/<key>` is this upload's, byte-equal, and
/// tusd's objects under `tus/` are gone; then the upload.finalized events
/// enqueued: exactly one, none refused as a duplicate needed.
fn assert_published_once(
    engine: &S3Engine,
    gate: &Daemon,
    key: &str,
    id: &str,
    data: &[u8],
    logs: &dyn Fn() -> String,
) {
    let dst = format!("private/{key}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = engine.must(&["get", &engine.bucket, &dst]);
        if got["ok"] == true || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got["ok"], true, "{got}\n{}", logs());
    assert_eq!(got["size"], data.len() as u64, "{got}");
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(data)), "{got}");
    assert_eq!(got["content_type"], "application/pdf", "{got}");
    assert_eq!(got["metadata"]["assetgate-upload"], id, "{got}");
    let left = loop {
        let left = engine.must(&["list", &engine.bucket, "tus/"]);
        if left["objects"] == serde_json::json!([]) || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(left["objects"], serde_json::json!([]), "{left}\n{}", logs());
    assert_eq!(left["uploads"], serde_json::json!([]), "{left}");
    let enqueued = "assetgate_events_total{result=\"enqueued\",type=\"upload.finalized\"}";
    // Committed before the removal: one, now; and after two more passes
    // (nothing left to find) still one.
    assert_eq!(gate.metric(enqueued), 1.0, "{}", logs());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gate.metric(enqueued), 1.0, "{}", logs());
}

/// A finished upload whose post-finish never came (tusd runs without it) is
/// published by the reconciler: byte-equal with the token's type and the
/// marker, tusd's objects gone, one event.
fn reconciler_publishes_a_lost_post_finish(engine: &S3Engine) {
    let events = tempfile::tempdir().unwrap();
    let gate = s3_gate(engine, "1s", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(engine, dir.path(), &gate);
    let data = pdf(90_000, b'l');
    let id = tus_upload(&tusd, "lost/report.pdf", &data);
    let logs = || {
        format!(
            "tusd:\n{}\nassetgate:\n{:#?}\nengine:\n{}",
            tusd.log(),
            gate.logs(),
            engine.log()
        )
    };
    assert_published_once(engine, &gate, "lost/report.pdf", &id, &data, &logs);
    assert!(
        gate.logs()
            .iter()
            .any(|l| l.contains("a finished upload was never published")),
        "{}",
        logs()
    );
}

#[test]
fn seaweedfs_reconciler_publishes_a_lost_post_finish() {
    reconciler_publishes_a_lost_post_finish(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_reconciler_publishes_a_lost_post_finish() {
    reconciler_publishes_a_lost_post_finish(&S3Engine::versitygw("assets"));
}

/// kill -9 of assetgate between the publish's write and the removal, then a
/// restart: the reconciler of the new process finishes it (the destination
/// kept as written, the upload's objects removed, one event).
///
/// The daemon's fault points (`src/finalize/faults.rs`) are per-thread
/// switches compiled into unit tests only, so the binary cannot be stopped at
/// that point from here. The crashed state is made instead exactly as the
/// publish makes it: the write step of the method the self-test chose
/// (`assetgate::s3::ops`, the functions `s3::publish` calls) on the real tusd
/// upload, nothing removed, the first daemon then killed with SIGKILL. On
/// SeaweedFS (rename) that leaves the `.info` without its object; on
/// versitygw (portable copy) both, beside the published object.
fn crash_between_write_and_removal_is_finished_on_restart(engine: &S3Engine, method: PublishMethod) {
    let events = tempfile::tempdir().unwrap();
    // The first daemon: pre-create's and pre-finish's hooks; its reconciler
    // would not run within the test (first pass after an hour).
    let first = s3_gate(engine, "1h", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(engine, dir.path(), &first);
    let data = pdf(70_000, b'k');
    let key = "crash/report.pdf";
    let id = tus_upload(&tusd, key, &data);
    let object = id.split_once('+').expect("objectId+multipartId").0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(Store::start(&s3_config(engine), &Metrics::new()))
        .unwrap();
    assert_eq!(store.method, method);
    let (src, dst) = (format!("tus/{object}"), format!("private/{key}"));
    let attrs = Attributes {
        content_type: "application/pdf",
        upload_id: &id,
    };
    let c = &store.client;
    rt.block_on(async {
        match method {
            PublishMethod::Rename => ops::rename(c, &engine.bucket, &src, &dst, attrs).await,
            PublishMethod::ConditionalCopy => {
                ops::conditional_copy(c, &engine.bucket, &src, &dst, attrs).await
            }
            PublishMethod::MultipartCopy => {
                ops::multipart_copy(c, &engine.bucket, &src, &dst, data.len() as u64, attrs).await
            }
        }
    })
    .unwrap();
    drop(first); // SIGKILL (common::Daemon's drop)
    let before = engine.must(&["list", &engine.bucket, "tus/"]);
    assert_ne!(
        before["objects"],
        serde_json::json!([]),
        "the crash left the upload: {before}"
    );

    let gate = s3_gate(engine, "1s", events.path());
    let logs = || {
        format!(
            "tusd:\n{}\nassetgate:\n{:#?}\nengine:\n{}",
            tusd.log(),
            gate.logs(),
            engine.log()
        )
    };
    assert_published_once(engine, &gate, key, &id, &data, &logs);
}

#[test]
fn seaweedfs_crash_between_write_and_removal_is_finished_on_restart() {
    crash_between_write_and_removal_is_finished_on_restart(
        &S3Engine::seaweedfs("assets"),
        PublishMethod::Rename,
    );
}

#[test]
fn versitygw_crash_between_write_and_removal_is_finished_on_restart() {
    crash_between_write_and_removal_is_finished_on_restart(
        &S3Engine::versitygw("assets"),
        PublishMethod::MultipartCopy,
    );
}

// ---------------------------------------------------------------------------
// The hook decisions' storage lookups on S3 (`assetgate::s3::lookup`):
// pre-create asks the bucket whether the destination exists (HeadObject),
// pre-finish sniffs the upload object's leading bytes (one ranged GET), and
// a store that does not answer refuses with `storage_unavailable`.

/// `assetgate serve` on `engine` with `[upload] check_content = true`.
fn checking_gate(engine: &S3Engine) -> Daemon {
    let config = format!(
        "{}check_content = true\n[tusd]\nupload_ids = \"signed\"\n[storage]\nbackend = \"s3\"\n\
         [storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket
    );
    started_gate(engine, &config)
}

/// tusd v2.9.1 s3store on `engine` with every hook into `gate`.
fn tusd_on(engine: &S3Engine, dir: &std::path::Path, gate: &Daemon) -> Tusd {
    let flags = [
        format!("-s3-bucket={}", engine.bucket),
        format!("-s3-endpoint={}", engine.endpoint()),
        "-s3-object-prefix=tus/".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let hook_url = format!("http://{}/tusd", gate.addr);
    Tusd::start_env(Version::V2, dir, &hook_url, &flags, engine.tusd_env())
}

/// The tus creation of a private `content_type` upload of `len` bytes to
/// `key`: status, the upload ID (when created) and the body.
fn tus_create(tusd: &Tusd, key: &str, content_type: &str, len: usize) -> (u16, Option<String>, String) {
    let metadata = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        key,
        content_type,
        Visibility::Private,
        common::now() + 3600,
    );
    use base64::Engine as _;
    let header = metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {len}\r\n\
         Upload-Metadata: {header}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    let id = common::header(&headers, "location")
        .and_then(|l| l.split_once("/files/").map(|(_, id)| id.to_string()));
    (status, id, String::from_utf8_lossy(&body).into_owned())
}

/// One PATCH of all of `data` at offset 0: status and body.
fn tus_patch(tusd: &Tusd, id: &str, data: &[u8]) -> (u16, String) {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let mut patch = format!(
        "PATCH /files/{id} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .into_bytes();
    patch.extend_from_slice(data);
    let (status, _, body) = common::raw_request(addr, &patch);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A PNG declared as a PDF, through tusd v2.9.1 s3store with
/// `check_content`: pre-finish reads the upload object's leading bytes from
/// the bucket and the client's last PATCH gets 415 `content_mismatch`;
/// post-finish still comes (tusd v2) and the publisher refuses too: nothing
/// at `private/<key>`, the upload object stays (never served), the refusal
/// recorded (`tus/<objectId>.refused`), so `finalize-pending` with a
/// configuration without `check_content` skips it as refused.
fn content_mismatch_is_refused_at_pre_finish(engine: &S3Engine) {
    let gate = checking_gate(engine);
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_on(engine, dir.path(), &gate);
    let logs = || {
        format!(
            "tusd:\n{}\nassetgate:\n{:#?}\nengine:\n{}",
            tusd.log(),
            gate.logs(),
            engine.log()
        )
    };
    let mut data = vec![b'p'; 50_000];
    data[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let key = "sniffed/not-really.pdf";
    let (status, id, body) = tus_create(&tusd, key, "application/pdf", data.len());
    assert_eq!(status, 201, "create: {body}\n{}", logs());
    let id = id.expect("Location");
    let (status, body) = tus_patch(&tusd, &id, &data);
    assert_eq!(status, 415, "last PATCH: {body}\n{}", logs());
    assert!(body.contains("content_mismatch"), "{body}");
    let refused =
        "assetgate_hook_decisions_total{decision=\"deny\",hook=\"pre-finish\",reason=\"content_mismatch\"}";
    assert_eq!(gate.metric(refused), 1.0, "{}", logs());
    // tusd v2 sends post-finish anyway: the publisher's own check refuses.
    let not_published = "assetgate_finalize_total{result=\"content_mismatch\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gate.metric(not_published) < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gate.metric(not_published), 1.0, "{}", logs());
    let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
    assert_eq!(got["ok"], false, "published: {got}\n{}", logs());
    let object = id.split_once('+').expect("objectId+multipartId").0;
    let stays = engine.must(&["get", &engine.bucket, &format!("tus/{object}")]);
    assert_eq!(stays["ok"], true, "the upload object stays: {stays}");
    assert_eq!(stays["size"], data.len() as u64, "{stays}");
    // The refusal is recorded for good: a configuration without
    // check_content (finalize-pending here) does not publish those bytes.
    let marker = engine.must(&["get", &engine.bucket, &format!("tus/{object}.refused")]);
    assert_eq!(marker["ok"], true, "the refusal marker: {marker}\n{}", logs());
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("assetgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[tusd]\nupload_ids = \"signed\"\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\n\
             bucket = \"{}\"\n",
            common::default_config(),
            engine.endpoint(),
            engine.bucket,
        ),
    )
    .unwrap();
    let (code, out, err) = assetgate_cli(engine, &cfg, &["finalize-pending"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains(&format!("skipped tus/{object}.info: Refused")),
        "{out}\n{err}"
    );
    assert!(out.contains("0 moved"), "{out}");
    let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
    assert_eq!(
        got["ok"], false,
        "published once check_content was off: {got}\n{out}"
    );
    // A matching upload through the same stack passes pre-finish and lands.
    let good = pdf(40_000, b'g');
    let (status, id, body) = tus_create(&tusd, "sniffed/real.pdf", "application/pdf", good.len());
    assert_eq!(status, 201, "create: {body}\n{}", logs());
    let (status, body) = tus_patch(&tusd, &id.expect("Location"), &good);
    assert_eq!(status, 204, "last PATCH: {body}\n{}", logs());
    let ok = "assetgate_hook_decisions_total{decision=\"allow\",hook=\"pre-finish\",reason=\"ok\"}";
    assert_eq!(gate.metric(ok), 1.0, "{}", logs());
}

#[test]
fn seaweedfs_content_mismatch_is_refused_at_pre_finish() {
    content_mismatch_is_refused_at_pre_finish(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_content_mismatch_is_refused_at_pre_finish() {
    content_mismatch_is_refused_at_pre_finish(&S3Engine::versitygw("assets"));
}

/// An object already at `private/<key>` (put there by hand, not by
/// assetgate): pre-create asks the bucket and refuses the upload with 409
/// `exists`; the object is untouched and tusd created nothing.
fn existing_destination_is_refused_at_pre_create(engine: &S3Engine) {
    let gate = checking_gate(engine);
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_on(engine, dir.path(), &gate);
    let key = "taken/report.pdf";
    let there = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(there.path(), b"already here").unwrap();
    engine.must(&[
        "put",
        &engine.bucket,
        &format!("private/{key}"),
        there.path().to_str().unwrap(),
        "application/pdf",
    ]);
    let (status, id, body) = tus_create(&tusd, key, "application/pdf", 1000);
    assert_eq!(
        status,
        409,
        "{body}\ntusd:\n{}\nassetgate:\n{:#?}",
        tusd.log(),
        gate.logs()
    );
    assert!(body.contains("\"exists\""), "{body}");
    assert_eq!(id, None);
    let line = "assetgate_hook_decisions_total{decision=\"deny\",hook=\"pre-create\",reason=\"exists\"}";
    assert_eq!(gate.metric(line), 1.0, "{:#?}", gate.logs());
    let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
    assert_eq!(got["size"], 12, "untouched: {got}");
    let left = engine.must(&["list", &engine.bucket, "tus/"]);
    assert_eq!(left["objects"], serde_json::json!([]), "{left}");
    // Another key is free: created.
    let (status, _, body) = tus_create(&tusd, "taken/other.pdf", "application/pdf", 1000);
    assert_eq!(status, 201, "{body}");
}

#[test]
fn seaweedfs_existing_destination_is_refused_at_pre_create() {
    existing_destination_is_refused_at_pre_create(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_existing_destination_is_refused_at_pre_create() {
    existing_destination_is_refused_at_pre_create(&S3Engine::versitygw("assets"));
}

/// The bucket stops answering after start (the engine killed): pre-create
/// and pre-finish hooks are refused with 503 `storage_unavailable`, counted
/// and logged, never accepted unchecked; the daemon keeps answering.
#[test]
fn seaweedfs_a_store_that_does_not_answer_refuses_the_hooks() {
    let engine = S3Engine::seaweedfs("assets");
    let gate = checking_gate(&engine);
    let bucket = engine.bucket.clone();
    drop(engine); // killed
    let meta = common::hooks::metadata(
        common::UPLOAD_SECRET,
        "down/report.pdf",
        "private",
        "application/pdf",
        common::now() + 3600,
    );
    let storage = serde_json::json!({"Type": "s3store", "Bucket": bucket, "Key": "tus/0a1b"});
    let create = common::hooks::v2_event("pre-create", meta.clone(), 10, storage.clone());
    let (status, _, body) = common::hooks::post(gate.addr, create.to_string().as_bytes(), &[]);
    assert_eq!(status, 200);
    let answer = common::hooks::json_of(&body);
    assert_eq!(answer["RejectUpload"], true, "{answer}");
    assert_eq!(answer["HTTPResponse"]["StatusCode"], 503, "{answer}");
    assert!(answer.to_string().contains("storage_unavailable"), "{answer}");
    let mut finish = common::hooks::v2_event("pre-finish", meta, 10, storage);
    finish["Event"]["Upload"]["ID"] = serde_json::json!("0a1b+mp");
    finish["Event"]["Upload"]["Offset"] = serde_json::json!(10);
    let (status, _, body) = common::hooks::post(gate.addr, finish.to_string().as_bytes(), &[]);
    assert_eq!(status, 200);
    let answer = common::hooks::json_of(&body);
    assert_eq!(answer["HTTPResponse"]["StatusCode"], 503, "{answer}");
    for hook in ["pre-create", "pre-finish"] {
        let line = format!(
            "assetgate_hook_decisions_total{{decision=\"deny\",hook=\"{hook}\",reason=\"storage_unavailable\"}}"
        );
        assert_eq!(gate.metric(&line), 1.0, "{line}\n{:#?}", gate.logs());
    }
    let logs = gate.logs();
    assert!(
        logs.iter().any(
            |l| l.contains("whether the destination exists could not be checked")
                || l.contains("did not answer whether the destination exists")
        ),
        "{logs:#?}"
    );
    assert!(logs.iter().any(|l| l.contains("leading bytes")), "{logs:#?}");
}

// ---------------------------------------------------------------------------
// The filesystem's keys with backend = "s3" (refused at load: tests/cli.rs,
// config::load::tests): a reload that adds one is refused too, and
// `serve --dev` makes no temporary upload tree for a bucket.

/// A running S3 daemon gets `[storage] root` by SIGHUP: the reload is
/// refused naming the key (counted `invalid`), the daemon keeps running.
#[test]
fn seaweedfs_a_reload_adding_a_filesystem_key_is_refused() {
    let engine = S3Engine::seaweedfs("assets");
    let gate = checking_gate(&engine);
    let cfg = gate.dir.path().join("assetgate.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let with_root = text.replace(
        "[storage]\nbackend = \"s3\"\n",
        "[storage]\nbackend = \"s3\"\nroot = \"/srv/assets\"\n",
    );
    assert_ne!(text, with_root);
    let tmp = gate.dir.path().join("assetgate.toml.new");
    std::fs::write(&tmp, with_root).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    gate.hup();
    let refused = "assetgate_config_reload_refusals_total{reason=\"invalid\"}";
    assert!(
        gate.wait_metric(refused, 1.0, Duration::from_secs(10)),
        "{:#?}",
        gate.logs()
    );
    assert!(
        gate.logs()
            .iter()
            .any(|l| l.contains("configuration reload refused") && l.contains("storage.root")),
        "{:#?}",
        gate.logs()
    );
    let (status, _, _) = common::get(gate.addr, "/metrics", &[]);
    assert_eq!(status, 200);
}

/// `serve --dev` with backend = "s3": secrets generated, no temporary
/// upload tree (its banner would print a filestore tusd command line and the
/// daemon would carry a root and an upload directory beside the bucket).
#[test]
fn seaweedfs_serve_dev_makes_no_upload_tree() {
    use std::io::Read as _;
    let engine = S3Engine::seaweedfs("assets");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("assetgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n[storage]\nbackend = \"s3\"\n\
             [storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n",
            engine.endpoint(),
            engine.bucket
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["serve", "--dev", "--config"])
        .arg(&cfg)
        .env("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", &engine.access_key)
        .env("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", &engine.secret_key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // The banner is printed once the daemon listens (after the self-test).
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut err = String::new();
    while std::time::Instant::now() < deadline && !err.contains("listening") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            break;
        }
        err.push_str(&line);
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let out = reader.join().unwrap();
    assert!(
        out.contains("ASSETGATE_UPLOAD_SECRET="),
        "no banner:\n{out}\n{err}"
    );
    assert!(
        !out.contains("temporary tree") && !out.contains("-upload-dir"),
        "a filestore playground with an S3 backend:\n{out}"
    );
}

// ---------------------------------------------------------------------------
// The reconciler's S3 leftovers through `serve`'s scheduled passes: stale
// multipart uploads aborted (and counted), an abandoned in-progress upload
// removed.

/// An in-progress tusd upload whose token expired two hours ago (its `.info`
/// rewritten by hand with a validly signed, expired token: pre-create refuses
/// expired ones) and an orphan multipart upload under `tus/` (no `.info`, as
/// a crashed tusd leaves), both started more than the stale bound ago; then
/// a daemon with `[upload] max_ttl = "1s"`, `clock_skew = 0`, `[tusd]
/// abandon_after = "1s"` (bound: 2 s) and a pass every second, as after a
/// daemon that was down for long. Its passes abort both multipart uploads
/// (`assetgate_s3_stale_multipart_uploads_total{result="aborted"}` 2) and
/// remove the abandoned upload (`.info`, `.part`; `abandoned_removed` 1):
/// nothing is left under `tus/`.
fn reconciler_aborts_stale_multiparts_and_removes_abandoned_uploads(engine: &S3Engine) {
    let events = tempfile::tempdir().unwrap();
    let first = s3_gate(engine, "1h", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(engine, dir.path(), &first);
    let key = "abandoned/report.pdf";
    let data = pdf(100_000, b'a');
    let (status, id, body) = tus_create(&tusd, key, "application/pdf", data.len());
    assert_eq!(status, 201, "create: {body}\n{}", tusd.log());
    let id = id.expect("Location");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tusd.port).into();
    let half = &data[..40_000];
    let mut patch = format!(
        "PATCH /files/{id} HTTP/1.1\r\nHost: tusd\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        half.len()
    )
    .into_bytes();
    patch.extend_from_slice(half);
    let (status, _, body) = common::raw_request(addr, &patch);
    assert_eq!(status, 204, "patch: {}", String::from_utf8_lossy(&body));
    drop(tusd);
    drop(first);

    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let object = id.split_once('+').expect("objectId+multipartId").0;
    let info_key = format!("tus/{object}.info");
    let mut info: serde_json::Value =
        serde_json::from_slice(&bench.rt.block_on(ops::get(c, &b, &info_key, None)).unwrap()).unwrap();
    let expired = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        key,
        "application/pdf",
        Visibility::Private,
        common::now() - 7200,
    );
    for (k, v) in expired.iter() {
        info["MetaData"][k] = serde_json::json!(v);
    }
    bench
        .rt
        .block_on(ops::put(c, &b, &info_key, info.to_string().as_bytes()))
        .unwrap();
    bench.rt.block_on(async {
        c.create_multipart_upload()
            .bucket(&b)
            .key("tus/orphan")
            .send()
            .await
            .unwrap();
    });
    let before = engine.must(&["list", &b, "tus/"]);
    assert_eq!(
        before["uploads"].as_array().map(Vec::len),
        Some(2),
        "tusd's and the orphan: {before}"
    );
    // Past the second daemon's stale bound (max_ttl 1 s + abandon_after 1 s).
    std::thread::sleep(Duration::from_millis(2500));

    let nothing = common::free_port();
    let config = format!(
        "{}max_ttl = \"1s\"\nclock_skew = 0\n[tusd]\nupload_ids = \"signed\"\nreconcile_interval = \"1s\"\n\
         abandon_after = \"1s\"\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
         [events]\nurl = \"http://127.0.0.1:{nothing}/events\"\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket,
        events.path().display().to_string(),
    );
    let gate = start_gate(engine, &config);
    let logs = || format!("assetgate:\n{:#?}\nengine:\n{}", gate.logs(), engine.log());
    let removed = "assetgate_reconcile_total{result=\"abandoned_removed\"}";
    let aborted = "assetgate_s3_stale_multipart_uploads_total{result=\"aborted\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = engine.must(&["list", &b, "tus/"]);
        let empty = left["objects"] == serde_json::json!([]) && left["uploads"] == serde_json::json!([]);
        if (empty && gate.metric(removed) >= 1.0) || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(left["objects"], serde_json::json!([]), "{left}\n{}", logs());
    assert_eq!(left["uploads"], serde_json::json!([]), "{left}\n{}", logs());
    assert_eq!(gate.metric(removed), 1.0, "{}", logs());
    assert_eq!(gate.metric(aborted), 2.0, "{}", logs());
    // Two more passes find nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gate.metric(removed), 1.0, "{}", logs());
    assert_eq!(gate.metric(aborted), 2.0, "{}", logs());
    assert_eq!(
        gate.metric("assetgate_s3_stale_multipart_uploads_total{result=\"failed\"}"),
        0.0
    );
    let got = engine.must(&["get", &b, &format!("private/{key}")]);
    assert_eq!(got["ok"], false, "{got}");
}

#[test]
fn seaweedfs_reconciler_aborts_stale_multiparts_and_removes_abandoned_uploads() {
    reconciler_aborts_stale_multiparts_and_removes_abandoned_uploads(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_reconciler_aborts_stale_multiparts_and_removes_abandoned_uploads() {
    reconciler_aborts_stale_multiparts_and_removes_abandoned_uploads(&S3Engine::versitygw("assets"));
}

// ---------------------------------------------------------------------------
// `assetgate finalize-pending` on S3: the bucket's finished uploads whose
// post-finish never came, published under post-finish's rules, with the
// filesystem's output lines.

/// `assetgate <args> --config <cfg>` with `engine`'s credentials in the
/// environment: exit code, stdout, stderr (neither shows the secret key).
fn assetgate_cli(engine: &S3Engine, cfg: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(common::bin())
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("ASSETGATE_STORAGE__S3__ACCESS_KEY_ID", &engine.access_key)
        .env("ASSETGATE_STORAGE__S3__SECRET_ACCESS_KEY", &engine.secret_key)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!out.contains(&engine.secret_key) && !err.contains(&engine.secret_key));
    (o.status.code(), out, err)
}

/// A tusd v2.9.1 upload whose post-finish never came (the daemon's
/// reconciler not due for an hour, then the daemon stopped): `assetgate
/// finalize-pending` publishes it (`moved <id> -> private/<key> (renamed, N
/// bytes)`, the summary line as on `fs`), byte-equal with the marker, tusd's
/// objects gone, its `upload.finalized` in the outbox; a second run finds
/// nothing.
#[test]
fn seaweedfs_finalize_pending_publishes_what_post_finish_missed() {
    let engine = S3Engine::seaweedfs("assets");
    let events = tempfile::tempdir().unwrap();
    let first = s3_gate(&engine, "1h", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(&engine, dir.path(), &first);
    let key = "pending/report.pdf";
    let data = pdf(80_000, b'f');
    let id = tus_upload(&tusd, key, &data);
    drop(first);

    let nothing = common::free_port();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("assetgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[tusd]\nupload_ids = \"signed\"\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\n\
             bucket = \"{}\"\n[events]\nurl = \"http://127.0.0.1:{nothing}/events\"\nsecret = \"{EVENTS_SECRET}\"\n\
             dir = {:?}\n",
            common::default_config(),
            engine.endpoint(),
            engine.bucket,
            events.path().display().to_string(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| assetgate_cli(&engine, &cfg, args);
    let (code, out, err) = run(&["finalize-pending"]);
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", engine.log());
    let bytes = data.len();
    assert!(
        out.contains(&format!("moved {id} -> private/{key} (renamed, {bytes} bytes)")),
        "{out}\n{err}"
    );
    assert!(
        out.contains("1 moved, 0 kept, 0 failed, 0 skipped, 0 stale info files"),
        "{out}"
    );
    let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(&data)), "{got}");
    assert_eq!(got["content_type"], "application/pdf", "{got}");
    assert_eq!(got["metadata"]["assetgate-upload"], id.as_str(), "{got}");
    let left = engine.must(&["list", &engine.bucket, "tus/"]);
    assert_eq!(left["objects"], serde_json::json!([]), "{left}");
    assert_eq!(left["uploads"], serde_json::json!([]), "{left}");
    // Its event is in the outbox, once.
    let (code, listed, err) = run(&["events", "list"]);
    assert_eq!(code, Some(0), "{listed}\n{err}");
    assert_eq!(listed.matches("upload.finalized").count(), 1, "{listed}");
    // Nothing left for a second run.
    let (code, out, err) = run(&["finalize-pending"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("0 moved, 0 kept, 0 failed, 0 skipped, 0 stale info files"),
        "{out}"
    );
}

/// `session_binding = "window"` (the default) on S3, through the shipped
/// nginx uploads location: requests without any Upload-Metadata resume an
/// upload whose stored token is inside its window (HEAD 200 with the offset,
/// PATCH 204, the upload lands); once the `.info`'s token (rewritten by hand,
/// validly signed, expired two hours ago: more than the default
/// `session_grace` of 1 h) is out of its window, HEAD and PATCH are refused
/// with `session_expired` (nginx answers 410); an unknown object ID is
/// `unknown_upload` (403).
fn session_window_reads_the_info_from_the_bucket(engine: &S3Engine) {
    let stack = SessionStack::start(engine, "window");
    let logs = || stack.logs();
    let addr = stack.ngx.addr(0);
    let key = "window/report.pdf";
    let data = pdf(60_000, b'w');
    let half = data.len() / 2;
    let create = format!(
        "POST /files/ HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {}\r\n\
         Upload-Metadata: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        data.len(),
        upload_metadata_header(key, common::now() + 3600)
    );
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let location = common::header(&headers, "location")
        .expect("Location")
        .to_string();
    let id = location.split_once("/files/").expect("a tus URL").1.to_string();
    let patch = |id: &str, offset: usize, bytes: &[u8]| {
        let mut req = format!(
            "PATCH /files/{id} HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
        .into_bytes();
        req.extend_from_slice(bytes);
        through(addr, &req)
    };
    let head = |id: &str| {
        through(
            addr,
            format!(
                "HEAD /files/{id} HTTP/1.1\r\nHost: uploads.test\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // Inside the window, no Upload-Metadata needed.
    assert_eq!(patch(&id, 0, &data[..half]).0, 204, "{}", logs());
    assert_eq!(head(&id), (200, None, Some(half.to_string())), "{}", logs());
    let (multipart, object_id) = (id.split_once('+').unwrap().1, id.split_once('+').unwrap().0);
    let unknown = format!("{}+{multipart}", "0".repeat(object_id.len()));
    assert_eq!(
        head(&unknown),
        (403, Some("unknown_upload".into()), None),
        "{}",
        logs()
    );

    // A second upload whose stored token is long out of its window.
    let (status, headers, body) = common::raw_request(addr, create.as_bytes());
    assert_eq!(
        status,
        201,
        "create: {}\n{}",
        String::from_utf8_lossy(&body),
        logs()
    );
    let late = common::header(&headers, "location")
        .and_then(|l| l.split_once("/files/").map(|(_, id)| id.to_string()))
        .expect("Location");
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let info_key = format!("tus/{}.info", late.split_once('+').unwrap().0);
    let mut info: serde_json::Value =
        serde_json::from_slice(&bench.rt.block_on(ops::get(c, &b, &info_key, None)).unwrap()).unwrap();
    let expired = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        "window/late.pdf",
        "application/pdf",
        Visibility::Private,
        common::now() - 7200,
    );
    for (k, v) in expired.iter() {
        info["MetaData"][k] = serde_json::json!(v);
    }
    bench
        .rt
        .block_on(ops::put(c, &b, &info_key, info.to_string().as_bytes()))
        .unwrap();
    assert_eq!(head(&late).0, 410, "{}", logs());
    assert_eq!(patch(&late, 0, &data[..half]).0, 410, "{}", logs());

    // The first one finishes and lands.
    assert_eq!(patch(&id, half, &data[half..]).0, 204, "{}", logs());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
        if got["ok"] == true || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got["ok"], true, "{got}\n{}", logs());
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(&data)), "{got}");
    // Allowed: the two creations (POST always passes), PATCH, HEAD, PATCH.
    for (decision, reason, want) in [
        ("allow", "ok", 5.0),
        ("deny", "session_expired", 2.0),
        ("deny", "unknown_upload", 1.0),
    ] {
        let line = format!(
            "assetgate_decisions_total{{decision=\"{decision}\",endpoint=\"session\",reason=\"{reason}\"}}"
        );
        assert_eq!(stack.gate.metric(&line), want, "{line}\n{}", logs());
    }
}

#[test]
fn seaweedfs_session_window_reads_the_info_from_the_bucket() {
    session_window_reads_the_info_from_the_bucket(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_session_window_reads_the_info_from_the_bucket() {
    session_window_reads_the_info_from_the_bucket(&S3Engine::versitygw("assets"));
}

/// A 0-byte upload with `check_content`: S3 answers 416 to a range on an
/// empty object; that is the empty head the filesystem check reads of an
/// empty file (`assetgate::s3::lookup::head_of`), not a store failure: a type
/// without a signature is published, a PDF is a content mismatch.
fn empty_upload_is_sniffed_as_empty(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let head = bench.rt.block_on(assetgate::s3::lookup::head_of(
        &bench.store.client,
        bench.bucket(),
        "tus/none-such",
    ));
    assert_eq!(head, Err(ops::OpError::NotFound));
    bench.upload("empty1+mp", b"");
    let head = bench
        .rt
        .block_on(assetgate::s3::lookup::head_of(
            &bench.store.client,
            bench.bucket(),
            "tus/empty1+mp",
        ))
        .unwrap();
    assert!(head.is_empty());
    let done = bench
        .publish("empty1+mp", "private/empty.txt", 0, Some("text/plain"))
        .unwrap();
    assert_eq!((done.bytes, done.removed), (0, true));
    bench.upload("empty2+mp", b"");
    let refused = bench.publish("empty2+mp", "private/empty.pdf", 0, Some("application/pdf"));
    assert!(
        matches!(refused, Err(PublishError::ContentMismatch { .. })),
        "{refused:?}"
    );
    assert!(bench.head("private/empty.pdf").is_none());
}

#[test]
fn seaweedfs_empty_upload_is_sniffed_as_empty() {
    empty_upload_is_sniffed_as_empty(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_empty_upload_is_sniffed_as_empty() {
    empty_upload_is_sniffed_as_empty(&S3Engine::versitygw("assets"));
}

/// A refused upload (a complete upload object, its `.info`, its refusal
/// marker) whose token expired two hours ago: the reconciler's abandoned-
/// upload removal deletes all three, the marker last, although the object is
/// complete (a refused upload is never published); nothing lands.
fn refused_upload_is_removed_once_abandoned(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let data = pdf(20_000, b'r');
    let object = "0123456789abcdef0123456789abcdef";
    let id = format!("{object}+mp1");
    let metadata = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        "refused/old.pdf",
        "application/pdf",
        Visibility::Private,
        common::now() - 7200,
    );
    let info = serde_json::json!({
        "ID": id, "Size": data.len(), "SizeIsDeferred": false, "Offset": 0,
        "MetaData": metadata, "IsPartial": false, "IsFinal": false, "PartialUploads": null,
        "Storage": {"Type": "s3store", "Bucket": b, "Key": format!("tus/{object}")},
    });
    bench.rt.block_on(async {
        ops::put(c, &b, &format!("tus/{object}"), &data).await.unwrap();
        ops::put(c, &b, &format!("tus/{object}.info"), info.to_string().as_bytes())
            .await
            .unwrap();
        ops::put(c, &b, &format!("tus/{object}.refused"), b"{}\n")
            .await
            .unwrap();
    });
    let nothing = common::free_port();
    let events = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[tusd]\nupload_ids = \"signed\"\nreconcile_interval = \"1s\"\nabandon_after = \"1s\"\n\
         [storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
         [events]\nurl = \"http://127.0.0.1:{nothing}/events\"\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket,
        events.path().display().to_string(),
    );
    let gate = start_gate(engine, &config);
    let removed = "assetgate_reconcile_total{result=\"abandoned_removed\"}";
    assert!(
        gate.wait_metric(removed, 1.0, Duration::from_secs(30)),
        "{:#?}",
        gate.logs()
    );
    let left = engine.must(&["list", &b, "tus/"]);
    assert_eq!(
        left["objects"],
        serde_json::json!([]),
        "{left}\n{:#?}",
        gate.logs()
    );
    let got = engine.must(&["get", &b, "private/refused/old.pdf"]);
    assert_eq!(got["ok"], false, "{got}");
}

#[test]
fn seaweedfs_refused_upload_is_removed_once_abandoned() {
    refused_upload_is_removed_once_abandoned(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_refused_upload_is_removed_once_abandoned() {
    refused_upload_is_removed_once_abandoned(&S3Engine::versitygw("assets"));
}

// ---------------------------------------------------------------------------
// Review fixes (issue 21, i21-fix): the publish settles only on its own
// object, final refusals are recorded in the bucket, listings past 1,000
// multipart uploads, stale records removed, dead publishes' copies aborted.

use assetgate::s3::publish::settle;

/// A write the engine answered 200 without doing, while another upload's
/// object of the same size sits at the key: the post-write step (what
/// `publish` runs after the write's Ok) reads the destination's marker from
/// its digest GET and refuses: no commit (no event with the other object's
/// SHA-256), the upload kept, the other object untouched.
fn a_write_answered_without_effect_is_a_conflict(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let theirs = pdf(5_000, b'T');
    bench
        .rt
        .block_on(
            c.put_object()
                .bucket(&b)
                .key("private/same-size.pdf")
                .metadata(ops::MARKER, "other+mp")
                .body(theirs.clone().into())
                .send(),
        )
        .unwrap();
    let ours = pdf(5_000, b'O');
    bench.upload("objW+mp", &ours);
    let req = Request {
        bucket: &b,
        upload_key: "tus/objW+mp",
        info_key: "tus/objW+mp.info",
        destination: "private/same-size.pdf",
        size: ours.len() as u64,
        attrs: Attributes {
            content_type: "application/pdf",
            upload_id: "objW+mp",
        },
        content_check: None,
        check_info: false,
    };
    let mut committed = 0;
    let got = bench.rt.block_on(settle(c, &req, false, &mut |_, _| {
        committed += 1;
        true
    }));
    assert_eq!(got, Err(PublishError::Conflict));
    assert_eq!(committed, 0, "no event for another upload's object");
    assert!(bench.head("tus/objW+mp").is_some(), "the upload stays");
    assert_eq!(bench.bytes("private/same-size.pdf"), theirs);
}

#[test]
fn seaweedfs_a_write_answered_without_effect_is_a_conflict() {
    a_write_answered_without_effect_is_a_conflict(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_a_write_answered_without_effect_is_a_conflict() {
    a_write_answered_without_effect_is_a_conflict(&S3Engine::versitygw("assets"));
}

/// Two tusd uploads for one key, both finished before any publish (the first
/// daemon's reconciler never runs; post-finish is off): the second daemon's
/// reconciler publishes one; the loser gets one `upload.failed` (conflict),
/// its refusal is recorded (`tus/<objectId>.refused`), and the passes after
/// publish nothing more (no copy, no event).
fn a_conflict_loser_is_refused_once(engine: &S3Engine) {
    let events = tempfile::tempdir().unwrap();
    let first = s3_gate(engine, "1h", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(engine, dir.path(), &first);
    let key = "race/loser.pdf";
    let (a, b) = (pdf(60_000, b'A'), pdf(60_000, b'B'));
    let ida = tus_upload(&tusd, key, &a);
    let idb = tus_upload(&tusd, key, &b);
    drop(first);
    let gate = s3_gate(engine, "1s", events.path());
    let logs = || format!("assetgate:\n{:#?}\nengine:\n{}", gate.logs(), engine.log());
    let failed = "assetgate_events_total{result=\"enqueued\",type=\"upload.failed\"}";
    let finalized = "assetgate_events_total{result=\"enqueued\",type=\"upload.finalized\"}";
    let published = "assetgate_reconcile_total{result=\"published\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (gate.metric(failed) < 1.0 || gate.metric(finalized) < 1.0) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(gate.metric(finalized), 1.0, "{}", logs());
    assert_eq!(gate.metric(failed), 1.0, "{}", logs());
    let got = engine.must(&["get", &engine.bucket, &format!("private/{key}")]);
    let winner = got["metadata"]["assetgate-upload"].as_str().unwrap().to_string();
    let loser = if winner == ida { &idb } else { &ida };
    let loser_object = loser.split_once('+').unwrap().0;
    // Written right after the event is committed: waited for, bounded.
    let refused = loop {
        let refused = engine.must(&["get", &engine.bucket, &format!("tus/{loser_object}.refused")]);
        if refused["ok"] == true || std::time::Instant::now() > deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        refused["ok"],
        true,
        "the refusal is recorded: {refused}\n{}",
        logs()
    );
    // Two more passes: nothing offered, copied or sent again.
    std::thread::sleep(Duration::from_millis(1500));
    let offered = gate.metric(published);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gate.metric(published), offered, "{}", logs());
    assert_eq!(gate.metric(failed), 1.0, "{}", logs());
    assert_eq!(gate.metric(finalized), 1.0, "{}", logs());
    let winner_bytes = if winner == ida { &a } else { &b };
    assert_eq!(got["sha256"], hex::encode(Sha256::digest(winner_bytes)), "{got}");
    // The loser's upload stays (for abandon_after), listed as refused.
    let left = engine.must(&["list", &engine.bucket, "tus/"]);
    let names: Vec<&str> = left["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert!(names.contains(&format!("tus/{loser_object}").as_str()), "{left}");
    assert!(
        gate.logs().iter().any(|l| l.contains("refused earlier")),
        "{}",
        logs()
    );
}

#[test]
fn seaweedfs_a_conflict_loser_is_refused_once() {
    a_conflict_loser_is_refused_once(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_a_conflict_loser_is_refused_once() {
    a_conflict_loser_is_refused_once(&S3Engine::versitygw("assets"));
}

/// More than one page (1,000) of open multipart uploads under the prefix:
/// the listing reaches all of them (versitygw refuses its own upload-ID
/// marker on page 2).
fn more_than_a_page_of_multipart_uploads_is_listed(engine: &S3Engine) {
    use assetgate::s3::abandon::list_open;
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let started = std::time::Instant::now();
    bench.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..1005 {
            let (c, b) = (c.clone(), b.clone());
            set.spawn(async move {
                c.create_multipart_upload()
                    .bucket(&b)
                    .key(format!("tus/many{i:04}"))
                    .send()
                    .await
                    .unwrap();
            });
            if set.len() >= 16 {
                set.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    let made = started.elapsed();
    let listed = bench.rt.block_on(list_open(c, &b, "tus/")).unwrap();
    let keys: std::collections::BTreeSet<&str> = listed.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys.len(), 1005, "made in {made:?}");
    eprintln!(
        "1,005 multipart uploads made in {made:?}, listed in {:?}",
        started.elapsed() - made
    );
}

#[test]
fn seaweedfs_more_than_a_page_of_multipart_uploads_is_listed() {
    more_than_a_page_of_multipart_uploads_is_listed(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_more_than_a_page_of_multipart_uploads_is_listed() {
    more_than_a_page_of_multipart_uploads_is_listed(&S3Engine::versitygw("assets"));
}

/// The sweep aborts a dead publish's multipart copy under `private/` once
/// older than its bound (here 0), keeps a younger one (bound an hour), and
/// counts it in `assetgate_s3_stale_multipart_uploads_total`.
fn dead_publish_copies_are_aborted(engine: &S3Engine) {
    use assetgate::publisher::Backend as _;
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    bench.rt.block_on(async {
        for key in ["private/dead.pdf", "public/dead.png"] {
            c.create_multipart_upload()
                .bucket(&b)
                .key(key)
                .send()
                .await
                .unwrap();
        }
    });
    let stale = assetgate::publisher::Stale {
        max_ttl: Duration::from_secs(3600),
        clock_skew: Duration::from_secs(60),
        abandon_after: Duration::from_secs(86400),
    };
    let metrics = Metrics::new();
    let young = S3Backend::new(bench.store.clone(), bench.rt.handle().clone(), stale)
        .with_metrics(metrics.clone())
        .with_publish_prefixes("public", "private", Duration::from_secs(3600));
    std::thread::spawn(move || young.sweep().unwrap()).join().unwrap();
    let left = engine.must(&["list", &b, ""]);
    assert_eq!(left["uploads"].as_array().map(Vec::len), Some(2), "{left}");
    let old = S3Backend::new(bench.store.clone(), bench.rt.handle().clone(), stale)
        .with_metrics(metrics.clone())
        .with_publish_prefixes("public", "private", Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1100));
    std::thread::spawn(move || old.sweep().unwrap()).join().unwrap();
    let left = engine.must(&["list", &b, ""]);
    assert_eq!(left["uploads"], serde_json::json!([]), "{left}");
    let text = metrics.render();
    assert!(
        text.contains("assetgate_s3_stale_multipart_uploads_total{result=\"aborted\"} 2"),
        "{text}"
    );
}

#[test]
fn seaweedfs_dead_publish_copies_are_aborted() {
    dead_publish_copies_are_aborted(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_dead_publish_copies_are_aborted() {
    dead_publish_copies_are_aborted(&S3Engine::versitygw("assets"));
}

/// An upload whose multipart upload was aborted (as the sweep does to a
/// stale one) leaves an `.info` with neither object nor multipart upload:
/// once its token expired more than `abandon_after` ago the reconciler
/// removes that `.info` (it used to be offered to the publish every pass,
/// `SourceMissing`, forever).
fn stale_records_are_removed(engine: &S3Engine) {
    let events = tempfile::tempdir().unwrap();
    let first = s3_gate(engine, "1h", events.path());
    let dir = tempfile::tempdir().unwrap();
    let tusd = tusd_without_post_finish(engine, dir.path(), &first);
    let key = "stale/report.pdf";
    let (status, id, body) = tus_create(&tusd, key, "application/pdf", 50_000);
    assert_eq!(status, 201, "create: {body}\n{}", tusd.log());
    let id = id.expect("Location");
    drop(tusd);
    drop(first);
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let (object, multipart) = id.split_once('+').expect("objectId+multipartId");
    let info_key = format!("tus/{object}.info");
    bench.rt.block_on(async {
        c.abort_multipart_upload()
            .bucket(&b)
            .key(format!("tus/{object}"))
            .upload_id(multipart)
            .send()
            .await
            .unwrap();
    });
    let mut info: serde_json::Value =
        serde_json::from_slice(&bench.rt.block_on(ops::get(c, &b, &info_key, None)).unwrap()).unwrap();
    let expired = assetgate::token::upload::mint(
        common::UPLOAD_SECRET.as_bytes(),
        key,
        "application/pdf",
        Visibility::Private,
        common::now() - 7200,
    );
    for (k, v) in expired.iter() {
        info["MetaData"][k] = serde_json::json!(v);
    }
    bench
        .rt
        .block_on(ops::put(c, &b, &info_key, info.to_string().as_bytes()))
        .unwrap();
    let nothing = common::free_port();
    let config = format!(
        "{}max_ttl = \"1s\"\nclock_skew = 0\n[tusd]\nupload_ids = \"signed\"\nreconcile_interval = \"1s\"\n\
         abandon_after = \"1s\"\n[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
         [events]\nurl = \"http://127.0.0.1:{nothing}/events\"\nsecret = \"{EVENTS_SECRET}\"\ndir = {:?}\n",
        common::default_config(),
        engine.endpoint(),
        engine.bucket,
        events.path().display().to_string(),
    );
    let gate = start_gate(engine, &config);
    let logs = || format!("assetgate:\n{:#?}\nengine:\n{}", gate.logs(), engine.log());
    let removed = "assetgate_reconcile_total{result=\"abandoned_removed\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let left = loop {
        let left = engine.must(&["list", &b, "tus/"]);
        if left["objects"] == serde_json::json!([]) || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(left["objects"], serde_json::json!([]), "{left}\n{}", logs());
    assert_eq!(gate.metric(removed), 1.0, "{}", logs());
}

#[test]
fn seaweedfs_stale_records_are_removed() {
    stale_records_are_removed(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_stale_records_are_removed() {
    stale_records_are_removed(&S3Engine::versitygw("assets"));
}

/// `[tusd] upload_ids = "signed"` proves the object ID only (before `+`): the
/// publish reads the `.info` and requires the hook's full ID and the plan's
/// size, so a forged post-finish naming another multipart ID publishes
/// nothing.
fn signed_ids_check_the_info(engine: &S3Engine) {
    let bench = Bench::new(engine);
    let (c, b) = (&bench.store.client, bench.bucket().to_string());
    let body = pdf(4_000, b'g');
    bench.upload("objG+real", &body);
    let info = serde_json::json!({"ID": "objG+real", "Size": 4000, "Offset": 4000, "MetaData": {}});
    bench
        .rt
        .block_on(ops::put(c, &b, "tus/objG+real.info", info.to_string().as_bytes()))
        .unwrap();
    let attempt = |id: &str, upload: &str, size: u64| {
        let (upload_key, info_key) = (format!("tus/{upload}"), format!("tus/{upload}.info"));
        let req = Request {
            bucket: &b,
            upload_key: &upload_key,
            info_key: &info_key,
            destination: "private/signed.pdf",
            size,
            attrs: Attributes {
                content_type: "application/pdf",
                upload_id: id,
            },
            content_check: None,
            check_info: true,
        };
        bench
            .rt
            .block_on(publish(c, bench.store.method, req, &mut |_, _| true))
    };
    // The object and .info keys of `objG+real`, another multipart ID as the ID.
    assert_eq!(
        attempt("objG+forged", "objG+real", 4000),
        Err(PublishError::InfoId)
    );
    assert!(bench.head("private/signed.pdf").is_none());
    // The right ID; a size the .info does not say.
    bench.upload("objH+real", &pdf(3_000, b'h'));
    bench
        .rt
        .block_on(ops::put(
            c,
            &b,
            "tus/objH+real.info",
            serde_json::json!({"ID": "objH+real", "Size": 9999, "MetaData": {}})
                .to_string()
                .as_bytes(),
        ))
        .unwrap();
    assert_eq!(
        attempt("objH+real", "objH+real", 3000),
        Err(PublishError::Info("its size is not the upload's"))
    );
    // All as tusd wrote it: published.
    let done = attempt("objG+real", "objG+real", 4000).unwrap();
    assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(&body)));
    assert_eq!(
        bench.head("private/signed.pdf").unwrap().marker.as_deref(),
        Some("objG+real")
    );
}

#[test]
fn seaweedfs_signed_ids_check_the_info() {
    signed_ids_check_the_info(&S3Engine::seaweedfs("assets"));
}

#[test]
fn versitygw_signed_ids_check_the_info() {
    signed_ids_check_the_info(&S3Engine::versitygw("assets"));
}
