//! Configuration of client authentication (`[listener.auth]`, `[auth]`) and of the proxy's
//! own login to the cluster (`[upstream.sasl]`).
//!
//! Kept apart from `config.rs` because it is a concept of its own with many knobs: which
//! mechanisms a listener offers, where credentials live, and the hardening limits around
//! authentication. Mechanism-specific tables (`[auth.oauthbearer]`, `[auth.mtls]`,
//! `[upstream.sasl.oauth]`) are the auth crate's own config types, validated by it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_auth::jwt::OAuthBearerConfig;
use portcullis_auth::mtls::MtlsMappingConfig;
use portcullis_auth::oauth_client::ClientCredentialsConfig;
use portcullis_auth::Mechanism;
use serde::Deserialize;

use crate::config::check_readable;

/// `[listener.auth]`: how clients of this listener authenticate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerAuthConfig {
    /// SASL mechanisms offered, by Kafka name (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`,
    /// `OAUTHBEARER`). Empty: no SASL.
    #[serde(default)]
    pub sasl_mechanisms: Vec<String>,
    /// Whether clients present TLS certificates: `none`, `optional` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of CAs that sign client certificates (needed unless `client_auth = none`).
    pub client_ca: Option<PathBuf>,
    /// Whether a verified client certificate alone authenticates the connection. When
    /// false, SASL is required even with a certificate (which is then only the TLS
    /// identity recorded in audit events).
    #[serde(default)]
    pub certificate_authenticates: bool,
}

/// Client certificate policy of a TLS listener.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are requested.
    #[default]
    None,
    /// Certificates are requested and verified when sent; clients without one may connect.
    Optional,
    /// Every client must present a certificate that verifies.
    Required,
}

impl ListenerAuthConfig {
    /// The configured mechanisms (valid after validation).
    pub fn mechanisms(&self) -> Vec<Mechanism> {
        self.sasl_mechanisms
            .iter()
            .filter_map(|m| Mechanism::from_name(m))
            .collect()
    }

    /// Whether this listener authenticates clients at all.
    pub fn enabled(&self) -> bool {
        !self.sasl_mechanisms.is_empty() || self.certificate_authenticates
    }
}

/// `[auth]`: credential sources and limits shared by every listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The credential store for PLAIN and SCRAM (`portcullis users ...` edits it).
    pub users_file: Option<PathBuf>,
    /// How often the credential store is checked for changes, in milliseconds.
    #[serde(default = "default_users_reload_ms")]
    pub users_reload_ms: u64,
    /// Longest a SASL session lasts before the client must re-authenticate (KIP-368), in
    /// milliseconds. A token's expiry shortens it.
    #[serde(default = "default_max_session_ms")]
    pub max_session_ms: u64,
    /// Time a connection has to complete authentication, in milliseconds.
    #[serde(default = "default_auth_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest SASL message (and largest frame before authentication), in bytes.
    #[serde(default = "default_max_sasl_bytes")]
    pub max_message_bytes: usize,
    /// Failed authentications allowed on one connection before it is closed.
    #[serde(default = "default_max_failed_attempts")]
    pub max_failed_attempts: u32,
    /// Delay before every failure answer, in milliseconds, the same for every reason.
    #[serde(default = "default_failure_delay_ms")]
    pub failure_delay_ms: u64,
    /// Failed authentications one user may have from one source address per window before
    /// further attempts as that user from there are refused without checking credentials.
    /// Other users behind the same address are not affected.
    #[serde(default = "default_source_failure_limit")]
    pub source_failure_limit: u32,
    /// Failed authentications one source address may have per window, whatever the users,
    /// before every attempt from it is refused (a looser cap against spraying one password
    /// over many user names). Default: five times `source_failure_limit`, at least 100.
    #[serde(default)]
    pub source_failure_address_limit: Option<u32>,
    /// The window of `source_failure_limit`, in milliseconds.
    #[serde(default = "default_source_failure_window_ms")]
    pub source_failure_window_ms: u64,
    /// OAUTHBEARER token validation.
    pub oauthbearer: Option<OAuthBearerConfig>,
    /// Principal and role mapping for client certificates (default: the CN, no roles).
    pub mtls: Option<MtlsMappingConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users_file: None,
            users_reload_ms: default_users_reload_ms(),
            max_session_ms: default_max_session_ms(),
            timeout_ms: default_auth_timeout_ms(),
            max_message_bytes: default_max_sasl_bytes(),
            max_failed_attempts: default_max_failed_attempts(),
            failure_delay_ms: default_failure_delay_ms(),
            source_failure_limit: default_source_failure_limit(),
            source_failure_address_limit: None,
            source_failure_window_ms: default_source_failure_window_ms(),
            oauthbearer: None,
            mtls: None,
        }
    }
}

