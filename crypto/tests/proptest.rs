//! Property tests: arbitrary values and records round-trip; any single-byte change fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use portcullis_crypto::{CryptoError, Header, Keyring, RecordOptions, RecordPayload};
use proptest::prelude::*;

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| common::memory_keyring().0)
}

fn topic() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,40}"
}

fn header() -> impl Strategy<Value = Header> {
    (
        prop::sample::select(vec!["a", "b", "trace", "x-id"]),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(key, value)| Header {
            key: key.to_owned(),
            value,
        })
}

proptest! {
    #[test]
    fn value_round_trips(topic in topic(), plain in prop::collection::vec(any::<u8>(), 0..2048)) {
        let sealed = ring().encrypt_value(&topic, &plain).unwrap();
        prop_assert_eq!(sealed.len(), plain.len() + portcullis_crypto::format::OVERHEAD);
        prop_assert_eq!(ring().decrypt_value(&topic, &sealed).unwrap(), plain);
    }

    #[test]
    fn any_flipped_bit_fails(plain in prop::collection::vec(any::<u8>(), 0..256), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let sealed = ring().encrypt_value("prop", &plain).unwrap();
        let mut bad = sealed.clone();
        let i = at.index(bad.len());
        bad[i] ^= 1 << bit;
        let err = ring().decrypt_value("prop", &bad).unwrap_err();
        prop_assert!(matches!(
            err,
            CryptoError::Tampered { .. } | CryptoError::UnknownDek { .. } | CryptoError::BadFormat(_)
        ), "{:?}", err);
    }

    #[test]
    fn truncated_fails(plain in prop::collection::vec(any::<u8>(), 0..128), cut in any::<prop::sample::Index>()) {
        let sealed = ring().encrypt_value("prop", &plain).unwrap();
        let short = &sealed[..cut.index(sealed.len())];
        prop_assert!(ring().decrypt_value("prop", short).is_err());
    }

    #[test]
    fn record_round_trips(
        topic in topic(),
        value in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
        headers in prop::collection::vec(header(), 0..6),
        encrypt_headers in any::<bool>(),
    ) {
        let original = RecordPayload { value, headers };
        let mut record = original.clone();
        ring().encrypt_record(&topic, &mut record, RecordOptions { encrypt_headers }).unwrap();
        prop_assert_eq!(record.value.is_none(), original.value.is_none());
        if record != original {
            ring().decrypt_record(&topic, &mut record).unwrap();
        }
        prop_assert_eq!(record, original);
    }

    #[test]
    fn garbage_never_panics(topic in topic(), bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = ring().decrypt_value(&topic, &bytes);
    }
}
