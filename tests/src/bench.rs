//! Shared parts of the benchmark binaries (`bench`, `authz_bench`): argument parsing,
//! produce/consume throughput, produce latency and CPU costs, measured with librdkafka
//! against any endpoint.
//!
//! CPU is read from /proc for three parties, each a separate process: the middlebox (proxy
//! or bare TLS terminator), the broker, and the bench process itself, in which librdkafka
//! (the client, including its own TLS encryption) runs. Each is reported in CPU seconds per
//! gigabyte of record payload moved.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::kafka::{client_config, create_topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Debug, Clone)]
pub struct Args {
    pub records: usize,
    pub record_bytes: usize,
    pub latency_samples: usize,
    pub soak_secs: u64,
    pub rounds: usize,
    /// Another proxy binary measured in the same run (`--baseline-bin`), e.g. the build
    /// before a change.
    pub baseline_bin: Option<std::path::PathBuf>,
    /// Give the proxies a core of their own even below 8 cores (`--pin-proxy`).
    pub pin_proxy: bool,
}

pub fn parse_args() -> Args {
    let mut args = Args {
        records: 200_000,
        record_bytes: 1024,
        latency_samples: 2_000,
        soak_secs: 300,
        baseline_bin: None,
        rounds: 4,
        pin_proxy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        if flag == "--pin-proxy" {
            args.pin_proxy = true;
            continue;
        }
        if flag == "--baseline-bin" {
            let path = it
                .next()
                .unwrap_or_else(|| panic!("--baseline-bin needs a path"));
            args.baseline_bin = Some(path.into());
            continue;
        }
        match flag.as_str() {
            "--records" => args.records = value() as usize,
            "--record-bytes" => args.record_bytes = value() as usize,
            "--latency-samples" => args.latency_samples = value() as usize,
            "--soak-secs" => args.soak_secs = value(),
            "--rounds" => args.rounds = (value() as usize).max(1),
            other => panic!(
                "unknown flag {other}; flags: --records N --record-bytes N --latency-samples N --soak-secs N --rounds N --baseline-bin PATH --pin-proxy"
            ),
        }
    }
    args
}

/// Results for one path.
#[derive(Debug, Default, Clone)]
pub struct PathResult {
    pub produce_mb_s: f64,
    pub consume_mb_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Middlebox (proxy, terminator) CPU over produce + consume, per GB moved.
    pub cpu_s_per_gb: Option<f64>,
    /// Middlebox CPU over the produce phase alone, per GB produced.
    pub produce_cpu_s_per_gb: Option<f64>,
    /// The bench process's own CPU (the librdkafka client) over produce + consume, per GB.
    pub client_cpu_s_per_gb: f64,
    /// The broker's CPU over produce + consume, per GB moved.
    pub broker_cpu_s_per_gb: Option<f64>,
}

/// The separate processes whose CPU a path run measures (the client is always measured:
/// it is the bench process itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// The proxy or terminator between client and broker; `None` on the direct path.
    pub middlebox: Option<u32>,
    /// The broker the path ends at.
    pub broker: Option<u32>,
}

/// CPU seconds of the watched processes at one moment.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    client: f64,
    middlebox: Option<f64>,
    broker: Option<f64>,
}

impl CpuSnapshot {
    fn take(watched: Watched) -> Self {
        Self {
            client: cpu_seconds(std::process::id()),
            middlebox: watched.middlebox.map(cpu_seconds),
            broker: watched.broker.map(cpu_seconds),
        }
    }
}

/// CPU seconds per GB of each party between two snapshots.
#[derive(Debug, Clone, Copy)]
struct CpuPerGb {
    client: f64,
    middlebox: Option<f64>,
    broker: Option<f64>,
}

impl CpuPerGb {
    fn between(before: &CpuSnapshot, after: &CpuSnapshot, gb: f64) -> Self {
        let per_gb = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / gb);
        Self {
            client: (after.client - before.client) / gb,
            middlebox: per_gb(before.middlebox, after.middlebox),
            broker: per_gb(before.broker, after.broker),
        }
    }
}

