//! Authorizing one decoded request, with Kafka's error semantics.
//!
//! Plain functions over kafka-protocol messages (no sockets), so every row of the
//! enforcement table is unit-tested. A request is forwarded untouched when everything it
//! names is allowed; answered by the proxy when nothing is; and otherwise rewritten to the
//! allowed part, with a [`ResponseFix`] that puts the denied items back into the broker's
//! answer carrying Kafka's authorization error, exactly as a broker with equivalent ACLs
//! would answer.

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest, ApiKey,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest, FindCoordinatorRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, RequestKind, ResponseKind, TopicName, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use portcullis_policy::resource::CLUSTER_NAME;
use portcullis_policy::{Operation, ResourceType};

use crate::pipeline::authz::response::{self as answer, DeniedTopic, ResponseFix};
use crate::pipeline::authz::topic_id::{self, IdMismatch};

/// Answers "may this connection's principal do `op` on this resource?". Implementations
/// record denials for the audit log.
pub trait Permissions {
    /// Whether `op` on the resource is allowed; a denial is the request's and is audited.
    fn allows(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool;

    /// The same question asked only to choose a path (may this principal create topics
    /// cluster-wide? auto-create?): Kafka does not log such denials, and neither does the
    /// proxy (allows are audited as usual).
    fn probe(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.allows(resource, name, op)
    }

    /// The name of the topic whose id is `id`, as the proxy's own view of the cluster knows
    /// it (`None`: unknown, and the id is answered UNKNOWN_TOPIC_ID). Without a view, no id
    /// is known.
    fn topic_name(&mut self, _id: uuid::Uuid) -> Option<TopicName> {
        None
    }

    /// Records the entries of one request that named a topic next to the id of another
    /// (each refused): one audit event per request, however many entries.
    fn topic_id_mismatches(&mut self, _mismatches: &[IdMismatch]) {}
}

/// What to do with an authorized request.
#[derive(Debug)]
pub enum Action {
    /// Forward the original bytes.
    Forward,
    /// The request was changed in place: encode and forward it.
    ForwardModified,
    /// Answer locally with this response; nothing goes upstream.
    Answer(Box<ResponseKind>),
    /// A fire-and-forget (acks=0) Produce that was wholly denied: nothing is sent and
    /// nothing is answered.
    Drop,
    /// The api key is not enforced: refuse it (the connection closes).
    Refuse,
}

/// The decision for one request.
#[derive(Debug)]
pub struct Verdict {
    /// What happens to the request.
    pub action: Action,
    /// What must change in the broker's response (only with a forward).
    pub fix: Option<ResponseFix>,
}

impl Verdict {
    fn forward() -> Verdict {
        Verdict {
            action: Action::Forward,
            fix: None,
        }
    }

    fn answer(response: impl Into<ResponseKind>) -> Verdict {
        Verdict {
            action: Action::Answer(Box::new(response.into())),
            fix: None,
        }
    }

