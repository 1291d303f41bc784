//! `audit verify`: recompute the whole log and check it against every signed checkpoint.
//!
//! What is checked, in one pass over the entries:
//!
//! - sequence numbers are contiguous from 0 and each entry's `seq` field matches its key;
//! - every leaf hash is recomputed from the stored bytes and the tree rebuilt from them;
//! - every checkpoint is well-formed, has this log's origin, is signed by a trusted key
//!   ([`KeyChain`]), and its root equals the recomputed root at its size. Consecutive
//!   checkpoints are thereby consistent: both are roots of prefixes of one recomputed sequence;
//! - no checkpoint covers more entries than the log holds (truncation);
//! - optionally, a checkpoint saved earlier (`--since-checkpoint`) or the checkpoints in an
//!   anchor file: a log smaller than one of them has been rolled back, a different root at the
//!   same size means history was rewritten.
//!
//! When a checkpoint's root does not match, the stored leaf hashes are used to find the bad
//! entry: they are untrusted, but if they reproduce the *signed* root they are authentic, and
//! the entries whose recomputed hash differs from them are exactly the altered ones.
//!
//! Input is hostile (an attacker may have written any bytes); nothing here panics on it.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::checkpoint::SignedCheckpoint;
use crate::event::{Category, Event};
use crate::key_chain::KeyChain;
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::VerifierKey;
use crate::store::{EntryChunk, LogStore, StoreError, StoredTree};

/// One thing wrong with the log, precise enough to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// No entry is stored for this sequence number (deleted).
    EntryMissing {
        /// The first missing sequence number of a run.
        seq: u64,
        /// How many consecutive ones are missing.
        count: u64,
    },
    /// The entry's bytes are not an event, or its `seq` field disagrees with its position.
    EntryMalformed {
        /// The entry.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entry's bytes are not the bytes that were signed (modified).
    EntryAltered {
        /// The entry.
        seq: u64,
        /// The checkpoint that proves it.
        checkpoint_size: u64,
    },
    /// A checkpoint's root does not match the entries, and the altered entry could not be
    /// pinpointed (the stored hashes were altered too).
    RootMismatch {
        /// The checkpoint's size.
        checkpoint_size: u64,
        /// The altered entries are at or after this sequence number (the previous verified
        /// checkpoint's size).
        first_suspect: u64,
    },
    /// A checkpoint is not signed by a trusted key (forged), or its signature is broken.
    BadSignature {
        /// The checkpoint's size.
        checkpoint_size: u64,
        /// Details.
        reason: String,
    },
    /// A stored checkpoint cannot be parsed, or is filed under the wrong size or origin.
    BadCheckpoint {
        /// The size it is filed under.
        checkpoint_size: u64,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint covers more entries than the log has: the tail was removed.
    Truncated {
        /// Entries in the log.
        entries: u64,
        /// The largest checkpoint size.
        checkpoint_size: u64,
    },
    /// A checkpoint saved elsewhere (file or anchor) is larger than the log: the log was
    /// rolled back.
    Rollback {
        /// Entries in the log.
        entries: u64,
        /// The external checkpoint's size.
        checkpoint_size: u64,
        /// Where the external checkpoint came from.
        source: String,
    },
    /// An external checkpoint's root differs from the log's root at the same size: history
    /// was rewritten (or the log replaced).
    Fork {
        /// The size.
        checkpoint_size: u64,
        /// Where the external checkpoint came from.
        source: String,
    },
    /// The store could not be read.
    Store(String),
}

impl Problem {
    /// The first sequence number this problem puts in doubt, if it names one.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            Problem::EntryMissing { seq, .. }
            | Problem::EntryMalformed { seq, .. }
            | Problem::EntryAltered { seq, .. } => Some(*seq),
            Problem::RootMismatch { first_suspect, .. } => Some(*first_suspect),
            Problem::Truncated { entries, .. } | Problem::Rollback { entries, .. } => {
                Some(*entries)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::EntryMissing { seq, count } => {
                write!(f, "DELETED: entry {seq} is missing")?;
                if *count > 1 {
                    write!(f, " ({count} entries missing: {seq}..{})", seq + count - 1)?;
                }
                Ok(())
            }
            Problem::EntryMalformed { seq, reason } => write!(f, "MALFORMED: entry {seq}: {reason}"),
            Problem::EntryAltered { seq, checkpoint_size } => write!(
                f,
                "ALTERED: entry {seq} does not match the signed checkpoint of size {checkpoint_size}"
            ),
            Problem::RootMismatch {
                checkpoint_size,
                first_suspect,
            } => write!(
                f,
                "ALTERED: the entries do not match the signed checkpoint of size {checkpoint_size}; the change is in entries {first_suspect}..{}",
                checkpoint_size.saturating_sub(1)
            ),
            Problem::BadSignature {
                checkpoint_size,
                reason,
            } => write!(
                f,
                "FORGED: checkpoint of size {checkpoint_size} is not validly signed by a trusted key: {reason}"
            ),
            Problem::BadCheckpoint {
                checkpoint_size,
                reason,
            } => write!(f, "BAD CHECKPOINT: checkpoint filed at size {checkpoint_size}: {reason}"),
            Problem::Truncated {
                entries,
                checkpoint_size,
            } => write!(
                f,
                "TRUNCATED: the log has {entries} entries but a signed checkpoint covers {checkpoint_size}; entries {entries}..{} were removed",
                checkpoint_size.saturating_sub(1)
            ),
            Problem::Rollback {
                entries,
                checkpoint_size,
                source,
            } => write!(
                f,
                "ROLLBACK: the log has {entries} entries but {source} holds a checkpoint of size {checkpoint_size}"
            ),
            Problem::Fork {
                checkpoint_size,
                source,
            } => write!(
                f,
                "REWRITTEN: the log's root at size {checkpoint_size} differs from the checkpoint in {source}"
            ),
            Problem::Store(e) => write!(f, "UNREADABLE: {e}"),
        }
    }
}

