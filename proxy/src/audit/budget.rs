//! A per-principal budget of data-path audit events, so one client cannot flood the log.
//!
//! Every denial of a distinct name is its own first event (denials are aggregated per
//! connection, resource and operation, see `pipeline::authz`), so a request naming 50,000
//! names it may not see would still write 50,000 events. [`BudgetedSink`] wraps the audit
//! log: each principal (or, before authentication, each client address) may write
//! `audit.event_budget` data-path events (authorization and connection categories) per
//! `audit.event_budget_window_ms`; past that, its events are counted instead of written, one
//! `audit.budget.exceeded` event says so at once, and one `audit.budget.summary` event per
//! window reports how many were held back (by outcome). Authentication, admin, config, key
//! and audit-system events are never budgeted. Principals tracked at once are capped; past
//! the cap, new ones share one `other` budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_audit::{AuditSink, Category, EmitOutcome, Event, Outcome, RecordFuture};

/// Metric: data-path audit events held back by the per-principal budget.
pub const BUDGET_SUPPRESSED: &str = "portcullis_audit_budget_suppressed_total";

/// Principals tracked at once before new ones share the `other` budget.
pub const MAX_TRACKED: usize = 10_000;

/// The key of the shared budget past [`MAX_TRACKED`].
const OTHER: &str = "other";

/// Events of one principal in the current window.
#[derive(Debug)]
struct Budget {
    since: Instant,
    written: u64,
    held_back: u64,
    denies: u64,
    allows: u64,
    /// The first event held back, for the summary's address and client id.
    sample: Option<Event>,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            since: now,
            written: 0,
            held_back: 0,
            denies: 0,
            allows: 0,
            sample: None,
        }
    }

    /// The summary of what was held back (if anything), resetting the counts.
    fn summary(&mut self, key: &str, window: Duration) -> Option<Event> {
        if self.held_back == 0 {
            return None;
        }
        let mut event = Event::new(
            Category::AuditSystem,
            "audit.budget.summary",
            Outcome::Success,
        )
        .principal(key)
        .reason(format!(
            "{} data-path audit event(s) of {key} held back by the event budget",
            self.held_back
        ))
        .detail("held_back", self.held_back)
        .detail("denies", self.denies)
        .detail("allows", self.allows)
        .detail("written", self.written)
        .detail("window_ms", window.as_millis() as u64);
        if let Some(sample) = self.sample.take() {
            if let Some(addr) = sample.client_addr {
                event = event.client_addr(addr);
            }
            if let Some(id) = sample.client_id {
                event = event.client_id(id);
            }
        }
        self.held_back = 0;
        self.denies = 0;
        self.allows = 0;
        Some(event)
    }
}

/// The audit sink with per-principal budgets in front of another sink.
pub struct BudgetedSink {
    inner: Arc<dyn AuditSink>,
    per_window: u64,
    window: Duration,
    budgets: Mutex<HashMap<String, Budget>>,
}

impl std::fmt::Debug for BudgetedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedSink")
            .field("per_window", &self.per_window)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Whether `event` is data-path (budgeted) rather than one that must always be written.
fn budgeted(event: &Event) -> bool {
    matches!(event.category, Category::Authz | Category::Connection)
}

