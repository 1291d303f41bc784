//! The audit log under a flood of data-path events (issue 13, item 2): durable events never
//! wait behind data-path ones, and the disk budget drops data-path events (counted, with an
//! alarm event) while durable events are still written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portcullis_audit::read::{query, QueryFilter};
use portcullis_audit::{AuditLog, AuditLogConfig, AuditSink, Category, Event, Outcome, Recorded};

fn noise(i: u64) -> Event {
    Event::new(Category::Authz, "kafka.Metadata", Outcome::Deny)
        .principal("User:bob")
        .resource("topic", format!("denied-{i}"))
}

/// Events queued before the durable one.
const FLOOD: u64 = 400_000;

/// A full data-path queue does not delay a `sync` event: it has its own queue, emptied
/// into every batch first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_events_do_not_wait_behind_a_full_data_path_queue() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditLogConfig {
        queue_capacity: FLOOD as usize,
        max_batch: 1_024,
        ..AuditLogConfig::default()
    };
    let log = AuditLog::open(dir.path(), &config).unwrap();
    for i in 0..FLOOD {
        log.emit(noise(i));
    }
    let started = Instant::now();
    let recorded = log
        .record(Event::new(Category::Authn, "sasl.PLAIN", Outcome::Success).principal("alice"))
        .await
        .unwrap();
    let took = started.elapsed();
    let appended = log.stats().appended;
    assert!(matches!(recorded, Recorded::Durable(_)), "{recorded:?}");
    assert!(
        appended < FLOOD * 9 / 10,
        "the login waited for {appended} data-path events to be written first ({took:?})"
    );
    assert!(took < Duration::from_secs(1), "login event took {took:?}");
    log.shutdown().await;
}

/// Over its disk budget, the log drops data-path events (counted, `audit.disk_budget`
/// written once) and still writes durable ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_disk_budget_only_durable_events_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditLogConfig {
        max_disk_bytes: 1,
        checkpoint_interval_ms: 50,
        ..AuditLogConfig::default()
    };
    let log = AuditLog::open(dir.path(), &config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.stats().over_disk_budget {
        assert!(Instant::now() < deadline, "disk budget never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped_before = log.stats().dropped;
    for i in 0..100 {
        log.emit(noise(i));
    }
    assert_eq!(
        log.stats().dropped - dropped_before,
        100,
        "data-path events not dropped"
    );
    let recorded = log
        .record(Event::new(Category::Authn, "sasl.PLAIN", Outcome::Success).principal("alice"))
        .await
        .unwrap();
    assert!(matches!(recorded, Recorded::Durable(_)), "{recorded:?}");
    let events = query(log.store(), &QueryFilter::default()).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "audit.disk_budget")
            .count(),
        1,
        "{actions:?}"
    );
    assert!(actions.contains(&"sasl.PLAIN"), "{actions:?}");
    assert!(!actions.contains(&"kafka.Metadata"), "{actions:?}");
    assert!(log.stats().disk_bytes > 0);
    log.shutdown().await;
}
