//! Per-source limits on failed authentications.
//!
//! A password guesser opens connection after connection; the per-connection attempt limit
//! alone does not slow it down. This counts failures per source IP in a fixed window; once a
//! source is over the limit, its attempts are refused without the credentials being checked
//! (so the refusal is no oracle either) until the window passes. The table is bounded: when
//! full, expired windows are swept, and if it is still full the oldest entry is evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source addresses tracked at once.
const MAX_SOURCES: usize = 65_536;

/// Failed-attempt counts per source address.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    sources: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimiter {
    /// Allows `limit` failures per source per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureLimiter {
            limit,
            window,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `source` has used up its failures for the current window.
    pub fn is_blocked(&self, source: IpAddr, now: Instant) -> bool {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.get(&source).is_some_and(|w| {
            now.duration_since(w.started) < self.window && w.failures >= self.limit
        })
    }

    /// Counts one failure from `source`.
    pub fn record_failure(&self, source: IpAddr, now: Instant) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            let window = self.window;
            sources.retain(|_, w| now.duration_since(w.started) < window);
            if sources.len() >= MAX_SOURCES {
                if let Some(oldest) = sources
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(k, _)| *k)
                {
                    sources.remove(&oldest);
                }
            }
        }
        let entry = sources.entry(source).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(entry.started) >= self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_passes() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(!limiter.is_blocked(ip, t0));
        limiter.record_failure(ip, t0);
        assert!(!limiter.is_blocked(ip, t0));
        limiter.record_failure(ip, t0);
        assert!(limiter.is_blocked(ip, t0));
        assert!(
            !limiter.is_blocked(other, t0),
            "other sources are unaffected"
        );
        let later = t0 + Duration::from_secs(61);
        assert!(!limiter.is_blocked(ip, later));
        limiter.record_failure(ip, later);
        assert!(
            !limiter.is_blocked(ip, later),
            "a new window starts from zero"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(limiter.sources.lock().unwrap().len() <= MAX_SOURCES);
    }
}
