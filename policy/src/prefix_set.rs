//! A sorted set of name prefixes that answers "which prefixes does this name start with, and
//! which of them comes first in the policy files?" in O(log n) plus the nesting depth,
//! whatever the bytes of the name.
//!
//! Why not a trie: a byte trie of 100,000 distinct prefixes costs millions of nodes; a
//! sorted vector costs one string per prefix and builds with one sort. Kafka's
//! StandardAuthorizer walks its prefix ACLs in a sorted map too, but scans every shorter
//! prefix of the name; here each entry knows its nearest enclosing prefix, so the walk
//! visits only the prefixes that exist.
//!
//! The lookup rests on one fact about lexicographic order: if `p` is a prefix of `name`, then
//! every string between `p` and `name` starts with `p`. So every stored prefix of `name` is
//! also a prefix of `e`, the greatest stored entry not above `name`; they are `e` and its
//! chain of enclosing entries. Of those, the ones that are prefixes of `name` are exactly the
//! ones no longer than the common prefix of `e` and `name`.

/// Prefixes, each with the smallest rule position among the rules that carry it.
#[derive(Debug, Default, Clone)]
pub(crate) struct PrefixSet {
    /// Sorted, distinct prefixes.
    prefixes: Vec<Box<[u8]>>,
    /// For each entry, the longest other entry that is a prefix of it.
    parent: Vec<Option<u32>>,
    /// For each entry, the smallest rule position over the entry and all its enclosing
    /// entries: the answer for any name whose longest stored prefix is this entry.
    chain_min: Vec<u32>,
}

impl PrefixSet {
    /// Builds the set from `(prefix, rule position)` pairs in any order; a prefix given
    /// more than once keeps its smallest position.
    pub fn build(mut entries: Vec<(Box<[u8]>, u32)>) -> PrefixSet {
        entries.sort_unstable();
        // Sorted by prefix, then position: the first of each run is the smallest.
        entries.dedup_by(|later, first| later.0 == first.0);
        let mut set = PrefixSet {
            prefixes: Vec::with_capacity(entries.len()),
            parent: Vec::with_capacity(entries.len()),
            chain_min: Vec::with_capacity(entries.len()),
        };
        // Sorted order is a depth-first walk of the prefix tree: the stack holds the chain
        // of entries enclosing the current one.
        let mut stack: Vec<u32> = Vec::new();
        for (i, (prefix, position)) in entries.into_iter().enumerate() {
            while let Some(&top) = stack.last() {
                if prefix.starts_with(&set.prefixes[top as usize]) {
                    break;
                }
                stack.pop();
            }
            let parent = stack.last().copied();
            let inherited = parent.map_or(u32::MAX, |p| set.chain_min[p as usize]);
            set.prefixes.push(prefix);
            set.parent.push(parent);
            set.chain_min.push(position.min(inherited));
            // Positions fit: the index refuses more than u32::MAX rules.
            stack.push(i as u32);
        }
        set
    }

    /// Whether the set holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The smallest rule position among the stored prefixes `name` starts with.
    pub fn first_match(&self, name: &[u8]) -> Option<u32> {
        let below = self.prefixes.partition_point(|p| &**p <= name);
        let mut cur = below.checked_sub(1)?;
        let common = common_prefix_len(&self.prefixes[cur], name);
        loop {
            if self.prefixes[cur].len() <= common {
                return Some(self.chain_min[cur]);
            }
            cur = self.parent[cur]? as usize;
        }
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(entries: &[(&str, u32)]) -> PrefixSet {
        PrefixSet::build(
            entries
                .iter()
                .map(|(p, i)| (p.as_bytes().into(), *i))
                .collect(),
        )
    }

    #[test]
    fn nested_and_sibling_prefixes() {
        let s = set(&[
            ("ab", 5),
            ("a", 9),
            ("abc", 1),
            ("b", 2),
            ("ab", 3),
            ("", 7),
        ]);
        assert_eq!(s.first_match(b"abcd"), Some(1));
        assert_eq!(s.first_match(b"abd"), Some(3));
        assert_eq!(s.first_match(b"aa"), Some(7));
        assert_eq!(s.first_match(b"b"), Some(2));
        assert_eq!(s.first_match(b"c"), Some(7));
        assert_eq!(s.first_match(b""), Some(7));
        let s = set(&[("orders", 4), ("orders.eu", 8)]);
        assert_eq!(s.first_match(b"orders.eu.1"), Some(4));
        assert_eq!(s.first_match(b"orders"), Some(4));
        assert_eq!(s.first_match(b"order"), None);
        assert_eq!(s.first_match(b"orders\xff\xfe"), Some(4));
        assert!(set(&[]).first_match(b"x").is_none());
    }

    proptest! {
        #[test]
        fn agrees_with_a_scan(
            entries in prop::collection::vec(("[ab.]{0,4}", 0u32..50), 0..20),
            names in prop::collection::vec("[ab.c]{0,6}", 1..20),
        ) {
            let s = PrefixSet::build(
                entries.iter().map(|(p, i)| (p.as_bytes().into(), *i)).collect(),
            );
            for name in &names {
                let scan = entries
                    .iter()
                    .filter(|(p, _)| name.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
                    .min();
                prop_assert_eq!(s.first_match(name.as_bytes()), scan, "{}", name);
            }
        }
    }
}
