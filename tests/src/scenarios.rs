//! The end-to-end scenarios, written once and run against any [`Endpoint`].
//!
//! `tests/direct.rs` runs each one client -> broker, `tests/proxied.rs` client -> proxy ->
//! broker (and over TLS). A scenario that passes direct and fails proxied points at the
//! proxy; one that fails both points at the broker or the scenario. Every scenario checks
//! what a user would notice (records byte-identical and in order, offsets, errors), and
//! through the proxy also that no client ever learned a real broker address.

use crate::endpoint::Endpoint;
use crate::kafka::{self, Extra, Rec};
use crate::{unique_name, wire, with_timeout, OP_TIMEOUT};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::io::Write;
use std::time::Duration;

/// Produces awkward records (keys, headers, nulls, large values) to a 3-partition topic
/// with `compression.type = codec`, reads them back from the beginning, and asserts they
/// are byte-identical, at the reported offsets and in partition order.
pub async fn produce_consume_codec(ep: &Endpoint, codec: &str) {
    let topic = unique_name(&format!("codec-{codec}"));
    kafka::create_topic(ep, &topic, 3).await;
    let recs = kafka::sample_records(240, 3, 42);
    let producer = kafka::producer(ep, &[("compression.type", codec), ("linger.ms", "20")]);
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);
    let got = kafka::read_back(ep, &topic, 3, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
    producer.observed.assert_addresses(ep, "producer").await;
}

/// A consumer group reads from the beginning, commits after some records and leaves; a
/// second member of the same group resumes exactly at the committed offset. Records are
/// produced one per batch (tansu cannot fetch from inside a batch).
pub async fn consumer_group_resume(ep: &Endpoint) {
    let topic = unique_name("group");
    let group = unique_name("group");
    kafka::create_topic(ep, &topic, 1).await;
    let recs = kafka::sample_records(10, 1, 7);
    let producer = kafka::producer(ep, &[("linger.ms", "0")]);
    let placements = kafka::produce_one_by_one(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);

    // First member: subscribe (group coordination, FindCoordinator through the proxy),
    // read 4 from the beginning, commit synchronously, leave.
    let first = kafka::consumer(ep, &group, &[]);
    first.subscribe(&[&topic]).expect("subscribe");
    let mut got = Vec::new();
    with_timeout(
        OP_TIMEOUT * 2,
        "first group member reading 4 records",
        async {
            while got.len() < 4 {
                let m = first
                    .recv()
                    .await
                    .unwrap_or_else(|e| panic!("first member: {e}"));
                got.push(kafka::to_consumed(&m));
                if got.len() == 4 {
                    first
                        .commit_message(&m, CommitMode::Sync)
                        .unwrap_or_else(|e| panic!("commit: {e}"));
                }
            }
        },
    )
    .await;
    kafka::assert_same_records(&recs[..4], &placements[..4], &got);
    kafka::assert_consumer_addresses(&first, ep, "first group member", Extra::Allowed).await;
    drop(first);

    // The committed offset is visible to anyone asking for the group (OffsetFetch).
    assert_eq!(
        committed(ep, &group, &topic),
        Offset::Offset(4),
        "committed offset after the first member"
    );

    // Second member resumes at offset 4 and reads the rest, nothing replayed.
    let second = kafka::consumer(ep, &group, &[]);
    second.subscribe(&[&topic]).expect("subscribe");
    let rest = kafka::consume_n(&second, 6, OP_TIMEOUT * 2).await;
    assert_eq!(
        rest[0].offset, 4,
        "second member resumed at offset {}, committed 4",
        rest[0].offset
    );
    kafka::assert_same_records(&recs[4..], &placements[4..], &rest);
    second
        .commit(&second.position().expect("position"), CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit: {e}"));
    kafka::assert_consumer_addresses(&second, ep, "second group member", Extra::Forbidden).await;
    drop(second);
    assert_eq!(
        committed(ep, &group, &topic),
        Offset::Offset(10),
        "committed offset after the second member"
    );
}

fn committed(ep: &Endpoint, group: &str, topic: &str) -> Offset {
    let c = kafka::consumer(ep, group, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, OP_TIMEOUT)
        .unwrap_or_else(|e| panic!("OffsetFetch for {group}: {e}"));
    let offset = got
        .find_partition(topic, 0)
        .map(|e| e.offset())
        .unwrap_or(Offset::Invalid);
    offset
}

/// Creates a topic with the admin client, sees it in metadata, gets TopicAlreadyExists for
/// a second create, deletes it and sees it disappear; deleting again reports
/// UnknownTopicOrPartition.
pub async fn admin_create_delete(ep: &Endpoint) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let topic = unique_name("admin");
    let admin = kafka::admin(ep);
    let opts = kafka::admin_options();
    let new = NewTopic::new(&topic, 4, TopicReplication::Fixed(1));
    let r = with_timeout(
        OP_TIMEOUT,
        "CreateTopics",
        admin.create_topics([&new], &opts),
    )
    .await
    .expect("CreateTopics request");
    assert_eq!(r, vec![Ok(topic.clone())], "first create");
    kafka::wait_for_topic(&admin.inner, &topic, 4, OP_TIMEOUT);

    let r = with_timeout(
        OP_TIMEOUT,
        "CreateTopics again",
        admin.create_topics([&new], &opts),
    )
    .await
    .expect("CreateTopics request");
    assert_eq!(
        r,
        vec![Err((topic.clone(), RDKafkaErrorCode::TopicAlreadyExists))],
        "second create"
    );

    let r = with_timeout(
        OP_TIMEOUT,
        "DeleteTopics",
        admin.delete_topics(&[&topic], &opts),
    )
    .await
    .expect("DeleteTopics request");
    assert_eq!(r, vec![Ok(topic.clone())], "delete");
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    loop {
        let md = admin
            .inner
            .inner()
            .fetch_metadata(None, OP_TIMEOUT)
            .expect("metadata");
        if !md.topics().iter().any(|t| t.name() == topic) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deleted topic {topic} still in metadata"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = with_timeout(
        OP_TIMEOUT,
        "DeleteTopics again",
        admin.delete_topics(&[&topic], &opts),
    )
    .await
    .expect("DeleteTopics request");
    assert_eq!(
        r,
        vec![Err((
            topic.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))],
        "second delete"
    );
    kafka::assert_metadata_addresses(&admin.inner, ep, "admin client");
}

