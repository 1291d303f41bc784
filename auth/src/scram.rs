//! SCRAM-SHA-256/512 (RFC 5802, RFC 7677): server and client sides. (stub: being written)

use std::sync::Arc;

use crate::sasl::{Mechanism, Step};
use crate::store::UserStore;

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    #[allow(dead_code)]
    mechanism: Mechanism,
    #[allow(dead_code)]
    users: Arc<UserStore>,
}

impl ScramServer {
    /// Starts an exchange for SCRAM-SHA-256 or SCRAM-SHA-512 against `users`.
    pub fn new(mechanism: Mechanism, users: Arc<UserStore>) -> ScramServer {
        ScramServer { mechanism, users }
    }

    /// Feeds one client message.
    pub fn step(&mut self, _client_message: &[u8]) -> Step {
        todo!()
    }
}
