//! The client side of SCRAM, for the proxy's own login to the cluster.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use super::hash::{ct_eq, xor, ScramHash};
use super::message::{encode_saslname, parse_server_final, parse_server_first, ServerFinal};
use super::MAX_MESSAGE_LEN;
use crate::sasl::Mechanism;
use crate::store::{Password, MAX_ITERATIONS, MIN_ITERATIONS};

/// Why a client-side SASL exchange failed. Never contains the password or key material.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The mechanism passed to a SCRAM client is not SCRAM.
    #[error("{0} is not a SCRAM mechanism")]
    NotScram(Mechanism),
    /// The user name or password cannot be sent with this mechanism.
    #[error("invalid credentials for the client: {0}")]
    InvalidCredentials(&'static str),
    /// A method was called out of order (or after the exchange ended).
    #[error("SCRAM client used out of order: {0}")]
    InvalidState(&'static str),
    /// The server's message does not follow the grammar.
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    /// The server's nonce does not start with ours.
    #[error("the server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The server asks for an iteration count outside the accepted range.
    #[error(
        "the server asks for {0} iterations; accepted are {MIN_ITERATIONS}..={MAX_ITERATIONS}"
    )]
    Iterations(u32),
    /// The server rejected the authentication (`e=` in server-final).
    #[error("the server rejected the authentication: {0}")]
    ServerError(String),
    /// The server's signature is wrong: it does not know the credential.
    #[error("the server signature does not verify (the server does not know the credential)")]
    ServerSignatureMismatch,
}

/// The client side of one SCRAM-SHA-256/512 exchange.
///
/// Call [`ScramClient::client_first`], send it, pass the server's answer to
/// [`ScramClient::handle_server_first`], send the result, and pass the server's last message
/// to [`ScramClient::handle_server_final`]; only when that returns `Ok` is the server
/// authenticated. `Debug` shows the mechanism, user and phase only.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: Password,
    state: ClientState,
    #[cfg(test)]
    fixed_nonce: Option<String>,
}

enum ClientState {
    Initial,
    FirstSent {
        nonce: String,
        client_first_bare: String,
    },
    FinalSent {
        server_signature: Vec<u8>,
    },
    Done,
}

impl ScramClient {
    /// A client for `mechanism` (SCRAM-SHA-256 or SCRAM-SHA-512) logging in as `username`.
    pub fn new(
        mechanism: Mechanism,
        username: impl Into<String>,
        password: impl Into<Password>,
    ) -> Result<ScramClient, ClientError> {
        let password = password.into();
        let hash = ScramHash::for_mechanism(mechanism).ok_or(ClientError::NotScram(mechanism))?;
        let username = username.into();
        if username.is_empty() || username.contains('\0') {
            return Err(ClientError::InvalidCredentials(
                "the user name is empty or contains NUL",
            ));
        }
        if password.is_empty() {
            return Err(ClientError::InvalidCredentials("the password is empty"));
        }
        Ok(ScramClient {
            hash,
            username,
            password,
            state: ClientState::Initial,
            #[cfg(test)]
            fixed_nonce: None,
        })
    }

    /// A client whose nonce is `nonce` instead of random bytes (test vectors).
    #[cfg(test)]
    pub(crate) fn with_nonce(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        nonce: &str,
    ) -> Result<ScramClient, ClientError> {
        let mut client = ScramClient::new(mechanism, username, password)?;
        client.fixed_nonce = Some(nonce.to_owned());
        Ok(client)
    }

    /// The client-first message (`n,,n=user,r=nonce`). Calling it again starts a new
    /// exchange with a new nonce.
    pub fn client_first(&mut self) -> Vec<u8> {
        let nonce = self.new_nonce();
        let client_first_bare = format!("n={},r={nonce}", encode_saslname(&self.username));
        let message = format!("n,,{client_first_bare}");
        self.state = ClientState::FirstSent {
            nonce,
            client_first_bare,
        };
        message.into_bytes()
    }

    /// Takes the server-first message and returns the client-final message.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ClientError> {
        let ClientState::FirstSent {
            nonce,
            client_first_bare,
        } = std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(ClientError::InvalidState(
                "server-first handled before client-first",
            ));
        };
        let text = server_text(msg)?;
        let first = parse_server_first(text).map_err(ClientError::Malformed)?;
        if first.nonce.len() <= nonce.len() || !first.nonce.starts_with(&nonce) {
            return Err(ClientError::NonceMismatch);
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&first.iterations) {
            return Err(ClientError::Iterations(first.iterations));
        }
        let salt = STANDARD
            .decode(first.salt)
            .map_err(|_| ClientError::Malformed("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(ClientError::Malformed("empty salt"));
        }

        let hash = self.hash;
        let salted = hash.salted_password(
            self.password.expose_secret().as_bytes(),
            &salt,
            first.iterations,
        );
        let client_key = hash.client_key(&salted);
        let stored_key = Zeroizing::new(hash.stored_key(&client_key));
        let server_key = Zeroizing::new(hash.server_key(&salted));
        let without_proof = format!("c=biws,r={}", first.nonce);
        let auth_message = format!("{client_first_bare},{text},{without_proof}");
        let client_signature = Zeroizing::new(hash.hmac(&stored_key, auth_message.as_bytes()));
        let proof = xor(&client_key, &client_signature)
            .ok_or(ClientError::InvalidState("key lengths differ"))?;
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        self.state = ClientState::FinalSent { server_signature };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof.as_slice())).into_bytes())
    }

    /// Takes the server-final message; `Ok` only when the server proved it knows the
    /// credential.
    pub fn handle_server_final(&mut self, msg: &[u8]) -> Result<(), ClientError> {
        let ClientState::FinalSent { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(ClientError::InvalidState(
                "server-final handled before client-final",
            ));
        };
        let text = server_text(msg)?;
        match parse_server_final(text).map_err(ClientError::Malformed)? {
            ServerFinal::Error(e) => Err(ClientError::ServerError(
                e.chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(200)
                    .collect(),
            )),
            ServerFinal::Verifier(v) => {
                let offered = STANDARD
                    .decode(v)
                    .map_err(|_| ClientError::Malformed("the verifier is not base64"))?;
                if ct_eq(&offered, &server_signature) {
                    Ok(())
                } else {
                    Err(ClientError::ServerSignatureMismatch)
                }
            }
        }
    }

    fn new_nonce(&self) -> String {
        #[cfg(test)]
        if let Some(nonce) = &self.fixed_nonce {
            return nonce.clone();
        }
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn server_text(msg: &[u8]) -> Result<&str, ClientError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(ClientError::Malformed("message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| ClientError::Malformed("not UTF-8"))
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match self.state {
            ClientState::Initial => "initial",
            ClientState::FirstSent { .. } => "client-first sent",
            ClientState::FinalSent { .. } => "client-final sent",
            ClientState::Done => "done",
        };
        f.debug_struct("ScramClient")
            .field("mechanism", &self.hash.mechanism())
            .field("username", &self.username)
            .field("phase", &phase)
            .finish_non_exhaustive()
    }
}
