//! One record at a time: the codec's [`Record`] to the crypto crate's [`RecordPayload`] and
//! back, encrypted or decrypted on the way.
//!
//! Keys, attributes, timestamp and offset deltas are never touched; only the value and the
//! headers change (values and, per topic, header values sealed; the marker header appended
//! on Produce and removed on Fetch).

use bytes::Bytes;
use portcullis_crypto::record::marker_covers_headers;
use portcullis_crypto::{
    CryptoError, Header as CryptoHeader, KeyAccess, Keyring, RecordOptions, RecordPayload,
    MARKER_HEADER,
};

use crate::codec::record_batch::{Header, Record};
use crate::config::encryption::TopicPolicy;
use crate::pipeline::encryption::failure::{Failure, Refusal};

/// `h`'s key as text: the format binds header keys as text, encrypted or not.
fn header_key(h: &Header) -> Result<&str, Refusal> {
    std::str::from_utf8(&h.key)
        .map_err(|_| Refusal::new(Failure::BadHeaderKey, "a record header key is not UTF-8"))
}

fn payload(record: &Record) -> Result<RecordPayload, Refusal> {
    let headers = record
        .headers
        .iter()
        .map(|h| {
            Ok(CryptoHeader {
                key: header_key(h)?.to_owned(),
                value: h.value.as_ref().map(|v| v.to_vec()),
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    Ok(RecordPayload {
        value: record.value.as_ref().map(|v| v.to_vec()),
        headers,
    })
}

fn store(record: &mut Record, payload: RecordPayload) {
    record.value = payload.value.map(Bytes::from);
    record.headers = payload
        .headers
        .into_iter()
        .map(|h| Header {
            key: Bytes::from(h.key.into_bytes()),
            value: h.value.map(Bytes::from),
        })
        .collect();
}

/// Encrypts `record` for `topic` in place (value and header values: topics whose header
/// values stay in clear take [`super::in_place::seal_batch`]). Returns whether it changed
/// (a record with nothing to encrypt stays as it is, unmarked). With
/// [`KeyAccess::CachedOnly`] it fails with [`CryptoError::KeyNotCached`] (as a `Err(None)`)
/// where a new DEK is needed.
pub fn encrypt(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    record: &mut Record,
    access: KeyAccess,
) -> Result<bool, Option<Refusal>> {
    let mut p = payload(record).map_err(Some)?;
    let options = RecordOptions {
        encrypt_headers: policy.encrypt_headers,
    };
    match keyring.encrypt_record_with(topic, &mut p, options, access) {
        Ok(()) => {}
        Err(CryptoError::KeyNotCached { .. }) => return Err(None),
        Err(e) => return Err(Some(e.into())),
    }
    let changed = p.headers.len() != record.headers.len();
    if changed {
        store(record, p);
    }
    Ok(changed)
}

/// Whether `h` is the `portcullis.enc` marker header.
pub fn is_marker(h: &Header) -> bool {
    &h.key[..] == MARKER_HEADER.as_bytes()
}

/// Header keys must be UTF-8 (the format binds them as text), encrypted or not.
pub fn check_header_keys(record: &Record) -> Result<(), Refusal> {
    record
        .headers
        .iter()
        .try_for_each(|h| header_key(h).map(drop))
}

/// Whether an unmarked record is acceptable on a topic that requires encryption: only if
/// the proxy itself would have left it unmarked (a null value, and no header value the
/// topic's setting would have encrypted).
fn unmarked_is_acceptable(record: &Record, policy: TopicPolicy) -> bool {
    record.value.is_none()
        && (!policy.encrypt_headers || record.headers.iter().all(|h| h.value.is_none()))
}

/// Refuses an unmarked `record` read from `topic` if the topic requires encryption and the
/// record has something the proxy would have encrypted.
pub fn check_unmarked(topic: &str, policy: TopicPolicy, record: &Record) -> Result<(), Refusal> {
    if !policy.require_encryption || unmarked_is_acceptable(record, policy) {
        Ok(())
    } else {
        Err(Refusal::new(
            Failure::Plaintext,
            format!("unencrypted record in topic {topic:?}, which requires encryption"),
        ))
    }
}

/// Decrypts `record` read from `topic` in place. An unmarked record passes unchanged when
/// the topic does not require encryption, or when it has nothing the proxy would have
/// encrypted (a tombstone); otherwise it is refused as plaintext. A DEK not yet in memory is
/// loaded with `load` (which may block).
pub fn decrypt(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    record: &mut Record,
    load: &dyn Fn(&mut dyn FnMut()),
) -> Result<bool, Refusal> {
    if !record.headers.iter().any(is_marker) {
        check_unmarked(topic, policy, record)?;
        return Ok(false);
    }
    let mut p = payload(record)?;
    with_dek_loading(topic, load, |access| {
        keyring.decrypt_record_with(topic, &mut p, access)
    })?;
    store(record, p);
    Ok(true)
}

/// Runs `attempt` with the DEKs in memory and, when it needs one of `topic`'s that is not,
/// once more allowed to load it, inside `load` (which may block).
pub fn with_dek_loading<T>(
    topic: &str,
    load: &dyn Fn(&mut dyn FnMut()),
    mut attempt: impl FnMut(KeyAccess) -> Result<T, CryptoError>,
) -> Result<T, CryptoError> {
    match attempt(KeyAccess::CachedOnly) {
        Err(CryptoError::KeyNotCached { .. }) => {
            let mut outcome = None;
            load(&mut || outcome = Some(attempt(KeyAccess::Load)));
            outcome.unwrap_or_else(|| {
                Err(CryptoError::KeyNotCached {
                    topic: topic.to_owned(),
                })
            })
        }
        other => other,
    }
}

/// The position of the record's marker header when it is the only one and says `1` (value
/// encrypted, headers in clear): the case [`super::in_place`] opens in place. Anything else
/// (`1h`, duplicates, unknown markers) takes the general path and its errors.
pub fn value_only_marker(record: &Record) -> Option<usize> {
    let mut markers = record
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| is_marker(h));
    let (position, marker) = markers.next()?;
    let value_only = markers.next().is_none()
        && matches!(marker_covers_headers(marker.value.as_deref()), Ok(false));
    value_only.then_some(position)
}

/// Runs `f`, telling the runtime it blocks when called on a multi-threaded tokio worker
/// (so other connections' tasks move to another thread meanwhile). Used for the rare DEK
/// load on Fetch: once per DEK per process.
pub fn blocking(f: &mut dyn FnMut()) {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f);
    } else {
        f();
    }
}
