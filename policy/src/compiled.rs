//! One immutable, fully loaded policy generation: the casbin enforcer, Portcullis's own
//! index of the same rules (with file:line), role assignments, and the decision cache.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType};
use crate::rules::{self, Assignment, Effect, ParsedFile, Rule};

/// Decisions kept per generation before the cache is cleared.
pub const CACHE_CAPACITY: usize = 100_000;

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the operation is allowed.
    pub allowed: bool,
    /// What decided: the rule with file:line, `super-user User:admin`,
    /// `default deny: no rule matched`, or why the name was refused.
    pub rule: Arc<str>,
}

/// The contents of a policy directory as read from disk, with a fingerprint of its bytes.
pub(crate) struct DirSnapshot {
    pub model_path: PathBuf,
    pub model: Result<Vec<u8>, PolicyError>,
    pub files: Vec<(PathBuf, Result<Vec<u8>, PolicyError>)>,
}

impl DirSnapshot {
    /// Reads the model and every `*.csv` file.
    pub fn read(dir: &Path) -> Result<DirSnapshot, PolicyError> {
        let (model_path, paths) = rules::policy_files(dir)?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| PolicyError::Io {
                path: p.to_path_buf(),
                message: e.to_string(),
            })
        };
        let model = read(&model_path);
        let files = paths
            .into_iter()
            .map(|p| {
                let bytes = read(&p);
                (p, bytes)
            })
            .collect();
        Ok(DirSnapshot {
            model_path,
            model,
            files,
        })
    }

    /// A hash over every file name and content: any edit, addition, removal or
    /// replacement changes it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.model_path.hash(&mut h);
        format!("{:?}", self.model.as_ref().map(|b| b.len())).hash(&mut h);
        if let Ok(b) = &self.model {
            b.hash(&mut h);
        }
        for (p, bytes) in &self.files {
            p.hash(&mut h);
            match bytes {
                Ok(b) => {
                    0u8.hash(&mut h);
                    b.hash(&mut h);
                }
                Err(e) => {
                    1u8.hash(&mut h);
                    e.to_string().hash(&mut h);
                }
            }
        }
        h.finish()
    }

    /// Parses everything, collecting every error.
    pub fn parse(&self, dir: &Path) -> Result<(String, Vec<ParsedFile>), Vec<PolicyError>> {
        let mut errors = Vec::new();
        let model = match &self.model {
            Ok(bytes) => match String::from_utf8(bytes.clone()) {
                Ok(s) => Some(s),
                Err(_) => {
                    errors.push(PolicyError::Model {
                        file: self.model_path.clone(),
                        message: "not valid UTF-8".to_string(),
                    });
                    None
                }
            },
            Err(e) => {
                errors.push(PolicyError::Model {
                    file: self.model_path.clone(),
                    message: format!("cannot read the casbin model: {e}"),
                });
                None
            }
        };
        if self.files.is_empty() {
            errors.push(PolicyError::NoPolicies {
                dir: dir.to_path_buf(),
            });
        }
        let mut parsed = Vec::new();
        for (path, bytes) in &self.files {
            match bytes {
                Ok(b) => match rules::parse_file(path, b) {
                    Ok(p) => parsed.push(p),
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.push(e.clone()),
            }
        }
        match model {
            Some(m) if errors.is_empty() => Ok((m, parsed)),
            _ => Err(errors),
        }
    }
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
    pub assignments: Vec<Assignment>,
    enforcer: Enforcer,
    super_user_reasons: HashMap<String, Arc<str>>,
    default_deny: Arc<str>,
    cache: RwLock<Cache>,
    cache_len: std::sync::atomic::AtomicUsize,
    hasher: RandomState,
}

/// The casbin request for one check: subjects, resource type, name, and the operations
/// whose allow (resp. deny) rules apply.
type CasbinRequest = (
    Vec<String>,
    &'static str,
    String,
    Vec<&'static str>,
    Vec<&'static str>,
);

