//! What a librdkafka client saw: its log and every broker address it learned.
//!
//! The proxy's core promise is that clients only ever learn proxy addresses, whichever
//! response carried the broker's (Metadata, FindCoordinator, DescribeCluster, ...).
//! librdkafka's statistics list every broker handle a client holds, including the group
//! coordinator, so a [`RecordingContext`] collects their addresses (and the client's log
//! lines, printed when a test fails) and the `assert_*_addresses` functions check them
//! against an [`Endpoint`]'s rules.

use crate::endpoint::{Endpoint, TokenSource};
use crate::kafka::{Client, FetchMetadata};
use crate::{with_timeout, OP_TIMEOUT};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many librdkafka log lines a client keeps for failure output.
const LOG_LINES: usize = 400;

#[derive(Debug, Default)]
struct ObservedState {
    label: String,
    stats_count: u64,
    brokers: BTreeSet<String>,
    log: VecDeque<String>,
}

impl Drop for ObservedState {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.log.is_empty() {
            eprintln!(
                "----- librdkafka log of {} (last {} lines) -----",
                self.label,
                self.log.len()
            );
            for line in &self.log {
                eprintln!("{line}");
            }
            eprintln!("----- end of librdkafka log of {} -----", self.label);
        }
    }
}

/// What a client saw: broker addresses from its statistics, and its log.
#[derive(Debug, Clone, Default)]
pub struct Observed(Arc<Mutex<ObservedState>>);

