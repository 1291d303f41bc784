//! Fetch: every batch of an encrypted topic decrypted and re-encoded on its own; control,
//! empty and truncated pieces passed through as their original bytes.
//!
//! A partition is served up to its first batch that cannot be decrypted (an unknown or
//! shredded DEK, a value that does not authenticate, plaintext on a topic that requires
//! encryption): the batches before it are delivered, so the consumer advances exactly to
//! the bad record, and the next Fetch, which starts there, gets the partition's error
//! ([`Failure::fetch_code`]). Other partitions and topics of the same response are served
//! normally; the connection stays open.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;
use portcullis_crypto::Keyring;

use crate::codec::record_batch::{split_batches, BatchPiece};
use crate::config::encryption::{TopicPolicies, TopicPolicy};
use crate::pipeline::encryption::failure::{Failure, Refusal};
use crate::pipeline::encryption::in_place;

/// A partition refused on Fetch.
#[derive(Debug, Clone)]
pub struct RefusedFetch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the first batch that could not be served (the consumer's position).
    pub offset: i64,
    /// Why.
    pub refusal: Refusal,
}

/// What decrypting a Fetch response did.
#[derive(Debug, Default)]
pub struct Decrypted {
    /// Whether the response changed (re-encode it).
    pub changed: bool,
    /// Records decrypted.
    pub records: u64,
    /// Partitions answered with an error.
    pub refused: Vec<RefusedFetch>,
}

/// What became of one partition's records.
enum PartitionOutcome {
    /// Nothing to change.
    Unchanged,
    /// New records (possibly only a prefix of the batches).
    Rewritten(Bytes),
    /// The first batch could not be served.
    Refused(i64, Refusal),
}

/// A partition's records at least this long per thread are decrypted on several threads
/// at once: a Fetch answer is decrypted whole before it is forwarded, so its decryption
/// time is latency every consumer waits for, and the other cores are usually idle then.
const BYTES_PER_THREAD: usize = 1024 * 1024;
/// At most this many threads decrypt one partition's records.
const MAX_THREADS: usize = 4;

/// The decrypting context of one partition.
#[derive(Clone, Copy)]
struct Partition<'a> {
    keyring: &'a Keyring,
    topic: &'a str,
    policy: TopicPolicy,
    max_decompressed_bytes: usize,
}

/// What decrypting a run of consecutive pieces did.
#[derive(Default)]
struct Run {
    /// Records decrypted.
    records: u64,
    /// Whether any batch was re-encoded.
    changed: bool,
    /// Whether any piece was appended before the failure (or at all).
    served_any: bool,
    /// The first piece that could not be served, and its offset (-1 where unknown).
    failure: Option<(i64, Refusal)>,
}

/// Decrypts the records of `records` (one partition of `topic`): the batches in order, on
/// up to [`MAX_THREADS`] threads (contiguous runs of batches each, joined in order).
fn decrypt_partition(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    records: &Bytes,
    max_decompressed_bytes: usize,
    count: &mut u64,
) -> PartitionOutcome {
    let partition = Partition {
        keyring,
        topic,
        policy,
        max_decompressed_bytes,
    };
    let pieces: Vec<Result<BatchPiece, Refusal>> = split_batches(records)
        .map(|p| p.map_err(Refusal::from))
        .collect();
    let runs = split_runs(&pieces, records.len());
    let mut out = BytesMut::with_capacity(records.len());
    let mut total = Run::default();
    for (run, bytes) in decrypt_runs(partition, &runs, &mut out) {
        if let Some(bytes) = bytes {
            out.put_slice(&bytes);
        }
        total.records += run.records;
        total.changed |= run.changed;
        total.served_any |= run.served_any;
        if run.failure.is_some() {
            total.failure = run.failure;
            break;
        }
    }
    *count += total.records;
    match total.failure {
        // Serve the batches before it; the next Fetch starts at this one.
        Some(_) if total.served_any => PartitionOutcome::Rewritten(out.freeze()),
        Some((offset, refusal)) => PartitionOutcome::Refused(offset, refusal),
        None if total.changed => PartitionOutcome::Rewritten(out.freeze()),
        None => PartitionOutcome::Unchanged,
    }
}

