//! The response side of authorization: answers the proxy builds for denied requests, and
//! fixes applied to broker responses (denied items put back with Kafka's authorization
//! errors, listings filtered, `authorized_operations` computed from the policy instead of
//! the proxy's own upstream identity).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
    ApiKey, BrokerId, CreateTopicsResponse, DeleteTopicsResponse, DescribeClusterResponse,
    DescribeGroupsResponse, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListOffsetsResponse, MetadataResponse, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceResponse, ProducerId, ResponseKind, SyncGroupResponse, TopicName,
};
use kafka_protocol::messages::{
    incremental_alter_configs_response, AddOffsetsToTxnResponse, AddPartitionsToTxnResponse,
    AlterConfigsResponse, CreatePartitionsResponse, DeleteGroupsResponse, DeleteRecordsResponse,
    DescribeConfigsResponse, EndTxnResponse, IncrementalAlterConfigsResponse, OffsetDeleteResponse,
    OffsetForLeaderEpochResponse, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use portcullis_policy::resource::CLUSTER_NAME;
use portcullis_policy::{Operation, ResourceType};

use crate::pipeline::authz::request::{DeniedConfig, DeniedPartitions, Permissions};
use crate::pipeline::authz::topic_id::ExpectedTopics;

/// The value of an `authorized_operations` field the client did not ask for.
const OPS_NOT_REQUESTED: i32 = i32::MIN;
/// Message Kafka sends with authorization errors.
const AUTHORIZATION_FAILED: &str = "Authorization failed.";

/// A Metadata topic entry the proxy refused, answered with the name and id the client sent
/// (never the name an id resolved to).
#[derive(Debug, Clone, PartialEq)]
pub struct DeniedTopic {
    /// The entry's name, as sent.
    pub name: Option<TopicName>,
    /// The entry's topic id, as sent (nil: none).
    pub id: uuid::Uuid,
    /// TOPIC_AUTHORIZATION_FAILED, or UNKNOWN_TOPIC_ID for an id the proxy cannot resolve
    /// or one that names another topic than the entry's name.
    pub error_code: i16,
}

/// What the proxy changes in a forwarded request's response.
#[derive(Debug)]
pub enum ResponseFix {
    /// Denied produce partitions, answered TOPIC_AUTHORIZATION_FAILED.
    Produce(DeniedPartitions),
    /// Denied fetch partitions.
    Fetch(DeniedPartitions),
    /// Metadata filtering.
    Metadata {
        /// The request listed all topics: hide those without Describe.
        hide_unauthorized: bool,
        /// The request named topics and some were removed, or named some by id: only
        /// these may come back (a broker may read a list emptied by the proxy as "all
        /// topics", and answers an entry with an id about the topic of that id).
        only: Option<ExpectedTopics>,
        /// Named topics the principal may not describe.
        denied: Vec<DeniedTopic>,
        /// Compute `topic_authorized_operations`.
        topic_ops: bool,
        /// Compute `cluster_authorized_operations`.
        cluster_ops: bool,
    },
    /// Denied ListOffsets partitions.
    ListOffsets(DeniedPartitions),
    /// Denied OffsetCommit partitions.
    OffsetCommit(DeniedPartitions),
    /// Denied OffsetFetch partitions.
    OffsetFetch(DeniedPartitions),
    /// OffsetFetch of all topics: keep only topics with Describe.
    OffsetFetchAll,
    /// FindCoordinator v4+ keys denied.
    FindCoordinator {
        /// Denied keys.
        denied: Vec<StrBytes>,
        /// Error code for them.
        code: i16,
    },
    /// DescribeGroups.
    DescribeGroups {
        /// Denied groups.
        denied: Vec<GroupId>,
        /// Compute `authorized_operations`.
        authorized_operations: bool,
    },
    /// ListGroups without Describe on the cluster: keep groups with Describe.
    ListGroups,
    /// Denied CreateTopics topics.
    CreateTopics(Vec<TopicName>),
    /// Refused DeleteTopics topics (by name, or in v6 by id).
    DeleteTopics(Vec<DeniedTopic>),
    /// DescribeCluster: compute `cluster_authorized_operations`.
    DescribeCluster,
    /// Denied OffsetForLeaderEpoch partitions.
    OffsetForLeaderEpoch(DeniedPartitions),
    /// Denied DeleteRecords partitions.
    DeleteRecords(DeniedPartitions),
    /// Denied TxnOffsetCommit partitions.
    TxnOffsetCommit(DeniedPartitions),
    /// Denied OffsetDelete partitions.
    OffsetDelete(DeniedPartitions),
    /// Denied DeleteGroups groups.
    DeleteGroups(Vec<GroupId>),
    /// Denied CreatePartitions topics.
    CreatePartitions(Vec<TopicName>),
    /// Denied DescribeConfigs resources.
    DescribeConfigs(Vec<DeniedConfig>),
    /// Denied AlterConfigs resources.
    AlterConfigs(Vec<DeniedConfig>),
    /// Denied IncrementalAlterConfigs resources.
    IncrementalAlterConfigs(Vec<DeniedConfig>),
}

/// Operations reported in a topic's `authorized_operations`.
const TOPIC_OPS: &[Operation] = &[
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];
/// Operations reported in the cluster's `authorized_operations`.
const CLUSTER_OPS: &[Operation] = &[
    Operation::Create,
    Operation::Alter,
    Operation::Describe,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
];
/// Operations reported in a group's `authorized_operations`.
const GROUP_OPS: &[Operation] = &[Operation::Read, Operation::Describe, Operation::Delete];

/// Kafka's bit field of the operations allowed on a resource.
fn authorized_operations(
    perms: &mut dyn Permissions,
    resource: ResourceType,
    name: &str,
    ops: &[Operation],
) -> i32 {
    ops.iter()
        .filter(|op| perms.allows(resource, name, **op))
        .fold(0, |bits, op| bits | (1 << op.kafka_code()))
}

/// Applies `fix` to a broker response body; returns the new body.
pub fn apply_fix(
    fix: &ResponseFix,
    api: ApiKey,
    version: i16,
    body: Bytes,
    perms: &mut dyn Permissions,
) -> anyhow::Result<Bytes> {
    let mut buf = body;
    let mut response = ResponseKind::decode(api, &mut buf, version)?;
    fix_response(fix, &mut response, perms);
    let mut out = BytesMut::new();
    response.encode(&mut out, version)?;
    Ok(out.freeze())
}

/// Applies `fix` to a decoded response. A fix for another api changes nothing.
pub fn fix_response(fix: &ResponseFix, response: &mut ResponseKind, perms: &mut dyn Permissions) {
    match fix {
        ResponseFix::Produce(_)
        | ResponseFix::Fetch(_)
        | ResponseFix::ListOffsets(_)
        | ResponseFix::OffsetForLeaderEpoch(_)
        | ResponseFix::DeleteRecords(_) => fix_partition_data(fix, response),
        ResponseFix::Metadata { .. } | ResponseFix::DescribeCluster => {
            fix_cluster_view(fix, response, perms)
        }
        ResponseFix::OffsetCommit(_)
        | ResponseFix::OffsetFetch(_)
        | ResponseFix::OffsetFetchAll
        | ResponseFix::FindCoordinator { .. }
        | ResponseFix::DescribeGroups { .. }
        | ResponseFix::ListGroups
        | ResponseFix::TxnOffsetCommit(_)
        | ResponseFix::OffsetDelete(_)
        | ResponseFix::DeleteGroups(_) => fix_group_response(fix, response, perms),
        ResponseFix::CreateTopics(_)
        | ResponseFix::DeleteTopics(_)
        | ResponseFix::CreatePartitions(_)
        | ResponseFix::DescribeConfigs(_)
        | ResponseFix::AlterConfigs(_)
        | ResponseFix::IncrementalAlterConfigs(_) => fix_admin_response(fix, response),
    }
}

/// Produce, Fetch, ListOffsets, OffsetForLeaderEpoch and DeleteRecords: denied partitions
/// come back with their error.
fn fix_partition_data(fix: &ResponseFix, response: &mut ResponseKind) {
    match (fix, response) {
        (ResponseFix::Produce(denied), ResponseKind::Produce(r)) => {
            r.responses.extend(produce_topics(
                denied,
                ResponseError::TopicAuthorizationFailed.code(),
            ));
        }
        (ResponseFix::Fetch(denied), ResponseKind::Fetch(r)) => {
            r.responses.extend(fetch_topics(denied));
        }
        (ResponseFix::ListOffsets(denied), ResponseKind::ListOffsets(r)) => {
            r.topics.extend(list_offsets_topics(denied));
        }
        (ResponseFix::OffsetForLeaderEpoch(denied), ResponseKind::OffsetForLeaderEpoch(r)) => {
            r.topics.extend(epoch_topics(
                denied,
                ResponseError::TopicAuthorizationFailed.code(),
            ));
        }
        (ResponseFix::DeleteRecords(denied), ResponseKind::DeleteRecords(r)) => {
            r.topics.extend(delete_records_topics(denied));
        }
        _ => {}
    }
}

/// Metadata and DescribeCluster: hide what may not be seen, fill in `authorized_operations`.
fn fix_cluster_view(fix: &ResponseFix, response: &mut ResponseKind, perms: &mut dyn Permissions) {
    match (fix, response) {
        (
            ResponseFix::Metadata {
                hide_unauthorized,
                only,
                denied,
                topic_ops,
                cluster_ops,
            },
            ResponseKind::Metadata(r),
        ) => {
            if let Some(expected) = only {
                r.topics.retain(|t| expected.admits(t));
            }
            if *hide_unauthorized {
                r.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_some_and(|n| perms.allows(ResourceType::Topic, n, Operation::Describe))
                });
            }
            if *topic_ops {
                for t in &mut r.topics {
                    t.topic_authorized_operations = match &t.name {
                        Some(name) => {
                            authorized_operations(perms, ResourceType::Topic, name, TOPIC_OPS)
                        }
                        // An unknown id: nothing is allowed on it.
                        None => 0,
                    };
                }
            }
            r.topics.extend(metadata_topics(denied, *topic_ops));
            if *cluster_ops {
                r.cluster_authorized_operations =
                    authorized_operations(perms, ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPS);
            }
        }
        (ResponseFix::DescribeCluster, ResponseKind::DescribeCluster(r)) => {
            r.cluster_authorized_operations =
                authorized_operations(perms, ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPS);
        }
        _ => {}
    }
}

