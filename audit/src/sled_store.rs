//! [`LogStore`] on sled 0.34.
//!
//! One sled database in `<data dir>/audit-log/` with one tree per kind of record. Keys are
//! big-endian so sled's byte order is numeric order. sled pays roughly the same per insert
//! whatever its size (see `examples/sled_probe.rs`), so nothing is stored one per key: entries
//! are packed in pages of [`PAGE_WIDTH`] (each record keeps its own sequence number and
//! length, so a missing or extra record is visible), leaf hashes in tiles of 256, and index
//! rows hold the sequence numbers of one batch (per principal, and per second for the time
//! index). Every append writes its trees in a fixed
//! order (entries, interior nodes, leaf tiles, indexes) and the sequencer flushes once per
//! batch, so after a crash the entries tree may be ahead of the hash and index trees but never
//! behind, and the leaf tiles (which say how much is hashed) never ahead of the nodes above
//! them; [`crate::AuditLog::open`] repairs the difference from the entries themselves.

use std::collections::BTreeMap;
use std::path::Path;

use crate::merkle::Hash;
use crate::store::{AppendBatch, EntryChunk, LogStore, StoreError, StoredEntry};

/// Leaf hashes per tile row.
const TILE_WIDTH: u64 = 256;

/// Entries per page of the `entries` tree: page `p` holds the entries with
/// `p * PAGE_WIDTH <= seq < (p + 1) * PAGE_WIDTH`, each as `seq (u64 BE) || len (u32 BE) ||
/// bytes`, in increasing `seq` order.
pub const PAGE_WIDTH: u64 = 64;

/// Decodes one entry page into `(seq, byte range)` records. Records that do not belong to the
/// page, are out of order or are cut short make the page damaged (reported, never a panic).
fn page_records(page: u64, v: &[u8]) -> Result<Vec<(u64, std::ops::Range<usize>)>, StoreError> {
    let mut out: Vec<(u64, std::ops::Range<usize>)> = Vec::with_capacity(PAGE_WIDTH as usize);
    let mut at = 0usize;
    let damaged = |why: &str| StoreError::Damaged(format!("entry page {page}: {why}"));
    while at < v.len() {
        let head = v
            .get(at..at.saturating_add(12))
            .ok_or_else(|| damaged("record header cut short"))?;
        let seq = u64::from_be_bytes(head[..8].try_into().map_err(|_| damaged("bad seq"))?);
        let len = u32::from_be_bytes(head[8..].try_into().map_err(|_| damaged("bad length"))?);
        let start = at + 12;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|e| *e <= v.len())
            .ok_or_else(|| damaged("record cut short"))?;
        if seq / PAGE_WIDTH != page {
            return Err(damaged(&format!("holds entry {seq}")));
        }
        if out.last().is_some_and(|(prev, _)| *prev >= seq) {
            return Err(damaged("records out of order"));
        }
        out.push((seq, start..end));
        at = end;
    }
    Ok(out)
}

/// Decodes one entry page into owned entries (see [`page_records`]).
fn decode_page(page: u64, v: &[u8]) -> Result<Vec<StoredEntry>, StoreError> {
    Ok(page_records(page, v)?
        .into_iter()
        .map(|(seq, r)| (seq, v[r].to_vec()))
        .collect())
}

fn encode_record(out: &mut Vec<u8>, seq: u64, bytes: &[u8]) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Length of `YYYY-MM-DDTHH:MM:SS`: time index rows are per second.
const SECOND_PREFIX: usize = 19;