    fn forward_with(modified: bool, fix: Option<ResponseFix>) -> Verdict {
        Verdict {
            action: if modified {
                Action::ForwardModified
            } else {
                Action::Forward
            },
            fix,
        }
    }
}

/// Denied `(topic, partitions)` of a per-partition request.
pub type DeniedPartitions = Vec<(TopicName, Vec<i32>)>;

/// Authorizes `request` (api `key` at `version`), changing it in place when only part of
/// it is allowed. Api keys outside the enforcement table never get here: they are refused
/// before (see `portcullis_policy::api_acl`).
pub fn authorize_request(
    request: &mut RequestKind,
    version: i16,
    perms: &mut dyn Permissions,
) -> Verdict {
    match request {
        RequestKind::Produce(r) => produce(r, perms),
        RequestKind::Fetch(r) => fetch(r, perms),
        RequestKind::Metadata(r) => metadata(r, version, perms),
        RequestKind::ListOffsets(r) => list_offsets(r, perms),
        RequestKind::OffsetCommit(r) => offset_commit(r, perms),
        RequestKind::OffsetFetch(r) => offset_fetch(r, version, perms),
        RequestKind::FindCoordinator(r) => find_coordinator(r, version, perms),
        RequestKind::JoinGroup(r) => group_read(ApiKey::JoinGroup, &r.group_id.0, perms),
        RequestKind::SyncGroup(r) => group_read(ApiKey::SyncGroup, &r.group_id.0, perms),
        RequestKind::Heartbeat(r) => group_read(ApiKey::Heartbeat, &r.group_id.0, perms),
        RequestKind::LeaveGroup(r) => group_read(ApiKey::LeaveGroup, &r.group_id.0, perms),
        RequestKind::DescribeGroups(r) => {
            let denied = split_denied(
                &mut r.groups,
                |g| perms.allows(ResourceType::Group, g, Operation::Describe),
                Clone::clone,
            );
            let ops = r.include_authorized_operations;
            if r.groups.is_empty() {
                return Verdict::answer(answer::describe_groups_denied(&denied));
            }
            let modified = !denied.is_empty();
            let fix = (modified || ops).then(|| ResponseFix::DescribeGroups {
                denied,
                authorized_operations: ops,
            });
            Verdict::forward_with(modified, fix)
        }
        RequestKind::ListGroups(_) => {
            if perms.probe(ResourceType::Cluster, CLUSTER_NAME, Operation::Describe) {
                Verdict::forward()
            } else {
                Verdict::forward_with(false, Some(ResponseFix::ListGroups))
            }
        }
        RequestKind::CreateTopics(r) => create_topics(r, perms),
        RequestKind::DeleteTopics(r) => delete_topics(r, perms),
        RequestKind::InitProducerId(r) => init_producer_id(r, perms),
        RequestKind::DescribeCluster(r) => {
            if !perms.allows(ResourceType::Cluster, CLUSTER_NAME, Operation::Describe) {
                return Verdict::answer(answer::describe_cluster_denied());
            }
            let fix = r
                .include_cluster_authorized_operations
                .then_some(ResponseFix::DescribeCluster);
            Verdict::forward_with(false, fix)
        }
        RequestKind::OffsetForLeaderEpoch(r) => offset_for_leader_epoch(r, perms),
        RequestKind::DeleteRecords(r) => delete_records(r, perms),
        RequestKind::AddPartitionsToTxn(r) => add_partitions_to_txn(r, perms),
        RequestKind::AddOffsetsToTxn(r) => add_offsets_to_txn(r, perms),
        RequestKind::EndTxn(r) => {
            if perms.allows(
                ResourceType::TransactionalId,
                &r.transactional_id,
                Operation::Write,
            ) {
                Verdict::forward()
            } else {
                Verdict::answer(answer::end_txn_denied())
            }
        }
        RequestKind::TxnOffsetCommit(r) => txn_offset_commit(r, perms),
        RequestKind::OffsetDelete(r) => offset_delete(r, perms),
        RequestKind::DeleteGroups(r) => delete_groups(r, perms),
        RequestKind::CreatePartitions(r) => create_partitions(r, perms),
        RequestKind::DescribeConfigs(r) => describe_configs(r, perms),
        RequestKind::AlterConfigs(r) => alter_configs(r, perms),
        RequestKind::IncrementalAlterConfigs(r) => incremental_alter_configs(r, perms),
        RequestKind::ApiVersions(_)
        | RequestKind::SaslHandshake(_)
        | RequestKind::SaslAuthenticate(_) => Verdict::forward(),
        // Not in the enforcement table (refused before decoding already).
        _ => Verdict {
            action: Action::Refuse,
            fix: None,
        },
    }
}

fn produce(r: &mut ProduceRequest, perms: &mut dyn Permissions) -> Verdict {
    let fire_and_forget = r.acks == 0;
    if let Some(txn) = &r.transactional_id {
        if !perms.allows(ResourceType::TransactionalId, txn, Operation::Write) {
            let all = partitions_of(
                r.topic_data
                    .iter()
                    .map(|t| (&t.name, t.partition_data.iter().map(|p| p.index).collect())),
            );
            return deny_all(fire_and_forget, || {
                answer::produce_denied(
                    &all,
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                )
            });
        }
    }
    let denied = split_denied(
        &mut r.topic_data,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Write),
        |t| {
            (
                t.name.clone(),
                t.partition_data.iter().map(|p| p.index).collect(),
            )
        },
    );
    if denied.is_empty() {
        return Verdict::forward();
    }
    if r.topic_data.is_empty() {
        return deny_all(fire_and_forget, || {
            answer::produce_denied(&denied, ResponseError::TopicAuthorizationFailed.code())
        });
    }
    Verdict::forward_with(true, Some(ResponseFix::Produce(denied)))
}