/// Group and offset apis: denied groups and partitions come back with their error, listings
/// keep what may be described.
fn fix_group_response(fix: &ResponseFix, response: &mut ResponseKind, perms: &mut dyn Permissions) {
    match (fix, response) {
        (ResponseFix::OffsetCommit(denied), ResponseKind::OffsetCommit(r)) => {
            r.topics.extend(offset_commit_topics(
                denied,
                ResponseError::TopicAuthorizationFailed.code(),
            ));
        }
        (ResponseFix::OffsetFetch(denied), ResponseKind::OffsetFetch(r)) => {
            r.topics.extend(offset_fetch_topics(denied));
        }
        (ResponseFix::OffsetFetchAll, ResponseKind::OffsetFetch(r)) => {
            r.topics
                .retain(|t| perms.allows(ResourceType::Topic, &t.name, Operation::Describe));
        }
        (ResponseFix::FindCoordinator { denied, code }, ResponseKind::FindCoordinator(r)) => {
            r.coordinators.extend(coordinators(denied, *code));
        }
        (
            ResponseFix::DescribeGroups {
                denied,
                authorized_operations: ops,
            },
            ResponseKind::DescribeGroups(r),
        ) => {
            if *ops {
                for g in &mut r.groups {
                    g.authorized_operations =
                        authorized_operations(perms, ResourceType::Group, &g.group_id, GROUP_OPS);
                }
            }
            r.groups.extend(described_groups(denied));
        }
        (ResponseFix::ListGroups, ResponseKind::ListGroups(r)) => {
            r.groups
                .retain(|g| perms.allows(ResourceType::Group, &g.group_id, Operation::Describe));
        }
        (ResponseFix::TxnOffsetCommit(denied), ResponseKind::TxnOffsetCommit(r)) => {
            r.topics.extend(txn_offset_commit_topics(
                denied,
                ResponseError::TopicAuthorizationFailed.code(),
            ));
        }
        (ResponseFix::OffsetDelete(denied), ResponseKind::OffsetDelete(r)) => {
            r.topics.extend(offset_delete_topics(denied));
        }
        (ResponseFix::DeleteGroups(denied), ResponseKind::DeleteGroups(r)) => {
            r.results.extend(deleted_groups(denied));
        }
        _ => {}
    }
}

