//! The Kafka API -> ACL table: which resources and operations each request needs.
//!
//! It follows Kafka's own "operations and resources on protocols" table, so a client sees
//! exactly the decisions a broker with equivalent ACLs would make. Api keys the proxy does
//! not enforce are listed as [`Enforcement::NotEnforced`]: with authorization on they are
//! refused and left out of ApiVersions (fail closed). Some keys are enforced only up to a
//! version: later versions name topics by id, which the proxy cannot authorize by name.

use kafka_protocol::messages::ApiKey;

use crate::resource::{Operation, ResourceType};

/// One resource/operation a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The kind of resource.
    pub resource: ResourceType,
    /// The operation on it.
    pub operation: Operation,
    /// How the check applies: per item of the request, the whole request, or filtering a
    /// listing.
    pub scope: Scope,
}

/// How a [`Need`] applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Checked for each named resource; denied items get their own error while allowed
    /// items proceed.
    PerItem,
    /// Checked once; a denial fails the whole request.
    Whole,
    /// Listings: resources without the operation are left out of the answer.
    Filter,
    /// Needed only in a case the request states (for example `Create` when Metadata may
    /// auto-create, or `Write` on the transactional id of a transactional Produce).
    Conditional,
}

/// How the proxy authorizes one api key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// No resource is involved (connection set-up).
    Open,
    /// Checked against the policy.
    Checked {
        /// What the request needs.
        needs: &'static [Need],
        /// Highest version the proxy enforces (`None`: every version it can decode).
        max_version: Option<i16>,
    },
    /// Not enforced: refused, and not advertised, while authorization is on.
    NotEnforced(&'static str),
}

const fn need(resource: ResourceType, operation: Operation, scope: Scope) -> Need {
    Need {
        resource,
        operation,
        scope,
    }
}

use Operation as O;
use ResourceType as R;
use Scope as S;

const PRODUCE: &[Need] = &[
    need(R::Topic, O::Write, S::PerItem),
    need(R::TransactionalId, O::Write, S::Conditional),
];
const FETCH: &[Need] = &[need(R::Topic, O::Read, S::PerItem)];
const TOPIC_DESCRIBE: &[Need] = &[need(R::Topic, O::Describe, S::PerItem)];
const METADATA: &[Need] = &[
    need(R::Topic, O::Describe, S::PerItem),
    need(R::Topic, O::Describe, S::Filter),
    need(R::Topic, O::Create, S::Conditional),
];
const OFFSET_COMMIT: &[Need] = &[
    need(R::Group, O::Read, S::Whole),
    need(R::Topic, O::Read, S::PerItem),
];
const OFFSET_FETCH: &[Need] = &[
    need(R::Group, O::Describe, S::Whole),
    need(R::Topic, O::Describe, S::PerItem),
    need(R::Topic, O::Describe, S::Filter),
];
const FIND_COORDINATOR: &[Need] = &[
    need(R::Group, O::Describe, S::PerItem),
    need(R::TransactionalId, O::Describe, S::PerItem),
];
const GROUP_READ: &[Need] = &[need(R::Group, O::Read, S::Whole)];
const DESCRIBE_GROUPS: &[Need] = &[need(R::Group, O::Describe, S::PerItem)];
const LIST_GROUPS: &[Need] = &[need(R::Group, O::Describe, S::Filter)];
const CREATE_TOPICS: &[Need] = &[need(R::Topic, O::Create, S::PerItem)];
const DELETE_TOPICS: &[Need] = &[need(R::Topic, O::Delete, S::PerItem)];
const INIT_PRODUCER_ID: &[Need] = &[
    need(R::TransactionalId, O::Write, S::Conditional),
    need(R::Cluster, O::IdempotentWrite, S::Conditional),
];
const CLUSTER_DESCRIBE: &[Need] = &[need(R::Cluster, O::Describe, S::Whole)];
const DELETE_RECORDS: &[Need] = &[need(R::Topic, O::Delete, S::PerItem)];
const ADD_PARTITIONS_TO_TXN: &[Need] = &[
    need(R::TransactionalId, O::Write, S::Whole),
    need(R::Topic, O::Write, S::Whole),
];
const ADD_OFFSETS_TO_TXN: &[Need] = &[
    need(R::TransactionalId, O::Write, S::Whole),
    need(R::Group, O::Read, S::Whole),
];
const END_TXN: &[Need] = &[need(R::TransactionalId, O::Write, S::Whole)];
const TXN_OFFSET_COMMIT: &[Need] = &[
    need(R::TransactionalId, O::Write, S::Whole),
    need(R::Group, O::Read, S::Whole),
    need(R::Topic, O::Read, S::PerItem),
];
const OFFSET_DELETE: &[Need] = &[
    need(R::Group, O::Delete, S::Whole),
    need(R::Topic, O::Read, S::PerItem),
];
const DELETE_GROUPS: &[Need] = &[need(R::Group, O::Delete, S::PerItem)];
const CREATE_PARTITIONS: &[Need] = &[need(R::Topic, O::Alter, S::PerItem)];
const DESCRIBE_CONFIGS: &[Need] = &[
    need(R::Topic, O::DescribeConfigs, S::PerItem),
    need(R::Group, O::DescribeConfigs, S::PerItem),
    need(R::Cluster, O::DescribeConfigs, S::PerItem),
];
const ALTER_CONFIGS: &[Need] = &[
    need(R::Topic, O::AlterConfigs, S::PerItem),
    need(R::Group, O::AlterConfigs, S::PerItem),
    need(R::Cluster, O::AlterConfigs, S::PerItem),
];

