//! `[encryption]`: which topics are encrypted at rest, how, and where the keys live.
//!
//! Without this table the proxy encrypts nothing and the encryption stage is not in the
//! chain. With it, every record produced through the proxy to a matching topic has its
//! value (and, per rule, its header values) encrypted before it reaches the broker, and
//! every Fetch of a matching topic is decrypted (see docs/encryption.md).
//!
//! ```toml
//! [encryption]
//! topics = ["orders"]              # exact names
//! prefixes = ["payments"]          # every topic whose name starts with this
//! encrypt_headers = false          # default for the two lists above
//! require_encryption = true        # refuse plaintext found on Fetch (default)
//! key_store = "portcullis-keys"    # the embedded registry of wrapped keys (sled)
//! root_key = { kind = "local-file", path = "portcullis-keys/root.key" }
//! # registry_topic = "__portcullis_keys"  # a fleet: the registry in a compacted topic
//!
//! [[encryption.rules]]             # more topics with their own settings
//! prefixes = ["hr."]
//! encrypt_headers = true
//!
//! [encryption.dek]                 # when a data key stops encrypting
//! max_records = 1073741824
//! max_age_secs = 86400
//! ```
//!
//! A topic matched by several entries takes the most specific one: an exact name before
//! any prefix, a longer prefix before a shorter one. The same exact name or prefix in two
//! entries is an error (their settings could disagree).

use std::path::{Path, PathBuf};

use portcullis_crypto::{topic_name, DekLimits};
use serde::Deserialize;

use crate::config::auth::Problem;

/// `[encryption]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Topics encrypted with the table's own settings, by exact name.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics encrypted with the table's own settings, by name prefix.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Encrypt header values too (for `topics` and `prefixes`; rules have their own).
    #[serde(default)]
    pub encrypt_headers: bool,
    /// Refuse a record found unencrypted on Fetch of an encrypted topic (for `topics` and
    /// `prefixes`; rules have their own). Turn off only while migrating a topic that already
    /// holds plaintext.
    #[serde(default = "default_true")]
    pub require_encryption: bool,
    /// More topics with their own settings.
    #[serde(default)]
    pub rules: Vec<EncryptionRule>,
    /// Directory of the embedded key registry (wrapped KEKs and DEKs, sled). Created at first
    /// start. Relative paths are resolved against the configuration file's directory.
    #[serde(default = "default_key_store")]
    pub key_store: PathBuf,
    /// Where the root key is.
    pub root_key: RootKeyConfig,
    /// Keep the registry in this compacted topic of the upstream cluster instead of
    /// `key_store`, so that every proxy of a fleet reads the keys any of them created
    /// (see docs/encryption.md, "A fleet of proxies"). Created at first start.
    #[serde(default)]
    pub registry_topic: Option<String>,
    /// How often a proxy with `registry_topic` reads what other proxies changed (rotations,
    /// shreds), in milliseconds.
    #[serde(default = "default_registry_refresh_ms")]
    pub registry_refresh_ms: u64,
    /// When a DEK stops encrypting.
    #[serde(default)]
    pub dek: DekLimitsConfig,
}

/// `[[encryption.rules]]`: topics with settings of their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionRule {
    /// Exact topic names.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topic name prefixes.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Encrypt header values too; default: the table's `encrypt_headers`.
    pub encrypt_headers: Option<bool>,
    /// Refuse plaintext found on Fetch; default: the table's `require_encryption`.
    pub require_encryption: Option<bool>,
}

/// `encryption.root_key`: the provider holding the root key that wraps every KEK.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RootKeyConfig {
    /// A 256-bit key in a local file (mode 0600), created by `portcullis keys init`.
    LocalFile {
        /// The key file. Relative paths are resolved against the configuration file's
        /// directory.
        path: PathBuf,
    },
    /// An AES-256 key on a PKCS#11 token (an HSM; SoftHSM2 in tests), created by
    /// `portcullis keys init`. See docs/root-keys.md.
    Pkcs11(portcullis_crypto::pkcs11::Pkcs11Config),
    /// An AWS KMS symmetric key (created in KMS). See docs/root-keys.md.
    AwsKms(portcullis_crypto::aws_kms::AwsKmsConfig),
}

/// `[encryption.dek]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DekLimitsConfig {
    /// Encryptions per DEK (a record with encrypted headers counts once per sealed part);
    /// at most 2^32.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Seconds a DEK encrypts for.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

