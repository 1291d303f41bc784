//! Authorization at run time: the loaded policies, their hot reload, and each connection's
//! view of them (a decision cache per policy generation, metrics and audit events).

pub mod request;
pub mod reserved;
pub mod response;
pub mod stage;
pub mod topic_id;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, TopicName};
use portcullis_audit::{AuditSink, Category, ClientId, Event, Outcome};
use portcullis_auth::Principal;
use portcullis_policy::{Authorizer, Decision, Operation, ReloadEvent, ResourceType};

use crate::authn::ClientInfo;
use crate::cluster::topic_ids::TopicIds;
#[cfg(test)]
use crate::config::authz::OnReloadFailure;
use crate::config::authz::{AuditAllows, AuthorizationConfig};
use crate::metrics::decision_series;
use crate::pipeline::authz::request::Permissions;
use crate::pipeline::authz::reserved::ReservedTopics;
use crate::pipeline::authz::topic_id::IdMismatch;

/// Metric: policy reloads by outcome.
pub const POLICY_RELOADS: &str = "portcullis_policy_reloads_total";
/// Metric: the generation of the policy in force.
pub const POLICY_GENERATION: &str = "portcullis_policy_generation";
/// Metric: 1 while the last policy reload failed (the policy on disk is not in force: the
/// last good one is, or under `on_reload_failure = "deny_all"` nothing is allowed), else 0.
pub const POLICY_DEGRADED: &str = "portcullis_policy_degraded";

/// The principal of connections on listeners without authentication, as in Kafka.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Entries a connection caches before it starts over.
const MAX_CACHED_DECISIONS: usize = 4096;

/// The proxy's authorizer: policies in force plus what decisions are audited.
pub struct AuthzService {
    authorizer: Authorizer,
    audit: Arc<dyn AuditSink>,
    audit_allows: AuditAllows,
    allow_window: Duration,
    /// Topics no client may change, whatever the policy says.
    reserved: ReservedTopics,
    /// The cluster's topic ids, to authorize topics named by id by their real name.
    topic_ids: Arc<TopicIds>,
}

impl std::fmt::Debug for AuthzService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzService")
            .field("generation", &self.authorizer.generation())
            .field("audit_allows", &self.audit_allows)
            .finish_non_exhaustive()
    }
}

impl AuthzService {
    /// Loads the policies (failing if they do not load) and starts watching them.
    pub fn start(
        config: &AuthorizationConfig,
        audit: Arc<dyn AuditSink>,
    ) -> anyhow::Result<Arc<AuthzService>> {
        AuthzService::start_with_reserved(config, audit, ReservedTopics::default())
    }

    /// [`AuthzService::start`], refusing changes to the `reserved` topics before the policy
    /// is consulted (see [`reserved`]).
    pub fn start_with_reserved(
        config: &AuthorizationConfig,
        audit: Arc<dyn AuditSink>,
        reserved: ReservedTopics,
    ) -> anyhow::Result<Arc<AuthzService>> {
        AuthzService::start_with(config, audit, reserved, Arc::new(TopicIds::new()))
    }

    /// [`AuthzService::start_with_reserved`], resolving topic ids through `topic_ids` (the
    /// cluster view's map, which this enables). Without it every id is unknown.
    pub fn start_with(
        config: &AuthorizationConfig,
        audit: Arc<dyn AuditSink>,
        reserved: ReservedTopics,
        topic_ids: Arc<TopicIds>,
    ) -> anyhow::Result<Arc<AuthzService>> {
        topic_ids.enable();
        let authorizer = Authorizer::load(&config.policy_config()).map_err(|e| {
            anyhow::anyhow!(
                "authorization.policy_dir {}: {e}",
                config.policy_dir.display()
            )
        })?;
        audit.emit(
            Event::new(Category::Config, "policy.load", Outcome::Success)
                .detail("generation", authorizer.generation())
                .detail("policy_dir", config.policy_dir.display().to_string()),
        );
        metrics::gauge!(POLICY_GENERATION).set(authorizer.generation() as f64);
        metrics::gauge!(POLICY_DEGRADED).set(0.0);
        let service = Arc::new(AuthzService {
            authorizer,
            audit,
            audit_allows: config.audit_allows,
            allow_window: config.audit_allows_window(),
            reserved,
            topic_ids,
        });
        let watcher = service.clone();
        service
            .authorizer
            .spawn_watcher(move |event| watcher.record_reload(&event, "watch"));
        Ok(service)
    }

