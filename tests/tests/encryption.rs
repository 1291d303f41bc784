//! Record encryption end to end: librdkafka producing and consuming through the real
//! `portcullis serve` with `[encryption]`, and the same topics read directly from the tansu
//! broker, where no plaintext may appear.
//!
//! Every value and header value carries a random 32-byte marker; "encrypted at rest" means
//! the marker is nowhere in what the broker returns, and "transparent" means the records read
//! back through the proxy are byte-identical (values, keys, headers, order, offsets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use portcullis_tests::encryption::{contains, marked_records, random_marker, KeyDir};
use portcullis_tests::hostile::{metric_sum, metrics_text};
use portcullis_tests::kafka::{self, Consumed, Placement, Rec};
use portcullis_tests::python::{assert_report, run_client};
use portcullis_tests::rdkafka::error::KafkaError;
use portcullis_tests::rdkafka::message::Message as _;
use portcullis_tests::rdkafka::types::RDKafkaErrorCode;
use portcullis_tests::rdkafka::Offset;
use portcullis_tests::{unique_name, with_test_timeout, Broker, Endpoint, Proxy, ProxyOptions};
use serde_json::Value;

const MARKER_HEADER: &str = "portcullis.enc";

/// A broker and a proxy encrypting every topic whose name starts with `enc.` (header values
/// too when `headers`).
fn start(headers: bool) -> (Broker, Proxy, KeyDir) {
    let broker = Broker::start();
    let keys = KeyDir::new();
    let extra = format!("encrypt_headers = {headers}");
    let proxy = Proxy::start_with(
        &broker,
        ProxyOptions {
            extra_toml: keys.proxy_toml(&[], &["enc."], &extra),
            ..ProxyOptions::default()
        },
    );
    (broker, proxy, keys)
}

/// Reads `n` records of `topic` (partitions 0..partitions) directly from the broker.
async fn read_direct(broker: &Broker, topic: &str, partitions: i32, n: usize) -> Vec<Consumed> {
    let c = kafka::consumer(&broker.endpoint(), &unique_name("direct"), &[]);
    kafka::assign(&c.inner, topic, partitions, Offset::Beginning);
    kafka::consume_n(&c.inner, n, Duration::from_secs(60)).await
}

/// Asserts that what the broker holds is ciphertext: the marker nowhere, every record that
/// had something to encrypt marked, keys in clear, tombstones still null.
fn assert_encrypted_at_rest(
    sent: &[Rec],
    placements: &[Placement],
    stored: &[Consumed],
    marker: &[u8],
    headers: bool,
) {
    let by_place: HashMap<Placement, &Rec> = placements.iter().copied().zip(sent).collect();
    for s in stored {
        let place = (s.rec.partition, s.offset);
        let original = by_place
            .get(&place)
            .unwrap_or_else(|| panic!("the broker holds a record at {place:?} nobody sent"));
        if let Some(v) = &s.rec.value {
            assert!(
                !contains(v, marker),
                "{place:?}: the value is in clear at the broker"
            );
        }
        for (key, value) in &s.rec.headers {
            if let Some(v) = value {
                assert!(
                    !headers || !contains(v, marker),
                    "{place:?}: header {key:?} is in clear at the broker"
                );
            }
        }
        assert_eq!(s.rec.key, original.key, "{place:?}: keys stay in clear");
        assert_eq!(
            s.rec.value.is_none(),
            original.value.is_none(),
            "{place:?}: a tombstone must stay a tombstone"
        );
        let marked = s.rec.headers.iter().any(|(k, _)| k == MARKER_HEADER);
        let sealed_headers = headers && original.headers.iter().any(|(_, v)| v.is_some());
        assert_eq!(
            marked,
            original.value.is_some() || sealed_headers,
            "{place:?}: marker header present exactly when something was encrypted"
        );
    }
}

/// Produces marked records with `settings`, checks the broker holds no plaintext, and reads
/// them back through the proxy byte-identical.
async fn round_trip(ep: &Endpoint, broker: &Broker, settings: &[(&str, &str)], headers: bool) {
    let topic = unique_name("enc.round-trip");
    kafka::create_topic(ep, &topic, 3).await;
    let marker = random_marker();
    let recs = marked_records(150, 3, 11, &marker);
    let producer = kafka::producer(ep, settings);
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);
    let stored = read_direct(broker, &topic, 3, recs.len()).await;
    assert_encrypted_at_rest(&recs, &placements, &stored, &marker, headers);
    let got = kafka::read_back(ep, &topic, 3, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
    producer.observed.assert_addresses(ep, "producer").await;
}

