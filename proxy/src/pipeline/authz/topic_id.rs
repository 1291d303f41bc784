//! Topics named by id: what an entry of a request really names, before it is authorized
//! (Metadata v10+, DeleteTopics v6).
//!
//! Why: from Metadata v10 a request entry carries a `topic_id` next to its `name`, and a
//! broker from Kafka 3.1 on looks the topic up by the id when one is given. Authorizing the
//! name alone would let a client allowed to describe `public` send
//! `{name: "public", topic_id: <id of secret>}` and be told about `secret`. So the proxy
//! resolves every non-nil id through its own view of the cluster
//! ([`crate::cluster::topic_ids`]) and authorizes the name the id stands for:
//!
//! - an id the proxy does not know is answered UNKNOWN_TOPIC_ID and never forwarded;
//! - a name next to the id of another topic is refused (UNKNOWN_TOPIC_ID as well, so the
//!   answer says no more than for an id that does not exist) and audited;
//! - an id alone is authorized by the name it resolves to, and a denial is answered without
//!   that name.

use std::collections::HashSet;

use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::TopicName;
use kafka_protocol::ResponseError;
use portcullis_policy::{Operation, ResourceType};
use uuid::Uuid;

use crate::pipeline::authz::request::Permissions;
use crate::pipeline::authz::response::DeniedTopic;

/// The audit rule of a refused name / id pair.
pub const MISMATCH_RULE: &str = "topic id mismatch: the entry's topic id names another topic";

/// What one request entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A topic, by its name: authorize this name. Either the entry had no id, or its id
    /// resolved to this name (and the entry's name, if any, agrees).
    Topic(TopicName),
    /// An id the proxy does not know (or an entry with neither a name nor an id).
    UnknownId(Uuid),
    /// A name next to the id of another topic.
    Mismatch(IdMismatch),
}

/// An entry whose name and id name different topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMismatch {
    /// The name the client sent.
    pub claimed: TopicName,
    /// The id the client sent.
    pub id: Uuid,
    /// The topic that id really names.
    pub actual: TopicName,
}

/// Resolves an entry's `name` and `id` (the nil id: none) through `perms`' view of the
/// cluster's topic ids.
pub fn resolve(name: Option<&TopicName>, id: Uuid, perms: &mut dyn Permissions) -> Named {
    if id.is_nil() {
        return match name {
            Some(name) => Named::Topic(name.clone()),
            None => Named::UnknownId(id),
        };
    }
    match (perms.topic_name(id), name) {
        (None, _) => Named::UnknownId(id),
        (Some(actual), Some(claimed)) if *claimed != actual => Named::Mismatch(IdMismatch {
            claimed: claimed.clone(),
            id,
            actual,
        }),
        (Some(actual), _) => Named::Topic(actual),
    }
}

/// Authorizes `op` on every entry of a request naming topics by name and / or id (`key`
/// gives an entry's name and id), removing the refused entries. Returns the topics the
/// broker may answer about, and the refused entries with their answers: carrying only the
/// name and id the client sent, TOPIC_AUTHORIZATION_FAILED for a denied topic,
/// UNKNOWN_TOPIC_ID for an unknown id or a name next to another topic's id (audited once
/// per request through [`Permissions::topic_id_mismatches`]).
pub fn authorize_entries<T>(
    entries: &mut Vec<T>,
    key: impl Fn(&T) -> (Option<&TopicName>, Uuid),
    op: Operation,
    perms: &mut dyn Permissions,
) -> (ExpectedTopics, Vec<DeniedTopic>) {
    let mut expected = ExpectedTopics::default();
    let mut refused = Vec::new();
    let mut mismatches = Vec::new();
    entries.retain(|entry| {
        let (name, id) = key(entry);
        let sent = |error_code: i16| DeniedTopic {
            name: name.cloned(),
            id,
            error_code,
        };
        match resolve(name, id, perms) {
            Named::Topic(topic) => {
                let ok = perms.allows(ResourceType::Topic, &topic, op);
                if ok {
                    expected.add(topic, id);
                } else {
                    refused.push(sent(ResponseError::TopicAuthorizationFailed.code()));
                }
                ok
            }
            Named::UnknownId(_) => {
                refused.push(sent(ResponseError::UnknownTopicId.code()));
                false
            }
            Named::Mismatch(m) => {
                refused.push(sent(ResponseError::UnknownTopicId.code()));
                mismatches.push(m);
                false
            }
        }
    });
    if !mismatches.is_empty() {
        perms.topic_id_mismatches(&mismatches);
    }
    (expected, refused)
}

