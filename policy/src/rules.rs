//! Policy lines: parsing and validation with file:line, the rule-by-rule matching `explain`
//! and the tests use, and which names casbin may be shown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::PolicyError;
use crate::resource::{Operation, ResourceType, CLUSTER_NAME};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;
/// Longest group or transactional id handed to casbin; longer ids are matched by every deny
/// rule but only by `*` allow rules.
pub const MAX_ID_LEN: usize = 1024;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The rule grants the operation.
    Allow,
    /// The rule forbids the operation; any matching deny wins over every allow.
    Deny,
}

impl Effect {
    /// The spelling used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A resource-name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every name.
    Any,
    /// `prefix*`: every name starting with the prefix (Kafka's PREFIXED).
    Prefix(String),
    /// A literal name.
    Literal(String),
}

impl Pattern {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Literal(l) => name == l,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Literal(l) => f.write_str(l),
        }
    }
}

/// One `p` line.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `User:alice`, `Role:producers` or `User:*`.
    pub subject: String,
    /// The resource type.
    pub resource: ResourceType,
    /// The name pattern.
    pub pattern: Pattern,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub effect: Effect,
    /// Where it came from and what it says: `policies/estate.csv:14: p, Role:producers, ...`.
    pub origin: Arc<str>,
}

impl Rule {
    /// The rule as casbin sees it (canonical spelling).
    pub fn casbin_fields(&self) -> Vec<String> {
        vec![
            self.subject.clone(),
            self.resource.as_str().to_string(),
            self.pattern.to_string(),
            self.operation.as_str().to_string(),
            self.effect.as_str().to_string(),
        ]
    }

    /// Whether the rule applies to a request by one of `subjects` for `name` with `op`,
    /// applying Kafka's implications (allow widens via `allowed_by`, deny via `denied_by`).
    pub fn matches(
        &self,
        subjects: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        let ops = match self.effect {
            Effect::Allow => op.allowed_by(),
            Effect::Deny => op.denied_by(),
        };
        self.resource == resource
            && ops.contains(&self.operation)
            && self.pattern.matches(name)
            && subjects.contains(&self.subject)
    }
}

/// One `g` line: a role assigned to a principal in a policy file.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// `Role:x`.
    pub role: String,
    /// Where it came from.
    pub origin: Arc<str>,
}

/// What a policy file holds.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    /// The `p` lines.
    pub rules: Vec<Rule>,
    /// The `g` lines.
    pub assignments: Vec<Assignment>,
}

/// Whether a topic name may be handed to casbin: `[A-Za-z0-9._-]{1,249}`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a resource name may be handed to casbin: topics as [`valid_topic_name`], other
/// names printable ASCII (space included), 1 to [`MAX_ID_LEN`] bytes. Other names are
/// decided by the rule index alone: every deny rule applies to them, only `*` allows do.
pub fn valid_resource_name(resource: ResourceType, name: &str) -> bool {
    match resource {
        ResourceType::Topic => valid_topic_name(name),
        _ => {
            !name.is_empty()
                && name.len() <= MAX_ID_LEN
                && name.bytes().all(|b| (0x20..0x7f).contains(&b))
        }
    }
}

/// Characters allowed in subject names and non-topic patterns: printable ASCII without
/// space, and without the characters the CSV format or patterns give a meaning to.
fn plain_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'#' | b'*')
}

fn parse_subject(s: &str, allow_role: bool) -> Result<String, String> {
    if s == "User:*" {
        return Ok(s.to_string());
    }
    let rest = if let Some(rest) = s.strip_prefix("User:") {
        rest
    } else if let Some(rest) = s.strip_prefix("Role:") {
        if !allow_role {
            return Err(format!("expected a principal `User:<name>`, found `{s}`"));
        }
        rest
    } else {
        return Err(format!(
            "subject `{s}` must start with `User:` or `Role:` (or be `User:*`)"
        ));
    };
    if rest.is_empty() {
        return Err(format!("subject `{s}` has an empty name"));
    }
    if rest.contains('*') {
        return Err(format!(
            "subject `{s}`: `*` is only allowed as the whole subject `User:*`"
        ));
    }
    if !rest.bytes().all(plain_char) {
        return Err(format!(
            "subject `{s}` contains characters outside printable ASCII or one of `, \" #`"
        ));
    }
    Ok(s.to_string())
}