macro_rules! round_trip_test {
    ($name:ident, $headers:expr, $settings:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (mut broker, mut proxy, _keys) = start($headers);
            let ep = proxy.endpoint();
            with_test_timeout(
                stringify!($name),
                round_trip(&ep, &broker, $settings, $headers),
            )
            .await;
            proxy.assert_running();
            broker.assert_running();
        }
    };
}

round_trip_test!(codec_none, true, &[("compression.type", "none")]);
round_trip_test!(codec_gzip, true, &[("compression.type", "gzip")]);
round_trip_test!(codec_snappy, true, &[("compression.type", "snappy")]);
round_trip_test!(codec_lz4, true, &[("compression.type", "lz4")]);
round_trip_test!(codec_zstd, true, &[("compression.type", "zstd")]);
round_trip_test!(
    idempotent_producer_values_only,
    false,
    &[("enable.idempotence", "true"), ("compression.type", "lz4")]
);

/// A topic outside `[encryption]` is stored exactly as produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_topic_passes_untouched() {
    let (broker, mut proxy, _keys) = start(true);
    let ep = proxy.endpoint();
    with_test_timeout("an_unencrypted_topic_passes_untouched", async {
        let topic = unique_name("clear");
        kafka::create_topic(&ep, &topic, 1).await;
        let marker = random_marker();
        let recs = marked_records(40, 1, 3, &marker);
        let producer = kafka::producer(&ep, &[("compression.type", "gzip")]);
        let placements = kafka::produce_all(&producer, &topic, &recs).await;
        let stored = read_direct(&broker, &topic, 1, recs.len()).await;
        kafka::assert_same_records(&recs, &placements, &stored);
    })
    .await;
    proxy.assert_running();
}

