//! Logs (tracing) and metrics (Prometheus text on `/metrics`).
//!
//! Every series the Grafana dashboard (`docker/grafana/dashboards/sentient-hub.json`) queries is
//! registered when the process starts ([`describe_hub`], the llm-worker's own), so a dashboard
//! panel never shows "no data" only because nothing happened yet; tests/api/dashboard.rs checks
//! that against the running binaries.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global tracing subscriber. `RUST_LOG` wins over the configured filter.
/// Calling it twice is harmless (the second call is ignored), which keeps tests simple.
pub fn init_tracing(settings: &TelemetrySettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Pretty => registry
            .with(fmt::layer().with_target(true).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already installed (a second app in the same test process): keep the first.
    drop(result);
}

/// Latency buckets in seconds: webhook answers should land well under 50 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder; installed once, shared by every app in the process.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("latency buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            process_collector().describe();
            handle
        })
        .clone()
}

/// The process's own figures: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// threads, open descriptors, start time.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The text of `/metrics`: the process's figures are read at that moment, histograms drained.
pub fn render(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.run_upkeep();
    handle.render()
}

/// Describes the hub's metrics and registers, at zero, the series the dashboard draws.
pub fn describe_hub() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "webhook_deliveries_total",
        "Webhook POSTs by outcome (stored, bad_signature, shed, db_error, ...)."
    );
    for outcome in ["stored", "bad_signature", "shed", "db_error"] {
        metrics::counter!("webhook_deliveries_total", "outcome" => outcome).increment(0);
    }
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP latency by method, route and status."
    );
    describe_gauge!(
        "inbox_open_messages",
        "Received messages not yet answered, by status (pending = not yet on NATS)."
    );
    describe_gauge!(
        "outbox_open_messages",
        "Replies and alerts not yet accepted by Meta, by status (unknown = in doubt after a crash)."
    );
    for status in INBOX_OPEN {
        metrics::gauge!("inbox_open_messages", "status" => *status).set(0.0);
    }
    for status in OUTBOX_OPEN {
        metrics::gauge!("outbox_open_messages", "status" => *status).set(0.0);
    }
    describe_counter!(
        "inbox_redeliveries_total",
        "Inbox jobs JetStream delivered more than once (a consumer died or was slow)."
    );
    metrics::counter!("inbox_redeliveries_total").increment(0);
    describe_counter!(
        "inbox_rerelayed_total",
        "Inbox rows put on NATS again after their job was lost."
    );
    metrics::counter!("inbox_rerelayed_total").increment(0);
    describe_counter!(
        "brain_replies_total",
        "Answers committed, by how they were made (llm, fallback = from the data, denied, clarify, error)."
    );
    for outcome in ["llm", "fallback", "denied", "clarify", "error"] {
        metrics::counter!("brain_replies_total", "outcome" => outcome).increment(0);
    }
    describe_gauge!(
        "llm_circuit_open",
        "1 while the breaker around the LLM is open or half-open (answers come from the data)."
    );
    metrics::gauge!("llm_circuit_open").set(0.0);
    describe_counter!("llm_circuit_opened_total", "Times the LLM breaker opened.");
    metrics::counter!("llm_circuit_opened_total").increment(0);
    describe_counter!(
        "alerts_received_total",
        "Alerts taken in (NATS or detectors)."
    );
    metrics::counter!("alerts_received_total").increment(0);
    describe_counter!("alert_messages_total", "Alert messages queued for phones.");
    metrics::counter!("alert_messages_total").increment(0);
    describe_counter!(
        "outbox_sends_total",
        "Graph API sends by outcome (sent, retry, failed, unknown, window_closed, ...)."
    );
    for outcome in ["sent", "retry", "failed", "unknown"] {
        metrics::counter!("outbox_sends_total", "outcome" => outcome).increment(0);
    }
    describe_counter!(
        "archive_rows_total",
        "Rows moved to the archive files, by table."
    );
    describe_counter!(
        "archive_errors_total",
        "Scheduled archive runs that failed (the next run tries again)."
    );
    metrics::counter!("archive_errors_total").increment(0);
    describe_counter!(
        "admin_logins_total",
        "Admin API sign-ins by outcome (ok, challenge = a code was sent, password = a wrong one, locked, unknown, throttled, ...)."
    );
    for outcome in [
        "ok",
        "challenge",
        "password",
        "locked",
        "unknown",
        "throttled",
    ] {
        metrics::counter!("admin_logins_total", "outcome" => outcome).increment(0);
    }
    describe_counter!(
        "admin_login_verifications_total",
        "Second-factor code checks by outcome (ok, wrong, closed = used, expired, void or unknown, throttled)."
    );
    describe_counter!(
        "admin_login_challenges_total",
        "Sign-ins that got a second-factor challenge, by the channel chosen (whatsapp, email)."
    );
    describe_counter!(
        "admin_login_codes_sent_total",
        "Second-factor codes that went out, by channel (whatsapp, email)."
    );
}

/// The statuses of a `wa_inbox` row not yet done.
const INBOX_OPEN: &[&str] = &["pending", "relayed"];
/// The statuses of a `wa_outbox` row Meta has not yet taken.
const OUTBOX_OPEN: &[&str] = &["pending", "sending", "unknown"];

/// Samples the queues' depth into `inbox_open_messages` and `outbox_open_messages` every
/// `every`; a failed count keeps the last figures (and is logged once per failure).
pub async fn sample_queues(
    db: sqlx::PgPool,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let counts = sqlx::query_as::<_, (String, String, i64)>(
            "select 'inbox', status, count(*) from wa_inbox
                 where status = any($1) group by status
             union all
             select 'outbox', status, count(*) from wa_outbox
                 where status = any($2) group by status",
        )
        .bind(INBOX_OPEN)
        .bind(OUTBOX_OPEN)
        .fetch_all(&db)
        .await;
        match counts {
            Ok(rows) => {
                let queues = [
                    ("inbox", "inbox_open_messages", INBOX_OPEN),
                    ("outbox", "outbox_open_messages", OUTBOX_OPEN),
                ];
                for (queue, gauge, statuses) in queues {
                    for status in statuses {
                        let n = rows
                            .iter()
                            .find(|(q, s, _)| q == queue && s == status)
                            .map_or(0, |r| r.2);
                        metrics::gauge!(gauge, "status" => *status).set(n as f64);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot sample the queues' depth"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Drains histogram samples into their buckets every five seconds, so memory stays flat even when
/// nobody scrapes `/metrics`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// Axum middleware: counts requests and records their latency by method, route and status.
/// The route is the matched pattern (`/api/v1/users/{id}`), never the raw path, so label
/// cardinality stays bounded.
pub async fn track_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}
