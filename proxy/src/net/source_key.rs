//! Which "source" a client address counts as for per-source limits.
//!
//! An IPv4 address is one source. An IPv6 host is usually given a whole /64, so one
//! attacker can pick a fresh address per connection from 2^64 of them: per-address limits
//! would not hold it back. IPv6 sources are therefore counted by their /64 prefix (the
//! common practice of rate limiters), and IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what
//! a dual-stack socket reports for IPv4 clients) as the IPv4 address they carry.

use std::net::{IpAddr, Ipv6Addr};

/// The key per-source limits count `ip` under.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_itself_and_ipv6_counts_by_its_64_prefix() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(source_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(other));
        assert_eq!(source_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
