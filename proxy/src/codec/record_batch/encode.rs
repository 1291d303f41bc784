//! Writing batches: one decoded batch back to bytes, a whole `records` field with some
//! batches changed, and a fresh batch for the proxy's own producer.

use bytes::{BufMut, Bytes, BytesMut};

use super::compression::{compress, SnappyFraming};
use super::error::CodecError;
use super::header::batch_crc;
use super::header::{
    Attributes, BatchHeader, Compression, BATCH_HEADER_SIZE, CRC_OFFSET, LOG_OVERHEAD, MAGIC_V2,
};
use super::records::{encode_records, to_i32, Header, Record, MIN_RECORD_BYTES};
use super::split::{split_batches, BatchPiece};

/// A v2 batch with its records parsed: what a caller reads and changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The header as received. [`DecodedBatch::encode`] writes every field as it is here
    /// except `batch_length`, `crc` and `record_count`, which it recomputes (and `magic`,
    /// always 2).
    pub header: BatchHeader,
    /// The snappy framing found when decoding, used again when encoding a snappy batch.
    pub snappy_framing: SnappyFraming,
    /// The records in wire order.
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// Encodes this batch and appends it to `out`: records in order, compressed with the
    /// codec of `header.attributes`, header fields kept, length, record count and CRC-32C
    /// recomputed. Never merges or splits batches.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownCompression`], [`CodecError::Compress`],
    /// [`CodecError::TooLargeToEncode`].
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_with(out, |section| encode_records(&self.records, section))
    }

    /// [`DecodedBatch::encode`] with the record section written by `write_records` (which
    /// must write as many records as `self.records` holds, in order; see
    /// [`super::encode_record_with`]): straight into `out` for an uncompressed batch, into a
    /// section buffer that is then compressed otherwise. On error `out` is left as it was.
    ///
    /// # Errors
    ///
    /// As [`DecodedBatch::encode`], and what `write_records` returns.
    pub fn encode_with<E, W>(&self, out: &mut BytesMut, write_records: W) -> Result<(), E>
    where
        E: From<CodecError>,
        W: FnOnce(&mut BytesMut) -> Result<(), E>,
    {
        let start = out.len();
        let result = self.encode_unchecked(out, write_records);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked<E, W>(&self, out: &mut BytesMut, write_records: W) -> Result<(), E>
    where
        E: From<CodecError>,
        W: FnOnce(&mut BytesMut) -> Result<(), E>,
    {
        let codec = self.header.attributes.compression()?;
        let record_count = to_i32(self.records.len(), "record count")?;
        let start = out.len();
        // Write a provisional header, then the payload straight behind it, then patch the
        // length and the crc.
        self.header.write(out, 0, record_count);
        if codec == Compression::None {
            write_records(out)?;
        } else {
            let mut section = BytesMut::new();
            write_records(&mut section)?;
            compress(codec, &section, self.snappy_framing, out)?;
        }
        let length = to_i32(out.len() - start - LOG_OVERHEAD, "batch length")?;
        out[start + 8..start + LOG_OVERHEAD].copy_from_slice(&length.to_be_bytes());
        let crc = batch_crc(&out[start..]);
        out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }

    /// [`DecodedBatch::encode`] into a new buffer.
    ///
    /// # Errors
    ///
    /// As [`DecodedBatch::encode`].
    pub fn to_bytes(&self) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::with_capacity(BATCH_HEADER_SIZE);
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// What a [`rewrite_batches`] callback did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEdit {
    /// Forward the original bytes (whatever the callback did to the decoded copy).
    Keep,
    /// Encode the (changed) decoded batch in place of the original.
    Reencode,
}

