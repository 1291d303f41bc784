//! `bench`: direct vs proxied throughput, latency and proxy cost, in one run against one
//! broker, printed as a Markdown table with ratios.
//!
//! Run it through `scripts/bench.sh` (which builds the release proxy). Paths run in
//! `--rounds` rounds (default 4) of alternating order, to cancel the broker's drift, and
//! figures are medians. Phases, for each path
//! (direct to the broker, through a plaintext proxy, through a TLS proxy):
//! - produce throughput: `--records` records of `--record-bytes` bytes, acks=all;
//! - consume throughput: the same records read back from the beginning;
//! - produce latency: `--latency-samples` sequential single-record produces (acks=all);
//! - proxy CPU: user+system CPU seconds of the proxy process over the throughput phases,
//!   divided by the gigabytes it moved (produce + consume).
//!
//! Then an optional soak (`--soak-secs`, 0 to skip) keeps producing through the plaintext
//! proxy at a steady pace and samples its RSS every 10 seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portcullis_tests::bench::{parse_args, producer, ratio, rss_mib, run_path, Args, PathResult};
use portcullis_tests::broker::Broker;
use portcullis_tests::endpoint::Endpoint;
use portcullis_tests::kafka::create_topic;
use portcullis_tests::proxy::{Proxy, ProxyOptions};
use rdkafka::producer::FutureRecord;

async fn soak(ep: &Endpoint, pid: u32, secs: u64, args: &Args) -> Vec<(u64, f64)> {
    let topic = format!("bench-soak-{}", std::process::id());
    create_topic(ep, &topic, 1).await;
    let producer = producer(ep);
    let payload = vec![0x11u8; args.record_bytes];
    let started = Instant::now();
    let mut samples = vec![(0, rss_mib(pid))];
    let mut next_sample = 10;
    let mut pending = Vec::new();
    // Paced (about 2 MB/s) so the in-memory broker does not grow by gigabytes.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while started.elapsed().as_secs() < secs {
        tick.tick().await;
        for _ in 0..1_000 {
            let record = FutureRecord::<(), _>::to(&topic).payload(&payload[..]);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("soak enqueue: {e}"),
            }
        }
        for f in pending.drain(..) {
            f.await.expect("soak delivery").expect("delivered");
        }
        let elapsed = started.elapsed().as_secs();
        if elapsed >= next_sample {
            samples.push((elapsed, rss_mib(pid)));
            next_sample += 10;
        }
    }
    samples.push((started.elapsed().as_secs(), rss_mib(pid)));
    samples
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let broker = Broker::start();
    let plain = Proxy::start_with(
        &broker,
        ProxyOptions {
            log_level: "warn".into(),
            ..ProxyOptions::default()
        },
    );
    let tls = Proxy::start_with(
        &broker,
        ProxyOptions {
            log_level: "warn".into(),
            ..ProxyOptions::tls()
        },
    );
    eprintln!(
        "{} records of {} bytes per path; proxy binary {}",
        args.records,
        args.record_bytes,
        portcullis_tests::proxy::proxy_binary().display()
    );
    // The in-memory broker's speed drifts as it holds more data, so the paths run in
    // `--rounds` rounds of alternating order, and each figure is the median of its runs.
    let paths = [
        ("direct", broker.endpoint(), None),
        ("plaintext", plain.endpoint(), Some(plain.pid())),
        ("tls", tls.endpoint(), Some(tls.pid())),
    ];
    let mut results: Vec<Vec<PathResult>> = vec![Vec::new(); paths.len()];
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1, 2]
        } else {
            vec![2, 1, 0]
        };
        for i in order {
            let (name, ep, pid) = &paths[i];
            let label = format!("{name}-r{round}");
            results[i].push(run_path(&label, ep, *pid, &args).await);
        }
    }
    let [direct, proxied, proxied_tls] = [0, 1, 2].map(|i| PathResult::median(&results[i]));

    println!("| path | produce MB/s | ratio | consume MB/s | ratio | produce p50 ms | added | produce p99 ms | added | proxy CPU s/GB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, r) in [
        ("direct", &direct),
        ("proxy plaintext", &proxied),
        ("proxy TLS", &proxied_tls),
    ] {
        println!(
            "| {name} | {:.1} | {} | {:.1} | {} | {:.3} | {:+.3} | {:.3} | {:+.3} | {} |",
            r.produce_mb_s,
            ratio(r.produce_mb_s, direct.produce_mb_s),
            r.consume_mb_s,
            ratio(r.consume_mb_s, direct.consume_mb_s),
            r.p50_ms,
            r.p50_ms - direct.p50_ms,
            r.p99_ms,
            r.p99_ms - direct.p99_ms,
            r.cpu_s_per_gb.map_or("-".into(), |c| format!("{c:.2}")),
        );
    }

    if args.soak_secs > 0 {
        eprintln!("soak: {} s through the plaintext proxy", args.soak_secs);
        let samples = soak(&plain.endpoint(), plain.pid(), args.soak_secs, &args).await;
        let first = samples.first().map_or(0.0, |s| s.1);
        let after_warmup = samples.iter().find(|s| s.0 >= 30).map_or(first, |s| s.1);
        let last = samples.last().map_or(0.0, |s| s.1);
        let max = samples.iter().map(|s| s.1).fold(0.0, f64::max);
        println!();
        println!(
            "soak {} s: proxy RSS start {first:.1} MiB, at 30 s {after_warmup:.1} MiB, end {last:.1} MiB, max {max:.1} MiB",
            args.soak_secs
        );
        println!(
            "samples (s, MiB): {}",
            samples
                .iter()
                .map(|(t, m)| format!("{t}:{m:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
