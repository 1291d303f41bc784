//! SASL OAUTHBEARER (RFC 7628). (stub: being written)

use std::sync::Arc;

use crate::jwt::JwtValidator;
use crate::sasl::Step;

/// The server side of one OAUTHBEARER exchange.
#[derive(Debug)]
pub struct OAuthBearerServer {
    #[allow(dead_code)]
    validator: Arc<JwtValidator>,
}

impl OAuthBearerServer {
    /// Starts an exchange validating tokens with `validator`.
    pub fn new(validator: Arc<JwtValidator>) -> OAuthBearerServer {
        OAuthBearerServer { validator }
    }

    /// Feeds one client message.
    pub async fn step(&mut self, _client_message: &[u8]) -> Step {
        todo!()
    }
}
