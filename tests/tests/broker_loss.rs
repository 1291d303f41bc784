//! The broker goes away under a running proxy.
//!
//! Each test starts a tansu broker and `portcullis serve` (metadata refresh every second),
//! lets clients work, then kills the broker (dropping the harness's `Broker` kills the
//! process). What must follow: client connections that were using the broker are closed by
//! the proxy (clients reconnect and retry) instead of hanging, nothing the broker did not
//! store is acknowledged, `/readyz` turns 503 while `/healthz` stays 200, connections that
//! never needed the broker keep working, and the proxy process keeps running.
//!
//! Not tested: that records acknowledged before the kill survive it. The broker's in-memory
//! storage dies with it, so there is nothing to read them back from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::hostile::{self, blocking};
use portcullis_tests::kafka::{self, Rec};
use portcullis_tests::rdkafka::producer::{FutureRecord, Producer};
use portcullis_tests::{
    http, unique_name, wire, with_test_timeout, with_timeout, Broker, Endpoint, Proxy, OP_TIMEOUT,
};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long the proxy may take to close a client connection whose broker died. The proxy
/// refreshes metadata every second and connects with a 10 s timeout; 20 s is far beyond
/// anything a client would wait for before treating the connection as hung.
const CLOSE_LIMIT: Duration = Duration::from_secs(20);

/// Broker + proxy, a topic with records produced through the proxy, and the proxy address
/// of the partition leader.
struct Setup {
    proxy: Proxy,
    broker: Option<Broker>,
    ep: Endpoint,
    topic: String,
    leader: String,
}

async fn setup() -> Setup {
    let broker = Broker::start();
    let proxy = Proxy::start(&broker);
    let ep = proxy.endpoint();
    let topic = unique_name("loss");
    kafka::create_topic(&ep, &topic, 1).await;
    let recs = kafka::small_records(20, 0, 100);
    let producer = kafka::producer(&ep, &[("acks", "all")]);
    let placements = kafka::produce_all(&producer, &topic, &recs).await;
    kafka::assert_contiguous_offsets(&placements);
    let md = producer
        .client()
        .fetch_metadata(Some(&topic), OP_TIMEOUT)
        .expect("metadata through the proxy");
    let leader_id = md.topics()[0].partitions()[0].leader();
    let leader = md
        .brokers()
        .iter()
        .find(|b| b.id() == leader_id)
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .expect("leader listed");
    Setup {
        proxy,
        broker: Some(broker),
        ep,
        topic,
        leader,
    }
}

impl Setup {
    /// Kills the broker and waits until its port refuses connections.
    fn kill_broker(&mut self) -> Instant {
        let broker = self.broker.take().expect("broker still running");
        let addr = broker.bootstrap();
        drop(broker);
        assert!(
            wire::probe_api_versions(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still answers after the broker was killed"
        );
        Instant::now()
    }
}

/// A raw connection with an upstream: ApiVersions (answered by the proxy) and Metadata
/// (forwarded, so the proxy opened its upstream connection for it).
fn upstream_connection(addr: &str) -> (TcpStream, i16) {
    let mut s = hostile::connect(addr);
    let ranges = hostile::api_versions_exchange(&mut s, 1);
    let version = wire::find_api(&ranges, wire::METADATA)
        .and_then(wire::pick_metadata_version)
        .expect("a Metadata version");
    s.write_all(&wire::metadata_request(2, version)).unwrap();
    let (corr, _) = wire::read_response(&mut s).expect("Metadata response before the kill");
    assert_eq!(corr, 2);
    (s, version)
}

fn get(admin: SocketAddr, path: &str) -> u16 {
    http::get(admin, path, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status
}

/// Connections that had an upstream and stay silent: the proxy must notice the broker is
/// gone and close them, not leave them open until the client's idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_with_upstream_are_closed() {
    let mut s = setup().await;
    with_test_timeout("idle_connections_with_upstream_are_closed", async {
        let (boot, leader) = (s.proxy.bootstrap(), s.leader.clone());
        let (mut via_bootstrap, mut via_leader) =
            blocking(move || (upstream_connection(&boot).0, upstream_connection(&leader).0)).await;
        let killed = s.kill_broker();
        let results = blocking(move || {
            // One deadline for both, counted from the kill.
            let left = || CLOSE_LIMIT.saturating_sub(killed.elapsed());
            let a = hostile::wait_closed(&mut via_bootstrap, left());
            let b = hostile::wait_closed(&mut via_leader, left());
            [("bootstrap listener", a), ("leader's listener", b)]
        })
        .await;
        for (what, r) in &results {
            eprintln!("{what}: {r:?} ({:?} after the kill)", killed.elapsed());
        }
        for (what, r) in results {
            let c = r.unwrap_or_else(|e| {
                panic!("idle connection via the {what} with an upstream, broker killed: {e}")
            });
            assert!(c.received.is_empty(), "{what}: unsolicited bytes {c:?}");
        }
        s.proxy.assert_running();
        hostile::assert_no_panic_logged(&s.proxy.log());
    })
    .await;
}

/// A request sent after the broker died gets no made-up answer: the connection is closed
/// (the client retries elsewhere), whether it had an upstream already or needs a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_after_broker_loss_close_the_connection() {
    let mut s = setup().await;
    with_test_timeout("requests_after_broker_loss_close_the_connection", async {
        let (boot, leader) = (s.proxy.bootstrap(), s.leader.clone());
        let (conns, version) = blocking(move || {
            let (a, v) = upstream_connection(&boot);
            let (b, _) = upstream_connection(&leader);
            let mut fresh = hostile::connect(&boot);
            hostile::api_versions_exchange(&mut fresh, 1);
            (
                vec![
                    ("bootstrap, had upstream", a),
                    ("leader, had upstream", b),
                    ("bootstrap, no upstream yet", fresh),
                ],
                v,
            )
        })
        .await;
        let killed = s.kill_broker();
        blocking(move || {
            for (what, mut c) in conns {
                hostile::send_tolerant(&mut c, &wire::metadata_request(3, version)).unwrap();
                let closed = hostile::wait_closed(&mut c, CLOSE_LIMIT)
                    .unwrap_or_else(|e| panic!("{what}: Metadata after the broker died: {e}"));
                assert!(
                    closed.received.is_empty(),
                    "{what}: {} bytes answered although the broker is dead",
                    closed.received.len()
                );
                eprintln!(
                    "{what}: closed ({}) {:?} after the kill",
                    closed.how,
                    killed.elapsed()
                );
            }
        })
        .await;
        s.proxy.assert_running();
        hostile::assert_no_panic_logged(&s.proxy.log());
    })
    .await;
}

