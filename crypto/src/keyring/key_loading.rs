//! Creating and loading keys: a topic's first KEK, new DEKs, and unwrapping KEKs and DEKs on
//! a cache miss (the only places the root-key provider is called on the data path).

use std::sync::Arc;

use super::{dek_wrap_aad, lock, ActiveDek, KeyAccess, Keyring};
use crate::aead::AeadKey;
use crate::dek_id::DekId;
use crate::error::CryptoError;
use crate::registry::{DekRecord, DekState, KekRecord, KeyRecord, TopicRecord, TopicState};
use crate::root_key::WrapContext;
use crate::secret::SecretKey;

impl Keyring {
    /// Creates a DEK under the topic's current KEK (creating KEK v1 for a new topic) and
    /// stores it. Caller holds `key_ops`.
    pub(super) fn create_dek(&self, topic: &str, now: u64) -> Result<ActiveDek, CryptoError> {
        let current = match self.registry.topic(topic)? {
            Some(t) if t.state == TopicState::Shredded => {
                return Err(self.note_shredded(topic));
            }
            Some(t) => t.current_kek_version,
            None => self.create_topic(topic, now)?,
        };
        let kek = self.kek(topic, current)?;
        let key = SecretKey::random()?;
        let id = DekId::random()?;
        let wrapped = crate::key_wrap::seal(&kek, &dek_wrap_aad(topic, id, current), &key)?;
        self.registry.put(&KeyRecord::Dek(DekRecord {
            topic: topic.to_owned(),
            id,
            kek_version: current,
            state: DekState::Active,
            created_at: now,
            wrapped,
        }))?;
        let aead = Arc::new(AeadKey::new(self.backend, &key)?);
        lock(&self.caches)
            .deks
            .insert((topic.to_owned(), id), Arc::clone(&aead));
        Ok(ActiveDek::new(id, aead, now)?)
    }

    /// Writes KEK v1 then the topic record (in that order: a crash between leaves an unused
    /// KEK, never a topic pointing at a missing KEK). Caller holds `key_ops`.
    pub(super) fn create_topic(&self, topic: &str, now: u64) -> Result<u32, CryptoError> {
        self.write_new_kek(topic, 1, now)?;
        self.registry.put(&KeyRecord::Topic(TopicRecord {
            topic: topic.to_owned(),
            current_kek_version: 1,
            state: TopicState::Active,
            updated_at: now,
        }))?;
        Ok(1)
    }

    pub(super) fn write_new_kek(
        &self,
        topic: &str,
        version: u32,
        now: u64,
    ) -> Result<(), CryptoError> {
        let kek = SecretKey::random()?;
        let wrapped = self.provider.wrap(
            &kek,
            WrapContext {
                topic,
                kek_version: version,
            },
        )?;
        self.registry.put(&KeyRecord::Kek(KekRecord {
            topic: topic.to_owned(),
            version,
            created_at: now,
            wrapped,
        }))?;
        Ok(())
    }

    pub(super) fn note_shredded(&self, topic: &str) -> CryptoError {
        let mut caches = lock(&self.caches);
        caches.forget_topic(topic);
        caches.shredded.insert(topic.to_owned());
        CryptoError::Shredded {
            topic: topic.to_owned(),
        }
    }

    /// KEK `version` of `topic`, unwrapped by the root key (cached).
    pub(super) fn kek(&self, topic: &str, version: u32) -> Result<Arc<AeadKey>, CryptoError> {
        if let Some(k) = lock(&self.caches).keks.get(&(topic.to_owned(), version)) {
            return Ok(Arc::clone(k));
        }
        let record = self
            .registry
            .kek(topic, version)?
            .ok_or_else(|| CryptoError::KekMissing {
                topic: topic.to_owned(),
                version,
            })?;
        let key = self.provider.unwrap(
            &record.wrapped,
            WrapContext {
                topic,
                kek_version: version,
            },
        )?;
        let aead = Arc::new(AeadKey::new(self.backend, &key)?);
        let mut caches = lock(&self.caches);
        if caches.shredded.contains(topic) {
            return Err(CryptoError::Shredded {
                topic: topic.to_owned(),
            });
        }
        caches
            .keks
            .insert((topic.to_owned(), version), Arc::clone(&aead));
        Ok(aead)
    }

    /// Unwraps a DEK record's key under its KEK.
    pub(super) fn unwrap_dek(&self, record: &DekRecord) -> Result<SecretKey, CryptoError> {
        let kek = self.kek(&record.topic, record.kek_version)?;
        crate::key_wrap::open(
            &kek,
            &dek_wrap_aad(&record.topic, record.id, record.kek_version),
            &record.wrapped,
        )
        .map_err(|_| CryptoError::DekUnwrap {
            topic: record.topic.clone(),
            dek_id: record.id,
            kek_version: record.kek_version,
        })
    }

    /// The DEK `id` of `topic` for decryption (cached; loaded and unwrapped on a miss).
    pub(crate) fn dek_for_decrypt(
        &self,
        topic: &str,
        id: DekId,
        access: KeyAccess,
    ) -> Result<Arc<AeadKey>, CryptoError> {
        {
            let caches = lock(&self.caches);
            if caches.shredded.contains(topic) {
                return Err(CryptoError::Shredded {
                    topic: topic.to_owned(),
                });
            }
            if let Some(k) = caches.deks.get(&(topic.to_owned(), id)) {
                return Ok(Arc::clone(k));
            }
        }
        if access == KeyAccess::CachedOnly {
            return Err(CryptoError::KeyNotCached {
                topic: topic.to_owned(),
            });
        }
        let unknown = || CryptoError::UnknownDek {
            topic: topic.to_owned(),
            dek_id: id,
        };
        match self.registry.topic(topic)? {
            None => return Err(unknown()),
            Some(t) if t.state == TopicState::Shredded => return Err(self.note_shredded(topic)),
            Some(_) => {}
        }
        let record = self.registry.dek(topic, id)?.ok_or_else(unknown)?;
        let key = self.unwrap_dek(&record)?;
        let aead = Arc::new(AeadKey::new(self.backend, &key)?);
        let mut caches = lock(&self.caches);
        if caches.shredded.contains(topic) {
            return Err(CryptoError::Shredded {
                topic: topic.to_owned(),
            });
        }
        caches
            .deks
            .insert((topic.to_owned(), id), Arc::clone(&aead));
        Ok(aead)
    }
}
