//! What the proxy does with each Kafka API key.
//!
//! Fail closed: an api key is served only if it is listed here as something the proxy can
//! handle safely. Everything else (inter-broker and controller APIs, APIs that would mint or
//! change credentials for the proxy's own upstream identity, APIs whose responses carry
//! addresses the proxy does not rewrite) is refused and left out of ApiVersions.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use portcullis_policy::api_acl::never_served;

/// How the proxy handles one api key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Answered by the proxy itself.
    Local,
    /// Forwarded as raw bytes both ways.
    Raw,
    /// Forwarded raw; the response carries broker addresses and is rewritten.
    RewriteResponse,
    /// SaslHandshake and SaslAuthenticate: answered by the proxy's authenticator on
    /// listeners with SASL enabled, refused (and not advertised) elsewhere.
    Sasl,
    /// Not served: removed from ApiVersions, and a request closes the connection.
    Refused(RefusalReason),
}

/// Why an api key is refused: the one list of never-served keys is
/// [`portcullis_policy::api_acl::never_served`].
pub use portcullis_policy::api_acl::NeverServed as RefusalReason;

/// The handling of `key`.
pub fn handling(key: ApiKey) -> Handling {
    use ApiKey::*;
    use Handling::*;
    match key {
        ApiVersions => Local,
        Metadata | FindCoordinator | DescribeCluster | Produce | Fetch => RewriteResponse,
        ListOffsets
        | OffsetCommit
        | OffsetFetch
        | JoinGroup
        | Heartbeat
        | LeaveGroup
        | SyncGroup
        | DescribeGroups
        | ListGroups
        | CreateTopics
        | DeleteTopics
        | DeleteRecords
        | InitProducerId
        | OffsetForLeaderEpoch
        | AddPartitionsToTxn
        | AddOffsetsToTxn
        | EndTxn
        | TxnOffsetCommit
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeConfigs
        | AlterConfigs
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | CreatePartitions
        | DeleteGroups
        | ElectLeaders
        | IncrementalAlterConfigs
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | OffsetDelete
        | DescribeClientQuotas
        | AlterClientQuotas
        | UpdateFeatures
        | DescribeProducers
        | DescribeTransactions
        | ListTransactions
        | ConsumerGroupHeartbeat
        | ConsumerGroupDescribe
        | GetTelemetrySubscriptions
        | PushTelemetry
        | ListConfigResources
        | DescribeTopicPartitions => Raw,
        SaslHandshake | SaslAuthenticate => Sasl,
        // Every other key, including any a newer kafka-protocol adds: refused.
        _ => Refused(never_served(key).unwrap_or(RefusalReason::NotSupported)),
    }
}

/// Versions of `key` the proxy itself can handle: the range kafka-protocol knows (the
/// proxy needs it to find the header length and, for rewritten keys, to decode).
pub fn proxy_versions(key: ApiKey) -> Option<VersionRange> {
    match handling(key) {
        Handling::Refused(_) => None,
        _ => Some(key.valid_versions()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_key_is_classified_and_refusals_have_no_versions() {
        for key in ApiKey::iter() {
            match handling(key) {
                Handling::Refused(_) => assert_eq!(proxy_versions(key), None, "{key:?}"),
                _ => assert!(proxy_versions(key).is_some(), "{key:?}"),
            }
        }
    }

    #[test]
    fn credentials_and_inter_broker_apis_are_refused() {
        for key in [
            ApiKey::CreateDelegationToken,
            ApiKey::AlterUserScramCredentials,
            ApiKey::UpdateRaftVoter,
            ApiKey::Envelope,
        ] {
            assert!(matches!(handling(key), Handling::Refused(_)), "{key:?}");
        }
    }
}