/// The sled-backed store.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    entries: sled::Tree,
    hashes: sled::Tree,
    leaf_tiles: sled::Tree,
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
            leaf_tiles: t("leaf_tiles")?,
            checkpoints: t("checkpoints")?,
            keys: t("verifier_keys")?,
            meta: t("meta")?,
            by_time: t("by_time")?,
            by_principal: t("by_principal")?,
            db,
        })
    }

    /// The raw entries tree (pages of [`PAGE_WIDTH`] entries), for tests that tamper with the
    /// log.
    #[doc(hidden)]
    pub fn raw_entries(&self) -> &sled::Tree {
        &self.entries
    }

    /// Replaces (`Some`) or removes (`None`) the stored bytes of entry `seq` behind the log's
    /// back, for tests that tamper with the log.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the page cannot be read or written.
    #[doc(hidden)]
    pub fn tamper_entry(&self, seq: u64, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        let page = seq / PAGE_WIDTH;
        let mut records = match self.entries.get(be(page)).map_err(backend)? {
            Some(v) => decode_page(page, &v)?,
            None => Vec::new(),
        };
        records.retain(|(s, _)| *s != seq);
        if let Some(b) = bytes {
            records.push((seq, b.to_vec()));
            records.sort_by_key(|(s, _)| *s);
        }
        let mut v = Vec::new();
        for (s, b) in &records {
            encode_record(&mut v, *s, b);
        }
        self.entries
            .insert(be(page), v)
            .map(|_| ())
            .map_err(backend)
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
        // The last record of the last non-empty page.
        for item in self.entries.iter().rev() {
            let (k, v) = item.map_err(backend)?;
            if let Some((seq, _)) = decode_page(seq_of(&k)?, &v)?.last() {
                return Ok(seq.saturating_add(1));
            }
        }
        Ok(0)
    }

    fn append(&self, batch: &AppendBatch) -> Result<(), StoreError> {
        // Entries go into pages (one insert per page touched). A page the previous batch left
        // partly filled is read back and extended; records at or after this batch's first
        // sequence number (left by a write that failed) are dropped from it.
        let mut entries = sled::Batch::default();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for (seq, bytes) in &batch.entries {
            let page = seq / PAGE_WIDTH;
            if current.as_ref().is_none_or(|(p, _)| *p != page) {
                if let Some((p, v)) = current.take() {
                    entries.insert(&be(p), v);
                }
                let mut v = Vec::with_capacity(64 * 1024);
                if let Some(old) = self.entries.get(be(page)).map_err(backend)? {
                    for (s, b) in decode_page(page, &old)? {
                        if s < *seq {
                            encode_record(&mut v, s, &b);
                        }
                    }
                }
                current = Some((page, v));
            }
            if let Some((_, v)) = current.as_mut() {
                encode_record(v, *seq, bytes);
            }
        }
        if let Some((p, v)) = current.take() {
            entries.insert(&be(p), v);
        }
        self.entries.apply_batch(entries).map_err(backend)?;

        // Leaf hashes go into tiles of TILE_WIDTH (one insert per tile touched, not per leaf);
        // interior nodes are few and stored one per key.
        let mut hashes = sled::Batch::default();
        let mut tiles = sled::Batch::default();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for (level, index, hash) in &batch.hashes {
            if *level != 0 {
                hashes.insert(&hash_key(*level, *index), hash.as_slice());
                continue;
            }
            let tile = index / TILE_WIDTH;
            let offset = usize::try_from(index % TILE_WIDTH).unwrap_or(0) * 32;
            if current.as_ref().is_none_or(|(t, _)| *t != tile) {
                if let Some((t, bytes)) = current.take() {
                    tiles.insert(&be(t), bytes);
                }
                let existing = self
                    .leaf_tiles
                    .get(be(tile))
                    .map_err(backend)?
                    .map(|v| v.to_vec())
                    .unwrap_or_default();
                current = Some((tile, existing));
            }
            if let Some((_, bytes)) = current.as_mut() {
                if bytes.len() < offset {
                    return Err(StoreError::Damaged(format!(
                        "leaf hash tile {tile} has a hole before leaf {index}"
                    )));
                }
                bytes.truncate(offset);
                bytes.extend_from_slice(hash);
            }
        }
        if let Some((t, bytes)) = current.take() {
            tiles.insert(&be(t), bytes);
        }
        // Interior nodes before the leaf tiles: the tiles' length is the hashed size that
        // repair starts from (`hashed_size`), so a crash between the two writes must leave
        // nodes without their leaves (recomputed by repair), never leaves without the nodes
        // above them (seen once: a kill -9 left the tree unopenable, "tree node missing").
        // sled recovers a prefix of its writes, so their order is what survives.
        self.hashes.apply_batch(hashes).map_err(backend)?;
        self.leaf_tiles.apply_batch(tiles).map_err(backend)?;

        // Index rows are grouped per batch: one row per (second, batch) and per
        // (principal, batch), holding the packed sequence numbers.
        // second -> (row key = second || first seq, packed seqs)
        let mut time_rows: BTreeMap<Vec<u8>, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
        for (ts, seq) in &batch.by_time {
            let second = &ts.as_bytes()[..ts.len().min(SECOND_PREFIX)];
            let row = time_rows.entry(second.to_vec()).or_insert_with(|| {
                let mut k = second.to_vec();
                k.extend_from_slice(&be(*seq));
                (k, Vec::new())
            });
            row.1.extend_from_slice(&be(*seq));
        }
        let mut rows = sled::Batch::default();
        for (k, v) in time_rows.into_values() {
            rows.insert(k, v);
        }
        self.by_time.apply_batch(rows).map_err(backend)?;

        let mut principal_rows: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut first_of: BTreeMap<&str, u64> = BTreeMap::new();
        for (p, seq) in &batch.by_principal {
            let first = *first_of.entry(p.as_str()).or_insert(*seq);
            let mut k = principal_prefix(p);
            k.extend_from_slice(&be(first));
            principal_rows
                .entry(k)
                .or_default()
                .extend_from_slice(&be(*seq));
        }
        let mut rows = sled::Batch::default();
        for (k, v) in principal_rows {
            rows.insert(k, v);
        }
        self.by_principal.apply_batch(rows).map_err(backend)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let page = seq / PAGE_WIDTH;
        let Some(v) = self.entries.get(be(page)).map_err(backend)? else {
            return Ok(None);
        };
        Ok(decode_page(page, &v)?
            .into_iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, b)| b))
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
        let first = from / PAGE_WIDTH;
        let last = (to - 1) / PAGE_WIDTH;
        let iter = self.entries.range(be(first)..=be(last));
        let pages = move |item: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<StoredEntry, StoreError>> {
            let decoded = item
                .map_err(backend)
                .and_then(|(k, v)| decode_page(seq_of(&k)?, &v));
            match decoded {
                Ok(records) => {
                    let mut out: Vec<Result<StoredEntry, StoreError>> = records
                        .into_iter()
                        .filter(|(s, _)| *s >= from && *s < to)
                        .map(Ok)
                        .collect();
                    if reverse {
                        out.reverse();
                    }
                    out
                }
                Err(e) => vec![Err(e)],
            }
        };
        if reverse {
            Box::new(iter.rev().flat_map(pages))
        } else {
            Box::new(iter.flat_map(pages))
        }
    }

    fn entry_chunks(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<EntryChunk, StoreError>> + '_> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        let iter = self
            .entries
            .range(be(from / PAGE_WIDTH)..=be((to - 1) / PAGE_WIDTH));
        Box::new(iter.map(move |item| {
            let (k, v) = item.map_err(backend)?;
            let mut records = page_records(seq_of(&k)?, &v)?;
            records.retain(|(s, _)| *s >= from && *s < to);
            Ok(EntryChunk {
                buf: Box::new(v),
                records,
            })
        }))
    }

    fn hash(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        if level == 0 {
            let Some(tile) = self
                .leaf_tiles
                .get(be(index / TILE_WIDTH))
                .map_err(backend)?
            else {
                return Ok(None);
            };
            let offset = usize::try_from(index % TILE_WIDTH).unwrap_or(0) * 32;
            return Ok(tile
                .get(offset..offset + 32)
                .and_then(|h| h.try_into().ok()));
        }
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
        let first_tile = from / TILE_WIDTH;
        let last_tile = (to - 1) / TILE_WIDTH;
        Box::new(
            self.leaf_tiles
                .range(be(first_tile)..=be(last_tile))
                .flat_map(move |item| -> Vec<Result<(u64, Hash), StoreError>> {
                    let (k, v) = match item.map_err(backend) {
                        Ok(kv) => kv,
                        Err(e) => return vec![Err(e)],
                    };
                    let tile = match seq_of(&k) {
                        Ok(t) => t,
                        Err(e) => return vec![Err(e)],
                    };
                    v.chunks_exact(32)
                        .enumerate()
                        .filter_map(|(i, h)| {
                            let index = tile.saturating_mul(TILE_WIDTH).saturating_add(i as u64);
                            let hash: Hash = h.try_into().ok()?;
                            (index >= from && index < to).then_some(Ok((index, hash)))
                        })
                        .collect()
                }),
        )
    }

    fn hashed_size(&self) -> Result<u64, StoreError> {
        match self.leaf_tiles.last().map_err(backend)? {
            Some((k, v)) => Ok(seq_of(&k)?
                .saturating_mul(TILE_WIDTH)
                .saturating_add((v.len() / 32) as u64)),
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
        let next = last_seq(&self.keys)?.map_or(0, |s| s.saturating_add(1));
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
        // Rows are per second; the caller filters the exact bounds on the entries.
        let start = from.as_bytes()[..from.len().min(SECOND_PREFIX)].to_vec();
        let iter = self.by_time.range(start..to.as_bytes().to_vec());
        unpack_rows(iter, reverse)
    }

    fn seqs_by_principal(
        &self,
        principal: &str,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + '_> {
        unpack_rows(
            self.by_principal.scan_prefix(principal_prefix(principal)),
            reverse,
        )
    }
}

