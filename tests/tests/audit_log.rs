//! The tamper-evident audit log on a real proxy: real clients produce events that
//! `portcullis audit query` finds (against the running proxy and on its stopped data
//! directory); tampering with a log the proxy wrote is detected and named by
//! `portcullis audit verify`; and SIGKILL under authentication load loses no event whose
//! request was answered under `sync` durability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use portcullis_audit::checkpoint::SignedCheckpoint;
use portcullis_audit::note::Signer;
use portcullis_audit::sled_store::SledStore;
use portcullis_audit::store::LogStore;
use portcullis_tests::audit_proxy::{audit_cli, copy_dir, AuditProxy};
use portcullis_tests::process::{Finished, ManagedChild};
use portcullis_tests::proxy::proxy_binary;
use portcullis_tests::sasl_login::{login, LoginAnswer};
use portcullis_tests::{http, scenarios, with_test_timeout, Broker, Endpoint};
use serde_json::Value;

fn ok(f: &Finished, what: &str) -> String {
    assert!(
        f.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        f.status,
        f.stdout,
        f.stderr
    );
    f.stdout.clone()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn logins(proxy: &AuditProxy, n: usize) {
    for i in 0..n {
        let (user, password) = if i % 3 == 0 {
            ("bob", "wrong")
        } else {
            ("alice", "alice-secret")
        };
        login(proxy.bootstrap(), "PLAIN", user, password).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// End to end: real clients, events queried back with the real CLI.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_produce_the_expected_events_and_the_cli_finds_them() {
    let broker = Broker::start();
    let mut proxy = AuditProxy::new(&broker, "checkpoint_interval_ms = 200");
    proxy.start();
    let admin = proxy.admin_url();

    // librdkafka with SCRAM-SHA-512: produce and consume through the proxy.
    let ep = Endpoint::plaintext(proxy.bootstrap().to_string()).with_password(
        "SCRAM-SHA-512",
        "alice",
        "alice-secret",
    );
    with_test_timeout(
        "produce/consume",
        scenarios::produce_consume_codec(&ep, "none"),
    )
    .await;
    // A refused login, seen from the client side.
    let (bob_addr, answer) = login(proxy.bootstrap(), "PLAIN", "bob", "wrong").unwrap();
    assert!(
        matches!(answer, LoginAnswer::Failure(code, _) if code == ResponseError::SaslAuthenticationFailed.code()),
        "{answer:?}"
    );

    // The running proxy holds the data directory: --admin, and --config finding it locked.
    let alice = json_lines(&ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "query",
            "--principal",
            "User:alice",
            "--category",
            "authn",
            "--output",
            "json",
        ]),
        "query alice",
    ));
    assert!(!alice.is_empty(), "no authn events for alice");
    for e in &alice {
        assert_eq!(e["outcome"], "success", "{e}");
        assert_eq!(e["mechanism"], "SCRAM-SHA-512", "{e}");
        assert_eq!(e["roles"], serde_json::json!(["producers"]), "{e}");
    }
    let config = proxy.config().to_string_lossy().into_owned();
    let via_config = audit_cli(&[
        "--config",
        &config,
        "query",
        "--category",
        "authn",
        "--outcome",
        "failure",
        "--client-addr",
        &bob_addr.to_string(),
        "--output",
        "json",
    ]);
    assert!(
        via_config.stderr.contains("running proxy"),
        "{}",
        via_config.stderr
    );
    let bob = json_lines(&ok(&via_config, "query failures via --config"));
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert_eq!(bob[0]["mechanism"], "PLAIN");
    assert_eq!(bob[0]["details"]["attempted_user"], "bob");
    assert!(bob[0]["reason"]
        .as_str()
        .unwrap()
        .contains("bad_credentials"));

    let table = ok(
        &audit_cli(&["--admin", &admin, "query", "--action", "proxy.*"]),
        "query table",
    );
    assert!(
        table.contains("proxy.start") && table.contains("config"),
        "{table}"
    );
    let connections = json_lines(&ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "query",
            "--category",
            "connection",
            "--output",
            "json",
        ]),
        "connections",
    ));
    assert!(connections.iter().any(|e| e["action"] == "connection.open"));
    let newest = json_lines(&ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "query",
            "--newest-first",
            "--limit",
            "1",
            "--output",
            "json",
        ]),
        "newest",
    ));
    let all = json_lines(&ok(
        &audit_cli(&[
            "--admin", &admin, "query", "--limit", "100000", "--output", "json",
        ]),
        "all",
    ));
    assert_eq!(newest.len(), 1);
    let max_seq = all.iter().filter_map(|e| e["seq"].as_u64()).max().unwrap();
    assert!(newest[0]["seq"].as_u64().unwrap() >= max_seq);
    assert!(json_lines(&ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "query",
            "--since",
            "2999-01-01",
            "--output",
            "json"
        ]),
        "future",
    ))
    .is_empty());
    let tail = json_lines(&ok(
        &audit_cli(&["--admin", &admin, "tail", "-n", "3"]),
        "tail",
    ));
    assert_eq!(tail.len(), 3);
    // tail -f keeps following the running proxy.
    let follow_log = proxy.scratch().join("tail-f.log");
    let mut follow = ManagedChild::spawn(
        "portcullis audit tail -f",
        Command::new(proxy_binary()).args(["audit", "--admin", &admin, "tail", "-n", "1", "-f"]),
        &follow_log,
    );
    std::thread::sleep(Duration::from_millis(700));
    let (later, _) = login(proxy.bootstrap(), "PLAIN", "bob", "wrong").unwrap();
    let needle = format!("\"client_addr\":\"{later}\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !follow.log().contains(&needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "tail -f did not show the new event:\n{}",
            follow.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    follow.kill();

    // Keys, checkpoints, verification, proofs and exports through the admin API.
    let key = ok(&audit_cli(&["--admin", &admin, "pubkey"]), "pubkey")
        .trim()
        .to_string();
    let cp = ok(&audit_cli(&["--admin", &admin, "checkpoint"]), "checkpoint");
    assert!(cp.starts_with("portcullis-audit/"), "{cp}");
    // verify is a POST: it needs the admin token, which --config finds (the proxy created it).
    let verified = ok(
        &audit_cli(&[
            "--admin", &admin, "--config", &config, "verify", "--key", &key,
        ]),
        "verify",
    );
    assert!(verified.contains("OK: the log verifies"), "{verified}");
    let scratch = proxy.scratch().to_path_buf();
    let proof = scratch.join("proof.json");
    ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "prove",
            "1",
            "--out",
            &proof.to_string_lossy(),
        ]),
        "prove",
    );
    ok(
        &audit_cli(&["verify-proof", &proof.to_string_lossy(), "--key", &key]),
        "verify-proof",
    );
    let export = scratch.join("export");
    ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "export",
            "--out",
            &export.to_string_lossy(),
        ]),
        "export",
    );
    ok(
        &audit_cli(&["verify-export", &export.to_string_lossy(), "--key", &key]),
        "verify-export",
    );

    // An admin action is recorded before it runs.
    let http::Response {
        status,
        body: new_key,
    } = http::post(proxy.admin(), "/audit/rotate-key", Duration::from_secs(30)).unwrap();
    assert_eq!(
        status, 401,
        "a mutating request without the token: {new_key}"
    );
    let token = std::fs::read_to_string(proxy.data_dir().join("admin.token")).unwrap();
    let http::Response {
        status,
        body: new_key,
    } = http::post_with_token(
        proxy.admin(),
        "/audit/rotate-key",
        token.trim(),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status, 200, "{new_key}");
    let admin_events = json_lines(&ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "query",
            "--category",
            "admin",
            "--output",
            "json",
        ]),
        "admin events",
    ));
    assert!(
        admin_events
            .iter()
            .any(|e| e["action"] == "admin.audit.rotate-key" && e["client_addr"].is_string()),
        "{admin_events:?}"
    );

    // Stopped: the same CLI on the data directory, including proxy.stop.
    proxy.stop();
    let data = proxy.data_dir().to_string_lossy().into_owned();
    let stops = json_lines(&ok(
        &audit_cli(&[
            "--data-dir",
            &data,
            "query",
            "--action",
            "proxy.stop",
            "--output",
            "json",
        ]),
        "offline query",
    ));
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0]["category"], "config");
    let verified = ok(
        &audit_cli(&["--data-dir", &data, "verify", "--key", &key]),
        "offline verify",
    );
    assert!(verified.contains("OK: the log verifies"), "{verified}");
}