/// An external checkpoint to check the log against.
#[derive(Debug, Clone)]
pub struct ExternalCheckpoint {
    /// The checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// Where it came from (for messages).
    pub source: String,
}

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys to trust from the start. Empty: trust the first key the log used (printed in the
    /// report; pin it with `--key` for assurance against a replaced store).
    pub keys: Vec<VerifierKey>,
    /// Incremental check: start from this checkpoint (verified, and matched against the stored
    /// tree) instead of from entry 0.
    pub since: Option<ExternalCheckpoint>,
    /// Further external checkpoints (anchors) the log must be consistent with.
    pub anchors: Vec<ExternalCheckpoint>,
}

/// The result of a verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Entries in the log.
    pub entries: u64,
    /// Entries whose hashes were recomputed.
    pub entries_checked: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_checked: u64,
    /// The largest checkpoint that verified.
    pub latest_verified: Option<u64>,
    /// The keys trusted at the end (pinned or first, plus rotations).
    pub trusted_keys: Vec<String>,
    /// Whether trust started from the log's own first key (no `--key`).
    pub trust_on_first_key: bool,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The lowest sequence number any problem puts in doubt.
    pub fn first_bad_seq(&self) -> Option<u64> {
        self.problems
            .iter()
            .filter_map(Problem::first_bad_seq)
            .min()
    }
}

/// Parses the checkpoints in an anchor file (notes separated by blank lines).
pub fn parse_anchor(text: &str) -> Vec<Result<SignedCheckpoint, String>> {
    let mut out = Vec::new();
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let mut i = 0;
    while i < blocks.len() {
        let body = blocks[i];
        let Some(sigs) = blocks.get(i + 1) else {
            out.push(Err(
                "checkpoint without signatures at the end of the file".into()
            ));
            break;
        };
        let note = format!(
            "{}\n\n{}\n",
            body.trim_start_matches('\n'),
            sigs.trim_end_matches('\n')
        );
        out.push(SignedCheckpoint::parse(&note).map_err(|e| e.to_string()));
        i += 2;
    }
    out
}

fn genesis_key<S: LogStore + ?Sized>(store: &S) -> Result<Option<VerifierKey>, StoreError> {
    Ok(store
        .verifier_keys()?
        .first()
        .and_then(|k| VerifierKey::parse(k).ok()))
}