/// Flattens index rows (packed big-endian sequence numbers) into sequence numbers.
fn unpack_rows<'a>(
    iter: sled::Iter,
    reverse: bool,
) -> Box<dyn Iterator<Item = Result<u64, StoreError>> + 'a> {
    let unpack =
        move |item: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<u64, StoreError>> {
            match item {
                Err(e) => vec![Err(backend(e))],
                Ok((_, v)) => {
                    let mut seqs: Vec<Result<u64, StoreError>> = v
                        .chunks_exact(8)
                        .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
                        .map(Ok)
                        .collect();
                    if reverse {
                        seqs.reverse();
                    }
                    seqs
                }
            }
        };
    if reverse {
        Box::new(iter.rev().flat_map(unpack))
    } else {
        Box::new(iter.flat_map(unpack))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod page_tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_hostile_pages_are_damaged_not_panics() {
        let mut v = Vec::new();
        encode_record(&mut v, 64, b"a");
        encode_record(&mut v, 66, b"bc");
        assert_eq!(
            decode_page(1, &v).unwrap(),
            vec![(64, b"a".to_vec()), (66, b"bc".to_vec())]
        );
        // Wrong page, cut short, out of order, absurd length: damaged, never a panic.
        assert!(decode_page(0, &v).is_err());
        assert!(decode_page(1, &v[..v.len() - 1]).is_err());
        assert!(decode_page(1, &v[..5]).is_err());
        let mut swapped = Vec::new();
        encode_record(&mut swapped, 66, b"x");
        encode_record(&mut swapped, 64, b"y");
        assert!(decode_page(1, &swapped).is_err());
        let mut huge = 64u64.to_be_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_page(1, &huge).is_err());
        assert!(decode_page(1, &[]).unwrap().is_empty());
    }

    /// The states a crash can leave between the hash-tree writes of one append. Interior
    /// nodes are written before the leaf tiles, so the possible state is nodes without their
    /// leaves, which repair recomputes; the state the other order could leave (leaves
    /// without the nodes above them) cannot be opened, which is why the order matters.
    #[test]
    fn a_crash_between_node_and_leaf_writes_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.append(&AppendBatch {
            entries: (0..600)
                .map(|i| (i, format!("e{i}").into_bytes()))
                .collect(),
            ..AppendBatch::default()
        })
        .unwrap();
        let full = crate::log::repair(&s).unwrap().root();
        assert_eq!(s.hashed_size().unwrap(), 600);
        let tiles: Vec<(sled::IVec, sled::IVec)> =
            s.leaf_tiles.iter().map(|kv| kv.unwrap()).collect();

        // Nodes written, leaf tiles not: the tiles say 300 leaves are hashed.
        s.leaf_tiles
            .insert(be(1), &tiles[1].1[..(300 - 256) * 32])
            .unwrap();
        s.leaf_tiles.remove(be(2)).unwrap();
        assert_eq!(s.hashed_size().unwrap(), 300);
        assert_eq!(crate::log::repair(&s).unwrap().root(), full);
        assert_eq!(s.hashed_size().unwrap(), 600);

        // Leaf tiles written, the nodes above them not.
        let stored_above_300: Vec<sled::IVec> = s
            .hashes
            .iter()
            .keys()
            .map(|k| k.unwrap())
            .filter(|k| {
                let level = u32::from(k[0]);
                let index = u64::from_be_bytes(k[1..9].try_into().unwrap());
                (index + 1) << level > 300
            })
            .collect();
        assert!(!stored_above_300.is_empty());
        for k in stored_above_300 {
            s.hashes.remove(k).unwrap();
        }
        assert!(matches!(
            crate::log::repair(&s),
            Err(StoreError::Damaged(_))
        ));
    }

    #[test]
    fn a_batch_extends_a_partial_page_and_replaces_a_failed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let batch = |from: u64, to: u64| AppendBatch {
            entries: (from..to)
                .map(|i| (i, format!("e{i}").into_bytes()))
                .collect(),
            ..AppendBatch::default()
        };
        s.append(&batch(0, 70)).unwrap();
        s.append(&batch(70, 100)).unwrap();
        assert_eq!(s.size().unwrap(), 100);
        // A retried batch from 90 replaces what a failed one left.
        s.append(&batch(90, 95)).unwrap();
        assert_eq!(s.size().unwrap(), 95);
        let all: Vec<u64> = s.entries(0, 200, false).map(|e| e.unwrap().0).collect();
        assert_eq!(all, (0..95).collect::<Vec<_>>());
        let rev: Vec<u64> = s.entries(60, 70, true).map(|e| e.unwrap().0).collect();
        assert_eq!(rev, (60..70).rev().collect::<Vec<_>>());
        assert_eq!(s.entry(65).unwrap().unwrap(), b"e65");
        assert_eq!(s.entry(95).unwrap(), None);
        s.tamper_entry(65, None).unwrap();
        assert_eq!(s.entry(65).unwrap(), None);
    }
}
