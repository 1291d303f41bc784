//! The `[oauthbearer]` configuration: where the signing keys come from and what a token must
//! say to be accepted.
//!
//! It lives apart from the validator so that the proxy's `check` command can load and
//! [`OAuthBearerConfig::validate`] a configuration (listing every problem with its key)
//! without building anything.

use std::net::IpAddr;
use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// The longest clock skew an operator may allow (`clock_skew_secs`).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Signature algorithms a JWT may use. HMAC (`HS*`) and `none` are absent on purpose: a
/// proxy that validates tokens with public keys must never treat a public key as an HMAC
/// secret, and `none` is no signature at all.
pub const SUPPORTED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One string or a list of strings (`audience = "kafka"` or `audience = ["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// How OAUTHBEARER tokens are validated (TOML table `[oauthbearer]` or wherever the proxy
/// embeds it).
///
/// Exactly one of `jwks_url` and `jwks_file` must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthBearerConfig {
    /// HTTPS URL of the identity provider's JWKS (`jwks_uri` from its discovery document).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A local JWKS file, re-read when it changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Allow `http://` for `jwks_url` when the host is a loopback address (tests and
    /// sidecars only).
    #[serde(default)]
    pub allow_insecure_loopback_jwks: bool,
    /// The required `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one of them.
    pub audience: OneOrMany,
    /// Accepted signature algorithms (default `["RS256", "ES256"]`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding the principal name (default `sub`).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim holding roles: a JSON array of strings or a space-separated string
    /// (`groups`, `roles`, `scope`). No roles when unset.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Leeway for `exp` and `nbf`, in seconds (default 30, at most 300).
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// How often the key set is refreshed in the background, in seconds (default 300).
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    /// The shortest interval between two fetches caused by unknown key ids, in seconds
    /// (default 10): a flood of tokens with random `kid`s cannot make the proxy hammer the
    /// identity provider.
    #[serde(default = "default_min_refetch")]
    pub jwks_min_refetch_secs: u64,
    /// `scope` reported to clients in the RFC 7628 error challenge (optional).
    #[serde(default)]
    pub error_scope: Option<String>,
    /// `openid-configuration` URL reported in the RFC 7628 error challenge (optional).
    #[serde(default)]
    pub error_openid_configuration: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_principal_claim() -> String {
    "sub".into()
}

fn default_clock_skew() -> u64 {
    30
}

fn default_refresh() -> u64 {
    300
}

fn default_min_refetch() -> u64 {
    10
}

impl OAuthBearerConfig {
    /// A configuration with every default, for the given key source, issuer and audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> OAuthBearerConfig {
        OAuthBearerConfig {
            jwks_url: None,
            jwks_file: None,
            allow_insecure_loopback_jwks: false,
            issuer: issuer.into(),
            audience: OneOrMany::One(audience.into()),
            algorithms: default_algorithms(),
            principal_claim: default_principal_claim(),
            roles_claim: None,
            clock_skew_secs: default_clock_skew(),
            jwks_refresh_secs: default_refresh(),
            jwks_min_refetch_secs: default_min_refetch(),
            error_scope: None,
            error_openid_configuration: None,
        }
    }

    /// Every problem in the configuration, as `(key, problem)` pairs. Empty when it is usable.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, what: String| problems.push((key.to_string(), what));
        match (&self.jwks_url, &self.jwks_file) {
            (None, None) => problem(
                "jwks_url",
                "one of jwks_url and jwks_file is required".into(),
            ),
            (Some(_), Some(_)) => problem(
                "jwks_file",
                "jwks_url and jwks_file are exclusive; set only one".into(),
            ),
            (Some(url), None) => {
                if let Err(e) = check_url(url, self.allow_insecure_loopback_jwks) {
                    problem("jwks_url", e);
                }
            }
            (None, Some(path)) => {
                if path.as_os_str().is_empty() {
                    problem("jwks_file", "must not be empty".into());
                }
            }
        }
        if self.issuer.trim().is_empty() {
            problem("issuer", "must not be empty".into());
        }
        let audience = self.audience.to_vec();
        if audience.is_empty() || audience.iter().any(|a| a.trim().is_empty()) {
            problem("audience", "needs at least one non-empty value".into());
        }
        if self.algorithms.is_empty() {
            problem("algorithms", "needs at least one algorithm".into());
        }
        for alg in &self.algorithms {
            if let Err(e) = parse_algorithm(alg) {
                problem("algorithms", e);
            }
        }
        if self.principal_claim.trim().is_empty() {
            problem("principal_claim", "must not be empty".into());
        }
        if let Some(roles) = &self.roles_claim {
            if roles.trim().is_empty() {
                problem("roles_claim", "must not be empty when set".into());
            }
        }
        if self.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            problem(
                "clock_skew_secs",
                format!("must be at most {MAX_CLOCK_SKEW_SECS}"),
            );
        }
        if self.jwks_refresh_secs < 10 {
            problem("jwks_refresh_secs", "must be at least 10".into());
        }
        if self.jwks_min_refetch_secs < 1 {
            problem("jwks_min_refetch_secs", "must be at least 1".into());
        }
        if self.jwks_min_refetch_secs > self.jwks_refresh_secs {
            problem(
                "jwks_min_refetch_secs",
                "must not exceed jwks_refresh_secs".into(),
            );
        }
        if let Some(scope) = &self.error_scope {
            if !json_safe(scope) {
                problem("error_scope", "must be printable ASCII".into());
            }
        }
        if let Some(url) = &self.error_openid_configuration {
            if !json_safe(url) {
                problem(
                    "error_openid_configuration",
                    "must be printable ASCII".into(),
                );
            }
        }
        problems
    }

    /// The configured algorithms, parsed. Errors name the first unacceptable one.
    pub(crate) fn parsed_algorithms(&self) -> Result<Vec<Algorithm>, String> {
        self.algorithms.iter().map(|a| parse_algorithm(a)).collect()
    }
}

