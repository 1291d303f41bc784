//! Aggregated audit events and log lines for connections refused by the per-source gate.
//!
//! A host hammering the proxy must not turn each refused connection into an audit event
//! and a log line (that would move the flood from the sockets to the disk). A source's
//! first refusal for a reason is reported at once; after that its refusals are counted and
//! [`RefusalReport::flush`], run every `limits.per_source.report_interval_ms`, reports one
//! event per source and reason with the count. At most [`MAX_REPORTED`] sources are
//! tracked between flushes; refusals beyond them are summed into one "other sources" event.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use portcullis_audit::{AuditSink, Category, Event, Outcome};

use crate::net::source_gate::Refusal;

/// Most (source, reason) pairs counted between two flushes.
pub const MAX_REPORTED: usize = 4_096;

/// The audit action of refusal events.
pub const ACTION: &str = "connection.refused";

#[derive(Debug, Default)]
struct Tally {
    /// Refusals since the last report, per source and reason.
    counts: HashMap<(IpAddr, Refusal), u64>,
    /// Refusals of sources beyond [`MAX_REPORTED`], per reason.
    overflow: HashMap<Refusal, u64>,
}

/// Counts refusals and reports them aggregated.
pub struct RefusalReport {
    audit: Arc<dyn AuditSink>,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for RefusalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalReport").finish_non_exhaustive()
    }
}

impl RefusalReport {
    /// A report writing to `audit`.
    pub fn new(audit: Arc<dyn AuditSink>) -> RefusalReport {
        RefusalReport {
            audit,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Counts one refusal of `source`; reports it at once if it is the source's first for
    /// this reason since the last flush.
    pub fn refused(&self, source: IpAddr, refusal: Refusal) {
        let mut tally = self.lock();
        if let Some(count) = tally.counts.get_mut(&(source, refusal)) {
            *count += 1;
            return;
        }
        if tally.counts.len() >= MAX_REPORTED {
            *tally.overflow.entry(refusal).or_insert(0) += 1;
            return;
        }
        // Reported now; the entry (at 0) marks the source as reported until a flush
        // finds it without further refusals.
        tally.counts.insert((source, refusal), 0);
        drop(tally);
        self.report(Some(source), refusal, 1, true);
    }

    /// Reports the refusals counted since the last flush: one event per source and
    /// reason, one for all sources beyond the bound. Sources with nothing new are
    /// forgotten, so their next refusal is reported at once again.
    pub fn flush(&self) {
        let (counts, overflow) = {
            let mut tally = self.lock();
            let counts: Vec<((IpAddr, Refusal), u64)> = tally
                .counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (*k, *n))
                .collect();
            tally.counts.retain(|_, n| *n > 0);
            for n in tally.counts.values_mut() {
                *n = 0;
            }
            (counts, std::mem::take(&mut tally.overflow))
        };
        for ((source, refusal), n) in counts {
            self.report(Some(source), refusal, n, false);
        }
        for (refusal, n) in overflow {
            self.report(None, refusal, n, false);
        }
    }

    fn report(&self, source: Option<IpAddr>, refusal: Refusal, refused: u64, first: bool) {
        let who = source.map_or_else(|| "other sources".to_string(), |s| s.to_string());
        tracing::warn!(
            source = %who,
            reason = refusal.label(),
            refused,
            first,
            "connections refused before authentication ({} reached)",
            refusal.setting()
        );
        let mut event = Event::new(Category::Connection, ACTION, Outcome::Failure)
            .reason(format!(
                "{}: {} reached",
                refusal.label(),
                refusal.setting()
            ))
            .detail("refused", refused)
            .detail("first", first);
        event = match source {
            Some(source) => event.client_addr(source),
            None => event.detail("other_sources", true),
        };
        self.audit.emit(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_audit::MemorySink;

    #[test]
    fn the_first_refusal_is_reported_at_once_then_counts_per_interval() {
        let sink = Arc::new(MemorySink::new());
        let report = RefusalReport::new(sink.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1_000 {
            report.refused(a, Refusal::Unauthenticated);
        }
        let events = sink.events();
        assert_eq!(events.len(), 1, "one event, not one per refusal");
        report.flush();
        let events = sink.events();
        assert_eq!(events.len(), 2);
        let summary = &events[1];
        assert_eq!(summary.action, ACTION);
        let details = summary.details.as_ref().unwrap();
        assert_eq!(details["refused"], 999);
        // Nothing new: nothing reported, and the source is forgotten.
        report.flush();
        report.flush();
        assert_eq!(sink.events().len(), 2);
        report.refused(a, Refusal::Unauthenticated);
        assert_eq!(sink.events().len(), 3, "reported at once again");
    }

    #[test]
    fn sources_beyond_the_bound_are_summed() {
        let sink = Arc::new(MemorySink::new());
        let report = RefusalReport::new(sink.clone());
        for i in 0..(MAX_REPORTED as u32 + 500) {
            report.refused(IpAddr::from(i.to_be_bytes()), Refusal::HandshakeRate);
        }
        assert_eq!(sink.events().len(), MAX_REPORTED);
        report.flush();
        let events = sink.events();
        assert_eq!(events.len(), MAX_REPORTED + 1);
        let other = events.last().unwrap().details.clone().unwrap();
        assert_eq!(other["refused"], 500);
        assert_eq!(other["other_sources"], true);
    }
}
