//! The authorizer the proxy holds: the current policy generation behind an `ArcSwap`,
//! reloads that keep the last good policy (or, under [`ReloadFailure::DenyAll`], deny
//! everything until a reload succeeds), and a polling directory watcher.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::compiled::{CompiledPolicy, Decision};
use crate::dir_snapshot::DirSnapshot;
use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType};

/// Where the policies live and how they are applied.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The directory holding `model.conf` and `*.csv` policy files.
    pub dir: PathBuf,
    /// Principals (`User:admin`) allowed everything, whatever the policies say.
    pub super_users: Vec<String>,
    /// How often the watcher looks at the directory.
    pub reload_interval: Duration,
    /// What a failed reload does to the decisions.
    pub on_reload_failure: ReloadFailure,
}

/// What a reload that fails (a policy that does not parse, an unreadable directory) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReloadFailure {
    /// The last good policy stays in force (the files on disk are not what is enforced
    /// until they are fixed).
    #[default]
    KeepLastGood,
    /// Every decision is a deny, super-users included, until a reload succeeds.
    DenyAll,
}

impl ReloadFailure {
    /// The configuration spelling: `keep_last_good` or `deny_all`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadFailure::KeepLastGood => "keep_last_good",
            ReloadFailure::DenyAll => "deny_all",
        }
    }
}

/// The state after a failed reload, until a reload succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// Why the last reload failed.
    pub reason: String,
    /// The generation of the last good policy (in force under
    /// [`ReloadFailure::KeepLastGood`]).
    pub generation: u64,
    /// What the failure does to decisions.
    pub mode: ReloadFailure,
}

/// The rule of every decision while a failed reload denies everything.
pub const DENY_ALL_RULE: &str =
    "degraded: the last policy reload failed and on_reload_failure = deny_all";

impl Default for PolicyConfig {
    /// `policies/`, no super-users, a 500 ms poll period.
    fn default() -> PolicyConfig {
        PolicyConfig::new("policies")
    }
}

impl PolicyConfig {
    /// The default poll period of the watcher.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_millis(500);

    /// A configuration for `dir` with no super-users and the default poll period.
    pub fn new(dir: impl Into<PathBuf>) -> PolicyConfig {
        PolicyConfig {
            dir: dir.into(),
            super_users: Vec::new(),
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
            on_reload_failure: ReloadFailure::KeepLastGood,
        }
    }
}

/// The result of a reload attempt.
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    /// Whether the new policy is now in force.
    pub accepted: bool,
    /// The generation in force after the attempt.
    pub generation: u64,
    /// Rules (`p` lines) in force after the attempt.
    pub rules: usize,
    /// The policy files read (in force if accepted).
    pub files: Vec<PathBuf>,
    /// Why the reload was rejected (the first error; all of them are logged).
    pub error: Option<PolicyError>,
}

/// A decision with every rule that matched, for `portcullis policy explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The decision and the rule that decided it.
    pub decision: Decision,
    /// Every matching rule with file:line, in file order.
    pub matching: Vec<String>,
    /// The request, for display.
    pub request: String,
    /// The subjects the request spoke for (principal, `User:*`, roles).
    pub subjects: Vec<String>,
    /// The policy generation that decided.
    pub generation: u64,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.decision.allowed {
            "ALLOW"
        } else {
            "DENY"
        };
        writeln!(f, "{verdict} {}", self.request)?;
        writeln!(f, "  decided by: {}", self.decision.rule)?;
        writeln!(f, "  subjects:   {}", self.subjects.join(", "))?;
        if self.matching.is_empty() {
            writeln!(f, "  matching rules: none")?;
        } else {
            writeln!(f, "  matching rules:")?;
            for m in &self.matching {
                writeln!(f, "    {m}")?;
            }
        }
        write!(f, "  policy generation: {}", self.generation)
    }
}

struct Shared {
    config: PolicyConfig,
    current: ArcSwap<CompiledPolicy>,
    /// Serialises reloads and remembers the fingerprint of the last directory contents
    /// a reload looked at (accepted or not), so the watcher reloads only on change.
    reload_lock: Mutex<u64>,
    /// Set by a failed reload, cleared by an accepted one.
    degraded: ArcSwapOption<Degraded>,
    /// Whether decisions are all denies (degraded under [`ReloadFailure::DenyAll`]).
    deny_all: AtomicBool,
}

