//! The proxy's side of the audit log that needs the Kafka cluster: anchoring checkpoints
//! in a topic so a rolled-back log is caught.

pub mod anchor_alarm;
pub mod kafka_anchor;
