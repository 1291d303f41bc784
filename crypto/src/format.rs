//! Record format v1: the bytes of an encrypted value and the associated data that binds it.
//!
//! ```text
//! offset  length  field
//! 0       1       format version   = 0x01
//! 1       1       cipher id        = 0x01 (AES-256-GCM)
//! 2       16      DEK id
//! 18      12      nonce (random)
//! 30      n       ciphertext (n = plaintext length)
//! 30+n    16      GCM tag
//! ```
//!
//! Overhead is [`OVERHEAD`] (46) bytes per encrypted value. The associated data (not stored)
//! binds the format version, cipher id, topic and DEK id, and for a header value also the
//! header key and its occurrence number, so ciphertext moved to another topic, another header
//! or another version fails to authenticate. The partition is deliberately not bound:
//! records move between partitions legitimately (MirrorMaker, repartitioning, a topic that
//! gains partitions). See `docs/encryption-format.md`.

use crate::aead::{AeadError, AeadKey, NONCE_LEN, TAG_LEN};
use crate::dek_id::{DekId, DEK_ID_LEN};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Cipher id of AES-256-GCM with a 96-bit nonce and 128-bit tag.
pub const CIPHER_AES_256_GCM: u8 = 1;
/// The record header that marks a record as encrypted (value: see [`crate::record`]).
pub const MARKER_HEADER: &str = "portcullis.enc";
/// Bytes before the ciphertext.
pub const PREFIX_LEN: usize = 2 + DEK_ID_LEN + NONCE_LEN;
/// Bytes added to each encrypted value.
pub const OVERHEAD: usize = PREFIX_LEN + TAG_LEN;

/// What a sealed value protects, bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// The record value.
    Value,
    /// A header value: its key and how many headers with the same key precede it.
    HeaderValue {
        /// The header key.
        key: &'a str,
        /// 0 for the first header with this key, 1 for the second, ...
        occurrence: u32,
    },
}

/// Why bytes are not a v1 encrypted value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than the fixed prefix plus tag.
    #[error("encrypted value is {len} bytes, shorter than the {OVERHEAD}-byte minimum")]
    TooShort {
        /// The length found.
        len: usize,
    },
    /// A format version this build does not read.
    #[error("unsupported encryption format version {0}")]
    UnsupportedVersion(u8),
    /// A cipher id this build does not know.
    #[error("unsupported cipher id {0}")]
    UnsupportedCipher(u8),
    /// The marker header's value is not a known format marker.
    #[error("the {MARKER_HEADER} header value is not a known format marker")]
    BadMarker,
    /// More than one marker header.
    #[error("the record carries more than one {MARKER_HEADER} header")]
    DuplicateMarker,
}

/// A parsed encrypted value, borrowing the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedValue<'a> {
    /// The DEK that sealed it.
    pub dek_id: DekId,
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
    /// `ciphertext || tag`.
    pub sealed: &'a [u8],
}

impl<'a> SealedValue<'a> {
    /// The ciphertext, without its tag.
    #[must_use]
    pub fn ciphertext(&self) -> &'a [u8] {
        self.split().0
    }

    /// The tag.
    #[must_use]
    pub fn tag(&self) -> &'a [u8; TAG_LEN] {
        self.split().1
    }

    /// `sealed` split into ciphertext and tag; [`parse`] made it at least a tag long (a
    /// value built otherwise too short reads as no ciphertext and a zero tag, which fails).
    fn split(&self) -> (&'a [u8], &'a [u8; TAG_LEN]) {
        const NO_TAG: [u8; TAG_LEN] = [0; TAG_LEN];
        let at = self.sealed.len().saturating_sub(TAG_LEN);
        let (ciphertext, tag) = self.sealed.split_at(at);
        (ciphertext, tag.try_into().unwrap_or(&NO_TAG))
    }
}

/// Parses the v1 layout.
///
/// # Errors
///
/// [`FormatError`] for a short value, an unknown version or an unknown cipher.
pub fn parse(bytes: &[u8]) -> Result<SealedValue<'_>, FormatError> {
    // Version first, so a future longer layout is reported as a version problem.
    match bytes.first() {
        Some(&FORMAT_VERSION) | None => {}
        Some(&other) => return Err(FormatError::UnsupportedVersion(other)),
    }
    if bytes.len() < OVERHEAD {
        return Err(FormatError::TooShort { len: bytes.len() });
    }
    if bytes[1] != CIPHER_AES_256_GCM {
        return Err(FormatError::UnsupportedCipher(bytes[1]));
    }
    let too_short = || FormatError::TooShort { len: bytes.len() };
    let dek_id = DekId(
        bytes[2..2 + DEK_ID_LEN]
            .try_into()
            .map_err(|_| too_short())?,
    );
    let nonce = bytes[2 + DEK_ID_LEN..PREFIX_LEN]
        .try_into()
        .map_err(|_| too_short())?;
    Ok(SealedValue {
        dek_id,
        nonce,
        sealed: &bytes[PREFIX_LEN..],
    })
}

