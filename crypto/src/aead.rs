//! AES-256-GCM, behind one small enum so the implementation is chosen in one place.
//!
//! Two implementations are wired in: aws-lc-rs (already the workspace's TLS crypto provider)
//! and RustCrypto's `aes-gcm`. They produce identical bytes (a unit test checks it), so the
//! record format does not depend on the choice. [`AeadBackend::DEFAULT`] is the one picked
//! from `examples/aead_bench.rs`; `docs/encryption-format.md` records the numbers.
//!
//! Nonces are 96 bits and random (see [`crate::random`]); the caller is responsible for the
//! per-key invocation limit (2^32), which [`crate::DekLimits`] enforces.

use aes_gcm::aead::AeadInPlace as _;
use aes_gcm::KeyInit as _;

use crate::secret::SecretKey;

/// Nonce length in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes (128 bits).
pub const TAG_LEN: usize = 16;

/// Which AES-256-GCM implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadBackend {
    /// aws-lc-rs (AWS-LC, assembly AES-NI/PCLMULQDQ/VAES code paths).
    AwsLc,
    /// RustCrypto `aes-gcm` (pure Rust with runtime-detected AES-NI and CLMUL intrinsics).
    RustCrypto,
}

impl AeadBackend {
    /// The backend used unless told otherwise (chosen by `examples/aead_bench.rs`).
    pub const DEFAULT: Self = Self::AwsLc;

    /// Every backend, for tests and the benchmark.
    pub const ALL: [Self; 2] = [Self::AwsLc, Self::RustCrypto];

    /// A short name for reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::AwsLc => "aws-lc-rs",
            Self::RustCrypto => "aes-gcm",
        }
    }
}

/// Sealing or opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AeadError {
    /// The tag did not verify: wrong key, wrong nonce, wrong associated data, or modified
    /// ciphertext. (AES-GCM cannot tell these apart, by design.)
    #[error("authentication failed (wrong key, wrong associated data or modified ciphertext)")]
    Authentication,
    /// The input is shorter than a tag.
    #[error("sealed input shorter than the {TAG_LEN}-byte tag")]
    TooShort,
    /// The backend refused the key or the input size.
    #[error("the AEAD backend refused the operation")]
    Backend,
}

enum Prepared {
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    RustCrypto(Box<aes_gcm::Aes256Gcm>),
}

/// An AES-256-GCM key with its key schedule expanded, ready to seal and open.
///
/// The backends wipe their key schedules on drop (AWS-LC in `EVP_AEAD_CTX_cleanup`, aes-gcm
/// with its `zeroize` feature).
pub struct AeadKey {
    prepared: Prepared,
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.prepared {
            Prepared::AwsLc(_) => AeadBackend::AwsLc,
            Prepared::RustCrypto(_) => AeadBackend::RustCrypto,
        };
        f.debug_struct("AeadKey")
            .field("backend", &backend.name())
            .finish_non_exhaustive()
    }
}

