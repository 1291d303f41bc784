//! The PKCS#11 root-key provider: the root key is an AES-256 key inside a token (an HSM, or
//! SoftHSM2 for tests) and never leaves it.
//!
//! KEKs are wrapped by encrypting their 32 bytes on the token with `CKM_AES_GCM` (`C_Encrypt`:
//! a random 96-bit IV, the [`WrapContext::aad`] as associated data, a 128-bit tag) and
//! unwrapped with `C_Decrypt`, so a blob copied to another topic or KEK version fails the
//! token's tag check. The blob is
//!
//! ```text
//! 0x01 (blob version) || IV (12 bytes) || ciphertext (32 bytes) || tag (16 bytes)
//! ```
//!
//! A provider holds one logged-in session behind a mutex (cryptoki sessions are `Send` but
//! not `Sync`); wraps and unwraps happen when a KEK is created, rotated or first used, never
//! per record, so one session is enough. If the token drops the session (token reset,
//! logout) the provider opens a new one, logs in again and retries once. The user PIN is kept
//! for that, zeroized on drop, and never printed.
//!
//! Tokens differ in how they report a tag mismatch: the standard `CKR_ENCRYPTED_DATA_INVALID`,
//! or (SoftHSM2) `CKR_GENERAL_ERROR`. A generic failure is reported as "does not
//! authenticate" only if the token then seals and opens a probe value with the same key
//! correctly; otherwise it is a token failure.
//!
//! The root key id recorded with every wrapped KEK is `<token label>/<key label>`, followed by
//! `#<CKA_ID in hex>` when the key has an id (keys made by [`Pkcs11Root::create`] get a random
//! 16-byte one), so a key replaced under the same label is reported as a different root key.

mod config;
mod error;
mod token;

use std::sync::{Mutex, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

pub use config::{Pkcs11Config, MAX_PIN_LEN};
pub use error::Pkcs11Error;

use crate::root_key::{ProviderError, RootKeyProvider, WrapContext, WrappedKey};
use crate::secret::{SecretKey, KEY_LEN};

/// The provider kind recorded with keys this provider wraps.
pub const KIND: &str = "pkcs11";
/// The first byte of every blob this provider makes.
pub const BLOB_VERSION: u8 = 1;
/// IV length (96 bits, the GCM standard).
const IV_LEN: usize = 12;
/// Tag length (128 bits).
const TAG_LEN: usize = 16;
/// Total blob length.
pub const BLOB_LEN: usize = 1 + IV_LEN + KEY_LEN + TAG_LEN;

/// An open, logged-in session and the root key's handle in it.
struct Open {
    session: Session,
    key: ObjectHandle,
}

/// A root key held in a PKCS#11 token.
pub struct Pkcs11Root {
    ctx: Pkcs11,
    slot: Slot,
    token_label: String,
    key_label: String,
    id: String,
    /// The key's `CKA_ID`, checked again whenever the key is looked up anew.
    key_cka_id: Vec<u8>,
    pin: AuthPin,
    open: Mutex<Option<Open>>,
}

impl std::fmt::Debug for Pkcs11Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Root")
            .field("root_key_id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Root {
    /// Loads the module, finds the token, logs in and finds the root key, as `config` says.
    ///
    /// # Errors
    ///
    /// The [`Pkcs11Error`] naming what is wrong: configuration, PIN source, module, token,
    /// PIN, or key.
    pub fn open(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        config.validate()?;
        let pin = config.read_pin()?;
        let ctx = token::module(&config.module)?;
        let slot = token::find_slot(&ctx, &config.token_label)?;
        let session = token::open_session(&ctx, slot, &config.token_label, &pin, false)?;
        let (key, key_id) = token::find_key(&session, &config.token_label, &config.key_label)?;
        let mut id = format!("{}/{}", config.token_label, config.key_label);
        if !key_id.is_empty() {
            id.push('#');
            id.push_str(&crate::hex::encode(&key_id));
        }
        Ok(Self {
            ctx,
            slot,
            token_label: config.token_label.clone(),
            key_label: config.key_label.clone(),
            id,
            key_cka_id: key_id,
            pin,
            open: Mutex::new(Some(Open { session, key })),
        })
    }

    /// Generates a new root key on the token (AES-256, sensitive, never extractable, allowed
    /// to encrypt and decrypt only) and opens it; for `portcullis keys init`.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::KeyExists`] if a secret key with the label is already there (it is
    /// never replaced); otherwise as [`Pkcs11Root::open`].
    pub fn create(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        config.validate()?;
        let pin = config.read_pin()?;
        let ctx = token::module(&config.module)?;
        let slot = token::find_slot(&ctx, &config.token_label)?;
        let session = token::open_session(&ctx, slot, &config.token_label, &pin, true)?;
        token::generate_key(&session, &config.token_label, &config.key_label)?;
        // Keep the read-write session open until the provider's own session is logged in, so
        // the token does not log this application out in between.
        let provider = Self::open(config);
        drop(session);
        provider
    }

    /// The token label.
    #[must_use]
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// The key label.
    #[must_use]
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// Runs `op` on the logged-in session, reopening it once if the token dropped it.
    fn with_session<T>(
        &self,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, Error>,
    ) -> Result<Result<T, Error>, ProviderError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for attempt in 0..2 {
            if open.is_none() {
                *open = Some(self.reopen()?);
            }
            let Some(current) = open.as_ref() else {
                continue;
            };
            match op(&current.session, current.key) {
                Err(e) if attempt == 0 && session_lost(&e) => *open = None,
                result => return Ok(result),
            }
        }
        Err(ProviderError::Backend(format!(
            "PKCS#11 token {:?}: the session was lost twice in a row",
            self.token_label
        )))
    }

    /// A fresh logged-in session and key handle.
    fn reopen(&self) -> Result<Open, ProviderError> {
        let backend = |e: Pkcs11Error| ProviderError::Backend(e.to_string());
        let session =
            token::open_session(&self.ctx, self.slot, &self.token_label, &self.pin, false)
                .map_err(backend)?;
        let (key, key_cka_id) =
            token::find_key(&session, &self.token_label, &self.key_label).map_err(backend)?;
        if key_cka_id != self.key_cka_id {
            // Another key now carries the label: wrapping with it under this root key id
            // would make KEKs that nothing can unwrap once the old key is back.
            return Err(ProviderError::Backend(format!(
                "PKCS#11 token {:?}: the key labelled {:?} was replaced while in use (its CKA_ID changed); restart to use the new key",
                self.token_label, self.key_label
            )));
        }
        Ok(Open { session, key })
    }

    /// Whether the token seals and opens a random value with the root key right now: tells
    /// a tag mismatch reported as a generic failure apart from a token that is failing.
    fn token_works(&self) -> bool {
        let Ok(probe) = crate::random::array::<KEY_LEN>() else {
            return false;
        };
        let probe = Zeroizing::new(probe);
        let Ok(iv) = crate::random::array::<IV_LEN>() else {
            return false;
        };
        let result = self.with_session(|session, key| {
            let mut iv_enc = iv;
            let params = GcmParams::new(
                &mut iv_enc,
                b"portcullis.probe",
                ((TAG_LEN * 8) as u64).into(),
            )?;
            let sealed = session.encrypt(&Mechanism::AesGcm(params), key, &probe[..])?;
            let mut iv_dec = iv;
            let params = GcmParams::new(
                &mut iv_dec,
                b"portcullis.probe",
                ((TAG_LEN * 8) as u64).into(),
            )?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, &sealed)
                .map(Zeroizing::new)
        });
        matches!(result, Ok(Ok(opened)) if opened[..] == probe[..])
    }

    fn backend(&self, op: &str, e: &Error) -> ProviderError {
        ProviderError::Backend(format!(
            "PKCS#11 token {:?} key {:?}: {op}: {}",
            self.token_label,
            self.key_label,
            error::describe(e)
        ))
    }
}

