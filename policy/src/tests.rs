//! Semantics, reload, watcher and robustness tests for the policy engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::{
    check_dir, run, Authorizer, Operation, PolicyCommand, PolicyConfig, PolicyError, ReloadEvent,
    ReloadFailure, ResourceType,
};

const MODEL: &str = include_str!("../../policies/model.conf");

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Writes `text` next to `name` and renames it over, as editors and Kubernetes do.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn setup(policy: &str, super_users: &[&str]) -> (tempfile::TempDir, Authorizer) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "model.conf", MODEL);
    write(dir.path(), "policy.csv", policy);
    let config = PolicyConfig {
        super_users: super_users.iter().map(|s| s.to_string()).collect(),
        // The production poll period, so the watcher test shows the 2 s promise holds.
        reload_interval: PolicyConfig::DEFAULT_RELOAD_INTERVAL,
        ..PolicyConfig::new(dir.path())
    };
    let auth = Authorizer::load(&config).unwrap();
    (dir, auth)
}

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

fn allowed(a: &Authorizer, p: &str, r: &[&str], t: ResourceType, n: &str, op: Operation) -> bool {
    let cached = a.authorize(p, &roles(r), t, n, op);
    let uncached = a.authorize_uncached(p, &roles(r), t, n, op);
    assert_eq!(cached, uncached, "cache disagrees for {p} {op} {t}:{n}");
    cached.allowed
}

use Operation::*;
use ResourceType::*;

#[test]
fn default_deny_and_literal_allow() {
    let (_d, a) = setup("p, User:alice, topic, orders, Write, allow\n", &[]);
    assert!(allowed(&a, "User:alice", &[], Topic, "orders", Write));
    assert!(!allowed(&a, "User:alice", &[], Topic, "orders2", Write));
    assert!(!allowed(&a, "User:alice", &[], Topic, "order", Write));
    assert!(!allowed(&a, "User:bob", &[], Topic, "orders", Write));
    assert!(!allowed(&a, "User:alice", &[], Group, "orders", Write));
    let d = a.authorize("User:bob", &[], Topic, "orders", Write);
    assert_eq!(&*d.rule, "default deny: no rule matched");
    let d = a.authorize("User:alice", &[], Topic, "orders", Write);
    assert!(d
        .rule
        .ends_with("policy.csv:1: p, User:alice, topic, orders, Write, allow"));
}

#[test]
fn prefix_and_wildcard_patterns() {
    let (_d, a) = setup(
        "p, Role:analytics, topic, analytics.*, Read, allow\n\
         p, User:admin2, topic, *, Describe, allow\n\
         p, User:ops, cluster, kafka-cluster, Alter, allow\n\
         p, User:ops2, cluster, *, Create, allow\n",
        &[],
    );
    assert!(allowed(
        &a,
        "User:x",
        &["analytics"],
        Topic,
        "analytics.clicks",
        Read
    ));
    assert!(allowed(
        &a,
        "User:x",
        &["analytics"],
        Topic,
        "analytics.",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:x",
        &["analytics"],
        Topic,
        "analytics",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:x",
        &["analytics"],
        Topic,
        "xanalytics.a",
        Read
    ));
    assert!(allowed(&a, "User:admin2", &[], Topic, "anything", Describe));
    assert!(allowed(
        &a,
        "User:ops",
        &[],
        Cluster,
        "kafka-cluster",
        Alter
    ));
    assert!(allowed(
        &a,
        "User:ops2",
        &[],
        Cluster,
        "kafka-cluster",
        Create
    ));
}

#[test]
fn deny_wins_across_subjects_and_rule_order() {
    let (_d, a) = setup(
        "p, User:*, topic, payments.pii, Read, deny\n\
         p, Role:consumers, topic, payments*, Read, allow\n\
         p, Role:admin, topic, *, All, allow\n\
         p, User:mallory, topic, *, All, deny\n\
         p, User:mallory, topic, public, Read, allow\n",
        &[],
    );
    assert!(allowed(
        &a,
        "User:c",
        &["consumers"],
        Topic,
        "payments",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:c",
        &["consumers"],
        Topic,
        "payments.pii",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:c",
        &["admin"],
        Topic,
        "payments.pii",
        Read
    ));
    // A deny of Read does not deny Describe (denies are not widened).
    assert!(allowed(
        &a,
        "User:c",
        &["admin"],
        Topic,
        "payments.pii",
        Describe
    ));
    // A deny of All denies everything, even with a later, more specific allow.
    assert!(!allowed(&a, "User:mallory", &[], Topic, "public", Read));
    let d = a.authorize(
        "User:c",
        &roles(&["consumers"]),
        Topic,
        "payments.pii",
        Read,
    );
    assert!(d.rule.contains("policy.csv:1:"), "{}", d.rule);
}