/// After the kill: a produce is not acknowledged, `/readyz` turns 503 within a few refresh
/// intervals, `/healthz` stays 200, a connection that only talked to the proxy keeps being
/// answered, and the proxy keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_survives_and_reports_unready() {
    let mut s = setup().await;
    let admin = s.proxy.admin_addr();
    assert_eq!(get(admin, "/readyz"), 200, "/readyz before the kill");
    with_test_timeout("proxy_survives_and_reports_unready", async {
        let producer = kafka::producer(
            &s.ep,
            &[
                ("acks", "all"),
                ("message.timeout.ms", "8000"),
                ("linger.ms", "0"),
            ],
        );
        let before = kafka::produce_all(
            &producer,
            &s.topic,
            &[Rec {
                partition: 0,
                key: None,
                value: Some(b"before".to_vec()),
                headers: vec![],
                timestamp: None,
            }],
        )
        .await;
        assert_eq!(before, vec![(0, 20)], "produce before the kill");
        let boot = s.proxy.bootstrap();
        let mut local_only = blocking(move || {
            let mut c = hostile::connect(&boot);
            hostile::api_versions_exchange(&mut c, 1);
            c
        })
        .await;

        let killed = s.kill_broker();

        // Readiness follows the cluster within a few metadata refresh intervals (1 s).
        let deadline = killed + Duration::from_secs(10);
        loop {
            let status = get(admin, "/readyz");
            if status == 503 {
                eprintln!("/readyz 503 {:?} after the kill", killed.elapsed());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {status} 10 s after the broker died"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(get(admin, "/healthz"), 200, "/healthz with the broker gone");

        // Nothing is acknowledged that the broker did not store.
        let delivery = with_timeout(
            OP_TIMEOUT,
            "delivery report after the broker died",
            producer
                .send_result(
                    FutureRecord::<(), [u8]>::to(&s.topic)
                        .partition(0)
                        .payload(b"after"),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .await
        .expect("delivery future not cancelled");
        assert!(
            delivery.is_err(),
            "a record produced after the broker died was acknowledged: {delivery:?}"
        );
        eprintln!("produce after the kill: {:?}", delivery.map_err(|(e, _)| e));
        drop(producer);

        // A connection that never needed the broker is still served.
        blocking(move || {
            hostile::api_versions_exchange(&mut local_only, 2);
        })
        .await;
        let boot = s.proxy.bootstrap();
        blocking(move || {
            let mut c = hostile::connect(&boot);
            hostile::api_versions_exchange(&mut c, 1);
        })
        .await;
        let text = hostile::metrics_text(admin);
        eprintln!(
            "after the kill: connection errors {:?}, upstream connect failures {}",
            text.lines()
                .filter(|l| l.starts_with("portcullis_connection_errors_total"))
                .collect::<Vec<_>>(),
            hostile::metric_sum(&text, "portcullis_upstream_connect_failures_total", "")
        );
        s.proxy.assert_running();
        hostile::assert_no_panic_logged(&s.proxy.log());
    })
    .await;
}