impl BudgetedSink {
    /// `per_window` data-path events per principal per `window`, then summaries, into `inner`.
    pub fn new(inner: Arc<dyn AuditSink>, per_window: u64, window: Duration) -> BudgetedSink {
        BudgetedSink {
            inner,
            per_window,
            window,
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Writes the summaries of windows that have ended and forgets their principals. Called
    /// periodically (see [`BudgetedSink::spawn_flusher`]) and at shutdown (with `all`).
    pub fn flush(&self, all: bool) {
        let now = Instant::now();
        let mut summaries = Vec::new();
        {
            let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
            budgets.retain(|key, budget| {
                let ended = all || now.duration_since(budget.since) >= self.window;
                if ended {
                    summaries.extend(budget.summary(key, self.window));
                }
                !ended
            });
        }
        for summary in summaries {
            self.inner.emit(summary);
        }
    }

    /// Flushes ended windows every second until the sink is dropped.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(sink) => sink.flush(false),
                    None => return,
                }
            }
        });
    }

    /// Whether `event` may be written now; counts it otherwise. Returns the events due
    /// besides it (the end of a window's summary, the first-overflow alarm).
    fn admit(&self, event: &Event) -> (bool, Vec<Event>) {
        // Before authentication: the client's IP address (not its port, which it chooses).
        let key = event
            .principal
            .clone()
            .or_else(|| {
                event.client_addr.as_deref().map(|addr| {
                    addr.parse::<std::net::SocketAddr>()
                        .map_or_else(|_| addr.to_string(), |a| a.ip().to_string())
                })
            })
            .unwrap_or_else(|| "-".into());
        let now = Instant::now();
        let mut due = Vec::new();
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if budgets.contains_key(&key) || budgets.len() < MAX_TRACKED {
            key
        } else {
            OTHER.to_string()
        };
        let budget = budgets
            .entry(key.clone())
            .or_insert_with(|| Budget::new(now));
        if now.duration_since(budget.since) >= self.window {
            due.extend(budget.summary(&key, self.window));
            *budget = Budget::new(now);
        }
        if budget.written < self.per_window {
            budget.written += 1;
            return (true, due);
        }
        budget.held_back += 1;
        match event.outcome {
            Outcome::Deny => budget.denies += 1,
            _ => budget.allows += 1,
        }
        if budget.held_back == 1 {
            due.push(
                Event::new(Category::AuditSystem, "audit.budget.exceeded", Outcome::Error)
                    .principal(key.clone())
                    .reason(format!(
                        "{key} reached its budget of {} data-path audit events per {} ms; further events are counted in audit.budget.summary",
                        self.per_window,
                        self.window.as_millis()
                    )),
            );
        }
        if budget.sample.is_none() {
            budget.sample = Some(event.clone());
        }
        metrics::counter!(BUDGET_SUPPRESSED).increment(1);
        (false, due)
    }
}

impl AuditSink for BudgetedSink {
    fn emit(&self, event: Event) -> EmitOutcome {
        if !budgeted(&event) {
            return self.inner.emit(event);
        }
        let (admitted, due) = self.admit(&event);
        for extra in due {
            self.inner.emit(extra);
        }
        if admitted {
            self.inner.emit(event)
        } else {
            // Not lost: it is counted in the summary.
            EmitOutcome::Queued
        }
    }

    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    fn record(&self, event: Event) -> RecordFuture<'_> {
        if budgeted(&event) {
            let outcome = self.emit(event);
            return Box::pin(std::future::ready(Ok(match outcome {
                EmitOutcome::Queued => portcullis_audit::Recorded::Queued,
                EmitOutcome::Dropped => portcullis_audit::Recorded::Lost,
            })));
        }
        self.inner.record(event)
    }
}

impl Drop for BudgetedSink {
    fn drop(&mut self) {
        self.flush(true);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_audit::MemorySink;

    fn deny(principal: &str, topic: &str) -> Event {
        Event::new(Category::Authz, "kafka.Metadata", Outcome::Deny)
            .principal(principal)
            .resource("topic", topic)
    }

    #[test]
    fn a_principal_past_its_budget_is_summarised_and_others_are_not_affected() {
        let memory = Arc::new(MemorySink::new());
        let sink = BudgetedSink::new(memory.clone(), 10, Duration::from_secs(3600));
        for i in 0..1000 {
            sink.emit(deny("User:bob", &format!("t{i}")));
        }
        sink.emit(deny("User:alice", "t"));
        sink.emit(
            Event::new(Category::Authn, "authn.login", Outcome::Success).principal("User:bob"),
        );
        let events = memory.take();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions.iter().filter(|a| **a == "kafka.Metadata").count(),
            11
        );
        assert_eq!(
            actions
                .iter()
                .filter(|a| **a == "audit.budget.exceeded")
                .count(),
            1
        );
        assert!(
            actions.contains(&"authn.login"),
            "durable events are never budgeted"
        );
        sink.flush(true);
        let summary = memory.take();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].action, "audit.budget.summary");
        let details = summary[0].details.clone().unwrap();
        assert_eq!(details["held_back"], 990);
        assert_eq!(details["denies"], 990);
    }

    #[test]
    fn a_new_window_starts_a_new_budget_with_the_old_summary() {
        let memory = Arc::new(MemorySink::new());
        let sink = BudgetedSink::new(memory.clone(), 2, Duration::from_millis(50));
        for i in 0..5 {
            sink.emit(deny("User:bob", &format!("t{i}")));
        }
        std::thread::sleep(Duration::from_millis(60));
        sink.emit(deny("User:bob", "again"));
        let actions: Vec<String> = memory.take().into_iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                "kafka.Metadata",
                "kafka.Metadata",
                "audit.budget.exceeded",
                "audit.budget.summary",
                "kafka.Metadata"
            ]
        );
    }
}