/// Topic and config administration: denied topics and resources come back with their error.
fn fix_admin_response(fix: &ResponseFix, response: &mut ResponseKind) {
    match (fix, response) {
        (ResponseFix::CreateTopics(denied), ResponseKind::CreateTopics(r)) => {
            r.topics.extend(created_topics(denied));
        }
        (ResponseFix::DeleteTopics(denied), ResponseKind::DeleteTopics(r)) => {
            r.responses.extend(deleted_topics(denied));
        }
        (ResponseFix::CreatePartitions(denied), ResponseKind::CreatePartitions(r)) => {
            r.results.extend(created_partitions(denied));
        }
        (ResponseFix::DescribeConfigs(denied), ResponseKind::DescribeConfigs(r)) => {
            r.results.extend(described_configs(denied));
        }
        (ResponseFix::AlterConfigs(denied), ResponseKind::AlterConfigs(r)) => {
            r.responses.extend(altered_configs(denied));
        }
        (
            ResponseFix::IncrementalAlterConfigs(denied),
            ResponseKind::IncrementalAlterConfigs(r),
        ) => {
            r.responses.extend(incrementally_altered_configs(denied));
        }

        _ => {}
    }
}

fn produce_topics(denied: &DeniedPartitions, code: i16) -> Vec<TopicProduceResponse> {
    per_partition(
        denied,
        |t, p| {
            TopicProduceResponse::default()
                .with_name(t)
                .with_partition_responses(p)
        },
        |p| {
            PartitionProduceResponse::default()
                .with_index(p)
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        },
    )
}

