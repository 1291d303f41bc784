//! Property tests: random batches from the reference encoder, in every codec, through
//! split, decode and the real encoder; multiple batches; pass-through pieces; hostile
//! bytes.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::reference::{self, RefCodec};
use crate::codec::record_batch::{
    check_batch_headers, encode_records, rewrite_batches, split_batches, Attributes, BatchEdit,
    BatchHeader, BatchPiece, CodecError, Header, Record,
};

const CAP: usize = 1 << 20;

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_header_key() -> impl Strategy<Value = Bytes> {
    // Few distinct keys, so most records carry duplicates.
    prop_oneof![
        3 => prop_oneof![Just(&b"trace"[..]), Just(&b"dup"[..]), Just(&b""[..])].prop_map(Bytes::from_static),
        1 => arb_bytes(12),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        any::<i8>(),
        prop_oneof![0i64..1000, any::<i64>()],
        prop_oneof![0i32..100, any::<i32>()],
        proptest::option::of(arb_bytes(24)),
        proptest::option::of(arb_bytes(200)),
        proptest::collection::vec(
            (arb_header_key(), proptest::option::of(arb_bytes(16))),
            0..6,
        ),
    )
        .prop_map(
            |(attributes, timestamp_delta, offset_delta, key, value, headers)| Record {
                attributes,
                timestamp_delta,
                offset_delta,
                key,
                value,
                headers: headers
                    .into_iter()
                    .map(|(key, value)| Header { key, value })
                    .collect(),
            },
        )
}

/// A header with random fields; the codec and control bits are cleared (the tests set
/// the codec; control batches are pass-through), every other bit is random.
fn arb_header() -> impl Strategy<Value = BatchHeader> {
    (
        (any::<i64>(), any::<i32>(), any::<i16>(), any::<i32>()),
        (any::<i64>(), any::<i64>()),
        (
            prop_oneof![Just(-1i64), any::<i64>()],
            any::<i16>(),
            prop_oneof![Just(-1i32), any::<i32>()],
        ),
    )
        .prop_map(
            |((base_offset, ple, attrs, lod), (base_ts, max_ts), (pid, epoch, seq))| BatchHeader {
                base_offset,
                batch_length: 0,
                partition_leader_epoch: ple,
                magic: 2,
                crc: 0,
                attributes: Attributes(attrs & !0x27),
                last_offset_delta: lod,
                base_timestamp: base_ts,
                max_timestamp: max_ts,
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: seq,
                record_count: 0,
            },
        )
}

fn arb_codec() -> impl Strategy<Value = RefCodec> {
    proptest::sample::select(RefCodec::ALL.to_vec())
}

