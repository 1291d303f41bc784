//! Test records and how they are compared.
//!
//! The sample records are deliberately awkward (null vs empty keys and values, no,
//! duplicate, empty, null and multibyte headers, sizes from 0 bytes to 48 KiB, random and
//! compressible payloads, explicit timestamps) because those are what a proxy that decodes
//! and re-encodes record batches gets wrong. The comparisons report the first difference
//! precisely (partition, offset, which field, first differing byte) instead of dumping
//! thousands of records.

use std::collections::BTreeMap;

/// One record as sent or as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Partition it is sent to.
    pub partition: i32,
    /// Key (`None` = null key).
    pub key: Option<Vec<u8>>,
    /// Value (`None` = null value, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order (duplicates allowed, `None` = null header value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in ms, if set explicitly.
    pub timestamp: Option<i64>,
}

/// A record read back, with its offset.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The record.
    pub rec: Rec,
    /// Its offset.
    pub offset: i64,
}

/// A fixed timestamp base for sample records (2023-11-14), so timestamps are checkable.
pub const TIMESTAMP_BASE: i64 = 1_700_000_000_000;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce exactly.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `n` sample records spread round-robin over `partitions`, deliberately awkward: null and
/// empty keys and values, no/duplicate/null/multibyte headers, sizes from 0 bytes to 48 KiB,
/// random (incompressible) and repetitive (compressible) payloads, explicit timestamps.
pub fn sample_records(n: usize, partitions: i32, seed: u64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let s = seed.wrapping_add(i as u64 * 7919);
            let key = match i % 17 {
                5 => None,
                9 => Some(Vec::new()),
                _ => Some(
                    format!("key-{i}-")
                        .into_bytes()
                        .into_iter()
                        .chain(pseudo_random_bytes(s, i % 9))
                        .collect(),
                ),
            };
            let len = if i % 50 == 49 {
                48 * 1024
            } else {
                (i * 37) % 300
            };
            let value = match i % 23 {
                7 => None,
                11 => Some(Vec::new()),
                _ if i % 2 == 0 => Some(pseudo_random_bytes(s ^ 0xabcdef, len)),
                _ => Some(
                    format!("record {i} compressible compressible compressible ")
                        .into_bytes()
                        .into_iter()
                        .cycle()
                        .take(len)
                        .collect(),
                ),
            };
            let headers = match i % 5 {
                0 => vec![],
                1 => vec![("trace-id".to_string(), Some(pseudo_random_bytes(s, 16)))],
                2 => vec![
                    ("dup".to_string(), Some(b"first".to_vec())),
                    ("dup".to_string(), Some(b"second".to_vec())),
                    ("empty".to_string(), Some(Vec::new())),
                ],
                3 => vec![("null-value".to_string(), None)],
                _ => vec![
                    ("ключ-🔑".to_string(), Some("значение".as_bytes().to_vec())),
                    ("bin".to_string(), Some(vec![0, 255, 0, 128])),
                ],
            };
            Rec {
                partition: (i as i32) % partitions.max(1),
                key,
                value,
                headers,
                timestamp: Some(TIMESTAMP_BASE + i as i64),
            }
        })
        .collect()
}

/// `n` small records (~`size` bytes) for one partition, for volume tests.
pub fn small_records(n: usize, partition: i32, size: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let mut value = format!("{i:08}|").into_bytes();
            value.extend(pseudo_random_bytes(
                i as u64,
                size.saturating_sub(value.len()),
            ));
            Rec {
                partition,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(value),
                headers: vec![("seq".to_string(), Some(i.to_string().into_bytes()))],
                timestamp: Some(TIMESTAMP_BASE + i as i64),
            }
        })
        .collect()
}

/// Where the broker put a record: `(partition, offset)`; offset is -1 for acks=0.
pub type Placement = (i32, i64);

fn describe_bytes(b: &Option<Vec<u8>>) -> String {
    match b {
        None => "null".into(),
        Some(v) if v.len() <= 32 => format!("{v:?}"),
        Some(v) => format!("{} bytes starting {:?}", v.len(), &v[..16]),
    }
}

