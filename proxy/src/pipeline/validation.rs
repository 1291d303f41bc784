//! Structural validation of client requests before anything reaches the cluster.
//!
//! The proxy forwards request bytes unchanged, but it does not forward bytes it has not
//! checked: every forwarded request body must decode completely (no trailing bytes) as the
//! api key and version its header claims, and every Produce record batch must have a sane
//! header (v2 magic, a length that fits, a record count the bytes can hold). A malformed or
//! hostile request closes the client's connection here instead of reaching a broker whose
//! parser may be less careful. Decoding uses the vendored kafka-protocol, whose collection
//! allocations are capped by the bytes present (see third_party/kafka-protocol).

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::codec::header::{with_produce_acks, RequestHeader};
use crate::codec::record_batch::check_batch_headers;
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::{handling, Handling};
use crate::pipeline::{ConnectionState, Flow, Request, Stage, Step};

/// Why a request was refused before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestCheckError {
    /// The body does not decode as the claimed api key and version.
    #[error("{api:?} v{version} body does not decode: {reason}")]
    Undecodable {
        /// Api key from the header.
        api: ApiKey,
        /// Version from the header.
        version: i16,
        /// Decoder message.
        reason: String,
    },
    /// A Produce record batch is malformed.
    #[error("produce to {topic}/{partition}: {reason}")]
    BadBatch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What is wrong.
        reason: String,
    },
}

/// Decodes and checks the body of `frame`. Returns the decoded request for callers that
/// need to look inside it.
pub fn check_request(
    frame: &Bytes,
    header: &RequestHeader,
    max_records_per_batch: usize,
) -> Result<RequestKind, RequestCheckError> {
    let request = decode_request(frame, header)?;
    // Trailing bytes are tolerated, as Kafka brokers do: librdkafka 2.16 sends three extra
    // bytes after Metadata v12 bodies. They are forwarded untouched and never interpreted.
    check_decoded(&request, max_records_per_batch)?;
    Ok(request)
}

/// Decodes the body of `frame` as the api key and version its header claims.
pub fn decode_request(
    frame: &Bytes,
    header: &RequestHeader,
) -> Result<RequestKind, RequestCheckError> {
    let api = header.api_key;
    let version = header.api_version;
    let mut body = frame.slice(header.body_offset.min(frame.len())..);
    RequestKind::decode(api, &mut body, version).map_err(|e| RequestCheckError::Undecodable {
        api,
        version,
        reason: format!("{e:#}"),
    })
}