    /// The policy engine (for its degraded state: `/readyz`).
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Re-reads the policies now (SIGHUP).
    pub fn reload(&self, trigger: &'static str) {
        let event = self.authorizer.reload();
        self.record_reload(&event, trigger);
    }

    fn record_reload(&self, event: &ReloadEvent, trigger: &'static str) {
        let outcome = if event.accepted {
            "accepted"
        } else {
            "rejected"
        };
        metrics::counter!(POLICY_RELOADS, "outcome" => outcome).increment(1);
        let mut audit = Event::new(
            Category::Config,
            "policy.reload",
            if event.accepted {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .detail("trigger", trigger)
        .detail("generation", event.generation)
        .detail("rules", event.rules as u64);
        let degraded = self.authorizer.degraded();
        metrics::gauge!(POLICY_DEGRADED).set(if degraded.is_some() { 1.0 } else { 0.0 });
        if let Some(d) = &degraded {
            audit = audit.detail("on_reload_failure", d.mode.as_str());
        }
        match &event.error {
            None => {
                metrics::gauge!(POLICY_GENERATION).set(event.generation as f64);
                tracing::info!(
                    generation = event.generation,
                    rules = event.rules,
                    trigger,
                    "policy reloaded"
                );
            }
            Some(error) if self.authorizer.denies_all() => {
                tracing::error!(%error, trigger, generation = event.generation, "policy change rejected; every request is DENIED until a reload succeeds (authorization.on_reload_failure = \"deny_all\")");
                audit = audit.reason(error.to_string());
            }
            Some(error) => {
                tracing::warn!(%error, trigger, generation = event.generation, "policy change rejected; the last good policy stays in force");
                audit = audit.reason(error.to_string());
            }
        }
        self.audit.emit(audit);
    }

    /// A connection's view of the policies. `audited` is false for the response side,
    /// whose filtering of listings is not a denied request.
    pub fn connection(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        client: &ClientInfo,
        audited: bool,
    ) -> ConnectionPermissions {
        let (name, roles) = match principal {
            Some(p) => (p.kafka_name(), p.roles.clone()),
            None => (ANONYMOUS.to_string(), Vec::new()),
        };
        ConnectionPermissions {
            service: self.clone(),
            principal: name,
            roles,
            client: client.clone(),
            generation: self.authorizer.generation(),
            denies_all: self.authorizer.denies_all(),
            cache: HashMap::new(),
            cached: 0,
            request: None,
            audited,
            quiet_denies: false,
        }
    }
}

/// The request being authorized, for audit events.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Api key.
    pub api: ApiKey,
    /// Api version.
    pub version: i16,
    /// Correlation id.
    pub correlation_id: i32,
    /// Client id from the request header.
    pub client_id: Option<ClientId>,
}

struct Cached {
    decision: Decision,
    counter: std::sync::Arc<decision_series::Series>,
    /// Data-path allows audited in aggregate (`audit_allows = "all"`), once the first was.
    allows: Option<AllowWindow>,
    /// Denials audited in aggregate: the first at once, then one event per window.
    denies: Option<AllowWindow>,
}

/// Allows counted since the last aggregate event of one cache entry.
struct AllowWindow {
    since: Instant,
    count: u64,
}

/// One connection's decisions: cached per (resource, operation, name) for the current
/// policy generation, counted in metrics, denies audited.
pub struct ConnectionPermissions {
    service: Arc<AuthzService>,
    principal: String,
    roles: Vec<String>,
    client: ClientInfo,
    generation: u64,
    /// Whether the cache was filled while a failed reload denied everything.
    denies_all: bool,
    /// Keyed by (resource type, operation), then name, so a hit needs no allocation.
    cache: HashMap<(ResourceType, Operation), HashMap<Box<str>, Cached>>,
    cached: usize,
    request: Option<RequestContext>,
    audited: bool,
    /// Set while [`Permissions::probe`] asks: a denial only chooses a path and is not
    /// written (as in Kafka); an allow is audited like any other.
    quiet_denies: bool,
}

impl ConnectionPermissions {
    /// Sets the request the next decisions belong to.
    pub fn begin_request(&mut self, request: RequestContext) {
        self.request = Some(request);
    }

