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

pub use batch::{ValueOpener, ValueSealer};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::aead::{AeadBackend, AeadKey};
use crate::dek_id::DekId;
use crate::dek_limits::DekLimits;
use crate::error::CryptoError;
use crate::format::{self, Part};
use crate::registry::{DekState, Registry, RegistryStore};
use crate::root_key::RootKeyProvider;
use crate::topic_name;

mod batch;
mod key_loading;
mod operations;

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

/// Whether an operation may go to the registry and the root-key provider (blocking: disk,
/// network, a hardware token) or must use only the keys already unwrapped in memory.
///
/// The proxy's data path runs on async workers: it first tries [`KeyAccess::CachedOnly`]
/// (pure computation) and, on [`CryptoError::KeyNotCached`], repeats the operation with
/// [`KeyAccess::Load`] where blocking is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// Create and load keys as needed (may block on the registry and the provider).
    Load,
    /// Use cached keys only; fail with [`CryptoError::KeyNotCached`] where a key would have
    /// to be created or loaded.
    CachedOnly,
}

/// The DEK this process encrypts a topic's records with.
pub(crate) struct ActiveDek {
    pub(crate) id: DekId,
    pub(crate) key: Arc<AeadKey>,
    used: AtomicU64,
    created_at: u64,
    /// The first 4 bytes of every nonce this process seals with the DEK (random per DEK).
    nonce_prefix: [u8; 4],
    /// The last 8 bytes of the next nonce (a counter from 0).
    next_nonce: AtomicU64,
}

impl ActiveDek {
    /// A DEK this process just created, with its own nonce space.
    pub(crate) fn new(
        id: DekId,
        key: Arc<AeadKey>,
        created_at: u64,
    ) -> Result<ActiveDek, crate::RandomError> {
        Ok(ActiveDek {
            id,
            key,
            used: AtomicU64::new(0),
            created_at,
            nonce_prefix: crate::random::array()?,
            next_nonce: AtomicU64::new(0),
        })
    }

    /// A nonce never used before with this DEK: the DEK's random prefix and a counter
    /// (NIST SP 800-38D 8.2.1, deterministic construction). Unique because a DEK seals only
    /// in the process that created it and the counter cannot wrap: `DekLimits` stops a DEK at
    /// 2^32 seals, far below 2^64.
    fn nonce(&self) -> [u8; 12] {
        let n = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        nonce
    }

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
        self.encrypt_value_with(topic, plaintext, KeyAccess::Load)
    }

    /// [`Keyring::encrypt_value`] with a choice of whether a new DEK may be created here
    /// ([`KeyAccess::CachedOnly`] fails with [`CryptoError::KeyNotCached`] instead). The same
    /// bytes [`Keyring::encrypt_record`] puts in a record's value: the data path uses it for
    /// topics whose headers stay in clear, without copying the record into a
    /// [`crate::RecordPayload`].
    ///
    /// # Errors
    ///
    /// As [`Keyring::encrypt_value`], and [`CryptoError::KeyNotCached`].
    pub fn encrypt_value_with(
        &self,
        topic: &str,
        plaintext: &[u8],
        access: KeyAccess,
    ) -> Result<Vec<u8>, CryptoError> {
        let dek = self.reserve(topic, 1, access)?;
        self.seal(&dek, topic, Part::Value, plaintext)
    }

    /// [`Keyring::decrypt_value`] with a choice of whether a DEK missing from memory may be
    /// loaded here ([`KeyAccess::CachedOnly`] fails with [`CryptoError::KeyNotCached`]).
    ///
    /// # Errors
    ///
    /// As [`Keyring::decrypt_value`], and [`CryptoError::KeyNotCached`].
    pub fn decrypt_value_with(
        &self,
        topic: &str,
        bytes: &[u8],
        access: KeyAccess,
    ) -> Result<Vec<u8>, CryptoError> {
        self.open(topic, Part::Value, bytes, access)
    }

    /// Decrypts a v1 value read from `topic`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::BadFormat`], [`CryptoError::UnknownDek`], [`CryptoError::Shredded`],
    /// [`CryptoError::Tampered`] (modified, or copied from another topic), or a registry or
    /// provider failure while loading the DEK.
    pub fn decrypt_value(&self, topic: &str, bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open(topic, Part::Value, bytes, KeyAccess::Load)
    }

    pub(crate) fn seal(
        &self,
        dek: &ActiveDek,
        topic: &str,
        part: Part<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = dek.nonce();
        Ok(format::seal_with_nonce(
            &dek.key, topic, dek.id, part, &nonce, plaintext,
        )?)
    }

    pub(crate) fn open(
        &self,
        topic: &str,
        part: Part<'_>,
        bytes: &[u8],
        access: KeyAccess,
    ) -> Result<Vec<u8>, CryptoError> {
        topic_name::check(topic)?;
        let sealed = format::parse(bytes)?;
        let key = self.dek_for_decrypt(topic, sealed.dek_id, access)?;
        format::open(&key, topic, &sealed, part).map_err(|_| CryptoError::Tampered {
            topic: topic.to_owned(),
            dek_id: sealed.dek_id,
        })
    }

    /// The active DEK of `topic` with `uses` encryptions reserved on it; a new DEK if there is
    /// none or the current one reached a limit.
    pub(crate) fn reserve(
        &self,
        topic: &str,
        uses: u64,
        access: KeyAccess,
    ) -> Result<Arc<ActiveDek>, CryptoError> {
        topic_name::check(topic)?;
        if uses > self.limits.max_records() {
            return Err(CryptoError::TooManyParts {
                parts: uses,
                limit: self.limits.max_records(),
            });
        }
        let now = (self.clock)();
        if let Some(dek) = self.try_active(topic, uses, now)? {
            return Ok(dek);
        }
        if access == KeyAccess::CachedOnly {
            return Err(CryptoError::KeyNotCached {
                topic: topic.to_owned(),
            });
        }
        let _ops = lock(&self.key_ops);
        // Another thread may have replaced it while this one waited.
        if let Some(dek) = self.try_active(topic, uses, now)? {
            return Ok(dek);
        }
        let retired = lock(&self.caches).active.remove(topic);
        let dek = Arc::new(self.create_dek(topic, now)?);
        // A fresh DEK has room for `uses` (checked above) and age 0.
        let _reserved = dek.try_reserve(uses, &self.limits, now);
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

    /// The id of the DEK this process currently encrypts `topic` with, if any.
    #[must_use]
    pub fn active_dek_id(&self, topic: &str) -> Option<DekId> {
        lock(&self.caches).active.get(topic).map(|d| d.id)
    }
}
