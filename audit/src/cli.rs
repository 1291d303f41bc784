//! `portcullis audit ...` as a library: the clap subcommands and their implementation on a
//! stopped proxy's data directory ([`run`]); against a running proxy the same commands go
//! through its admin API ([`crate::remote::run_remote`]).
//!
//! The proxy binary owns argument parsing and the data-directory flag; it embeds
//! [`AuditCommand`] and calls [`run`]. The offline commands (`verify-proof`, `verify-export`)
//! never touch a data directory, so auditors can run them anywhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::anchor::SharedAnchor;
use crate::checkpoint::SignedCheckpoint;
use crate::event::{Category, Event, Outcome};
use crate::export::{export, verify_export, ExportFormat};
use crate::log::STORE_DIR;
use crate::note::VerifierKey;
use crate::read::{self, QueryFilter, ReadError};
use crate::sled_store::SledStore;
use crate::store::StoreError;
use crate::verify::{verify_store, ExternalCheckpoint, VerifyOptions, VerifyReport};

/// Output of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryOutput {
    /// Aligned columns for people.
    Table,
    /// One JSON event per line.
    Json,
}

fn parse_category(s: &str) -> Result<Category, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "expected connection, authn, authz, admin, config, key or audit-system".into())
}

fn parse_outcome(s: &str) -> Result<Outcome, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "expected allow, deny, success, failure or error".into())
}

/// The `audit` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Search the log.
    Query {
        /// Earliest timestamp (RFC 3339 or a prefix such as 2025-01-31).
        #[arg(long)]
        since: Option<String>,
        /// Latest timestamp, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Exact principal.
        #[arg(long)]
        principal: Option<String>,
        /// Category.
        #[arg(long, value_parser = parse_category)]
        category: Option<Category>,
        /// Action, or a prefix ending in `*`.
        #[arg(long)]
        action: Option<String>,
        /// Outcome.
        #[arg(long, value_parser = parse_outcome)]
        outcome: Option<Outcome>,
        /// Resource name or type:name.
        #[arg(long)]
        resource: Option<String>,
        /// Client address or a prefix of it.
        #[arg(long)]
        client_addr: Option<String>,
        /// Newest first (default oldest first).
        #[arg(long)]
        newest_first: bool,
        /// Most events shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: QueryOutput,
    },
    /// Print the last entries; with -f keep printing new ones.
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Follow the log.
        #[arg(short, long)]
        follow: bool,
    },
    /// Recompute the whole log and check every checkpoint.
    Verify {
        /// Check only what was appended after this saved checkpoint (and that it is still a
        /// prefix of the log: detects rollback).
        #[arg(long)]
        since_checkpoint: Option<PathBuf>,
        /// An anchor file of checkpoints published off the host.
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// The anchor topic on the upstream cluster (read with the upstream settings of
        /// `--config`).
        #[arg(long, value_name = "TOPIC")]
        anchor_topic: Option<String>,
        /// The notes read from `--anchor-topic` (filled in by the binary, which knows how to
        /// reach the cluster).
        #[arg(skip)]
        shared_anchor: Option<SharedAnchor>,
        /// Trusted verifier key(s); default: the log's first key.
        #[arg(long)]
        key: Vec<String>,
    },
    /// Write an inclusion proof for entry SEQ (entry + proof + signed checkpoint).
    Prove {
        /// The entry's sequence number.
        seq: u64,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check a proof file offline.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// Trusted verifier key(s).
        #[arg(long, required = true)]
        key: Vec<String>,
    },
    /// Export a range of entries with checkpoints and proofs into a directory.
    Export {
        /// Rendering.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// First sequence number.
        #[arg(long)]
        from: Option<u64>,
        /// One past the last sequence number (clamped to the latest checkpoint).
        #[arg(long)]
        to: Option<u64>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export directory offline.
    VerifyExport {
        /// The export directory.
        dir: PathBuf,
        /// Trusted verifier key(s).
        #[arg(long, required = true)]
        key: Vec<String>,
    },
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Print the current verifier key (with --all, every key the log has used).
    Pubkey {
        /// Every key, oldest first.
        #[arg(long)]
        all: bool,
    },
}

impl AuditCommand {
    /// Whether the command works on files alone (`verify-proof`, `verify-export`): no data
    /// directory and no running proxy needed.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            AuditCommand::VerifyProof { .. } | AuditCommand::VerifyExport { .. }
        )
    }
}

/// How a command ended, for the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCodeLike {
    /// Exit 0.
    Success,
    /// Exit 1: verification found problems.
    VerificationFailed,
}

impl ExitCodeLike {
    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            ExitCodeLike::Success => 0,
            ExitCodeLike::VerificationFailed => 1,
        }
    }
}

