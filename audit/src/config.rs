//! Configuration of the tamper-evident audit log, as the proxy reads it from its TOML file.
//!
//! Defaults follow the issue: `sync` durability and `reject` (fail closed) for authn, admin,
//! config and key events; `async` and `permit` for connection, authz and audit-system events,
//! so data-path decisions never wait for the disk.

use std::path::PathBuf;

use serde::Deserialize;

use crate::event::Category;

/// When a request waits for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The request waits until its event is durable (fsynced).
    Sync,
    /// The event is queued; the request does not wait.
    Async,
}

/// What happens to a request whose event cannot be made durable (or queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Fail closed: the request fails and the client gets an error.
    Reject,
    /// The request proceeds; the loss is counted and a gap entry records it.
    Permit,
}

/// The policy for one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryPolicy {
    /// When the request waits.
    pub durability: Durability,
    /// What a failure does to the request.
    pub on_failure: FailurePolicy,
}

/// A per-category override in the TOML file; unset keys keep the default.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryOverride {
    /// `sync` or `async`.
    pub durability: Option<Durability>,
    /// `reject` or `permit`.
    pub on_failure: Option<FailurePolicy>,
}

/// `[categories]`: one optional table per category.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CategoryOverrides {
    /// `[categories.connection]`.
    pub connection: Option<CategoryOverride>,
    /// `[categories.authn]`.
    pub authn: Option<CategoryOverride>,
    /// `[categories.authz]`.
    pub authz: Option<CategoryOverride>,
    /// `[categories.admin]`.
    pub admin: Option<CategoryOverride>,
    /// `[categories.config]`.
    pub config: Option<CategoryOverride>,
    /// `[categories.key]`.
    pub key: Option<CategoryOverride>,
    /// `[categories.audit-system]`.
    pub audit_system: Option<CategoryOverride>,
}

/// The audit log's configuration (keys relative to the table the proxy embeds it in, for
/// example `[audit]`).
///
/// ```toml
/// origin = "portcullis.example.com/audit"   # optional; default portcullis-audit/<random id>
/// queue_capacity = 65536
/// max_batch = 4096
/// checkpoint_interval_ms = 1000
/// checkpoint_every = 4096
/// sync_timeout_ms = 5000
/// anchor_file = "/mnt/worm/portcullis-checkpoints"   # optional
/// anchor_topic = "__portcullis_audit_checkpoints"   # optional (the proxy produces to it)
///
/// [categories.authz]
/// durability = "async"
/// on_failure = "permit"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditLogConfig {
    /// The checkpoint origin line and key name. Fixed when the log is created; later values
    /// are ignored with a warning.
    pub origin: Option<String>,
    /// Events the queue holds before `emit` drops (and counts) new ones.
    pub queue_capacity: usize,
    /// Most events appended in one group commit.
    pub max_batch: usize,
    /// A checkpoint is signed at least this often while the log grows.
    pub checkpoint_interval_ms: u64,
    /// A checkpoint is signed after at most this many new entries.
    pub checkpoint_every: u64,
    /// How long a `sync` [`record`](crate::AuditLog::record) waits for durability before it
    /// counts as failed.
    pub sync_timeout_ms: u64,
    /// A file on another volume (or a WORM mount) that every checkpoint is appended to.
    pub anchor_file: Option<PathBuf>,
    /// A topic on the upstream cluster that every checkpoint is produced to (by the proxy,
    /// with its upstream credentials; this crate only validates the name).
    pub anchor_topic: Option<String>,
    /// Per-category overrides of durability and failure policy.
    pub categories: CategoryOverrides,
    /// The disk budget of the log's store, in bytes (checked every checkpoint interval).
    /// Once the store is this large, events of `async` categories (connections,
    /// authorization: the data path) are dropped and counted, one `audit.disk_budget` event
    /// is written, and events of `sync` categories (authentication, admin, config, keys)
    /// are still written, so the log keeps what must be durable while an operator frees
    /// space (archive with `portcullis audit export`, then start a new data directory).
    pub max_disk_bytes: u64,
}

/// The default disk budget: 10 GiB.
pub const DEFAULT_MAX_DISK_BYTES: u64 = 10 << 30;

impl Default for AuditLogConfig {
    fn default() -> AuditLogConfig {
        AuditLogConfig {
            origin: None,
            queue_capacity: 65_536,
            max_batch: 4_096,
            checkpoint_interval_ms: 1_000,
            checkpoint_every: 4_096,
            sync_timeout_ms: 5_000,
            anchor_file: None,
            anchor_topic: None,
            categories: CategoryOverrides::default(),
            max_disk_bytes: DEFAULT_MAX_DISK_BYTES,
        }
    }
}

/// Every category, in a fixed order (the index of [`category_index`]).
pub const CATEGORIES: [Category; 7] = [
    Category::Connection,
    Category::Authn,
    Category::Authz,
    Category::Admin,
    Category::Config,
    Category::Key,
    Category::AuditSystem,
];

/// The position of `c` in [`CATEGORIES`].
pub fn category_index(c: Category) -> usize {
    match c {
        Category::Connection => 0,
        Category::Authn => 1,
        Category::Authz => 2,
        Category::Admin => 3,
        Category::Config => 4,
        Category::Key => 5,
        Category::AuditSystem => 6,
    }
}

