//! The audit anchor topic at start-up: a note written there by someone else (forged) is
//! reported and ignored, not obeyed (it must not be a way to stop the proxy), while a
//! genuine anchored checkpoint still catches a rolled-back log; and a topic that lost this
//! log's checkpoints is an alarm, not silence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portcullis_audit::checkpoint::Checkpoint;
use portcullis_audit::note::Signer;
use portcullis_tests::audit_proxy::{copy_dir, AuditProxy};
use portcullis_tests::hostile::{metric_sum, metrics_text};
use portcullis_tests::sasl_login::login;
use portcullis_tests::{http, kafka, Broker};
use rdkafka::producer::FutureRecord;
use serde_json::Value;

const TOPIC: &str = "__portcullis_audit_checkpoints";
const ORIGIN: &str = "portcullis.test/anchor-checks";

fn anchored_proxy(broker: &Broker) -> AuditProxy {
    AuditProxy::new(
        broker,
        &format!("origin = \"{ORIGIN}\"\ncheckpoint_interval_ms = 100\nanchor_topic = \"{TOPIC}\""),
    )
}

fn logins(proxy: &AuditProxy, n: usize) {
    for _ in 0..n {
        login(proxy.bootstrap(), "PLAIN", "alice", "alice-secret").unwrap();
    }
}

fn audit_events(proxy: &AuditProxy) -> Vec<Value> {
    let r = http::get(
        proxy.admin(),
        "/audit/tail?n=10000",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200, "GET /audit/tail: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn wait_for_action(proxy: &AuditProxy, action: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = audit_events(proxy)
            .into_iter()
            .find(|e| e["action"] == action)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {action} event; proxy output:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alarms(proxy: &AuditProxy, kind: &str) -> f64 {
    metric_sum(
        &metrics_text(proxy.admin()),
        "portcullis_audit_anchor_alarms_total",
        &format!("kind=\"{kind}\""),
    )
}

/// A checkpoint note claiming `ORIGIN` at `size`, signed by a key the log never had.
fn forged_note(size: u64) -> String {
    let forger = Signer::generate(ORIGIN).unwrap();
    Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: [9; 32],
    }
    .sign(&forger)
}

/// Writes `note` to the anchor topic directly at the broker, as anyone with write access to
/// the topic could.
async fn write_to_anchor_topic(broker: &Broker, note: &str) {
    let producer = kafka::producer(&broker.endpoint(), &[]);
    producer
        .send(
            FutureRecord::to(TOPIC).key(ORIGIN).payload(note),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce the forged note to the broker: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_in_the_anchor_topic_is_reported_not_obeyed() {
    let broker = Broker::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut proxy = anchored_proxy(&broker);
    proxy.start();
    logins(&proxy, 3);
    proxy.stop();
    let old_copy = scratch.path().join("old");
    copy_dir(proxy.data_dir(), &old_copy);
    proxy.start();
    logins(&proxy, 6);
    proxy.stop();
    let current = scratch.path().join("current");
    copy_dir(proxy.data_dir(), &current);

    // Someone with write access to the topic appends a note claiming a huge log.
    write_to_anchor_topic(&broker, &forged_note(1_000_000)).await;

    // The forged note does not hide the genuine checkpoints behind it: a rolled-back copy
    // is still refused.
    std::fs::remove_dir_all(proxy.data_dir()).unwrap();
    copy_dir(&old_copy, proxy.data_dir());
    let refused = proxy
        .try_start()
        .expect_err("the proxy started on a rolled-back log");
    assert!(
        refused.contains(&format!("anchor topic {TOPIC}")),
        "{refused}"
    );
    assert!(
        !refused.contains("size 1000000"),
        "the forged note was trusted: {refused}"
    );

    // The genuine log starts: the forged note is reported, audited and counted.
    std::fs::remove_dir_all(proxy.data_dir()).unwrap();
    copy_dir(&current, proxy.data_dir());
    if let Err(e) = proxy.try_start() {
        panic!("a forged note in the anchor topic stopped the proxy from starting: {e}");
    }
    let event = wait_for_action(&proxy, "audit.anchor.unverified");
    assert_eq!(event["category"], "audit-system", "{event}");
    assert_eq!(event["outcome"], "failure", "{event}");
    assert_eq!(event["details"]["notes"], 1, "{event}");
    assert_eq!(
        event["details"]["claimed_sizes"],
        serde_json::json!([1_000_000]),
        "{event}"
    );
    assert_eq!(alarms(&proxy, "unverified"), 1.0);
    assert_eq!(alarms(&proxy, "missing"), 0.0);
    // It keeps anchoring and serving.
    logins(&proxy, 2);
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_topic_that_lost_this_logs_checkpoints_is_an_alarm() {
    let first = Broker::start();
    let mut proxy = anchored_proxy(&first);
    proxy.start();
    logins(&proxy, 3);
    // A first start on a fresh topic is no alarm.
    assert!(
        !audit_events(&proxy).iter().any(|e| e["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("audit.anchor."))),
        "an alarm on a fresh topic"
    );
    assert_eq!(alarms(&proxy, "missing"), 0.0);
    proxy.stop();

    // The cluster loses the topic (here: the proxy now faces a cluster without it, as after
    // the topic was deleted or the cluster rebuilt).
    let second = Broker::start();
    let config = std::fs::read_to_string(proxy.config()).unwrap();
    assert!(config.contains(&first.bootstrap()));
    std::fs::write(
        proxy.config(),
        config.replace(&first.bootstrap(), &second.bootstrap()),
    )
    .unwrap();
    if let Err(e) = proxy.try_start() {
        panic!("the proxy did not start on a cluster without its anchor topic: {e}");
    }
    let event = wait_for_action(&proxy, "audit.anchor.missing");
    assert_eq!(event["category"], "audit-system", "{event}");
    assert_eq!(event["details"]["topic"], TOPIC, "{event}");
    assert_eq!(event["details"]["created"], true, "{event}");
    assert_eq!(alarms(&proxy, "missing"), 1.0);
    let output = std::fs::read_to_string(proxy.scratch().join("portcullis-2.log")).unwrap();
    assert!(
        output.contains("ERROR") && output.contains("rollback detection has lost its reference"),
        "no error in the proxy's output:\n{output}"
    );
    proxy.stop();
}
