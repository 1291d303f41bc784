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

    // The client is gone: its connections' open and close events reach the audit log,
    // readable through the admin API while the proxy runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events = proxy.audit_events();
        let closes = events
            .iter()
            .filter(|e| e["action"] == "connection.close")
            .count();
        if closes >= 1 || Instant::now() >= deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for action in ["proxy.start", "connection.open", "connection.close"] {
        assert!(
            events.iter().any(|e| e["action"] == action),
            "no {action} event in the audit log: {events:?}"
        );
    }
    assert!(
        events.iter().all(|e| e["seq"].is_u64()),
        "audit events carry their sequence numbers: {events:?}"
    );
    proxy.assert_running();
}

/// Upstream TLS: client -> proxy (plaintext) -> second proxy (TLS listener, checks the
/// handshake) -> broker. tansu 0.6.0's own TLS is unusable (`--cert` conflicts with `--key`),
/// so the TLS peer is a second portcullis, which terminates TLS with real verification. The
/// outer proxy must verify the inner one's certificate against the dev CA, rewrite the
/// inner proxy's addresses in turn, and never show the client any inner address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_through_a_chained_proxy() {
    let mut broker = Broker::start();
    let mut inner = Proxy::start_tls(&broker);
    let ca = inner.ca_path().expect("TLS proxy has a CA").to_path_buf();
    let options = ProxyOptions {
        extra_toml: format!(
            "[upstream.tls]\nca = {}\n",
            serde_json::to_string(&ca.to_string_lossy()).unwrap()
        ),
        ..ProxyOptions::default()
    };
    let mut hidden: Vec<u16> = vec![broker.port(), inner.bootstrap_port()];
    hidden.extend(inner.broker_ports());
    let mut outer = Proxy::start_upstream(&[inner.bootstrap()], &hidden, options);
    let ep = outer.endpoint();
    with_test_timeout(
        "upstream_tls_through_a_chained_proxy",
        scenarios::produce_consume_codec(&ep, "lz4"),
    )
    .await;
    with_test_timeout(
        "upstream_tls_through_a_chained_proxy metadata",
        scenarios::metadata_addresses(&ep),
    )
    .await;
    outer.assert_running();
    inner.assert_running();
    broker.assert_running();
}

/// An upstream whose certificate is not signed by the configured CA is refused: the proxy
/// never becomes ready and clients are not served plaintext or unverified data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_with_an_untrusted_certificate_is_refused() {
    let broker = Broker::start();
    let inner = Proxy::start_tls(&broker);
    // A CA that did not sign the inner proxy's certificate.
    let other = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(portcullis_tests::proxy::proxy_binary())
        .args(["certs", "init", "--out"])
        .arg(other.path())
        .status()
        .unwrap();
    assert!(status.success());
    let config = inner.config_path().with_file_name("outer-untrusted.toml");
    let port = portcullis_tests::ports::free_port();
    let range = portcullis_tests::ports::free_port_range(4);
    let admin = portcullis_tests::ports::free_port();
    std::fs::write(
        &config,
        format!(
            "[listener]\nadvertised_host = \"127.0.0.1\"\nbootstrap_port = {port}\nbroker_ports = \"{}-{}\"\n\
             [upstream]\nbootstrap_servers = [{}]\nmetadata_refresh_ms = 200\n\
             [upstream.tls]\nca = {}\n[admin]\nbind = \"127.0.0.1:{admin}\"\n[audit]\ndata_dir = {}\n",
            range.start(),
            range.end(),
            serde_json::to_string(&inner.bootstrap()).unwrap(),
            serde_json::to_string(&other.path().join("ca.pem").to_string_lossy()).unwrap(),
            serde_json::to_string(&other.path().join("audit").to_string_lossy()).unwrap(),
        ),
    )
    .unwrap();
    let log = other.path().join("outer.log");
    let mut child = portcullis_tests::process::ManagedChild::spawn(
        "outer-untrusted",
        std::process::Command::new(portcullis_tests::proxy::proxy_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config),
        &log,
    );
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_refusal = false;
    while Instant::now() < deadline {
        if let Ok(r) = http::get(admin_addr, "/readyz", Duration::from_secs(2)) {
            assert_ne!(
                r.status, 200,
                "ready although the upstream certificate is untrusted"
            );
        }
        if child.log().contains("TLS handshake") {
            saw_refusal = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw_refusal, "no TLS refusal logged:\n{}", child.log());
    child.assert_running();
}

/// Certificate hot reload: replacing the server certificate and key (by rename, as
/// operators and Kubernetes do) is picked up for new handshakes, and an existing TLS
/// connection keeps working. The new certificate comes from a different CA, so the old
/// client can only keep producing if its connection was not dropped (a reconnect would fail
/// verification), and the new client can only connect once the reload happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_reload_keeps_existing_connections() {
    let mut broker = Broker::start();
    let mut proxy = Proxy::start_tls(&broker);
    let old_ep = proxy.endpoint();
    let topic = portcullis_tests::unique_name("reload");
    kafka::create_topic(&old_ep, &topic, 1).await;
    let old_client = kafka::producer(&old_ep, &[]);
    let first = kafka::small_records(5, 0, 32);
    kafka::produce_all(&old_client, &topic, &first).await;

    let fresh = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(portcullis_tests::proxy::proxy_binary())
        .args(["certs", "init", "--out"])
        .arg(fresh.path())
        .status()
        .unwrap();
    assert!(status.success());
    let certs = proxy.dir().join("certs");
    for name in ["server.key", "server.pem"] {
        let staged = certs.join(format!("{name}.new"));
        std::fs::copy(fresh.path().join(name), &staged).unwrap();
        std::fs::rename(&staged, certs.join(name)).unwrap();
    }

    let mut new_ep = old_ep.clone();
    new_ep.ca = Some(fresh.path().join("ca.pem"));
    with_test_timeout(
        "tls_certificate_reload new client",
        scenarios::produce_consume_codec(&new_ep, "none"),
    )
    .await;

    let second = kafka::small_records(5, 0, 32);
    let placements = kafka::produce_all(&old_client, &topic, &second).await;
    assert_eq!(placements.len(), second.len());
    assert!(
        proxy.log().contains("reload") || proxy.log().contains("Reload"),
        "no reload logged:\n{}",
        proxy.log()
    );
    proxy.assert_running();
    broker.assert_running();
}
