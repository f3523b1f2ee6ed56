//! The publisher on the filesystem backend and a real outbox: what each of
//! its three callers gets (a found upload planned, published with its event
//! committed first, refused with `upload.failed`, kept, held).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::service::{plan, Publisher, Report};
use crate::events::payload::{event_id, Kind};
use crate::events::store::{Record, Store};
use crate::events::{Outbox, Sink};
use crate::finalize::{Cancel, FinalizeError, Method, PendingUpload, Roots};
use crate::policy::Visibility;
use crate::token::upload::mint;
use crate::token::upload_id::UploadIds;
use crate::tusd::testing::{storage_config, upload_config, S1, S2};
use crate::tusd::{Gate, NotPlanned, Reason};

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n";

struct Env {
    _dirs: (TempDir, TempDir, TempDir),
    roots: Roots,
    outbox: Arc<Outbox>,
}

impl Env {
    /// The two roots, and an outbox holding at most `max_events`.
    fn new(max_events: u64) -> Env {
        let (up, store, events) = (
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        );
        let roots = Roots::new(up.path(), store.path()).unwrap();
        let outbox = Arc::new(Outbox::new(
            Store::open(events.path(), max_events, Duration::from_secs(3600)).unwrap(),
            None,
        ));
        Env {
            _dirs: (up, store, events),
            roots,
            outbox,
        }
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(Arc::new(self.roots.clone())).with_events(Some(Sink::Local(self.outbox.clone())))
    }

    /// A finished tusd upload `<up>/<id>` with its `.info`.
    fn upload(&self, id: &str, data: &[u8], meta: &BTreeMap<String, String>) -> PathBuf {
        let data_path = self.roots.upload_dir().join(id);
        let info_path = self.roots.upload_dir().join(format!("{id}.info"));
        fs::write(&data_path, data).unwrap();
        let info = serde_json::json!({
            "ID": id, "Size": data.len(), "SizeIsDeferred": false, "Offset": 0,
            "MetaData": meta, "IsPartial": false, "IsFinal": false, "PartialUploads": null,
            "Storage": {"Type": "filestore", "Path": data_path, "InfoPath": info_path},
        });
        fs::write(&info_path, info.to_string()).unwrap();
        data_path
    }

    /// What `find` reports as finished (exactly one upload).
    fn found(&self, publisher: &Publisher) -> PendingUpload {
        let found = publisher.find();
        assert_eq!(found.swept.unwrap(), 0);
        let mut scan = found.scan.unwrap();
        assert_eq!(scan.finished.len(), 1, "{scan:?}");
        scan.finished.remove(0)
    }

    fn events(&self) -> Vec<Record> {
        self.outbox.store().list(None, 100).unwrap()
    }
}

fn signed(secret: &str, key: &str) -> BTreeMap<String, String> {
    mint(
        secret.as_bytes(),
        key,
        "application/pdf",
        Visibility::Private,
        1_900_000_000,
    )
}

fn body(r: &Record) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap()
}

/// Runs `f` with the gate post-finish would use (one secret, S1).
fn with_gate<T>(f: impl FnOnce(Gate<'_>) -> T) -> T {
    let (upload, storage) = (upload_config(&[S1]), storage_config());
    f(Gate {
        upload: &upload,
        storage: &storage,
        upload_ids: UploadIds::Server,
    })
}

#[test]
fn a_found_upload_is_published_and_its_event_committed_before_it_goes() {
    let env = Env::new(100);
    let publisher = env.publisher();
    let src = env.upload("u1", PDF, &signed(S1, "docs/a.pdf"));
    let found = env.found(&publisher);
    let plan = with_gate(|g| plan(&found, g)).unwrap();

    let Report::Published(done) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("not published");
    };
    assert_eq!(done.method, Method::Renamed);
    assert_eq!(
        fs::read(env.roots.storage_root().join("private/docs/a.pdf")).unwrap(),
        PDF
    );
    assert!(!src.exists(), "the upload goes once its event is committed");
    let events = env.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, Kind::Finalized);
    assert_eq!(events[0].id, event_id(Kind::Finalized, "u1"));
    let digest = hex::encode(Sha256::digest(PDF));
    assert_eq!(body(&events[0])["data"]["sha256"], digest.as_str());

    // A second publish of the same plan (a duplicate post-finish): nothing
    // moves, no second event.
    let Report::Published(again) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("a duplicate is not a failure");
    };
    assert_eq!(again.method, Method::AlreadyFinalized);
    assert_eq!(env.events().len(), 1);
}

