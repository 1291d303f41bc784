//! The key registry of a fleet of proxies, replicated through a compacted topic on the
//! upstream cluster itself.
//!
//! Why: proxies behind one address must decrypt what any of them encrypted, so they must share
//! their (wrapped) keys; the cluster is the one store they all already reach and trust for
//! durability. The registry is a byte map ([`RegistryStore`]), which is exactly what a
//! compacted topic is: a record is a `put`, a tombstone a `delete`, compaction keeps the last.
//! Only wrapped keys travel (the root key never leaves its provider).
//!
//! How it stays correct:
//! - **Durable before use**: `put` returns only once the record is acknowledged with acks=all
//!   and read back, so a DEK is on the cluster before the first record that uses it is
//!   forwarded.
//! - **Reads follow the log**: each proxy applies the partition in offset order to an
//!   in-memory map. A key it does not know (a DEK another proxy created) makes it catch up
//!   with the log before answering "unknown" (such catch-ups are spaced [`CATCH_UP_EVERY`]
//!   apart — a lookup waits for its turn — so a flood of records naming random DEK ids cannot
//!   turn into a flood of Fetches).
//! - **One KEK per version**: two proxies may create the same KEK version at once (the first
//!   record of a new topic, two rotations). The first value in the log wins everywhere; the
//!   loser sees its value lost when it reads its own write back, fails the operation (the
//!   caller retries with the winner's KEK) and writes the winner's value again, so compaction,
//!   which keeps the last value, keeps the winner's.
//! - **No DEK under a destroyed KEK**: a DEK record whose KEK version is gone by the time it is
//!   read back (another proxy rotated and destroyed it meanwhile) is withdrawn and the `put`
//!   fails; the caller's next attempt reads the new current version.
//! - Every write first catches up with the log, and so does every read of a topic's record
//!   (current KEK version, shredded or not), so a proxy decides from the fleet's latest
//!   state, not from what it saw at start.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_crypto::registry::{Entry, RegistryError, RegistryStore};

use crate::cluster::partition_client::{FetchedRecord, PartitionClient};
use crate::net::upstream::{Connector, UpstreamError};

/// Shortest pause between two catch-ups caused by lookups of unknown keys.
pub const CATCH_UP_EVERY: Duration = Duration::from_millis(50);

/// Settings of the registry topic when the proxy creates it: compacted, never deleted by age.
const TOPIC_CONFIGS: &[(&str, &str)] = &[("cleanup.policy", "compact"), ("retention.ms", "-1")];

/// Commands waiting for the registry's cluster thread.
const QUEUE: usize = 64;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`RegistryStore`] kept in a compacted topic of the upstream cluster.
pub struct TopicRegistry {
    topic: String,
    map: Arc<Mutex<Map>>,
    changed: Arc<Mutex<BTreeSet<String>>>,
    commands: SyncSender<Command>,
    last_catch_up: Mutex<Option<Instant>>,
    timeout: Duration,
}

impl std::fmt::Debug for TopicRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRegistry")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

enum Command {
    CatchUp(SyncSender<Result<(), RegistryError>>),
    Write {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        reply: SyncSender<Result<(), RegistryError>>,
    },
}

impl TopicRegistry {
    /// Connects to the cluster, creates `topic` (one partition, compacted) if it is missing,
    /// reads it whole and starts the thread that serves later reads and writes. Blocking: call
    /// it from a blocking context (start-up, `spawn_blocking`, a command-line tool).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] when the cluster cannot be reached or the topic not read
    /// within `timeout` (per call to the cluster).
    pub fn open(
        connector: Arc<Connector>,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicRegistry, RegistryError> {
        let map = Arc::new(Mutex::new(Map::new()));
        let changed = Arc::new(Mutex::new(BTreeSet::new()));
        let (commands, inbox) = sync_channel(QUEUE);
        let (ready_tx, ready_rx) = sync_channel(1);
        let worker = Worker {
            connector,
            topic: topic.to_owned(),
            timeout,
            map: Arc::clone(&map),
            changed: Arc::clone(&changed),
            own_offsets: HashSet::new(),
            client: None,
            next_offset: 0,
        };
        std::thread::Builder::new()
            .name("key-registry".into())
            .spawn(move || worker.run(inbox, ready_tx))
            .map_err(|e| backend(format!("cannot start the key registry thread: {e}")))?;
        wait(&ready_rx, timeout * 4)?;
        lock(&changed).clear();
        Ok(TopicRegistry {
            topic: topic.to_owned(),
            map,
            changed,
            commands,
            last_catch_up: Mutex::new(None),
            timeout,
        })
    }

    /// Reads what other proxies wrote since the last catch-up.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Backend`] when the cluster cannot be read.
    pub fn catch_up(&self) -> Result<(), RegistryError> {
        let (reply, answer) = sync_channel(1);
        self.send(Command::CatchUp(reply))?;
        wait(&answer, self.timeout * 4)
    }

    /// The encrypted topics whose `topic/` record another process changed (a rotation, a
    /// shred) since the last call: the keyring must drop what it cached for them
    /// ([`portcullis_crypto::Keyring::refresh_topic`]).
    pub fn take_changed_topics(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.changed))
            .into_iter()
            .collect()
    }

    /// Catches up, at least [`CATCH_UP_EVERY`] after the previous catch-up of this kind.
    fn catch_up_spaced(&self) -> Result<(), RegistryError> {
        let mut last = lock(&self.last_catch_up);
        if let Some(previous) = *last {
            std::thread::sleep(CATCH_UP_EVERY.saturating_sub(previous.elapsed()));
        }
        let result = self.catch_up();
        *last = Some(Instant::now());
        result
    }

    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), RegistryError> {
        let (reply, answer) = sync_channel(1);
        self.send(Command::Write {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            reply,
        })?;
        wait(&answer, self.timeout * 4)
    }

    fn send(&self, command: Command) -> Result<(), RegistryError> {
        self.commands
            .send(command)
            .map_err(|_| backend("the key registry thread has stopped".into()))
    }
}