fn only_records_piece(bytes: &Bytes) -> crate::codec::record_batch::RawBatch {
    let pieces: Vec<_> = split_batches(bytes).collect::<Result<_, _>>().unwrap();
    assert_eq!(pieces.len(), 1);
    match pieces.into_iter().next().unwrap() {
        BatchPiece::Records(raw) => raw,
        other => panic!("expected a records batch, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Decode reports every header field and record exactly; the real encoder gives back
    /// the reference bytes (uncompressed) or the reference record section and the same
    /// header fields (compressed), and its output decodes to the same records.
    #[test]
    fn decode_then_encode_preserves_everything(
        header in arb_header(),
        records in proptest::collection::vec(arb_record(), 1..8),
        codec in arb_codec(),
    ) {
        let original = Bytes::from(reference::batch(&header, &records, codec));
        let raw = only_records_piece(&original);
        let expected = reference::expected_header(&header, &original, records.len());
        prop_assert_eq!(raw.header(), &expected);
        let decoded = raw.decode(CAP).unwrap();
        prop_assert_eq!(&decoded.header, &expected);
        prop_assert_eq!(&decoded.records, &records);

        let reencoded = decoded.to_bytes().unwrap();
        let section = reference::section(&records);
        let mut ours = BytesMut::new();
        encode_records(&decoded.records, &mut ours).unwrap();
        prop_assert_eq!(&ours[..], &section[..]);
        prop_assert_eq!(&raw.decompress(CAP).unwrap()[..], &section[..]);
        if codec == RefCodec::None {
            prop_assert_eq!(&reencoded, &original);
        }
        let again = only_records_piece(&reencoded);
        let h = again.header();
        prop_assert_eq!(
            BatchHeader { batch_length: 0, crc: 0, ..*h },
            BatchHeader { batch_length: 0, crc: 0, ..expected }
        );
        let redecoded = again.decode(CAP).unwrap();
        prop_assert_eq!(&redecoded.records, &records);
        prop_assert_eq!(redecoded.snappy_framing, decoded.snappy_framing);
        prop_assert_eq!(&again.decompress(CAP).unwrap()[..], &section[..]);
    }

    /// Adjacent batches with identical properties are re-encoded one by one, never merged.
    #[test]
    fn adjacent_equal_batches_stay_separate(
        header in arb_header(),
        records in proptest::collection::vec(arb_record(), 1..4),
        copies in 2usize..5,
        codec in arb_codec(),
    ) {
        let one = reference::batch(&header, &records, codec);
        let field = Bytes::from(one.repeat(copies));
        let out: Bytes = rewrite_batches::<CodecError, _>(&field, CAP, |_| Ok(BatchEdit::Reencode)).unwrap();
        let pieces: Vec<_> = split_batches(&out).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(pieces.len(), copies);
        for piece in &pieces {
            let BatchPiece::Records(raw) = piece else { panic!("not a records batch") };
            prop_assert_eq!(&raw.decode(CAP).unwrap().records, &records);
        }
        if codec == RefCodec::None {
            prop_assert_eq!(&out, &field);
        }
        // Keeping every batch hands back the very same buffer.
        let kept: Bytes = rewrite_batches::<CodecError, _>(&field, CAP, |_| Ok(BatchEdit::Keep)).unwrap();
        prop_assert_eq!(kept.as_ptr(), field.as_ptr());
        prop_assert_eq!(kept, field);
    }

    /// Control, empty, legacy and truncated pieces keep their original bytes around a
    /// batch that is changed; the changed batch carries the edit.
    #[test]
    fn pass_through_pieces_are_untouched(
        header in arb_header(),
        records in proptest::collection::vec(arb_record(), 1..4),
        codec in arb_codec(),
        cut in 0usize..200,
        new_value in arb_bytes(40),
    ) {
        let control_header = BatchHeader { attributes: header.attributes.with_control(true), ..header };
        let control = reference::batch(&control_header, &records[..1], RefCodec::None);
        let empty = reference::batch(&header, &[], codec);
        let legacy = legacy_message();
        let data = reference::batch(&header, &records, codec);
        let tail = reference::batch(&header, &records, codec);
        let tail = &tail[..cut.min(tail.len() - 1)];
        let field = Bytes::from([&control[..], &empty, &legacy, &data, &control, tail].concat());

        let kinds: Vec<_> = split_batches(&field)
            .map(|p| match p.unwrap() {
                BatchPiece::Records(_) => "records",
                BatchPiece::Control(_) => "control",
                BatchPiece::Empty(_) => "empty",
                BatchPiece::Legacy { .. } => "legacy",
                BatchPiece::Truncated(_) => "truncated",
            })
            .collect();
        let mut expected = vec!["control", "empty", "legacy", "records", "control"];
        if !tail.is_empty() {
            expected.push("truncated");
        }
        prop_assert_eq!(kinds, expected);

        let mut calls = 0;
        let out: Bytes = rewrite_batches::<CodecError, _>(&field, CAP, |batch| {
            calls += 1;
            batch.records[0].value = Some(new_value.clone());
            Ok(BatchEdit::Reencode)
        })
        .unwrap();
        prop_assert_eq!(calls, 1);
        let prefix = control.len() + empty.len() + legacy.len();
        prop_assert_eq!(&out[..prefix], &field[..prefix]);
        let suffix = control.len() + tail.len();
        prop_assert_eq!(&out[out.len() - suffix..], &field[field.len() - suffix..]);
        let changed = only_records_piece(&out.slice(prefix..out.len() - suffix));
        let decoded = changed.decode(CAP).unwrap();
        prop_assert_eq!(decoded.records[0].value.as_ref(), Some(&new_value));
        prop_assert_eq!(&decoded.records[1..], &records[1..]);
    }

    /// No input makes split, check, decode, decompress or rewrite panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&Bytes::from(bytes));
    }

    /// Nor do valid batches with bytes changed, with or without the crc fixed up (so the
    /// record parser sees the damage).
    #[test]
    fn damaged_batches_never_panic(
        header in arb_header(),
        records in proptest::collection::vec(arb_record(), 1..4),
        codec in arb_codec(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let mut bytes = reference::batch(&header, &records, codec);
        for (at, value) in damage {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if fix_crc && bytes.len() > 21 {
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        exercise(&Bytes::from(bytes));
    }

    /// The codec's header walk accepts and refuses exactly what the old Produce check did,
    /// with the same message.
    #[test]
    fn header_check_matches_the_old_check(
        header in arb_header(),
        records in proptest::collection::vec(arb_record(), 0..4),
        codec in arb_codec(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 0..80),
        max in prop_oneof![Just(1_000_000usize), 0usize..4],
    ) {
        let mut bytes = reference::batch(&header, &records, codec);
        bytes.extend(reference::batch(&header, &records, RefCodec::None));
        for (at, value) in damage {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for candidate in [&bytes[..], &bytes[..cut.index(bytes.len() + 1)], &noise[..]] {
            let old = super::legacy_check::check_record_batches(candidate, max);
            let new = check_batch_headers(candidate, max).map_err(|e| e.to_string());
            prop_assert_eq!(new, old);
        }
    }
}

/// A magic 1 message (offset, size, crc, magic, attributes, timestamp, null key, value).
fn legacy_message() -> Vec<u8> {
    let mut body = vec![1u8, 0];
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&3i32.to_be_bytes());
    body.extend_from_slice(b"old");
    let mut m = 7i64.to_be_bytes().to_vec();
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    // The codec never reads a legacy crc; any value will do.
    m.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

fn exercise(field: &Bytes) {
    let _ = check_batch_headers(field, 1_000);
    for piece in split_batches(field) {
        let Ok(piece) = piece else { break };
        let _ = piece.bytes().len();
        if let BatchPiece::Records(raw) | BatchPiece::Control(raw) | BatchPiece::Empty(raw) = piece
        {
            let _ = raw.decompress(4096);
            if let Ok(decoded) = raw.decode(4096) {
                let _ = decoded.to_bytes();
            }
        }
    }
    let _ = rewrite_batches::<CodecError, _>(field, 4096, |_| Ok(BatchEdit::Reencode));
}
