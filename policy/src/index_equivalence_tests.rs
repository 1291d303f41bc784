//! The property that lets the rule index replace casbin on the decision path: over random
//! policies (subjects, roles by `g` lines, allow and deny, `*`, literal and prefix patterns,
//! every resource type and operation) and random requests, the index allows exactly what
//! casbin's model allows, and names the same deciding rule as a scan of the rules in file
//! order. Names casbin must not see are checked against the scan alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::compiled::CompiledPolicy;
use crate::dir_snapshot::DirSnapshot;
use crate::resource::{Operation, ResourceType};
use crate::rules::{self, Effect, Pattern};

const MODEL: &str = include_str!("../../policies/model.conf");

fn compile(policy: &str) -> CompiledPolicy {
    let snapshot = DirSnapshot {
        model_path: PathBuf::from("model.conf"),
        model: Ok(MODEL.as_bytes().to_vec()),
        files: vec![(PathBuf::from("p.csv"), Ok(policy.as_bytes().to_vec()))],
    };
    match CompiledPolicy::from_snapshot(Path::new("."), &snapshot, &[], 1) {
        Ok(c) => c,
        Err(e) => panic!("generated policy rejected: {e:?}\n{policy}"),
    }
}

/// The decision the index must reproduce, by a scan of every rule in file order.
fn scan(
    c: &CompiledPolicy,
    principal: &str,
    roles: &[String],
    rt: ResourceType,
    name: &str,
    op: Operation,
) -> (bool, String) {
    let subjects = c.subjects(principal, roles);
    let valid = rules::valid_resource_name(rt, name);
    let first = |effect: Effect| {
        c.rules.iter().find(|r| {
            r.effect == effect
                && (effect == Effect::Deny || valid || r.pattern == Pattern::Any)
                && r.matches(&subjects, rt, name, op)
        })
    };
    if let Some(r) = first(Effect::Deny) {
        return (false, r.origin.to_string());
    }
    first(Effect::Allow).map_or((false, String::new()), |r| (true, r.origin.to_string()))
}

/// Vocabularies are small and skewed so that rules often collide on the same subject,
/// resource type and operation, where first-in-file-order and nesting matter.
fn subject() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["User:a", "Role:r1"]),
        1 => prop::sample::select(vec![
            "User:a", "User:b", "User:*", "Role:r1", "Role:r2", "Role:User:a",
        ]),
    ]
    .prop_map(str::to_string)
}

fn resource_type() -> impl Strategy<Value = ResourceType> {
    prop_oneof![
        3 => Just(ResourceType::Topic),
        1 => prop::sample::select(ResourceType::ALL.to_vec()),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => prop::sample::select(vec![Operation::Read, Operation::Describe, Operation::All]),
        2 => prop::sample::select(Operation::ALL.to_vec()),
    ]
}

fn pattern(rt: ResourceType) -> BoxedStrategy<String> {
    if rt == ResourceType::Cluster {
        prop::sample::select(vec!["kafka-cluster", "*"])
            .prop_map(str::to_string)
            .boxed()
    } else {
        prop_oneof![
            1 => Just("*".to_string()),
            3 => "[ab.-]{1,3}",
            3 => "[ab.-]{1,3}\\*",
        ]
        .boxed()
    }
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (subject(), resource_type(), operation(), any::<bool>()).prop_flat_map(
            |(s, rt, op, allow)| {
                pattern(rt).prop_map(move |p| {
                    let effect = if allow { "allow" } else { "deny" };
                    format!("p, {s}, {rt}, {p}, {op}, {effect}")
                })
            }
        ),
        1 => (
            prop::sample::select(vec!["User:a", "User:b", "User:*"]),
            prop::sample::select(vec!["Role:r1", "Role:r2", "Role:r3"]),
        )
            .prop_map(|(u, r)| format!("g, {u}, {r}")),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[ab.-]{0,4}",
        1 => Just("kafka-cluster".to_string()),
        2 => "[ab.é\n -]{0,5}",
        1 => "[ab]{1,2}".prop_map(|p| format!("{p}{}", "b".repeat(1_100))),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    principal: String,
    roles: Vec<String>,
    rt: ResourceType,
    name: String,
    op: Operation,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["User:a", "User:b", "User:c", "User:*", "Role:r1"]),
        prop::collection::vec(prop::sample::select(vec!["r1", "r2", "r3", "User:a"]), 0..3),
        resource_type(),
        name(),
        operation(),
    )
        .prop_map(|(p, roles, rt, name, op)| Request {
            principal: p.to_string(),
            roles: roles.into_iter().map(str::to_string).collect(),
            rt,
            name,
            op,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn index_decides_exactly_as_casbin(
        lines in prop::collection::vec(line(), 0..60),
        requests in prop::collection::vec(request(), 1..60),
    ) {
        let policy = lines.join("\n");
        let c = compile(&policy);
        for r in &requests {
            let d = c.decide(&r.principal, &r.roles, r.rt, &r.name, r.op);
            if let Some(casbin) = c.casbin_allows(&r.principal, &r.roles, r.rt, &r.name, r.op) {
                prop_assert_eq!(d.allowed, casbin.unwrap(), "casbin disagrees on {:?} with\n{}", r, policy);
            }
            let (allowed, origin) = scan(&c, &r.principal, &r.roles, r.rt, &r.name, r.op);
            prop_assert_eq!(d.allowed, allowed, "scan disagrees on {:?} with\n{}", r, policy);
            if !origin.is_empty() {
                prop_assert!(d.rule.starts_with(&origin), "{:?}: {} vs {}", r, d.rule, origin);
            } else if rules::valid_resource_name(r.rt, &r.name) {
                prop_assert_eq!(&*d.rule, "default deny: no rule matched");
            }
        }
    }
}
