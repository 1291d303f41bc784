//! `audit export` and `audit verify-export`: a slice of the log that an auditor can check
//! offline with nothing but the public key.
//!
//! An export directory holds:
//!
//! - `entries.jsonl`: entries `from..to`, one per line, byte-for-byte as hashed;
//! - `leaf-hashes.txt`: the log's stored leaf hash of each entry (untrusted; used only to
//!   pinpoint an altered entry when they reproduce a signed root);
//! - `proofs.jsonl`: for each signed checkpoint that covers part of the slice, the checkpoint
//!   and a range proof (the hashes of the subtrees outside the slice);
//! - `keys.txt`: the log's verifier keys, for information (verification uses `--key`);
//! - `manifest.json`: origin, range, format;
//! - with `--format ocsf`, also `events.ocsf.jsonl` for SIEM ingestion (not verified).
//!
//! The directory is created private (mode 0700) or must be an existing empty directory (not
//! a link), and every file is created new (mode 0600, `create_new`): an export never writes
//! through a file or link another local user planted.

use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::event::Event;
use crate::key_chain::KeyChain;
use crate::merkle::{leaf_hash, range_proof, root_from_range, Hash};
use crate::note::VerifierKey;
use crate::read::ReadError;
use crate::store::{LogStore, StoredTree};
use crate::verify::{Problem, VerifyReport};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Entries as stored (JSON lines).
    Jsonl,
    /// Entries as stored plus an OCSF rendering.
    Ocsf,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format tag.
    pub format: String,
    /// The log's origin.
    pub origin: String,
    /// First exported sequence number.
    pub from: u64,
    /// One past the last exported sequence number.
    pub to: u64,
    /// `jsonl` or `ocsf`.
    pub rendering: ExportFormat,
}

/// One line of `proofs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeProofLine {
    /// The signed checkpoint.
    pub checkpoint: String,
    /// The part of the slice it covers: `from..to`.
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Base64 hashes.
    pub proof: Vec<String>,
}

const MANIFEST_FORMAT: &str = "portcullis-audit-export/v1";

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// First sequence number.
    pub from: u64,
    /// One past the last.
    pub to: u64,
    /// Checkpoints included.
    pub checkpoints: usize,
}