impl AuthConfig {
    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    /// `max_session_ms` as a duration.
    pub fn max_session(&self) -> Duration {
        Duration::from_millis(self.max_session_ms)
    }
    /// `source_failure_address_limit`, or its default: five times `source_failure_limit`,
    /// at least 100.
    pub fn address_failure_limit(&self) -> u32 {
        self.source_failure_address_limit
            .unwrap_or_else(|| self.source_failure_limit.saturating_mul(5).max(100))
    }

    /// `failure_delay_ms` as a duration.
    pub fn failure_delay(&self) -> Duration {
        Duration::from_millis(self.failure_delay_ms)
    }
}

/// `[upstream.sasl]`: how the proxy logs in to the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub mechanism: String,
    /// User name (PLAIN, SCRAM).
    pub username: Option<String>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// OAuth 2.0 client credentials (OAUTHBEARER).
    pub oauth: Option<ClientCredentialsConfig>,
}

impl UpstreamSaslConfig {
    /// The mechanism (valid after validation).
    pub fn mechanism(&self) -> Option<Mechanism> {
        Mechanism::from_name(&self.mechanism)
    }
}

/// One problem with its dotted key, as `config::validate` reports them.
pub type Problem = (String, String);

/// Checks `[listener.auth]` against the listener's TLS setting and `[auth]`.
pub fn validate_listener_auth(
    listener: &ListenerAuthConfig,
    has_tls: bool,
    auth: &AuthConfig,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| problems.push((key.to_string(), message));
    let mut seen = Vec::new();
    for (i, name) in listener.sasl_mechanisms.iter().enumerate() {
        match Mechanism::from_name(name) {
            None => bad(
                &format!("listener.auth.sasl_mechanisms[{i}]"),
                format!(
                    "{name:?} is not a supported mechanism (one of {})",
                    Mechanism::ALL.map(|m| m.name()).join(", ")
                ),
            ),
            Some(m) if seen.contains(&m) => bad(
                &format!("listener.auth.sasl_mechanisms[{i}]"),
                format!("{name} is listed twice"),
            ),
            Some(m) => seen.push(m),
        }
    }
    let needs_store = seen.iter().any(|m| {
        matches!(
            m,
            Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::ScramSha512
        )
    });
    if needs_store && auth.users_file.is_none() {
        bad(
            "auth.users_file",
            "required when PLAIN or SCRAM is enabled".into(),
        );
    }
    if seen.contains(&Mechanism::OAuthBearer) && auth.oauthbearer.is_none() {
        bad(
            "auth.oauthbearer",
            "required when OAUTHBEARER is enabled".into(),
        );
    }
    if listener.client_auth != ClientAuth::None {
        if !has_tls {
            bad(
                "listener.auth.client_auth",
                "client certificates need listener.tls".into(),
            );
        }
        match &listener.client_ca {
            None => bad(
                "listener.auth.client_ca",
                "required when client_auth is optional or required".into(),
            ),
            Some(path) => check_readable(&mut bad, "listener.auth.client_ca", path),
        }
    }
    if listener.certificate_authenticates && listener.client_auth == ClientAuth::None {
        bad(
            "listener.auth.certificate_authenticates",
            "needs client_auth = \"optional\" or \"required\"".into(),
        );
    }
    problems
}