/// Decides whether a principal may perform an operation on a resource. Cheap to clone;
/// every clone sees reloads.
#[derive(Clone)]
pub struct Authorizer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("dir", &self.shared.config.dir)
            .field("generation", &self.generation())
            .finish()
    }
}

fn log_rejection(dir: &Path, errors: &[PolicyError]) {
    for e in errors {
        match e {
            PolicyError::Invalid {
                file,
                line,
                message,
            } => tracing::warn!(file = %file.display(), line, "policy rejected: {message}"),
            other => tracing::warn!(dir = %dir.display(), "policy rejected: {other}"),
        }
    }
}

impl Authorizer {
    /// Loads the policy directory. Fails if the model or every policy file is missing, or
    /// any file is invalid (every error is logged; the first is returned).
    pub fn load(config: &PolicyConfig) -> Result<Authorizer, PolicyError> {
        let snapshot = DirSnapshot::read(&config.dir)?;
        let compiled =
            CompiledPolicy::from_snapshot(&config.dir, &snapshot, &config.super_users, 1).map_err(
                |errors| {
                    log_rejection(&config.dir, &errors);
                    first(errors)
                },
            )?;
        tracing::info!(
            dir = %config.dir.display(),
            rules = compiled.rules.len(),
            files = compiled.files.len(),
            "policy loaded"
        );
        let fingerprint = compiled.fingerprint;
        Ok(Authorizer {
            shared: Arc::new(Shared {
                config: config.clone(),
                current: ArcSwap::from_pointee(compiled),
                reload_lock: Mutex::new(fingerprint),
                degraded: ArcSwapOption::empty(),
                deny_all: AtomicBool::new(false),
            }),
        })
    }

    /// Decides a request. `roles` are bare role names (`producers` stands for
    /// `Role:producers`). Never panics, whatever the strings hold.
    pub fn authorize(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        if self.denies_all() {
            return deny_all_decision();
        }
        self.shared
            .current
            .load()
            .authorize(principal, roles, resource, name, op)
    }