/// The checks beyond decoding: every Produce record batch has a sane header.
pub fn check_decoded(
    request: &RequestKind,
    max_records_per_batch: usize,
) -> Result<(), RequestCheckError> {
    if let RequestKind::Produce(produce) = request {
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                if let Some(records) = &partition.records {
                    check_record_batches(records, max_records_per_batch).map_err(|reason| {
                        RequestCheckError::BadBatch {
                            topic: topic.name.0.to_string(),
                            partition: partition.index,
                            reason,
                        }
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// The structural validation stage: every forwarded request is decoded (the chain decodes
/// it for this stage) and checked; acks=0 Produce requests are marked fire-and-forget.
#[derive(Debug)]
pub struct Validation {
    max_records_per_batch: usize,
}

impl Validation {
    /// The stage, with the largest record count a Produce batch may claim.
    pub fn new(max_records_per_batch: usize) -> Validation {
        Validation {
            max_records_per_batch,
        }
    }
}

impl Stage for Validation {
    fn name(&self) -> &'static str {
        "validation"
    }

    fn decodes_request(&self, api: ApiKey, _version: i16) -> bool {
        !matches!(handling(api), Handling::Sasl | Handling::Local)
    }

    fn on_request<'a>(
        &'a mut self,
        _state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        self.validate(request)
            .map_or_else(Flow::Close, |()| Flow::Continue)
            .into()
    }
}

impl Validation {
    fn validate(&self, request: &mut Request) -> Result<(), ConnectionEnd> {
        let Some(body) = &mut request.body else {
            return Ok(());
        };
        check_decoded(body, self.max_records_per_batch)?;
        if let RequestKind::Produce(produce) = body {
            if produce.acks == 0 {
                // Sent upstream as acks=1 (brokers differ on whether acks=0 is answered);
                // the answer is dropped.
                produce.acks = 1;
                request.fire_and_forget = true;
                request.frame = with_produce_acks(&request.frame, &request.header, 1)?;
            }
        }
        Ok(())
    }
}

/// Walks the batch headers of a Produce `records` field (see
/// [`check_batch_headers`](crate::codec::record_batch::check_batch_headers)).
pub fn check_record_batches(records: &[u8], max_records_per_batch: usize) -> Result<(), String> {
    check_batch_headers(records, max_records_per_batch).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::header::peek_request_header;
    use crate::net::upstream::encode_request;
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    /// Offset of `records count` from the start of a batch.
    const RECORDS_COUNT_OFFSET: usize = 57;

    fn batch(n: usize, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 0,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 20])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.freeze()
    }

    fn produce_frame(records: Bytes, version: i16) -> (Bytes, RequestHeader) {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let frame = encode_request(ApiKey::Produce, version, 1, &request).unwrap();
        let header = peek_request_header(&frame).unwrap();
        (frame, header)
    }

    #[test]
    fn real_batches_pass_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let (frame, header) = produce_frame(batch(50, c), 9);
            check_request(&frame, &header, 1_000_000).unwrap();
        }
    }

    #[test]
    fn huge_record_count_is_refused() {
        let mut records = batch(3, Compression::None).to_vec();
        records[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        let (frame, header) = produce_frame(records.into(), 9);
        let err = check_request(&frame, &header, 1_000_000).unwrap_err();
        assert!(matches!(err, RequestCheckError::BadBatch { .. }), "{err}");

        let mut records = batch(3, Compression::Gzip).to_vec();
        records[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        let (frame, header) = produce_frame(records.into(), 9);
        assert!(check_request(&frame, &header, 1_000_000).is_err());
    }

    #[test]
    fn huge_array_count_is_refused_and_trailing_bytes_tolerated() {
        // Metadata v4 with topics array count 0x7fffffff and nothing after it.
        let frame = encode_request(ApiKey::Metadata, 4, 1, &MetadataRequest::default()).unwrap();
        let header = peek_request_header(&frame).unwrap();
        let mut hostile = frame[..header.body_offset].to_vec();
        hostile.extend_from_slice(&i32::MAX.to_be_bytes());
        hostile.push(1);
        let len = (hostile.len() - 4) as i32;
        hostile[..4].copy_from_slice(&len.to_be_bytes());
        let hostile = Bytes::from(hostile);
        let err = check_request(&hostile, &header, 1_000_000).unwrap_err();
        assert!(
            matches!(err, RequestCheckError::Undecodable { .. }),
            "{err}"
        );

        // Trailing bytes are tolerated (brokers ignore them; librdkafka sends some).
        let mut trailing = frame.to_vec();
        trailing.extend_from_slice(&[1, 0, 0]);
        let len = (trailing.len() - 4) as i32;
        trailing[..4].copy_from_slice(&len.to_be_bytes());
        check_request(&Bytes::from(trailing), &header, 1_000_000).unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(
            key in 0i16..93,
            version in 0i16..20,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            if let Ok(api) = ApiKey::try_from(key) {
                let mut frame = vec![0u8; 4];
                frame.extend_from_slice(&key.to_be_bytes());
                frame.extend_from_slice(&version.to_be_bytes());
                frame.extend_from_slice(&1i32.to_be_bytes());
                frame.extend_from_slice(&[0xff, 0xff, 0]);
                frame.extend_from_slice(&body);
                let frame = Bytes::from(frame);
                if let Ok(header) = peek_request_header(&frame) {
                    prop_assert_eq!(header.api_key, api);
                    let _ = check_request(&frame, &header, 1_000_000);
                }
            }
        }

        #[test]
        fn arbitrary_batches_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = check_record_batches(&bytes, 1_000_000);
        }
    }
}
