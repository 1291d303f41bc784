//! One test per row of the enforcement table, with a fake policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::TopicProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use portcullis_policy::api_acl::{enforcement, Enforcement};

use super::*;
use crate::pipeline::authz::response::fix_response;

/// Allows exactly the listed (resource, name, operation) triples.
#[derive(Default)]
struct Fake {
    allowed: HashSet<(ResourceType, String, Operation)>,
    asked: Vec<(ResourceType, String, Operation)>,
}

impl Fake {
    fn allow(mut self, resource: ResourceType, name: &str, op: Operation) -> Fake {
        self.allowed.insert((resource, name.to_string(), op));
        self
    }
}

impl Permissions for Fake {
    fn allows(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.asked.push((resource, name.to_string(), op));
        self.allowed.contains(&(resource, name.to_string(), op))
    }
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn group(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn produce(acks: i16, topics: &[&str]) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_topic_data(
        topics
            .iter()
            .map(|t| {
                TopicProduceData::default()
                    .with_name(topic(t))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0)])
            })
            .collect(),
    )
}

fn run(request: impl Into<RequestKind>, version: i16, perms: &mut Fake) -> (RequestKind, Verdict) {
    let mut request = request.into();
    let verdict = authorize_request(&mut request, version, perms);
    (request, verdict)
}

fn answered(verdict: Verdict) -> ResponseKind {
    match verdict.action {
        Action::Answer(response) => *response,
        other => panic!("not answered locally: {other:?}"),
    }
}

const T: ResourceType = ResourceType::Topic;
const G: ResourceType = ResourceType::Group;
const X: ResourceType = ResourceType::TransactionalId;
const C: ResourceType = ResourceType::Cluster;

#[test]
fn produce_keeps_allowed_topics_and_answers_denied_partitions() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Write);
    let (request, verdict) = run(produce(1, &["orders", "secret"]), 9, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let RequestKind::Produce(request) = request else {
        panic!()
    };
    assert_eq!(request.topic_data.len(), 1);
    assert_eq!(request.topic_data[0].name.as_str(), "orders");
    let fix = verdict.fix.expect("fix");
    let mut response: ResponseKind = ProduceResponse::default()
        .with_responses(vec![
            TopicProduceResponse::default().with_name(topic("orders"))
        ])
        .into();
    fix_response(&fix, &mut response, &mut perms);
    let ResponseKind::Produce(response) = response else {
        panic!()
    };
    let secret = response
        .responses
        .iter()
        .find(|t| t.name.as_str() == "secret")
        .unwrap();
    assert_eq!(
        secret.partition_responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
}

#[test]
fn produce_wholly_denied_is_answered_locally_or_dropped_with_acks_0() {
    let mut perms = Fake::default();
    let (_, verdict) = run(produce(-1, &["secret"]), 9, &mut perms);
    let ResponseKind::Produce(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let (_, verdict) = run(produce(0, &["secret"]), 9, &mut perms);
    assert!(matches!(verdict.action, Action::Drop));
    let mut perms = Fake::default().allow(T, "orders", Operation::Write);
    let (_, verdict) = run(produce(1, &["orders"]), 9, &mut perms);
    assert!(matches!(verdict.action, Action::Forward) && verdict.fix.is_none());
}

#[test]
fn transactional_produce_needs_write_on_the_transactional_id() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Write);
    let request = produce(-1, &["orders"])
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx1"))));
    let (_, verdict) = run(request.clone(), 9, &mut perms);
    let ResponseKind::Produce(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    let mut perms = perms.allow(X, "tx1", Operation::Write);
    let (_, verdict) = run(request, 9, &mut perms);
    assert!(matches!(verdict.action, Action::Forward));
}

fn fetch(topics: &[&str]) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_session_epoch(-1)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    FetchTopic::default()
                        .with_topic(topic(t))
                        .with_partitions(vec![FetchPartition::default().with_partition(2)])
                })
                .collect(),
        )
}

