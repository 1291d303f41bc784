//! Request limits end to end (issue 13, item 1; acceptance: "100 MiB frames of huge declared
//! counts from an authenticated client: RSS stays under 2 times the frame limit; the proxy
//! keeps serving another client throughout").
//!
//! bob logs in with PLAIN and sends 100 MiB frames (`limits.max_frame_bytes` = 100 MiB) whose
//! every byte is a real, decodable item: Metadata with fifty million empty topic names,
//! Produce and Fetch with millions of partitions, DeleteGroups and DescribeConfigs with
//! millions of groups and resources. Decoded, each would take gigabytes; the proxy must
//! refuse them from their counts, answering Fetch with POLICY_VIOLATION and closing the
//! connection for the others. Meanwhile alice produces and reads back records through the
//! same proxy, and the proxy's peak resident size (`VmHWM`) must stay within one frame of
//! what it held before the attack.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use portcullis_tests::auth::{start, Auth};
use portcullis_tests::hostile::{self, metric_sum, metrics_text};
use portcullis_tests::sasl_wire::{RawClient, SaslResult};
use portcullis_tests::{wire, with_test_timeout};

/// The frame limit of this test, and the size of every hostile frame.
const FRAME: usize = 100 << 20;

/// Room left in a frame for the request header and a body's fixed fields.
const HEADER_ROOM: usize = 256;

use portcullis_tests::process::proc_status_bytes as status_bytes;

/// What the proxy must do with a hostile request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Close the connection.
    Close,
    /// Answer with a top-level POLICY_VIOLATION (error code at this body offset) and keep
    /// the connection open.
    Error { at: usize },
}

struct Hostile {
    what: &'static str,
    api: i16,
    version: i16,
    flexible: bool,
    body: Vec<u8>,
    expect: Expect,
}

