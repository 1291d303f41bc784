//! The cheap header-only walk that decides whether a Produce `records` field may be
//! forwarded at all.

use super::error::CodecError;
use super::header::{
    ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC_OFFSET, MIN_BATCH_LENGTH,
    RECORDS_COUNT_OFFSET,
};
use super::records::MIN_RECORD_BYTES;

/// Walks the batch headers of a Produce `records` field without decoding records.
///
/// Every batch must be complete (a Produce request is never cut short), have a length of
/// at least a v2 header, magic 2, a non-negative record count that (when uncompressed) its
/// bytes can hold at 7 bytes a record, and no more than `max_records_per_batch` records.
/// Checks in that order and stops at the first failure; this is the check
/// `request_check::check_record_batches` made, with the same errors and messages (the
/// error's `Display` is the old error string).
///
/// # Errors
///
/// [`CodecError::TruncatedHeader`], [`CodecError::BatchLengthTooSmall`],
/// [`CodecError::BatchOverrun`], [`CodecError::UnsupportedMagic`],
/// [`CodecError::NegativeRecordCount`], [`CodecError::RecordCountTooLarge`],
/// [`CodecError::TooManyRecords`].
pub fn check_batch_headers(
    mut records: &[u8],
    max_records_per_batch: usize,
) -> Result<(), CodecError> {
    while !records.is_empty() {
        let length = read_i32(records, 8).ok_or(CodecError::TruncatedHeader)?;
        let len = usize::try_from(length)
            .ok()
            .filter(|len| *len >= MIN_BATCH_LENGTH)
            .ok_or(CodecError::BatchLengthTooSmall { length })?;
        let total = LOG_OVERHEAD + len;
        let (batch, rest) = records
            .split_at_checked(total)
            .ok_or(CodecError::BatchOverrun {
                total,
                available: records.len(),
            })?;
        let magic = batch[MAGIC_OFFSET];
        if magic != 2 {
            return Err(CodecError::UnsupportedMagic { magic });
        }
        let attributes = read_i16(batch, ATTRIBUTES_OFFSET).ok_or(CodecError::TruncatedHeader)?;
        let count = read_i32(batch, RECORDS_COUNT_OFFSET).ok_or(CodecError::TruncatedHeader)?;
        let count =
            usize::try_from(count).map_err(|_| CodecError::NegativeRecordCount { count })?;
        let compressed = attributes & 0x7 != 0;
        let room = total - BATCH_HEADER_SIZE;
        if !compressed && count.saturating_mul(MIN_RECORD_BYTES) > room {
            return Err(CodecError::RecordCountTooLarge { count, room });
        }
        if count > max_records_per_batch {
            return Err(CodecError::TooManyRecords {
                count,
                max: max_records_per_batch,
            });
        }
        records = rest;
    }
    Ok(())
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_i16(bytes: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
