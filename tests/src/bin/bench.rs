//! `bench`: direct vs proxied throughput, latency and proxy cost, in one run against one
//! broker, printed as a Markdown table with ratios.
//!
//! Run it through `scripts/bench.sh` (which builds the release proxy). Paths run in
//! `--rounds` rounds (default 4) of alternating order, to cancel the broker's drift, and
//! figures are medians. Phases, for each path
//! (direct to the broker, through a plaintext proxy, through a TLS proxy, and through a
//! bare TLS terminator — see below):
//! - produce throughput: `--records` records of `--record-bytes` bytes, acks=all;
//! - consume throughput: the same records read back from the beginning;
//! - produce latency: `--latency-samples` sequential single-record produces (acks=all);
//! - CPU: user+system CPU seconds over the throughput phases, divided by the gigabytes
//!   moved (produce + consume), for the middlebox (proxy or terminator; also over the
//!   produce phase alone), the broker, and the client: librdkafka runs inside this process,
//!   so its own CPU (TLS encryption included) is this process's. Client, broker and
//!   middlebox share the machine's cores, so a path's throughput follows their sum.
//!
//! The bare TLS terminator (`tls_terminator`, built beside this binary) is the reference
//! for the TLS path: a TLS -> TCP byte forwarder with the proxy's TLS stack and no Kafka
//! awareness, the floor any TLS-terminating proxy can reach here. Since it does not
//! rewrite Metadata, it fronts a second broker started with the terminator's address as
//! its advertised listener (the first broker must advertise itself for the direct path and
//! the proxies); the bench checks that the terminator really carried the produced bytes.
//!
//! With `--baseline-bin PATH`, a second plaintext and TLS proxy run from that binary (the
//! build before a change, say) take part in the same rounds, so before and after are
//! measured against the same broker in one run.
//!
//! Then an optional soak (`--soak-secs`, 0 to skip) keeps producing through the plaintext
//! proxy at a steady pace and samples its RSS every 10 seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_tests::bench::{
    cpu_cell, parse_args, producer, ratio, rss_mib, run_path_watched, Args, PathResult, Watched,
};
use portcullis_tests::broker::{tansu_binary, Broker};
use portcullis_tests::endpoint::Endpoint;
use portcullis_tests::kafka::create_topic;
use portcullis_tests::process::ManagedChild;
use portcullis_tests::proxy::{Proxy, ProxyOptions};
use portcullis_tests::{ports, wire};
use rdkafka::producer::FutureRecord;

/// How long the second broker and the terminator may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The bare-TLS reference path: a broker that advertises the terminator's address, and the
/// terminator in front of it. Both are killed when dropped.
struct BareTls {
    // Field order matters: the children are killed before their directory is removed.
    terminator: ManagedChild,
    broker: ManagedChild,
    address: String,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl BareTls {
    /// Starts the broker and the terminator, serving the TLS proxy's certificate (so the
    /// same CA bundle is trusted on both TLS paths).
    fn start(tls_proxy: &Proxy) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-bare-tls-")
            .tempdir()
            .expect("temp dir");
        let (broker_port, listen_port) = (ports::free_port(), ports::free_port());
        let broker_addr = format!("127.0.0.1:{broker_port}");
        let address = format!("127.0.0.1:{listen_port}");
        let mut cmd = Command::new(tansu_binary());
        cmd.current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://{broker_addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{address}"))
            .args(["--storage-engine", "memory://tansu/"]);
        let broker = ManagedChild::spawn("tansu", &mut cmd, &dir.path().join("tansu.log"));
        wire::wait_until_answers(&broker_addr, Instant::now() + START_TIMEOUT, || {})
            .unwrap_or_else(|e| panic!("second broker: {e}"));
        let certs = tls_proxy.dir().join("certs");
        let mut cmd = Command::new(terminator_binary());
        cmd.args(["--listen", &address, "--upstream", &broker_addr, "--cert"])
            .arg(certs.join("server.pem"))
            .arg("--key")
            .arg(certs.join("server.key"))
            .arg("--stats")
            .arg(dir.path().join("terminator.stats"));
        let terminator = ManagedChild::spawn(
            "tls_terminator",
            &mut cmd,
            &dir.path().join("terminator.log"),
        );
        wait_for_listener(&address);
        Self {
            terminator,
            broker,
            address,
            ca: tls_proxy.ca_path().expect("TLS proxy CA").to_path_buf(),
            dir,
        }
    }