/// Verifies the whole log in `store` (or, with `since`, everything after a saved checkpoint).
///
/// Never fails: every problem, including unreadable storage, is in the report.
pub fn verify_store<S: LogStore + ?Sized>(store: &S, opts: &VerifyOptions) -> VerifyReport {
    let mut report = VerifyReport::default();
    if let Err(e) = verify_inner(store, opts, &mut report) {
        report.problems.push(Problem::Store(e.to_string()));
    }
    report
}

struct CheckpointAt {
    parsed: Result<SignedCheckpoint, String>,
}

fn verify_inner<S: LogStore + ?Sized>(
    store: &S,
    opts: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let size = store.size()?;
    report.entries = size;
    let origin = store.meta("origin")?;

    let mut roots = opts.keys.clone();
    if roots.is_empty() {
        report.trust_on_first_key = true;
        roots.extend(genesis_key(store)?);
    }
    let mut chain = KeyChain::new(roots);

    // All checkpoints by size.
    let mut checkpoints: BTreeMap<u64, CheckpointAt> = BTreeMap::new();
    for item in store.checkpoints() {
        let (at, raw) = item?;
        let parsed = SignedCheckpoint::parse(&raw).map_err(|e| e.to_string());
        checkpoints.insert(at, CheckpointAt { parsed });
    }
    let max_cp = checkpoints.keys().next_back().copied().unwrap_or(0);

    // Sizes at which we need the recomputed root for external checkpoints.
    let mut wanted: BTreeMap<u64, Option<Hash>> = BTreeMap::new();
    for ext in opts.anchors.iter().chain(opts.since.iter()) {
        wanted.insert(ext.checkpoint.checkpoint.size, None);
    }

    // Starting point.
    let mut start = 0u64;
    let mut frontier = Frontier::new();
    if let Some(since) = &opts.since {
        let cp = &since.checkpoint.checkpoint;
        if cp.size <= size && cp.size > 0 {
            match Frontier::from_source(&StoredTree(store), cp.size) {
                Ok(f) if f.root() == cp.root => {
                    start = cp.size;
                    frontier = f;
                    // Keys introduced before the saved checkpoint are not re-derived in an
                    // incremental run: trust every key the store lists, unless keys are pinned.
                    if opts.keys.is_empty() {
                        let mut keys = chain.trusted().to_vec();
                        for k in store.verifier_keys()? {
                            if let Ok(k) = VerifierKey::parse(&k) {
                                if !keys.contains(&k) {
                                    keys.push(k);
                                }
                            }
                        }
                        chain = KeyChain::new(keys);
                    }
                }
                // Stored hashes disagree with the saved checkpoint: fall back to a full run,
                // which will name what changed.
                _ => {}
            }
        }
    }
    // The tree over the *stored* leaf hashes equals the recomputed one until an entry's
    // recomputed hash differs from its stored hash; only then is it kept separately.
    let mut stored_frontier: Option<Frontier> = None;
    if let Some(slot) = wanted.get_mut(&start) {
        *slot = Some(frontier.root());
    }

    let mut leaf_iter = store.leaf_hashes(start, size).peekable();
    let mut suspects: Vec<u64> = Vec::new();
    let mut last_verified = start;
    let mut mismatch_reported = false;
    let mut pending_cps = checkpoints
        .range(start.max(1)..)
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();

    let mut expected = start;
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .clamp(1, MAX_WORKERS);
    // One thread reads entries from the store in batches and deals them round-robin to
    // persistent hashing threads (leaf hashes and entry heads); this thread takes the results
    // back in the same round-robin order, so batches arrive in sequence order, and walks them.
    // Every channel is bounded, so at most a few batches are in memory.
    std::thread::scope(|scope| -> Result<(), StoreError> {
        let results = spawn_pipeline(scope, store, start, size, workers);
        'chunks: for checked in OrderedResults::new(&results) {
            let (batch, checked) = checked?;
            let chunk: Vec<(u64, &[u8])> = batch.iter().flat_map(EntryChunk::iter).collect();
            let checked = checked.unwrap_or_else(|| check_all(&chunk));
            for ((seq, bytes), (leaf, head)) in chunk.iter().zip(checked) {
                let seq = *seq;
                if seq < expected {
                    continue;
                }
                if seq > expected {
                    report.problems.push(Problem::EntryMissing {
                        seq: expected,
                        count: seq - expected,
                    });
                    // Keep the tree going with the stored leaf hashes of the missing entries,
                    // so later checkpoints can still be checked.
                    while expected < seq {
                        let Some(h) = next_stored(&mut leaf_iter, expected)? else {
                            // Without the entry or its hash the tree cannot be rebuilt past
                            // here.
                            break 'chunks;
                        };
                        frontier.push(h, |_| {});
                        if let Some(sf) = stored_frontier.as_mut() {
                            sf.push(h, |_| {});
                        }
                        expected += 1;
                        if check_due(
                            &mut pending_cps,
                            &checkpoints,
                            &frontier,
                            stored_frontier.as_ref().unwrap_or(&frontier),
                            &mut suspects,
                            &mut last_verified,
                            &mut mismatch_reported,
                            &mut chain,
                            origin.as_deref(),
                            report,
                            &mut wanted,
                        ) {
                            if let Some(sf) = stored_frontier.take() {
                                frontier = sf;
                            }
                        }
                    }
                }
                let stored = next_stored(&mut leaf_iter, seq)?;
                match head {
                    Head::Ok { seq_field, key } => {
                        if seq_field != Some(seq) {
                            report.problems.push(Problem::EntryMalformed {
                                seq,
                                reason: format!("its seq field is {seq_field:?}"),
                            });
                        }
                        if key {
                            if let Ok(ev) = serde_json::from_slice::<Event>(bytes) {
                                chain.observe(seq, &ev);
                            }
                        }
                    }
                    Head::Bad(reason) => report.problems.push(Problem::EntryMalformed {
                        seq,
                        reason: format!("not a valid event: {reason}"),
                    }),
                }
                let stored_leaf = stored.unwrap_or(leaf);
                if stored_leaf != leaf {
                    suspects.push(seq);
                    if stored_frontier.is_none() {
                        stored_frontier = Some(frontier.clone());
                    }
                }
                frontier.push(leaf, |_| {});
                if let Some(sf) = stored_frontier.as_mut() {
                    sf.push(stored_leaf, |_| {});
                }
                report.entries_checked += 1;
                expected = seq.saturating_add(1);
                if check_due(
                    &mut pending_cps,
                    &checkpoints,
                    &frontier,
                    stored_frontier.as_ref().unwrap_or(&frontier),
                    &mut suspects,
                    &mut last_verified,
                    &mut mismatch_reported,
                    &mut chain,
                    origin.as_deref(),
                    report,
                    &mut wanted,
                ) {
                    if let Some(sf) = stored_frontier.take() {
                        frontier = sf;
                    }
                }
            }
        }
        Ok(())
    })?;

    if max_cp > size {
        report.problems.push(Problem::Truncated {
            entries: size,
            checkpoint_size: max_cp,
        });
    }

    // External checkpoints.
    for ext in opts.anchors.iter().chain(opts.since.iter()) {
        let cp = &ext.checkpoint.checkpoint;
        if let Err(e) = ext.checkpoint.verify(chain.trusted()) {
            report.problems.push(Problem::BadSignature {
                checkpoint_size: cp.size,
                reason: format!("{} ({})", e, ext.source),
            });
            continue;
        }
        if cp.size > size {
            report.problems.push(Problem::Rollback {
                entries: size,
                checkpoint_size: cp.size,
                source: ext.source.clone(),
            });
            continue;
        }
        match wanted.get(&cp.size).copied().flatten() {
            Some(root) if root == cp.root => {}
            Some(_) => report.problems.push(Problem::Fork {
                checkpoint_size: cp.size,
                source: ext.source.clone(),
            }),
            None => {
                // Before the incremental start: compare with the stored tree.
                let root = crate::merkle::tree_root(&StoredTree(store), cp.size)?;
                if root != cp.root {
                    report.problems.push(Problem::Fork {
                        checkpoint_size: cp.size,
                        source: ext.source.clone(),
                    });
                }
            }
        }
    }
    report.trusted_keys = chain.trusted().iter().map(ToString::to_string).collect();
    Ok(())
}

