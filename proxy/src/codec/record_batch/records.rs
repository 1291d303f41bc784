//! The records inside a v2 batch (after decompression): parsing and encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{CodecError, RecordFault};
use super::varint::{put_varint, put_varlong, read_varint, read_varlong, varint_len, varlong_len};

/// Smallest encoding of one record: length, attributes, timestamp delta, offset delta,
/// key length, value length, header count, one byte each.
pub(super) const MIN_RECORD_BYTES: usize = 7;
/// Smallest encoding of one record header: key length 0 and value length -1.
const MIN_HEADER_BYTES: usize = 2;

/// One record of a v2 batch, exactly as encoded (offsets and timestamps are the deltas
/// the wire carries; see [`super::BatchHeader::record_offset`] and
/// [`super::BatchHeader::record_timestamp`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The record attributes byte (unused by Kafka today; kept as sent).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// The key; `None` is a null key (length -1), distinct from an empty one.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone), distinct from an empty one.
    pub value: Option<Bytes>,
    /// The headers in wire order; duplicate keys are kept, each where it was.
    pub headers: Vec<Header>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header key (a string by convention; kept as bytes so that invalid UTF-8
    /// round-trips too).
    pub key: Bytes,
    /// The value; `None` is a null value (length -1).
    pub value: Option<Bytes>,
}

