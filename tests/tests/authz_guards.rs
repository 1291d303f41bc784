//! Authorization guards end to end (issue 13, items 4 and 8): through the real proxy to tansu,
//! Metadata v0 with an empty topic list ("all topics" in v0) shows only topics the principal
//! may describe; Metadata v12 entries with topic ids are authorized by the topic the proxy
//! resolves the id to, not by the name sent next to it; the proxy's own audit anchor topic
//! cannot be written or deleted by any client, whatever the policy grants; and a broken policy reload under
//! `on_reload_failure = "deny_all"` denies everything and is reported by `/readyz` and
//! `/metrics` until a good policy is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use portcullis_tests::auth::{add_user, start_tuned, Auth, Setup};
use portcullis_tests::authz::PolicyDir;
use portcullis_tests::kafka::{self, FetchMetadata};
use portcullis_tests::sasl_login::call_after_login;
use portcullis_tests::{http, with_test_timeout, Endpoint};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;

/// The proxy's anchor topic in these tests.
const ANCHOR: &str = "__portcullis_anchor_test";

/// bob (consumers) reads orders topics and may delete scratch topics; admin may do
/// everything to every topic.
const RULES: &str = "\
p, Role:consumers, topic, orders*, Read, allow
p, Role:consumers, topic, scratch*, Delete, allow
p, Role:admin, cluster, kafka-cluster, All, allow
p, Role:admin, topic, *, All, allow
";

struct World {
    s: Setup,
    policies: PolicyDir,
}

impl World {
    fn start() -> World {
        World::start_with("")
    }

    /// `authz_extra`: further `[authorization]` lines.
    fn start_with(authz_extra: &str) -> World {
        World::start_tuned(authz_extra, 1_000)
    }

    /// `refresh_ms`: `upstream.metadata_refresh_ms`.
    fn start_tuned(authz_extra: &str, refresh_ms: u64) -> World {
        let policies = PolicyDir::new(RULES);
        let extra = format!(
            "{}\n[audit.log]\norigin = \"portcullis.test/guards\"\ncheckpoint_interval_ms = 200\nanchor_topic = \"{ANCHOR}\"\n",
            policies.proxy_toml(authz_extra)
        );
        let s = start_tuned(
            Auth {
                mechanisms: &["SCRAM-SHA-512"],
                auth_extra: &extra,
                ..Auth::default()
            },
            |o| o.metadata_refresh_ms = refresh_ms,
        );
        add_user(&s.users, "admin", "admin-secret", &["admin"]);
        let w = World { s, policies };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) =
            kafka::producer(&w.user("admin"), &[]).metadata(None, Duration::from_secs(3))
        {
            assert!(Instant::now() < deadline, "admin never got in: {e}");
        }
        w
    }

    fn user(&self, name: &str) -> Endpoint {
        self.s
            .proxy
            .endpoint()
            .with_password("SCRAM-SHA-512", name, &format!("{name}-secret"))
    }

    /// Creates `topics` (as admin), then runs `check(broker, proxy)` with the two bootstrap
    /// addresses on a blocking thread.
    async fn check_with_topics(&self, what: &str, topics: &[&str], check: fn(&str, &str)) {
        with_test_timeout(what, async {
            for t in topics {
                kafka::create_topic(&self.user("admin"), t, 1).await;
            }
            let broker = self.s.broker.bootstrap();
            let proxy = self.s.proxy.bootstrap().to_string();
            tokio::task::spawn_blocking(move || check(&broker, &proxy))
                .await
                .unwrap();
        })
        .await;
    }

    fn wait_for_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.s.proxy.audit_events();
            if let Some(e) = events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no audit event {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_v0_with_an_empty_list_shows_only_describable_topics() {
    let w = World::start();
    with_test_timeout("metadata v0", async {
        for t in ["orders.eu", "secret", "payments.pii"] {
            kafka::create_topic(&w.user("admin"), t, 1).await;
        }
        let addr = w.s.proxy.bootstrap().to_string();
        let names = |user: &'static str| {
            let addr = addr.clone();
            let password = format!("{user}-secret");
            async move {
                tokio::task::spawn_blocking(move || {
                    let r: MetadataResponse = call_after_login(
                        &addr,
                        ("SCRAM-SHA-512", user, &password),
                        ApiKey::Metadata,
                        0,
                        &MetadataRequest::default().with_topics(Some(Vec::new())),
                    )
                    .unwrap();
                    r.topics
                        .iter()
                        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap()
            }
        };
        let admin = names("admin").await;
        assert!(
            ["orders.eu", "secret", "payments.pii"]
                .iter()
                .all(|t| admin.iter().any(|n| n == t)),
            "v0 all-topics as admin: {admin:?}"
        );
        let bob = names("bob").await;
        assert_eq!(bob, vec!["orders.eu".to_string()], "v0 all-topics as bob");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_may_write_or_delete_the_anchor_topic_whatever_the_policy_grants() {
    let w = World::start();
    with_test_timeout("anchor topic", async {
        let admin = kafka::producer(&w.user("admin"), &[]);
        let sent = admin
            .send(
                FutureRecord::<(), str>::to(ANCHOR)
                    .payload("forged checkpoint")
                    .partition(0),
                Duration::from_secs(20),
            )
            .await;
        assert!(
            matches!(
                sent,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        RDKafkaErrorCode::TopicAuthorizationFailed
                    ),
                    _
                ))
            ),
            "{sent:?}"
        );
        let opts = kafka::admin_options();
        let r = kafka::admin(&w.user("admin"))
            .delete_topics(&[ANCHOR], &opts)
            .await
            .unwrap();
        assert!(
            matches!(&r[0], Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))),
            "{r:?}"
        );
        // Reading it is a matter of policy, and admin may.
        let md = admin
            .metadata(Some(ANCHOR), Duration::from_secs(10))
            .unwrap();
        assert_eq!(md.topics()[0].error(), None, "anchor topic still there");
    })
    .await;
    for action in ["kafka.Produce", "kafka.DeleteTopics"] {
        let e = w.wait_for_event(action, |e| {
            e["category"] == "authz"
                && e["outcome"] == "deny"
                && e["action"] == action
                && e["resource"]["name"] == ANCHOR
        });
        assert_eq!(
            e["rule"], "reserved: audit anchor topic (audit.log.anchor_topic)",
            "{e}"
        );
    }
}

