//! The key registry replicated through a compacted topic, against a real broker: what one
//! proxy's keyring encrypted another decrypts, rotation shows in every copy, and the ordering
//! rules (first KEK value wins, no DEK under a destroyed KEK) hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use portcullis::cluster::registry_topic::TopicRegistry;
use portcullis::config::UpstreamConfig;
use portcullis::net::upstream::Connector;
use portcullis_crypto::registry::{DekRecord, DekState, KeyRecord};
use portcullis_crypto::{DekId, DekLimits, Keyring, LocalKeyFile, RegistryStore};
use portcullis_tests::broker::Broker;

const TOPIC: &str = "__portcullis_keys";

fn connector(broker: &Broker) -> Arc<Connector> {
    let config: UpstreamConfig =
        toml::from_str(&format!("bootstrap_servers = [\"{}\"]", broker.bootstrap())).unwrap();
    Arc::new(Connector::new(&config).unwrap())
}

fn open(broker: &Broker) -> Arc<TopicRegistry> {
    Arc::new(TopicRegistry::open(connector(broker), TOPIC, Duration::from_secs(10)).unwrap())
}

fn keyring(root: &Arc<LocalKeyFile>, store: Arc<TopicRegistry>) -> Keyring {
    Keyring::new(root.clone(), store, DekLimits::default())
}

#[test]
fn a_second_proxy_decrypts_what_the_first_encrypted_and_sees_rotations() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let root = Arc::new(LocalKeyFile::init(&dir.path().join("root.key")).unwrap());
    let first = keyring(&root, open(&broker));
    let second = keyring(&root, open(&broker));

    let before = first.encrypt_value("orders", b"before rotation").unwrap();
    assert_eq!(
        second.decrypt_value("orders", &before).unwrap(),
        b"before rotation",
        "the second proxy must find the DEK the first one created"
    );

    let report = first.rotate_and_rewrap("orders").unwrap();
    let after = first.encrypt_value("orders", b"after rotation").unwrap();
    // A proxy started after the rotation reads everything from the topic alone.
    let late_store = open(&broker);
    let late = keyring(&root, late_store.clone());
    assert_eq!(
        late.decrypt_value("orders", &before).unwrap(),
        b"before rotation"
    );
    assert_eq!(
        late.decrypt_value("orders", &after).unwrap(),
        b"after rotation"
    );
    let keks: Vec<String> = late_store
        .scan_prefix(b"kek/orders/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect();
    assert_eq!(
        keks,
        [format!("kek/orders/{:010}", 2)],
        "the old KEK version must be gone from the replicated registry ({report:?})"
    );
}

#[test]
fn the_first_value_of_a_kek_version_wins_and_is_written_last_again() {
    let broker = Broker::start();
    let a = open(&broker);
    let b = open(&broker);
    let key = b"kek/race/0000000001";
    a.put(key, b"from a").unwrap();
    let lost = b.put(key, b"from b").unwrap_err().to_string();
    assert!(lost.contains("another proxy first"), "{lost}");
    assert_eq!(b.get(key).unwrap().as_deref(), Some(&b"from a"[..]));
    a.catch_up().unwrap();
    assert_eq!(a.get(key).unwrap().as_deref(), Some(&b"from a"[..]));
    // What compaction would keep (the last value) is the winner's too.
    let fresh = open(&broker);
    assert_eq!(fresh.get(key).unwrap().as_deref(), Some(&b"from a"[..]));
}

#[test]
fn a_dek_under_a_kek_version_that_is_gone_is_withdrawn() {
    let broker = Broker::start();
    let store = open(&broker);
    let record = KeyRecord::Dek(DekRecord {
        topic: "orphans".into(),
        id: DekId::random().unwrap(),
        kek_version: 7,
        state: DekState::Active,
        created_at: 0,
        wrapped: vec![0; 61],
    });
    let key = record.key().encode();
    let err = store
        .put(&key, &record.encode().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("kek/orphans/0000000007"), "{err}");
    assert_eq!(store.get(&key).unwrap(), None);
    assert_eq!(open(&broker).get(&key).unwrap(), None);
}