/// Decodes every [`BatchPiece::Records`] batch of a `records` field, lets `edit` look at
/// or change it, and returns the field with the batches `edit` asked to re-encode replaced
/// by their new encoding, each on its own (adjacent batches are never merged).
/// Everything else (batches kept, control, empty, legacy and truncated pieces) is copied
/// as its original bytes; when nothing is re-encoded the result is `records` itself,
/// without a copy.
///
/// Callers that must see every record (encryption of a Produce request) check the field
/// with [`super::check_batch_headers`] first, which refuses legacy and truncated pieces.
///
/// # Errors
///
/// A split or decode error (wrapped by `E: From<CodecError>`), or the first error `edit`
/// returns.
pub fn rewrite_batches<E, F>(
    records: &Bytes,
    max_decompressed_bytes: usize,
    mut edit: F,
) -> Result<Bytes, E>
where
    E: From<CodecError>,
    F: FnMut(&mut DecodedBatch) -> Result<BatchEdit, E>,
{
    rewrite_batches_with(records, max_decompressed_bytes, 0, |batch, out| {
        Ok(match edit(batch)? {
            BatchEdit::Keep => false,
            BatchEdit::Reencode => {
                batch.encode(out)?;
                true
            }
        })
    })
}

/// [`rewrite_batches`] where `write` encodes a changed batch itself (with
/// [`DecodedBatch::encode_with`]) and returns true, or returns false to keep the original
/// bytes (appending nothing). `growth_per_record` sizes the new field's buffer once
/// (bytes a record may grow by), so it is not reallocated batch after batch.
///
/// # Errors
///
/// As [`rewrite_batches`].
pub fn rewrite_batches_with<E, F>(
    records: &Bytes,
    max_decompressed_bytes: usize,
    growth_per_record: usize,
    mut write: F,
) -> Result<Bytes, E>
where
    E: From<CodecError>,
    F: FnMut(&mut DecodedBatch, &mut BytesMut) -> Result<bool, E>,
{
    let mut out = BytesMut::with_capacity(records.len() + growth(records, growth_per_record));
    let mut changed = false;
    for piece in split_batches(records) {
        let piece = piece?;
        if let BatchPiece::Records(raw) = &piece {
            let mut batch = raw.decode(max_decompressed_bytes)?;
            if write(&mut batch, &mut out)? {
                changed = true;
                continue;
            }
        }
        out.put_slice(piece.bytes());
    }
    Ok(if changed {
        out.freeze()
    } else {
        records.clone()
    })
}

/// How many bytes the records of `records` grow by at `per_record` bytes each (the counts
/// are the batch headers', each capped by what its bytes can hold), at most `records`'
/// own length: a capacity hint, never an allocation an attacker can multiply.
fn growth(records: &Bytes, per_record: usize) -> usize {
    if per_record == 0 {
        return 0;
    }
    split_batches(records)
        .filter_map(Result::ok)
        .map(|piece| match piece {
            BatchPiece::Records(raw) => {
                let claimed = usize::try_from(raw.header().record_count).unwrap_or(0);
                claimed.min(raw.bytes().len() / MIN_RECORD_BYTES)
            }
            _ => 0,
        })
        .sum::<usize>()
        .saturating_mul(per_record)
        .min(records.len())
}

/// One record for [`build_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    /// Creation timestamp, milliseconds since the epoch.
    pub timestamp: i64,
    /// The key (`None`: null).
    pub key: Option<Bytes>,
    /// The value (`None`: null).
    pub value: Option<Bytes>,
    /// The headers, in order.
    pub headers: Vec<Header>,
}

/// Builds one batch as a plain (non-idempotent, non-transactional) producer does: base
/// offset 0, offsets 0..n, CreateTime with the first record's timestamp as base and the
/// largest as max, producer id, epoch, sequence and leader epoch -1.
///
/// # Errors
///
/// [`CodecError::NoRecords`], [`CodecError::Compress`], [`CodecError::TooLargeToEncode`].
pub fn build_batch(records: &[NewRecord], compression: Compression) -> Result<Bytes, CodecError> {
    let first = records.first().ok_or(CodecError::NoRecords)?;
    let base_timestamp = first.timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let last_offset_delta = to_i32(records.len() - 1, "record count")?;
    let batch = DecodedBatch {
        header: BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes: Attributes::default().with_compression(compression),
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 0,
        },
        snappy_framing: SnappyFraming::default(),
        records: records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                attributes: 0,
                timestamp_delta: r.timestamp.wrapping_sub(base_timestamp),
                // At most `last_offset_delta`, which fits.
                offset_delta: i as i32,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
            .collect(),
    };
    batch.to_bytes()
}
