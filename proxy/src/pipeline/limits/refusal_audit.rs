//! Counting and auditing refusals without letting a client flood the audit log with them.
//!
//! Every refusal increments `portcullis_request_limit_refusals_total{api,limit}` (both
//! labels come from fixed sets). The audit log gets the first refusal of a connection at
//! once; later ones within [`WINDOW`] are counted and reported in the next event
//! (`details.refusals_since_last`), and whatever is still counted when the connection ends
//! is reported then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_audit::{AuditSink, Category as AuditCategory, Event, Outcome};

use super::counts::Category;
use crate::codec::header::RequestHeader;
use crate::metrics::api_name;
use crate::pipeline::ConnectionState;

/// Name of the refusal counter.
pub const REFUSALS: &str = "portcullis_request_limit_refusals_total";

/// At most one refusal event per connection per window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The audit action of a refusal.
pub const ACTION: &str = "request.limit";

/// Refusals of one connection.
pub struct RefusalAudit {
    sink: Arc<dyn AuditSink>,
    last_event: Option<Instant>,
    /// Refusals since the last event, and the last of them (for the summary at the end).
    unreported: u64,
    summary: Option<Event>,
}

impl RefusalAudit {
    /// Refusals of a new connection, audited into `sink`.
    pub fn new(sink: Arc<dyn AuditSink>) -> RefusalAudit {
        RefusalAudit {
            sink,
            last_event: None,
            unreported: 0,
            summary: None,
        }
    }

    /// Counts, logs and (unless one was written within the window) audits a refusal.
    pub fn refused(
        &mut self,
        state: &ConnectionState,
        header: &RequestHeader,
        category: Category,
        count: u64,
        limit: u64,
        body_bytes: usize,
    ) {
        let api = api_name(header.api_key);
        metrics::counter!(REFUSALS, "api" => api, "limit" => category.as_str()).increment(1);
        tracing::warn!(
            api,
            version = header.api_version,
            peer = %state.client.peer,
            limit = category.as_str(),
            count,
            max = limit,
            "request over the limits refused"
        );
        let mut event = Event::new(AuditCategory::Authz, ACTION, Outcome::Deny)
            .client_addr(state.client.peer)
            .listener(state.client.listener.clone())
            .api(
                header.api_key as i16,
                api,
                header.api_version,
                header.correlation_id,
            )
            .reason(format!(
                "request names {count} {} or more (limit {limit})",
                category.as_str()
            ))
            .detail("limit", category.as_str())
            .detail("limit_value", limit)
            .detail("body_bytes", body_bytes as u64);
        if let Some(principal) = state.session.principal() {
            event = event.principal(principal.kafka_name());
        }
        if let Some(id) = &header.client_id {
            event = event.client_id(id.clone());
        }
        let now = Instant::now();
        let due = self
            .last_event
            .is_none_or(|last| now.duration_since(last) >= WINDOW);
        if due {
            let event = event.detail("refusals_since_last", self.unreported);
            self.sink.emit(event);
            self.last_event = Some(now);
            self.unreported = 0;
            self.summary = None;
        } else {
            self.unreported += 1;
            self.summary = Some(event);
        }
    }
}

impl Drop for RefusalAudit {
    fn drop(&mut self) {
        if let Some(event) = self.summary.take() {
            if self.unreported > 0 {
                self.sink
                    .emit(event.detail("refusals_since_last", self.unreported));
            }
        }
    }
}
