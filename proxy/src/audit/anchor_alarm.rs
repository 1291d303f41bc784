//! Alarms about the anchor topic raised at start-up: notes that claim to be this log's but
//! that it did not sign, and a topic that lost this log's checkpoints.
//!
//! Neither stops the proxy (a forged note must not be a way to stop it, and a topic the
//! cluster lost is not the proxy host's fault), but neither may pass in silence: each is
//! logged at error level, counted in `portcullis_audit_anchor_alarms_total{kind}` and
//! recorded as an `audit-system` event.
//!
//! "Lost" needs to know that checkpoints were anchored before: the publisher writes a
//! marker file (`anchor-topic.published` in the audit data directory, naming the topic and
//! the origin) once the first checkpoint is on the cluster. A topic found missing, or with
//! no note of this log's origin, while the marker names it, is the alarm.

use std::path::{Path, PathBuf};

use portcullis_audit::anchor_check::AnchorFindings;
use portcullis_audit::{AuditSink, Category, Event, Outcome};

use crate::audit::kafka_anchor::KafkaAnchor;
use crate::metrics::AUDIT_ANCHOR_ALARMS;

/// The marker file in the audit data directory.
pub const MARKER_FILE: &str = "anchor-topic.published";

/// The audit action of an unverified note.
pub const UNVERIFIED_ACTION: &str = "audit.anchor.unverified";
/// The audit action of a lost anchor topic.
pub const MISSING_ACTION: &str = "audit.anchor.missing";

/// Where the marker of `data_dir` lives.
pub fn marker_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER_FILE)
}

fn marker_text(topic: &str, origin: &str) -> String {
    format!("topic {topic}\norigin {origin}\n")
}

/// Records that checkpoints of `origin` were anchored in `topic` (a failure is logged: the
/// only cost is a missed alarm later).
pub fn write_marker(path: &Path, topic: &str, origin: &str) {
    let text = marker_text(topic, origin);
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return;
    }
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the anchor marker");
    }
}

/// Whether the marker says checkpoints of `origin` were anchored in `topic` before.
pub fn anchored_before(path: &Path, topic: &str, origin: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t == marker_text(topic, origin))
}

/// Raises the alarms the start-up found: unverified notes in any anchor, and the Kafka
/// anchor topic missing or without this log's notes although `anchored_before`.
pub fn report(
    audit: &dyn AuditSink,
    findings: &AnchorFindings,
    kafka: Option<&KafkaAnchor>,
    anchored_before: bool,
) {
    if findings.unverified_total > 0 {
        let sizes: Vec<u64> = findings.unverified.iter().map(|n| n.size).collect();
        let anchors: Vec<&str> = findings
            .unverified
            .iter()
            .map(|n| n.anchor.as_str())
            .collect();
        let first_reason = findings
            .unverified
            .first()
            .map(|n| n.reason.clone())
            .unwrap_or_default();
        tracing::error!(
            notes = findings.unverified_total,
            anchors = ?anchors,
            claimed_sizes = ?sizes,
            reason = %first_reason,
            "anchor notes claiming this audit log's origin are not signed by any of its keys: forged, or from a key this data directory never had; they are ignored"
        );
        metrics::counter!(AUDIT_ANCHOR_ALARMS, "kind" => "unverified").increment(1);
        audit.emit(
            Event::new(Category::AuditSystem, UNVERIFIED_ACTION, Outcome::Failure)
                .reason(format!(
                    "{} anchor note(s) of this log's origin not signed by its keys: {first_reason}",
                    findings.unverified_total
                ))
                .detail("notes", findings.unverified_total as u64)
                .detail("claimed_sizes", sizes)
                .detail("anchors", anchors),
        );
    }
    let Some(kafka) = kafka else {
        return;
    };
    let reading = kafka.at_open();
    if anchored_before && (reading.created || reading.notes.is_empty()) {
        let what = if reading.created {
            "the anchor topic did not exist (it was created again)"
        } else {
            "the anchor topic holds no checkpoint of this log"
        };
        tracing::error!(
            topic = kafka.topic(),
            records = reading.records,
            "{what}, but checkpoints were anchored there before: rollback detection has lost its reference"
        );
        metrics::counter!(AUDIT_ANCHOR_ALARMS, "kind" => "missing").increment(1);
        audit.emit(
            Event::new(Category::AuditSystem, MISSING_ACTION, Outcome::Failure)
                .reason(format!(
                    "{what}, but checkpoints were anchored there before"
                ))
                .detail("topic", kafka.topic().to_string())
                .detail("records", reading.records)
                .detail("created", reading.created),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_topic_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = marker_path(dir.path());
        assert!(!anchored_before(&path, "t", "o"));
        write_marker(&path, "t", "o");
        assert!(anchored_before(&path, "t", "o"));
        assert!(!anchored_before(&path, "other", "o"));
        assert!(!anchored_before(&path, "t", "other"));
    }
}
