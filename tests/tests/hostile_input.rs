//! Hostile input against the real proxy in front of a real broker.
//!
//! Each test starts its own tansu broker and `portcullis serve` (with tightened `[limits]`
//! where the case needs them), sends hand-made bad bytes on raw sockets, and asserts two
//! things: the proxy closes *that* connection within a bounded time without answering the
//! bad request (nothing reaches the broker), and the proxy still serves everyone else —
//! ApiVersions and Metadata on a fresh raw connection, then a full rdkafka produce/consume
//! round trip with byte-identical records, the process still running and no panic logged.
//! Where the proxy counts why it closed a connection, `/metrics` must say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::hostile::{self, blocking, Closed};
use portcullis_tests::{kafka, wire, with_test_timeout, Broker, Endpoint, Proxy, ProxyOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the proxy may take to close a connection that sent something it refuses
/// without waiting for a timeout. Generous for a loaded 2-core machine; a proxy that keeps
/// such a connection open is waiting for more bytes, which is the bug these tests catch.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// How long a metrics counter may lag behind the close the test saw.
const METRIC_LIMIT: Duration = Duration::from_secs(5);

const ERRORS: &str = "portcullis_connection_errors_total";
const REJECTED: &str = "portcullis_connections_rejected_total";

/// A broker and a proxy in front of it. Field order: the proxy is killed first.
struct Rig {
    proxy: Proxy,
    broker: Broker,
    ep: Endpoint,
    /// The proxy's bootstrap `host:port`, for raw sockets.
    addr: String,
    admin: SocketAddr,
}

impl Rig {
    /// Broker + plaintext proxy with `limits` (TOML lines) as its `[limits]` table.
    fn start(limits: &str) -> Self {
        Self::start_with(limits, ProxyOptions::default())
    }

    fn start_with(limits: &str, mut options: ProxyOptions) -> Self {
        let broker = Broker::start();
        options.extra_toml = format!("[limits]\n{limits}\n");
        let proxy = Proxy::start_with(&broker, options);
        let ep = proxy.endpoint();
        let addr = proxy.bootstrap();
        let admin = proxy.admin_addr();
        Self {
            proxy,
            broker,
            ep,
            addr,
            admin,
        }
    }

    /// The proxy still serves: raw ApiVersions + Metadata on a fresh connection (plaintext
    /// only), then an rdkafka round trip; both processes alive, no panic in the proxy log.
    async fn assert_still_serves(&mut self, label: &str) {
        if !self.ep.is_tls() {
            let addr = self.addr.clone();
            blocking(move || hostile::assert_serves_raw(&addr)).await;
        }
        hostile::round_trip(&self.ep, label, 40, 2).await;
        self.assert_alive();
    }

    fn assert_alive(&mut self) {
        self.proxy.assert_running();
        self.broker.assert_running();
        hostile::assert_no_panic_logged(&self.proxy.log());
    }

    /// `portcullis_connection_errors_total{reason}` reaches `n`.
    fn assert_errors(&self, reason: &str, n: f64) -> f64 {
        hostile::wait_metric_at_least(
            self.admin,
            ERRORS,
            &format!("reason=\"{reason}\""),
            n,
            METRIC_LIMIT,
        )
    }
}

fn describe(what: &str, c: &Closed) {
    eprintln!(
        "{what}: closed ({}) after {:?}, {} bytes received",
        c.how,
        c.after,
        c.received.len()
    );
}

/// Sends each `(what, bytes)` on its own fresh connection; each must be closed unanswered.
fn reject_all(addr: &str, cases: &[(&str, Vec<u8>)]) {
    for (what, bytes) in cases {
        let c = hostile::assert_rejected(addr, what, bytes, CLOSE_LIMIT);
        describe(what, &c);
    }
}

/// A length prefix over the limit is refused before the body is read or allocated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame() {
    let mut rig = Rig::start("max_frame_bytes = 1048576");
    with_test_timeout("oversized_frame", async {
        let addr = rig.addr.clone();
        blocking(move || {
            let mut two_mib = (2 * 1024 * 1024i32).to_be_bytes().to_vec();
            two_mib.extend_from_slice(&[0u8; 1024]);
            let mut just_over = (1024 * 1024 + 1i32).to_be_bytes().to_vec();
            just_over.extend_from_slice(&wire::api_versions_request(1)[4..]);
            let max = i32::MAX.to_be_bytes().to_vec();
            reject_all(
                &addr,
                &[
                    ("2 MiB frame, 1 MiB limit", two_mib),
                    ("1 MiB + 1 frame", just_over),
                    ("i32::MAX frame", max),
                ],
            );
            // Oversized after a valid request on the same connection.
            let mut s = hostile::connect(&addr);
            let mut bytes = wire::api_versions_request(1);
            bytes.extend_from_slice(&(8 * 1024 * 1024i32).to_be_bytes());
            s.write_all(&bytes).unwrap();
            hostile::read_api_versions(&mut s, 1);
            let c = hostile::wait_closed(&mut s, CLOSE_LIMIT).expect("oversized second frame");
            assert!(c.received.is_empty(), "bytes after ApiVersions: {c:?}");
        })
        .await;
        rig.assert_errors("frame_too_large", 4.0);
        rig.assert_still_serves("after-oversized").await;
    })
    .await;
}

