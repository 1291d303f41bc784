//! Caps on metric label values that a client controls.
//!
//! A label such as a principal or a resource name comes from the network: one request
//! naming 50,000 topics would otherwise create 50,000 series, and `/metrics` (and the
//! recorder's memory) would grow without bound. A [`LabelCap`] admits at most `cap`
//! distinct values, first come first served; every further value is reported as [`OTHER`].
//!
//! Values are never forgotten, deliberately: the exporter keeps every series it has seen,
//! so admitting a new value after forgetting an old one would grow `/metrics` again. The
//! exporter's idle timeout (`PrometheusBuilder::idle_timeout`) is not used either: it
//! expires by metric kind, and the per-api counters and histograms whose handles are
//! registered once and cached (`metrics::for_api`) would silently stop being reported
//! after an idle spell. The caps bound the series instead.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// The label value that stands for every value beyond a cap.
pub const OTHER: &str = "other";

/// At most this many distinct principals label the authorization decision counter.
pub const MAX_PRINCIPAL_LABELS: usize = 1_000;

/// At most this many distinct resource names label the authorization decision counter.
pub const MAX_RESOURCE_LABELS: usize = 1_000;

/// At most this many distinct (principal, resource) pairs label the authorization decision
/// counter; beyond it a new pair is reported with the resource [`OTHER`].
pub const MAX_DECISION_PAIRS: usize = 10_000;

/// The principals that label metrics.
pub static PRINCIPAL_LABELS: LazyLock<LabelCap> =
    LazyLock::new(|| LabelCap::new(MAX_PRINCIPAL_LABELS));

/// The resource names that label metrics.
pub static RESOURCE_LABELS: LazyLock<LabelCap> =
    LazyLock::new(|| LabelCap::new(MAX_RESOURCE_LABELS));

/// The (principal, resource) label pairs of the authorization decision counter.
pub static DECISION_PAIRS: LazyLock<LabelCap> = LazyLock::new(|| LabelCap::new(MAX_DECISION_PAIRS));

/// The (principal, resource) labels of one authorization decision, each capped, and the
/// pair capped too, so the decision counter has at most about
/// [`MAX_DECISION_PAIRS`] + [`MAX_PRINCIPAL_LABELS`] + 1 label pairs.
pub fn decision_labels(principal: &str, resource: &str) -> (String, String) {
    let principal = PRINCIPAL_LABELS.label(principal);
    let resource = RESOURCE_LABELS.label(resource);
    if resource == OTHER {
        return (principal, resource);
    }
    let pair = format!("{principal}\u{0}{resource}");
    if DECISION_PAIRS.label(&pair) == OTHER {
        return (principal, OTHER.to_owned());
    }
    (principal, resource)
}

/// A bounded set of label values.
#[derive(Debug)]
pub struct LabelCap {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    /// A set admitting at most `cap` values.
    pub fn new(cap: usize) -> LabelCap {
        LabelCap {
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label to report for `value`: the value itself if it is known or there is room
    /// for it, else [`OTHER`].
    pub fn label(&self, value: &str) -> String {
        // A poisoned lock only means another thread panicked while holding it; the set is
        // still a valid set.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if value == OTHER || seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() >= self.cap {
            return OTHER.to_owned();
        }
        seen.insert(value.to_owned());
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn five_thousand_names_give_at_most_cap_plus_one_values() {
        let cap = LabelCap::new(MAX_RESOURCE_LABELS);
        let labels: HashSet<String> = (0..5_000)
            .map(|i| cap.label(&format!("topic-{i}")))
            .collect();
        assert_eq!(labels.len(), MAX_RESOURCE_LABELS + 1);
        assert!(labels.contains(OTHER));
        // Names admitted first keep their own label.
        assert_eq!(cap.label("topic-0"), "topic-0");
        assert_eq!(cap.label("topic-4999"), OTHER);
    }

    #[test]
    fn decision_labels_stay_bounded() {
        let pairs: HashSet<(String, String)> = (0..5_000)
            .map(|i| decision_labels(&format!("User:u{i}"), &format!("t{i}")))
            .collect();
        let principals: HashSet<&String> = pairs.iter().map(|(p, _)| p).collect();
        let resources: HashSet<&String> = pairs.iter().map(|(_, r)| r).collect();
        assert!(principals.len() <= MAX_PRINCIPAL_LABELS + 1);
        assert!(resources.len() <= MAX_RESOURCE_LABELS + 1);
    }
}
