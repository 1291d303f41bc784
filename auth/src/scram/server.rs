//! The server side of a SCRAM exchange: client-first -> server-first -> client-final ->
//! server-final.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;

use super::hash::{ct_eq, xor, ScramHash};
use super::message::{parse_client_final, parse_client_first, ClientFirstError};
use super::MAX_MESSAGE_LEN;
use crate::principal::{AuthSource, Principal};
use crate::sasl::{AuthFailure, Authenticated, FailureKind, Mechanism, Step};
use crate::store::{UserStore, MAX_NAME_LEN};

/// The server side of one SCRAM exchange.
///
/// `Debug` shows the mechanism and the phase only.
pub struct ScramServer {
    mechanism: Mechanism,
    users: Arc<UserStore>,
    state: State,
    /// Injected by tests to reproduce RFC 7677's exchange; random otherwise.
    #[cfg(test)]
    fixed_nonce: Option<String>,
}

/// What the server checks the proof against: the user's credential or, for users that
/// cannot log in with this mechanism, a fake one that makes the exchange look the same.
struct Verifier {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    /// `None` when the user exists with this credential; otherwise why the exchange must fail.
    unusable: Option<&'static str>,
    roles: Vec<String>,
}

enum State {
    /// Waiting for client-first.
    Initial,
    /// Hash unusable (a mechanism that is not SCRAM was passed to `new`).
    Unsupported,
    /// Server-first sent; waiting for client-final.
    FirstSent(Box<Exchange>),
    /// Succeeded or failed; nothing more is accepted.
    Done,
}

struct Exchange {
    hash: ScramHash,
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    verifier: Verifier,
}

impl ScramServer {
    /// Starts an exchange for SCRAM-SHA-256 or SCRAM-SHA-512 against `users`.
    ///
    /// Any other mechanism yields a server that fails every message with
    /// [`FailureKind::IllegalState`].
    pub fn new(mechanism: Mechanism, users: Arc<UserStore>) -> ScramServer {
        let state = match ScramHash::for_mechanism(mechanism) {
            Some(_) => State::Initial,
            None => State::Unsupported,
        };
        ScramServer {
            mechanism,
            users,
            state,
            #[cfg(test)]
            fixed_nonce: None,
        }
    }

    /// A server whose nonce suffix is `nonce` instead of random bytes (test vectors).
    #[cfg(test)]
    pub(crate) fn with_nonce(mechanism: Mechanism, users: Arc<UserStore>, nonce: &str) -> Self {
        let mut server = ScramServer::new(mechanism, users);
        server.fixed_nonce = Some(nonce.to_owned());
        server
    }