fn parse_pattern(resource: ResourceType, s: &str) -> Result<Pattern, String> {
    if s.is_empty() {
        return Err("empty resource pattern".to_string());
    }
    if s == "*" {
        return Ok(Pattern::Any);
    }
    let (body, prefix) = match s.strip_suffix('*') {
        Some(body) => (body, true),
        None => (s, false),
    };
    if body.contains('*') {
        return Err(format!(
            "pattern `{s}`: `*` is only allowed at the end (prefix match) or alone"
        ));
    }
    let ok = match resource {
        ResourceType::Topic => {
            body.len() <= MAX_TOPIC_LEN
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        ResourceType::Cluster => {
            if prefix || body != CLUSTER_NAME {
                return Err(format!(
                    "cluster pattern must be `{CLUSTER_NAME}` or `*`, found `{s}`"
                ));
            }
            true
        }
        _ => body.len() <= MAX_ID_LEN && body.bytes().all(plain_char),
    };
    if !ok {
        return Err(match resource {
            ResourceType::Topic => {
                format!("topic pattern `{s}`: topic names are 1 to 249 of [A-Za-z0-9._-]")
            }
            _ => format!(
                "pattern `{s}` contains characters outside printable ASCII or one of `, \" #`"
            ),
        });
    }
    Ok(if prefix {
        Pattern::Prefix(body.to_string())
    } else {
        Pattern::Literal(body.to_string())
    })
}

fn parse_line(fields: &[&str]) -> Result<LineKind, String> {
    match fields.first().copied() {
        Some("p") => {
            if fields.len() != 6 {
                return Err(format!(
                    "a `p` line has 6 fields (p, subject, resource_type, pattern, operation, effect), found {}",
                    fields.len()
                ));
            }
            let subject = parse_subject(fields[1], true)?;
            let resource = ResourceType::parse(fields[2]).ok_or_else(|| {
                format!(
                    "unknown resource type `{}` (expected topic, group, transactional_id or cluster)",
                    fields[2]
                )
            })?;
            let pattern = parse_pattern(resource, fields[3])?;
            let operation = Operation::parse(fields[4]).ok_or_else(|| {
                let known: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
                format!(
                    "unknown operation `{}` (expected one of {})",
                    fields[4],
                    known.join(", ")
                )
            })?;
            let effect = match fields[5].to_ascii_lowercase().as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                _ => {
                    return Err(format!(
                        "unknown effect `{}` (expected allow or deny)",
                        fields[5]
                    ))
                }
            };
            Ok(LineKind::Rule {
                subject,
                resource,
                pattern,
                operation,
                effect,
            })
        }
        Some("g") => {
            if fields.len() != 3 {
                return Err(format!(
                    "a `g` line has 3 fields (g, User:<name>, Role:<name>), found {}",
                    fields.len()
                ));
            }
            let principal = parse_subject(fields[1], false)?;
            let role = parse_subject(fields[2], true)?;
            if !role.starts_with("Role:") {
                return Err(format!("expected a role `Role:<name>`, found `{role}`"));
            }
            Ok(LineKind::Assignment { principal, role })
        }
        Some(other) => Err(format!("unknown line type `{other}` (expected `p` or `g`)")),
        None => Err("empty line".to_string()),
    }
}

enum LineKind {
    Rule {
        subject: String,
        resource: ResourceType,
        pattern: Pattern,
        operation: Operation,
        effect: Effect,
    },
    Assignment {
        principal: String,
        role: String,
    },
}

