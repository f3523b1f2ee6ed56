//! The S3 backend behind [`Backend`]: a verified plan published in the
//! bucket by [`crate::s3::publish`], on the daemon's runtime (the trait is
//! synchronous and its callers already run it on the blocking pool, so it
//! blocks on the runtime's handle there).
//!
//! What it maps: the plan's derived keys ([`FinalizePlan::object`]; an fs plan
//! is refused), its destination as the object key, its verified type, ID,
//! size and content check; the outcome onto the mover's [`Finalized`] /
//! [`FinalizeError`] so the publisher's events and metrics are the same as on
//! `fs`: a taken destination is [`FinalizeError::Exists`] (event reason
//! `conflict`), a fresh rename is [`Method::Renamed`], a copy
//! [`Method::Copied`], a duplicate [`Method::AlreadyFinalized`].
//!
//! The reconciler's side: [`Backend::scan`] lists the uploads under
//! `upload_prefix` and reads their `.info` ([`crate::s3::pending::scan`]),
//! [`Backend::remove_abandoned`] removes one ([`crate::s3::pending::remove_abandoned`]),
//! and [`Backend::sweep`] aborts the multipart uploads so old that their token
//! expired more than `abandon_after` ago ([`crate::s3::abandon`]).

use std::io;
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;

use super::backend::Backend;
use crate::finalize::{
    Cancel, Cleanup, Commit, FinalizeError, Finalized, Method, Op, PendingScan, PendingUpload, Published,
};
use crate::s3::ops::{Attributes, OpError};
use crate::s3::publish::{publish, PublishError, Request};
use crate::s3::{PublishMethod, Store};
use crate::tusd::FinalizePlan;

/// Publishes in the bucket of `[storage.s3]`.
pub struct S3Backend {
    store: Store,
    runtime: Handle,
    stale: Stale,
    metrics: Option<crate::metrics::Metrics>,
    /// `public/` and `private/` (from `[storage] public_prefix` /
    /// `private_prefix`): where the sweep aborts dead publishes' multipart
    /// copies. Empty: not swept.
    publish_prefixes: Vec<String>,
    /// Their age bound ([`crate::s3::abandon::PUBLISH_STALE_AFTER`] in the daemon).
    publish_stale_after: Duration,
}

/// The age bound of stale multipart uploads ([`crate::s3::abandon::stale_before`]):
/// `[upload] max_ttl`, `[upload] clock_skew` and `[tusd] abandon_after`, as
/// configured at start (the S3 backend is restart-only).
#[derive(Debug, Clone, Copy)]
pub struct Stale {
    /// `[upload] max_ttl`.
    pub max_ttl: Duration,
    /// `[upload] clock_skew`.
    pub clock_skew: Duration,
    /// `[tusd] abandon_after`.
    pub abandon_after: Duration,
}

impl S3Backend {
    /// `runtime`: the daemon's (the S3 client's connections live on it).
    pub fn new(store: Store, runtime: Handle, stale: Stale) -> S3Backend {
        S3Backend {
            store,
            runtime,
            stale,
            metrics: None,
            publish_prefixes: Vec::new(),
            publish_stale_after: crate::s3::abandon::PUBLISH_STALE_AFTER,
        }
    }

    /// The sweep also aborts multipart uploads older than `older_than` (the
    /// daemon: [`crate::s3::abandon::PUBLISH_STALE_AFTER`]) under `<public>/`
    /// and `<private>/` (a publish's multipart copy stopped by a kill -9 or
    /// a shutdown).
    pub fn with_publish_prefixes(mut self, public: &str, private: &str, older_than: Duration) -> S3Backend {
        self.publish_stale_after = older_than;
        self.publish_prefixes = [public, private]
            .iter()
            .map(|p| format!("{}/", p.trim_end_matches('/')))
            .collect();
        self
    }

    /// Counts the stale multipart uploads each sweep aborts
    /// (`assetgate_s3_stale_multipart_uploads_total`).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> S3Backend {
        self.metrics = Some(metrics);
        self
    }
}

fn io_error(what: &str, e: OpError) -> io::Error {
    let kind = match e {
        OpError::NotFound => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("S3: {what}: {e}"))
}

