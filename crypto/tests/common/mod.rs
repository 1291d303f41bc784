//! Shared test fixtures: a keyring over an in-memory or failing store.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use portcullis_crypto::registry::Entry;
use portcullis_crypto::{
    DekLimits, Keyring, LocalKeyFile, MemoryStore, RegistryError, RegistryStore, SecretKey,
};

/// A root-key provider around a fixed key.
pub fn provider(byte: u8) -> Arc<LocalKeyFile> {
    Arc::new(LocalKeyFile::from_key(&SecretKey::from_bytes([byte; 32])).unwrap())
}

/// A keyring with default limits over `store`.
pub fn keyring(store: Arc<dyn RegistryStore>) -> Keyring {
    Keyring::new(provider(7), store, DekLimits::default())
}

/// A keyring over a fresh memory store, and the store.
pub fn memory_keyring() -> (Keyring, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (keyring(store.clone()), store)
}

/// A clock the test moves by hand.
pub fn manual_clock() -> (portcullis_crypto::keyring::Clock, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(1_000_000));
    let read = now.clone();
    (Arc::new(move || read.load(Ordering::SeqCst)), now)
}

/// A store that fails every write after the first `budget` writes, like a process that
/// crashes between two durable writes.
pub struct FailingStore {
    pub inner: Arc<dyn RegistryStore>,
    pub budget: AtomicUsize,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn RegistryStore>, budget: usize) -> Self {
        Self {
            inner,
            budget: AtomicUsize::new(budget),
        }
    }

    fn spend(&self) -> Result<(), RegistryError> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .map(|_| ())
            .map_err(|_| RegistryError::Backend("injected crash".to_owned()))
    }
}

impl RegistryStore for FailingStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        self.inner.get(key)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        self.spend()?;
        self.inner.put(key, value)
    }
    fn delete(&self, key: &[u8]) -> Result<(), RegistryError> {
        self.spend()?;
        self.inner.delete(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, RegistryError> {
        self.inner.scan_prefix(prefix)
    }
}

/// Keys in `store` starting with `prefix`, as text.
pub fn keys(store: &dyn RegistryStore, prefix: &str) -> Vec<String> {
    store
        .scan_prefix(prefix.as_bytes())
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}