/// A negative length prefix closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_length() {
    let mut rig = Rig::start("");
    with_test_timeout("negative_length", async {
        let addr = rig.addr.clone();
        blocking(move || {
            reject_all(
                &addr,
                &[
                    ("length -1", (-1i32).to_be_bytes().to_vec()),
                    ("length i32::MIN", i32::MIN.to_be_bytes().to_vec()),
                    ("length -4 and a body", {
                        let mut b = (-4i32).to_be_bytes().to_vec();
                        b.extend_from_slice(&wire::api_versions_request(1));
                        b
                    }),
                ],
            );
        })
        .await;
        rig.assert_errors("frame_too_large", 3.0);
        rig.assert_still_serves("after-negative").await;
    })
    .await;
}

/// Request bodies whose array counts claim 2^31 - 1 entries in a few bytes: the proxy must
/// neither allocate for them nor forward them, and must answer what came before in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_array_count() {
    let mut rig = Rig::start("");
    with_test_timeout("huge_array_count", async {
        let addr = rig.addr.clone();
        let sent = blocking(move || {
            let ranges = wire::probe_api_versions(&addr, Duration::from_secs(10)).unwrap();
            let (non_flexible, flexible) = hostile::metadata_versions(&ranges);
            let produce = wire::find_api(&ranges, wire::PRODUCE)
                .and_then(wire::pick_produce_version)
                .expect("a Produce version in 3..=8");
            let mut cases = vec![(
                format!("Metadata v{non_flexible}, topics count i32::MAX"),
                hostile::huge_array_metadata_request(2, non_flexible),
            )];
            if let Some(v) = flexible {
                cases.push((
                    format!("Metadata v{v}, compact topics count 2^31 - 1"),
                    hostile::huge_array_metadata_request(2, v),
                ));
            }
            cases.push((
                format!("Produce v{produce}, topic_data count i32::MAX"),
                hostile::huge_array_produce_request(2, produce),
            ));
            for (what, hostile_frame) in &cases {
                // A valid ApiVersions then the hostile request, in one write.
                let mut s = hostile::connect(&addr);
                let mut bytes = wire::api_versions_request(1);
                bytes.extend_from_slice(hostile_frame);
                s.write_all(&bytes).unwrap();
                hostile::read_api_versions(&mut s, 1);
                let c = hostile::wait_closed(&mut s, CLOSE_LIMIT)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    c.received.is_empty(),
                    "{what}: the proxy sent {} bytes after the ApiVersions response",
                    c.received.len()
                );
                describe(what, &c);
                // And as the very first request of a connection.
                let c = hostile::assert_rejected(&addr, what, hostile_frame, CLOSE_LIMIT);
                describe(&format!("{what} (first request)"), &c);
            }
            cases.len()
        })
        .await;
        // Refused from the declared counts by the request-limits stage, before decoding.
        rig.assert_errors("request_limit", 2.0 * sent as f64);
        rig.assert_still_serves("after-huge-array").await;
    })
    .await;
}