#[test]
fn fetch_is_per_partition_and_sessionless() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Read);
    let (_, verdict) = run(fetch(&["orders"]), 12, &mut perms);
    assert!(matches!(verdict.action, Action::Forward));
    let (request, verdict) = run(fetch(&["orders"]).with_session_epoch(0), 12, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let RequestKind::Fetch(request) = request else {
        panic!()
    };
    assert_eq!((request.session_id, request.session_epoch), (0, -1));
    let (request, verdict) = run(fetch(&["orders", "secret"]), 12, &mut perms);
    let RequestKind::Fetch(request) = request else {
        panic!()
    };
    assert_eq!(request.topics.len(), 1);
    let mut response: ResponseKind = FetchResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::Fetch(response) = response else {
        panic!()
    };
    assert_eq!(response.responses[0].topic.as_str(), "secret");
    assert_eq!(response.responses[0].partitions[0].partition_index, 2);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let (_, verdict) = run(fetch(&["secret"]), 12, &mut perms);
    assert!(matches!(answered(verdict), ResponseKind::Fetch(_)));
}

#[test]
fn replica_fetch_needs_cluster_action() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Read);
    let (_, verdict) = run(
        fetch(&["orders"]).with_replica_id(BrokerId(1)),
        12,
        &mut perms,
    );
    let ResponseKind::Fetch(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
}

fn metadata(topics: Option<&[&str]>) -> MetadataRequest {
    MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic(t))))
            .collect()
    }))
}

fn metadata_response(topics: &[&str]) -> ResponseKind {
    MetadataResponse::default()
        .with_topics(
            topics
                .iter()
                .map(|t| MetadataResponseTopic::default().with_name(Some(topic(t))))
                .collect(),
        )
        .into()
}

#[test]
fn metadata_listing_hides_topics_without_describe() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Describe);
    let (_, verdict) = run(metadata(None), 12, &mut perms);
    assert!(matches!(verdict.action, Action::Forward));
    let mut response = metadata_response(&["orders", "secret"]);
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::Metadata(r) = response else {
        panic!()
    };
    let names: Vec<_> = r.topics.iter().map(|t| t.name.clone().unwrap()).collect();
    assert_eq!(names, vec![topic("orders")]);
}

/// Metadata v0 has no null topic list: an empty one means "all topics", and must be filtered
/// like an all-topics request of a later version.
#[test]
fn metadata_v0_empty_list_is_filtered_like_all_topics() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Describe);
    let (request, verdict) = run(metadata(Some(&[])), 0, &mut perms);
    assert!(matches!(verdict.action, Action::Forward), "{verdict:?}");
    let RequestKind::Metadata(request) = request else {
        panic!()
    };
    assert_eq!(request.topics.map(|t| t.len()), Some(0));
    let fix = verdict.fix.expect("an all-topics answer must be filtered");
    let mut response = metadata_response(&["orders", "secret", "payments.pii"]);
    fix_response(&fix, &mut response, &mut perms);
    let ResponseKind::Metadata(r) = response else {
        panic!()
    };
    let names: Vec<_> = r.topics.iter().map(|t| t.name.clone().unwrap()).collect();
    assert_eq!(names, vec![topic("orders")]);
    // From v1 on an empty list means "no topics": nothing to filter.
    let (_, verdict) = run(metadata(Some(&[])), 1, &mut perms);
    assert!(verdict.fix.is_none(), "{verdict:?}");
}