/// Every partition of a Produce the principal may not write, answered with `code`.
pub fn produce_denied(denied: &DeniedPartitions, code: i16) -> ResponseKind {
    ProduceResponse::default()
        .with_responses(produce_topics(denied, code))
        .into()
}

fn fetch_topics(denied: &DeniedPartitions) -> Vec<FetchableTopicResponse> {
    per_partition(
        denied,
        |t, p| {
            FetchableTopicResponse::default()
                .with_topic(t)
                .with_partitions(p)
        },
        |p| {
            PartitionData::default()
                .with_partition_index(p)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()))
        },
    )
}

/// A Fetch whose every partition is denied.
pub fn fetch_denied(denied: &DeniedPartitions) -> ResponseKind {
    FetchResponse::default()
        .with_responses(fetch_topics(denied))
        .into()
}

/// A replica Fetch from a principal without ClusterAction.
pub fn fetch_cluster_denied() -> ResponseKind {
    FetchResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
        .into()
}

fn metadata_topics(denied: &[DeniedTopic], topic_ops: bool) -> Vec<MetadataResponseTopic> {
    denied
        .iter()
        .map(|d| {
            MetadataResponseTopic::default()
                .with_name(d.name.clone())
                .with_topic_id(d.id)
                .with_error_code(d.error_code)
                .with_topic_authorized_operations(if topic_ops { 0 } else { OPS_NOT_REQUESTED })
        })
        .collect()
}

/// A v0 Metadata naming only topics the principal may not describe.
pub fn metadata_denied(denied: &[DeniedTopic]) -> ResponseKind {
    MetadataResponse::default()
        .with_topics(metadata_topics(denied, false))
        .into()
}