/// A Produce whose record batch claims 2^31 - 1 records (or a negative count, or a
/// compressed batch over `max_records_per_batch`) is refused before it reaches the broker:
/// the same request with the true count is accepted, the hostile ones are not stored, and
/// offsets continue right after the accepted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_record_count() {
    let mut rig = Rig::start("max_records_per_batch = 10000");
    with_test_timeout("huge_record_count", async {
        let ep = rig.ep.clone();
        let topic = portcullis_tests::unique_name("huge-count");
        kafka::create_topic(&ep, &topic, 1).await;
        let recs = kafka::small_records(5, 0, 64);
        let placements = {
            let p = kafka::producer(&ep, &[("acks", "all")]);
            kafka::produce_all(&p, &topic, &recs).await
        };
        kafka::assert_contiguous_offsets(&placements);
        assert_eq!(placements.last(), Some(&(0, 4)), "first five records");

        let addr = rig.addr.clone();
        let t = topic.clone();
        let hostile_count = blocking(move || {
            let ranges = wire::probe_api_versions(&addr, Duration::from_secs(10)).unwrap();
            let version = wire::find_api(&ranges, wire::PRODUCE)
                .and_then(wire::pick_produce_version)
                .expect("a Produce version in 3..=8");
            let ts = kafka::TIMESTAMP_BASE;
            // Control: the request as built, with its true count, is accepted at offset 5.
            let good = wire::record_batch(&[b"control"], ts);
            let mut s = hostile::connect(&addr);
            s.write_all(&wire::produce_request(7, version, -1, &t, 0, &good))
                .unwrap();
            let (corr, body) = wire::read_response(&mut s).expect("control Produce response");
            assert_eq!(corr, 7);
            let (code, base) = hostile::produce_response_first_partition(&body).unwrap();
            assert_eq!(
                (code, base),
                (0, 5),
                "control produce (error code, base offset)"
            );
            drop(s);

            // One 1-byte record: 8 bytes of records, room for one 7-byte minimal record.
            let with_count = |count: i32, codec: i16| {
                let mut b = wire::record_batch(&[b"h"], ts);
                if codec != 0 {
                    hostile::set_compression(&mut b, codec);
                }
                hostile::set_record_count(&mut b, count);
                wire::produce_request(8, version, -1, &t, 0, &b)
            };
            let cases = [
                ("record count i32::MAX", with_count(i32::MAX, 0)),
                ("record count 2, bytes for one", with_count(2, 0)),
                ("record count -1", with_count(-1, 0)),
                ("record count i32::MIN", with_count(i32::MIN, 0)),
                (
                    "gzip batch claiming i32::MAX records",
                    with_count(i32::MAX, 1),
                ),
            ];
            for (what, bytes) in &cases {
                // acks=all: a forwarded request would be answered, so silence + close
                // means it was refused.
                let c = hostile::assert_rejected(&addr, what, bytes, CLOSE_LIMIT);
                describe(what, &c);
            }
            cases.len()
        })
        .await;
        rig.assert_errors("bad_request", hostile_count as f64);

        // Nothing hostile was stored: offsets 0..=5 are the five records and the control,
        // and a sentinel produced now lands at 6 (read_back checks it).
        let got = kafka::read_back(&ep, &topic, 1, 6).await;
        for (i, c) in got.iter().take(5).enumerate() {
            assert_eq!(c.rec.value, recs[i].value, "offset {i}");
        }
        assert_eq!(got[5].rec.value.as_deref(), Some(&b"control"[..]));
        rig.assert_still_serves("after-huge-count").await;
    })
    .await;
}

