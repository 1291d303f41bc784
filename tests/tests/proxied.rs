//! Every scenario client -> portcullis -> broker, plaintext and TLS.
//!
//! Each test starts its own tansu broker and `portcullis serve` on fresh loopback ports.
//! Test names match `direct.rs`, so a failure here can be compared with the same scenario
//! without the proxy. Besides what each scenario asserts, every client's learned broker
//! addresses must be proxy addresses, and the proxy must still be running at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::kafka::FetchMetadata;
use portcullis_tests::scenarios::{self, Acks0Responses};
use portcullis_tests::{http, kafka, with_test_timeout, Broker, Proxy, ProxyOptions};
use std::time::{Duration, Instant};

macro_rules! proxied_test {
    ($name:ident, $options:expr, $ep:ident => $call:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let mut broker = Broker::start();
            let mut proxy = Proxy::start_with(&broker, $options);
            let endpoint = proxy.endpoint();
            let $ep = &endpoint;
            with_test_timeout(stringify!($name), $call).await;
            proxy.assert_running();
            broker.assert_running();
        }
    };
}

proxied_test!(codec_none, ProxyOptions::default(), ep => scenarios::produce_consume_codec(ep, "none"));
proxied_test!(codec_gzip, ProxyOptions::default(), ep => scenarios::produce_consume_codec(ep, "gzip"));
proxied_test!(codec_snappy, ProxyOptions::default(), ep => scenarios::produce_consume_codec(ep, "snappy"));
proxied_test!(codec_lz4, ProxyOptions::default(), ep => scenarios::produce_consume_codec(ep, "lz4"));
proxied_test!(codec_zstd, ProxyOptions::default(), ep => scenarios::produce_consume_codec(ep, "zstd"));
proxied_test!(consumer_group_resume, ProxyOptions::default(), ep => scenarios::consumer_group_resume(ep));
proxied_test!(admin_create_delete, ProxyOptions::default(), ep => scenarios::admin_create_delete(ep));
proxied_test!(list_offsets, ProxyOptions::default(), ep => scenarios::list_offsets(ep));
proxied_test!(idempotent_producer, ProxyOptions::default(), ep => scenarios::idempotent_producer(ep));
proxied_test!(metadata_addresses, ProxyOptions::default(), ep => scenarios::metadata_addresses(ep));
proxied_test!(pipelined_produce, ProxyOptions::default(), ep => scenarios::pipelined_produce(ep));
proxied_test!(acks_zero, ProxyOptions::default(), ep => scenarios::acks_zero(ep));
// Kafka's contract even though tansu answers acks=0 produces: a client must never receive a
// response it did not ask for.
proxied_test!(raw_pipelining, ProxyOptions::default(), ep => scenarios::raw_pipelining(ep, Acks0Responses::Forbidden));

proxied_test!(tls_codec_zstd, ProxyOptions::tls(), ep => scenarios::produce_consume_codec(ep, "zstd"));
proxied_test!(tls_consumer_group_resume, ProxyOptions::tls(), ep => scenarios::consumer_group_resume(ep));
proxied_test!(tls_metadata_addresses, ProxyOptions::tls(), ep => scenarios::metadata_addresses(ep));
proxied_test!(tls_pipelined_produce, ProxyOptions::tls(), ep => scenarios::pipelined_produce(ep));

/// The admin listener answers health, readiness and metrics, and the audit file records a
/// client connection (open and close) as JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_audit_file() {
    let broker = Broker::start();
    let mut proxy = Proxy::start(&broker);
    let ep = proxy.endpoint();
    let admin = proxy.admin_addr();
    let t = Duration::from_secs(5);
    for path in ["/healthz", "/readyz"] {
        let r = http::get(admin, path, t).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    }

    with_test_timeout("one client connection", async {
        let producer = kafka::producer(&ep, &[]);
        producer
            .metadata(None, portcullis_tests::OP_TIMEOUT)
            .expect("metadata through the proxy");
        producer.observed.assert_addresses(&ep, "producer").await;
    })
    .await;

    let r = http::get(admin, "/metrics", t).expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
    assert!(
        r.body
            .lines()
            .any(|l| !l.starts_with('#') && !l.trim().is_empty()),
        "/metrics has no samples after a client connected:\n{}",
        r.body
    );

    // The client is gone: its connections' open and close events reach the audit file.
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines = loop {
        let text = std::fs::read_to_string(proxy.audit_path()).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= 2 || Instant::now() >= deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        lines.len() >= 2,
        "audit file {} has {} line(s) after a client connected and left: {lines:?}",
        proxy.audit_path().display(),
        lines.len()
    );
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "audit line is not a JSON object: {line}");
    }
    proxy.assert_running();
}
