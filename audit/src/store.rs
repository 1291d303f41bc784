//! The storage interface of the audit log.
//!
//! The log needs little from storage: append a batch atomically enough to recover from a crash,
//! read entries by sequence number, keep perfect-subtree hashes so proofs and roots are cheap,
//! keep every signed checkpoint and every verifier key, and two secondary indexes (time and
//! principal) for queries. Keeping that behind a trait keeps sled (unmaintained) replaceable.
//!
//! Storage is *not* trusted: everything read back is checked by the verifier against signed
//! checkpoints, so a store only has to be honest for the log to be useful, never for tampering
//! to be detected.

use crate::merkle::{Hash, HashSource};

/// Interior levels whose perfect-subtree hashes are stored (besides leaf hashes, level 0):
/// every level that is a multiple of this. Any other subtree is folded from at most
/// `2^(NODE_STRIDE - 1)` stored hashes.
pub const NODE_STRIDE: u8 = 4;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (I/O, corruption, lock).
    #[error("audit store: {0}")]
    Backend(String),
    /// Another process (a running proxy) holds the store's lock.
    #[error("the audit log in {0} is locked by another process (is the proxy running? use the admin API, or stop it)")]
    Locked(String),
    /// A record the log relies on is missing or malformed.
    #[error("audit store is damaged: {0}")]
    Damaged(String),
}

/// What one group commit writes.
#[derive(Debug, Default, Clone)]
pub struct AppendBatch {
    /// `(seq, entry bytes)`, consecutive.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// `(level, index, hash)`: leaf hashes and the stored interior nodes completed.
    pub hashes: Vec<(u8, u64, Hash)>,
    /// `(timestamp, seq)` rows of the time index.
    pub by_time: Vec<(String, u64)>,
    /// `(principal, seq)` rows of the principal index.
    pub by_principal: Vec<(String, u64)>,
}

/// One stored entry: its key and its exact bytes.
pub type StoredEntry = (u64, Vec<u8>);

/// Several stored entries sharing one buffer (a store page), for bulk readers such as the
/// verifier that should not allocate per entry.
pub struct EntryChunk {
    /// The bytes the records point into (a store page, kept as the store returned it).
    pub buf: Box<dyn AsRef<[u8]> + Send + Sync>,
    /// `(seq, byte range of the entry in buf)`, in sequence order.
    pub records: Vec<(u64, std::ops::Range<usize>)>,
}

impl std::fmt::Debug for EntryChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryChunk")
            .field("bytes", &(*self.buf).as_ref().len())
            .field("records", &self.records)
            .finish()
    }
}

impl EntryChunk {
    /// The records as `(seq, entry bytes)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let buf: &[u8] = (*self.buf).as_ref();
        self.records
            .iter()
            .filter_map(move |(seq, r)| Some((*seq, buf.get(r.clone())?)))
    }
}

/// Storage for the audit log.
pub trait LogStore: Send + Sync + 'static {
    /// Number of entries: the highest stored sequence number plus one (0 when empty).
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn size(&self) -> Result<u64, StoreError>;

    /// Writes a batch (not yet durable; see [`flush`](LogStore::flush)).
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn append(&self, batch: &AppendBatch) -> Result<(), StoreError>;

    /// Makes everything written so far durable (one fsync).
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn flush(&self) -> Result<(), StoreError>;

    /// The entry with sequence number `seq`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stored entries with `from <= seq < to`, in order (`reverse` for newest first). Missing
    /// sequence numbers are simply absent, so callers can see gaps.
    fn entries(
        &self,
        from: u64,
        to: u64,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<StoredEntry, StoreError>> + '_>;

    /// The same entries as [`entries`](LogStore::entries) (forward), grouped in chunks that
    /// share a buffer. The default makes one chunk per entry; stores that keep entries in
    /// pages return a page per chunk.
    fn entry_chunks(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<EntryChunk, StoreError>> + '_> {
        Box::new(self.entries(from, to, false).map(|item| {
            let (seq, buf) = item?;
            let len = buf.len();
            Ok(EntryChunk {
                buf: Box::new(buf),
                records: vec![(seq, 0..len)],
            })
        }))
    }

    /// A stored perfect-subtree hash.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn hash(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;

    /// Stored leaf hashes `(index, hash)` with `from <= index < to`, in order.
    fn leaf_hashes(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, Hash), StoreError>> + '_>;

    /// Number of stored leaf hashes (the highest level-0 index plus one).
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn hashed_size(&self) -> Result<u64, StoreError>;

    /// Stores a signed checkpoint for tree size `size` (replacing one for the same size).
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError>;

    /// Every stored checkpoint as `(size, note)`, smallest size first.
    fn checkpoints(&self) -> Box<dyn Iterator<Item = Result<(u64, String), StoreError>> + '_>;

    /// The checkpoint with the largest size.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// Remembers a verifier key (idempotent); keys are listed in the order first stored.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn add_verifier_key(&self, key: &str) -> Result<(), StoreError>;

    /// Every verifier key ever used by this log, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn verifier_keys(&self) -> Result<Vec<String>, StoreError>;

    /// A small metadata value.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn meta(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Sets a small metadata value.
    ///
    /// # Errors
    ///
    /// [`StoreError`] on a backend failure.
    fn set_meta(&self, name: &str, value: &str) -> Result<(), StoreError>;

    /// Sequence numbers of entries with `from <= timestamp < to` (RFC 3339 strings), in time
    /// order (`reverse` for newest first).
    fn seqs_by_time(
        &self,
        from: &str,
        to: &str,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + '_>;

    /// Sequence numbers of entries by `principal`, oldest first (`reverse` for newest first).
    fn seqs_by_principal(
        &self,
        principal: &str,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + '_>;
}

/// The stored tree as a [`HashSource`]: stored levels are read, others folded from the
/// nearest stored level below.
pub struct StoredTree<'a, S: LogStore + ?Sized>(pub &'a S);

impl<S: LogStore + ?Sized> HashSource for StoredTree<'_, S> {
    type Error = StoreError;

    fn perfect(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let base = level - level % NODE_STRIDE;
        if base == level {
            return self.0.hash(level, index)?.ok_or_else(|| {
                StoreError::Damaged(format!(
                    "tree node (level {level}, index {index}) is missing"
                ))
            });
        }
        let child = index.checked_mul(2).ok_or_else(|| {
            StoreError::Damaged(format!(
                "tree node (level {level}, index {index}) is out of range"
            ))
        })?;
        let left = self.perfect(level - 1, child)?;
        let right = self.perfect(level - 1, child + 1)?;
        Ok(crate::merkle::node_hash(&left, &right))
    }
}

/// Whether nodes of `level` are stored.
pub fn is_stored_level(level: u8) -> bool {
    level % NODE_STRIDE == 0
}
