//! `portcullis keys`: administration of the encryption keys.
//!
//! - `init` creates the root key the configuration names: a local key file (mode 0600, in a
//!   directory created 0700, never overwriting an existing file) or a key on the PKCS#11
//!   token (sensitive, never extractable); for AWS KMS, whose keys are created in KMS, it
//!   checks that the configured key is usable.
//! - `list`, `status`, `rotate`, `rewrap`, `retire`, `shred` run
//!   [`crate::encryption::key_admin`] either on a running proxy through its admin API
//!   (`--admin URL`, bearer token; audited there) or offline on the registry the
//!   configuration names (the sled store of a stopped proxy, or the fleet's registry topic),
//!   audited in the stopped proxy's audit log (a command that changes keys is refused when
//!   that log cannot be written).

use std::path::{Path, PathBuf};

use portcullis_audit::Outcome;
use portcullis_crypto::{LocalKeyFile, RootKeyProvider as _};

use crate::config::encryption::{EncryptionConfig, RootKeyConfig};
use crate::config::Config;
use crate::encryption::key_admin::{self, KeyCommand};
use crate::encryption::keyring_open::{create_private_dir, open_keyring};

/// Why a `keys` command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Neither a key file nor a configuration was named.
    #[error("name the root key file with --root-key FILE or --config FILE")]
    NothingNamed,
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration has no `[encryption]` table.
    #[error("{0}: [encryption] is not configured")]
    NoEncryption(String),
    /// The directory for the key file could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file could not be written (or already exists).
    #[error(transparent)]
    KeyFile(#[from] portcullis_crypto::KeyFileError),
    /// The PKCS#11 token or the KMS key could not be used.
    #[error("encryption.root_key: {0}")]
    Provider(String),
    /// The keyring could not be opened offline.
    #[error("{0}")]
    Open(String),
    /// The key command failed.
    #[error("{0}")]
    Command(String),
    /// The running proxy refused or could not be reached.
    #[error("{0}")]
    Remote(String),
}

/// The root key file `keys init` writes: `--root-key`, else the configuration's
/// `encryption.root_key.path`.
///
/// # Errors
///
/// [`KeysError`] when nothing names it, or the configuration names another kind of root key.
pub fn root_key_path(
    root_key: Option<PathBuf>,
    config: Option<&Path>,
) -> Result<PathBuf, KeysError> {
    if let Some(path) = root_key {
        return Ok(path);
    }
    let config_path = config.ok_or(KeysError::NothingNamed)?;
    match encryption_of(config_path)?.root_key {
        RootKeyConfig::LocalFile { path } => Ok(path),
        _ => Err(KeysError::Provider(
            "the root key is not a local file: use `keys init --config` without --root-key".into(),
        )),
    }
}

/// Creates a new root key at `path` (never overwriting one) and returns its id.
///
/// # Errors
///
/// [`KeysError`] when the directory or the file cannot be created, or the file exists.
pub fn init_root_key(path: &Path) -> Result<String, KeysError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|source| KeysError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let key = LocalKeyFile::init(path)?;
    Ok(key.root_key_id().to_string())
}

/// `keys init` for the root key `config` names; returns a line saying what was done.
///
/// # Errors
///
/// [`KeysError`] when the key cannot be created (or, for KMS, used).
pub fn init_configured_root_key(config: &Path) -> Result<String, KeysError> {
    match encryption_of(config)?.root_key {
        RootKeyConfig::LocalFile { path } => {
            let id = init_root_key(&path)?;
            Ok(format!(
                "wrote root key {} (id {id}); back it up: records encrypted under it cannot be read without it",
                path.display()
            ))
        }
        RootKeyConfig::Pkcs11(p) => {
            let root = portcullis_crypto::pkcs11::Pkcs11Root::create(&p)
                .map_err(|e| KeysError::Provider(e.to_string()))?;
            Ok(format!(
                "created key {:?} on token {:?} (id {}); it never leaves the token",
                p.key_label,
                p.token_label,
                root.root_key_id()
            ))
        }
        RootKeyConfig::AwsKms(k) => {
            let root = portcullis_crypto::aws_kms::AwsKmsRoot::new(&k)
                .map_err(|e| KeysError::Provider(e.to_string()))?;
            Ok(format!(
                "AWS KMS key {} is usable (keys are created in KMS, not by portcullis)",
                root.root_key_id()
            ))
        }
    }
}

