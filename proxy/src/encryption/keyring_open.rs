//! Opening the [`Keyring`] of an `[encryption]` configuration: root key provider, registry
//! store and DEK limits.
//!
//! The proxy refuses to start when the local root key file does not exist, rather than
//! creating one: a proxy that silently made a new root key (a mistyped path, a secret
//! volume not mounted) would encrypt new records under a key nobody backed up, and could not
//! read anything encrypted under the real one. `portcullis keys init` creates the file,
//! once, on purpose.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::{Keyring, LocalKeyFile, RootKeyProvider, SledStore};

use crate::cluster::registry_topic::TopicRegistry;
use crate::config::encryption::{EncryptionConfig, RootKeyConfig};
use crate::config::UpstreamConfig;
use crate::net::upstream::Connector;

/// Why the keyring could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyringOpenError {
    /// The local root key file does not exist.
    #[error("root key file {path} does not exist: create it with `portcullis keys init --config <this file>` (and back it up), or fix encryption.root_key.path")]
    MissingRootKey {
        /// The file.
        path: String,
    },
    /// The root key could not be loaded.
    #[error("encryption.root_key: {0}")]
    RootKey(#[from] portcullis_crypto::KeyFileError),
    /// The registry could not be opened (another process holds it, or it is damaged).
    #[error("encryption.key_store {path}: {message}")]
    Registry {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The PKCS#11 token or AWS KMS key could not be opened.
    #[error("encryption.root_key: {0}")]
    Provider(String),
    /// The registry topic could not be read or created.
    #[error("encryption.registry_topic {topic}: {message}")]
    RegistryTopic {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// A DEK limit is out of range.
    #[error("encryption.dek: {0}")]
    Limits(#[from] portcullis_crypto::dek_limits::LimitError),
}

/// Loads a local root key file, with a message naming `portcullis keys init` when it is
/// missing.
///
/// # Errors
///
/// [`KeyringOpenError::MissingRootKey`] or [`KeyringOpenError::RootKey`].
pub fn load_local_root_key(path: &Path) -> Result<LocalKeyFile, KeyringOpenError> {
    if !path.exists() {
        return Err(KeyringOpenError::MissingRootKey {
            path: path.display().to_string(),
        });
    }
    Ok(LocalKeyFile::load(path)?)
}

/// The root key provider `config` names.
///
/// # Errors
///
/// As [`load_local_root_key`].
pub fn open_root_key(
    config: &EncryptionConfig,
) -> Result<Arc<dyn RootKeyProvider>, KeyringOpenError> {
    let provider = |e: &dyn std::fmt::Display| KeyringOpenError::Provider(e.to_string());
    match &config.root_key {
        RootKeyConfig::LocalFile { path } => Ok(Arc::new(load_local_root_key(path)?)),
        RootKeyConfig::Pkcs11(p) => Ok(Arc::new(
            portcullis_crypto::pkcs11::Pkcs11Root::open(p).map_err(|e| provider(&e))?,
        )),
        RootKeyConfig::AwsKms(k) => Ok(Arc::new(
            portcullis_crypto::aws_kms::AwsKmsRoot::new(k).map_err(|e| provider(&e))?,
        )),
    }
}

/// How long each call to the cluster may take while the registry topic is read.
const REGISTRY_TOPIC_TIMEOUT: Duration = Duration::from_secs(15);

/// The keyring's registry, kept where `config` says.
#[derive(Debug, Clone)]
pub enum OpenedRegistry {
    /// The embedded sled store in `key_store`.
    Local,
    /// The compacted topic shared by a fleet (callers refresh from it periodically).
    Topic(Arc<TopicRegistry>),
}

/// Opens the keyring of `config`: the root key, then the registry — the compacted topic of
/// `registry_topic` on the cluster `upstream` names, else the sled store in `key_store`
/// (created with mode 0700 if missing). Blocking (file, sled and cluster I/O).
///
/// # Errors
///
/// The first [`KeyringOpenError`] met.
pub fn open_keyring(
    config: &EncryptionConfig,
    upstream: &UpstreamConfig,
) -> Result<(Arc<Keyring>, OpenedRegistry), KeyringOpenError> {
    let Some(topic) = &config.registry_topic else {
        return Ok((open_local_keyring(config)?, OpenedRegistry::Local));
    };
    let limits = config.dek_limits()?;
    let provider = open_root_key(config)?;
    let failed = |message: String| KeyringOpenError::RegistryTopic {
        topic: topic.clone(),
        message,
    };
    crate::net::tls::install_crypto_provider();
    let connector = Connector::new(upstream).map_err(|e| failed(e.to_string()))?;
    let store = Arc::new(
        TopicRegistry::open(Arc::new(connector), topic, REGISTRY_TOPIC_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?,
    );
    let keyring = Keyring::new(provider, store.clone(), limits);
    Ok((Arc::new(keyring), OpenedRegistry::Topic(store)))
}

/// Opens the keyring of `config` over the sled store in `key_store`.
///
/// # Errors
///
/// The first [`KeyringOpenError`] met.
pub fn open_local_keyring(config: &EncryptionConfig) -> Result<Arc<Keyring>, KeyringOpenError> {
    let limits = config.dek_limits()?;
    let provider = open_root_key(config)?;
    let registry_error = |message: String| KeyringOpenError::Registry {
        path: config.key_store.display().to_string(),
        message,
    };
    create_private_dir(&config.key_store).map_err(|e| registry_error(e.to_string()))?;
    let store = SledStore::open(&config.key_store).map_err(|e| registry_error(e.to_string()))?;
    Ok(Arc::new(Keyring::new(provider, Arc::new(store), limits)))
}

/// Creates `dir` (and its parents) readable by its owner only, if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> EncryptionConfig {
        let mut c: EncryptionConfig = toml::from_str(
            "topics = [\"t\"]\nroot_key = { kind = \"local-file\", path = \"keys/root.key\" }\n",
        )
        .unwrap();
        c.resolve_paths(dir);
        c
    }

    #[test]
    fn a_missing_root_key_names_keys_init_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_local_keyring(&config(dir.path())).unwrap_err();
        assert!(matches!(err, KeyringOpenError::MissingRootKey { .. }));
        assert!(err.to_string().contains("portcullis keys init"), "{err}");
        assert!(!dir.path().join("keys/root.key").exists());
        assert!(!dir.path().join("portcullis-keys").exists());
    }

    #[test]
    fn opens_with_an_initialised_root_key_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        create_private_dir(&dir.path().join("keys")).unwrap();
        LocalKeyFile::init(c.root_key_file().unwrap()).unwrap();
        let ring = open_local_keyring(&c).unwrap();
        let sealed = ring.encrypt_value("t", b"hello").unwrap();
        assert_eq!(ring.decrypt_value("t", &sealed).unwrap(), b"hello");
        assert!(c.key_store.is_dir());
    }
}