/// Responses the proxy owes for requests that came before a hostile one are delivered
/// before it closes the connection, as a Kafka broker does (it answers each request before
/// reading the next). Checked for a forwarded Metadata and a forwarded Produce pipelined in
/// the same write as a hostile request. A lost Produce answer is worse than a lost
/// Metadata one: the broker stored the record, the client never hears so and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_owed_before_a_hostile_request() {
    let mut rig = Rig::start("");
    with_test_timeout("responses_owed_before_a_hostile_request", async {
        let topic = portcullis_tests::unique_name("owed");
        kafka::create_topic(&rig.ep, &topic, 1).await;
        let addr = rig.addr.clone();
        let t = topic.clone();
        let problems = blocking(move || {
            let ranges = wire::probe_api_versions(&addr, Duration::from_secs(10)).unwrap();
            let (md_version, _) = hostile::metadata_versions(&ranges);
            let produce = wire::find_api(&ranges, wire::PRODUCE)
                .and_then(wire::pick_produce_version)
                .expect("a Produce version in 3..=8");
            let mut hostile_batch = wire::record_batch(&[b"h"], kafka::TIMESTAMP_BASE);
            hostile::set_record_count(&mut hostile_batch, i32::MAX);
            let owed_batch = wire::record_batch(&[b"owed"], kafka::TIMESTAMP_BASE);
            let cases = [
                (
                    "Metadata, then a huge-array Metadata",
                    wire::metadata_request(1, md_version),
                    hostile::huge_array_metadata_request(2, md_version),
                ),
                (
                    "Produce acks=all, then a huge-record-count Produce",
                    wire::produce_request(1, produce, -1, &t, 0, &owed_batch),
                    wire::produce_request(2, produce, -1, &t, 0, &hostile_batch),
                ),
            ];
            let mut problems = Vec::new();
            for (what, valid, bad) in &cases {
                let mut s = hostile::connect(&addr);
                let mut bytes = valid.clone();
                bytes.extend_from_slice(bad);
                s.write_all(&bytes).unwrap();
                let c = hostile::wait_closed(&mut s, CLOSE_LIMIT)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                describe(what, &c);
                let mut got = &c.received[..];
                match wire::read_response(&mut got) {
                    Ok((1, _)) if got.is_empty() => {}
                    Ok((corr, _)) => problems.push(format!(
                        "{what}: response with correlation id {corr}, {} bytes after it",
                        got.len()
                    )),
                    Err(e) => problems.push(format!(
                        "{what}: the connection closed ({}) without the response to the \
                         valid request ({} bytes received: {e})",
                        c.how,
                        c.received.len()
                    )),
                }
            }
            problems
        })
        .await;
        // Was the Produce whose answer went missing stored? A sentinel tells: it lands at 1
        // if the "owed" record is at 0.
        let p = kafka::producer(&rig.ep, &[("acks", "all")]);
        let sentinel = kafka::produce_all(&p, &topic, &kafka::small_records(1, 0, 8)).await;
        drop(p);
        eprintln!("sentinel after the owed produce landed at {sentinel:?}");
        rig.assert_alive();
        assert!(
            problems.is_empty(),
            "{}{}",
            problems.join("\n"),
            if sentinel == vec![(0, 1)] {
                "\n(the owed Produce was stored by the broker at offset 0 although its \
                 answer never reached the client)"
            } else {
                ""
            }
        );
        rig.assert_still_serves("after-owed").await;
    })
    .await;
}

/// Frames too short to hold a request header, or whose client id runs past the frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_header() {
    let mut rig = Rig::start("");
    with_test_timeout("truncated_header", async {
        let addr = rig.addr.clone();
        blocking(move || {
            let mut long_client_id = wire::api_versions_request(1);
            // Client id length (after key, version, correlation id) says 1000 bytes.
            long_client_id[12..14].copy_from_slice(&1000i16.to_be_bytes());
            reject_all(
                &addr,
                &[
                    ("frame of length 3", hostile::raw_frame(&[0, 18, 0])),
                    ("frame of length 0", hostile::raw_frame(&[])),
                    (
                        "frame of length 7 (correlation id cut)",
                        hostile::raw_frame(&[0, 18, 0, 0, 0, 0, 0]),
                    ),
                    ("client id past the frame end", long_client_id),
                    ("client id length -2", {
                        let mut f = wire::api_versions_request(1);
                        f[12..14].copy_from_slice(&(-2i16).to_be_bytes());
                        f
                    }),
                ],
            );
        })
        .await;
        rig.assert_errors("bad_header", 5.0);
        rig.assert_still_serves("after-truncated").await;
    })
    .await;
}

/// Api keys the proxy does not know close the connection (bad header); keys it knows but
/// refuses (SASL while SASL is off, versions it does not advertise) close it as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key() {
    let mut rig = Rig::start("");
    with_test_timeout("unknown_api_key", async {
        let addr = rig.addr.clone();
        blocking(move || {
            reject_all(
                &addr,
                &[
                    (
                        "api key 32000",
                        hostile::request_frame(32000, 0, 1, false, &[]),
                    ),
                    ("api key -1", hostile::request_frame(-1, 0, 1, false, &[])),
                ],
            );
            let mut sasl_body = 5i16.to_be_bytes().to_vec();
            sasl_body.extend_from_slice(b"PLAIN");
            reject_all(
                &addr,
                &[
                    (
                        "SaslHandshake v1 with SASL off",
                        hostile::request_frame(17, 1, 1, false, &sasl_body),
                    ),
                    (
                        // v9+ headers are flexible, so the header itself parses.
                        "Metadata v999",
                        hostile::request_frame(wire::METADATA, 999, 1, true, &[0]),
                    ),
                ],
            );
            // An unknown key after a valid request on the same connection.
            let mut s = hostile::connect(&addr);
            let mut bytes = wire::api_versions_request(1);
            bytes.extend(hostile::request_frame(12345, 3, 2, false, &[1, 2, 3]));
            s.write_all(&bytes).unwrap();
            hostile::read_api_versions(&mut s, 1);
            let c = hostile::wait_closed(&mut s, CLOSE_LIMIT).expect("unknown key second");
            assert!(c.received.is_empty(), "bytes after ApiVersions: {c:?}");
        })
        .await;
        rig.assert_errors("bad_header", 3.0);
        rig.assert_errors("refused_api", 2.0);
        rig.assert_still_serves("after-unknown-key").await;
    })
    .await;
}

