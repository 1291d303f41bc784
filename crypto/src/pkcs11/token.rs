//! Talking to the token: loading the module once per process, finding the token by label,
//! logging in, and finding or generating the root key.
//!
//! A PKCS#11 module may be initialized only once per process (`C_Initialize` twice answers
//! `CKR_CRYPTOKI_ALREADY_INITIALIZED`), so loaded modules are kept in a process-wide table
//! and shared by every provider that names the same path; they are never finalized.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::error::describe;
use super::Pkcs11Error;
use crate::secret::KEY_LEN;

/// Loaded and initialized modules, by configured path.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The module at `path`, loaded and initialized on first use.
pub(super) fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let table = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = table.get(path) {
        return Ok(ctx.clone());
    }
    if !path.is_file() {
        return Err(Pkcs11Error::ModuleNotFound {
            path: path.to_owned(),
        });
    }
    let load = |e: &Error| Pkcs11Error::ModuleLoad {
        path: path.to_owned(),
        reason: describe(e),
    };
    let ctx = Pkcs11::new(path).map_err(|e| load(&e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load(&e)),
    }
    table.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

/// The one slot whose token carries `label`.
pub(super) fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, Pkcs11Error> {
    let token_err = |e: &Error| Pkcs11Error::Token {
        token: label.to_owned(),
        reason: describe(e),
    };
    let mut present = Vec::new();
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_token().map_err(|e| token_err(&e))? {
        let info = ctx.get_token_info(slot).map_err(|e| token_err(&e))?;
        if info.label() == label {
            found.push(slot);
        }
        present.push(info.label().to_owned());
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(Pkcs11Error::TokenNotFound {
            label: label.to_owned(),
            present,
        }),
        many => Err(Pkcs11Error::TokenAmbiguous {
            label: label.to_owned(),
            count: many.len(),
        }),
    }
}

/// Opens a session on `slot` (read-write when `rw`) and logs the user in with `pin`.
///
/// Login state is per application and token in PKCS#11: when another session of this process
/// already logged in, `CKR_USER_ALREADY_LOGGED_IN` is accepted.
pub(super) fn open_session(
    ctx: &Pkcs11,
    slot: Slot,
    token: &str,
    pin: &AuthPin,
    rw: bool,
) -> Result<Session, Pkcs11Error> {
    let token_err = |e: &Error| Pkcs11Error::Token {
        token: token.to_owned(),
        reason: describe(e),
    };
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(|e| token_err(&e))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(Error::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(Pkcs11Error::WrongPin {
            token: token.to_owned(),
        }),
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked {
            token: token.to_owned(),
        }),
        Err(e) => Err(token_err(&e)),
    }
}

/// The secret keys labelled `label`.
fn keys_labelled(
    session: &Session,
    token: &str,
    label: &str,
) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| Pkcs11Error::Token {
            token: token.to_owned(),
            reason: describe(&e),
        })
}

/// The one AES-256 secret key labelled `label`, checked usable for encrypt and decrypt, and
/// its `CKA_ID` (empty when the key has none).
pub(super) fn find_key(
    session: &Session,
    token: &str,
    label: &str,
) -> Result<(ObjectHandle, Vec<u8>), Pkcs11Error> {
    let handle = match keys_labelled(session, token, label)?.as_slice() {
        [one] => *one,
        [] => {
            return Err(Pkcs11Error::KeyNotFound {
                token: token.to_owned(),
                label: label.to_owned(),
            })
        }
        many => {
            return Err(Pkcs11Error::KeyAmbiguous {
                token: token.to_owned(),
                label: label.to_owned(),
                count: many.len(),
            })
        }
    };
    let attributes = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Id,
            ],
        )
        .map_err(|e| Pkcs11Error::Token {
            token: token.to_owned(),
            reason: describe(&e),
        })?;
    let unsuitable = |what: &str| Pkcs11Error::KeyUnsuitable {
        token: token.to_owned(),
        label: label.to_owned(),
        what: what.to_owned(),
    };
    let (mut aes, mut len_ok, mut encrypt, mut decrypt, mut id) =
        (false, false, false, false, Vec::new());
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(n) => len_ok = usize::from(n) == KEY_LEN,
            Attribute::Encrypt(b) => encrypt = b,
            Attribute::Decrypt(b) => decrypt = b,
            Attribute::Id(bytes) => id = bytes,
            _ => {}
        }
    }
    if !aes {
        return Err(unsuitable("it is not an AES key"));
    }
    if !len_ok {
        return Err(unsuitable("it is not 256 bits long"));
    }
    if !(encrypt && decrypt) {
        return Err(unsuitable(
            "it does not allow both encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT)",
        ));
    }
    Ok((handle, id))
}

/// Generates a new AES-256 root key labelled `label` on the token: a token object, private,
/// sensitive and never extractable, allowed to encrypt and decrypt only. Refuses when a
/// secret key with that label exists.
pub(super) fn generate_key(session: &Session, token: &str, label: &str) -> Result<(), Pkcs11Error> {
    if !keys_labelled(session, token, label)?.is_empty() {
        return Err(Pkcs11Error::KeyExists {
            token: token.to_owned(),
            label: label.to_owned(),
        });
    }
    let id: [u8; 16] = crate::random::array()?;
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(cryptoki::types::Ulong::from(KEY_LEN as u64)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map(|_| ())
        .map_err(|e| Pkcs11Error::Token {
            token: token.to_owned(),
            reason: describe(&e),
        })
}
