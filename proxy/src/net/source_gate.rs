//! Per-source admission before authentication (`[limits.per_source]`).
//!
//! Every accepted socket asks the gate first. A source (an IPv4 address, an IPv6 /64, see
//! [`source_key`]) may hold at most `unauthenticated_connections` connections that have not
//! authenticated yet, and open new ones at most at `handshakes_per_sec` (a token bucket of
//! `handshake_burst`). A refused socket is closed at once, before any TLS or Kafka byte is
//! read, so one host opening idle connections cannot fill the global
//! `limits.max_connections` and keep everyone else out.
//!
//! An admitted connection holds a [`PreAuthPermit`] until it authenticates (or ends); the
//! permit gives its place back when dropped.
//!
//! The table is bounded by `max_sources`. A source with no unauthenticated connection
//! and a full bucket carries no state and is forgotten first; then sources without open
//! connections, oldest first (which only forgets their rate). Sources with open
//! unauthenticated connections are never forgotten (their count would be lost); if the
//! table is full of them a new source is refused. Their number is bounded by
//! `limits.max_connections` anyway.
//!
//! Refusals are counted in `portcullis_connections_rejected_total{reason}` and reported
//! aggregated by [`RefusalReport`]: a source's first refusal at once, then one event with
//! the count per report interval, never one event per refused connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_audit::AuditSink;

use crate::config::per_source::PerSourceLimits;
use crate::net::source_key::source_key;
use crate::net::source_report::RefusalReport;

/// Why the gate refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The source holds `unauthenticated_connections` connections already.
    Unauthenticated,
    /// The source opened connections faster than `handshakes_per_sec` allows.
    HandshakeRate,
    /// The table is full of sources with open unauthenticated connections.
    TableFull,
}

impl Refusal {
    /// Label for metrics and audit events.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "per_source_unauthenticated",
            Refusal::HandshakeRate => "per_source_handshake_rate",
            Refusal::TableFull => "per_source_table_full",
        }
    }

    /// The setting an operator would raise.
    pub fn setting(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "limits.per_source.unauthenticated_connections",
            Refusal::HandshakeRate => "limits.per_source.handshakes_per_sec",
            Refusal::TableFull => "limits.per_source.max_sources",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    unauthenticated: u32,
    tokens: f64,
    refilled: Instant,
}

/// Per-source counts shared by every listener.
#[derive(Debug)]
pub struct SourceGate {
    limits: PerSourceLimits,
    sources: Mutex<HashMap<IpAddr, Source>>,
    /// Aggregated refusal events.
    pub report: RefusalReport,
}

impl SourceGate {
    /// A gate enforcing `limits`, reporting refusals to `audit`.
    pub fn new(limits: PerSourceLimits, audit: Arc<dyn AuditSink>) -> SourceGate {
        SourceGate {
            limits,
            sources: Mutex::new(HashMap::new()),
            report: RefusalReport::new(audit),
        }
    }

