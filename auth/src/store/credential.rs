//! One user's SCRAM credential for one hash: the only password-derived material stored.

use rand::RngCore;

use super::{Password, StoreError, MAX_ITERATIONS, MIN_ITERATIONS, MIN_SALT_LEN, SALT_LEN};
use crate::sasl::Mechanism;
use crate::scram::ScramHash;

/// The SCRAM credential of a user for SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802 section 3):
/// salt, iteration count, `StoredKey` and `ServerKey`.
///
/// Neither key lets anyone recover the password or log in as the user (a client must
/// prove knowledge of `ClientKey`, which only `StoredKey = H(ClientKey)` reveals). `Debug`
/// prints neither key.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential for `password` with a fresh random salt of 32 bytes.
    ///
    /// `mechanism` must be SCRAM-SHA-256 or SCRAM-SHA-512; `iterations` must lie in
    /// `MIN_ITERATIONS..=MAX_ITERATIONS`.
    pub fn generate(
        mechanism: Mechanism,
        password: &Password,
        iterations: u32,
    ) -> Result<ScramCredential, StoreError> {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        ScramCredential::derive(mechanism, password, &salt, iterations)
    }

    /// Derives the credential for `password` with the given salt (test vectors, migration).
    pub fn derive(
        mechanism: Mechanism,
        password: &Password,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, StoreError> {
        let hash = scram_hash(mechanism)?;
        check_iterations(iterations)?;
        check_salt(salt)?;
        let salted = hash.salted_password(password.expose_secret().as_bytes(), salt, iterations);
        let client_key = hash.client_key(&salted);
        Ok(ScramCredential {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.stored_key(&client_key),
            server_key: hash.server_key(&salted),
        })
    }

    /// Builds a credential from stored parts, checking iteration count and key lengths.
    pub fn from_parts(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    ) -> Result<ScramCredential, StoreError> {
        let hash = scram_hash(mechanism)?;
        check_iterations(iterations)?;
        check_salt(&salt)?;
        if stored_key.len() != hash.output_len() {
            return Err(StoreError::invalid_value(
                "stored_key",
                format!("must be {} bytes for {mechanism}", hash.output_len()),
            ));
        }
        if server_key.len() != hash.output_len() {
            return Err(StoreError::invalid_value(
                "server_key",
                format!("must be {} bytes for {mechanism}", hash.output_len()),
            ));
        }
        Ok(ScramCredential {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }

    /// A SCRAM-SHA-256 credential with random keys that no password derives: what unknown
    /// users are checked against so they cost the same work as known ones.
    pub(crate) fn dummy(iterations: u32) -> ScramCredential {
        let random = |len: usize| {
            let mut bytes = vec![0u8; len];
            rand::rng().fill_bytes(&mut bytes);
            bytes
        };
        ScramCredential {
            hash: ScramHash::Sha256,
            salt: random(SALT_LEN),
            iterations,
            stored_key: random(32),
            server_key: random(32),
        }
    }

    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub fn mechanism(&self) -> Mechanism {
        self.hash.mechanism()
    }

    /// The salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub(crate) fn hash(&self) -> ScramHash {
        self.hash
    }

    pub(crate) fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    pub(crate) fn server_key(&self) -> &[u8] {
        &self.server_key
    }
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism())
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

fn scram_hash(mechanism: Mechanism) -> Result<ScramHash, StoreError> {
    ScramHash::for_mechanism(mechanism)
        .ok_or_else(|| StoreError::invalid_value("mechanism", format!("{mechanism} is not SCRAM")))
}

pub(super) fn check_iterations(iterations: u32) -> Result<(), StoreError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(StoreError::invalid_value(
            "iterations",
            format!("{iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"),
        ))
    }
}

fn check_salt(salt: &[u8]) -> Result<(), StoreError> {
    if (MIN_SALT_LEN..=1024).contains(&salt.len()) {
        Ok(())
    } else {
        Err(StoreError::invalid_value(
            "salt",
            format!("must be {MIN_SALT_LEN} to 1024 bytes"),
        ))
    }
}
