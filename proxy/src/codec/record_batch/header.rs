//! The 61-byte v2 batch header: field offsets, attribute bits, parsing and writing.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::error::CodecError;

/// Base offset (8) and batch length (4): the bytes in front of every batch, any magic.
pub const LOG_OVERHEAD: usize = 12;
/// Size of a v2 batch header, up to and including the record count.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Smallest v2 batch length field: the header after base offset and length.
pub const MIN_BATCH_LENGTH: usize = BATCH_HEADER_SIZE - LOG_OVERHEAD;
/// Offset of `magic` from the start of a batch (the same for magic 0, 1 and 2).
pub const MAGIC_OFFSET: usize = 16;
/// Offset of `crc` from the start of a v2 batch.
pub const CRC_OFFSET: usize = 17;
/// Offset of `attributes`, where the CRC-32C coverage starts.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of `records count` from the start of a v2 batch.
pub const RECORDS_COUNT_OFFSET: usize = 57;
/// The record batch format this codec decodes.
pub const MAGIC_V2: i8 = 2;

/// A batch's compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Codec 0.
    None,
    /// Codec 1.
    Gzip,
    /// Codec 2.
    Snappy,
    /// Codec 3 (the LZ4 frame format).
    Lz4,
    /// Codec 4.
    Zstd,
}

impl Compression {
    /// Every codec, in codec-id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec for the three attribute bits, if it is one Kafka defines.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// The attribute bits of this codec.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// How a batch's timestamps were assigned (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// The producer's clock (`CreateTime`).
    CreateTime,
    /// The broker's clock at append (`LogAppendTime`): every record's timestamp is the
    /// batch's max timestamp.
    LogAppendTime,
}

/// The batch attributes, kept as the raw 16 bits so that every bit (including ones this
/// codec has no name for) survives a re-encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attributes(pub i16);

impl Attributes {
    const CODEC_MASK: i16 = 0x07;
    const TIMESTAMP_TYPE: i16 = 0x08;
    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;
    const DELETE_HORIZON: i16 = 0x40;

    /// The three codec bits (0-7; only 0-4 are defined).
    pub fn codec_id(self) -> u8 {
        (self.0 & Self::CODEC_MASK) as u8
    }

    /// The compression codec.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownCompression`] for codec bits 5, 6 or 7.
    pub fn compression(self) -> Result<Compression, CodecError> {
        let codec = self.codec_id();
        Compression::from_id(codec).ok_or(CodecError::UnknownCompression { codec })
    }

    /// The timestamp type.
    pub fn timestamp_type(self) -> TimestampType {
        if self.0 & Self::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }

    /// Whether the base timestamp holds a delete horizon (KIP-534, set by compaction).
    pub fn has_delete_horizon(self) -> bool {
        self.0 & Self::DELETE_HORIZON != 0
    }

    /// These attributes with the codec bits replaced.
    pub fn with_compression(self, compression: Compression) -> Self {
        Attributes((self.0 & !Self::CODEC_MASK) | i16::from(compression.id()))
    }

    /// These attributes with the timestamp type bit set as given.
    pub fn with_timestamp_type(self, timestamp_type: TimestampType) -> Self {
        Self::flag(
            self,
            Self::TIMESTAMP_TYPE,
            timestamp_type == TimestampType::LogAppendTime,
        )
    }

    /// These attributes with the transactional bit set as given.
    pub fn with_transactional(self, on: bool) -> Self {
        Self::flag(self, Self::TRANSACTIONAL, on)
    }

    /// These attributes with the control bit set as given.
    pub fn with_control(self, on: bool) -> Self {
        Self::flag(self, Self::CONTROL, on)
    }

    fn flag(self, bit: i16, on: bool) -> Self {
        Attributes(if on { self.0 | bit } else { self.0 & !bit })
    }
}

/// Every field of a v2 batch header, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record (0 in a Produce request; assigned by the broker).
    pub base_offset: i64,
    /// Bytes after this field: 49 + the (compressed) records.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Format version: 2.
    pub magic: i8,
    /// CRC-32C of attributes..end of batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional, control and delete-horizon bits.
    pub attributes: Attributes,
    /// Offset of the last record minus base offset (compaction may leave it past the last
    /// record still present).
    pub last_offset_delta: i32,
    /// Timestamp the record deltas are relative to (or the delete horizon, see
    /// [`Attributes::has_delete_horizon`]).
    pub base_timestamp: i64,
    /// Largest record timestamp (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records (as sent; may be negative in hostile input).
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header at the start of `batch`, which must hold at least
    /// [`BATCH_HEADER_SIZE`] bytes; `None` otherwise. Checks nothing else.
    pub fn parse(batch: &[u8]) -> Option<Self> {
        let h = batch.get(..BATCH_HEADER_SIZE)?;
        Some(BatchHeader {
            base_offset: i64::from_be_bytes(array(h, 0)?),
            batch_length: i32::from_be_bytes(array(h, 8)?),
            partition_leader_epoch: i32::from_be_bytes(array(h, 12)?),
            magic: i8::from_be_bytes(array(h, MAGIC_OFFSET)?),
            crc: u32::from_be_bytes(array(h, CRC_OFFSET)?),
            attributes: Attributes(i16::from_be_bytes(array(h, ATTRIBUTES_OFFSET)?)),
            last_offset_delta: i32::from_be_bytes(array(h, 23)?),
            base_timestamp: i64::from_be_bytes(array(h, 27)?),
            max_timestamp: i64::from_be_bytes(array(h, 35)?),
            producer_id: i64::from_be_bytes(array(h, 43)?),
            producer_epoch: i16::from_be_bytes(array(h, 51)?),
            base_sequence: i32::from_be_bytes(array(h, 53)?),
            record_count: i32::from_be_bytes(array(h, RECORDS_COUNT_OFFSET)?),
        })
    }

    /// Appends the header with the given length and record count and a zero crc (the
    /// caller fills it in once the records follow). Magic is always 2.
    pub(super) fn write(&self, out: &mut BytesMut, batch_length: i32, record_count: i32) {
        out.put_i64(self.base_offset);
        out.put_i32(batch_length);
        out.put_i32(self.partition_leader_epoch);
        out.put_i8(MAGIC_V2);
        out.put_u32(0);
        out.put_i16(self.attributes.0);
        out.put_i32(self.last_offset_delta);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(record_count);
    }

    /// The absolute offset of a record with this offset delta.
    pub fn record_offset(&self, offset_delta: i32) -> i64 {
        self.base_offset.wrapping_add(i64::from(offset_delta))
    }

    /// The timestamp a consumer sees for a record with this delta: the max timestamp under
    /// LogAppendTime, base timestamp + delta otherwise.
    pub fn record_timestamp(&self, timestamp_delta: i64) -> i64 {
        match self.attributes.timestamp_type() {
            TimestampType::LogAppendTime => self.max_timestamp,
            TimestampType::CreateTime => self.base_timestamp.wrapping_add(timestamp_delta),
        }
    }
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// CRC-32C of a complete batch's covered bytes (attributes to the end).
pub(super) fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or_default())
}
