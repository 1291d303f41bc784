//! Key administration end to end, against the real proxy and broker: `portcullis keys`
//! through the admin API, two proxies sharing the registry topic, `portcullis decrypt`, and
//! kill -9 in the middle of rotate, rewrap and shred.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_tests::encryption::{marked_records, random_marker, KeyDir};
use portcullis_tests::kafka::{self, Consumed, Rec};
use portcullis_tests::process::run_with_timeout;
use portcullis_tests::proxy::proxy_binary;
use portcullis_tests::rdkafka::error::KafkaError;
use portcullis_tests::rdkafka::types::RDKafkaErrorCode;
use portcullis_tests::{unique_name, with_timeout, Broker, Proxy, ProxyOptions};
use serde_json::Value;

const REGISTRY_TOPIC: &str = "__portcullis_keys";

fn proxy(broker: &Broker, keys: &KeyDir, extra: &str) -> Proxy {
    Proxy::start_with(
        broker,
        ProxyOptions {
            extra_toml: keys.proxy_toml(&[], &["enc."], extra),
            ..ProxyOptions::default()
        },
    )
}

/// Runs `portcullis <args>` and returns (success, stdout, stderr).
fn portcullis(args: &[&str], dir: &Path) -> (bool, String, String) {
    let done = run_with_timeout(
        Command::new(proxy_binary()).args(args),
        Duration::from_secs(60),
        dir,
    );
    (done.status.success(), done.stdout, done.stderr)
}

/// `portcullis keys <command> --topic <topic>` through `proxy`'s admin API; its JSON.
fn keys_via_admin(proxy: &Proxy, command: &str, topic: Option<&str>) -> Value {
    let url = format!("http://{}", proxy.admin_addr());
    let token = proxy.audit_dir().join("admin.token");
    let mut args = vec!["keys", command, "--admin", &url, "--admin-token-file"];
    let token = token.to_string_lossy().into_owned();
    args.push(&token);
    if let Some(t) = topic {
        args.extend(["--topic", t]);
    }
    let (ok, out, err) = portcullis(&args, proxy.dir());
    assert!(ok, "portcullis {args:?} failed:\n{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn produce(proxy: &Proxy, topic: &str, recs: &[Rec]) {
    let p = kafka::producer(&proxy.endpoint(), &[]);
    kafka::produce_one_by_one(&p.inner, topic, recs).await;
}

/// The first `n` records of `topic` read through `proxy` (a fresh consumer each time, so the
/// same topic can be read again after a key change).
async fn read_through(proxy: &Proxy, topic: &str, n: usize) -> Vec<Rec> {
    let c = kafka::consumer(&proxy.endpoint(), &unique_name("reader"), &[]);
    kafka::assign(
        &c.inner,
        topic,
        1,
        portcullis_tests::rdkafka::Offset::Beginning,
    );
    kafka::consume_n(&c.inner, n, Duration::from_secs(60))
        .await
        .into_iter()
        .map(|c: Consumed| c.rec)
        .collect()
}

/// The records as sent, with partition 0 (what `read_back` returns).
fn sent(recs: &[Rec]) -> Vec<Rec> {
    recs.iter()
        .cloned()
        .map(|mut r| {
            r.partition = 0;
            r
        })
        .collect()
}

/// The first error a consumer of `topic` (partition 0, from the beginning) gets through
/// `proxy`; panics if it gets a record instead, or nothing within 30 s.
async fn first_consumer_error(proxy: &Proxy, topic: &str) -> KafkaError {
    let c = kafka::consumer(&proxy.endpoint(), &unique_name("reader"), &[]);
    kafka::assign(
        &c.inner,
        topic,
        1,
        portcullis_tests::rdkafka::Offset::Beginning,
    );
    match tokio::time::timeout(Duration::from_secs(30), c.inner.recv()).await {
        Ok(Err(e)) => e,
        Ok(Ok(m)) => panic!(
            "read a record of a shredded topic at offset {}",
            portcullis_tests::rdkafka::message::Message::offset(&m)
        ),
        Err(_) => panic!("no error within 30 s reading a shredded topic"),
    }
}

fn same_payloads(got: &[Rec], want: &[Rec]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.key, w.key, "record {i}: key");
        assert_eq!(g.value, w.value, "record {i}: value");
        assert_eq!(g.headers, w.headers, "record {i}: headers");
    }
}