/// Waits until `proxy`'s audit log holds a `record.decrypt` failure for `topic`/`partition`
/// with `failure`.
fn wait_for_refusal(proxy: &Proxy, topic: &str, partition: i64, failure: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = proxy.audit_events();
        if let Some(e) = events.into_iter().find(|e| {
            e["action"] == "record.decrypt"
                && e["resource"]["name"] == topic
                && e["details"]["partition"] == partition
                && e["details"]["failure"] == failure
        }) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record.decrypt {failure} event for {topic}/{partition}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ciphertext copied at the broker from one encrypted topic into another, and plaintext
/// written directly to an encrypted topic, are refused on Fetch with CORRUPT_MESSAGE for
/// their partition only: the other partition of the same topic and an unencrypted topic,
/// read by the same consumer, are served, and the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_ciphertext_and_injected_plaintext_fail_only_their_partition() {
    let (broker, mut proxy, _keys) = start(false);
    let ep = proxy.endpoint();
    let direct = broker.endpoint();
    let (src, dst, raw, clear) = (
        unique_name("enc.src"),
        unique_name("enc.dst"),
        unique_name("enc.raw"),
        unique_name("clear"),
    );
    with_test_timeout("copied_ciphertext_and_injected_plaintext", async {
        kafka::create_topic(&ep, &src, 1).await;
        kafka::create_topic(&ep, &dst, 2).await;
        kafka::create_topic(&ep, &raw, 1).await;
        kafka::create_topic(&ep, &clear, 1).await;
        let producer = kafka::producer(&ep, &[("linger.ms", "0")]);
        let good = kafka::small_records(5, 1, 64);
        let good_placements = kafka::produce_one_by_one(&producer, &dst, &good).await;
        let clear_recs = kafka::small_records(5, 0, 64);
        let clear_placements = kafka::produce_one_by_one(&producer, &clear, &clear_recs).await;
        let secrets = kafka::small_records(3, 0, 64);
        kafka::produce_one_by_one(&producer, &src, &secrets).await;

        // At the broker: copy src's ciphertext (value and headers) into dst/0, and write
        // plaintext into raw/0.
        let copied: Vec<Rec> = read_direct(&broker, &src, 1, secrets.len())
            .await
            .into_iter()
            .map(|c| Rec {
                partition: 0,
                timestamp: None,
                ..c.rec
            })
            .collect();
        assert!(copied
            .iter()
            .all(|r| r.headers.iter().any(|(k, _)| k == MARKER_HEADER)));
        let direct_producer = kafka::producer(&direct, &[("linger.ms", "0")]);
        kafka::produce_one_by_one(&direct_producer, &dst, &copied).await;
        kafka::produce_one_by_one(&direct_producer, &raw, &kafka::small_records(2, 0, 32)).await;

        let c = kafka::consumer(&ep, &unique_name("reader"), &[]);
        let mut tpl = portcullis_tests::rdkafka::TopicPartitionList::new();
        for (t, p) in [(&dst, 0), (&dst, 1), (&raw, 0), (&clear, 0)] {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
        portcullis_tests::rdkafka::consumer::Consumer::assign(&c.inner, &tpl).unwrap();
        let mut got: HashMap<(String, i32), Vec<Consumed>> = HashMap::new();
        let mut count = 0;
        let mut errors = Vec::new();
        let want = good.len() + clear_recs.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while count < want || errors.len() < 2 {
            match tokio::time::timeout_at(deadline, c.inner.recv()).await {
                Ok(Ok(m)) => {
                    count += 1;
                    got.entry((m.topic().to_string(), m.partition()))
                        .or_default()
                        .push(kafka::to_consumed(&m));
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => panic!("after 60 s: {count} records (want {want}), errors {errors:?}"),
            }
        }
        kafka::assert_same_records(&good, &good_placements, &got[&(dst.clone(), 1)]);
        kafka::assert_same_records(&clear_recs, &clear_placements, &got[&(clear.clone(), 0)]);
        assert_eq!(
            got.len(),
            2,
            "records served from a refused partition: {:?}",
            got.keys()
        );
        assert!(
            errors.iter().any(|e| matches!(
                e,
                KafkaError::MessageConsumption(RDKafkaErrorCode::InvalidMessage)
            )),
            "the refused partitions surface as CORRUPT_MESSAGE: {errors:?}"
        );
    })
    .await;
    let copied = wait_for_refusal(&proxy, &dst, 0, "unknown_key");
    assert_eq!(copied["category"], "key");
    assert_eq!(copied["error_code"], 2);
    wait_for_refusal(&proxy, &raw, 0, "plaintext");
    let metrics = metrics_text(proxy.admin_addr());
    assert!(
        metric_sum(
            &metrics,
            "portcullis_encryption_failures_total",
            "reason=\"plaintext\""
        ) >= 1.0,
        "{metrics}"
    );
    proxy.assert_running();
}

/// A Python client (`confluent` or `kafka-python`) produces marked records through the
/// proxy and reads them back: byte-identical through the proxy (checked by the script's
/// report and again with rdkafka), ciphertext at the broker.
async fn python_round_trip(client: &str) {
    const COUNT: usize = 60;
    let (broker, mut proxy, _keys) = start(true);
    let ep = proxy.endpoint();
    with_test_timeout(client, async {
        let topic = unique_name("enc.py");
        kafka::create_topic(&ep, &topic, 2).await;
        let marker = random_marker();
        let hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
        let report = {
            let (client, ep, topic) = (client.to_string(), ep.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                run_client(&client, &ep, &topic, 2, COUNT, &["--marker", &hex])
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        };
        let sent: Vec<Rec> = report.sent.iter().map(|r| r.to_rec()).collect();
        let placements: Vec<Placement> = report
            .sent
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        let stored = read_direct(&broker, &topic, 2, COUNT).await;
        assert_encrypted_at_rest(&sent, &placements, &stored, &marker, true);
        assert_report(&ep, &topic, 2, COUNT, &report).await;
    })
    .await;
    proxy.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_through_an_encrypting_proxy() {
    python_round_trip("kafka-python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_through_an_encrypting_proxy() {
    python_round_trip("confluent").await;
}

/// An idempotent producer's records read back by a `read_committed` consumer through the
/// proxy: byte-identical, with no plaintext at the broker. (Transactions themselves cannot be
/// run here: tansu 0.6.0 does not serve EndTxn — checked directly against the broker, where
/// librdkafka's commit fails with "EndTxnRequest (KIP-98) not supported by broker"; the
/// transactional flag of batches is kept by the stage, see its unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_consumer() {
    let (broker, mut proxy, _keys) = start(true);
    let ep = proxy.endpoint();
    with_test_timeout("read_committed_consumer", async {
        let topic = unique_name("enc.committed");
        kafka::create_topic(&ep, &topic, 1).await;
        let marker = random_marker();
        let recs = marked_records(40, 1, 5, &marker);
        let producer = kafka::producer(
            &ep,
            &[("enable.idempotence", "true"), ("compression.type", "zstd")],
        );
        let placements = kafka::produce_all(&producer, &topic, &recs).await;
        let stored = read_direct(&broker, &topic, 1, recs.len()).await;
        assert_encrypted_at_rest(&recs, &placements, &stored, &marker, true);
        let c = kafka::consumer(
            &ep,
            &unique_name("committed"),
            &[("isolation.level", "read_committed")],
        );
        kafka::assign(&c.inner, &topic, 1, Offset::Beginning);
        let got = kafka::consume_n(&c.inner, recs.len(), Duration::from_secs(60)).await;
        kafka::assert_same_records(&recs, &placements, &got);
    })
    .await;
    proxy.assert_running();
}

/// A proxy whose root key file does not exist refuses to start, says to run
/// `portcullis keys init`, and creates no key.
#[test]
fn a_missing_root_key_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys/root.key");
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\nadvertised_host = \"127.0.0.1\"\nbootstrap_port = 0\nbroker_ports = \"40000-40001\"\n\
             [upstream]\nbootstrap_servers = [\"127.0.0.1:1\"]\n[admin]\nenabled = false\n\
             [audit]\ndata_dir = {audit:?}\n\
             [encryption]\ntopics = [\"orders\"]\nroot_key = {{ kind = \"local-file\", path = {root:?} }}\n",
            audit = dir.path().join("audit").to_string_lossy(),
            root = root.to_string_lossy(),
        ),
    )
    .unwrap();
    let done = portcullis_tests::process::run_with_timeout(
        std::process::Command::new(portcullis_tests::proxy::proxy_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config),
        Duration::from_secs(30),
        dir.path(),
    );
    assert!(!done.status.success(), "serve started without a root key");
    assert!(
        done.stderr.contains("portcullis keys init"),
        "the refusal names keys init: {}",
        done.stderr
    );
    assert!(!root.exists(), "serve created a root key");
}

/// Records encrypted by one proxy process are read back by the next one on the same key
/// store (DEKs loaded from the registry and unwrapped by the root key on first use), and
/// records the second process writes use a new DEK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_before_a_restart_are_read_after_it() {
    let broker = Broker::start();
    let keys = KeyDir::new();
    let options = || ProxyOptions {
        extra_toml: keys.proxy_toml(&[], &["enc."], ""),
        ..ProxyOptions::default()
    };
    let topic = unique_name("enc.restart");
    let marker = random_marker();
    let recs = marked_records(40, 1, 9, &marker);
    let first = Proxy::start_with(&broker, options());
    let ep = first.endpoint();
    let before = with_test_timeout("produce before the restart", async {
        kafka::create_topic(&ep, &topic, 1).await;
        let producer = kafka::producer(&ep, &[("compression.type", "snappy")]);
        kafka::produce_all(&producer, &topic, &recs[..20]).await
    })
    .await;
    drop(first);
    let mut second = Proxy::start_with(&broker, options());
    let ep = second.endpoint();
    with_test_timeout("read after the restart", async {
        let producer = kafka::producer(&ep, &[("compression.type", "snappy")]);
        let after = kafka::produce_all(&producer, &topic, &recs[20..]).await;
        let placements: Vec<Placement> = before.into_iter().chain(after).collect();
        let stored = read_direct(&broker, &topic, 1, recs.len()).await;
        assert_encrypted_at_rest(&recs, &placements, &stored, &marker, false);
        // Format v1 (docs/encryption-format.md): version, cipher, then the 16-byte DEK id.
        let dek_id = |c: &Consumed| c.rec.value.as_ref().map(|v| v[2..18].to_vec());
        let (old, new) = (dek_id(&stored[0]).unwrap(), dek_id(&stored[39]).unwrap());
        assert_ne!(
            old, new,
            "the restarted proxy encrypts with a DEK of its own"
        );
        let got = kafka::read_back(&ep, &topic, 1, recs.len()).await;
        kafka::assert_same_records(&recs, &placements, &got);
    })
    .await;
    second.assert_running();
}
