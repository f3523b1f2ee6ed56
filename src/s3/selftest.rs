//! The capability self-test at start: which no-overwrite publish method the
//! engine honours, judged by its *effect* on scratch keys under assetgate's
//! own prefix ([`crate::config::S3_OWN_PREFIX`]), never by a status alone.
//!
//! Best first, the first proven is chosen:
//! 1. **rename** ([`ops::rename`]): a fresh rename must leave the source gone
//!    and the destination with the source's size, Content-Type and marker;
//!    onto an existing key it must fail with 412 and leave both keys as they
//!    were. versitygw answers 200 to a rename and writes an empty destination
//!    (and, being a PutObject, 412 onto an existing key): the 412 alone would
//!    have trusted it.
//! 2. **conditional copy** ([`ops::conditional_copy`]): onto an existing key,
//!    412 *and* the key's bytes unchanged (versitygw answers 200 and
//!    overwrites); onto a fresh key, its size, Content-Type, marker and
//!    signed type (the bytes themselves are not read back: the size is what
//!    tells versitygw's empty "rename" apart; every real publish then reads
//!    the whole object for its SHA-256 and checks its marker and type).
//! 3. **multipart copy** ([`ops::multipart_copy`], the portable method): the
//!    same two checks. If even it is not honoured the daemon does not start:
//!    it would have no way to publish without overwriting.
//!
//! The scratch keys (and any multipart upload under them) are removed at
//! the end, whatever the outcome.

use aws_sdk_s3::Client;

use super::ops::{self, Attributes, OpError};
pub use crate::metrics::PublishMethod;

/// The bytes of a scratch object: more than the marker-sized taken object,
/// a pattern (not zeros) so a partial or shifted copy shows.
fn body() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// What a taken destination holds before a conditional write is tried on it.
const TAKEN: &[u8] = b"taken by another upload";

/// The attributes the self-test publishes with.
const ATTRS: Attributes<'static> = Attributes {
    content_type: "image/png",
    upload_id: "assetgate-selftest",
};

/// The outcome: the method, and why each better one was refused.
#[derive(Debug, Clone)]
pub struct SelfTest {
    /// The best method proven.
    pub method: PublishMethod,
    /// Each better method and why it was refused, best first.
    pub refused: Vec<(PublishMethod, String)>,
}

/// Why no method could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// The scratch keys could not even be written or read (credentials,
    /// bucket, endpoint).
    #[error("the S3 self-test could not use the bucket: {0}")]
    Bucket(OpError),
    /// No method is honoured: publishing would overwrite.
    #[error("no no-overwrite publish method is honoured by this engine: {0}")]
    NoMethod(String),
}

/// Runs the self-test in `bucket` under `<S3_OWN_PREFIX>selftest/<random>/`.
pub async fn run(c: &Client, bucket: &str) -> Result<SelfTest, SelfTestError> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(|e| {
        SelfTestError::Bucket(OpError::Other {
            status: None,
            code: format!("no randomness for the scratch prefix: {e}"),
        })
    })?;
    let prefix = format!(
        "{}selftest/{}/",
        crate::config::S3_OWN_PREFIX,
        hex::encode(random)
    );
    let probe = Probe {
        c,
        bucket,
        prefix: &prefix,
    };
    let result = probe.choose().await;
    probe.clean().await;
    result
}

struct Probe<'a> {
    c: &'a Client,
    bucket: &'a str,
    prefix: &'a str,
}

/// A check's verdict: `Err` says why the method is refused; an `OpError` on
/// the scratch keys themselves (`?` in the checks) refuses it too.
type Verdict = Result<(), String>;

