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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_audit::anchor::{Anchor, AnchorError};
use portcullis_audit::checkpoint::SignedCheckpoint;
use portcullis_audit::note::VerifierKey;
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
    at_open: TailReading,
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
    /// Reads the latest checkpoints the topic holds for the log named `origin` (creating
    /// the topic if it does not exist) and starts the task that produces new checkpoints to
    /// it; after the first one is on the cluster, `marker` (if given) is written, so later
    /// starts know checkpoints were anchored (a topic found missing or empty then is an
    /// alarm).
    ///
    /// Only the tail is read: records are scanned backwards from the end, a window at a time,
    /// until one of this log's checkpoints signed with `own_key` (the log's current signing
    /// key, when the data directory has one; without one, any of this log's checkpoints) is
    /// found. With one proxy per topic that is the last record; notes of this origin that
    /// key did not sign (forged) do not end the scan, so they cannot hide the genuine latest
    /// checkpoint. What was found is what [`Anchor::checkpoints`] reports: the audit log
    /// verifies each with all of its keys and refuses a rolled-back data directory.
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when the cluster cannot be reached or the topic cannot be read or
    /// created within `timeout`.
    pub async fn start(
        connector: Arc<Connector>,
        topic: String,
        origin: &str,
        own_key: Option<VerifierKey>,
        marker: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Arc<KafkaAnchor>, AnchorError> {
        let describe = describe(&topic);
        let scan = TailScan {
            topic: &topic,
            origin,
            own_key: own_key.as_ref(),
        };
        let reading = tokio::time::timeout(timeout, scan.read(&connector, timeout))
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
            (produced_tx, marker),
        ));
        Ok(Arc::new(KafkaAnchor {
            topic,
            at_open: reading,
            queue: tx,
            queued: AtomicU64::new(0),
            produced: produced_rx,
        }))
    }

    /// What the start-up scan found.
    pub fn at_open(&self) -> &TailReading {
        &self.at_open
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
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
        Ok(self.at_open.notes.iter().cloned().map(Ok).collect())
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
    (produced, mut marker): (watch::Sender<u64>, Option<PathBuf>),
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
                    if let Some(path) = marker.take() {
                        crate::audit::anchor_alarm::write_marker(&path, &topic, &key);
                    }
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
/// Windows scanned at most (so a topic flooded with junk cannot hold the start-up).
const MAX_WINDOWS: usize = 64;
/// Notes of this log's origin kept at most from one scan.
const MAX_NOTES: usize = 4096;

/// What the start-up scan of the anchor topic found.
#[derive(Debug, Clone, Default)]
pub struct TailReading {
    /// The topic did not exist and was created by this scan.
    pub created: bool,
    /// Records in the partition (end offset minus start offset).
    pub records: i64,
    /// This log's notes found, newest window first (at most [`MAX_NOTES`]).
    pub notes: Vec<SignedCheckpoint>,
}

/// A backwards scan of the anchor topic for one log's notes.
struct TailScan<'a> {
    topic: &'a str,
    origin: &'a str,
    own_key: Option<&'a VerifierKey>,
}

impl TailScan<'_> {
    /// Scans back a window at a time, keeping this origin's notes, until a window holds one
    /// signed with `own_key` (or, without a key, any of this origin's notes), the start of
    /// the partition, or [`MAX_WINDOWS`]. Records that are not signed checkpoints are skipped
    /// (`verify --anchor-topic` reports them). Creates the topic (one partition, unlimited
    /// retention) if it does not exist.
    async fn read(
        &self,
        connector: &Connector,
        timeout: Duration,
    ) -> Result<TailReading, UpstreamError> {
        let topic = self.topic;
        let mut reading = TailReading::default();
        let mut client = match PartitionClient::leader(connector, topic, timeout).await {
            Err(UpstreamError::Protocol(m)) if m.starts_with(partition_client::NO_SUCH_TOPIC) => {
                reading.created = true;
                PartitionClient::leader_creating(connector, topic, TOPIC_CONFIGS, timeout).await?
            }
            other => other?,
        };
        let start = client.list_offset(topic, -2).await?;
        let mut to = client.list_offset(topic, -1).await?;
        reading.records = to - start;
        for _ in 0..MAX_WINDOWS {
            if to <= start {
                break;
            }
            let from = (to - TAIL_WINDOW).max(start);
            let mut found_own = false;
            for note in notes_of(client.read_range(topic, from, to).await?)
                .iter()
                .rev()
            {
                let Ok(checkpoint) = SignedCheckpoint::parse(&note.note) else {
                    continue;
                };
                if checkpoint.checkpoint.origin != self.origin {
                    continue;
                }
                found_own |= match self.own_key {
                    Some(key) => checkpoint.verify(std::slice::from_ref(key)).is_ok(),
                    None => true,
                };
                if reading.notes.len() < MAX_NOTES {
                    reading.notes.push(checkpoint);
                }
            }
            if found_own {
                break;
            }
            to = from;
        }
        Ok(reading)
    }
}

/// The anchor topic's settings when the proxy creates it: nothing is ever deleted.
const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

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