fn first_difference(sent: &Rec, got: &Rec) -> String {
    if sent.key != got.key {
        return format!(
            "key: sent {}, got {}",
            describe_bytes(&sent.key),
            describe_bytes(&got.key)
        );
    }
    if sent.value != got.value {
        let at = match (&sent.value, &got.value) {
            (Some(a), Some(b)) => a
                .iter()
                .zip(b.iter())
                .position(|(x, y)| x != y)
                .map(|p| format!(" first differing byte at {p}"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        return format!(
            "value: sent {}, got {}{at}",
            describe_bytes(&sent.value),
            describe_bytes(&got.value)
        );
    }
    if sent.headers != got.headers {
        return format!("headers: sent {:?}, got {:?}", sent.headers, got.headers);
    }
    if sent.timestamp.is_some() && sent.timestamp != got.timestamp {
        return format!(
            "timestamp: sent {:?}, got {:?}",
            sent.timestamp, got.timestamp
        );
    }
    if sent.partition != got.partition {
        return format!("partition: sent {}, got {}", sent.partition, got.partition);
    }
    "identical".into()
}

/// Asserts that `consumed` holds exactly the `sent` records, byte-identical (keys, values,
/// headers, timestamps), each partition in send order. When `placements` carry offsets
/// (not acks=0), also asserts each record sits at the offset its delivery report named and
/// that offsets grow in send order within a partition.
pub fn assert_same_records(sent: &[Rec], placements: &[Placement], consumed: &[Consumed]) {
    assert_eq!(
        sent.len(),
        placements.len(),
        "one placement per sent record"
    );
    assert_eq!(
        consumed.len(),
        sent.len(),
        "read back {} records, sent {}",
        consumed.len(),
        sent.len()
    );
    let mut sent_by_partition: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
    for (i, (rec, (partition, offset))) in sent.iter().zip(placements).enumerate() {
        assert_eq!(
            rec.partition, *partition,
            "record {i} was delivered to partition {partition}, sent to {}",
            rec.partition
        );
        sent_by_partition
            .entry(*partition)
            .or_default()
            .push((i, *offset));
    }
    let mut got_by_partition: BTreeMap<i32, Vec<&Consumed>> = BTreeMap::new();
    for c in consumed {
        got_by_partition.entry(c.rec.partition).or_default().push(c);
    }
    for (partition, sent_idx) in &sent_by_partition {
        let got = got_by_partition
            .get(partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(
            got.len(),
            sent_idx.len(),
            "partition {partition}: read {} records, sent {}",
            got.len(),
            sent_idx.len()
        );
        for (n, ((i, offset), c)) in sent_idx.iter().zip(got).enumerate() {
            let sent_rec = &sent[*i];
            if *offset >= 0 {
                assert_eq!(c.offset, *offset, "partition {partition}: record #{n} (sent as {i}) read at offset {}, delivery report said {offset}", c.offset);
            }
            if n > 0 {
                assert!(
                    c.offset > got[n - 1].offset,
                    "partition {partition}: offsets not increasing at #{n}: {} after {}",
                    c.offset,
                    got[n - 1].offset
                );
            }
            assert!(
                sent_rec == &c.rec
                    || (sent_rec.timestamp.is_none()
                        && Rec {
                            timestamp: None,
                            ..c.rec.clone()
                        } == *sent_rec),
                "partition {partition} offset {}: record sent as #{i} differs: {}",
                c.offset,
                first_difference(sent_rec, &c.rec)
            );
        }
    }
    assert_eq!(
        got_by_partition.len(),
        sent_by_partition.len(),
        "records read from unexpected partitions: {:?}",
        got_by_partition.keys().collect::<Vec<_>>()
    );
}

/// Asserts that `placements` in each partition are contiguous from 0 in send order (the
/// broker stored every record exactly once and in order).
pub fn assert_contiguous_offsets(placements: &[Placement]) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, (p, o)) in placements.iter().enumerate() {
        let expected = next.entry(*p).or_insert(0);
        assert_eq!(*o, *expected, "record {i}: partition {p} offset {o}, expected {expected} (gap, duplicate or reordering)");
        *expected += 1;
    }
}