/// A valid ApiVersions frame followed by garbage in the same write: the ApiVersions answer
/// comes back, then the connection closes, whatever the garbage looks like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_valid_frame() {
    // Garbage that happens to announce a small frame is left waiting for the rest: the
    // frame timeout bounds that.
    let mut rig = Rig::start("frame_timeout_ms = 2000");
    with_test_timeout("garbage_after_valid_frame", async {
        let addr = rig.addr.clone();
        blocking(move || {
            let mut garbage: Vec<(String, Vec<u8>)> = vec![
                ("0xff x 64".into(), vec![0xff; 64]),
                ("zeros x 64".into(), vec![0; 64]),
            ];
            for seed in 1..=8u64 {
                garbage.push((
                    format!("pseudo-random 300 bytes, seed {seed}"),
                    kafka::pseudo_random_bytes(seed, 300),
                ));
            }
            for (what, junk) in &garbage {
                let mut s = hostile::connect(&addr);
                let mut bytes = wire::api_versions_request(1);
                bytes.extend_from_slice(junk);
                hostile::send_tolerant(&mut s, &bytes).unwrap();
                let c = hostile::wait_closed(&mut s, CLOSE_LIMIT)
                    .unwrap_or_else(|e| panic!("ApiVersions + {what}: {e}"));
                let mut got = &c.received[..];
                let (corr, body) = wire::read_response(&mut got).unwrap_or_else(|e| {
                    panic!(
                        "ApiVersions + {what}: no ApiVersions response before the close \
                         ({e}; {} bytes received, closed by {})",
                        c.received.len(),
                        c.how
                    )
                });
                assert_eq!(corr, 1, "{what}");
                let (code, _) = wire::parse_api_versions_v0(&body).unwrap();
                assert_eq!(code, 0, "{what}");
                assert!(
                    got.is_empty(),
                    "ApiVersions + {what}: {} bytes after the ApiVersions response",
                    got.len()
                );
                describe(&format!("ApiVersions + {what}"), &c);
            }
        })
        .await;
        rig.assert_still_serves("after-garbage").await;
    })
    .await;
}

/// Slow-loris: a started frame must be completed within `frame_timeout_ms` (the first
/// within `handshake_timeout_ms`), even if a byte keeps trickling in; meanwhile a normal
/// client works undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris() {
    let mut rig = Rig::start("frame_timeout_ms = 1000\nhandshake_timeout_ms = 2000");
    let limit = Duration::from_secs(5);
    with_test_timeout("slowloris", async {
        let addr = rig.addr.clone();
        let lorises = blocking(move || {
            // Two bytes of a length prefix as the first thing sent.
            let c = hostile::assert_rejected(&addr, "2-byte prefix, first frame", &[0, 0], limit);
            describe("2-byte prefix as first frame", &c);
            assert!(
                c.after >= Duration::from_millis(1500),
                "closed before the handshake timeout: {c:?}"
            );

            // Two bytes of a length prefix after a served request.
            let mut s = hostile::connect(&addr);
            hostile::api_versions_exchange(&mut s, 1);
            s.write_all(&[0, 0]).unwrap();
            let c = hostile::wait_closed(&mut s, limit).expect("2-byte prefix after a request");
            assert!(c.received.is_empty());
            describe("2-byte prefix after ApiVersions", &c);

            // A whole prefix for 100 bytes, then one byte every 200 ms: never idle, never done.
            let mut s = hostile::connect(&addr);
            hostile::api_versions_exchange(&mut s, 1);
            s.write_all(&100i32.to_be_bytes()).unwrap();
            let start = Instant::now();
            let mut dribbled = 0;
            let closed = loop {
                assert!(
                    start.elapsed() < limit,
                    "dribbling connection still open after {:?} ({dribbled} body bytes sent)",
                    start.elapsed()
                );
                if hostile::send_tolerant(&mut s, b"x").unwrap() {
                    break format!("write reset after {:?}", start.elapsed());
                }
                dribbled += 1;
                if let Ok(c) = hostile::wait_closed(&mut s, Duration::from_millis(200)) {
                    assert!(c.received.is_empty());
                    break format!("closed ({}) after {:?}", c.how, start.elapsed());
                }
            };
            eprintln!("dribbling slow loris: {closed}, {dribbled} body bytes sent");
            3
        });
        // A normal client at the same time.
        let ep = rig.ep.clone();
        let normal = hostile::round_trip(&ep, "beside-slowloris", 100, 2);
        let (n, ()) = tokio::join!(lorises, normal);
        rig.assert_errors("timeout", n as f64);
        rig.assert_still_serves("after-slowloris").await;
    })
    .await;
}

