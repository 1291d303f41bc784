//! librdkafka (through the `rdkafka` crate) as the reference Kafka client.
//!
//! This module builds clients for an [`Endpoint`], creates topics, produces
//! [`Rec`]ords, and reads them back; [`crate::records`] defines and compares the records,
//! [`crate::observe`] records what each client learned. Both are re-exported here so
//! scenarios need one import.
//!
//! Every client carries a [`RecordingContext`], so a scenario can assert that a client
//! talking through the proxy never learned a real broker's address.

use crate::endpoint::{ClientAuth, Endpoint};
pub use crate::observe::{
    assert_consumer_addresses, assert_metadata_addresses, Extra, Observed, RecordingContext,
};
pub use crate::records::{
    assert_contiguous_offsets, assert_same_records, pseudo_random_bytes, sample_records,
    small_records, Consumed, Placement, Rec, TIMESTAMP_BASE,
};
use crate::{with_timeout, OP_TIMEOUT};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How often clients emit statistics (which carry the broker addresses they know).
const STATS_INTERVAL_MS: &str = "200";

/// A client plus what it observed.
pub struct Client<T> {
    /// The rdkafka client.
    pub inner: T,
    /// Its logs and learned addresses.
    pub observed: Observed,
}

impl<T> std::ops::Deref for Client<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

/// Base configuration for `ep`: bootstrap, TLS trust, statistics, bounded timeouts.
pub fn client_config(ep: &Endpoint) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &ep.bootstrap)
        .set("client.id", "portcullis-tests")
        .set("statistics.interval.ms", STATS_INTERVAL_MS)
        .set("socket.timeout.ms", "20000")
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "5000")
        // Info-level librdkafka logs (connects, disconnects, errors) for failure output.
        .set_log_level(RDKafkaLogLevel::Info);
    if let Some(ca) = &ep.ca {
        c.set("security.protocol", "ssl")
            .set("ssl.ca.location", ca.to_string_lossy().as_ref());
    }
    if let Some((cert, key)) = &ep.client_cert {
        c.set("ssl.certificate.location", cert.to_string_lossy().as_ref())
            .set("ssl.key.location", key.to_string_lossy().as_ref());
    }
    if let Some(auth) = &ep.auth {
        c.set(
            "security.protocol",
            if ep.ca.is_some() {
                "sasl_ssl"
            } else {
                "sasl_plaintext"
            },
        );
        match auth {
            ClientAuth::Password {
                mechanism,
                username,
                password,
            } => {
                c.set("sasl.mechanism", mechanism)
                    .set("sasl.username", username)
                    .set("sasl.password", password);
            }
            ClientAuth::OAuthBearer(_) => {
                c.set("sasl.mechanism", "OAUTHBEARER");
            }
        }
    }
    c
}

fn build<T>(
    ep: &Endpoint,
    label: &str,
    extra: &[(&str, &str)],
    create: impl FnOnce(&ClientConfig, RecordingContext) -> Result<T, KafkaError>,
) -> Client<T> {
    let mut config = client_config(ep);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let observed = Observed::new(label);
    let mut ctx = RecordingContext::new(observed.clone());
    if let Some(ClientAuth::OAuthBearer(tokens)) = &ep.auth {
        ctx = ctx.with_tokens(tokens.clone());
    }
    let inner = create(&config, ctx).unwrap_or_else(|e| panic!("cannot create {label}: {e}"));
    Client { inner, observed }
}

/// A producer for `ep` with `extra` settings (e.g. `compression.type`).
pub fn producer(ep: &Endpoint, extra: &[(&str, &str)]) -> Client<FutureProducer<RecordingContext>> {
    let mut settings = vec![("message.timeout.ms", "30000"), ("linger.ms", "5")];
    settings.extend_from_slice(extra);
    build(ep, "producer", &settings, |c, ctx| {
        c.create_with_context(ctx)
    })
}

/// A consumer for `ep` in `group` (offsets are only committed explicitly).
pub fn consumer(
    ep: &Endpoint,
    group: &str,
    extra: &[(&str, &str)],
) -> Client<StreamConsumer<RecordingContext>> {
    let mut settings = vec![
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "500"),
        ("fetch.wait.max.ms", "100"),
    ];
    settings.extend_from_slice(extra);
    build(ep, &format!("consumer[{group}]"), &settings, |c, ctx| {
        c.create_with_context(ctx)
    })
}

