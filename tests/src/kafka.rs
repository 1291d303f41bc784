//! librdkafka (through the `rdkafka` crate) as the reference Kafka client.
//!
//! This module builds clients for an [`Endpoint`], creates topics, generates awkward sample
//! records (null keys and values, empty values, duplicate and null headers, multibyte header
//! keys, large and highly compressible values), produces them, reads them back, and compares
//! byte for byte and offset for offset.
//!
//! Every client carries a [`RecordingContext`] that keeps librdkafka's log lines (printed
//! when a test fails) and every broker address the client learned (from librdkafka's
//! statistics), so a scenario can assert that a client talking through the proxy never
//! learned a real broker's address, whichever response carried it.

use crate::endpoint::Endpoint;
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
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many librdkafka log lines a client keeps for failure output.
const LOG_LINES: usize = 400;

/// How often clients emit statistics (which carry the broker addresses they know).
const STATS_INTERVAL_MS: &str = "200";

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
    fn new(label: &str) -> Self {
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

/// Client context that records logs and broker addresses into an [`Observed`].
#[derive(Debug, Clone)]
pub struct RecordingContext {
    observed: Observed,
}

impl ClientContext for RecordingContext {
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
        .set("log_level", "6");
    if let Some(ca) = &ep.ca {
        c.set("security.protocol", "ssl")
            .set("ssl.ca.location", ca.to_string_lossy().as_ref());
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
    let ctx = RecordingContext {
        observed: observed.clone(),
    };
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

/// One record as sent or as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Partition it is sent to.
    pub partition: i32,
    /// Key (`None` = null key).
    pub key: Option<Vec<u8>>,
    /// Value (`None` = null value, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order (duplicates allowed, `None` = null header value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in ms, if set explicitly.
    pub timestamp: Option<i64>,
}

/// A record read back, with its offset.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The record.
    pub rec: Rec,
    /// Its offset.
    pub offset: i64,
}

/// A fixed timestamp base for sample records (2023-11-14), so timestamps are checkable.
pub const TIMESTAMP_BASE: i64 = 1_700_000_000_000;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce exactly.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `n` sample records spread round-robin over `partitions`, deliberately awkward: null and
/// empty keys and values, no/duplicate/null/multibyte headers, sizes from 0 bytes to 48 KiB,
/// random (incompressible) and repetitive (compressible) payloads, explicit timestamps.
pub fn sample_records(n: usize, partitions: i32, seed: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let s = seed.wrapping_add(i as u64 * 7919);
            let key = match i % 17 {
                5 => None,
                9 => Some(Vec::new()),
                _ => Some(
                    format!("key-{i}-")
                        .into_bytes()
                        .into_iter()
                        .chain(pseudo_random_bytes(s, i % 9))
                        .collect(),
                ),
            };
            let len = if i % 50 == 49 {
                48 * 1024
            } else {
                (i * 37) % 300
            };
            let value = match i % 23 {
                7 => None,
                11 => Some(Vec::new()),
                _ if i % 2 == 0 => Some(pseudo_random_bytes(s ^ 0xabcdef, len)),
                _ => Some(
                    format!("record {i} compressible compressible compressible ")
                        .into_bytes()
                        .into_iter()
                        .cycle()
                        .take(len)
                        .collect(),
                ),
            };
            let headers = match i % 5 {
                0 => vec![],
                1 => vec![("trace-id".to_string(), Some(pseudo_random_bytes(s, 16)))],
                2 => vec![
                    ("dup".to_string(), Some(b"first".to_vec())),
                    ("dup".to_string(), Some(b"second".to_vec())),
                    ("empty".to_string(), Some(Vec::new())),
                ],
                3 => vec![("null-value".to_string(), None)],
                _ => vec![
                    ("ключ-🔑".to_string(), Some("значение".as_bytes().to_vec())),
                    ("bin".to_string(), Some(vec![0, 255, 0, 128])),
                ],
            };
            Rec {
                partition: (i as i32) % partitions.max(1),
                key,
                value,
                headers,
                timestamp: Some(TIMESTAMP_BASE + i as i64),
            }
        })
        .collect()
}

/// `n` small records (~`size` bytes) for one partition, for volume tests.
pub fn small_records(n: usize, partition: i32, size: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let mut value = format!("{i:08}|").into_bytes();
            value.extend(pseudo_random_bytes(
                i as u64,
                size.saturating_sub(value.len()),
            ));
            Rec {
                partition,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(value),
                headers: vec![("seq".to_string(), Some(i.to_string().into_bytes()))],
                timestamp: Some(TIMESTAMP_BASE + i as i64),
            }
        })
        .collect()
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

