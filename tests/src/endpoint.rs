//! What a client connects to, and which broker addresses it may legitimately be shown.
//!
//! Scenarios take an [`Endpoint`] so one scenario body serves the direct path (client ->
//! broker) and the proxied path (client -> proxy -> broker). Through the proxy, every
//! address a client learns (Metadata, FindCoordinator, ...) must be a proxy address:
//! [`AddressRules`] encodes that, and the scenarios check it against what the clients
//! report, so a response the proxy forgot to rewrite fails the test even though the client
//! could have reached the broker on loopback anyway.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

/// Produces the current OAUTHBEARER token (a JWT) whenever a client asks for one.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// How a client authenticates to what it connects to.
#[derive(Clone)]
pub enum ClientAuth {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    Password {
        /// Kafka mechanism name.
        mechanism: String,
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// OAUTHBEARER with tokens from the source.
    OAuthBearer(TokenSource),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Password {
                mechanism,
                username,
                ..
            } => write!(f, "{mechanism} as {username}"),
            ClientAuth::OAuthBearer(_) => f.write_str("OAUTHBEARER"),
        }
    }
}

/// A bootstrap address plus the TLS trust and address rules that go with it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` for `bootstrap.servers`.
    pub bootstrap: String,
    /// CA bundle for `security.protocol=ssl`; `None` means plaintext.
    pub ca: Option<PathBuf>,
    /// Rules for broker addresses clients may see; `None` accepts any (direct path).
    pub rules: Option<AddressRules>,
    /// The broker behind a proxy (`host:port`), for differential checks that compare an
    /// answer through the proxy with the broker's own; `None` on the direct path.
    pub upstream: Option<String>,
    /// SASL credentials; `None` means no SASL.
    pub auth: Option<ClientAuth>,
    /// Client certificate and key (PEM) for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The addresses a proxy may advertise: its advertised host with its bootstrap port or a
/// port from its broker range, and never the real broker's port.
#[derive(Debug, Clone)]
pub struct AddressRules {
    /// The proxy's advertised host.
    pub host: String,
    /// The proxy's bootstrap port.
    pub bootstrap_port: u16,
    /// The proxy's per-broker port range.
    pub broker_ports: RangeInclusive<u16>,
    /// Ports that must never appear (the real brokers').
    pub forbidden_ports: Vec<u16>,
}

impl AddressRules {
    /// `Ok` if `host:port` is an address the proxy may hand out, else why not.
    pub fn check(&self, host: &str, port: u16) -> Result<(), String> {
        if self.forbidden_ports.contains(&port) {
            return Err(format!(
                "{host}:{port} is a real broker address (the proxy leaked it)"
            ));
        }
        if host != self.host {
            return Err(format!(
                "{host}:{port} does not use the proxy's advertised host {}",
                self.host
            ));
        }
        if port != self.bootstrap_port && !self.broker_ports.contains(&port) {
            return Err(format!(
                "{host}:{port} is neither the proxy bootstrap port {} nor in its broker range {:?}",
                self.bootstrap_port, self.broker_ports
            ));
        }
        Ok(())
    }

    /// Like [`check`](Self::check) for a `host:port` string.
    pub fn check_addr(&self, addr: &str) -> Result<(), String> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{addr:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{addr:?} has no numeric port"))?;
        self.check(host.trim_start_matches('[').trim_end_matches(']'), port)
    }
}

impl Endpoint {
    /// A plaintext endpoint with no address rules (the direct path).
    pub fn plaintext(bootstrap: String) -> Self {
        Self {
            bootstrap,
            ca: None,
            rules: None,
            upstream: None,
            auth: None,
            client_cert: None,
        }
    }

    /// This endpoint with SASL `mechanism` as `username`/`password`.
    pub fn with_password(&self, mechanism: &str, username: &str, password: &str) -> Endpoint {
        Endpoint {
            auth: Some(ClientAuth::Password {
                mechanism: mechanism.into(),
                username: username.into(),
                password: password.into(),
            }),
            ..self.clone()
        }
    }

    /// This endpoint with OAUTHBEARER tokens from `tokens`.
    pub fn with_oauth(&self, tokens: TokenSource) -> Endpoint {
        Endpoint {
            auth: Some(ClientAuth::OAuthBearer(tokens)),
            ..self.clone()
        }
    }

    /// This endpoint presenting a client certificate.
    pub fn with_client_cert(&self, cert: PathBuf, key: PathBuf) -> Endpoint {
        Endpoint {
            client_cert: Some((cert, key)),
            ..self.clone()
        }
    }

    /// The endpoint that reaches the broker directly: the upstream for a proxy endpoint,
    /// itself on the direct path.
    pub fn direct(&self) -> Endpoint {
        match &self.upstream {
            Some(u) => Endpoint::plaintext(u.clone()),
            None => self.clone(),
        }
    }

    /// Panics unless `host:port` satisfies the rules (no-op without rules).
    pub fn assert_address(&self, host: &str, port: u16, context: &str) {
        if let Some(rules) = &self.rules {
            if let Err(e) = rules.check(host, port) {
                panic!("{context}: {e}");
            }
        }
    }

    /// Whether clients should use TLS.
    pub fn is_tls(&self) -> bool {
        self.ca.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_accept_only_proxy_addresses() {
        let rules = AddressRules {
            host: "127.0.0.1".into(),
            bootstrap_port: 100,
            broker_ports: 200..=207,
            forbidden_ports: vec![9092],
        };
        assert!(rules.check("127.0.0.1", 100).is_ok());
        assert!(rules.check("127.0.0.1", 203).is_ok());
        assert!(rules.check("127.0.0.1", 208).is_err());
        assert!(rules.check("localhost", 200).is_err());
        assert!(rules.check("127.0.0.1", 9092).is_err());
        assert!(rules.check_addr("127.0.0.1:207").is_ok());
        assert!(rules.check_addr("127.0.0.1").is_err());
    }
}