/// An admin client for `ep`.
pub fn admin(ep: &Endpoint) -> Client<AdminClient<RecordingContext>> {
    build(ep, "admin", &[], |c, ctx| c.create_with_context(ctx))
}

/// Admin options with bounded request and operation timeouts.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(OP_TIMEOUT))
        .operation_timeout(Some(OP_TIMEOUT))
}

/// Creates `topic` with `partitions` partitions (replication 1) and waits until its
/// metadata shows a leader for every partition.
pub async fn create_topic(ep: &Endpoint, topic: &str, partitions: i32) {
    let admin = admin(ep);
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = with_timeout(
        OP_TIMEOUT,
        "CreateTopics",
        admin.create_topics([&new], &admin_options()),
    )
    .await
    .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
    assert_eq!(results.len(), 1, "one result per topic: {results:?}");
    if let Err((name, code)) = &results[0] {
        panic!("CreateTopics {name} failed: {code:?}");
    }
    wait_for_topic(&admin.inner, topic, partitions, OP_TIMEOUT);
    assert_metadata_addresses(&admin.inner, ep, "admin client");
}

/// Polls metadata until `topic` has `partitions` partitions, each with a leader.
pub fn wait_for_topic(client: &impl FetchMetadata, topic: &str, partitions: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    let ready = t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0);
                    if ready {
                        return;
                    }
                    last = format!(
                        "error {:?}, {} partitions, leaders {:?}",
                        t.error(),
                        t.partitions().len(),
                        t.partitions()
                            .iter()
                            .map(|p| p.leader())
                            .collect::<Vec<_>>()
                    );
                } else {
                    last = "topic absent from metadata".into();
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {topic} not ready with {partitions} partitions after {limit:?}: {last}");
}

/// Anything that can fetch metadata (producers, consumers, admin clients).
pub trait FetchMetadata {
    /// Metadata for `topic` (or all topics).
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata>;
}

impl<C: ClientContext + 'static> FetchMetadata for FutureProducer<C> {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.client().fetch_metadata(topic, timeout)
    }
}
impl<C: ConsumerContext + 'static> FetchMetadata for StreamConsumer<C> {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.fetch_metadata(topic, timeout)
    }
}
impl<C: ClientContext> FetchMetadata for AdminClient<C> {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.inner().fetch_metadata(topic, timeout)
    }
}

fn owned_headers(rec: &Rec) -> Option<OwnedHeaders> {
    if rec.headers.is_empty() {
        return None;
    }
    let mut h = OwnedHeaders::new_with_capacity(rec.headers.len());
    for (k, v) in &rec.headers {
        h = h.insert(Header {
            key: k.as_str(),
            value: v.as_ref(),
        });
    }
    Some(h)
}

fn future_record<'a>(topic: &'a str, rec: &'a Rec) -> FutureRecord<'a, Vec<u8>, Vec<u8>> {
    let mut r = FutureRecord::to(topic).partition(rec.partition);
    if let Some(k) = &rec.key {
        r = r.key(k);
    }
    if let Some(v) = &rec.value {
        r = r.payload(v);
    }
    if let Some(h) = owned_headers(rec) {
        r = r.headers(h);
    }
    if let Some(t) = rec.timestamp {
        r = r.timestamp(t);
    }
    r
}

/// Enqueues every record (pipelined; librdkafka batches them), then waits for every delivery
/// report. Panics on any failed delivery. Returns placements in send order.
pub async fn produce_all(
    producer: &FutureProducer<RecordingContext>,
    topic: &str,
    recs: &[Rec],
) -> Vec<Placement> {
    let deadline = Instant::now() + OP_TIMEOUT * 2;
    let mut futures = Vec::with_capacity(recs.len());
    for (i, rec) in recs.iter().enumerate() {
        let mut record = future_record(topic, rec);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    assert!(
                        Instant::now() < deadline,
                        "producer queue stayed full (record {i})"
                    );
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("cannot enqueue record {i}: {e}"),
            }
        }
    }
    let mut placements = Vec::with_capacity(recs.len());
    for (i, f) in futures.into_iter().enumerate() {
        let outcome = with_timeout(
            OP_TIMEOUT * 2,
            &format!("delivery report for record {i}"),
            f,
        )
        .await;
        match outcome {
            Ok(Ok(d)) => placements.push((d.partition, d.offset)),
            Ok(Err((e, _))) => panic!("record {i} was not delivered: {e}"),
            Err(_) => panic!("delivery future of record {i} cancelled"),
        }
    }
    placements
}