    /// Reports the refusals counted so far every `report_interval_ms`, until the proxy
    /// stops.
    pub fn spawn_reporter(self: &Arc<Self>) {
        let gate = Arc::downgrade(self);
        let interval = self.limits.report_interval();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match gate.upgrade() {
                    Some(gate) => gate.report.flush(),
                    None => return,
                }
            }
        });
    }

    /// Admits a new connection from `ip`, or says why not (counted in the metric and the
    /// aggregated report).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<PreAuthPermit, Refusal> {
        let key = source_key(ip);
        let verdict = self.try_admit(key, now);
        match verdict {
            Ok(()) => Ok(PreAuthPermit {
                gate: Arc::clone(self),
                key,
            }),
            Err(refusal) => {
                metrics::counter!(crate::metrics::CONNECTIONS_REJECTED, "reason" => refusal.label())
                    .increment(1);
                self.report.refused(key, refusal);
                Err(refusal)
            }
        }
    }

    fn try_admit(&self, key: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= self.limits.max_sources && !sources.contains_key(&key) {
            self.make_room(&mut sources, now);
            if sources.len() >= self.limits.max_sources {
                return Err(Refusal::TableFull);
            }
        }
        let burst = f64::from(self.limits.handshake_burst);
        let source = sources.entry(key).or_insert(Source {
            unauthenticated: 0,
            tokens: burst,
            refilled: now,
        });
        self.refill(source, now);
        if source.unauthenticated >= self.limits.unauthenticated_connections {
            return Err(Refusal::Unauthenticated);
        }
        if source.tokens < 1.0 {
            return Err(Refusal::HandshakeRate);
        }
        source.tokens -= 1.0;
        source.unauthenticated += 1;
        metrics::gauge!(crate::metrics::PREAUTH_SOURCES).set(sources.len() as f64);
        Ok(())
    }

    fn refill(&self, source: &mut Source, now: Instant) {
        let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
        let rate = f64::from(self.limits.handshakes_per_sec);
        source.tokens =
            (source.tokens + elapsed * rate).min(f64::from(self.limits.handshake_burst));
        source.refilled = now;
    }

    /// Forgets sources that carry no state, then the oldest eighth of those without open
    /// unauthenticated connections.
    fn make_room(&self, sources: &mut HashMap<IpAddr, Source>, now: Instant) {
        let burst = f64::from(self.limits.handshake_burst);
        for source in sources.values_mut() {
            self.refill(source, now);
        }
        sources.retain(|_, s| s.unauthenticated > 0 || s.tokens < burst);
        if sources.len() < self.limits.max_sources {
            return;
        }
        let mut idle: Vec<(Instant, IpAddr)> = sources
            .iter()
            .filter(|(_, s)| s.unauthenticated == 0)
            .map(|(k, s)| (s.refilled, *k))
            .collect();
        idle.sort_unstable_by_key(|(at, _)| *at);
        let evict = (self.limits.max_sources / 8).max(1);
        for (_, key) in idle.into_iter().take(evict) {
            sources.remove(&key);
        }
    }

    fn release(&self, key: IpAddr) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(source) = sources.get_mut(&key) {
            source.unauthenticated = source.unauthenticated.saturating_sub(1);
        }
    }

    /// Unauthenticated connections `ip`'s source holds now.
    pub fn unauthenticated(&self, ip: IpAddr) -> u32 {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources
            .get(&source_key(ip))
            .map_or(0, |s| s.unauthenticated)
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// An admitted connection's place among its source's unauthenticated connections, given
/// back when dropped (the connection authenticated or ended).
#[derive(Debug)]
pub struct PreAuthPermit {
    gate: Arc<SourceGate>,
    key: IpAddr,
}

impl Drop for PreAuthPermit {
    fn drop(&mut self) {
        self.gate.release(self.key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate(unauthenticated: u32, per_sec: u32, burst: u32, max_sources: usize) -> Arc<SourceGate> {
        Arc::new(SourceGate::new(
            PerSourceLimits {
                unauthenticated_connections: unauthenticated,
                handshakes_per_sec: per_sec,
                handshake_burst: burst,
                max_sources,
                report_interval_ms: 10_000,
            },
            Arc::new(portcullis_audit::MemorySink::new()),
        ))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unauthenticated_connections_are_limited_per_source_and_given_back() {
        let gate = gate(2, 1_000, 1_000, 1_024);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let first = gate.admit(a, t0).unwrap();
        let _second = gate.admit(a, t0).unwrap();
        assert_eq!(gate.admit(a, t0).unwrap_err(), Refusal::Unauthenticated);
        assert!(gate.admit(ip("192.0.2.2"), t0).is_ok(), "another source");
        drop(first);
        assert_eq!(gate.unauthenticated(a), 1);
        assert!(gate.admit(a, t0).is_ok(), "a place given back is usable");
    }

    #[test]
    fn the_handshake_rate_is_a_token_bucket() {
        let gate = gate(1_000, 10, 5, 1_024);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(gate.admit(a, t0).unwrap());
        }
        assert_eq!(gate.admit(a, t0).unwrap_err(), Refusal::HandshakeRate);
        // 10 per second: one more after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        held.push(gate.admit(a, t1).unwrap());
        assert_eq!(gate.admit(a, t1).unwrap_err(), Refusal::HandshakeRate);
        // The bucket never holds more than the burst.
        let t2 = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            held.push(gate.admit(a, t2).unwrap());
        }
        assert_eq!(gate.admit(a, t2).unwrap_err(), Refusal::HandshakeRate);
    }

    #[test]
    fn the_table_stays_bounded_and_never_forgets_open_connections() {
        let gate = gate(4, 1, 1, 1_024);
        let t0 = Instant::now();
        // 1,024 sources each holding a connection: the table is full of live state.
        let mut held = Vec::new();
        for i in 0..1_024u32 {
            held.push(gate.admit(IpAddr::from(i.to_be_bytes()), t0).unwrap());
        }
        let stranger = ip("198.51.100.1");
        assert_eq!(gate.admit(stranger, t0).unwrap_err(), Refusal::TableFull);
        // Once they are closed (their buckets still refilling) the oldest are forgotten.
        held.clear();
        assert!(gate.admit(stranger, t0 + Duration::from_millis(10)).is_ok());
        assert!(gate.tracked() <= 1_024);
        // Many new sources over time: still bounded.
        for i in 0..10_000u32 {
            let _ = gate.admit(
                IpAddr::from((i + 100_000).to_be_bytes()),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(gate.tracked() <= 1_024);
    }
}
