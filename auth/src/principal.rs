//! The authenticated identity of a connection, as authorization and audit see it.

use crate::sasl::Mechanism;

/// How a connection's principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthSource {
    /// A SASL mechanism.
    Sasl(Mechanism),
    /// A verified client certificate alone.
    Tls,
    /// Nothing: a listener without authentication (development only).
    Anonymous,
}

impl AuthSource {
    /// The label used in logs, metrics and audit events (`PLAIN`, `SCRAM-SHA-256`, `TLS`,
    /// `ANONYMOUS`).
    pub fn label(&self) -> &'static str {
        match self {
            AuthSource::Sasl(m) => m.name(),
            AuthSource::Tls => "TLS",
            AuthSource::Anonymous => "ANONYMOUS",
        }
    }
}

/// An authenticated client identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name without the `User:` prefix (`alice`).
    pub name: String,
    /// Roles from the user store, the JWT roles claim or the certificate mapping.
    pub roles: Vec<String>,
    /// How the identity was established.
    pub source: AuthSource,
}

impl Principal {
    /// Kafka's display form, `User:alice`.
    pub fn kafka_name(&self) -> String {
        format!("User:{}", self.name)
    }

    /// The principal of a connection on a listener without authentication.
    pub fn anonymous() -> Principal {
        Principal {
            name: "ANONYMOUS".into(),
            roles: Vec::new(),
            source: AuthSource::Anonymous,
        }
    }
}
