//! The operator's key operations: rotate, rewrap, destroy, retire, shred, refresh. Each is a
//! sequence of single durable registry writes in the order the module docs of
//! [`crate::keyring`] justify.

use std::collections::HashSet;

use super::{dek_wrap_aad, lock, Keyring, RotationReport};
use crate::dek_id::DekId;
use crate::error::CryptoError;
use crate::registry::{DekRecord, DekState, KeyRecord, RecordKey, TopicRecord, TopicState};
use crate::topic_name;

impl Keyring {
    fn active_topic(&self, topic: &str) -> Result<TopicRecord, CryptoError> {
        topic_name::check(topic)?;
        match self.registry.topic(topic)? {
            None => Err(CryptoError::UnknownTopic {
                topic: topic.to_owned(),
            }),
            Some(t) if t.state == TopicState::Shredded => Err(self.note_shredded(topic)),
            Some(t) => Ok(t),
        }
    }

    /// Creates KEK version 1 of `topic` if the topic has no keys yet; returns its current
    /// version.
    ///
    /// # Errors
    ///
    /// [`CryptoError::Shredded`], or a provider or registry failure.
    pub fn ensure_topic(&self, topic: &str) -> Result<u32, CryptoError> {
        topic_name::check(topic)?;
        let _ops = lock(&self.key_ops);
        match self.registry.topic(topic)? {
            Some(t) if t.state == TopicState::Shredded => Err(self.note_shredded(topic)),
            Some(t) => Ok(t.current_kek_version),
            None => self.create_topic(topic, (self.clock)()),
        }
    }

    /// Creates a new KEK version for `topic` and makes it current (new DEKs are wrapped by
    /// it; existing DEKs keep their version until [`Keyring::rewrap_deks`]). Returns the new
    /// version.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownTopic`], [`CryptoError::Shredded`],
    /// [`CryptoError::KekVersionsExhausted`], or a provider or registry failure.
    pub fn rotate_kek(&self, topic: &str) -> Result<u32, CryptoError> {
        let _ops = lock(&self.key_ops);
        let record = self.active_topic(topic)?;
        let highest = self
            .registry
            .keks(topic)?
            .iter()
            .map(|k| k.version)
            .max()
            .unwrap_or(0)
            .max(record.current_kek_version);
        let version = highest
            .checked_add(1)
            .ok_or_else(|| CryptoError::KekVersionsExhausted {
                topic: topic.to_owned(),
            })?;
        let now = (self.clock)();
        // New version first, pointer second.
        self.write_new_kek(topic, version, now)?;
        self.registry.put(&KeyRecord::Topic(TopicRecord {
            current_kek_version: version,
            updated_at: now,
            ..record
        }))?;
        Ok(version)
    }

    /// Rewraps every DEK of `topic` that is not under the current KEK version; returns how
    /// many were rewritten. Each DEK record is replaced in one write.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownTopic`], [`CryptoError::Shredded`], [`CryptoError::KekMissing`],
    /// [`CryptoError::DekUnwrap`], or a provider or registry failure.
    pub fn rewrap_deks(&self, topic: &str) -> Result<usize, CryptoError> {
        let _ops = lock(&self.key_ops);
        let current = self.active_topic(topic)?.current_kek_version;
        let new_kek = self.kek(topic, current)?;
        let mut rewrapped = 0;
        for record in self.registry.deks(topic)? {
            if record.kek_version == current {
                continue;
            }
            let key = self.unwrap_dek(&record)?;
            let wrapped =
                crate::key_wrap::seal(&new_kek, &dek_wrap_aad(topic, record.id, current), &key)?;
            self.registry.put(&KeyRecord::Dek(DekRecord {
                kek_version: current,
                wrapped,
                ..record
            }))?;
            rewrapped += 1;
        }
        Ok(rewrapped)
    }

    /// Destroys KEK `version` of `topic`, refusing the current version and any version a DEK
    /// still depends on.
    ///
    /// # Errors
    ///
    /// [`CryptoError::KekIsCurrent`], [`CryptoError::KekInUse`], [`CryptoError::KekMissing`],
    /// [`CryptoError::UnknownTopic`], [`CryptoError::Shredded`], or a registry failure.
    pub fn destroy_kek_version(&self, topic: &str, version: u32) -> Result<(), CryptoError> {
        let _ops = lock(&self.key_ops);
        let record = self.active_topic(topic)?;
        if self.registry.kek(topic, version)?.is_none() {
            return Err(CryptoError::KekMissing {
                topic: topic.to_owned(),
                version,
            });
        }
        self.destroy_kek_locked(&record, version)
    }

    fn destroy_kek_locked(&self, record: &TopicRecord, version: u32) -> Result<(), CryptoError> {
        let topic = record.topic.as_str();
        if version == record.current_kek_version {
            return Err(CryptoError::KekIsCurrent {
                topic: topic.to_owned(),
                version,
            });
        }
        let deks = self
            .registry
            .deks(topic)?
            .iter()
            .filter(|d| d.kek_version == version)
            .count();
        if deks > 0 {
            return Err(CryptoError::KekInUse {
                topic: topic.to_owned(),
                version,
                deks,
            });
        }
        self.registry.delete(&RecordKey::Kek {
            topic: topic.to_owned(),
            version,
        })?;
        lock(&self.caches).keks.remove(&(topic.to_owned(), version));
        Ok(())
    }

