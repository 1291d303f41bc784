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

/// Decrypts the records of `records` (one partition of `topic`).
fn decrypt_partition(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    records: &Bytes,
    max_decompressed_bytes: usize,
    count: &mut u64,
) -> PartitionOutcome {
    let mut out = BytesMut::with_capacity(records.len());
    let mut changed = false;
    let mut served_any = false;
    for piece in split_batches(records) {
        let failure = match piece {
            Err(e) => Err((-1, Refusal::from(e))),
            Ok(BatchPiece::Records(raw)) => {
                let offset = raw.header().base_offset;
                decrypt_batch(keyring, topic, policy, &raw, max_decompressed_bytes, &mut out)
                    .map(|n| {
                        *count += n;
                        changed = true;
                    })
                    .map_err(|r| (offset, r))
            }
            Ok(BatchPiece::Legacy { bytes, .. }) if policy.require_encryption => Err((
                -1,
                Refusal::new(
                    Failure::LegacyFormat,
                    format!("a magic 0/1 message set in topic {topic:?}, which requires encryption ({} bytes)", bytes.len()),
                ),
            )),
            Ok(piece) => {
                out.put_slice(piece.bytes());
                Ok(())
            }
        };
        match failure {
            Ok(()) => served_any = true,
            Err(_) if served_any => {
                // Serve the batches before it; the next Fetch starts at this one.
                return PartitionOutcome::Rewritten(out.freeze());
            }
            Err((offset, refusal)) => return PartitionOutcome::Refused(offset, refusal),
        }
    }
    if changed {
        PartitionOutcome::Rewritten(out.freeze())
    } else {
        PartitionOutcome::Unchanged
    }
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
