//! The proxy's side of the audit log: anchoring checkpoints in a Kafka topic so a
//! rolled-back log is caught, and per-principal budgets so one client cannot flood it.

pub mod anchor_alarm;
pub mod budget;
pub mod kafka_anchor;