/// ListOffsets: earliest/latest watermarks and timestamp lookups on one-record batches
/// with timestamps 1 s apart.
///
/// tansu 0.6.0 (memory engine) answers every timestamp lookup with offset 0, so the
/// timestamp lookups are checked differentially: through a proxy the answer must equal the
/// broker's own answer to the same question; Kafka's semantics are asserted only where
/// tansu gets them right (timestamps at or before the first record).
pub async fn list_offsets(ep: &Endpoint) {
    let topic = unique_name("offsets");
    kafka::create_topic(ep, &topic, 1).await;
    let recs: Vec<Rec> = (0..5)
        .map(|i| Rec {
            partition: 0,
            key: Some(vec![i as u8]),
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![],
            timestamp: Some(kafka::TIMESTAMP_BASE + 1000 * i),
        })
        .collect();
    let producer = kafka::producer(ep, &[("linger.ms", "0")]);
    kafka::produce_one_by_one(&producer, &topic, &recs).await;

    let c = kafka::consumer(ep, &unique_name("offsets"), &[]);
    let direct = kafka::consumer(&ep.direct(), &unique_name("offsets"), &[]);
    let (low, high) = c
        .fetch_watermarks(&topic, 0, OP_TIMEOUT)
        .expect("watermarks");
    assert_eq!((low, high), (0, 5), "earliest/latest offsets");

    let lookup = |c: &rdkafka::consumer::StreamConsumer<kafka::RecordingContext>, ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(ts))
            .expect("tpl");
        let got = c
            .offsets_for_times(tpl, OP_TIMEOUT)
            .expect("offsets_for_times");
        let e = got.find_partition(&topic, 0).expect("partition in answer");
        assert!(
            e.error().is_ok(),
            "offsets_for_times({ts}): {:?}",
            e.error()
        );
        e.offset()
    };
    for (delta, kafka_answer) in [
        (-1, Offset::Offset(0)),
        (0, Offset::Offset(0)),
        (2500, Offset::Offset(3)),
        (4000, Offset::Offset(4)),
        (4001, Offset::End),
    ] {
        let ts = kafka::TIMESTAMP_BASE + delta;
        let got = lookup(&c, ts);
        let reference = lookup(&direct, ts);
        assert_eq!(
            got, reference,
            "offset for timestamp base+{delta}: endpoint and broker disagree"
        );
        if delta <= 0 {
            assert_eq!(
                got, kafka_answer,
                "first offset with timestamp >= base+{delta}"
            );
        }
    }
    kafka::assert_consumer_addresses(&c, ep, "offsets consumer", Extra::Allowed).await;
}

