//! OAuth 2.0 client-credentials tokens for the proxy's own upstream OAUTHBEARER login.
//!
//! When the cluster wants OAUTHBEARER from the proxy, the proxy is an ordinary OAuth client:
//! it asks the IdP's token endpoint for an access token with its client id and secret
//! (RFC 6749 §4.4, via the `oauth2` crate), caches it, and fetches a new one before the old
//! one runs out, so that new upstream connections never wait on an expired token. The
//! secret and the tokens never appear in `Debug` output, errors or logs.

#[path = "oauth_client_config.rs"]
mod config;
#[path = "oauth_http.rs"]
pub(crate) mod http;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};

pub use config::{ClientAuthMethod, ClientCredentialsConfig};

/// The largest token endpoint response accepted.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;
/// The lifetime assumed when the IdP does not say (`expires_in` absent).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// A token is renewed when less than this is left (or after 80% of its lifetime).
pub const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// After a failed renewal, how long a still-valid cached token is used before trying again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// An access token. `Debug` shows only its expiry.
#[derive(Clone)]
pub struct BearerToken {
    value: String,
    expires_at: SystemTime,
}

impl BearerToken {
    /// Wraps a token value (for callers that obtain tokens elsewhere, and tests).
    pub fn new(value: impl Into<String>, expires_at: SystemTime) -> BearerToken {
        BearerToken {
            value: value.into(),
            expires_at,
        }
    }

