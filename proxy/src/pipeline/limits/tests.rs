use super::*;
use crate::codec::header::peek_request_header;
use crate::net::upstream::encode_request;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    DeleteGroupsRequest, FetchRequest, GroupId, MetadataRequest, ProduceRequest, RequestKind,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

fn limits() -> ItemLimits {
    ItemLimits::from_config(&LimitsConfig::default())
}

fn topic(i: usize) -> TopicName {
    TopicName(StrBytes::from(format!("topic-{i}")))
}

/// The body of `request` encoded at `version` (header stripped).
fn body<R: Encodable>(api: ApiKey, version: i16, request: &R) -> Bytes {
    let frame = encode_request(api, version, 7, request).unwrap();
    let header = peek_request_header(&frame).unwrap();
    frame.slice(header.body_offset..)
}

fn walk_all(api: ApiKey, version: i16, body: &[u8]) -> Counts {
    let spec = specs().get(&(api as i16)).unwrap();
    let (counts, consumed) = walk(spec, version, body, &limits()).unwrap();
    assert_eq!(consumed, body.len(), "{api:?} v{version}: walked length");
    counts
}

#[test]
fn every_specification_parses_and_every_served_api_has_one() {
    assert_eq!(specs().len(), spec::FILE_COUNT, "a file did not parse");
    for api in ApiKey::iter() {
        if matches!(handling(api), Handling::Refused(_)) {
            continue;
        }
        let spec = specs().get(&(api as i16));
        let spec = spec.unwrap_or_else(|| panic!("{api:?} has no specification"));
        let ours = api.valid_versions();
        // KIP-848 v1 is newer than the specification we carry: not served (fail closed).
        let narrowed = matches!(
            api,
            ApiKey::ConsumerGroupHeartbeat | ApiKey::ConsumerGroupDescribe
        );
        if !narrowed {
            assert!(
                spec.valid.min <= ours.min && ours.max <= spec.valid.max,
                "{api:?}: specification {:?} does not cover {ours:?}",
                spec.valid
            );
        }
    }
}

#[test]
fn metadata_topics_are_counted_in_classic_and_compact_encodings() {
    for version in 0..=13 {
        let topics = (0..5)
            .map(|i| MetadataRequestTopic::default().with_name(Some(topic(i))))
            .collect();
        let request = MetadataRequest::default().with_topics(Some(topics));
        let counts = walk_all(
            ApiKey::Metadata,
            version,
            &body(ApiKey::Metadata, version, &request),
        );
        assert_eq!(counts.get(Category::Topics), 5, "v{version}");
    }
}

