//! Authorization end to end: real librdkafka clients through `portcullis serve` (SASL, policy
//! files in a directory the test edits) to tansu. Each test shows one row of the issue's
//! matrix: what a broker with equivalent ACLs would answer, audited, and changed by editing
//! a file while the proxy runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use portcullis_tests::auth::{add_user, start, Auth, Setup};
use portcullis_tests::authz::PolicyDir;
use portcullis_tests::kafka::{self, FetchMetadata, RecordingContext};
use portcullis_tests::sasl_wire::{RawClient, SaslResult};
use portcullis_tests::{http, with_test_timeout, with_timeout, Endpoint};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use serde_json::Value;

/// The estate of these tests. alice has role producers, bob consumers+analytics (see
/// `auth::start`); `admin` is added with role admin.
const RULES: &str = "\
# producers write every orders topic, but never orders.secret
p, Role:producers, topic, orders*, Write, allow
p, Role:producers, topic, orders.secret, Write, deny
# producers may see payments (so their clients send Produce requests for it) but not write it
p, Role:producers, topic, payments, Describe, allow
# consumers read orders topics with the readers groups
p, Role:consumers, topic, orders*, Read, allow
p, Role:consumers, group, readers*, Read, allow
# the analytics team sees analytics topics
p, Role:analytics, topic, analytics.*, Read, allow
# admins do everything
p, Role:admin, cluster, kafka-cluster, All, allow
p, Role:admin, topic, *, All, allow
p, Role:admin, group, *, All, allow
";

struct World {
    s: Setup,
    policies: PolicyDir,
}

impl World {
    fn start() -> World {
        let policies = PolicyDir::new(RULES);
        let authz = policies.proxy_toml("");
        let s = start(Auth {
            mechanisms: &["SCRAM-SHA-512", "OAUTHBEARER"],
            auth_extra: &authz,
            ..Auth::default()
        });
        add_user(&s.users, "admin", "admin-secret", &["admin"]);
        let w = World { s, policies };
        // The store reloads every 200 ms: wait until admin can log in.
        let deadline = Instant::now() + Duration::from_secs(10);
        while kafka::producer(&w.user("admin"), &[])
            .metadata(None, Duration::from_secs(3))
            .is_err()
        {
            assert!(Instant::now() < deadline, "admin never got in");
        }
        w
    }

    fn user(&self, name: &str) -> Endpoint {
        self.s
            .proxy
            .endpoint()
            .with_password("SCRAM-SHA-512", name, &format!("{name}-secret"))
    }

    async fn create_topics(&self, topics: &[&str]) {
        for t in topics {
            kafka::create_topic(&self.user("admin"), t, 1).await;
        }
    }

    fn events(&self) -> Vec<Value> {
        self.s.proxy.audit_events()
    }

    /// Waits until an audit event matching `pred` appears.
    fn wait_for_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no audit event {what}; events:\n{}",
                self.events()
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn metrics(&self) -> String {
        http::get(
            self.s.proxy.admin_addr(),
            "/metrics",
            Duration::from_secs(5),
        )
        .unwrap()
        .body
    }
}

fn deny_of(e: &Value, principal: &str, resource: &str) -> bool {
    e["category"] == "authz"
        && e["outcome"] == "deny"
        && e["principal"] == principal
        && e["resource"]["name"] == resource
}

async fn send(
    producer: &FutureProducer<RecordingContext>,
    topic: &str,
    payload: &str,
) -> Result<(i32, i64), KafkaError> {
    let record = FutureRecord::<(), str>::to(topic)
        .payload(payload)
        .partition(0);
    producer
        .send(record, Duration::from_secs(20))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
}

fn is_topic_denied(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
    )
}

/// Reads `n` records of `topic` as `ep` in `group`.
async fn consume(ep: &Endpoint, group: &str, topic: &str, n: usize) -> Vec<String> {
    let consumer = kafka::consumer(ep, group, &[]);
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = with_timeout(Duration::from_secs(30), "consume", consumer.recv())
            .await
            .unwrap_or_else(|e| panic!("{group} reading {topic}: {e}"));
        out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    out
}

