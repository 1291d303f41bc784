//! Node id -> proxy port: one client-facing listener per upstream broker.
//!
//! Clients connect to whatever addresses Metadata gives them, so every broker must have a
//! proxy address of its own (port-per-broker). A broker gets a port from the configured range
//! the first time the proxy sees it (in the cluster's Metadata or in any rewritten response)
//! and keeps it while the proxy runs. The listener is bound *before* the address is handed to
//! a client, so a client never races the bind.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use crate::config::PortRange;

/// Called with each newly bound broker listener, to start accepting on it.
pub type ListenerSpawner = Box<dyn Fn(i32, std::net::TcpListener) + Send + Sync>;

/// Why a broker could not be given a proxy address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerMapError {
    /// Every port of the range is taken.
    #[error("no free port left in broker port range {first}-{last} for node {node_id}")]
    RangeExhausted {
        /// The broker that needed a port.
        node_id: i32,
        /// Range start.
        first: u16,
        /// Range end.
        last: u16,
    },
    /// The broker advertised a port outside 1..=65535.
    #[error("broker {node_id} advertised invalid port {port}")]
    InvalidPort {
        /// The broker.
        node_id: i32,
        /// What it advertised.
        port: i32,
    },
}

/// Where a broker lives upstream and where the proxy offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEntry {
    /// Proxy port clients use for this broker.
    pub proxy_port: u16,
    /// The broker's own host, as the cluster advertises it.
    pub upstream_host: String,
    /// The broker's own port.
    pub upstream_port: u16,
}

/// The node id -> port registry shared by all connections.
pub struct BrokerMap {
    advertised_host: String,
    bind_ip: IpAddr,
    range: PortRange,
    brokers: Mutex<BTreeMap<i32, BrokerEntry>>,
    spawner: OnceLock<ListenerSpawner>,
}

impl std::fmt::Debug for BrokerMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerMap")
            .field("advertised_host", &self.advertised_host)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl BrokerMap {
    /// A registry handing out ports from `range`, binding on `bind_ip`, advertising
    /// `advertised_host`.
    pub fn new(advertised_host: String, bind_ip: IpAddr, range: PortRange) -> Self {
        Self {
            advertised_host,
            bind_ip,
            range,
            brokers: Mutex::new(BTreeMap::new()),
            spawner: OnceLock::new(),
        }
    }

    /// Sets the function that starts accepting on new listeners (once, at start-up).
    pub fn set_spawner(&self, spawner: ListenerSpawner) {
        let _ = self.spawner.set(spawner);
    }

    /// The host clients are told to connect to.
    pub fn advertised_host(&self) -> &str {
        &self.advertised_host
    }

    /// Records where `node_id` lives upstream and returns its proxy port, binding a listener
    /// for it the first time it is seen.
    pub fn proxy_port(
        &self,
        node_id: i32,
        upstream_host: &str,
        upstream_port: i32,
    ) -> Result<u16, BrokerMapError> {
        let upstream_port = u16::try_from(upstream_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(BrokerMapError::InvalidPort {
                node_id,
                port: upstream_port,
            })?;
        let mut brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = brokers.get_mut(&node_id) {
            if entry.upstream_host != upstream_host || entry.upstream_port != upstream_port {
                tracing::info!(node_id, upstream_host, upstream_port, "broker moved");
                entry.upstream_host = upstream_host.to_string();
                entry.upstream_port = upstream_port;
            }
            return Ok(entry.proxy_port);
        }
        let (port, listener) = self.bind_free_port(&brokers, node_id)?;
        brokers.insert(
            node_id,
            BrokerEntry {
                proxy_port: port,
                upstream_host: upstream_host.to_string(),
                upstream_port,
            },
        );
        drop(brokers);
        tracing::info!(
            node_id,
            port,
            upstream_host,
            upstream_port,
            "new broker listener"
        );
        match self.spawner.get() {
            Some(spawn) => spawn(node_id, listener),
            None => tracing::warn!(node_id, "broker listener bound before the proxy started"),
        }
        Ok(port)
    }

    /// Where `node_id` lives upstream, if known.
    pub fn upstream_of(&self, node_id: i32) -> Option<(String, u16)> {
        let brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        brokers
            .get(&node_id)
            .map(|e| (e.upstream_host.clone(), e.upstream_port))
    }

    /// A snapshot of every known broker.
    pub fn snapshot(&self) -> BTreeMap<i32, BrokerEntry> {
        self.brokers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn bind_free_port(
        &self,
        brokers: &BTreeMap<i32, BrokerEntry>,
        node_id: i32,
    ) -> Result<(u16, std::net::TcpListener), BrokerMapError> {
        for port in self.range.first..=self.range.last {
            if brokers.values().any(|e| e.proxy_port == port) {
                continue;
            }
            match std::net::TcpListener::bind(SocketAddr::new(self.bind_ip, port)) {
                Ok(listener) => {
                    if listener.set_nonblocking(true).is_ok() {
                        return Ok((port, listener));
                    }
                }
                Err(e) => tracing::warn!(port, error = %e, "broker port unavailable, trying next"),
            }
        }
        Err(BrokerMapError::RangeExhausted {
            node_id,
            first: self.range.first,
            last: self.range.last,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn free_range(len: u16) -> PortRange {
        // Find `len` consecutive free ports by probing from a random-ish start.
        let seed = (std::process::id() % 10_000) as u16;
        'outer: for start in (20_000 + seed..32_000).step_by(usize::from(len) + 1) {
            for p in start..start + len {
                if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                    continue 'outer;
                }
            }
            return PortRange {
                first: start,
                last: start + len - 1,
            };
        }
        panic!("no free port range");
    }

    #[test]
    fn ports_are_stable_and_distinct_and_listeners_are_bound() {
        let map = BrokerMap::new("proxy".into(), "127.0.0.1".parse().unwrap(), free_range(3));
        let spawned = Arc::new(Mutex::new(Vec::new()));
        let s = spawned.clone();
        map.set_spawner(Box::new(move |node, l| s.lock().unwrap().push((node, l))));
        let a = map.proxy_port(5, "b5", 9092).unwrap();
        let b = map.proxy_port(1, "b1", 9092).unwrap();
        assert_ne!(a, b);
        assert_eq!(map.proxy_port(5, "b5-moved", 9093).unwrap(), a);
        assert_eq!(map.upstream_of(5), Some(("b5-moved".into(), 9093)));
        assert_eq!(spawned.lock().unwrap().len(), 2);
        // The bound listener is what the spawner got: connecting works right away.
        std::net::TcpStream::connect(("127.0.0.1", a)).unwrap();
    }

    #[test]
    fn exhausted_range_and_bad_ports_are_errors() {
        let map = BrokerMap::new("proxy".into(), "127.0.0.1".parse().unwrap(), free_range(1));
        map.proxy_port(1, "b1", 9092).unwrap();
        assert!(matches!(
            map.proxy_port(2, "b2", 9092),
            Err(BrokerMapError::RangeExhausted { node_id: 2, .. })
        ));
        assert!(matches!(
            map.proxy_port(3, "b3", 70_000),
            Err(BrokerMapError::InvalidPort { .. })
        ));
    }
}