#[test]
fn produce_and_fetch_partitions_are_summed_over_topics() {
    for version in 3..=13 {
        let request = ProduceRequest::default().with_topic_data(
            (0..3)
                .map(|t| {
                    TopicProduceData::default()
                        .with_name(topic(t))
                        .with_partition_data(
                            (0..4)
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(p)
                                        .with_records(Some(Bytes::from_static(b"not walked")))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        let counts = walk_all(
            ApiKey::Produce,
            version,
            &body(ApiKey::Produce, version, &request),
        );
        assert_eq!(counts.get(Category::Topics), 3, "produce v{version}");
        assert_eq!(counts.get(Category::Partitions), 12, "produce v{version}");
    }
    for version in 4..=18 {
        let request = FetchRequest::default().with_topics(
            (0..2)
                .map(|t| {
                    FetchTopic::default().with_topic(topic(t)).with_partitions(
                        (0..5)
                            .map(|p| FetchPartition::default().with_partition(p))
                            .collect(),
                    )
                })
                .collect(),
        );
        let counts = walk_all(
            ApiKey::Fetch,
            version,
            &body(ApiKey::Fetch, version, &request),
        );
        assert_eq!(counts.get(Category::Topics), 2, "fetch v{version}");
        assert_eq!(counts.get(Category::Partitions), 10, "fetch v{version}");
    }
}

#[test]
fn groups_are_counted() {
    for version in 0..=2 {
        let request = DeleteGroupsRequest::default().with_groups_names(
            (0..7)
                .map(|i| GroupId(StrBytes::from(format!("g{i}"))))
                .collect(),
        );
        let counts = walk_all(
            ApiKey::DeleteGroups,
            version,
            &body(ApiKey::DeleteGroups, version, &request),
        );
        assert_eq!(counts.get(Category::Groups), 7, "v{version}");
    }
}

#[test]
fn a_huge_declared_count_is_refused_after_reading_it() {
    let spec = specs().get(&(ApiKey::Metadata as i16)).unwrap();
    // Classic: i32 count, then nothing.
    let err = count_items(spec, 4, &[0x7f, 0xff, 0xff, 0xff], &limits()).unwrap_err();
    assert!(
        matches!(err, WalkError::Exceeded { category: Category::Topics, count, .. } if count == i32::MAX as u64),
        "{err}"
    );
    // Compact: varint count + 1.
    let err = count_items(spec, 12, &[0xff, 0xff, 0xff, 0xff, 0x07], &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::Exceeded {
                category: Category::Topics,
                ..
            }
        ),
        "{err}"
    );
    // Partitions summed over topics: 2 Fetch topics of 150,000 partitions each.
    let fetch = specs().get(&(ApiKey::Fetch as i16)).unwrap();
    let mut body = vec![0u8; 4 + 4 + 4 + 4 + 1 + 4]; // replica, max wait, min, max bytes, isolation, session id
    body.extend_from_slice(&[0, 0, 0, 0]); // session epoch
    body.extend_from_slice(&2i32.to_be_bytes());
    for _ in 0..2 {
        body.extend_from_slice(&[0, 1, b't']);
        body.extend_from_slice(&150_000i32.to_be_bytes());
        body.resize(body.len() + 150_000 * 24, 0);
    }
    let err = count_items(fetch, 7, &body, &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::Exceeded {
                category: Category::Partitions,
                count: 300_000,
                limit: 200_000
            }
        ),
        "{err}"
    );
}

#[test]
fn over_limit_answers_and_closes_as_documented() {
    assert!(answer::answered(ApiKey::Fetch, 7));
    assert!(!answer::answered(ApiKey::Fetch, 6));
    assert!(!answer::answered(ApiKey::Metadata, 12));
    assert!(!answer::answered(ApiKey::Produce, 9));
}

/// The proptest below only checks bodies kafka-protocol accepts; this shows it accepts
/// enough of them, for nearly every served api and version, that the check means something.
#[test]
fn the_agreement_check_sees_decodable_bodies_of_every_api() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut checked = 0;
    let mut without = Vec::new();
    for api in
        ApiKey::iter().filter(|a| matches!(handling(*a), Handling::Raw | Handling::RewriteResponse))
    {
        let spec = specs().get(&(api as i16)).unwrap();
        let ours = api.valid_versions();
        for version in ours.min.max(spec.valid.min)..=ours.max.min(spec.valid.max) {
            let mut decoded = 0;
            for _ in 0..400 {
                let len = (next() % 96) as usize;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| match next() % 12 {
                        0..=5 => 0,
                        6..=8 => 1,
                        9 => 2,
                        10 => 3,
                        _ => next() as u8,
                    })
                    .collect();
                let mut buf = Bytes::from(bytes.clone());
                if RequestKind::decode(api, &mut buf, version).is_ok() {
                    let decoded_len = bytes.len() - buf.len();
                    match walk(spec, version, &bytes, &limits()) {
                        Ok((_, consumed)) => {
                            assert_eq!(consumed, decoded_len, "{api:?} v{version} on {bytes:?}")
                        }
                        // Refused on purpose (see walk.rs): kafka-protocol ignores the size.
                        Err(WalkError::Malformed(walk::TAG_SIZE_MISMATCH)) => {}
                        Err(e) => panic!("{api:?} v{version}: {e} on {bytes:?}"),
                    }
                    decoded += 1;
                }
            }
            checked += decoded;
            if decoded == 0 {
                without.push(format!("{api:?} v{version}"));
            }
        }
    }
    eprintln!("{checked} decodable bodies checked; none decoded for {without:?}");
    assert!(checked > 5_000, "only {checked} decodable bodies");
    assert!(without.len() < 20, "no decodable body for {without:?}");
}

/// Bytes that kafka-protocol often decodes: mostly zeros and small numbers, so arrays of
/// one or two elements and short strings appear.
fn biased_body() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => any::<u8>()],
        0..96,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The walker reads every served request exactly as kafka-protocol decodes it: whatever
    /// kafka-protocol accepts, the walker accepts and ends at the same byte.
    #[test]
    fn the_walker_agrees_with_kafka_protocol(
        api_index in 0usize..200,
        version_pick in any::<u16>(),
        bytes in biased_body(),
    ) {
        let served: Vec<ApiKey> = ApiKey::iter()
            .filter(|a| matches!(handling(*a), Handling::Raw | Handling::RewriteResponse))
            .collect();
        let api = served[api_index % served.len()];
        let spec = specs().get(&(api as i16)).unwrap();
        let ours = api.valid_versions();
        let (min, max) = (ours.min.max(spec.valid.min), ours.max.min(spec.valid.max));
        let version = min + (version_pick % ((max - min + 1) as u16)) as i16;
        let mut buf = Bytes::from(bytes.clone());
        if RequestKind::decode(api, &mut buf, version).is_ok() {
            let decoded_len = bytes.len() - buf.len();
            match walk(spec, version, &bytes, &limits()) {
                Ok((_, consumed)) => {
                    prop_assert_eq!(consumed, decoded_len, "{:?} v{} on {:?}", api, version, bytes)
                }
                Err(WalkError::Malformed(walk::TAG_SIZE_MISMATCH)) => {}
                Err(e) => prop_assert!(false, "{:?} v{}: {} on {:?}", api, version, e, bytes),
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        key in 0i16..80,
        version in 0i16..20,
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Some(spec) = specs().get(&key) {
            let _ = walk(spec, version, &bytes, &limits());
        }
    }
}