/// Errors after which a new session (and login) may succeed.
fn session_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

/// Errors a token may return for a GCM tag mismatch as well as for a real fault (SoftHSM2
/// answers a tag mismatch with `CKR_GENERAL_ERROR`); see [`Pkcs11Root::token_works`].
fn ambiguous(e: &Error) -> bool {
    matches!(
        e,
        Error::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)
    )
}

/// Errors that mean "this ciphertext does not authenticate under this key and AAD".
fn authentication_failed(e: &Error) -> bool {
    matches!(
        e,
        Error::Pkcs11(
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
            _
        )
    )
}

impl RootKeyProvider for Pkcs11Root {
    fn kind(&self) -> &str {
        KIND
    }

    fn root_key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, kek: &SecretKey, context: WrapContext<'_>) -> Result<WrappedKey, ProviderError> {
        let iv: [u8; IV_LEN] = crate::random::array()?;
        let aad = context.aad();
        let sealed = self
            .with_session(|session, key| {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, &aad, ((TAG_LEN * 8) as u64).into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, kek.expose())
            })?
            .map_err(|e| self.backend("C_Encrypt (AES-GCM)", &e))?;
        if sealed.len() != KEY_LEN + TAG_LEN {
            return Err(ProviderError::Backend(format!(
                "PKCS#11 token {:?}: AES-GCM returned {} bytes for a {KEY_LEN}-byte key, expected {}",
                self.token_label,
                sealed.len(),
                KEY_LEN + TAG_LEN
            )));
        }
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&sealed);
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
        if wrapped.blob.len() != BLOB_LEN {
            return Err(ProviderError::Malformed(
                "PKCS#11 blob has the wrong length",
            ));
        }
        if wrapped.blob[0] != BLOB_VERSION {
            return Err(ProviderError::Malformed(
                "PKCS#11 blob has an unknown version",
            ));
        }
        let (iv_bytes, sealed) = wrapped.blob[1..].split_at(IV_LEN);
        let mut stored_iv = [0u8; IV_LEN];
        stored_iv.copy_from_slice(iv_bytes);
        let aad = context.aad();
        let plain = self.with_session(|session, key| {
            let mut iv = stored_iv;
            let params = GcmParams::new(&mut iv, &aad, ((TAG_LEN * 8) as u64).into())?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, sealed)
                .map(Zeroizing::new)
        })?;
        match plain {
            Ok(bytes) => SecretKey::from_slice(&bytes).map_err(|_| {
                ProviderError::Malformed("PKCS#11 unwrap returned a key of the wrong length")
            }),
            Err(e) if authentication_failed(&e) || (ambiguous(&e) && self.token_works()) => {
                Err(ProviderError::Unwrap {
                    topic: context.topic.to_owned(),
                    kek_version: context.kek_version,
                })
            }
            Err(e) => Err(self.backend("C_Decrypt (AES-GCM)", &e)),
        }
    }
}
