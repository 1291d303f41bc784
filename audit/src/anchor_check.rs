//! Checking what the anchors hold when the log opens.
//!
//! The log refuses to open if it is shorter than a checkpoint an anchor holds for it
//! (rollback). An anchor such as the proxy's Kafka topic can be written by others than the
//! proxy, so a note found there is trusted only if it is signed by one of the keys this
//! log has used (the store remembers every one, rotations included): otherwise anyone able
//! to write the topic could stop the proxy from starting with one forged note. A note of
//! this log's origin that does not verify is not trusted and not a reason to refuse: it is
//! returned as an [`UnverifiedNote`] for the caller to report (log, metric, audit event).
//!
//! An empty log (a new one, or a data directory deleted and started over) has no history
//! to verify against; for it every note of its origin counts, as before, so a deleted data
//! directory is still refused when the anchor holds checkpoints for its origin (start
//! with a new `origin` if the notes are known to be forged).

use std::sync::Arc;

use crate::anchor::Anchor;
use crate::log::OpenError;
use crate::note::VerifierKey;

/// Unverified notes kept for the report (the count covers every one).
pub const MAX_REPORTED_NOTES: usize = 64;

/// A note of this log's origin, in an anchor, that none of the log's keys signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedNote {
    /// [`Anchor::describe`] of where it was found.
    pub anchor: String,
    /// The tree size the note claims.
    pub size: u64,
    /// Why it is not trusted.
    pub reason: String,
}

/// What the anchors held that was not trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorFindings {
    /// The first [`MAX_REPORTED_NOTES`] unverified notes.
    pub unverified: Vec<UnverifiedNote>,
    /// How many unverified notes there were in all.
    pub unverified_total: usize,
}

/// Checks every anchor's notes of `origin` against a log of `log_size` entries whose keys
/// are `keys`.
///
/// # Errors
///
/// [`OpenError::Anchor`] when an anchor cannot be read; [`OpenError::Damaged`] when a
/// trusted note covers more entries than the log has.
pub fn check_anchors(
    anchors: &[Arc<dyn Anchor>],
    origin: &str,
    keys: &[VerifierKey],
    log_size: u64,
) -> Result<AnchorFindings, OpenError> {
    let mut findings = AnchorFindings::default();
    for anchor in anchors {
        let mut latest: Option<u64> = None;
        for note in anchor.checkpoints()?.into_iter().filter_map(Result::ok) {
            if note.checkpoint.origin != origin {
                continue;
            }
            let size = note.checkpoint.size;
            if log_size > 0 {
                if let Err(e) = note.verify(keys) {
                    findings.unverified_total += 1;
                    if findings.unverified.len() < MAX_REPORTED_NOTES {
                        findings.unverified.push(UnverifiedNote {
                            anchor: anchor.describe(),
                            size,
                            reason: e.to_string(),
                        });
                    }
                    continue;
                }
            }
            latest = latest.max(Some(size));
        }
        if let Some(size) = latest.filter(|s| *s > log_size) {
            return Err(OpenError::Damaged(format!(
                "the log has {log_size} entries but the {} holds a checkpoint of size {size}",
                anchor.describe(),
            )));
        }
    }
    Ok(findings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::anchor::FileAnchor;
    use crate::checkpoint::Checkpoint;
    use crate::note::Signer;

    const ORIGIN: &str = "test.example/log";

    fn note(signer: &Signer, size: u64) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: [size as u8; 32],
        }
        .sign(signer)
    }

    fn anchor_with(dir: &std::path::Path, notes: &[String]) -> Arc<dyn Anchor> {
        let anchor = FileAnchor::new(dir.join("cp"));
        for n in notes {
            anchor.publish(n).unwrap();
        }
        Arc::new(anchor)
    }

    #[test]
    fn a_forged_note_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let ours = Signer::generate(ORIGIN).unwrap();
        let forger = Signer::generate(ORIGIN).unwrap();
        let anchors = [anchor_with(
            dir.path(),
            &[note(&ours, 5), note(&forger, 1_000_000), note(&ours, 8)],
        )];
        let keys = [ours.verifier().clone()];
        let findings = check_anchors(&anchors, ORIGIN, &keys, 10).unwrap();
        assert_eq!(findings.unverified_total, 1);
        assert_eq!(findings.unverified[0].size, 1_000_000);
        // A genuine note beyond the log is still a rollback.
        let err = check_anchors(&anchors, ORIGIN, &keys, 7).unwrap_err();
        assert!(err.to_string().contains("size 8"), "{err}");
    }

    #[test]
    fn an_empty_log_trusts_every_note_of_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let old = Signer::generate(ORIGIN).unwrap();
        let anchors = [anchor_with(dir.path(), &[note(&old, 4)])];
        let fresh = Signer::generate(ORIGIN).unwrap();
        let err = check_anchors(&anchors, ORIGIN, &[fresh.verifier().clone()], 0).unwrap_err();
        assert!(err.to_string().contains("size 4"), "{err}");
    }
}
