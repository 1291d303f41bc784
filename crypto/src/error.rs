//! The error of every keyring and record operation.
//!
//! Variants are precise so the proxy can map them to the right Kafka behaviour (an unknown
//! DEK may just be a replica that has not caught up; a shredded topic never will) and so an
//! operator reading a log line knows what happened. No variant carries key material.

use crate::dek_id::DekId;

/// Why an encryption, decryption or key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The record has no `portcullis.enc` marker header: it was never encrypted.
    #[error("record is not encrypted (no {} header)", crate::MARKER_HEADER)]
    NotEncrypted,
    /// The record to encrypt already carries a `portcullis.enc` header (refused so a client
    /// cannot forge the marker).
    #[error("record already carries a {} header", crate::MARKER_HEADER)]
    AlreadyEncrypted,
    /// The bytes are not a valid encrypted value or marker.
    #[error("malformed encrypted record: {0}")]
    BadFormat(#[from] crate::FormatError),
    /// The DEK the record names is not in the registry (never created here, or not yet
    /// replicated, or destroyed without a shred).
    #[error("unknown DEK {dek_id} for topic {topic:?}")]
    UnknownDek {
        /// The topic.
        topic: String,
        /// The DEK id the record carries.
        dek_id: DekId,
    },
    /// The topic was crypto-shredded: its keys are destroyed and its records can never be
    /// decrypted (and no new records are encrypted for it).
    #[error("topic {topic:?} was crypto-shredded; its records cannot be decrypted")]
    Shredded {
        /// The topic.
        topic: String,
    },
    /// The value did not authenticate: modified bytes, or associated data that does not match
    /// (copied from another topic, another header, or another position).
    #[error("encrypted value in topic {topic:?} (DEK {dek_id}) failed authentication: tampered, or copied from another topic or header")]
    Tampered {
        /// The topic it was read from.
        topic: String,
        /// The DEK id it carries.
        dek_id: DekId,
    },
    /// The operation was asked to use cached keys only ([`crate::KeyAccess::CachedOnly`])
    /// and would have had to create or load a key: repeat it with
    /// [`crate::KeyAccess::Load`] where blocking is allowed.
    #[error("a key of topic {topic:?} is not in memory and must be created or loaded")]
    KeyNotCached {
        /// The topic.
        topic: String,
    },
    /// The topic has no keys yet (key operations on a topic that never encrypted).
    #[error("topic {topic:?} has no encryption keys")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// A DEK refers to a KEK version that is not in the registry.
    #[error("KEK version {version} of topic {topic:?} is missing from the registry")]
    KekMissing {
        /// The topic.
        topic: String,
        /// The missing version.
        version: u32,
    },
    /// A stored wrapped DEK does not unwrap under its KEK.
    #[error(
        "wrapped DEK {dek_id} of topic {topic:?} does not unwrap under KEK version {kek_version}"
    )]
    DekUnwrap {
        /// The topic.
        topic: String,
        /// The DEK.
        dek_id: DekId,
        /// The KEK version it names.
        kek_version: u32,
    },
    /// Destroying a KEK version that DEKs still depend on was refused.
    #[error(
        "KEK version {version} of topic {topic:?} still wraps {deks} DEK(s); rewrap them first"
    )]
    KekInUse {
        /// The topic.
        topic: String,
        /// The version.
        version: u32,
        /// How many DEKs still use it.
        deks: usize,
    },
    /// Destroying the current KEK version was refused.
    #[error("KEK version {version} is the current version of topic {topic:?}; rotate first")]
    KekIsCurrent {
        /// The topic.
        topic: String,
        /// The version.
        version: u32,
    },
    /// KEK versions are exhausted (2^32 - 1 rotations).
    #[error("topic {topic:?} has no KEK version left")]
    KekVersionsExhausted {
        /// The topic.
        topic: String,
    },
    /// One record needs more sealed parts (value plus header values) than a DEK may seal.
    #[error("record needs {parts} encryptions, more than the {limit} a DEK may do")]
    TooManyParts {
        /// Sealed parts the record needs.
        parts: u64,
        /// The configured per-DEK limit.
        limit: u64,
    },
    /// The topic name is not a legal Kafka topic name.
    #[error(transparent)]
    InvalidTopic(#[from] crate::topic_name::InvalidTopic),
    /// The root-key provider failed.
    #[error(transparent)]
    Provider(#[from] crate::ProviderError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] crate::RegistryError),
    /// The OS random generator failed.
    #[error(transparent)]
    Random(#[from] crate::RandomError),
    /// The cipher backend refused an operation (key setup or an oversized input).
    #[error(transparent)]
    Cipher(#[from] crate::AeadError),
}
