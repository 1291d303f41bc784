//! `portcullis keys`: administration of the encryption keys.
//!
//! For now only `init`, which creates the local root key file the configuration names
//! (mode 0600, in a directory created 0700, never overwriting an existing file) so that the
//! proxy can start with `[encryption]`. The other key operations (list, status, rotate,
//! rewrap, retire, shred) come with the admin API.

use std::path::{Path, PathBuf};

use portcullis_crypto::{LocalKeyFile, RootKeyProvider as _};

use crate::config::encryption::RootKeyConfig;
use crate::config::Config;
use crate::encryption::keyring_open::create_private_dir;

/// Why `keys init` failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysInitError {
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
}

/// The root key file `keys init` writes: `--root-key`, else the configuration's
/// `encryption.root_key.path`.
pub fn root_key_path(
    root_key: Option<PathBuf>,
    config: Option<&Path>,
) -> Result<PathBuf, KeysInitError> {
    if let Some(path) = root_key {
        return Ok(path);
    }
    let config_path = config.ok_or(KeysInitError::NothingNamed)?;
    let config = Config::load_unvalidated(config_path)?;
    let encryption = config
        .encryption
        .ok_or_else(|| KeysInitError::NoEncryption(config_path.display().to_string()))?;
    match encryption.root_key {
        RootKeyConfig::LocalFile { path } => Ok(path),
    }
}

/// Creates a new root key at `path` (never overwriting one) and returns its id.
pub fn init_root_key(path: &Path) -> Result<String, KeysInitError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|source| KeysInitError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let key = LocalKeyFile::init(path)?;
    Ok(key.root_key_id().to_string())
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