    /// The principal decisions are made for.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    fn is_admin_request(&self) -> bool {
        self.request.as_ref().is_some_and(|r| is_admin_api(r.api))
    }

    fn event(
        &self,
        outcome: Outcome,
        resource: ResourceType,
        name: &str,
        op: Operation,
        rule: &str,
    ) -> Event {
        let action = match &self.request {
            Some(r) => format!("kafka.{:?}", r.api),
            None => "kafka.request".to_string(),
        };
        let mut event = Event::new(Category::Authz, action, outcome)
            .principal(self.principal.clone())
            .roles(self.roles.iter().cloned())
            .client_addr(self.client.peer)
            .listener(self.client.listener.clone())
            .resource(resource.as_str(), name)
            .detail("operation", op.as_str())
            .rule(rule);
        if let Some(r) = &self.request {
            event = event.api(
                r.api as i16,
                format!("{:?}", r.api),
                r.version,
                r.correlation_id,
            );
            if let Some(id) = &r.client_id {
                event = event.prepared_client_id(id);
            }
        }
        if let Some(id) = &self.client.tls_identity {
            event = event.tls_identity(id.subject.clone());
        }
        event
    }
}

impl Permissions for ConnectionPermissions {
    fn allows(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
        let generation = self.service.authorizer.generation();
        let denies_all = self.service.authorizer.denies_all();
        if generation != self.generation
            || denies_all != self.denies_all
            || self.cached >= MAX_CACHED_DECISIONS
        {
            self.flush_allow_windows();
            self.cache.clear();
            self.cached = 0;
            self.generation = generation;
            self.denies_all = denies_all;
        }
        let admin = self.is_admin_request();
        let audit_all = self.service.audit_allows == AuditAllows::All;
        let audit_admin = self.service.audit_allows != AuditAllows::None;
        let names = self.cache.entry((resource, op)).or_default();
        if !names.contains_key(name) {
            let decision = match self.service.reserved.refusal(resource, name, op) {
                Some(rule) => Decision {
                    allowed: false,
                    rule: rule.into(),
                },
                None => self.service.authorizer.authorize(
                    &self.principal,
                    &self.roles,
                    resource,
                    name,
                    op,
                ),
            };
            // Client-controlled labels are capped and idle series expire (see
            // `metrics::decision_series`).
            let counter = decision_series::series(
                &self.principal,
                resource.as_str(),
                name,
                op.as_str(),
                decision.allowed,
            );
            names.insert(
                name.into(),
                Cached {
                    decision,
                    counter,
                    allows: None,
                    denies: None,
                },
            );
            self.cached += 1;
        }
        let Some(entry) = names.get_mut(name) else {
            return false;
        };
        entry.counter.increment(1);
        let allowed = entry.decision.allowed;
        if !self.audited {
            return allowed;
        }
        let rule = entry.decision.rule.clone();
        if !allowed && self.quiet_denies {
            return false;
        }
        if !allowed {
            tracing::debug!(principal = %self.principal, resource = %resource, name, operation = %op, rule = %rule, "denied");
            // Aggregated like allows: the first at once, then a count per window.
            let window = self.service.allow_window;
            if let Some(count) = count_allow(&mut entry.denies, window) {
                let event = self
                    .event(Outcome::Deny, resource, name, op, &rule)
                    .detail("denied_requests", count);
                self.service.audit.emit(event);
            }
        } else if admin && audit_admin {
            let event = self.event(Outcome::Allow, resource, name, op, &rule);
            self.service.audit.emit(event);
        } else if audit_all {
            let window = self.service.allow_window;
            if let Some(count) = count_allow(&mut entry.allows, window) {
                let event = self
                    .event(Outcome::Allow, resource, name, op, &rule)
                    .detail("allowed_requests", count);
                self.service.audit.emit(event);
            }
        }
        allowed
    }

