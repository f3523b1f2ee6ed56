//! The events' metric families, registered once, only with an `[events]`
//! section; every label value from a closed set, pre-registered at 0.
//!
//! - `assetgate_events_total{type,result}`: `enqueued`, `duplicate`
//!   (already in the outbox or delivered), `refused` (outbox full),
//!   `store_error`, `delivered`, `retry` (a failed attempt, retried), `dead`.
//! - `assetgate_events_outbox{state}`: `pending`, `dead`.
//! - `assetgate_events_oldest_pending_age_seconds`.
//! - `assetgate_events_outbox_bytes`: the outbox file's size.
//! - `assetgate_events_delivery_latency_seconds`: from the event's creation to
//!   the receiver's 2xx (retries included).
//! - `assetgate_events_outbox_available`: 1 while the outbox file is open, 0
//!   while it cannot be written or opened (a full disk): events are not
//!   committed then, and finished uploads wait in `upload_dir`.
//! - `assetgate_events_outbox_unavailable_total`: times it became unavailable
//!   (a brief outage between two scrapes still shows).

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::payload::Kind;
use super::store::{Availability, Counts};
use crate::metrics::Metrics;

/// `result` of `assetgate_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    /// Committed to the outbox.
    Enqueued,
    /// Already in the outbox or delivered.
    Duplicate,
    /// Refused: the outbox is full.
    Refused,
    /// The outbox could not be written.
    StoreError,
    /// Delivered (the receiver answered 2xx).
    Delivered,
    /// A failed attempt, retried later.
    Retry,
    /// A failed attempt, given up.
    Dead,
}

impl EventResult {
    /// Every value, for pre-registration.
    pub const ALL: [EventResult; 7] = [
        EventResult::Enqueued,
        EventResult::Duplicate,
        EventResult::Refused,
        EventResult::StoreError,
        EventResult::Delivered,
        EventResult::Retry,
        EventResult::Dead,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Enqueued => "enqueued",
            EventResult::Duplicate => "duplicate",
            EventResult::Refused => "refused",
            EventResult::StoreError => "store_error",
            EventResult::Delivered => "delivered",
            EventResult::Retry => "retry",
            EventResult::Dead => "dead",
        }
    }
}

/// `state` values of `assetgate_events_outbox`.
const OUTBOX_STATES: [&str; 2] = ["pending", "dead"];

/// The families.
#[derive(Clone)]
pub struct EventMetrics {
    total: IntCounterVec,
    outbox: IntGaugeVec,
    oldest: Gauge,
    bytes: IntGauge,
    latency: Histogram,
    available: IntGauge,
    unavailable: IntCounter,
}

impl EventMetrics {
    /// Creates and registers the families in `metrics`' registry.
    pub fn register(metrics: &Metrics) -> EventMetrics {
        let total = IntCounterVec::new(
            Opts::new(
                "assetgate_events_total",
                "Events by type and result: enqueued, duplicate (already in the outbox or delivered), refused (outbox full), store_error, delivered, retry (failed attempt), dead.",
            ),
            &["type", "result"],
        )
        .expect("valid metric");
        let outbox = IntGaugeVec::new(
            Opts::new("assetgate_events_outbox", "Events in the outbox, by state."),
            &["state"],
        )
        .expect("valid metric");
        let oldest = Gauge::new(
            "assetgate_events_oldest_pending_age_seconds",
            "Age of the oldest pending event (0 when none).",
        )
        .expect("valid metric");
        let bytes = IntGauge::new(
            "assetgate_events_outbox_bytes",
            "Size of the outbox file on disk.",
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "assetgate_events_delivery_latency_seconds",
                "From an event's creation to its delivery (2xx), retries included.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21_600.0, 86_400.0,
            ]),
        )
        .expect("valid metric");
        let available = IntGauge::new(
            "assetgate_events_outbox_available",
            "1 while the outbox file is open; 0 while it cannot be written or opened (a full disk): events wait, finished uploads stay in upload_dir.",
        )
        .expect("valid metric");
        let unavailable = IntCounter::new(
            "assetgate_events_outbox_unavailable_total",
            "Times the outbox file became unavailable (an I/O error, a full disk).",
        )
        .expect("valid metric");
        for c in [
            Box::new(total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(outbox.clone()),
            Box::new(oldest.clone()),
            Box::new(bytes.clone()),
            Box::new(latency.clone()),
            Box::new(available.clone()),
            Box::new(unavailable.clone()),
        ] {
            metrics.register(c);
        }
        for k in Kind::ALL {
            for r in EventResult::ALL {
                total.with_label_values(&[k.as_str(), r.as_str()]).inc_by(0);
            }
        }
        for s in OUTBOX_STATES {
            outbox.with_label_values(&[s]).set(0);
        }
        EventMetrics {
            total,
            outbox,
            oldest,
            bytes,
            latency,
            available,
            unavailable,
        }
    }

    /// The outbox file's [`Availability`]: at start, and at every change.
    pub fn availability(&self, a: &Availability) {
        match a {
            Availability::Available => self.available.set(1),
            Availability::Unavailable(_) => {
                self.available.set(0);
                self.unavailable.inc();
            }
        }
    }

    /// Counts one outcome.
    pub fn count(&self, kind: Kind, result: EventResult) {
        self.total
            .with_label_values(&[kind.as_str(), result.as_str()])
            .inc();
    }

    /// One delivery, `seconds` after the event's creation.
    pub fn delivered(&self, kind: Kind, seconds: f64) {
        self.count(kind, EventResult::Delivered);
        self.latency.observe(seconds.max(0.0));
    }

    /// Depth gauges.
    pub fn depth(&self, c: &Counts, now_ms: u64, file_bytes: u64) {
        self.outbox
            .with_label_values(&["pending"])
            .set(i64::try_from(c.pending).unwrap_or(i64::MAX));
        self.outbox
            .with_label_values(&["dead"])
            .set(i64::try_from(c.dead).unwrap_or(i64::MAX));
        let age = c
            .oldest_pending_ms
            .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
        self.oldest.set(age);
        self.bytes.set(i64::try_from(file_bytes).unwrap_or(i64::MAX));
    }
}
