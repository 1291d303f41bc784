//! Checks of the harness itself that need a real broker: it starts, answers, is killed on
//! drop, and a broker per test really is independent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::{wire, AddressRules, Broker};
use std::time::Duration;

#[test]
fn broker_starts_answers_and_dies_on_drop() {
    let broker = Broker::start();
    let addr = broker.bootstrap();
    let ranges = wire::probe_api_versions(&addr, Duration::from_secs(5)).expect("ApiVersions");
    assert!(
        ranges.iter().any(|r| r.api_key == wire::METADATA),
        "no Metadata in {ranges:?}"
    );
    let pid = broker.pid();
    drop(broker);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "tansu pid {pid} still running after drop"
    );
    assert!(
        wire::probe_api_versions(&addr, Duration::from_secs(1)).is_err(),
        "{addr} still answers after the broker was dropped"
    );
}

#[test]
fn two_brokers_get_different_ports() {
    let a = Broker::start();
    let b = Broker::start();
    assert_ne!(a.port(), b.port());
}

/// The address check is live: a client pointed straight at the broker, with rules that
/// forbid the broker's port, must be caught learning it. Guards against the leak check
/// silently passing (e.g. librdkafka statistics not arriving or not parsed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "real broker address")]
async fn address_rules_catch_a_leaked_broker_address() {
    let broker = Broker::start();
    let mut ep = broker.endpoint();
    ep.rules = Some(AddressRules {
        host: "127.0.0.1".into(),
        bootstrap_port: 1,
        broker_ports: 2..=3,
        forbidden_ports: vec![broker.port()],
    });
    portcullis_tests::with_test_timeout(
        "leak check",
        portcullis_tests::scenarios::metadata_addresses(&ep),
    )
    .await;
}

/// Producers and consumers really report the broker addresses they learn (from librdkafka
/// statistics), so the proxied suites' address checks have something to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_report_learned_broker_addresses() {
    use portcullis_tests::kafka::{self, Extra};
    let broker = Broker::start();
    let mut ep = broker.endpoint();
    // Rules that accept exactly the broker, so the checks run and pass.
    ep.rules = Some(AddressRules {
        host: "127.0.0.1".into(),
        bootstrap_port: broker.port(),
        broker_ports: 1..=1,
        forbidden_ports: vec![],
    });
    portcullis_tests::with_test_timeout("statistics", async {
        let topic = portcullis_tests::unique_name("stats");
        kafka::create_topic(&ep, &topic, 1).await;
        let producer = kafka::producer(&ep, &[]);
        let recs = kafka::small_records(3, 0, 10);
        kafka::produce_all(&producer, &topic, &recs).await;
        producer.observed.assert_addresses(&ep, "producer").await;
        assert!(
            producer.observed.brokers().contains(&broker.bootstrap()),
            "producer statistics: {:?}",
            producer.observed.brokers()
        );
        let consumer = kafka::consumer(&ep, "stats", &[]);
        kafka::assign(
            &consumer,
            &topic,
            1,
            portcullis_tests::rdkafka::Offset::Beginning,
        );
        kafka::consume_n(&consumer, 3, portcullis_tests::OP_TIMEOUT).await;
        kafka::assert_consumer_addresses(&consumer, &ep, "consumer", Extra::Forbidden).await;
        assert!(
            consumer.observed.brokers().contains(&broker.bootstrap()),
            "consumer statistics: {:?}",
            consumer.observed.brokers()
        );
    })
    .await;
}
