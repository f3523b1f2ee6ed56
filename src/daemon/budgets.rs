//! The connection budgets fitted below the open-file limit at start, and the
//! gauges that show the budgets in force.

use crate::config::Config;
use crate::http::limits::{self, Budgets};
use crate::metrics::Metrics;

/// The budgets to serve with, and whether they were lowered.
pub(super) struct Fitted {
    pub(super) fitted: Budgets,
    open_files: Option<u64>,
}

/// The connection budgets fitted below the open-file limit (see
/// [`crate::http::limits`], "Budgets fit the open-file limit"): the soft limit
/// raised to the hard one if that is needed, then the budgets lowered if it
/// is still short, logged with both numbers.
pub(super) fn fit_budgets(config: &Config) -> Result<Fitted, limits::TooFewFiles> {
    let admin_listeners =
        1 + usize::from(config.server.admin_listen.is_some()) + usize::from(config.events.is_some());
    let deliveries = config.events.as_ref().map_or(0, |e| e.concurrency);
    let configured = Budgets::from_config(&config.server);
    let wanted = configured.files_needed(admin_listeners, deliveries);
    let (soft_before, hard) = limits::open_files_limit();
    let soft = match limits::raise_open_files(wanted) {
        Ok(soft) => {
            if soft_before.is_some_and(|b| b < soft) {
                tracing::info!(
                    from = soft_before,
                    to = soft,
                    hard_limit = hard,
                    "raised the open-file limit (RLIMIT_NOFILE) for the connection budgets"
                );
            }
            soft
        }
        Err((soft, e)) => {
            tracing::warn!(open_files = soft, wanted, error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)");
            soft
        }
    };
    let (fitted, clamped) = configured.fit(soft, admin_listeners, deliveries)?;
    if let Some(c) = clamped {
        tracing::warn!(
            open_files = c.open_files,
            reserved = c.reserved,
            admin_connections = fitted.admin_connections * admin_listeners,
            max_connections = fitted.max_connections,
            configured_max_connections = c.from.max_connections,
            max_tusd_requests = fitted.max_tusd_requests,
            configured_max_tusd_requests = c.from.max_tusd_requests,
            "the open-file limit (RLIMIT_NOFILE) is below what [server] needs: connection budgets lowered to fit it (raise LimitNOFILE= / ulimit -n)"
        );
    }
    Ok(Fitted {
        fitted,
        open_files: (soft != u64::MAX).then_some(soft),
    })
}

/// `assetgate_open_files_limit` and `assetgate_connection_budget{listener}`:
/// the budgets in force, after any clamp.
pub(super) fn budgets_metrics(metrics: &Metrics, b: &Fitted) {
    let limit = prometheus::IntGauge::new(
        "assetgate_open_files_limit",
        "The soft open-file limit (RLIMIT_NOFILE) the connection budgets were fitted below at start (-1: unlimited).",
    )
    .expect("valid metric");
    limit.set(b.open_files.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)));
    metrics.register(Box::new(limit));
    let budget = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "assetgate_connection_budget",
            "Connections each listener serves at once, after fitting the open-file limit (tusd: /tusd requests at once).",
        ),
        &["listener"],
    )
    .expect("valid metric");
    for (listener, n) in [
        ("listen", b.fitted.max_connections),
        ("tusd", b.fitted.max_tusd_requests),
        ("admin", b.fitted.admin_connections),
    ] {
        budget
            .with_label_values(&[listener])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    metrics.register(Box::new(budget));
}
