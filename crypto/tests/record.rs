//! Whole-record encryption: tombstones, headers, the marker header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::memory_keyring;
use portcullis_crypto::registry::KeyRecord;
use portcullis_crypto::{CryptoError, FormatError, Header, RecordOptions, RecordPayload};

fn h(key: &str, value: Option<&[u8]>) -> Header {
    Header {
        key: key.to_owned(),
        value: value.map(<[u8]>::to_vec),
    }
}

fn sample() -> RecordPayload {
    RecordPayload {
        value: Some(b"order 17".to_vec()),
        headers: vec![
            h("trace", Some(b"t1")),
            h("tenant", Some(b"acme")),
            h("trace", Some(b"t2")),
            h("empty", None),
        ],
    }
}

const HEADERS: RecordOptions = RecordOptions {
    encrypt_headers: true,
};

#[test]
fn value_only_by_default() {
    let (ring, _) = memory_keyring();
    let mut r = sample();
    ring.encrypt_record("t", &mut r, RecordOptions::default())
        .unwrap();
    assert_ne!(r.value, sample().value);
    assert_eq!(&r.headers[..4], &sample().headers[..]);
    assert_eq!(r.headers[4], h("portcullis.enc", Some(b"1")));
    ring.decrypt_record("t", &mut r).unwrap();
    assert_eq!(r, sample());
}

#[test]
fn headers_encrypted_when_asked() {
    let (ring, _) = memory_keyring();
    let mut r = sample();
    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    assert_eq!(r.headers.len(), 5);
    for (enc, orig) in r.headers.iter().zip(sample().headers.iter()) {
        assert_eq!(enc.key, orig.key, "keys stay in clear");
        match &orig.value {
            Some(v) => assert_eq!(enc.value.as_ref().unwrap().len(), v.len() + 46),
            None => assert_eq!(enc.value, None, "null header values stay null"),
        }
    }
    assert_eq!(r.headers[4], h("portcullis.enc", Some(b"1h")));
    ring.decrypt_record("t", &mut r).unwrap();
    assert_eq!(r, sample());
}

#[test]
fn swapped_header_values_fail() {
    let (ring, _) = memory_keyring();
    // Same key, different occurrence.
    let mut r = sample();
    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    let (a, b) = (r.headers[0].value.clone(), r.headers[2].value.clone());
    r.headers[0].value = b;
    r.headers[2].value = a;
    assert!(matches!(
        ring.decrypt_record("t", &mut r),
        Err(CryptoError::Tampered { .. })
    ));
    // Different key.
    let mut r = sample();
    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    r.headers[1].value = r.headers[0].value.clone();
    let before = r.clone();
    assert!(matches!(
        ring.decrypt_record("t", &mut r),
        Err(CryptoError::Tampered { .. })
    ));
    assert_eq!(r, before, "record unchanged on error");
    // A header value moved into the record value.
    let mut r = sample();
    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    r.value = r.headers[1].value.clone();
    assert!(matches!(
        ring.decrypt_record("t", &mut r),
        Err(CryptoError::Tampered { .. })
    ));
}

#[test]
fn headers_appended_later_pass_through_inserted_ones_fail() {
    let (ring, _) = memory_keyring();
    let mut r = sample();
    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    let encrypted = r.clone();
    r.headers.push(h("mirrored-from", Some(b"dc1")));
    ring.decrypt_record("t", &mut r).unwrap();
    let mut expected = sample();
    expected.headers.push(h("mirrored-from", Some(b"dc1")));
    assert_eq!(r, expected);

    let mut r = encrypted;
    r.headers.insert(0, h("inserted", Some(b"x")));
    assert!(ring.decrypt_record("t", &mut r).is_err());
}

#[test]
fn tombstones_stay_null() {
    let (ring, _) = memory_keyring();
    let mut r = RecordPayload {
        value: None,
        headers: vec![h("k", Some(b"v"))],
    };
    ring.encrypt_record("t", &mut r, RecordOptions::default())
        .unwrap();
    assert_eq!(r.value, None);
    assert_eq!(
        r.headers,
        vec![h("k", Some(b"v"))],
        "nothing to encrypt, no marker"
    );
    assert!(matches!(
        ring.decrypt_record("t", &mut r),
        Err(CryptoError::NotEncrypted)
    ));

    ring.encrypt_record("t", &mut r, HEADERS).unwrap();
    assert_eq!(r.value, None);
    assert_eq!(r.headers.len(), 2);
    ring.decrypt_record("t", &mut r).unwrap();
    assert_eq!(r.headers, vec![h("k", Some(b"v"))]);
}

#[test]
fn marker_errors() {
    let (ring, _) = memory_keyring();
    let mut forged = RecordPayload {
        value: Some(b"v".to_vec()),
        headers: vec![h("portcullis.enc", Some(b"1"))],
    };
    assert!(matches!(
        ring.encrypt_record("t", &mut forged, RecordOptions::default()),
        Err(CryptoError::AlreadyEncrypted)
    ));
    let mut r = sample();
    ring.encrypt_record("t", &mut r, RecordOptions::default())
        .unwrap();
    let marked = r.clone();
    let cases: Vec<(Option<&[u8]>, FormatError)> = vec![
        (Some(b"2"), FormatError::UnsupportedVersion(2)),
        (Some(b"1x"), FormatError::BadMarker),
        (Some(b""), FormatError::BadMarker),
        (None, FormatError::BadMarker),
    ];
    for (value, expected) in cases {
        let mut r = marked.clone();
        r.headers[4].value = value.map(<[u8]>::to_vec);
        match ring.decrypt_record("t", &mut r) {
            Err(CryptoError::BadFormat(e)) => assert_eq!(e, expected),
            other => panic!("{value:?}: {other:?}"),
        }
    }
    let mut twice = marked.clone();
    twice.headers.push(h("portcullis.enc", Some(b"1")));
    assert!(matches!(
        ring.decrypt_record("t", &mut twice),
        Err(CryptoError::BadFormat(FormatError::DuplicateMarker))
    ));
    let mut plain = sample();
    assert!(matches!(
        ring.decrypt_record("t", &mut plain),
        Err(CryptoError::NotEncrypted)
    ));
}

#[test]
fn dek_record_copied_to_another_topic_does_not_unwrap() {
    // An attacker with registry write access copies topic t's DEK record under topic u and
    // replays t's ciphertext in u: the DEK's wrapping binds its topic.
    let (ring, store) = memory_keyring();
    let sealed = ring.encrypt_value("t", b"secret").unwrap();
    ring.encrypt_value("u", b"x").unwrap();
    let mut dek = ring.registry().deks("t").unwrap().remove(0);
    dek.topic = "u".to_owned();
    ring.registry().put(&KeyRecord::Dek(dek)).unwrap();
    let fresh = common::keyring(store);
    assert!(matches!(
        fresh.decrypt_value("u", &sealed),
        Err(CryptoError::DekUnwrap { .. })
    ));
}
