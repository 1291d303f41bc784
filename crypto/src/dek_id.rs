//! The identifier a record carries instead of its key.
//!
//! DEK ids are 128 random bits, so proxies in a fleet create DEKs without coordinating and
//! without a counter that a crash could reuse. An id is not secret; it is printed as 32
//! lowercase hex digits.

/// Length of a DEK id in bytes.
pub const DEK_ID_LEN: usize = 16;

/// Identifies one data encryption key within a topic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DekId(pub [u8; DEK_ID_LEN]);

impl DekId {
    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// [`crate::RandomError`] if the OS generator fails.
    pub fn random() -> Result<Self, crate::RandomError> {
        Ok(Self(crate::random::array()?))
    }

    /// The id as 32 lowercase hex digits (the form used in registry keys).
    #[must_use]
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses 32 hex digits.
    #[must_use]
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = crate::hex::decode(text)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for DekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DekId({})", self.to_hex())
    }
}

impl std::fmt::Display for DekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