/// The first error a consumer in `group` reading `topic` gets.
async fn consume_error(consumer: &StreamConsumer<RecordingContext>, topic: &str) -> KafkaError {
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no error reading {topic}");
        match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Err(e)) => return e,
            Ok(Ok(m)) => panic!(
                "read {:?} from {topic} without permission",
                m.payload().map(String::from_utf8_lossy)
            ),
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_is_allowed_on_one_topic_and_denied_on_another_in_the_same_batch() {
    let w = World::start();
    with_test_timeout("mixed produce", async {
        w.create_topics(&["orders.eu", "payments"]).await;
        // One producer, both sends in flight together: librdkafka puts them in one
        // ProduceRequest (one broker, linger 50 ms).
        let producer = kafka::producer(&w.user("alice"), &[("linger.ms", "50")]);
        let (allowed, denied) = tokio::join!(
            send(&producer, "orders.eu", "ok-1"),
            send(&producer, "payments", "nope")
        );
        allowed.expect("the allowed topic is written");
        let e = denied.expect_err("the denied topic is refused");
        assert!(is_topic_denied(&e), "{e:?}");
        // acks=0: the client expects no answer; the denied write is dropped, and the
        // connection keeps working.
        let fire_and_forget = kafka::producer(&w.user("alice"), &[("acks", "0")]);
        send(&fire_and_forget, "payments", "dropped").await.ok();
        send(&fire_and_forget, "orders.eu", "ok-2")
            .await
            .expect("acks=0 to an allowed topic");
        // What was acknowledged is stored.
        let back = consume(&w.user("admin"), "admins-1", "orders.eu", 2).await;
        assert_eq!(back, vec!["ok-1", "ok-2"]);
        // Nothing reached the denied topic.
        let (low, high) = kafka::admin(&w.user("admin"))
            .inner
            .inner()
            .fetch_watermarks("payments", 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!(high - low, 0, "a denied record was written");
    })
    .await;
    let e = w.wait_for_event("alice's produce to payments denied", |e| {
        deny_of(e, "User:alice", "payments") && e["action"] == "kafka.Produce"
    });
    assert_eq!(e["resource"]["resource_type"], "topic", "{e}");
    assert_eq!(e["details"]["operation"], "Write", "{e}");
    assert_eq!(e["api"]["name"], "Produce", "{e}");
    assert_eq!(e["roles"], serde_json::json!(["producers"]), "{e}");
    assert!(e["rule"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    assert!(e["client_addr"].is_string(), "{e}");
    let metrics = w.metrics();
    assert!(
        metrics.contains("portcullis_authz_decisions_total")
            && metrics.contains("outcome=\"deny\""),
        "decisions are not in the metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_overrides_a_prefix_allow() {
    let w = World::start();
    with_test_timeout("deny wins", async {
        w.create_topics(&["orders.secret", "orders.us"]).await;
        let producer = kafka::producer(&w.user("alice"), &[]);
        send(&producer, "orders.us", "prefix grant")
            .await
            .expect("orders* is granted");
        let e = send(&producer, "orders.secret", "x").await.unwrap_err();
        assert!(is_topic_denied(&e), "{e:?}");
    })
    .await;
    let e = w.wait_for_event("deny rule named", |e| {
        deny_of(e, "User:alice", "orders.secret")
    });
    assert_eq!(e["action"], "kafka.Produce", "{e}");
    assert!(
        e["rule"].as_str().unwrap().contains("orders.secret"),
        "the deciding rule is not named: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_needs_read_on_its_group() {
    let w = World::start();
    with_test_timeout("group read", async {
        w.create_topics(&["orders.eu"]).await;
        let producer = kafka::producer(&w.user("alice"), &[]);
        send(&producer, "orders.eu", "r1").await.unwrap();
        let back = consume(&w.user("bob"), "readers-1", "orders.eu", 1).await;
        assert_eq!(back, vec!["r1"]);
        let consumer = kafka::consumer(&w.user("bob"), "thieves", &[]);
        let e = consume_error(&consumer, "orders.eu").await;
        assert!(
            format!("{e:?}").contains("GroupAuthorizationFailed"),
            "expected GROUP_AUTHORIZATION_FAILED, got {e:?}"
        );
    })
    .await;
    w.wait_for_event("group denied", |e| deny_of(e, "User:bob", "thieves"));
    // The user store change that added `admin` (World::start) is audited, without secrets.
    let e = w.wait_for_event("user store change", |e| {
        e["action"] == "users.reload" && e["outcome"] == "success"
    });
    assert_eq!(e["details"]["added"], serde_json::json!(["admin"]), "{e}");
    assert!(!e.to_string().contains("admin-secret"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_listing_hides_topics_and_a_named_one_is_denied() {
    let w = World::start();
    with_test_timeout("listing", async {
        w.create_topics(&["orders.eu", "payments", "analytics.clicks"])
            .await;
        let bob = kafka::producer(&w.user("bob"), &[]);
        let md = bob.metadata(None, Duration::from_secs(10)).unwrap();
        let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
        assert!(names.contains(&"orders.eu"), "{names:?}");
        assert!(names.contains(&"analytics.clicks"), "{names:?}");
        assert!(
            !names.contains(&"payments"),
            "an unauthorized topic is listed: {names:?}"
        );
        let md = bob
            .metadata(Some("payments"), Duration::from_secs(10))
            .unwrap();
        let t = md.topics().iter().find(|t| t.name() == "payments").unwrap();
        assert_eq!(
            t.error(),
            Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
        );
        assert!(
            t.partitions().is_empty(),
            "partitions of a hidden topic leaked"
        );
        let admin = kafka::producer(&w.user("admin"), &[]);
        let md = admin.metadata(None, Duration::from_secs(10)).unwrap();
        assert!(md.topics().iter().any(|t| t.name() == "payments"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_and_delete_are_denied_and_allowed_by_policy() {
    let w = World::start();
    with_test_timeout("admin ops", async {
        let opts = kafka::admin_options();
        let alice = kafka::admin(&w.user("alice"));
        let new = NewTopic::new("orders.new", 1, TopicReplication::Fixed(1));
        let r = alice.create_topics([&new], &opts).await.unwrap();
        assert!(
            matches!(&r[0], Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))),
            "{r:?}"
        );
        w.create_topics(&["orders.new"]).await;
        let r = alice.delete_topics(&["orders.new"], &opts).await.unwrap();
        assert!(
            matches!(&r[0], Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))),
            "{r:?}"
        );
        let admin = kafka::admin(&w.user("admin"));
        let r = admin.delete_topics(&["orders.new"], &opts).await.unwrap();
        assert!(r[0].is_ok(), "{r:?}");
    })
    .await;
    w.wait_for_event("create denied", |e| {
        deny_of(e, "User:alice", "orders.new") && e["action"] == "kafka.CreateTopics"
    });
    w.wait_for_event("admin delete allowed and audited", |e| {
        e["category"] == "authz"
            && e["outcome"] == "allow"
            && e["principal"] == "User:admin"
            && e["action"] == "kafka.DeleteTopics"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_from_a_jwt_claim_grant_access() {
    let w = World::start();
    let token =
        w.s.issuer
            .token("carol", &["consumers"], Duration::from_secs(600));
    let carol =
        w.s.proxy
            .endpoint()
            .with_oauth(std::sync::Arc::new(move || token.clone()));
    let stranger_token =
        w.s.issuer
            .token("dave", &["nobody"], Duration::from_secs(600));
    let dave =
        w.s.proxy
            .endpoint()
            .with_oauth(std::sync::Arc::new(move || stranger_token.clone()));
    with_test_timeout("jwt roles", async {
        w.create_topics(&["orders.eu"]).await;
        send(
            &kafka::producer(&w.user("alice"), &[]),
            "orders.eu",
            "for carol",
        )
        .await
        .unwrap();
        let back = consume(&carol, "readers-carol", "orders.eu", 1).await;
        assert_eq!(back, vec!["for carol"]);
        let consumer = kafka::consumer(&dave, "readers-dave", &[]);
        let e = consume_error(&consumer, "orders.eu").await;
        assert!(format!("{e:?}").contains("Authorization"), "{e:?}");
    })
    .await;
}

/// Topic names in an all-topics Metadata answer on `raw`.
fn all_topic_names(raw: &mut RawClient) -> Vec<String> {
    let request = MetadataRequest::default().with_topics(None);
    let response: MetadataResponse = raw.call(ApiKey::Metadata, 4, &request).unwrap();
    response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect()
}

/// KIP-368: a re-authentication that brings fewer roles must narrow what the connection is
/// shown from then on, in responses filtered by the proxy (all-topics Metadata) as much as
/// in requests it authorizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_with_fewer_roles_filters_answers_with_the_new_roles() {
    let w = World::start();
    with_test_timeout("topics", async {
        w.create_topics(&["orders.reauth", "analytics.reauth"])
            .await;
    })
    .await;
    let wide = w.s.issuer.token(
        "erin",
        &["consumers", "analytics"],
        Duration::from_secs(600),
    );
    let narrow =
        w.s.issuer
            .token("erin", &["consumers"], Duration::from_secs(600));
    let mut raw = RawClient::connect(&w.s.proxy.bootstrap()).unwrap();
    assert!(matches!(
        raw.login_oauth(&wide).unwrap(),
        SaslResult::Ok { .. }
    ));
    let before = all_topic_names(&mut raw);
    assert!(
        before.contains(&"analytics.reauth".to_string())
            && before.contains(&"orders.reauth".to_string()),
        "with both roles erin sees both topics: {before:?}"
    );
    assert!(matches!(
        raw.login_oauth(&narrow).unwrap(),
        SaslResult::Ok { .. }
    ));
    let after = all_topic_names(&mut raw);
    assert!(
        after.contains(&"orders.reauth".to_string()),
        "consumers still see orders: {after:?}"
    );
    assert!(
        !after.contains(&"analytics.reauth".to_string()),
        "after re-authenticating without the analytics role erin still sees its topic: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_edit_revokes_access_on_an_open_connection_within_2_seconds() {
    let w = World::start();
    with_test_timeout("revocation", async {
        w.create_topics(&["orders.eu"]).await;
        let producer = kafka::producer(&w.user("alice"), &[]);
        send(&producer, "orders.eu", "before").await.unwrap();
        let revoked = RULES.replace("p, Role:producers, topic, orders*, Write, allow\n", "");
        w.policies.write("policy.csv", &revoked);
        let edited = Instant::now();
        loop {
            match send(&producer, "orders.eu", "after").await {
                Err(e) if is_topic_denied(&e) => break,
                Err(e) => panic!("unexpected error {e:?}"),
                Ok(_) => {
                    assert!(
                        edited.elapsed() < Duration::from_secs(2),
                        "still allowed {:?} after the policy edit",
                        edited.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    w.wait_for_event("reload audited", |e| {
        e["action"] == "policy.reload" && e["outcome"] == "success"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_edit_changes_nothing_and_is_reported() {
    let w = World::start();
    with_test_timeout("broken edit", async {
        w.create_topics(&["orders.eu", "payments"]).await;
        let producer = kafka::producer(&w.user("alice"), &[]);
        send(&producer, "orders.eu", "before").await.unwrap();
        let broken = format!("{RULES}p, Role:producers, topic, payments, Scribble, allow\n");
        w.policies.write("policy.csv", &broken);
        tokio::time::sleep(Duration::from_secs(2)).await;
        send(&producer, "orders.eu", "after")
            .await
            .expect("the last good policy stays in force");
        let e = send(&producer, "payments", "x").await.unwrap_err();
        assert!(is_topic_denied(&e), "{e:?}");
    })
    .await;
    let e = w.wait_for_event("rejected reload", |e| {
        e["action"] == "policy.reload" && e["outcome"] == "failure"
    });
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason.contains("policy.csv:") && reason.contains("Scribble"),
        "the rejection does not name file, line and problem: {reason}"
    );
    let log = w.s.proxy.log();
    assert!(log.contains("policy.csv:"), "no log line names the file");
    // SIGHUP reloads at once (and is refused again while the file is broken).
    let status = std::process::Command::new("kill")
        .args(["-HUP", &w.s.proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    w.wait_for_event("SIGHUP reload", |e| {
        e["action"] == "policy.reload"
            && e["details"]["trigger"] == "sighup"
            && e["outcome"] == "failure"
    });
    assert!(
        w.metrics()
            .contains("portcullis_policy_reloads_total{outcome=\"rejected\"}"),
        "no metric for the rejected reload"
    );
}

/// The matrix with Python's clients (librdkafka through confluent-kafka, and kafka-python's
/// own protocol implementation): allowed and denied produce, group Read, hidden listing,
/// admin create/delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_see_kafkas_authorization_errors() {
    let w = World::start();
    with_test_timeout("python matrix", async {
        w.create_topics(&["orders.eu", "payments"]).await;
        send(&kafka::producer(&w.user("alice"), &[]), "orders.eu", "seed")
            .await
            .unwrap();
    })
    .await;
    for client in ["confluent", "kafka-python"] {
        let alice = portcullis_tests::python::run_probes(
            client,
            &w.user("alice"),
            &["produce:orders.eu", "produce:payments", "create:orders.py"],
        );
        assert_eq!(alice["produce:orders.eu"], "ok", "{client}: {alice:?}");
        assert_eq!(
            alice["produce:payments"], "TOPIC_AUTHORIZATION_FAILED",
            "{client}: {alice:?}"
        );
        assert_eq!(
            alice["create:orders.py"], "TOPIC_AUTHORIZATION_FAILED",
            "{client}: {alice:?}"
        );
        let bob = portcullis_tests::python::run_probes(
            client,
            &w.user("bob"),
            &[
                "consume:orders.eu:readers-py",
                "consume:orders.eu:thieves-py",
                "list",
            ],
        );
        assert_eq!(
            bob["consume:orders.eu:readers-py"], "ok",
            "{client}: {bob:?}"
        );
        assert_eq!(
            bob["consume:orders.eu:thieves-py"], "GROUP_AUTHORIZATION_FAILED",
            "{client}: {bob:?}"
        );
        let listed: Vec<&str> = bob["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        assert!(listed.contains(&"orders.eu"), "{client}: {listed:?}");
        assert!(!listed.contains(&"payments"), "{client}: {listed:?}");
        let admin = portcullis_tests::python::run_probes(
            client,
            &w.user("admin"),
            &["create:orders.py", "delete:orders.py"],
        );
        assert_eq!(admin["create:orders.py"], "ok", "{client}: {admin:?}");
        assert_eq!(admin["delete:orders.py"], "ok", "{client}: {admin:?}");
    }
}

/// `portcullis policy check` and `explain` on the directory the proxy uses.
#[test]
fn policy_check_and_explain_commands() {
    let policies = PolicyDir::new(RULES);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(portcullis_tests::proxy::proxy_binary())
            .arg("policy")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let dir = policies.path().to_string_lossy().into_owned();
    let (code, out) = run(&["check", &dir]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&[
        "explain",
        "--dir",
        &dir,
        "--principal",
        "User:alice",
        "--role",
        "producers",
        "--resource",
        "topic:orders.secret",
        "--operation",
        "Write",
    ]);
    assert_eq!(code, Some(1), "a denial exits 1: {out}");
    assert!(out.contains("DENY"), "{out}");
    assert!(
        out.contains("policy.csv:3: p, Role:producers, topic, orders.secret, Write, deny"),
        "the deciding rule with file and line: {out}"
    );
    policies.write(
        "broken.csv",
        "p, Role:x, topic, a, Raed, allow\np, Team:y, topic, b, Read, allow\n",
    );
    let (code, out) = run(&["check", &dir]);
    assert_ne!(code, Some(0));
    assert!(
        out.contains("broken.csv:1") && out.contains("broken.csv:2"),
        "every error: {out}"
    );
}

/// The acceptance: every category of event appears in the log from real client
/// activity, and `portcullis audit verify` passes on that log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_category_of_event_reaches_the_log_and_it_verifies() {
    let mut w = World::start();
    with_test_timeout("activity", async {
        w.create_topics(&["orders.eu", "orders.secret"]).await;
        let alice = kafka::producer(&w.user("alice"), &[]);
        send(&alice, "orders.eu", "ok").await.unwrap();
        let e = send(&alice, "orders.secret", "no").await.unwrap_err();
        assert!(is_topic_denied(&e), "{e:?}");
        let wrong =
            w.s.proxy
                .endpoint()
                .with_password("SCRAM-SHA-512", "alice", "not-her-password");
        assert!(kafka::producer(&wrong, &[])
            .metadata(None, Duration::from_secs(3))
            .is_err());
    })
    .await;
    w.policies.write(
        "policy.csv",
        &format!("{RULES}p, Role:analytics, topic, extra, Read, allow\n"),
    );
    w.wait_for_event("accepted reload", |e| {
        e["action"] == "policy.reload" && e["outcome"] == "success"
    });
    w.policies.write(
        "policy.csv",
        &format!("{RULES}p, Role:analytics, topic, x, Scribble, allow\n"),
    );
    w.wait_for_event("rejected reload", |e| {
        e["action"] == "policy.reload" && e["outcome"] == "failure"
    });
    let token = std::fs::read_to_string(w.s.proxy.audit_dir().join("admin.token")).unwrap();
    let rotated = http::post_with_token(
        w.s.proxy.admin_addr(),
        "/audit/rotate-key",
        token.trim(),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    w.s.proxy.stop();

    let data_dir = w.s.proxy.audit_dir().to_string_lossy().into_owned();
    let audit = |args: &[&str]| {
        let f = portcullis_tests::audit_proxy::audit_cli(
            &[&["--data-dir", data_dir.as_str()], args].concat(),
        );
        assert!(
            f.status.success(),
            "audit {args:?}: {}\n{}",
            f.stdout,
            f.stderr
        );
        f.stdout
    };
    let events: Vec<Value> = audit(&["query", "--output", "json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |category: &str, action: &str, outcome: &str| {
        events.iter().any(|e| {
            e["category"] == category
                && e["outcome"] == outcome
                && e["action"].as_str().is_some_and(|a| a.starts_with(action))
        })
    };
    for (category, action, outcome) in [
        ("connection", "connection.open", "success"),
        ("connection", "connection.close", "success"),
        ("authn", "sasl.SCRAM-SHA-512", "success"),
        ("authn", "sasl.SCRAM-SHA-512", "failure"),
        ("authz", "kafka.Produce", "deny"),
        ("authz", "kafka.CreateTopics", "allow"),
        ("config", "policy.load", "success"),
        ("config", "policy.reload", "success"),
        ("config", "policy.reload", "failure"),
        ("config", "users.reload", "success"),
        ("config", "proxy.start", "success"),
        ("config", "proxy.stop", "success"),
        ("admin", "admin.audit.rotate-key", "allow"),
        ("key", "audit.key.create", "success"),
        ("key", "audit.key.rotate", "success"),
    ] {
        assert!(
            has(category, action, outcome),
            "no {category} {action} {outcome} event; actions seen: {:?}",
            events
                .iter()
                .map(|e| format!("{} {} {}", e["category"], e["action"], e["outcome"]))
                .collect::<std::collections::BTreeSet<_>>()
        );
    }
    let verified = audit(&["verify"]);
    assert!(verified.contains("OK: the log verifies"), "{verified}");
}