/// `pieces` cut into contiguous runs of about equal bytes, one per thread.
fn split_runs(
    pieces: &[Result<BatchPiece, Refusal>],
    total_bytes: usize,
) -> Vec<&[Result<BatchPiece, Refusal>]> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = (total_bytes / BYTES_PER_THREAD)
        .min(cores)
        .min(MAX_THREADS)
        .min(pieces.len())
        .max(1);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0);
    for (i, piece) in pieces.iter().enumerate() {
        acc += piece.as_ref().map_or(0, |p| p.bytes().len());
        if acc * threads >= total_bytes * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(&pieces[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&pieces[start..]);
    runs
}

/// Decrypts each run: the first into `out` on this thread, the others on scoped threads
/// into their own buffers (returned with their runs, in order).
fn decrypt_runs(
    partition: Partition<'_>,
    runs: &[&[Result<BatchPiece, Refusal>]],
    out: &mut BytesMut,
) -> Vec<(Run, Option<BytesMut>)> {
    let Some((first, rest)) = runs.split_first() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = rest
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let len = run
                        .iter()
                        .map(|p| p.as_ref().map_or(0, |p| p.bytes().len()))
                        .sum();
                    let mut buf = BytesMut::with_capacity(len);
                    let done = decrypt_pieces(partition, run, &mut buf);
                    (done, Some(buf))
                })
            })
            .collect();
        let mut done = vec![(decrypt_pieces(partition, first, out), None)];
        for handle in others {
            match handle.join() {
                Ok(run) => done.push(run),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    })
}

/// Decrypts consecutive `pieces` into `out`, stopping at the first that cannot be served.
fn decrypt_pieces(
    p: Partition<'_>,
    pieces: &[Result<BatchPiece, Refusal>],
    out: &mut BytesMut,
) -> Run {
    let mut run = Run::default();
    for piece in pieces {
        let result = match piece {
            Err(refusal) => Err((-1, refusal.clone())),
            Ok(BatchPiece::Records(raw)) => {
                let offset = raw.header().base_offset;
                decrypt_batch(p.keyring, p.topic, p.policy, raw, p.max_decompressed_bytes, out)
                    .map(|n| {
                        run.records += n;
                        run.changed = true;
                    })
                    .map_err(|r| (offset, r))
            }
            Ok(BatchPiece::Legacy { bytes, .. }) if p.policy.require_encryption => Err((
                -1,
                Refusal::new(
                    Failure::LegacyFormat,
                    format!("a magic 0/1 message set in topic {:?}, which requires encryption ({} bytes)", p.topic, bytes.len()),
                ),
            )),
            Ok(piece) => {
                out.put_slice(piece.bytes());
                Ok(())
            }
        };
        match result {
            Ok(()) => run.served_any = true,
            Err(failure) => {
                run.failure = Some(failure);
                return run;
            }
        }
    }
    run
}

/// Decodes one batch, decrypts its records and appends its new encoding to `out` (its
/// original bytes if nothing in it was encrypted); returns the number of records decrypted.
/// On error `out` is as it was.
fn decrypt_batch(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    raw: &crate::codec::record_batch::RawBatch,
    max_decompressed_bytes: usize,
    out: &mut BytesMut,
) -> Result<u64, Refusal> {
    let batch = raw.decode(max_decompressed_bytes)?;
    let decrypted = in_place::open_batch(keyring, topic, policy, &batch, out)?;
    if decrypted == 0 {
        out.put_slice(raw.bytes());
    }
    Ok(decrypted)
}

/// Decrypts every partition of an encrypted topic in `response`.
pub fn decrypt_fetch(
    keyring: &Keyring,
    policies: &TopicPolicies,
    response: &mut FetchResponse,
    max_decompressed_bytes: usize,
) -> Decrypted {
    let mut done = Decrypted::default();
    for topic in &mut response.responses {
        let Some(policy) = policies.of(&topic.topic) else {
            continue;
        };
        for partition in &mut topic.partitions {
            let Some(records) = &partition.records else {
                continue;
            };
            if partition.error_code != 0 || records.is_empty() {
                continue;
            }
            match decrypt_partition(
                keyring,
                &topic.topic,
                policy,
                records,
                max_decompressed_bytes,
                &mut done.records,
            ) {
                PartitionOutcome::Unchanged => {}
                PartitionOutcome::Rewritten(bytes) => {
                    partition.records = Some(bytes);
                    done.changed = true;
                }
                PartitionOutcome::Refused(offset, refusal) => {
                    partition.error_code = refusal.failure.fetch_code();
                    // Empty, not null: clients refuse a null record set (librdkafka:
                    // "invalid MessageSetSize -1"); brokers send empty ones with errors.
                    partition.records = Some(Bytes::new());
                    partition.aborted_transactions = None;
                    done.changed = true;
                    done.refused.push(RefusedFetch {
                        topic: topic.topic.to_string(),
                        partition: partition.partition_index,
                        offset,
                        refusal,
                    });
                }
            }
        }
    }
    done
}
