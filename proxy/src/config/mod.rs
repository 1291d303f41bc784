//! The proxy's TOML configuration: the shapes, their defaults and their validation.
//!
//! Every table rejects unknown keys, so a misspelt setting is an error rather than a
//! silently ignored line. `validate` collects *every* problem (with the offending key) so an
//! operator fixes a file in one pass; `portcullis check` prints that list.

pub mod auth;
pub mod authz;
pub mod encryption;
pub mod per_source;

use serde::Deserialize;
use std::net::SocketAddr;

use crate::config::auth::{AuthConfig, ListenerAuthConfig, UpstreamSaslConfig};
use crate::config::authz::AuthorizationConfig;
use portcullis_audit::AuditLogConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client-facing listeners and address advertising.
    pub listener: ListenerConfig,
    /// The Kafka cluster behind the proxy.
    pub upstream: UpstreamConfig,
    /// Limits that protect the proxy from hostile or runaway peers.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The admin HTTP listener (metrics and health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Audit event output.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Credential sources and limits of client authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-topic RBAC; without it the proxy does not authorize.
    pub authorization: Option<AuthorizationConfig>,
    /// Record encryption at rest; without it the proxy encrypts nothing.
    pub encryption: Option<encryption::EncryptionConfig>,
}

/// Client-facing listeners. The bootstrap listener is `bind_host:bootstrap_port`; every
/// upstream broker gets a port of its own from `broker_ports`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address the listeners bind to.
    #[serde(default = "default_bind_host")]
    pub bind_host: String,
    /// Host name written into Metadata and friends: what clients can resolve.
    pub advertised_host: String,
    /// Port of the bootstrap listener (clients' `bootstrap.servers`). 0 picks a free port.
    pub bootstrap_port: u16,
    /// Inclusive port range for per-broker listeners, as `"FIRST-LAST"`.
    pub broker_ports: String,
    /// Client-facing TLS; absent means plaintext (development only).
    pub tls: Option<ServerTlsConfig>,
    /// How clients authenticate; absent means they do not (development only).
    #[serde(default)]
    pub auth: ListenerAuthConfig,
}

/// Client-facing TLS material.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are checked for changes, in milliseconds.
    #[serde(default = "default_tls_reload_ms")]
    pub reload_interval_ms: u64,
}

/// The Kafka cluster behind the proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Bootstrap brokers, `host:port`. Further brokers are discovered from Metadata.
    pub bootstrap_servers: Vec<String>,
    /// TCP (and TLS) connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How often the proxy refreshes its view of the cluster, in milliseconds.
    #[serde(default = "default_metadata_refresh_ms")]
    pub metadata_refresh_ms: u64,
    /// TLS to the cluster; absent means plaintext.
    pub tls: Option<UpstreamTlsConfig>,
    /// The proxy's own SASL login to the cluster; absent means none.
    pub sasl: Option<UpstreamSaslConfig>,
}

/// TLS from the proxy to the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM bundle of CAs that sign the brokers' certificates.
    pub ca: PathBuf,
    /// Optional client certificate chain (PEM) for mTLS to the brokers.
    pub cert: Option<PathBuf>,
    /// Key for `cert`.
    pub key: Option<PathBuf>,
    /// Name to verify broker certificates against; default: the broker's host.
    pub server_name: Option<String>,
}

/// Limits that protect the proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request frame a client may send (bytes).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Largest response frame accepted from a broker (bytes).
    #[serde(default = "default_max_response_frame_bytes")]
    pub max_response_frame_bytes: usize,
    /// Most records one Produce record batch may declare. Compressed batches cannot be
    /// checked against their size without decompressing, so this caps them.
    #[serde(default = "default_max_records_per_batch")]
    pub max_records_per_batch: usize,
    /// Maximum concurrent client connections over all listeners.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests a client may have in flight on one connection before the proxy stops
    /// reading from it.
    #[serde(default = "default_max_inflight")]
    pub max_inflight_requests: usize,
    /// Time allowed for the TLS handshake and the first request, in milliseconds.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Time a started frame may take to arrive completely, in milliseconds.
    #[serde(default = "default_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
    /// A connection with no request for this long is closed, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Time the broker has to answer one request, in milliseconds.
    #[serde(default = "default_upstream_response_timeout_ms")]
    pub upstream_response_timeout_ms: u64,
    /// `[limits.per_source]`: unauthenticated connections and new connections per second
    /// of one source address.
    #[serde(default)]
    pub per_source: per_source::PerSourceLimits,
    /// Most topics (by name or id) one request may name, counted before decoding.
    #[serde(default = "default_max_topics_per_request")]
    pub max_topics_per_request: u64,
    /// Most partitions one request may name, summed over its topics.
    #[serde(default = "default_max_partitions_per_request")]
    pub max_partitions_per_request: u64,
    /// Most consumer groups one request may name.
    #[serde(default = "default_max_groups_per_request")]
    pub max_groups_per_request: u64,
    /// Most config resources or ACL bindings one request may name.
    #[serde(default = "default_max_resources_per_request")]
    pub max_resources_per_request: u64,
    /// Most other array entries and tagged fields one request may carry (config entries,
    /// members, assignments, transactional and producer ids, ...).
    #[serde(default = "default_max_entries_per_request")]
    pub max_entries_per_request: u64,
}