fn deny_all(fire_and_forget: bool, response: impl FnOnce() -> ResponseKind) -> Verdict {
    if fire_and_forget {
        Verdict {
            action: Action::Drop,
            fix: None,
        }
    } else {
        Verdict::answer(response())
    }
}

fn partitions_of<'a>(items: impl Iterator<Item = (&'a TopicName, Vec<i32>)>) -> DeniedPartitions {
    items.map(|(t, p)| (t.clone(), p)).collect()
}

/// Fetch: Read per topic. Fetch sessions are turned off (every request a full fetch),
/// so a revoked permission takes effect on the next fetch of an open connection: an
/// incremental fetch would keep reading partitions it no longer names.
fn fetch(r: &mut FetchRequest, perms: &mut dyn Permissions) -> Verdict {
    if r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0 {
        let allowed = perms.allows(
            ResourceType::Cluster,
            CLUSTER_NAME,
            Operation::ClusterAction,
        );
        if !allowed {
            return Verdict::answer(answer::fetch_cluster_denied());
        }
    }
    let mut modified = false;
    if r.session_id != 0 || r.session_epoch != -1 || !r.forgotten_topics_data.is_empty() {
        r.session_id = 0;
        r.session_epoch = -1;
        r.forgotten_topics_data.clear();
        modified = true;
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.topic, Operation::Read),
        |t| {
            (
                t.topic.clone(),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        },
    );
    if denied.is_empty() {
        return Verdict::forward_with(modified, None);
    }
    if r.topics.is_empty() {
        return Verdict::answer(answer::fetch_denied(&denied));
    }
    Verdict::forward_with(true, Some(ResponseFix::Fetch(denied)))
}

/// Metadata: a named topic needs Describe (else TOPIC_AUTHORIZATION_FAILED, and the
/// broker never hears of it); listing all topics hides those without Describe;
/// auto-creation needs Create. In v0 the topic list cannot be null and an empty one means
/// "all topics", so it is filtered like a null list of a later version. An entry with a
/// topic id (v10+) is authorized by the name the id stands for ([`topic_id`]).
fn metadata(r: &mut MetadataRequest, version: i16, perms: &mut dyn Permissions) -> Verdict {
    let topic_ops = r.include_topic_authorized_operations && version >= 8;
    let cluster_ops = r.include_cluster_authorized_operations && (8..=10).contains(&version);
    let mut modified = false;
    let mut denied = Vec::new();
    let mut only = None;
    let list_all = match &mut r.topics {
        None => true,
        Some(topics) if version == 0 && topics.is_empty() => true,
        Some(topics) => {
            let before = topics.len();
            let by_id = topics.iter().any(|t| !t.topic_id.is_nil());
            let (expected, refused) = topic_id::authorize_entries(
                topics,
                |t| (t.name.as_ref(), t.topic_id),
                Operation::Describe,
                perms,
            );
            denied = refused;
            if topics.is_empty() && before > 0 && version == 0 {
                // v0 reads an empty list as "all topics".
                return Verdict::answer(answer::metadata_denied(&denied));
            }
            modified = topics.len() != before;
            if modified || by_id {
                // Only what was authorized may come back: a broker may read a list emptied
                // by the proxy as "all topics", and answers entries with ids by the id.
                only = Some(expected);
            }
            if r.allow_auto_topic_creation {
                let may_create =
                    perms.probe(ResourceType::Cluster, CLUSTER_NAME, Operation::Create)
                        || topics.iter().all(|t| {
                            t.name.as_ref().is_some_and(|n| {
                                perms.probe(ResourceType::Topic, n, Operation::Create)
                            })
                        });
                if !may_create {
                    r.allow_auto_topic_creation = false;
                    modified = true;
                }
            }
            false
        }
    };
    let fix =
        (list_all || only.is_some() || topic_ops || cluster_ops).then(|| ResponseFix::Metadata {
            hide_unauthorized: list_all,
            only,
            denied,
            topic_ops,
            cluster_ops,
        });
    Verdict::forward_with(modified, fix)
}