impl RegistryStore for TopicRegistry {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        if key.starts_with(b"topic/") {
            // A topic's current KEK version and state decide what a new DEK is wrapped with
            // and whether the topic is shredded: read them fresh (the keyring asks only
            // when it creates a DEK or meets a key it has not cached).
            self.catch_up_spaced()?;
            return Ok(lock(&self.map).get(key).cloned());
        }
        if let Some(v) = lock(&self.map).get(key) {
            return Ok(Some(v.clone()));
        }
        self.catch_up_spaced()?;
        Ok(lock(&self.map).get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        self.write(key, Some(value))
    }

    fn delete(&self, key: &[u8]) -> Result<(), RegistryError> {
        self.write(key, None)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>, RegistryError> {
        self.catch_up_spaced()?;
        Ok(lock(&self.map)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// The thread that talks to the cluster, one command at a time.
struct Worker {
    connector: Arc<Connector>,
    topic: String,
    timeout: Duration,
    map: Arc<Mutex<Map>>,
    changed: Arc<Mutex<BTreeSet<String>>>,
    /// Offsets of records this process wrote and has not read back yet.
    own_offsets: HashSet<i64>,
    client: Option<PartitionClient>,
    next_offset: i64,
}

impl Worker {
    fn run(mut self, inbox: Receiver<Command>, ready: SyncSender<Result<(), RegistryError>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(backend(format!("cannot start a runtime: {e}"))));
                return;
            }
        };
        let first = runtime.block_on(self.catch_up());
        let failed = first.is_err();
        let _ = ready.send(first);
        if failed {
            return;
        }
        while let Ok(command) = inbox.recv() {
            match command {
                Command::CatchUp(reply) => {
                    let _ = reply.send(runtime.block_on(self.catch_up()));
                }
                Command::Write { key, value, reply } => {
                    let result = runtime.block_on(self.write(&key, value.as_deref()));
                    let _ = reply.send(result);
                }
            }
        }
    }

    async fn client(&mut self) -> Result<&mut PartitionClient, RegistryError> {
        if self.client.is_none() {
            let client = PartitionClient::leader_creating(
                &self.connector,
                &self.topic,
                TOPIC_CONFIGS,
                self.timeout,
            )
            .await
            .map_err(|e| self.failed(&e))?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| backend("no connection to the key registry topic".into()))
    }

    fn failed(&self, e: &UpstreamError) -> RegistryError {
        backend(format!("key registry topic {}: {e}", self.topic))
    }

    /// Applies every record from the last applied offset to the end of the partition.
    async fn catch_up(&mut self) -> Result<(), RegistryError> {
        let result = self.try_catch_up().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn try_catch_up(&mut self) -> Result<(), RegistryError> {
        let topic = self.topic.clone();
        let from = self.next_offset;
        let client = self.client().await?;
        let start = client.list_offset(&topic, -2).await;
        let end = client.list_offset(&topic, -1).await;
        let (start, end) = match (start, end) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(e), _) | (_, Err(e)) => return Err(self.failed(&e)),
        };
        let from = from.max(start);
        if from >= end {
            return Ok(());
        }
        let records = match client.read_range(&topic, from, end).await {
            Ok(r) => r,
            Err(e) => return Err(self.failed(&e)),
        };
        let mut map = lock(&self.map);
        let mut changed = lock(&self.changed);
        for record in &records {
            apply(&mut map, record, &topic);
            let own = self.own_offsets.remove(&record.offset);
            if let Some(name) = record.key.as_ref().and_then(|k| k.strip_prefix(b"topic/")) {
                if !own {
                    changed.insert(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        drop((map, changed));
        self.next_offset = end;
        Ok(())
    }

    /// Writes one record after catching up, then reads it back and checks it stands.
    async fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RegistryError> {
        self.catch_up().await?;
        let topic = self.topic.clone();
        match self.client().await?.produce(&topic, key, value).await {
            Ok(offset) => {
                self.own_offsets.insert(offset);
            }
            Err(e) => {
                self.client = None;
                return Err(self.failed(&e));
            }
        }
        self.catch_up().await?;
        let standing = lock(&self.map).get(key).cloned();
        match (value, standing) {
            (None, None) => Ok(()),
            (Some(mine), Some(theirs)) if theirs == mine => self.check_dek_parent(key, mine).await,
            (Some(_), Some(theirs)) => {
                // Another proxy's value came first: make it the last too, for compaction.
                self.republish(key, &theirs).await;
                Err(backend(format!(
                    "{} was written by another proxy first; retry",
                    String::from_utf8_lossy(key)
                )))
            }
            (_, standing) => Err(backend(format!(
                "{}: read back {} after writing",
                String::from_utf8_lossy(key),
                if standing.is_some() {
                    "a value"
                } else {
                    "nothing"
                }
            ))),
        }
    }

    /// Withdraws a DEK record whose KEK version was destroyed meanwhile.
    async fn check_dek_parent(&mut self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        let Some(parent) = dek_parent(key, value) else {
            return Ok(());
        };
        if lock(&self.map).contains_key(&parent) {
            return Ok(());
        }
        let topic = self.topic.clone();
        if let Ok(client) = self.client().await {
            let _ = client.produce(&topic, key, None).await;
        }
        self.catch_up().await?;
        Err(backend(format!(
            "{} is gone (rotated by another proxy); retry",
            String::from_utf8_lossy(&parent)
        )))
    }

    async fn republish(&mut self, key: &[u8], value: &[u8]) {
        let topic = self.topic.clone();
        if let Ok(client) = self.client().await {
            if let Err(e) = client.produce(&topic, key, Some(value)).await {
                tracing::warn!(topic = %topic, error = %e,
                    "cannot republish a key registry record another proxy won");
            }
        }
    }
}

/// Applies one record: a tombstone deletes, a KEK keeps its first value, anything else
/// replaces.
fn apply(map: &mut Map, record: &FetchedRecord, topic: &str) {
    let Some(key) = record.key.as_ref() else {
        return;
    };
    match &record.value {
        None => {
            map.remove(key.as_ref());
        }
        Some(value) => {
            if key.starts_with(b"kek/") {
                if let Some(first) = map.get(key.as_ref()) {
                    if first.as_slice() != value.as_ref() {
                        tracing::warn!(topic, offset = record.offset,
                            key = %String::from_utf8_lossy(key),
                            "a second value for a KEK version was ignored (the first one stands)");
                    }
                    return;
                }
            }
            map.insert(key.to_vec(), value.to_vec());
        }
    }
}

/// The registry key of the KEK version a DEK record is wrapped by (`None` for other keys or
/// a value that does not say).
fn dek_parent(key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    if !key.starts_with(b"dek/") {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(value).ok()?;
    let topic = json.get("topic")?.as_str()?;
    let version = json.get("kek_version")?.as_u64()?;
    Some(format!("kek/{topic}/{version:010}").into_bytes())
}

fn wait(
    answer: &Receiver<Result<(), RegistryError>>,
    limit: Duration,
) -> Result<(), RegistryError> {
    answer
        .recv_timeout(limit)
        .map_err(|_| backend(format!("the key registry did not answer within {limit:?}")))?
}

fn backend(message: String) -> RegistryError {
    RegistryError::Backend(message)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(offset: i64, key: &str, value: Option<&str>) -> FetchedRecord {
        FetchedRecord {
            offset,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    #[test]
    fn the_first_kek_value_stands_and_other_keys_take_the_last() {
        let mut map = Map::new();
        for r in [
            record(0, "kek/t/0000000001", Some("first")),
            record(1, "kek/t/0000000001", Some("second")),
            record(2, "topic/t", Some("a")),
            record(3, "topic/t", Some("b")),
        ] {
            apply(&mut map, &r, "registry");
        }
        assert_eq!(map[&b"kek/t/0000000001".to_vec()], b"first");
        assert_eq!(map[&b"topic/t".to_vec()], b"b");
        apply(&mut map, &record(4, "kek/t/0000000001", None), "registry");
        assert!(!map.contains_key(b"kek/t/0000000001".as_slice()));
        apply(
            &mut map,
            &record(5, "kek/t/0000000001", Some("after tombstone")),
            "registry",
        );
        assert_eq!(map[&b"kek/t/0000000001".to_vec()], b"after tombstone");
    }

    #[test]
    fn a_dek_names_its_kek_version() {
        use portcullis_crypto::registry::{DekRecord, DekState, KeyRecord};
        let id = portcullis_crypto::DekId::random().unwrap();
        let record = KeyRecord::Dek(DekRecord {
            topic: "orders".into(),
            id,
            kek_version: 3,
            state: DekState::Active,
            created_at: 1,
            wrapped: vec![0; 61],
        });
        let key = record.key().encode();
        let value = record.encode().unwrap();
        assert_eq!(
            dek_parent(&key, &value),
            Some(b"kek/orders/0000000003".to_vec())
        );
        assert_eq!(dek_parent(b"topic/orders", &value), None);
        assert_eq!(dek_parent(&key, b"not json"), None);
    }
}