/// The built-in policy of a category.
pub fn default_policy(c: Category) -> CategoryPolicy {
    match c {
        Category::Authn | Category::Admin | Category::Config | Category::Key => CategoryPolicy {
            durability: Durability::Sync,
            on_failure: FailurePolicy::Reject,
        },
        Category::Connection | Category::Authz | Category::AuditSystem => CategoryPolicy {
            durability: Durability::Async,
            on_failure: FailurePolicy::Permit,
        },
    }
}

impl AuditLogConfig {
    /// Problems with the configuration, each naming its key; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(origin) = &self.origin {
            if origin.is_empty()
                || origin.contains('+')
                || origin.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems.push(format!(
                    "origin: {origin:?} must be non-empty without '+', spaces or control characters"
                ));
            }
        }
        if self.queue_capacity == 0 {
            problems.push("queue_capacity: must be at least 1".into());
        }
        if self.max_batch == 0 {
            problems.push("max_batch: must be at least 1".into());
        }
        if self.checkpoint_interval_ms == 0 {
            problems.push("checkpoint_interval_ms: must be at least 1".into());
        }
        if self.checkpoint_every == 0 {
            problems.push("checkpoint_every: must be at least 1".into());
        }
        if self.sync_timeout_ms == 0 {
            problems.push("sync_timeout_ms: must be at least 1".into());
        }
        if self.max_disk_bytes == 0 {
            problems.push("max_disk_bytes: must be at least 1".into());
        }
        if let Some(path) = &self.anchor_file {
            if path.as_os_str().is_empty() {
                problems.push("anchor_file: must not be empty".into());
            }
        }
        if self.origin.is_none() && (self.anchor_file.is_some() || self.anchor_topic.is_some()) {
            problems.push(
                "origin: must be set when anchor_file or anchor_topic is (a deleted data directory would otherwise start over under a new random origin that no anchored checkpoint names)"
                    .into(),
            );
        }
        if let Some(topic) = &self.anchor_topic {
            if let Err(why) = check_topic_name(topic) {
                problems.push(format!("anchor_topic: {why}"));
            }
        }
        problems
    }

    /// The effective policy of every category (defaults plus overrides), indexed like
    /// [`CATEGORIES`].
    pub fn policies(&self) -> [CategoryPolicy; 7] {
        let o = &self.categories;
        let overrides = [
            o.connection,
            o.authn,
            o.authz,
            o.admin,
            o.config,
            o.key,
            o.audit_system,
        ];
        let mut out = CATEGORIES.map(default_policy);
        for (policy, ov) in out.iter_mut().zip(overrides) {
            if let Some(ov) = ov {
                if let Some(d) = ov.durability {
                    policy.durability = d;
                }
                if let Some(f) = ov.on_failure {
                    policy.on_failure = f;
                }
            }
        }
        out
    }
}

/// Kafka's rules for a topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
///
/// # Errors
///
/// Why `name` is not a legal topic name.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("{name:?} must be 1 to 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?} (allowed: a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let cfg: AuditLogConfig = serde_json::from_value(serde_json::json!({
            "queue_capacity": 10,
            "categories": {"authz": {"durability": "sync"}, "audit-system": {"on_failure": "reject"}}
        }))
        .unwrap();
        assert!(cfg.validate().is_empty());
        let p = cfg.policies();
        assert_eq!(
            p[category_index(Category::Authz)].durability,
            Durability::Sync
        );
        assert_eq!(
            p[category_index(Category::Authz)].on_failure,
            FailurePolicy::Permit
        );
        assert_eq!(
            p[category_index(Category::Authn)].on_failure,
            FailurePolicy::Reject
        );
        assert_eq!(
            p[category_index(Category::AuditSystem)].on_failure,
            FailurePolicy::Reject
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        assert!(serde_json::from_value::<AuditLogConfig>(serde_json::json!({"qeue": 1})).is_err());
        assert!(serde_json::from_value::<AuditLogConfig>(
            serde_json::json!({"categories": {"authx": {}}})
        )
        .is_err());
        let cfg = AuditLogConfig {
            queue_capacity: 0,
            origin: Some("a b".into()),
            ..AuditLogConfig::default()
        };
        let problems = cfg.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("origin:"));
        assert!(problems[1].starts_with("queue_capacity:"));
    }

    #[test]
    fn anchor_topic_names_follow_kafka_rules() {
        let cfg = AuditLogConfig {
            anchor_topic: Some("audit-checkpoints".into()),
            ..AuditLogConfig::default()
        };
        let problems = cfg.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("origin:"), "{problems:?}");
        for bad in ["", ".", "..", "a b", "x/y", &"t".repeat(250)] {
            let cfg = AuditLogConfig {
                origin: Some("test.example/log".into()),
                anchor_topic: Some(bad.to_string()),
                ..AuditLogConfig::default()
            };
            let problems = cfg.validate();
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
            assert!(problems[0].starts_with("anchor_topic:"));
        }
        assert!(check_topic_name("__portcullis_audit-checkpoints.v1").is_ok());
    }
}
