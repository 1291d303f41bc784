//! A reference v2 batch encoder written apart from the codec (its own varints, header
//! layout and CRC call), so that "the codec decodes what the reference wrote and encodes
//! it back byte for byte" tests two implementations against each other, not one against
//! itself. Compression is done with other settings than the codec's encoder uses.

use std::io::Write;

use crate::codec::record_batch::{BatchHeader, Compression, Record};

fn zigzag_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v as u64) << 1) ^ ((v >> 63) as u64);
    loop {
        let low = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn zigzag_varint(out: &mut Vec<u8>, v: i32) {
    // A varint is the varlong encoding of the 32-bit zigzag value.
    let z = ((v as u32) << 1) ^ ((v >> 31) as u32);
    let mut z = u64::from(z);
    loop {
        let low = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn bytes_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => zigzag_varint(out, -1),
        Some(b) => {
            zigzag_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

/// The uncompressed record section for `records`.
pub fn section(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut body = vec![r.attributes as u8];
        zigzag_varlong(&mut body, r.timestamp_delta);
        zigzag_varint(&mut body, r.offset_delta);
        bytes_field(&mut body, r.key.as_deref());
        bytes_field(&mut body, r.value.as_deref());
        zigzag_varint(&mut body, r.headers.len() as i32);
        for h in &r.headers {
            bytes_field(&mut body, Some(&h.key));
            bytes_field(&mut body, h.value.as_deref());
        }
        zigzag_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
    }
    out
}

/// How the reference compresses a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefCodec {
    None,
    Gzip,
    SnappyXerial,
    SnappyRaw,
    Lz4,
    Zstd,
}

impl RefCodec {
    pub const ALL: [RefCodec; 6] = [
        RefCodec::None,
        RefCodec::Gzip,
        RefCodec::SnappyXerial,
        RefCodec::SnappyRaw,
        RefCodec::Lz4,
        RefCodec::Zstd,
    ];

    pub fn compression(self) -> Compression {
        match self {
            RefCodec::None => Compression::None,
            RefCodec::Gzip => Compression::Gzip,
            RefCodec::SnappyXerial | RefCodec::SnappyRaw => Compression::Snappy,
            RefCodec::Lz4 => Compression::Lz4,
            RefCodec::Zstd => Compression::Zstd,
        }
    }

    /// Compresses like a client might: gzip at the fastest level, snappy in blocks of
    /// 1 KiB, lz4 with 256 KiB blocks and checksums, zstd at level 1.
    #[allow(clippy::unwrap_used)]
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            RefCodec::None => data.to_vec(),
            RefCodec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            RefCodec::SnappyRaw => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            RefCodec::SnappyXerial => {
                let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
                for chunk in data.chunks(1024) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            RefCodec::Lz4 => {
                let mut e = lz4::EncoderBuilder::new()
                    .block_size(lz4::BlockSize::Max256KB)
                    .checksum(lz4::ContentChecksum::ChecksumEnabled)
                    .level(1)
                    .build(Vec::new())
                    .unwrap();
                e.write_all(data).unwrap();
                let (out, r) = e.finish();
                r.unwrap();
                out
            }
            RefCodec::Zstd => zstd::bulk::compress(data, 1).unwrap(),
        }
    }
}

/// The batch bytes for `header` (its length, crc, magic and record count are ignored and
/// computed) holding `records`, the section compressed by `codec`; the header's codec
/// bits are set to `codec`'s.
pub fn batch(header: &BatchHeader, records: &[Record], codec: RefCodec) -> Vec<u8> {
    let payload = codec.compress(&section(records));
    let attributes = (header.attributes.0 & !7) | i16::from(codec.compression().id());
    let mut b = Vec::new();
    b.extend_from_slice(&header.base_offset.to_be_bytes());
    b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
    b.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&header.base_timestamp.to_be_bytes());
    b.extend_from_slice(&header.max_timestamp.to_be_bytes());
    b.extend_from_slice(&header.producer_id.to_be_bytes());
    b.extend_from_slice(&header.producer_epoch.to_be_bytes());
    b.extend_from_slice(&header.base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// What the codec must report as the header of [`batch`]'s output.
pub fn expected_header(header: &BatchHeader, bytes: &[u8], records: usize) -> BatchHeader {
    BatchHeader {
        batch_length: (bytes.len() - 12) as i32,
        magic: 2,
        crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
        attributes: crate::codec::record_batch::Attributes(i16::from_be_bytes([
            bytes[21], bytes[22],
        ])),
        record_count: records as i32,
        ..*header
    }
}
