//! Writes small, valid seed inputs for every fuzz target into `fuzz/seeds/<target>/`.
//!
//! Run from `fuzz/`: `cargo run --release --example gen_seeds` (plain build, no fuzzing
//! instrumentation). The seeds are deterministic, so re-running only rewrites the same files.
//! Each seed follows the input layout documented at the top of its fuzz target.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use portcullis::pipeline::api_table::{handling, proxy_versions, Handling};
use portcullis::codec::frame::build_frame;
use portcullis::net::upstream::encode_request;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn encode<M: Encodable>(m: &M, version: i16) -> Result<Bytes> {
    let mut b = BytesMut::new();
    m.encode(&mut b, version).map_err(|e| format!("{e:#}"))?;
    Ok(b.freeze())
}

fn batch(n: usize, compression: Compression) -> Result<Bytes> {
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
            value: Some(Bytes::from(vec![b'v'; 8])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| format!("{e:#}"))?;
    Ok(buf.freeze())
}

fn produce(records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// Request seeds: (api key, version, body), written for `request_header` (whole frame),
/// `request_check` (structured and raw modes) and `frame_reader` (a few frames in a row).
fn requests() -> Result<Vec<(ApiKey, i16, Bytes)>> {
    let mut out = Vec::new();
    let plain = batch(3, Compression::None)?;
    let gzip = batch(3, Compression::Gzip)?;
    for v in [3i16, 7, 9, 11] {
        out.push((ApiKey::Produce, v, encode(&produce(plain.clone()), v)?));
    }
    out.push((ApiKey::Produce, 9, encode(&produce(gzip), 9)?));
    out.push((
        ApiKey::Produce,
        8,
        encode(&ProduceRequest::default().with_acks(0), 8)?,
    ));
    macro_rules! defaults {
        ($($ty:ty => $key:expr),* $(,)?) => {$(
            let range = $key.valid_versions();
            for v in [range.min, range.max] {
                if let Ok(body) = encode(&<$ty>::default(), v) {
                    out.push(($key, v, body));
                }
            }
        )*};
    }
    defaults!(
        MetadataRequest => ApiKey::Metadata,
        FetchRequest => ApiKey::Fetch,
        FindCoordinatorRequest => ApiKey::FindCoordinator,
        DescribeClusterRequest => ApiKey::DescribeCluster,
        ListOffsetsRequest => ApiKey::ListOffsets,
        OffsetCommitRequest => ApiKey::OffsetCommit,
        OffsetFetchRequest => ApiKey::OffsetFetch,
        JoinGroupRequest => ApiKey::JoinGroup,
        CreateTopicsRequest => ApiKey::CreateTopics,
        DescribeConfigsRequest => ApiKey::DescribeConfigs,
        InitProducerIdRequest => ApiKey::InitProducerId,
        ApiVersionsRequest => ApiKey::ApiVersions,
    );
    let md = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))]));
    out.push((ApiKey::Metadata, 12, encode(&md, 12)?));
    Ok(out)
}

fn frame_of(key: ApiKey, version: i16, body: &[u8]) -> Result<Bytes> {
    // The body is already encoded; wrap it in a header by encoding an empty "request" and
    // appending the body bytes.
    struct Raw<'a>(&'a [u8]);
    impl Encodable for Raw<'_> {
        fn encode<B: kafka_protocol::protocol::buf::ByteBufMut>(
            &self,
            buf: &mut B,
            _version: i16,
        ) -> anyhow::Result<()> {
            buf.put_slice(self.0);
            Ok(())
        }
        fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
            Ok(self.0.len())
        }
    }
    Ok(encode_request(key, version, 42, &Raw(body)).map_err(|e| format!("{e:#}"))?)
}

fn responses() -> Result<Vec<(ApiKey, i16, Bytes)>> {
    let mut out = Vec::new();
    let md_broker = |id: i32, host: &'static str| {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str(host))
            .with_port(9092)
    };
    let md = MetadataResponse::default()
        .with_brokers(vec![md_broker(1, "kafka-1"), md_broker(2, "kafka-2")])
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))]);
    for v in [0i16, 1, 9, 12, 13] {
        out.push((ApiKey::Metadata, v, encode(&md, v)?));
    }
    let fc_old = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(1))
        .with_host(StrBytes::from_static_str("kafka-1"))
        .with_port(9092);
    for v in [0i16, 3] {
        out.push((ApiKey::FindCoordinator, v, encode(&fc_old, v)?));
    }
    let fc_new = FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
        .with_key(StrBytes::from_static_str("group"))
        .with_node_id(BrokerId(2))
        .with_host(StrBytes::from_static_str("kafka-2"))
        .with_port(9093)]);
    for v in [4i16, 6] {
        if let Ok(b) = encode(&fc_new, v) {
            out.push((ApiKey::FindCoordinator, v, b));
        }
    }
    let dc =
        DescribeClusterResponse::default().with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("kafka-1"))
            .with_port(9092)]);
    for v in [0i16, 1, 2] {
        out.push((ApiKey::DescribeCluster, v, encode(&dc, v)?));
    }
    let pr = ProduceResponse::default().with_node_endpoints(vec![
        produce_response::NodeEndpoint::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("kafka-1"))
            .with_port(9092),
    ]);
    let range = ApiKey::Produce.valid_versions();
    for v in [10i16, range.max] {
        out.push((ApiKey::Produce, v, encode(&pr, v)?));
    }
    out.push((ApiKey::Produce, 9, encode(&ProduceResponse::default(), 9)?));
    let fr =
        FetchResponse::default().with_node_endpoints(vec![fetch_response::NodeEndpoint::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("kafka-1"))
            .with_port(9092)]);
    let range = ApiKey::Fetch.valid_versions();
    for v in [16i16, range.max] {
        out.push((ApiKey::Fetch, v, encode(&fr, v)?));
    }
    out.push((ApiKey::Fetch, 12, encode(&FetchResponse::default(), 12)?));
    Ok(out)
}

