//! Decision cost at 10, 1,000, 10,000 and 100,000 policy lines, uncached (the rule index)
//! and cached, with the time to load and reload each policy (which includes building the
//! casbin enforcer that specifies the index). Run with
//! `cargo run --release -p portcullis-policy --example decision_bench`.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_policy::{Authorizer, Operation, PolicyConfig, ResourceType};

/// A small xorshift generator, so the benchmark needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const OPS: [Operation; 4] = [
    Operation::Read,
    Operation::Write,
    Operation::Describe,
    Operation::DescribeConfigs,
];

/// Teams in a policy of `lines` lines: 50 up to 10,000 lines, then one per 200 lines, so a
/// large estate has more teams rather than more lines per team.
fn teams(lines: usize) -> u64 {
    (lines as u64 / 200).max(50)
}

/// A realistic-looking estate: per-team topic prefixes and groups, per-service literal
/// topics, some denies.
fn policy(lines: usize, rng: &mut Rng) -> String {
    let mut out = String::new();
    let teams = teams(lines);
    for i in 0..lines {
        let team = rng.below(teams);
        let line = match i % 10 {
            0..=3 => format!(
                "p, Role:team{team}, topic, team{team}.t{}, Write, allow",
                rng.below(100)
            ),
            4..=5 => format!("p, Role:team{team}, topic, team{team}.*, Read, allow"),
            6 => format!("p, Role:team{team}, group, team{team}-*, Read, allow"),
            7 => format!(
                "p, User:svc{}, topic, team{team}.t{}, Read, allow",
                rng.below(teams * 10),
                rng.below(100)
            ),
            8 => format!(
                "p, User:svc{}, transactional_id, tx{}, Write, allow",
                rng.below(teams * 10),
                rng.below(100)
            ),
            _ => format!(
                "p, Role:team{team}, topic, team{team}.t{}.pii, All, deny",
                rng.below(100)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

struct Request {
    principal: String,
    roles: Vec<String>,
    resource: ResourceType,
    name: String,
    op: Operation,
}

fn request(rng: &mut Rng, teams: u64) -> Request {
    let team = rng.below(teams);
    let (resource, name) = match rng.below(10) {
        0 => (ResourceType::Group, format!("team{team}-consumer")),
        1 => (
            ResourceType::TransactionalId,
            format!("tx{}", rng.below(100)),
        ),
        _ => (
            ResourceType::Topic,
            format!("team{team}.t{}", rng.below(100)),
        ),
    };
    Request {
        principal: format!("User:svc{}", rng.below(teams * 10)),
        roles: vec![format!("team{team}"), format!("team{}", rng.below(teams))],
        resource,
        name,
        op: OPS[rng.below(OPS.len() as u64) as usize],
    }
}

fn measure(samples: usize, mut f: impl FnMut(usize) -> bool) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(samples);
    let mut allowed = 0;
    for i in 0..samples {
        let t = Instant::now();
        if std::hint::black_box(f(i)) {
            allowed += 1;
        }
        times.push(t.elapsed());
    }
    times.sort();
    (times, allowed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/model.conf");
    let model = std::fs::read_to_string(model_path)?;
    println!(
        "{:>7} | {:>8} | {:>10} {:>10} | {:>10} {:>10} | {:>7} | {:>9} {:>9}",
        "lines", "samples", "uncached", "", "cached", "", "allowed", "load", "reload"
    );
    println!(
        "{:>7} | {:>8} | {:>10} {:>10} | {:>10} {:>10} | {:>7} | {:>9} {:>9}",
        "", "", "p50", "p99", "p50", "p99", "", "", ""
    );
    for (lines, samples) in [
        (10usize, 20_000usize),
        (1_000, 20_000),
        (10_000, 20_000),
        (100_000, 20_000),
    ] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ lines as u64);
        let dir =
            std::env::temp_dir().join(format!("portcullis-bench-{}-{lines}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("model.conf"), &model)?;
        std::fs::write(dir.join("bench.csv"), policy(lines, &mut rng))?;
        let t = Instant::now();
        let auth = Authorizer::load(&PolicyConfig::new(&dir))?;
        let load = t.elapsed();
        let t = Instant::now();
        let reloaded = auth.reload();
        let reload = t.elapsed();
        assert!(reloaded.accepted);
        let requests: Vec<Request> = (0..samples)
            .map(|_| request(&mut rng, teams(lines)))
            .collect();

        let (uncached, allowed) = measure(samples, |i| {
            let r = &requests[i];
            auth.authorize_uncached(&r.principal, &r.roles, r.resource, &r.name, r.op)
                .allowed
        });
        // Warm the cache with 1,000 distinct requests, then look them up at random.
        let hot = &requests[..requests.len().min(1_000)];
        for r in hot {
            auth.authorize(&r.principal, &r.roles, r.resource, &r.name, r.op);
        }
        let picks: Vec<usize> = (0..100_000)
            .map(|_| rng.below(hot.len() as u64) as usize)
            .collect();
        let (cached, _) = measure(picks.len(), |i| {
            let r = &hot[picks[i]];
            auth.authorize(&r.principal, &r.roles, r.resource, &r.name, r.op)
                .allowed
        });
        println!(
            "{:>7} | {:>8} | {:>10} {:>10} | {:>10} {:>10} | {:>6.1}% | {:>9} {:>9}",
            lines,
            samples,
            fmt(percentile(&uncached, 0.5)),
            fmt(percentile(&uncached, 0.99)),
            fmt(percentile(&cached, 0.5)),
            fmt(percentile(&cached, 0.99)),
            100.0 * allowed as f64 / samples as f64,
            fmt(load),
            fmt(reload)
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