impl Backend for S3Backend {
    /// No temporary object is counted (`Ok(0)`): a failed multipart copy is
    /// aborted where it fails (`crate::s3::ops`). What the sweep does
    /// instead: abort tusd's stale multipart uploads under `upload_prefix`,
    /// and the multipart copies of publishes that died (kill -9, shutdown)
    /// under the public and private prefixes once older than
    /// [`crate::s3::abandon::PUBLISH_STALE_AFTER`], each logged by
    /// [`crate::s3::abandon::abort_stale`] and counted in
    /// `assetgate_s3_stale_multipart_uploads_total`; a failure is logged and
    /// the next pass tries again.
    fn sweep(&self) -> io::Result<usize> {
        let c = &self.store.config;
        let Stale {
            max_ttl,
            clock_skew,
            abandon_after,
        } = self.stale;
        let now = SystemTime::now();
        let before = crate::s3::abandon::stale_before(now, max_ttl, clock_skew, abandon_after);
        let dead_publish = now
            .checked_sub(self.publish_stale_after)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let sweeps = std::iter::once((c.upload_prefix.as_str(), before))
            .chain(self.publish_prefixes.iter().map(|p| (p.as_str(), dead_publish)));
        for (prefix, before) in sweeps {
            let done = self.runtime.block_on(crate::s3::abandon::abort_stale(
                &self.store.client,
                &c.bucket,
                prefix,
                before,
            ));
            match done {
                Ok(done) => {
                    if let Some(m) = &self.metrics {
                        m.count_s3_stale_multipart(crate::metrics::MultipartAbort::Aborted, done.aborted);
                        m.count_s3_stale_multipart(crate::metrics::MultipartAbort::Failed, done.failed);
                    }
                }
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "S3: could not list the multipart uploads under a prefix (the next pass retries)");
                }
            }
        }
        Ok(0)
    }

    fn scan(&self) -> io::Result<PendingScan> {
        let c = &self.store.config;
        self.runtime
            .block_on(crate::s3::pending::scan(
                &self.store.client,
                &c.bucket,
                &c.upload_prefix,
            ))
            .map_err(|e| io_error("listing the uploads under upload_prefix", e))
    }

    fn publish(
        &self,
        plan: &FinalizePlan,
        _cancel: &Cancel,
        mut commit: Option<Commit<'_>>,
    ) -> Result<Finalized, FinalizeError> {
        // A plan made for the file store (or for another bucket) has nothing here.
        let Some(keys) = plan.object().filter(|k| k.bucket == self.store.config.bucket) else {
            return Err(FinalizeError::SourceOutside);
        };
        let Some(destination) = plan.destination().to_str() else {
            return Err(FinalizeError::DestinationOutside);
        };
        let fresh = match self.store.method {
            PublishMethod::Rename => Method::Renamed,
            PublishMethod::ConditionalCopy | PublishMethod::MultipartCopy => Method::Copied,
        };
        let req = Request {
            bucket: &keys.bucket,
            upload_key: &keys.upload_key,
            info_key: &keys.info_key,
            destination,
            size: plan.size(),
            attrs: Attributes {
                content_type: plan.content_type(),
                upload_id: plan.upload_id(),
            },
            content_check: plan.content_check(),
            check_info: matches!(plan.identity(), crate::tusd::ids::Identity::Signed { .. }),
        };
        // The method is known only once the publish says whether it was a
        // duplicate: the commit is told `fresh`, or AlreadyFinalized below.
        let mut declined = false;
        let mut on_commit = |bytes: u64, sha256: &[u8; 32]| match commit.as_mut() {
            None => true,
            Some(c) => {
                let ok = c(&Published {
                    method: fresh,
                    bytes,
                    sha256: *sha256,
                });
                declined = !ok;
                ok
            }
        };
        let outcome = self.runtime.block_on(publish(
            &self.store.client,
            self.store.method,
            req,
            &mut on_commit,
        ));
        let done = outcome.map_err(|e| {
            tracing::warn!(upload_id = plan.upload_id(), destination, error = %e, "S3 publish refused or failed");
            finalize_error(e)
        })?;
        let cleanup = if declined {
            Cleanup::Held
        } else if done.removed {
            Cleanup::Done
        } else {
            Cleanup::SourceLeft(io::ErrorKind::Other)
        };
        Ok(Finalized {
            destination: destination.into(),
            method: if done.already {
                Method::AlreadyFinalized
            } else {
                fresh
            },
            bytes: done.bytes,
            cleanup,
            sha256: Some(done.sha256),
        })
    }

    /// `<upload_prefix><objectId>.refused`, a small JSON note (reason,
    /// destination, upload ID, time) beside the `.info`: every later publish
    /// is [`FinalizeError::Refused`] before anything is read or copied, the
    /// scan lists the upload as refused, and the abandoned-upload removal
    /// takes it (and, last, the note) once its token expired more than
    /// `abandon_after` ago (docs/upload-lifecycle.md, "Refused uploads").
    fn record_refusal(&self, plan: &FinalizePlan, refusal: &FinalizeError) -> io::Result<()> {
        let Some(keys) = plan.object().filter(|k| k.bucket == self.store.config.bucket) else {
            return Ok(());
        };
        let note = serde_json::json!({
            "reason": refusal.as_str(),
            "detail": refusal.to_string(),
            "upload_id": plan.upload_id(),
            "destination": plan.destination().to_string_lossy(),
            "refused_at": crate::events::payload::rfc3339(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            ),
            "readmit": "remove this object, then publish with assetgate finalize-pending (docs/upload-lifecycle.md: refused uploads)",
        });
        let key = crate::s3::publish::refused_key(&keys.upload_key);
        self.runtime
            .block_on(crate::s3::ops::put(
                &self.store.client,
                &keys.bucket,
                &key,
                note.to_string().as_bytes(),
            ))
            .map_err(|e| io_error("recording the refusal", e))
    }

    fn remove_stale(
        &self,
        upload: &PendingUpload,
        destination: Option<&std::path::Path>,
    ) -> io::Result<bool> {
        if upload.bucket.as_deref() != Some(self.store.config.bucket.as_str()) {
            return Ok(false);
        }
        // Without the destination its marker cannot be looked at: kept.
        let Some(destination) = destination.and_then(|d| d.to_str()) else {
            return Ok(false);
        };
        self.runtime
            .block_on(crate::s3::pending::remove_stale(
                &self.store.client,
                &self.store.config.bucket,
                upload,
                destination,
            ))
            .map_err(|e| io_error("removing a stale upload", e))
    }

    fn remove_abandoned(&self, upload: &PendingUpload) -> io::Result<bool> {
        // Only what this bucket's scan found.
        if upload.bucket.as_deref() != Some(self.store.config.bucket.as_str()) {
            return Ok(false);
        }
        self.runtime
            .block_on(crate::s3::pending::remove_abandoned(
                &self.store.client,
                &self.store.config.bucket,
                upload,
            ))
            .map_err(|e| io_error("removing an abandoned upload", e))
    }
}

/// The mover's error for each refusal, so events and metrics read the same
/// as on `fs`.
fn finalize_error(e: PublishError) -> FinalizeError {
    match e {
        PublishError::NotFinished { .. } => FinalizeError::NotFinished,
        PublishError::SourceMissing => FinalizeError::SourceMissing,
        PublishError::ContentMismatch { expected } => FinalizeError::ContentMismatch { expected },
        PublishError::Refused => FinalizeError::Refused,
        PublishError::Conflict => FinalizeError::Exists,
        PublishError::TypeNotKept { .. } => FinalizeError::Io {
            op: Op::Copy,
            kind: io::ErrorKind::InvalidData,
        },
        PublishError::InfoId => FinalizeError::IdMismatch,
        PublishError::Info(_) => FinalizeError::InfoInvalid,
        PublishError::Published { .. } => FinalizeError::Io {
            op: Op::Hash,
            kind: io::ErrorKind::InvalidData,
        },
        PublishError::S3 { .. } => FinalizeError::Io {
            op: Op::Copy,
            kind: io::ErrorKind::Other,
        },
    }
}
