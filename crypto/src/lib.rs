//! Envelope encryption of Kafka record payloads for Portcullis (sans-io).
//!
//! Why this crate exists: the proxy encrypts record values (and optionally header values) on
//! Produce and decrypts them on Fetch, so brokers and their disks only ever hold ciphertext.
//! This crate owns everything about that except moving bytes: the cipher ([`aead`]), the key
//! hierarchy (root key -> per-topic KEK versions -> DEKs, in [`keyring`]), the registry of
//! wrapped keys ([`registry`]), and the record format ([`format`](mod@format), [`record`]). It opens no
//! sockets and runs no async runtime; the only files it touches are the local root-key file
//! ([`local_key_file`]) and the embedded registry ([`registry::SledStore`]). The exceptions
//! are the optional root-key providers, each behind a cargo feature (both on by default):
//! `pkcs11` loads a PKCS#11 module and talks to a token, `aws-kms` makes blocking HTTPS calls
//! to AWS KMS. Their calls happen only when a KEK is wrapped or unwrapped, never per record.
//!
//! The byte layouts are specified in `docs/encryption-format.md`, with golden vectors that
//! a unit test recomputes.

pub mod aead;
#[cfg(feature = "aws-kms")]
pub mod aws_kms;
pub mod dek_id;
pub mod dek_limits;
pub mod error;
pub mod format;
mod hex;
mod key_wrap;
pub mod keyring;
pub mod local_key_file;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod random;
pub mod record;
pub mod registry;
pub mod root_key;
pub mod secret;
pub mod topic_name;

pub use aead::{AeadBackend, AeadError, AeadKey};
pub use dek_id::DekId;
pub use dek_limits::{DekLimits, MAX_RECORDS_PER_DEK};
pub use error::CryptoError;
pub use format::{FormatError, FORMAT_VERSION, MARKER_HEADER};
pub use keyring::{KeyAccess, Keyring, RotationReport, ValueOpener, ValueSealer};
pub use local_key_file::{KeyFileError, LocalKeyFile};
pub use random::RandomError;
pub use record::{Header, RecordOptions, RecordPayload};
pub use registry::{MemoryStore, Registry, RegistryError, RegistryStore, SledStore};
pub use root_key::{ProviderError, RootKeyProvider, WrapContext, WrappedKey};
pub use secret::{SecretKey, WrongKeyLength, KEY_LEN};
