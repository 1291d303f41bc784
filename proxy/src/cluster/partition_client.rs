//! A small client for one partition of a single-partition topic the proxy keeps on the
//! upstream cluster for itself (the audit anchor topic, the replicated key registry).
//!
//! Both need the same few calls — find the partition's leader, create the topic, produce one
//! batch with acks=all, list the earliest/latest offset, read records in offset order — made
//! with the proxy's own upstream credentials through [`Connector`]. The record decoding goes
//! through the proxy's record-batch codec, bounded like every other batch the proxy reads.

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

use crate::codec::record_batch::{
    build_batch, split_batches, BatchPiece, CodecError, Compression, Header, NewRecord,
};
use crate::net::upstream::{Connector, KafkaClient, UpstreamError};

/// Largest response accepted from the cluster.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Bytes asked for per Fetch.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// Decompressed bytes one batch may hold (the proxy's own records are a few hundred bytes).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// The partition every record goes to.
pub const PARTITION: i32 = 0;
/// How [`PartitionClient::leader`] reports a topic the cluster does not have.
pub const NO_SUCH_TOPIC: &str = "no such topic";

/// One record read back from the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// The record key.
    pub key: Option<Bytes>,
    /// The record value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// The record headers, in order.
    pub headers: Vec<Header>,
}

/// A connection to the leader of one partition of a topic (partition 0 unless
/// [`PartitionClient::leader_of_partition`]), with the versions it speaks.
pub struct PartitionClient {
    client: KafkaClient,
    partition: i32,
    produce: i16,
    fetch: i16,
    list_offsets: i16,
    timeout: Duration,
}

impl std::fmt::Debug for PartitionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionClient").finish_non_exhaustive()
    }
}

impl PartitionClient {
    /// Finds the partition's leader through a bootstrap broker and connects to it. A missing
    /// topic is an [`UpstreamError::Protocol`] starting with [`NO_SUCH_TOPIC`].
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when the cluster cannot be reached or refuses.
    pub async fn leader(
        connector: &Connector,
        topic: &str,
        timeout: Duration,
    ) -> Result<PartitionClient, UpstreamError> {
        Self::leader_of_partition(connector, topic, PARTITION, timeout).await
    }

    /// As [`PartitionClient::leader`], for `partition`.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when the cluster cannot be reached or refuses.
    pub async fn leader_of_partition(
        connector: &Connector,
        topic: &str,
        partition: i32,
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
        let leader = leader_of(&metadata, topic, partition)?;
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
            partition,
            timeout,
        })
    }

    /// The leader's client, creating the topic (one partition, `configs`) first if the
    /// cluster does not have it.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when the cluster cannot be reached, refuses, or cannot create it.
    pub async fn leader_creating(
        connector: &Connector,
        topic: &str,
        configs: &[(&'static str, &'static str)],
        timeout: Duration,
    ) -> Result<PartitionClient, UpstreamError> {
        match PartitionClient::leader(connector, topic, timeout).await {
            Err(UpstreamError::Protocol(m)) if m.starts_with(NO_SUCH_TOPIC) => {
                create_topic(connector, topic, configs, timeout).await?;
                PartitionClient::leader(connector, topic, timeout).await
            }
            other => other,
        }
    }

    /// The records at offsets `from..to`, oldest first.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when a Fetch fails or the range has a hole.
    pub async fn read_range(
        &mut self,
        topic: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<FetchedRecord>, UpstreamError> {
        let mut records = Vec::new();
        let mut offset = from;
        while offset < to {
            let batch = self.fetch(topic, offset).await?;
            let Some(last) = batch.last() else {
                return Err(UpstreamError::Protocol(format!(
                    "{topic}: no records at offset {offset} below offset {to}"
                )));
            };
            offset = last.offset + 1;
            records.extend(batch.into_iter().filter(|n| n.offset < to));
        }
        Ok(records)
    }

    /// Produces one record (acks=all) and returns its offset.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when the cluster refuses or does not answer.
    pub async fn produce(
        &mut self,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<i64, UpstreamError> {
        let records = encode_record(key, value)?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(millis(self.timeout))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(records))])]);
        let response: ProduceResponse = self
            .client
            .call(ApiKey::Produce, self.produce, &request)
            .await?;
        let p = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == self.partition)
            .ok_or_else(|| {
                UpstreamError::Protocol(format!("{topic}: the produce response has no partition"))
            })?;
        if p.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "{topic}: produce failed with error code {}",
                p.error_code
            )));
        }
        Ok(p.base_offset)
    }

    /// The partition's earliest (`-2`) or latest (`-1`) offset.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when the cluster refuses or does not answer.
    pub async fn list_offset(&mut self, topic: &str, which: i64) -> Result<i64, UpstreamError> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(self.partition)
                    .with_timestamp(which)])]);
        let response: ListOffsetsResponse = self
            .client
            .call(ApiKey::ListOffsets, self.list_offsets, &request)
            .await?;
        let p = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == self.partition)
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
    ) -> Result<Vec<FetchedRecord>, UpstreamError> {
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
                    .with_partition(self.partition)
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
            .find(|p| p.partition_index == self.partition)
            .ok_or_else(|| UpstreamError::Protocol(format!("{topic}: no partition fetched")))?;
        if p.error_code != 0 {
            return Err(UpstreamError::Protocol(format!(
                "{topic}: Fetch failed with error code {}",
                p.error_code
            )));
        }
        decode_records(p.records.clone().unwrap_or_default(), offset)
    }
}

