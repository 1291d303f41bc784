//! Times `verify_store` alone, for profiling: fills a log in `DIR` once (the same events as
//! `audit_bench`), then verifies it `RUNS` times and prints each run.
//!
//! Run: `cargo run --release -p portcullis-audit --example verify_probe -- DIR [EVENTS] [RUNS]`
//! (defaults 200,000 events, 5 runs). A second run on the same `DIR` reuses the log.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use portcullis_audit::sled_store::SledStore;
use portcullis_audit::store::LogStore;
use portcullis_audit::verify::{verify_store, VerifyOptions};
use portcullis_audit::{AuditLog, AuditLogConfig, Category, Event, Outcome, STORE_DIR};

fn event(i: u64) -> Event {
    Event::new(Category::Authz, "kafka.Produce", Outcome::Deny)
        .principal(format!("svc-{}", i % 50))
        .roles(["producer"])
        .mechanism("SCRAM-SHA-512")
        .client_addr("10.1.2.3:51234")
        .client_id("rdkafka")
        .listener("plain-9092")
        .resource("topic", format!("orders-{}", i % 20))
        .api(0, "Produce", 9, (i % 100_000) as i32)
        .rule("p, producer, topic:orders-*, write")
        .error_code(29)
        .reason("principal may not write to topic")
}

async fn fill(dir: &std::path::Path, n: u64) {
    let log = AuditLog::open(dir, &AuditLogConfig::default()).unwrap();
    let mut i = 0;
    while i < n {
        match log.try_emit(event(i)) {
            Ok(()) => i += 1,
            Err(_) => tokio::time::sleep(Duration::from_micros(50)).await,
        }
    }
    while log.stats().appended < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    log.shutdown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: verify_probe DIR [EVENTS] [RUNS]"),
    );
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let runs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if !dir.join(STORE_DIR).exists() {
        fill(&dir, n).await;
    }
    let store = SledStore::open(&dir.join(STORE_DIR)).unwrap();
    let entries = store.size().unwrap();
    for _ in 0..runs {
        let t = Instant::now();
        let report = verify_store(&store, &VerifyOptions::default());
        let took = t.elapsed();
        assert!(report.ok(), "{:?}", report.problems);
        println!(
            "verify: {:.0} entries/s ({entries} entries, {} checkpoints, {:.3} s)",
            entries as f64 / took.as_secs_f64(),
            report.checkpoints_checked,
            took.as_secs_f64()
        );
    }
}