#[test]
fn metadata_named_unauthorized_topic_never_reaches_the_broker() {
    let mut perms = Fake::default().allow(T, "orders", Operation::Describe);
    let (request, verdict) = run(metadata(Some(&["orders", "secret"])), 12, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let RequestKind::Metadata(request) = request else {
        panic!()
    };
    assert_eq!(request.topics.unwrap().len(), 1);
    assert!(
        !request.allow_auto_topic_creation,
        "no Create: no auto-creation"
    );
    let mut response = metadata_response(&["orders"]);
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::Metadata(r) = response else {
        panic!()
    };
    let secret = r
        .topics
        .iter()
        .find(|t| t.name == Some(topic("secret")))
        .unwrap();
    assert_eq!(
        secret.error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    assert!(secret.partitions.is_empty());
}

#[test]
fn metadata_auto_creation_needs_create() {
    let mut perms = Fake::default()
        .allow(T, "orders", Operation::Describe)
        .allow(T, "orders", Operation::Create);
    let (_, verdict) = run(
        metadata(Some(&["orders"])).with_allow_auto_topic_creation(true),
        12,
        &mut perms,
    );
    assert!(matches!(verdict.action, Action::Forward));
}

#[test]
fn metadata_authorized_operations_come_from_the_policy() {
    let mut perms = Fake::default()
        .allow(T, "orders", Operation::Describe)
        .allow(T, "orders", Operation::Read)
        .allow(C, "kafka-cluster", Operation::Describe);
    let request = metadata(Some(&["orders"]))
        .with_include_topic_authorized_operations(true)
        .with_include_cluster_authorized_operations(true);
    let (_, verdict) = run(request, 10, &mut perms);
    let mut response = metadata_response(&["orders"]);
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::Metadata(r) = response else {
        panic!()
    };
    let read = 1 << Operation::Read.kafka_code();
    let describe = 1 << Operation::Describe.kafka_code();
    assert_eq!(r.topics[0].topic_authorized_operations, read | describe);
    assert_eq!(r.cluster_authorized_operations, describe);
}

#[test]
fn list_offsets_is_per_partition() {
    let request = ListOffsetsRequest::default().with_topics(
        ["orders", "secret"]
            .iter()
            .map(|t| {
                ListOffsetsTopic::default()
                    .with_name(topic(t))
                    .with_partitions(vec![ListOffsetsPartition::default()])
            })
            .collect(),
    );
    let mut perms = Fake::default().allow(T, "orders", Operation::Describe);
    let (_, verdict) = run(request.clone(), 7, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let mut response: ResponseKind = ListOffsetsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::ListOffsets(r) = response else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let (_, verdict) = run(request, 7, &mut Fake::default());
    assert!(matches!(answered(verdict), ResponseKind::ListOffsets(_)));
}

#[test]
fn group_membership_needs_read_on_the_group() {
    let mut perms = Fake::default().allow(G, "g1", Operation::Read);
    let requests: Vec<RequestKind> = vec![
        JoinGroupRequest::default()
            .with_group_id(group("g1"))
            .into(),
        SyncGroupRequest::default()
            .with_group_id(group("g1"))
            .into(),
        HeartbeatRequest::default()
            .with_group_id(group("g1"))
            .into(),
        LeaveGroupRequest::default()
            .with_group_id(group("g1"))
            .into(),
    ];
    for request in requests {
        let (_, verdict) = run(request.clone(), 1, &mut perms);
        assert!(matches!(verdict.action, Action::Forward));
        let (_, verdict) = run(request, 1, &mut Fake::default());
        let code = match answered(verdict) {
            ResponseKind::JoinGroup(r) => r.error_code,
            ResponseKind::SyncGroup(r) => r.error_code,
            ResponseKind::Heartbeat(r) => r.error_code,
            ResponseKind::LeaveGroup(r) => r.error_code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code, ResponseError::GroupAuthorizationFailed.code());
    }
}

fn offset_commit(topics: &[&str]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group("g1"))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic(t))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()])
                })
                .collect(),
        )
}