/// Builds a casbin enforcer from the model text and rules. casbin's constructors are async
/// but do no I/O with a model string and a string adapter; they run on a private
/// current-thread runtime on a scoped thread, so this works inside and outside tokio.
fn build_enforcer(model_path: &Path, model: &str, rules: &[Rule]) -> Result<Enforcer, PolicyError> {
    let model_err = |message: String| PolicyError::Model {
        file: model_path.to_path_buf(),
        message,
    };
    let mut seen = HashSet::new();
    let mut text = String::new();
    for r in rules {
        let line = r.casbin_fields().join(", ");
        if seen.insert(line.clone()) {
            text.push_str("p, ");
            text.push_str(&line);
            text.push('\n');
        }
    }
    let model = model.to_string();
    let built = std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| format!("cannot start a runtime to build the enforcer: {e}"))?;
            rt.block_on(async move {
                let m = DefaultModel::from_str(&model)
                    .await
                    .map_err(|e| format!("invalid casbin model: {e}"))?;
                Enforcer::new(m, StringAdapter::new(text))
                    .await
                    .map_err(|e| format!("casbin rejected the model or policy: {e}"))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("casbin panicked while loading".to_string()))
    });
    let enforcer = built.map_err(model_err)?;
    // The model must fit Portcullis's request shape; a probe enforce finds out now rather
    // than on the first request.
    let probe: CasbinRequest = (
        vec!["User:probe".to_string()],
        "topic",
        "probe".to_string(),
        vec!["Read"],
        vec!["Read"],
    );
    enforcer.enforce(probe).map_err(|e| {
        model_err(format!(
            "the model does not fit `r = subs, rtype, obj, allow_ops, deny_ops` / `p = sub, rtype, obj, act, eft`: {e}"
        ))
    })?;
    Ok(enforcer)
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
        let enforcer = build_enforcer(&snapshot.model_path, &model, &rules).map_err(|e| vec![e])?;
        Ok(CompiledPolicy {
            generation,
            files: snapshot.files.iter().map(|(p, _)| p.clone()).collect(),
            fingerprint: snapshot.fingerprint(),
            rules,
            assignments,
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
        // A principal is always `User:...`; anything else (say a principal that reads
        // `Role:admin`) must not pick up a role's rules, so it only counts as `User:*`.
        let mut subjects = Vec::with_capacity(2 + roles.len());
        if principal.starts_with("User:") && principal != "User:*" {
            subjects.push(principal.to_string());
        }
        subjects.push("User:*".to_string());
        for r in roles {
            let s = format!("Role:{r}");
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
        for a in &self.assignments {
            if (a.principal == principal || a.principal == "User:*") && !subjects.contains(&a.role)
            {
                subjects.push(a.role.clone());
            }
        }
        subjects
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
                cache.clear();
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

    /// The uncached decision: super-users, then name validation, then casbin, with the
    /// deciding rule looked up in the rule index.
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
        if !rules::valid_resource_name(resource, name) {
            return self.decide_invalid_name(&subjects, resource, name, op);
        }
        let request: CasbinRequest = (
            subjects.clone(),
            resource.as_str(),
            name.to_string(),
            op.allowed_by().iter().map(|o| o.as_str()).collect(),
            op.denied_by().iter().map(|o| o.as_str()).collect(),
        );
        let allowed = match self.enforcer.enforce(request) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::error!(error = %e, principal, %resource, name, %op, "casbin enforce failed; denying");
                return Decision {
                    allowed: false,
                    rule: Arc::from(format!("deny: policy engine error: {e}")),
                };
            }
        };
        let wanted = if allowed { Effect::Allow } else { Effect::Deny };
        let deciding = self
            .rules
            .iter()
            .find(|r| r.effect == wanted && r.matches(&subjects, resource, name, op));
        match deciding {
            Some(r) => Decision {
                allowed,
                rule: r.origin.clone(),
            },
            None if allowed => {
                tracing::warn!(principal, %resource, name, %op, "casbin allowed but no indexed rule matches; check model.conf's matcher");
                Decision {
                    allowed,
                    rule: Arc::from("allowed by the casbin matcher (no rule in the index matches)"),
                }
            }
            None => Decision {
                allowed,
                rule: self.default_deny.clone(),
            },
        }
    }

    /// Names casbin must not see (non-ASCII, control characters, bad topic names) are
    /// matched only against `*` rules, in Portcullis's own code.
    fn decide_invalid_name(
        &self,
        subjects: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        let what = match resource {
            ResourceType::Topic => "invalid topic name",
            ResourceType::Group => "invalid group id",
            ResourceType::TransactionalId => "invalid transactional id",
            ResourceType::Cluster => "invalid cluster name",
        };
        let wildcard = |effect: Effect| {
            self.rules.iter().find(|r| {
                r.effect == effect
                    && r.pattern == rules::Pattern::Any
                    && r.matches(subjects, resource, name, op)
            })
        };
        if let Some(r) = wildcard(Effect::Deny) {
            return Decision {
                allowed: false,
                rule: r.origin.clone(),
            };
        }
        if let Some(r) = wildcard(Effect::Allow) {
            return Decision {
                allowed: true,
                rule: Arc::from(format!("{} ({what}: only `*` rules apply)", r.origin)),
            };
        }
        Decision {
            allowed: false,
            rule: Arc::from(format!("{what}: only `*` rules apply and none matched")),
        }
    }

    /// Every rule that matches the request (allow rules through Kafka's implications,
    /// deny rules through `denied_by`), in file order.
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
                (valid || r.pattern == rules::Pattern::Any)
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
