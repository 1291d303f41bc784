//! Crash safety: every key operation is interrupted after each possible number of durable
//! writes (a [`FailingStore`] refuses every write after the first `n`), then a fresh keyring
//! (a restarted process, no caches) must still read every value that was readable before,
//! or, for a shred that got its marker written, none of the shredded topic's values. Re-running
//! the operation must then complete it. Run against the in-memory store and against sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{keyring, keys, provider, FailingStore};
use portcullis_crypto::registry::Entry;
use portcullis_crypto::{CryptoError, DekLimits, Keyring, MemoryStore, RegistryStore, SledStore};

/// Makes a fresh store holding `entries`.
type Factory = dyn Fn(&[Entry]) -> Arc<dyn RegistryStore>;

fn memory_factory() -> Box<Factory> {
    Box::new(|entries: &[Entry]| {
        let store = MemoryStore::new();
        for (k, v) in entries {
            store.put(k, v).unwrap();
        }
        Arc::new(store) as Arc<dyn RegistryStore>
    })
}

fn sled_factory(dir: &tempfile::TempDir) -> Box<Factory> {
    let root = dir.path().to_owned();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    Box::new(move |entries: &[Entry]| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let store = SledStore::open(&root.join(format!("db{n}"))).unwrap();
        for (k, v) in entries {
            store.put(k, v).unwrap();
        }
        Arc::new(store) as Arc<dyn RegistryStore>
    })
}

/// A value written in the fixture: topic, plaintext, sealed bytes.
type Written = (String, Vec<u8>, Vec<u8>);

/// A registry with topic `t` holding DEKs under KEK v1 and v2, and topic `u`; returns its
/// entries and the values written.
fn fixture() -> (Vec<Entry>, Vec<Written>) {
    let store = Arc::new(MemoryStore::new());
    let ring = Keyring::new(provider(7), store.clone(), DekLimits::new(2, 3600).unwrap());
    let mut values = Vec::new();
    for i in 0..5u8 {
        let plain = vec![i; 10];
        values.push((
            "t".to_owned(),
            plain.clone(),
            ring.encrypt_value("t", &plain).unwrap(),
        ));
    }
    ring.rotate_kek("t").unwrap();
    for i in 5..9u8 {
        let plain = vec![i; 10];
        values.push((
            "t".to_owned(),
            plain.clone(),
            ring.encrypt_value("t", &plain).unwrap(),
        ));
    }
    values.push((
        "u".to_owned(),
        b"other".to_vec(),
        ring.encrypt_value("u", b"other").unwrap(),
    ));
    (store.entries(), values)
}

fn assert_all_readable(ring: &Keyring, values: &[Written], n: usize) {
    for (topic, plain, sealed) in values {
        assert_eq!(
            &ring.decrypt_value(topic, sealed).unwrap(),
            plain,
            "after {n} writes"
        );
    }
}

fn rotation_survives_every_interruption(factory: &Factory) {
    let (entries, values) = fixture();
    let mut completed = false;
    for n in 0..200 {
        let base = factory(&entries);
        let crashed = keyring(Arc::new(FailingStore::new(base.clone(), n)));
        let result = crashed.rotate_and_rewrap("t");
        // The interrupted process itself still reads everything.
        assert_all_readable(&crashed, &values, n);
        // So does a restarted one.
        let restarted = keyring(base.clone());
        assert_all_readable(&restarted, &values, n);
        // Finishing the job (a rerun) leaves one KEK version wrapping every DEK.
        let report = restarted.rotate_and_rewrap("t").unwrap();
        let deks = restarted.registry().deks("t").unwrap();
        assert!(deks.iter().all(|d| d.kek_version == report.new_version));
        assert_eq!(keys(&*base, "kek/t/").len(), 1, "after {n} writes");
        assert_all_readable(&keyring(base), &values, n);
        if result.is_ok() {
            completed = true;
            break;
        }
        assert!(
            matches!(result, Err(CryptoError::Registry(_))),
            "{result:?}"
        );
    }
    assert!(
        completed,
        "rotation never completed within the write budget"
    );
}

fn shred_survives_every_interruption(factory: &Factory) {
    let (entries, values) = fixture();
    let mut completed = false;
    for n in 0..200 {
        let base = factory(&entries);
        let crashed = keyring(Arc::new(FailingStore::new(base.clone(), n)));
        let result = crashed.shred_topic("t");
        let restarted = keyring(base.clone());
        for (topic, plain, sealed) in &values {
            let got = restarted.decrypt_value(topic, sealed);
            if topic == "u" {
                assert_eq!(&got.unwrap(), plain);
            } else if n == 0 {
                // The marker is the first write: before it, nothing is shredded.
                assert_eq!(&got.unwrap(), plain);
            } else {
                assert!(
                    matches!(got, Err(CryptoError::Shredded { .. })),
                    "{n}: {got:?}"
                );
                assert!(matches!(
                    crashed.decrypt_value(topic, sealed),
                    Err(CryptoError::Shredded { .. })
                ));
            }
        }
        restarted.shred_topic("t").unwrap();
        assert!(keys(&*base, "dek/t/").is_empty());
        assert!(keys(&*base, "kek/t/").is_empty());
        assert_eq!(keys(&*base, "dek/u/").len(), 1);
        if result.is_ok() {
            completed = true;
            break;
        }
    }
    assert!(completed, "shred never completed within the write budget");
}

fn first_use_survives_every_interruption(factory: &Factory) {
    for n in 0..10 {
        let base = factory(&[]);
        let crashed = keyring(Arc::new(FailingStore::new(base.clone(), n)));
        let result = crashed.encrypt_value("t", b"v");
        let restarted = keyring(base.clone());
        if let Ok(sealed) = &result {
            assert_eq!(restarted.decrypt_value("t", sealed).unwrap(), b"v");
        }
        let sealed = restarted.encrypt_value("t", b"w").unwrap();
        assert_eq!(keyring(base).decrypt_value("t", &sealed).unwrap(), b"w");
        if result.is_ok() {
            return;
        }
    }
    panic!("first encryption never completed");
}

#[test]
fn rotation_memory() {
    rotation_survives_every_interruption(&*memory_factory());
}

#[test]
fn shred_memory() {
    shred_survives_every_interruption(&*memory_factory());
}

#[test]
fn first_use_memory() {
    first_use_survives_every_interruption(&*memory_factory());
}

#[test]
fn rotation_sled() {
    let dir = tempfile::tempdir().unwrap();
    rotation_survives_every_interruption(&*sled_factory(&dir));
}

#[test]
fn shred_sled() {
    let dir = tempfile::tempdir().unwrap();
    shred_survives_every_interruption(&*sled_factory(&dir));
}

#[test]
fn first_use_sled() {
    let dir = tempfile::tempdir().unwrap();
    first_use_survives_every_interruption(&*sled_factory(&dir));
}