/// Metadata v1 for `topic` as `user`: the topic's error code.
fn metadata_error(w: &World, user: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    let password = format!("{user}-secret");
    let r: MetadataResponse = call_after_login(
        &w.s.proxy.bootstrap(),
        ("SCRAM-SHA-512", user, &password),
        ApiKey::Metadata,
        1,
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(topic.to_string().into())))])),
    )
    .unwrap();
    r.topics[0].error_code
}

/// Waits until `/readyz` answers `status`; returns the body.
fn readyz_becomes(w: &World, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http::get(w.s.proxy.admin_addr(), "/readyz", Duration::from_secs(5)).unwrap();
        if r.status == status {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stays {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_under_deny_all_denies_everything_and_readyz_says_why() {
    let w = World::start_with("on_reload_failure = \"deny_all\"");
    with_test_timeout("deny_all", async {
        kafka::create_topic(&w.user("admin"), "orders.eu", 1).await;
    })
    .await;
    let degraded_metric = || {
        http::get(w.s.proxy.admin_addr(), "/metrics", Duration::from_secs(5))
            .unwrap()
            .body
            .lines()
            .find(|l| l.starts_with("portcullis_policy_degraded"))
            .map(str::to_string)
    };
    assert_eq!(metadata_error(&w, "admin", "orders.eu"), 0);
    assert_eq!(
        degraded_metric().as_deref(),
        Some("portcullis_policy_degraded 0")
    );

    w.policies.write(
        "policy.csv",
        &format!("{RULES}p, Role:admin, topic, x, Scribble, allow\n"),
    );
    let body = readyz_becomes(&w, 503);
    assert!(body.contains("deny_all"), "{body}");
    assert!(body.contains("policy.csv"), "{body}");
    assert_eq!(
        degraded_metric().as_deref(),
        Some("portcullis_policy_degraded 1")
    );
    assert_eq!(
        metadata_error(&w, "admin", "orders.eu"),
        29,
        "TOPIC_AUTHORIZATION_FAILED while degraded"
    );

    w.policies.write("policy.csv", RULES);
    assert_eq!(readyz_becomes(&w, 200), "ready");
    assert_eq!(
        degraded_metric().as_deref(),
        Some("portcullis_policy_degraded 0")
    );
    assert_eq!(metadata_error(&w, "admin", "orders.eu"), 0);
}

/// The audit rule of an entry whose name and topic id name different topics.
const MISMATCH_RULE: &str = "topic id mismatch: the entry's topic id names another topic";

/// Metadata v12 entries carry a topic id next to the name. The proxy authorizes the topic
/// the id stands for in its own view of the cluster, never the name sent along with it: bob,
/// who may describe `orders.eu`, sends `orders.eu` with the id of `secret` (refused, audited),
/// `orders.eu`'s id alone (resolved and served), `secret`'s id alone (denied without naming
/// it) and an id nobody knows (UNKNOWN_TOPIC_ID). tansu 0.6.0 looks an entry up by its name
/// when it has one (Kafka 3.1+ by the id), so the test checks the proxy's own answers and
/// that nothing about `secret` is in the bytes bob receives. The proxy's periodic refresh
/// is a minute here: the topics, created after the proxy's first listing, are resolved
/// because an unknown id brings the next listing forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_topic_ids_are_resolved_by_the_proxy_not_taken_from_the_client() {
    let w = World::start_tuned("", 60_000);
    w.check_with_topics(
        "metadata topic ids",
        &["orders.eu", "secret"],
        check_topic_ids,
    )
    .await;
    let e = w.wait_for_event("topic id mismatch", |e| {
        e["category"] == "authz" && e["outcome"] == "deny" && e["rule"] == MISMATCH_RULE
    });
    assert_eq!(e["principal"], "User:bob", "{e}");
    assert_eq!(e["resource"]["name"], "orders.eu", "{e}");
    assert_eq!(e["details"]["topic_id_names"], "secret", "{e}");
}

fn check_topic_ids(broker: &str, proxy: &str) {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    use portcullis_tests::sasl_login::{call_after_login_raw, call_unauthenticated};
    use uuid::Uuid;

    // The ids, straight from the broker (a client may learn an id from anything that
    // carries one: a log line, another tool's output, a Fetch v13+ answer elsewhere).
    let listing: MetadataResponse = call_unauthenticated(
        broker,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .unwrap();
    let id_of = |name: &str| {
        listing
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
            .map(|t| t.topic_id)
            .unwrap_or_else(|| panic!("{name} not listed by the broker"))
    };
    let (orders, secret) = (id_of("orders.eu"), id_of("secret"));
    assert!(
        !orders.is_nil() && !secret.is_nil(),
        "tansu gives topic ids"
    );
    let unknown = Uuid::from_u128(0x5eed_5eed);
    let entry = |name: Option<&str>, id: Uuid| {
        MetadataRequestTopic::default()
            .with_name(name.map(|n| TopicName(n.to_string().into())))
            .with_topic_id(id)
    };
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            entry(Some("orders.eu"), secret),
            entry(None, orders),
            entry(None, secret),
            entry(None, unknown),
        ]));
    let bob = ("SCRAM-SHA-512", "bob", "bob-secret");
    // The proxy lists ids every refresh (1 s here) and early on an unknown id: an id of a
    // topic created a moment ago may be unknown at first, as with a broker.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let mut attempts = 0;
    let (r, raw) = loop {
        attempts += 1;
        let (r, raw): (MetadataResponse, bytes::Bytes) =
            call_after_login_raw(proxy, bob, ApiKey::Metadata, 12, &request).unwrap();
        let stale = r
            .topics
            .iter()
            .any(|t| t.topic_id == orders && t.name.is_none() && t.error_code == 100);
        if !stale || Instant::now() > deadline {
            break (r, raw);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "topic ids resolved after {attempts} request(s), {:?}",
        started.elapsed()
    );
    let summary: Vec<_> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()),
                t.topic_id,
                t.error_code,
            )
        })
        .collect();
    let find = |name: Option<&str>, id: Uuid| {
        r.topics
            .iter()
            .find(|t| t.topic_id == id && t.name.as_ref().map(|n| n.as_str()) == name)
            .unwrap_or_else(|| panic!("no answer for ({name:?}, {id}): {summary:?}"))
    };
    // orders.eu's id alone: resolved to orders.eu, which bob may describe, and served.
    let served = find(Some("orders.eu"), orders);
    assert_eq!(served.error_code, 0, "{summary:?}");
    assert_eq!(served.partitions.len(), 1, "{summary:?}");
    // orders.eu next to secret's id: refused as an unknown topic id.
    let mismatch = find(Some("orders.eu"), secret);
    assert_eq!(mismatch.error_code, 100, "UNKNOWN_TOPIC_ID: {summary:?}");
    assert!(mismatch.partitions.is_empty());
    // secret's id alone: TOPIC_AUTHORIZATION_FAILED, without the name.
    let denied = find(None, secret);
    assert_eq!(denied.error_code, 29, "{summary:?}");
    assert!(denied.partitions.is_empty());
    // An id nobody knows.
    assert_eq!(find(None, unknown).error_code, 100, "{summary:?}");
    assert_eq!(r.topics.len(), 4, "{summary:?}");
    assert!(
        !raw.windows(b"secret".len()).any(|w| w == b"secret"),
        "the name of the hidden topic reached bob: {summary:?}"
    );
}