fn main() -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let forwarded: Vec<ApiKey> = ApiKey::iter()
        .filter(|k| matches!(handling(*k), Handling::Raw | Handling::RewriteResponse))
        .collect();

    // request_header, request_check, frame_reader
    let reqs = requests()?;
    let mut stream = Vec::new();
    for (key, version, body) in &reqs {
        let name = format!("{key:?}-v{version}");
        let frame = frame_of(*key, *version, body)?;
        write(&root.join("request_header"), &name, &frame)?;
        if stream.len() < 2048 {
            stream.extend_from_slice(&frame);
        }
        // Raw mode: even first byte, then the frame without its length prefix.
        let mut raw = vec![0u8];
        raw.extend_from_slice(&frame[4..]);
        write(&root.join("request_check"), &format!("raw-{name}"), &raw)?;
        // Structured mode: odd first byte, key index, version offset, body.
        if let (Some(idx), Some(range)) = (
            forwarded.iter().position(|k| k == key),
            proxy_versions(*key),
        ) {
            let mut structured = vec![1u8, idx as u8, (*version - range.min) as u8];
            structured.extend_from_slice(body);
            write(
                &root.join("request_check"),
                &format!("structured-{name}"),
                &structured,
            )?;
        }
    }
    write(
        &root.join("request_check"),
        "batches-none",
        &batch(2, Compression::None)?,
    )?;
    write(
        &root.join("request_check"),
        "batches-lz4",
        &batch(2, Compression::Lz4)?,
    )?;

    // frame_reader: control byte (bit 0 timed, bits 1.. chunk size) + a stream of frames.
    for (control, name) in [
        (0u8, "untimed-whole"),
        (1, "timed-whole"),
        (6, "untimed-chunk4"),
    ] {
        let mut input = vec![control];
        input.extend_from_slice(&stream);
        write(&root.join("frame_reader"), name, &input)?;
    }
    let mut two = vec![8u8];
    two.extend_from_slice(&build_frame(&[b"abc"]));
    two.extend_from_slice(&build_frame(&[b""]));
    write(&root.join("frame_reader"), "two-small-frames", &two)?;

    // request_header also sees response frames (correlation id + optional tagged fields).
    write(
        &root.join("request_header"),
        "response-v0",
        &build_frame(&[&42i32.to_be_bytes()]),
    )?;
    write(
        &root.join("request_header"),
        "response-v1",
        &build_frame(&[&42i32.to_be_bytes(), &[0]]),
    )?;

    // response_rewrite: api index (0 Metadata, 1 FindCoordinator, 2 DescribeCluster,
    // 3 Produce, 4 Fetch), version offset from the proxy's minimum, body.
    let apis = [
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::DescribeCluster,
        ApiKey::Produce,
        ApiKey::Fetch,
    ];
    for (key, version, body) in responses()? {
        let idx = apis.iter().position(|k| *k == key).ok_or("unknown api")?;
        let min = proxy_versions(key).ok_or("refused api")?.min;
        let mut input = vec![idx as u8, (version - min) as u8];
        input.extend_from_slice(&body);
        write(
            &root.join("response_rewrite"),
            &format!("{key:?}-v{version}"),
            &input,
        )?;
    }

    // api_versions: version byte (0..=4) + a broker's ApiVersions response body.
    let keys = [
        (ApiKey::Produce, 0, 11),
        (ApiKey::Fetch, 0, 17),
        (ApiKey::Metadata, 0, 13),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::FindCoordinator, 0, 6),
        (ApiKey::DescribeCluster, 0, 2),
        (ApiKey::SaslHandshake, 0, 1),
    ];
    let av = ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    );
    for v in 0i16..=ApiKey::ApiVersions.valid_versions().max {
        let mut input = vec![v as u8];
        input.extend_from_slice(&encode(&av, v)?);
        write(&root.join("api_versions"), &format!("v{v}"), &input)?;
    }
    println!("seeds written to {}", root.display());
    Ok(())
}