fn json_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Parses one configured algorithm name, refusing HMAC and `none`.
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("HS") {
        return Err(format!(
            "{name}: HMAC algorithms are refused (a public key must never be used as an HMAC secret)"
        ));
    }
    if upper == "NONE" {
        return Err(format!("{name}: unsigned tokens are refused"));
    }
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => {
            return Err(format!(
                "{name}: unknown algorithm (supported: {})",
                SUPPORTED_ALGORITHMS.join(", ")
            ))
        }
    })
}

/// Checks a URL the proxy will fetch: `https`, or `http` to a loopback host when `insecure`
/// loopback use is allowed. Returns the parsed URL.
pub(crate) fn check_url(url: &str, allow_insecure_loopback: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if !allow_insecure_loopback {
                return Err("must use https (http is allowed only for loopback hosts with the insecure loopback option)".into());
            }
            if !is_loopback(&parsed) {
                return Err("http is allowed only for a loopback host".into());
            }
        }
        other => return Err(format!("unsupported scheme {other:?}; use https")),
    }
    if parsed.host().is_none() {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(parsed)
}

/// Whether the URL's host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(oauth2::url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(oauth2::url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(oauth2::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OAuthBearerConfig {
        let mut c = OAuthBearerConfig::new("https://idp", "kafka");
        c.jwks_url = Some("https://idp/jwks".into());
        c
    }

    #[test]
    fn defaults_from_toml() {
        let c: OAuthBearerConfig = toml::from_str(
            "jwks_url = \"https://idp.example/jwks\"\nissuer = \"https://idp.example\"\naudience = [\"kafka\", \"proxy\"]\n",
        )
        .unwrap();
        assert_eq!(c.algorithms, vec!["RS256", "ES256"]);
        assert_eq!(c.principal_claim, "sub");
        assert_eq!(c.clock_skew_secs, 30);
        assert_eq!(c.jwks_refresh_secs, 300);
        assert_eq!(c.jwks_min_refetch_secs, 10);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_keys_and_missing_issuer_fail_to_load() {
        assert!(toml::from_str::<OAuthBearerConfig>(
            "jwks_url = \"https://x\"\nissuer = \"i\"\naudience = \"a\"\nbogus = 1\n"
        )
        .is_err());
        assert!(toml::from_str::<OAuthBearerConfig>(
            "jwks_url = \"https://x\"\naudience = \"a\"\n"
        )
        .is_err());
    }

    #[test]
    fn hmac_and_none_are_refused() {
        let mut c = base();
        c.algorithms = vec!["HS256".into(), "none".into(), "RS256".into(), "XX1".into()];
        let problems = c.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|(k, _)| k == "algorithms"));
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let mut c = OAuthBearerConfig::new("", "");
        c.jwks_url = Some("http://idp.example/jwks".into());
        c.clock_skew_secs = 301;
        c.jwks_min_refetch_secs = 0;
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        for k in [
            "jwks_url",
            "issuer",
            "audience",
            "clock_skew_secs",
            "jwks_min_refetch_secs",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
    }

    #[test]
    fn http_only_for_loopback_with_the_option() {
        assert!(check_url("http://127.0.0.1:8080/jwks", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/jwks", true).is_ok());
        assert!(check_url("http://[::1]/jwks", true).is_ok());
        assert!(check_url("http://localhost/jwks", true).is_ok());
        assert!(check_url("http://10.0.0.1/jwks", true).is_err());
        assert!(check_url("ftp://idp/jwks", true).is_err());
        assert!(check_url("https://user:pw@idp/jwks", false).is_err());
        assert!(check_url("https://idp.example/jwks", false).is_ok());
    }
}
