//! Why a partition could not be encrypted or decrypted, and what the client, the audit log
//! and the metrics are told.
//!
//! Reasons are a closed set so metric labels stay bounded; the free-text detail (from the
//! crypto crate's error, which never holds key material) goes only into the audit event.

use kafka_protocol::ResponseError;
use portcullis_crypto::CryptoError;

use crate::codec::record_batch::CodecError;

/// Why a record (and so its partition) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Fetch: a record without the `portcullis.enc` marker on a topic that requires
    /// encryption (written directly to the broker).
    Plaintext,
    /// Fetch: the value did not authenticate (modified, or copied from another topic,
    /// header or position).
    Tampered,
    /// Fetch: the DEK the record names is not in the registry (never created here, copied
    /// from another topic, or destroyed).
    UnknownKey,
    /// The topic was crypto-shredded.
    Shredded,
    /// Fetch: a malformed marker header or encrypted value.
    BadFormat,
    /// Fetch: a pre-0.11 (magic 0/1) message set, which cannot carry the marker header.
    LegacyFormat,
    /// A record batch that does not decode (CRC, compression, record layout).
    Undecodable,
    /// Produce: the record already carries a `portcullis.enc` header (a forged marker).
    ForgedMarker,
    /// Produce: a header key that is not UTF-8 (the format binds header keys as text).
    BadHeaderKey,
    /// The keys could not be read or created (registry, root key provider, randomness).
    KeyUnavailable,
    /// Produce: the encrypted records would pass the request size limit (values of a few
    /// bytes grow by the format's overhead many times over).
    TooLarge,
}

impl Failure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Plaintext => "plaintext",
            Failure::Tampered => "tampered",
            Failure::UnknownKey => "unknown_key",
            Failure::Shredded => "shredded",
            Failure::BadFormat => "bad_format",
            Failure::LegacyFormat => "legacy_format",
            Failure::Undecodable => "undecodable",
            Failure::ForgedMarker => "forged_marker",
            Failure::BadHeaderKey => "bad_header_key",
            Failure::KeyUnavailable => "key_unavailable",
            Failure::TooLarge => "too_large",
        }
    }

    /// The Kafka error code a Fetch partition gets: CORRUPT_MESSAGE for a record that is
    /// not what the proxy wrote, UNKNOWN_SERVER_ERROR when the keys could not be read.
    pub fn fetch_code(self) -> i16 {
        match self {
            Failure::KeyUnavailable => ResponseError::UnknownServerError.code(),
            _ => ResponseError::CorruptMessage.code(),
        }
    }

    /// The Kafka error code a Produce partition gets: INVALID_RECORD for records the proxy
    /// will not encrypt (forged marker, non-UTF-8 header key, shredded topic),
    /// CORRUPT_MESSAGE for a batch that does not decode, MESSAGE_TOO_LARGE when the
    /// encrypted records would pass the request limit, UNKNOWN_SERVER_ERROR when the keys
    /// could not be created or read.
    pub fn produce_code(self) -> i16 {
        match self {
            Failure::KeyUnavailable => ResponseError::UnknownServerError.code(),
            Failure::TooLarge => ResponseError::MessageTooLarge.code(),
            Failure::Undecodable => ResponseError::CorruptMessage.code(),
            _ => ResponseError::InvalidRecord.code(),
        }
    }
}

/// A refusal with what the operator reads in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason.
    pub failure: Failure,
    /// The detail (names topic and DEK id where known; never key material).
    pub detail: String,
}

impl Refusal {
    /// A refusal for `failure` with `detail`.
    pub fn new(failure: Failure, detail: impl Into<String>) -> Refusal {
        Refusal {
            failure,
            detail: detail.into(),
        }
    }
}

impl From<CodecError> for Refusal {
    fn from(e: CodecError) -> Self {
        Refusal::new(Failure::Undecodable, e.to_string())
    }
}

impl From<CryptoError> for Refusal {
    fn from(e: CryptoError) -> Self {
        let failure = match &e {
            CryptoError::NotEncrypted => Failure::Plaintext,
            CryptoError::AlreadyEncrypted => Failure::ForgedMarker,
            CryptoError::BadFormat(_) => Failure::BadFormat,
            CryptoError::UnknownDek { .. } => Failure::UnknownKey,
            CryptoError::Shredded { .. } => Failure::Shredded,
            CryptoError::Tampered { .. } => Failure::Tampered,
            _ => Failure::KeyUnavailable,
        };
        Refusal::new(failure, e.to_string())
    }
}