#[test]
fn offset_commit_needs_read_on_group_and_topics() {
    let (_, verdict) = run(
        offset_commit(&["orders"]),
        8,
        &mut Fake::default().allow(T, "orders", Operation::Read),
    );
    let ResponseKind::OffsetCommit(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
    let mut perms =
        Fake::default()
            .allow(G, "g1", Operation::Read)
            .allow(T, "orders", Operation::Read);
    let (_, verdict) = run(offset_commit(&["orders", "secret"]), 8, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let mut response: ResponseKind = OffsetCommitResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::OffsetCommit(r) = response else {
        panic!()
    };
    assert_eq!(r.topics[0].name.as_str(), "secret");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
}

#[test]
fn offset_fetch_needs_describe_on_group_and_topics() {
    let request = OffsetFetchRequest::default()
        .with_group_id(group("g1"))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![0]),
            OffsetFetchRequestTopic::default()
                .with_name(topic("secret"))
                .with_partition_indexes(vec![0]),
        ]));
    let (_, verdict) = run(request.clone(), 7, &mut Fake::default());
    let ResponseKind::OffsetFetch(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupAuthorizationFailed.code());
    let (_, verdict) = run(request.clone(), 1, &mut Fake::default());
    let ResponseKind::OffsetFetch(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
    let mut perms =
        Fake::default()
            .allow(G, "g1", Operation::Describe)
            .allow(T, "orders", Operation::Describe);
    let (_, verdict) = run(request, 7, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let mut response: ResponseKind = OffsetFetchResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::OffsetFetch(r) = response else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    // All topics: only those with Describe come back.
    let all = OffsetFetchRequest::default()
        .with_group_id(group("g1"))
        .with_topics(None);
    let (_, verdict) = run(all, 7, &mut perms);
    let mut response: ResponseKind = OffsetFetchResponse::default()
        .with_topics(vec![
            OffsetFetchResponseTopic::default().with_name(topic("orders")),
            OffsetFetchResponseTopic::default().with_name(topic("secret")),
        ])
        .into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::OffsetFetch(r) = response else {
        panic!()
    };
    assert_eq!(r.topics.len(), 1);
}

#[test]
fn find_coordinator_needs_describe_on_group_or_transactional_id() {
    let key = StrBytes::from_static_str("g1");
    let v3 = FindCoordinatorRequest::default().with_key(key.clone());
    let (_, verdict) = run(v3.clone(), 3, &mut Fake::default());
    let ResponseKind::FindCoordinator(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupAuthorizationFailed.code());
    let mut perms = Fake::default().allow(G, "g1", Operation::Describe);
    assert!(matches!(run(v3, 3, &mut perms).1.action, Action::Forward));
    let txn = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(key.clone());
    let (_, verdict) = run(txn, 3, &mut perms);
    let ResponseKind::FindCoordinator(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    let v4 = FindCoordinatorRequest::default()
        .with_coordinator_keys(vec![key, StrBytes::from_static_str("other")]);
    let (request, verdict) = run(v4, 4, &mut perms);
    let RequestKind::FindCoordinator(request) = request else {
        panic!()
    };
    assert_eq!(request.coordinator_keys.len(), 1);
    let mut response: ResponseKind = FindCoordinatorResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::FindCoordinator(r) = response else {
        panic!()
    };
    assert_eq!(r.coordinators[0].key.as_str(), "other");
    assert_eq!(
        r.coordinators[0].error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
}

#[test]
fn describe_and_list_groups() {
    let request = DescribeGroupsRequest::default().with_groups(vec![group("g1"), group("g2")]);
    let mut perms = Fake::default().allow(G, "g1", Operation::Describe);
    let (_, verdict) = run(request, 5, &mut perms);
    let mut response: ResponseKind = DescribeGroupsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::DescribeGroups(r) = response else {
        panic!()
    };
    assert_eq!(r.groups[0].group_id, group("g2"));
    assert_eq!(
        r.groups[0].error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );

    let (_, verdict) = run(ListGroupsRequest::default(), 4, &mut perms);
    let mut response: ResponseKind = ListGroupsResponse::default()
        .with_groups(vec![
            list_groups_response::ListedGroup::default().with_group_id(group("g1")),
            list_groups_response::ListedGroup::default().with_group_id(group("g2")),
        ])
        .into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::ListGroups(r) = response else {
        panic!()
    };
    assert_eq!(r.groups.len(), 1);
    let mut admin = Fake::default().allow(C, "kafka-cluster", Operation::Describe);
    let (_, verdict) = run(ListGroupsRequest::default(), 4, &mut admin);
    assert!(verdict.fix.is_none());
}

#[test]
fn create_and_delete_topics_are_per_topic() {
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default().with_name(topic("new.a")),
        create_topics_request::CreatableTopic::default().with_name(topic("new.b")),
    ]);
    let mut perms = Fake::default().allow(T, "new.a", Operation::Create);
    let (_, verdict) = run(create.clone(), 5, &mut perms);
    let mut response: ResponseKind = CreateTopicsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::CreateTopics(r) = response else {
        panic!()
    };
    assert_eq!(r.topics[0].name.as_str(), "new.b");
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let mut cluster = Fake::default().allow(C, "kafka-cluster", Operation::Create);
    assert!(matches!(
        run(create, 5, &mut cluster).1.action,
        Action::Forward
    ));

    let delete = DeleteTopicsRequest::default().with_topic_names(vec![topic("old")]);
    let (_, verdict) = run(delete.clone(), 4, &mut Fake::default());
    let ResponseKind::DeleteTopics(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let mut perms = Fake::default().allow(T, "old", Operation::Delete);
    assert!(matches!(
        run(delete, 4, &mut perms).1.action,
        Action::Forward
    ));
}

#[test]
fn producer_ids_and_cluster_description() {
    let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
    let (_, verdict) = run(idempotent.clone(), 4, &mut Fake::default());
    let ResponseKind::InitProducerId(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let mut perms = Fake::default().allow(C, "kafka-cluster", Operation::IdempotentWrite);
    assert!(matches!(
        run(idempotent, 4, &mut perms).1.action,
        Action::Forward
    ));
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx1"))));
    let (_, verdict) = run(txn, 4, &mut perms);
    let ResponseKind::InitProducerId(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );

    let (_, verdict) = run(DescribeClusterRequest::default(), 1, &mut Fake::default());
    let ResponseKind::DescribeCluster(r) = answered(verdict) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
}

/// A default request of every api key the table says is enforced.
fn sample(key: ApiKey) -> Option<RequestKind> {
    Some(match key {
        ApiKey::Produce => ProduceRequest::default().into(),
        ApiKey::Fetch => FetchRequest::default().into(),
        ApiKey::Metadata => MetadataRequest::default().into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default().into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default().into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default().into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().into(),
        ApiKey::JoinGroup => JoinGroupRequest::default().into(),
        ApiKey::SyncGroup => SyncGroupRequest::default().into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default().into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default().into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default().into(),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default().into(),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::default().into(),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default().into(),
        ApiKey::EndTxn => EndTxnRequest::default().into(),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default().into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default().into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default().into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default().into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default().into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default().into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default().into(),
        _ => return None,
    })
}

#[test]
fn every_enforced_api_key_has_a_handler() {
    for key in ApiKey::iter() {
        if let Enforcement::Checked { .. } = enforcement(key) {
            let request = sample(key).unwrap_or_else(|| panic!("{key:?} has no sample"));
            let (_, verdict) = run(request, key.valid_versions().min, &mut Fake::default());
            assert!(
                !matches!(verdict.action, Action::Refuse),
                "{key:?} is in the table but the authorizer refuses it"
            );
        }
    }
}

fn tx(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

#[test]
fn offset_for_leader_epoch_and_delete_records_are_per_partition() {
    use kafka_protocol::messages::delete_records_request::DeleteRecordsTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic;
    let epochs = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default().with_topic(topic("orders")),
            OffsetForLeaderTopic::default().with_topic(topic("secret")),
        ]);
    let mut perms = Fake::default().allow(T, "orders", Operation::Describe);
    let (_, verdict) = run(epochs.clone(), 4, &mut perms);
    let mut response: ResponseKind = OffsetForLeaderEpochResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::OffsetForLeaderEpoch(r) = response else {
        panic!()
    };
    assert_eq!(r.topics[0].topic.as_str(), "secret");
    let replica = epochs.with_replica_id(BrokerId(3));
    let ResponseKind::OffsetForLeaderEpoch(_) = answered(run(replica, 4, &mut perms).1) else {
        panic!()
    };

    let delete = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic("orders"))
        .with_partitions(vec![Default::default()])]);
    let ResponseKind::DeleteRecords(r) = answered(run(delete.clone(), 2, &mut perms).1) else {
        panic!()
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let mut perms = perms.allow(T, "orders", Operation::Delete);
    assert!(matches!(
        run(delete, 2, &mut perms).1.action,
        Action::Forward
    ));
}

