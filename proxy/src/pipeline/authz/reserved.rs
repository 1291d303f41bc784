//! Topics the proxy keeps for itself: clients may read and describe them (as the policy
//! allows) but never write, delete or reconfigure them, whatever the policy says, super-users
//! included.
//!
//! Today that is the audit anchor topic (`audit.log.anchor_topic`): a client that could write
//! to it could plant notes that stop the proxy from starting, and one that could delete it or
//! shorten its retention would silently take rollback detection away. The guard is consulted
//! by [`crate::pipeline::authz::ConnectionPermissions`] before the policy, so a refusal is
//! answered with Kafka's TOPIC_AUTHORIZATION_FAILED and audited as a deny with the rule text
//! of the reservation. Without `[authorization]` the proxy decodes and authorizes nothing, so
//! nothing is guarded either (the proxy warns at start-up).

use std::collections::HashMap;

use portcullis_policy::{Operation, ResourceType};

/// The rule text of a refusal on the audit anchor topic.
pub const ANCHOR_TOPIC_RULE: &str = "reserved: audit anchor topic (audit.log.anchor_topic)";

/// The operations refused on a reserved topic: Produce (Write), DeleteTopics and
/// DeleteRecords (Delete), CreatePartitions (Alter), AlterConfigs and
/// IncrementalAlterConfigs (AlterConfigs).
pub const REFUSED_OPERATIONS: [Operation; 4] = [
    Operation::Write,
    Operation::Delete,
    Operation::Alter,
    Operation::AlterConfigs,
];

/// Reserved topic names and the rule text their refusals carry.
#[derive(Debug, Clone, Default)]
pub struct ReservedTopics {
    topics: HashMap<String, &'static str>,
}

impl ReservedTopics {
    /// The reservations a configuration implies: its audit anchor topic, if any.
    pub fn of_config(config: &crate::config::Config) -> ReservedTopics {
        let mut reserved = ReservedTopics::default();
        if let Some(topic) = &config.audit.log.anchor_topic {
            reserved.reserve(topic, ANCHOR_TOPIC_RULE);
        }
        reserved
    }

    /// Reserves `topic`; refusals are audited with `rule`.
    pub fn reserve(&mut self, topic: &str, rule: &'static str) {
        self.topics.insert(topic.to_string(), rule);
    }

    /// Whether nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The rule text refusing `op` on the resource, if it is a reserved topic and `op` would
    /// change it.
    pub fn refusal(
        &self,
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Option<&'static str> {
        if resource != ResourceType::Topic || !REFUSED_OPERATIONS.contains(&op) {
            return None;
        }
        self.topics.get(name).copied()
    }
}
