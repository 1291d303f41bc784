//! Wrapping a 32-byte key under another with AES-256-GCM (used by the local root key to wrap
//! KEKs and by KEKs to wrap DEKs).
//!
//! Blob layout (61 bytes): `0x01` (blob version) `|| nonce (12) || ciphertext (32) || tag
//! (16)`. The caller supplies associated data naming what the key is for.

use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::secret::{SecretKey, KEY_LEN};

/// Version byte of the blob layout.
const BLOB_V1: u8 = 1;
/// Total blob length.
pub(crate) const BLOB_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Why a blob did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Wrong length or version byte.
    Malformed(&'static str),
    /// Tag failure: modified, wrong wrapping key, or wrong associated data.
    Authentication,
}

/// Why a key could not be wrapped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SealError {
    /// No nonce: the OS generator failed.
    Random(crate::RandomError),
    /// The cipher refused (it does not for 32 bytes).
    Cipher(crate::AeadError),
}

impl From<SealError> for crate::CryptoError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Random(e) => Self::Random(e),
            SealError::Cipher(e) => Self::Cipher(e),
        }
    }
}

impl From<SealError> for crate::ProviderError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Random(e) => Self::Random(e),
            SealError::Cipher(e) => Self::Backend(e.to_string()),
        }
    }
}

/// Wraps `key` under `wrapping` with a fresh random nonce.
pub(crate) fn seal(wrapping: &AeadKey, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; NONCE_LEN] = crate::random::array().map_err(SealError::Random)?;
    let mut blob = Vec::with_capacity(BLOB_LEN);
    blob.push(BLOB_V1);
    blob.extend_from_slice(&nonce);
    wrapping
        .seal_append(&nonce, aad, key.expose(), &mut blob)
        .map_err(SealError::Cipher)?;
    Ok(blob)
}

/// Unwraps a blob made by [`seal`] with the same wrapping key and associated data.
pub(crate) fn open(wrapping: &AeadKey, aad: &[u8], blob: &[u8]) -> Result<SecretKey, OpenError> {
    if blob.len() != BLOB_LEN {
        return Err(OpenError::Malformed("wrong length"));
    }
    if blob[0] != BLOB_V1 {
        return Err(OpenError::Malformed("unknown blob version"));
    }
    let nonce: [u8; NONCE_LEN] = blob[1..=NONCE_LEN]
        .try_into()
        .map_err(|_| OpenError::Malformed("wrong length"))?;
    let mut plain = zeroize::Zeroizing::new(
        wrapping
            .open(&nonce, aad, &blob[1 + NONCE_LEN..])
            .map_err(|_| OpenError::Authentication)?,
    );
    let key = SecretKey::from_slice(&plain).map_err(|_| OpenError::Malformed("wrong length"));
    zeroize::Zeroize::zeroize(&mut *plain);
    key
}