impl PathResult {
    pub fn median(runs: &[PathResult]) -> PathResult {
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
            cpu_s_per_gb: median_of_some(runs, |r| r.cpu_s_per_gb),
            produce_cpu_s_per_gb: median_of_some(runs, |r| r.produce_cpu_s_per_gb),
            client_cpu_s_per_gb: med(|r| r.client_cpu_s_per_gb),
            broker_cpu_s_per_gb: median_of_some(runs, |r| r.broker_cpu_s_per_gb),
        }
    }
}

/// The median of an optional figure, `None` unless every run has it.
fn median_of_some(runs: &[PathResult], f: fn(&PathResult) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().map(f).collect::<Option<_>>()?;
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Formats an optional CPU figure for the tables.
pub fn cpu_cell(value: Option<f64>) -> String {
    value.map_or("-".into(), |c| format!("{c:.2}"))
}

/// User + system CPU seconds of `pid` from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports in USER_HZ, 100 on every supported architecture.
    ticks / 100.0
}

/// Resident set size of `pid` in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

pub fn producer(ep: &Endpoint) -> FutureProducer {
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

pub async fn produce_throughput(ep: &Endpoint, topic: &str, args: &Args) -> f64 {
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

pub fn consume_throughput(ep: &Endpoint, topic: &str, args: &Args) -> f64 {
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

pub async fn produce_latency(ep: &Endpoint, topic: &str, args: &Args) -> (f64, f64) {
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

/// Runs the produce, consume and latency phases on `ep`, measuring the middlebox's CPU
/// (when `proxy_pid` is given) and the client's.
pub async fn run_path(
    name: &str,
    ep: &Endpoint,
    proxy_pid: Option<u32>,
    args: &Args,
) -> PathResult {
    let watched = Watched {
        middlebox: proxy_pid,
        broker: None,
    };
    run_path_watched(name, ep, watched, args).await
}

/// Like [`run_path`], measuring the CPU of every process in `watched`.
pub async fn run_path_watched(
    name: &str,
    ep: &Endpoint,
    watched: Watched,
    args: &Args,
) -> PathResult {
    let topic = format!("bench-{name}-{}", std::process::id());
    create_topic(ep, &topic, 1).await;
    let payload_gb = (args.records * args.record_bytes) as f64 / 1e9;
    let cpu_start = CpuSnapshot::take(watched);
    let produce_mb_s = produce_throughput(ep, &topic, args).await;
    let cpu_produced = CpuSnapshot::take(watched);
    eprintln!("{name}: produce {produce_mb_s:.1} MB/s");
    let consume_ep = ep.clone();
    let consume_topic = topic.clone();
    let consume_args = args.clone();
    let consume_mb_s = tokio::task::spawn_blocking(move || {
        consume_throughput(&consume_ep, &consume_topic, &consume_args)
    })
    .await
    .expect("consume task");
    let cpu_end = CpuSnapshot::take(watched);
    eprintln!("{name}: consume {consume_mb_s:.1} MB/s");
    let produce_cpu = CpuPerGb::between(&cpu_start, &cpu_produced, payload_gb);
    let total_cpu = CpuPerGb::between(&cpu_start, &cpu_end, 2.0 * payload_gb);
    eprintln!("{name}: CPU s/GB produce {produce_cpu:?}, produce+consume {total_cpu:?}");
    let latency_topic = format!("{topic}-latency");
    create_topic(ep, &latency_topic, 1).await;
    let (p50_ms, p99_ms) = produce_latency(ep, &latency_topic, args).await;
    eprintln!("{name}: produce latency p50 {p50_ms:.3} ms, p99 {p99_ms:.3} ms");
    // Keep the in-memory broker small: its speed drifts with the data it holds.
    let admin = crate::kafka::admin(ep);
    let deleted = admin
        .delete_topics(
            &[topic.as_str(), latency_topic.as_str()],
            &crate::kafka::admin_options(),
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
        cpu_s_per_gb: total_cpu.middlebox,
        produce_cpu_s_per_gb: produce_cpu.middlebox,
        client_cpu_s_per_gb: total_cpu.client,
        broker_cpu_s_per_gb: total_cpu.broker,
    }
}

pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}