    /// The token itself. Handle with care: it is a credential.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// When the IdP said the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The OAUTHBEARER client initial response carrying `token` (RFC 7628 §3.1), as Kafka
/// brokers expect it: `n,[a=authzid],\x01auth=Bearer <token>\x01\x01`.
pub fn client_first_message(token: &BearerToken, authzid: Option<&str>) -> Vec<u8> {
    crate::oauthbearer::message::write(token.secret(), authzid)
}

/// Why no token could be had. Never contains the secret or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthClientError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The client secret could not be read.
    #[error("client secret: {0}")]
    Secret(String),
    /// The token endpoint could not be reached or answered unreadably.
    #[error("token request to {url} failed: {reason}")]
    Request {
        /// The token endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The IdP refused (an OAuth error response).
    #[error("token endpoint {url} refused: {reason}")]
    Refused {
        /// The token endpoint.
        url: String,
        /// The OAuth error code and description.
        reason: String,
    },
}

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

struct Cached {
    token: BearerToken,
    renew_at: Instant,
    expires_at: Instant,
}

/// Fetches and caches client-credentials tokens. Share it behind an `Arc`.
pub struct TokenProvider {
    config: ClientCredentialsConfig,
    oauth: TokenClient,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.config.token_url)
            .field("client_id", &self.config.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// Checks the configuration and reads the client secret. Fetches nothing yet and needs
    /// no async runtime.
    pub fn new(config: ClientCredentialsConfig) -> Result<TokenProvider, OAuthClientError> {
        let problems = config.validate();
        if !problems.is_empty() {
            let list: Vec<String> = problems
                .iter()
                .map(|(key, problem)| format!("{key}: {problem}"))
                .collect();
            return Err(OAuthClientError::Config(list.join("; ")));
        }
        let secret = read_secret(&config)?;
        let url = crate::jwt::config::check_url(&config.token_url, config.allow_insecure_loopback)
            .map_err(|e| OAuthClientError::Config(format!("token_url: {e}")))?;
        let http = http::build_client(&url).map_err(|e| OAuthClientError::Config(e.to_string()))?;
        let token_url = TokenUrl::new(url.to_string())
            .map_err(|e| OAuthClientError::Config(format!("token_url: {e}")))?;
        let auth_type = match config.client_auth {
            ClientAuthMethod::Basic => AuthType::BasicAuth,
            ClientAuthMethod::Post => AuthType::RequestBody,
        };
        let oauth = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret))
            .set_auth_type(auth_type)
            .set_token_uri(token_url);
        Ok(TokenProvider {
            config,
            oauth,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid token: the cached one, or a fresh one when the cached one is due for renewal
    /// (after 80% of its lifetime, or with less than a minute left). If renewal fails while
    /// the cached token is still valid, the cached token is returned and the failure logged.
    pub async fn token(&self) -> Result<BearerToken, OAuthClientError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some(c) = cache.as_ref() {
            if now < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cache = Some(fresh);
                Ok(token)
            }
            Err(e) => match cache.as_mut() {
                Some(c) if now < c.expires_at => {
                    tracing::warn!(error = %e, "renewing the upstream OAuth token failed; using the cached one");
                    c.renew_at = now + RETRY_AFTER_FAILURE;
                    Ok(c.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Cached, OAuthClientError> {
        let mut request = self.oauth.exchange_client_credentials();
        if let Some(scope) = &self.config.scope {
            for s in scope.split_whitespace() {
                request = request.add_scope(Scope::new(s.to_string()));
            }
        }
        if let Some(aud) = &self.config.audience {
            request = request.add_extra_param("audience", aud.clone());
        }
        let client = self.http.clone();
        let send = move |req: oauth2::HttpRequest| {
            let client = client.clone();
            async move { http::execute(&client, req, MAX_TOKEN_RESPONSE_BYTES).await }
        };
        let started = Instant::now();
        let response = request
            .request_async(&send)
            .await
            .map_err(|e| self.describe(e))?;
        let url = || self.config.token_url.clone();
        if *response.token_type() != BasicTokenType::Bearer {
            return Err(OAuthClientError::Request {
                url: url(),
                reason: "the token type is not Bearer".into(),
            });
        }
        let value = response.access_token().secret().clone();
        let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
        if value.is_empty() || !value.bytes().all(b64token) {
            return Err(OAuthClientError::Request {
                url: url(),
                reason: "the access token is not a bearer token (empty or bad characters)".into(),
            });
        }
        let lifetime = response
            .expires_in()
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let renew_after = renew_after(lifetime);
        Ok(Cached {
            token: BearerToken::new(value, SystemTime::now() + lifetime),
            renew_at: started + renew_after,
            expires_at: started + lifetime,
        })
    }

    fn describe(
        &self,
        e: RequestTokenError<http::HttpError, oauth2::basic::BasicErrorResponse>,
    ) -> OAuthClientError {
        let url = self.config.token_url.clone();
        match e {
            RequestTokenError::ServerResponse(r) => {
                let mut reason = r.error().to_string();
                if let Some(d) = r.error_description() {
                    reason.push_str(": ");
                    reason.extend(d.chars().filter(|c| !c.is_control()).take(200));
                }
                OAuthClientError::Refused { url, reason }
            }
            RequestTokenError::Request(e) => OAuthClientError::Request {
                url,
                reason: e.to_string(),
            },
            // The body may hold a token: report only where parsing failed.
            RequestTokenError::Parse(e, _body) => OAuthClientError::Request {
                url,
                reason: format!("unreadable token response (at {})", e.path()),
            },
            RequestTokenError::Other(reason) => OAuthClientError::Request { url, reason },
        }
    }
}

/// When to renew a token of this lifetime: at 80% of it or a minute before the end,
/// whichever is first, but never before half of it (very short-lived tokens).
fn renew_after(lifetime: Duration) -> Duration {
    let at_80 = lifetime.mul_f64(0.8);
    let before_end = lifetime.saturating_sub(RENEW_MARGIN);
    at_80.min(before_end).max(lifetime / 2)
}

fn read_secret(config: &ClientCredentialsConfig) -> Result<String, OAuthClientError> {
    let secret = match (&config.client_secret_file, &config.client_secret_env) {
        (Some(path), _) => first_line(path)?,
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            OAuthClientError::Secret(format!("environment variable {var} is not set"))
        })?,
        (None, None) => return Err(OAuthClientError::Secret("no source configured".into())),
    };
    if secret.is_empty() {
        return Err(OAuthClientError::Secret("the secret is empty".into()));
    }
    Ok(secret)
}

fn first_line(path: &Path) -> Result<String, OAuthClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OAuthClientError::Secret(format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_schedule() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(
            renew_after(Duration::from_secs(200)),
            Duration::from_secs(140)
        );
        assert_eq!(
            renew_after(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = BearerToken::new("very-secret-token", SystemTime::now());
        assert!(!format!("{t:?}").contains("very-secret"));
        assert_eq!(
            client_first_message(&t, None),
            b"n,,\x01auth=Bearer very-secret-token\x01\x01".to_vec()
        );
    }
}