/// A connection that never sends anything is closed after the handshake timeout; one that
/// stops after a request, after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections() {
    let mut rig = Rig::start("handshake_timeout_ms = 2000\nidle_timeout_ms = 4000");
    with_test_timeout("idle_connections", async {
        let addr = rig.addr.clone();
        blocking(move || {
            let t = Instant::now();
            let mut silent = hostile::connect(&addr);
            let mut served = hostile::connect(&addr);
            hostile::api_versions_exchange(&mut served, 1);
            let c = hostile::wait_closed(&mut silent, Duration::from_secs(8))
                .expect("connection that never sent a byte");
            assert!(c.received.is_empty());
            assert!(
                t.elapsed() >= Duration::from_millis(1500),
                "closed {:?} after connect, before the 2 s handshake timeout",
                t.elapsed()
            );
            describe("silent connection", &c);
            let c = hostile::wait_closed(&mut served, Duration::from_secs(10))
                .expect("idle connection after one request");
            assert!(c.received.is_empty());
            assert!(
                t.elapsed() >= Duration::from_millis(3500),
                "idle connection closed {:?} after its request, before the 4 s idle timeout",
                t.elapsed()
            );
            describe("idle after ApiVersions", &c);
        })
        .await;
        rig.assert_errors("timeout", 2.0);
        rig.assert_still_serves("after-idle").await;
    })
    .await;
}

/// Frames announced near the limit but never sent cost nothing: 20 connections each
/// promising 100 MiB (just under the default limit) and sending 10 bytes must not grow the
/// proxy's memory by anything like 2 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_are_not_preallocated() {
    let mut rig = Rig::start("frame_timeout_ms = 20000");
    with_test_timeout("announced_frames_are_not_preallocated", async {
        let addr = rig.addr.clone();
        let pid = rig.proxy.pid();
        blocking(move || {
            let before = rss_kib(pid);
            let mut held = Vec::new();
            for _ in 0..20 {
                let mut s = hostile::connect(&addr);
                let mut bytes = (100 * 1024 * 1024i32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&wire::api_versions_request(1)[4..14]);
                s.write_all(&bytes).unwrap();
                held.push(s);
            }
            // All 20 are open and mid-frame: a fresh client is served meanwhile.
            hostile::assert_serves_raw(&addr);
            let during = rss_kib(pid);
            eprintln!("proxy RSS {before} KiB before, {during} KiB with 20 x 100 MiB announced");
            assert!(
                during < before + 64 * 1024,
                "proxy RSS grew from {before} KiB to {during} KiB for 20 announced, unsent frames"
            );
            for s in &mut held {
                let mut b = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                match s.read(&mut b) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    other => panic!("a mid-frame connection ended early: {other:?}"),
                }
            }
        })
        .await;
        rig.assert_still_serves("after-announced").await;
    })
    .await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The hostile inputs used by the crowd test; `allow_reply` for those that start with a
