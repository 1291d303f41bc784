//! Python's confluent-kafka and kafka-python, through the proxy (plaintext and TLS) and
//! directly against the broker.
//!
//! The direct variants tell a broker or client quirk apart from a proxy bug. Each test
//! creates a 2-partition topic, runs `tests/python/clients.py`, and checks its JSON report
//! (records byte-identical and in order, broker addresses are the proxy's), then reads the
//! topic with rdkafka as a cross-check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::auth;
use portcullis_tests::python::{assert_report, run_client};
use portcullis_tests::{
    kafka, unique_name, with_test_timeout, Broker, Endpoint, Proxy, ProxyOptions,
};

const PARTITIONS: i32 = 2;
const COUNT: usize = 60;

async fn roundtrip(client: &str, ep: &Endpoint, extra: &[&str]) {
    roundtrip_with_admin(client, ep, ep, extra).await
}

/// Like `roundtrip`, with the topic created through `admin` (rdkafka's AdminClient cannot
/// use OAUTHBEARER token callbacks).
async fn roundtrip_with_admin(client: &str, ep: &Endpoint, admin: &Endpoint, extra: &[&str]) {
    let topic = unique_name(&format!("py-{client}"));
    kafka::create_topic(admin, &topic, PARTITIONS).await;
    let report = {
        let (client, ep2, topic2) = (client.to_string(), ep.clone(), topic.clone());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_client(&client, &ep2, &topic2, PARTITIONS, COUNT, &extra)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    eprintln!(
        "{} {} (api_version {:?}) brokers {:?} coordinator {:?} seen {:?}",
        report.client,
        report.library_version,
        report.api_version,
        report
            .brokers
            .iter()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect::<Vec<_>>(),
        report.coordinator,
        report.seen_brokers
    );
    assert_report(ep, &topic, PARTITIONS, COUNT, &report).await;
}

async fn direct(client: &str, extra: &[&str]) {
    let mut broker = Broker::start();
    with_test_timeout(client, roundtrip(client, &broker.endpoint(), extra)).await;
    broker.assert_running();
}

async fn proxied(client: &str, options: ProxyOptions, extra: &[&str]) {
    let broker = Broker::start();
    let mut proxy = Proxy::start_with(&broker, options);
    with_test_timeout(client, roundtrip(client, &proxy.endpoint(), extra)).await;
    proxy.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_direct() {
    direct("confluent", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_direct() {
    direct("kafka-python", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_through_proxy() {
    proxied("confluent", ProxyOptions::default(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_through_proxy() {
    proxied("kafka-python", ProxyOptions::default(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_through_tls_proxy() {
    proxied("confluent", ProxyOptions::tls(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_through_tls_proxy() {
    proxied("kafka-python", ProxyOptions::tls(), &[]).await;
}

/// Python clients authenticate through the proxy with each mechanism they support
/// (kafka-python has no re-authentication; the sessions here outlast the runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_authenticate_with_each_mechanism() {
    let mut setup = auth::start(auth::Auth {
        tls: true,
        ..auth::Auth::default()
    });
    let token = setup
        .issuer
        .token("carol", &["analytics"], std::time::Duration::from_secs(900));
    let ep = setup.proxy.endpoint();
    let cases = [
        (
            "confluent",
            ep.with_password("SCRAM-SHA-512", "alice", "alice-secret"),
        ),
        (
            "confluent",
            ep.with_oauth(std::sync::Arc::new({
                let token = token.clone();
                move || token.clone()
            })),
        ),
        (
            "kafka-python",
            ep.with_password("SCRAM-SHA-256", "bob", "bob-secret"),
        ),
        (
            "kafka-python",
            ep.with_password("PLAIN", "alice", "alice-secret"),
        ),
        (
            "kafka-python",
            ep.with_oauth(std::sync::Arc::new(move || token.clone())),
        ),
    ];
    let admin = ep.with_password("SCRAM-SHA-512", "alice", "alice-secret");
    for (client, ep) in cases {
        with_test_timeout(client, roundtrip_with_admin(client, &ep, &admin, &[])).await;
    }
    // Wrong credentials get nowhere with kafka-python either.
    let bad = ep.with_password("SCRAM-SHA-256", "bob", "wrong");
    let failed = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_client("kafka-python", &bad, "never-created", 1, 1, &[])
        }))
    })
    .await
    .unwrap();
    assert!(
        failed.is_err(),
        "kafka-python produced with a wrong password"
    );
    setup.proxy.assert_running();
}
