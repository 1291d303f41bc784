//! Cutting a `records` field into batches, header by header, without copying or decoding.

use bytes::Bytes;

use super::compression::decompress;
use super::error::CodecError;
use super::header::{
    batch_crc, BatchHeader, BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC_OFFSET, MIN_BATCH_LENGTH,
};
use super::records::parse_records;
use super::DecodedBatch;

/// Smallest length field of any message format (a magic 0 message: crc, magic,
/// attributes, key length, value length); anything shorter cannot be a batch.
const MIN_ANY_LENGTH: usize = 14;

/// One piece of a `records` field. Every piece holds its original bytes (a zero-copy
/// slice of the field); concatenating the pieces' bytes gives the field back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchPiece {
    /// A complete v2 batch with records: the one kind a caller decodes and may change.
    Records(RawBatch),
    /// A complete v2 control batch (transaction commit/abort markers). Pass through.
    Control(RawBatch),
    /// A complete v2 batch with record count 0, as log compaction leaves them (or as a
    /// hostile client may send them). Pass through.
    Empty(RawBatch),
    /// A complete message set entry of magic 0 or 1 (pre-0.11 format), as a broker may
    /// still serve from an old log. Pass through; never decoded. Produce requests with it
    /// are refused by [`super::check_batch_headers`].
    Legacy {
        /// 0 or 1.
        magic: i8,
        /// The entry's bytes.
        bytes: Bytes,
    },
    /// The rest of the field, shorter than its batch length says (or than 12 bytes). Normal
    /// at the end of a Fetch response, which is cut at the fetch size; an error in a
    /// Produce request (see [`super::check_batch_headers`]). Always the last piece.
    Truncated(Bytes),
}

impl BatchPiece {
    /// The piece's original bytes.
    pub fn bytes(&self) -> &Bytes {
        match self {
            BatchPiece::Records(b) | BatchPiece::Control(b) | BatchPiece::Empty(b) => &b.bytes,
            BatchPiece::Legacy { bytes, .. } | BatchPiece::Truncated(bytes) => bytes,
        }
    }

    /// Whether the piece is to be forwarded as its original bytes (everything but
    /// [`BatchPiece::Records`]).
    pub fn is_pass_through(&self) -> bool {
        !matches!(self, BatchPiece::Records(_))
    }
}

/// A complete v2 batch, header parsed, records not yet looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RawBatch {
    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes after the header: the records, compressed if the batch is.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(BATCH_HEADER_SIZE.min(self.bytes.len())..)
    }

    /// Checks the crc field against the CRC-32C of attributes..end.
    ///
    /// # Errors
    ///
    /// [`CodecError::CrcMismatch`].
    pub fn verify_crc(&self) -> Result<(), CodecError> {
        let computed = batch_crc(&self.bytes);
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(CodecError::CrcMismatch {
                stored: self.header.crc,
                computed,
            })
        }
    }

    /// The uncompressed record section (the payload itself when the batch is not
    /// compressed), never larger than `max_decompressed_bytes`.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownCompression`], [`CodecError::Decompress`],
    /// [`CodecError::DecompressedTooLarge`].
    pub fn decompress(&self, max_decompressed_bytes: usize) -> Result<Bytes, CodecError> {
        let codec = self.header.attributes.compression()?;
        Ok(decompress(codec, &self.payload(), max_decompressed_bytes)?.0)
    }

    /// Verifies the crc, decompresses (at most `max_decompressed_bytes`) and parses every
    /// record. Keys, values and headers of an uncompressed batch are slices of
    /// [`RawBatch::bytes`]; of a compressed one, slices of the decompressed buffer.
    ///
    /// # Errors
    ///
    /// Any of [`RawBatch::verify_crc`], [`RawBatch::decompress`], and for the records
    /// [`CodecError::NegativeRecordCount`], [`CodecError::MalformedRecord`],
    /// [`CodecError::TrailingBytes`].
    pub fn decode(&self, max_decompressed_bytes: usize) -> Result<DecodedBatch, CodecError> {
        self.verify_crc()?;
        let codec = self.header.attributes.compression()?;
        let (section, snappy_framing) = decompress(codec, &self.payload(), max_decompressed_bytes)?;
        let records = parse_records(&section, self.header.record_count)?;
        Ok(DecodedBatch {
            header: self.header,
            snappy_framing,
            records,
        })
    }
}

/// Splits a `records` field (a Produce request's or a Fetch response's) into pieces.
///
/// Only headers are read; nothing is allocated or copied. The iterator yields an error
/// for a batch it cannot delimit or classify (a length field below any format's minimum,
/// a v2 batch shorter than its header, a magic other than 0, 1 and 2) and then stops.
pub fn split_batches(records: &Bytes) -> Batches {
    Batches {
        rest: records.clone(),
        failed: false,
    }
}

/// Iterator over the pieces of a `records` field; see [`split_batches`].
#[derive(Debug, Clone)]
pub struct Batches {
    rest: Bytes,
    failed: bool,
}

impl Iterator for Batches {
    type Item = Result<BatchPiece, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let piece = self.next_piece();
        self.failed = piece.is_err();
        Some(piece)
    }
}

impl std::iter::FusedIterator for Batches {}

impl Batches {
    fn next_piece(&mut self) -> Result<BatchPiece, CodecError> {
        let Some(length_field) = self.rest.get(8..LOG_OVERHEAD) else {
            return Ok(BatchPiece::Truncated(std::mem::take(&mut self.rest)));
        };
        let length = i32::from_be_bytes(
            length_field
                .try_into()
                .map_err(|_| CodecError::TruncatedHeader)?,
        );
        let len = usize::try_from(length)
            .ok()
            .filter(|l| *l >= MIN_ANY_LENGTH)
            .ok_or(CodecError::BatchLengthTooSmall { length })?;
        let total = LOG_OVERHEAD + len;
        if total > self.rest.len() {
            return Ok(BatchPiece::Truncated(std::mem::take(&mut self.rest)));
        }
        let bytes = self.rest.split_to(total);
        let magic = i8::from_be_bytes([bytes[MAGIC_OFFSET]]);
        match magic {
            0 | 1 => Ok(BatchPiece::Legacy { magic, bytes }),
            2 if len >= MIN_BATCH_LENGTH => {
                let header = BatchHeader::parse(&bytes).ok_or(CodecError::TruncatedHeader)?;
                let raw = RawBatch { header, bytes };
                Ok(if header.attributes.is_control() {
                    BatchPiece::Control(raw)
                } else if header.record_count == 0 {
                    BatchPiece::Empty(raw)
                } else {
                    BatchPiece::Records(raw)
                })
            }
            2 => Err(CodecError::BatchLengthTooSmall { length }),
            _ => Err(CodecError::UnsupportedMagic {
                magic: bytes[MAGIC_OFFSET],
            }),
        }
    }
}
