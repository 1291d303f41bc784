//! [`RegistryStore`] in memory, for tests and tools.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::registry::{Entry, RegistryError, RegistryStore};

/// A registry store in a `BTreeMap` (lost when dropped).
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `(key, value)`, for tests that inspect what was stored.
    #[must_use]
    pub fn entries(&self) -> Vec<Entry> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RegistryStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.lock().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        self.lock().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), RegistryError> {
        self.lock().remove(key);
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, RegistryError> {
        Ok(self
            .lock()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
