//! SASL PLAIN (RFC 4616): server and client sides. (stub: being written)

use std::sync::Arc;

use crate::sasl::Step;
use crate::store::UserStore;

/// The server side of one PLAIN exchange.
#[derive(Debug)]
pub struct PlainServer {
    #[allow(dead_code)]
    users: Arc<UserStore>,
}

impl PlainServer {
    /// Starts an exchange against `users`.
    pub fn new(users: Arc<UserStore>) -> PlainServer {
        PlainServer { users }
    }

    /// Feeds the client's single message.
    pub fn step(&mut self, _client_message: &[u8]) -> Step {
        todo!()
    }
}
