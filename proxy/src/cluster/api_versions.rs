//! The ApiVersions the proxy advertises: what the cluster supports intersected with what
//! the proxy can handle.
//!
//! The proxy answers ApiVersions itself (before any upstream connection exists), so a client
//! never negotiates a version the proxy cannot parse or that the cluster cannot serve.
//! Requests outside the advertised set are refused.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use portcullis_policy::api_acl::{enforcement, Enforcement};

use crate::codec::response_frame::response_frame;
use crate::pipeline::api_table::{handling, proxy_versions, Handling};

/// Highest api key number the table indexes.
const MAX_API_KEY: usize = 127;

/// The version ranges the proxy advertises, indexed by api key.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    ranges: Vec<Option<VersionRange>>,
}

impl Negotiated {
    /// Intersects the cluster's advertised versions (`(api_key, min, max)` triples, as the
    /// broker answered ApiVersions) with what the proxy handles.
    pub fn from_cluster(cluster: &[(i16, i16, i16)]) -> Self {
        let mut ranges = vec![None; MAX_API_KEY + 1];
        for key in ApiKey::iter() {
            let Some(ours) = proxy_versions(key) else {
                continue;
            };
            let range = if handling(key) == Handling::Local {
                Some(ours)
            } else if handling(key) == Handling::Sasl {
                // Advertised per listener, by `with_sasl`.
                None
            } else {
                cluster
                    .iter()
                    .find(|(k, _, _)| *k == key as i16)
                    .map(|&(_, min, max)| ours.intersect(&VersionRange { min, max }))
                    .filter(|r| !r.is_empty())
            };
            if let Some(slot) = ranges.get_mut(key as i16 as usize) {
                *slot = range;
            }
        }
        Self { ranges }
    }

    /// Intersects a broker's ApiVersions answer with what the proxy handles.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let cluster: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Self::from_cluster(&cluster)
    }

    /// The same set plus SaslHandshake and SaslAuthenticate, which the proxy answers itself
    /// on listeners that authenticate with SASL.
    pub fn with_sasl(&self) -> Self {
        let mut ranges = self.ranges.clone();
        for key in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate] {
            if let Some(slot) = ranges.get_mut(key as i16 as usize) {
                *slot = proxy_versions(key);
            }
        }
        Self { ranges }
    }

    /// The set as served while authorization is on: api keys the authorizer does not
    /// enforce are removed and versions it cannot authorize (topic ids) are cut off
    /// (`portcullis_policy::api_acl`).
    pub fn enforceable(&self) -> Self {
        self.narrowed(enforceable_range)
    }

    /// The set with each served range passed through `narrow` (`None` removes the key).
    pub fn narrowed(&self, narrow: impl Fn(ApiKey, VersionRange) -> Option<VersionRange>) -> Self {
        let mut ranges = self.ranges.clone();
        for key in ApiKey::iter() {
            if let Some(slot) = ranges.get_mut(key as i16 as usize) {
                *slot = slot
                    .and_then(|range| narrow(key, range))
                    .filter(|r| !r.is_empty());
            }
        }
        Self { ranges }
    }

    /// The advertised range for `key`, if it is served at all.
    pub fn range(&self, key: ApiKey) -> Option<VersionRange> {
        self.ranges.get(key as i16 as usize).copied().flatten()
    }

    /// Whether a request with `key` at `version` may be served.
    pub fn allows(&self, key: ApiKey, version: i16) -> bool {
        self.range(key)
            .is_some_and(|r| (r.min..=r.max).contains(&version))
    }

    /// Every advertised (api_key, range), in api key order.
    pub fn entries(&self) -> impl Iterator<Item = (i16, VersionRange)> + '_ {
        self.ranges
            .iter()
            .enumerate()
            .filter_map(|(k, r)| r.map(|r| (k as i16, r)))
    }
}

/// The part of `range` the authorizer can enforce for `key` (`None`: not enforced).
pub fn enforceable_range(key: ApiKey, range: VersionRange) -> Option<VersionRange> {
    match enforcement(key) {
        Enforcement::Open => Some(range),
        Enforcement::NotEnforced(_) => None,
        Enforcement::Checked { max_version, .. } => Some(match max_version {
            Some(max) => VersionRange {
                min: range.min,
                max: range.max.min(max),
            },
            None => range,
        }),
    }
}

