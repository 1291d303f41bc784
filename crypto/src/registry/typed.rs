//! The typed view of a [`RegistryStore`]: records in, records out.

use std::sync::Arc;

use crate::dek_id::DekId;
use crate::registry::{
    DekRecord, KekRecord, KeyRecord, RecordKey, RegistryError, RegistryStore, TopicRecord,
};

/// Reads and writes [`KeyRecord`]s through a [`RegistryStore`].
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn RegistryStore>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn RegistryStore>) -> Self {
        Self { store }
    }

    fn get(&self, key: &RecordKey) -> Result<Option<KeyRecord>, RegistryError> {
        self.store
            .get(&key.encode())?
            .map(|bytes| KeyRecord::decode(key, &bytes))
            .transpose()
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<KeyRecord>, RegistryError> {
        self.store
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| {
                let key = parse_key(&k)?;
                KeyRecord::decode(&key, &v)
            })
            .collect()
    }

    /// Stores `record` under its key, durably.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store.
    pub fn put(&self, record: &KeyRecord) -> Result<(), RegistryError> {
        self.store.put(&record.key().encode(), &record.encode()?)
    }

    /// Deletes `key`, durably.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store.
    pub fn delete(&self, key: &RecordKey) -> Result<(), RegistryError> {
        self.store.delete(&key.encode())
    }

    /// Every topic the registry has a record for, in name order.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store.
    pub fn topic_names(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .store
            .scan_prefix(b"topic/")?
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(b"topic/")
                    .map(|n| String::from_utf8_lossy(n).into_owned())
            })
            .collect())
    }

    /// The topic record of `topic`, if any.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store or a damaged record.
    pub fn topic(&self, topic: &str) -> Result<Option<TopicRecord>, RegistryError> {
        let key = RecordKey::Topic {
            topic: topic.to_owned(),
        };
        match self.get(&key)? {
            None => Ok(None),
            Some(KeyRecord::Topic(t)) => Ok(Some(t)),
            Some(_) => Err(wrong_kind(&key)),
        }
    }

    /// One KEK version of `topic`, if it exists.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store or a damaged record.
    pub fn kek(&self, topic: &str, version: u32) -> Result<Option<KekRecord>, RegistryError> {
        let key = RecordKey::Kek {
            topic: topic.to_owned(),
            version,
        };
        match self.get(&key)? {
            None => Ok(None),
            Some(KeyRecord::Kek(k)) => Ok(Some(k)),
            Some(_) => Err(wrong_kind(&key)),
        }
    }

    /// Every KEK version of `topic`, oldest first.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store or a damaged record.
    pub fn keks(&self, topic: &str) -> Result<Vec<KekRecord>, RegistryError> {
        self.scan(&RecordKey::kek_prefix(topic))?
            .into_iter()
            .map(|r| match r {
                KeyRecord::Kek(k) => Ok(k),
                other => Err(wrong_kind(&other.key())),
            })
            .collect()
    }

    /// One DEK of `topic`, if it exists.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store or a damaged record.
    pub fn dek(&self, topic: &str, id: DekId) -> Result<Option<DekRecord>, RegistryError> {
        let key = RecordKey::Dek {
            topic: topic.to_owned(),
            id,
        };
        match self.get(&key)? {
            None => Ok(None),
            Some(KeyRecord::Dek(d)) => Ok(Some(d)),
            Some(_) => Err(wrong_kind(&key)),
        }
    }

    /// Every DEK of `topic`, in id order.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] from the store or a damaged record.
    pub fn deks(&self, topic: &str) -> Result<Vec<DekRecord>, RegistryError> {
        self.scan(&RecordKey::dek_prefix(topic))?
            .into_iter()
            .map(|r| match r {
                KeyRecord::Dek(d) => Ok(d),
                other => Err(wrong_kind(&other.key())),
            })
            .collect()
    }
}

fn wrong_kind(key: &RecordKey) -> RegistryError {
    RegistryError::Damaged {
        key: key.display(),
        what: "record of the wrong kind".to_owned(),
    }
}

/// Parses a stored key back into a [`RecordKey`].
fn parse_key(bytes: &[u8]) -> Result<RecordKey, RegistryError> {
    let damaged = || RegistryError::Damaged {
        key: String::from_utf8_lossy(bytes).into_owned(),
        what: "unrecognised registry key".to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| damaged())?;
    let mut parts = text.splitn(3, '/');
    let (kind, topic, rest) = (parts.next(), parts.next(), parts.next());
    let topic = topic.ok_or_else(damaged)?.to_owned();
    match (kind, rest) {
        (Some("topic"), None) => Ok(RecordKey::Topic { topic }),
        (Some("kek"), Some(v)) => Ok(RecordKey::Kek {
            topic,
            version: v.parse().map_err(|_| damaged())?,
        }),
        (Some("dek"), Some(id)) => Ok(RecordKey::Dek {
            topic,
            id: DekId::from_hex(id).ok_or_else(damaged)?,
        }),
        _ => Err(damaged()),
    }
}