fn list_offsets_topics(denied: &DeniedPartitions) -> Vec<ListOffsetsTopicResponse> {
    per_partition(
        denied,
        |t, p| {
            ListOffsetsTopicResponse::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            ListOffsetsPartitionResponse::default()
                .with_partition_index(p)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1)
        },
    )
}

/// A ListOffsets whose every partition is denied.
pub fn list_offsets_denied(denied: &DeniedPartitions) -> ResponseKind {
    ListOffsetsResponse::default()
        .with_topics(list_offsets_topics(denied))
        .into()
}

/// A group membership request (Join/Sync/Heartbeat/Leave) without Read on the group.
pub fn group_denied(api: ApiKey) -> ResponseKind {
    let code = ResponseError::GroupAuthorizationFailed.code();
    match api {
        ApiKey::JoinGroup => JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .into(),
        ApiKey::SyncGroup => SyncGroupResponse::default().with_error_code(code).into(),
        ApiKey::Heartbeat => HeartbeatResponse::default().with_error_code(code).into(),
        _ => LeaveGroupResponse::default().with_error_code(code).into(),
    }
}

fn offset_commit_topics(denied: &DeniedPartitions, code: i16) -> Vec<OffsetCommitResponseTopic> {
    per_partition(
        denied,
        |t, p| {
            OffsetCommitResponseTopic::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code)
        },
    )
}

/// An OffsetCommit whose every partition is denied with `code`.
pub fn offset_commit_denied(denied: &DeniedPartitions, code: i16) -> ResponseKind {
    OffsetCommitResponse::default()
        .with_topics(offset_commit_topics(denied, code))
        .into()
}

fn offset_fetch_topics(denied: &DeniedPartitions) -> Vec<OffsetFetchResponseTopic> {
    per_partition(
        denied,
        |t, p| {
            OffsetFetchResponseTopic::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        },
    )
}

/// An OffsetFetch whose every named topic is denied.
pub fn offset_fetch_denied(denied: &DeniedPartitions) -> ResponseKind {
    OffsetFetchResponse::default()
        .with_topics(offset_fetch_topics(denied))
        .into()
}

/// An OffsetFetch without Describe on the group: v2+ carry a top-level error, older
/// versions only per-partition errors.
pub fn offset_fetch_group_denied(request: &OffsetFetchRequest, version: i16) -> ResponseKind {
    let mut response = OffsetFetchResponse::default();
    if version >= 2 {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
    } else if let Some(topics) = &request.topics {
        response.topics = topics
            .iter()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                            })
                            .collect(),
                    )
            })
            .collect();
    }
    response.into()
}

fn coordinators(denied: &[StrBytes], code: i16) -> Vec<Coordinator> {
    denied
        .iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        })
        .collect()
}

/// A FindCoordinator whose every key is denied.
pub fn find_coordinator_denied(denied: &[StrBytes], code: i16, version: i16) -> ResponseKind {
    let response = if version < 4 {
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
    } else {
        FindCoordinatorResponse::default().with_coordinators(coordinators(denied, code))
    };
    response.into()
}

/// A FindCoordinator for a key type the proxy does not authorize.
pub fn find_coordinator_unknown_key_type(
    request: &FindCoordinatorRequest,
    version: i16,
) -> ResponseKind {
    let keys: Vec<StrBytes> = if version < 4 {
        vec![request.key.clone()]
    } else {
        request.coordinator_keys.clone()
    };
    find_coordinator_denied(&keys, ResponseError::InvalidRequest.code(), version)
}

fn described_groups(denied: &[GroupId]) -> Vec<DescribedGroup> {
    denied
        .iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_authorized_operations(OPS_NOT_REQUESTED)
        })
        .collect()
}

/// A DescribeGroups whose every group is denied.
pub fn describe_groups_denied(denied: &[GroupId]) -> ResponseKind {
    DescribeGroupsResponse::default()
        .with_groups(described_groups(denied))
        .into()
}

fn created_topics(denied: &[TopicName]) -> Vec<CreatableTopicResult> {
    denied
        .iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.clone())
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .collect()
}

