//! The `/tusd` endpoint: a thin adapter around the pure [`crate::tusd`] core and
//! the [`crate::finalize`] mover.
//!
//! - The body is capped (`server.max_body_bytes`) before anything parses it.
//! - A body that came whole with its head (tusd's) is decided without a place
//!   in the `/tusd` budget; one still arriving reads under a place, fair by
//!   progress; every decision waits for its turn (design notes in
//!   [`crate::http::limits`]).
//! - Decisions are answered in the hook's own protocol (v2: always 200 + JSON;
//!   v1/rustus: the 4xx itself), logged on one line (hook, decision, reason, key;
//!   never the token) and counted.
//! - post-finish answers at once; the move runs on the blocking pool. A second
//!   delivery of the same upload while the first move runs is dropped (the
//!   mover is idempotent anyway), and shutdown waits for running moves (see
//!   [`crate::publisher::Finalizer`]).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::finalize::{self, Roots};
use crate::http::limits::{self, BodyError, Ready};
use crate::http::respond::{Resp, Synthetic};
use crate::http::AppState;
use crate::metrics::{FailOpen, Limit};
use crate::token::upload_id::{Nonce, NONCE_BYTES};
use crate::tusd::{
    self, prefinish, Answer, Decision, Destination, Gate, Lookup, Part, StoreUnavailable, Upload, Verdict,
};

/// Answers one `POST /tusd`.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    match decide(state, req).await {
        Ok(answer) => to_response(answer),
        Err(failure) => {
            failure.record(state);
            failure.rescue()
        }
    }
}

/// Why `/tusd` has no decision to answer: the one place each becomes a
/// response ([`Failure::rescue`]), logged and counted apart from it
/// ([`Failure::record`]).
#[derive(Debug)]
enum Failure {
    /// The body is over `server.max_body_bytes` (413).
    TooLarge(u64),
    /// The body did not arrive within `server.body_read_timeout` (408, closed).
    BodyTimeout,
    /// The body was still arriving and the `/tusd` budget was full of bodies
    /// arriving for less than the grace (503 `busy`, closed, the rest unread).
    Busy,
    /// The body was still arriving past the grace when a newer request needed
    /// its place (408, closed); nothing was decided.
    Cut,
    /// The body could not be read (400).
    Unreadable(BodyError),
    /// The body is not a hook (400, or the hook protocol's own answer).
    NotAHook(tusd::HookError),
    /// The decision task failed (500).
    Internal(tokio::task::JoinError),
    /// The OS gave no random bytes for a new upload ID (500).
    NoRandomness(getrandom::Error),
}

impl Failure {
    /// `/tusd`'s rescue: a [`Synthetic`] response, or the hook protocol's
    /// own answer to a body that is not a hook.
    fn rescue(&self) -> Resp {
        match self {
            Failure::TooLarge(max) => Synthetic::too_large(*max),
            Failure::BodyTimeout => Synthetic::body_timeout(),
            Failure::Busy => Synthetic::busy(),
            Failure::Cut => Synthetic::cut(),
            Failure::Unreadable(_) => Synthetic::unreadable(),
            Failure::NotAHook(e) => return to_response(tusd::answer_error(e)),
            Failure::Internal(_) | Failure::NoRandomness(_) => Synthetic::internal(),
        }
        .into()
    }

