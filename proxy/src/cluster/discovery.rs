//! The proxy's own view of the upstream cluster: which api versions it serves and which
//! brokers exist.
//!
//! A background task asks a bootstrap broker for ApiVersions and Metadata at start-up and
//! every `metadata_refresh_ms`. New brokers get listeners (through the `BrokerMap`); the
//! negotiated api versions are what the proxy answers ApiVersions with. Readiness (`/readyz`)
//! follows whether the last refresh reached the cluster.
//!
//! While authorization resolves topic ids ([`TopicIds::enabled`]), each refresh also lists
//! every topic with its id (Metadata v10+) into the view's [`TopicIds`]; an unknown id met
//! by a connection wakes the task early, at most once per [`ON_DEMAND_MIN_INTERVAL`]. A
//! listing that fails keeps the last good map and does not affect readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use tokio::sync::watch;

use crate::cluster::api_versions::Negotiated;
use crate::cluster::broker_map::BrokerMap;
use crate::cluster::topic_ids::{TopicIds, ON_DEMAND_MIN_INTERVAL};
use crate::net::upstream::{Connector, KafkaClient, UpstreamError};

/// Shared, always-current cluster view.
#[derive(Debug)]
pub struct ClusterView {
    negotiated: watch::Sender<Option<Arc<Negotiated>>>,
    ready: Arc<AtomicBool>,
    topic_ids: Arc<TopicIds>,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterView {
    /// A view that knows nothing yet (not ready).
    pub fn new() -> Self {
        Self {
            negotiated: watch::Sender::new(None),
            ready: Arc::new(AtomicBool::new(false)),
            topic_ids: Arc::new(TopicIds::new()),
        }
    }

    /// The cluster's topic ids (id -> name), as the last listing saw them.
    pub fn topic_ids(&self) -> Arc<TopicIds> {
        self.topic_ids.clone()
    }

    /// The readiness flag the admin listener reports.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The current negotiated versions, waiting up to `wait` for the first successful
    /// refresh. `None` means the cluster has not answered: the caller must refuse.
    pub async fn negotiated(&self, wait: Duration) -> Option<Arc<Negotiated>> {
        if let Some(n) = self.negotiated.borrow().as_ref() {
            return Some(n.clone());
        }
        let mut rx = self.negotiated.subscribe();
        let got = tokio::time::timeout(wait, rx.wait_for(|n| n.is_some())).await;
        match got {
            Ok(Ok(n)) => n.clone(),
            _ => None,
        }
    }

    /// Publishes a fresh negotiation result.
    pub fn publish(&self, negotiated: Negotiated) {
        let changed = self
            .negotiated
            .borrow()
            .as_deref()
            .is_none_or(|old| *old != negotiated);
        if changed {
            self.negotiated.send_replace(Some(Arc::new(negotiated)));
        }
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Marks the cluster unreachable (readiness only; the last versions stay in use).
    pub fn mark_unreachable(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}

/// Metadata versions from which a topic listing carries topic ids.
const TOPIC_IDS_FROM_VERSION: i16 = 10;

/// Asks the cluster once for api versions and brokers; registers every broker; lists the
/// topics with their ids into `topic_ids` when it is enabled.
pub async fn refresh_once(
    connector: &Connector,
    brokers: &BrokerMap,
    topic_ids: &TopicIds,
    max_response: usize,
    timeout: Duration,
) -> Result<Negotiated, UpstreamError> {
    let stream = connector.connect_bootstrap().await?;
    let mut client = KafkaClient::new(stream, max_response, timeout);
    let versions = client.api_versions().await?;
    let negotiated = Negotiated::from_response(&versions);
    let metadata_version = negotiated
        .range(ApiKey::Metadata)
        .ok_or_else(|| UpstreamError::Protocol("cluster offers no usable Metadata version".into()))?
        .max;
    let request = MetadataRequest::default().with_topics(Some(Vec::new()));
    let metadata: MetadataResponse = client
        .call(ApiKey::Metadata, metadata_version, &request)
        .await?;
    for b in &metadata.brokers {
        if let Err(e) = brokers.proxy_port(b.node_id.0, b.host.as_str(), b.port) {
            tracing::error!(error = %e, "cannot offer broker through the proxy");
        }
    }
    if topic_ids.enabled() && metadata_version >= TOPIC_IDS_FROM_VERSION {
        list_topic_ids(&mut client, metadata_version, topic_ids).await;
    }
    Ok(negotiated)
}

/// Lists every topic with its id into `topic_ids`. A failure keeps the last good map.
async fn list_topic_ids(client: &mut KafkaClient, version: i16, topic_ids: &TopicIds) {
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let listing: Result<MetadataResponse, _> =
        client.call(ApiKey::Metadata, version, &request).await;
    match listing {
        Ok(listing) => {
            let listed = topic_ids.replace_from(&listing);
            tracing::debug!(known = listed.known, "topic ids listed");
        }
        Err(e) => {
            metrics::counter!(crate::metrics::CLUSTER_REFRESHES, "outcome" => "topic_ids_error")
                .increment(1);
            tracing::warn!(error = %e, "cannot list the cluster's topic ids; the last listing stays in use");
        }
    }
}

/// Refreshes forever: quickly (every second) until the cluster first answers, then every
/// `interval`.
pub async fn run_discovery(
    view: Arc<ClusterView>,
    connector: Arc<Connector>,
    brokers: Arc<BrokerMap>,
    interval: Duration,
    max_response: usize,
    timeout: Duration,
) {
    let mut ever_succeeded = false;
    let topic_ids = view.topic_ids();
    loop {
        let started = Instant::now();
        match refresh_once(&connector, &brokers, &topic_ids, max_response, timeout).await {
            Ok(negotiated) => {
                if !ever_succeeded {
                    tracing::info!(
                        brokers = brokers.snapshot().len(),
                        "upstream cluster reached"
                    );
                }
                ever_succeeded = true;
                view.publish(negotiated);
                metrics::counter!(crate::metrics::CLUSTER_REFRESHES, "outcome" => "ok")
                    .increment(1);
            }
            Err(e) => {
                view.mark_unreachable();
                if matches!(e, UpstreamError::Connect { .. } | UpstreamError::Tls { .. }) {
                    metrics::counter!(crate::metrics::UPSTREAM_CONNECT_FAILURES).increment(1);
                }
                metrics::counter!(crate::metrics::CLUSTER_REFRESHES, "outcome" => "error")
                    .increment(1);
                tracing::warn!(error = %e, "cannot refresh the cluster view");
            }
        }
        let pause = if ever_succeeded {
            interval
        } else {
            Duration::from_secs(1).min(interval)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = topic_ids.refresh_wanted() => {
                // An unknown topic id: refresh early, but never more often than this.
                tokio::time::sleep_until((started + ON_DEMAND_MIN_INTERVAL).into()).await;
            }
        }
    }
}
