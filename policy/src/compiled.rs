//! One immutable, fully loaded policy generation: the rules with file:line, the rule index
//! that decides, the casbin enforcer that specifies (and cross-checks `explain`), the role
//! assignments, and the decision cache.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use casbin::Enforcer;

use crate::casbin_spec::{build_enforcer, casbin_allows};
use crate::dir_snapshot::DirSnapshot;
use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType};
use crate::role_assignments::RoleAssignments;
use crate::rule_index::{AllowScope, RuleIndex, Verdict};
use crate::rules::{self, Effect, Rule};

/// Decisions kept per generation before the cache is emptied (and its memory freed). Small
/// on purpose: an uncached decision through the rule index takes a few microseconds, and a
/// client naming 150,000 distinct names must not leave 40 MB of cached decisions behind
/// (each connection also caches up to 4,096 of its own).
pub const CACHE_CAPACITY: usize = 16_384;

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the operation is allowed.
    pub allowed: bool,
    /// What decided: the rule with file:line, `super-user User:admin`,
    /// `default deny: no rule matched`, or why the name was refused.
    pub rule: Arc<str>,
}

type CacheKey = (Box<str>, Box<[String]>, ResourceType, Box<str>, Operation);
type Cache = HashMap<u64, Vec<(CacheKey, Decision)>>;

fn key_eq(
    key: &CacheKey,
    principal: &str,
    roles: &[String],
    resource: ResourceType,
    name: &str,
    op: Operation,
) -> bool {
    *key.0 == *principal && *key.1 == *roles && key.2 == resource && *key.3 == *name && key.4 == op
}

/// A compiled policy generation. Immutable except for its decision cache.
pub(crate) struct CompiledPolicy {
    pub generation: u64,
    pub files: Vec<PathBuf>,
    pub fingerprint: u64,
    pub rules: Vec<Rule>,
    pub assignments: RoleAssignments,
    index: RuleIndex,
    enforcer: Enforcer,
    super_user_reasons: HashMap<String, Arc<str>>,
    default_deny: Arc<str>,
    cache: RwLock<Cache>,
    cache_len: std::sync::atomic::AtomicUsize,
    hasher: RandomState,
}

impl CompiledPolicy {
    /// Validates and compiles a directory snapshot.
    pub fn from_snapshot(
        dir: &Path,
        snapshot: &DirSnapshot,
        super_users: &[String],
        generation: u64,
    ) -> Result<CompiledPolicy, Vec<PolicyError>> {
        let (model, parsed) = snapshot.parse(dir)?;
        let mut rules = Vec::new();
        let mut assignments = Vec::new();
        for p in parsed {
            rules.extend(p.rules);
            assignments.extend(p.assignments);
        }
        if rules.len() > RuleIndex::MAX_RULES {
            return Err(vec![PolicyError::Usage(format!(
                "{} rules: at most {} are supported",
                rules.len(),
                RuleIndex::MAX_RULES
            ))]);
        }
        let enforcer = build_enforcer(&snapshot.model_path, &model, &rules).map_err(|e| vec![e])?;
        let index = RuleIndex::build(&rules);
        Ok(CompiledPolicy {
            generation,
            files: snapshot.files.iter().map(|(p, _)| p.clone()).collect(),
            fingerprint: snapshot.fingerprint(),
            rules,
            assignments: RoleAssignments::new(assignments),
            index,
            enforcer,
            super_user_reasons: super_users
                .iter()
                .map(|u| (u.clone(), Arc::from(format!("super-user {u}"))))
                .collect(),
            default_deny: Arc::from("default deny: no rule matched"),
            cache: RwLock::new(HashMap::new()),
            cache_len: std::sync::atomic::AtomicUsize::new(0),
            hasher: RandomState::new(),
        })
    }

    /// The subjects a request speaks for: the principal, `User:*`, `Role:<r>` for every
    /// given role, and roles assigned by `g` lines to the principal or to `User:*`.
    pub fn subjects(&self, principal: &str, roles: &[String]) -> Vec<String> {
        self.assignments.subjects(principal, roles)
    }