/// Runs a key command offline on the registry `config` names (the sled store must not be in
/// use by a running proxy: use `--admin` then) and returns its JSON answer.
///
/// # Errors
///
/// [`KeysError`] when the keyring cannot be opened or the command fails.
pub fn run_offline(config: &Path, command: &KeyCommand) -> Result<serde_json::Value, KeysError> {
    let full = Config::load_unvalidated(config)?;
    let encryption = full
        .encryption
        .clone()
        .ok_or_else(|| KeysError::NoEncryption(config.display().to_string()))?;
    let audit = if command.mutates() {
        Some(OfflineAudit::open(&full)?)
    } else {
        None
    };
    if let Some(a) = &audit {
        a.record(key_admin::audit_event(
            command,
            Outcome::Success,
            "requested",
            "cli",
        ))?;
    }
    let (keyring, _registry) = open_keyring(&encryption, &full.upstream).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") || text.contains("WouldBlock") {
            KeysError::Open(format!(
                "{text}: a running proxy holds the key store; run the command through it with --admin URL"
            ))
        } else {
            KeysError::Open(text)
        }
    })?;
    let result = key_admin::run(&keyring, command).map_err(|e| e.to_string());
    if let Some(a) = audit {
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut done = key_admin::audit_event(command, outcome, "done", "cli");
        if let Err(reason) = &result {
            done = done.reason(reason.clone());
        }
        a.record(done)?;
        a.close();
    }
    result.map_err(KeysError::Command)
}

/// The stopped proxy's audit log, opened by an offline key command to record what it does.
struct OfflineAudit {
    log: portcullis_audit::AuditLog,
    runtime: tokio::runtime::Runtime,
}

impl OfflineAudit {
    /// Opens `audit.data_dir` of `config`; a running proxy holds it, and then the command
    /// is refused (run it through that proxy's admin API, which audits it).
    fn open(config: &Config) -> Result<OfflineAudit, KeysError> {
        let log = portcullis_audit::AuditLog::open(&config.audit.data_dir, &config.audit.log)
            .map_err(|e| {
                KeysError::Open(format!(
                    "cannot open the audit log in {} to record the key command ({e}); if a proxy is running, run the command through it with --admin URL",
                    config.audit.data_dir.display()
                ))
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KeysError::Open(format!("cannot start a runtime: {e}")))?;
        Ok(OfflineAudit { log, runtime })
    }

    /// Records `event` durably, or refuses.
    fn record(&self, event: portcullis_audit::Event) -> Result<(), KeysError> {
        self.runtime
            .block_on(self.log.record(event))
            .map(drop)
            .map_err(|e| KeysError::Open(format!("the key command could not be audited: {e}")))
    }

    fn close(self) {
        self.runtime.block_on(self.log.shutdown());
    }
}

/// Runs a key command on a running proxy through its admin API and returns its JSON answer.
///
/// # Errors
///
/// [`KeysError::Remote`] when the proxy is unreachable or refuses.
pub fn run_remote(
    url: &str,
    token: Option<String>,
    command: &KeyCommand,
) -> Result<serde_json::Value, KeysError> {
    let remote = |e: &dyn std::fmt::Display| KeysError::Remote(e.to_string());
    let url = portcullis_audit::remote::AdminUrl {
        token,
        ..portcullis_audit::remote::AdminUrl::parse(url).map_err(|e| remote(&e))?
    };
    let (method, path) = crate::admin::keys::path_of(command);
    let body = portcullis_audit::remote::call(&url, method, &path, None).map_err(|e| remote(&e))?;
    serde_json::from_slice(&body).map_err(|e| remote(&format!("the proxy answered: {e}")))
}

fn encryption_of(config: &Path) -> Result<EncryptionConfig, KeysError> {
    Config::load_unvalidated(config)?
        .encryption
        .ok_or_else(|| KeysError::NoEncryption(config.display().to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_an_owner_only_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/root.key");
        let id = init_root_key(&path).unwrap();
        assert_eq!(id.len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let before = std::fs::read(&path).unwrap();
        let err = init_root_key(&path).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