/// Why a command could not run (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Bad input (a key, a file).
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The admin API of a running proxy could not be used (see [`crate::remote`]).
    #[error("{0}")]
    Remote(String),
}

impl CliError {
    /// Whether the data directory is locked by a running proxy (use the admin API instead).
    pub fn is_locked(&self) -> bool {
        matches!(self, CliError::Store(StoreError::Locked(_)))
    }
}

pub(crate) fn parse_keys(keys: &[String]) -> Result<Vec<VerifierKey>, CliError> {
    keys.iter()
        .map(|k| {
            let text = if Path::new(k).is_file() {
                std::fs::read_to_string(k).map_err(|e| CliError::Input(format!("{k}: {e}")))?
            } else {
                k.clone()
            };
            VerifierKey::parse(text.trim()).map_err(|e| CliError::Input(format!("--key {k}: {e}")))
        })
        .collect()
}

/// Opens the store of a stopped proxy.
///
/// # Errors
///
/// [`CliError::Input`] if there is no log, [`StoreError::Locked`] if a proxy is running.
pub fn open_store(data_dir: &Path) -> Result<SledStore, CliError> {
    let dir = data_dir.join(STORE_DIR);
    if !dir.is_dir() {
        return Err(CliError::Input(format!(
            "no audit log in {}",
            data_dir.display()
        )));
    }
    Ok(SledStore::open(&dir)?)
}

/// Runs one command. `data_dir` is the proxy's data directory (unused by the offline
/// commands).
///
/// # Errors
///
/// [`CliError`] when the command cannot run; verification failures are
/// [`ExitCodeLike::VerificationFailed`] with the report written to `out`.
pub fn run(
    data_dir: &Path,
    cmd: AuditCommand,
    out: &mut dyn Write,
) -> Result<ExitCodeLike, CliError> {
    match cmd {
        AuditCommand::VerifyProof { file, key } => {
            let keys = parse_keys(&key)?;
            let json = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
            match read::verify_proof(&json, &keys) {
                Ok(ev) => {
                    writeln!(
                        out,
                        "OK: entry {} is in the log (signed checkpoint verified)",
                        ev.seq.unwrap_or(0)
                    )?;
                    writeln!(out, "{}", serde_json::to_string(&ev).unwrap_or_default())?;
                    Ok(ExitCodeLike::Success)
                }
                Err(e) => {
                    writeln!(out, "FAILED: {e}")?;
                    Ok(ExitCodeLike::VerificationFailed)
                }
            }
        }
        AuditCommand::VerifyExport { dir, key } => {
            let keys = parse_keys(&key)?;
            let report = verify_export(&dir, &keys);
            print_report(&report, out)
        }
        cmd => {
            let store = open_store(data_dir)?;
            run_on_store(&store, cmd, out)
        }
    }
}

