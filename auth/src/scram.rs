//! SCRAM-SHA-256/512 (RFC 5802, RFC 7677): server and client sides.
//!
//! The server ([`ScramServer`]) authenticates Kafka clients against the credential store
//! ([`crate::store`]), following Kafka's dialect: no channel binding (`n` or `y`), an
//! optional authorization id that must equal the user name, client-first extensions that
//! are ignored except `tokenauth`, which is refused because delegation tokens are not
//! supported. Unknown users get a normal-looking exchange with a deterministic fake salt and
//! fail only at the proof, exactly like a wrong password.
//!
//! The client ([`ScramClient`]) is what the proxy uses to log in to the cluster; it refuses
//! servers that ask for too few iterations and servers that cannot prove they know the
//! credential.
//!
//! Passwords are used as their UTF-8 bytes without SASLprep, as Kafka does.

mod client;
mod hash;
mod message;
mod server;

pub use client::{ClientError, ScramClient};
pub(crate) use hash::{ct_eq, ScramHash};
pub(crate) use message::parse_client_first;
pub(crate) use server::shorten;
pub use server::ScramServer;

/// The largest SCRAM message accepted from either side, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

#[cfg(test)]
mod rfc7677_tests;