    fn probe(&mut self, resource: ResourceType, name: &str, op: Operation) -> bool {
        self.quiet_denies = true;
        let allowed = self.allows(resource, name, op);
        self.quiet_denies = false;
        allowed
    }

    fn topic_name(&mut self, id: uuid::Uuid) -> Option<TopicName> {
        self.service.topic_ids.name_of(id)
    }

    fn topic_id_mismatches(&mut self, mismatches: &[IdMismatch]) {
        let Some(first) = mismatches.first() else {
            return;
        };
        if !self.audited {
            return;
        }
        tracing::debug!(principal = %self.principal, entries = mismatches.len(), "topic name and id disagree");
        // One event per request: the first entry in full, and how many there were.
        let event = self
            .event(
                Outcome::Deny,
                ResourceType::Topic,
                &first.claimed,
                Operation::Describe,
                topic_id::MISMATCH_RULE,
            )
            .detail("topic_id", first.id.to_string())
            .detail("topic_id_names", first.actual.0.to_string())
            .detail("mismatched_entries", mismatches.len() as u64);
        self.service.audit.emit(event);
    }
}

/// Counts one data-path allow; returns how many allows the event due now reports: 1 for the
/// first allow of an entry, the window's count when the window has elapsed, else nothing.
fn count_allow(allows: &mut Option<AllowWindow>, window: Duration) -> Option<u64> {
    let now = Instant::now();
    match allows {
        None => {
            *allows = Some(AllowWindow {
                since: now,
                count: 0,
            });
            Some(1)
        }
        Some(w) => {
            w.count += 1;
            if now.duration_since(w.since) < window {
                return None;
            }
            let count = std::mem::take(&mut w.count);
            w.since = now;
            Some(count)
        }
    }
}

impl ConnectionPermissions {
    /// Writes the allows and denials counted in open windows (when the cache is emptied and when the
    /// connection ends), so none goes unreported.
    fn flush_allow_windows(&mut self) {
        if !self.audited {
            return;
        }
        let mut pending = Vec::new();
        for ((resource, op), names) in &mut self.cache {
            for (name, cached) in names.iter_mut() {
                let windows = [
                    (Outcome::Allow, cached.allows.as_mut()),
                    (Outcome::Deny, cached.denies.as_mut()),
                ];
                for (outcome, window) in windows {
                    if let Some(w) = window.filter(|w| w.count > 0) {
                        let count = std::mem::take(&mut w.count);
                        pending.push((
                            outcome,
                            *resource,
                            name.to_string(),
                            *op,
                            cached.decision.rule.clone(),
                            count,
                        ));
                    }
                }
            }
        }
        for (outcome, resource, name, op, rule, count) in pending {
            let key = match outcome {
                Outcome::Deny => "denied_requests",
                _ => "allowed_requests",
            };
            let event = self
                .event(outcome, resource, &name, op, &rule)
                .detail(key, count);
            self.service.audit.emit(event);
        }
    }
}

impl Drop for ConnectionPermissions {
    fn drop(&mut self) {
        self.flush_allow_windows();
    }
}

