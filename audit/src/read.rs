//! The read side: query, tail, inclusion proofs, checkpoint and key printing.
//!
//! Plain functions over a [`LogStore`], so the CLI (on a stopped proxy's data directory) and
//! the proxy's admin API (on the running log, through [`crate::AuditLog::store`]) share them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::event::{Category, Event, Outcome};
use crate::merkle::{inclusion_proof, leaf_hash, verify_inclusion, Hash};
use crate::note::VerifierKey;
use crate::store::{LogStore, StoreError, StoredTree};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request cannot be answered (for example an entry not yet checkpointed).
    #[error("{0}")]
    Unavailable(String),
}

/// Filters for [`query`]. Unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryFilter {
    /// Earliest timestamp (inclusive), RFC 3339 (a prefix such as `2025-01-31` works).
    pub since: Option<String>,
    /// Latest timestamp (exclusive), RFC 3339 or a prefix.
    pub until: Option<String>,
    /// Exact principal.
    pub principal: Option<String>,
    /// Category.
    pub category: Option<Category>,
    /// Action: exact, or a prefix ending in `*` (`kafka.*`).
    pub action: Option<String>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Resource name, or `type:name`.
    pub resource: Option<String>,
    /// Client address, or a prefix of it (an IP without port).
    pub client_addr: Option<String>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Most events returned (0: 100).
    pub limit: usize,
}

impl QueryFilter {
    /// Whether `e` passes every filter.
    pub fn matches(&self, e: &Event) -> bool {
        if self
            .since
            .as_deref()
            .is_some_and(|s| e.timestamp.as_str() < s)
        {
            return false;
        }
        if self
            .until
            .as_deref()
            .is_some_and(|u| e.timestamp.as_str() >= u)
        {
            return false;
        }
        if self.principal.is_some() && self.principal != e.principal {
            return false;
        }
        if self.category.is_some_and(|c| c != e.category) {
            return false;
        }
        if self.outcome.is_some_and(|o| o != e.outcome) {
            return false;
        }
        if let Some(a) = &self.action {
            let ok = match a.strip_suffix('*') {
                Some(prefix) => e.action.starts_with(prefix),
                None => &e.action == a,
            };
            if !ok {
                return false;
            }
        }
        if let Some(r) = &self.resource {
            let ok = e.resource.as_ref().is_some_and(|res| {
                r == &res.name || *r == format!("{}:{}", res.resource_type, res.name)
            });
            if !ok {
                return false;
            }
        }
        if let Some(c) = &self.client_addr {
            if !e
                .client_addr
                .as_deref()
                .is_some_and(|a| a.starts_with(c.as_str()))
            {
                return false;
            }
        }
        true
    }

    fn limit(&self) -> usize {
        if self.limit == 0 {
            100
        } else {
            self.limit
        }
    }
}

/// Events matching `filter`, using the principal or time index when the filter allows.
///
/// Entries that do not parse are skipped (`verify` reports them).
///
/// # Errors
///
/// [`ReadError::Store`].
pub fn query<S: LogStore + ?Sized>(
    store: &S,
    filter: &QueryFilter,
) -> Result<Vec<Event>, ReadError> {
    let limit = filter.limit();
    let mut out = Vec::new();
    let mut push = |bytes: &[u8]| -> bool {
        if let Ok(e) = serde_json::from_slice::<Event>(bytes) {
            if filter.matches(&e) {
                out.push(e);
            }
        }
        out.len() < limit
    };
    if let Some(p) = &filter.principal {
        for seq in store.seqs_by_principal(p, filter.newest_first) {
            if let Some(bytes) = store.entry(seq?)? {
                if !push(&bytes) {
                    break;
                }
            }
        }
    } else if filter.since.is_some() || filter.until.is_some() {
        let from = filter.since.clone().unwrap_or_default();
        let to = filter.until.clone().unwrap_or_else(|| "\u{10FFFF}".into());
        for seq in store.seqs_by_time(&from, &to, filter.newest_first) {
            if let Some(bytes) = store.entry(seq?)? {
                if !push(&bytes) {
                    break;
                }
            }
        }
    } else {
        for item in store.entries(0, u64::MAX, filter.newest_first) {
            let (_, bytes) = item?;
            if !push(&bytes) {
                break;
            }
        }
    }
    Ok(out)
}

/// The last `n` entries, oldest first, as stored.
///
/// # Errors
///
/// [`ReadError::Store`].
pub fn tail<S: LogStore + ?Sized>(store: &S, n: usize) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
    let mut out: Vec<(u64, Vec<u8>)> = store
        .entries(0, u64::MAX, true)
        .take(n)
        .collect::<Result<_, _>>()?;
    out.reverse();
    Ok(out)
}

