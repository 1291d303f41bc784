//! Per-source limits on failed authentications.
//!
//! A password guesser opens connection after connection; the per-connection attempt limit
//! alone does not slow it down. This counts failures in fixed windows twice:
//!
//! - per source address **and user** (`auth.source_failure_limit`): once a user is over
//!   the limit from an address, that user's attempts from there are refused without the
//!   credentials being checked (so the refusal is no oracle either) until the window
//!   passes. Other users behind the same address (a NAT, a shared bastion) are unaffected.
//! - per source address alone (`auth.source_failure_address_limit`, looser): a guesser
//!   spraying one password over many user names from one address is stopped too.
//!
//! Failures that name no user (a malformed message, an OAUTHBEARER token, which is not
//! trusted before it is validated) count against the address only. Refusals by the limiter
//! itself are not counted again, so a client retrying while it is limited cannot push its
//! address over the cap and lock out its neighbours. Addresses are counted as
//! [`source_key`] says (IPv6 by /64).
//!
//! Both tables are bounded: when one is full, expired windows are swept, and if it is still
//! full the oldest eighth is evicted at once (so a flood of new keys costs amortised
//! constant time, not a scan per failure).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::net::source_key::source_key;

/// Most (address, user) pairs, and most addresses, tracked at once.
pub const MAX_TRACKED: usize = 65_536;

/// Failed-attempt counts per (address, user) and per address.
#[derive(Debug)]
pub struct FailureLimiter {
    user_limit: u32,
    address_limit: u32,
    window: Duration,
    users: Mutex<Windows<(IpAddr, String)>>,
    addresses: Mutex<Windows<IpAddr>>,
}

impl FailureLimiter {
    /// Allows `user_limit` failures per (address, user) and `address_limit` per address in
    /// each `window`.
    pub fn new(user_limit: u32, address_limit: u32, window: Duration) -> Self {
        FailureLimiter {
            user_limit,
            address_limit,
            window,
            users: Mutex::new(Windows::new(MAX_TRACKED)),
            addresses: Mutex::new(Windows::new(MAX_TRACKED)),
        }
    }

    /// Whether an attempt from `source` as `user` (when the client named one) must be
    /// refused: the address is over its cap, or the user is over its limit there.
    pub fn is_blocked(&self, source: IpAddr, user: Option<&str>, now: Instant) -> bool {
        let source = source_key(source);
        let over_address =
            lock(&self.addresses).count(&source, now, self.window) >= self.address_limit;
        over_address
            || user.is_some_and(|user| {
                lock(&self.users).count(&(source, user.to_owned()), now, self.window)
                    >= self.user_limit
            })
    }

    /// Counts one failure from `source` as `user` (when the client named one).
    pub fn record_failure(&self, source: IpAddr, user: Option<&str>, now: Instant) {
        let source = source_key(source);
        lock(&self.addresses).add(source, now, self.window);
        if let Some(user) = user {
            lock(&self.users).add((source, user.to_owned()), now, self.window);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fixed windows per key, at most `cap` keys.
#[derive(Debug)]
struct Windows<K> {
    cap: usize,
    map: HashMap<K, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl<K: Hash + Eq + Clone> Windows<K> {
    fn new(cap: usize) -> Self {
        Windows {
            cap,
            map: HashMap::new(),
        }
    }

    /// Failures of `key` in its current window (0 once the window has passed).
    fn count(&self, key: &K, now: Instant, window: Duration) -> u32 {
        self.map
            .get(key)
            .filter(|w| now.saturating_duration_since(w.started) < window)
            .map_or(0, |w| w.failures)
    }

    fn add(&mut self, key: K, now: Instant, window: Duration) {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.make_room(now, window);
        }
        let entry = self.map.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.saturating_duration_since(entry.started) >= window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
    }

    /// Sweeps expired windows; if that is not enough, evicts the oldest eighth.
    fn make_room(&mut self, now: Instant, window: Duration) {
        self.map
            .retain(|_, w| now.saturating_duration_since(w.started) < window);
        if self.map.len() < self.cap {
            return;
        }
        let mut starts: Vec<Instant> = self.map.values().map(|w| w.started).collect();
        let evict = (self.cap / 8).max(1).min(starts.len() - 1);
        let (_, cutoff, _) = starts.select_nth_unstable(evict);
        let cutoff = *cutoff;
        self.map.retain(|_, w| w.started > cutoff);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_user_is_blocked_after_its_limit_until_the_window_passes() {
        let limiter = FailureLimiter::new(2, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!limiter.is_blocked(a, Some("alice"), t0));
        limiter.record_failure(a, Some("alice"), t0);
        assert!(!limiter.is_blocked(a, Some("alice"), t0));
        limiter.record_failure(a, Some("alice"), t0);
        assert!(limiter.is_blocked(a, Some("alice"), t0));
        assert!(
            !limiter.is_blocked(a, Some("bob"), t0),
            "another user behind the same address is unaffected"
        );
        assert!(!limiter.is_blocked(ip("192.0.2.2"), Some("alice"), t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!limiter.is_blocked(a, Some("alice"), later));
        limiter.record_failure(a, Some("alice"), later);
        assert!(
            !limiter.is_blocked(a, Some("alice"), later),
            "a new window starts from zero"
        );
    }

    #[test]
    fn the_address_cap_stops_spraying_over_many_users() {
        let limiter = FailureLimiter::new(2, 5, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for user in ["u1", "u2", "u3", "u4"] {
            limiter.record_failure(a, Some(user), t0);
        }
        assert!(!limiter.is_blocked(a, Some("bob"), t0));
        limiter.record_failure(a, None, t0);
        assert!(limiter.is_blocked(a, Some("bob"), t0));
        assert!(limiter.is_blocked(a, None, t0));
        assert!(!limiter.is_blocked(ip("192.0.2.9"), Some("bob"), t0));
    }

    #[test]
    fn failures_without_a_user_count_against_the_address_only() {
        let limiter = FailureLimiter::new(1, 10, Duration::from_secs(60));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        limiter.record_failure(a, None, t0);
        limiter.record_failure(a, None, t0);
        assert!(!limiter.is_blocked(a, Some("alice"), t0));
        assert!(!limiter.is_blocked(a, None, t0));
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_one_source() {
        let limiter = FailureLimiter::new(1, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.record_failure(ip("2001:db8::1"), Some("alice"), t0);
        assert!(limiter.is_blocked(ip("2001:db8::2"), Some("alice"), t0));
        assert!(!limiter.is_blocked(ip("2001:db8:0:1::1"), Some("alice"), t0));
    }

    #[test]
    fn the_tables_stay_bounded() {
        let limiter = FailureLimiter::new(1, 1_000, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            limiter.record_failure(
                IpAddr::from(i.to_be_bytes()),
                Some(&format!("user-{i}")),
                t0 + Duration::from_micros(u64::from(i)),
            );
        }
        assert!(limiter.users.lock().unwrap().map.len() <= MAX_TRACKED);
        assert!(limiter.addresses.lock().unwrap().map.len() <= MAX_TRACKED);
        // The newest entries survive eviction.
        let last = MAX_TRACKED as u32 + 9;
        assert!(limiter.is_blocked(
            IpAddr::from(last.to_be_bytes()),
            Some(&format!("user-{last}")),
            t0 + Duration::from_micros(u64::from(last)),
        ));
    }
}
