//! Registry keys: one per topic, per KEK version and per DEK.

use crate::dek_id::DekId;

/// Identifies one registry record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// `topic/<topic>`: the topic's current KEK version and state.
    Topic {
        /// The topic.
        topic: String,
    },
    /// `kek/<topic>/<version>`: one KEK version (version zero-padded to 10 digits so byte
    /// order is version order).
    Kek {
        /// The topic.
        topic: String,
        /// The KEK version.
        version: u32,
    },
    /// `dek/<topic>/<id>`: one DEK.
    Dek {
        /// The topic.
        topic: String,
        /// The DEK id.
        id: DekId,
    },
}

impl RecordKey {
    /// The key's bytes in the store.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Topic { topic } => format!("topic/{topic}"),
            Self::Kek { topic, version } => format!("kek/{topic}/{version:010}"),
            Self::Dek { topic, id } => format!("dek/{topic}/{id}"),
        }
        .into_bytes()
    }

    /// The prefix of every KEK key of `topic`.
    #[must_use]
    pub fn kek_prefix(topic: &str) -> Vec<u8> {
        format!("kek/{topic}/").into_bytes()
    }

    /// The prefix of every DEK key of `topic`.
    #[must_use]
    pub fn dek_prefix(topic: &str) -> Vec<u8> {
        format!("dek/{topic}/").into_bytes()
    }

    /// The key as text, for error messages.
    #[must_use]
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.encode()).into_owned()
    }
}
