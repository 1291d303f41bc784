//! The audit log's Kafka anchor: every signed checkpoint is also produced (acks=all) to a topic
//! on the upstream cluster, with the proxy's own upstream credentials.
//!
//! A rollback of the whole data directory (an older copy restored, keys and all) leaves a log
//! that verifies on its own. The cluster is another system with its own operators and storage,
//! so a checkpoint it holds is one the proxy host cannot take back: at start-up the proxy reads
//! the topic's tail and refuses to open a log shorter than the latest checkpoint anchored for
//! it, and
//! `portcullis audit verify --anchor-topic` checks the log against every anchored checkpoint.
//!
//! Records: key = the log's origin (several proxies may share one topic), value = the signed
//! checkpoint note. The topic is created on first use with one partition and unlimited
//! retention. Publishing runs on its own task and retries until the cluster accepts the
//! checkpoint; the sequencer only queues (a slow cluster never stalls auditing), and a full
//! queue is reported by the sequencer as a failed publish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_audit::anchor::{Anchor, AnchorError};
use portcullis_audit::checkpoint::SignedCheckpoint;
use tokio::sync::{mpsc, watch};

use crate::cluster::partition_client::{self, FetchedRecord, PartitionClient};
use crate::net::upstream::{Connector, UpstreamError};

/// Checkpoints waiting to be produced before `publish` reports the anchor as failing.
const QUEUE: usize = 1024;
/// Longest pause between attempts to produce a checkpoint the cluster refused.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One record read from the anchor topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredNote {
    /// Its offset in the partition.
    pub offset: i64,
    /// The record key (the log's origin, as published by the proxy).
    pub key: Option<String>,
    /// The record value: a signed checkpoint note, if it is one.
    pub note: String,
}

/// A checkpoint anchor on a topic of the upstream cluster.
pub struct KafkaAnchor {
    topic: String,
    read_at_open: Vec<Result<SignedCheckpoint, String>>,
    queue: mpsc::Sender<String>,
    queued: AtomicU64,
    produced: watch::Receiver<u64>,
}

impl std::fmt::Debug for KafkaAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAnchor")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaAnchor {
    /// Reads the latest checkpoint the topic holds for the log named `origin` (creating the
    /// topic if it does not exist) and starts the task that produces new checkpoints to it.
    ///
    /// Only the tail is read: records are scanned backwards from the end, a window at a time,
    /// until one of this log's checkpoints is found (with one proxy per topic that is the last
    /// record). What was found is what [`Anchor::checkpoints`] reports: the audit log uses it
    /// at open to refuse a rolled-back data directory.
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when the cluster cannot be reached or the topic cannot be read or
    /// created within `timeout`.
    pub async fn start(
        connector: Arc<Connector>,
        topic: String,
        origin: &str,
        timeout: Duration,
    ) -> Result<Arc<KafkaAnchor>, AnchorError> {
        let describe = describe(&topic);
        let latest =
            tokio::time::timeout(timeout, read_latest_of(&connector, &topic, origin, timeout))
                .await
                .map_err(|_| AnchorError {
                    anchor: describe.clone(),
                    reason: format!("the cluster did not answer within {timeout:?}"),
                })?
                .map_err(|e| AnchorError {
                    anchor: describe.clone(),
                    reason: e.to_string(),
                })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (produced_tx, produced_rx) = watch::channel(0u64);
        tokio::spawn(publish_loop(
            connector,
            topic.clone(),
            timeout,
            rx,
            produced_tx,
        ));
        Ok(Arc::new(KafkaAnchor {
            topic,
            read_at_open: latest.into_iter().map(Ok).collect(),
            queue: tx,
            queued: AtomicU64::new(0),
            produced: produced_rx,
        }))
    }

    /// Waits until every queued checkpoint is on the cluster, at most `limit`; returns how
    /// many were still waiting.
    pub async fn drain(&self, limit: Duration) -> u64 {
        let queued = self.queued.load(Ordering::SeqCst);
        let mut produced = self.produced.clone();
        let _ = tokio::time::timeout(limit, produced.wait_for(|&n| n >= queued)).await;
        let done = *produced.borrow();
        queued.saturating_sub(done)
    }
}

impl Anchor for KafkaAnchor {
    fn describe(&self) -> String {
        describe(&self.topic)
    }

