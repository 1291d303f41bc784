//! The RFC 6962 / RFC 9162 Merkle tree that makes the audit log tamper-evident.
//!
//! Every stored entry is a leaf; a signed checkpoint commits to the root of the first `n`
//! leaves. Changing, removing or reordering any entry changes every later root, so a log that
//! no longer matches its signed checkpoints has been altered. Inclusion proofs show one entry is
//! in a checkpointed tree; consistency proofs show a later tree extends an earlier one (no
//! rollback, no rewrite).
//!
//! Everything here is a pure function over a [`HashSource`] (a reader of perfect-subtree
//! hashes), so the same code serves the live log (hashes from storage), verification (hashes
//! recomputed from entries) and offline checks of exports (hashes from a file).

mod hash;
mod proof;
mod range;
mod tree;

pub use hash::{empty_root, leaf_hash, node_hash, Hash, HASH_LEN};
pub use proof::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, ProofError,
};
pub use range::{range_proof, root_from_range};
pub use tree::{subtree_hash, tree_root, Frontier, HashSource, MemoryTree, NewNode, OutOfTree};

#[cfg(test)]
mod kat_tests;