    fn record(&self, state: &AppState) {
        let (error, reason) = (tusd::HookOutcome::Error, tusd::ReasonCode::BadHook);
        match self {
            Failure::TooLarge(max) => tracing::info!(
                endpoint = "tusd",
                decision = "error",
                reason = reason.as_str(),
                max_body_bytes = max,
                "hook body over the size cap"
            ),
            Failure::BodyTimeout => return state.limits.hit(Limit::BodyReadTimeout),
            Failure::Busy | Failure::Cut => return state.limits.hit(Limit::MaxTusdRequests),
            Failure::Unreadable(e) => {
                tracing::info!(endpoint = "tusd", decision = "error", reason = reason.as_str(), error = %e, "hook body could not be read")
            }
            Failure::NotAHook(e) => {
                tracing::info!(endpoint = "tusd", decision = "error", reason = reason.as_str(), error = %e, "not a tusd hook")
            }
            Failure::Internal(e) => {
                tracing::error!(endpoint = "tusd", decision = "error", reason = tusd::ReasonCode::Internal.as_str(), error = %e, "the hook's decision failed");
                return state.metrics.count_hook(None, error, tusd::ReasonCode::Internal);
            }
            Failure::NoRandomness(e) => {
                tracing::error!(endpoint = "tusd", decision = "error", reason = tusd::ReasonCode::Internal.as_str(), error = %e, "no random bytes for a new upload ID");
                return state.metrics.count_hook(None, error, tusd::ReasonCode::Internal);
            }
        }
        state.metrics.count_hook(None, error, reason);
    }
}

/// Reads, parses and decides one hook; runs what the decision starts (the
/// single-use claim, a move), logs and counts it, and gives the answer.
async fn decide<B>(state: &Arc<AppState>, req: Request<B>) -> Result<Answer, Failure>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = state.config.server.max_body_bytes;
    let hook_name = req
        .headers()
        .get("hook-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Failure::TooLarge(max));
    }
    let deadline = tokio::time::Instant::now() + state.config.server.body_read_timeout;
    // A place in the budget, if the body needed one: kept (never cut once
    // the body is read) until the answer, like the turn to decide.
    let (body, _place) = read_hook_body(state, req.into_body(), max, deadline).await?;
    let _turn = state.tusd.decision().await;

    // One configuration for the whole hook, even if a reload lands meanwhile.
    let cfg = state.current_owned();
    let now = state.clock.now();
    let hook = tusd::parse(&body, hook_name.as_deref()).map_err(Failure::NotAHook)?;
    // Read only by an accepted pre-create (its new upload ID): drawn only for
    // pre-create, every other hook (post-receive fires every second per
    // upload) skips the system call.
    let nonce = match hook.name {
        tusd::HookName::PreCreate => fresh_nonce().map_err(Failure::NoRandomness)?,
        _ => [0; NONCE_BYTES],
    };
    // The decision asks the store (the destination's state, a final
    // upload's parts, the leading bytes to sniff) only after the token
    // verified, and only when there is one to ask: the asset tree, or the
    // bucket with `[storage] backend = "s3"`. Then the whole decision runs on
    // the blocking pool, never on the async workers that serve /auth (a slow
    // shared volume or bucket would stall them); on S3 the lookup blocks
    // there on the runtime's handle for the SDK's futures, as the S3
    // publisher does.
    let store = state.finalizer.store();
    let needs_store = match hook.name {
        tusd::HookName::PreCreate => store.is_some() || cfg.storage.root.is_some(),
        tusd::HookName::PreFinish => {
            cfg.upload.check_content && (store.is_some() || state.finalizer.roots().is_some())
        }
        _ => false,
    };
    let (hook, mut decision) = if needs_store {
        let (finalizer, cfg) = (state.finalizer.clone(), cfg.clone());
        let runtime = tokio::runtime::Handle::current();
        let decided = tokio::task::spawn_blocking(move || {
            ON_BLOCKING_POOL.set(true);
            let decision = match finalizer.store() {
                Some(store) => {
                    let lookup = S3Lookup {
                        store,
                        runtime: &runtime,
                        sniff: cfg.upload.check_content,
                    };
                    tusd::decide(&hook, gate_of(&cfg), now, &nonce, &lookup)
                }
                None => {
                    let lookup = FsLookup {
                        storage_root: cfg.storage.root.as_deref(),
                        roots: finalizer.roots(),
                        sniff: cfg.upload.check_content,
                    };
                    tusd::decide(&hook, gate_of(&cfg), now, &nonce, &lookup)
                }
            };
            (hook, decision)
        })
        .await;
        decided.map_err(Failure::Internal)?
    } else {
        let lookup = FsLookup {
            storage_root: None,
            roots: None,
            sniff: false,
        };
        let decision = tusd::decide(&hook, gate_of(&cfg), now, &nonce, &lookup);
        (hook, decision)
    };
    if cfg.upload.single_use {
        single_use(state, &mut decision, &cfg.upload, now).await;
    }
    log_decision(&decision);
    state
        .metrics
        .count_hook(Some(&decision.hook), decision.outcome(), decision.reason());

    if let Verdict::Finalize(plan) = &decision.verdict {
        state.finalizer.spawn(plan, "post-finish");
    }
    Ok(tusd::answer(hook.protocol, &decision))
}