#[test]
fn kafka_implications() {
    let (_d, a) = setup(
        "p, User:r, topic, t, Read, allow\n\
         p, User:w, topic, t, Write, allow\n\
         p, User:d, topic, t, Delete, allow\n\
         p, User:al, topic, t, Alter, allow\n\
         p, User:c, topic, t, Create, allow\n\
         p, User:ac, topic, t, AlterConfigs, allow\n\
         p, User:dc, topic, t, DescribeConfigs, allow\n\
         p, User:all, topic, t, All, allow\n\
         p, User:desc, topic, t, Describe, allow\n",
        &[],
    );
    for p in ["User:r", "User:w", "User:d", "User:al", "User:all"] {
        assert!(allowed(&a, p, &[], Topic, "t", Describe), "{p}");
    }
    assert!(!allowed(&a, "User:c", &[], Topic, "t", Describe));
    assert!(allowed(&a, "User:ac", &[], Topic, "t", DescribeConfigs));
    assert!(!allowed(&a, "User:ac", &[], Topic, "t", Describe));
    // Implications go one way only.
    assert!(!allowed(&a, "User:dc", &[], Topic, "t", AlterConfigs));
    assert!(!allowed(&a, "User:desc", &[], Topic, "t", Read));
    assert!(!allowed(&a, "User:r", &[], Topic, "t", Write));
    for op in Operation::ALL {
        assert!(allowed(&a, "User:all", &[], Topic, "t", op), "{op}");
    }
    assert!(!allowed(&a, "User:r", &[], Topic, "t", All));
}

#[test]
fn roles_from_request_and_policy_files() {
    let (_d, a) = setup(
        "p, Role:producers, topic, orders, Write, allow\n\
         g, User:alice, Role:producers\n\
         g, User:*, Role:everyone\n\
         p, Role:everyone, topic, public, Read, allow\n",
        &[],
    );
    assert!(allowed(
        &a,
        "User:svc",
        &["producers"],
        Topic,
        "orders",
        Write
    ));
    assert!(!allowed(
        &a,
        "User:svc",
        &["consumers"],
        Topic,
        "orders",
        Write
    ));
    assert!(allowed(&a, "User:alice", &[], Topic, "orders", Write));
    assert!(allowed(&a, "User:anyone", &[], Topic, "public", Read));
    // A role named like a principal does not act as that principal.
    assert!(!allowed(
        &a,
        "User:x",
        &["User:alice"],
        Topic,
        "orders",
        Write
    ));
}

#[test]
fn super_users_always_allowed() {
    let (_d, a) = setup("p, User:*, topic, *, All, deny\n", &["User:admin"]);
    for op in Operation::ALL {
        let d = a.authorize("User:admin", &[], Topic, "anything", op);
        assert!(d.allowed);
        assert_eq!(&*d.rule, "super-user User:admin");
    }
    assert!(
        a.authorize("User:admin", &[], Topic, "bad name ü", Read)
            .allowed
    );
    assert!(!allowed(&a, "User:admins", &[], Topic, "t", Read));
}

#[test]
fn invalid_names_never_reach_casbin() {
    let (_d, a) = setup(
        "p, User:alice, topic, *, Read, allow\n\
         p, User:alice, group, *, Read, allow\n\
         p, User:bob, topic, or*, Read, allow\n\
         p, User:bob, group, g*, Read, allow\n",
        &[],
    );
    for name in [
        "ordérs",
        "",
        "a b",
        "a/b",
        "örders",
        "日本",
        &"x".repeat(250),
    ] {
        assert!(!allowed(&a, "User:bob", &[], Topic, name, Read), "{name:?}");
        let d = a.authorize("User:bob", &[], Topic, name, Read);
        assert!(d.rule.starts_with("invalid topic name"), "{}", d.rule);
        // `*` rules still apply, decided outside casbin.
        assert!(
            allowed(&a, "User:alice", &[], Topic, name, Read),
            "{name:?}"
        );
    }
    assert!(allowed(&a, "User:bob", &[], Group, "g with spaces", Read));
    assert!(!allowed(&a, "User:bob", &[], Group, "gé", Read));
    assert!(allowed(&a, "User:alice", &[], Group, "gé", Read));
    assert!(
        !a.authorize("User:alicé", &roles(&["rôle", ""]), Topic, "t", Read)
            .allowed
    );
}