#[test]
fn a_conflict_stays_and_commits_upload_failed() {
    let env = Env::new(100);
    let publisher = env.publisher();
    let src = env.upload("u2", PDF, &signed(S1, "docs/b.pdf"));
    let dst = env.roots.storage_root().join("private/docs/b.pdf");
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    fs::write(&dst, b"someone else's").unwrap();
    let plan = with_gate(|g| plan(&env.found(&publisher), g)).unwrap();

    let report = publisher.publish(&plan, &Cancel::new());
    assert!(
        matches!(report, Report::NotPublished(FinalizeError::Exists)),
        "{report:?}"
    );
    assert_eq!(fs::read(&dst).unwrap(), b"someone else's");
    assert!(src.exists());
    let events = env.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, event_id(Kind::Failed, "u2"));
    assert_eq!(body(&events[0])["data"]["reason"], "exists");
}

#[test]
fn a_kept_upload_gets_one_upload_failed_and_a_skipped_one_none() {
    let env = Env::new(100);
    let publisher = env.publisher();
    // Signed with a secret the gate does not hold.
    env.upload("u3", PDF, &signed(S2, "docs/c.pdf"));
    let found = env.found(&publisher);
    let verdict = with_gate(|g| plan(&found, g)).unwrap_err();
    assert_eq!(verdict.reason().as_str(), "token_invalid");

    publisher.keep(&found, &verdict, &storage_config());
    publisher.keep(&found, &verdict, &storage_config());
    let events = env.events();
    assert_eq!(events.len(), 1, "one per upload, however often it is kept");
    assert_eq!(events[0].id, event_id(Kind::Failed, "u3"));
    let data = &body(&events[0])["data"];
    assert_eq!(data["reason"], "token_invalid");
    assert_eq!(data["path"], "private/docs/c.pdf");

    // Nothing final about a partial upload: no event.
    publisher.keep(&found, &NotPlanned::Skip(Reason::Partial), &storage_config());
    assert_eq!(env.events().len(), 1);
}

#[test]
fn an_event_that_cannot_be_committed_holds_the_upload_for_a_later_pass() {
    // An outbox with no room refuses every event.
    let full = Env::new(0);
    let src = full.upload("u4", PDF, &signed(S1, "docs/d.pdf"));
    let plan = with_gate(|g| plan(&full.found(&full.publisher()), g)).unwrap();
    let report = full.publisher().publish(&plan, &Cancel::new());
    assert!(matches!(report, Report::Held(_)), "{report:?}");
    assert!(full.roots.storage_root().join("private/docs/d.pdf").exists());
    assert!(src.exists(), "held: the upload stays");

    // The same roots with room: the next pass commits and cleans up.
    let roomy = Env::new(100);
    let publisher =
        Publisher::new(Arc::new(full.roots.clone())).with_events(Some(Sink::Local(roomy.outbox.clone())));
    let Report::Published(done) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("not committed on the second pass");
    };
    assert_eq!(done.method, Method::AlreadyFinalized);
    assert!(!src.exists());
    assert_eq!(roomy.events().len(), 1);
}

#[test]
fn without_events_nothing_is_hashed_and_nothing_committed() {
    let env = Env::new(100);
    let publisher = Publisher::new(Arc::new(env.roots.clone()));
    env.upload("u5", PDF, &signed(S1, "docs/e.pdf"));
    let plan = with_gate(|g| plan(&env.found(&publisher), g)).unwrap();
    let Report::Published(done) = publisher.publish(&plan, &Cancel::new()) else {
        panic!("not published");
    };
    assert_eq!(done.sha256, None);
    assert!(env.events().is_empty());
}

#[test]
fn find_sweeps_before_it_scans() {
    let env = Env::new(100);
    let tmp = env.roots.storage_root().join(crate::finalize::TEMP_DIR);
    fs::create_dir(&tmp).unwrap();
    let stale = tmp.join(".assetgate-0011223344556677.tmp");
    fs::write(&stale, b"left by a crash").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let found = env.publisher().find();
    assert_eq!(found.swept.unwrap(), 1);
    assert!(found.scan.unwrap().finished.is_empty());
    assert!(!Path::new(&stale).exists());
}
