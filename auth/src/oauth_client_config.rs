//! The `[upstream.sasl.oauth]` table: where the proxy gets its own OAuth 2.0 access tokens.
//!
//! Apart from the token provider so that the proxy's `check` command can load and validate
//! it without reading secrets or touching the network.

use std::path::PathBuf;

use serde::Deserialize;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic authentication (the default).
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// OAuth 2.0 client-credentials settings. `Debug` never shows the secret (only where it
/// comes from).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// The IdP's token endpoint (`https`).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// A file whose first line is the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes to request, space-separated (optional).
    #[serde(default)]
    pub scope: Option<String>,
    /// An `audience` form parameter for IdPs that need one (Auth0, Keycloak, ...).
    #[serde(default)]
    pub audience: Option<String>,
    /// How the client secret is sent: `basic` (default) or `post`.
    #[serde(default)]
    pub client_auth: ClientAuthMethod,
    /// Allow `http://` for `token_url` when the host is a loopback address (tests and
    /// sidecars only).
    #[serde(default)]
    pub allow_insecure_loopback: bool,
}

impl ClientCredentialsConfig {
    /// A configuration with defaults for the given endpoint and client id; the secret
    /// source still has to be set.
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientCredentialsConfig {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret_file: None,
            client_secret_env: None,
            scope: None,
            audience: None,
            client_auth: ClientAuthMethod::default(),
            allow_insecure_loopback: false,
        }
    }

    /// Every problem in the configuration, as `(key, problem)` pairs. Does not read the
    /// secret.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, what: String| problems.push((key.to_string(), what));
        if let Err(e) = crate::jwt::config::check_url(&self.token_url, self.allow_insecure_loopback)
        {
            problem("token_url", e);
        }
        if self.client_id.trim().is_empty() {
            problem("client_id", "must not be empty".into());
        }
        match (&self.client_secret_file, &self.client_secret_env) {
            (None, None) => problem(
                "client_secret_file",
                "one of client_secret_file and client_secret_env is required".into(),
            ),
            (Some(_), Some(_)) => problem(
                "client_secret_env",
                "client_secret_file and client_secret_env are exclusive; set only one".into(),
            ),
            (Some(path), None) if path.as_os_str().is_empty() => {
                problem("client_secret_file", "must not be empty".into())
            }
            (None, Some(var)) if var.is_empty() || var.contains('=') || var.contains('\0') => {
                problem("client_secret_env", "not a valid variable name".into())
            }
            _ => {}
        }
        if let Some(scope) = &self.scope {
            if scope.split_whitespace().next().is_none() || !printable(scope) {
                problem("scope", "must be printable ASCII scope names".into());
            }
        }
        if let Some(aud) = &self.audience {
            if aud.trim().is_empty() || !printable(aud) {
                problem("audience", "must be non-empty printable ASCII".into());
            }
        }
        problems
    }
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_from_toml() {
        let c: ClientCredentialsConfig = toml::from_str(
            "token_url = \"https://idp/token\"\nclient_id = \"proxy\"\nclient_secret_env = \"S\"\nscope = \"kafka\"\nclient_auth = \"post\"\n",
        )
        .unwrap();
        assert_eq!(c.client_auth, ClientAuthMethod::Post);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(toml::from_str::<ClientCredentialsConfig>(
            "token_url = \"https://idp/token\"\nclient_id = \"p\"\nclient_secret = \"x\"\n"
        )
        .is_err());
    }

    #[test]
    fn problems_are_keyed() {
        let mut c = ClientCredentialsConfig::new("http://idp/token", "");
        c.scope = Some(" ".into());
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        for k in ["token_url", "client_id", "client_secret_file", "scope"] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
        let mut c = ClientCredentialsConfig::new("http://127.0.0.1:1/token", "p");
        c.allow_insecure_loopback = true;
        c.client_secret_env = Some("S".into());
        assert!(c.validate().is_empty());
    }
}