// ---------------------------------------------------------------------------------------
// Tampering.

/// `portcullis audit verify` on `dir`: must fail (exit 1) and name `needle`.
fn assert_detected(dir: &Path, extra: &[&str], needle: &str) -> String {
    let data = dir.to_string_lossy().into_owned();
    let mut args = vec!["--data-dir", data.as_str(), "verify"];
    args.extend_from_slice(extra);
    let f = audit_cli(&args);
    assert_eq!(
        f.status.code(),
        Some(1),
        "verify should fail naming {needle}:\n{}\n{}",
        f.stdout,
        f.stderr
    );
    assert!(f.stdout.contains(needle), "no {needle:?} in:\n{}", f.stdout);
    f.stdout
}

fn tamper(dir: &Path, f: impl FnOnce(&SledStore)) {
    let store = SledStore::open(&dir.join("audit-log")).unwrap();
    f(&store);
    store.raw_entries().flush().unwrap();
    store.raw_checkpoints().flush().unwrap();
}

fn entry_count(store: &SledStore) -> u64 {
    store.size().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_a_log_written_by_the_proxy_is_detected_and_named() {
    let broker = Broker::start();
    let scratch = tempfile::tempdir().unwrap();
    let anchor = scratch.path().join("anchor");
    let mut proxy = AuditProxy::new(
        &broker,
        &format!(
            "origin = \"portcullis.test/tamper\"\ncheckpoint_interval_ms = 100\nanchor_file = {}",
            serde_json::to_string(&anchor.to_string_lossy()).unwrap()
        ),
    );
    let data = proxy.data_dir().to_string_lossy().into_owned();
    proxy.start();
    logins(&proxy, 12);
    proxy.stop();
    let key = ok(&audit_cli(&["--data-dir", &data, "pubkey"]), "pubkey")
        .trim()
        .to_string();
    let old_copy = scratch.path().join("old-copy");
    copy_dir(proxy.data_dir(), &old_copy);

    proxy.start();
    logins(&proxy, 12);
    proxy.stop();
    let saved = scratch.path().join("saved-checkpoint");
    std::fs::write(
        &saved,
        ok(
            &audit_cli(&["--data-dir", &data, "checkpoint"]),
            "checkpoint",
        ),
    )
    .unwrap();
    let saved_s = saved.to_string_lossy().into_owned();
    let anchor_s = anchor.to_string_lossy().into_owned();
    let pristine = ok(
        &audit_cli(&[
            "--data-dir",
            &data,
            "verify",
            "--key",
            &key,
            "--since-checkpoint",
            &saved_s,
            "--anchor",
            &anchor_s,
        ]),
        "pristine verify",
    );
    assert!(pristine.contains("OK: the log verifies"), "{pristine}");

    let copy = |name: &str| {
        let dir = scratch.path().join(name);
        copy_dir(proxy.data_dir(), &dir);
        dir
    };
    let with_key = ["--key", key.as_str()];

    // One flipped byte inside a stored entry (still valid JSON).
    let dir = copy("flipped");
    tamper(&dir, |s| {
        let mut v = s.entry(5).unwrap().unwrap();
        let at = v.windows(12).position(|w| w == b"\"event_id\":\"").unwrap() + 14;
        v[at] ^= 1;
        s.tamper_entry(5, Some(&v)).unwrap();
    });
    assert_detected(&dir, &with_key, "ALTERED: entry 5");

    // A deleted entry.
    let dir = copy("deleted");
    tamper(&dir, |s| {
        s.tamper_entry(7, None).unwrap();
    });
    assert_detected(&dir, &with_key, "DELETED: entry 7");

    // The tail cut off.
    let dir = copy("truncated");
    tamper(&dir, |s| {
        let n = entry_count(s);
        for seq in n - 4..n {
            s.tamper_entry(seq, None).unwrap();
        }
    });
    assert_detected(&dir, &with_key, "TRUNCATED");

    // An older copy restored: caught by the saved checkpoint and by the anchor file.
    assert_detected(
        &old_copy,
        &["--key", &key, "--since-checkpoint", &saved_s],
        "ROLLBACK",
    );
    assert_detected(
        &old_copy,
        &["--key", &key, "--anchor", &anchor_s],
        "ROLLBACK",
    );

    // A checkpoint signed with another key under the log's name.
    let dir = copy("forged");
    tamper(&dir, |s| {
        let (size, note) = s
            .raw_checkpoints()
            .iter()
            .next_back()
            .map(|r| r.unwrap())
            .unwrap();
        let cp = SignedCheckpoint::parse(std::str::from_utf8(&note).unwrap()).unwrap();
        let forger = Signer::generate(&cp.checkpoint.origin).unwrap();
        s.raw_checkpoints()
            .insert(size, cp.checkpoint.sign(&forger).into_bytes())
            .unwrap();
    });
    assert_detected(&dir, &with_key, "FORGED");

    // And the proxy itself refuses to run on the rolled-back copy (anchor file).
    std::fs::remove_dir_all(proxy.data_dir()).unwrap();
    copy_dir(&old_copy, proxy.data_dir());
    let refused = proxy
        .try_start()
        .expect_err("proxy started on a rolled-back log");
    assert!(refused.contains("anchor"), "{refused}");
}

/// `portcullis audit --config CFG verify --key KEY --anchor-topic TOPIC`.
fn verify_against_topic(config: &Path, key: &str, topic: &str) -> Finished {
    let config = config.to_string_lossy().into_owned();
    audit_cli(&[
        "--config",
        &config,
        "verify",
        "--key",
        key,
        "--anchor-topic",
        topic,
    ])
}

/// How many checkpoints of this log `verify --anchor-topic` says the topic holds.
fn anchored_count(verify_output: &str) -> usize {
    verify_output
        .lines()
        .find_map(|l| l.split_once(": ")?.1.split_once(" checkpoints of this log"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no anchored checkpoint count in:\n{verify_output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_caught_by_the_kafka_anchor_topic() {
    const TOPIC: &str = "__portcullis_audit_checkpoints";
    let broker = Broker::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut proxy = AuditProxy::new(
        &broker,
        &format!(
            "origin = \"portcullis.test/anchored\"\ncheckpoint_interval_ms = 100\nanchor_topic = \"{TOPIC}\""
        ),
    );
    let token_file = proxy.with_admin_token();
    let data = proxy.data_dir().to_string_lossy().into_owned();
    proxy.start();
    logins(&proxy, 6);
    proxy.stop();
    let key = ok(&audit_cli(&["--data-dir", &data, "pubkey"]), "pubkey")
        .trim()
        .to_string();
    let first = ok(&verify_against_topic(proxy.config(), &key, TOPIC), "verify");
    let anchored_first = anchored_count(&first);
    assert!(anchored_first >= 1, "{first}");
    let old_copy = scratch.path().join("old-copy");
    copy_dir(proxy.data_dir(), &old_copy);

    proxy.start();
    logins(&proxy, 6);
    // Against the running proxy (its data directory is locked: the admin API verifies, with
    // the configuration's admin token).
    let live = ok(
        &verify_against_topic(proxy.config(), &key, TOPIC),
        "live verify",
    );
    assert!(live.contains("OK: the log verifies"), "{live}");
    let admin = proxy.admin_url();
    let refused = audit_cli(&["--admin", &admin, "checkpoint"]);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stdout);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let token = token_file.to_string_lossy().into_owned();
    ok(
        &audit_cli(&[
            "--admin",
            &admin,
            "--admin-token-file",
            &token,
            "checkpoint",
        ]),
        "checkpoint with the token",
    );
    proxy.stop();
    let second = ok(&verify_against_topic(proxy.config(), &key, TOPIC), "verify");
    assert!(second.contains("OK: the log verifies"), "{second}");
    assert!(anchored_count(&second) > anchored_first, "{second}");

    // The older copy restored in place: verify names the rollback, the proxy refuses it.
    std::fs::remove_dir_all(proxy.data_dir()).unwrap();
    copy_dir(&old_copy, proxy.data_dir());
    let rolled = verify_against_topic(proxy.config(), &key, TOPIC);
    assert_eq!(
        rolled.status.code(),
        Some(1),
        "{}\n{}",
        rolled.stdout,
        rolled.stderr
    );
    assert!(rolled.stdout.contains("ROLLBACK"), "{}", rolled.stdout);
    let refused = proxy
        .try_start()
        .expect_err("proxy started on a rolled-back log");
    assert!(
        refused.contains(&format!("anchor topic {TOPIC}")),
        "{refused}"
    );
    // Nor can the whole data directory be deleted to start over: the origin is fixed by the
    // configuration, and the topic holds a larger checkpoint of it.
    std::fs::remove_dir_all(proxy.data_dir()).unwrap();
    let refused = proxy
        .try_start()
        .expect_err("proxy started over on a deleted log");
    assert!(
        refused.contains(&format!("anchor topic {TOPIC}")),
        "{refused}"
    );

    // Without --config the CLI cannot reach the cluster and says so.
    let no_config = audit_cli(&["--data-dir", &data, "verify", "--anchor-topic", TOPIC]);
    assert_eq!(no_config.status.code(), Some(2));
    assert!(
        no_config.stderr.contains("--config"),
        "{}",
        no_config.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Crash: SIGKILL under authentication load.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Answered {
    client_addr: String,
    outcome: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_authentication_load_loses_no_answered_sync_event() {
    let broker = Broker::start();
    let mut proxy = AuditProxy::new(&broker, "checkpoint_interval_ms = 200");
    let data = proxy.data_dir().to_string_lossy().into_owned();
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    // Many short rounds with many clients in flight: each kill is a chance to catch an
    // answered event that was not yet durable (an async emit loses one about every other run
    // of four rounds; eight rounds of eight clients make that a near certainty).
    for round in 0..8u64 {
        proxy.start();
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..8u64 {
            let addr = proxy.bootstrap().to_string();
            let stop = stop.clone();
            let answered = answered.clone();
            workers.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let mechanism = if (i + w) % 5 == 0 {
                        "SCRAM-SHA-256"
                    } else {
                        "PLAIN"
                    };
                    let good = (i + w + round) % 3 != 0;
                    let password = if good { "alice-secret" } else { "wrong" };
                    match login(&addr, mechanism, "alice", password) {
                        Ok((local, answer)) => {
                            let outcome = match answer {
                                LoginAnswer::Success => "success",
                                LoginAnswer::Failure(code, _)
                                    if code == ResponseError::SaslAuthenticationFailed.code() =>
                                {
                                    "failure"
                                }
                                other => panic!("unexpected answer {other:?}"),
                            };
                            assert_eq!(outcome == "success", good);
                            answered.lock().unwrap().push(Answered {
                                client_addr: local.to_string(),
                                outcome,
                            });
                        }
                        // The proxy was killed mid-exchange: nothing was answered.
                        Err(_) => break,
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(600 + (round % 4) * 200));
        proxy.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.iter().filter(|a| a.outcome == "success").count() > 20
            && answered.iter().any(|a| a.outcome == "failure"),
        "too little load: {} answered",
        answered.len()
    );

    // The next start repairs and seals what the last kill left; a clean stop signs the end.
    proxy.start();
    proxy.stop();
    let events = json_lines(&ok(
        &audit_cli(&[
            "--data-dir",
            &data,
            "query",
            "--category",
            "authn",
            "--limit",
            "10000000",
            "--output",
            "json",
        ]),
        "query authn",
    ));
    let logged: HashSet<Answered> = events
        .iter()
        .filter_map(|e| {
            let outcome = match e["outcome"].as_str()? {
                "success" => "success",
                "failure" => "failure",
                _ => return None,
            };
            Some(Answered {
                client_addr: e["client_addr"].as_str()?.to_string(),
                outcome,
            })
        })
        .collect();
    let missing: Vec<&Answered> = answered.iter().filter(|a| !logged.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered authentications have no audit event, e.g. {:?}",
        missing.len(),
        answered.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let key = ok(
        &audit_cli(&["--data-dir", &data, "pubkey", "--all"]),
        "pubkey",
    );
    let first_key = key.lines().next().unwrap().to_string();
    let verified = ok(
        &audit_cli(&["--data-dir", &data, "verify", "--key", &first_key]),
        "verify after crashes",
    );
    assert!(verified.contains("OK: the log verifies"), "{verified}");
}