fn list_offsets(r: &mut ListOffsetsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Describe),
        |t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        answer::list_offsets_denied,
        ResponseFix::ListOffsets,
    )
}

fn group_read(api: ApiKey, group: &StrBytes, perms: &mut dyn Permissions) -> Verdict {
    if perms.allows(ResourceType::Group, group, Operation::Read) {
        Verdict::forward()
    } else {
        Verdict::answer(answer::group_denied(api))
    }
}

/// OffsetCommit: Read on the group (else every partition gets GROUP_AUTHORIZATION_FAILED)
/// and Read on each topic.
fn offset_commit(r: &mut OffsetCommitRequest, perms: &mut dyn Permissions) -> Verdict {
    let all: DeniedPartitions = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    if !perms.allows(ResourceType::Group, &r.group_id, Operation::Read) {
        return Verdict::answer(answer::offset_commit_denied(
            &all,
            ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Read),
        |t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        |d| answer::offset_commit_denied(d, ResponseError::TopicAuthorizationFailed.code()),
        ResponseFix::OffsetCommit,
    )
}

/// OffsetFetch (v0-7, one group): Describe on the group, Describe on each named topic;
/// asking for all topics returns only those with Describe.
fn offset_fetch(r: &mut OffsetFetchRequest, version: i16, perms: &mut dyn Permissions) -> Verdict {
    if !perms.allows(ResourceType::Group, &r.group_id, Operation::Describe) {
        return Verdict::answer(answer::offset_fetch_group_denied(r, version));
    }
    let Some(topics) = &mut r.topics else {
        return Verdict::forward_with(false, Some(ResponseFix::OffsetFetchAll));
    };
    let denied = split_denied(
        topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Describe),
        |t| (t.name.clone(), t.partition_indexes.clone()),
    );
    settle(
        denied,
        Vec::is_empty,
        topics.is_empty(),
        answer::offset_fetch_denied,
        ResponseFix::OffsetFetch,
    )
}

/// FindCoordinator: Describe on the group (key type 0) or transactional id (key type 1).
fn find_coordinator(
    r: &mut FindCoordinatorRequest,
    version: i16,
    perms: &mut dyn Permissions,
) -> Verdict {
    let (resource, code) = match r.key_type {
        0 => (
            ResourceType::Group,
            ResponseError::GroupAuthorizationFailed.code(),
        ),
        1 => (
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ),
        // Share-group and unknown key types: nothing the proxy can authorize.
        _ => return Verdict::answer(answer::find_coordinator_unknown_key_type(r, version)),
    };
    if version < 4 {
        return if perms.allows(resource, &r.key, Operation::Describe) {
            Verdict::forward()
        } else {
            Verdict::answer(answer::find_coordinator_denied(
                std::slice::from_ref(&r.key),
                code,
                version,
            ))
        };
    }
    let denied = split_denied(
        &mut r.coordinator_keys,
        |k| perms.allows(resource, k, Operation::Describe),
        Clone::clone,
    );
    settle(
        denied,
        Vec::is_empty,
        r.coordinator_keys.is_empty(),
        |d| answer::find_coordinator_denied(d, code, version),
        |denied| ResponseFix::FindCoordinator { denied, code },
    )
}

