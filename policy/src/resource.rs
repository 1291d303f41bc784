//! Kafka's ACL vocabulary: resource types and operations, with Kafka's implication rules.

use std::fmt;

/// A kind of Kafka resource a request can touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// A topic, by name.
    Topic,
    /// A consumer group, by group id.
    Group,
    /// A transactional producer, by transactional id.
    TransactionalId,
    /// The cluster itself (its name is always `kafka-cluster`, as in Kafka).
    Cluster,
}

/// The resource name Kafka uses for the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

impl ResourceType {
    /// Every resource type.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::TransactionalId,
        ResourceType::Cluster,
    ];

    /// The name used in policy files and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::TransactionalId => "transactional_id",
            ResourceType::Cluster => "cluster",
        }
    }

    /// Parses a resource type, case-insensitively; Kafka's spelling (`TransactionalId`) is
    /// accepted as well as `transactional_id`.
    pub fn parse(s: &str) -> Option<ResourceType> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "topic" => Some(ResourceType::Topic),
            "group" => Some(ResourceType::Group),
            "transactional_id" | "transactionalid" => Some(ResourceType::TransactionalId),
            "cluster" => Some(ResourceType::Cluster),
            _ => None,
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kafka ACL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Read records, commit and fetch group offsets.
    Read,
    /// Produce records.
    Write,
    /// Create topics (and auto-create through Metadata).
    Create,
    /// Delete topics, records and groups.
    Delete,
    /// Alter partitions and similar.
    Alter,
    /// See that the resource exists and read its metadata.
    Describe,
    /// Cluster-internal actions.
    ClusterAction,
    /// Read configuration.
    DescribeConfigs,
    /// Change configuration.
    AlterConfigs,
    /// Idempotent produce (cluster-level in old Kafka versions).
    IdempotentWrite,
    /// Every operation.
    All,
}

impl Operation {
    /// Every operation, `All` last.
    pub const ALL: [Operation; 11] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::All,
    ];

    /// The name used in policy files and audit events (Kafka's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Delete => "Delete",
            Operation::Alter => "Alter",
            Operation::Describe => "Describe",
            Operation::ClusterAction => "ClusterAction",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
            Operation::All => "All",
        }
    }

    /// Parses an operation name, case-insensitively (`Write`, `write`, `WRITE`).
    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
    }

    /// Operations whose *allow* also allows `self`, `self` first: Kafka lets Read, Write,
    /// Delete or Alter imply Describe, AlterConfigs imply DescribeConfigs, and All imply
    /// everything. Denies are not widened this way: only a deny of `self` or of `All`
    /// denies `self`.
    pub fn allowed_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter, All],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs, All],
            Read => &[Read, All],
            Write => &[Write, All],
            Create => &[Create, All],
            Delete => &[Delete, All],
            Alter => &[Alter, All],
            ClusterAction => &[ClusterAction, All],
            AlterConfigs => &[AlterConfigs, All],
            IdempotentWrite => &[IdempotentWrite, All],
            All => &[All],
        }
    }

    /// Operations whose *deny* also denies `self`: `self` and `All`.
    pub fn denied_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            All => &[All],
            Read => &[Read, All],
            Write => &[Write, All],
            Create => &[Create, All],
            Delete => &[Delete, All],
            Alter => &[Alter, All],
            Describe => &[Describe, All],
            ClusterAction => &[ClusterAction, All],
            DescribeConfigs => &[DescribeConfigs, All],
            AlterConfigs => &[AlterConfigs, All],
            IdempotentWrite => &[IdempotentWrite, All],
        }
    }

    /// Kafka's wire code for the operation (`AclOperation`), used in the
    /// `*_authorized_operations` bit fields of Metadata and Describe responses.
    pub fn kafka_code(self) -> u8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(Operation::parse(&op.as_str().to_uppercase()), Some(op));
        }
        for rt in ResourceType::ALL {
            assert_eq!(ResourceType::parse(rt.as_str()), Some(rt));
        }
        assert_eq!(
            ResourceType::parse("TransactionalId"),
            Some(ResourceType::TransactionalId)
        );
        assert_eq!(Operation::parse("Any"), None);
    }

    #[test]
    fn kafka_implications() {
        for op in [
            Operation::Read,
            Operation::Write,
            Operation::Delete,
            Operation::Alter,
        ] {
            assert!(Operation::Describe.allowed_by().contains(&op));
            assert!(!Operation::Describe.denied_by().contains(&op));
        }
        assert!(Operation::DescribeConfigs
            .allowed_by()
            .contains(&Operation::AlterConfigs));
        assert!(!Operation::Describe
            .allowed_by()
            .contains(&Operation::Create));
        for op in Operation::ALL {
            assert_eq!(op.allowed_by()[0], op);
            assert!(op.allowed_by().contains(&Operation::All));
            assert!(op.denied_by().contains(&Operation::All));
        }
    }
}
