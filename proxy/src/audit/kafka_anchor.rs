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
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest,
    FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use portcullis_audit::anchor::{Anchor, AnchorError};
use portcullis_audit::checkpoint::SignedCheckpoint;
use portcullis_audit::note::VerifierKey;
use tokio::sync::{mpsc, watch};

use crate::codec::record_batch::{
    build_batch, split_batches, BatchPiece, CodecError, Compression, NewRecord,
};
use crate::net::upstream::{Connector, KafkaClient, UpstreamError};

/// Largest response the anchor accepts from the cluster.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Bytes asked for per Fetch while reading the topic.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// Checkpoints waiting to be produced before `publish` reports the anchor as failing.
const QUEUE: usize = 1024;
/// Longest pause between attempts to produce a checkpoint the cluster refused.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The partition every checkpoint goes to.
const PARTITION: i32 = 0;

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
                Some(w) => w.produce(&topic, &key, &note).await,
                None => match PartitionClient::leader(&connector, &topic, timeout).await {
                    Ok(w) => {
                        let w = writer.insert(w);
                        w.produce(&topic, &key, &note).await
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
    client.read_range(topic, start, end).await
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
            Err(UpstreamError::Protocol(m)) if m.starts_with(NO_SUCH_TOPIC) => {
                create_topic(connector, topic, timeout).await?;
                reading.created = true;
                PartitionClient::leader(connector, topic, timeout).await?
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
            for note in client.read_range(topic, from, to).await?.iter().rev() {
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

/// How [`PartitionClient::leader`] reports a topic the cluster does not have.
const NO_SUCH_TOPIC: &str = "no such topic";

async fn create_topic(
    connector: &Connector,
    topic: &str,
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let mut client = KafkaClient::new(connector.connect_bootstrap().await?, MAX_RESPONSE, timeout);
    let version = pick_version(&mut client, ApiKey::CreateTopics, 7).await?;
    let config = |name: &'static str, value: &'static str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_static_str(value)))
    };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(millis(timeout))
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(vec![
                config("cleanup.policy", "delete"),
                config("retention.ms", "-1"),
                config("retention.bytes", "-1"),
            ])]);
    let response: CreateTopicsResponse =
        client.call(ApiKey::CreateTopics, version, &request).await?;
    for t in &response.topics {
        // TopicAlreadyExists: a concurrent create won, which is as good.
        if t.error_code != 0 && t.error_code != ResponseError::TopicAlreadyExists.code() {
            return Err(UpstreamError::Protocol(format!(
                "cannot create {topic}: error code {}{}",
                t.error_code,
                t.error_message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )));
        }
    }
    tracing::info!(topic, "created the audit anchor topic");
    Ok(())
}

/// A connection to the leader of the anchor partition, with the versions it speaks.
struct PartitionClient {
    client: KafkaClient,
    produce: i16,
    fetch: i16,
    list_offsets: i16,
    timeout: Duration,
}

impl PartitionClient {
    /// Finds the partition's leader through a bootstrap broker and connects to it.
    async fn leader(
        connector: &Connector,
        topic: &str,
        timeout: Duration,
    ) -> Result<PartitionClient, UpstreamError> {
        let mut bootstrap =
            KafkaClient::new(connector.connect_bootstrap().await?, MAX_RESPONSE, timeout);
        let version = pick_version(&mut bootstrap, ApiKey::Metadata, 12).await?;
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
        ]));
        let metadata: MetadataResponse =
            bootstrap.call(ApiKey::Metadata, version, &request).await?;
        let leader = leader_of(&metadata, topic)?;
        let (host, port) = metadata
            .brokers
            .iter()
            .find(|b| b.node_id == leader)
            .map(|b| (b.host.to_string(), b.port))
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("{topic}: leader {} is not listed", leader.0))
            })?;
        let port = u16::try_from(port)
            .map_err(|_| UpstreamError::Protocol(format!("broker port {port} is invalid")))?;
        let mut client =
            KafkaClient::new(connector.connect(&host, port).await?, MAX_RESPONSE, timeout);
        let versions = client.api_versions().await?;
        Ok(PartitionClient {
            produce: choose(&versions, ApiKey::Produce, 9)?,
            // v11: the last version without tagged fields (tansu 0.6.0 sends a node-endpoints
            // tag in v12 answers that v12 does not define).
            fetch: choose(&versions, ApiKey::Fetch, 11)?,
            list_offsets: choose(&versions, ApiKey::ListOffsets, 7)?,
            client,
            timeout,
        })
    }

    /// The records at offsets `from..to`, oldest first.
    async fn read_range(
        &mut self,
        topic: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<AnchoredNote>, UpstreamError> {
        let mut notes = Vec::new();
        let mut offset = from;
        while offset < to {
            let batch = self.fetch(topic, offset).await?;
            let Some(last) = batch.last() else {
                return Err(UpstreamError::Protocol(format!(
                    "{topic}: no records at offset {offset} below offset {to}"
                )));
            };
            offset = last.offset + 1;
            notes.extend(batch.into_iter().filter(|n| n.offset < to));
        }
        Ok(notes)
    }

    /// Produces one record (acks=all) and checks the partition's answer.
    async fn produce(&mut self, topic: &str, key: &str, note: &str) -> Result<(), UpstreamError> {
        let records = encode_record(key, note)?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(millis(self.timeout))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(PARTITION)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = self
            .client
            .call(ApiKey::Produce, self.produce, &request)
            .await?;
        let code = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == PARTITION)
            .map(|p| p.error_code)
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("{topic}: the produce response has no partition"))
            })?;
        if code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "{topic}: produce failed with error code {code}"
            )));
        }
        Ok(())
    }

    /// The partition's earliest (`-2`) or latest (`-1`) offset.
    async fn list_offset(&mut self, topic: &str, which: i64) -> Result<i64, UpstreamError> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(PARTITION)
                    .with_timestamp(which)])]);
        let response: ListOffsetsResponse = self
            .client
            .call(ApiKey::ListOffsets, self.list_offsets, &request)
            .await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == PARTITION)
            .ok_or_else(|| UpstreamError::Protocol(format!("{topic}: no offsets listed")))?;
        if p.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "{topic}: ListOffsets failed with error code {}",
                p.error_code
            )));
        }
        Ok(p.offset)
    }

    /// The records from `offset` on that one Fetch returns.
    async fn fetch(
        &mut self,
        topic: &str,
        offset: i64,
    ) -> Result<Vec<AnchoredNote>, UpstreamError> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(FETCH_BYTES)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(PARTITION)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(FETCH_BYTES)])]);
        let response: FetchResponse = self
            .client
            .call(ApiKey::Fetch, self.fetch, &request)
            .await?;
        let p = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == PARTITION)
            .ok_or_else(|| UpstreamError::Protocol(format!("{topic}: no partition fetched")))?;
        if p.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "{topic}: Fetch failed with error code {}",
                p.error_code
            )));
        }
        decode_notes(p.records.clone().unwrap_or_default(), offset)
    }
}

