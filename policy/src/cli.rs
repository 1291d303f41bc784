//! `portcullis policy check [DIR]` and `portcullis policy explain ...`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::authorizer::{Authorizer, PolicyConfig};
use crate::compiled::CompiledPolicy;
use crate::dir_snapshot::DirSnapshot;
use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType, CLUSTER_NAME};
use crate::rules::Effect;

/// The `portcullis policy` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory offline and report every error with file and line.
    Check {
        /// The policy directory (default: the configured one).
        dir: Option<PathBuf>,
    },
    /// Print the decision for one request and the rule that decided it.
    Explain {
        /// The principal, e.g. `User:alice`.
        #[arg(long)]
        principal: String,
        /// A role of the principal (bare name, e.g. `producers`); repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The resource as TYPE:NAME: `topic:orders`, `group:g1`,
        /// `transactional_id:tx1`, `cluster:kafka-cluster`.
        #[arg(long)]
        resource: String,
        /// The Kafka ACL operation, e.g. `Write`.
        #[arg(long)]
        operation: String,
        /// The policy directory (default: the configured one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A super-user principal; repeatable.
        #[arg(long = "super-user")]
        super_users: Vec<String>,
    },
}

/// What `check` found in a valid directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// The directory.
    pub dir: PathBuf,
    /// The policy files, in load order.
    pub files: Vec<PathBuf>,
    /// `p` lines.
    pub rules: usize,
    /// `p` lines with effect allow.
    pub allow: usize,
    /// `p` lines with effect deny.
    pub deny: usize,
    /// `g` lines.
    pub assignments: usize,
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: OK: {} file(s), {} rule(s) ({} allow, {} deny), {} role assignment(s)",
            self.dir.display(),
            self.files.len(),
            self.rules,
            self.allow,
            self.deny,
            self.assignments
        )
    }
}

/// Validates a policy directory offline: the model, every policy file, and that casbin
/// accepts them. Reports every error, not only the first.
pub fn check_dir(dir: &Path) -> Result<PolicySummary, Vec<PolicyError>> {
    let snapshot = DirSnapshot::read(dir).map_err(|e| vec![e])?;
    let compiled = CompiledPolicy::from_snapshot(dir, &snapshot, &[], 0)?;
    let allow = compiled
        .rules
        .iter()
        .filter(|r| r.effect == Effect::Allow)
        .count();
    Ok(PolicySummary {
        dir: dir.to_path_buf(),
        files: compiled.files.clone(),
        rules: compiled.rules.len(),
        allow,
        deny: compiled.rules.len() - allow,
        assignments: compiled.assignments.all().len(),
    })
}

/// Parses `TYPE:NAME` (`topic:orders`, `cluster` alone means `cluster:kafka-cluster`).
pub fn parse_resource(s: &str) -> Result<(ResourceType, String), PolicyError> {
    let (kind, name) = match s.split_once(':') {
        Some((k, n)) => (k, n.to_string()),
        None if s.eq_ignore_ascii_case("cluster") => (s, CLUSTER_NAME.to_string()),
        None => {
            return Err(PolicyError::Usage(format!(
                "--resource `{s}`: expected TYPE:NAME, e.g. topic:orders, group:g1, transactional_id:tx1, cluster:kafka-cluster"
            )))
        }
    };
    let resource = ResourceType::parse(kind).ok_or_else(|| {
        PolicyError::Usage(format!(
            "--resource `{s}`: unknown resource type `{kind}` (topic, group, transactional_id, cluster)"
        ))
    })?;
    Ok((resource, name))
}

fn write_err(e: std::io::Error) -> PolicyError {
    PolicyError::Io {
        path: PathBuf::from("<output>"),
        message: e.to_string(),
    }
}

/// Runs a `portcullis policy` subcommand, writing its report to `out`. Returns `Ok(true)`
/// when the check passed or the request is allowed, `Ok(false)` when the directory is
/// invalid (every error printed) or the request is denied.
pub fn run(
    cmd: PolicyCommand,
    default_dir: &Path,
    out: &mut dyn Write,
) -> Result<bool, PolicyError> {
    match cmd {
        PolicyCommand::Check { dir } => {
            let dir = dir.unwrap_or_else(|| default_dir.to_path_buf());
            match check_dir(&dir) {
                Ok(summary) => {
                    writeln!(out, "{summary}").map_err(write_err)?;
                    Ok(true)
                }
                Err(errors) => {
                    for e in &errors {
                        writeln!(out, "error: {e}").map_err(write_err)?;
                    }
                    writeln!(
                        out,
                        "{}: {} error(s); this policy would be rejected",
                        dir.display(),
                        errors.len()
                    )
                    .map_err(write_err)?;
                    Ok(false)
                }
            }
        }
        PolicyCommand::Explain {
            principal,
            roles,
            resource,
            operation,
            dir,
            super_users,
        } => {
            let (resource, name) = parse_resource(&resource)?;
            let op = Operation::parse(&operation).ok_or_else(|| {
                PolicyError::Usage(format!("--operation `{operation}`: unknown operation"))
            })?;
            let config = PolicyConfig {
                super_users,
                ..PolicyConfig::new(dir.unwrap_or_else(|| default_dir.to_path_buf()))
            };
            let authorizer = Authorizer::load(&config)?;
            let explanation = authorizer.explain(&principal, &roles, resource, &name, op);
            writeln!(out, "{explanation}").map_err(write_err)?;
            Ok(explanation.decision.allowed)
        }
    }
}
