//! Metric names and cheap per-api-key handles.
//!
//! The request path must not hash label sets per request, so the per-api counters and
//! histograms are registered once and looked up by api key in a vector. Names are listed
//! here so `/metrics` and docs/configuration.md agree.

pub mod decision_series;

use std::sync::OnceLock;

use kafka_protocol::messages::ApiKey;
use metrics::{Counter, Histogram};

/// Open client connections (gauge), by listener kind.
pub const CONNECTIONS_OPEN: &str = "portcullis_connections_open";
/// Accepted client connections (counter), by listener kind.
pub const CONNECTIONS_TOTAL: &str = "portcullis_connections_total";
/// Connections refused at accept, by reason.
pub const CONNECTIONS_REJECTED: &str = "portcullis_connections_rejected_total";
/// Connections closed because of an error, by reason.
pub const CONNECTION_ERRORS: &str = "portcullis_connection_errors_total";
/// Requests received, by api key.
pub const REQUESTS: &str = "portcullis_requests_total";
/// Requests refused or failed, by api key.
pub const REQUEST_ERRORS: &str = "portcullis_request_errors_total";
/// Time from reading a request to writing its response, by api key.
pub const REQUEST_DURATION: &str = "portcullis_request_duration_seconds";
/// Bytes read from clients.
pub const BYTES_IN: &str = "portcullis_client_bytes_in_total";
/// Bytes written to clients.
pub const BYTES_OUT: &str = "portcullis_client_bytes_out_total";
/// Failed attempts to connect to a broker.
pub const UPSTREAM_CONNECT_FAILURES: &str = "portcullis_upstream_connect_failures_total";
/// Upstream connections opened on behalf of clients (not counting cluster discovery).
pub const UPSTREAM_CONNECTIONS: &str = "portcullis_upstream_connections_total";
/// Authentications, by mechanism and outcome (see `authn::AUTHENTICATIONS`).
pub const AUTHENTICATIONS: &str = "portcullis_authentications_total";
/// Cluster metadata refreshes, by outcome.
pub const CLUSTER_REFRESHES: &str = "portcullis_cluster_refreshes_total";
/// Requests failed closed because their `sync`/`reject` audit event could not be made
/// durable, by category.
pub const AUDIT_REJECTED: &str = "portcullis_audit_rejected_total";
/// Attempts to produce an audit checkpoint to the anchor topic, by outcome (ok, retry).
pub const AUDIT_ANCHOR_PUBLISHED: &str = "portcullis_audit_anchor_publish_total";
/// Anchor alarms raised at start-up, by kind (`unverified`: notes of this log's origin it
/// did not sign; `missing`: the anchor topic lost this log's checkpoints).
pub const AUDIT_ANCHOR_ALARMS: &str = "portcullis_audit_anchor_alarms_total";
/// Sources tracked by the per-source pre-authentication gate (gauge).
pub const PREAUTH_SOURCES: &str = "portcullis_preauth_sources_tracked";
/// The audit store's size on disk (bytes), measured every checkpoint interval.
pub const AUDIT_DISK_BYTES: &str = "portcullis_audit_disk_bytes";
/// 1 while the audit store is at or over `audit.log.max_disk_bytes` (data-path events are
/// dropped), else 0.
pub const AUDIT_OVER_DISK_BUDGET: &str = "portcullis_audit_disk_budget_exceeded";
/// Audit events lost since start (queue full, disk budget, write failures).
pub const AUDIT_DROPPED: &str = "portcullis_audit_dropped_total";

/// Copies the audit log's counters into gauges every second.
pub fn spawn_audit_gauges(log: portcullis_audit::AuditLog) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let stats = log.stats();
            metrics::gauge!(AUDIT_DISK_BYTES).set(stats.disk_bytes as f64);
            metrics::gauge!(AUDIT_OVER_DISK_BUDGET)
                .set(f64::from(u8::from(stats.over_disk_budget)));
            metrics::counter!(AUDIT_DROPPED).absolute(stats.dropped);
        }
    });
}

/// Handles for one api key.
#[derive(Debug)]
pub struct ApiMetrics {
    /// Requests received.
    pub requests: Counter,
    /// Requests refused or failed.
    pub errors: Counter,
    /// Request latency.
    pub duration: Histogram,
}

static API_METRICS: OnceLock<Vec<ApiMetrics>> = OnceLock::new();
static UNKNOWN: OnceLock<ApiMetrics> = OnceLock::new();

fn register(api: &'static str) -> ApiMetrics {
    ApiMetrics {
        requests: metrics::counter!(REQUESTS, "api" => api),
        errors: metrics::counter!(REQUEST_ERRORS, "api" => api),
        duration: metrics::histogram!(REQUEST_DURATION, "api" => api),
    }
}

/// Registers every handle. Call once after the recorder is installed (handles taken
/// before that go nowhere).
pub fn init() {
    // Counters a test or an alert compares against zero exist from the start.
    metrics::counter!(UPSTREAM_CONNECTIONS).increment(0);
    API_METRICS.get_or_init(|| {
        (0..=ApiKey::iter().map(|k| k as i16).max().unwrap_or(0))
            .map(|k| match ApiKey::try_from(k) {
                Ok(key) => register(api_name(key)),
                Err(()) => register("unknown"),
            })
            .collect()
    });
}

/// The handles for `key`.
pub fn api(key: ApiKey) -> &'static ApiMetrics {
    init();
    API_METRICS
        .get()
        .and_then(|v| v.get(key as i16 as usize))
        .unwrap_or_else(|| UNKNOWN.get_or_init(|| register("unknown")))
}

/// Counters of bytes read from and written to clients.
#[derive(Debug)]
pub struct ClientBytes {
    /// Bytes read from clients.
    pub read: Counter,
    /// Bytes written to clients.
    pub written: Counter,
}

/// The client byte counters.
pub fn client_bytes() -> &'static ClientBytes {
    static BYTES: OnceLock<ClientBytes> = OnceLock::new();
    BYTES.get_or_init(|| ClientBytes {
        read: metrics::counter!(BYTES_IN),
        written: metrics::counter!(BYTES_OUT),
    })
}

/// The api key's name as a static string (for labels).
pub fn api_name(key: ApiKey) -> &'static str {
    // Debug of a fieldless enum is its variant name; leak once per key at registration.
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..=127i16)
            .map(|k| match ApiKey::try_from(k) {
                Ok(key) => &*Box::leak(format!("{key:?}").into_boxed_str()),
                Err(()) => "unknown",
            })
            .collect()
    });
    names.get(key as i16 as usize).copied().unwrap_or("unknown")
}
