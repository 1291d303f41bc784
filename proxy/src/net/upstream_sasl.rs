//! The proxy's own SASL login to the cluster, on every upstream connection it opens.
//!
//! Clients authenticate to the proxy; the proxy authenticates to the brokers as itself, so
//! broker-side credentials never reach clients and client credentials never reach brokers.
//! Secrets are read once at start-up from a file or an environment variable and live only in
//! redacted wrappers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use portcullis_auth::oauth_client::{client_first_message, TokenProvider};
use portcullis_auth::plain::PlainClient;
use portcullis_auth::scram::ScramClient;
use portcullis_auth::Mechanism;

use crate::config::auth::UpstreamSaslConfig;
use crate::net::upstream::{BoxedStream, KafkaClient, UpstreamError};

/// SaslAuthenticate version used upstream (v1 adds the session lifetime; widely supported).
const SASL_AUTHENTICATE_VERSION: i16 = 1;

/// What the proxy logs in with.
pub enum UpstreamCredentials {
    /// PLAIN or SCRAM with a user name and password.
    Password {
        /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
        mechanism: Mechanism,
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// OAUTHBEARER with client-credentials tokens.
    OAuthBearer(Arc<TokenProvider>),
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamCredentials::Password {
                mechanism,
                username,
                ..
            } => f
                .debug_struct("Password")
                .field("mechanism", mechanism)
                .field("username", username)
                .finish_non_exhaustive(),
            UpstreamCredentials::OAuthBearer(_) => f.write_str("OAuthBearer"),
        }
    }
}

/// A secret string whose `Debug` and `Display` say nothing about it.
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl UpstreamCredentials {
    /// Reads the configured secret (file or environment variable).
    pub fn from_config(config: &UpstreamSaslConfig) -> anyhow::Result<UpstreamCredentials> {
        let mechanism = config.mechanism().ok_or_else(|| {
            anyhow::anyhow!(
                "upstream.sasl.mechanism: {:?} is not supported",
                config.mechanism
            )
        })?;
        if mechanism == Mechanism::OAuthBearer {
            let oauth = config.oauth.as_ref().ok_or_else(|| {
                anyhow::anyhow!("upstream.sasl.oauth is required for OAUTHBEARER")
            })?;
            let provider = TokenProvider::new(oauth.clone())
                .map_err(|e| anyhow::anyhow!("upstream.sasl.oauth: {e}"))?;
            return Ok(UpstreamCredentials::OAuthBearer(Arc::new(provider)));
        }
        let username = config
            .username
            .clone()
            .ok_or_else(|| anyhow::anyhow!("upstream.sasl.username is required"))?;
        let password = match (&config.password_file, &config.password_env) {
            (Some(path), None) => read_secret_file(path)?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| anyhow::anyhow!("upstream.sasl.password_env: {var} is not set"))?,
            _ => anyhow::bail!("upstream.sasl: set exactly one of password_file, password_env"),
        };
        if password.is_empty() {
            anyhow::bail!("upstream.sasl: the password is empty");
        }
        Ok(UpstreamCredentials::Password {
            mechanism,
            username,
            password: Secret(password),
        })
    }

    /// The mechanism name.
    pub fn mechanism(&self) -> Mechanism {
        match self {
            UpstreamCredentials::Password { mechanism, .. } => *mechanism,
            UpstreamCredentials::OAuthBearer(_) => Mechanism::OAuthBearer,
        }
    }
}

fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("upstream.sasl.password_file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Logs in on a freshly connected upstream stream and hands the stream back.
pub async fn login(
    stream: BoxedStream,
    credentials: &UpstreamCredentials,
    timeout: Duration,
    addr: &str,
) -> Result<BoxedStream, UpstreamError> {
    let fail = |reason: String| UpstreamError::Authentication {
        addr: addr.to_string(),
        reason,
    };
    let mut client = KafkaClient::new(stream, 1024 * 1024, timeout);
    let mechanism = credentials.mechanism();
    let handshake: SaslHandshakeResponse = client
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(mechanism.name())),
        )
        .await?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(fail(format!(
            "broker refused {mechanism} (error {}); it offers {offered:?}",
            handshake.error_code
        )));
    }
    match credentials {
        UpstreamCredentials::Password {
            mechanism: Mechanism::Plain,
            username,
            password,
        } => {
            let message = PlainClient::new(username, password.expose()).message();
            exchange(&mut client, message, &fail).await?;
        }
        UpstreamCredentials::Password {
            mechanism,
            username,
            password,
        } => {
            let mut scram = ScramClient::new(*mechanism, username, password.expose())
                .map_err(|e| fail(e.to_string()))?;
            let server_first = exchange(&mut client, scram.client_first(), &fail).await?;
            let client_final = scram
                .handle_server_first(&server_first)
                .map_err(|e| fail(e.to_string()))?;
            let server_final = exchange(&mut client, client_final, &fail).await?;
            scram
                .handle_server_final(&server_final)
                .map_err(|e| fail(e.to_string()))?;
        }
        UpstreamCredentials::OAuthBearer(provider) => {
            let token = provider.token().await.map_err(|e| fail(e.to_string()))?;
            let challenge =
                exchange(&mut client, client_first_message(&token, None), &fail).await?;
            if !challenge.is_empty() {
                // RFC 7628: an error status; acknowledge it so the broker ends the exchange.
                let _ = exchange(&mut client, vec![0x01], &fail).await;
                return Err(fail("broker rejected the OAUTHBEARER token".into()));
            }
        }
    }
    client.into_inner().map_err(|e| fail(e.to_string()))
}

/// Sends one SASL token and returns the broker's answer token.
async fn exchange(
    client: &mut KafkaClient,
    token: Vec<u8>,
    fail: &impl Fn(String) -> UpstreamError,
) -> Result<Vec<u8>, UpstreamError> {
    let response: SaslAuthenticateResponse = client
        .call(
            ApiKey::SaslAuthenticate,
            SASL_AUTHENTICATE_VERSION,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )
        .await?;
    if response.error_code != 0 {
        return Err(fail(format!(
            "authentication failed (error {}): {}",
            response.error_code,
            response
                .error_message
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or("no message")
        )));
    }
    Ok(response.auth_bytes.to_vec())
}
