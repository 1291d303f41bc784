//! The cluster's topic ids as the proxy's own discovery saw them: id -> name.
//!
//! Why: from Metadata v10 on (and in Fetch v13+, Produce v13, OffsetCommit v10,
//! DeleteTopics v6 ...) a request may name a topic by id. The proxy authorizes names, and a
//! broker from Kafka 3.1 on looks a topic up by its id when one is given, ignoring the name
//! next to it. So an id must be turned into the name it stands for *by the proxy*, never by
//! trusting the name the client sent along with it.
//!
//! Only the id -> name direction is kept: a topic id is never reused and a topic cannot be
//! renamed, so once seen, an id names the same topic for ever (a deleted topic's id simply
//! stops being listed). The map is replaced as a whole by every listing the discovery task
//! makes (`ClusterView`), so deleted topics drop out. It holds at most [`MAX_TOPIC_IDS`]
//! entries: the ids of topics beyond the cap are not known to the proxy and are answered as
//! unknown (fail closed), with a warning and the gauge [`TOPIC_IDS_TRUNCATED`] set to 1.
//!
//! An id the map does not know may belong to a topic created since the last listing: the
//! lookup asks the discovery task for an early refresh ([`TopicIds::refresh_wanted`]).
//! Requests coalesce into one pending wake-up and the discovery task waits at least
//! [`ON_DEMAND_MIN_INTERVAL`] between two listings, so a flood of unknown ids costs at most
//! one listing per interval, not one per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::messages::{MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use uuid::Uuid;

/// The most topic ids the proxy keeps: about 100 bytes each with names of a few dozen
/// bytes (~100 MiB), at most ~350 MiB with 249-byte names.
pub const MAX_TOPIC_IDS: usize = 1_000_000;

/// The shortest time between two listings, whatever asks for them.
pub const ON_DEMAND_MIN_INTERVAL: Duration = Duration::from_secs(2);

/// Metric: how many topic ids the proxy knows.
pub const TOPIC_IDS: &str = "portcullis_topic_ids";
/// Metric: 1 when the last listing had more topics than [`MAX_TOPIC_IDS`] (the rest are
/// unknown to the proxy), else 0.
pub const TOPIC_IDS_TRUNCATED: &str = "portcullis_topic_ids_truncated";
/// Metric: lookups of an id the proxy did not know (each answered UNKNOWN_TOPIC_ID).
pub const TOPIC_ID_MISSES: &str = "portcullis_topic_id_misses_total";

/// id -> name, refreshed by the discovery task, read by every connection's authorizer.
#[derive(Debug, Default)]
pub struct TopicIds {
    by_id: RwLock<Arc<HashMap<Uuid, TopicName>>>,
    /// Whether anyone resolves ids (authorization is on): discovery lists topics only then.
    wanted: AtomicBool,
    /// A pending request for an early listing (coalesced: one permit at most).
    refresh: Notify,
}

/// What one listing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// Ids now known.
    pub known: usize,
    /// Topics of the listing left out because of [`MAX_TOPIC_IDS`].
    pub left_out: usize,
}

impl TopicIds {
    /// An empty map (every id unknown) that nobody resolves yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the discovery task to list topics with their ids (authorization calls this).
    pub fn enable(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// Whether topics must be listed.
    pub fn enabled(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// The name of topic `id`, if the proxy knows it. A miss asks for an early listing.
    pub fn name_of(&self, id: Uuid) -> Option<TopicName> {
        let found = self
            .by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        if found.is_none() {
            metrics::counter!(TOPIC_ID_MISSES).increment(1);
            self.refresh.notify_one();
        }
        found
    }

    /// How many ids are known.
    pub fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no id is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once someone asked for an early listing (an unknown id was met).
    pub async fn refresh_wanted(&self) {
        self.refresh.notified().await;
    }

    /// Replaces the map with the topics of a full Metadata listing (v10+, which carries
    /// ids). Topics with an error, without a name or with the nil id are skipped; beyond
    /// [`MAX_TOPIC_IDS`] the rest is left out.
    pub fn replace_from(&self, listing: &MetadataResponse) -> Listed {
        self.replace_capped(listing, MAX_TOPIC_IDS)
    }

    fn replace_capped(&self, listing: &MetadataResponse, cap: usize) -> Listed {
        let usable = listing
            .topics
            .iter()
            .filter(|t| t.error_code == 0 && !t.topic_id.is_nil())
            .filter_map(|t| t.name.as_ref().map(|n| (t.topic_id, n)));
        let mut map = HashMap::with_capacity(listing.topics.len().min(cap));
        let mut left_out = 0usize;
        for (id, name) in usable {
            if map.len() >= cap && !map.contains_key(&id) {
                left_out += 1;
                continue;
            }
            // A copy: a decoded name shares the listing's whole frame, which must not stay
            // alive as long as the map.
            map.insert(id, TopicName(StrBytes::from_string(name.0.to_string())));
        }
        let known = map.len();
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        metrics::gauge!(TOPIC_IDS).set(known as f64);
        metrics::gauge!(TOPIC_IDS_TRUNCATED).set(if left_out > 0 { 1.0 } else { 0.0 });
        if left_out > 0 {
            tracing::warn!(
                known,
                left_out,
                cap,
                "more topics than the proxy keeps ids for: requests naming the others by id are answered UNKNOWN_TOPIC_ID"
            );
        }
        Listed { known, left_out }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;

    fn listing(topics: &[(&str, Uuid, i16)]) -> MetadataResponse {
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .map(|(name, id, error)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName((*name).to_string().into())))
                        .with_topic_id(*id)
                        .with_error_code(*error)
                })
                .collect(),
        )
    }

    #[test]
    fn a_listing_replaces_the_map_and_skips_unusable_entries() {
        let ids = TopicIds::new();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let first = ids.replace_from(&listing(&[
            ("a", a, 0),
            ("b", b, 0),
            ("nil", Uuid::nil(), 0),
            ("broken", c, 3),
        ]));
        assert_eq!(
            first,
            Listed {
                known: 2,
                left_out: 0
            }
        );
        assert_eq!(ids.name_of(a).unwrap().0.as_str(), "a");
        assert_eq!(
            ids.name_of(c),
            None,
            "an entry with an error is not trusted"
        );
        // b deleted: the next listing drops it.
        ids.replace_from(&listing(&[("a", a, 0)]));
        assert_eq!(ids.name_of(b), None);
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn beyond_the_cap_ids_are_unknown() {
        let ids = TopicIds::new();
        let topics: Vec<(String, Uuid)> = (1..=5u128)
            .map(|n| (format!("t{n}"), Uuid::from_u128(n)))
            .collect();
        let refs: Vec<(&str, Uuid, i16)> =
            topics.iter().map(|(n, id)| (n.as_str(), *id, 0)).collect();
        let listed = ids.replace_capped(&listing(&refs), 3);
        assert_eq!(
            listed,
            Listed {
                known: 3,
                left_out: 2
            }
        );
        assert!(ids.name_of(Uuid::from_u128(1)).is_some());
        assert_eq!(ids.name_of(Uuid::from_u128(5)), None, "left out: unknown");
    }

    #[tokio::test]
    async fn misses_coalesce_into_one_wake_up() {
        let ids = Arc::new(TopicIds::new());
        for n in 0..1000u128 {
            assert_eq!(ids.name_of(Uuid::from_u128(n)), None);
        }
        // One stored permit, however many misses.
        tokio::time::timeout(Duration::from_millis(100), ids.refresh_wanted())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), ids.refresh_wanted())
                .await
                .is_err(),
            "a second wake-up without a new miss"
        );
    }
}