    /// Plaintext bytes the terminator has forwarded (to the broker, from the broker), as it
    /// last published them (every 100 ms).
    fn forwarded(&self) -> (u64, u64) {
        let stats =
            std::fs::read_to_string(self.dir.path().join("terminator.stats")).unwrap_or_default();
        let mut numbers = stats.split_whitespace().map(|n| n.parse().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
    }

    /// Runs one path through the terminator, and checks that it carried at least the
    /// produced and the consumed payload (the client did not go around it).
    async fn run(&self, label: &str, watched: Watched, args: &Args) -> PathResult {
        let (sent, received) = self.forwarded();
        let result = run_path_watched(label, &self.endpoint(), watched, args).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (sent_after, received_after) = self.forwarded();
        let (sent, received) = (sent_after - sent, received_after - received);
        eprintln!(
            "{label}: the terminator forwarded {sent} bytes to the broker, {received} from it"
        );
        let payload = (args.records * args.record_bytes) as u64;
        assert!(
            sent >= payload && received >= payload,
            "{label}: the terminator carried less than the payload: the client went around it"
        );
        result
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            ca: Some(self.ca.clone()),
            ..Endpoint::plaintext(self.address.clone())
        }
    }
}

/// `tls_terminator` beside this binary (`scripts/bench.sh` builds both).
fn terminator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe.with_file_name("tls_terminator");
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build --release -p portcullis-tests --bins`",
        path.display()
    );
    path
}

/// Waits until something accepts TCP connections on `address`.
fn wait_for_listener(address: &str) {
    let deadline = Instant::now() + START_TIMEOUT;
    while std::net::TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        std::thread::sleep(Duration::from_millis(50));
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

/// With 8 or more cores, pins the brokers, the middleboxes (proxies, terminator) and this
/// client to separate cores (`taskset`), so ratios measure the proxy rather than contention
/// for shared cores; says which it did. With `--pin-proxy` on a smaller machine, the
/// middleboxes get the last core to themselves and the brokers and the client share the
/// rest: every path's client and broker compete alike, and a proxy's ratio shows whether it
/// keeps up on one core of its own.
fn pin_parties(brokers: &[u32], middleboxes: &[u32], pin_proxy: bool) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (broker_set, proxy_set, client_set) = if cores >= 8 {
        let quarter = cores / 4;
        let set = |from: usize| format!("{}-{}", from, from + quarter - 1);
        (set(0), set(quarter), set(2 * quarter))
    } else if pin_proxy && cores >= 2 {
        let rest = format!("0-{}", cores - 2);
        (rest.clone(), format!("{}", cores - 1), rest)
    } else {
        println!("cores: {cores}, not pinned (client, broker and proxy share them)");
        return;
    };
    let pin = |pid: u32, cpus: &str| {
        let ok = std::process::Command::new("taskset")
            .args(["-apc", cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "taskset -apc {cpus} {pid} failed (util-linux installed?)"
        );
    };
    brokers.iter().for_each(|&p| pin(p, &broker_set));
    middleboxes.iter().for_each(|&p| pin(p, &proxy_set));
    pin(std::process::id(), &client_set);
    println!("cores: {cores}, pinned: broker {broker_set}, proxy {proxy_set}, client {client_set}");
}

/// What record encryption adds to the TLS proxy in this run: throughput ratios (target at
/// least 0.90), proxy CPU per GB, and the record-size overhead of format v1.
fn print_encryption_cost(tls: &PathResult, enc: &PathResult, args: &Args) {
    // Format v1: 46 bytes on the value (version, cipher, DEK id, nonce, tag) and the marker
    // header `portcullis.enc` = "1" (key length varint, key, value length varint, value, plus
    // the header-count varint that grows from 0 to 1 header: 1 + 14 + 1 + 1).
    let overhead = 46 + 17;
    println!();
    println!(
        "proxy TLS + encryption relative to proxy TLS: produce {}, consume {}; proxy CPU s/GB {} vs {} (added {}); record overhead {overhead} bytes per record ({:.1} % of {} bytes)",
        ratio(enc.produce_mb_s, tls.produce_mb_s),
        ratio(enc.consume_mb_s, tls.consume_mb_s),
        cpu_cell(enc.cpu_s_per_gb),
        cpu_cell(tls.cpu_s_per_gb),
        match (enc.cpu_s_per_gb, tls.cpu_s_per_gb) {
            (Some(e), Some(t)) => format!("{:+.2}", e - t),
            _ => "n/a".into(),
        },
        f64::from(overhead) * 100.0 / args.record_bytes as f64,
        args.record_bytes,
    );
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
    // TLS plus record encryption of the bench topics of the "tls-enc" path (root key made
    // by the real `portcullis keys init`).
    let keys = portcullis_tests::encryption::KeyDir::new();
    let tls_enc = Proxy::start_with(
        &broker,
        ProxyOptions {
            log_level: "warn".into(),
            extra_toml: keys.proxy_toml(&[], &["bench-tls-enc-"], ""),
            ..ProxyOptions::tls()
        },
    );
    let bare = BareTls::start(&tls);
    // The in-memory broker's speed drifts as it holds more data, so the paths run in
    // `--rounds` rounds of alternating order, and each figure is the median of its runs.
    let watched = |middlebox: Option<u32>, broker: u32| Watched {
        middlebox,
        broker: Some(broker),
    };
    let baseline = args.baseline_bin.as_ref().map(|bin| {
        eprintln!("baseline proxy binary {}", bin.display());
        let start = |tls: bool| {
            Proxy::start_with(
                &broker,
                ProxyOptions {
                    log_level: "warn".into(),
                    binary: Some(bin.clone()),
                    ..if tls {
                        ProxyOptions::tls()
                    } else {
                        ProxyOptions::default()
                    }
                },
            )
        };
        (start(false), start(true))
    });
    let mut paths = vec![
        ("direct", broker.endpoint(), watched(None, broker.pid())),
        (
            "plaintext",
            plain.endpoint(),
            watched(Some(plain.pid()), broker.pid()),
        ),
        (
            "tls",
            tls.endpoint(),
            watched(Some(tls.pid()), broker.pid()),
        ),
        (
            "bare-tls",
            bare.endpoint(),
            watched(Some(bare.terminator.pid()), bare.broker.pid()),
        ),
        (
            "tls-enc",
            tls_enc.endpoint(),
            watched(Some(tls_enc.pid()), broker.pid()),
        ),
    ];
    if let Some((plain, tls)) = &baseline {
        paths.push((
            "baseline-plaintext",
            plain.endpoint(),
            watched(Some(plain.pid()), broker.pid()),
        ));
        paths.push((
            "baseline-tls",
            tls.endpoint(),
            watched(Some(tls.pid()), broker.pid()),
        ));
    }
    let mut middleboxes = vec![plain.pid(), tls.pid(), tls_enc.pid(), bare.terminator.pid()];
    if let Some((p, t)) = &baseline {
        middleboxes.extend([p.pid(), t.pid()]);
    }
    pin_parties(
        &[broker.pid(), bare.broker.pid()],
        &middleboxes,
        args.pin_proxy,
    );
    let mut results: Vec<Vec<PathResult>> = vec![Vec::new(); paths.len()];
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..paths.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, ep, watched) = &paths[i];
            let label = format!("{name}-r{round}");
            let result = if *name == "bare-tls" {
                bare.run(&label, *watched, &args).await
            } else {
                run_path_watched(&label, ep, *watched, &args).await
            };
            results[i].push(result);
        }
    }
    let medians: Vec<PathResult> = results.iter().map(|r| PathResult::median(r)).collect();
    let (direct, proxied_tls, bare_tls, tls_enc_result) =
        (&medians[0], &medians[2], &medians[3], &medians[4]);

    println!("| path | produce MB/s | ratio | consume MB/s | ratio | produce p50 ms | added | produce p99 ms | added | middlebox CPU s/GB | middlebox CPU s/GB, produce only | client CPU s/GB | broker CPU s/GB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let names = [
        "direct",
        "proxy plaintext",
        "proxy TLS",
        "bare TLS terminator",
        "proxy TLS + encryption",
        "baseline proxy plaintext",
        "baseline proxy TLS",
    ];
    for (name, r) in names.iter().zip(&medians) {
        println!(
            "| {name} | {:.1} | {} | {:.1} | {} | {:.3} | {:+.3} | {:.3} | {:+.3} | {} | {} | {:.2} | {} |",
            r.produce_mb_s,
            ratio(r.produce_mb_s, direct.produce_mb_s),
            r.consume_mb_s,
            ratio(r.consume_mb_s, direct.consume_mb_s),
            r.p50_ms,
            r.p50_ms - direct.p50_ms,
            r.p99_ms,
            r.p99_ms - direct.p99_ms,
            cpu_cell(r.cpu_s_per_gb),
            cpu_cell(r.produce_cpu_s_per_gb),
            r.client_cpu_s_per_gb,
            cpu_cell(r.broker_cpu_s_per_gb),
        );
    }
    println!();
    println!(
        "proxy TLS relative to the bare TLS terminator: produce {}, consume {}",
        ratio(proxied_tls.produce_mb_s, bare_tls.produce_mb_s),
        ratio(proxied_tls.consume_mb_s, bare_tls.consume_mb_s),
    );
    print_encryption_cost(proxied_tls, tls_enc_result, &args);

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