    /// Feeds one client message.
    pub fn step(&mut self, client_message: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => match self.client_first(client_message) {
                Ok((challenge, exchange)) => {
                    self.state = State::FirstSent(Box::new(exchange));
                    Step::Challenge(challenge)
                }
                Err(failure) => Step::Failure(failure),
            },
            State::FirstSent(exchange) => self.client_final(&exchange, client_message),
            State::Unsupported => Step::Failure(AuthFailure::new(
                FailureKind::IllegalState,
                None,
                format!("{} is not a SCRAM mechanism", self.mechanism),
            )),
            State::Done => Step::Failure(AuthFailure::new(
                FailureKind::IllegalState,
                None,
                "SCRAM message after the exchange ended",
            )),
        }
    }

    fn client_first(&self, raw: &[u8]) -> Result<(Vec<u8>, Exchange), AuthFailure> {
        let malformed = |detail: &str| AuthFailure::new(FailureKind::Malformed, None, detail);
        let hash = ScramHash::for_mechanism(self.mechanism)
            .ok_or_else(|| malformed("not a SCRAM mechanism"))?;
        if raw.len() > MAX_MESSAGE_LEN {
            return Err(malformed("client-first message too long"));
        }
        let text = std::str::from_utf8(raw).map_err(|_| malformed("client-first is not UTF-8"))?;
        let first = parse_client_first(text).map_err(|e| match e {
            ClientFirstError::Malformed(why) => malformed(&format!("client-first: {why}")),
            ClientFirstError::Unsupported(why) => {
                AuthFailure::new(FailureKind::UnsupportedExtension, None, why)
            }
        })?;
        let attempted = Some(shorten(&first.username));
        if let Some(authzid) = &first.authzid {
            if *authzid != first.username {
                return Err(AuthFailure::new(
                    FailureKind::BadCredentials,
                    attempted,
                    "authorization id differs from the user name",
                ));
            }
        }
        let verifier = self.verifier(hash, &first.username);
        let nonce = format!("{}{}", first.nonce, self.server_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let exchange = Exchange {
            hash,
            username: first.username.clone(),
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            verifier,
        };
        Ok((server_first.into_bytes(), exchange))
    }

    fn client_final(&self, exchange: &Exchange, raw: &[u8]) -> Step {
        let user = Some(shorten(&exchange.username));
        let fail = |kind, detail: &str| Step::Failure(AuthFailure::new(kind, user.clone(), detail));
        if raw.len() > MAX_MESSAGE_LEN {
            return fail(FailureKind::Malformed, "client-final message too long");
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            return fail(FailureKind::Malformed, "client-final is not UTF-8");
        };
        let last = match parse_client_final(text) {
            Ok(m) => m,
            Err(why) => return fail(FailureKind::Malformed, &format!("client-final: {why}")),
        };
        let hash = exchange.hash;
        let verifier = &exchange.verifier;
        let auth_message = format!(
            "{},{},{}",
            exchange.client_first_bare, exchange.server_first, last.without_proof
        );
        // The proof is checked in full even when the outcome is already known, so the
        // time taken does not say which check failed or whether the user exists.
        let proof = STANDARD.decode(last.proof).unwrap_or_default();
        let client_signature = hash.hmac(&verifier.stored_key, auth_message.as_bytes());
        let proof_ok = match xor(&proof, &client_signature) {
            Some(client_key) => ct_eq(&hash.stored_key(&client_key), &verifier.stored_key),
            None => false,
        };
        let server_signature = hash.hmac(&verifier.server_key, auth_message.as_bytes());
        let binding_ok = last.channel_binding == STANDARD.encode(&exchange.gs2_header);
        let nonce_ok = ct_eq(last.nonce.as_bytes(), exchange.nonce.as_bytes());

        if let Some(why) = verifier.unusable {
            return fail(FailureKind::UnknownUser, why);
        }
        if !binding_ok {
            return fail(
                FailureKind::BadCredentials,
                "channel binding does not match",
            );
        }
        if !nonce_ok {
            return fail(FailureKind::BadCredentials, "nonce does not match");
        }
        if proof.len() != hash.output_len() {
            return fail(FailureKind::BadCredentials, "proof has the wrong length");
        }
        if !proof_ok {
            return fail(FailureKind::BadCredentials, "invalid proof");
        }
        Step::Success(Authenticated {
            principal: Principal {
                name: exchange.username.clone(),
                roles: verifier.roles.clone(),
                source: AuthSource::Sasl(self.mechanism),
            },
            final_message: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
            expires_at: None,
        })
    }

    fn verifier(&self, hash: ScramHash, username: &str) -> Verifier {
        let record = self.users.lookup(username);
        match record.and_then(|r| r.credential(self.mechanism).map(|c| (r, c))) {
            Some((record, credential)) => Verifier {
                salt: credential.salt().to_vec(),
                iterations: credential.iterations(),
                stored_key: credential.stored_key().to_vec(),
                server_key: credential.server_key().to_vec(),
                unusable: None,
                roles: record.roles().to_vec(),
            },
            None => {
                let why = if record.is_some() {
                    "user has no credential for this SCRAM mechanism"
                } else {
                    "unknown user"
                };
                fake_verifier(
                    hash,
                    username,
                    self.users.typical_iterations(self.mechanism),
                    why,
                )
            }
        }
    }

    fn server_nonce(&self) -> String {
        #[cfg(test)]
        if let Some(nonce) = &self.fixed_nonce {
            return nonce.clone();
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// A credential that looks like a real one: the salt is the same every time for the same
/// user name and mechanism (during the life of the process), so probing cannot tell unknown
/// users apart by a changing salt, and the iteration count is the one most users have.
fn fake_verifier(hash: ScramHash, username: &str, iterations: u32, why: &'static str) -> Verifier {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::rng().fill_bytes(&mut s);
        s
    });
    let derive = |label: &str| {
        let input = format!("{label}\0{}\0{username}", hash.mechanism());
        hash.hmac(secret, input.as_bytes())
    };
    let mut salt = derive("salt");
    salt.truncate(crate::store::SALT_LEN);
    Verifier {
        salt,
        iterations,
        stored_key: derive("stored"),
        server_key: derive("server"),
        unusable: Some(why),
        roles: Vec::new(),
    }
}

/// A user name as recorded in failures: bounded in length.
pub(crate) fn shorten(name: &str) -> String {
    name.chars().take(MAX_NAME_LEN).collect()
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match self.state {
            State::Initial => "initial",
            State::Unsupported => "unsupported",
            State::FirstSent(_) => "server-first sent",
            State::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}