/// How the proxy authorizes `key`.
pub fn enforcement(key: ApiKey) -> Enforcement {
    use ApiKey::*;
    let checked = |needs, max_version| Enforcement::Checked { needs, max_version };
    match key {
        ApiVersions | SaslHandshake | SaslAuthenticate => Enforcement::Open,
        // v13 names topics by id.
        Produce => checked(PRODUCE, Some(12)),
        Fetch => checked(FETCH, Some(12)),
        Metadata => checked(METADATA, None),
        ListOffsets => checked(TOPIC_DESCRIBE, None),
        // v10 names topics by id.
        OffsetCommit => checked(OFFSET_COMMIT, Some(9)),
        // v8 batches groups, v10 names topics by id.
        OffsetFetch => checked(OFFSET_FETCH, Some(7)),
        FindCoordinator => checked(FIND_COORDINATOR, None),
        JoinGroup | SyncGroup | Heartbeat | LeaveGroup => checked(GROUP_READ, None),
        DescribeGroups => checked(DESCRIBE_GROUPS, None),
        ListGroups => checked(LIST_GROUPS, None),
        CreateTopics => checked(CREATE_TOPICS, None),
        // v6 may name topics by id: the proxy resolves them (its own map of topic ids).
        DeleteTopics => checked(DELETE_TOPICS, None),
        InitProducerId => checked(INIT_PRODUCER_ID, None),
        DescribeCluster => checked(CLUSTER_DESCRIBE, None),
        OffsetForLeaderEpoch => checked(TOPIC_DESCRIBE, None),
        DeleteRecords => checked(DELETE_RECORDS, None),
        // v4 batches transactions (broker to broker).
        AddPartitionsToTxn => checked(ADD_PARTITIONS_TO_TXN, Some(3)),
        AddOffsetsToTxn => checked(ADD_OFFSETS_TO_TXN, None),
        EndTxn => checked(END_TXN, None),
        TxnOffsetCommit => checked(TXN_OFFSET_COMMIT, None),
        OffsetDelete => checked(OFFSET_DELETE, None),
        DeleteGroups => checked(DELETE_GROUPS, None),
        CreatePartitions => checked(CREATE_PARTITIONS, None),
        DescribeConfigs => checked(DESCRIBE_CONFIGS, None),
        AlterConfigs | IncrementalAlterConfigs => checked(ALTER_CONFIGS, None),
        DescribeAcls
        | CreateAcls
        | DeleteAcls
        | AlterReplicaLogDirs
        | DescribeLogDirs
        | ElectLeaders
        | AlterPartitionReassignments
        | ListPartitionReassignments
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
        | DescribeTopicPartitions => {
            Enforcement::NotEnforced("not yet enforced by the proxy's authorizer")
        }
        // Never served at all (`never_served`), so never authorized either.
        _ => {
            Enforcement::NotEnforced(never_served(key).map_or("not supported", NeverServed::as_str))
        }
    }
}

/// Why an api key is never served by the proxy, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeverServed {
    /// Broker-to-broker or controller traffic; never legitimately sent by a client.
    InterBroker,
    /// Would act on the proxy's own upstream credentials.
    UpstreamCredentials,
    /// Semantics the proxy cannot enforce (share groups).
    NotSupported,
}

