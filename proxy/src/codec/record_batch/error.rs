//! Everything that can go wrong reading or writing record batches.

use super::header::Compression;

/// Why a `records` field, a batch or a record could not be split, decoded or encoded.
///
/// The first seven variants are the header-walk errors of [`super::check_batch_headers`];
/// their messages are word for word those of the check the proxy has refused Produce
/// requests with so far, so switching a caller changes no log line or error string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer than the 12 bytes of base offset and batch length are left.
    #[error("truncated batch header")]
    TruncatedHeader,
    /// The batch length field is negative or smaller than a batch header.
    #[error("batch length {length} is too small")]
    BatchLengthTooSmall {
        /// The length field as sent.
        length: i32,
    },
    /// The batch claims more bytes than the `records` field holds.
    #[error("batch of {total} bytes overruns the {available} bytes sent")]
    BatchOverrun {
        /// 12 + the batch length field.
        total: usize,
        /// Bytes left in the `records` field.
        available: usize,
    },
    /// The magic byte is not 2 (or, for [`super::split_batches`], not 0, 1 or 2).
    #[error("record batch magic {magic} is not supported (only v2)")]
    UnsupportedMagic {
        /// The magic byte, unsigned as it was printed before.
        magic: u8,
    },
    /// The record count field is negative.
    #[error("negative record count {count}")]
    NegativeRecordCount {
        /// The count as sent.
        count: i32,
    },
    /// An uncompressed batch claims more records than its bytes can hold.
    #[error("record count {count} cannot fit in {room} bytes")]
    RecordCountTooLarge {
        /// The count as sent.
        count: usize,
        /// Bytes after the batch header.
        room: usize,
    },
    /// A batch holds more records than the configured limit.
    #[error("record count {count} exceeds limits.max_records_per_batch {max}")]
    TooManyRecords {
        /// The count as sent.
        count: usize,
        /// `limits.max_records_per_batch`.
        max: usize,
    },
    /// The attributes name compression codec 5, 6 or 7.
    #[error("unknown compression codec {codec}")]
    UnknownCompression {
        /// The three codec bits.
        codec: u8,
    },
    /// The CRC-32C over attributes..end does not match the batch's crc field.
    #[error("batch crc {stored:#010x} does not match the computed {computed:#010x}")]
    CrcMismatch {
        /// The crc field.
        stored: u32,
        /// CRC-32C of the bytes it covers.
        computed: u32,
    },
    /// The compressed records are not a valid stream of their codec.
    #[error("{codec} decompression failed: {reason}")]
    Decompress {
        /// The batch's codec.
        codec: Compression,
        /// The decompressor's message.
        reason: String,
    },
    /// The records decompress to more bytes than the caller allows (a zip bomb, or a limit
    /// set too low).
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The caller's cap.
        limit: usize,
    },
    /// Compressing re-encoded records failed.
    #[error("{codec} compression failed: {reason}")]
    Compress {
        /// The batch's codec.
        codec: Compression,
        /// The compressor's message.
        reason: String,
    },
    /// A record inside the batch is malformed.
    #[error("record {index}: {fault}")]
    MalformedRecord {
        /// Position of the record in its batch (0-based).
        index: usize,
        /// What is wrong with it.
        fault: RecordFault,
    },
    /// Bytes remain after the last record the batch header counts.
    #[error("{extra} bytes left after the batch's {count} records")]
    TrailingBytes {
        /// The record count.
        count: usize,
        /// Bytes after the last record.
        extra: usize,
    },
    /// A length or count is too large for its wire field (i32) when encoding.
    #[error("{what} of {value} does not fit its i32 wire field")]
    TooLargeToEncode {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// A value writer of [`super::encode_record_with`] wrote another length than it
    /// announced (a bug in the caller; the record is not emitted).
    #[error("a record value writer announced {announced} bytes and wrote {written}")]
    ValueLengthMismatch {
        /// The length announced.
        announced: usize,
        /// The length written.
        written: usize,
    },
    /// [`super::build_batch`] was given no records.
    #[error("a new batch needs at least one record")]
    NoRecords,
}

/// What is wrong with one record (see [`CodecError::MalformedRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordFault {
    /// The bytes end inside the record.
    #[error("truncated")]
    Truncated,
    /// A varint runs past 5 bytes (varlong: 10) or past the bits of its type.
    #[error("varint overflows its type")]
    VarintOverflow,
    /// The record length is negative.
    #[error("negative record length")]
    NegativeLength,
    /// The fields do not end exactly where the record length says.
    #[error("fields do not fill the record length exactly")]
    LengthMismatch,
    /// A key, value or header value length is below -1 (only -1 means null).
    #[error("length below -1")]
    InvalidLength,
    /// The header count is negative.
    #[error("negative header count")]
    NegativeHeaderCount,
    /// A header key length is negative (header keys are never null).
    #[error("negative header key length")]
    NullHeaderKey,
}
