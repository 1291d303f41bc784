//! The embedded root-key provider: a 256-bit root key in a local file.
//!
//! This is the default for a single proxy or a small fleet that shares a secret volume. The
//! file is created once by `init` (mode 0600, never overwritten) and refused by `load` if
//! anyone but the owner can read it, so a loose `chmod` fails loudly at start instead of
//! leaking quietly. Its format is two text lines, easy to back up and to check by eye:
//!
//! ```text
//! portcullis-root-key v1
//! <64 lowercase hex digits>
//! ```
//!
//! The key's id (recorded with every KEK it wraps) is the first 8 bytes of
//! `SHA-256("portcullis root key id v1" || key)`, in hex: enough to tell root keys apart,
//! useless for recovering one.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize as _, Zeroizing};

use crate::aead::{AeadBackend, AeadKey};
use crate::root_key::{ProviderError, RootKeyProvider, WrapContext, WrappedKey};
use crate::secret::{SecretKey, KEY_LEN};

/// The first line of a root-key file.
pub const FILE_HEADER: &str = "portcullis-root-key v1";
/// The provider kind recorded with keys this provider wraps.
pub const KIND: &str = "local-file";

/// Why the root-key file could not be created or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// `init` found a file already there; the existing root key is never replaced.
    #[error("root key file {path} already exists; refusing to overwrite it (it may be the only copy of the root key)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file is readable or writable by group or others.
    #[error(
        "root key file {path} has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is not a regular file.
    #[error("root key file {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The first line is not [`FILE_HEADER`].
    #[error("root key file {path} does not start with {FILE_HEADER:?}")]
    BadHeader {
        /// The file.
        path: PathBuf,
    },
    /// The key line does not hold 64 hex digits.
    #[error("root key file {path}: the key must be {} hex digits, found {found} characters", KEY_LEN * 2)]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// How many characters the key line has.
        found: usize,
    },
    /// The key line holds a non-hex character, or there is more after it.
    #[error("root key file {path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key itself).
        what: &'static str,
    },
    /// Reading or writing failed.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The AEAD backend refused the key.
    #[error("root key: {0}")]
    Cipher(#[from] crate::AeadError),
    /// The random generator failed while creating a key.
    #[error(transparent)]
    Random(#[from] crate::RandomError),
}

/// A root key loaded from a local file.
pub struct LocalKeyFile {
    id: String,
    key: AeadKey,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile")
            .field("root_key_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalKeyFile {
    /// Creates a new random root key at `path` with mode 0600 and returns it loaded.
    ///
    /// # Errors
    ///
    /// [`KeyFileError::Exists`] if anything is at `path`; [`KeyFileError::Io`] if it cannot
    /// be written.
    pub fn init(path: &Path) -> Result<Self, KeyFileError> {
        let key = SecretKey::random()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyFileError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let text = Zeroizing::new(format!(
            "{FILE_HEADER}\n{}\n",
            crate::hex::encode(key.expose())
        ));
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| KeyFileError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        Self::from_key(&key)
    }

    /// Loads the root key at `path`, refusing a file that group or others can access, a
    /// wrong header, or a key of the wrong length.
    ///
    /// # Errors
    ///
    /// The [`KeyFileError`] variant naming what is wrong.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        // Check the permissions of the file actually opened, not of whatever the path
        // names a moment earlier.
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile {
                path: path.to_owned(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::TooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        // Small bound: a key file is 88 bytes; anything much larger is not one.
        if meta.len() > 4096 {
            return Err(KeyFileError::Malformed {
                path: path.to_owned(),
                what: "file is far larger than a root key file",
            });
        }
        let mut text = Zeroizing::new(String::with_capacity(128));
        file.read_to_string(&mut text).map_err(io)?;
        let mut lines = text.lines();
        if lines.next() != Some(FILE_HEADER) {
            return Err(KeyFileError::BadHeader {
                path: path.to_owned(),
            });
        }
        let key_line = lines.next().unwrap_or("").trim();
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(KeyFileError::Malformed {
                path: path.to_owned(),
                what: "unexpected content after the key line",
            });
        }
        if key_line.len() != KEY_LEN * 2 {
            return Err(KeyFileError::WrongLength {
                path: path.to_owned(),
                found: key_line.len(),
            });
        }
        let mut bytes = crate::hex::decode(key_line).ok_or(KeyFileError::Malformed {
            path: path.to_owned(),
            what: "the key line holds a character that is not a hex digit",
        })?;
        let key = SecretKey::from_slice(&bytes).map_err(|_| KeyFileError::WrongLength {
            path: path.to_owned(),
            found: key_line.len(),
        });
        bytes.zeroize();
        Self::from_key(&key?)
    }

    /// A provider around an in-memory root key (tests and tools).
    ///
    /// # Errors
    ///
    /// [`KeyFileError::Cipher`] if the AEAD backend refuses the key (it accepts every
    /// 32-byte key).
    pub fn from_key(key: &SecretKey) -> Result<Self, KeyFileError> {
        let mut input = Vec::with_capacity(25 + KEY_LEN);
        input.extend_from_slice(b"portcullis root key id v1");
        input.extend_from_slice(key.expose());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        input.zeroize();
        let id = crate::hex::encode(&digest.as_ref()[..8]);
        Ok(Self {
            id,
            key: AeadKey::new(AeadBackend::DEFAULT, key)?,
        })
    }
}

impl RootKeyProvider for LocalKeyFile {
    fn kind(&self) -> &str {
        KIND
    }

    fn root_key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, kek: &SecretKey, context: WrapContext<'_>) -> Result<WrappedKey, ProviderError> {
        let blob = crate::key_wrap::seal(&self.key, &context.aad(), kek)?;
        Ok(WrappedKey {
            provider: KIND.to_owned(),
            root_key_id: self.id.clone(),
            blob,
        })
    }

    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: WrapContext<'_>,
    ) -> Result<SecretKey, ProviderError> {
        wrapped.check_origin(KIND, &self.id)?;
        crate::key_wrap::open(&self.key, &context.aad(), &wrapped.blob).map_err(|e| match e {
            crate::key_wrap::OpenError::Malformed(what) => ProviderError::Malformed(what),
            crate::key_wrap::OpenError::Authentication => ProviderError::Unwrap {
                topic: context.topic.to_owned(),
                kek_version: context.kek_version,
            },
        })
    }
}