impl NeverServed {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NeverServed::InterBroker => "inter_broker_api",
            NeverServed::UpstreamCredentials => "upstream_credentials_api",
            NeverServed::NotSupported => "not_supported",
        }
    }
}

/// The api keys the proxy never serves (removed from ApiVersions, a request closes the
/// connection), and why: the one list of them. `None` for every key the proxy handles.
pub fn never_served(key: ApiKey) -> Option<NeverServed> {
    use ApiKey::*;
    match key {
        CreateDelegationToken
        | RenewDelegationToken
        | ExpireDelegationToken
        | DescribeDelegationToken
        | DescribeUserScramCredentials
        | AlterUserScramCredentials => Some(NeverServed::UpstreamCredentials),
        WriteTxnMarkers
        | Vote
        | BeginQuorumEpoch
        | EndQuorumEpoch
        | DescribeQuorum
        | AlterPartition
        | Envelope
        | FetchSnapshot
        | BrokerRegistration
        | BrokerHeartbeat
        | UnregisterBroker
        | AllocateProducerIds
        | ControllerRegistration
        | AssignReplicasToDirs
        | AddRaftVoter
        | RemoveRaftVoter
        | UpdateRaftVoter
        | InitializeShareGroupState
        | ReadShareGroupState
        | WriteShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary => Some(NeverServed::InterBroker),
        ShareGroupHeartbeat
        | ShareGroupDescribe
        | ShareFetch
        | ShareAcknowledge
        | DescribeShareGroupOffsets
        | AlterShareGroupOffsets
        | DeleteShareGroupOffsets => Some(NeverServed::NotSupported),
        _ => None,
    }
}

/// Whether `key` at `version` may be served while authorization is on.
pub fn enforced(key: ApiKey, version: i16) -> bool {
    match enforcement(key) {
        Enforcement::Open => true,
        Enforcement::Checked { max_version, .. } => max_version.is_none_or(|max| version <= max),
        Enforcement::NotEnforced(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_key_is_classified_and_checked_keys_name_their_needs() {
        let mut checked = 0;
        for key in ApiKey::iter() {
            match enforcement(key) {
                Enforcement::Checked { needs, max_version } => {
                    checked += 1;
                    assert!(!needs.is_empty(), "{key:?} is checked but needs nothing");
                    if let Some(max) = max_version {
                        assert!(
                            (key.valid_versions().min..=key.valid_versions().max).contains(&max),
                            "{key:?} max {max} outside what kafka-protocol knows"
                        );
                    }
                }
                Enforcement::NotEnforced(reason) => assert!(!reason.is_empty()),
                Enforcement::Open => {}
            }
        }
        assert!(checked >= 15, "only {checked} api keys are enforced");
    }

    #[test]
    fn data_apis_follow_kafkas_table() {
        let needs = |key| match enforcement(key) {
            Enforcement::Checked { needs, .. } => needs,
            other => panic!("{key:?} is {other:?}"),
        };
        assert!(needs(ApiKey::Produce).contains(&need(R::Topic, O::Write, S::PerItem)));
        assert!(needs(ApiKey::Fetch).contains(&need(R::Topic, O::Read, S::PerItem)));
        assert!(needs(ApiKey::JoinGroup).contains(&need(R::Group, O::Read, S::Whole)));
        assert!(needs(ApiKey::OffsetCommit).contains(&need(R::Topic, O::Read, S::PerItem)));
        assert!(needs(ApiKey::CreateTopics).contains(&need(R::Topic, O::Create, S::PerItem)));
        assert!(needs(ApiKey::DeleteTopics).contains(&need(R::Topic, O::Delete, S::PerItem)));
    }

    #[test]
    fn topic_id_versions_are_not_enforced() {
        assert!(enforced(ApiKey::Produce, 12));
        assert!(!enforced(ApiKey::Produce, 13));
        assert!(enforced(ApiKey::Fetch, 12));
        assert!(!enforced(ApiKey::Fetch, 13));
        assert!(
            enforced(ApiKey::DeleteTopics, 6),
            "ids resolved by the proxy"
        );
        assert!(enforced(ApiKey::ApiVersions, 4));
        assert!(!enforced(ApiKey::CreateAcls, 0));
    }
}