/// DeleteTopics v6 names topics by name or by id, and tansu 0.6.0 (like Kafka) deletes by
/// the id when one is given. bob may delete `scratch*` only: `scratch.2` next to the id of
/// `secret` is refused (UNKNOWN_TOPIC_ID, audited) and `secret` survives; `scratch.1`'s id
/// alone deletes `scratch.1`; `secret`'s id alone is TOPIC_AUTHORIZATION_FAILED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_v6_by_id_deletes_only_what_the_id_names_and_the_policy_allows() {
    let w = World::start();
    let topics = ["scratch.1", "scratch.2", "secret", "decoy"];
    w.check_with_topics("delete topics by id", &topics, check_delete_by_id)
        .await;
    let e = w.wait_for_event("topic id mismatch", |e| {
        e["action"] == "kafka.DeleteTopics" && e["rule"] == MISMATCH_RULE
    });
    assert_eq!(e["resource"]["name"], "scratch.2", "{e}");
    assert_eq!(e["details"]["topic_id_names"], "secret", "{e}");
}

/// The broker's topics and their ids.
fn broker_topics(broker: &str) -> Vec<(String, uuid::Uuid)> {
    use portcullis_tests::sasl_login::call_unauthenticated;
    let listing: MetadataResponse = call_unauthenticated(
        broker,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .unwrap();
    listing
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| (n.to_string(), t.topic_id)))
        .collect()
}

