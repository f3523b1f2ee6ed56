//! The durable outbox: one redb file, `<events.dir>/outbox.redb`.
//!
//! # Why redb
//!
//! - One file, ACID transactions, copy-on-write B-trees with checksums: a
//!   commit with `Durability::Immediate` (the default, used here) is on disk
//!   when `commit` returns, and a crash at any point (kill -9, power loss)
//!   leaves the last committed state. Several tables change in one
//!   transaction, so an event and its schedule index never disagree.
//! - Pure Rust, no C library and no required dependency, a stable file format
//!   since 1.0, fuzzed and maintained; the crate keeps `unsafe` out of ours.
//! - fjall (an LSM tree) is built for write-heavy key-value loads with
//!   background compaction threads and a journal directory: far more machinery
//!   than a queue of a few thousand small records needs. Plain files with
//!   fsync + rename (one per event) are possible, but every state change is
//!   then a rewrite of one file plus a directory fsync, "find the next due
//!   event" is a directory scan, and multi-file updates are not atomic.
//!
//! redb takes an exclusive lock on the file: one process at a time. The
//! daemon holds it while it runs; `assetgate events …` and `finalize-pending`
//! use the file directly when they can lock it (daemon stopped), and otherwise
//! go through the daemon's admin socket (`crate::events::wire`).
//!
//! # Tables
//!
//! - `events`: id → record (JSON), for pending and dead events;
//! - `due`: (next attempt ms, id) for pending events: what to send next;
//! - `created`: (age origin ms, id) for pending events: the oldest one;
//! - `delivered`: id → delivered ms, and `delivered_at`: (ms, id): the ids of
//!   delivered events, kept `keep_delivered` (and at most `max_events`), so a
//!   duplicate post-finish or reconcile pass within that time sends nothing.
//!
//! # Bounds
//!
//! At most `max_events` pending + dead events (each body is a few hundred
//! bytes; [`MAX_BODY`] at most): beyond, [`Enqueued::Refused`]. The file is
//! compacted at every open. The page cache is capped at [`CACHE_BYTES`].
//!
//! # A full disk, an I/O error
//!
//! At the first I/O error under it (a full disk, EIO) redb marks its handle
//! failed and answers every later call on it, reads included, with "Previous
//! I/O error occurred. Please close and re-open the database", however healthy
//! the disk has become: the flag is never cleared, so that a half-written
//! transaction cannot be flushed later with a clean recovery flag (redb PR
//! #836, "Make all I/O errors fatal"). The only way back is a new `Database` on
//! the file. Opening it runs redb's repair, which returns the file to its last
//! committed transaction: a commit becomes visible only when the header's
//! commit slot flips, after its pages are written and checksummed, so the
//! transaction that failed is dropped whole and no committed event is lost.
//!
//! So the store keeps its `Database` in a slot behind its own lock. Each call
//! holds the lock (shared) across its whole transaction; a call that meets an
//! I/O error then takes it exclusively, once no transaction on that handle is
//! left, and drops the handle (which releases redb's file lock). The next call
//! opens the file again; while that fails (the disk still full) calls answer
//! [`StoreError::Unavailable`] at once. Every call tries: the mover's commits
//! are one per finished upload, the delivery loop reads about once a second
//! when it fails, so the outbox is back within a second of the space. Nothing
//! is lost meanwhile: the mover removes an upload's source only once its event
//! is committed, and the reconciler (or tusd's retry, or `finalize-pending`)
//! commits it later. A change of [`Availability`] goes to an observer: the
//! daemon logs it and sets `assetgate_events_outbox_available`.
//!
//! The daemon opens with [`Store::open_or_unavailable`]: a file that cannot be
//! opened for want of space (or EIO) at start leaves the store unavailable,
//! not the daemon down; the first call after the space is back opens it.
//!
//! # Permissions
//!
//! The directory is created 0700 and the file 0600, whatever the umask: the
//! events carry the keys and paths of every upload, and the admin socket in
//! the same directory answers whoever may connect to it. A file found wider is
//! narrowed to 0600 at every open (it is the daemon's own). A directory found
//! wider is reported ([`Store::notes`]) and left as it is: it may be a volume
//! root or a state directory the operator manages, and what is in it (the
//! file, the socket) is 0600 regardless.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::backoff::Next;
use super::payload::{Event, Kind};

const EVENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("events");
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("due");
const CREATED: TableDefinition<(u64, &str), ()> = TableDefinition::new("created");
const DELIVERED: TableDefinition<&str, u64> = TableDefinition::new("delivered");
const DELIVERED_AT: TableDefinition<(u64, &str), ()> = TableDefinition::new("delivered_at");

/// The file inside `events.dir`.
pub const FILE: &str = "outbox.redb";

/// redb's page cache (its default is 1 GiB): the outbox is read in small
/// batches, so a few MiB keep the daemon's memory flat however deep the queue.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Largest event body accepted (a key is at most 1 KiB; a body is far below).
pub const MAX_BODY: usize = 16 * 1024;

/// Longest `last_error` kept.
const MAX_ERROR: usize = 300;

/// The directory's mode when the store creates it.
pub const DIR_MODE: u32 = 0o700;

/// The file's mode, at creation and at every open.
pub const FILE_MODE: u32 = 0o600;

/// Where an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its next attempt.
    Pending,
    /// Retried up to `max_age`; kept with its last error until `events retry`.
    Dead,
    /// Delivered (only its id and time are kept).
    Delivered,
}

impl State {
    /// The label/CLI value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Dead => "dead",
            State::Delivered => "delivered",
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `webhook-id`.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Pending or dead (delivered events keep no record).
    pub state: State,
    /// Creation, Unix ms.
    pub created_ms: u64,
    /// Where `max_age` counts from: creation, or the last `events retry`.
    pub age_from_ms: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When a pending event is tried next (Unix ms).
    pub next_attempt_ms: u64,
    /// The last attempt (Unix ms).
    pub last_attempt_ms: Option<u64>,
    /// Why the last attempt failed (no secret: a status and a short body
    /// excerpt, or a transport error).
    pub last_error: Option<String>,
    /// The asset key, for listings.
    pub key: String,
    /// The JSON body, as delivered.
    pub body: String,
}

/// What [`Store::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Committed to disk.
    New,
    /// An event with this id exists (pending, dead or delivered): nothing written.
    Duplicate(State),
    /// The outbox holds `max_events` events: nothing written.
    Refused,
}

/// What [`Store::retry`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Queued for an attempt now (its age counts from now).
    Queued,
    /// Already delivered.
    Delivered,
    /// No such event.
    NotFound,
}

/// Depth figures for metrics and `events list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Pending events.
    pub pending: u64,
    /// Dead events.
    pub dead: u64,
    /// Remembered delivered ids.
    pub delivered: u64,
    /// Age origin of the oldest pending event (Unix ms).
    pub oldest_pending_ms: Option<u64>,
}

/// Why the outbox could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the outbox (the daemon, or a CLI command).
    #[error("the outbox is in use by another process")]
    Locked,
    /// The directory or file could not be created or opened (permissions, not
    /// a directory, a read-only filesystem).
    #[error(transparent)]
    Io(std::io::Error),
    /// Reading or writing the file failed (a full disk, EIO), now or earlier
    /// on the same handle ("Previous I/O error"): the handle is spent, the
    /// store opens the file again at its next call.
    #[error("outbox file: {message}")]
    Disk {
        /// What failed.
        message: String,
        /// Space or the device, not the configuration: worth waiting for
        /// (ENOSPC, EDQUOT, EIO, or a handle an earlier one spent).
        transient: bool,
    },
    /// The file is not open: the last try failed (the disk still full).
    #[error("the outbox is unavailable: {0}")]
    Unavailable(String),
    /// redb reported another error (corruption, a table mismatch).
    #[error("outbox database: {0}")]
    Db(String),
    /// An event body over [`MAX_BODY`].
    #[error("event body over {MAX_BODY} bytes")]
    TooBig,
}

impl StoreError {
    /// The redb handle is spent: drop it, open the file again.
    fn spends_handle(&self) -> bool {
        matches!(self, StoreError::Disk { .. })
    }

    /// Space or the device, not the configuration (see [`StoreError::Disk`]).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Disk { transient: true, .. } | StoreError::Unavailable(_)
        )
    }

    fn from_io(e: io::Error) -> StoreError {
        if transient(&e) {
            StoreError::Disk {
                message: e.to_string(),
                transient: true,
            }
        } else {
            StoreError::Io(e)
        }
    }
}

