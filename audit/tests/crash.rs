//! Crash test: a child process records `sync` events as fast as it can and prints each
//! acknowledged sequence number; the parent kills it with SIGKILL at random moments, restarts
//! it on the same data directory, and finally checks that every acknowledged event is in the
//! log, byte for byte what the child wrote, and that the log verifies.
//!
//! The child is this same test binary, re-executed with `AUDIT_CRASH_CHILD_DIR` set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_audit::sled_store::SledStore;
use portcullis_audit::store::LogStore;
use portcullis_audit::verify::{verify_store, VerifyOptions};
use portcullis_audit::{
    AuditLog, AuditLogConfig, AuditSink, Category, Event, Outcome, Recorded, STORE_DIR,
};

const CHILD_ENV: &str = "AUDIT_CRASH_CHILD_DIR";

/// The child: not a test on its own (returns at once unless re-executed by the parent).
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("AUDIT_CRASH_ROUND").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = AuditLog::open(Path::new(&dir), &AuditLogConfig::default()).unwrap();
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let log = log.clone();
            let out = Arc::clone(&out);
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let id = format!("{round}-{t}-{i}");
                    // Async data-path noise between the sync events.
                    log.emit(
                        Event::new(Category::Authz, "kafka.Fetch", Outcome::Deny)
                            .principal("noise"),
                    );
                    let ev = Event::new(Category::Authn, "sasl.PLAIN", Outcome::Failure)
                        .principal(format!("user-{t}"))
                        .detail("id", id.clone());
                    if let Ok(Recorded::Durable(seq)) = log.record(ev).await {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ACK {seq} {id}").unwrap();
                        o.flush().unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill_9_loses_no_acknowledged_sync_event() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let rounds = 8u64;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "child_writer",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("AUDIT_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&acked);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let (seq, id) = rest.split_once(' ').unwrap();
                    sink.lock()
                        .unwrap()
                        .push((seq.parse().unwrap(), id.to_owned()));
                }
            }
        });
        // Vary the moment of death: 400..1400 ms into the run.
        std::thread::sleep(Duration::from_millis(400 + (round * 137) % 1000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} events",
        acked.len()
    );

    let store = SledStore::open(&dir.path().join(STORE_DIR)).unwrap();
    let mut missing = Vec::new();
    for (seq, id) in &acked {
        match store.entry(*seq).unwrap() {
            Some(bytes) => {
                let ev: Event = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(ev.details.unwrap()["id"], id.as_str(), "entry {seq}");
            }
            None => missing.push(*seq),
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let report = verify_store(&store, &VerifyOptions::default());
    assert!(report.ok(), "{:?}", report.problems);
    eprintln!(
        "crash test: {rounds} SIGKILLs, {} acknowledged sync events all present, {} entries verify",
        acked.len(),
        report.entries
    );
}