fn check_delete_by_id(broker: &str, proxy: &str) {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
    use portcullis_tests::sasl_login::call_after_login;
    use uuid::Uuid;

    let before = broker_topics(broker);
    let id_of = |name: &str| before.iter().find(|(n, _)| n == name).unwrap().1;
    let (scratch1, secret) = (id_of("scratch.1"), id_of("secret"));
    let delete = |name: Option<&str>, id: Uuid| -> DeleteTopicsResponse {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteTopicState::default()
                .with_name(name.map(|n| TopicName(n.to_string().into())))
                .with_topic_id(id)]);
        call_after_login(
            proxy,
            ("SCRAM-SHA-512", "bob", "bob-secret"),
            ApiKey::DeleteTopics,
            6,
            &request,
        )
        .unwrap()
    };
    // scratch.1 by its id alone (retried while the proxy has not listed the new ids yet).
    let deadline = Instant::now() + Duration::from_secs(15);
    let deleted = loop {
        let r = delete(None, scratch1);
        if r.responses[0].error_code != 100 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(deleted.responses[0].error_code, 0, "{deleted:?}");
    // An allowed name next to secret's id.
    let mismatch = delete(Some("scratch.2"), secret);
    assert_eq!(mismatch.responses[0].error_code, 100, "{mismatch:?}");
    // secret's id alone.
    let denied = delete(None, secret);
    assert_eq!(denied.responses[0].error_code, 29, "{denied:?}");
    assert_eq!(denied.responses[0].name, None, "{denied:?}");

    let after: Vec<String> = broker_topics(broker).into_iter().map(|(n, _)| n).collect();
    assert!(
        after.iter().any(|n| n == "secret"),
        "secret deleted: {after:?}"
    );
    assert!(after.iter().any(|n| n == "scratch.2"), "{after:?}");
    assert!(!after.iter().any(|n| n == "scratch.1"), "{after:?}");

    // Control: straight to the broker, the same kind of entry deletes the topic of the id,
    // not the one named (so a proxy trusting the name would have deleted secret above).
    let direct: DeleteTopicsResponse = portcullis_tests::sasl_login::call_unauthenticated(
        broker,
        ApiKey::DeleteTopics,
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteTopicState::default()
                .with_name(Some(TopicName("scratch.2".into())))
                .with_topic_id(id_of("decoy"))]),
    )
    .unwrap();
    assert_eq!(direct.responses[0].error_code, 0, "{direct:?}");
    let after: Vec<String> = broker_topics(broker).into_iter().map(|(n, _)| n).collect();
    assert!(
        !after.iter().any(|n| n == "decoy"),
        "tansu deletes by id: {after:?}"
    );
    assert!(after.iter().any(|n| n == "scratch.2"), "{after:?}");
}