#[test]
fn transactions_need_write_on_the_transactional_id() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tx("tx1"))
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![0]),
            AddPartitionsToTxnTopic::default()
                .with_name(topic("secret"))
                .with_partitions(vec![0]),
        ]);
    let mut perms = Fake::default().allow(T, "orders", Operation::Write);
    let ResponseKind::AddPartitionsToTxn(r) = answered(run(add.clone(), 3, &mut perms).1) else {
        panic!()
    };
    let codes: Vec<i16> = r
        .results_by_topic_v3_and_below
        .iter()
        .map(|t| t.results_by_partition[0].partition_error_code)
        .collect();
    assert_eq!(
        codes,
        vec![ResponseError::TransactionalIdAuthorizationFailed.code(); 2]
    );
    let mut perms = perms.allow(X, "tx1", Operation::Write);
    let ResponseKind::AddPartitionsToTxn(r) = answered(run(add, 3, &mut perms).1) else {
        panic!()
    };
    let codes: Vec<i16> = r
        .results_by_topic_v3_and_below
        .iter()
        .map(|t| t.results_by_partition[0].partition_error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::TopicAuthorizationFailed.code()
        ],
        "OPERATION_NOT_ATTEMPTED, 29"
    );

    let offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tx("tx1"))
        .with_group_id(group("g1"));
    let ResponseKind::AddOffsetsToTxn(r) = answered(run(offsets.clone(), 3, &mut perms).1) else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupAuthorizationFailed.code());
    let mut perms = perms.allow(G, "g1", Operation::Read);
    assert!(matches!(
        run(offsets, 3, &mut perms).1.action,
        Action::Forward
    ));

    let end = EndTxnRequest::default().with_transactional_id(tx("tx2"));
    let ResponseKind::EndTxn(r) = answered(run(end, 3, &mut perms).1) else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );

    use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(tx("tx1"))
        .with_group_id(group("g1"))
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default().with_name(topic("orders")),
            TxnOffsetCommitRequestTopic::default().with_name(topic("secret")),
        ]);
    let mut perms = perms.allow(T, "orders", Operation::Read);
    let (_, verdict) = run(commit, 3, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let mut response: ResponseKind = TxnOffsetCommitResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::TxnOffsetCommit(r) = response else {
        panic!()
    };
    assert_eq!(r.topics[0].name.as_str(), "secret");
}

