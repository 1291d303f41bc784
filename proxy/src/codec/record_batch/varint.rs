//! Kafka's zigzag varints (protobuf style): `varint` for i32, `varlong` for i64.

use bytes::{BufMut, BytesMut};

use super::error::RecordFault;

/// Reads an unsigned LEB128 value of at most `max_bytes` bytes and `bits` bits.
fn read_unsigned(
    bytes: &[u8],
    pos: &mut usize,
    max_bytes: usize,
    bits: u32,
) -> Result<u64, RecordFault> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *bytes.get(*pos).ok_or(RecordFault::Truncated)?;
        *pos += 1;
        let shift = 7 * i as u32;
        let payload = u64::from(byte & 0x7f);
        // The last byte may only carry the bits that are left of the type.
        if shift + 7 > bits && payload >> (bits - shift) != 0 {
            return Err(RecordFault::VarintOverflow);
        }
        value |= payload << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RecordFault::VarintOverflow)
}

/// Reads a zigzag varint (i32, at most 5 bytes) at `*pos`, advancing it.
pub(super) fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<i32, RecordFault> {
    let raw = read_unsigned(bytes, pos, 5, 32)? as u32;
    Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (i64, at most 10 bytes) at `*pos`, advancing it.
pub(super) fn read_varlong(bytes: &[u8], pos: &mut usize) -> Result<i64, RecordFault> {
    let raw = read_unsigned(bytes, pos, 10, 64)?;
    Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
}

fn put_unsigned(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    // 7 bits per byte; 0 still takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// The encoded length of `value` as a zigzag varint.
pub(super) fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// The encoded length of `value` as a zigzag varlong.
pub(super) fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

/// Appends `value` as a zigzag varint.
pub(super) fn put_varint(out: &mut BytesMut, value: i32) {
    put_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zigzag varlong.
pub(super) fn put_varlong(out: &mut BytesMut, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lengths_match_encodings(v in any::<i64>()) {
            let mut out = BytesMut::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let v = v as i32;
            out.clear();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
        }
    }

    #[test]
    fn known_encodings() {
        for (v, enc) in [
            (0, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 1]),
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(&out[..], enc);
            assert_eq!(read_varint(enc, &mut 0).unwrap(), v);
        }
        let mut out = BytesMut::new();
        put_varint(&mut out, i32::MIN);
        assert_eq!(&out[..], &[0xff, 0xff, 0xff, 0xff, 0x0f]);
    }

    #[test]
    fn overlong_and_overflowing_varints_are_refused() {
        assert_eq!(
            read_varint(&[0xff; 5], &mut 0),
            Err(RecordFault::VarintOverflow)
        );
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut 0),
            Err(RecordFault::VarintOverflow)
        );
        assert_eq!(
            read_varlong(&[0xff; 10], &mut 0),
            Err(RecordFault::VarintOverflow)
        );
        assert_eq!(
            read_varlong(&[0x80, 0x80], &mut 0),
            Err(RecordFault::Truncated)
        );
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read_varlong(&max, &mut 0), Ok(i64::MIN));
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<i32>(), l in any::<i64>()) {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            put_varlong(&mut out, l);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos).unwrap(), v);
            prop_assert_eq!(read_varlong(&out, &mut pos).unwrap(), l);
            prop_assert_eq!(pos, out.len());
        }
    }
}