/// The hook's body: whole with its head (tusd's hooks: no place in the
/// `/tusd` budget), or read under a place ([`limits::TusdBudget::admit`]),
/// refused when none is free or can be freed, cut if a newer request needs
/// the place while it is still arriving past the grace.
async fn read_hook_body<'s, B>(
    state: &'s AppState,
    body: B,
    max: u64,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, Option<limits::HookTicket<'s>>), Failure>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failure = |e| match e {
        BodyError::TooLarge => Failure::TooLarge(max),
        BodyError::TimedOut => Failure::BodyTimeout,
        e => Failure::Unreadable(e),
    };
    let (received, rest) = match limits::read_ready(body, max).await.map_err(failure)? {
        Ready::Whole(body) => return Ok((body, None)),
        Ready::Arriving { received, rest } => (received, rest),
    };
    let place = state.tusd.admit().map_err(|limits::Full| Failure::Busy)?;
    let read = limits::finish_body(received, place.track(rest), max, deadline);
    tokio::select! {
        biased;
        // Cut while still reading its body: the tracked body never ended, so
        // nothing was decided.
        () = place.evicted() => Err(Failure::Cut),
        r = read => Ok((r.map_err(failure)?, Some(place))),
    }
}

/// `[upload] single_use`: an accepted pre-create consumes its token in the
/// shared state (a partial upload is counted against `[upload] max_parts` and
/// `max_size`). Runs after the pure decision accepted, so a refused token is
/// never consumed; the claim comes from the decision's [`tusd::precreate::Accepted`]
/// proof.
async fn single_use(
    state: &AppState,
    decision: &mut Decision,
    upload: &crate::config::UploadConfig,
    now: i64,
) {
    let (Verdict::Accept, Some(accepted)) = (&decision.verdict, &decision.accepted) else {
        return;
    };
    let refuse = |reason, message: String| Verdict::Reject(tusd::Rejection::new(reason, message));
    match state
        .shared
        .claim(&accepted.claim(upload), now, upload.clock_skew)
        .await
    {
        Ok(crate::state::Use::First) => {}
        Ok(crate::state::Use::Replay) => {
            decision.verdict = refuse(
                tusd::ReasonCode::TokenUsed,
                "this upload token was already used; single-use tokens create one upload (ask the application for a new one)".into(),
            );
        }
        Ok(crate::state::Use::TooManyParts) => {
            decision.verdict = refuse(
                tusd::ReasonCode::TooManyParts,
                format!(
                    "this upload token created its [upload] max_parts ({}) partial uploads already; finish them with a final upload, or ask the application for a new token",
                    upload.max_parts
                ),
            );
        }
        Ok(crate::state::Use::PartsTooLarge) => {
            decision.verdict = refuse(
                tusd::ReasonCode::PartsTooLarge,
                format!(
                    "the partial uploads of this upload token would be larger than [upload] max_size ({} bytes) together",
                    upload.max_size.unwrap_or(0)
                ),
            );
        }
        Err(e) => match state.shared.single_use_when_down() {
            crate::config::FailMode::Closed => {
                decision.verdict = refuse(
                    tusd::ReasonCode::StateUnavailable,
                    "the upload cannot be checked right now; try again shortly".into(),
                );
                tracing::warn!(endpoint = "tusd", hook = "pre-create", error = %e, "single-use token not checked: state backend down (fail_closed: refused; the claim is undone, the token stays usable)");
            }
            crate::config::FailMode::Open => {
                state.metrics.count_fail_open(FailOpen::SingleUse);
                tracing::warn!(endpoint = "tusd", hook = "pre-create", error = %e, "single-use token not checked: state backend down (fail_open: accepted)");
            }
        },
    }
}