/// A full disk or quota, or EIO: the disk, not the configuration.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error())
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Io(io) => StoreError::Disk {
                transient: transient(&io),
                message: format!("I/O error: {io}"),
            },
            // An I/O error before, on this handle (its first answer was `Io`).
            e @ (redb::StorageError::PreviousIo | redb::StorageError::DatabaseClosed) => StoreError::Disk {
                message: e.to_string(),
                transient: true,
            },
            other => StoreError::Db(other.to_string()),
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) => redb::StorageError::Io(io).into(),
            redb::Error::PreviousIo => redb::StorageError::PreviousIo.into(),
            redb::Error::DatabaseClosed => redb::StorageError::DatabaseClosed.into(),
            other => StoreError::Db(other.to_string()),
        }
    }
}

/// redb's error types that wrap a `StorageError`: I/O stays I/O.
macro_rules! via_storage {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StoreError {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(s) => s.into(),
                    other => StoreError::Db(other.to_string()),
                }
            }
        }
    )*};
}
via_storage!(TransactionError, TableError, CommitError, CompactionError);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            redb::DatabaseError::Storage(s) => s.into(),
            other => StoreError::Db(other.to_string()),
        }
    }
}

/// Whether the outbox file can be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Open.
    Available,
    /// Not open, and why (the I/O error that spent the handle, or why the
    /// file cannot be opened again).
    Unavailable(String),
}

/// Told every change of [`Availability`] (under the store's lock: it must not
/// call the store).
pub type Observer = Box<dyn Fn(&Availability) + Send + Sync>;

struct Slot {
    db: Option<Database>,
    /// Bumped at every open, so an error met on an older handle never drops a
    /// newer one.
    generation: u64,
    /// Why `db` is `None`.
    why: String,
}

/// The outbox. Cheap to share (`Arc`); every method is a short transaction
/// (blocking: call it from the blocking pool or a CLI).
pub struct Store {
    slot: RwLock<Slot>,
    dir: PathBuf,
    path: PathBuf,
    max_events: u64,
    keep_delivered: Duration,
    observer: OnceLock<Observer>,
    notes: Vec<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where a new outbox is initialized before it is linked to [`FILE`].
const NEW_FILE: &str = ".outbox.redb.new";

/// Opens the database in `dir` (created [`DIR_MODE`] if missing), compacted
/// when `compact`, with its tables. A missing (or empty) file is made whole
/// under [`NEW_FILE`] first and linked into place only then: redb initializes
/// a new file with several writes, and a full disk in between would leave a
/// file that no later open can read ("invalid data").
fn open_db(dir: &Path, path: &Path, compact: bool) -> Result<Database, StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(StoreError::from_io)?;
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) if f.metadata().map_err(StoreError::from_io)?.len() > 0 => f,
        // Empty: what a crash during an older version's creation left.
        Ok(_) => {
            std::fs::remove_file(path).map_err(StoreError::from_io)?;
            return create_db(dir, path);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_db(dir, path),
        Err(e) => return Err(StoreError::from_io(e)),
    };
    // The daemon's own file: narrowed at every open, whatever made it wider.
    // Best effort: a CLI run by another user who may write the file (not its
    // owner) uses it as it is; the daemon, its owner, narrows it at its next
    // open.
    if file.metadata().map_err(StoreError::from_io)?.mode() & 0o777 != FILE_MODE {
        let _ = file.set_permissions(Permissions::from_mode(FILE_MODE));
    }
    let mut db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create_file(file)?;
    // Deleted records free pages inside the file but never shrink it: give
    // the space back at each start.
    if compact {
        if let Err(e) = db.compact() {
            let e = StoreError::from(e);
            if !e.spends_handle() {
                return Err(e);
            }
            // A full disk can fail the compaction (it writes); the file is at
            // its last commit, usable without it.
            drop(db);
            return open_db(dir, path, false);
        }
    }
    with_tables(&db)?;
    Ok(db)
}

/// A new outbox, initialized whole under [`NEW_FILE`] (locked, so a second
/// process creating one at the same time waits: [`StoreError::Locked`]), then
/// hard-linked to `path`, which fails if another process made one meanwhile:
/// that one is opened instead.
fn create_db(dir: &Path, path: &Path) -> Result<Database, StoreError> {
    let new = dir.join(NEW_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&new)
        .map_err(StoreError::from_io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked),
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::from_io(e)),
    }
    // Whatever a failed try left: start empty (redb initializes an empty file).
    let made = file
        .set_len(0)
        .and_then(|()| file.set_permissions(Permissions::from_mode(FILE_MODE)))
        .map_err(StoreError::from_io)
        .and_then(|()| {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create_file(file)?;
            with_tables(&db)?;
            Ok(db)
        });
    let db = match made {
        Ok(db) => db,
        Err(e) => {
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
    };
    let linked = std::fs::hard_link(&new, path);
    let _ = std::fs::remove_file(&new);
    match linked {
        Ok(()) => {
            // The name as durable as what will be committed under it.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::from_io)?;
            Ok(db)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            drop(db);
            open_db(dir, path, false)
        }
        Err(e) => Err(StoreError::from_io(e)),
    }
}

