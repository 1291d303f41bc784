//! Registry values: self-describing, versioned JSON.
//!
//! Every value is one JSON object with `"format": "portcullis.key-registry"`, `"v": 1` and a
//! `"kind"` (`topic`, `kek`, `dek`), so a consumer reading the future compacted topic with any
//! tool can tell what it holds. Readers refuse a higher `v` (fail closed) and ignore unknown
//! fields (so v1 can gain optional fields without breaking older readers).

use serde::{Deserialize, Serialize};

use crate::dek_id::DekId;
use crate::registry::{RecordKey, RegistryError};
use crate::root_key::WrappedKey;

/// The `format` field of every registry value.
pub const RECORD_FORMAT: &str = "portcullis.key-registry";
/// The record version this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// Whether a topic's keys still exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicState {
    /// Keys exist; records encrypt and decrypt.
    Active,
    /// The topic was crypto-shredded: its keys are (being) destroyed, nothing decrypts.
    Shredded,
}

/// Per-topic state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic.
    pub topic: String,
    /// The KEK version new DEKs are wrapped with.
    pub current_kek_version: u32,
    /// Active or shredded.
    pub state: TopicState,
    /// When this record was last written (Unix seconds).
    pub updated_at: u64,
}

/// One KEK version, wrapped by the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekRecord {
    /// The topic.
    pub topic: String,
    /// The version (from 1).
    pub version: u32,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// The KEK as the root-key provider wrapped it.
    pub wrapped: WrappedKey,
}

/// Whether a DEK may still encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DekState {
    /// It may encrypt (but only in the process that created it; see [`crate::Keyring`]).
    Active,
    /// Decrypt only.
    Retired,
}

/// One DEK, wrapped by a KEK version of its topic.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DekRecord {
    /// The topic.
    pub topic: String,
    /// The DEK id records carry.
    pub id: DekId,
    /// The KEK version that wraps it.
    pub kek_version: u32,
    /// Active or retired.
    pub state: DekState,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// The DEK wrapped by the KEK (61-byte AES-GCM blob, see `key_wrap`).
    #[serde(with = "crate::registry::base64_bytes")]
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DekRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DekRecord")
            .field("topic", &self.topic)
            .field("id", &self.id)
            .field("kek_version", &self.kek_version)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Any registry value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyRecord {
    /// A `topic/` record.
    Topic(TopicRecord),
    /// A `kek/` record.
    Kek(KekRecord),
    /// A `dek/` record.
    Dek(DekRecord),
}

#[derive(Serialize, Deserialize)]
struct Envelope<R> {
    format: String,
    v: u32,
    #[serde(flatten)]
    record: R,
}

#[derive(Deserialize)]
struct Head {
    format: String,
    v: u32,
}

impl KeyRecord {
    /// The registry key this record is stored under.
    #[must_use]
    pub fn key(&self) -> RecordKey {
        match self {
            Self::Topic(t) => RecordKey::Topic {
                topic: t.topic.clone(),
            },
            Self::Kek(k) => RecordKey::Kek {
                topic: k.topic.clone(),
                version: k.version,
            },
            Self::Dek(d) => RecordKey::Dek {
                topic: d.topic.clone(),
                id: d.id,
            },
        }
    }

    /// The value's bytes.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Damaged`] if serialization fails (it does not for these types).
    pub fn encode(&self) -> Result<Vec<u8>, RegistryError> {
        serde_json::to_vec(&Envelope {
            format: RECORD_FORMAT.to_owned(),
            v: RECORD_VERSION,
            record: self,
        })
        .map_err(|e| RegistryError::Damaged {
            key: self.key().display(),
            what: e.to_string(),
        })
    }

    /// Decodes the value stored under `key`, checking that it belongs there.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnsupportedVersion`] for a newer record version,
    /// [`RegistryError::Damaged`] for anything that does not decode or sits under the wrong
    /// key.
    pub fn decode(key: &RecordKey, bytes: &[u8]) -> Result<Self, RegistryError> {
        let damaged = |what: String| RegistryError::Damaged {
            key: key.display(),
            what,
        };
        let head: Head = serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if head.format != RECORD_FORMAT {
            return Err(damaged(format!(
                "format {:?} is not {RECORD_FORMAT:?}",
                head.format
            )));
        }
        if head.v != RECORD_VERSION {
            return Err(RegistryError::UnsupportedVersion {
                key: key.display(),
                version: head.v,
            });
        }
        let envelope: Envelope<Self> =
            serde_json::from_slice(bytes).map_err(|e| damaged(e.to_string()))?;
        if envelope.record.key() != *key {
            return Err(damaged(format!(
                "record belongs under {}",
                envelope.record.key().display()
            )));
        }
        Ok(envelope.record)
    }
}

impl Serialize for DekId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for DekId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text: String = Deserialize::deserialize(d)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("DEK id is not 32 hex digits"))
    }
}