fn log_decision(d: &Decision) {
    let key = escape_debug(d.key.as_deref().unwrap_or(""));
    let key = key.as_ref();
    let (hook, decision, reason) = (d.hook.label(), d.outcome().as_str(), d.reason().as_str());
    // An accepted pre-create's upload ID is the one it just chose (none when
    // single_use refused it after all).
    let upload_id = match (&d.verdict, &d.assigned_id) {
        (Verdict::Accept, Some(id)) => id.as_str(),
        _ => d.upload_id.as_str(),
    };
    let upload_id = escape_debug(upload_id);
    let upload_id = upload_id.as_ref();
    match &d.verdict {
        Verdict::Reject(r) | Verdict::Keep(r) => {
            tracing::info!(
                endpoint = "tusd",
                hook,
                decision,
                reason,
                key,
                upload_id,
                "{}",
                r.message()
            )
        }
        Verdict::Accept => tracing::info!(
            endpoint = "tusd",
            hook,
            decision,
            reason,
            key,
            upload_id,
            "accepted"
        ),
        Verdict::Finalize(_) => {
            tracing::info!(
                endpoint = "tusd",
                hook,
                decision,
                reason,
                key,
                upload_id,
                "finalize planned"
            )
        }
        // post-receive fires every second per upload: not a decision worth a line.
        Verdict::Skip(_) => {
            tracing::debug!(
                endpoint = "tusd",
                hook,
                decision,
                reason,
                key,
                upload_id,
                "nothing to decide"
            )
        }
    }
}

/// `s.escape_debug()`, copied only when it differs from `s` (a key with a
/// quote, a backslash or a control character); the usual key is borrowed.
fn escape_debug(s: &str) -> std::borrow::Cow<'_, str> {
    // Printable ASCII but the three quoted ones, or a printable non-ASCII
    // character that is not a combining mark (which `escape_debug` escapes
    // only at the start: such a key takes the exact path, with a copy).
    let plain = s.chars().all(|c| {
        if c.is_ascii() {
            (' '..='~').contains(&c) && !matches!(c, '"' | '\'' | '\\')
        } else {
            c.escape_debug().len() == 1
        }
    });
    if plain {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.escape_debug().to_string())
    }
}

/// 16 bytes from the OS for a new upload ID (`crate::token::upload_id`).
fn fresh_nonce() -> Result<Nonce, getrandom::Error> {
    let mut nonce = [0; NONCE_BYTES];
    getrandom::getrandom(&mut nonce)?;
    Ok(nonce)
}

fn gate_of(cfg: &crate::config::Config) -> Gate<'_> {
    Gate {
        upload: &cfg.upload,
        storage: &cfg.storage,
        upload_ids: cfg.tusd.upload_ids,
    }
}

thread_local! {
    /// Set on the blocking-pool thread that runs a decision with [`FsLookup`]
    /// or [`S3Lookup`]:
    /// debug builds (the tests) assert it before touching the filesystem, so
    /// a lookup moved back onto an async worker fails every test that makes one.
    static ON_BLOCKING_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn assert_blocking_pool() {
    debug_assert!(
        ON_BLOCKING_POOL.get(),
        "storage lookup outside spawn_blocking: it would stall the async workers"
    );
}

/// The filesystem facts the pure core asks for (`[storage] backend = "fs"`).
struct FsLookup<'a> {
    storage_root: Option<&'a Path>,
    roots: Option<&'a Roots>,
    sniff: bool,
}