fn with_tables(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        tx.open_table(EVENTS)?;
        tx.open_table(DUE)?;
        tx.open_table(CREATED)?;
        tx.open_table(DELIVERED)?;
        tx.open_table(DELIVERED_AT)?;
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Opens (creating the directory and the file) and compacts the outbox.
    /// [`StoreError::Locked`] when another process has it open; any other
    /// failure is an error too (the CLI's open).
    pub fn open(dir: &Path, max_events: u64, keep_delivered: Duration) -> Result<Store, StoreError> {
        let mut store = Store::closed(dir, max_events, keep_delivered);
        let db = open_db(&store.dir, &store.path, true)?;
        let slot = store.slot.get_mut().unwrap_or_else(PoisonError::into_inner);
        slot.db = Some(db);
        slot.generation = 1;
        Ok(store)
    }

    /// The daemon's open: like [`Store::open`], but a file that cannot be
    /// opened for a transient reason ([`StoreError::is_transient`]: the disk
    /// is full) gives a store that is [`Availability::Unavailable`] and opens
    /// the file at its first call once it can. Locked, permissions, corruption:
    /// errors as in [`Store::open`].
    pub fn open_or_unavailable(
        dir: &Path,
        max_events: u64,
        keep_delivered: Duration,
    ) -> Result<Store, StoreError> {
        match Store::open(dir, max_events, keep_delivered) {
            Err(e) if e.is_transient() => {
                let store = Store::closed(dir, max_events, keep_delivered);
                store.write_slot().why = e.to_string();
                Ok(store)
            }
            r => r,
        }
    }

    fn closed(dir: &Path, max_events: u64, keep_delivered: Duration) -> Store {
        let mut notes = Vec::new();
        if let Ok(m) = std::fs::metadata(dir) {
            if m.mode() & 0o077 != 0 {
                notes.push(format!(
                    "the events directory {} is mode {:04o}: only assetgate needs it (chmod 0700)",
                    dir.display(),
                    m.mode() & 0o7777
                ));
            }
        }
        Store {
            slot: RwLock::new(Slot {
                db: None,
                generation: 0,
                why: "not opened yet".to_owned(),
            }),
            dir: dir.to_owned(),
            path: dir.join(FILE),
            max_events,
            keep_delivered,
            observer: OnceLock::new(),
            notes,
        }
    }

    /// What the open found worth telling the operator (a directory wider than
    /// [`DIR_MODE`]).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Whether the file is open now.
    pub fn availability(&self) -> Availability {
        let slot = self.read_slot();
        match slot.db {
            Some(_) => Availability::Available,
            None => Availability::Unavailable(slot.why.clone()),
        }
    }

    /// Sets the observer of [`Availability`] changes (once; a second is
    /// ignored).
    pub fn observe(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    fn notify(&self, a: &Availability) {
        if let Some(o) = self.observer.get() {
            o(a);
        }
    }

    fn read_slot(&self) -> RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_slot(&self) -> RwLockWriteGuard<'_, Slot> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the open database, opening the file first if it is not
    /// (see the module docs); an I/O error out of `f` drops the handle.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let slot = self.opened()?;
        let generation = slot.generation;
        let Some(db) = slot.db.as_ref() else {
            return Err(StoreError::Unavailable(slot.why.clone()));
        };
        let r = f(db);
        drop(slot);
        if let Err(e) = &r {
            if e.spends_handle() {
                self.spent(generation, e.to_string());
            }
        }
        r
    }

    /// The slot, shared, with the database open, or why it cannot be.
    fn opened(&self) -> Result<RwLockReadGuard<'_, Slot>, StoreError> {
        {
            let slot = self.read_slot();
            if slot.db.is_some() {
                return Ok(slot);
            }
        }
        {
            let mut slot = self.write_slot();
            if slot.db.is_none() {
                match open_db(&self.dir, &self.path, false) {
                    Ok(db) => {
                        slot.db = Some(db);
                        slot.generation += 1;
                        slot.why.clear();
                        self.notify(&Availability::Available);
                    }
                    Err(e) => {
                        slot.why = e.to_string();
                        return Err(StoreError::Unavailable(slot.why.clone()));
                    }
                }
            }
        }
        // Another call may have spent the new handle in between: `with` sees
        // `None` then and answers Unavailable.
        Ok(self.read_slot())
    }

    /// Drops the handle of `generation` after an I/O error on it: redb's
    /// handle stays failed for good (module docs). Waits until no
    /// transaction on it is left (they hold the slot shared).
    fn spent(&self, generation: u64, why: String) {
        let mut slot = self.write_slot();
        if slot.generation != generation || slot.db.is_none() {
            return;
        }
        slot.db = None;
        slot.why = why;
        self.notify(&Availability::Unavailable(slot.why.clone()));
    }

    /// The file's size on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits `event` as pending, due now, unless an event with its id
    /// exists (idempotent by id) or the outbox is full.
    pub fn enqueue(&self, event: &Event) -> Result<Enqueued, StoreError> {
        if event.body.len() > MAX_BODY {
            return Err(StoreError::TooBig);
        }
        self.with(|db| {
            let tx = db.begin_write()?;
            let outcome = {
                let mut events = tx.open_table(EVENTS)?;
                let delivered = tx.open_table(DELIVERED)?;
                let existing = events.get(event.id.as_str())?.map(|v| v.value().to_vec());
                if let Some(bytes) = existing {
                    let r: Record = serde_json::from_slice(&bytes)?;
                    Enqueued::Duplicate(r.state)
                } else if delivered.get(event.id.as_str())?.is_some() {
                    Enqueued::Duplicate(State::Delivered)
                } else if events.len()? >= self.max_events {
                    Enqueued::Refused
                } else {
                    let r = Record {
                        id: event.id.clone(),
                        kind: event.kind,
                        state: State::Pending,
                        created_ms: event.created_ms,
                        age_from_ms: event.created_ms,
                        attempts: 0,
                        next_attempt_ms: event.created_ms,
                        last_attempt_ms: None,
                        last_error: None,
                        key: event.key.clone(),
                        body: event.body.clone(),
                    };
                    events.insert(r.id.as_str(), serde_json::to_vec(&r)?.as_slice())?;
                    tx.open_table(DUE)?
                        .insert((r.next_attempt_ms, r.id.as_str()), ())?;
                    tx.open_table(CREATED)?
                        .insert((r.age_from_ms, r.id.as_str()), ())?;
                    Enqueued::New
                }
            };
            if outcome == Enqueued::New {
                tx.commit()?;
            } else {
                tx.abort()?;
            }
            Ok(outcome)
        })
    }

    /// Pending events due at `now_ms`, earliest first, at most `limit`, skipping
    /// the ids `skip` says are in flight.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Record>, StoreError> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let due = tx.open_table(DUE)?;
            let events = tx.open_table(EVENTS)?;
            let mut out = Vec::new();
            for entry in due.range((0u64, "")..)? {
                let (k, _) = entry?;
                let (at, id) = k.value();
                if at > now_ms || out.len() >= limit {
                    break;
                }
                if skip(id) {
                    continue;
                }
                if let Some(v) = events.get(id)? {
                    out.push(serde_json::from_slice(v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// When the earliest pending event is due (Unix ms).
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let due = tx.open_table(DUE)?;
            let first = due.first()?.map(|(k, _)| k.value().0);
            Ok(first)
        })
    }

    fn take(tx: &redb::WriteTransaction, id: &str) -> Result<Option<Record>, StoreError> {
        let mut events = tx.open_table(EVENTS)?;
        let Some(r) = events.remove(id)? else {
            return Ok(None);
        };
        let r: Record = serde_json::from_slice(r.value())?;
        if r.state == State::Pending {
            tx.open_table(DUE)?.remove((r.next_attempt_ms, r.id.as_str()))?;
            tx.open_table(CREATED)?.remove((r.age_from_ms, r.id.as_str()))?;
        }
        Ok(Some(r))
    }

    fn put(tx: &redb::WriteTransaction, r: &Record) -> Result<(), StoreError> {
        tx.open_table(EVENTS)?
            .insert(r.id.as_str(), serde_json::to_vec(r)?.as_slice())?;
        if r.state == State::Pending {
            tx.open_table(DUE)?
                .insert((r.next_attempt_ms, r.id.as_str()), ())?;
            tx.open_table(CREATED)?
                .insert((r.age_from_ms, r.id.as_str()), ())?;
        }
        Ok(())
    }

    /// Pending → delivered: the record goes, its id is remembered. Returns the
    /// record (for the metrics) if it was pending.
    pub fn delivered(&self, id: &str, now_ms: u64) -> Result<Option<Record>, StoreError> {
        self.with(|db| {
            let tx = db.begin_write()?;
            let r = Self::take(&tx, id)?;
            if r.is_some() {
                tx.open_table(DELIVERED)?.insert(id, now_ms)?;
                tx.open_table(DELIVERED_AT)?.insert((now_ms, id), ())?;
            }
            tx.commit()?;
            Ok(r)
        })
    }

    /// A failed attempt: pending again at the time `next` says, or dead; the
    /// error is kept (truncated). Returns the new record.
    pub fn failed(
        &self,
        id: &str,
        now_ms: u64,
        next: Next,
        error: &str,
    ) -> Result<Option<Record>, StoreError> {
        self.with(|db| {
            let tx = db.begin_write()?;
            let Some(mut r) = Self::take(&tx, id)? else {
                tx.abort()?;
                return Ok(None);
            };
            r.attempts = r.attempts.saturating_add(1);
            r.last_attempt_ms = Some(now_ms);
            r.last_error = Some(truncate(error, MAX_ERROR));
            match next {
                Next::RetryAt(at) => {
                    r.state = State::Pending;
                    r.next_attempt_ms = at;
                }
                Next::Dead => r.state = State::Dead,
            }
            Self::put(&tx, &r)?;
            tx.commit()?;
            Ok(Some(r))
        })
    }

    /// One event, or the delivered time of a remembered id.
    pub fn get(&self, id: &str) -> Result<Option<Result<Record, u64>>, StoreError> {
        self.with(|db| {
            let tx = db.begin_read()?;
            if let Some(v) = tx.open_table(EVENTS)?.get(id)? {
                return Ok(Some(Ok(serde_json::from_slice(v.value())?)));
            }
            Ok(tx.open_table(DELIVERED)?.get(id)?.map(|v| Err(v.value())))
        })
    }

    /// Pending and/or dead events (`None`: both), at most `limit`.
    pub fn list(&self, state: Option<State>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let events = tx.open_table(EVENTS)?;
            let mut out = Vec::new();
            for entry in events.iter()? {
                let (_, v) = entry?;
                let r: Record = serde_json::from_slice(v.value())?;
                if state.is_none_or(|s| s == r.state) {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            out.sort_by_key(|r| (r.created_ms, r.id.clone()));
            Ok(out)
        })
    }

    /// Dead (or pending) → pending, due now, its age counting from now.
    pub fn retry(&self, id: &str, now_ms: u64) -> Result<Retried, StoreError> {
        self.with(|db| {
            let tx = db.begin_write()?;
            let Some(mut r) = Self::take(&tx, id)? else {
                let delivered = tx.open_table(DELIVERED)?.get(id)?.is_some();
                tx.abort()?;
                return Ok(if delivered {
                    Retried::Delivered
                } else {
                    Retried::NotFound
                });
            };
            r.state = State::Pending;
            r.next_attempt_ms = now_ms;
            r.age_from_ms = now_ms;
            Self::put(&tx, &r)?;
            tx.commit()?;
            Ok(Retried::Queued)
        })
    }

    /// Every dead event → pending (see [`Store::retry`]). Returns how many.
    pub fn retry_dead(&self, now_ms: u64) -> Result<usize, StoreError> {
        let ids: Vec<String> = self
            .list(Some(State::Dead), usize::MAX)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        self.with(|db| {
            let tx = db.begin_write()?;
            for id in &ids {
                if let Some(mut r) = Self::take(&tx, id)? {
                    r.state = State::Pending;
                    r.next_attempt_ms = now_ms;
                    r.age_from_ms = now_ms;
                    Self::put(&tx, &r)?;
                }
            }
            tx.commit()?;
            Ok(ids.len())
        })
    }

    /// Every pending event due later than `now_ms` becomes due now (the
    /// receiver is back: no need to wait out each event's backoff). Returns how
    /// many moved.
    pub fn due_now(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.with(|db| {
            let tx = db.begin_write()?;
            let later: Vec<(u64, String)> = {
                let due = tx.open_table(DUE)?;
                let mut v = Vec::new();
                for entry in due.range((now_ms.saturating_add(1), "")..)? {
                    let (k, _) = entry?;
                    let (at, id) = k.value();
                    v.push((at, id.to_owned()));
                }
                v
            };
            {
                let mut due = tx.open_table(DUE)?;
                let mut events = tx.open_table(EVENTS)?;
                for (at, id) in &later {
                    due.remove((*at, id.as_str()))?;
                    due.insert((now_ms, id.as_str()), ())?;
                    let bytes = events.get(id.as_str())?.map(|v| v.value().to_vec());
                    if let Some(bytes) = bytes {
                        let mut r: Record = serde_json::from_slice(&bytes)?;
                        r.next_attempt_ms = now_ms;
                        events.insert(id.as_str(), serde_json::to_vec(&r)?.as_slice())?;
                    }
                }
            }
            tx.commit()?;
            Ok(later.len())
        })
    }

    /// Forgets delivered ids older than `keep_delivered`, and the oldest beyond
    /// `max_events` of them. Returns how many.
    pub fn prune_delivered(&self, now_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(ms(self.keep_delivered));
        self.with(|db| {
            let tx = db.begin_write()?;
            let n = {
                let mut at = tx.open_table(DELIVERED_AT)?;
                let mut delivered = tx.open_table(DELIVERED)?;
                let total = at.len()?;
                let over = total.saturating_sub(self.max_events);
                let mut doomed = Vec::new();
                for (i, entry) in at.iter()?.enumerate() {
                    let (k, _) = entry?;
                    let (t, id) = k.value();
                    if t >= cutoff && (i as u64) >= over {
                        break;
                    }
                    doomed.push((t, id.to_owned()));
                    if doomed.len() >= 10_000 {
                        break;
                    }
                }
                for (t, id) in &doomed {
                    at.remove((*t, id.as_str()))?;
                    delivered.remove(id.as_str())?;
                }
                doomed.len()
            };
            if n == 0 {
                tx.abort()?;
            } else {
                tx.commit()?;
            }
            Ok(n)
        })
    }

    /// Depth figures.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.with(|db| {
            let tx = db.begin_read()?;
            let pending = tx.open_table(DUE)?.len()?;
            let all = tx.open_table(EVENTS)?.len()?;
            let delivered = tx.open_table(DELIVERED)?.len()?;
            let created = tx.open_table(CREATED)?;
            let oldest = created.first()?.map(|(k, _)| k.value().0);
            Ok(Counts {
                pending,
                dead: all.saturating_sub(pending),
                delivered,
                oldest_pending_ms: oldest,
            })
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::payload::event_id;

    fn event(upload: &str, at: u64) -> Event {
        Event {
            id: event_id(Kind::Finalized, upload),
            kind: Kind::Finalized,
            created_ms: at,
            body: format!("{{\"upload\":\"{upload}\"}}"),
            key: format!("k/{upload}"),
        }
    }

    fn open(dir: &Path, max: u64) -> Store {
        Store::open(dir, max, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn enqueue_is_idempotent_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 2);
        assert_eq!(s.enqueue(&event("a", 1000)).unwrap(), Enqueued::New);
        assert_eq!(
            s.enqueue(&event("a", 2000)).unwrap(),
            Enqueued::Duplicate(State::Pending)
        );
        assert_eq!(s.enqueue(&event("b", 1000)).unwrap(), Enqueued::New);
        assert_eq!(s.enqueue(&event("c", 1000)).unwrap(), Enqueued::Refused);
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.dead, c.delivered), (2, 0, 0));
        // the duplicate did not change the stored event
        let r = s.get(&event_id(Kind::Finalized, "a")).unwrap().unwrap().unwrap();
        assert_eq!(r.created_ms, 1000);
    }

    #[test]
    fn pending_failed_dead_retried_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 10);
        let e = event("a", 1000);
        s.enqueue(&e).unwrap();
        let none = |_: &str| false;
        assert_eq!(s.due(999, 10, &none).unwrap().len(), 0);
        assert_eq!(s.due(1000, 10, &none).unwrap()[0].id, e.id);
        assert_eq!(
            s.due(1000, 10, &|id: &str| id == e.id).unwrap().len(),
            0,
            "in flight: skipped"
        );

        // failed: pending later, error kept
        let r = s
            .failed(&e.id, 1100, Next::RetryAt(5000), "HTTP 500")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.state, r.attempts, r.next_attempt_ms),
            (State::Pending, 1, 5000)
        );
        assert_eq!(s.due(4999, 10, &none).unwrap().len(), 0);
        assert_eq!(s.next_due().unwrap(), Some(5000));
        // the receiver came back: everything due now
        assert_eq!(s.due_now(2000).unwrap(), 1);
        assert_eq!(s.due(2000, 10, &none).unwrap().len(), 1);

        // dead: out of the schedule, error kept
        let r = s
            .failed(&e.id, 6000, Next::Dead, "connection refused")
            .unwrap()
            .unwrap();
        assert_eq!((r.state, r.attempts), (State::Dead, 2));
        assert_eq!(s.due(u64::MAX, 10, &none).unwrap().len(), 0);
        assert_eq!(s.next_due().unwrap(), None);
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.dead, c.oldest_pending_ms), (0, 1, None));
        assert_eq!(
            s.list(Some(State::Dead), 10).unwrap()[0].last_error.as_deref(),
            Some("connection refused")
        );
        assert_eq!(s.enqueue(&e).unwrap(), Enqueued::Duplicate(State::Dead));

        // retry: pending, due now, age from now
        assert_eq!(s.retry(&e.id, 7000).unwrap(), Retried::Queued);
        let r = s.due(7000, 10, &none).unwrap().remove(0);
        assert_eq!((r.state, r.age_from_ms, r.attempts), (State::Pending, 7000, 2));
        assert_eq!(s.counts().unwrap().oldest_pending_ms, Some(7000));

        // delivered: record gone, id remembered, enqueue is a no-op
        assert!(s.delivered(&e.id, 8000).unwrap().is_some());
        assert_eq!(s.get(&e.id).unwrap(), Some(Err(8000)));
        assert_eq!(s.enqueue(&e).unwrap(), Enqueued::Duplicate(State::Delivered));
        assert_eq!(s.retry(&e.id, 9000).unwrap(), Retried::Delivered);
        assert_eq!(s.retry("evt_nope", 9000).unwrap(), Retried::NotFound);
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.dead, c.delivered), (0, 0, 1));
        // a delivery reported for an id no longer pending changes nothing
        assert!(s.delivered(&e.id, 8500).unwrap().is_none());
    }

    #[test]
    fn retry_dead_requeues_all_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), 10);
            for u in ["a", "b", "c"] {
                let e = event(u, 1000);
                s.enqueue(&e).unwrap();
                s.failed(&e.id, 1100, Next::Dead, "gone").unwrap();
            }
            assert_eq!(s.counts().unwrap().dead, 3);
        }
        // a second process cannot open it while this one holds it
        let s = open(dir.path(), 10);
        assert!(matches!(
            Store::open(dir.path(), 10, Duration::from_secs(1)),
            Err(StoreError::Locked)
        ));
        assert_eq!(s.retry_dead(5000).unwrap(), 3);
        let c = s.counts().unwrap();
        assert_eq!((c.pending, c.dead), (3, 0));
    }

    /// Issue 19, finding 12: the file is the daemon's alone, whatever made it
    /// wider; a wider directory (maybe the operator's) is reported, not changed.
    #[test]
    fn a_wider_file_is_narrowed_at_open_and_a_wider_directory_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), 10));
        let file = dir.path().join(FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = open(dir.path(), 10);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(dir.path()), 0o755, "left as it was");
        assert_eq!(s.notes().len(), 1, "{:?}", s.notes());
        assert!(s.notes()[0].contains("0755"), "{:?}", s.notes());
        // A directory the store creates: 0700, no note.
        let own = dir.path().join("made/here");
        let s = open(&own, 10);
        assert_eq!(mode(&own), 0o700);
        assert_eq!(mode(&own.join(FILE)), 0o600);
        assert!(s.notes().is_empty(), "{:?}", s.notes());
        assert!(
            !own.join(NEW_FILE).exists(),
            "the new file was linked and its name removed"
        );
    }

    #[test]
    fn delivered_ids_are_pruned_by_age_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 2, Duration::from_millis(1000)).unwrap();
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            let e = event(u, 0);
            s.enqueue(&e).unwrap();
            s.delivered(&e.id, 100 * i as u64).unwrap();
        }
        assert_eq!(
            s.prune_delivered(500).unwrap(),
            1,
            "over max_events: the oldest goes"
        );
        assert_eq!(s.counts().unwrap().delivered, 2);
        assert_eq!(s.prune_delivered(1150).unwrap(), 1, "older than keep_delivered");
        assert_eq!(
            s.enqueue(&event("a", 0)).unwrap(),
            Enqueued::New,
            "forgotten: a new event"
        );
    }
}