/// The admin HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port`; loopback by default. Set `enabled = false` to turn it off.
    #[serde(default = "default_admin_bind")]
    pub bind: String,
    /// Whether the admin listener runs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A file holding the bearer token the `/audit/...` routes require (at least
    /// 24 characters). Required when `bind` is not a loopback address. When absent the proxy
    /// creates `<audit.data_dir>/admin.token` at first start, which mutating requests need.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Host names (no port) the admin API may be reached under besides IP addresses and
    /// `localhost`: any other `Host` header is refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `portcullis=debug`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The tamper-evident audit log (see docs/audit.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the log: its store and its signing key (created on first start).
    #[serde(default = "default_audit_dir")]
    pub data_dir: PathBuf,
    /// Batching, checkpoints, per-category durability and failure policy, anchor file.
    #[serde(default)]
    pub log: AuditLogConfig,
    /// Data-path (authorization and connection) events one principal may write per
    /// `event_budget_window_ms`; past it they are counted in a summary event.
    #[serde(default = "default_event_budget")]
    pub event_budget: u64,
    /// The window of `event_budget`, in milliseconds.
    #[serde(default = "default_event_budget_window_ms")]
    pub event_budget_window_ms: u64,
}

fn default_event_budget() -> u64 {
    1_000
}
fn default_event_budget_window_ms() -> u64 {
    60_000
}