/// Creates the export directory `dir` with mode 0700 (parents as usual), or accepts an
/// existing empty directory that is not a link.
///
/// # Errors
///
/// The I/O error, or `AlreadyExists` when `dir` is a link, not a directory, or not empty.
pub fn create_export_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)?;
            let empty = meta.is_dir() && std::fs::read_dir(dir)?.next().is_none();
            if empty {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not an empty directory (choose a new export directory)",
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates `path` for writing: a new file (never an existing one or a link), mode 0600.
///
/// # Errors
///
/// The I/O error (`AlreadyExists` for anything already at `path`).
pub fn create_export_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Writes `contents` into the new file `path` ([`create_export_file`]).
fn write_new(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut file = create_export_file(path)?;
    file.write_all(contents.as_ref())?;
    file.flush()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReadError + '_ {
    move |e| ReadError::Unavailable(format!("{}: {e}", path.display()))
}

/// Exports entries `from..to` (clamped to the latest checkpoint) into `dir` (created).
///
/// # Errors
///
/// [`ReadError`] if nothing signed is in range, or on I/O and store errors.
pub fn export<S: LogStore + ?Sized>(
    store: &S,
    dir: &Path,
    format: ExportFormat,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<ExportSummary, ReadError> {
    let (latest, _) = store
        .latest_checkpoint()?
        .ok_or_else(|| ReadError::Unavailable("the log has no checkpoint yet".into()))?;
    let from = from.unwrap_or(0);
    let to = to.unwrap_or(latest).min(latest);
    if from >= to {
        return Err(ReadError::Unavailable(format!(
            "nothing signed to export in {from}..{to} (latest checkpoint covers {latest} entries)"
        )));
    }
    create_export_dir(dir).map_err(io(dir))?;
    let origin = store.meta("origin")?.unwrap_or_default();
    let tree = StoredTree(store);

    let path = dir.join("entries.jsonl");
    let mut entries = std::io::BufWriter::new(create_export_file(&path).map_err(io(&path))?);
    let ocsf_path = dir.join("events.ocsf.jsonl");
    let mut ocsf = match format {
        ExportFormat::Ocsf => Some(std::io::BufWriter::new(
            create_export_file(&ocsf_path).map_err(io(&ocsf_path))?,
        )),
        ExportFormat::Jsonl => None,
    };
    for item in store.entries(from, to, false) {
        let (_, bytes) = item?;
        entries
            .write_all(&bytes)
            .and_then(|()| entries.write_all(b"\n"))
            .map_err(io(&path))?;
        if let Some(w) = ocsf.as_mut() {
            if let Ok(ev) = serde_json::from_slice::<Event>(&bytes) {
                let line = serde_json::to_string(&crate::ocsf::to_ocsf(&ev))
                    .map_err(|e| ReadError::Unavailable(e.to_string()))?;
                writeln!(w, "{line}").map_err(io(&ocsf_path))?;
            }
        }
    }
    entries.flush().map_err(io(&path))?;
    if let Some(mut w) = ocsf {
        w.flush().map_err(io(&ocsf_path))?;
    }

    let path = dir.join("leaf-hashes.txt");
    let mut hashes = String::new();
    for item in store.leaf_hashes(from, to) {
        let (_, h) = item?;
        hashes.push_str(&B64.encode(h));
        hashes.push('\n');
    }
    write_new(&path, hashes).map_err(io(&path))?;

    let path = dir.join("proofs.jsonl");
    let mut proofs = String::new();
    let mut count = 0;
    for item in store.checkpoints() {
        let (size, note) = item?;
        if size <= from {
            continue;
        }
        let end = size.min(to);
        let proof = range_proof(&tree, from, end, size)?;
        let line = RangeProofLine {
            checkpoint: note,
            from,
            to: end,
            proof: proof.iter().map(|h| B64.encode(h)).collect(),
        };
        proofs.push_str(
            &serde_json::to_string(&line).map_err(|e| ReadError::Unavailable(e.to_string()))?,
        );
        proofs.push('\n');
        count += 1;
        if size >= to {
            break;
        }
    }
    write_new(&path, proofs).map_err(io(&path))?;

    let path = dir.join("keys.txt");
    write_new(&path, store.verifier_keys()?.join("\n") + "\n").map_err(io(&path))?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        origin,
        from,
        to,
        rendering: format,
    };
    let path = dir.join("manifest.json");
    write_new(
        &path,
        serde_json::to_string_pretty(&manifest)
            .map_err(|e| ReadError::Unavailable(e.to_string()))?,
    )
    .map_err(io(&path))?;
    Ok(ExportSummary {
        from,
        to,
        checkpoints: count,
    })
}

/// Verifies an export directory with only the trusted keys.
///
/// Never fails: every problem is in the report.
pub fn verify_export(dir: &Path, keys: &[VerifierKey]) -> VerifyReport {
    let mut report = VerifyReport {
        trusted_keys: keys.iter().map(ToString::to_string).collect(),
        ..VerifyReport::default()
    };
    if let Err(msg) = verify_export_inner(dir, keys, &mut report) {
        report.problems.push(Problem::Store(msg));
    }
    report
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

fn verify_export_inner(
    dir: &Path,
    keys: &[VerifierKey],
    report: &mut VerifyReport,
) -> Result<(), String> {
    let manifest: Manifest = serde_json::from_str(&read(dir, "manifest.json")?)
        .map_err(|e| format!("manifest.json: {e}"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!("unknown export format {:?}", manifest.format));
    }
    let from = manifest.from;
    let mut chain = KeyChain::new(keys.to_vec());
    let entries_text = read(dir, "entries.jsonl")?;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut expected = from;
    for (i, line) in entries_text.lines().enumerate() {
        let pos = from.saturating_add(i as u64);
        leaves.push(leaf_hash(line.as_bytes()));
        match serde_json::from_str::<Event>(line) {
            Ok(ev) => {
                match ev.seq {
                    Some(s) if s == expected => {}
                    Some(s) if s > expected => {
                        report.problems.push(Problem::EntryMissing {
                            seq: expected,
                            count: s - expected,
                        });
                        expected = s;
                    }
                    other => report.problems.push(Problem::EntryMalformed {
                        seq: pos,
                        reason: format!("its seq field is {other:?}, expected {expected}"),
                    }),
                }
                chain.observe(expected, &ev);
            }
            Err(e) => report.problems.push(Problem::EntryMalformed {
                seq: pos,
                reason: format!("not a valid event: {e}"),
            }),
        }
        expected = expected.saturating_add(1);
        report.entries_checked += 1;
    }
    report.entries = leaves.len() as u64;
    if from.saturating_add(report.entries) < manifest.to {
        report.problems.push(Problem::Truncated {
            entries: from.saturating_add(report.entries),
            checkpoint_size: manifest.to,
        });
    }
    let stored: Vec<Option<Hash>> = read(dir, "leaf-hashes.txt")
        .unwrap_or_default()
        .lines()
        .map(|l| B64.decode(l).ok().and_then(|b| b.try_into().ok()))
        .collect();

    let proofs = read(dir, "proofs.jsonl")?;
    let mut covered_to = from;
    let mut mismatch_reported = false;
    for line in proofs.lines() {
        let p: RangeProofLine =
            serde_json::from_str(line).map_err(|e| format!("proofs.jsonl: {e}"))?;
        let cp = match SignedCheckpoint::parse(&p.checkpoint) {
            Ok(cp) => cp,
            Err(e) => {
                report.problems.push(Problem::BadCheckpoint {
                    checkpoint_size: 0,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let size = cp.checkpoint.size;
        report.checkpoints_checked += 1;
        if cp.checkpoint.origin != manifest.origin {
            report.problems.push(Problem::BadCheckpoint {
                checkpoint_size: size,
                reason: format!(
                    "origin {:?} is not {:?}",
                    cp.checkpoint.origin, manifest.origin
                ),
            });
            continue;
        }
        if let Err(e) = cp.verify(chain.trusted()) {
            report.problems.push(Problem::BadSignature {
                checkpoint_size: size,
                reason: e.to_string(),
            });
            continue;
        }
        chain.covered(size);
        if p.from != from || p.to <= from || p.to > size {
            report.problems.push(Problem::BadCheckpoint {
                checkpoint_size: size,
                reason: format!("range proof for {}..{} does not fit", p.from, p.to),
            });
            continue;
        }
        let n = usize::try_from(p.to - from).unwrap_or(usize::MAX);
        let Some(slice) = leaves.get(..n) else {
            report.problems.push(Problem::Truncated {
                entries: from.saturating_add(leaves.len() as u64),
                checkpoint_size: p.to,
            });
            continue;
        };
        let proof: Vec<Hash> = p
            .proof
            .iter()
            .filter_map(|h| B64.decode(h).ok().and_then(|b| b.try_into().ok()))
            .collect();
        match root_from_range(from, p.to, size, slice, &proof) {
            Ok(root) if root == cp.checkpoint.root => {
                covered_to = covered_to.max(p.to);
                report.latest_verified = Some(size);
            }
            _ if mismatch_reported => {}
            _ => {
                mismatch_reported = true;
                // Pinpoint with the exported leaf hashes if they reproduce the signed root.
                let claimed: Option<Vec<Hash>> = stored
                    .get(..n)
                    .and_then(|s| s.iter().copied().collect::<Option<Vec<_>>>());
                let authentic = claimed
                    .as_ref()
                    .and_then(|c| root_from_range(from, p.to, size, c, &proof).ok())
                    .is_some_and(|r| r == cp.checkpoint.root);
                let mut named = false;
                if let (true, Some(c)) = (authentic, claimed) {
                    for (i, (a, b)) in slice.iter().zip(c.iter()).enumerate() {
                        if a != b {
                            named = true;
                            report.problems.push(Problem::EntryAltered {
                                seq: from.saturating_add(i as u64),
                                checkpoint_size: size,
                            });
                        }
                    }
                }
                if !named {
                    report.problems.push(Problem::RootMismatch {
                        checkpoint_size: size,
                        first_suspect: from,
                    });
                }
            }
        }
    }
    let end = from.saturating_add(report.entries);
    if covered_to < end && report.problems.is_empty() {
        report.problems.push(Problem::BadCheckpoint {
            checkpoint_size: covered_to,
            reason: format!(
                "entries {covered_to}..{end} are not covered by any verified checkpoint"
            ),
        });
    }
    report.trusted_keys = chain.trusted().iter().map(ToString::to_string).collect();
    Ok(())
}