    /// Destroys every KEK version of `topic` that is neither current nor used by a DEK;
    /// returns the versions destroyed.
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownTopic`], [`CryptoError::Shredded`], or a registry failure.
    pub fn destroy_unused_keks(&self, topic: &str) -> Result<Vec<u32>, CryptoError> {
        let _ops = lock(&self.key_ops);
        let record = self.active_topic(topic)?;
        let used: HashSet<u32> = self
            .registry
            .deks(topic)?
            .iter()
            .map(|d| d.kek_version)
            .collect();
        let mut destroyed = Vec::new();
        for kek in self.registry.keks(topic)? {
            if kek.version != record.current_kek_version && !used.contains(&kek.version) {
                self.destroy_kek_locked(&record, kek.version)?;
                destroyed.push(kek.version);
            }
        }
        Ok(destroyed)
    }

    /// Rotate, rewrap, then destroy the versions no DEK needs any more: the whole KEK
    /// rotation, each step crash-safe. Re-running it after an interruption completes it (with
    /// one more version).
    ///
    /// # Errors
    ///
    /// As [`Keyring::rotate_kek`], [`Keyring::rewrap_deks`] and
    /// [`Keyring::destroy_unused_keks`].
    pub fn rotate_and_rewrap(&self, topic: &str) -> Result<RotationReport, CryptoError> {
        let new_version = self.rotate_kek(topic)?;
        let rewrapped = self.rewrap_deks(topic)?;
        let destroyed = self.destroy_unused_keks(topic)?;
        Ok(RotationReport {
            new_version,
            rewrapped,
            destroyed,
        })
    }

    /// Retires DEK `id` of `topic`: it still decrypts but never encrypts again (this process
    /// drops it at once; it is marked retired in the registry).
    ///
    /// # Errors
    ///
    /// [`CryptoError::UnknownDek`], or a registry failure.
    pub fn retire_dek(&self, topic: &str, id: DekId) -> Result<(), CryptoError> {
        topic_name::check(topic)?;
        let _ops = lock(&self.key_ops);
        {
            let mut caches = lock(&self.caches);
            if caches.active.get(topic).is_some_and(|d| d.id == id) {
                caches.active.remove(topic);
            }
        }
        self.set_dek_state(topic, id, DekState::Retired)
    }

    pub(super) fn set_dek_state(
        &self,
        topic: &str,
        id: DekId,
        state: DekState,
    ) -> Result<(), CryptoError> {
        let record = self
            .registry
            .dek(topic, id)?
            .ok_or_else(|| CryptoError::UnknownDek {
                topic: topic.to_owned(),
                dek_id: id,
            })?;
        if record.state != state {
            self.registry
                .put(&KeyRecord::Dek(DekRecord { state, ..record }))?;
        }
        Ok(())
    }

    /// Crypto-shreds `topic`: marks it shredded (from then on nothing of it decrypts or
    /// encrypts), then destroys its DEKs, then its KEKs. Idempotent: re-run it to finish an
    /// interrupted shred. Returns how many DEKs and KEK versions were destroyed by this call.
    ///
    /// The registry forgets the keys; whether the storage under it (sled's log, a Kafka
    /// topic before compaction) still holds old bytes depends on that storage, so for the
    /// local provider the guarantee rests on the wrapped keys, not their deletion: they are
    /// useless without the root key, and the DEK/KEK records are gone from every live view.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidTopic`], or a registry failure.
    pub fn shred_topic(&self, topic: &str) -> Result<(usize, usize), CryptoError> {
        topic_name::check(topic)?;
        let _ops = lock(&self.key_ops);
        let now = (self.clock)();
        let current = self.registry.topic(topic)?;
        let already = current
            .as_ref()
            .is_some_and(|t| t.state == TopicState::Shredded);
        if !already {
            self.registry.put(&KeyRecord::Topic(TopicRecord {
                topic: topic.to_owned(),
                current_kek_version: current.map_or(0, |t| t.current_kek_version),
                state: TopicState::Shredded,
                updated_at: now,
            }))?;
        }
        let _shredded = self.note_shredded(topic);
        let mut deks = 0;
        for dek in self.registry.deks(topic)? {
            self.registry.delete(&RecordKey::Dek {
                topic: topic.to_owned(),
                id: dek.id,
            })?;
            deks += 1;
        }
        let mut keks = 0;
        for kek in self.registry.keks(topic)? {
            self.registry.delete(&RecordKey::Kek {
                topic: topic.to_owned(),
                version: kek.version,
            })?;
            keks += 1;
        }
        Ok((deks, keks))
    }

    /// Drops everything this keyring cached for `topic` and re-reads its state: call it
    /// when another process changed the topic's keys (an admin command, a replicated
    /// registry update). Afterwards a shredded topic is refused at once, and encryption
    /// starts a new DEK (so a DEK retired elsewhere stops being used here).
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidTopic`], or a registry failure (the caches are dropped anyway).
    pub fn refresh_topic(&self, topic: &str) -> Result<(), CryptoError> {
        topic_name::check(topic)?;
        {
            let mut caches = lock(&self.caches);
            caches.forget_topic(topic);
            caches.shredded.remove(topic);
        }
        if let Some(t) = self.registry.topic(topic)? {
            if t.state == TopicState::Shredded {
                let _shredded = self.note_shredded(topic);
            }
        }
        Ok(())
    }
}