/// The leader of the anchor partition in `metadata`.
fn leader_of(metadata: &MetadataResponse, topic: &str) -> Result<BrokerId, UpstreamError> {
    let t = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .ok_or_else(|| UpstreamError::Protocol(format!("{NO_SUCH_TOPIC} {topic}")))?;
    if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
        return Err(UpstreamError::Protocol(format!("{NO_SUCH_TOPIC} {topic}")));
    }
    if t.error_code != 0 {
        return Err(UpstreamError::Protocol(format!(
            "{topic}: Metadata error code {}",
            t.error_code
        )));
    }
    t.partitions
        .iter()
        .find(|p| p.partition_index == PARTITION)
        .map(|p| p.leader_id)
        .filter(|l| l.0 >= 0)
        .ok_or_else(|| UpstreamError::Protocol(format!("{topic}: partition 0 has no leader")))
}

/// One record batch holding one record: key = origin, value = the note.
fn encode_record(key: &str, note: &str) -> Result<Bytes, UpstreamError> {
    let record = NewRecord {
        timestamp: now_millis(),
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(note.as_bytes())),
        headers: Vec::new(),
    };
    build_batch(&[record], Compression::None)
        .map_err(|e| UpstreamError::Protocol(format!("encode checkpoint record: {e}")))
}

/// Decompressed bytes one anchor batch may hold (checkpoint notes are a few hundred bytes).
const MAX_ANCHOR_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Decodes the complete record batches in a Fetch answer (a partial batch at the end is
/// left for the next Fetch); records before `from` are skipped.
///
/// # Errors
///
/// [`UpstreamError::Protocol`] for a batch that does not decode.
pub fn decode_notes(records: Bytes, from: i64) -> Result<Vec<AnchoredNote>, UpstreamError> {
    let protocol = |e: CodecError| UpstreamError::Protocol(format!("anchor record batch: {e}"));
    let mut notes = Vec::new();
    for piece in split_batches(&records) {
        let batch = match piece.map_err(protocol)? {
            BatchPiece::Records(batch) => batch,
            BatchPiece::Truncated(_) => break,
            // Control markers and batches emptied by compaction hold no checkpoint.
            BatchPiece::Control(_) | BatchPiece::Empty(_) => continue,
            // The proxy never wrote a pre-v2 entry: the topic holds something else.
            BatchPiece::Legacy { magic, .. } => {
                return Err(UpstreamError::Protocol(format!(
                    "anchor record batch: magic {magic} is not a checkpoint"
                )))
            }
        };
        let decoded = batch.decode(MAX_ANCHOR_BATCH_BYTES).map_err(protocol)?;
        for r in &decoded.records {
            let offset = decoded.header.record_offset(r.offset_delta);
            if offset < from {
                continue;
            }
            notes.push(AnchoredNote {
                offset,
                key: r
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                note: r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(notes)
}

async fn pick_version(
    client: &mut KafkaClient,
    api: ApiKey,
    highest: i16,
) -> Result<i16, UpstreamError> {
    let versions = client.api_versions().await?;
    choose(&versions, api, highest)
}

/// The highest version of `api` the broker and this module both speak.
fn choose(versions: &ApiVersionsResponse, api: ApiKey, highest: i16) -> Result<i16, UpstreamError> {
    versions
        .api_keys
        .iter()
        .find(|k| k.api_key == api as i16)
        .filter(|k| k.min_version <= highest)
        .map(|k| k.max_version.min(highest))
        .ok_or_else(|| {
            UpstreamError::Protocol(format!(
                "the broker offers no {api:?} version up to {highest}"
            ))
        })
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;

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
