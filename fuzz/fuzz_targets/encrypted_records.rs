//! What the encryption stage and `portcullis decrypt` parse on Fetch: an encrypted value
//! (format v1; opened record by record and, as the stage does for values marked `1`, in
//! place) and a record's headers with a marker, from bytes anyone who can write to the
//! broker controls. Any input must decrypt or fail with an error, never panic or allocate
//! without bound; a record that fails is left unchanged.
//!
//! Input layout: the first byte picks how many headers follow (0..4); the rest is split into
//! the value and the header values at fixed points.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use portcullis_crypto::record::{Header, RecordPayload};
use portcullis_crypto::{
    DekLimits, KeyAccess, Keyring, LocalKeyFile, MemoryStore, SecretKey, ValueOpener,
};

fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        let root = LocalKeyFile::from_key(&SecretKey::from_bytes([9; 32])).unwrap();
        let ring = Keyring::new(Arc::new(root), Arc::new(MemoryStore::new()), DekLimits::default());
        // A real DEK exists, so inputs naming its id reach the AEAD.
        ring.encrypt_value("fuzz", b"seed").unwrap();
        ring
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    // The stage's in-place path for values marked `1`.
    if let Ok(value) = ValueOpener::parse(rest) {
        let mut buf = value.ciphertext().to_vec();
        if let Ok(mut opener) = keyring().value_opener("fuzz") {
            let _ = opener.open_in_place(&value, &mut buf, KeyAccess::Load);
        }
    }
    let parts: Vec<&[u8]> = rest.chunks(rest.len() / (usize::from(n % 4) + 1) + 1).collect();
    let mut headers: Vec<Header> = parts
        .iter()
        .skip(1)
        .map(|v| Header {
            key: "h".into(),
            value: Some(v.to_vec()),
        })
        .collect();
    let marker = if n & 0x80 != 0 { b"1h".to_vec() } else { b"1".to_vec() };
    headers.push(Header {
        key: portcullis_crypto::MARKER_HEADER.into(),
        value: Some(marker),
    });
    let original = RecordPayload {
        value: parts.first().map(|v| v.to_vec()),
        headers,
    };
    let mut record = original.clone();
    if keyring().decrypt_record("fuzz", &mut record).is_err() {
        assert_eq!(record, original, "a record that fails must be left unchanged");
    }
});