/// The associated data for `part` of a record in `topic` sealed by `dek_id`:
///
/// ```text
/// "portcullis.enc" || 0x00 || version (1) || cipher id (1) || part tag (1: 0x00 value, 0x01 header)
/// || u16be(len(topic)) || topic || DEK id (16)
/// [header only] || u32be(occurrence) || u32be(len(header key)) || header key
/// ```
#[must_use]
pub fn aad(topic: &str, dek_id: DekId, part: Part<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + topic.len());
    aad.extend_from_slice(MARKER_HEADER.as_bytes());
    aad.push(0);
    aad.push(FORMAT_VERSION);
    aad.push(CIPHER_AES_256_GCM);
    aad.push(match part {
        Part::Value => 0,
        Part::HeaderValue { .. } => 1,
    });
    // Topic names are at most 249 bytes (checked by the caller).
    aad.extend_from_slice(&u16::try_from(topic.len()).unwrap_or(u16::MAX).to_be_bytes());
    aad.extend_from_slice(topic.as_bytes());
    aad.extend_from_slice(&dek_id.0);
    if let Part::HeaderValue { key, occurrence } = part {
        aad.extend_from_slice(&occurrence.to_be_bytes());
        aad.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(key.as_bytes());
    }
    aad
}

/// Seals `plaintext` with an explicit nonce. Production callers pass a nonce never used with this key (the keyring: per-DEK prefix and counter);
/// the golden-vector test passes a fixed one (this is the seam that makes vectors
/// deterministic).
pub(crate) fn seal_with_nonce(
    key: &AeadKey,
    topic: &str,
    dek_id: DekId,
    part: Part<'_>,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_VERSION);
    out.push(CIPHER_AES_256_GCM);
    out.extend_from_slice(&dek_id.0);
    out.extend_from_slice(nonce);
    key.seal_append(nonce, &aad(topic, dek_id, part), plaintext, &mut out)?;
    Ok(out)
}

/// Opens a parsed value with its DEK.
///
/// # Errors
///
/// [`AeadError::Authentication`] if the key, topic, part or bytes do not match.
pub fn open(
    key: &AeadKey,
    topic: &str,
    value: &SealedValue<'_>,
    part: Part<'_>,
) -> Result<Vec<u8>, AeadError> {
    key.open(&value.nonce, &aad(topic, value.dek_id, part), value.sealed)
}

#[cfg(test)]
mod golden {
    //! Golden vectors of `docs/encryption-format.md`: recomputed with both backends through
    //! the fixed-nonce seam, compared byte for byte, and decrypted.

    use super::*;
    use crate::aead::AeadBackend;
    use crate::secret::SecretKey;

    struct Vector {
        topic: &'static str,
        part: Part<'static>,
        nonce: [u8; NONCE_LEN],
        plaintext: &'static [u8],
        aad: &'static str,
        value: &'static str,
    }

    fn key() -> SecretKey {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        SecretKey::from_bytes(k)
    }

    fn dek_id() -> DekId {
        DekId::from_hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf").unwrap()
    }

    fn vectors() -> Vec<Vector> {
        vec![
            Vector {
                topic: "payments",
                part: Part::Value,
                nonce: [0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb],
                plaintext: b"hello, portcullis",
                aad: "706f727463756c6c69732e656e630001010000087061796d656e7473a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                value: "0101a0a1a2a3a4a5a6a7a8a9aaabacadaeaff0f1f2f3f4f5f6f7f8f9fafb01632f6c1316f204f08583f9fb260edf63a4a06e85de007983cecd48cf9fe91034",
            },
            Vector {
                topic: "payments",
                part: Part::HeaderValue {
                    key: "trace-id",
                    occurrence: 1,
                },
                nonce: [0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb],
                plaintext: b"abc",
                aad: "706f727463756c6c69732e656e630001010100087061796d656e7473a0a1a2a3a4a5a6a7a8a9aaabacadaeaf000000010000000874726163652d6964",
                value: "0101a0a1a2a3a4a5a6a7a8a9aaabacadaeafc0c1c2c3c4c5c6c7c8c9cacb612a44aff1a9bcc4be587117573f9827cd5da0",
            },
            Vector {
                topic: "t",
                part: Part::Value,
                nonce: [0; NONCE_LEN],
                plaintext: b"",
                aad: "706f727463756c6c69732e656e6300010100000174a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                value: "0101a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00000000000000000000000020c964932ab30d1305045b943b1ea051",
            },
        ]
    }

    #[test]
    fn vectors_recompute_and_decrypt() {
        for (i, v) in vectors().into_iter().enumerate() {
            assert_eq!(
                crate::hex::encode(&aad(v.topic, dek_id(), v.part)),
                v.aad,
                "aad {i}"
            );
            for backend in AeadBackend::ALL {
                let k = AeadKey::new(backend, &key()).unwrap();
                let sealed =
                    seal_with_nonce(&k, v.topic, dek_id(), v.part, &v.nonce, v.plaintext).unwrap();
                assert_eq!(
                    crate::hex::encode(&sealed),
                    v.value,
                    "vector {i} {backend:?}"
                );
                let parsed = parse(&sealed).unwrap();
                assert_eq!(parsed.dek_id, dek_id());
                assert_eq!(parsed.nonce, v.nonce);
                assert_eq!(open(&k, v.topic, &parsed, v.part).unwrap(), v.plaintext);
                // The same bytes read from another topic do not authenticate.
                assert!(open(&k, "other", &parsed, v.part).is_err());
            }
        }
    }
}