/// valid request.
fn crowd_input(
    kind: usize,
    seed: u64,
    metadata_version: i16,
    produce_version: i16,
) -> (&'static str, Vec<u8>, bool) {
    match kind % 9 {
        0 => (
            "200 MiB frame",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
            false,
        ),
        1 => ("negative length", (-7i32).to_be_bytes().to_vec(), false),
        2 => ("frame of length 3", hostile::raw_frame(&[0, 3, 0]), false),
        3 => (
            "unknown api key",
            hostile::request_frame(31000, 0, 1, false, &[]),
            false,
        ),
        4 => (
            "huge array count",
            hostile::huge_array_metadata_request(1, metadata_version),
            false,
        ),
        5 => (
            "pseudo-random bytes",
            kafka::pseudo_random_bytes(seed, 512),
            false,
        ),
        6 => {
            let mut b = wire::api_versions_request(1);
            b.extend(kafka::pseudo_random_bytes(seed, 64));
            ("ApiVersions + garbage", b, true)
        }
        7 => {
            let mut batch = wire::record_batch(&[b"crowd"], kafka::TIMESTAMP_BASE);
            hostile::set_record_count(&mut batch, i32::MAX);
            (
                "huge record count",
                wire::produce_request(1, produce_version, -1, "crowd", 0, &batch),
                false,
            )
        }
        _ => ("2-byte slow loris", vec![0, 0], false),
    }
}

/// 50 threads open hostile connections over and over while a normal client produces and
/// consumes 1000 records through the same proxy; every record arrives byte-identical and
/// every hostile connection is closed. All come from 127.0.0.1, so the per-source
/// connection rate is raised: the hostile inputs must reach the proxy's parsers rather than
/// be refused at accept (`preauth_limits.rs` tests that refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_hostile_connections() {
    let mut rig = Rig::start(
        "frame_timeout_ms = 2000\nhandshake_timeout_ms = 3000\n\
         per_source = { handshakes_per_sec = 100000, handshake_burst = 100000 }",
    );
    with_test_timeout("many_concurrent_hostile_connections", async {
        let addr = rig.addr.clone();
        let ranges = {
            let a = addr.clone();
            blocking(move || wire::probe_api_versions(&a, Duration::from_secs(10)).unwrap()).await
        };
        let (md_version, _) = hostile::metadata_versions(&ranges);
        let produce_version = wire::find_api(&ranges, wire::PRODUCE)
            .and_then(wire::pick_produce_version)
            .expect("a Produce version in 3..=8");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut threads = Vec::new();
        for t in 0..50usize {
            let (addr, stop, done, failures) =
                (addr.clone(), stop.clone(), done.clone(), failures.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0usize;
                // At least two rounds each; then until the normal client is done.
                while i < 2 || !stop.load(Ordering::Relaxed) {
                    let seed = (t * 1000 + i) as u64;
                    let (what, bytes, allow_reply) =
                        crowd_input(t + i, seed, md_version, produce_version);
                    let result = (|| -> Result<(), String> {
                        let mut s = wire::connect(&addr, Duration::from_secs(10))
                            .map_err(|e| format!("connect: {e}"))?;
                        hostile::send_tolerant(&mut s, &bytes)
                            .map_err(|e| format!("write: {e}"))?;
                        let c = hostile::wait_closed(&mut s, CLOSE_LIMIT)?;
                        if !allow_reply && !c.received.is_empty() {
                            return Err(format!("{} bytes answered", c.received.len()));
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("thread {t} #{i} {what}: {e}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    if i > 200 {
                        break;
                    }
                }
            }));
        }
        let started = Instant::now();
        hostile::round_trip(&rig.ep, "crowd", 1000, 3).await;
        let normal_time = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        blocking(move || {
            for t in threads {
                t.join().expect("hostile thread panicked");
            }
        })
        .await;
        let failures = failures.lock().unwrap().clone();
        let n = done.load(Ordering::Relaxed);
        eprintln!(
            "{n} hostile connections by 50 threads; the 1000-record round trip took {normal_time:?}"
        );
        assert!(
            failures.is_empty(),
            "{} of {n} hostile connections were not closed properly:\n{}",
            failures.len(),
            failures.join("\n")
        );
        let text = hostile::metrics_text(rig.admin);
        let errors = hostile::metric_sum(&text, ERRORS, "");
        assert!(
            errors >= n as f64 * 0.9,
            "{ERRORS} sums to {errors} after {n} hostile connections"
        );
        rig.assert_still_serves("after-crowd").await;
    })
    .await;
}