fn records(n: usize, seed: u64) -> Vec<Rec> {
    let mut recs = marked_records(n, 1, seed, &random_marker());
    for r in &mut recs {
        r.partition = 0;
        r.timestamp = None;
    }
    recs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_through_the_admin_api_rotate_and_are_audited() {
    with_timeout(
        Duration::from_secs(240),
        "keys_commands_through_the_admin_api_rotate_and_are_audited",
        async {
            let broker = Broker::start();
            let keys = KeyDir::new();
            let proxy = proxy(&broker, &keys, "");
            let topic = unique_name("enc.rot");
            kafka::create_topic(&proxy.endpoint(), &topic, 1).await;
            let before = records(6, 1);
            produce(&proxy, &topic, &before).await;

            let listed = keys_via_admin(&proxy, "list", None);
            assert_eq!(listed["topics"][0]["topic"], topic.as_str(), "{listed}");
            let rotated = keys_via_admin(&proxy, "rotate", Some(&topic));
            assert_eq!(rotated["new_kek_version"], 2, "{rotated}");
            assert_eq!(
                rotated["destroyed_kek_versions"],
                serde_json::json!([1]),
                "{rotated}"
            );
            let status = keys_via_admin(&proxy, "status", Some(&topic));
            assert_eq!(
                status["kek_versions"],
                serde_json::json!([2]),
                "old version gone: {status}"
            );

            let after = records(6, 2);
            produce(&proxy, &topic, &after).await;
            let all: Vec<Rec> = sent(&before).into_iter().chain(sent(&after)).collect();
            same_payloads(&read_through(&proxy, &topic, all.len()).await, &all);

            let retired = keys_via_admin(&proxy, "retire", Some(&topic));
            assert_eq!(
                retired["retired_deks"].as_array().unwrap().len(),
                1,
                "{retired}"
            );

            // Shred: the topic's partition fails with CORRUPT_MESSAGE, another topic reads.
            let other = unique_name("enc.other");
            kafka::create_topic(&proxy.endpoint(), &other, 1).await;
            let other_recs = records(3, 7);
            produce(&proxy, &other, &other_recs).await;
            let shredded = keys_via_admin(&proxy, "shred", Some(&topic));
            assert!(
                shredded["destroyed_deks"].as_u64().unwrap() >= 1,
                "{shredded}"
            );
            let error = first_consumer_error(&proxy, &topic).await;
            assert!(
                matches!(
                    error,
                    KafkaError::MessageConsumption(RDKafkaErrorCode::InvalidMessage)
                ),
                "reading a shredded topic: {error:?}"
            );
            same_payloads(&read_through(&proxy, &other, 3).await, &sent(&other_recs));

            // Without the token the admin API refuses, reads included.
            let url = format!("http://{}", proxy.admin_addr());
            let (ok, _, err) = portcullis(
                &[
                    "keys",
                    "list",
                    "--admin",
                    &url,
                    "--admin-token-file",
                    "/dev/null",
                ],
                proxy.dir(),
            );
            assert!(!ok && err.contains("401"), "{err}");

            let events = proxy.audit_events();
            let key_events: Vec<&Value> = events
                .iter()
                .filter(|e| e["action"] == "key.rotate" || e["action"] == "key.retire")
                .collect();
            assert_eq!(
                key_events.len(),
                4,
                "request + outcome for each: {key_events:?}"
            );
            assert!(
                key_events
                    .iter()
                    .all(|e| e["resource"]["name"] == topic.as_str()
                        || e.to_string().contains(&topic))
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_the_registry_topic_and_a_shred_reaches_both() {
    with_timeout(
        Duration::from_secs(300),
        "two_proxies_share_the_registry_topic_and_a_shred_reaches_both",
        async {
            let broker = Broker::start();
            let keys = KeyDir::new();
            let fleet = format!("registry_topic = {REGISTRY_TOPIC:?}\nregistry_refresh_ms = 500");
            let first = proxy(&broker, &keys, &fleet);
            let second = proxy(&broker, &keys, &fleet);
            let (a, b) = (unique_name("enc.fleet-a"), unique_name("enc.fleet-b"));
            for t in [&a, &b] {
                kafka::create_topic(&first.endpoint(), t, 1).await;
            }
            let recs_a = records(5, 3);
            let recs_b = records(5, 4);
            produce(&first, &a, &recs_a).await;
            produce(&first, &b, &recs_b).await;
            same_payloads(&read_through(&second, &a, 5).await, &sent(&recs_a));

            // Rotation through the first proxy; the second keeps reading and writing.
            keys_via_admin(&first, "rotate", Some(&a));
            let more = records(3, 5);
            produce(&second, &a, &more).await;
            let all: Vec<Rec> = sent(&recs_a).into_iter().chain(sent(&more)).collect();
            same_payloads(&read_through(&first, &a, all.len()).await, &all);

            // `portcullis decrypt` reads the cluster with the shared registry while both run.
            let (ok, out, err) = portcullis(
                &[
                    "decrypt",
                    "--config",
                    &first.config_path().to_string_lossy(),
                    "--topic",
                    &b,
                ],
                first.dir(),
            );
            assert!(ok, "decrypt failed:\n{out}\n{err}");
            let lines: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), recs_b.len(), "{out}");
            assert!(lines.iter().all(|l| l["encrypted"] == true), "{out}");

            // Shred through the second proxy: nothing of `a` decrypts any more, `b` does.
            let shredded = keys_via_admin(&second, "shred", Some(&a));
            assert!(
                shredded["destroyed_deks"].as_u64().unwrap() >= 1,
                "{shredded}"
            );
            let (ok, out, _) = portcullis(
                &[
                    "decrypt",
                    "--config",
                    &first.config_path().to_string_lossy(),
                    "--topic",
                    &a,
                ],
                first.dir(),
            );
            assert!(!ok, "decrypt of a shredded topic must fail: {out}");
            assert!(
                out.lines()
                    .all(|l| l.contains("\"error\"") && l.contains("shredded")),
                "every record must fail as shredded:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (_, listed, _) = portcullis(
                &[
                    "keys",
                    "list",
                    "--config",
                    &first.config_path().to_string_lossy(),
                ],
                first.dir(),
            );
            assert!(listed.contains("shredded"), "{listed}");
            same_payloads(&read_through(&first, &b, 5).await, &sent(&recs_b));
        },
    )
    .await;
}

/// Starts `portcullis keys <command> --topic <topic> --config <config>` and kills it with
/// SIGKILL after `delay`; returns whether it had finished first.
fn kill_during(command: &str, topic: &str, config: &Path, delay: Duration) -> bool {
    let mut child = Command::new(proxy_binary())
        .args(["keys", command, "--topic", topic, "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portcullis keys");
    std::thread::sleep(delay);
    let finished = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill();
    let _ = child.wait();
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rotate_rewrap_and_shred_loses_nothing_readable() {
    with_timeout(
        Duration::from_secs(420),
        "kill_9_during_rotate_rewrap_and_shred_loses_nothing_readable",
        async {
            let broker = Broker::start();
            let keys = KeyDir::new();
            let mut writer = proxy(&broker, &keys, "");
            let (kept, doomed) = (unique_name("enc.kept"), unique_name("enc.doomed"));
            let mut expected = Vec::new();
            for t in [&kept, &doomed] {
                kafka::create_topic(&writer.endpoint(), t, 1).await;
            }
            let doomed_recs = records(4, 9);
            produce(&writer, &doomed, &doomed_recs).await;
            let config = writer.config_path().to_path_buf();
            let config_copy = keys.path().join("proxy.toml");
            std::fs::copy(&config, &config_copy).unwrap();

            let mut interrupted = 0;
            for round in 0..6u64 {
                let recs = records(3, 100 + round);
                produce(&writer, &kept, &recs).await;
                expected.extend(sent(&recs));
                writer.stop();
                // The sled store is free now: rotate and rewrap offline, killed at random points.
                for command in ["rotate", "rewrap", "rotate"] {
                    let delay = Duration::from_millis(portcullis_tests::ports::random_u64() % 40);
                    if !kill_during(command, &kept, &config_copy, delay) {
                        interrupted += 1;
                    }
                }
                writer = proxy(&broker, &keys, "");
                same_payloads(
                    &read_through(&writer, &kept, expected.len()).await,
                    &expected,
                );
            }
            assert!(
                interrupted > 0,
                "no command was ever interrupted: the test proved nothing"
            );

            // Shred, killed at random points, then run to completion.
            writer.stop();
            for _ in 0..4 {
                let delay = Duration::from_millis(portcullis_tests::ports::random_u64() % 30);
                kill_during("shred", &doomed, &config_copy, delay);
            }
            let (ok, out, err) = portcullis(
                &[
                    "keys",
                    "shred",
                    "--topic",
                    &doomed,
                    "--config",
                    &config_copy.to_string_lossy(),
                ],
                keys.path(),
            );
            assert!(
                ok || err.contains("shredded"),
                "finishing the shred failed:\n{out}\n{err}"
            );
            let (ok, out, _) = portcullis(
                &[
                    "decrypt",
                    "--config",
                    &config_copy.to_string_lossy(),
                    "--topic",
                    &doomed,
                ],
                keys.path(),
            );
            assert!(!ok && out.lines().count() == doomed_recs.len(), "{out}");
            assert!(out.lines().all(|l| l.contains("shredded")), "{out}");
            // Offline key commands are audited in the (stopped) proxy's audit log.
            let (ok, out, err) = portcullis(
                &[
                    "audit",
                    "--config",
                    &config_copy.to_string_lossy(),
                    "query",
                    "--action",
                    "key.shred",
                    "--output",
                    "json",
                ],
                keys.path(),
            );
            assert!(ok, "audit query failed:\n{out}\n{err}");
            let shreds: Vec<Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert!(
                shreds
                    .iter()
                    .any(|e| e["details"]["phase"] == "done" && e["principal"] == "cli"),
                "no audited offline shred:\n{out}"
            );
            let writer = proxy(&broker, &keys, "");
            same_payloads(
                &read_through(&writer, &kept, expected.len()).await,
                &expected,
            );
        },
    )
    .await;
}
