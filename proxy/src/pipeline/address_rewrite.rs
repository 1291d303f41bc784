//! Rewriting broker addresses in responses to proxy addresses.
//!
//! A client must never learn a broker's real address, or its next connection would bypass
//! the proxy. Every response that names brokers (Metadata, FindCoordinator, DescribeCluster,
//! and the KIP-951 leader endpoints in Produce and Fetch) goes through `rewrite_response`.
//! The functions are pure over decoded messages; the `AddressMapper` decides the new
//! address (and, in the running proxy, binds a listener for a broker seen for the first time).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::cluster::broker_map::{BrokerMap, BrokerMapError};
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::response_needs_rewrite;
use crate::pipeline::{ConnectionState, Flow, Note, Request, Response, Stage, Step};

/// Maps a broker's upstream address to the address clients must use.
pub trait AddressMapper {
    /// Returns (host, port) to advertise for `node_id`, which lives at `host:port` upstream.
    fn map(&self, node_id: i32, host: &str, port: i32) -> Result<(String, i32), BrokerMapError>;
}

impl AddressMapper for BrokerMap {
    fn map(&self, node_id: i32, host: &str, port: i32) -> Result<(String, i32), BrokerMapError> {
        let proxy_port = self.proxy_port(node_id, host, port)?;
        Ok((self.advertised_host().to_string(), i32::from(proxy_port)))
    }
}

/// Why a response could not be rewritten. The connection is closed: a response the proxy
/// cannot rewrite would leak a broker address.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The broker's response did not decode or re-encode.
    #[error("cannot decode {api:?} v{version} response: {source}")]
    Codec {
        /// Api key.
        api: ApiKey,
        /// Version.
        version: i16,
        /// Decoder message.
        source: anyhow::Error,
    },
    /// A broker could not be given a proxy address.
    #[error(transparent)]
    Map(#[from] BrokerMapError),
}

/// Rewrites the addresses in a response body. Returns `None` when nothing had to change (the
/// original bytes stay valid and are forwarded as they are).
pub fn rewrite_response(
    api: ApiKey,
    version: i16,
    body: Bytes,
    mapper: &dyn AddressMapper,
) -> Result<Option<Bytes>, RewriteError> {
    if !carries_addresses(api) {
        return Ok(None);
    }
    let codec = |source| RewriteError::Codec {
        api,
        version,
        source,
    };
    let mut buf = body;
    // Bytes after the decoded message are ignored, as Kafka clients do.
    let mut message = ResponseKind::decode(api, &mut buf, version).map_err(codec)?;
    if !rewrite_addresses(&mut message, mapper)? {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    message.encode(&mut out, version).map_err(codec)?;
    Ok(Some(out.freeze()))
}

/// Whether responses of `api` name brokers.
fn carries_addresses(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::Metadata
            | ApiKey::FindCoordinator
            | ApiKey::DescribeCluster
            | ApiKey::Produce
            | ApiKey::Fetch
    )
}