fn run_on_store(
    store: &SledStore,
    cmd: AuditCommand,
    out: &mut dyn Write,
) -> Result<ExitCodeLike, CliError> {
    match cmd {
        AuditCommand::Query {
            since,
            until,
            principal,
            category,
            action,
            outcome,
            resource,
            client_addr,
            newest_first,
            limit,
            output,
        } => {
            let filter = QueryFilter {
                since,
                until,
                principal,
                category,
                action,
                outcome,
                resource,
                client_addr,
                newest_first,
                limit,
            };
            let events = read::query(store, &filter)?;
            match output {
                QueryOutput::Json => {
                    for e in &events {
                        writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default())?;
                    }
                }
                QueryOutput::Table => print_table(&events, out)?,
            }
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Tail { lines, follow } => {
            let mut last = None;
            for (seq, bytes) in read::tail(store, lines)? {
                out.write_all(&bytes)?;
                out.write_all(b"\n")?;
                last = Some(seq);
            }
            if !follow {
                return Ok(ExitCodeLike::Success);
            }
            loop {
                out.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(500));
                for (seq, bytes) in read::entries_after(store, last, 10_000)? {
                    out.write_all(&bytes)?;
                    out.write_all(b"\n")?;
                    last = Some(seq);
                }
            }
        }
        AuditCommand::Verify {
            since_checkpoint,
            anchor,
            anchor_topic: _,
            shared_anchor,
            key,
        } => {
            let mut opts = VerifyOptions {
                keys: parse_keys(&key)?,
                ..VerifyOptions::default()
            };
            if let Some(path) = since_checkpoint {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
                let checkpoint = SignedCheckpoint::parse(&text)
                    .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
                opts.since = Some(ExternalCheckpoint {
                    checkpoint,
                    source: path.display().to_string(),
                });
            }
            if let Some(path) = anchor {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
                for (i, cp) in crate::verify::parse_anchor(&text).into_iter().enumerate() {
                    let checkpoint = cp.map_err(|e| {
                        CliError::Input(format!("{} checkpoint {}: {e}", path.display(), i + 1))
                    })?;
                    opts.anchors.push(ExternalCheckpoint {
                        checkpoint,
                        source: format!("anchor {}", path.display()),
                    });
                }
            }
            if let Some(shared) = shared_anchor {
                let origin = crate::store::LogStore::meta(store, "origin")?;
                let (mine, others) = shared
                    .checkpoints_of(origin.as_deref())
                    .map_err(CliError::Input)?;
                writeln!(
                    out,
                    "{}: {} checkpoints of this log, {others} of other logs (ignored)",
                    shared.source,
                    mine.len()
                )?;
                opts.anchors.extend(mine);
            }
            let report = verify_store(store, &opts);
            print_report(&report, out)
        }
        AuditCommand::Prove { seq, out: file } => {
            let proof = read::prove(store, seq)?;
            let json =
                serde_json::to_string_pretty(&proof).map_err(|e| CliError::Input(e.to_string()))?;
            match file {
                Some(path) => {
                    std::fs::write(&path, json + "\n")?;
                    writeln!(
                        out,
                        "wrote inclusion proof of entry {seq} in tree size {} to {}",
                        proof.tree_size,
                        path.display()
                    )?;
                }
                None => writeln!(out, "{json}")?,
            }
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Export {
            format,
            from,
            to,
            out: dir,
        } => {
            let s = export(store, &dir, format, from, to)?;
            writeln!(
                out,
                "exported entries {}..{} with {} checkpoint(s) to {}",
                s.from,
                s.to,
                s.checkpoints,
                dir.display()
            )?;
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Checkpoint => {
            write!(out, "{}", read::latest_checkpoint(store)?)?;
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::Pubkey { all } => {
            let keys = read::verifier_keys(store)?;
            if all {
                for k in &keys {
                    writeln!(out, "{k}")?;
                }
            } else if let Some(k) = keys.last() {
                writeln!(out, "{k}")?;
            }
            Ok(ExitCodeLike::Success)
        }
        AuditCommand::VerifyProof { .. } | AuditCommand::VerifyExport { .. } => Err(
            CliError::Input("offline command routed to the store".into()),
        ),
    }
}

/// Writes a verification report for people and returns the exit status.
///
/// # Errors
///
/// I/O errors writing `out`.
pub fn print_report(report: &VerifyReport, out: &mut dyn Write) -> Result<ExitCodeLike, CliError> {
    for p in &report.problems {
        writeln!(out, "{p}")?;
    }
    writeln!(
        out,
        "entries: {} (recomputed {}), checkpoints checked: {}, latest verified checkpoint: {}",
        report.entries,
        report.entries_checked,
        report.checkpoints_checked,
        report
            .latest_verified
            .map_or("none".into(), |s| s.to_string())
    )?;
    if report.trust_on_first_key {
        writeln!(
            out,
            "note: trusting the log's first key (pin it with --key for assurance against a replaced log)"
        )?;
    }
    for k in &report.trusted_keys {
        writeln!(out, "trusted key: {k}")?;
    }
    if report.ok() {
        writeln!(out, "OK: the log verifies")?;
        Ok(ExitCodeLike::Success)
    } else {
        match report.first_bad_seq() {
            Some(seq) => writeln!(
                out,
                "FAILED: {} problem(s); first bad sequence number: {seq}",
                report.problems.len()
            )?,
            None => writeln!(out, "FAILED: {} problem(s)", report.problems.len())?,
        }
        Ok(ExitCodeLike::VerificationFailed)
    }
}

pub(crate) fn print_table(events: &[Event], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>8}  {:<24}  {:<12}  {:<28}  {:<8}  {:<16}  {:<21}  {:<24}  REASON",
        "SEQ", "TIME", "CATEGORY", "ACTION", "OUTCOME", "PRINCIPAL", "CLIENT", "RESOURCE"
    )?;
    for e in events {
        let resource = e
            .resource
            .as_ref()
            .map(|r| format!("{}:{}", r.resource_type, r.name))
            .unwrap_or_default();
        writeln!(
            out,
            "{:>8}  {:<24}  {:<12}  {:<28}  {:<8}  {:<16}  {:<21}  {:<24}  {}",
            e.seq.map_or("-".into(), |s| s.to_string()),
            e.timestamp,
            e.category.as_str(),
            e.action,
            e.outcome.as_str(),
            e.principal.as_deref().unwrap_or("-"),
            e.client_addr.as_deref().unwrap_or("-"),
            resource,
            e.reason.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}