fn create_topics(r: &mut CreateTopicsRequest, perms: &mut dyn Permissions) -> Verdict {
    if perms.probe(ResourceType::Cluster, CLUSTER_NAME, Operation::Create) {
        return Verdict::forward();
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Create),
        |t| t.name.clone(),
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        |d| answer::create_topics_denied(d),
        ResponseFix::CreateTopics,
    )
}

/// DeleteTopics: Delete on each topic. v6 names each topic by name or by id: an id is
/// authorized by the name the proxy resolves it to ([`topic_id`]).
fn delete_topics(r: &mut DeleteTopicsRequest, perms: &mut dyn Permissions) -> Verdict {
    let mut denied = split_denied(
        &mut r.topic_names,
        |t| perms.allows(ResourceType::Topic, t, Operation::Delete),
        |t| DeniedTopic {
            name: Some(t.clone()),
            id: uuid::Uuid::nil(),
            error_code: ResponseError::TopicAuthorizationFailed.code(),
        },
    );
    let (_, refused) = topic_id::authorize_entries(
        &mut r.topics,
        |t| (t.name.as_ref(), t.topic_id),
        Operation::Delete,
        perms,
    );
    denied.extend(refused);
    settle(
        denied,
        Vec::is_empty,
        r.topic_names.is_empty() && r.topics.is_empty(),
        |d| answer::delete_topics_denied(d),
        ResponseFix::DeleteTopics,
    )
}

/// InitProducerId: Write on the transactional id; an idempotent producer without one
/// needs IdempotentWrite on the cluster.
fn init_producer_id(r: &mut InitProducerIdRequest, perms: &mut dyn Permissions) -> Verdict {
    let (allowed, code) = match &r.transactional_id {
        Some(txn) => (
            perms.allows(ResourceType::TransactionalId, txn, Operation::Write),
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ),
        None => (
            perms.allows(
                ResourceType::Cluster,
                CLUSTER_NAME,
                Operation::IdempotentWrite,
            ),
            ResponseError::ClusterAuthorizationFailed.code(),
        ),
    };
    if allowed {
        Verdict::forward()
    } else {
        Verdict::answer(answer::init_producer_id_denied(code))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_id_tests;

/// Removes the items `allowed` refuses from `items`; returns the keys of those removed.
fn split_denied<T, K>(
    items: &mut Vec<T>,
    mut allowed: impl FnMut(&T) -> bool,
    key: impl Fn(&T) -> K,
) -> Vec<K> {
    let mut denied = Vec::new();
    items.retain(|item| {
        let ok = allowed(item);
        if !ok {
            denied.push(key(item));
        }
        ok
    });
    denied
}

/// The three outcomes of a per-item request: all allowed (forward as is), none allowed
/// (answer locally), some allowed (forward the rest, put the denied back in the response).
fn settle<D>(
    denied: D,
    is_empty: fn(&D) -> bool,
    nothing_left: bool,
    answer: impl FnOnce(&D) -> ResponseKind,
    fix: impl FnOnce(D) -> ResponseFix,
) -> Verdict {
    if is_empty(&denied) {
        Verdict::forward()
    } else if nothing_left {
        Verdict::answer(answer(&denied))
    } else {
        Verdict::forward_with(true, Some(fix(denied)))
    }
}

fn offset_for_leader_epoch(
    r: &mut OffsetForLeaderEpochRequest,
    perms: &mut dyn Permissions,
) -> Verdict {
    if r.replica_id.0 >= 0
        && !perms.allows(
            ResourceType::Cluster,
            CLUSTER_NAME,
            Operation::ClusterAction,
        )
    {
        let all = partitions_of(
            r.topics
                .iter()
                .map(|t| (&t.topic, t.partitions.iter().map(|p| p.partition).collect())),
        );
        return Verdict::answer(answer::offset_for_leader_epoch_denied(
            &all,
            ResponseError::ClusterAuthorizationFailed.code(),
        ));
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.topic, Operation::Describe),
        |t| {
            (
                t.topic.clone(),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        |d| {
            answer::offset_for_leader_epoch_denied(
                d,
                ResponseError::TopicAuthorizationFailed.code(),
            )
        },
        ResponseFix::OffsetForLeaderEpoch,
    )
}

fn delete_records(r: &mut DeleteRecordsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Delete),
        |t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        answer::delete_records_denied,
        ResponseFix::DeleteRecords,
    )
}

/// AddPartitionsToTxn v0-3: Write on the transactional id and on every topic. As in
/// Kafka, one unauthorized topic fails the whole request (the others get
/// OPERATION_NOT_ATTEMPTED), so nothing is forwarded.
fn add_partitions_to_txn(
    r: &mut AddPartitionsToTxnRequest,
    perms: &mut dyn Permissions,
) -> Verdict {
    let all: Vec<(TopicName, Vec<i32>, bool)> = r
        .v3_and_below_topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions.clone(), true))
        .collect();
    if !perms.allows(
        ResourceType::TransactionalId,
        &r.v3_and_below_transactional_id,
        Operation::Write,
    ) {
        return Verdict::answer(answer::add_partitions_to_txn_denied(
            &all,
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ));
    }
    let checked: Vec<(TopicName, Vec<i32>, bool)> = all
        .into_iter()
        .map(|(t, p, _)| {
            let ok = perms.allows(ResourceType::Topic, &t, Operation::Write);
            (t, p, ok)
        })
        .collect();
    if checked.iter().all(|(_, _, ok)| *ok) {
        Verdict::forward()
    } else {
        Verdict::answer(answer::add_partitions_to_txn_denied(
            &checked,
            ResponseError::TopicAuthorizationFailed.code(),
        ))
    }
}