/// The topics a forwarded request may be answered about: the broker's answer keeps only
/// these (by name, or for a topic answered without a name, by id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedTopics {
    names: HashSet<TopicName>,
    ids: HashSet<Uuid>,
}

impl ExpectedTopics {
    /// Adds a topic the request may be answered about (`id` nil: named only).
    pub fn add(&mut self, name: TopicName, id: Uuid) {
        self.names.insert(name);
        if !id.is_nil() {
            self.ids.insert(id);
        }
    }

    /// Whether the broker's answer may keep `topic`.
    pub fn admits(&self, topic: &MetadataResponseTopic) -> bool {
        match &topic.name {
            Some(name) => self.names.contains(name),
            None => !topic.topic_id.is_nil() && self.ids.contains(&topic.topic_id),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Knows the ids of `public` and `secret`.
    struct Ids(HashMap<Uuid, TopicName>);

    impl Permissions for Ids {
        fn allows(&mut self, _: ResourceType, _: &str, _: Operation) -> bool {
            true
        }
        fn topic_name(&mut self, id: Uuid) -> Option<TopicName> {
            self.0.get(&id).cloned()
        }
    }

    const PUBLIC: Uuid = Uuid::from_u128(0x1111);
    const SECRET: Uuid = Uuid::from_u128(0x2222);

    fn name(n: &str) -> TopicName {
        TopicName(n.to_string().into())
    }

    fn ids() -> Ids {
        Ids(HashMap::from([
            (PUBLIC, name("public")),
            (SECRET, name("secret")),
        ]))
    }

    #[test]
    fn an_id_is_authorized_by_the_name_it_stands_for() {
        let mut perms = ids();
        assert_eq!(
            resolve(None, SECRET, &mut perms),
            Named::Topic(name("secret"))
        );
        assert_eq!(
            resolve(Some(&name("public")), PUBLIC, &mut perms),
            Named::Topic(name("public"))
        );
        assert_eq!(
            resolve(Some(&name("public")), Uuid::nil(), &mut perms),
            Named::Topic(name("public")),
            "no id: the name"
        );
    }

    #[test]
    fn a_name_next_to_another_topics_id_is_a_mismatch() {
        let mut perms = ids();
        assert_eq!(
            resolve(Some(&name("public")), SECRET, &mut perms),
            Named::Mismatch(IdMismatch {
                claimed: name("public"),
                id: SECRET,
                actual: name("secret"),
            })
        );
    }

    #[test]
    fn unknown_ids_and_empty_entries_are_unknown() {
        let mut perms = ids();
        let other = Uuid::from_u128(0x3333);
        assert_eq!(resolve(None, other, &mut perms), Named::UnknownId(other));
        assert_eq!(
            resolve(Some(&name("public")), other, &mut perms),
            Named::UnknownId(other),
            "the name does not vouch for an id the proxy cannot check"
        );
        assert_eq!(
            resolve(None, Uuid::nil(), &mut perms),
            Named::UnknownId(Uuid::nil())
        );
    }

    #[test]
    fn expected_topics_admit_by_name_or_nameless_by_id() {
        let mut expected = ExpectedTopics::default();
        expected.add(name("public"), PUBLIC);
        let topic = |n: Option<&str>, id: Uuid| {
            MetadataResponseTopic::default()
                .with_name(n.map(name))
                .with_topic_id(id)
        };
        assert!(expected.admits(&topic(Some("public"), PUBLIC)));
        assert!(expected.admits(&topic(None, PUBLIC)));
        assert!(!expected.admits(&topic(Some("secret"), SECRET)));
        assert!(!expected.admits(&topic(Some("secret"), PUBLIC)));
        assert!(!expected.admits(&topic(None, SECRET)));
        assert!(!expected.admits(&topic(None, Uuid::nil())));
    }
}
