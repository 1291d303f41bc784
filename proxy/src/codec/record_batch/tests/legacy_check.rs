//! The Produce header check as it stood in `request_check.rs` before the codec, copied
//! verbatim as an oracle: the codec's [`check_batch_headers`] must agree with it on every
//! input, error message included.
//!
//! [`check_batch_headers`]: crate::codec::record_batch::check_batch_headers

const BATCH_HEADER_AFTER_LENGTH: usize = 49;
const MAGIC_OFFSET: usize = 16;
const ATTRIBUTES_OFFSET: usize = 21;
const RECORDS_COUNT_OFFSET: usize = 57;
const MIN_RECORD_BYTES: usize = 7;

pub fn check_record_batches(
    mut records: &[u8],
    max_records_per_batch: usize,
) -> Result<(), String> {
    while !records.is_empty() {
        let batch_length = read_i32(records, 8).ok_or("truncated batch header")?;
        let batch_length = usize::try_from(batch_length)
            .ok()
            .filter(|len| *len >= BATCH_HEADER_AFTER_LENGTH)
            .ok_or_else(|| format!("batch length {batch_length} is too small"))?;
        let total = 12 + batch_length;
        let batch = records.get(..total).ok_or_else(|| {
            format!(
                "batch of {total} bytes overruns the {} bytes sent",
                records.len()
            )
        })?;
        let magic = batch[MAGIC_OFFSET];
        if magic != 2 {
            return Err(format!(
                "record batch magic {magic} is not supported (only v2)"
            ));
        }
        let attributes = read_i16(batch, ATTRIBUTES_OFFSET).ok_or("truncated batch header")?;
        let count = read_i32(batch, RECORDS_COUNT_OFFSET).ok_or("truncated batch header")?;
        let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
        let compressed = attributes & 0x7 != 0;
        let room = total - (RECORDS_COUNT_OFFSET + 4);
        if !compressed && count.saturating_mul(MIN_RECORD_BYTES) > room {
            return Err(format!("record count {count} cannot fit in {room} bytes"));
        }
        if count > max_records_per_batch {
            return Err(format!(
                "record count {count} exceeds limits.max_records_per_batch {max_records_per_batch}"
            ));
        }
        records = &records[total..];
    }
    Ok(())
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_i16(bytes: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
