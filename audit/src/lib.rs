//! Audit events for Portcullis, and the sinks that record them.
//!
//! Every authentication, every denial, every admin action and every policy or key change the
//! proxy makes is an [`Event`]. This crate owns that schema so the proxy and the admin tools
//! (query, verify, export) agree on it without depending on each other, and it owns the path an
//! event takes from a connection task to durable storage.
//!
//! That path is split in two so auditing can never stall Kafka traffic:
//!
//! - [`AuditSink::emit`] is called on the request path. It never blocks and never awaits: the
//!   event goes into a bounded queue, or, if the queue is full, it is dropped and counted.
//!   Losses are not silent: the writer records an `audit-system` / `audit.dropped` event
//!   saying how many events were lost.
//! - [`AuditLog`] is the tamper-evident log: one sequencer thread appends queued events in
//!   group commits (one fsync per batch) to a Merkle tree (RFC 6962/9162, [`merkle`]) stored in
//!   sled ([`sled_store`]), and signs C2SP checkpoints with an Ed25519 key ([`checkpoint`],
//!   [`note`]). [`AuditLog::record`] is the awaitable path for `sync` categories: it returns once
//!   the event is durable, and applies the category's `reject`/`permit` failure policy
//!   ([`config`]).
//!
//! The read side ([`read`], [`verify`], [`export`]) works on a stopped proxy's data directory
//! through the CLI ([`cli`]) and on a running log through the admin router ([`admin_api`]).
//! See `docs/audit.md` for formats and the auditor's procedure.
//!
//! On shutdown, [`AuditLog::shutdown`] writes and flushes everything already queued.
//!
//! Events must never carry secrets or record payloads; see [`Event`].

pub mod admin_api;
pub mod anchor;
pub mod anchor_check;
pub mod checkpoint;
pub mod cli;
pub mod config;
mod entry_head;
mod error;
mod event;
pub mod export;
pub mod key_chain;
pub mod key_file;
mod log;
pub mod merkle;
pub mod note;
pub mod ocsf;
pub mod read;
pub mod remote;
mod sequencer;
mod sink;
pub mod sled_store;
pub mod store;
pub mod verify;

pub use config::{AuditLogConfig, Durability, FailurePolicy};
pub use error::AuditError;
pub use event::{
    new_event_id, ApiRef, Category, ClientId, Event, Outcome, Resource, MAX_CLIENT_ID_BYTES,
    SCHEMA_VERSION,
};
pub use log::{AuditLog, AuditRejected, AuditStats, OpenError, Recorded, Seq, KEY_FILE, STORE_DIR};
pub use sequencer::{WriteFailed, KEY_ROTATE_ACTION};
pub use sink::{AuditSink, EmitOutcome, MemorySink, NullSink, RecordFuture};
