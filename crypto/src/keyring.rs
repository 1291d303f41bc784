//! The key hierarchy at work: DEK selection for encryption, key lookup for decryption, and
//! the operator operations (rotate, rewrap, destroy, retire, shred) in crash-safe order.
//!
//! ```text
//! root key (provider: local file; later PKCS#11, AWS KMS)
//!   └─ wraps KEK version v of each topic          registry: kek/<topic>/<v>
//!        └─ wraps DEKs of that topic               registry: dek/<topic>/<id>
//!             └─ seal record values                record: DEK id + nonce + ciphertext
//! ```
//!
//! **Crash safety.** Every operation is a sequence of single-record registry writes, each
//! durable before the next, ordered so that a crash after any write leaves every record that
//! was readable before still readable (and, once a shred's marker is written, nothing of that
//! topic readable):
//!
//! - rotate: write KEK v+1, then point the topic record at it (a crash in between leaves an
//!   unused KEK version, which the next rotate skips and destroy removes);
//! - rewrap: rewrite each DEK record under the current version, one at a time (each DEK is
//!   wrapped by the old or the new version, and both exist);
//! - destroy: delete a KEK version only if it is not current and no DEK record names it;
//! - shred: mark the topic shredded first, then delete its DEKs, then its KEKs.
//!
//! **DEK use.** A DEK encrypts only in the process that created it, counted in memory; a new
//! process always starts a new DEK. So a crash can never make a DEK exceed its limit, and
//! proxies in a fleet never share a nonce space. Records carry only the DEK id.
//!
//! In-process concurrency: key-creating and key-destroying operations are serialized by one
//! lock, so a DEK can never be created under a KEK version that a concurrent destroy is
//! removing. Across a fleet the same guarantee needs the replicated registry (next session).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::aead::{AeadBackend, AeadKey};
use crate::dek_id::DekId;
use crate::dek_limits::DekLimits;
use crate::error::CryptoError;
use crate::format::{self, Part};
use crate::registry::{
    DekRecord, DekState, KekRecord, KeyRecord, RecordKey, Registry, RegistryStore, TopicRecord,
    TopicState,
};
use crate::root_key::{RootKeyProvider, WrapContext};
use crate::secret::SecretKey;
use crate::topic_name;

/// The clock DEK ages are measured with: Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What [`Keyring::rotate_and_rewrap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The new current KEK version.
    pub new_version: u32,
    /// DEKs rewrapped under it.
    pub rewrapped: usize,
    /// KEK versions destroyed afterwards.
    pub destroyed: Vec<u32>,
}

/// The DEK this process encrypts a topic's records with.
pub(crate) struct ActiveDek {
    pub(crate) id: DekId,
    pub(crate) key: Arc<AeadKey>,
    used: AtomicU64,
    created_at: u64,
}

impl ActiveDek {
    /// Reserves `uses` encryptions; false if that would pass a limit.
    fn try_reserve(&self, uses: u64, limits: &DekLimits, now: u64) -> bool {
        if now.saturating_sub(self.created_at) >= limits.max_age_secs() {
            return false;
        }
        let before = self.used.fetch_add(uses, Ordering::Relaxed);
        before.saturating_add(uses) <= limits.max_records()
    }
}

#[derive(Default)]
struct Caches {
    active: HashMap<String, Arc<ActiveDek>>,
    deks: HashMap<(String, DekId), Arc<AeadKey>>,
    keks: HashMap<(String, u32), Arc<AeadKey>>,
    shredded: HashSet<String>,
}

impl Caches {
    fn forget_topic(&mut self, topic: &str) {
        self.active.remove(topic);
        self.deks.retain(|(t, _), _| t != topic);
        self.keks.retain(|(t, _), _| t != topic);
    }
}

/// Encrypts and decrypts record values and runs the key operations.
///
/// Cheap to share behind an `Arc`; all methods take `&self`. Unwrapped keys are cached in
/// memory (as expanded AES keys, wiped on drop); the registry is read on a cache miss only.
pub struct Keyring {
    provider: Arc<dyn RootKeyProvider>,
    registry: Registry,
    limits: DekLimits,
    backend: AeadBackend,
    clock: Clock,
    key_ops: Mutex<()>,
    caches: Mutex<Caches>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider.kind())
            .field("root_key_id", &self.provider.root_key_id())
            .field("limits", &self.limits)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Associated data of a DEK wrapped by a KEK:
/// `"portcullis.dek" 0x00 u16be(len(topic)) topic dek_id(16) u32be(kek_version)`.
pub(crate) fn dek_wrap_aad(topic: &str, id: DekId, kek_version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(15 + 2 + topic.len() + 16 + 4);
    aad.extend_from_slice(b"portcullis.dek\0");
    aad.extend_from_slice(&u16::try_from(topic.len()).unwrap_or(u16::MAX).to_be_bytes());
    aad.extend_from_slice(topic.as_bytes());
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(&kek_version.to_be_bytes());
    aad
}