/// Entries per chunk handed from the reader thread to the hashing threads.
const CHUNK: usize = 2048;

/// Batches queued per hashing thread, on each side of it.
const PIPELINE_DEPTH: usize = 2;

/// Most threads hashing entries.
const MAX_WORKERS: usize = 8;

/// What verification needs from an entry's JSON, decoded off the main thread.
enum Head {
    /// A well-formed event head.
    Ok {
        /// Its `seq` field.
        seq_field: Option<u64>,
        /// Whether it is a `key` event (decoded in full, in order, for the key chain).
        key: bool,
    },
    /// Not an event.
    Bad(String),
}

/// The leaf hash and head of one entry.
fn check_entry(bytes: &[u8]) -> (Hash, Head) {
    let leaf = leaf_hash(bytes);
    let head = match crate::entry_head::parse_head(bytes) {
        Ok((seq_field, category)) => Head::Ok {
            seq_field,
            key: category == Category::Key,
        },
        Err(e) => Head::Bad(e),
    };
    (leaf, head)
}

/// A batch of store pages read in one go (about [`CHUNK`] entries).
type Pages = Vec<EntryChunk>;

/// What a hashing thread hands back for one batch: the pages and the leaf hash and head of
/// every entry in them, in order (`None` if hashing failed unexpectedly; the walk then redoes
/// it, so no entry goes unchecked), or the read error met instead of the batch.
type Checked = Result<(Pages, Option<Vec<(Hash, Head)>>), StoreError>;