    fn cache_hash(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> u64 {
        let mut h = self.hasher.build_hasher();
        principal.hash(&mut h);
        roles.hash(&mut h);
        resource.hash(&mut h);
        name.hash(&mut h);
        op.hash(&mut h);
        h.finish()
    }

    /// The cached decision path used per request.
    pub fn authorize(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        if let Some(reason) = self.super_user_reasons.get(principal) {
            return Decision {
                allowed: true,
                rule: reason.clone(),
            };
        }
        let hash = self.cache_hash(principal, roles, resource, name, op);
        if let Ok(cache) = self.cache.read() {
            if let Some(bucket) = cache.get(&hash) {
                for (k, d) in bucket {
                    if key_eq(k, principal, roles, resource, name, op) {
                        return d.clone();
                    }
                }
            }
        }
        let decision = self.decide(principal, roles, resource, name, op);
        if let Ok(mut cache) = self.cache.write() {
            use std::sync::atomic::Ordering;
            if self.cache_len.load(Ordering::Relaxed) >= CACHE_CAPACITY {
                *cache = HashMap::new();
                self.cache_len.store(0, Ordering::Relaxed);
            }
            let bucket = cache.entry(hash).or_default();
            // Another thread may have decided the same request meanwhile.
            if bucket
                .iter()
                .any(|(k, _)| key_eq(k, principal, roles, resource, name, op))
            {
                return decision;
            }
            bucket.push((
                (
                    principal.into(),
                    roles.to_vec().into_boxed_slice(),
                    resource,
                    name.into(),
                    op,
                ),
                decision.clone(),
            ));
            self.cache_len.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// The uncached decision: super-users, then the rule index. Deny rules apply to every
    /// name; for names casbin could not match (see [`rules::valid_resource_name`]) only `*`
    /// allow rules apply.
    pub fn decide(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        if let Some(reason) = self.super_user_reasons.get(principal) {
            return Decision {
                allowed: true,
                rule: reason.clone(),
            };
        }
        let subjects = self.subjects(principal, roles);
        let valid = rules::valid_resource_name(resource, name);
        let scope = if valid {
            AllowScope::Every
        } else {
            AllowScope::WildcardOnly
        };
        let verdict = self
            .index
            .decide(&subjects, resource, name.as_bytes(), op, scope);
        let origin = |position: usize| match self.rules.get(position) {
            Some(r) => r.origin.clone(),
            None => Arc::from("rule index out of step with the rules"),
        };
        match verdict {
            Verdict::Denied(p) => Decision {
                allowed: false,
                rule: origin(p),
            },
            Verdict::Allowed(p) if valid => Decision {
                allowed: true,
                rule: origin(p),
            },
            Verdict::Allowed(p) => Decision {
                allowed: true,
                rule: Arc::from(format!(
                    "{} ({}: only `*` allow rules apply)",
                    origin(p),
                    invalid_name_kind(resource)
                )),
            },
            Verdict::NoMatch if valid => Decision {
                allowed: false,
                rule: self.default_deny.clone(),
            },
            Verdict::NoMatch => Decision {
                allowed: false,
                rule: Arc::from(format!(
                    "{}: only `*` allow rules apply and none matched",
                    invalid_name_kind(resource)
                )),
            },
        }
    }

    /// Whether `principal` is a configured super-user.
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_user_reasons.contains_key(principal)
    }

    /// casbin's verdict on the request (subjects worked out as for [`Self::decide`]), or
    /// `None` for a name casbin must not see. Super-users are not casbin's business.
    pub fn casbin_allows(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Option<Result<bool, String>> {
        let subjects = self.subjects(principal, roles);
        casbin_allows(&self.enforcer, &subjects, resource, name, op)
    }

    /// Every rule that matches the request (allow rules through Kafka's implications,
    /// deny rules through `denied_by`), in file order. A linear scan: for `explain`, not
    /// for the request path.
    pub fn matching(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Vec<String> {
        let subjects = self.subjects(principal, roles);
        let valid = rules::valid_resource_name(resource, name);
        self.rules
            .iter()
            .filter(|r| {
                (valid || r.effect == Effect::Deny || r.pattern == rules::Pattern::Any)
                    && r.matches(&subjects, resource, name, op)
            })
            .map(|r| r.origin.to_string())
            .collect()
    }

    /// Decisions currently cached.
    pub fn cached(&self) -> usize {
        self.cache_len.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How a name casbin could not match is described in a decision's reason.
fn invalid_name_kind(resource: ResourceType) -> &'static str {
    match resource {
        ResourceType::Topic => "invalid topic name",
        ResourceType::Group => "invalid group id",
        ResourceType::TransactionalId => "invalid transactional id",
        ResourceType::Cluster => "invalid cluster name",
    }
}