/// Checks `[auth]`.
pub fn validate_auth(auth: &AuthConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| problems.push((key.to_string(), message));
    if let Some(path) = &auth.users_file {
        match portcullis_auth::store::UserStore::load(path) {
            Ok(_) => {}
            Err(e) => bad("auth.users_file", e.to_string()),
        }
    }
    for (key, value) in [
        ("auth.users_reload_ms", auth.users_reload_ms),
        ("auth.max_session_ms", auth.max_session_ms),
        ("auth.timeout_ms", auth.timeout_ms),
        (
            "auth.max_failed_attempts",
            u64::from(auth.max_failed_attempts),
        ),
        (
            "auth.source_failure_limit",
            u64::from(auth.source_failure_limit),
        ),
        (
            "auth.source_failure_address_limit",
            u64::from(auth.address_failure_limit()),
        ),
        (
            "auth.source_failure_window_ms",
            auth.source_failure_window_ms,
        ),
    ] {
        if value == 0 {
            bad(key, "must be above 0".into());
        }
    }
    if !(512..=16 * 1024 * 1024).contains(&auth.max_message_bytes) {
        bad(
            "auth.max_message_bytes",
            "must be between 512 and 16777216".into(),
        );
    }
    if auth.address_failure_limit() < auth.source_failure_limit {
        bad(
            "auth.source_failure_address_limit",
            format!(
                "must be at least auth.source_failure_limit ({})",
                auth.source_failure_limit
            ),
        );
    }
    if auth.failure_delay_ms > 10_000 {
        bad("auth.failure_delay_ms", "must be at most 10000".into());
    }
    if let Some(oauth) = &auth.oauthbearer {
        for (key, message) in oauth.validate() {
            bad(&format!("auth.oauthbearer.{key}"), message);
        }
    }
    if let Some(mtls) = &auth.mtls {
        for (key, message) in mtls.validate() {
            bad(&format!("auth.mtls.{key}"), message);
        }
    }
    problems
}

/// Checks `[upstream.sasl]`.
pub fn validate_upstream_sasl(sasl: &UpstreamSaslConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| problems.push((key.to_string(), message));
    match sasl.mechanism() {
        None => bad(
            "upstream.sasl.mechanism",
            format!("{:?} is not a supported mechanism", sasl.mechanism),
        ),
        Some(Mechanism::OAuthBearer) => match &sasl.oauth {
            None => bad("upstream.sasl.oauth", "required for OAUTHBEARER".into()),
            Some(oauth) => {
                for (key, message) in oauth.validate() {
                    bad(&format!("upstream.sasl.oauth.{key}"), message);
                }
            }
        },
        Some(_) => {
            if sasl.username.as_deref().is_none_or(str::is_empty) {
                bad(
                    "upstream.sasl.username",
                    "required for PLAIN and SCRAM".into(),
                );
            }
            match (&sasl.password_file, &sasl.password_env) {
                (Some(_), Some(_)) => bad(
                    "upstream.sasl.password_file",
                    "set password_file or password_env, not both".into(),
                ),
                (None, None) => bad(
                    "upstream.sasl.password_file",
                    "password_file or password_env is required".into(),
                ),
                (Some(path), None) => check_readable(&mut bad, "upstream.sasl.password_file", path),
                (None, Some(var)) => {
                    if std::env::var_os(var).is_none() {
                        bad(
                            "upstream.sasl.password_env",
                            format!("environment variable {var} is not set"),
                        );
                    }
                }
            }
        }
    }
    problems
}

/// Resolves relative paths of the auth tables against the configuration file's directory.
pub fn resolve_paths(
    listener: &mut ListenerAuthConfig,
    auth: &mut AuthConfig,
    upstream: Option<&mut UpstreamSaslConfig>,
    dir: &Path,
) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    if let Some(p) = &mut listener.client_ca {
        fix(p);
    }
    if let Some(p) = &mut auth.users_file {
        fix(p);
    }
    if let Some(oauth) = &mut auth.oauthbearer {
        if let Some(p) = &mut oauth.jwks_file {
            fix(p);
        }
    }
    if let Some(sasl) = upstream {
        if let Some(p) = &mut sasl.password_file {
            fix(p);
        }
        if let Some(oauth) = &mut sasl.oauth {
            if let Some(p) = &mut oauth.client_secret_file {
                fix(p);
            }
        }
    }
}

fn default_users_reload_ms() -> u64 {
    1_000
}
fn default_max_session_ms() -> u64 {
    3_600_000
}
fn default_auth_timeout_ms() -> u64 {
    10_000
}
fn default_max_sasl_bytes() -> usize {
    64 * 1024
}
fn default_max_failed_attempts() -> u32 {
    1
}
fn default_failure_delay_ms() -> u64 {
    100
}
fn default_source_failure_limit() -> u32 {
    20
}
fn default_source_failure_window_ms() -> u64 {
    60_000
}
