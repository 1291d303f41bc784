//! Anchors: places outside the proxy host where every signed checkpoint is published, so a
//! restored older copy of the data directory (rollback) or a rewritten history is caught by
//! comparing the log with checkpoints its host cannot take back.
//!
//! An [`Anchor`] is written by the sequencer after each checkpoint is durable in the store,
//! and read at start-up (the log refuses to open if it is shorter than the latest anchored
//! checkpoint) and by `audit verify --anchor`. [`FileAnchor`] appends to a file (a separate
//! volume or WORM mount). Other anchors (the proxy's Kafka topic on the upstream cluster, a
//! transparency witness) implement the same trait outside this crate and are passed to
//! [`AuditLog::open_with_anchors`](crate::AuditLog::open_with_anchors).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::SignedCheckpoint;
use crate::verify::ExternalCheckpoint;

/// Why an anchor could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{anchor}: {reason}")]
pub struct AnchorError {
    /// [`Anchor::describe`] of the anchor.
    pub anchor: String,
    /// What went wrong.
    pub reason: String,
}

/// A place signed checkpoints are published to.
///
/// `publish` runs on the sequencer thread after the checkpoint is fsynced in the store; an
/// implementation that talks to the network should hand the note to its own task and return
/// (a slow anchor must not stall auditing). A failed publish is logged and counted by the
/// caller; the log keeps working (the checkpoint is in the store and the next one covers it).
pub trait Anchor: Send + Sync + 'static {
    /// A short description for logs and reports (`anchor file /mnt/worm/cp`).
    fn describe(&self) -> String;

    /// Publishes one signed checkpoint note.
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when it could not be published.
    fn publish(&self, note: &str) -> Result<(), AnchorError>;

    /// Every checkpoint published so far, oldest first; entries that do not parse are `Err`
    /// (reported by `verify`, never trusted).
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when the anchor cannot be read at all.
    fn checkpoints(&self) -> Result<Vec<Result<SignedCheckpoint, String>>, AnchorError>;

    /// The published checkpoint with the largest tree size, if any.
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when the anchor cannot be read.
    fn latest(&self) -> Result<Option<SignedCheckpoint>, AnchorError> {
        Ok(self
            .checkpoints()?
            .into_iter()
            .filter_map(Result::ok)
            .max_by_key(|c| c.checkpoint.size))
    }

    /// [`latest`](Anchor::latest) among the checkpoints of the log named `origin` (an anchor
    /// such as a Kafka topic may be shared by several proxies).
    ///
    /// # Errors
    ///
    /// [`AnchorError`] when the anchor cannot be read.
    fn latest_of(&self, origin: &str) -> Result<Option<SignedCheckpoint>, AnchorError> {
        Ok(self
            .checkpoints()?
            .into_iter()
            .filter_map(Result::ok)
            .filter(|c| c.checkpoint.origin == origin)
            .max_by_key(|c| c.checkpoint.size))
    }
}

/// Notes read from an anchor that several logs may share (the proxy's Kafka topic), for
/// `audit verify`: only the checkpoints of the log being verified are checked against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedAnchor {
    /// Where the notes came from (`anchor topic NAME`).
    pub source: String,
    /// Every note read, oldest first, with where it sits in the source (`offset 17`).
    pub notes: Vec<(String, String)>,
}

impl SharedAnchor {
    /// The checkpoints of the log named `origin` (every checkpoint when `origin` is `None`)
    /// and how many notes belonged to other logs.
    ///
    /// # Errors
    ///
    /// A message naming the first note that is not a signed checkpoint: something other than
    /// a proxy wrote to the anchor, which verification reports rather than skips.
    pub fn checkpoints_of(
        &self,
        origin: Option<&str>,
    ) -> Result<(Vec<ExternalCheckpoint>, usize), String> {
        let mut mine = Vec::new();
        let mut others = 0;
        for (at, note) in &self.notes {
            let checkpoint = SignedCheckpoint::parse(note)
                .map_err(|e| format!("{} {at}: not a signed checkpoint: {e}", self.source))?;
            if origin.is_some_and(|o| o != checkpoint.checkpoint.origin) {
                others += 1;
                continue;
            }
            mine.push(ExternalCheckpoint {
                checkpoint,
                source: format!("{} {at}", self.source),
            });
        }
        Ok((mine, others))
    }
}

/// Checkpoints appended to a file, one signed note after another, each synced.
#[derive(Debug, Clone)]
pub struct FileAnchor {
    path: PathBuf,
}

impl FileAnchor {
    /// An anchor file at `path` (created on the first publish).
    pub fn new(path: impl Into<PathBuf>) -> FileAnchor {
        FileAnchor { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: impl std::fmt::Display) -> AnchorError {
        AnchorError {
            anchor: self.describe(),
            reason: e.to_string(),
        }
    }
}

impl Anchor for FileAnchor {
    fn describe(&self) -> String {
        format!("anchor file {}", self.path.display())
    }

    fn publish(&self, note: &str) -> Result<(), AnchorError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        f.write_all(note.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_data())
            .map_err(|e| self.error(e))
    }

    fn checkpoints(&self) -> Result<Vec<Result<SignedCheckpoint, String>>, AnchorError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(crate::verify::parse_anchor(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::Signer;

    #[test]
    fn file_anchor_round_trips_and_picks_the_largest() {
        let dir = tempfile::tempdir().unwrap();
        let anchor = FileAnchor::new(dir.path().join("cp"));
        assert!(anchor.latest().unwrap().is_none());
        let signer = Signer::generate("test.example/log").unwrap();
        for size in [3u64, 9, 5] {
            let cp = Checkpoint {
                origin: "test.example/log".into(),
                size,
                root: [size as u8; 32],
            };
            anchor.publish(&cp.sign(&signer)).unwrap();
        }
        assert_eq!(anchor.checkpoints().unwrap().len(), 3);
        assert_eq!(anchor.latest().unwrap().unwrap().checkpoint.size, 9);
        assert_eq!(
            anchor
                .latest_of("test.example/log")
                .unwrap()
                .unwrap()
                .checkpoint
                .size,
            9
        );
        assert!(anchor.latest_of("other.example/log").unwrap().is_none());
    }

    #[test]
    fn a_shared_anchor_keeps_this_logs_checkpoints_and_reports_junk() {
        let note = |origin: &str, size: u64| {
            let signer = Signer::generate(origin).unwrap();
            Checkpoint {
                origin: origin.into(),
                size,
                root: [1; 32],
            }
            .sign(&signer)
        };
        let mut shared = SharedAnchor {
            source: "anchor topic t".into(),
            notes: vec![
                ("offset 0".into(), note("a.example/log", 1)),
                ("offset 1".into(), note("b.example/log", 7)),
                ("offset 2".into(), note("a.example/log", 2)),
            ],
        };
        let (mine, others) = shared.checkpoints_of(Some("a.example/log")).unwrap();
        assert_eq!(others, 1);
        let sizes: Vec<u64> = mine.iter().map(|c| c.checkpoint.checkpoint.size).collect();
        assert_eq!(sizes, [1, 2]);
        assert_eq!(mine[1].source, "anchor topic t offset 2");
        assert_eq!(shared.checkpoints_of(None).unwrap().0.len(), 3);
        shared.notes.push(("offset 3".into(), "junk".into()));
        let err = shared.checkpoints_of(Some("a.example/log")).unwrap_err();
        assert!(err.contains("offset 3"), "{err}");
    }
}