#[test]
fn explain_lists_every_matching_rule() {
    let (_d, a) = setup(
        "p, Role:consumers, topic, payments*, Read, allow\n\
         p, Role:consumers, topic, payments.pii, All, deny\n\
         p, User:c, topic, payments.pii, Describe, allow\n",
        &[],
    );
    let e = a.explain(
        "User:c",
        &roles(&["consumers"]),
        Topic,
        "payments.pii",
        Read,
    );
    assert!(!e.decision.allowed);
    assert_eq!(e.matching.len(), 2);
    assert!(e
        .decision
        .rule
        .contains(":2: p, Role:consumers, topic, payments.pii, All, deny"));
    let text = e.to_string();
    assert!(
        text.starts_with("DENY User:c Read topic:payments.pii"),
        "{text}"
    );
}

#[test]
fn load_rejects_bad_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let config = PolicyConfig::new(dir.path());
    write(dir.path(), "model.conf", MODEL);
    assert!(matches!(
        Authorizer::load(&config),
        Err(PolicyError::NoPolicies { .. })
    ));
    write(dir.path(), "a.csv", "p, User:a, topic, t, Read, allow\n");
    std::fs::remove_file(dir.path().join("model.conf")).unwrap();
    assert!(matches!(
        Authorizer::load(&config),
        Err(PolicyError::Model { .. })
    ));
    write(dir.path(), "model.conf", "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub\n");
    assert!(matches!(
        Authorizer::load(&config),
        Err(PolicyError::Model { .. })
    ));
    write(dir.path(), "model.conf", MODEL);
    write(
        dir.path(),
        "b.csv",
        "# ok\np, User:a, topic, t, Raed, allow\n",
    );
    let err = Authorizer::load(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2: unknown operation `Raed` (expected one of Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)", dir.path().join("b.csv").display())
    );
}

#[test]
fn check_reports_every_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "model.conf", MODEL);
    write(
        dir.path(),
        "a.csv",
        "p, User:a, topic, t, Read, allow\np, User:a, topic, t*t, Read, allow\n",
    );
    write(
        dir.path(),
        "b.csv",
        "p, User:a, queue, t, Read, allow\n\np, User:a, topic, t, Read, perhaps\n",
    );
    let errors = check_dir(dir.path()).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].contains("a.csv:2:"));
    assert!(shown[1].contains("b.csv:1:"));
    assert!(shown[2].contains("b.csv:3:"));
    let mut out = Vec::new();
    let ok = run(
        PolicyCommand::Check {
            dir: Some(dir.path().to_path_buf()),
        },
        Path::new("."),
        &mut out,
    )
    .unwrap();
    assert!(!ok);
    assert!(String::from_utf8(out).unwrap().contains("3 error(s)"));
}

#[test]
fn shipped_policies_are_valid_and_behave() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let summary = check_dir(&dir).unwrap();
    assert!(summary.rules > 10);
    let a = Authorizer::load(&PolicyConfig::new(&dir)).unwrap();
    assert!(allowed(
        &a,
        "User:checkout",
        &["producers"],
        Topic,
        "orders",
        Write
    ));
    assert!(allowed(
        &a,
        "User:ledger",
        &["consumers"],
        Topic,
        "payments",
        Read
    ));
    assert!(allowed(
        &a,
        "User:ledger",
        &["consumers"],
        Group,
        "orders-ledger",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:ledger",
        &["consumers"],
        Topic,
        "payments.pii",
        Read
    ));
    assert!(!allowed(
        &a,
        "User:ledger",
        &["consumers"],
        Topic,
        "orders",
        Write
    ));
    assert!(allowed(
        &a,
        "User:alice",
        &[],
        Topic,
        "analytics.clicks",
        Read
    ));
    assert!(!allowed(&a, "User:alice", &[], Topic, "payments.pii", Read));
    assert!(allowed(
        &a,
        "User:ops-bob",
        &[],
        Topic,
        "payments.pii",
        Read
    ));
    assert!(allowed(
        &a,
        "User:ops-bob",
        &[],
        Cluster,
        "kafka-cluster",
        AlterConfigs
    ));
    assert!(!allowed(&a, "User:ops-bob", &[], Topic, "orders", Delete));
    let mut out = Vec::new();
    let ok = run(
        PolicyCommand::Explain {
            principal: "User:alice".into(),
            roles: vec![],
            resource: "topic:orders".into(),
            operation: "Write".into(),
            dir: Some(dir.clone()),
            super_users: vec![],
        },
        Path::new("."),
        &mut out,
    )
    .unwrap();
    assert!(!ok);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("DENY User:alice Write topic:orders"));
}