/// Administrative apis, whose allows are audited under `audit_allows = "admin"`.
pub fn is_admin_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::DeleteRecords
            | ApiKey::DeleteGroups
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::DescribeCluster
            | ApiKey::InitProducerId
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use portcullis_audit::MemorySink;
    use std::path::Path;

    fn service(audit_allows: AuditAllows, window_ms: u64) -> (Arc<AuthzService>, Arc<MemorySink>) {
        service_with(
            audit_allows,
            window_ms,
            Vec::new(),
            ReservedTopics::default(),
        )
    }

    fn service_with(
        audit_allows: AuditAllows,
        window_ms: u64,
        super_users: Vec<String>,
        reserved: ReservedTopics,
    ) -> (Arc<AuthzService>, Arc<MemorySink>) {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/model.conf"),
            dir.join("model.conf"),
        )
        .unwrap();
        std::fs::write(
            dir.join("rules.csv"),
            "p, User:ANONYMOUS, topic, orders, Write, allow\n",
        )
        .unwrap();
        let sink = Arc::new(MemorySink::new());
        let config = AuthorizationConfig {
            policy_dir: dir,
            super_users,
            reload_ms: 500,
            audit_allows,
            audit_allows_window_ms: window_ms,
            on_reload_failure: OnReloadFailure::DenyAll,
        };
        let service = AuthzService::start_with_reserved(&config, sink.clone(), reserved).unwrap();
        sink.take();
        (service, sink)
    }

    fn produce_allows(perms: &mut ConnectionPermissions, n: usize) {
        for i in 0..n {
            perms.begin_request(RequestContext {
                api: ApiKey::Produce,
                version: 9,
                correlation_id: i as i32,
                client_id: None,
            });
            assert!(perms.allows(ResourceType::Topic, "orders", Operation::Write));
        }
    }

    fn client() -> ClientInfo {
        ClientInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            listener: "bootstrap".into(),
            tls_identity: None,
        }
    }

    fn allowed_counts(sink: &MemorySink) -> Vec<u64> {
        sink.take()
            .iter()
            .filter(|e| e.outcome == Outcome::Allow)
            .map(|e| {
                e.details
                    .as_ref()
                    .and_then(|d| d.get("allowed_requests"))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn data_path_allows_are_aggregated_and_none_is_lost() {
        let (service, sink) = service(AuditAllows::All, 3_600_000);
        let mut perms = service.connection(None, &client(), true);
        produce_allows(&mut perms, 5);
        assert_eq!(
            allowed_counts(&sink),
            [1],
            "the first allow is written at once"
        );
        drop(perms);
        assert_eq!(
            allowed_counts(&sink),
            [4],
            "the rest when the connection ends"
        );
    }

    #[tokio::test]
    async fn an_elapsed_window_writes_its_count() {
        let (service, sink) = service(AuditAllows::All, 0);
        let mut perms = service.connection(None, &client(), true);
        produce_allows(&mut perms, 3);
        assert_eq!(allowed_counts(&sink), [1, 1, 1]);
        drop(perms);
        assert!(allowed_counts(&sink).is_empty());
    }

    #[tokio::test]
    async fn data_path_allows_are_not_written_under_admin() {
        let (service, sink) = service(AuditAllows::Admin, 1_000);
        let mut perms = service.connection(None, &client(), true);
        produce_allows(&mut perms, 3);
        drop(perms);
        assert!(allowed_counts(&sink).is_empty());
    }

    #[tokio::test]
    async fn the_anchor_topic_is_read_only_for_clients_even_super_users() {
        let mut reserved = ReservedTopics::default();
        reserved.reserve("__anchor", reserved::ANCHOR_TOPIC_RULE);
        let (service, sink) = service_with(
            AuditAllows::None,
            1_000,
            vec![ANONYMOUS.to_string()],
            reserved,
        );
        let mut perms = service.connection(None, &client(), true);
        for op in reserved::REFUSED_OPERATIONS {
            assert!(
                !perms.allows(ResourceType::Topic, "__anchor", op),
                "{op} on the anchor topic"
            );
        }
        assert!(perms.allows(ResourceType::Topic, "__anchor", Operation::Read));
        assert!(perms.allows(ResourceType::Topic, "__anchor", Operation::Describe));
        assert!(perms.allows(ResourceType::Topic, "orders", Operation::Write));

        // Through the request code: a Produce is answered TOPIC_AUTHORIZATION_FAILED.
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ProduceRequest, RequestKind, ResponseKind, TopicName};
        let mut produce: RequestKind = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName("__anchor".into()))
                .with_partition_data(vec![PartitionProduceData::default()])])
            .into();
        let verdict = request::authorize_request(&mut produce, 9, &mut perms);
        let request::Action::Answer(answer) = verdict.action else {
            panic!("forwarded: {:?}", verdict.action);
        };
        let ResponseKind::Produce(answer) = *answer else {
            panic!()
        };
        assert_eq!(
            answer.responses[0].partition_responses[0].error_code,
            kafka_protocol::ResponseError::TopicAuthorizationFailed.code()
        );
        drop(perms);
        let denies: Vec<_> = sink
            .take()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Deny)
            .collect();
        assert_eq!(denies.len(), 5, "{denies:?}");
        assert!(
            denies
                .iter()
                .all(|e| e.rule.as_deref() == Some(reserved::ANCHOR_TOPIC_RULE)),
            "{denies:?}"
        );
    }

    #[tokio::test]
    async fn repeated_denials_are_aggregated_per_name_and_operation() {
        let (service, sink) = service(AuditAllows::None, 60_000);
        let mut perms = service.connection(None, &client(), true);
        for _ in 0..100 {
            assert!(!perms.allows(ResourceType::Topic, "secret", Operation::Read));
        }
        assert!(!perms.allows(ResourceType::Topic, "other-secret", Operation::Read));
        let denied = |sink: &MemorySink| -> Vec<u64> {
            sink.take()
                .iter()
                .filter(|e| e.outcome == Outcome::Deny)
                .map(|e| {
                    e.details.as_ref().unwrap()["denied_requests"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        // The first denial of each name at once, with a count of 1.
        assert_eq!(denied(&sink), [1, 1]);
        // The 99 counted since are written when the connection ends.
        drop(perms);
        assert_eq!(denied(&sink), [99]);
    }

    #[tokio::test]
    async fn a_broken_reload_under_deny_all_denies_cached_allows_until_a_good_one() {
        let (service, sink) = service(AuditAllows::None, 1_000);
        let dir = service.authorizer().config().dir.clone();
        let mut perms = service.connection(None, &client(), true);
        assert!(perms.allows(ResourceType::Topic, "orders", Operation::Write));

        std::fs::write(
            dir.join("rules.csv"),
            "p, User:ANONYMOUS, topic, orders, Scribble, allow\n",
        )
        .unwrap();
        service.reload("test");
        assert!(service.authorizer().degraded().is_some());
        assert!(
            !perms.allows(ResourceType::Topic, "orders", Operation::Write),
            "a cached allow survived a deny_all degradation"
        );
        let events = sink.take();
        let reload = events.iter().find(|e| e.action == "policy.reload").unwrap();
        assert_eq!(reload.outcome, Outcome::Failure);
        let deny = events.iter().find(|e| e.outcome == Outcome::Deny).unwrap();
        assert_eq!(
            deny.rule.as_deref(),
            Some(portcullis_policy::DENY_ALL_RULE),
            "{deny:?}"
        );

        std::fs::write(
            dir.join("rules.csv"),
            "p, User:ANONYMOUS, topic, orders, Write, allow\n",
        )
        .unwrap();
        service.reload("test");
        assert!(service.authorizer().degraded().is_none());
        assert!(perms.allows(ResourceType::Topic, "orders", Operation::Write));
    }
}