/// Builds the whole ApiVersions response frame for a request of `request_version`.
///
/// A version above what the proxy supports gets the v0 error answer Kafka specifies
/// (UNSUPPORTED_VERSION plus the supported ApiVersions range), so the client retries lower.
pub fn api_versions_response_frame(
    negotiated: &Negotiated,
    request_version: i16,
    correlation_id: i32,
) -> anyhow::Result<Bytes> {
    let supported = ApiKey::ApiVersions.valid_versions();
    let mut response = ApiVersionsResponse::default();
    let version = if (supported.min..=supported.max).contains(&request_version) {
        response.api_keys = negotiated
            .entries()
            .map(|(key, r)| {
                ApiVersion::default()
                    .with_api_key(key)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
            .collect();
        request_version
    } else {
        response.error_code = ResponseError::UnsupportedVersion.code();
        response.api_keys = vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(supported.min)
            .with_max_version(supported.max)];
        0
    };
    // ApiVersions responses always use response header v0 (just the correlation id), as
    // `response_frame` knows from kafka-protocol.
    response_frame(ApiKey::ApiVersions, version, correlation_id, &response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;

    fn cluster() -> Vec<(i16, i16, i16)> {
        vec![
            (ApiKey::Produce as i16, 0, 11),
            (ApiKey::Fetch as i16, 0, 20),
            (ApiKey::Metadata as i16, 0, 12),
            (ApiKey::ApiVersions as i16, 0, 3),
            (ApiKey::SaslHandshake as i16, 0, 1),
            (ApiKey::Envelope as i16, 0, 0),
            (ApiKey::DescribeAcls as i16, 0, 3),
            (999, 0, 5),
        ]
    }

    #[test]
    fn with_authorization_unenforced_keys_and_topic_id_versions_are_not_served() {
        let n = Negotiated::from_cluster(&cluster());
        assert!(n.range(ApiKey::DescribeAcls).is_some());
        let enforced = n.enforceable();
        assert_eq!(enforced.range(ApiKey::DescribeAcls), None);
        assert_eq!(enforced.range(ApiKey::Fetch).unwrap().max, 12);
        assert_eq!(enforced.range(ApiKey::Produce), n.range(ApiKey::Produce));
        assert_eq!(
            enforced.range(ApiKey::ApiVersions),
            n.range(ApiKey::ApiVersions)
        );
        for (key, range) in enforced.entries() {
            let key = ApiKey::try_from(key).unwrap();
            assert!(
                portcullis_policy::api_acl::enforced(key, range.max),
                "{key:?} v{} advertised but not enforced",
                range.max
            );
        }
    }

    #[test]
    fn intersects_cluster_and_proxy_ranges() {
        let n = Negotiated::from_cluster(&cluster());
        let produce = n.range(ApiKey::Produce).unwrap();
        assert_eq!(
            (produce.min, produce.max),
            (3, 11),
            "clamped to what we decode"
        );
        let fetch = n.range(ApiKey::Fetch).unwrap();
        assert_eq!(fetch.max, ApiKey::Fetch.valid_versions().max);
        assert!(n.allows(ApiKey::Metadata, 12));
        assert!(!n.allows(ApiKey::Metadata, 13));
        assert_eq!(
            n.range(ApiKey::SaslHandshake),
            None,
            "SASL is advertised only per listener"
        );
        let sasl = n.with_sasl();
        assert_eq!(
            sasl.range(ApiKey::SaslHandshake).map(|r| (r.min, r.max)),
            Some((0, 1))
        );
        assert_eq!(
            sasl.range(ApiKey::SaslAuthenticate).map(|r| (r.min, r.max)),
            Some((0, 2))
        );
        assert_eq!(n.range(ApiKey::Envelope), None);
        assert_eq!(n.range(ApiKey::ListOffsets), None, "cluster lacks it");
        assert_eq!(
            n.range(ApiKey::ApiVersions),
            Some(ApiKey::ApiVersions.valid_versions())
        );
        assert!(n.entries().all(|(k, _)| k != 999));
    }

    #[test]
    fn response_frame_decodes_and_lists_the_negotiated_keys() {
        let n = Negotiated::from_cluster(&cluster());
        let frame = api_versions_response_frame(&n, 3, 42).unwrap();
        let mut body = frame.slice(4..);
        assert_eq!(body.get_i32(), 42);
        let decoded = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(decoded.error_code, 0);
        let keys: Vec<i16> = decoded.api_keys.iter().map(|k| k.api_key).collect();
        assert_eq!(keys, n.entries().map(|(k, _)| k).collect::<Vec<_>>());
    }

    #[test]
    fn too_new_request_gets_v0_unsupported_version() {
        let n = Negotiated::from_cluster(&cluster());
        let frame = api_versions_response_frame(&n, 99, 7).unwrap();
        let mut body = frame.slice(4..);
        assert_eq!(body.get_i32(), 7);
        let decoded = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(decoded.error_code, ResponseError::UnsupportedVersion.code());
        assert_eq!(decoded.api_keys.len(), 1);
        assert_eq!(decoded.api_keys[0].api_key, ApiKey::ApiVersions as i16);
    }
}