impl Observed {
    /// A fresh record for a client called `label` in failure output.
    pub fn new(label: &str) -> Self {
        let o = Self::default();
        o.lock().label = label.to_string();
        o
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObservedState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push_log(&self, line: String) {
        let mut s = self.lock();
        if s.log.len() == LOG_LINES {
            s.log.pop_front();
        }
        s.log.push_back(line);
    }

    /// Number of statistics reports received so far.
    pub fn stats_count(&self) -> u64 {
        self.lock().stats_count
    }

    /// Every `host:port` the client has known a broker by (bootstrap, learned from
    /// Metadata, or the group coordinator).
    pub fn brokers(&self) -> BTreeSet<String> {
        self.lock().brokers.clone()
    }

    /// The client's recent log lines.
    pub fn log_lines(&self) -> Vec<String> {
        self.lock().log.iter().cloned().collect()
    }

    /// Waits for two statistics reports newer than now (so they reflect everything the
    /// client did before the call), then panics if any broker address the client ever
    /// knew breaks `ep`'s rules. A no-op for endpoints without rules.
    ///
    /// Statistics are delivered only while the client's queue is polled: producers poll in a
    /// background thread, so this is for producers. Consumers use
    /// [`assert_consumer_addresses`]; admin clients never deliver statistics, see
    /// [`assert_metadata_addresses`].
    pub async fn assert_addresses(&self, ep: &Endpoint, context: &str) {
        if ep.rules.is_none() {
            return;
        }
        let target = self.stats_count() + 2;
        with_timeout(
            Duration::from_secs(10),
            &format!("{context}: statistics"),
            async {
                while self.stats_count() < target {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        self.check_brokers(ep, context);
    }

    fn check_brokers(&self, ep: &Endpoint, context: &str) {
        let Some(rules) = &ep.rules else { return };
        let brokers = self.brokers();
        assert!(
            !brokers.is_empty(),
            "{context}: client statistics named no broker at all"
        );
        for addr in &brokers {
            if let Err(e) = rules.check_addr(addr) {
                panic!("{context}: client learned broker address {addr}: {e} (all: {brokers:?})");
            }
        }
    }
}

/// Whether a consumer may receive more records while it is polled for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// More records may be pending (the consumer stopped half-way on purpose).
    Allowed,
    /// The consumer read everything there is: any further record is a duplicate or an
    /// unexpected write, and fails the test.
    Forbidden,
}

/// Like [`Observed::assert_addresses`] for a consumer: polls it (statistics only arrive
/// during polls) until two fresh statistics reports came, then checks the addresses. With
/// [`Extra::Forbidden`] any record received meanwhile fails the test. Runs even without
/// address rules when `extra` is `Forbidden`, as a bounded "nothing more to read" check.
pub async fn assert_consumer_addresses(
    consumer: &Client<StreamConsumer<RecordingContext>>,
    ep: &Endpoint,
    context: &str,
    extra: Extra,
) {
    if ep.rules.is_none() && extra == Extra::Allowed {
        return;
    }
    let target = consumer.observed.stats_count() + 2;
    with_timeout(Duration::from_secs(10), &format!("{context}: statistics"), async {
        while consumer.observed.stats_count() < target {
            match tokio::time::timeout(Duration::from_millis(50), consumer.recv()).await {
                Err(_) => {}
                Ok(Ok(m)) if extra == Extra::Forbidden => panic!(
                    "{context}: an unexpected extra record at {}/{} offset {} (duplicate or stray write)",
                    m.topic(),
                    m.partition(),
                    m.offset()
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("{context}: consumer error: {e}"),
            }
        }
    })
    .await;
    consumer.observed.check_brokers(ep, context);
}

/// Checks the brokers in a fresh Metadata answer against `ep`'s rules (for admin clients,
/// which deliver no statistics).
pub fn assert_metadata_addresses(client: &impl FetchMetadata, ep: &Endpoint, context: &str) {
    let Some(rules) = &ep.rules else { return };
    let md = client
        .metadata(None, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{context}: metadata: {e}"));
    assert!(
        !md.brokers().is_empty(),
        "{context}: metadata lists no brokers"
    );
    for b in md.brokers() {
        if let Err(e) = rules.check(b.host(), b.port() as u16) {
            panic!("{context}: metadata broker {}: {e}", b.id());
        }
    }
}

/// Client context that records logs and broker addresses into an [`Observed`], and hands
/// out OAUTHBEARER tokens when the client uses that mechanism.
#[derive(Clone)]
pub struct RecordingContext {
    observed: Observed,
    tokens: Option<TokenSource>,
}

impl std::fmt::Debug for RecordingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingContext")
            .field("observed", &self.observed)
            .field("tokens", &self.tokens.is_some())
            .finish()
    }
}

impl RecordingContext {
    /// A context recording into `observed`.
    pub fn new(observed: Observed) -> Self {
        Self {
            observed,
            tokens: None,
        }
    }

    /// The same context handing out OAUTHBEARER tokens from `tokens`.
    pub fn with_tokens(self, tokens: TokenSource) -> Self {
        Self {
            tokens: Some(tokens),
            ..self
        }
    }
}

impl ClientContext for RecordingContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self
            .tokens
            .as_ref()
            .ok_or("this client has no OAUTHBEARER token source")?;
        let token = tokens();
        let claims = crate::auth::unverified_claims(&token)?;
        Ok(rdkafka::client::OAuthToken {
            principal_name: claims
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown")
                .to_string(),
            lifetime_ms: claims
                .get("exp")
                .and_then(|e| e.as_i64())
                .map(|e| e * 1000)
                .ok_or("token has no exp")?,
            token,
        })
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.observed
            .push_log(format!("{level:?} {fac} {log_message}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let mut s = self.observed.lock();
        if let Some(brokers) = v.get("brokers").and_then(|b| b.as_object()) {
            for b in brokers.values() {
                let nodename = b.get("nodename").and_then(|n| n.as_str()).unwrap_or("");
                let source = b.get("source").and_then(|n| n.as_str()).unwrap_or("");
                if !nodename.is_empty() && source != "internal" {
                    s.brokers.insert(nodename.to_string());
                }
            }
        }
        s.stats_count += 1;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.observed.push_log(format!("ERROR {error}: {reason}"));
    }
}

impl ConsumerContext for RecordingContext {}
