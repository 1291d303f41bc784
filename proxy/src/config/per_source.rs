//! `[limits.per_source]`: what one source address may hold and open before authenticating.
//!
//! The global `limits.max_connections` alone lets one host fill the proxy with idle
//! connections (each may sit in the TLS handshake and SASL timeouts for seconds) and keep
//! everyone else out. These limits are per source (an IPv4 address, an IPv6 /64), counted
//! from accept until the connection authenticates.

use serde::Deserialize;

/// Per-source limits before authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSourceLimits {
    /// Connections one source may hold open at once before they authenticate (in the TLS
    /// handshake, in SASL, or idle). Beyond it new connections are closed at once.
    #[serde(default = "default_unauthenticated_connections")]
    pub unauthenticated_connections: u32,
    /// New connections one source may open per second, sustained (a token bucket).
    #[serde(default = "default_handshakes_per_sec")]
    pub handshakes_per_sec: u32,
    /// New connections one source may open at once on top of the sustained rate (the
    /// bucket's size).
    #[serde(default = "default_handshake_burst")]
    pub handshake_burst: u32,
    /// Most sources tracked at once. Idle sources are forgotten first; a new source that
    /// finds the table full of sources with open unauthenticated connections is refused.
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
    /// Refused connections are audited and logged aggregated: a source's first refusal at
    /// once, then one event per source with the count every this many milliseconds.
    #[serde(default = "default_report_interval_ms")]
    pub report_interval_ms: u64,
}

impl Default for PerSourceLimits {
    fn default() -> Self {
        PerSourceLimits {
            unauthenticated_connections: default_unauthenticated_connections(),
            handshakes_per_sec: default_handshakes_per_sec(),
            handshake_burst: default_handshake_burst(),
            max_sources: default_max_sources(),
            report_interval_ms: default_report_interval_ms(),
        }
    }
}

impl PerSourceLimits {
    /// Problems with the values, as (key under `limits.per_source`, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, value) in [
            (
                "unauthenticated_connections",
                u64::from(self.unauthenticated_connections),
            ),
            ("handshakes_per_sec", u64::from(self.handshakes_per_sec)),
            ("handshake_burst", u64::from(self.handshake_burst)),
        ] {
            if value == 0 {
                problems.push((key, "must be above 0".to_string()));
            }
        }
        if !(1_024..=10_000_000).contains(&self.max_sources) {
            problems.push(("max_sources", "must be between 1024 and 10000000".into()));
        }
        if !(100..=3_600_000).contains(&self.report_interval_ms) {
            problems.push((
                "report_interval_ms",
                "must be between 100 and 3600000".into(),
            ));
        }
        problems
    }

    /// `report_interval_ms` as a duration.
    pub fn report_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.report_interval_ms)
    }
}

fn default_unauthenticated_connections() -> u32 {
    64
}
fn default_handshakes_per_sec() -> u32 {
    50
}
fn default_handshake_burst() -> u32 {
    200
}
fn default_max_sources() -> usize {
    65_536
}
fn default_report_interval_ms() -> u64 {
    10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_are_not() {
        assert!(PerSourceLimits::default().validate().is_empty());
        let zero = PerSourceLimits {
            unauthenticated_connections: 0,
            handshakes_per_sec: 0,
            handshake_burst: 0,
            max_sources: 10,
            report_interval_ms: 0,
        };
        let keys: Vec<&str> = zero.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "unauthenticated_connections",
                "handshakes_per_sec",
                "handshake_burst",
                "max_sources",
                "report_interval_ms"
            ]
        );
    }
}