fn default_bind_host() -> String {
    "127.0.0.1".into()
}
fn default_tls_reload_ms() -> u64 {
    2_000
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_metadata_refresh_ms() -> u64 {
    30_000
}
fn default_max_frame_bytes() -> usize {
    100 * 1024 * 1024
}
fn default_max_response_frame_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_max_records_per_batch() -> usize {
    1_000_000
}
fn default_max_topics_per_request() -> u64 {
    100_000
}
fn default_max_partitions_per_request() -> u64 {
    200_000
}
fn default_max_groups_per_request() -> u64 {
    10_000
}
fn default_max_resources_per_request() -> u64 {
    10_000
}
fn default_max_entries_per_request() -> u64 {
    200_000
}
/// The highest per-request item limit accepted: about 100 bytes each once decoded.
const MAX_ITEMS_PER_REQUEST: u64 = 10_000_000;
fn default_max_connections() -> usize {
    10_000
}
fn default_max_inflight() -> usize {
    128
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_frame_timeout_ms() -> u64 {
    30_000
}
fn default_idle_timeout_ms() -> u64 {
    540_000
}
fn default_upstream_response_timeout_ms() -> u64 {
    120_000
}
fn default_admin_bind() -> String {
    "127.0.0.1:9190".into()
}
fn default_true() -> bool {
    true
}
fn default_log_level() -> String {
    "info".into()
}
fn default_audit_dir() -> PathBuf {
    PathBuf::from("portcullis-audit")
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: default_max_frame_bytes(),
            max_response_frame_bytes: default_max_response_frame_bytes(),
            max_records_per_batch: default_max_records_per_batch(),
            max_connections: default_max_connections(),
            max_inflight_requests: default_max_inflight(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            frame_timeout_ms: default_frame_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            upstream_response_timeout_ms: default_upstream_response_timeout_ms(),
            per_source: per_source::PerSourceLimits::default(),
            max_topics_per_request: default_max_topics_per_request(),
            max_partitions_per_request: default_max_partitions_per_request(),
            max_groups_per_request: default_max_groups_per_request(),
            max_resources_per_request: default_max_resources_per_request(),
            max_entries_per_request: default_max_entries_per_request(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bind: default_admin_bind(),
            enabled: true,
            token_file: None,
            allowed_hosts: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: default_log_level(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            data_dir: default_audit_dir(),
            log: AuditLogConfig::default(),
            event_budget: default_event_budget(),
            event_budget_window_ms: default_event_budget_window_ms(),
        }
    }
}

/// One problem found in a configuration, tied to the key that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `listener.tls.cert`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown keys included).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// The file parsed but has invalid values.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Parses `"FIRST-LAST"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("expected \"FIRST-LAST\", got {text:?}"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port number"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port number"))?;
        if first == 0 || last < first {
            return Err(format!(
                "range {first}-{last} must be non-empty and start above 0"
            ));
        }
        Ok(Self { first, last })
    }

    /// Number of ports in the range.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Always false: a parsed range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths inside the file are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load_unvalidated(path)?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Reads and parses a configuration file and resolves its relative paths, without
    /// checking values or referenced files (for tools that create those files).
    pub fn load_unvalidated(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Parses TOML text without validating values.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(tls) = &mut self.listener.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        if let Some(tls) = &mut self.upstream.tls {
            fix(&mut tls.ca);
            if let Some(c) = &mut tls.cert {
                fix(c);
            }
            if let Some(k) = &mut tls.key {
                fix(k);
            }
        }
        fix(&mut self.audit.data_dir);
        if let Some(authz) = &mut self.authorization {
            fix(&mut authz.policy_dir);
        }
        if let Some(anchor) = &mut self.audit.log.anchor_file {
            fix(anchor);
        }
        if let Some(token) = &mut self.admin.token_file {
            fix(token);
        }
        if let Some(encryption) = &mut self.encryption {
            encryption.resolve_paths(dir);
        }
        auth::resolve_paths(
            &mut self.listener.auth,
            &mut self.auth,
            self.upstream.sasl.as_mut(),
            dir,
        );
    }

    /// The admin API token file: `admin.token_file`, else
    /// `<audit.data_dir>/admin.token` (created by the proxy at first start).
    pub fn admin_token_path(&self) -> PathBuf {
        self.admin.token_file.clone().unwrap_or_else(|| {
            self.audit
                .data_dir
                .join(crate::admin::token::GENERATED_TOKEN_FILE)
        })
    }

    /// Checks every value and referenced file; returns all problems found.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem {
                key: key.to_string(),
                message,
            })
        };
        self.validate_listener(&mut bad);
        self.validate_upstream(&mut bad);
        self.validate_limits(&mut bad);
        self.validate_admin(&mut bad);
        self.validate_log_and_audit(&mut bad);
        self.validate_auth(&mut bad);
        problems
    }

    /// `[listener]`: addresses, ports and the client-facing TLS files.
    fn validate_listener(&self, bad: &mut impl FnMut(&str, String)) {
        if self.listener.advertised_host.trim().is_empty() {
            bad("listener.advertised_host", "must not be empty".into());
        }
        if self.listener.bind_host.parse::<std::net::IpAddr>().is_err() {
            bad(
                "listener.bind_host",
                format!("{:?} is not an IP address", self.listener.bind_host),
            );
        }
        match PortRange::parse(&self.listener.broker_ports) {
            Ok(range) => {
                if self.listener.bootstrap_port != 0 && range.contains(self.listener.bootstrap_port)
                {
                    bad(
                        "listener.broker_ports",
                        format!(
                            "overlaps listener.bootstrap_port {}",
                            self.listener.bootstrap_port
                        ),
                    );
                }
            }
            Err(e) => bad("listener.broker_ports", e),
        }
        if let Some(tls) = &self.listener.tls {
            check_readable(bad, "listener.tls.cert", &tls.cert);
            check_readable(bad, "listener.tls.key", &tls.key);
            if tls.reload_interval_ms == 0 {
                bad("listener.tls.reload_interval_ms", "must be above 0".into());
            }
        }
    }

    /// `[upstream]`: bootstrap servers, timeouts and the broker-facing TLS files.
    fn validate_upstream(&self, bad: &mut impl FnMut(&str, String)) {
        if self.upstream.bootstrap_servers.is_empty() {
            bad(
                "upstream.bootstrap_servers",
                "needs at least one host:port".into(),
            );
        }
        for (i, server) in self.upstream.bootstrap_servers.iter().enumerate() {
            if split_host_port(server).is_none() {
                bad(
                    &format!("upstream.bootstrap_servers[{i}]"),
                    format!("{server:?} is not host:port"),
                );
            }
        }
        if self.upstream.connect_timeout_ms == 0 {
            bad("upstream.connect_timeout_ms", "must be above 0".into());
        }
        if self.upstream.metadata_refresh_ms < 100 {
            bad(
                "upstream.metadata_refresh_ms",
                "must be at least 100".into(),
            );
        }
        if let Some(tls) = &self.upstream.tls {
            check_readable(bad, "upstream.tls.ca", &tls.ca);
            match (&tls.cert, &tls.key) {
                (Some(c), Some(k)) => {
                    check_readable(bad, "upstream.tls.cert", c);
                    check_readable(bad, "upstream.tls.key", k);
                }
                (None, None) => {}
                (Some(_), None) => bad("upstream.tls.key", "required when cert is set".into()),
                (None, Some(_)) => bad("upstream.tls.cert", "required when key is set".into()),
            }
        }
    }

    /// `[limits]`: frame sizes within Kafka's range, every count and timeout above 0.
    fn validate_limits(&self, bad: &mut impl FnMut(&str, String)) {
        let l = &self.limits;
        if !(1024..=i32::MAX as usize).contains(&l.max_frame_bytes) {
            bad(
                "limits.max_frame_bytes",
                "must be between 1024 and 2147483647".into(),
            );
        }
        if !(1024..=i32::MAX as usize).contains(&l.max_response_frame_bytes) {
            bad(
                "limits.max_response_frame_bytes",
                "must be between 1024 and 2147483647".into(),
            );
        }
        for (key, value) in [
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.max_records_per_batch",
                l.max_records_per_batch as u64,
            ),
            (
                "limits.max_inflight_requests",
                l.max_inflight_requests as u64,
            ),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.frame_timeout_ms", l.frame_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            (
                "limits.upstream_response_timeout_ms",
                l.upstream_response_timeout_ms,
            ),
        ] {
            if value == 0 {
                bad(key, "must be above 0".into());
            }
        }
        for (key, message) in l.per_source.validate() {
            bad(&format!("limits.per_source.{key}"), message);
        }
        for (key, value) in [
            ("limits.max_topics_per_request", l.max_topics_per_request),
            (
                "limits.max_partitions_per_request",
                l.max_partitions_per_request,
            ),
            ("limits.max_groups_per_request", l.max_groups_per_request),
            (
                "limits.max_resources_per_request",
                l.max_resources_per_request,
            ),
            ("limits.max_entries_per_request", l.max_entries_per_request),
        ] {
            if !(1..=MAX_ITEMS_PER_REQUEST).contains(&value) {
                bad(
                    key,
                    format!("must be between 1 and {MAX_ITEMS_PER_REQUEST}"),
                );
            }
        }
    }

    /// `[admin]`: a loopback bind, or a token file that loads.
    fn validate_admin(&self, bad: &mut impl FnMut(&str, String)) {
        if self.admin.enabled {
            match self.admin.bind.parse::<SocketAddr>() {
                Err(_) => bad(
                    "admin.bind",
                    format!("{:?} is not ip:port", self.admin.bind),
                ),
                Ok(addr) if !addr.ip().is_loopback() && self.admin.token_file.is_none() => bad(
                    "admin.bind",
                    format!("{addr} is not loopback: set admin.token_file so the audit API requires a bearer token"),
                ),
                Ok(_) => {}
            }
            if let Some(file) = &self.admin.token_file {
                if let Err(e) = crate::admin::token::AdminToken::load(file) {
                    bad("admin.token_file", e);
                }
            }
            for name in &self.admin.allowed_hosts {
                if let Err(e) = crate::admin::host::check_allowed_name(name) {
                    bad("admin.allowed_hosts", e);
                }
            }
        }
    }

    /// `[log]` level and `[audit]`: the log settings and the data directory's parent.
    fn validate_log_and_audit(&self, bad: &mut impl FnMut(&str, String)) {
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad(
                "log.level",
                format!("{:?} is not a valid filter", self.log.level),
            );
        }
        for problem in self.audit.log.validate() {
            bad("audit.log", problem);
        }
        if self.audit.event_budget == 0 {
            bad("audit.event_budget", "must be above 0".into());
        }
        if self.audit.event_budget_window_ms == 0 {
            bad("audit.event_budget_window_ms", "must be above 0".into());
        }
        if let Some(parent) = self.audit.data_dir.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                bad(
                    "audit.data_dir",
                    format!("directory {} does not exist", parent.display()),
                );
            }
        }
    }

    /// `[listener.auth]`, `[auth]`, `[upstream.sasl]` and `[authorization]`.
    fn validate_auth(&self, bad: &mut impl FnMut(&str, String)) {
        let auth_problems = auth::validate_listener_auth(
            &self.listener.auth,
            self.listener.tls.is_some(),
            &self.auth,
        )
        .into_iter()
        .chain(auth::validate_auth(&self.auth))
        .chain(
            self.upstream
                .sasl
                .iter()
                .flat_map(auth::validate_upstream_sasl),
        );
        let authz_problems = self
            .authorization
            .iter()
            .flat_map(crate::config::authz::validate_authorization);
        let encryption_problems = self
            .encryption
            .iter()
            .flat_map(encryption::validate_encryption);
        for (key, message) in auth_problems
            .chain(authz_problems)
            .chain(encryption_problems)
        {
            bad(&key, message);
        }
    }

    /// The per-broker port range (valid after `validate`).
    pub fn broker_port_range(&self) -> Result<PortRange, String> {
        PortRange::parse(&self.listener.broker_ports)
    }
}

