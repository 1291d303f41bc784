//! The audit event schema.
//!
//! One [`Event`] is one fact an operator or an auditor may later need to answer "who did what,
//! to which resource, from where, and was it allowed". The schema is versioned
//! ([`SCHEMA_VERSION`]) so readers of an old log know which fields to expect; fields are only
//! ever added (as optional ones) within a version.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the event schema written in every event's `schema_version` field.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest client id an event keeps (bytes); longer ones are cut and hashed
/// (see [`Event::client_id`]).
pub const MAX_CLIENT_ID_BYTES: usize = 256;

/// A client id as events record it: cut to [`MAX_CLIENT_ID_BYTES`] with the SHA-256 of the
/// whole id when longer (see [`Event::client_id`]). Preparing it once per request keeps the
/// hashing out of every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    kept: String,
    digest: Option<String>,
    bytes: usize,
}

impl ClientId {
    /// Prepares `client_id`.
    pub fn new(client_id: String) -> ClientId {
        let bytes = client_id.len();
        if bytes <= MAX_CLIENT_ID_BYTES {
            return ClientId {
                kept: client_id,
                digest: None,
                bytes,
            };
        }
        let mut cut = MAX_CLIENT_ID_BYTES;
        while !client_id.is_char_boundary(cut) {
            cut -= 1;
        }
        ClientId {
            kept: format!("{}…", &client_id[..cut]),
            digest: Some(hex_digest(client_id.as_bytes())),
            bytes,
        }
    }

    /// The id as recorded (cut when it was too long).
    pub fn as_str(&self) -> &str {
        &self.kept
    }
}

/// Lowercase hex SHA-256 of `bytes`.
fn hex_digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// What area of the proxy an event is about.
///
/// Serialized in kebab-case: `connection`, `authn`, `authz`, `admin`, `config`, `key`,
/// `audit-system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Client connections opening and closing, proxy start and stop.
    Connection,
    /// Authentication: TLS identities, SASL exchanges, token validation.
    Authn,
    /// Authorization decisions on Kafka requests.
    Authz,
    /// Actions taken through the admin CLI or admin HTTP API.
    Admin,
    /// Configuration and policy loads and reloads.
    Config,
    /// Encryption key creation, rotation and retirement.
    Key,
    /// The audit pipeline reporting on itself (for example events lost to overload).
    AuditSystem,
}

impl Category {
    /// The serialized name of the category (`"audit-system"` for [`Category::AuditSystem`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Connection => "connection",
            Category::Authn => "authn",
            Category::Authz => "authz",
            Category::Admin => "admin",
            Category::Config => "config",
            Category::Key => "key",
            Category::AuditSystem => "audit-system",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the audited action ended.
///
/// `Allow`/`Deny` are for authorization decisions; `Success`/`Failure` for actions that were
/// attempted (an authentication, a reload); `Error` when the proxy itself could not complete
/// the action (an I/O error, a broken upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// An authorization decision permitted the request.
    Allow,
    /// An authorization decision refused the request.
    Deny,
    /// The action was attempted and succeeded.
    Success,
    /// The action was attempted and was refused or did not succeed (for example bad credentials).
    Failure,
    /// The proxy could not complete the action because of an internal or environmental error.
    Error,
}

impl Outcome {
    /// The serialized name of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Error => "error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kafka resource an action touched (a topic, a consumer group, the cluster, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// The resource type, as the policy names it (for example `topic`, `group`, `cluster`).
    pub resource_type: String,
    /// The resource name (for example the topic name).
    pub name: String,
}

/// The Kafka request an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApiRef {
    /// The request's api key (for example 0 for Produce).
    pub key: i16,
    /// The api's name (for example `Produce`).
    pub name: String,
    /// The request's api version.
    pub version: i16,
    /// The client's correlation id, to tie the event to a request in a packet capture or
    /// client log.
    pub correlation_id: i32,
}

