//! Produce: every batch of an encrypted topic decoded, its records encrypted, and the batch
//! re-encoded on its own with every header field (producer id and epoch, base sequence,
//! transactional flag, timestamps) and its codec kept. Control batches pass untouched.
//!
//! A partition whose records cannot be encrypted is taken out of the request and answered
//! with its error (see [`Failure::produce_code`]); the rest of the request goes on. Nothing
//! of a refused partition reaches the broker, so no plaintext is ever written.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use portcullis_crypto::KeyAccess;

use crate::codec::record_batch::{rewrite_batches_with, DecodedBatch};
use crate::config::encryption::{TopicPolicies, TopicPolicy};
use crate::pipeline::encryption::failure::{Failure, Refusal};
use crate::pipeline::encryption::in_place;
use crate::pipeline::encryption::records;
use portcullis_crypto::Keyring;

/// One Produce partition that was refused.
#[derive(Debug, Clone)]
pub struct RefusedPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition.
    pub partition: i32,
    /// Why.
    pub refusal: Refusal,
}

/// What encrypting a Produce request did.
#[derive(Debug, Default)]
pub struct Encrypted {
    /// Records encrypted.
    pub records: u64,
    /// Partitions taken out of the request.
    pub refused: Vec<RefusedPartition>,
}

/// A new DEK is needed: repeat with [`KeyAccess::Load`] where blocking is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsNewKey;

/// Whether `request` writes to any encrypted topic.
pub fn touches_encrypted(request: &ProduceRequest, policies: &TopicPolicies) -> bool {
    request
        .topic_data
        .iter()
        .any(|t| policies.of(&t.name).is_some())
}

/// What encrypting a request has used so far.
struct Progress {
    /// Records encrypted.
    records: u64,
    /// Bytes the encrypted records may still take (the request limit, less what the
    /// partitions before took).
    budget: usize,
}

/// The new `records` field of one partition, or why it is refused.
fn encrypt_partition(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    records: &Bytes,
    max_decompressed_bytes: usize,
    access: KeyAccess,
    progress: &mut Progress,
) -> Result<Result<Bytes, Refusal>, NeedsNewKey> {
    let mut needs_key = false;
    let limit = progress.budget;
    let count = &mut progress.records;
    let too_large = || {
        let detail =
            format!("encrypted records of {topic:?} would pass the limit of {limit} bytes");
        Refusal::new(Failure::TooLarge, detail)
    };
    let mut outcome = |result: Result<u64, Option<Refusal>>, written: usize| match result {
        Ok(_) if written > limit => Err(too_large()),
        Ok(n) => {
            *count += n;
            Ok(n > 0)
        }
        Err(Some(refusal)) => Err(refusal),
        Err(None) => {
            needs_key = true;
            Err(Refusal::new(Failure::KeyUnavailable, "needs a new DEK"))
        }
    };
    let growth = if policy.encrypt_headers {
        0
    } else {
        in_place::GROWTH_PER_RECORD
    };
    let result = rewrite_batches_with::<Refusal, _>(
        records,
        max_decompressed_bytes,
        growth,
        |batch, out| {
            let sealed = if policy.encrypt_headers {
                encrypt_records(keyring, topic, policy, batch, access).and_then(|n| {
                    if n > 0 {
                        batch.encode(out).map_err(|e| Some(e.into()))?;
                    }
                    Ok(n)
                })
            } else {
                in_place::seal_batch(keyring, topic, batch, access, out)
            };
            outcome(sealed, out.len())
        },
    );
    if needs_key {
        return Err(NeedsNewKey);
    }
    if let Ok(bytes) = &result {
        progress.budget = progress.budget.saturating_sub(bytes.len());
    }
    Ok(result)
}

/// Encrypts the records of `batch` one by one (value and header values); how many changed.
fn encrypt_records(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    batch: &mut DecodedBatch,
    access: KeyAccess,
) -> Result<u64, Option<Refusal>> {
    let mut changed = 0;
    for record in &mut batch.records {
        changed += u64::from(records::encrypt(keyring, topic, policy, record, access)?);
    }
    Ok(changed)
}

/// Encrypts every partition of `request` that writes to an encrypted topic. The request is
/// changed only when this returns `Ok`: with [`KeyAccess::CachedOnly`] and no usable DEK in
/// memory it returns [`NeedsNewKey`] and leaves `request` as it was.
pub fn encrypt_produce(
    keyring: &Keyring,
    policies: &TopicPolicies,
    request: &mut ProduceRequest,
    max_decompressed_bytes: usize,
    access: KeyAccess,
) -> Result<Encrypted, NeedsNewKey> {
    let mut done = Encrypted::default();
    let mut progress = Progress {
        records: 0,
        budget: max_decompressed_bytes,
    };
    let mut updates: Vec<(usize, usize, Result<Bytes, Refusal>)> = Vec::new();
    for (ti, topic) in request.topic_data.iter().enumerate() {
        let Some(policy) = policies.of(&topic.name) else {
            continue;
        };
        for (pi, partition) in topic.partition_data.iter().enumerate() {
            let Some(records) = &partition.records else {
                continue;
            };
            let outcome = encrypt_partition(
                keyring,
                &topic.name,
                policy,
                records,
                max_decompressed_bytes,
                access,
                &mut progress,
            )?;
            updates.push((ti, pi, outcome));
        }
    }
    for (ti, pi, outcome) in updates.into_iter().rev() {
        let Some(topic) = request.topic_data.get_mut(ti) else {
            continue;
        };
        match outcome {
            Ok(records) => {
                if let Some(p) = topic.partition_data.get_mut(pi) {
                    p.records = Some(records);
                }
            }
            Err(refusal) => {
                if pi < topic.partition_data.len() {
                    let p = topic.partition_data.remove(pi);
                    done.refused.push(RefusedPartition {
                        topic: topic.name.clone(),
                        partition: p.index,
                        refusal,
                    });
                }
            }
        }
    }
    request.topic_data.retain(|t| !t.partition_data.is_empty());
    done.refused.reverse();
    done.records = progress.records;
    Ok(done)
}

/// The Produce answer entries of refused partitions.
pub fn refused_topics(refused: &[RefusedPartition]) -> Vec<TopicProduceResponse> {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for r in refused {
        let partition = PartitionProduceResponse::default()
            .with_index(r.partition)
            .with_error_code(r.refusal.failure.produce_code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(StrBytes::from_string(format!(
                "refused by the encryption proxy: {}",
                r.refusal.failure.label()
            ))));
        match topics.iter_mut().find(|t| t.name == r.topic) {
            Some(t) => t.partition_responses.push(partition),
            None => topics.push(
                TopicProduceResponse::default()
                    .with_name(r.topic.clone())
                    .with_partition_responses(vec![partition]),
            ),
        }
    }
    topics
}

/// A whole Produce answered locally: every partition refused.
pub fn refused_answer(refused: &[RefusedPartition]) -> ProduceResponse {
    ProduceResponse::default().with_responses(refused_topics(refused))
}
