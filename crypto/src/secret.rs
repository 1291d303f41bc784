//! Secret key bytes that wipe themselves and never print.
//!
//! Every unwrapped key (root key, KEK, DEK) lives in a [`SecretKey`] for as long as it is in
//! memory: it is overwritten with zeros on drop, its `Debug` shows no bytes, and comparing two
//! keys takes the same time whatever their contents.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroize as _;

/// Length in bytes of every key in the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;

/// 256 bits of key material, zeroized on drop.
///
/// There is deliberately no `Clone`, `Display` or accessor that copies the bytes out; share a
/// key through `Arc` and hand its bytes only to the cipher that needs them.
pub struct SecretKey(Box<[u8; KEY_LEN]>);

impl SecretKey {
    /// Wraps `bytes`, taking ownership; the caller's copy should be zeroized by the caller.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut key = Self(Box::new([0u8; KEY_LEN]));
        key.0.copy_from_slice(&bytes);
        let mut bytes = bytes;
        bytes.zeroize();
        key
    }

    /// Copies a key out of `bytes`, which must be exactly [`KEY_LEN`] long.
    ///
    /// # Errors
    ///
    /// [`WrongKeyLength`] with the length that was found.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, WrongKeyLength> {
        if bytes.len() != KEY_LEN {
            return Err(WrongKeyLength(bytes.len()));
        }
        let mut key = Self(Box::new([0u8; KEY_LEN]));
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// A fresh key from the operating system's random number generator.
    ///
    /// # Errors
    ///
    /// [`crate::random::RandomError`] if the OS generator is unavailable.
    pub fn random() -> Result<Self, crate::random::RandomError> {
        let mut key = Self(Box::new([0u8; KEY_LEN]));
        crate::random::fill(&mut key.0[..])?;
        Ok(key)
    }

    /// The key bytes, for the cipher that uses them. Do not copy them anywhere else.
    #[must_use]
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A key of the wrong length was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key must be {KEY_LEN} bytes, found {0}")]
pub struct WrongKeyLength(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let key = SecretKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "SecretKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn equality_and_length() {
        let a = SecretKey::from_bytes([1; KEY_LEN]);
        let b = SecretKey::from_slice(&[1; KEY_LEN]).unwrap();
        let c = SecretKey::from_bytes([2; KEY_LEN]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(SecretKey::from_slice(&[0; 31]), Err(WrongKeyLength(31)));
        assert_ne!(SecretKey::random().unwrap(), SecretKey::random().unwrap());
    }
}
