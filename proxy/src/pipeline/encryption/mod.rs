//! The encryption stage: record values (and, per topic, header values) encrypted on
//! Produce before they reach the broker, decrypted on Fetch before they reach the client.
//!
//! Which topics, and how, comes from `[encryption]` (`config::encryption`); the keys and
//! the record format from `portcullis-crypto`. The stage sits after authorization (only
//! authorized data is encrypted, and the authorization fix sees the broker's answer before
//! this stage touches it) and before address rewriting.
//!
//! Failures are per partition, never per response or connection: a Produce partition that
//! cannot be encrypted is taken out of the request and answered with its error; a Fetch
//! partition whose records cannot be decrypted is answered with its error from the first
//! bad batch on. Each refusal is counted (`portcullis_encryption_failures_total{op,
//! reason}`) and audited (category `key`, actions `record.encrypt` / `record.decrypt`).
//!
//! Blocking: the keyring's registry is on disk (sled, fsynced writes) and its root key may
//! be remote. The stage first works with the keys in memory only
//! ([`KeyAccess::CachedOnly`], pure computation); a Produce that needs a new DEK is redone
//! on a blocking thread (`Step::Pending` + `spawn_blocking`), and a Fetch that names a DEK
//! not yet in memory loads it under `block_in_place` (responses have no pending step). Both
//! happen about once per DEK per process. The keyring writes a new DEK to the registry
//! (flushed) before returning it, so the DEK is durable before the first record sealed
//! with it is forwarded.

mod failure;
mod fetch;
mod in_place;
mod produce;
mod records;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::VersionRange;
use portcullis_audit::{AuditSink, Category, Event, Outcome};
use portcullis_crypto::{KeyAccess, Keyring};

use crate::config::encryption::TopicPolicies;
use crate::connection::ConnectionEnd;
use crate::pipeline::{Answer, ConnectionState, Flow, Note, Request, Response, Stage, Step};

pub use failure::{Failure, Refusal};
pub use fetch::{decrypt_fetch, Decrypted, RefusedFetch};
pub use produce::{encrypt_produce, Encrypted, NeedsNewKey, RefusedPartition};

/// The highest Produce and Fetch versions the stage handles: later versions name topics by
/// id only, which the stage cannot match against `[encryption]` (fail closed).
pub const MAX_NAMED_VERSION: i16 = 12;
/// Most Fetch refusals one connection remembers having audited (a consumer retries a
/// refused partition every fetch backoff; one event per position is enough).
const MAX_REPORTED: usize = 1024;

/// Metric: records encrypted or decrypted, by `op`.
pub const RECORDS_METRIC: &str = "portcullis_encryption_records_total";
/// Metric: partitions refused, by `op` and `reason` (a [`Failure::label`]).
pub const FAILURES_METRIC: &str = "portcullis_encryption_failures_total";

/// What every connection's encryption stage shares.
pub struct EncryptionService {
    keyring: Arc<Keyring>,
    policies: TopicPolicies,
    audit: Arc<dyn AuditSink>,
    max_produce_decompressed: usize,
    max_fetch_decompressed: usize,
}