/// Leaf hashes and heads of `chunk`, in order.
fn check_all(chunk: &[(u64, &[u8])]) -> Vec<(Hash, Head)> {
    chunk.iter().map(|(_, b)| check_entry(b)).collect()
}

/// Leaf hashes and heads of every entry of `pages`, in order; `None` if that panicked.
fn check_pages(pages: &Pages) -> Option<Vec<(Hash, Head)>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pages
            .iter()
            .flat_map(EntryChunk::iter)
            .map(|(_, b)| check_entry(b))
            .collect()
    }))
    .ok()
}

/// Starts the reader thread and `workers` hashing threads on `from..to` and returns one
/// result channel per hashing thread. Batch `i` goes to hashing thread `i % workers`, so
/// reading the channels round-robin ([`OrderedResults`]) yields the batches in order.
///
/// Dropping the receivers stops the threads (their next send fails).
fn spawn_pipeline<'scope, 'env, S: LogStore + ?Sized>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    store: &'env S,
    from: u64,
    to: u64,
    workers: usize,
) -> Vec<Receiver<Checked>> {
    let mut jobs = Vec::with_capacity(workers);
    let mut results = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let (job_tx, job_rx) = sync_channel::<Result<Pages, StoreError>>(PIPELINE_DEPTH);
        let (done_tx, done_rx) = sync_channel::<Checked>(PIPELINE_DEPTH);
        scope.spawn(move || hash_batches(&job_rx, &done_tx));
        jobs.push(job_tx);
        results.push(done_rx);
    }
    scope.spawn(move || read_batches(store, from, to, &jobs));
    results
}

/// The reader thread: reads `from..to` in batches of about [`CHUNK`] entries and deals them
/// round-robin to `jobs`. A read error is passed on in place of the next batch and ends it.
fn read_batches<S: LogStore + ?Sized>(
    store: &S,
    from: u64,
    to: u64,
    jobs: &[SyncSender<Result<Pages, StoreError>>],
) {
    let mut next = jobs.iter().cycle();
    let mut send = |batch: Result<Pages, StoreError>| -> bool {
        next.next().is_some_and(|tx| tx.send(batch).is_ok())
    };
    let mut batch = Vec::new();
    let mut n = 0usize;
    for item in store.entry_chunks(from, to) {
        match item {
            Ok(c) => {
                n += c.records.len();
                batch.push(c);
                if n >= CHUNK {
                    n = 0;
                    if !send(Ok(std::mem::take(&mut batch))) {
                        return;
                    }
                }
            }
            Err(e) => {
                send(Err(e));
                return;
            }
        }
    }
    if !batch.is_empty() {
        send(Ok(batch));
    }
}

/// A hashing thread: checks every batch it is given and sends it back, until either side
/// hangs up.
fn hash_batches(jobs: &Receiver<Result<Pages, StoreError>>, done: &SyncSender<Checked>) {
    for job in jobs {
        let checked = job.map(|pages| {
            let checked = check_pages(&pages);
            (pages, checked)
        });
        if done.send(checked).is_err() {
            return;
        }
    }
}

