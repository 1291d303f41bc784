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

use portcullis_tests::broker::Broker;
use portcullis_tests::endpoint::Endpoint;
use portcullis_tests::kafka::{client_config, create_topic};
use portcullis_tests::proxy::{Proxy, ProxyOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Debug, Clone, Copy)]
struct Args {
    records: usize,
    record_bytes: usize,
    latency_samples: usize,
    soak_secs: u64,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 200_000,
        record_bytes: 1024,
        latency_samples: 2_000,
        soak_secs: 300,
        rounds: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--records" => args.records = value() as usize,
            "--record-bytes" => args.record_bytes = value() as usize,
            "--latency-samples" => args.latency_samples = value() as usize,
            "--soak-secs" => args.soak_secs = value(),
            "--rounds" => args.rounds = (value() as usize).max(1),
            other => panic!(
                "unknown flag {other}; flags: --records N --record-bytes N --latency-samples N --soak-secs N --rounds N"
            ),
        }
    }
    args
}

/// Results for one path.
#[derive(Debug, Default, Clone)]
struct PathResult {
    produce_mb_s: f64,
    consume_mb_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s_per_gb: Option<f64>,
}

impl PathResult {
    fn median(runs: &[PathResult]) -> PathResult {
        let med = |f: fn(&PathResult) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        PathResult {
            produce_mb_s: med(|r| r.produce_mb_s),
            consume_mb_s: med(|r| r.consume_mb_s),
            p50_ms: med(|r| r.p50_ms),
            p99_ms: med(|r| r.p99_ms),
            cpu_s_per_gb: runs
                .iter()
                .all(|r| r.cpu_s_per_gb.is_some())
                .then(|| med(|r| r.cpu_s_per_gb.unwrap_or(0.0))),
        }
    }
}

/// User + system CPU seconds of `pid` from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports in USER_HZ, 100 on every supported architecture.
    ticks / 100.0
}

/// Resident set size of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

fn producer(ep: &Endpoint) -> FutureProducer {
    client_config(ep)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .set("queue.buffering.max.kbytes", "262144")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create()
        .expect("producer")
}

async fn produce_throughput(ep: &Endpoint, topic: &str, args: &Args) -> f64 {
    let producer = producer(ep);
    let payload = vec![0x5au8; args.record_bytes];
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..args.records {
        let key = (i as u64).to_be_bytes();
        let mut record = FutureRecord::to(topic).key(&key[..]).payload(&payload[..]);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_queue_full, back)) => {
                    record = back;
                    for f in pending.drain(..) {
                        f.await.expect("delivery").expect("delivered");
                    }
                }
            }
        }
        if pending.len() == 10_000 {
            for f in pending.drain(..) {
                f.await.expect("delivery").expect("delivered");
            }
        }
    }
    for f in pending {
        f.await.expect("delivery").expect("delivered");
    }
    let secs = started.elapsed().as_secs_f64();
    (args.records * args.record_bytes) as f64 / secs / 1e6
}

fn consume_throughput(ep: &Endpoint, topic: &str, args: &Args) -> f64 {
    let consumer: BaseConsumer = client_config(ep)
        .set("group.id", format!("bench-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", "50")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut count = 0usize;
    let mut bytes = 0usize;
    while count < args.records {
        assert!(
            Instant::now() < deadline,
            "consume timed out at {count} records"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("consume");
            bytes += m.payload().map_or(0, <[u8]>::len);
            count += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(bytes, args.records * args.record_bytes, "bytes consumed");
    bytes as f64 / secs / 1e6
}

async fn produce_latency(ep: &Endpoint, topic: &str, args: &Args) -> (f64, f64) {
    let producer: FutureProducer = client_config(ep)
        .set("linger.ms", "0")
        .set("acks", "all")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create()
        .expect("producer");
    let payload = vec![0x33u8; args.record_bytes];
    // Warm-up: connections and metadata.
    for _ in 0..50 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&payload[..]),
                Duration::from_secs(30),
            )
            .await
            .expect("warm-up");
    }
    let mut samples = Vec::with_capacity(args.latency_samples);
    for _ in 0..args.latency_samples {
        let started = Instant::now();
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(&payload[..]),
                Duration::from_secs(30),
            )
            .await
            .expect("delivery");
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (pct(0.50), pct(0.99))
}

async fn run_path(name: &str, ep: &Endpoint, proxy_pid: Option<u32>, args: &Args) -> PathResult {
    let topic = format!("bench-{name}-{}", std::process::id());
    create_topic(ep, &topic, 1).await;
    let cpu_before = proxy_pid.map(cpu_seconds);
    let produce_mb_s = produce_throughput(ep, &topic, args).await;
    eprintln!("{name}: produce {produce_mb_s:.1} MB/s");
    let consume_ep = ep.clone();
    let consume_topic = topic.clone();
    let consume_args = *args;
    let consume_mb_s = tokio::task::spawn_blocking(move || {
        consume_throughput(&consume_ep, &consume_topic, &consume_args)
    })
    .await
    .expect("consume task");
    eprintln!("{name}: consume {consume_mb_s:.1} MB/s");
    let cpu_s_per_gb = proxy_pid.zip(cpu_before).map(|(pid, before)| {
        let moved_gb = 2.0 * (args.records * args.record_bytes) as f64 / 1e9;
        (cpu_seconds(pid) - before) / moved_gb
    });
    let latency_topic = format!("{topic}-latency");
    create_topic(ep, &latency_topic, 1).await;
    let (p50_ms, p99_ms) = produce_latency(ep, &latency_topic, args).await;
    eprintln!("{name}: produce latency p50 {p50_ms:.3} ms, p99 {p99_ms:.3} ms");
    // Keep the in-memory broker small: its speed drifts with the data it holds.
    let admin = portcullis_tests::kafka::admin(ep);
    let deleted = admin
        .delete_topics(
            &[topic.as_str(), latency_topic.as_str()],
            &portcullis_tests::kafka::admin_options(),
        )
        .await
        .expect("delete topics");
    for result in deleted {
        if let Err((t, e)) = result {
            panic!("cannot delete {t}: {e}");
        }
    }
    PathResult {
        produce_mb_s,
        consume_mb_s,
        p50_ms,
        p99_ms,
        cpu_s_per_gb,
    }
}

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

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
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