    fn publish(&self, note: &str) -> Result<(), AnchorError> {
        self.queue
            .try_send(note.to_owned())
            .map_err(|e| AnchorError {
                anchor: self.describe(),
                reason: match e {
                    mpsc::error::TrySendError::Full(_) => {
                        format!("{QUEUE} checkpoints are already waiting for the cluster")
                    }
                    mpsc::error::TrySendError::Closed(_) => "the publisher has stopped".into(),
                },
            })?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<Result<SignedCheckpoint, String>>, AnchorError> {
        Ok(self.read_at_open.clone())
    }
}

fn describe(topic: &str) -> String {
    format!("anchor topic {topic}")
}

/// Produces queued checkpoints in order, each retried until the cluster accepts it.
async fn publish_loop(
    connector: Arc<Connector>,
    topic: String,
    timeout: Duration,
    mut queue: mpsc::Receiver<String>,
    produced: watch::Sender<u64>,
) {
    let mut writer: Option<PartitionClient> = None;
    while let Some(note) = queue.recv().await {
        let key = SignedCheckpoint::parse(&note)
            .map(|c| c.checkpoint.origin)
            .unwrap_or_default();
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = match writer.as_mut() {
                Some(w) => w
                    .produce(&topic, key.as_bytes(), Some(note.as_bytes()))
                    .await
                    .map(drop),
                None => match PartitionClient::leader(&connector, &topic, timeout).await {
                    Ok(w) => {
                        let w = writer.insert(w);
                        w.produce(&topic, key.as_bytes(), Some(note.as_bytes()))
                            .await
                            .map(drop)
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => {
                    metrics::counter!(crate::metrics::AUDIT_ANCHOR_PUBLISHED, "outcome" => "ok")
                        .increment(1);
                    produced.send_modify(|n| *n += 1);
                    break;
                }
                Err(e) => {
                    writer = None;
                    metrics::counter!(crate::metrics::AUDIT_ANCHOR_PUBLISHED, "outcome" => "retry")
                        .increment(1);
                    tracing::warn!(topic = %topic, error = %e, retry_in = ?backoff,
                        "cannot publish an audit checkpoint to the anchor topic");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Reads every record of the anchor topic's partition, oldest first (a missing topic is an
/// error).
///
/// # Errors
///
/// [`UpstreamError`] when the cluster cannot be reached, refuses, or answers nonsense.
pub async fn read_topic(
    connector: &Connector,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<AnchoredNote>, UpstreamError> {
    let mut client = PartitionClient::leader(connector, topic, timeout).await?;
    let start = client.list_offset(topic, -2).await?;
    let end = client.list_offset(topic, -1).await?;
    Ok(notes_of(client.read_range(topic, start, end).await?))
}

/// Records scanned per step when looking for a log's latest checkpoint.
const TAIL_WINDOW: i64 = 1024;

/// The anchor topic's settings when the proxy creates it: nothing is ever deleted.
const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

/// The largest checkpoint of the log named `origin` in the last window of the topic that holds
/// any (records that are not signed checkpoints are skipped: `verify --anchor-topic` reports
/// them). Creates the topic (one partition, unlimited retention) if it does not exist.
async fn read_latest_of(
    connector: &Connector,
    topic: &str,
    origin: &str,
    timeout: Duration,
) -> Result<Option<SignedCheckpoint>, UpstreamError> {
    let mut client =
        PartitionClient::leader_creating(connector, topic, TOPIC_CONFIGS, timeout).await?;
    let start = client.list_offset(topic, -2).await?;
    let mut to = client.list_offset(topic, -1).await?;
    while to > start {
        let from = (to - TAIL_WINDOW).max(start);
        let latest = notes_of(client.read_range(topic, from, to).await?)
            .iter()
            .filter_map(|n| SignedCheckpoint::parse(&n.note).ok())
            .filter(|c| c.checkpoint.origin == origin)
            .max_by_key(|c| c.checkpoint.size);
        if latest.is_some() {
            return Ok(latest);
        }
        to = from;
    }
    Ok(None)
}

/// Decodes the complete record batches in a Fetch answer (a partial batch at the end is
/// left for the next Fetch); records before `from` are skipped.
///
/// # Errors
///
/// [`UpstreamError::Protocol`] for a batch that does not decode.
pub fn decode_notes(records: Bytes, from: i64) -> Result<Vec<AnchoredNote>, UpstreamError> {
    Ok(notes_of(partition_client::decode_records(records, from)?))
}

/// The records as notes (keys and values read as UTF-8, lossily; a null value is empty).
fn notes_of(records: Vec<FetchedRecord>) -> Vec<AnchoredNote> {
    records
        .into_iter()
        .map(|r| AnchoredNote {
            offset: r.offset,
            key: r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
            note: r
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// One record batch holding one record: key = origin, value = the note.
    fn encode_record(key: &str, note: &str) -> Result<Bytes, UpstreamError> {
        partition_client::encode_record(key.as_bytes(), Some(note.as_bytes()))
    }

    #[test]
    fn records_round_trip_and_partial_batches_wait() {
        let a = encode_record("origin/a", "note one\n").unwrap();
        let b = encode_record("origin/a", "note two\n").unwrap();
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b[..b.len() - 3]);
        let notes = decode_notes(both.freeze(), 0).unwrap();
        assert_eq!(notes.len(), 1, "the cut batch must wait for the next fetch");
        assert_eq!(notes[0].key.as_deref(), Some("origin/a"));
        assert_eq!(notes[0].note, "note one\n");
    }

    proptest::proptest! {
        #[test]
        fn any_fetched_bytes_decode_or_fail_without_panicking(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            from in -2i64..4,
        ) {
            let _ = decode_notes(Bytes::from(bytes), from);
        }

        #[test]
        fn a_valid_batch_with_garbage_after_it_keeps_the_batch(
            note in "[ -~]{0,200}",
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..11),
        ) {
            let mut bytes = BytesMut::from(&encode_record("o", &note).unwrap()[..]);
            bytes.extend_from_slice(&tail);
            let notes = decode_notes(bytes.freeze(), 0).unwrap();
            proptest::prop_assert_eq!(notes.len(), 1);
            proptest::prop_assert_eq!(&notes[0].note, &note);
        }
    }

    #[test]
    fn hostile_batch_lengths_are_errors_not_panics() {
        let mut bytes = vec![0u8; 12];
        bytes[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_notes(Bytes::from(bytes), 0).is_err());
        let mut bytes = vec![0u8; 40];
        bytes[8..12].copy_from_slice(&20i32.to_be_bytes());
        assert!(decode_notes(Bytes::from(bytes), 0).is_err());
    }
}