/// Entries after `after` (exclusive), oldest first, for `tail -f`.
///
/// # Errors
///
/// [`ReadError::Store`].
pub fn entries_after<S: LogStore + ?Sized>(
    store: &S,
    after: Option<u64>,
    max: usize,
) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
    let from = after.map_or(0, |a| a.saturating_add(1));
    Ok(store
        .entries(from, u64::MAX, false)
        .take(max)
        .collect::<Result<_, _>>()?)
}

/// The latest signed checkpoint note.
///
/// # Errors
///
/// [`ReadError::Unavailable`] if the log has none yet.
pub fn latest_checkpoint<S: LogStore + ?Sized>(store: &S) -> Result<String, ReadError> {
    store
        .latest_checkpoint()?
        .map(|(_, note)| note)
        .ok_or_else(|| ReadError::Unavailable("the log has no checkpoint yet".into()))
}

/// Every verifier key the log has used, oldest first (the last is the current one).
///
/// # Errors
///
/// [`ReadError::Store`].
pub fn verifier_keys<S: LogStore + ?Sized>(store: &S) -> Result<Vec<String>, ReadError> {
    Ok(store.verifier_keys()?)
}

/// The format tag of proof files.
pub const PROOF_FORMAT: &str = "portcullis-audit-inclusion-proof/v1";

/// An inclusion proof file: one entry, its proof, and the signed checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The entry's sequence number (leaf index).
    pub seq: u64,
    /// The entry exactly as stored and hashed.
    pub entry: String,
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// Sibling hashes, deepest first, base64.
    pub proof: Vec<String>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

/// Builds the inclusion proof of entry `seq` against the latest checkpoint.
///
/// # Errors
///
/// [`ReadError::Unavailable`] if the entry does not exist or is newer than the latest
/// checkpoint (retry after the next one, at most a second later on a running proxy).
pub fn prove<S: LogStore + ?Sized>(store: &S, seq: u64) -> Result<ProofFile, ReadError> {
    let (size, note) = store
        .latest_checkpoint()?
        .ok_or_else(|| ReadError::Unavailable("the log has no checkpoint yet".into()))?;
    if seq >= size {
        return Err(ReadError::Unavailable(format!(
            "entry {seq} is not covered by the latest checkpoint (size {size}); retry after the next checkpoint"
        )));
    }
    let bytes = store
        .entry(seq)?
        .ok_or_else(|| ReadError::Unavailable(format!("entry {seq} does not exist")))?;
    let entry = String::from_utf8(bytes)
        .map_err(|_| ReadError::Unavailable(format!("entry {seq} is not UTF-8")))?;
    let proof = inclusion_proof(&StoredTree(store), seq, size)?
        .map_err(|e| ReadError::Unavailable(e.to_string()))?;
    Ok(ProofFile {
        format: PROOF_FORMAT.into(),
        seq,
        entry,
        tree_size: size,
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
        checkpoint: note,
    })
}

/// Verifies a proof file's JSON against trusted keys; returns the proven event.
///
/// # Errors
///
/// A message naming what does not verify.
pub fn verify_proof(json: &str, keys: &[VerifierKey]) -> Result<Event, String> {
    let file: ProofFile =
        serde_json::from_str(json).map_err(|e| format!("not a proof file: {e}"))?;
    if file.format != PROOF_FORMAT {
        return Err(format!("unknown proof format {:?}", file.format));
    }
    let cp = SignedCheckpoint::parse(&file.checkpoint).map_err(|e| format!("checkpoint: {e}"))?;
    cp.verify(keys)
        .map_err(|e| format!("FORGED: checkpoint signature: {e}"))?;
    if cp.checkpoint.size != file.tree_size {
        return Err(format!(
            "proof is for size {} but the checkpoint is for size {}",
            file.tree_size, cp.checkpoint.size
        ));
    }
    let proof: Vec<Hash> = file
        .proof
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| "proof hash is not 32 bytes of base64".to_string())
        })
        .collect::<Result<_, _>>()?;
    verify_inclusion(
        &leaf_hash(file.entry.as_bytes()),
        file.seq,
        file.tree_size,
        &proof,
        &cp.checkpoint.root,
    )
    .map_err(|e| {
        format!(
            "ALTERED: entry {} is not in the checkpointed log: {e}",
            file.seq
        )
    })?;
    let event: Event =
        serde_json::from_str(&file.entry).map_err(|e| format!("entry is not an event: {e}"))?;
    if event.seq != Some(file.seq) {
        return Err(format!(
            "entry's seq field {:?} is not {}",
            event.seq, file.seq
        ));
    }
    Ok(event)
}