/// AddOffsetsToTxn: Write on the transactional id, Read on the group.
fn add_offsets_to_txn(r: &AddOffsetsToTxnRequest, perms: &mut dyn Permissions) -> Verdict {
    if !perms.allows(
        ResourceType::TransactionalId,
        &r.transactional_id,
        Operation::Write,
    ) {
        return Verdict::answer(answer::add_offsets_to_txn_denied(
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ));
    }
    if !perms.allows(ResourceType::Group, &r.group_id, Operation::Read) {
        return Verdict::answer(answer::add_offsets_to_txn_denied(
            ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    Verdict::forward()
}

/// TxnOffsetCommit: Write on the transactional id, Read on the group, Read on each topic.
fn txn_offset_commit(r: &mut TxnOffsetCommitRequest, perms: &mut dyn Permissions) -> Verdict {
    let all = || {
        partitions_of(r.topics.iter().map(|t| {
            (
                &t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        }))
    };
    if !perms.allows(
        ResourceType::TransactionalId,
        &r.transactional_id,
        Operation::Write,
    ) {
        return Verdict::answer(answer::txn_offset_commit_denied(
            &all(),
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ));
    }
    if !perms.allows(ResourceType::Group, &r.group_id, Operation::Read) {
        return Verdict::answer(answer::txn_offset_commit_denied(
            &all(),
            ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Read),
        |t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        |d| answer::txn_offset_commit_denied(d, ResponseError::TopicAuthorizationFailed.code()),
        ResponseFix::TxnOffsetCommit,
    )
}

/// OffsetDelete: Delete on the group, Read on each topic.
fn offset_delete(r: &mut OffsetDeleteRequest, perms: &mut dyn Permissions) -> Verdict {
    if !perms.allows(ResourceType::Group, &r.group_id, Operation::Delete) {
        return Verdict::answer(answer::offset_delete_group_denied());
    }
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Read),
        |t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        answer::offset_delete_denied,
        ResponseFix::OffsetDelete,
    )
}

fn delete_groups(r: &mut DeleteGroupsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied(
        &mut r.groups_names,
        |g| perms.allows(ResourceType::Group, g, Operation::Delete),
        Clone::clone,
    );
    settle(
        denied,
        Vec::is_empty,
        r.groups_names.is_empty(),
        |d| answer::delete_groups_denied(d),
        ResponseFix::DeleteGroups,
    )
}

fn create_partitions(r: &mut CreatePartitionsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied(
        &mut r.topics,
        |t| perms.allows(ResourceType::Topic, &t.name, Operation::Alter),
        |t| t.name.clone(),
    );
    settle(
        denied,
        Vec::is_empty,
        r.topics.is_empty(),
        |d| answer::create_partitions_denied(d),
        ResponseFix::CreatePartitions,
    )
}

/// Config resource types (`ConfigResource.Type` in Kafka).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;
const CONFIG_CLIENT_METRICS: i8 = 16;
const CONFIG_GROUP: i8 = 32;

/// Whether `op` is allowed on a config resource; `Err` carries the error code of a denial.
fn config_access(
    perms: &mut dyn Permissions,
    resource_type: i8,
    name: &str,
    op: Operation,
) -> Result<(), i16> {
    let (resource, name, code) = match resource_type {
        CONFIG_TOPIC => (
            ResourceType::Topic,
            name,
            ResponseError::TopicAuthorizationFailed.code(),
        ),
        CONFIG_GROUP => (
            ResourceType::Group,
            name,
            ResponseError::GroupAuthorizationFailed.code(),
        ),
        CONFIG_BROKER | CONFIG_BROKER_LOGGER | CONFIG_CLIENT_METRICS => (
            ResourceType::Cluster,
            CLUSTER_NAME,
            ResponseError::ClusterAuthorizationFailed.code(),
        ),
        _ => return Err(ResponseError::InvalidRequest.code()),
    };
    if perms.allows(resource, name, op) {
        Ok(())
    } else {
        Err(code)
    }
}

/// A config resource the principal may not touch: (type, name, error code).
pub type DeniedConfig = (i8, StrBytes, i16);

/// Removes the config resources `op` is denied on; returns them with their error codes.
fn split_denied_configs<T>(
    resources: &mut Vec<T>,
    id: impl Fn(&T) -> (i8, &StrBytes),
    op: Operation,
    perms: &mut dyn Permissions,
) -> Vec<DeniedConfig> {
    let mut denied = Vec::new();
    resources.retain(|c| {
        let (kind, name) = id(c);
        match config_access(perms, kind, name, op) {
            Ok(()) => true,
            Err(code) => {
                denied.push((kind, name.clone(), code));
                false
            }
        }
    });
    denied
}

fn describe_configs(r: &mut DescribeConfigsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied_configs(
        &mut r.resources,
        |c| (c.resource_type, &c.resource_name),
        Operation::DescribeConfigs,
        perms,
    );
    settle(
        denied,
        Vec::is_empty,
        r.resources.is_empty(),
        |d| answer::describe_configs_denied(d),
        ResponseFix::DescribeConfigs,
    )
}

fn alter_configs(r: &mut AlterConfigsRequest, perms: &mut dyn Permissions) -> Verdict {
    let denied = split_denied_configs(
        &mut r.resources,
        |c| (c.resource_type, &c.resource_name),
        Operation::AlterConfigs,
        perms,
    );
    settle(
        denied,
        Vec::is_empty,
        r.resources.is_empty(),
        |d| answer::alter_configs_denied(d),
        ResponseFix::AlterConfigs,
    )
}

fn incremental_alter_configs(
    r: &mut IncrementalAlterConfigsRequest,
    perms: &mut dyn Permissions,
) -> Verdict {
    let denied = split_denied_configs(
        &mut r.resources,
        |c| (c.resource_type, &c.resource_name),
        Operation::AlterConfigs,
        perms,
    );
    settle(
        denied,
        Vec::is_empty,
        r.resources.is_empty(),
        |d| answer::incremental_alter_configs_denied(d),
        ResponseFix::IncrementalAlterConfigs,
    )
}
