//! [`RegistryStore`] on sled 0.34, the embedded default.
//!
//! One tree (`key-registry`) holding exactly the bytes a replicated compacted topic would
//! hold. Every write is flushed before it returns: key writes are rare (a DEK per million
//! records or so), and the crash-safe ordering of the key operations depends on each write
//! being durable. sled 0.34 is unmaintained; the crash-safety tests run against this store so
//! they decide whether it stays the default.

use std::path::Path;

use crate::registry::{Entry, RegistryError, RegistryStore};

/// The sled-backed registry store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn backend(err: sled::Error) -> RegistryError {
    RegistryError::Backend(err.to_string())
}

impl SledStore {
    /// Opens (or creates) the registry in the directory `path`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] if sled cannot open it.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let db = sled::open(path).map_err(backend)?;
        let tree = db.open_tree("key-registry").map_err(backend)?;
        Ok(Self { db, tree })
    }

    fn flush(&self) -> Result<(), RegistryError> {
        self.tree.flush().map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

impl RegistryStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.tree.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        self.tree.insert(key, value).map_err(backend)?;
        self.flush()
    }

    fn delete(&self, key: &[u8]) -> Result<(), RegistryError> {
        self.tree.remove(key).map_err(backend)?;
        self.flush()
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, RegistryError> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }
}