impl Lookup for FsLookup<'_> {
    fn destination(&self, relative: &Path) -> Destination {
        match self.storage_root {
            Some(root) => {
                assert_blocking_pool();
                finalize::destination_state(root, relative)
            }
            None => Destination::Free,
        }
    }

    fn part(&self, id: &str) -> Option<Part> {
        let roots = self.roots?;
        assert_blocking_pool();
        finalize::part(roots, id)
    }

    fn leading_bytes(&self, upload: &Upload) -> Result<Option<Vec<u8>>, StoreUnavailable> {
        Ok(self.file_head(upload))
    }
}

impl FsLookup<'_> {
    /// `None`: sniffing off, or no regular file inside `upload_dir` to read
    /// (pre-finish decides nothing; the mover checks again before publishing).
    fn file_head(&self, upload: &Upload) -> Option<Vec<u8>> {
        if !self.sniff {
            return None;
        }
        let roots = self.roots?;
        assert_blocking_pool();
        let path = Path::new(upload.storage.as_ref()?.path.as_deref()?);
        // Read only regular files inside upload_dir, never through a symlink.
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let canonical = path.canonicalize().ok()?;
        if !canonical.starts_with(roots.upload_dir()) {
            return None;
        }
        let mut head = Vec::with_capacity(prefinish::SNIFF_BYTES);
        std::fs::File::open(&canonical)
            .ok()?
            .take(prefinish::SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .ok()?;
        Some(head)
    }
}

/// The bucket's facts the pure core asks for (`[storage] backend = "s3"`),
/// by [`crate::s3::lookup`]: one HeadObject of the destination at
/// pre-create, one ranged GetObject of the upload object's leading bytes at
/// pre-finish. A store error or timeout refuses (`storage_unavailable`).
/// Runs on the blocking pool, blocking on the daemon's runtime.
struct S3Lookup<'a> {
    store: &'a crate::s3::Store,
    runtime: &'a tokio::runtime::Handle,
    sniff: bool,
}

impl Lookup for S3Lookup<'_> {
    fn destination(&self, relative: &Path) -> Destination {
        assert_blocking_pool();
        // The key is the verified token's (UTF-8); the publish writes the same key.
        let Some(key) = relative.to_str() else {
            return Destination::Blocked;
        };
        self.runtime
            .block_on(crate::s3::lookup::destination(self.store, key))
    }

    fn leading_bytes(&self, upload: &Upload) -> Result<Option<Vec<u8>>, StoreUnavailable> {
        if !self.sniff {
            return Ok(None);
        }
        assert_blocking_pool();
        self.runtime
            .block_on(crate::s3::lookup::leading_bytes(self.store, &upload.id))
    }
}

fn to_response(a: Answer) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::escape_debug;

    #[test]
    fn escape_debug_is_str_escape_debug() {
        let cases = [
            "",
            "photos/été 2026/plage.jpg",
            "a\"b",
            "it's",
            "back\\slash",
            "tab\there\n",
            "\u{301}accent first",
            "mid\u{301}dle",
            "\u{7f}del",
            "日本/x.png",
            "\u{200b}zero width",
        ];
        for c in cases {
            assert_eq!(escape_debug(c), c.escape_debug().to_string(), "{c:?}");
        }
        for b in 0u8..0x80 {
            let c = format!("k{}", b as char);
            assert_eq!(escape_debug(&c), c.escape_debug().to_string(), "{b:#x}");
        }
        // Every character up to U+FFFF and a sample beyond, first and later.
        for u in (0u32..0x1_0000).chain((0x1_0000..0x11_0000).step_by(97)) {
            let Some(ch) = char::from_u32(u) else { continue };
            for c in [format!("{ch}a"), format!("a{ch}b"), format!("é{ch}")] {
                assert_eq!(escape_debug(&c), c.escape_debug().to_string(), "{u:#x}");
            }
        }
        assert!(matches!(
            escape_debug("photos/été 2026/plage.jpg"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