/// `prefix`, then as many copies of `item` as fit in the frame, with the count of copies
/// written where `count_at` says (an i32, or a compact varint of count + 1 when `compact`).
fn filled(prefix: &[u8], count_at: usize, compact: bool, item: &[u8], suffix: &[u8]) -> Vec<u8> {
    let n = (FRAME - HEADER_ROOM - prefix.len() - suffix.len() - 5) / item.len();
    let mut body = Vec::with_capacity(FRAME);
    body.extend_from_slice(&prefix[..count_at]);
    if compact {
        let mut v = n as u64 + 1;
        while v >= 0x80 {
            body.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        body.push(v as u8);
    } else {
        body.extend_from_slice(&(n as i32).to_be_bytes());
    }
    body.extend_from_slice(&prefix[count_at..]);
    for _ in 0..n {
        body.extend_from_slice(item);
    }
    body.extend_from_slice(suffix);
    body
}

fn hostile_requests() -> Vec<Hostile> {
    let produce_prefix = [
        &(-1i16).to_be_bytes()[..], // transactional id: null
        &(-1i16).to_be_bytes(),     // acks
        &10_000i32.to_be_bytes(),   // timeout
        &1i32.to_be_bytes(),        // one topic
        &[0, 1, b't'],              // named "t"
    ]
    .concat();
    let fetch_prefix = [
        &(-1i32).to_be_bytes()[..],  // replica id
        &500i32.to_be_bytes(),       // max wait
        &1i32.to_be_bytes(),         // min bytes
        &(1i32 << 20).to_be_bytes(), // max bytes
        &[0],                        // isolation level
        &0i32.to_be_bytes(),         // session id
        &(-1i32).to_be_bytes(),      // session epoch
        &1i32.to_be_bytes(),         // one topic
        &[0, 1, b't'],               // named "t"
    ]
    .concat();
    let fetch_partition = [
        &0i32.to_be_bytes()[..],     // partition
        &(-1i32).to_be_bytes(),      // current leader epoch
        &0i64.to_be_bytes(),         // fetch offset
        &(-1i64).to_be_bytes(),      // log start offset
        &(1i32 << 20).to_be_bytes(), // partition max bytes
    ]
    .concat();
    let fetch_suffix = [&0i32.to_be_bytes()[..], &[0, 0]].concat(); // no forgotten topics, rack ""
    vec![
        Hostile {
            what: "Metadata v4, 52 million empty topic names",
            api: wire::METADATA,
            version: 4,
            flexible: false,
            body: filled(&[], 0, false, &[0, 0], &[0]),
            expect: Expect::Close,
        },
        Hostile {
            what: "Metadata v12, 5.8 million topic ids",
            api: wire::METADATA,
            version: 12,
            flexible: true,
            body: filled(
                &[],
                0,
                true,
                &[[1u8; 16].as_slice(), &[0, 0]].concat(),
                &[0, 0, 0],
            ),
            expect: Expect::Close,
        },
        Hostile {
            what: "Produce v7, 13 million null partitions",
            api: 0,
            version: 7,
            flexible: false,
            body: filled(
                &produce_prefix,
                produce_prefix.len(),
                false,
                &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
                &[],
            ),
            expect: Expect::Close,
        },
        Hostile {
            what: "Fetch v11, 3.7 million partitions",
            api: 1,
            version: 11,
            flexible: false,
            body: filled(
                &fetch_prefix,
                fetch_prefix.len(),
                false,
                &fetch_partition,
                &fetch_suffix,
            ),
            // correlation id, throttle time, then the error code.
            expect: Expect::Error { at: 8 },
        },
        Hostile {
            what: "DeleteGroups v1, 52 million empty group ids",
            api: 42,
            version: 1,
            flexible: false,
            body: filled(&[], 0, false, &[0, 0], &[]),
            expect: Expect::Close,
        },
        Hostile {
            what: "DescribeConfigs v1, 15 million resources",
            api: 32,
            version: 1,
            flexible: false,
            body: filled(&[], 0, false, &[2, 0, 0, 0xff, 0xff, 0xff, 0xff], &[0]),
            expect: Expect::Close,
        },
    ]
}

fn login(addr: &str) -> RawClient {
    let mut client = RawClient::connect(addr).expect("connect");
    let result = client
        .login_password("PLAIN", "bob", "bob-secret")
        .expect("login");
    assert!(
        matches!(result, SaslResult::Ok { .. }),
        "bob's login: {result:?}"
    );
    client
}

/// Sends every hostile request (reconnecting after each close) and checks the answers.
fn attack(addr: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for (i, h) in hostile_requests().into_iter().enumerate() {
        assert!(
            h.body.len() + HEADER_ROOM / 2 <= FRAME,
            "{}: frame too big",
            h.what
        );
        let frame = hostile::request_frame(h.api, h.version, 1000 + i as i32, h.flexible, &h.body);
        drop(h.body);
        let mut client = login(addr);
        let started = Instant::now();
        client.send_raw(&frame[4..]).expect("send hostile frame");
        drop(frame);
        match h.expect {
            Expect::Close => assert!(
                client.closed_within(Duration::from_secs(30)),
                "{}: connection not closed",
                h.what
            ),
            Expect::Error { at } => {
                let answer = client.read_frame().expect("answer to hostile fetch");
                let code = i16::from_be_bytes([answer[at], answer[at + 1]]);
                assert_eq!(code, 44, "{}: POLICY_VIOLATION expected", h.what);
                // Still open and serving.
                client.metadata().expect("metadata after the refused fetch");
            }
        }
        seen.push(format!(
            "{}: {:?} in {:?}",
            h.what,
            h.expect,
            started.elapsed()
        ));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_declared_counts_in_100_mib_frames_are_refused_within_bounded_memory() {
    with_test_timeout("request limits", async {
        let s = start(Auth {
            mechanisms: &["PLAIN"],
            auth_extra: &format!("\n[limits]\nmax_frame_bytes = {FRAME}\n"),
            ..Auth::default()
        });
        let pid = s.proxy.pid();
        let alice = s.proxy.endpoint().with_password("PLAIN", "alice", "alice-secret");
        hostile::round_trip(&alice, "limits-warmup", 20, 2).await;
        let rss_before = status_bytes(pid, "VmRSS:");

        let addr = s.proxy.bootstrap();
        let attacker = tokio::task::spawn_blocking(move || attack(&addr));
        let mut rounds_during = 0;
        while !attacker.is_finished() {
            hostile::round_trip(&alice, "limits-during", 20, 2).await;
            rounds_during += 1;
        }
        let seen = attacker.await.expect("attacker thread");
        hostile::round_trip(&alice, "limits-after", 20, 2).await;

        let peak = status_bytes(pid, "VmHWM:");
        let rss_after = status_bytes(pid, "VmRSS:");
        eprintln!(
            "RSS before {} MiB, after {} MiB, peak {} MiB; {rounds_during} round trips during the attack\n{}",
            rss_before >> 20,
            rss_after >> 20,
            peak >> 20,
            seen.join("\n")
        );
        assert!(peak > 0, "cannot read /proc/{pid}/status");
        // The attack may cost the frame being read (its buffer is the frame) and a little
        // more, never its decoded form: the peak stays within one frame (plus 16 MiB of
        // slack: the first megabyte of the frame is copied once when the rest is reserved,
        // and mimalloc keeps the pages alice's traffic used meanwhile, about 7 MiB) of what
        // the proxy held before. With an idle proxy under
        // the frame limit (about 60 MiB in release builds; a debug build with its sled audit
        // store already holds about 100 MiB) that is the issue's "under twice the frame
        // limit".
        let growth = peak.saturating_sub(rss_before);
        assert!(
            growth < FRAME as u64 + (16 << 20),
            "proxy peak RSS {} MiB is {} MiB over its {} MiB before the attack: more than one \
             {} MiB frame",
            peak >> 20,
            growth >> 20,
            rss_before >> 20,
            FRAME >> 20
        );
        assert!(rounds_during >= 1, "alice was not served during the attack");
        let metrics = metrics_text(s.proxy.admin_addr());
        let refusals = metric_sum(&metrics, "portcullis_request_limit_refusals_total", "");
        assert_eq!(refusals, 6.0, "refusal metric:\n{metrics}");
        let events = s.proxy.audit_events();
        let limit_events = events
            .iter()
            .filter(|e| e["action"] == "request.limit")
            .count();
        assert_eq!(limit_events, 6, "one audit event per refused request (one per connection)");
    })
    .await;
}