impl LimitsConfig {
    /// `handshake_timeout_ms` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
    /// `frame_timeout_ms` as a duration.
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }
    /// `idle_timeout_ms` as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// `upstream_response_timeout_ms` as a duration.
    pub fn upstream_response_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_response_timeout_ms)
    }
}

/// Splits `host:port` (IPv6 as `[::1]:9092`).
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_string(), port))
}

/// Reports `key` through `bad` when the file at `path` cannot be opened for reading.
pub(crate) fn check_readable(bad: &mut impl FnMut(&str, String), key: &str, path: &Path) {
    if let Err(e) = std::fs::File::open(path) {
        bad(key, format!("cannot read {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[listener]
advertised_host = "localhost"
bootstrap_port = 9192
broker_ports = "9193-9200"

[upstream]
bootstrap_servers = ["127.0.0.1:9092"]
"#;

    #[test]
    fn minimal_config_is_valid_with_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.validate(), vec![]);
        assert_eq!(config.limits.max_frame_bytes, 100 * 1024 * 1024);
        assert_eq!(config.admin.bind, "127.0.0.1:9190");
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token() {
        let open = format!("{MINIMAL}\n[admin]\nbind = \"0.0.0.0:9190\"\n");
        let problems = Config::parse(&open).unwrap().validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "admin.bind");
        assert!(problems[0].message.contains("token_file"), "{problems:?}");

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin.token");
        std::fs::write(&token, "short").unwrap();
        let guarded = format!(
            "{MINIMAL}\n[admin]\nbind = \"0.0.0.0:9190\"\ntoken_file = {:?}\n",
            token.display().to_string()
        );
        let problems = Config::parse(&guarded).unwrap().validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "admin.token_file");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(Config::parse(&guarded).unwrap().validate(), vec![]);
    }

    #[test]
    fn admin_allowed_hosts_are_plain_names_and_the_token_defaults_to_the_data_dir() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(
            config.admin_token_path(),
            config.audit.data_dir.join("admin.token")
        );
        let bad = format!("{MINIMAL}\n[admin]\nallowed_hosts = [\"proxy.internal:9190\"]\n");
        let problems = Config::parse(&bad).unwrap().validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "admin.allowed_hosts");
        let good = format!("{MINIMAL}\n[admin]\nallowed_hosts = [\"proxy.internal\"]\n");
        assert_eq!(Config::parse(&good).unwrap().validate(), vec![]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = format!("{MINIMAL}\n[limits]\nmax_frame_byte = 5\n");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("max_frame_byte"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[listener]
advertised_host = ""
bootstrap_port = 9195
broker_ports = "9193-9200"
tls = { cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }

[upstream]
bootstrap_servers = ["nohostport"]

[limits]
max_connections = 0
"#;
        let config = Config::parse(text).unwrap();
        let keys: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
        for expected in [
            "listener.advertised_host",
            "listener.broker_ports",
            "listener.tls.cert",
            "listener.tls.key",
            "upstream.bootstrap_servers[0]",
            "limits.max_connections",
        ] {
            assert!(
                keys.iter().any(|k| k == expected),
                "missing {expected} in {keys:?}"
            );
        }
    }

    #[test]
    fn port_ranges_parse_strictly() {
        assert_eq!(
            PortRange::parse("10-12").unwrap(),
            PortRange {
                first: 10,
                last: 12
            }
        );
        assert_eq!(PortRange::parse("10-12").unwrap().len(), 3);
        assert!(PortRange::parse("12-10").is_err());
        assert!(PortRange::parse("0-10").is_err());
        assert!(PortRange::parse("10").is_err());
        assert!(PortRange::parse("a-b").is_err());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:1"), Some(("a".into(), 1)));
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(split_host_port("a"), None);
        assert_eq!(split_host_port(":1"), None);
    }
}