/// Creates `topic` with one partition and `configs` (an existing topic is as good).
async fn create_topic(
    connector: &Connector,
    topic: &str,
    configs: &[(&'static str, &'static str)],
    timeout: Duration,
) -> Result<(), UpstreamError> {
    let mut client = KafkaClient::new(connector.connect_bootstrap().await?, MAX_RESPONSE, timeout);
    let version = pick_version(&mut client, ApiKey::CreateTopics, 7).await?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(millis(timeout))
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(name, value)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_value(Some(StrBytes::from_static_str(value)))
                    })
                    .collect(),
            )]);
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
    tracing::info!(topic, "created topic");
    Ok(())
}

/// The leader of `partition` in `metadata`.
fn leader_of(
    metadata: &MetadataResponse,
    topic: &str,
    partition: i32,
) -> Result<BrokerId, UpstreamError> {
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
        .find(|p| p.partition_index == partition)
        .map(|p| p.leader_id)
        .filter(|l| l.0 >= 0)
        .ok_or_else(|| {
            UpstreamError::Protocol(format!("{topic}: partition {partition} has no leader"))
        })
}

/// One record batch holding one record.
///
/// # Errors
///
/// [`UpstreamError::Protocol`] if the batch cannot be built.
pub fn encode_record(key: &[u8], value: Option<&[u8]>) -> Result<Bytes, UpstreamError> {
    let record = NewRecord {
        timestamp: now_millis(),
        key: Some(Bytes::copy_from_slice(key)),
        value: value.map(Bytes::copy_from_slice),
        headers: Vec::new(),
    };
    build_batch(&[record], Compression::None)
        .map_err(|e| UpstreamError::Protocol(format!("encode record: {e}")))
}

/// Decodes the complete record batches in a Fetch answer (a partial batch at the end is left
/// for the next Fetch); records before `from` are skipped.
///
/// # Errors
///
/// [`UpstreamError::Protocol`] for a batch that does not decode or a pre-v2 batch (the proxy
/// never writes one: the topic holds something else).
pub fn decode_records(records: Bytes, from: i64) -> Result<Vec<FetchedRecord>, UpstreamError> {
    let protocol = |e: CodecError| UpstreamError::Protocol(format!("record batch: {e}"));
    let mut out = Vec::new();
    for piece in split_batches(&records) {
        let batch = match piece.map_err(protocol)? {
            BatchPiece::Records(batch) => batch,
            BatchPiece::Truncated(_) => break,
            // Control markers and batches emptied by compaction hold no record.
            BatchPiece::Control(_) | BatchPiece::Empty(_) => continue,
            BatchPiece::Legacy { magic, .. } => {
                return Err(UpstreamError::Protocol(format!(
                    "record batch: magic {magic} was not written by the proxy"
                )))
            }
        };
        let decoded = batch.decode(MAX_BATCH_BYTES).map_err(protocol)?;
        for r in decoded.records {
            let offset = decoded.header.record_offset(r.offset_delta);
            if offset >= from {
                out.push(FetchedRecord {
                    offset,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
        }
    }
    Ok(out)
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
        let a = encode_record(b"k", Some(b"one")).unwrap();
        let b = encode_record(b"k", None).unwrap();
        let c = encode_record(b"k", Some(b"three")).unwrap();
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&c[..c.len() - 3]);
        let records = decode_records(all.freeze(), 0).unwrap();
        assert_eq!(
            records.len(),
            2,
            "the cut batch must wait for the next fetch"
        );
        assert_eq!(records[0].value.as_deref(), Some(&b"one"[..]));
        assert_eq!(records[1].value, None, "a tombstone keeps its null value");
    }

    proptest::proptest! {
        #[test]
        fn any_fetched_bytes_decode_or_fail_without_panicking(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            from in -2i64..4,
        ) {
            let _ = decode_records(Bytes::from(bytes), from);
        }
    }

    #[test]
    fn hostile_batch_lengths_are_errors_not_panics() {
        let mut bytes = vec![0u8; 12];
        bytes[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_records(Bytes::from(bytes), 0).is_err());
        let mut bytes = vec![0u8; 40];
        bytes[8..12].copy_from_slice(&20i32.to_be_bytes());
        assert!(decode_records(Bytes::from(bytes), 0).is_err());
    }
}