/// With `max_connections = 5`, five open connections hold every slot: a sixth is closed at
/// once and counted; after the five leave, new clients are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections() {
    let mut rig = Rig::start("max_connections = 5\nhandshake_timeout_ms = 60000");
    with_test_timeout("max_connections", async {
        let addr = rig.addr.clone();
        let admin = rig.admin;
        blocking(move || {
            let mut held = Vec::new();
            for i in 0..5 {
                let mut s = hostile::connect(&addr);
                // A served request proves the proxy accepted it and holds a slot for it.
                hostile::api_versions_exchange(&mut s, i);
                held.push(s);
            }
            let mut sixth = hostile::connect(&addr);
            hostile::send_tolerant(&mut sixth, &wire::api_versions_request(99)).unwrap();
            let c = hostile::wait_closed(&mut sixth, Duration::from_secs(5))
                .expect("sixth connection over max_connections");
            assert!(
                c.received.is_empty(),
                "the sixth connection was answered: {c:?}"
            );
            describe("sixth connection", &c);
            hostile::wait_metric_at_least(
                admin,
                REJECTED,
                "reason=\"max_connections\"",
                1.0,
                METRIC_LIMIT,
            );
            // The five are still served.
            for (i, s) in held.iter_mut().enumerate() {
                hostile::api_versions_exchange(s, 100 + i as i32);
            }
            drop(held);
            // Slots come back as the proxy notices the closes: a fresh connection is served
            // within a bounded time.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match wire::probe_api_versions(&addr, Duration::from_secs(2)) {
                    Ok(_) => break,
                    Err(e) => assert!(
                        Instant::now() < deadline,
                        "no connection served 10 s after the five closed: {e}"
                    ),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await;
        rig.assert_still_serves("after-max-connections").await;
    })
    .await;
}

/// TLS listener: bytes that are not a TLS handshake, and a handshake that stalls, close the
/// connection; inside an established TLS session (openssl s_client, which Debian's
/// ca-certificates pulls in), an oversized frame after a valid request closes it after the
/// valid answer. TLS clients keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_hostile_input() {
    let mut rig = Rig::start_with("handshake_timeout_ms = 2000", ProxyOptions::tls());
    with_test_timeout("tls_hostile_input", async {
        let addr = rig.addr.clone();
        let ca = rig
            .proxy
            .ca_path()
            .expect("TLS proxy has a CA")
            .to_path_buf();
        let dir = rig.proxy.dir().to_path_buf();
        blocking(move || {
            // Plaintext Kafka where a ClientHello belongs: at most a TLS alert comes back.
            let mut s = hostile::connect(&addr);
            hostile::send_tolerant(&mut s, &wire::api_versions_request(1)).unwrap();
            let c = hostile::wait_closed(&mut s, CLOSE_LIMIT).expect("plaintext on TLS");
            assert!(
                c.received.is_empty() || c.received[0] == 0x15,
                "plaintext on the TLS listener got a non-alert answer: {:02x?}",
                &c.received[..c.received.len().min(32)]
            );
            describe("plaintext Kafka on the TLS listener", &c);
            // A handshake record header announcing 512 bytes, then nothing.
            let c = hostile::assert_rejected(
                &addr,
                "stalled ClientHello",
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01],
                Duration::from_secs(8),
            );
            describe("stalled ClientHello", &c);

            // Inside TLS: ApiVersions, then a 200 MiB frame announcement.
            let mut input = wire::api_versions_request(1);
            input.extend_from_slice(&(200 * 1024 * 1024i32).to_be_bytes());
            let out = openssl_session(&addr, &ca, &dir, &input, Duration::from_secs(20));
            let mut got = &out[..];
            let (corr, _) = wire::read_response(&mut got).unwrap_or_else(|e| {
                panic!("no ApiVersions response inside TLS ({e}); s_client output: {out:02x?}")
            });
            assert_eq!(corr, 1);
            assert!(
                got.is_empty(),
                "bytes after the ApiVersions response inside TLS"
            );
        })
        .await;
        rig.assert_errors("tls_handshake", 2.0);
        rig.assert_errors("frame_too_large", 1.0);
        rig.assert_still_serves("after-tls-hostile").await;
    })
    .await;
}

/// Runs `openssl s_client` against `addr`, writes `input` once the session is up, and waits
/// (at most `limit`) for the server to close it, which ends s_client. Returns what the
/// server sent. Stdin stays open, so only the server can end the session.
fn openssl_session(
    addr: &str,
    ca: &std::path::Path,
    dir: &std::path::Path,
    input: &[u8],
    limit: Duration,
) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let out_path = dir.join("s_client.out");
    let err_path = dir.join("s_client.err");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", addr, "-CAfile"])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run `openssl s_client` (Debian package openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the proxy kept the TLS session open {limit:?} after an oversized frame; s_client stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    eprintln!(
        "s_client ended ({status}); stderr: {}",
        std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .trim()
    );
    std::fs::read(&out_path).unwrap()
}