/// A cursor over one record section.
struct Reader<'a> {
    section: &'a Bytes,
    pos: usize,
    /// Where the current record ends.
    end: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<i32, RecordFault> {
        read_varint(&self.section[..self.end], &mut self.pos)
    }

    fn varlong(&mut self) -> Result<i64, RecordFault> {
        read_varlong(&self.section[..self.end], &mut self.pos)
    }

    fn byte(&mut self) -> Result<u8, RecordFault> {
        let b = *self.section[..self.end]
            .get(self.pos)
            .ok_or(RecordFault::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes, RecordFault> {
        let end = self.pos.checked_add(len).filter(|e| *e <= self.end);
        let end = end.ok_or(RecordFault::Truncated)?;
        let slice = self.section.slice(self.pos..end);
        self.pos = end;
        Ok(slice)
    }

    /// A length-prefixed byte string where -1 means null.
    fn nullable(&mut self) -> Result<Option<Bytes>, RecordFault> {
        match self.varint()? {
            -1 => Ok(None),
            len => Ok(Some(self.bytes(
                usize::try_from(len).map_err(|_| RecordFault::InvalidLength)?,
            )?)),
        }
    }

    fn record(&mut self) -> Result<Record, RecordFault> {
        self.end = self.section.len();
        let length = self.varint()?;
        let length = usize::try_from(length).map_err(|_| RecordFault::NegativeLength)?;
        let end = self.pos.checked_add(length).filter(|e| *e <= self.end);
        self.end = end.ok_or(RecordFault::Truncated)?;
        let attributes = i8::from_be_bytes([self.byte()?]);
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        let key = self.nullable()?;
        let value = self.nullable()?;
        let count = self.varint()?;
        let count = usize::try_from(count).map_err(|_| RecordFault::NegativeHeaderCount)?;
        // Never trust the count for the allocation: each header takes 2 bytes at least.
        let room = (self.end - self.pos) / MIN_HEADER_BYTES;
        if count > room {
            return Err(RecordFault::Truncated);
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let key_len = self.varint()?;
            let key_len = usize::try_from(key_len).map_err(|_| RecordFault::NullHeaderKey)?;
            let key = self.bytes(key_len)?;
            let value = self.nullable()?;
            headers.push(Header { key, value });
        }
        if self.pos != self.end {
            return Err(RecordFault::LengthMismatch);
        }
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

/// Parses exactly `count` records filling all of `section`. Every slice it returns
/// shares `section`'s buffer.
pub(super) fn parse_records(section: &Bytes, count: i32) -> Result<Vec<Record>, CodecError> {
    let count = usize::try_from(count).map_err(|_| CodecError::NegativeRecordCount { count })?;
    let room = section.len() / MIN_RECORD_BYTES;
    if count > room {
        return Err(CodecError::RecordCountTooLarge {
            count,
            room: section.len(),
        });
    }
    let mut records = Vec::with_capacity(count);
    let mut reader = Reader {
        section,
        pos: 0,
        end: section.len(),
    };
    for index in 0..count {
        let record = reader
            .record()
            .map_err(|fault| CodecError::MalformedRecord { index, fault })?;
        records.push(record);
    }
    if reader.pos != section.len() {
        return Err(CodecError::TrailingBytes {
            count,
            extra: section.len() - reader.pos,
        });
    }
    Ok(records)
}

/// Encodes `records` as an uncompressed record section, appended to `out`.
///
/// # Errors
///
/// [`CodecError::TooLargeToEncode`] for a key, value, header or record longer than
/// `i32::MAX` bytes or more than `i32::MAX` headers.
pub fn encode_records(records: &[Record], out: &mut BytesMut) -> Result<(), CodecError> {
    for record in records {
        let value = record.value.as_deref();
        encode_record_with(
            record,
            record.headers.iter(),
            value.map(<[u8]>::len),
            |out| {
                out.put_slice(value.unwrap_or_default());
                Ok::<(), CodecError>(())
            },
            out,
        )?;
    }
    Ok(())
}

/// Appends one record to `out` straight, without an intermediate buffer: `record`'s
/// attributes, deltas and key, then a value of `value_len` bytes (`None`: null) that
/// `write_value` appends itself (it must append exactly that many), then `headers` in
/// place of the record's own. This is how the encryption stage seals or opens a value where
/// it lands in the new batch.
///
/// # Errors
///
/// [`CodecError::TooLargeToEncode`] as [`encode_records`], or what `write_value` returns.
pub fn encode_record_with<'h, H, E, W>(
    record: &Record,
    headers: H,
    value_len: Option<usize>,
    write_value: W,
    out: &mut BytesMut,
) -> Result<(), E>
where
    H: Iterator<Item = &'h Header> + Clone,
    E: From<CodecError>,
    W: FnOnce(&mut BytesMut) -> Result<(), E>,
{
    let (mut header_count, mut headers_len) = (0, 0);
    for header in headers.clone() {
        header_count += 1;
        headers_len += varint_len(to_i32(header.key.len(), "header key length")?)
            + header.key.len()
            + nullable_len(header.value.as_ref().map(Bytes::len), "header value length")?;
    }
    let header_count = to_i32(header_count, "header count")?;
    let length = 1
        + varlong_len(record.timestamp_delta)
        + varint_len(record.offset_delta)
        + nullable_len(record.key.as_ref().map(Bytes::len), "key length")?
        + nullable_len(value_len, "value length")?
        + varint_len(header_count)
        + headers_len;
    let length = to_i32(length, "record length")?;
    out.reserve(varint_len(length) + length as usize);
    put_varint(out, length);
    out.put_i8(record.attributes);
    put_varlong(out, record.timestamp_delta);
    put_varint(out, record.offset_delta);
    put_nullable(out, record.key.as_deref(), "key length")?;
    match value_len {
        None => put_varint(out, -1),
        Some(len) => {
            put_varint(out, to_i32(len, "value length")?);
            let start = out.len();
            write_value(out)?;
            let written = out.len() - start;
            if written != len {
                return Err(CodecError::ValueLengthMismatch {
                    announced: len,
                    written,
                }
                .into());
            }
        }
    }
    put_varint(out, header_count);
    for header in headers {
        put_varint(out, to_i32(header.key.len(), "header key length")?);
        out.put_slice(&header.key);
        put_nullable(out, header.value.as_deref(), "header value length")?;
    }
    Ok(())
}

/// The encoded length of a nullable byte string of `len` bytes (`None`: null).
fn nullable_len(len: Option<usize>, what: &'static str) -> Result<usize, CodecError> {
    Ok(match len {
        None => varint_len(-1),
        Some(len) => varint_len(to_i32(len, what)?) + len,
    })
}

fn put_nullable(
    out: &mut BytesMut,
    bytes: Option<&[u8]>,
    what: &'static str,
) -> Result<(), CodecError> {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, to_i32(b.len(), what)?);
            out.put_slice(b);
        }
    }
    Ok(())
}

pub(super) fn to_i32(value: usize, what: &'static str) -> Result<i32, CodecError> {
    i32::try_from(value).map_err(|_| CodecError::TooLargeToEncode { what, value })
}