impl Default for DekLimitsConfig {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_age_secs: default_max_age_secs(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_registry_refresh_ms() -> u64 {
    5_000
}

fn default_key_store() -> PathBuf {
    PathBuf::from("portcullis-keys")
}
fn default_max_records() -> u64 {
    DekLimits::default().max_records()
}
fn default_max_age_secs() -> u64 {
    DekLimits::default().max_age_secs()
}

/// How one encrypted topic is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPolicy {
    /// Header values are encrypted too.
    pub encrypt_headers: bool,
    /// A record found unencrypted on Fetch is refused.
    pub require_encryption: bool,
}

/// How a topic name matched an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// Which topics are encrypted and how: the lists of `[encryption]` flattened into one
/// lookup (most specific entry wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPolicies {
    entries: Vec<(Pattern, TopicPolicy)>,
}

impl TopicPolicies {
    /// The policy of `topic`, or `None` if it is not encrypted.
    pub fn of(&self, topic: &str) -> Option<TopicPolicy> {
        let mut best: Option<(usize, TopicPolicy)> = None;
        for (pattern, policy) in &self.entries {
            let rank = match pattern {
                Pattern::Exact(name) if name == topic => usize::MAX,
                Pattern::Prefix(prefix) if topic.starts_with(prefix.as_str()) => prefix.len(),
                _ => continue,
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, *policy));
            }
        }
        best.map(|(_, policy)| policy)
    }
}

impl EncryptionConfig {
    /// The per-topic lookup built from `topics`, `prefixes` and `rules`.
    pub fn topic_policies(&self) -> TopicPolicies {
        let base = TopicPolicy {
            encrypt_headers: self.encrypt_headers,
            require_encryption: self.require_encryption,
        };
        let mut entries = Vec::new();
        let mut add = |topics: &[String], prefixes: &[String], policy: TopicPolicy| {
            entries.extend(topics.iter().map(|t| (Pattern::Exact(t.clone()), policy)));
            entries.extend(
                prefixes
                    .iter()
                    .map(|p| (Pattern::Prefix(p.clone()), policy)),
            );
        };
        add(&self.topics, &self.prefixes, base);
        for rule in &self.rules {
            let policy = TopicPolicy {
                encrypt_headers: rule.encrypt_headers.unwrap_or(base.encrypt_headers),
                require_encryption: rule.require_encryption.unwrap_or(base.require_encryption),
            };
            add(&rule.topics, &rule.prefixes, policy);
        }
        TopicPolicies { entries }
    }

    /// The DEK limits (valid after [`validate_encryption`]).
    ///
    /// # Errors
    ///
    /// The limit that is out of range.
    pub fn dek_limits(&self) -> Result<DekLimits, portcullis_crypto::dek_limits::LimitError> {
        DekLimits::new(self.dek.max_records, self.dek.max_age_secs)
    }

    /// The root key file of a `local-file` provider.
    pub fn root_key_file(&self) -> Option<&Path> {
        match &self.root_key {
            RootKeyConfig::LocalFile { path } => Some(path),
            RootKeyConfig::Pkcs11(_) | RootKeyConfig::AwsKms(_) => None,
        }
    }

    /// Resolves relative paths against `dir` (the configuration file's directory).
    pub fn resolve_paths(&mut self, dir: &Path) {
        if self.key_store.is_relative() {
            self.key_store = dir.join(&self.key_store);
        }
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        match &mut self.root_key {
            RootKeyConfig::LocalFile { path } => resolve(path),
            RootKeyConfig::Pkcs11(p) => p.pin_file.iter_mut().for_each(resolve),
            RootKeyConfig::AwsKms(k) => k.ca_file.iter_mut().for_each(resolve),
        }
    }
}

/// Checks `[encryption]`: names and prefixes, duplicates, DEK limits, the key store path
/// and the root key (a local key file must exist, be the owner's only, and parse).
pub fn validate_encryption(config: &EncryptionConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: String, message: String| problems.push((key, message));
    let lists = std::iter::once(("encryption".to_string(), &config.topics, &config.prefixes))
        .chain(
            config
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("encryption.rules[{i}]"), &r.topics, &r.prefixes)),
        );
    let mut seen = std::collections::HashSet::new();
    let mut any = false;
    for (at, topics, prefixes) in lists {
        for (kind, list) in [("topics", topics), ("prefixes", prefixes)] {
            for (i, name) in list.iter().enumerate() {
                any = true;
                let key = format!("{at}.{kind}[{i}]");
                if let Err(e) = topic_name::check(name) {
                    bad(key.clone(), e.to_string());
                }
                if !seen.insert((kind, name.clone())) {
                    bad(key, format!("{name:?} is listed twice"));
                }
            }
        }
    }
    if !any {
        bad(
            "encryption.topics".into(),
            "no topic or prefix is encrypted: name at least one (or remove [encryption])".into(),
        );
    }
    if let Err(e) = config.dek_limits() {
        bad("encryption.dek".into(), e.to_string());
    }
    if config.key_store.is_file() {
        bad(
            "encryption.key_store".into(),
            format!(
                "{} is a file; it must be a directory",
                config.key_store.display()
            ),
        );
    }
    validate_root_key(config, &mut bad);
    problems
}

