//! Bounded decompression and compression of a batch's record section.
//!
//! The decompressors are the crates kafka-protocol links (flate2, snap, lz4, zstd), driven
//! directly: kafka-protocol's own `compression` module has no limit on the output, so one
//! small hostile batch could make the proxy allocate gigabytes. Here every codec stops at
//! the caller's cap, and snappy's declared block sizes are checked before anything is
//! allocated for them.

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};

use super::error::CodecError;
use super::header::Compression;

/// How a snappy payload is framed. Java clients and kafka-python write the xerial
/// (snappy-java) block framing; librdkafka (2.16) writes one bare snappy block. Kafka
/// readers accept both, and a re-encoded batch keeps the framing it came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SnappyFraming {
    /// snappy-java's `SnappyOutputStream` format: a 16-byte header, then blocks of at most
    /// 32 KiB uncompressed data, each behind its compressed length (u32).
    #[default]
    Xerial,
    /// One bare snappy block.
    Raw,
}

/// The 8 magic bytes of the xerial header, followed by version 1 and compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block when compressing (snappy-java's default).
const XERIAL_BLOCK: usize = 32 * 1024;
/// The largest zstd window this decoder accepts regardless of the cap: 2^23 (8 MiB) is the
/// window of zstd's level 19 on input of unknown size; levels up to 19 never need more.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
/// zstd's own default limit (128 MiB windows).
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// Decompresses a record section of `codec` into at most `limit` bytes. Returns the
/// section and, for snappy, the framing found (xerial otherwise).
pub(super) fn decompress(
    codec: Compression,
    payload: &Bytes,
    limit: usize,
) -> Result<(Bytes, SnappyFraming), CodecError> {
    let failed = |e: &dyn std::fmt::Display| CodecError::Decompress {
        codec,
        reason: e.to_string(),
    };
    let section = match codec {
        Compression::None => return Ok((payload.clone(), SnappyFraming::default())),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(&payload[..]), limit)
            .map_err(|e| e.into_error(codec))?,
        Compression::Snappy => {
            return snappy_decompress(payload, limit).map_err(|e| e.into_error(codec))
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&payload[..]).map_err(|e| failed(&e))?;
            read_capped(decoder, limit).map_err(|e| e.into_error(codec))?
        }
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(&payload[..]).map_err(|e| failed(&e))?;
            let window_log = usize::BITS - limit.leading_zeros();
            decoder
                .window_log_max(window_log.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG))
                .map_err(|e| failed(&e))?;
            read_capped(decoder, limit).map_err(|e| e.into_error(codec))?
        }
    };
    Ok((section, SnappyFraming::default()))
}

/// A decompression failure before the codec is attached.
enum Failure {
    TooLarge(usize),
    Invalid(String),
}

impl Failure {
    fn into_error(self, codec: Compression) -> CodecError {
        match self {
            Failure::TooLarge(limit) => CodecError::DecompressedTooLarge { limit },
            Failure::Invalid(reason) => CodecError::Decompress { codec, reason },
        }
    }
}

/// Reads `reader` to its end, failing as soon as it yields more than `limit` bytes.
fn read_capped(reader: impl Read, limit: usize) -> Result<Bytes, Failure> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    if out.len() > limit {
        return Err(Failure::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

fn snappy_decompress(payload: &[u8], limit: usize) -> Result<(Bytes, SnappyFraming), Failure> {
    let invalid = |e: snap::Error| Failure::Invalid(e.to_string());
    let Some(mut blocks) = payload
        .strip_prefix(&XERIAL_HEADER[..8])
        .and_then(|rest| rest.get(8..))
    else {
        let len = snap::raw::decompress_len(payload).map_err(invalid)?;
        if len > limit {
            return Err(Failure::TooLarge(limit));
        }
        let mut out = vec![0; len];
        let written = snap::raw::Decoder::new()
            .decompress(payload, &mut out)
            .map_err(invalid)?;
        out.truncate(written);
        return Ok((Bytes::from(out), SnappyFraming::Raw));
    };
    let mut out = BytesMut::new();
    let mut decoder = snap::raw::Decoder::new();
    while !blocks.is_empty() {
        let (len, rest) = blocks
            .split_first_chunk::<4>()
            .ok_or_else(|| Failure::Invalid("truncated xerial block length".into()))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        let block = rest
            .get(..len)
            .ok_or_else(|| Failure::Invalid("truncated xerial block".into()))?;
        blocks = &rest[len..];
        let size = snap::raw::decompress_len(block).map_err(invalid)?;
        let start = out.len();
        if size > limit - start {
            return Err(Failure::TooLarge(limit));
        }
        out.resize(start + size, 0);
        let written = decoder
            .decompress(block, &mut out[start..])
            .map_err(invalid)?;
        out.truncate(start + written);
    }
    Ok((out.freeze(), SnappyFraming::Xerial))
}

/// Compresses a record section with `codec` (snappy in the given framing).
pub(super) fn compress(
    codec: Compression,
    section: &[u8],
    snappy_framing: SnappyFraming,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let failed = |e: &dyn std::fmt::Display| CodecError::Compress {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => out.put_slice(section),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
            encoder.write_all(section).map_err(|e| failed(&e))?;
            encoder.finish().map_err(|e| failed(&e))?;
        }
        Compression::Snappy => {
            let mut encoder = snap::raw::Encoder::new();
            match snappy_framing {
                SnappyFraming::Raw => {
                    out.put_slice(&encoder.compress_vec(section).map_err(|e| failed(&e))?);
                }
                SnappyFraming::Xerial => {
                    out.put_slice(XERIAL_HEADER);
                    for chunk in section.chunks(XERIAL_BLOCK) {
                        let block = encoder.compress_vec(chunk).map_err(|e| failed(&e))?;
                        let len = u32::try_from(block.len()).map_err(|e| failed(&e))?;
                        out.put_u32(len);
                        out.put_slice(&block);
                    }
                }
            }
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .build(out.writer())
                .map_err(|e| failed(&e))?;
            encoder.write_all(section).map_err(|e| failed(&e))?;
            let (_, finished) = encoder.finish();
            finished.map_err(|e| failed(&e))?;
        }
        Compression::Zstd => {
            zstd::stream::copy_encode(section, out.writer(), zstd::DEFAULT_COMPRESSION_LEVEL)
                .map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}
