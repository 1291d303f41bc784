//! `[authorization]`: where the policies live and how decisions are audited.
//!
//! Without this table the proxy does not authorize: every authenticated principal may do
//! whatever the proxy's own upstream identity may do, and the proxy says so at start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::auth::Problem;

/// `[authorization]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Directory holding `model.conf` and the `*.csv` policy files.
    pub policy_dir: PathBuf,
    /// Principals allowed everything (`User:admin`).
    #[serde(default)]
    pub super_users: Vec<String>,
    /// How often the policy directory is checked for changes, in milliseconds.
    #[serde(default = "default_reload_ms")]
    pub reload_ms: u64,
    /// Which allowed decisions are written to the audit log (denies always are).
    #[serde(default)]
    pub audit_allows: AuditAllows,
    /// Under `audit_allows = "all"`: how long data-path allows of one (connection,
    /// resource, operation) are counted before an aggregate event is written, in ms.
    #[serde(default = "default_audit_allows_window_ms")]
    pub audit_allows_window_ms: u64,
    /// What a reload of a policy that does not load does: keep the last good policy (the
    /// default) or deny every request until a reload succeeds. Either way the proxy reports
    /// the degraded state (`portcullis_policy_degraded`, `/readyz`).
    #[serde(default)]
    pub on_reload_failure: OnReloadFailure,
}

/// `authorization.on_reload_failure`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnReloadFailure {
    /// The last good policy stays in force; `/readyz` stays 200 and says the policy is
    /// degraded.
    #[default]
    KeepLastGood,
    /// Every request is denied (super-users included) until a reload succeeds; `/readyz`
    /// answers 503.
    DenyAll,
}

impl From<OnReloadFailure> for portcullis_policy::ReloadFailure {
    fn from(value: OnReloadFailure) -> Self {
        match value {
            OnReloadFailure::KeepLastGood => portcullis_policy::ReloadFailure::KeepLastGood,
            OnReloadFailure::DenyAll => portcullis_policy::ReloadFailure::DenyAll,
        }
    }
}

/// Which allowed decisions are audited.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditAllows {
    /// None: allows are only counted in metrics.
    None,
    /// Every allowed administrative request (topic creation and deletion, cluster
    /// description, producer ids); data-path allows (Produce, Fetch, ...) are counted only.
    #[default]
    Admin,
    /// Administrative requests, plus data-path allows aggregated per connection, principal,
    /// resource and operation: the first one at once, then one event per window with the
    /// number of requests allowed in it (and the remainder when the connection ends).
    All,
}

fn default_reload_ms() -> u64 {
    500
}

fn default_audit_allows_window_ms() -> u64 {
    60_000
}

impl AuthorizationConfig {
    /// The watcher's poll period.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_ms)
    }

    /// The aggregation window of data-path allows.
    pub fn audit_allows_window(&self) -> Duration {
        Duration::from_millis(self.audit_allows_window_ms)
    }

    /// The policy engine's configuration.
    pub fn policy_config(&self) -> portcullis_policy::PolicyConfig {
        portcullis_policy::PolicyConfig {
            dir: self.policy_dir.clone(),
            super_users: self.super_users.clone(),
            reload_interval: self.reload_interval(),
            on_reload_failure: self.on_reload_failure.into(),
        }
    }
}

/// Checks `[authorization]`, loading the policies the way the proxy would.
pub fn validate_authorization(config: &AuthorizationConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !(50..=2000).contains(&config.reload_ms) {
        problems.push((
            "authorization.reload_ms".to_string(),
            "must be between 50 and 2000 (policy edits must apply within 2 seconds)".to_string(),
        ));
    }
    if !(1_000..=3_600_000).contains(&config.audit_allows_window_ms) {
        problems.push((
            "authorization.audit_allows_window_ms".to_string(),
            "must be between 1000 and 3600000".to_string(),
        ));
    }
    for (i, user) in config.super_users.iter().enumerate() {
        if !user.starts_with("User:") || user.len() == "User:".len() {
            problems.push((
                format!("authorization.super_users[{i}]"),
                format!("{user:?} is not a principal like \"User:admin\""),
            ));
        }
    }
    if let Err(errors) = portcullis_policy::check_dir(&config.policy_dir) {
        for e in errors {
            problems.push(("authorization.policy_dir".to_string(), e.to_string()));
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<AuthorizationConfig, String> {
        toml::from_str(&format!("policy_dir = \"p\"\n{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn on_reload_failure_defaults_to_keep_last_good_and_refuses_unknown_values() {
        assert_eq!(
            parse("").unwrap().on_reload_failure,
            OnReloadFailure::KeepLastGood
        );
        assert_eq!(
            parse("on_reload_failure = \"deny_all\"")
                .unwrap()
                .on_reload_failure,
            OnReloadFailure::DenyAll
        );
        let err = parse("on_reload_failure = \"deny\"").unwrap_err();
        assert!(
            err.contains("on_reload_failure")
                && err.contains("keep_last_good")
                && err.contains("deny_all"),
            "{err}"
        );
    }
}
