//! The audit signing key on disk: created on first start with owner-only permissions,
//! replaced atomically on rotation.
//!
//! The private key never leaves this file (and never appears in an event or a log line); the
//! verifier keys of every key ever used are kept in the log store so old checkpoints stay
//! verifiable after a rotation.

use std::io::Write as _;
use std::path::Path;

use crate::note::{NoteError, Signer};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("audit signing key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a valid key.
    #[error("audit signing key {path}: {source}")]
    Invalid {
        /// The key file.
        path: String,
        /// What is wrong.
        #[source]
        source: NoteError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the key from `path`, or creates a new key named `name` there if the file does not
/// exist. Returns the key and whether it was created.
///
/// # Errors
///
/// [`KeyFileError`] if the file cannot be read, written or parsed.
pub fn load_or_create(path: &Path, name: &str) -> Result<(Signer, bool), KeyFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_shared(path);
            let signer = Signer::parse(&text).map_err(|source| KeyFileError::Invalid {
                path: path.display().to_string(),
                source,
            })?;
            Ok((signer, false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let signer = Signer::generate(name).map_err(|source| KeyFileError::Invalid {
                path: path.display().to_string(),
                source,
            })?;
            write_private(path, &signer)?;
            Ok((signer, true))
        }
        Err(err) => Err(io(path)(err)),
    }
}

/// Loads an existing key (the CLI never creates one).
///
/// # Errors
///
/// [`KeyFileError`] if the file cannot be read or parsed.
pub fn load(path: &Path) -> Result<Signer, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Signer::parse(&text).map_err(|source| KeyFileError::Invalid {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `signer` to `path` with mode 0600 via a temporary file and a rename, so a crash
/// leaves either the old key or the new one, never half of one.
///
/// # Errors
///
/// [`KeyFileError::Io`].
pub fn write_private(path: &Path, signer: &Signer) -> Result<(), KeyFileError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(signer.to_private_string().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        // Make the rename durable; failure here only weakens crash safety, so it is logged.
        if let Err(err) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %err, "cannot sync the audit key directory");
        }
    }
    Ok(())
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", mode & 0o777),
                    "audit signing key is accessible to group or others; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing.key");
        let (a, created) = load_or_create(&path, "log").unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path, "log").unwrap();
        assert!(!created);
        assert_eq!(a.verifier(), b.verifier());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create(&path, "log"),
            Err(KeyFileError::Invalid { .. })
        ));
    }
}
