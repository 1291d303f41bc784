//! Why a PKCS#11 root key could not be opened or created.
//!
//! Each variant names what an operator has to fix (the module path, the token label, the PIN,
//! the key label); none carries the PIN or key material. Failures during wrap and unwrap are
//! reported through [`crate::ProviderError`] instead.

use std::path::PathBuf;

/// Why the PKCS#11 root key could not be opened or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// A configuration field is missing or malformed.
    #[error("pkcs11 root key configuration: {0}")]
    Config(String),
    /// The PIN source is missing, unreadable, too open, or holds no usable PIN.
    #[error("pkcs11 user PIN: {0}")]
    Pin(String),
    /// The module file does not exist.
    #[error("PKCS#11 module {path} not found (install the HSM's PKCS#11 library, e.g. Debian's softhsm2 for SoftHSM, or fix `module`)")]
    ModuleNotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// The module exists but could not be loaded or initialized.
    #[error("PKCS#11 module {path} could not be loaded: {reason}")]
    ModuleLoad {
        /// The configured path.
        path: PathBuf,
        /// What the loader or `C_Initialize` said.
        reason: String,
    },
    /// No token with the configured label is present.
    #[error("no PKCS#11 token labelled {label:?} (tokens present: {present:?})")]
    TokenNotFound {
        /// The configured label.
        label: String,
        /// The labels of the tokens that are present.
        present: Vec<String>,
    },
    /// More than one token carries the label.
    #[error("{count} PKCS#11 tokens are labelled {label:?}; labels must be unique")]
    TokenAmbiguous {
        /// The label.
        label: String,
        /// How many tokens carry it.
        count: usize,
    },
    /// The token refused the user PIN.
    #[error("PKCS#11 token {token:?} refused the user PIN (wrong PIN)")]
    WrongPin {
        /// The token label.
        token: String,
    },
    /// The token's user PIN is locked after too many wrong attempts.
    #[error("PKCS#11 token {token:?}: the user PIN is locked")]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// No secret key with the configured label is on the token.
    #[error("PKCS#11 token {token:?} holds no secret key labelled {label:?} (create one with `portcullis keys init`)")]
    KeyNotFound {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// More than one secret key carries the label.
    #[error("PKCS#11 token {token:?} holds {count} secret keys labelled {label:?}; labels must be unique")]
    KeyAmbiguous {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// How many keys carry it.
        count: usize,
    },
    /// `create` found a key with the label already there; it is never replaced.
    #[error("PKCS#11 token {token:?} already holds a secret key labelled {label:?}; refusing to create another (it may wrap existing keys)")]
    KeyExists {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// The key is not an AES-256 key usable for encryption and decryption.
    #[error("PKCS#11 key {label:?} on token {token:?} cannot be a root key: {what}")]
    KeyUnsuitable {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
        /// What is wrong with it.
        what: String,
    },
    /// Another PKCS#11 call failed.
    #[error("PKCS#11 token {token:?}: {reason}")]
    Token {
        /// The token label.
        token: String,
        /// The failing function and its return value.
        reason: String,
    },
    /// The random generator failed.
    #[error(transparent)]
    Random(#[from] crate::RandomError),
}

/// A cryptoki error as `C_Function returned CKR_NAME`, short and free of secrets.
pub(crate) fn describe(error: &cryptoki::error::Error) -> String {
    match error {
        cryptoki::error::Error::Pkcs11(rv, function) => format!("C_{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}