/// A CreateTopics whose every topic is denied.
pub fn create_topics_denied(denied: &[TopicName]) -> ResponseKind {
    CreateTopicsResponse::default()
        .with_topics(created_topics(denied))
        .into()
}

fn deleted_topics(denied: &[DeniedTopic]) -> Vec<DeletableTopicResult> {
    denied
        .iter()
        .map(|d| {
            let message = if d.error_code == ResponseError::TopicAuthorizationFailed.code() {
                AUTHORIZATION_FAILED
            } else {
                "Unknown topic id."
            };
            DeletableTopicResult::default()
                .with_name(d.name.clone())
                .with_topic_id(d.id)
                .with_error_code(d.error_code)
                .with_error_message(Some(StrBytes::from_static_str(message)))
        })
        .collect()
}

/// A DeleteTopics whose every topic is refused.
pub fn delete_topics_denied(denied: &[DeniedTopic]) -> ResponseKind {
    DeleteTopicsResponse::default()
        .with_responses(deleted_topics(denied))
        .into()
}

/// An InitProducerId denied with `code`.
pub fn init_producer_id_denied(code: i16) -> ResponseKind {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .into()
}

/// A DescribeCluster without Describe on the cluster.
pub fn describe_cluster_denied() -> ResponseKind {
    DescribeClusterResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
        .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        .with_controller_id(BrokerId(-1))
        .into()
}

/// Per-partition results of `denied`: `make(partition)` builds one partition entry.
fn per_partition<T, P>(
    denied: &DeniedPartitions,
    topic: impl Fn(TopicName, Vec<P>) -> T,
    make: impl Fn(i32) -> P,
) -> Vec<T> {
    denied
        .iter()
        .map(|(name, partitions)| {
            topic(name.clone(), partitions.iter().map(|p| make(*p)).collect())
        })
        .collect()
}

fn epoch_topics(denied: &DeniedPartitions, code: i16) -> Vec<OffsetForLeaderTopicResult> {
    per_partition(
        denied,
        |t, p| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t)
                .with_partitions(p)
        },
        |p| {
            EpochEndOffset::default()
                .with_partition(p)
                .with_error_code(code)
                .with_leader_epoch(-1)
                .with_end_offset(-1)
        },
    )
}

/// An OffsetForLeaderEpoch whose every partition is denied with `code`.
pub fn offset_for_leader_epoch_denied(denied: &DeniedPartitions, code: i16) -> ResponseKind {
    OffsetForLeaderEpochResponse::default()
        .with_topics(epoch_topics(denied, code))
        .into()
}

fn delete_records_topics(denied: &DeniedPartitions) -> Vec<DeleteRecordsTopicResult> {
    per_partition(
        denied,
        |t, p| {
            DeleteRecordsTopicResult::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            DeleteRecordsPartitionResult::default()
                .with_partition_index(p)
                .with_low_watermark(-1)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        },
    )
}

/// A DeleteRecords whose every partition is denied.
pub fn delete_records_denied(denied: &DeniedPartitions) -> ResponseKind {
    DeleteRecordsResponse::default()
        .with_topics(delete_records_topics(denied))
        .into()
}