impl std::fmt::Debug for EncryptionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionService")
            .field("keyring", &self.keyring)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl EncryptionService {
    /// The service over `keyring` for the topics of `policies`. Decompressed batches are
    /// bounded by `max_produce_decompressed` (requests) and `max_fetch_decompressed`
    /// (responses).
    pub fn new(
        keyring: Arc<Keyring>,
        policies: TopicPolicies,
        audit: Arc<dyn AuditSink>,
        max_produce_decompressed: usize,
        max_fetch_decompressed: usize,
    ) -> EncryptionService {
        for op in ["encrypt", "decrypt"] {
            metrics::counter!(RECORDS_METRIC, "op" => op).increment(0);
        }
        EncryptionService {
            keyring,
            policies,
            audit,
            max_produce_decompressed,
            max_fetch_decompressed,
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }
}

/// The encryption stage of one connection.
#[derive(Debug)]
pub struct Encryption {
    service: Arc<EncryptionService>,
    /// Fetch refusals already audited: (topic, partition, offset).
    reported: HashSet<(String, i32, i64)>,
}

/// What a Produce left for its response: the partitions refused before forwarding.
struct RefusedNote(Vec<RefusedPartition>);

impl Encryption {
    /// The stage for one connection.
    pub fn new(service: Arc<EncryptionService>) -> Encryption {
        Encryption {
            service,
            reported: HashSet::new(),
        }
    }
}

fn event(state: &ConnectionState, action: &str, topic: &str, refusal: &Refusal) -> Event {
    let mut event = Event::new(Category::Key, action, Outcome::Failure)
        .client_addr(state.client.peer)
        .listener(state.client.listener.clone())
        .resource("topic", topic)
        .detail("failure", refusal.failure.label())
        .reason(refusal.detail.clone());
    if let Some(p) = state.session.principal() {
        event = event
            .principal(format!("User:{}", p.name))
            .roles(p.roles.iter().cloned());
    }
    event
}

/// Counts and audits the partitions of a Produce refused by the stage.
fn report_produce(service: &EncryptionService, state: &ConnectionState, done: &Encrypted) {
    metrics::counter!(RECORDS_METRIC, "op" => "encrypt").increment(done.records);
    for r in &done.refused {
        metrics::counter!(FAILURES_METRIC, "op" => "encrypt", "reason" => r.refusal.failure.label())
            .increment(1);
        tracing::warn!(topic = %r.topic.0, partition = r.partition, reason = r.refusal.failure.label(), "produce partition refused: {}", r.refusal.detail);
        service.audit.emit(
            event(state, "record.encrypt", &r.topic, &r.refusal)
                .detail("partition", r.partition)
                .error_code(r.refusal.failure.produce_code()),
        );
    }
}

impl Encryption {
    /// Applies an encryption result to the request: a note for the response, or a local
    /// answer when every partition was refused.
    fn finish_produce(request: &mut Request, done: Encrypted) -> Flow {
        request.body_changed = true;
        if done.refused.is_empty() {
            return Flow::Continue;
        }
        let empty =
            matches!(&request.body, Some(RequestKind::Produce(p)) if p.topic_data.is_empty());
        if empty {
            if request.fire_and_forget {
                return Flow::Drop;
            }
            let answer = produce::refused_answer(&done.refused);
            return Flow::answer(Answer::Body(Box::new(answer.into())));
        }
        request.leave_note(RefusedNote(done.refused));
        Flow::Continue
    }

    fn on_produce<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        let service = &self.service;
        let Some(RequestKind::Produce(produce)) = request.body.as_mut() else {
            return Flow::Continue.into();
        };
        if !produce::touches_encrypted(produce, &service.policies) {
            return Flow::Continue.into();
        }
        match encrypt_produce(
            &service.keyring,
            &service.policies,
            produce,
            service.max_produce_decompressed,
            KeyAccess::CachedOnly,
        ) {
            Ok(done) => {
                report_produce(service, state, &done);
                Self::finish_produce(request, done).into()
            }
            Err(NeedsNewKey) => self.produce_with_new_key(state, request),
        }
    }

    /// Redoes the encryption on a blocking thread, where the keyring may create a DEK.
    fn produce_with_new_key<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        let service = self.service.clone();
        let Some(RequestKind::Produce(mut produce)) = request.body.take() else {
            return Flow::Continue.into();
        };
        Step::Pending(Box::pin(async move {
            let worker = service.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let done = encrypt_produce(
                    &worker.keyring,
                    &worker.policies,
                    &mut produce,
                    worker.max_produce_decompressed,
                    KeyAccess::Load,
                );
                (produce, done)
            })
            .await;
            match joined {
                Ok((produce, Ok(done))) => {
                    request.body = Some(RequestKind::Produce(produce));
                    report_produce(&service, state, &done);
                    Self::finish_produce(request, done)
                }
                // Load never answers NeedsNewKey; a panicked or cancelled worker closes.
                Ok((_, Err(NeedsNewKey))) | Err(_) => Flow::Close(ConnectionEnd::Refused {
                    api: ApiKey::Produce,
                    version: request.header.api_version,
                    reason: "record encryption did not complete",
                }),
            }
        }))
    }

    fn on_fetch_response(&mut self, state: &ConnectionState, response: &mut Response) {
        let service = &self.service;
        let Some(ResponseKind::Fetch(fetch)) = response.body.as_mut() else {
            return;
        };
        let done = decrypt_fetch(
            &service.keyring,
            &service.policies,
            fetch,
            service.max_fetch_decompressed,
        );
        if done.changed {
            response.body_changed = true;
        }
        metrics::counter!(RECORDS_METRIC, "op" => "decrypt").increment(done.records);
        for r in &done.refused {
            metrics::counter!(FAILURES_METRIC, "op" => "decrypt", "reason" => r.refusal.failure.label())
                .increment(1);
            let key = (r.topic.clone(), r.partition, r.offset);
            if self.reported.contains(&key) {
                continue;
            }
            if self.reported.len() >= MAX_REPORTED {
                self.reported.clear();
            }
            self.reported.insert(key);
            tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, reason = r.refusal.failure.label(), "fetch partition refused: {}", r.refusal.detail);
            service.audit.emit(
                event(state, "record.decrypt", &r.topic, &r.refusal)
                    .detail("partition", r.partition)
                    .detail("offset", r.offset)
                    .error_code(r.refusal.failure.fetch_code()),
            );
        }
    }
}

impl Stage for Encryption {
    fn name(&self) -> &'static str {
        "encryption"
    }

    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        match api {
            ApiKey::Produce | ApiKey::Fetch => Some(VersionRange {
                min: offered.min,
                max: offered.max.min(MAX_NAMED_VERSION),
            })
            .filter(|r| r.min <= r.max),
            // Share groups read records the stage does not see (KIP-932): not served.
            ApiKey::ShareFetch | ApiKey::ShareAcknowledge => None,
            _ => Some(offered),
        }
    }

    fn decodes_request(&self, api: ApiKey, _version: i16) -> bool {
        api == ApiKey::Produce
    }

    fn decodes_response(&self, api: ApiKey, _version: i16) -> bool {
        // Every Fetch answer: with fetch sessions (KIP-227) the request may not name the
        // topics the answer carries.
        api == ApiKey::Fetch
    }

    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        if request.header.api_key == ApiKey::Produce {
            self.on_produce(state, request)
        } else {
            Flow::Continue.into()
        }
    }

    fn on_response(
        &mut self,
        state: &mut ConnectionState,
        response: &mut Response,
        note: Option<Note>,
    ) -> Result<(), ConnectionEnd> {
        if response.api == ApiKey::Fetch {
            self.on_fetch_response(state, response);
            return Ok(());
        }
        let Some(RefusedNote(refused)) = note
            .and_then(|n| n.downcast::<RefusedNote>().ok())
            .map(|b| *b)
        else {
            return Ok(());
        };
        if let Some(ResponseKind::Produce(produce)) = response.body.as_mut() {
            produce.responses.extend(produce::refused_topics(&refused));
            response.body_changed = true;
        }
        Ok(())
    }
}