impl Probe<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn choose(&self) -> Result<SelfTest, SelfTestError> {
        // The bucket must be usable at all: else every method "fails" for a
        // reason that is not the engine's capability.
        ops::put(self.c, self.bucket, &self.key("hello"), b"hello")
            .await
            .map_err(SelfTestError::Bucket)?;
        let mut refused = Vec::new();
        for method in PublishMethod::ALL {
            let verdict = match method {
                PublishMethod::Rename => self.rename().await,
                PublishMethod::ConditionalCopy => self.copy(method).await,
                PublishMethod::MultipartCopy => self.copy(method).await,
            };
            match verdict {
                Ok(()) => return Ok(SelfTest { method, refused }),
                Err(why) => refused.push((method, why)),
            }
        }
        Err(SelfTestError::NoMethod(
            refused
                .iter()
                .map(|(m, why)| format!("{}: {why}", m.as_str()))
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    async fn put(&self, name: &str, bytes: &[u8]) -> Verdict {
        ops::put(self.c, self.bucket, &self.key(name), bytes)
            .await
            .map_err(|e| format!("PutObject {name}: {e}"))
    }

    async fn head(&self, name: &str) -> Result<Option<ops::Head>, String> {
        ops::head(self.c, self.bucket, &self.key(name))
            .await
            .map_err(|e| format!("HeadObject {name}: {e}"))
    }

    async fn bytes(&self, name: &str) -> Result<Vec<u8>, String> {
        ops::get(self.c, self.bucket, &self.key(name), None)
            .await
            .map_err(|e| format!("GetObject {name}: {e}"))
    }

    /// A published object: the source's size, the attributes.
    async fn landed(&self, name: &str, size: usize) -> Verdict {
        match self.head(name).await? {
            None => Err(format!("{name}: not there after a success")),
            Some(h) if h.size != size as u64 => Err(format!("{name}: {} bytes of {size}", h.size)),
            Some(h) if h.content_type.as_deref() != Some(ATTRS.content_type) => Err(format!(
                "{name}: Content-Type {:?}, not {:?}",
                h.content_type, ATTRS.content_type
            )),
            Some(h) if h.marker.as_deref() != Some(ATTRS.upload_id) => {
                Err(format!("{name}: marker {:?}, not set", h.marker))
            }
            Some(h) if h.signed_type.as_deref() != Some(ATTRS.content_type) => Err(format!(
                "{name}: x-amz-meta-{} {:?}, not {:?} (nginx serves that as the type)",
                ops::TYPE,
                h.signed_type,
                ATTRS.content_type
            )),
            Some(_) => Ok(()),
        }
    }

    async fn unchanged(&self, name: &str) -> Verdict {
        let now = self.bytes(name).await?;
        if now != TAKEN {
            return Err(format!("overwrote {name} ({} bytes now)", now.len()));
        }
        Ok(())
    }

    async fn rename(&self) -> Verdict {
        let body = body();
        self.put("ren-src", &body).await?;
        let (src, dst) = (self.key("ren-src"), self.key("ren-dst"));
        ops::rename(self.c, self.bucket, &src, &dst, ATTRS)
            .await
            .map_err(|e| format!("a fresh rename: {e}"))?;
        if self.head("ren-src").await?.is_some() {
            return Err("a fresh rename answered success and kept its source".into());
        }
        self.landed("ren-dst", body.len()).await?;
        // Onto an existing key: 412, both keys as they were.
        self.put("ren-taken", TAKEN).await?;
        self.put("ren-src2", &body).await?;
        let (src, dst) = (self.key("ren-src2"), self.key("ren-taken"));
        match ops::rename(self.c, self.bucket, &src, &dst, ATTRS).await {
            Err(OpError::Precondition) => {}
            Ok(()) => return Err("a rename onto an existing key answered success".into()),
            Err(e) => return Err(format!("a rename onto an existing key: {e}, not 412")),
        }
        self.unchanged("ren-taken").await?;
        match self.head("ren-src2").await? {
            Some(h) if h.size == body.len() as u64 => Ok(()),
            _ => Err("a refused rename lost its source".into()),
        }
    }

    async fn copy(&self, method: PublishMethod) -> Verdict {
        let body = body();
        let tag = method.as_str();
        let (src, taken, fresh) = (
            format!("{tag}-src"),
            format!("{tag}-taken"),
            format!("{tag}-fresh"),
        );
        self.put(&src, &body).await?;
        self.put(&taken, TAKEN).await?;
        let size = body.len() as u64;
        let attempt = |dst: String| {
            let src = self.key(&src);
            async move {
                match method {
                    PublishMethod::ConditionalCopy => {
                        ops::conditional_copy(self.c, self.bucket, &src, &dst, ATTRS).await
                    }
                    _ => ops::multipart_copy(self.c, self.bucket, &src, &dst, size, ATTRS).await,
                }
            }
        };
        match attempt(self.key(&taken)).await {
            Err(OpError::Precondition) => {}
            Ok(()) => {
                return Err(format!(
                    "onto an existing key it answered success ({})",
                    self.unchanged(&taken)
                        .await
                        .err()
                        .unwrap_or_else(|| "key unchanged".into())
                ))
            }
            Err(e) => return Err(format!("onto an existing key: {e}, not 412")),
        }
        self.unchanged(&taken).await?;
        attempt(self.key(&fresh))
            .await
            .map_err(|e| format!("onto a fresh key: {e}"))?;
        self.landed(&fresh, body.len()).await
    }

    /// Removes every scratch object and multipart upload (best effort: a
    /// failure is logged, the next start uses another random prefix).
    async fn clean(&self) {
        if let Ok(ups) = self
            .c
            .list_multipart_uploads()
            .bucket(self.bucket)
            .prefix(self.prefix)
            .send()
            .await
        {
            for u in ups.uploads() {
                let _ = self
                    .c
                    .abort_multipart_upload()
                    .bucket(self.bucket)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await;
            }
        }
        match self
            .c
            .list_objects_v2()
            .bucket(self.bucket)
            .prefix(self.prefix)
            .send()
            .await
        {
            Ok(list) => {
                for o in list.contents() {
                    if let Some(k) = o.key() {
                        if let Err(e) = ops::delete(self.c, self.bucket, k).await {
                            tracing::warn!(key = k, error = %e, "S3 self-test: a scratch object could not be removed");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(prefix = self.prefix, error = %OpError::from(e), "S3 self-test: the scratch objects could not be listed for removal");
            }
        }
    }
}
