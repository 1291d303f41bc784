//! Free loopback ports for brokers, proxies and admin listeners.
//!
//! Tests run in parallel threads (and possibly parallel processes under nextest), each
//! starting its own broker and proxy, so port choice must not collide. Single ports come from
//! the kernel (bind to port 0). The proxy's per-broker range must be contiguous, which the
//! kernel cannot hand out, so ranges are probed by binding every port of a candidate range
//! starting at a random offset below the kernel's ephemeral range. Every port handed out is
//! remembered for the life of the process so two tests in one process never get the same
//! port, even after the probe sockets are closed.
//!
//! There remains a window between probing and the child binding the port; the proxy and
//! broker starters retry with fresh ports when a child reports "address in use".

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowest port a range may start at (above the well-known and common service ports).
const RANGE_FLOOR: u16 = 20_000;
/// Ranges stay below Linux's default ephemeral range (32768-60999), where the kernel picks
/// source ports for outgoing connections and port-0 binds.
const RANGE_CEILING: u16 = 32_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A random 64-bit number (std's per-process random hasher keys mixed with the clock).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

fn claim(ports: &[u16]) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports.iter().copied());
    true
}

/// A free TCP port on 127.0.0.1 that this process has not handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if claim(&[port]) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// `len` contiguous free TCP ports on 127.0.0.1, none handed out before by this process.
pub fn free_port_range(len: u16) -> RangeInclusive<u16> {
    assert!(
        len > 0 && len < 1000,
        "unreasonable port range length {len}"
    );
    let span = u64::from(RANGE_CEILING - RANGE_FLOOR - len);
    for _ in 0..200 {
        let first = RANGE_FLOOR + (random_u64() % span) as u16;
        let last = first + len - 1;
        let ports: Vec<u16> = (first..=last).collect();
        // Hold every probe socket until all are bound, so the whole range was free at once.
        let bound: Result<Vec<TcpListener>, _> = ports
            .iter()
            .map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)))
            .collect();
        if bound.is_ok() && claim(&ports) {
            return first..=last;
        }
    }
    panic!("no free range of {len} loopback ports found");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        let r1 = free_port_range(8);
        let r2 = free_port_range(8);
        assert_eq!(r1.clone().count(), 8);
        assert!(r1.clone().all(|p| !r2.contains(&p)));
        assert!(!r1.contains(&a) && !r1.contains(&b));
        // Every port of a fresh range can be bound right now.
        let _held: Vec<TcpListener> = r1
            .map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap())
            .collect();
    }
}
