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

use portcullis_crypto::{Keyring, LocalKeyFile, RootKeyProvider, SledStore};

use crate::config::encryption::{EncryptionConfig, RootKeyConfig};

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
    match &config.root_key {
        RootKeyConfig::LocalFile { path } => Ok(Arc::new(load_local_root_key(path)?)),
    }
}

/// Opens the keyring of `config`: the root key, then the registry in `key_store` (created
/// with mode 0700 if missing). Blocking (file and sled I/O).
///
/// # Errors
///
/// The first [`KeyringOpenError`] met.
pub fn open_keyring(config: &EncryptionConfig) -> Result<Arc<Keyring>, KeyringOpenError> {
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
        let err = open_keyring(&config(dir.path())).unwrap_err();
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
        let ring = open_keyring(&c).unwrap();
        let sealed = ring.encrypt_value("t", b"hello").unwrap();
        assert_eq!(ring.decrypt_value("t", &sealed).unwrap(), b"hello");
        assert!(c.key_store.is_dir());
    }
}
