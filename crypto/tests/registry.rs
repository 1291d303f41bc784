//! The key registry: both stores, the key layout, and the self-describing record values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use portcullis_crypto::registry::{
    DekRecord, DekState, KeyRecord, RecordKey, TopicRecord, TopicState,
};
use portcullis_crypto::{DekId, MemoryStore, Registry, RegistryError, RegistryStore, SledStore};

fn stores() -> (Vec<Arc<dyn RegistryStore>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("registry")).unwrap();
    (vec![Arc::new(MemoryStore::new()), Arc::new(sled)], dir)
}

fn dek(topic: &str, byte: u8) -> DekRecord {
    DekRecord {
        topic: topic.to_owned(),
        id: DekId([byte; 16]),
        kek_version: 1,
        state: DekState::Active,
        created_at: 5,
        wrapped: vec![1, 2, 3],
    }
}

#[test]
fn byte_stores_get_put_delete_scan() {
    let (stores, _dir) = stores();
    for store in stores {
        assert_eq!(store.get(b"a").unwrap(), None);
        store.put(b"dek/a/1", b"x").unwrap();
        store.put(b"dek/a/2", b"y").unwrap();
        store.put(b"dek/ab/1", b"z").unwrap();
        store.put(b"dek/a/2", b"y2").unwrap();
        assert_eq!(store.get(b"dek/a/2").unwrap(), Some(b"y2".to_vec()));
        let scanned = store.scan_prefix(b"dek/a/").unwrap();
        assert_eq!(
            scanned,
            vec![
                (b"dek/a/1".to_vec(), b"x".to_vec()),
                (b"dek/a/2".to_vec(), b"y2".to_vec())
            ]
        );
        store.delete(b"dek/a/1").unwrap();
        store.delete(b"dek/a/1").unwrap();
        assert_eq!(store.get(b"dek/a/1").unwrap(), None);
    }
}

#[test]
fn typed_registry_separates_topics_and_kinds() {
    let (stores, _dir) = stores();
    for store in stores {
        let registry = Registry::new(store);
        for topic in ["a", "a.b", "ab"] {
            registry.put(&KeyRecord::Dek(dek(topic, 1))).unwrap();
            registry.put(&KeyRecord::Dek(dek(topic, 2))).unwrap();
        }
        let deks = registry.deks("a").unwrap();
        assert_eq!(deks.len(), 2);
        assert!(deks.iter().all(|d| d.topic == "a"));
        assert_eq!(
            registry.dek("ab", DekId([2; 16])).unwrap(),
            Some(dek("ab", 2))
        );
        assert!(registry.keks("a").unwrap().is_empty());
        assert!(registry.topic("a").unwrap().is_none());
        registry
            .delete(&RecordKey::Dek {
                topic: "a".to_owned(),
                id: DekId([1; 16]),
            })
            .unwrap();
        assert_eq!(registry.deks("a").unwrap().len(), 1);
        assert_eq!(registry.deks("a.b").unwrap().len(), 2);
    }
}

#[test]
fn key_layout_and_value_are_self_describing() {
    let store = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    registry
        .put(&KeyRecord::Dek(dek("payments", 0xab)))
        .unwrap();
    registry
        .put(&KeyRecord::Topic(TopicRecord {
            topic: "payments".to_owned(),
            current_kek_version: 3,
            state: TopicState::Active,
            updated_at: 9,
        }))
        .unwrap();
    let entries = store.entries();
    let (key, value) = &entries[0];
    assert_eq!(
        String::from_utf8_lossy(key),
        format!("dek/payments/{}", "ab".repeat(16))
    );
    let json: serde_json::Value = serde_json::from_slice(value).unwrap();
    assert_eq!(json["format"], "portcullis.key-registry");
    assert_eq!(json["v"], 1);
    assert_eq!(json["kind"], "dek");
    assert_eq!(json["id"], "ab".repeat(16));
    assert_eq!(json["kek_version"], 1);
    assert_eq!(json["state"], "active");
    assert_eq!(json["wrapped"], "AQID");
    assert_eq!(String::from_utf8_lossy(&entries[1].0), "topic/payments");
    assert_eq!(
        RecordKey::Kek {
            topic: "t".to_owned(),
            version: 42
        }
        .display(),
        "kek/t/0000000042"
    );
}

#[test]
fn newer_versions_and_damaged_records_are_refused() {
    let store = Arc::new(MemoryStore::new());
    let registry = Registry::new(store.clone());
    let key = b"topic/t";
    store
        .put(
            key,
            br#"{"format":"portcullis.key-registry","v":2,"kind":"topic"}"#,
        )
        .unwrap();
    assert!(matches!(
        registry.topic("t"),
        Err(RegistryError::UnsupportedVersion { version: 2, .. })
    ));
    store.put(key, b"not json").unwrap();
    assert!(matches!(
        registry.topic("t"),
        Err(RegistryError::Damaged { .. })
    ));
    // A valid record stored under another topic's key.
    let other = KeyRecord::Topic(TopicRecord {
        topic: "u".to_owned(),
        current_kek_version: 1,
        state: TopicState::Active,
        updated_at: 0,
    });
    store.put(key, &other.encode().unwrap()).unwrap();
    assert!(matches!(
        registry.topic("t"),
        Err(RegistryError::Damaged { .. })
    ));
    // Unknown extra fields are ignored (forward compatible within v1).
    store
        .put(
            key,
            br#"{"format":"portcullis.key-registry","v":1,"kind":"topic","topic":"t","current_kek_version":1,"state":"active","updated_at":0,"future":true}"#,
        )
        .unwrap();
    assert_eq!(registry.topic("t").unwrap().unwrap().current_kek_version, 1);
}

#[test]
fn sled_store_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry");
    {
        let store = SledStore::open(&path).unwrap();
        Registry::new(Arc::new(store))
            .put(&KeyRecord::Dek(dek("t", 4)))
            .unwrap();
    }
    let registry = Registry::new(Arc::new(SledStore::open(&path).unwrap()));
    assert_eq!(
        registry.dek("t", DekId([4; 16])).unwrap(),
        Some(dek("t", 4))
    );
}