#[test]
fn reload_keeps_last_good_policy_and_names_file_line() {
    let (d, a) = setup("p, User:a, topic, t, Read, allow\n", &[]);
    assert_eq!(a.generation(), 1);
    assert!(allowed(&a, "User:a", &[], Topic, "t", Read));
    write(
        d.path(),
        "policy.csv",
        "p, User:a, topic, t, Read, allow\n\np, User:a, topic, u, Reed, allow\n",
    );
    let ev = a.reload();
    assert!(!ev.accepted);
    assert_eq!(ev.generation, 1);
    assert_eq!(ev.rules, 1);
    match ev.error {
        Some(PolicyError::Invalid { file, line, .. }) => {
            assert_eq!(file, d.path().join("policy.csv"));
            assert_eq!(line, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(allowed(&a, "User:a", &[], Topic, "t", Read));
    assert_eq!(a.generation(), 1);
    write(d.path(), "policy.csv", "p, User:a, topic, u, Read, allow\n");
    let ev = a.reload();
    assert!(ev.accepted, "{ev:?}");
    assert_eq!(ev.generation, 2);
    assert_eq!(a.generation(), 2);
}

#[test]
fn a_failed_reload_degrades_and_deny_all_denies_everything_until_a_good_one() {
    for mode in [ReloadFailure::KeepLastGood, ReloadFailure::DenyAll] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "model.conf", MODEL);
        write(
            dir.path(),
            "policy.csv",
            "p, User:a, topic, t, Read, allow\n",
        );
        let config = PolicyConfig {
            super_users: vec!["User:root".to_string()],
            on_reload_failure: mode,
            ..PolicyConfig::new(dir.path())
        };
        let a = Authorizer::load(&config).unwrap();
        assert!(a.degraded().is_none());
        assert!(allowed(&a, "User:a", &[], Topic, "t", Read));

        write(
            dir.path(),
            "policy.csv",
            "p, User:a, topic, t, Reed, allow\n",
        );
        assert!(!a.reload().accepted);
        let degraded = a.degraded().expect("a failed reload is a degraded state");
        assert_eq!(degraded.mode, mode);
        assert_eq!(degraded.generation, 1);
        assert!(
            degraded.reason.contains("policy.csv"),
            "{}",
            degraded.reason
        );
        let deny_all = mode == ReloadFailure::DenyAll;
        assert_eq!(a.denies_all(), deny_all);
        assert_eq!(
            allowed(&a, "User:a", &[], Topic, "t", Read),
            !deny_all,
            "{mode:?}"
        );
        assert_eq!(
            allowed(&a, "User:root", &[], Topic, "t", Write),
            !deny_all,
            "{mode:?}"
        );
        if deny_all {
            let d = a.authorize("User:a", &[], Topic, "t", Read);
            assert!(d.rule.contains("deny_all"), "{}", d.rule);
        }

        write(
            dir.path(),
            "policy.csv",
            "p, User:a, topic, t, Read, allow\n",
        );
        assert!(a.reload().accepted);
        assert!(a.degraded().is_none());
        assert!(!a.denies_all());
        assert!(allowed(&a, "User:a", &[], Topic, "t", Read));
    }
}

#[test]
fn cache_is_not_stale_after_reload() {
    let (d, a) = setup("p, User:a, topic, t, Read, allow\n", &[]);
    let clone = a.clone();
    for _ in 0..3 {
        assert!(a.authorize("User:a", &[], Topic, "t", Read).allowed);
    }
    assert!(a.cached_decisions() >= 1);
    write(d.path(), "policy.csv", "p, User:a, topic, t, Read, deny\n");
    assert!(a.reload().accepted);
    assert!(!a.authorize("User:a", &[], Topic, "t", Read).allowed);
    assert!(!clone.authorize("User:a", &[], Topic, "t", Read).allowed);
    assert_eq!(a.cached_decisions(), 1);
}

#[test]
fn cache_stays_bounded() {
    let (_d, a) = setup("p, User:a, topic, t*, Read, allow\n", &[]);
    for i in 0..(crate::CACHE_CAPACITY + 10) {
        let _ = a.authorize("User:a", &[], Topic, &format!("t{i}"), Read);
    }
    assert!(a.cached_decisions() <= crate::CACHE_CAPACITY);
}

async fn wait_for(events: &Arc<Mutex<Vec<ReloadEvent>>>, n: usize, what: &str) -> ReloadEvent {
    let start = Instant::now();
    loop {
        if let Some(ev) = events.lock().unwrap().get(n - 1) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{what} took {:?}",
                start.elapsed()
            );
            return ev.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what} not seen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_edits_renames_additions_removals() {
    let (d, a) = setup("p, User:a, topic, t, Read, allow\n", &[]);
    let dir = d.path().to_path_buf();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let handle = a.spawn_watcher(move |ev| sink.lock().unwrap().push(ev));
    // No change, no event.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(events.lock().unwrap().is_empty());

    // Replace by rename (editors, Kubernetes).
    replace(&dir, "policy.csv", "p, User:a, topic, t, Write, allow\n");
    let ev = wait_for(&events, 1, "rename").await;
    assert!(ev.accepted && ev.generation == 2);
    assert!(a.authorize("User:a", &[], Topic, "t", Write).allowed);
    assert!(!a.authorize("User:a", &[], Topic, "t", Read).allowed);

    // Add a file.
    write(&dir, "extra.csv", "p, User:b, group, g, Read, allow\n");
    let ev = wait_for(&events, 2, "addition").await;
    assert!(ev.accepted && ev.files.len() == 2);
    assert!(a.authorize("User:b", &[], Group, "g", Read).allowed);

    // A broken file is rejected and the last good policy stays.
    write(&dir, "broken.csv", "p, User:c, topic, t, Fly, allow\n");
    let ev = wait_for(&events, 3, "broken file").await;
    assert!(!ev.accepted);
    assert!(ev
        .error
        .unwrap()
        .to_string()
        .contains("broken.csv:1: unknown operation"));
    assert_eq!(a.generation(), 3);
    assert!(a.authorize("User:b", &[], Group, "g", Read).allowed);

    // Remove files (the broken one and the extra one).
    std::fs::remove_file(dir.join("broken.csv")).unwrap();
    let ev = wait_for(&events, 4, "removal of broken").await;
    assert!(ev.accepted);
    std::fs::remove_file(dir.join("extra.csv")).unwrap();
    let ev = wait_for(&events, 5, "removal").await;
    assert!(ev.accepted && ev.files.len() == 1);
    assert!(!a.authorize("User:b", &[], Group, "g", Read).allowed);

    // A SIGHUP-style reload of unchanged content is not reported again by the watcher.
    let _ = a.reload();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(events.lock().unwrap().len(), 5);
    handle.abort();
}

#[tokio::test]
async fn load_and_reload_work_inside_a_runtime() {
    let (d, a) = setup("p, User:a, topic, t, Read, allow\n", &[]);
    write(
        d.path(),
        "policy.csv",
        "p, User:a, topic, t, Write, allow\n",
    );
    assert!(a.reload().accepted);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics(
        principal in any::<String>(),
        role in any::<String>(),
        name in any::<String>(),
        ascii in "[ -~]{0,20}",
        rt in 0usize..4,
        op in 0usize..11,
    ) {
        static AUTH: std::sync::OnceLock<(tempfile::TempDir, Authorizer)> = std::sync::OnceLock::new();
        let (_, a) = AUTH.get_or_init(|| setup(
            "p, User:*, topic, or*, Read, allow\n\
             p, Role:r, group, *, All, allow\n\
             p, User:*, transactional_id, tx*, Write, deny\n\
             p, User:*, cluster, kafka-cluster, Describe, allow\n",
            &[],
        ));
        let rt = ResourceType::ALL[rt];
        let op = Operation::ALL[op];
        let roles = vec![role.clone(), "r".to_string()];
        for n in [name.as_str(), ascii.as_str()] {
            let d = a.authorize(&principal, &roles, rt, n, op);
            let u = a.authorize_uncached(&principal, &roles, rt, n, op);
            prop_assert_eq!(d.allowed, u.allowed);
            let _ = a.explain(&principal, &roles, rt, n, op);
            if rt == ResourceType::Topic && !crate::rules::valid_topic_name(n) {
                prop_assert!(!d.allowed);
            }
        }
    }

    #[test]
    fn arbitrary_policy_lines_never_panic(line in any::<String>(), pattern in any::<String>()) {
        let _ = crate::rules::parse_file(Path::new("x.csv"), line.as_bytes());
        let text = format!("p, User:a, topic, {pattern}, Read, allow\n");
        if let Ok(parsed) = crate::rules::parse_file(Path::new("x.csv"), text.as_bytes()) {
            // Whatever the parser accepts is ASCII that casbin can match safely.
            for r in &parsed.rules {
                prop_assert!(r.pattern.to_string().is_ascii());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary (often unicode) patterns either fail to load with file:line or load and
    /// then decide arbitrary names without panicking.
    #[test]
    fn arbitrary_patterns_and_names(
        pattern in prop_oneof!["[ -~]{0,12}\\*?", any::<String>()],
        name in prop_oneof!["[A-Za-z0-9._-]{1,12}", any::<String>()],
        rt in 0usize..4,
    ) {
        let rt = ResourceType::ALL[rt];
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "model.conf", MODEL);
        write(dir.path(), "p.csv", &format!("p, User:*, {rt}, {pattern}, Read, allow\n"));
        match Authorizer::load(&PolicyConfig::new(dir.path())) {
            Ok(a) => {
                let d = a.authorize("User:x", &[], rt, &name, Read);
                if d.allowed && rt == ResourceType::Topic {
                    prop_assert!(crate::rules::valid_topic_name(&name) || pattern.trim() == "*");
                }
                let _ = a.explain("User:x", &[], rt, &name, Describe);
            }
            Err(PolicyError::Invalid { line, .. }) => prop_assert_eq!(line, 1),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}

#[test]
fn authorizer_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Authorizer>();
    check::<crate::Decision>();
    check::<ReloadEvent>();
    check::<PolicyError>();
}

/// Finding: group and transactional ids that are not printable ASCII, or longer than 1,024
/// bytes, used to be matched only against `*` rules, so a prefix or literal deny was skipped
/// and a `*` allow won. Deny rules now apply to every name; allows other than `*` still do
/// not apply to names casbin could not match (fail closed).
#[test]
fn deny_rules_apply_to_names_casbin_cannot_match() {
    let (_d, a) = setup(
        "p, User:*, group, *, All, allow\n\
         p, User:*, group, secret*, Read, deny\n\
         p, User:*, group, exact, All, deny\n\
         p, User:*, transactional_id, *, Write, allow\n\
         p, User:*, transactional_id, pay*, All, deny\n\
         p, Role:admin, topic, *, All, allow\n\
         p, User:*, topic, __portcullis*, All, deny\n",
        &[],
    );
    let long = format!("secret-{}", "x".repeat(2_000));
    for name in [
        "secret-é",
        "secret\n",
        "secret\u{0}",
        "secret日本",
        long.as_str(),
    ] {
        let d = a.authorize("User:x", &[], Group, name, Read);
        assert!(!d.allowed, "{name:?}: {}", d.rule);
        assert!(d.rule.contains("policy.csv:2:"), "{}", d.rule);
        assert!(!allowed(&a, "User:x", &[], Group, name, Read), "{name:?}");
        // The deny is of Read only; Describe stays allowed by `*`.
        assert!(
            allowed(&a, "User:x", &[], Group, name, Describe),
            "{name:?}"
        );
    }
    assert!(!allowed(&a, "User:x", &[], Group, "exact", Read));
    let long_tx = format!("pay{}", "\u{7f}".repeat(1_100));
    for name in ["payé", "pay\t1", long_tx.as_str()] {
        let d = a.authorize("User:x", &[], TransactionalId, name, Write);
        assert!(!d.allowed, "{name:?}: {}", d.rule);
        assert!(d.rule.contains("policy.csv:5:"), "{}", d.rule);
    }
    assert!(allowed(&a, "User:x", &[], TransactionalId, "tx-é", Write));
    for name in ["__portcullisé", "__portcullis anchor"] {
        assert!(
            !allowed(&a, "User:x", &["admin"], Topic, name, Read),
            "{name:?}"
        );
    }
    assert!(allowed(&a, "User:x", &["admin"], Topic, "ordérs", Read));
    let e = a.explain("User:x", &[], Group, "secret-é", Read);
    assert!(!e.decision.allowed);
    assert!(
        e.matching.iter().any(|m| m.contains("policy.csv:2:")),
        "{:?}",
        e.matching
    );
}
