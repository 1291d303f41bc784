//! Tree roots and the append frontier.
//!
//! A tree of size `n` is addressed through *perfect subtrees*: `(level, index)` covers leaves
//! `index << level .. (index + 1) << level`. Storage keeps some of them; a [`HashSource`] hands
//! them out, and [`subtree_hash`] combines them into the hash of any range the RFC 6962
//! recursion needs.

use super::hash::{empty_root, node_hash, Hash};

/// A reader of perfect-subtree hashes.
///
/// `perfect(0, i)` is the leaf hash of entry `i`; `perfect(l, i)` the root of the perfect
/// subtree of `2^l` leaves starting at `i << l`. Callers only ask for subtrees that lie inside
/// the tree they work on.
pub trait HashSource {
    /// Why a hash could not be read.
    type Error;
    /// The hash of perfect subtree `(level, index)`.
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The largest power of two strictly less than `n` (`n >= 2`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D\[start:end\]) per RFC 6962 §2.1, for `start < end`.
///
/// Perfect aligned ranges are asked of the source directly, so a source that stores interior
/// nodes answers in one read.
pub fn subtree_hash<S: HashSource + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start % n == 0 {
        let level = n.trailing_zeros() as u8;
        return src.perfect(level, start >> level);
    }
    let k = split_point(n);
    let left = subtree_hash(src, start, start + k)?;
    let right = subtree_hash(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves (the empty root for 0).
pub fn tree_root<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_hash(src, 0, size)
}

/// A perfect subtree completed by [`Frontier::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// The subtree's level (0 for a leaf).
    pub level: u8,
    /// The subtree's index at that level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// The right edge of a growing tree: the roots of the perfect subtrees that make up the first
/// `size` leaves (one per set bit of `size`, largest first).
///
/// Appending a leaf costs amortized one node hash, and the root is available at any size, which
/// is what the sequencer (checkpoints) and the verifier (streaming recomputation) need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    stack: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the frontier of the first `size` leaves from a hash source.
    ///
    /// # Errors
    ///
    /// Whatever the source returns.
    pub fn from_source<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut stack = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                stack.push((level, src.perfect(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, stack })
    }

    /// How many leaves the frontier covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; `on_node` sees every perfect subtree completed by it, the leaf
    /// itself (level 0) first.
    pub fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(NewNode)) {
        let index = self.size;
        on_node(NewNode {
            level: 0,
            index,
            hash: leaf,
        });
        let mut cur = (0u8, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != cur.0 {
                break;
            }
            self.stack.pop();
            let merged = (level + 1, node_hash(&left, &cur.1));
            on_node(NewNode {
                level: merged.0,
                index: index >> merged.0,
                hash: merged.1,
            });
            cur = merged;
        }
        self.stack.push(cur);
        self.size += 1;
    }

    /// The tree root at the current size.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut root)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            root = node_hash(left, &root);
        }
        root
    }
}

/// A tree held in memory as its leaf hashes: the reference [`HashSource`] for tests, exports
/// and proofs computed over a handful of leaves.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    leaves: Vec<Hash>,
}

impl MemoryTree {
    /// A tree over the given leaf hashes.
    pub fn new(leaves: Vec<Hash>) -> MemoryTree {
        MemoryTree { leaves }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.leaves.push(leaf);
    }
}

/// Asked for a subtree outside a [`MemoryTree`]: a caller bug, reported rather than a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subtree (level {level}, index {index}) is outside the tree")]
pub struct OutOfTree {
    /// The level asked for.
    pub level: u8,
    /// The index asked for.
    pub index: u64,
}

impl HashSource for MemoryTree {
    type Error = OutOfTree;
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, OutOfTree> {
        let oob = OutOfTree { level, index };
        let width = 1u64.checked_shl(u32::from(level)).ok_or(oob)?;
        let start = index.checked_mul(width).ok_or(oob)?;
        let end = start.checked_add(width).ok_or(oob)?;
        if end > self.size() {
            return Err(oob);
        }
        if level == 0 {
            return self.leaves.get(start as usize).copied().ok_or(oob);
        }
        let left = self.perfect(level - 1, index * 2)?;
        let right = self.perfect(level - 1, index * 2 + 1)?;
        Ok(node_hash(&left, &right))
    }
}
