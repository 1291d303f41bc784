//! The proxy's one codec for Kafka record batches (magic v2).
//!
//! Why it exists: the proxy must look inside `records` fields (to check Produce requests,
//! to encrypt values on the way in and decrypt them on the way out, to read its own
//! anchor topic) without changing anything it was not asked to change. kafka-protocol's
//! `RecordBatchEncoder` cannot do that: it re-derives batch boundaries (merging adjacent
//! batches with equal properties), drops LogAppendTime, writes nothing for an empty batch,
//! recomputes base offset and timestamps from the records, collapses duplicate header keys
//! and fails on the truncated batch that ends most Fetch responses. Its decoder and
//! decompressors also size buffers from untrusted counts and do not bound decompression.
//!
//! This module works batch by batch:
//! - [`split_batches`] cuts a `records` field into [`BatchPiece`]s by reading headers only
//!   (zero-copy, no allocation from any count). Control batches, empty batches, magic 0/1
//!   entries and a truncated tail are pass-through pieces that keep their original bytes.
//! - [`check_batch_headers`] is the cheap header walk a Produce request must pass.
//! - [`RawBatch::decode`] verifies the CRC-32C, decompresses under a caller-given cap and
//!   parses the records into a [`DecodedBatch`] whose [`Record`]s keep attributes, deltas,
//!   null versus empty keys and values, and every header in order, duplicates included.
//! - [`DecodedBatch::encode`] writes one batch back with every header field kept and only
//!   length, record count and CRC recomputed; [`rewrite_batches`] applies a caller's edit
//!   to each batch of a field and re-encodes only the batches it changed.
//! - [`build_batch`] makes a fresh batch for the proxy's own producer.
//!
//! Nothing here panics or allocates from an unchecked count on any input: record and
//! header counts are checked against the bytes left before a `Vec` is sized, lengths
//! against the bytes present, and decompression stops at the caller's cap.

mod check;
mod compression;
mod encode;
mod error;
mod header;
mod records;
mod split;
mod varint;

#[cfg(test)]
mod tests;

pub use check::check_batch_headers;
pub use compression::SnappyFraming;
pub use encode::{
    build_batch, rewrite_batches, rewrite_batches_with, BatchEdit, DecodedBatch, NewRecord,
};
pub use error::{CodecError, RecordFault};
pub use header::{
    Attributes, BatchHeader, Compression, TimestampType, BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2,
};
pub use records::{encode_record_with, encode_records, Header, Record};
pub use split::{split_batches, BatchPiece, Batches, RawBatch};