#[test]
fn group_and_partition_administration() {
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group("g1"), group("g2")]);
    let mut perms = Fake::default().allow(G, "g1", Operation::Delete);
    let (_, verdict) = run(delete, 2, &mut perms);
    let mut response: ResponseKind = DeleteGroupsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::DeleteGroups(r) = response else {
        panic!()
    };
    assert_eq!(r.results[0].group_id, group("g2"));
    assert_eq!(
        r.results[0].error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );

    use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
    let offsets = OffsetDeleteRequest::default()
        .with_group_id(group("g2"))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default().with_name(topic("orders"))
        ]);
    let ResponseKind::OffsetDelete(r) = answered(run(offsets, 0, &mut perms).1) else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::GroupAuthorizationFailed.code());

    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let grow = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default().with_name(topic("orders")),
    ]);
    let ResponseKind::CreatePartitions(r) = answered(run(grow.clone(), 1, &mut perms).1) else {
        panic!()
    };
    assert_eq!(
        r.results[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    let mut perms = perms.allow(T, "orders", Operation::Alter);
    assert!(matches!(run(grow, 1, &mut perms).1.action, Action::Forward));
}

#[test]
fn configs_are_per_resource_with_the_resource_types_error() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let describe = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders")),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1")),
        DescribeConfigsResource::default()
            .with_resource_type(99)
            .with_resource_name(StrBytes::from_static_str("x")),
    ]);
    let mut perms = Fake::default().allow(T, "orders", Operation::DescribeConfigs);
    let (request, verdict) = run(describe, 4, &mut perms);
    let RequestKind::DescribeConfigs(request) = request else {
        panic!()
    };
    assert_eq!(request.resources.len(), 1);
    let mut response: ResponseKind = DescribeConfigsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::DescribeConfigs(r) = response else {
        panic!()
    };
    let codes: Vec<i16> = r.results.iter().map(|c| c.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::ClusterAuthorizationFailed.code(),
            ResponseError::InvalidRequest.code()
        ]
    );

    use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
    let alter = AlterConfigsRequest::default()
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("orders"))]);
    let ResponseKind::AlterConfigs(r) = answered(run(alter, 2, &mut perms).1) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource as Inc;
    let inc = IncrementalAlterConfigsRequest::default().with_resources(vec![Inc::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("orders"))]);
    let mut perms = perms.allow(T, "orders", Operation::AlterConfigs);
    assert!(matches!(run(inc, 1, &mut perms).1.action, Action::Forward));
}

proptest::proptest! {
    /// Broker responses are decoded to put denied items back; no bytes may panic that.
    #[test]
    fn arbitrary_broker_responses_never_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        pick in 0usize..6,
        version in 0i16..13,
    ) {
        let denied = vec![(topic("secret"), vec![0, 1])];
        let (api, fix) = match pick {
            0 => (ApiKey::Produce, ResponseFix::Produce(denied)),
            1 => (ApiKey::Fetch, ResponseFix::Fetch(denied)),
            2 => (ApiKey::ListOffsets, ResponseFix::ListOffsets(denied)),
            3 => (ApiKey::OffsetCommit, ResponseFix::OffsetCommit(denied)),
            4 => (ApiKey::ListGroups, ResponseFix::ListGroups),
            _ => (ApiKey::Metadata, ResponseFix::Metadata {
                hide_unauthorized: true,
                only: None,
                denied: vec![],
                topic_ops: true,
                cluster_ops: true,
            }),
        };
        let versions = api.valid_versions();
        let version = version.clamp(versions.min, versions.max);
        let _ = crate::pipeline::authz::response::apply_fix(
            &fix,
            api,
            version,
            bytes::Bytes::from(body),
            &mut Fake::default(),
        );
    }
}