impl AeadKey {
    /// Expands `key` for `backend`.
    ///
    /// # Errors
    ///
    /// [`AeadError::Backend`] if the backend refuses the key (it never does for 32 bytes).
    pub fn new(backend: AeadBackend, key: &SecretKey) -> Result<Self, AeadError> {
        let prepared = match backend {
            AeadBackend::AwsLc => {
                let unbound =
                    aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key.expose())
                        .map_err(|_| AeadError::Backend)?;
                Prepared::AwsLc(aws_lc_rs::aead::LessSafeKey::new(unbound))
            }
            AeadBackend::RustCrypto => Prepared::RustCrypto(Box::new(
                aes_gcm::Aes256Gcm::new_from_slice(key.expose()).map_err(|_| AeadError::Backend)?,
            )),
        };
        Ok(Self { prepared })
    }

    /// Encrypts `plaintext` and appends `ciphertext || tag` to `out`.
    ///
    /// The nonce must never repeat under this key; draw it from [`crate::random`].
    ///
    /// # Errors
    ///
    /// [`AeadError::Backend`] if the input is larger than GCM allows (about 64 GiB).
    pub fn seal_append(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AeadError> {
        let start = out.len();
        out.reserve(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        match self.seal_in_place_separate_tag(nonce, aad, &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Encrypts `in_out` in place and returns the tag: [`AeadKey::seal_append`] without
    /// the copy, for callers that put the plaintext where the ciphertext goes.
    ///
    /// # Errors
    ///
    /// [`AeadError::Backend`] if the input is larger than GCM allows.
    pub fn seal_in_place_separate_tag(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        match &self.prepared {
            Prepared::AwsLc(key) => {
                let tag = key
                    .seal_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                        aws_lc_rs::aead::Aad::from(aad),
                        in_out,
                    )
                    .map_err(|_| AeadError::Backend)?;
                tag.as_ref().try_into().map_err(|_| AeadError::Backend)
            }
            Prepared::RustCrypto(key) => Ok(key
                .encrypt_in_place_detached(nonce.into(), aad, in_out)
                .map_err(|_| AeadError::Backend)?
                .into()),
        }
    }

    /// Verifies `tag` and decrypts `in_out` (the ciphertext) in place. On failure `in_out`
    /// is wiped (AES-GCM may have decrypted it before the tag check failed).
    ///
    /// # Errors
    ///
    /// [`AeadError::Authentication`].
    pub fn open_in_place_separate_tag(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        tag: &[u8; TAG_LEN],
        in_out: &mut [u8],
    ) -> Result<(), AeadError> {
        let opened = match &self.prepared {
            Prepared::AwsLc(key) => key
                .open_in_place_separate_tag(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                    aws_lc_rs::aead::Aad::from(aad),
                    tag,
                    in_out,
                )
                .is_ok(),
            Prepared::RustCrypto(key) => key
                .decrypt_in_place_detached(nonce.into(), aad, in_out, tag.into())
                .is_ok(),
        };
        if opened {
            Ok(())
        } else {
            zeroize::Zeroize::zeroize(in_out);
            Err(AeadError::Authentication)
        }
    }

    /// Verifies and decrypts `sealed` (`ciphertext || tag`), returning the plaintext.
    ///
    /// # Errors
    ///
    /// [`AeadError::TooShort`] or [`AeadError::Authentication`].
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, AeadError> {
        let ct_len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(AeadError::TooShort)?;
        match &self.prepared {
            Prepared::AwsLc(key) => {
                let mut buf = sealed.to_vec();
                let opened = key
                    .open_in_place(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                        aws_lc_rs::aead::Aad::from(aad),
                        &mut buf,
                    )
                    .map(|plain| plain.len());
                match opened {
                    Ok(len) => {
                        buf.truncate(len);
                        Ok(buf)
                    }
                    Err(_) => {
                        // AES-GCM may have decrypted in place before the tag check failed
                        // (for a wrapped key with the wrong associated data, that is the
                        // key): wipe it.
                        zeroize::Zeroize::zeroize(&mut buf);
                        Err(AeadError::Authentication)
                    }
                }
            }
            Prepared::RustCrypto(key) => {
                let (ct, tag) = sealed.split_at(ct_len);
                let mut buf = ct.to_vec();
                // aes-gcm checks the tag before decrypting, so a failure leaves ciphertext.
                key.decrypt_in_place_detached(nonce.into(), aad, &mut buf, tag.into())
                    .map_err(|_| AeadError::Authentication)?;
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    #[test]
    fn backends_agree_byte_for_byte() {
        let nonce = [7u8; NONCE_LEN];
        for len in [0usize, 1, 15, 16, 17, 100, 1024, 65536] {
            let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut outs = Vec::new();
            for backend in AeadBackend::ALL {
                let k = AeadKey::new(backend, &key(3)).unwrap();
                let mut out = Vec::new();
                k.seal_append(&nonce, b"aad", &pt, &mut out).unwrap();
                assert_eq!(out.len(), len + TAG_LEN);
                outs.push(out);
            }
            assert_eq!(outs[0], outs[1], "length {len}");
            for backend in AeadBackend::ALL {
                let k = AeadKey::new(backend, &key(3)).unwrap();
                assert_eq!(k.open(&nonce, b"aad", &outs[0]).unwrap(), pt);
            }
        }
    }

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with 128-bit plaintext):
    /// anchors both backends to an external reference, not just to each other.
    #[test]
    fn nist_vector() {
        let k = hex("31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22");
        let iv: [u8; 12] = hex("0d18e06c7c725ac9e362e1ce").try_into().unwrap();
        let pt = hex("2db5168e932556f8089a0622981d017d");
        let expected = hex("fa4362189661d163fcd6a56d8bf0405ad636ac1bbedd5cc3ee727dc2ab4a9489");
        for backend in AeadBackend::ALL {
            let key = AeadKey::new(backend, &SecretKey::from_slice(&k).unwrap()).unwrap();
            let mut out = Vec::new();
            key.seal_append(&iv, b"", &pt, &mut out).unwrap();
            assert_eq!(out, expected, "{}", backend.name());
        }
    }

    #[test]
    fn wrong_key_aad_or_bytes_fail() {
        for backend in AeadBackend::ALL {
            let k = AeadKey::new(backend, &key(1)).unwrap();
            let nonce = [0u8; NONCE_LEN];
            let mut sealed = Vec::new();
            k.seal_append(&nonce, b"a", b"secret", &mut sealed).unwrap();
            assert_eq!(
                k.open(&nonce, b"b", &sealed),
                Err(AeadError::Authentication)
            );
            let other = AeadKey::new(backend, &key(2)).unwrap();
            assert_eq!(
                other.open(&nonce, b"a", &sealed),
                Err(AeadError::Authentication)
            );
            let mut flipped = sealed.clone();
            flipped[0] ^= 1;
            assert_eq!(
                k.open(&nonce, b"a", &flipped),
                Err(AeadError::Authentication)
            );
            assert_eq!(k.open(&nonce, b"a", &sealed[..3]), Err(AeadError::TooShort));
        }
    }

    #[test]
    fn in_place_matches_copying() {
        let nonce = [9u8; NONCE_LEN];
        for backend in AeadBackend::ALL {
            let k = AeadKey::new(backend, &key(4)).unwrap();
            for len in [0usize, 1, 100, 1024] {
                let pt: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
                let mut sealed = Vec::new();
                k.seal_append(&nonce, b"x", &pt, &mut sealed).unwrap();
                let mut buf = pt.clone();
                let tag = k
                    .seal_in_place_separate_tag(&nonce, b"x", &mut buf)
                    .unwrap();
                assert_eq!([buf.as_slice(), &tag].concat(), sealed);
                k.open_in_place_separate_tag(&nonce, b"x", &tag, &mut buf)
                    .unwrap();
                assert_eq!(buf, pt);
                let mut wrong = sealed[..len].to_vec();
                assert_eq!(
                    k.open_in_place_separate_tag(&nonce, b"y", &tag, &mut wrong),
                    Err(AeadError::Authentication)
                );
                assert!(wrong.iter().all(|b| *b == 0), "wiped after a failed open");
            }
        }
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