/// One audit event.
///
/// Build one with [`Event::new`] and the chainable setters, then hand it to an
/// [`AuditSink`](crate::AuditSink):
///
/// ```
/// use portcullis_audit::{Category, Event, Outcome};
///
/// let event = Event::new(Category::Authn, "authn.sasl", Outcome::Failure)
///     .principal("alice")
///     .mechanism("SCRAM-SHA-512")
///     .client_addr("192.0.2.10:51234")
///     .reason("invalid credentials");
/// assert_eq!(event.principal.as_deref(), Some("alice"));
/// ```
///
/// # What must never go in an event
///
/// An audit log is read by more people, and kept longer, than the data it describes. An event
/// must never carry secrets (passwords, SASL exchanges, tokens, private keys, key material) or
/// record payloads (keys, values, headers of Kafka records). Name things (a topic, a principal, a
/// key id); never copy them. `details` is for small operational facts such as byte counts and
/// durations.
///
/// Optional fields that are unset are omitted from the serialized form, as is an empty `roles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The schema version this event was written with ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The event's position in the tamper-evident log (its Merkle leaf index), assigned by the
    /// sequencer when the event is appended; unset before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the event was created: RFC 3339, UTC, millisecond precision
    /// (`2025-01-31T12:34:56.789Z`).
    pub timestamp: String,
    /// A unique identifier for this event (32 lowercase hex digits). Unique, not secret and not
    /// unpredictable; see [`new_event_id`].
    pub event_id: String,
    /// The area of the proxy the event is about.
    pub category: Category,
    /// What happened, as `area.verb` (for example `connection.open`, `proxy.start`,
    /// `authz.request`).
    pub action: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The authenticated principal, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The principal's roles at the time of the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The authentication mechanism (for example `PLAIN`, `SCRAM-SHA-256`, `OAUTHBEARER`, `mTLS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The identity from the client's verified TLS certificate, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_identity: Option<String>,
    /// The client's address (`ip:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// The client id the Kafka client sent in its request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The name or address of the proxy listener the client connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// The resource the action touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The Kafka request the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiRef>,
    /// The policy rule that decided an authorization, if one matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The Kafka error code returned to the client, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i16>,
    /// A short human-readable explanation, for denials, failures and errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Small extra facts (for example `bytes_in`, `bytes_out`, `duration_ms` at connection
    /// close). Never secrets or record payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Event {
    /// Starts an event stamped with the current time and a fresh [`event_id`](Event::event_id).
    pub fn new(category: Category, action: impl Into<String>, outcome: Outcome) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            seq: None,
            timestamp: format_timestamp(OffsetDateTime::now_utc()),
            event_id: new_event_id(),
            category,
            action: action.into(),
            outcome,
            principal: None,
            roles: Vec::new(),
            mechanism: None,
            tls_identity: None,
            client_addr: None,
            client_id: None,
            listener: None,
            resource: None,
            api: None,
            rule: None,
            error_code: None,
            reason: None,
            details: None,
        }
    }

    /// Sets the authenticated principal.
    #[must_use]
    pub fn principal(mut self, principal: impl Into<String>) -> Event {
        self.principal = Some(principal.into());
        self
    }

    /// Sets the principal's roles (replacing any set before).
    #[must_use]
    pub fn roles<I, S>(mut self, roles: I) -> Event
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the authentication mechanism.
    #[must_use]
    pub fn mechanism(mut self, mechanism: impl Into<String>) -> Event {
        self.mechanism = Some(mechanism.into());
        self
    }

    /// Sets the identity taken from the client's verified TLS certificate.
    #[must_use]
    pub fn tls_identity(mut self, identity: impl Into<String>) -> Event {
        self.tls_identity = Some(identity.into());
        self
    }

    /// Sets the client's address. Accepts anything printable, such as a `SocketAddr`.
    #[must_use]
    pub fn client_addr(mut self, addr: impl ToString) -> Event {
        self.client_addr = Some(addr.to_string());
        self
    }

    /// Sets the Kafka client id. A client chooses it freely (up to 32 KiB), so one longer
    /// than [`MAX_CLIENT_ID_BYTES`] is cut there (at a character boundary, marked with `…`)
    /// and the SHA-256 of the whole id goes into `details.client_id_sha256` (with its length
    /// in `details.client_id_bytes`), so events stay small and the full id can still be
    /// matched. For many events of one request, prepare it once ([`ClientId`]).
    #[must_use]
    pub fn client_id(self, client_id: impl Into<String>) -> Event {
        self.prepared_client_id(&ClientId::new(client_id.into()))
    }

    /// Sets a client id prepared (cut and hashed) once; see [`Event::client_id`].
    #[must_use]
    pub fn prepared_client_id(mut self, client_id: &ClientId) -> Event {
        self.client_id = Some(client_id.kept.clone());
        match &client_id.digest {
            Some(digest) => self
                .detail("client_id_sha256", digest.clone())
                .detail("client_id_bytes", client_id.bytes as u64),
            None => self,
        }
    }

    /// Sets the listener the client connected to.
    #[must_use]
    pub fn listener(mut self, listener: impl Into<String>) -> Event {
        self.listener = Some(listener.into());
        self
    }

    /// Sets the resource the action touched.
    #[must_use]
    pub fn resource(mut self, resource_type: impl Into<String>, name: impl Into<String>) -> Event {
        self.resource = Some(Resource {
            resource_type: resource_type.into(),
            name: name.into(),
        });
        self
    }

    /// Sets the Kafka request the event is about.
    #[must_use]
    pub fn api(
        mut self,
        key: i16,
        name: impl Into<String>,
        version: i16,
        correlation_id: i32,
    ) -> Event {
        self.api = Some(ApiRef {
            key,
            name: name.into(),
            version,
            correlation_id,
        });
        self
    }

    /// Sets the policy rule that decided the action.
    #[must_use]
    pub fn rule(mut self, rule: impl Into<String>) -> Event {
        self.rule = Some(rule.into());
        self
    }

    /// Sets the Kafka error code returned to the client.
    #[must_use]
    pub fn error_code(mut self, code: i16) -> Event {
        self.error_code = Some(code);
        self
    }

    /// Sets the human-readable reason.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }

    /// Adds one entry to `details` (replacing an entry with the same key).
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Event {
        self.details
            .get_or_insert_with(serde_json::Map::new)
            .insert(key.into(), value.into());
        self
    }
}

