//! [`LogStore`] on sled 0.34.
//!
//! One sled database in `<data dir>/audit-log/` with one tree per kind of record. Keys are
//! big-endian so sled's byte order is numeric order. Every append writes its trees in a fixed
//! order (entries first) and the sequencer flushes once per batch, so after a crash the entries
//! tree may be ahead of the hash and index trees but never behind; [`crate::AuditLog::open`]
//! repairs the difference from the entries themselves.

use std::path::Path;

use crate::merkle::Hash;
use crate::store::{AppendBatch, LogStore, StoreError, StoredEntry};

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    entries: sled::Tree,
    hashes: sled::Tree,
    checkpoints: sled::Tree,
    keys: sled::Tree,
    meta: sled::Tree,
    by_time: sled::Tree,
    by_principal: sled::Tree,
}

fn backend(err: sled::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key
        .get(key.len().saturating_sub(8)..)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| StoreError::Damaged("malformed sequence key".into()))?;
    Ok(u64::from_be_bytes(arr))
}

fn hash_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn principal_prefix(principal: &str) -> Vec<u8> {
    let len = u32::try_from(principal.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(4 + principal.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(principal.as_bytes());
    k
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] if another process has it open, [`StoreError::Backend`] otherwise.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // The sequencer decides when to fsync (group commit); no background flusher.
            .flush_every_ms(None)
            .open()
            .map_err(|err| match &err {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked(dir.display().to_string())
                }
                _ => backend(err),
            })?;
        let t = |name: &str| db.open_tree(name).map_err(backend);
        Ok(SledStore {
            entries: t("entries")?,
            hashes: t("hashes")?,
            checkpoints: t("checkpoints")?,
            keys: t("verifier_keys")?,
            meta: t("meta")?,
            by_time: t("by_time")?,
            by_principal: t("by_principal")?,
            db,
        })
    }

    /// The raw entries tree, for tests that tamper with the log.
    #[doc(hidden)]
    pub fn raw_entries(&self) -> &sled::Tree {
        &self.entries
    }

    /// The raw checkpoints tree, for tests that tamper with the log.
    #[doc(hidden)]
    pub fn raw_checkpoints(&self) -> &sled::Tree {
        &self.checkpoints
    }

    /// Bytes the database occupies on disk.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }
}

fn last_seq(tree: &sled::Tree) -> Result<Option<u64>, StoreError> {
    match tree.last().map_err(backend)? {
        Some((k, _)) => Ok(Some(seq_of(&k)?)),
        None => Ok(None),
    }
}

impl LogStore for SledStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(last_seq(&self.entries)?.map_or(0, |s| s + 1))
    }

    fn append(&self, batch: &AppendBatch) -> Result<(), StoreError> {
        let mut entries = sled::Batch::default();
        for (seq, bytes) in &batch.entries {
            entries.insert(&be(*seq), bytes.as_slice());
        }
        self.entries.apply_batch(entries).map_err(backend)?;
        let mut hashes = sled::Batch::default();
        for (level, index, hash) in &batch.hashes {
            hashes.insert(&hash_key(*level, *index), hash.as_slice());
        }
        self.hashes.apply_batch(hashes).map_err(backend)?;
        let mut by_time = sled::Batch::default();
        for (ts, seq) in &batch.by_time {
            let mut k = ts.as_bytes().to_vec();
            k.extend_from_slice(&be(*seq));
            by_time.insert(k, &[]);
        }
        self.by_time.apply_batch(by_time).map_err(backend)?;
        let mut by_principal = sled::Batch::default();
        for (p, seq) in &batch.by_principal {
            let mut k = principal_prefix(p);
            k.extend_from_slice(&be(*seq));
            by_principal.insert(k, &[]);
        }
        self.by_principal.apply_batch(by_principal).map_err(backend)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .entries
            .get(be(seq))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn entries(
        &self,
        from: u64,
        to: u64,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<StoredEntry, StoreError>> + '_> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        let iter = self.entries.range(be(from)..be(to));
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            let (k, v) = item.map_err(backend)?;
            Ok((seq_of(&k)?, v.to_vec()))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    fn hash(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        match self.hashes.get(hash_key(level, index)).map_err(backend)? {
            None => Ok(None),
            Some(v) => v.as_ref().try_into().map(Some).map_err(|_| {
                StoreError::Damaged(format!(
                    "tree node (level {level}, index {index}) is not 32 bytes"
                ))
            }),
        }
    }

    fn leaf_hashes(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, Hash), StoreError>> + '_> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        Box::new(
            self.hashes
                .range(hash_key(0, from)..hash_key(0, to))
                .map(|item| {
                    let (k, v) = item.map_err(backend)?;
                    let index = seq_of(&k)?;
                    let hash: Hash = v.as_ref().try_into().map_err(|_| {
                        StoreError::Damaged(format!("leaf hash {index} is not 32 bytes"))
                    })?;
                    Ok((index, hash))
                }),
        )
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        let iter = self.hashes.range(hash_key(0, 0)..hash_key(1, 0));
        match iter.last() {
            Some(item) => {
                let (k, _) = item.map_err(backend)?;
                Ok(seq_of(&k)? + 1)
            }
            None => Ok(0),
        }
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        self.checkpoints
            .insert(be(size), note.as_bytes())
            .map(|_| ())
            .map_err(backend)
    }

    fn checkpoints(&self) -> Box<dyn Iterator<Item = Result<(u64, String), StoreError>> + '_> {
        Box::new(self.checkpoints.iter().map(|item| {
            let (k, v) = item.map_err(backend)?;
            let note = String::from_utf8(v.to_vec())
                .map_err(|_| StoreError::Damaged("checkpoint is not UTF-8".into()))?;
            Ok((seq_of(&k)?, note))
        }))
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.checkpoints.last().map_err(backend)? {
            None => Ok(None),
            Some((k, v)) => {
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Damaged("checkpoint is not UTF-8".into()))?;
                Ok(Some((seq_of(&k)?, note)))
            }
        }
    }

    fn add_verifier_key(&self, key: &str) -> Result<(), StoreError> {
        if self.verifier_keys()?.iter().any(|k| k == key) {
            return Ok(());
        }
        let next = last_seq(&self.keys)?.map_or(0, |s| s + 1);
        self.keys
            .insert(be(next), key.as_bytes())
            .map(|_| ())
            .map_err(backend)
    }

    fn verifier_keys(&self) -> Result<Vec<String>, StoreError> {
        self.keys
            .iter()
            .map(|item| {
                let (_, v) = item.map_err(backend)?;
                String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Damaged("verifier key is not UTF-8".into()))
            })
            .collect()
    }

    fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.meta.get(name).map_err(backend)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| StoreError::Damaged(format!("metadata {name} is not UTF-8"))),
        }
    }

    fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.meta
            .insert(name, value.as_bytes())
            .map(|_| ())
            .map_err(backend)
    }

    fn seqs_by_time(
        &self,
        from: &str,
        to: &str,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + '_> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        let iter = self
            .by_time
            .range(from.as_bytes().to_vec()..to.as_bytes().to_vec());
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| seq_of(&item.map_err(backend)?.0);
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    fn seqs_by_principal(
        &self,
        principal: &str,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + '_> {
        let iter = self.by_principal.scan_prefix(principal_prefix(principal));
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| seq_of(&item.map_err(backend)?.0);
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }
}
