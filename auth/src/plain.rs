//! SASL PLAIN (RFC 4616): server and client sides.
//!
//! PLAIN carries the password itself, so the proxy only offers it on TLS listeners (the
//! proxy's configuration decides that). The server never stores or compares passwords: it
//! derives SCRAM's `StoredKey` from the offered password with the user's stored salt and
//! iteration count and compares that in constant time with the stored one, so PLAIN and
//! SCRAM share one credential store that holds nothing reversible. Unknown users cost the
//! same PBKDF2 work against a dummy credential (with the iteration count most users have), so
//! timing does not reveal which users exist.
//!
//! The PBKDF2 work (a few milliseconds at the default 8192 iterations) happens inside
//! [`PlainServer::step`].

use std::sync::Arc;

use crate::principal::{AuthSource, Principal};
use crate::sasl::{AuthFailure, Authenticated, FailureKind, Mechanism, Step};
use crate::scram::ct_eq;
use crate::store::{Password, ScramCredential, UserStore};

/// The largest PLAIN message accepted, in bytes.
pub const MAX_PLAIN_MESSAGE_LEN: usize = 4096;

/// The server side of one PLAIN exchange.
///
/// `Debug` shows whether the exchange is over, nothing else.
pub struct PlainServer {
    users: Arc<UserStore>,
    done: bool,
}

impl PlainServer {
    /// Starts an exchange against `users`.
    pub fn new(users: Arc<UserStore>) -> PlainServer {
        PlainServer { users, done: false }
    }

    /// Feeds the client's single message (`authzid NUL authcid NUL passwd`).
    pub fn step(&mut self, client_message: &[u8]) -> Step {
        if std::mem::replace(&mut self.done, true) {
            return Step::Failure(AuthFailure::new(
                FailureKind::IllegalState,
                None,
                "PLAIN message after the exchange ended",
            ));
        }
        match self.verify(client_message) {
            Ok(authenticated) => Step::Success(authenticated),
            Err(failure) => Step::Failure(failure),
        }
    }

    fn verify(&self, message: &[u8]) -> Result<Authenticated, AuthFailure> {
        let malformed = |detail: &str| AuthFailure::new(FailureKind::Malformed, None, detail);
        if message.len() > MAX_PLAIN_MESSAGE_LEN {
            return Err(malformed("PLAIN message too long"));
        }
        let mut parts = message.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "PLAIN message does not have three NUL-separated parts",
            ));
        };
        let authcid =
            std::str::from_utf8(authcid).map_err(|_| malformed("user name is not UTF-8"))?;
        let authzid =
            std::str::from_utf8(authzid).map_err(|_| malformed("authorization id is not UTF-8"))?;
        if authcid.is_empty() {
            return Err(malformed("empty user name"));
        }
        let attempted = Some(crate::scram::shorten(authcid));
        let fail = |kind, detail: &str| AuthFailure::new(kind, attempted.clone(), detail);
        if std::str::from_utf8(password).is_err() {
            return Err(fail(FailureKind::Malformed, "password is not UTF-8"));
        }
        if password.is_empty() {
            return Err(fail(FailureKind::Malformed, "empty password"));
        }
        if !authzid.is_empty() && authzid != authcid {
            return Err(fail(
                FailureKind::BadCredentials,
                "authorization id differs from the user name",
            ));
        }

        let record = self.users.lookup(authcid);
        let credential = record.and_then(|r| r.plain_credential());
        let dummy;
        let checked = match credential {
            Some(c) => c,
            None => {
                dummy =
                    ScramCredential::dummy(self.users.typical_iterations(Mechanism::ScramSha256));
                &dummy
            }
        };
        let matches = check_password(checked, password);
        match (record, credential) {
            (Some(record), Some(_)) if matches => Ok(Authenticated {
                principal: Principal {
                    name: authcid.to_owned(),
                    roles: record.roles().to_vec(),
                    source: AuthSource::Sasl(Mechanism::Plain),
                },
                final_message: Vec::new(),
                expires_at: None,
            }),
            (Some(_), Some(_)) => Err(fail(FailureKind::BadCredentials, "wrong password")),
            (Some(_), None) => Err(fail(FailureKind::UnknownUser, "user has no credential")),
            (None, _) => Err(fail(FailureKind::UnknownUser, "unknown user")),
        }
    }
}

/// Whether `password` derives the credential's `StoredKey` (constant-time comparison).
fn check_password(credential: &ScramCredential, password: &[u8]) -> bool {
    let hash = credential.hash();
    let salted = hash.salted_password(password, credential.salt(), credential.iterations());
    let client_key = hash.client_key(&salted);
    ct_eq(&hash.stored_key(&client_key), credential.stored_key())
}

impl std::fmt::Debug for PlainServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainServer")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The client side of PLAIN, for the proxy's own login to the cluster.
///
/// `Debug` shows the user name only.
pub struct PlainClient {
    username: String,
    password: Password,
}

impl PlainClient {
    /// A client logging in as `username` (no separate authorization id).
    ///
    /// PLAIN cannot carry a NUL inside the user name or password; such credentials produce a
    /// message the server rejects as malformed (see [`PlainClient::is_sendable`]).
    pub fn new(username: impl Into<String>, password: impl Into<Password>) -> PlainClient {
        PlainClient {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Whether the credentials fit PLAIN: a non-empty user name and password without NUL.
    pub fn is_sendable(&self) -> bool {
        let password = self.password.expose_secret();
        !self.username.is_empty()
            && !self.username.contains('\0')
            && !password.is_empty()
            && !password.contains('\0')
    }

    /// The single PLAIN message, `NUL username NUL password`. It contains the password:
    /// send it and drop it.
    pub fn message(&self) -> Vec<u8> {
        let password = self.password.expose_secret().as_bytes();
        let mut message = Vec::with_capacity(self.username.len() + password.len() + 2);
        message.push(0);
        message.extend_from_slice(self.username.as_bytes());
        message.push(0);
        message.extend_from_slice(password);
        message
    }
}

impl std::fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainClient")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}