/// The current time in the event timestamp format.
pub(crate) fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 in UTC with exactly three fractional digits and a `Z` suffix.
fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Returns a fresh event id: 128 bits as 32 lowercase hex digits.
///
/// The high 64 bits are a per-process tag: a SipHash, keyed with the standard library's
/// randomly seeded [`RandomState`], of the process id and the process start time in
/// nanoseconds. The low 64 bits are a process-wide counter passed through a bijective mixer, so
/// no two ids from one process are ever equal, and ids from different processes collide only if
/// their 64-bit tags do.
///
/// The ids are unique, not secret: they are not suitable as tokens or nonces.
pub fn new_event_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = process_tag();
    // Offsetting by the tag keeps equal counters in different processes from mixing to the
    // same low half; `mix64` is a bijection, so distinct counters stay distinct.
    let low = mix64(n.wrapping_add(tag));
    format!("{tag:016x}{low:016x}")
}

fn process_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(|| {
        let start_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut hasher = RandomState::new().build_hasher();
        "portcullis-audit-event-id".hash(&mut hasher);
        std::process::id().hash(&mut hasher);
        start_nanos.hash(&mut hasher);
        hasher.finish()
    })
}

/// The splitmix64 finalizer: a bijection on `u64` that spreads every input bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn full_event() -> Event {
        Event::new(Category::Authz, "authz.request", Outcome::Deny)
            .principal("alice")
            .roles(["reader", "auditor"])
            .mechanism("SCRAM-SHA-256")
            .tls_identity("CN=alice,O=Example")
            .client_addr("192.0.2.1:5000")
            .client_id("rdkafka")
            .listener("plain-9092")
            .resource("topic", "payments")
            .api(0, "Produce", 9, 42)
            .rule("p, reader, topic:payments, read")
            .error_code(29)
            .reason("principal may not write to topic payments")
            .detail("bytes_in", 1234u64)
            .detail("partial", true)
    }

    #[test]
    fn long_client_ids_are_cut_and_hashed() {
        let short = Event::new(Category::Authz, "a", Outcome::Deny).client_id("rdkafka");
        assert_eq!(short.client_id.as_deref(), Some("rdkafka"));
        assert!(short.details.is_none());
        let long = "é".repeat(16_000); // 32,000 bytes, two per character
        let e = Event::new(Category::Authz, "a", Outcome::Deny).client_id(long.clone());
        let kept = e.client_id.clone().unwrap();
        assert!(
            kept.len() <= MAX_CLIENT_ID_BYTES + '…'.len_utf8(),
            "{}",
            kept.len()
        );
        assert!(long.starts_with(kept.trim_end_matches('…')));
        let details = e.details.unwrap();
        assert_eq!(details["client_id_bytes"], 32_000);
        assert_eq!(details["client_id_sha256"], hex_digest(long.as_bytes()));
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn round_trips_through_serde() {
        let event = full_event();
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);

        let minimal = Event::new(Category::AuditSystem, "audit.dropped", Outcome::Error);
        let json = serde_json::to_string(&minimal).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, minimal);
    }

    #[test]
    fn serialized_names_and_omitted_fields() {
        let minimal = Event::new(Category::AuditSystem, "audit.dropped", Outcome::Error);
        let value = serde_json::to_value(&minimal).unwrap();
        let obj = value.as_object().unwrap();
        assert_eq!(obj["category"], "audit-system");
        assert_eq!(obj["outcome"], "error");
        assert_eq!(obj["schema_version"], SCHEMA_VERSION);
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "action",
                "category",
                "event_id",
                "outcome",
                "schema_version",
                "timestamp"
            ]
        );

        let full = serde_json::to_value(full_event()).unwrap();
        assert_eq!(full["resource"]["resource_type"], "topic");
        assert_eq!(full["api"]["correlation_id"], 42);
        assert_eq!(full["roles"][1], "auditor");
        assert_eq!(full["details"]["bytes_in"], 1234);
    }

    #[test]
    fn category_and_outcome_names_match_serde() {
        for c in [
            Category::Connection,
            Category::Authn,
            Category::Authz,
            Category::Admin,
            Category::Config,
            Category::Key,
            Category::AuditSystem,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for o in [
            Outcome::Allow,
            Outcome::Deny,
            Outcome::Success,
            Outcome::Failure,
            Outcome::Error,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }

    #[test]
    fn timestamp_is_rfc3339_utc_millis() {
        let ts = Event::new(Category::Config, "config.load", Outcome::Success).timestamp;
        // 2025-01-31T12:34:56.789Z
        assert_eq!(ts.len(), 24, "{ts}");
        let b = ts.as_bytes();
        for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            assert_eq!(b[i], c, "{ts}");
        }
        assert_eq!(b[19], b'.', "{ts}");
        assert_eq!(b[23], b'Z', "{ts}");

        let fixed = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_007_000_000).unwrap();
        assert_eq!(format_timestamp(fixed), "2023-11-14T22:13:20.007Z");
    }

    #[test]
    fn event_ids_are_unique() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_event_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn event_ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_500).map(|_| new_event_id()).collect::<Vec<_>>()))
            .collect();
        let mut ids = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(ids.insert(id));
            }
        }
        assert_eq!(ids.len(), 10_000);
    }
}