impl Keyring {
    /// A keyring over `provider` (root key) and `store` (registry), with `limits` for DEKs.
    #[must_use]
    pub fn new(
        provider: Arc<dyn RootKeyProvider>,
        store: Arc<dyn RegistryStore>,
        limits: DekLimits,
    ) -> Self {
        Self {
            provider,
            registry: Registry::new(store),
            limits,
            backend: AeadBackend::DEFAULT,
            clock: Arc::new(system_clock),
            key_ops: Mutex::new(()),
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Uses `backend` for record and key sealing (both produce the same bytes).
    #[must_use]
    pub fn with_backend(mut self, backend: AeadBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Measures DEK age with `clock` (Unix seconds) instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The typed registry (for admin listings).
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Encrypts a record value for `topic` with the topic's active DEK (creating the topic's
    /// first KEK and a DEK if needed). Returns the v1 bytes (see [`crate::format`]).
    ///
    /// # Errors
    ///
    /// [`CryptoError::Shredded`] for a shredded topic, [`CryptoError::InvalidTopic`], or a
    /// provider, registry or randomness failure while creating keys.
    pub fn encrypt_value(&self, topic: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let dek = self.reserve(topic, 1)?;
        self.seal(&dek, topic, Part::Value, plaintext)
    }

    /// Decrypts a v1 value read from `topic`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::BadFormat`], [`CryptoError::UnknownDek`], [`CryptoError::Shredded`],
    /// [`CryptoError::Tampered`] (modified, or copied from another topic), or a registry or
    /// provider failure while loading the DEK.
    pub fn decrypt_value(&self, topic: &str, bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open(topic, Part::Value, bytes)
    }

    pub(crate) fn seal(
        &self,
        dek: &ActiveDek,
        topic: &str,
        part: Part<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = crate::random::array()?;
        Ok(format::seal_with_nonce(
            &dek.key, topic, dek.id, part, &nonce, plaintext,
        )?)
    }

    pub(crate) fn open(
        &self,
        topic: &str,
        part: Part<'_>,
        bytes: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        topic_name::check(topic)?;
        let sealed = format::parse(bytes)?;
        let key = self.dek_for_decrypt(topic, sealed.dek_id)?;
        format::open(&key, topic, &sealed, part).map_err(|_| CryptoError::Tampered {
            topic: topic.to_owned(),
            dek_id: sealed.dek_id,
        })
    }

    /// The active DEK of `topic` with `uses` encryptions reserved on it; a new DEK if there is
    /// none or the current one reached a limit.
    pub(crate) fn reserve(&self, topic: &str, uses: u64) -> Result<Arc<ActiveDek>, CryptoError> {
        topic_name::check(topic)?;
        let now = (self.clock)();
        if let Some(dek) = self.try_active(topic, uses, now)? {
            return Ok(dek);
        }
        let _ops = lock(&self.key_ops);
        // Another thread may have replaced it while this one waited.
        if let Some(dek) = self.try_active(topic, uses, now)? {
            return Ok(dek);
        }
        let retired = lock(&self.caches).active.remove(topic);
        let dek = Arc::new(self.create_dek(topic, now)?);
        if !dek.try_reserve(uses, &self.limits, now) {
            return Err(CryptoError::TooManyParts {
                parts: uses,
                limit: self.limits.max_records(),
            });
        }
        lock(&self.caches)
            .active
            .insert(topic.to_owned(), Arc::clone(&dek));
        if let Some(old) = retired {
            // Advisory: this process never encrypts with `old` again whatever the registry
            // says, so a failure here only leaves the record marked active.
            let _ignored = self.set_dek_state(topic, old.id, DekState::Retired);
        }
        Ok(dek)
    }

    fn try_active(
        &self,
        topic: &str,
        uses: u64,
        now: u64,
    ) -> Result<Option<Arc<ActiveDek>>, CryptoError> {
        let caches = lock(&self.caches);
        if caches.shredded.contains(topic) {
            return Err(CryptoError::Shredded {
                topic: topic.to_owned(),
            });
        }
        Ok(caches
            .active
            .get(topic)
            .filter(|d| d.try_reserve(uses, &self.limits, now))
            .cloned())
    }

    /// Creates a DEK under the topic's current KEK (creating KEK v1 for a new topic) and
    /// stores it. Caller holds `key_ops`.
    fn create_dek(&self, topic: &str, now: u64) -> Result<ActiveDek, CryptoError> {
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
        Ok(ActiveDek {
            id,
            key: aead,
            used: AtomicU64::new(0),
            created_at: now,
        })
    }

    /// Writes KEK v1 then the topic record (in that order: a crash between leaves an unused
    /// KEK, never a topic pointing at a missing KEK). Caller holds `key_ops`.
    fn create_topic(&self, topic: &str, now: u64) -> Result<u32, CryptoError> {
        self.write_new_kek(topic, 1, now)?;
        self.registry.put(&KeyRecord::Topic(TopicRecord {
            topic: topic.to_owned(),
            current_kek_version: 1,
            state: TopicState::Active,
            updated_at: now,
        }))?;
        Ok(1)
    }

    fn write_new_kek(&self, topic: &str, version: u32, now: u64) -> Result<(), CryptoError> {
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

    fn note_shredded(&self, topic: &str) -> CryptoError {
        let mut caches = lock(&self.caches);
        caches.forget_topic(topic);
        caches.shredded.insert(topic.to_owned());
        CryptoError::Shredded {
            topic: topic.to_owned(),
        }
    }

    /// KEK `version` of `topic`, unwrapped by the root key (cached).
    fn kek(&self, topic: &str, version: u32) -> Result<Arc<AeadKey>, CryptoError> {
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
    fn unwrap_dek(&self, record: &DekRecord) -> Result<SecretKey, CryptoError> {
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

    fn set_dek_state(&self, topic: &str, id: DekId, state: DekState) -> Result<(), CryptoError> {
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

    /// The id of the DEK this process currently encrypts `topic` with, if any.
    #[must_use]
    pub fn active_dek_id(&self, topic: &str) -> Option<DekId> {
        lock(&self.caches).active.get(topic).map(|d| d.id)
    }
}
