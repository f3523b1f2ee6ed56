//! The delivery loop: due events out of the outbox, signed, POSTed, and the
//! outcome committed back.
//!
//! - Due events are read in batches of at most `2 × concurrency`, so memory
//!   does not grow with the depth of the outbox; at most `concurrency`
//!   deliveries are in flight, each bounded by `events.timeout`.
//! - Every attempt is signed afresh: `webhook-id` is the event's (stable
//!   across retries), `webhook-timestamp` the attempt's, so a receiver's
//!   replay window (5 minutes in the reference libraries) never rejects a
//!   late retry.
//! - 2xx is delivered; anything else (a 3xx too: redirects are not followed)
//!   is a failed attempt, retried per [`super::backoff`] until `max_age`,
//!   then dead.
//! - Logging: one line when deliveries start failing (with the error), one
//!   when they succeed again, one per event given up (dead); every attempt at
//!   debug. A receiver down for an hour is two lines, not a retry storm.
//! - When deliveries succeed again after failures, every pending event is made
//!   due at once ([`super::store::Store::due_now`]): the application catches
//!   up within seconds, not after each event's own backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backoff::{random_jitter, Next, Policy};
use super::metrics::EventResult;
use super::store::{Record, StoreError};
use super::{EventsConfig, Outbox};

/// Longest wait between two looks at the outbox (gauges, pruning).
const TICK: Duration = Duration::from_secs(5);
/// How often delivered ids past `keep_delivered` are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// What of a receiver's error body is kept in `last_error`.
const ERROR_EXCERPT: usize = 200;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Ctx {
    outbox: Arc<Outbox>,
    cfg: EventsConfig,
    policy: Policy,
    client: HttpClient,
    in_flight: Mutex<HashSet<String>>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failing: bool,
    failed_attempts: u64,
}