/// An idempotent producer (InitProducerId, sequence numbers) writes 2,000 records to two
/// partitions; every partition holds them exactly once, contiguous, in send order.
pub async fn idempotent_producer(ep: &Endpoint) {
    let topic = unique_name("idempotent");
    kafka::create_topic(ep, &topic, 2).await;
    let recs: Vec<Rec> = kafka::small_records(2000, 0, 64)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Rec {
            partition: (i % 2) as i32,
            ..r
        })
        .collect();
    let producer = kafka::producer(
        ep,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "2"),
            ("batch.num.messages", "50"),
        ],
    );
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);
    let got = kafka::read_back(ep, &topic, 2, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
    producer
        .observed
        .assert_addresses(ep, "idempotent producer")
        .await;
}

/// The brokers a client finds in Metadata are all reachable addresses of the endpoint
/// (through the proxy: proxy host and ports only), and every partition leader is one of
/// them.
pub async fn metadata_addresses(ep: &Endpoint) {
    let topic = unique_name("metadata");
    kafka::create_topic(ep, &topic, 3).await;
    let producer = kafka::producer(ep, &[]);
    let md = producer
        .client()
        .fetch_metadata(None, OP_TIMEOUT)
        .expect("metadata");
    assert!(!md.brokers().is_empty(), "metadata lists no brokers");
    let ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    for b in md.brokers() {
        ep.assert_address(
            b.host(),
            b.port() as u16,
            &format!("Metadata broker {}", b.id()),
        );
    }
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    assert_eq!(t.partitions().len(), 3);
    for p in t.partitions() {
        assert!(
            ids.contains(&p.leader()),
            "leader {} of partition {} is not a listed broker {ids:?}",
            p.leader(),
            p.id()
        );
    }
    // The client can actually use what it was told: a produce reaches the leader.
    let placements = kafka::produce_all(&producer, &topic, &kafka::sample_records(3, 3, 1)).await;
    assert_eq!(placements.len(), 3);
    producer.observed.assert_addresses(ep, "producer").await;
}

/// Thousands of small records with five produce requests in flight per connection: every
/// one acknowledged, stored in send order, read back identical.
pub async fn pipelined_produce(ep: &Endpoint) {
    let topic = unique_name("pipeline");
    kafka::create_topic(ep, &topic, 1).await;
    let recs = kafka::small_records(5000, 0, 40);
    let producer = kafka::producer(
        ep,
        &[
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "0"),
            ("batch.num.messages", "10"),
            ("acks", "all"),
        ],
    );
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);
    let got = kafka::read_back(ep, &topic, 1, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
    producer
        .observed
        .assert_addresses(ep, "pipelining producer")
        .await;
}

/// Produce with acks=0 (no response at all): the records arrive in order, and the producer's
/// connections keep working afterwards.
pub async fn acks_zero(ep: &Endpoint) {
    let topic = unique_name("acks0");
    kafka::create_topic(ep, &topic, 1).await;
    let recs = kafka::small_records(300, 0, 100);
    let producer = kafka::producer(
        ep,
        &[
            ("acks", "0"),
            ("linger.ms", "1"),
            ("batch.num.messages", "20"),
        ],
    );
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    producer.flush(OP_TIMEOUT).expect("flush");
    // A request that does expect an answer still gets one after the acks=0 produces.
    producer
        .client()
        .fetch_metadata(Some(&topic), OP_TIMEOUT)
        .expect("metadata after acks=0 produce");
    let got = kafka::read_back(ep, &topic, 1, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
    producer
        .observed
        .assert_addresses(ep, "acks=0 producer")
        .await;
}

/// Whether a scenario accepts responses to acks=0 produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks0Responses {
    /// Kafka's contract: the server never answers an acks=0 Produce. Required of the proxy.
    Forbidden,
    /// Tolerated in their request-order place: tansu 0.6.0 answers acks=0 produces.
    Tolerated,
}