/// An AddPartitionsToTxn (v0-3) that fails: partitions of topics marked `false` get
/// `code`, the others OPERATION_NOT_ATTEMPTED (every partition gets `code` when the
/// transactional id itself is denied).
pub fn add_partitions_to_txn_denied(
    topics: &[(TopicName, Vec<i32>, bool)],
    code: i16,
) -> ResponseKind {
    let txn_denied = code == ResponseError::TransactionalIdAuthorizationFailed.code();
    AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(
            topics
                .iter()
                .map(|(name, partitions, allowed)| {
                    let partition_code = if txn_denied || !allowed {
                        code
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    };
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(name.clone())
                        .with_results_by_partition(
                            partitions
                                .iter()
                                .map(|p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(partition_code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
        .into()
}

/// An AddOffsetsToTxn denied with `code`.
pub fn add_offsets_to_txn_denied(code: i16) -> ResponseKind {
    AddOffsetsToTxnResponse::default()
        .with_error_code(code)
        .into()
}

/// An EndTxn without Write on the transactional id.
pub fn end_txn_denied() -> ResponseKind {
    EndTxnResponse::default()
        .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .into()
}

fn txn_offset_commit_topics(
    denied: &DeniedPartitions,
    code: i16,
) -> Vec<TxnOffsetCommitResponseTopic> {
    per_partition(
        denied,
        |t, p| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(code)
        },
    )
}

/// A TxnOffsetCommit whose every partition is denied with `code`.
pub fn txn_offset_commit_denied(denied: &DeniedPartitions, code: i16) -> ResponseKind {
    TxnOffsetCommitResponse::default()
        .with_topics(txn_offset_commit_topics(denied, code))
        .into()
}

fn offset_delete_topics(denied: &DeniedPartitions) -> Vec<OffsetDeleteResponseTopic> {
    per_partition(
        denied,
        |t, p| {
            OffsetDeleteResponseTopic::default()
                .with_name(t)
                .with_partitions(p)
        },
        |p| {
            OffsetDeleteResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        },
    )
}

/// An OffsetDelete whose every topic is denied.
pub fn offset_delete_denied(denied: &DeniedPartitions) -> ResponseKind {
    OffsetDeleteResponse::default()
        .with_topics(offset_delete_topics(denied))
        .into()
}

/// An OffsetDelete without Delete on the group.
pub fn offset_delete_group_denied() -> ResponseKind {
    OffsetDeleteResponse::default()
        .with_error_code(ResponseError::GroupAuthorizationFailed.code())
        .into()
}

fn deleted_groups(denied: &[GroupId]) -> Vec<DeletableGroupResult> {
    denied
        .iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
        })
        .collect()
}

/// A DeleteGroups whose every group is denied.
pub fn delete_groups_denied(denied: &[GroupId]) -> ResponseKind {
    DeleteGroupsResponse::default()
        .with_results(deleted_groups(denied))
        .into()
}

fn created_partitions(denied: &[TopicName]) -> Vec<CreatePartitionsTopicResult> {
    denied
        .iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.clone())
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        })
        .collect()
}

/// A CreatePartitions whose every topic is denied.
pub fn create_partitions_denied(denied: &[TopicName]) -> ResponseKind {
    CreatePartitionsResponse::default()
        .with_results(created_partitions(denied))
        .into()
}

fn described_configs(denied: &[DeniedConfig]) -> Vec<DescribeConfigsResult> {
    denied
        .iter()
        .map(|(kind, name, code)| {
            DescribeConfigsResult::default()
                .with_resource_type(*kind)
                .with_resource_name(name.clone())
                .with_error_code(*code)
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        })
        .collect()
}

/// A DescribeConfigs whose every resource is denied.
pub fn describe_configs_denied(denied: &[DeniedConfig]) -> ResponseKind {
    DescribeConfigsResponse::default()
        .with_results(described_configs(denied))
        .into()
}

fn altered_configs(denied: &[DeniedConfig]) -> Vec<AlterConfigsResourceResponse> {
    denied
        .iter()
        .map(|(kind, name, code)| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(*kind)
                .with_resource_name(name.clone())
                .with_error_code(*code)
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        })
        .collect()
}

/// An AlterConfigs whose every resource is denied.
pub fn alter_configs_denied(denied: &[DeniedConfig]) -> ResponseKind {
    AlterConfigsResponse::default()
        .with_responses(altered_configs(denied))
        .into()
}

fn incrementally_altered_configs(
    denied: &[DeniedConfig],
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    denied
        .iter()
        .map(|(kind, name, code)| {
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(*kind)
                .with_resource_name(name.clone())
                .with_error_code(*code)
                .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
        })
        .collect()
}

/// An IncrementalAlterConfigs whose every resource is denied.
pub fn incremental_alter_configs_denied(denied: &[DeniedConfig]) -> ResponseKind {
    IncrementalAlterConfigsResponse::default()
        .with_responses(incrementally_altered_configs(denied))
        .into()
}
