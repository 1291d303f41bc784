//! Whole batches sealed and opened where their values land in the new batch.
//!
//! Why this exists: record by record, encryption cost more than AES-GCM itself: per value a
//! DEK lookup under a lock, an associated-data buffer, a sealed copy in its own allocation,
//! then the record encoded into a scratch buffer and copied again. Here a batch takes one
//! [`ValueSealer`] (one DEK reservation for all its values) or one [`ValueOpener`], and each
//! record is written once, straight into the output (or the section that is compressed),
//! with its value sealed or opened in place there. The bytes are the same as the
//! record-by-record path (`records.rs`), which still handles records whose header values are
//! encrypted and anything unusual on Fetch.

use bytes::{BufMut, Bytes, BytesMut};
use portcullis_crypto::format::{OVERHEAD, PREFIX_LEN};
use portcullis_crypto::record::MARKER_VALUE_ONLY;
use portcullis_crypto::{CryptoError, KeyAccess, Keyring, ValueOpener, ValueSealer, MARKER_HEADER};

use crate::codec::record_batch::{encode_record_with, CodecError, DecodedBatch, Header, Record};
use crate::config::encryption::TopicPolicy;
use crate::pipeline::encryption::failure::Refusal;
use crate::pipeline::encryption::records;

/// Bytes a record grows by when its value is sealed: the value's overhead, the marker
/// header, and a few bytes of longer varints.
pub const GROWTH_PER_RECORD: usize = OVERHEAD + MARKER_HEADER.len() + MARKER_VALUE_ONLY.len() + 8;

/// Seals the values of `batch` (a topic whose header values stay in clear) and appends the
/// new batch to `out`; returns how many records were sealed. With nothing to seal (only
/// tombstones) it appends nothing and returns 0: the batch is forwarded as it came.
///
/// `Err(None)`: a new DEK is needed and `access` is [`KeyAccess::CachedOnly`].
pub fn seal_batch(
    keyring: &Keyring,
    topic: &str,
    batch: &DecodedBatch,
    access: KeyAccess,
    out: &mut BytesMut,
) -> Result<u64, Option<Refusal>> {
    let mut values = 0u64;
    for record in &batch.records {
        records::check_header_keys(record).map_err(Some)?;
        if record.headers.iter().any(records::is_marker) {
            return Err(Some(CryptoError::AlreadyEncrypted.into()));
        }
        values += u64::from(record.value.is_some());
    }
    if values == 0 {
        return Ok(0);
    }
    let mut sealer = keyring
        .value_sealer(topic, values, access)
        .map_err(|e| SealError::from(e).refusal())?;
    let marker = [Header {
        key: Bytes::from_static(MARKER_HEADER.as_bytes()),
        value: Some(Bytes::from_static(MARKER_VALUE_ONLY)),
    }];
    batch
        .encode_with(out, |section| {
            for record in &batch.records {
                seal_record(&mut sealer, record, &marker, section)?;
            }
            Ok::<(), SealError>(())
        })
        .map_err(SealError::refusal)?;
    Ok(values)
}

/// Why a batch was not sealed: a new DEK is needed where none may be created now (the
/// request is tried again where it may), or a refusal of the partition.
enum SealError {
    NeedsKey,
    Refused(Refusal),
}

impl SealError {
    /// As [`seal_batch`] reports it: `None` for a needed key.
    fn refusal(self) -> Option<Refusal> {
        match self {
            SealError::NeedsKey => None,
            SealError::Refused(refusal) => Some(refusal),
        }
    }
}

impl From<CryptoError> for SealError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::KeyNotCached { .. } => SealError::NeedsKey,
            e => SealError::Refused(e.into()),
        }
    }
}

impl From<CodecError> for SealError {
    fn from(e: CodecError) -> Self {
        SealError::Refused(e.into())
    }
}

fn seal_record(
    sealer: &mut ValueSealer<'_>,
    record: &Record,
    marker: &[Header; 1],
    out: &mut BytesMut,
) -> Result<(), SealError> {
    let Some(value) = &record.value else {
        return encode_record_with(record, record.headers.iter(), None, |_| Ok(()), out);
    };
    let headers = record.headers.iter().chain(marker);
    let sealed_len = ValueSealer::sealed_len(value.len());
    encode_record_with(
        record,
        headers,
        Some(sealed_len),
        |out| {
            let start = out.len();
            out.put_bytes(0, PREFIX_LEN);
            out.put_slice(value);
            out.put_bytes(0, sealed_len - PREFIX_LEN - value.len());
            Ok(sealer.seal_in_place(&mut out[start..])?)
        },
        out,
    )
}

/// Opens the records of `batch` read from `topic` and appends the new batch to `out`;
/// returns how many records were decrypted. A batch with no encrypted record appends
/// nothing and returns 0 (after refusing plaintext where the topic requires encryption).
/// On error `out` is as it was.
pub fn open_batch(
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    batch: &DecodedBatch,
    out: &mut BytesMut,
) -> Result<u64, Refusal> {
    if !batch
        .records
        .iter()
        .any(|r| r.headers.iter().any(records::is_marker))
    {
        for record in &batch.records {
            records::check_unmarked(topic, policy, record)?;
        }
        return Ok(0);
    }
    let mut opener = keyring.value_opener(topic)?;
    let mut opened = 0;
    batch.encode_with(out, |section| {
        for record in &batch.records {
            opened += u64::from(open_record(
                &mut opener,
                keyring,
                topic,
                policy,
                record,
                section,
            )?);
        }
        Ok::<(), Refusal>(())
    })?;
    Ok(opened)
}

/// Appends `record` decrypted; whether it was encrypted. Records marked `1` are opened in
/// place; anything else (header values encrypted, unmarked, malformed markers) takes the
/// record-by-record path and its checks.
fn open_record(
    opener: &mut ValueOpener<'_>,
    keyring: &Keyring,
    topic: &str,
    policy: TopicPolicy,
    record: &Record,
    out: &mut BytesMut,
) -> Result<bool, Refusal> {
    let Some(marker) = records::value_only_marker(record) else {
        let mut decrypted = record.clone();
        let changed = records::decrypt(keyring, topic, policy, &mut decrypted, &records::blocking)?;
        encode_record_with(
            &decrypted,
            decrypted.headers.iter(),
            decrypted.value.as_ref().map(Bytes::len),
            |out| {
                out.put_slice(decrypted.value.as_deref().unwrap_or_default());
                Ok::<(), Refusal>(())
            },
            out,
        )?;
        return Ok(changed);
    };
    records::check_header_keys(record)?;
    let headers = record
        .headers
        .iter()
        .enumerate()
        .filter(move |(i, _)| *i != marker)
        .map(|(_, h)| h);
    let Some(value) = &record.value else {
        encode_record_with(record, headers, None, |_| Ok::<(), Refusal>(()), out)?;
        return Ok(true);
    };
    let sealed = ValueOpener::parse(value)?;
    let ciphertext = sealed.ciphertext();
    encode_record_with(
        record,
        headers,
        Some(ciphertext.len()),
        |out| {
            let start = out.len();
            out.put_slice(ciphertext);
            let buf = &mut out[start..];
            records::with_dek_loading(topic, &records::blocking, |access| {
                opener.open_in_place(&sealed, buf, access)
            })
            .map_err(Refusal::from)
        },
        out,
    )?;
    Ok(true)
}
