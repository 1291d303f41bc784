//! SASL OAUTHBEARER (RFC 7628) on the server side, as Kafka implements it (KIP-255, KIP-768).
//!
//! The client sends one message carrying a JWT; the proxy validates it locally with
//! [`JwtValidator`]. On success the exchange ends at once with an empty server message. On
//! failure RFC 7628 has the server answer with a JSON error challenge
//! (`{"status":"invalid_token"}`), the client acknowledge it with a single `\x01`, and only
//! then the server fail the exchange; Kafka clients expect exactly that, so the proxy does
//! the same. The failure reported for audit never trusts the unverified token: no
//! `attempted_user` is taken from it.

#[path = "oauthbearer_message.rs"]
pub mod message;

use std::sync::Arc;

use crate::jwt::JwtValidator;
use crate::principal::{AuthSource, Principal};
use crate::sasl::{AuthFailure, Authenticated, FailureKind, Mechanism, Step};

pub use message::MAX_MESSAGE_BYTES;

/// Where an exchange stands.
#[derive(Debug)]
enum State {
    /// Waiting for the client's initial response.
    Initial,
    /// The error challenge was sent; waiting for the `\x01` acknowledgement.
    ErrorSent(AuthFailure),
    /// The exchange is over (success or failure); any further message is illegal.
    Done,
}

/// The server side of one OAUTHBEARER exchange.
#[derive(Debug)]
pub struct OAuthBearerServer {
    validator: Arc<JwtValidator>,
    state: State,
}

impl OAuthBearerServer {
    /// Starts an exchange validating tokens with `validator`.
    pub fn new(validator: Arc<JwtValidator>) -> OAuthBearerServer {
        OAuthBearerServer {
            validator,
            state: State::Initial,
        }
    }

    /// Feeds one client message.
    pub async fn step(&mut self, client_message: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => self.first(client_message).await,
            State::ErrorSent(failure) => {
                if client_message == [0x01] {
                    Step::Failure(failure)
                } else {
                    Step::Failure(AuthFailure::new(
                        FailureKind::IllegalState,
                        None,
                        "expected the \\x01 acknowledgement of the error challenge",
                    ))
                }
            }
            State::Done => Step::Failure(AuthFailure::new(
                FailureKind::IllegalState,
                None,
                "message after the end of the OAUTHBEARER exchange",
            )),
        }
    }

    /// The failure the error challenge announced, while the `\x01` acknowledgement is
    /// awaited.
    pub fn pending_failure(&self) -> Option<&AuthFailure> {
        match &self.state {
            State::ErrorSent(failure) => Some(failure),
            State::Initial | State::Done => None,
        }
    }

    async fn first(&mut self, client_message: &[u8]) -> Step {
        let first = match message::parse(client_message) {
            Ok(m) => m,
            Err(why) => {
                return Step::Failure(AuthFailure::new(
                    FailureKind::Malformed,
                    None,
                    format!("OAUTHBEARER client message: {why}"),
                ))
            }
        };
        let token = match self.validator.validate(&first.token).await {
            Ok(t) => t,
            Err(e) => {
                self.state = State::ErrorSent(AuthFailure::new(e.kind(), None, e.to_string()));
                return Step::Challenge(self.error_challenge());
            }
        };
        if let Some(authzid) = &first.authzid {
            if *authzid != token.principal {
                return Step::Failure(AuthFailure::new(
                    FailureKind::InvalidToken,
                    Some(token.principal),
                    "the authorization id differs from the token's principal",
                ));
            }
        }
        Step::Success(Authenticated {
            principal: Principal {
                name: token.principal,
                roles: token.roles,
                source: AuthSource::Sasl(Mechanism::OAuthBearer),
            },
            final_message: Vec::new(),
            expires_at: Some(token.expires_at),
        })
    }

    /// The RFC 7628 §3.2.2 error message.
    fn error_challenge(&self) -> Vec<u8> {
        let config = self.validator.config();
        let mut body = serde_json::Map::new();
        body.insert("status".into(), "invalid_token".into());
        if let Some(scope) = &config.error_scope {
            body.insert("scope".into(), scope.clone().into());
        }
        if let Some(url) = &config.error_openid_configuration {
            body.insert("openid-configuration".into(), url.clone().into());
        }
        serde_json::Value::Object(body).to_string().into_bytes()
    }
}
