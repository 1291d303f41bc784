//! The index the authorizer decides with: the compiled rules grouped by subject, then by
//! (resource type, effect, operation), then by pattern kind (`*`, literal names in a hash
//! map, prefixes in a [`PrefixSet`]).
//!
//! It exists because casbin's `enforce` scans every policy line (about 10 ms at 10,000
//! lines). A decision here costs a handful of hash lookups per subject and operation plus a
//! binary search over prefixes, independent of how many rules other subjects have. casbin
//! stays the specification: it is still loaded and validated with every policy, and a
//! property test (`index_equivalence_tests.rs`) checks the index decides exactly as casbin's
//! model does.
//!
//! The index also decides names casbin must never see (non-ASCII, control characters,
//! over-long ids): it matches bytes, so every deny rule applies to every name.

use std::collections::{BTreeMap, HashMap};

use crate::prefix_set::PrefixSet;
use crate::resource::{Operation, ResourceType};
use crate::rules::{Effect, Pattern, Rule};

/// Which allow rules may grant a request. Deny rules always apply in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowScope {
    /// Every allow rule whose pattern matches the name.
    Every,
    /// Only allow rules whose pattern is `*` (for names outside what casbin can match).
    WildcardOnly,
}

/// What the index found, as positions in the rule list (file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A deny rule matched; the first matching deny in file order.
    Denied(usize),
    /// No deny matched and an allow did; the first matching allow in file order.
    Allowed(usize),
    /// Nothing matched.
    NoMatch,
}

/// The rules of one (subject, resource type, effect, operation), by pattern kind. Every
/// value is the smallest rule position carrying that pattern.
#[derive(Debug, Default)]
struct PatternSet {
    any: Option<u32>,
    literals: HashMap<Box<[u8]>, u32>,
    prefixes: PrefixSet,
}

impl PatternSet {
    fn first_match(&self, name: &[u8], scope: AllowScope) -> Option<u32> {
        if scope == AllowScope::WildcardOnly {
            return self.any;
        }
        let literal = self.literals.get(name).copied();
        let prefix = if self.prefixes.is_empty() {
            None
        } else {
            self.prefixes.first_match(name)
        };
        min_opt(min_opt(self.any, literal), prefix)
    }
}

fn min_opt(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// (resource type, effect, operation) packed into one sortable number.
fn set_key(resource: ResourceType, effect: Effect, op: Operation) -> u16 {
    let effect = match effect {
        Effect::Allow => 0u16,
        Effect::Deny => 1,
    };
    ((resource as u16) << 8) | (effect << 7) | op as u16
}

/// One subject's rules, sorted by [`set_key`].
#[derive(Debug, Default)]
struct SubjectRules {
    sets: Vec<(u16, PatternSet)>,
}

impl SubjectRules {
    fn get(&self, key: u16) -> Option<&PatternSet> {
        self.sets
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &self.sets[i].1)
    }
}

#[derive(Default)]
struct SetBuilder {
    any: Option<u32>,
    literals: HashMap<Box<[u8]>, u32>,
    prefixes: Vec<(Box<[u8]>, u32)>,
}

/// The compiled rules, indexed for decisions.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    subjects: HashMap<Box<str>, SubjectRules>,
}

impl RuleIndex {
    /// The most rules one index holds (positions are stored as `u32`).
    pub const MAX_RULES: usize = u32::MAX as usize - 1;

    /// Indexes `rules`; positions in the returned verdicts refer to this slice. Rules past
    /// [`RuleIndex::MAX_RULES`] are not indexed (callers reject such policies first).
    pub fn build(rules: &[Rule]) -> RuleIndex {
        let mut builders: HashMap<&str, BTreeMap<u16, SetBuilder>> = HashMap::new();
        for (position, rule) in rules.iter().enumerate().take(Self::MAX_RULES) {
            let position = position as u32;
            let set = builders
                .entry(rule.subject.as_str())
                .or_default()
                .entry(set_key(rule.resource, rule.effect, rule.operation))
                .or_default();
            // Rules arrive in file order, so the first position stored is the smallest.
            match &rule.pattern {
                Pattern::Any => {
                    set.any.get_or_insert(position);
                }
                Pattern::Literal(l) => {
                    set.literals.entry(l.as_bytes().into()).or_insert(position);
                }
                Pattern::Prefix(p) => set.prefixes.push((p.as_bytes().into(), position)),
            }
        }
        let subjects = builders
            .into_iter()
            .map(|(subject, sets)| {
                let sets = sets
                    .into_iter()
                    .map(|(key, b)| {
                        let mut literals = b.literals;
                        literals.shrink_to_fit();
                        (
                            key,
                            PatternSet {
                                any: b.any,
                                literals,
                                prefixes: PrefixSet::build(b.prefixes),
                            },
                        )
                    })
                    .collect();
                (Box::from(subject), SubjectRules { sets })
            })
            .collect();
        RuleIndex { subjects }
    }

    /// Decides a request by any of `subjects`: the first deny (in file order) of `op` or of
    /// an operation whose deny covers it wins; otherwise the first allow of an operation
    /// that implies `op`, among the allow rules `scope` admits.
    pub fn decide(
        &self,
        subjects: &[String],
        resource: ResourceType,
        name: &[u8],
        op: Operation,
        scope: AllowScope,
    ) -> Verdict {
        let rules: Vec<&SubjectRules> = subjects
            .iter()
            .filter_map(|s| self.subjects.get(s.as_str()))
            .collect();
        let first = |effect: Effect, ops: &[Operation], scope: AllowScope| {
            let mut best: Option<u32> = None;
            for r in &rules {
                for &o in ops {
                    if let Some(set) = r.get(set_key(resource, effect, o)) {
                        best = min_opt(best, set.first_match(name, scope));
                    }
                }
            }
            best
        };
        if let Some(p) = first(Effect::Deny, op.denied_by(), AllowScope::Every) {
            return Verdict::Denied(p as usize);
        }
        match first(Effect::Allow, op.allowed_by(), scope) {
            Some(p) => Verdict::Allowed(p as usize),
            None => Verdict::NoMatch,
        }
    }
}