    /// Decides a request without the cache (for benchmarks and tests): the rule index.
    pub fn authorize_uncached(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Decision {
        if self.denies_all() {
            return deny_all_decision();
        }
        self.shared
            .current
            .load()
            .decide(principal, roles, resource, name, op)
    }

    /// The decision and every matching rule.
    pub fn explain(
        &self,
        principal: &str,
        roles: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> Explanation {
        let policy = self.shared.current.load();
        let decision = policy.decide(principal, roles, resource, name, op);
        // casbin is the specification: say so loudly if the index ever disagrees with it.
        if !policy.is_super_user(principal) {
            match policy.casbin_allows(principal, roles, resource, name, op) {
                Some(Ok(allowed)) if allowed != decision.allowed => tracing::error!(
                    principal, %resource, name, %op, index = decision.allowed, casbin = allowed,
                    "the rule index and casbin disagree; please report this"
                ),
                Some(Err(e)) => tracing::warn!(error = %e, "casbin could not check the decision"),
                _ => {}
            }
        }
        Explanation {
            decision,
            matching: policy.matching(principal, roles, resource, name, op),
            request: format!("{principal} {op} {resource}:{name}"),
            subjects: policy.subjects(principal, roles),
            generation: policy.generation,
        }
    }

    /// The generation in force; 1 after `load`, +1 per accepted reload.
    pub fn generation(&self) -> u64 {
        self.shared.current.load().generation
    }

    /// Rules (`p` lines) in force.
    pub fn rule_count(&self) -> usize {
        self.shared.current.load().rules.len()
    }

    /// Decisions cached for the generation in force.
    pub fn cached_decisions(&self) -> usize {
        self.shared.current.load().cached()
    }

    /// The degraded state a failed reload left, until a reload succeeds.
    pub fn degraded(&self) -> Option<Arc<Degraded>> {
        self.shared.degraded.load_full()
    }

    /// Whether every decision is a deny: the last reload failed under
    /// [`ReloadFailure::DenyAll`].
    pub fn denies_all(&self) -> bool {
        self.shared.deny_all.load(Ordering::Acquire)
    }

    /// The configuration this authorizer was loaded with.
    pub fn config(&self) -> &PolicyConfig {
        &self.shared.config
    }

    /// Re-reads the directory. If it is valid the new policy replaces the old one
    /// atomically (with a fresh cache); otherwise the last good policy stays in force and
    /// the rejection is logged at warn with file and line. Blocking (it reads files and
    /// compiles the policy: about 60 ms at 10,000 lines, 0.5 to 0.9 s at 100,000, most of it
    /// building the casbin enforcer); from async code call it through
    /// `tokio::task::spawn_blocking`.
    pub fn reload(&self) -> ReloadEvent {
        let mut last_seen = match self.shared.reload_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let dir = &self.shared.config.dir;
        let snapshot = match DirSnapshot::read(dir) {
            Ok(s) => s,
            Err(e) => {
                // Matches the fingerprint `changed` reports for an unreadable directory,
                // so the watcher reports it once rather than every tick.
                *last_seen = 0;
                return self.rejected(vec![e], Vec::new());
            }
        };
        *last_seen = snapshot.fingerprint();
        let files: Vec<PathBuf> = snapshot.files.iter().map(|(p, _)| p.clone()).collect();
        let next = self.generation() + 1;
        match CompiledPolicy::from_snapshot(dir, &snapshot, &self.shared.config.super_users, next) {
            Ok(compiled) => {
                let rules = compiled.rules.len();
                self.shared.current.store(Arc::new(compiled));
                self.shared.deny_all.store(false, Ordering::Release);
                self.shared.degraded.store(None);
                tracing::info!(dir = %dir.display(), generation = next, rules, files = files.len(), "policy reloaded");
                ReloadEvent {
                    accepted: true,
                    generation: next,
                    rules,
                    files,
                    error: None,
                }
            }
            Err(errors) => self.rejected(errors, files),
        }
    }

    fn rejected(&self, errors: Vec<PolicyError>, files: Vec<PathBuf>) -> ReloadEvent {
        log_rejection(&self.shared.config.dir, &errors);
        let current = self.shared.current.load();
        let error = first(errors);
        let mode = self.shared.config.on_reload_failure;
        self.shared.degraded.store(Some(Arc::new(Degraded {
            reason: error.to_string(),
            generation: current.generation,
            mode,
        })));
        match mode {
            ReloadFailure::KeepLastGood => tracing::warn!(
                generation = current.generation,
                "policy reload rejected; the last good policy stays in force"
            ),
            ReloadFailure::DenyAll => {
                self.shared.deny_all.store(true, Ordering::Release);
                tracing::error!(
                    generation = current.generation,
                    "policy reload rejected; every request is DENIED until a reload succeeds (on_reload_failure = deny_all)"
                );
            }
        }
        ReloadEvent {
            accepted: false,
            generation: current.generation,
            rules: current.rules.len(),
            files,
            error: Some(error),
        }
    }

    /// Whether the directory differs from what the last reload (or load) saw.
    fn changed(&self) -> bool {
        let fingerprint = match DirSnapshot::read(&self.shared.config.dir) {
            Ok(s) => s.fingerprint(),
            // An unreadable directory is a change worth reporting (reload will say why).
            Err(_) => 0,
        };
        match self.shared.reload_lock.lock() {
            Ok(g) => *g != fingerprint,
            Err(p) => *p.into_inner() != fingerprint,
        }
    }

    /// Polls the directory every `reload_interval`, hashing the content of every `*.csv`
    /// and `model.conf` (so in-place edits, replacement by rename, additions and removals
    /// are all seen); on a change calls [`Authorizer::reload`] and `on_event` with the
    /// result. Must be called inside a tokio runtime; abort the handle to stop.
    pub fn spawn_watcher(
        &self,
        on_event: impl Fn(ReloadEvent) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let period = self
            .shared
            .config
            .reload_interval
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let probe = this.clone();
                let event = tokio::task::spawn_blocking(move || {
                    if probe.changed() {
                        Some(probe.reload())
                    } else {
                        None
                    }
                })
                .await;
                match event {
                    Ok(Some(event)) => on_event(event),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "policy watcher check failed"),
                }
            }
        })
    }
}

fn deny_all_decision() -> Decision {
    Decision {
        allowed: false,
        rule: DENY_ALL_RULE.into(),
    }
}

fn first(errors: Vec<PolicyError>) -> PolicyError {
    errors
        .into_iter()
        .next()
        .unwrap_or_else(|| PolicyError::Usage("unknown policy error".to_string()))
}