/// Produces each record in its own request and waits for it before sending the next, so
/// every record is its own record batch (see the tansu quirk in `broker`).
pub async fn produce_one_by_one(
    producer: &FutureProducer<RecordingContext>,
    topic: &str,
    recs: &[Rec],
) -> Vec<Placement> {
    let mut placements = Vec::with_capacity(recs.len());
    for rec in recs {
        placements.extend(produce_all(producer, topic, std::slice::from_ref(rec)).await);
    }
    placements
}

/// Converts a consumed message to a [`Consumed`].
pub fn to_consumed(m: &impl Message) -> Consumed {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        rec: Rec {
            partition: m.partition(),
            key: m.key().map(|k| k.to_vec()),
            value: m.payload().map(|v| v.to_vec()),
            headers,
            timestamp: m.timestamp().to_millis(),
        },
        offset: m.offset(),
    }
}

/// Assigns every partition of `topic` (0..partitions) to `consumer` from `offset`.
pub fn assign(
    consumer: &StreamConsumer<RecordingContext>,
    topic: &str,
    partitions: i32,
    offset: Offset,
) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, offset)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign partitions");
}

/// Reads exactly `n` records (panicking on a consumer error or after `limit`).
pub async fn consume_n(
    consumer: &StreamConsumer<RecordingContext>,
    n: usize,
    limit: Duration,
) -> Vec<Consumed> {
    let mut out: Vec<Consumed> = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(to_consumed(&m)),
            Ok(Err(e)) => panic!("consumer error after {} of {n} records: {e}", out.len()),
            Err(_) => {
                let last = out.last().map(|c| (c.rec.partition, c.offset));
                panic!(
                    "read only {} of {n} records within {limit:?} (last partition/offset read: {last:?})",
                    out.len()
                )
            }
        }
    }
    out
}

/// Consumes `topic` from the beginning with a throwaway group and returns exactly `n`
/// records, then checks nothing else was stored: each partition's records sit at offsets
/// 0, 1, 2, ... and a sentinel record produced afterwards lands right after them.
///
/// (The high watermark would be the obvious check, but tansu 0.6.0's memory engine reports
/// the last batch's *base* offset + 1 as the high watermark, so it is only right for
/// one-record batches.)
pub async fn read_back(ep: &Endpoint, topic: &str, partitions: i32, n: usize) -> Vec<Consumed> {
    let c = consumer(ep, &crate::unique_name("reader"), &[]);
    assign(&c.inner, topic, partitions, Offset::Beginning);
    let got = consume_n(&c.inner, n, OP_TIMEOUT * 2).await;
    assert_consumer_addresses(&c, ep, "read-back consumer", Extra::Forbidden).await;
    drop(c);
    let mut counts = vec![0i64; partitions.max(0) as usize];
    for m in &got {
        let p = m.rec.partition;
        assert!(
            (0..partitions).contains(&p),
            "read a record from partition {p} of {topic}"
        );
        let next = &mut counts[p as usize];
        assert_eq!(
            m.offset, *next,
            "{topic}/{p}: read offset {}, expected {next} (gap, duplicate or reordering)",
            m.offset
        );
        *next += 1;
    }
    assert_log_ends(ep, topic, &counts).await;
    got
}

/// Produces one sentinel record to every partition of `topic` and asserts it lands at
/// `ends[partition]`, i.e. the log held exactly that many records before.
pub async fn assert_log_ends(ep: &Endpoint, topic: &str, ends: &[i64]) {
    let p = producer(ep, &[("acks", "all"), ("linger.ms", "0")]);
    let sentinels: Vec<Rec> = (0..ends.len() as i32)
        .map(|partition| Rec {
            partition,
            key: None,
            value: Some(b"sentinel".to_vec()),
            headers: vec![],
            timestamp: None,
        })
        .collect();
    let placements = produce_all(&p, topic, &sentinels).await;
    for (partition, offset) in placements {
        assert_eq!(
            offset, ends[partition as usize],
            "{topic}/{partition}: a record produced after the test data landed at offset {offset}, so the log held {offset} records, expected {}",
            ends[partition as usize]
        );
    }
    p.observed.assert_addresses(ep, "sentinel producer").await;
}
