//! Metadata entries with topic ids (v10+), through the request and response sides: an id
//! is authorized by the name the proxy resolves it to, never by the name sent next to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::*;
use crate::pipeline::authz::response::fix_response;

const PUBLIC: Uuid = Uuid::from_u128(0x1111);
const SECRET: Uuid = Uuid::from_u128(0x2222);
const UNKNOWN: Uuid = Uuid::from_u128(0x3333);

/// bob: may describe `public`; knows the ids of `public` and `secret`.
#[derive(Default)]
struct Bob {
    asked: HashSet<String>,
    mismatches: Vec<IdMismatch>,
}

impl Permissions for Bob {
    fn allows(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.asked.insert(name.to_string());
        resource == ResourceType::Topic && name == "public" && op == Operation::Describe
    }

    fn topic_name(&mut self, id: Uuid) -> Option<TopicName> {
        HashMap::from([(PUBLIC, "public"), (SECRET, "secret")])
            .get(&id)
            .map(|n| topic(n))
    }

    fn topic_id_mismatches(&mut self, mismatches: &[IdMismatch]) {
        self.mismatches.extend_from_slice(mismatches);
    }
}

fn topic(name: &str) -> TopicName {
    TopicName(name.to_string().into())
}

fn entry(name: Option<&str>, id: Uuid) -> MetadataRequestTopic {
    MetadataRequestTopic::default()
        .with_name(name.map(topic))
        .with_topic_id(id)
}

fn request(entries: Vec<MetadataRequestTopic>) -> RequestKind {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(entries))
        .into()
}

/// A broker's answer about `topics`, as Kafka 3.1+ gives it (by id: the real name).
fn broker_answer(topics: &[(&str, Uuid)]) -> ResponseKind {
    MetadataResponse::default()
        .with_topics(
            topics
                .iter()
                .map(|(name, id)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(topic(name)))
                        .with_topic_id(*id)
                        .with_partitions(vec![MetadataResponsePartition::default()])
                })
                .collect(),
        )
        .into()
}

fn answers(response: ResponseKind) -> Vec<(Option<String>, Uuid, i16)> {
    let ResponseKind::Metadata(r) = response else {
        panic!("not a Metadata answer")
    };
    r.topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()),
                t.topic_id,
                t.error_code,
            )
        })
        .collect()
}

#[test]
fn ids_are_resolved_mismatches_refused_and_unknown_ids_never_forwarded() {
    let mut perms = Bob::default();
    let mut r = request(vec![
        entry(Some("public"), SECRET),
        entry(None, PUBLIC),
        entry(None, SECRET),
        entry(None, UNKNOWN),
    ]);
    let verdict = authorize_request(&mut r, 12, &mut perms);
    assert!(matches!(verdict.action, Action::ForwardModified));
    let RequestKind::Metadata(forwarded) = &r else {
        panic!()
    };
    assert_eq!(
        forwarded.topics.as_deref().unwrap(),
        [entry(None, PUBLIC)],
        "only public's id goes to the broker"
    );
    assert!(
        perms.asked.contains("secret"),
        "secret's id authorized as secret"
    );
    assert_eq!(
        perms.mismatches,
        [IdMismatch {
            claimed: topic("public"),
            id: SECRET,
            actual: topic("secret"),
        }]
    );

    // Even a broker that answered about secret too would not get it through.
    let mut response = broker_answer(&[("public", PUBLIC), ("secret", SECRET)]);
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let mut got = answers(response);
    got.sort();
    let mut want = vec![
        (Some("public".to_string()), PUBLIC, 0),
        (
            Some("public".to_string()),
            SECRET,
            ResponseError::UnknownTopicId.code(),
        ),
        (None, SECRET, ResponseError::TopicAuthorizationFailed.code()),
        (None, UNKNOWN, ResponseError::UnknownTopicId.code()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_name_with_its_own_id_is_forwarded_unchanged_and_the_answer_kept_to_it() {
    let mut perms = Bob::default();
    let mut r = request(vec![entry(Some("public"), PUBLIC)]);
    let verdict = authorize_request(&mut r, 12, &mut perms);
    assert!(matches!(verdict.action, Action::Forward), "{verdict:?}");
    assert!(perms.mismatches.is_empty());
    let mut response = broker_answer(&[("public", PUBLIC), ("secret", SECRET)]);
    fix_response(
        &verdict.fix.expect("entries with ids are checked"),
        &mut response,
        &mut perms,
    );
    assert_eq!(answers(response), [(Some("public".to_string()), PUBLIC, 0)]);
}

#[test]
fn only_refused_entries_forward_an_empty_list_and_nothing_comes_back_from_it() {
    let mut perms = Bob::default();
    let mut r = request(vec![entry(Some("public"), SECRET)]);
    let verdict = authorize_request(&mut r, 12, &mut perms);
    let RequestKind::Metadata(forwarded) = &r else {
        panic!()
    };
    assert_eq!(forwarded.topics.as_deref(), Some(&[][..]));
    // A broker reading the empty list as "all topics" still shows bob nothing.
    let mut response = broker_answer(&[("public", PUBLIC), ("secret", SECRET)]);
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    assert_eq!(
        answers(response),
        [(
            Some("public".to_string()),
            SECRET,
            ResponseError::UnknownTopicId.code()
        )]
    );
}

#[test]
fn delete_topics_v6_deletes_by_the_resolved_name_only() {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    /// bob may delete `public` only.
    struct Deleter(Bob);
    impl Permissions for Deleter {
        fn allows(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
            resource == ResourceType::Topic && name == "public" && op == Operation::Delete
        }
        fn topic_name(&mut self, id: Uuid) -> Option<TopicName> {
            self.0.topic_name(id)
        }
        fn topic_id_mismatches(&mut self, mismatches: &[IdMismatch]) {
            self.0.topic_id_mismatches(mismatches);
        }
    }
    let state = |name: Option<&str>, id: Uuid| {
        DeleteTopicState::default()
            .with_name(name.map(topic))
            .with_topic_id(id)
    };
    let mut perms = Deleter(Bob::default());
    let mut r: RequestKind = DeleteTopicsRequest::default()
        .with_topics(vec![
            state(Some("public"), SECRET),
            state(None, PUBLIC),
            state(None, SECRET),
            state(None, UNKNOWN),
        ])
        .into();
    let verdict = authorize_request(&mut r, 6, &mut perms);
    let RequestKind::DeleteTopics(forwarded) = &r else {
        panic!()
    };
    assert_eq!(forwarded.topics, [state(None, PUBLIC)]);
    assert_eq!(perms.0.mismatches.len(), 1);
    let mut response: ResponseKind = DeleteTopicsResponse::default().into();
    fix_response(&verdict.fix.unwrap(), &mut response, &mut perms);
    let ResponseKind::DeleteTopics(response) = response else {
        panic!()
    };
    let got: Vec<_> = response
        .responses
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()),
                t.topic_id,
                t.error_code,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("public".to_string()),
                SECRET,
                ResponseError::UnknownTopicId.code()
            ),
            (None, SECRET, ResponseError::TopicAuthorizationFailed.code()),
            (None, UNKNOWN, ResponseError::UnknownTopicId.code()),
        ]
    );
}