/// Where the broker put a record: `(partition, offset)`; offset is -1 for acks=0.
pub type Placement = (i32, i64);

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
    let mut out = Vec::with_capacity(n);
    let what = format!("reading {n} records");
    with_timeout(limit, &what, async {
        while out.len() < n {
            match consumer.recv().await {
                Ok(m) => out.push(to_consumed(&m)),
                Err(e) => panic!("consumer error after {} of {n} records: {e}", out.len()),
            }
        }
    })
    .await;
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

fn describe_bytes(b: &Option<Vec<u8>>) -> String {
    match b {
        None => "null".into(),
        Some(v) if v.len() <= 32 => format!("{v:?}"),
        Some(v) => format!("{} bytes starting {:?}", v.len(), &v[..16]),
    }
}

fn first_difference(sent: &Rec, got: &Rec) -> String {
    if sent.key != got.key {
        return format!(
            "key: sent {}, got {}",
            describe_bytes(&sent.key),
            describe_bytes(&got.key)
        );
    }
    if sent.value != got.value {
        let at = match (&sent.value, &got.value) {
            (Some(a), Some(b)) => a
                .iter()
                .zip(b.iter())
                .position(|(x, y)| x != y)
                .map(|p| format!(" first differing byte at {p}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        return format!(
            "value: sent {}, got {}{at}",
            describe_bytes(&sent.value),
            describe_bytes(&got.value)
        );
    }
    if sent.headers != got.headers {
        return format!("headers: sent {:?}, got {:?}", sent.headers, got.headers);
    }
    if sent.timestamp.is_some() && sent.timestamp != got.timestamp {
        return format!(
            "timestamp: sent {:?}, got {:?}",
            sent.timestamp, got.timestamp
        );
    }
    if sent.partition != got.partition {
        return format!("partition: sent {}, got {}", sent.partition, got.partition);
    }
    "identical".into()
}

/// Asserts that `consumed` holds exactly the `sent` records, byte-identical (keys, values,
/// headers, timestamps), each partition in send order. When `placements` carry offsets
/// (not acks=0), also asserts each record sits at the offset its delivery report named and
/// that offsets grow in send order within a partition.
pub fn assert_same_records(sent: &[Rec], placements: &[Placement], consumed: &[Consumed]) {
    assert_eq!(
        sent.len(),
        placements.len(),
        "one placement per sent record"
    );
    assert_eq!(
        consumed.len(),
        sent.len(),
        "read back {} records, sent {}",
        consumed.len(),
        sent.len()
    );
    let mut sent_by_partition: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
    for (i, (rec, (partition, offset))) in sent.iter().zip(placements).enumerate() {
        assert_eq!(
            rec.partition, *partition,
            "record {i} was delivered to partition {partition}, sent to {}",
            rec.partition
        );
        sent_by_partition
            .entry(*partition)
            .or_default()
            .push((i, *offset));
    }
    let mut got_by_partition: BTreeMap<i32, Vec<&Consumed>> = BTreeMap::new();
    for c in consumed {
        got_by_partition.entry(c.rec.partition).or_default().push(c);
    }
    for (partition, sent_idx) in &sent_by_partition {
        let got = got_by_partition
            .get(partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(
            got.len(),
            sent_idx.len(),
            "partition {partition}: read {} records, sent {}",
            got.len(),
            sent_idx.len()
        );
        for (n, ((i, offset), c)) in sent_idx.iter().zip(got).enumerate() {
            let sent_rec = &sent[*i];
            if *offset >= 0 {
                assert_eq!(c.offset, *offset, "partition {partition}: record #{n} (sent as {i}) read at offset {}, delivery report said {offset}", c.offset);
            }
            if n > 0 {
                assert!(
                    c.offset > got[n - 1].offset,
                    "partition {partition}: offsets not increasing at #{n}: {} after {}",
                    c.offset,
                    got[n - 1].offset
                );
            }
            assert!(
                sent_rec == &c.rec
                    || (sent_rec.timestamp.is_none()
                        && Rec {
                            timestamp: None,
                            ..c.rec.clone()
                        } == *sent_rec),
                "partition {partition} offset {}: record sent as #{i} differs: {}",
                c.offset,
                first_difference(sent_rec, &c.rec)
            );
        }
    }
    assert_eq!(
        got_by_partition.len(),
        sent_by_partition.len(),
        "records read from unexpected partitions: {:?}",
        got_by_partition.keys().collect::<Vec<_>>()
    );
}

/// Asserts that `placements` in each partition are contiguous from 0 in send order (the
/// broker stored every record exactly once and in order).
pub fn assert_contiguous_offsets(placements: &[Placement]) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, (p, o)) in placements.iter().enumerate() {
        let expected = next.entry(*p).or_insert(0);
        assert_eq!(*o, *expected, "record {i}: partition {p} offset {o}, expected {expected} (gap, duplicate or reordering)");
        *expected += 1;
    }
}