/// Rewrites the broker addresses in a decoded response; returns whether anything changed.
pub fn rewrite_addresses(
    response: &mut ResponseKind,
    mapper: &dyn AddressMapper,
) -> Result<bool, RewriteError> {
    match response {
        ResponseKind::Metadata(m) => {
            for b in &mut m.brokers {
                set_address(mapper, b.node_id.0, &mut b.host, &mut b.port)?;
            }
            Ok(true)
        }
        ResponseKind::FindCoordinator(m) => {
            let mut changed = false;
            if m.node_id.0 >= 0 && !m.host.is_empty() {
                set_address(mapper, m.node_id.0, &mut m.host, &mut m.port)?;
                changed = true;
            }
            for c in &mut m.coordinators {
                if c.node_id.0 >= 0 && !c.host.is_empty() {
                    set_address(mapper, c.node_id.0, &mut c.host, &mut c.port)?;
                    changed = true;
                }
            }
            Ok(changed)
        }
        ResponseKind::DescribeCluster(m) => {
            if m.endpoint_type == 2 {
                // Controller endpoints: the proxy has no listeners for controllers.
                m.brokers.clear();
                m.error_code = ResponseError::UnsupportedEndpointType.code();
                m.error_message = Some(StrBytes::from_static_str(
                    "controller endpoints are not available through the proxy",
                ));
                return Ok(true);
            }
            for b in &mut m.brokers {
                set_address(mapper, b.broker_id.0, &mut b.host, &mut b.port)?;
            }
            Ok(true)
        }
        ResponseKind::Produce(m) => {
            for e in &mut m.node_endpoints {
                set_address(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
            }
            Ok(!m.node_endpoints.is_empty())
        }
        ResponseKind::Fetch(m) => {
            for e in &mut m.node_endpoints {
                set_address(mapper, e.node_id.0, &mut e.host, &mut e.port)?;
            }
            Ok(!m.node_endpoints.is_empty())
        }
        _ => Ok(false),
    }
}

fn set_address(
    mapper: &dyn AddressMapper,
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<(), RewriteError> {
    let (new_host, new_port) = mapper.map(node_id, host.as_str(), *port)?;
    *host = StrBytes::from_string(new_host);
    *port = new_port;
    Ok(())
}

/// The address rewriting stage: sees decoded every response that names brokers.
#[derive(Debug)]
pub struct AddressRewrite {
    brokers: Arc<BrokerMap>,
}

impl AddressRewrite {
    /// The stage, mapping brokers through `brokers`.
    pub fn new(brokers: Arc<BrokerMap>) -> AddressRewrite {
        AddressRewrite { brokers }
    }
}

impl Stage for AddressRewrite {
    fn name(&self) -> &'static str {
        "address_rewrite"
    }

    fn decodes_response(&self, api: ApiKey, version: i16) -> bool {
        response_needs_rewrite(api, version)
    }

    fn on_request<'a>(
        &'a mut self,
        _state: &'a mut ConnectionState,
        _request: &'a mut Request,
    ) -> Step<'a> {
        Flow::Continue.into()
    }

    fn on_response(
        &mut self,
        _state: &mut ConnectionState,
        response: &mut Response,
        _note: Option<Note>,
    ) -> Result<(), ConnectionEnd> {
        if !response_needs_rewrite(response.api, response.version) {
            return Ok(());
        }
        if let Some(body) = response.body.as_mut() {
            if rewrite_addresses(body, self.brokers.as_ref())? {
                response.body_changed = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::produce_response::NodeEndpoint;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::{
        DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
        ProduceResponse,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};
    use std::cell::RefCell;

    /// Maps node N to proxy:1000+N and remembers what it saw.
    struct TestMapper(RefCell<Vec<(i32, String, i32)>>);

    impl AddressMapper for TestMapper {
        fn map(&self, node: i32, host: &str, port: i32) -> Result<(String, i32), BrokerMapError> {
            self.0.borrow_mut().push((node, host.to_string(), port));
            if node == 666 {
                return Err(BrokerMapError::RangeExhausted {
                    node_id: node,
                    first: 1,
                    last: 1,
                });
            }
            Ok(("proxy".into(), 1000 + node))
        }
    }

    fn mapper() -> TestMapper {
        TestMapper(RefCell::new(Vec::new()))
    }

    fn encode<M: Encodable>(m: &M, v: i16) -> Bytes {
        let mut b = BytesMut::new();
        m.encode(&mut b, v).unwrap();
        b.freeze()
    }

    fn broker(id: i32, host: &'static str, port: i32) -> MetadataResponseBroker {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str(host))
            .with_port(port)
    }

    #[test]
    fn metadata_brokers_are_rewritten_in_every_version() {
        for v in ApiKey::Metadata.valid_versions().min..=ApiKey::Metadata.valid_versions().max {
            let m = MetadataResponse::default()
                .with_brokers(vec![broker(1, "kafka-1", 9092), broker(2, "kafka-2", 9093)]);
            let m_mapper = mapper();
            let out = rewrite_response(ApiKey::Metadata, v, encode(&m, v), &m_mapper)
                .unwrap()
                .unwrap();
            let decoded = MetadataResponse::decode(&mut out.clone(), v).unwrap();
            let addrs: Vec<(String, i32)> = decoded
                .brokers
                .iter()
                .map(|b| (b.host.to_string(), b.port))
                .collect();
            assert_eq!(
                addrs,
                vec![("proxy".into(), 1001), ("proxy".into(), 1002)],
                "v{v}"
            );
            assert_eq!(
                *m_mapper.0.borrow(),
                vec![(1, "kafka-1".into(), 9092), (2, "kafka-2".into(), 9093)]
            );
        }
    }

    #[test]
    fn find_coordinator_old_and_new_shapes() {
        let old = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(3))
            .with_host(StrBytes::from_static_str("kafka-3"))
            .with_port(9092);
        let out = rewrite_response(ApiKey::FindCoordinator, 3, encode(&old, 3), &mapper())
            .unwrap()
            .unwrap();
        let d = FindCoordinatorResponse::decode(&mut out.clone(), 3).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("proxy", 1003));

        let new = FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default()
                .with_key(StrBytes::from_static_str("g"))
                .with_node_id(BrokerId(4))
                .with_host(StrBytes::from_static_str("kafka-4"))
                .with_port(9092),
            Coordinator::default()
                .with_key(StrBytes::from_static_str("missing"))
                .with_node_id(BrokerId(-1))
                .with_error_code(15),
        ]);
        let out = rewrite_response(ApiKey::FindCoordinator, 4, encode(&new, 4), &mapper())
            .unwrap()
            .unwrap();
        let d = FindCoordinatorResponse::decode(&mut out.clone(), 4).unwrap();
        assert_eq!(
            (d.coordinators[0].host.as_str(), d.coordinators[0].port),
            ("proxy", 1004)
        );
        assert_eq!(d.coordinators[1].host.as_str(), "", "errors are left alone");
    }

    #[test]
    fn kip951_endpoints_rewritten_and_absent_ones_forward_untouched() {
        let with = ProduceResponse::default().with_node_endpoints(vec![NodeEndpoint::default()
            .with_node_id(BrokerId(7))
            .with_host(StrBytes::from_static_str("kafka-7"))
            .with_port(9092)]);
        let out = rewrite_response(ApiKey::Produce, 10, encode(&with, 10), &mapper())
            .unwrap()
            .unwrap();
        let d = ProduceResponse::decode(&mut out.clone(), 10).unwrap();
        assert_eq!(
            (d.node_endpoints[0].host.as_str(), d.node_endpoints[0].port),
            ("proxy", 1007)
        );

        let without = ProduceResponse::default();
        assert!(
            rewrite_response(ApiKey::Produce, 10, encode(&without, 10), &mapper())
                .unwrap()
                .is_none()
        );
        let fetch = FetchResponse::default();
        assert!(
            rewrite_response(ApiKey::Fetch, 16, encode(&fetch, 16), &mapper())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn describe_cluster_controllers_are_refused_and_mapper_errors_propagate() {
        let m = DescribeClusterResponse::default().with_endpoint_type(2);
        let out = rewrite_response(ApiKey::DescribeCluster, 1, encode(&m, 1), &mapper())
            .unwrap()
            .unwrap();
        let d = DescribeClusterResponse::decode(&mut out.clone(), 1).unwrap();
        assert_eq!(d.error_code, ResponseError::UnsupportedEndpointType.code());

        let m = MetadataResponse::default().with_brokers(vec![broker(666, "x", 1)]);
        assert!(rewrite_response(ApiKey::Metadata, 9, encode(&m, 9), &mapper()).is_err());
    }

    #[test]
    fn tagged_field_tags_above_i32_max_are_refused() {
        // Found by fuzzing (fuzz/regressions/response_rewrite): before the vendored patch
        // this re-encoded to a body announcing a tagged field it did not contain.
        let body = Bytes::from_static(&[
            0, 0, 0, 0, 0x01, 0x00, 0, 0, 0, 0, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00,
        ]);
        assert!(matches!(
            rewrite_response(ApiKey::Metadata, 12, body, &mapper()),
            Err(RewriteError::Codec { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_and_trailing_bytes_are_ignored() {
        let garbage = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0x01]);
        assert!(rewrite_response(ApiKey::Metadata, 1, garbage, &mapper()).is_err());
        let mut body = encode(&MetadataResponse::default(), 1).to_vec();
        body.push(0);
        // Trailing bytes are ignored (as clients do); the rewrite still happens.
        assert!(
            rewrite_response(ApiKey::Metadata, 1, body.into(), &mapper())
                .unwrap()
                .is_some()
        );
    }
}
