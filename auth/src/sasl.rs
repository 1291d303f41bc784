//! The server side of SASL as a step machine the connection task drives.
//!
//! Kafka carries SASL tokens in SaslAuthenticate requests (or, after a v0 SaslHandshake, as
//! raw frames). The proxy reads a token, feeds it to [`ServerSession::step`], and writes back
//! whatever the step says: a challenge, the final server message of a success, or an
//! error. Keeping the mechanisms free of sockets lets them be unit-tested and fuzzed alone.

use std::sync::Arc;
use std::time::SystemTime;

use crate::jwt::JwtValidator;
use crate::oauthbearer::OAuthBearerServer;
use crate::plain::PlainServer;
use crate::principal::Principal;
use crate::scram::ScramServer;
use crate::store::UserStore;

/// A SASL mechanism the proxy can serve (and use upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// RFC 5802 / RFC 7677 with SHA-256.
    ScramSha256,
    /// RFC 5802 with SHA-512.
    ScramSha512,
    /// RFC 7628 with JWT bearer tokens.
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order they are listed to clients.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    /// The IANA / Kafka name (`SCRAM-SHA-256`).
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Parses a mechanism name exactly as Kafka spells it (case-sensitive, like Kafka).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the proxy answers after one client token.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge; the client answers with another token.
    Challenge(Vec<u8>),
    /// Authentication succeeded.
    Success(Authenticated),
    /// Authentication failed; the connection answers SASL_AUTHENTICATION_FAILED.
    Failure(AuthFailure),
}

/// A successful authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// Who the client is.
    pub principal: Principal,
    /// The last server message (SCRAM's server-final message; empty for PLAIN/OAUTHBEARER).
    pub final_message: Vec<u8>,
    /// When the credential stops being valid (a token's `exp`), if it has a limit. The
    /// session lifetime is the earlier of this and the configured maximum.
    pub expires_at: Option<SystemTime>,
}

/// Why authentication failed, in categories safe to log and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The client's message does not follow the mechanism's grammar.
    Malformed,
    /// The user does not exist in the store.
    UnknownUser,
    /// Wrong password or proof.
    BadCredentials,
    /// The client asked for an extension that is not supported (e.g. SCRAM `tokenauth`).
    UnsupportedExtension,
    /// The token is not valid (signature, algorithm, issuer, audience, claims, unknown key).
    InvalidToken,
    /// The token has expired or is not valid yet.
    ExpiredToken,
    /// A message arrived when the mechanism expected none.
    IllegalState,
    /// The client asked for a mechanism the listener does not offer.
    UnsupportedMechanism,
    /// The source address has too many recent failures; credentials were not checked.
    RateLimited,
    /// The connection ended in the middle of the exchange (after a client message, before
    /// an outcome): the login did not succeed.
    Abandoned,
}

impl FailureKind {
    /// A short label for metrics and audit (`bad_credentials`).
    pub fn label(&self) -> &'static str {
        match self {
            FailureKind::Malformed => "malformed",
            FailureKind::UnknownUser => "unknown_user",
            FailureKind::BadCredentials => "bad_credentials",
            FailureKind::UnsupportedExtension => "unsupported_extension",
            FailureKind::InvalidToken => "invalid_token",
            FailureKind::ExpiredToken => "expired_token",
            FailureKind::IllegalState => "illegal_state",
            FailureKind::UnsupportedMechanism => "unsupported_mechanism",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Abandoned => "abandoned",
        }
    }
}

/// A failed authentication.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The user name the client claimed, if it got that far (for audit; never a secret).
    pub attempted_user: Option<String>,
    /// Detail for logs and audit events. Never contains passwords, proofs or tokens.
    pub detail: String,
}

impl AuthFailure {
    /// Builds a failure.
    pub fn new(
        kind: FailureKind,
        attempted_user: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        AuthFailure {
            kind,
            attempted_user,
            detail: detail.into(),
        }
    }

    /// The message sent to the client: useful, but never says whether a user exists.
    pub fn client_message(&self) -> &'static str {
        match self.kind {
            FailureKind::Malformed => "Authentication failed: malformed SASL message",
            FailureKind::UnknownUser | FailureKind::BadCredentials => {
                "Authentication failed: invalid credentials"
            }
            FailureKind::UnsupportedExtension => {
                "Authentication failed: unsupported SASL extension"
            }
            FailureKind::InvalidToken => "Authentication failed: invalid token",
            FailureKind::ExpiredToken => "Authentication failed: token expired or not yet valid",
            FailureKind::IllegalState => "Authentication failed: unexpected SASL message",
            FailureKind::UnsupportedMechanism => {
                "Authentication failed: SASL mechanism not enabled"
            }
            FailureKind::RateLimited => {
                "Authentication failed: too many failed attempts, try again later"
            }
            FailureKind::Abandoned => "Authentication failed: exchange abandoned",
        }
    }
}

/// Runs CPU-heavy `f` without stalling other tasks on a multi-threaded tokio runtime (on a
/// current-thread runtime, or outside one, it simply runs).
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// What the server mechanisms check credentials against.
#[derive(Debug, Clone)]
pub struct SaslContext {
    /// The user store as of the start of this authentication.
    pub users: Arc<UserStore>,
    /// The JWT validator, when OAUTHBEARER is enabled.
    pub jwt: Option<Arc<JwtValidator>>,
}

/// One authentication exchange in progress.
#[derive(Debug)]
pub enum ServerSession {
    /// PLAIN.
    Plain(PlainServer),
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramServer),
    /// OAUTHBEARER.
    OAuthBearer(OAuthBearerServer),
}

impl ServerSession {
    /// Starts an exchange for `mechanism`. `None` when the mechanism needs something the
    /// context lacks (OAUTHBEARER without a validator).
    pub fn new(mechanism: Mechanism, ctx: &SaslContext) -> Option<ServerSession> {
        Some(match mechanism {
            Mechanism::Plain => ServerSession::Plain(PlainServer::new(ctx.users.clone())),
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                ServerSession::Scram(ScramServer::new(mechanism, ctx.users.clone()))
            }
            Mechanism::OAuthBearer => {
                ServerSession::OAuthBearer(OAuthBearerServer::new(ctx.jwt.clone()?))
            }
        })
    }

    /// Feeds one client token.
    pub async fn step(&mut self, client_message: &[u8]) -> Step {
        match self {
            // PLAIN runs PBKDF2 (milliseconds): keep it off the async workers' critical path.
            ServerSession::Plain(s) => run_blocking(|| s.step(client_message)),
            ServerSession::Scram(s) => s.step(client_message),
            ServerSession::OAuthBearer(s) => s.step(client_message).await,
        }
    }

    /// The failure an exchange has already reached while it still waits for a client
    /// message: after OAUTHBEARER's error challenge (RFC 7628 §3.2.2) the login has failed,
    /// and the client's `\x01` only ends the exchange. A client may hang up instead, so
    /// the failure must be recorded when the challenge is sent, not when it is acknowledged.
    pub fn pending_failure(&self) -> Option<&AuthFailure> {
        match self {
            ServerSession::OAuthBearer(s) => s.pending_failure(),
            ServerSession::Plain(_) | ServerSession::Scram(_) => None,
        }
    }
}
