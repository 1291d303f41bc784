//! Who is on the other end of a Kafka connection, and how the proxy proves who it is.
//!
//! The proxy terminates client authentication itself (no byte reaches the cluster from a
//! client it has not authenticated) and authenticates to the cluster with its own
//! credentials. This crate holds everything about identities that is not socket handling:
//!
//! - [`sasl`]: the server side of each SASL mechanism as a step machine
//!   ([`sasl::ServerSession`]): bytes in, challenge / success / failure out. The proxy's
//!   connection task only moves SaslAuthenticate payloads in and out of it.
//! - [`plain`], [`scram`]: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802/7677), server and
//!   client sides, checked against [`store`], a credential store that holds only salted,
//!   non-reversible material and is reloaded while the proxy runs ([`users`] edits it).
//! - [`oauthbearer`], [`jwt`], [`jwks`]: OAUTHBEARER (RFC 7628) with locally validated JWTs.
//! - [`mtls`]: principals and roles from verified client certificates.
//! - [`oauth_client`]: OAuth 2.0 client-credentials tokens for the proxy's own upstream
//!   OAUTHBEARER login.
//!
//! Everything here follows one rule about secrets: passwords, tokens and keys never appear in
//! `Debug` output, errors, or the failure details meant for logs and audit events.

pub mod claimed_user;
pub mod jwks;
pub mod jwt;
pub mod mtls;
pub mod oauth_client;
pub mod oauthbearer;
pub mod plain;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod store;
pub mod users;

pub use principal::{AuthSource, Principal};
pub use sasl::{AuthFailure, Authenticated, FailureKind, Mechanism, ServerSession, Step};