fn validate_root_key(config: &EncryptionConfig, bad: &mut impl FnMut(String, String)) {
    match &config.root_key {
        RootKeyConfig::LocalFile { path } => {
            use crate::encryption::keyring_open::{load_local_root_key, KeyringOpenError};
            match load_local_root_key(path) {
                Ok(_) => {}
                Err(KeyringOpenError::RootKey(e)) => {
                    bad("encryption.root_key.path".into(), e.to_string());
                }
                Err(e) => bad("encryption.root_key.path".into(), e.to_string()),
            }
        }
        RootKeyConfig::Pkcs11(p) => {
            if let Err(e) = p.validate() {
                bad("encryption.root_key".into(), e.to_string());
            } else if !p.module.is_file() {
                bad(
                    "encryption.root_key.module".into(),
                    format!("{} does not exist", p.module.display()),
                );
            }
        }
        RootKeyConfig::AwsKms(k) => {
            if let Err(e) = k.validate() {
                bad("encryption.root_key".into(), e.to_string());
            }
        }
    }
    if config
        .registry_topic
        .as_deref()
        .is_some_and(|t| topic_name::check(t).is_err())
    {
        bad(
            "encryption.registry_topic".into(),
            "not a valid topic name".into(),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EncryptionConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    const ROOT: &str = "root_key = { kind = \"local-file\", path = \"k\" }\n";

    #[test]
    fn most_specific_entry_wins() {
        let config = parse(&format!(
            "{ROOT}topics = [\"orders\"]\nprefixes = [\"pay\"]\n\
             [[rules]]\nprefixes = [\"payments.\"]\nencrypt_headers = true\n\
             [[rules]]\ntopics = [\"pay.raw\"]\nrequire_encryption = false\n"
        ))
        .unwrap();
        let policies = config.topic_policies();
        let base = TopicPolicy {
            encrypt_headers: false,
            require_encryption: true,
        };
        assert_eq!(policies.of("orders"), Some(base));
        assert_eq!(policies.of("orders2"), None);
        assert_eq!(policies.of("payroll"), Some(base));
        assert_eq!(
            policies.of("payments.eu"),
            Some(TopicPolicy {
                encrypt_headers: true,
                require_encryption: true
            })
        );
        assert_eq!(
            policies.of("pay.raw"),
            Some(TopicPolicy {
                encrypt_headers: false,
                require_encryption: false
            })
        );
        assert_eq!(policies.of("audit"), None);
    }

    #[test]
    fn bad_names_duplicates_limits_and_missing_key_file_are_reported_with_their_keys() {
        let mut config = parse(&format!(
            "{ROOT}topics = [\"a/b\", \"x\"]\n[dek]\nmax_records = 8589934592\n\
             [[rules]]\ntopics = [\"x\"]\n"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        config.resolve_paths(dir.path());
        let problems = validate_encryption(&config);
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"encryption.topics[0]"), "{problems:?}");
        assert!(
            keys.contains(&"encryption.rules[0].topics[0]"),
            "{problems:?}"
        );
        assert!(keys.contains(&"encryption.dek"), "{problems:?}");
        let root = problems
            .iter()
            .find(|(k, _)| k == "encryption.root_key.path")
            .expect("missing root key reported");
        assert!(root.1.contains("portcullis keys init"), "{root:?}");
    }

    #[test]
    fn nothing_encrypted_and_unknown_provider_are_errors() {
        let config = parse(ROOT).unwrap();
        let problems = validate_encryption(&config);
        assert!(problems.iter().any(|(k, _)| k == "encryption.topics"));
        let err =
            parse("topics = [\"a\"]\nroot_key = { kind = \"vault\", path = \"k\" }\n").unwrap_err();
        assert!(err.contains("local-file"), "{err}");
        let err =
            parse("topics = [\"a\"]\nroot_key = { kind = \"local-file\", path = \"k\", x = 1 }\n")
                .unwrap_err();
        assert!(err.contains("x"), "{err}");
    }
}