/// The hashing threads' results in batch order: round-robin over their channels, ending at the
/// first channel that is closed and empty (the reader stopped before that batch).
struct OrderedResults<'a> {
    channels: &'a [Receiver<Checked>],
    next: usize,
}

impl<'a> OrderedResults<'a> {
    fn new(channels: &'a [Receiver<Checked>]) -> Self {
        OrderedResults { channels, next: 0 }
    }
}

impl Iterator for OrderedResults<'_> {
    type Item = Checked;

    fn next(&mut self) -> Option<Checked> {
        let rx = self.channels.get(self.next % self.channels.len().max(1))?;
        self.next += 1;
        rx.recv().ok()
    }
}

fn next_stored<I>(iter: &mut std::iter::Peekable<I>, seq: u64) -> Result<Option<Hash>, StoreError>
where
    I: Iterator<Item = Result<(u64, Hash), StoreError>>,
{
    loop {
        match iter.peek() {
            None => return Ok(None),
            Some(Err(_)) => {
                return match iter.next() {
                    Some(Err(e)) => Err(e),
                    _ => Ok(None),
                }
            }
            Some(Ok((i, h))) => {
                if *i < seq {
                    iter.next();
                    continue;
                }
                if *i == seq {
                    let h = *h;
                    iter.next();
                    return Ok(Some(h));
                }
                return Ok(None);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_due(
    pending: &mut std::iter::Peekable<std::vec::IntoIter<u64>>,
    checkpoints: &BTreeMap<u64, CheckpointAt>,
    frontier: &Frontier,
    stored_frontier: &Frontier,
    suspects: &mut Vec<u64>,
    last_verified: &mut u64,
    mismatch_reported: &mut bool,
    chain: &mut KeyChain,
    origin: Option<&str>,
    report: &mut VerifyReport,
    wanted: &mut BTreeMap<u64, Option<Hash>>,
) -> bool {
    let size = frontier.size();
    if let Some(slot) = wanted.get_mut(&size) {
        *slot = Some(frontier.root());
    }
    while pending.peek().is_some_and(|s| *s < size) {
        pending.next();
    }
    if pending.peek() != Some(&size) {
        return false;
    }
    pending.next();
    let Some(at) = checkpoints.get(&size) else {
        return false;
    };
    let cp = match &at.parsed {
        Ok(cp) => cp,
        Err(e) => {
            report.problems.push(Problem::BadCheckpoint {
                checkpoint_size: size,
                reason: e.clone(),
            });
            return false;
        }
    };
    if cp.checkpoint.size != size {
        report.problems.push(Problem::BadCheckpoint {
            checkpoint_size: size,
            reason: format!("it says size {}", cp.checkpoint.size),
        });
        return false;
    }
    if let Some(o) = origin {
        if cp.checkpoint.origin != o {
            report.problems.push(Problem::BadCheckpoint {
                checkpoint_size: size,
                reason: format!(
                    "origin {:?} is not this log's {:?}",
                    cp.checkpoint.origin, o
                ),
            });
            return false;
        }
    }
    report.checkpoints_checked += 1;
    if let Err(e) = cp.verify(chain.trusted()) {
        report.problems.push(Problem::BadSignature {
            checkpoint_size: size,
            reason: e.to_string(),
        });
        return false;
    }
    chain.covered(size);
    if cp.checkpoint.root == frontier.root() {
        *last_verified = size;
        report.latest_verified = Some(size);
        suspects.clear();
        return false;
    }
    if cp.checkpoint.root == stored_frontier.root() && !suspects.is_empty() {
        // The stored leaf hashes reproduce the signed root, so they are authentic and the
        // suspects are exactly the altered entries. Continue on the authentic hashes so later
        // checkpoints are still checked.
        for seq in suspects.iter() {
            report.problems.push(Problem::EntryAltered {
                seq: *seq,
                checkpoint_size: size,
            });
        }
        suspects.clear();
        *last_verified = size;
        return true;
    }
    if !*mismatch_reported {
        {
            report.problems.push(Problem::RootMismatch {
                checkpoint_size: size,
                first_suspect: *last_verified,
            });
        }
        *mismatch_reported = true;
    }
    suspects.clear();
    false
}
