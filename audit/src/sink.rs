//! The sink interface the proxy emits audit events into, and two trivial sinks.
//!
//! The proxy calls [`AuditSink::emit`] from its connection tasks, on the request path. A sink
//! therefore never blocks and never awaits: it accepts the event into a bounded queue or drops
//! it and counts the loss. Durable writing happens elsewhere (see
//! [`AuditLog`](crate::AuditLog)), so a slow disk slows the audit writer, never the Kafka
//! traffic.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::event::Event;
use crate::log::{AuditRejected, Recorded};

/// The future [`AuditSink::record`] returns.
pub type RecordFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Recorded, AuditRejected>> + Send + 'a>>;

/// What happened to an event handed to [`AuditSink::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitOutcome {
    /// The sink accepted the event; it will be written unless the writer hits an I/O error.
    Queued,
    /// The sink was full or shut down; the event is lost and counted in
    /// [`AuditSink::dropped`].
    Dropped,
}

/// Where audit events go.
///
/// Implementations are shared between connection tasks (`Arc<dyn AuditSink>`), so they are
/// `Send + Sync + 'static`.
pub trait AuditSink: Send + Sync + 'static {
    /// Hands one event to the sink.
    ///
    /// Never blocks and never awaits: when the sink cannot take the event right now it drops it,
    /// counts it, and returns [`EmitOutcome::Dropped`].
    fn emit(&self, event: Event) -> EmitOutcome;

    /// How many events this sink has dropped since it was created.
    fn dropped(&self) -> u64;

    /// Records an event according to its category's durability and failure policy, for
    /// requests that must not be answered before their event is durable (`sync`) and must
    /// fail when it cannot be (`reject`).
    ///
    /// The default has no durability to wait for: it [`emit`](AuditSink::emit)s and answers
    /// [`Recorded::Queued`] (or [`Recorded::Lost`] if the sink dropped the event), never
    /// rejecting. [`AuditLog`](crate::AuditLog) overrides it with
    /// [`AuditLog::record`](crate::AuditLog::record).
    fn record(&self, event: Event) -> RecordFuture<'_> {
        let recorded = match self.emit(event) {
            EmitOutcome::Queued => Recorded::Queued,
            EmitOutcome::Dropped => Recorded::Lost,
        };
        Box::pin(std::future::ready(Ok(recorded)))
    }
}

/// A sink that accepts and discards every event (auditing disabled, or tests that don't care).
///
/// Discarding is its purpose, not a loss: [`emit`](AuditSink::emit) returns
/// [`EmitOutcome::Queued`] and [`dropped`](AuditSink::dropped) stays 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl AuditSink for NullSink {
    fn emit(&self, _event: Event) -> EmitOutcome {
        EmitOutcome::Queued
    }

    fn dropped(&self) -> u64 {
        0
    }
}

/// A sink that keeps events in memory, for tests.
///
/// Unbounded by default; [`MemorySink::bounded`] makes one that drops past a capacity, to test
/// how callers behave under audit back-pressure.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
    capacity: Option<usize>,
    dropped: AtomicU64,
}

impl MemorySink {
    /// An unbounded in-memory sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// An in-memory sink that holds at most `capacity` events and drops (and counts) the rest.
    pub fn bounded(capacity: usize) -> MemorySink {
        MemorySink {
            capacity: Some(capacity),
            ..MemorySink::default()
        }
    }

    /// A copy of the events received so far, in emission order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Removes and returns the events received so far, freeing room in a bounded sink.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    // A panic while holding the lock cannot leave a Vec half-pushed, so a poisoned lock is
    // still usable.
    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AuditSink for MemorySink {
    fn emit(&self, event: Event) -> EmitOutcome {
        let mut events = self.lock();
        if self.capacity.is_some_and(|cap| events.len() >= cap) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return EmitOutcome::Dropped;
        }
        events.push(event);
        EmitOutcome::Queued
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::{Category, Outcome};
    use std::sync::Arc;

    fn ev(action: &str) -> Event {
        Event::new(Category::Connection, action, Outcome::Success)
    }

    #[test]
    fn null_sink_accepts_everything() {
        let sink: Arc<dyn AuditSink> = Arc::new(NullSink);
        assert_eq!(sink.emit(ev("connection.open")), EmitOutcome::Queued);
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn memory_sink_keeps_order() {
        let sink = MemorySink::new();
        for a in ["a", "b", "c"] {
            assert_eq!(sink.emit(ev(a)), EmitOutcome::Queued);
        }
        let actions: Vec<String> = sink.events().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["a", "b", "c"]);
        assert_eq!(sink.take().len(), 3);
        assert!(sink.events().is_empty());
    }

    #[test]
    fn bounded_memory_sink_drops_and_counts() {
        let sink = MemorySink::bounded(2);
        assert_eq!(sink.emit(ev("a")), EmitOutcome::Queued);
        assert_eq!(sink.emit(ev("b")), EmitOutcome::Queued);
        assert_eq!(sink.emit(ev("c")), EmitOutcome::Dropped);
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.events().len(), 2);
    }
}
