//! Local validation of JWT bearer tokens (the tokens OAUTHBEARER clients present).
//!
//! The proxy does not ask the IdP about each token; it checks the signature against the
//! IdP's published keys ([`crate::jwks`]) and the claims against the configuration. The
//! order of checks is chosen so that nothing the token says is trusted before its signature
//! verified, except what is needed to find the key: the header's `alg` must be a configured
//! algorithm (never HMAC, never `none`) and must fit the type of the key its `kid` selects.
//! That pairing is what stops the classic confusions: an `HS256` token "signed" with the
//! RSA public key, or an `alg: none` token.

#[path = "jwt_config.rs"]
pub mod config;
#[path = "jwt_error.rs"]
mod error;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use config::{OAuthBearerConfig, OneOrMany, MAX_CLOCK_SKEW_SECS, SUPPORTED_ALGORITHMS};
pub use error::TokenError;
pub(crate) use error::{echo, from_jsonwebtoken};

use crate::jwks::JwksCache;

/// The longest token accepted, in bytes (SASL messages are bounded to 64 KiB anyway).
pub const MAX_TOKEN_BYTES: usize = 60 * 1024;
/// The longest principal name accepted, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 1024;
/// The most roles taken from one token.
pub const MAX_ROLES: usize = 256;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedToken {
    /// The principal claim (default `sub`).
    pub principal: String,
    /// The roles claim, if configured and present.
    pub roles: Vec<String>,
    /// The token's `exp`.
    pub expires_at: SystemTime,
}

/// Validates bearer tokens against a configuration and a cached key set. Cheap to share
/// behind an `Arc`; `Debug` shows the configuration and the key source, never key material.
#[derive(Debug)]
pub struct JwtValidator {
    config: OAuthBearerConfig,
    algorithms: Vec<Algorithm>,
    keys: JwksCache,
}

impl JwtValidator {
    /// Checks the configuration and sets up the key cache. A `jwks_file` is read now; a
    /// `jwks_url` is fetched on first use. Needs no async runtime.
    pub fn new(config: OAuthBearerConfig) -> Result<JwtValidator, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            let list: Vec<String> = problems
                .iter()
                .map(|(key, problem)| format!("{key}: {problem}"))
                .collect();
            return Err(list.join("; "));
        }
        let algorithms = config.parsed_algorithms()?;
        let keys = JwksCache::new(&config).map_err(|e| e.to_string())?;
        Ok(JwtValidator {
            config,
            algorithms,
            keys,
        })
    }

    /// The configuration this validator enforces.
    pub fn config(&self) -> &OAuthBearerConfig {
        &self.config
    }

    /// The key cache (for forced refreshes and diagnostics).
    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// Validates a compact JWS token: algorithm, key, signature, `iss`, `aud`, `exp`,
    /// `nbf`, then extracts the principal and roles.
    pub async fn validate(&self, token: &str) -> Result<ValidatedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("token too long".into()));
        }
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        }
        let alg = header_algorithm(token)?;
        if !self.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| from_jsonwebtoken(&e))?;
        let key = self.keys.key_for(header.kid.as_deref(), alg).await?;
        if !key.accepts(alg) {
            // `key_for` already guarantees this; checked again because it is the one
            // property the whole design rests on.
            return Err(TokenError::KeyAlgorithmMismatch {
                kid: echo(header.kid.as_deref().unwrap_or("")),
                alg: format!("{alg:?}"),
            });
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &self.rules(alg))
            .map_err(|e| from_jsonwebtoken(&e))?;
        self.extract(&data.claims)
    }

    fn rules(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.clock_skew_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[self.config.issuer.as_str()]);
        v.set_audience(&self.config.audience.to_vec());
        v
    }

    fn extract(&self, claims: &Map<String, Value>) -> Result<ValidatedToken, TokenError> {
        let bad = |name: &str| TokenError::BadClaim(echo(name));
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or_else(|| bad("exp"))?;
        let claim = &self.config.principal_claim;
        let principal = match lookup(claims, claim) {
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= MAX_PRINCIPAL_BYTES
                    && !s.chars().any(char::is_control) =>
            {
                s.clone()
            }
            _ => return Err(bad(claim)),
        };
        let roles = match &self.config.roles_claim {
            None => Vec::new(),
            Some(name) => roles(lookup(claims, name)).ok_or_else(|| bad(name))?,
        };
        Ok(ValidatedToken {
            principal,
            roles,
            expires_at: exp,
        })
    }
}

/// Reads `alg` from the header before anything else, so that `none` and unknown names are
/// reported as refused algorithms rather than as parse errors.
fn header_algorithm(token: &str) -> Result<Algorithm, TokenError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header is not base64url".into()))?;
    let json: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("header is not a JSON object".into()))?;
    let name = match json.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(TokenError::Malformed("header has no alg".into())),
    };
    config::parse_algorithm(name).map_err(|_| TokenError::AlgorithmNotAllowed(echo(name)))
}

/// A claim by exact name, or by a dotted path into nested objects
/// (`realm_access.roles`) when no top-level claim has that name.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Roles from a JSON array of strings or a space-separated string. An absent claim means
/// no roles; any other shape is an error (`None`).
fn roles(value: Option<&Value>) -> Option<Vec<String>> {
    let roles: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    if roles.len() > MAX_ROLES || roles.iter().any(|r| r.chars().any(char::is_control)) {
        return None;
    }
    Some(roles)
}

fn numeric_date(v: &Value) -> Option<SystemTime> {
    let secs = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        })?,
        _ => return None,
    };
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_from_arrays_and_strings() {
        assert_eq!(
            roles(Some(&json!(["a", "b"]))).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            roles(Some(&json!("read  write"))).unwrap(),
            vec!["read".to_string(), "write".to_string()]
        );
        assert_eq!(roles(None).unwrap(), Vec::<String>::new());
        assert!(roles(Some(&json!([1]))).is_none());
        assert!(roles(Some(&json!({"a": 1}))).is_none());
    }

    #[test]
    fn dotted_lookup() {
        let claims = json!({"realm_access": {"roles": ["x"]}, "a.b": 1});
        let claims = claims.as_object().unwrap();
        assert_eq!(lookup(claims, "realm_access.roles"), Some(&json!(["x"])));
        assert_eq!(lookup(claims, "a.b"), Some(&json!(1)));
        assert_eq!(lookup(claims, "nope.x"), None);
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_parsing() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        for alg in ["none", "HS256", "hs512"] {
            let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\"}}"));
            let token = format!("{header}.e30.");
            assert!(matches!(
                header_algorithm(&token),
                Err(TokenError::AlgorithmNotAllowed(_))
            ));
        }
    }
}