/// Raw pipelining on one connection, one write: ApiVersions (which a proxy may answer
/// itself), Metadata (forwarded) and acks=0 Produce (no response) interleaved. Every
/// response must come back in request order, none for the acks=0 produces (unless
/// `acks0` tolerates them), and the acks=0 records must be stored in order.
pub async fn raw_pipelining(ep: &Endpoint, acks0: Acks0Responses) {
    assert!(!ep.is_tls(), "raw_pipelining speaks plaintext only");
    let topic = unique_name("raw");
    kafka::create_topic(ep, &topic, 1).await;

    // Talk to the partition leader as clients are told to.
    let producer = kafka::producer(ep, &[]);
    let md = producer
        .client()
        .fetch_metadata(Some(&topic), OP_TIMEOUT)
        .expect("metadata");
    let leader_id = md.topics()[0].partitions()[0].leader();
    let leader = md
        .brokers()
        .iter()
        .find(|b| b.id() == leader_id)
        .expect("leader listed");
    let leader_addr = format!("{}:{}", leader.host(), leader.port());
    ep.assert_address(leader.host(), leader.port() as u16, "partition leader");
    drop(producer);

    let addr = leader_addr.clone();
    let topic2 = topic.clone();
    tokio::task::spawn_blocking(move || raw_pipelining_blocking(&addr, &topic2, acks0))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    let got = kafka::read_back(ep, &topic, 1, 10).await;
    for (i, c) in got.iter().enumerate() {
        assert_eq!(c.offset, i as i64);
        assert_eq!(
            c.rec.value.as_deref(),
            Some(format!("raw-{i}").as_bytes()),
            "offset {i}"
        );
        assert_eq!(c.rec.key, None);
    }
}

fn raw_pipelining_blocking(addr: &str, topic: &str, acks0: Acks0Responses) {
    let ranges = wire::probe_api_versions(addr, OP_TIMEOUT).expect("ApiVersions");
    let md_version = wire::find_api(&ranges, wire::METADATA)
        .and_then(wire::pick_metadata_version)
        .unwrap_or_else(|| panic!("no usable Metadata version in {ranges:?}"));
    let produce_version = wire::find_api(&ranges, wire::PRODUCE)
        .and_then(wire::pick_produce_version)
        .unwrap_or_else(|| panic!("no usable Produce version in {ranges:?}"));

    let mut s = wire::connect(addr, OP_TIMEOUT).expect("connect");
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    let mut unanswered = Vec::new();
    let mut corr = 100;
    for i in 0..10 {
        buf.extend(wire::api_versions_request(corr));
        expected.push(corr);
        corr += 1;
        let value = format!("raw-{i}");
        let batch = wire::record_batch(&[value.as_bytes()], kafka::TIMESTAMP_BASE + i);
        buf.extend(wire::produce_request(
            corr,
            produce_version,
            0,
            topic,
            0,
            &batch,
        ));
        unanswered.push(corr); // acks=0: no response expected
        corr += 1;
        buf.extend(wire::metadata_request(corr, md_version));
        expected.push(corr);
        corr += 1;
    }
    // A final marker: if any acks=0 produce were answered, the order check catches it.
    buf.extend(wire::api_versions_request(9999));
    expected.push(9999);
    s.write_all(&buf).expect("write pipelined requests");
    let mut got = Vec::new();
    while got.last() != Some(&9999) {
        match wire::read_response(&mut s) {
            Ok((c, _)) => got.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => panic!(
                "connection closed by the server after responses {got:?} (expected {expected:?})"
            ),
            Err(e) => panic!("after responses {got:?} (expected {expected:?}): {e}"),
        }
        assert!(
            got.len() <= expected.len() + unanswered.len(),
            "more responses than requests: {got:?}"
        );
    }
    let answered_acks0: Vec<i32> = got
        .iter()
        .copied()
        .filter(|c| unanswered.contains(c))
        .collect();
    if acks0 == Acks0Responses::Forbidden {
        assert!(
            answered_acks0.is_empty(),
            "acks=0 produce requests {answered_acks0:?} were answered; responses: {got:?}"
        );
    }
    let mut ordered = got.clone();
    ordered.sort_unstable();
    assert_eq!(got, ordered, "responses out of request order");
    let answered: Vec<i32> = got
        .iter()
        .copied()
        .filter(|c| !unanswered.contains(c))
        .collect();
    assert_eq!(answered, expected, "a request was not answered");
}
