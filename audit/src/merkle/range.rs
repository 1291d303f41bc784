//! Range proofs: the hashes that, together with the leaves `from..to`, rebuild the root of a
//! tree of `size` leaves.
//!
//! An export of entries `from..to` carries one such proof per checkpoint, so an auditor can
//! check a slice of the log against a signed root without the entries outside the slice. The
//! proof lists, in the order the RFC 6962 recursion meets them, the hash of every maximal
//! subtree that lies entirely outside `from..to`.

use super::hash::{node_hash, Hash};
use super::proof::ProofError;
use super::tree::{split_point, subtree_hash, HashSource};

/// The range proof for leaves `from..to` in the tree of `size` leaves
/// (`from < to <= size`; an empty proof otherwise).
///
/// # Errors
///
/// Whatever the source returns.
pub fn range_proof<S: HashSource + ?Sized>(
    src: &S,
    from: u64,
    to: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut out = Vec::new();
    if from < to && to <= size {
        collect(src, from, to, 0, size, &mut out)?;
    }
    Ok(out)
}

fn collect<S: HashSource + ?Sized>(
    src: &S,
    from: u64,
    to: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if end <= from || start >= to {
        out.push(subtree_hash(src, start, end)?);
        return Ok(());
    }
    if end - start == 1 {
        return Ok(());
    }
    let k = split_point(end - start);
    collect(src, from, to, start, start + k, out)?;
    collect(src, from, to, start + k, end, out)
}

/// Rebuilds the root of the tree of `size` leaves from the leaf hashes of `from..to`
/// (`leaves[i]` is leaf `from + i`) and a [`range_proof`].
///
/// # Errors
///
/// [`ProofError::BadSizes`] if the range is empty or outside the tree or does not match the
/// number of leaves, [`ProofError::WrongLength`] if the proof has too few or too many hashes.
pub fn root_from_range(
    from: u64,
    to: u64,
    size: u64,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if from >= to || to > size || (to - from) != leaves.len() as u64 {
        return Err(ProofError::BadSizes {
            first: from,
            second: to,
        });
    }
    let mut rebuild = Rebuild {
        from,
        to,
        leaves,
        proof,
        used: 0,
    };
    let root = rebuild.hash(0, size)?;
    if rebuild.used != proof.len() {
        return Err(ProofError::WrongLength);
    }
    Ok(root)
}

struct Rebuild<'a> {
    from: u64,
    to: u64,
    leaves: &'a [Hash],
    proof: &'a [Hash],
    used: usize,
}

impl Rebuild<'_> {
    fn hash(&mut self, start: u64, end: u64) -> Result<Hash, ProofError> {
        if end <= self.from || start >= self.to {
            let h = self
                .proof
                .get(self.used)
                .copied()
                .ok_or(ProofError::WrongLength)?;
            self.used += 1;
            return Ok(h);
        }
        if end - start == 1 {
            // start is inside from..to, checked above.
            return self
                .leaves
                .get((start - self.from) as usize)
                .copied()
                .ok_or(ProofError::WrongLength);
        }
        let k = split_point(end - start);
        let left = self.hash(start, start + k)?;
        let right = self.hash(start + k, end)?;
        Ok(node_hash(&left, &right))
    }
}
