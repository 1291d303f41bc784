//! The top of the key hierarchy: whatever holds the root key wraps and unwraps KEKs.
//!
//! The root key never leaves its provider in the PKCS#11 and KMS designs, so the trait is
//! shaped around "wrap these 32 bytes for this context" and "unwrap this blob for this
//! context", not around handing out a key. The [`WrapContext`] names the topic and KEK version
//! being wrapped; providers bind it to the ciphertext (AES-GCM associated data for the local
//! file and PKCS#11, the encryption context for AWS KMS), so a wrapped KEK copied to another
//! topic or version does not unwrap.

use crate::secret::SecretKey;

/// What a wrapped KEK is for; bound to the wrapping so it cannot be replayed elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrapContext<'a> {
    /// The topic the KEK belongs to.
    pub topic: &'a str,
    /// The KEK version.
    pub kek_version: u32,
}

impl WrapContext<'_> {
    /// The context as associated-data bytes:
    /// `"portcullis.kek" 0x00 u16be(len(topic)) topic u32be(kek_version)`.
    #[must_use]
    pub fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(14 + 1 + 2 + self.topic.len() + 4);
        aad.extend_from_slice(b"portcullis.kek\0");
        aad.extend_from_slice(
            &u16::try_from(self.topic.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        aad.extend_from_slice(self.topic.as_bytes());
        aad.extend_from_slice(&self.kek_version.to_be_bytes());
        aad
    }

    /// The context as string pairs, for providers that take a map (AWS KMS encryption
    /// context).
    #[must_use]
    pub fn pairs(&self) -> [(&'static str, String); 2] {
        [
            ("portcullis.topic", self.topic.to_owned()),
            ("portcullis.kek_version", self.kek_version.to_string()),
        ]
    }
}

/// A KEK as its provider wrapped it: safe to store and replicate.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    /// The provider kind that made it (`"local-file"`, `"pkcs11"`, `"aws-kms"`).
    pub provider: String,
    /// Which root key inside that provider (a fingerprint, a key label, a KMS key ARN).
    pub root_key_id: String,
    /// The provider's opaque ciphertext.
    #[serde(with = "crate::registry::base64_bytes")]
    pub blob: Vec<u8>,
}

impl WrappedKey {
    /// Checks that this key was wrapped by the provider kind `provider` with the root key
    /// `root_key_id`, before any unwrapping is tried.
    ///
    /// # Errors
    ///
    /// [`ProviderError::WrongProvider`] or [`ProviderError::WrongRootKey`].
    pub fn check_origin(&self, provider: &str, root_key_id: &str) -> Result<(), ProviderError> {
        if self.provider != provider {
            return Err(ProviderError::WrongProvider {
                expected: provider.to_owned(),
                found: self.provider.clone(),
            });
        }
        if self.root_key_id != root_key_id {
            return Err(ProviderError::WrongRootKey {
                expected: root_key_id.to_owned(),
                found: self.root_key_id.clone(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("provider", &self.provider)
            .field("root_key_id", &self.root_key_id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// Why a provider could not wrap or unwrap.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The wrapped key names another provider kind.
    #[error("key was wrapped by provider {found:?}, this provider is {expected:?}")]
    WrongProvider {
        /// This provider's kind.
        expected: String,
        /// The kind recorded with the key.
        found: String,
    },
    /// The wrapped key names another root key than the one loaded.
    #[error("key was wrapped by root key {found}, the loaded root key is {expected}")]
    WrongRootKey {
        /// The loaded root key's id.
        expected: String,
        /// The id recorded with the key.
        found: String,
    },
    /// The wrapped blob did not authenticate for this context (modified, or copied from
    /// another topic or version).
    #[error("wrapped key does not authenticate for topic {topic:?} version {kek_version}")]
    Unwrap {
        /// The topic in the context.
        topic: String,
        /// The version in the context.
        kek_version: u32,
    },
    /// The wrapped blob is malformed.
    #[error("wrapped key blob is malformed: {0}")]
    Malformed(&'static str),
    /// The random generator failed.
    #[error(transparent)]
    Random(#[from] crate::RandomError),
    /// A remote or hardware provider failed (network, token, permission); the message comes
    /// from the provider and must not contain key material.
    #[error("root key provider failed: {0}")]
    Backend(String),
}

/// Holds the root key and wraps/unwraps KEKs with it.
///
/// Implementations must be deterministic in what they accept (a blob wrapped for one context
/// never unwraps for another) and must never log or return key bytes in errors. Calls may
/// block (a KMS round trip, a PKCS#11 session); they are made only when a KEK is created,
/// rotated or first used after start, never per record.
pub trait RootKeyProvider: Send + Sync {
    /// The provider kind recorded with every key it wraps (`"local-file"`).
    fn kind(&self) -> &str;

    /// The id of the root key new wraps use (recorded with each wrapped key so a wrong
    /// root key is reported as such, not as a tag failure).
    fn root_key_id(&self) -> &str;

    /// Wraps `kek` for `context`.
    ///
    /// # Errors
    ///
    /// [`ProviderError`] if the provider cannot wrap.
    fn wrap(&self, kek: &SecretKey, context: WrapContext<'_>) -> Result<WrappedKey, ProviderError>;

    /// Unwraps `wrapped` for `context`.
    ///
    /// # Errors
    ///
    /// [`ProviderError`]: wrong provider or root key, or a blob that does not authenticate
    /// for `context`.
    fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: WrapContext<'_>,
    ) -> Result<SecretKey, ProviderError>;
}