/// Runs until `stop` is cancelled (the daemon's shutdown; not readiness,
/// which is also false while the state backend does not answer). The
/// attempts in flight then finish, each bounded by `events.timeout` and all
/// by the daemon's drain: their outcome is committed, so a delivered event is
/// not sent again at the next start. An attempt the drain cuts short stays
/// pending (at least once).
pub async fn run(outbox: Arc<Outbox>, cfg: EventsConfig, stop: CancellationToken) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(cfg.timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(cfg.concurrency)
        .build(connector);
    let ctx = Arc::new(Ctx {
        policy: Policy {
            initial_backoff: cfg.initial_backoff,
            max_backoff: cfg.max_backoff,
            max_age: cfg.max_age,
        },
        outbox,
        client,
        in_flight: Mutex::new(HashSet::new()),
        health: Mutex::new(Health::default()),
        cfg,
    });
    let slots = Arc::new(Semaphore::new(ctx.cfg.concurrency));
    let mut attempts = JoinSet::new();
    let mut last_gauges = Instant::now() - TICK;
    let mut last_prune = Instant::now() - PRUNE_EVERY;
    tracing::info!(receiver = %ctx.cfg.url.origin(), "event delivery started");
    while !stop.is_cancelled() {
        // Forget the attempts that ended (their results are `()`).
        while attempts.try_join_next().is_some() {}
        let now = ctx.outbox.now_ms();
        if last_gauges.elapsed() >= TICK {
            last_gauges = Instant::now();
            housekeeping(&ctx, now, last_prune.elapsed() >= PRUNE_EVERY).await;
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
            }
        }
        let free = slots.available_permits();
        let mut waiting_for_slot = false;
        if free > 0 {
            let skip = ctx.in_flight.lock().await.clone();
            let c = ctx.clone();
            let limit = ctx.cfg.concurrency * 2;
            let batch = tokio::task::spawn_blocking(move || {
                c.outbox.store().due(now, limit, &|id: &str| skip.contains(id))
            })
            .await;
            match batch {
                Ok(Ok(batch)) => {
                    for record in batch {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            waiting_for_slot = true;
                            break;
                        };
                        ctx.in_flight.lock().await.insert(record.id.clone());
                        let c = ctx.clone();
                        attempts.spawn(async move {
                            let id = record.id.clone();
                            attempt(&c, record).await;
                            c.in_flight.lock().await.remove(&id);
                            drop(permit);
                            c.outbox.wake();
                        });
                    }
                }
                Ok(Err(e)) => {
                    // Unavailable was logged once when it happened (Outbox::new);
                    // this read is what opens the file again once it can.
                    if matches!(e, StoreError::Unavailable(_)) {
                        tracing::debug!(error = %e, "cannot read the events outbox");
                    } else {
                        tracing::error!(error = %e, "cannot read the events outbox");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => tracing::error!(error = %e, "events outbox read failed"),
            }
        } else {
            waiting_for_slot = true;
        }
        // Sleep until the next event is due, a delivery ends or a new event
        // comes in; never longer than TICK.
        let wait = if waiting_for_slot {
            TICK
        } else {
            let c = ctx.clone();
            let next = tokio::task::spawn_blocking(move || c.outbox.store().next_due())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            match next {
                // Due but in flight (or just sent): a finishing delivery wakes us.
                Some(at) if at <= now => TICK,
                Some(at) => Duration::from_millis(at - now).min(TICK),
                None => TICK,
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = ctx.outbox.woken() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    while attempts.join_next().await.is_some() {}
    tracing::info!("event delivery stopped");
}

async fn housekeeping(ctx: &Arc<Ctx>, now: u64, prune: bool) {
    let c = ctx.clone();
    let r = tokio::task::spawn_blocking(move || {
        let pruned = if prune {
            c.outbox.store().prune_delivered(now)
        } else {
            Ok(0)
        };
        (pruned, c.outbox.store().counts(), c.outbox.store().file_bytes())
    })
    .await;
    if let Ok((pruned, counts, bytes)) = r {
        match pruned {
            Ok(_) => {}
            // Logged once when it happened (Outbox::new).
            Err(e @ StoreError::Unavailable(_)) => {
                tracing::debug!(error = %e, "cannot prune delivered event ids")
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune delivered event ids"),
        }
        if let (Ok(counts), Some(m)) = (counts, ctx.outbox.metrics()) {
            m.depth(&counts, now, bytes);
        }
    }
}

/// One POST of one event, and its outcome committed.
async fn attempt(ctx: &Arc<Ctx>, record: Record) {
    let started = ctx.outbox.now_ms();
    let outcome = post(ctx, &record, started).await;
    let now = ctx.outbox.now_ms();
    match outcome {
        Ok(status) => {
            let c = ctx.clone();
            let id = record.id.clone();
            let stored = tokio::task::spawn_blocking(move || c.outbox.store().delivered(&id, now)).await;
            match stored {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(event_id = %record.id, error = %e, "event delivered but the outbox could not record it: it will be sent again")
                }
                Err(e) => tracing::error!(event_id = %record.id, error = %e, "outbox update failed"),
            }
            if let Some(m) = ctx.outbox.metrics() {
                m.delivered(record.kind, now.saturating_sub(record.created_ms) as f64 / 1000.0);
            }
            tracing::debug!(event_id = %record.id, event_type = record.kind.as_str(), status, attempts = record.attempts + 1, "event delivered");
            let mut h = ctx.health.lock().await;
            if h.failing {
                tracing::info!(
                    receiver = %ctx.cfg.url.origin(),
                    failed_attempts = h.failed_attempts,
                    "event deliveries succeed again; every pending event is due now"
                );
                *h = Health::default();
                drop(h);
                let c = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || c.outbox.store().due_now(now)).await;
                ctx.outbox.wake();
            }
        }
        Err(error) => {
            let failed = record.attempts.saturating_add(1);
            let next = ctx
                .policy
                .after_failure(now, record.age_from_ms, failed, random_jitter());
            let c = ctx.clone();
            let id = record.id.clone();
            let err = error.clone();
            let _ = tokio::task::spawn_blocking(move || c.outbox.store().failed(&id, now, next, &err)).await;
            if let Some(m) = ctx.outbox.metrics() {
                let result = if next == Next::Dead {
                    EventResult::Dead
                } else {
                    EventResult::Retry
                };
                m.count(record.kind, result);
            }
            tracing::debug!(event_id = %record.id, attempts = failed, error = %error, next = ?next, "event delivery attempt failed");
            if next == Next::Dead {
                tracing::warn!(
                    event_id = %record.id,
                    event_type = record.kind.as_str(),
                    key = %record.key.escape_debug(),
                    attempts = failed,
                    error = %error,
                    "event given up after events.max_age: kept as dead (`assetgate events retry {}`)",
                    record.id
                );
            }
            let mut h = ctx.health.lock().await;
            h.failed_attempts += 1;
            if !h.failing {
                h.failing = true;
                tracing::warn!(
                    receiver = %ctx.cfg.url.origin(),
                    error = %error,
                    "event delivery failing; events stay in the outbox and are retried with backoff (logged again when deliveries succeed)"
                );
            }
        }
    }
}

/// POSTs `record` signed at `now_ms`: the 2xx status, or why not (no secret,
/// no URL path in it).
async fn post(ctx: &Ctx, record: &Record, now_ms: u64) -> Result<u16, String> {
    let timestamp = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let signature = ctx
        .cfg
        .secrets
        .header(&record.id, timestamp, record.body.as_bytes());
    let req = Request::post(ctx.cfg.url.uri().clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("assetgate/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", record.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            HeaderValue::from_str(&signature).map_err(|e| e.to_string())?,
        )
        .body(Full::new(Bytes::from(record.body.clone())))
        .map_err(|e| format!("request: {e}"))?;
    let exchange = async {
        let resp = ctx.client.request(req).await.map_err(|e| transport_error(&e))?;
        let status = resp.status();
        // Read (a bounded part of) the body: the connection is reused only
        // once its response is consumed, and a refusal's body says why.
        let body = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {}{}", status.as_u16(), excerpt(&body)))
        }
    };
    match tokio::time::timeout(ctx.cfg.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {} ms", ctx.cfg.timeout.as_millis())),
    }
}

/// The error chain of a client error (hyper-util's outer message alone is
/// "client error (Connect)").
fn transport_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_EXCERPT)
        .collect();
    format!(": {}", text.trim())
}