/// Parses one policy file's bytes. Returns every error found, not only the first.
pub fn parse_file(file: &Path, bytes: &[u8]) -> Result<ParsedFile, Vec<PolicyError>> {
    let err = |line: usize, message: String| PolicyError::Invalid {
        file: file.to_path_buf(),
        line,
        message,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            return Err(vec![err(
                line,
                "not valid UTF-8 (policy files are ASCII)".to_string(),
            )]);
        }
    };
    let mut parsed = ParsedFile::default();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.is_ascii() {
            errors.push(err(
                line_no,
                "non-ASCII characters in a policy line".to_string(),
            ));
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        match parse_line(&fields) {
            Ok(kind) => {
                let origin: Arc<str> = Arc::from(format!(
                    "{}:{line_no}: {}",
                    file.display(),
                    fields.join(", ")
                ));
                match kind {
                    LineKind::Rule {
                        subject,
                        resource,
                        pattern,
                        operation,
                        effect,
                    } => parsed.rules.push(Rule {
                        subject,
                        resource,
                        pattern,
                        operation,
                        effect,
                        origin,
                    }),
                    LineKind::Assignment { principal, role } => {
                        parsed.assignments.push(Assignment {
                            principal,
                            role,
                            origin,
                        })
                    }
                }
            }
            Err(message) => errors.push(err(line_no, message)),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The policy files of a directory (`*.csv`, sorted, hidden files skipped) and its model.
pub fn policy_files(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PolicyError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".csv") {
            continue;
        }
        let path = dir.join(name);
        // Follows symlinks (Kubernetes ConfigMap mounts are symlinks into `..data`).
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok((dir.join("model.conf"), files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<ParsedFile, Vec<PolicyError>> {
        parse_file(Path::new("t.csv"), line.as_bytes())
    }

    #[test]
    fn parses_rules_and_comments() {
        let f = one("# comment\n\np, Role:producers, topic, orders*, write, ALLOW\ng, User:alice, Role:producers\n")
            .unwrap_or_default();
        assert_eq!(f.rules.len(), 1);
        assert_eq!(f.assignments.len(), 1);
        let r = &f.rules[0];
        assert_eq!(r.pattern, Pattern::Prefix("orders".into()));
        assert_eq!(r.operation, Operation::Write);
        assert_eq!(r.effect, Effect::Allow);
        assert_eq!(
            &*r.origin,
            "t.csv:3: p, Role:producers, topic, orders*, write, ALLOW"
        );
    }

    #[test]
    fn rejects_with_line_numbers_and_reports_all() {
        let text = "p, User:a, topic, t, Read, allow\n\
                    p, User:a, topic, t, Fly, allow\n\
                    p, User:a, table, t, Read, allow\n\
                    p, User:a, topic, t, Read, maybe\n\
                    p, User:a, topic, t, Read\n\
                    p, User:a, topic, a*b, Read, allow\n\
                    p, alice, topic, t, Read, allow\n\
                    p, User:ä, topic, t, Read, allow\n\
                    p, User:a, cluster, other, Read, allow\n\
                    x, User:a\n";
        let errors = one(text).err().unwrap_or_default();
        let lines: Vec<usize> = errors
            .iter()
            .map(|e| match e {
                PolicyError::Invalid { line, .. } => *line,
                _ => 0,
            })
            .collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(errors[0]
            .to_string()
            .starts_with("t.csv:2: unknown operation `Fly`"));
    }

    #[test]
    fn names() {
        assert!(valid_topic_name("orders.v1_x-2"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a b"));
        assert!(!valid_topic_name("ордер"));
        assert!(!valid_topic_name(&"a".repeat(250)));
        assert!(valid_resource_name(ResourceType::Group, "my group #1"));
        assert!(!valid_resource_name(ResourceType::Group, "é"));
        assert!(!valid_resource_name(ResourceType::Group, ""));
    }
}
