//! The authorization decision counter (`portcullis_authz_decisions_total`), kept by the proxy
//! itself so that its series, labelled with names clients choose, are both capped and
//! expired when idle.
//!
//! Why not the `metrics` recorder: its exporter can only expire series by metric kind, which
//! would also silently drop the per-api counters whose handles are cached for the life of the
//! process. Here a series is a counter shared by the connections that use it; it is dropped
//! when no connection holds it and it has not moved for [`IDLE_EXPIRY`], and its labels free
//! their places under the caps (first come first served: [`MAX_PRINCIPAL_LABELS`]
//! principals, [`MAX_RESOURCE_LABELS`] resource names, [`MAX_DECISION_PAIRS`] pairs; beyond
//! them a value is counted as [`OTHER`]). `/metrics` renders it after the recorder's metrics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The label value that stands for every value beyond a cap.
pub const OTHER: &str = "other";

/// At most this many distinct principals label the counter at once.
pub const MAX_PRINCIPAL_LABELS: usize = 1_000;

/// At most this many distinct resource names label the counter at once.
pub const MAX_RESOURCE_LABELS: usize = 1_000;

/// At most this many distinct (principal, resource) pairs label the counter at once; beyond
/// it a new pair is counted with the resource [`OTHER`].
pub const MAX_DECISION_PAIRS: usize = 10_000;

/// The metric's name.
pub const NAME: &str = "portcullis_authz_decisions_total";

/// A series no connection holds is dropped after this long without a decision.
pub const IDLE_EXPIRY: Duration = Duration::from_secs(600);

/// One series: a count of decisions and when it last moved.
#[derive(Debug)]
pub struct Series {
    count: AtomicU64,
    /// Milliseconds since the registry's start when it last moved.
    touched_ms: AtomicU64,
}

impl Series {
    /// Counts `n` decisions.
    pub fn increment(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.touched_ms.store(now_ms(), Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    principal: String,
    resource_type: &'static str,
    resource: String,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Default)]
struct Registry {
    series: HashMap<Key, Arc<Series>>,
    /// How many series use each label value (a value's place under its cap is freed at 0).
    principals: HashMap<String, usize>,
    resources: HashMap<String, usize>,
    pairs: HashMap<(String, String), usize>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The series of one decision (labels capped), created if needed. Hold it and
/// [`Series::increment`] it for every decision with the same labels.
pub fn series(
    principal: &str,
    resource_type: &'static str,
    resource: &str,
    operation: &'static str,
    allowed: bool,
) -> Arc<Series> {
    let mut r = registry();
    let (principal, resource) = r.labels(principal, resource);
    let key = Key {
        principal,
        resource_type,
        resource,
        operation,
        outcome: if allowed { "allow" } else { "deny" },
    };
    if let Some(s) = r.series.get(&key) {
        return s.clone();
    }
    let s = Arc::new(Series {
        count: AtomicU64::new(0),
        touched_ms: AtomicU64::new(now_ms()),
    });
    r.adopt(&key, 1);
    r.series.insert(key, s.clone());
    s
}

impl Registry {
    /// The labels for (principal, resource): each value itself if it is known or there is
    /// room under its cap, else [`OTHER`]; the resource is [`OTHER`] too when the pair has
    /// no room.
    fn labels(&self, principal: &str, resource: &str) -> (String, String) {
        let fits = |m: &HashMap<String, usize>, v: &str, cap: usize| {
            v == OTHER || m.contains_key(v) || m.len() < cap
        };
        let p = if fits(&self.principals, principal, MAX_PRINCIPAL_LABELS) {
            principal
        } else {
            OTHER
        };
        let mut r = if fits(&self.resources, resource, MAX_RESOURCE_LABELS) {
            resource
        } else {
            OTHER
        };
        if r != OTHER
            && !self.pairs.contains_key(&(p.to_owned(), r.to_owned()))
            && self.pairs.len() >= MAX_DECISION_PAIRS
        {
            r = OTHER;
        }
        (p.to_owned(), r.to_owned())
    }

    /// Adds (`+1`) or removes (`-1`) one use of `key`'s label values.
    fn adopt(&mut self, key: &Key, delta: isize) {
        fn bump<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K, delta: isize) {
            let n = m.entry(k).or_insert(0);
            *n = n.saturating_add_signed(delta);
            m.retain(|_, n| *n > 0);
        }
        bump(&mut self.principals, key.principal.clone(), delta);
        bump(&mut self.resources, key.resource.clone(), delta);
        bump(
            &mut self.pairs,
            (key.principal.clone(), key.resource.clone()),
            delta,
        );
    }

    /// Drops the series no connection holds that have not moved for `idle`.
    fn expire(&mut self, idle: Duration) {
        let now = now_ms();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let gone: Vec<Key> = self
            .series
            .iter()
            .filter(|(_, s)| {
                Arc::strong_count(s) == 1
                    && now.saturating_sub(s.touched_ms.load(Ordering::Relaxed)) >= idle_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.series.remove(&key);
            self.adopt(&key, -1);
        }
    }
}

/// Appends the counter in the Prometheus text format to `out`, after dropping idle series.
pub fn render(out: &mut String) {
    let mut r = registry();
    r.expire(IDLE_EXPIRY);
    if r.series.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {NAME} counter");
    for (k, s) in &r.series {
        let _ = writeln!(
            out,
            "{NAME}{{principal=\"{}\",resource_type=\"{}\",resource=\"{}\",operation=\"{}\",outcome=\"{}\"}} {}",
            escape(&k.principal),
            k.resource_type,
            escape(&k.resource),
            k.operation,
            k.outcome,
            s.count.load(Ordering::Relaxed)
        );
    }
}

/// A label value escaped for the text format (backslash, double quote, line feed).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_capped_and_idle_ones_expire_and_free_their_places() {
        let mut held = Vec::new();
        for i in 0..(MAX_RESOURCE_LABELS + 50) {
            held.push(series(
                "User:cap",
                "topic",
                &format!("cap-{i}"),
                "Read",
                true,
            ));
        }
        let mut text = String::new();
        render(&mut text);
        let lines = text.lines().filter(|l| l.contains("User:cap")).count();
        assert!(lines <= MAX_RESOURCE_LABELS + 1, "{lines} series");
        assert!(text.contains("resource=\"other\""));
        // Held series never expire; released and idle ones do, and free their places.
        registry().expire(Duration::ZERO);
        assert!(registry().series.len() >= MAX_RESOURCE_LABELS);
        drop(held);
        registry().expire(Duration::ZERO);
        assert!(registry().series.keys().all(|k| k.principal != "User:cap"));
        assert!(!registry().resources.contains_key("cap-0"));
        let fresh = series("User:cap", "topic", "after-expiry", "Read", true);
        let mut text = String::new();
        render(&mut text);
        assert!(text.contains("resource=\"after-expiry\""), "{text}");
        drop(fresh);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let s = series("User:\"q\"", "group", "g\n1", "Read", false);
        s.increment(1);
        let mut text = String::new();
        render(&mut text);
        assert!(text.contains("principal=\"User:\\\"q\\\"\""), "{text}");
        assert!(text.contains("resource=\"g\\n1\""), "{text}");
    }
}
