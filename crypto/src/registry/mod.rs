//! The key registry: where wrapped keys live, behind a small byte-level trait.
//!
//! Why a byte-level trait: the same `(key, value)` pairs are meant to travel later through a
//! compacted Kafka topic so that a fleet of proxies shares its keys, and a compacted topic is
//! exactly a byte map where a tombstone deletes. Keeping the trait at that level makes the
//! sled file, the in-memory test map and the future topic hold identical bytes; [`Registry`]
//! adds the typed view on top. The registry holds wrapped keys only: a stolen registry
//! without the root key reveals topic names, versions and ids, never a key.
//!
//! Record layout (documented with examples in `docs/encryption-format.md`):
//!
//! | key                                   | value (JSON, `"v": 1`)            |
//! |---------------------------------------|-----------------------------------|
//! | `topic/<topic>`                       | [`TopicRecord`]: current KEK version, state (active/shredded) |
//! | `kek/<topic>/<version, 10 digits>`    | [`KekRecord`]: the KEK wrapped by the root key |
//! | `dek/<topic>/<dek id, 32 hex>`        | [`DekRecord`]: the DEK wrapped by a KEK version |
//!
//! A destroyed KEK version or DEK is a deleted key (a tombstone on a compacted topic). A
//! shredded topic keeps its `topic/` record with state `shredded`, so reads fail with a clear
//! "shredded" error rather than "unknown key".

pub(crate) mod base64_bytes;
mod memory;
mod record_key;
mod records;
mod sled_store;
mod typed;

pub use memory::MemoryStore;
pub use record_key::RecordKey;
pub use records::{
    DekRecord, DekState, KekRecord, KeyRecord, TopicRecord, TopicState, RECORD_FORMAT,
    RECORD_VERSION,
};
pub use sled_store::SledStore;
pub use typed::Registry;

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The storage backend failed (I/O, a closed database, an injected fault in tests).
    #[error("key registry storage failed: {0}")]
    Backend(String),
    /// A stored record does not decode or does not match its key.
    #[error("key registry record {key:?} is damaged: {what}")]
    Damaged {
        /// The registry key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A record was written with a newer record version than this build understands.
    #[error("key registry record {key:?} has version {version}; this build reads version {RECORD_VERSION}")]
    UnsupportedVersion {
        /// The registry key.
        key: String,
        /// The version found.
        version: u32,
    },
}

/// One stored `(key, value)` pair.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Durable byte map holding the registry's records.
///
/// Every `put` and `delete` must be durable when it returns (the key hierarchy's operations
/// are ordered so that each completed write leaves every record readable; a write that is
/// only buffered would break that after a crash).
pub trait RegistryStore: Send + Sync {
    /// The value stored under `key`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] if the store cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError>;

    /// Stores `value` under `key`, replacing any previous value, durably.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] if the write did not become durable.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), RegistryError>;

    /// Removes `key` durably (a tombstone when replicated). Removing a missing key succeeds.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] if the delete did not become durable.
    fn delete(&self, key: &[u8]) -> Result<(), RegistryError>;

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] if the store cannot be read.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, RegistryError>;
}
