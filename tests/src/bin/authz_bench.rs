//! `authz_bench`: what authorization costs on the data path.
//!
//! One broker, SCRAM-authenticated proxies in front of it: one without `[authorization]`
//! and one each with a policy of 10, 1,000, 10,000 and 100,000 lines (the bench
//! principal's grants come last, after rules for other teams). Each path produces and consumes `--records`
//! records of `--record-bytes` bytes and measures produce latency, in `--rounds` rounds of
//! alternating order; figures are medians and ratios are against the proxy without
//! authorization measured in the same run. Run it through `scripts/bench.sh --authz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use portcullis_tests::auth::{add_user, toml_str};
use portcullis_tests::bench::{parse_args, ratio, run_path, PathResult};
use portcullis_tests::broker::Broker;
use portcullis_tests::proxy::{Proxy, ProxyOptions};
use portcullis_tests::workspace_root;

/// A policy directory of `lines` rules: other teams' rules first, the bench grants last.
fn policy_dir(root: &Path, lines: usize) -> std::path::PathBuf {
    let dir = root.join(format!("policies-{lines}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        workspace_root().join("policies/model.conf"),
        dir.join("model.conf"),
    )
    .unwrap();
    let grants = [
        "p, Role:bench, topic, bench*, All, allow",
        "p, Role:bench, group, bench*, All, allow",
        "p, Role:bench, cluster, kafka-cluster, All, allow",
    ];
    let mut rules: Vec<String> = (0..lines.saturating_sub(grants.len()))
        .map(|i| {
            let (op, what) = match i % 3 {
                0 => ("Write", "topic"),
                1 => ("Read", "topic"),
                _ => ("Read", "group"),
            };
            format!("p, Role:team{i}, {what}, team{i}.events, {op}, allow")
        })
        .collect();
    rules.extend(grants.iter().map(|g| g.to_string()));
    std::fs::write(dir.join("bench.csv"), rules.join("\n") + "\n").unwrap();
    dir
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let scratch = tempfile::tempdir().unwrap();
    let users = scratch.path().join("users.toml");
    add_user(&users, "bench", "bench-secret", &["bench"]);
    let auth = format!(
        "[listener.auth]\nsasl_mechanisms = [\"SCRAM-SHA-512\"]\n\n[auth]\nusers_file = {}\n",
        toml_str(&users.to_string_lossy())
    );
    let broker = Broker::start();
    let start = |authz: String| {
        Proxy::start_with(
            &broker,
            ProxyOptions {
                log_level: "warn".into(),
                extra_toml: format!("{auth}{authz}"),
                ..ProxyOptions::default()
            },
        )
    };
    let mut proxies = vec![("authorization off".to_string(), start(String::new()))];
    for lines in [10, 1_000, 10_000, 100_000] {
        let dir = policy_dir(scratch.path(), lines);
        let authz = format!(
            "\n[authorization]\npolicy_dir = {}\n",
            toml_str(&dir.to_string_lossy())
        );
        proxies.push((format!("{lines} policy lines"), start(authz)));
    }
    eprintln!(
        "{} records of {} bytes per path, {} rounds",
        args.records, args.record_bytes, args.rounds
    );
    let mut results: Vec<Vec<PathResult>> = vec![Vec::new(); proxies.len()];
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..proxies.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, proxy) = &proxies[i];
            let ep = proxy
                .endpoint()
                .with_password("SCRAM-SHA-512", "bench", "bench-secret");
            let label = format!("{}-r{round}", name.replace(' ', "-"));
            results[i].push(run_path(&label, &ep, Some(proxy.pid()), &args).await);
        }
    }
    let medians: Vec<PathResult> = results.iter().map(|r| PathResult::median(r)).collect();
    let base = &medians[0];
    println!("| path | produce MB/s | ratio | consume MB/s | ratio | produce p50 ms | added | produce p99 ms | added | proxy CPU s/GB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((name, _), r) in proxies.iter().zip(&medians) {
        println!(
            "| {name} | {:.1} | {} | {:.1} | {} | {:.3} | {:+.3} | {:.3} | {:+.3} | {} |",
            r.produce_mb_s,
            ratio(r.produce_mb_s, base.produce_mb_s),
            r.consume_mb_s,
            ratio(r.consume_mb_s, base.consume_mb_s),
            r.p50_ms,
            r.p50_ms - base.p50_ms,
            r.p99_ms,
            r.p99_ms - base.p99_ms,
            r.cpu_s_per_gb.map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
}
