//! The audit log handle the proxy holds: open a data directory, record events, rotate the key,
//! shut down, and read (for the admin API).
//!
//! [`AuditLog`] implements [`AuditSink`], so the proxy's existing `emit` calls keep working
//! (non-blocking, best effort, losses counted and recorded as gap entries). Events whose
//! category is configured `sync` should go through [`AuditLog::record`] instead, which waits
//! until the event is durable and applies the category's failure policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::anchor::{Anchor, AnchorError, FileAnchor};
use crate::anchor_check::{check_anchors, AnchorFindings};
use crate::config::{category_index, AuditLogConfig, CategoryPolicy, Durability, FailurePolicy};
use crate::event::{Category, Event, Outcome};
use crate::key_file;
use crate::merkle::{leaf_hash, Frontier};
use crate::note::VerifierKey;
use crate::sequencer::{Control, Counters, Queued, Sequencer, WriteFailed};
use crate::sink::{AuditSink, EmitOutcome};
use crate::sled_store::SledStore;
use crate::store::{is_stored_level, AppendBatch, LogStore, StoreError, StoredTree};

/// The sled database directory inside the data directory.
pub const STORE_DIR: &str = "audit-log";
/// The signing key file inside the data directory.
pub const KEY_FILE: &str = "audit-signing.key";

/// A sequence number: an entry's position in the log.
pub type Seq = u64;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is invalid; each string names its key.
    #[error("invalid audit configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The data directory could not be created.
    #[error("audit data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or repaired.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] key_file::KeyFileError),
    /// The log is shorter than a checkpoint it signed (truncated or rolled back): refusing to
    /// append to it. Run `portcullis audit verify`.
    #[error("audit log damaged: {0}; run `portcullis audit verify`")]
    Damaged(String),
    /// An anchor could not be read.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// The sequencer thread could not be started.
    #[error("cannot start the audit sequencer: {0}")]
    Thread(std::io::Error),
}

/// A `sync` or `reject` category event could not be made durable: the request must fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit event ({category}/{action}) could not be recorded: {reason}")]
pub struct AuditRejected {
    /// The event's category.
    pub category: Category,
    /// The event's action.
    pub action: String,
    /// Why.
    pub reason: String,
}

/// What [`AuditLog::record`] did with an event the request may proceed after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event is durable with this sequence number (`sync` categories).
    Durable(Seq),
    /// The event is queued (`async` categories); it becomes durable with the next group commit.
    Queued,
    /// The event was lost, and the category's policy is `permit`: the loss is counted and a gap
    /// entry will record it.
    Lost,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Events lost (queue full, log closed, write failures).
    pub dropped: u64,
    /// Events whose write failed.
    pub write_errors: u64,
    /// Entries appended since open.
    pub appended: u64,
    /// Group commits since open.
    pub batches: u64,
    /// The store's size on disk at the last check (every checkpoint interval).
    pub disk_bytes: u64,
    /// Whether the store is at or over `max_disk_bytes` (data-path events are dropped).
    pub over_disk_budget: bool,
}

struct Inner {
    store: Arc<SledStore>,
    /// Events of `async` categories (the data path: connections, authorization).
    tx: SyncSender<Queued>,
    /// Events of `sync` categories (authentication, admin, config, keys): a queue of their
    /// own that the sequencer empties first, so they never wait behind a flood of data-path
    /// events.
    tx_durable: SyncSender<Queued>,
    control: Mutex<std::sync::mpsc::Sender<Control>>,
    counters: Arc<Counters>,
    policies: [CategoryPolicy; 7],
    closed: AtomicBool,
    sync_timeout: Duration,
    origin: String,
    data_dir: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    anchor_findings: AnchorFindings,
}

/// The tamper-evident audit log (cheap to clone; all clones share one sequencer).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl AuditLog {
    /// Notes of this log's origin found in the anchors at open that none of its keys
    /// signed (forged, or from a key this data directory never had): not trusted, for the
    /// caller to report.
    pub fn anchor_findings(&self) -> &AnchorFindings {
        &self.inner.anchor_findings
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("data_dir", &self.inner.data_dir)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

/// Brings the hash tree up to the entries after a crash (entries are written first) and returns
/// the in-memory frontier of the whole log.
pub(crate) fn repair<S: LogStore + ?Sized>(store: &S) -> Result<Frontier, StoreError> {
    let size = store.size()?;
    let hashed = store.hashed_size()?;
    if hashed >= size {
        return Frontier::from_source(&StoredTree(store), size);
    }
    let mut frontier = Frontier::from_source(&StoredTree(store), hashed)?;
    let mut out = AppendBatch::default();
    for item in store.entries(hashed, size, false) {
        let (seq, bytes) = item?;
        if seq != frontier.size() {
            return Err(StoreError::Damaged(format!(
                "entry {} is missing",
                frontier.size()
            )));
        }
        let hashes = &mut out.hashes;
        frontier.push(leaf_hash(&bytes), |n| {
            if is_stored_level(n.level) {
                hashes.push((n.level, n.index, n.hash));
            }
        });
        if let Ok(ev) = serde_json::from_slice::<Event>(&bytes) {
            out.by_time.push((ev.timestamp, seq));
            if let Some(p) = ev.principal {
                out.by_principal.push((p, seq));
            }
        }
    }
    tracing::warn!(
        from = hashed,
        to = size,
        "repaired the audit tree after an interrupted write"
    );
    store.append(&out)?;
    store.flush()?;
    Ok(frontier)
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b = std::process::id()
            .to_be_bytes()
            .repeat(2)
            .try_into()
            .unwrap_or([0; 8]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl AuditLog {
    /// Opens (creating on first start) the log in `data_dir` and starts its sequencer thread.
    ///
    /// On first start this creates `data_dir/audit-log/` (the sled database) and
    /// `data_dir/audit-signing.key` (mode 0600), and records a `key` / `audit.key.create` event.
    /// On every start it repairs an interrupted last write and signs a checkpoint if the log
    /// grew since the last one. It refuses to open a log that is shorter than its latest
    /// checkpoint or than the latest checkpoint in the anchor file (truncation or rollback).
    ///
    /// Does not need a tokio runtime; [`record`](AuditLog::record) and
    /// [`shutdown`](AuditLog::shutdown) must be awaited inside one.
    ///
    /// # Errors
    ///
    /// [`OpenError`]; [`OpenError::Store`] with [`StoreError::Locked`] if another process has
    /// the log open.
    pub fn open(data_dir: &Path, config: &AuditLogConfig) -> Result<AuditLog, OpenError> {
        AuditLog::open_with_anchors(data_dir, config, Vec::new())
    }

    /// [`open`](AuditLog::open) with anchors beyond the configured `anchor_file` (for example
    /// a Kafka topic the proxy publishes to): every checkpoint is published to each of them
    /// once durable, and the log refuses to open if it is shorter than the latest checkpoint
    /// any of them holds.
    ///
    /// # Errors
    ///
    /// As [`open`](AuditLog::open); [`OpenError::Anchor`] if an anchor cannot be read.
    pub fn open_with_anchors(
        data_dir: &Path,
        config: &AuditLogConfig,
        extra_anchors: Vec<Arc<dyn Anchor>>,
    ) -> Result<AuditLog, OpenError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(OpenError::Config(problems));
        }
        create_private_dir(data_dir)?;
        let store = Arc::new(SledStore::open(&data_dir.join(STORE_DIR))?);

        let origin = match store.meta("origin")? {
            Some(o) => {
                if config.origin.as_ref().is_some_and(|c| c != &o) {
                    tracing::warn!(stored = %o, "audit origin is fixed when the log is created; ignoring the configured one");
                }
                o
            }
            None => {
                let o = config
                    .origin
                    .clone()
                    .unwrap_or_else(|| format!("portcullis-audit/{}", random_id()));
                store.set_meta("origin", &o)?;
                o
            }
        };
        let key_path = data_dir.join(KEY_FILE);
        let (signer, created) = key_file::load_or_create(&key_path, &origin)?;
        store.add_verifier_key(&signer.verifier().to_string())?;

        let frontier = repair(&*store)?;
        let latest = store.latest_checkpoint()?;
        let (last_size, last_note) = match latest {
            Some((size, note)) => (size, Some(note)),
            None => (0, None),
        };
        if frontier.size() < last_size {
            return Err(OpenError::Damaged(format!(
                "the log has {} entries but its latest checkpoint covers {last_size}",
                frontier.size()
            )));
        }
        let mut anchors: Vec<Arc<dyn Anchor>> = Vec::new();
        if let Some(path) = &config.anchor_file {
            anchors.push(Arc::new(FileAnchor::new(path.clone())));
        }
        anchors.extend(extra_anchors);
        let keys: Vec<VerifierKey> = store
            .verifier_keys()?
            .iter()
            .filter_map(|k| VerifierKey::parse(k).ok())
            .collect();
        let anchor_findings = check_anchors(&anchors, &origin, &keys, frontier.size())?;

        let counters = Arc::new(Counters::default());
        let mut seq = Sequencer {
            store: Arc::clone(&store),
            counters: Arc::clone(&counters),
            frontier,
            signer,
            key_path,
            origin: origin.clone(),
            anchors,
            unpublished: Vec::new(),
            max_batch: config.max_batch,
            max_disk_bytes: config.max_disk_bytes,
            checkpoint_interval: Duration::from_millis(config.checkpoint_interval_ms),
            checkpoint_every: config.checkpoint_every,
            last_checkpoint_size: last_size,
            last_checkpoint_note: last_note,
            reported_dropped: 0,
            healthy: true,
        };
        if created {
            let ev = Event::new(Category::Key, "audit.key.create", Outcome::Success)
                .reason("audit signing key created")
                .detail("verifier_key", seq.signer.verifier().to_string());
            let (tx, _rx) = oneshot::channel();
            seq.commit(&mut vec![Queued {
                event: ev,
                ack: Some(tx),
            }]);
        }
        // Seal whatever an earlier run left unsigned, and give a new log its first checkpoint.
        seq.initial_checkpoint();
        let (tx, rx) = sync_channel(config.queue_capacity);
        let (tx_durable, rx_durable) = sync_channel(config.queue_capacity);
        let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit-sequencer".into())
            .spawn(move || seq.run(rx, rx_durable, ctl_rx))
            .map_err(OpenError::Thread)?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                store,
                tx,
                tx_durable,
                control: Mutex::new(ctl_tx),
                counters,
                policies: config.policies(),
                closed: AtomicBool::new(false),
                sync_timeout: Duration::from_millis(config.sync_timeout_ms),
                origin,
                data_dir: data_dir.to_path_buf(),
                thread: Mutex::new(Some(thread)),
                anchor_findings,
            }),
        })
    }

    /// The log's origin (checkpoint origin line and key name).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The store, for the read functions in [`crate::read`].
    pub fn store(&self) -> &SledStore {
        &self.inner.store
    }

    /// The effective policy of a category.
    pub fn policy(&self, category: Category) -> CategoryPolicy {
        self.inner.policies[category_index(category)]
    }

    /// Counters for metrics.
    pub fn stats(&self) -> AuditStats {
        let c = &self.inner.counters;
        AuditStats {
            dropped: c.dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            appended: c.appended.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            disk_bytes: c.disk_bytes.load(Ordering::Relaxed),
            over_disk_budget: c.over_disk_budget.load(Ordering::Relaxed),
        }
    }

    // The queued item comes back to the caller on failure so the event is not cloned on the
    // hot path; its size is the event's.
    #[allow(clippy::result_large_err)]
    fn try_enqueue(&self, event: Event, ack: Option<crate::sequencer::Ack>) -> Result<(), Queued> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Queued { event, ack });
        }
        let queue = match self.policy(event.category).durability {
            Durability::Sync => &self.inner.tx_durable,
            // Over the disk budget, data-path events are refused (and counted by the caller).
            Durability::Async if self.inner.counters.over_disk_budget.load(Ordering::Acquire) => {
                return Err(Queued { event, ack });
            }
            Durability::Async => &self.inner.tx,
        };
        match queue.try_send(Queued { event, ack }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(q) | TrySendError::Disconnected(q)) => Err(q),
        }
    }

    fn lost(
        &self,
        category: Category,
        action: String,
        timestamp: &str,
        reason: String,
    ) -> Result<Recorded, AuditRejected> {
        self.inner.counters.note_drop(timestamp);
        tracing::warn!(category = %category, action = %action, reason = %reason, "audit event lost");
        match self.policy(category).on_failure {
            FailurePolicy::Permit => Ok(Recorded::Lost),
            FailurePolicy::Reject => Err(AuditRejected {
                category,
                action,
                reason,
            }),
        }
    }

    /// Queues an event without waiting; if the queue is full or closed, hands the event back
    /// without counting a loss, so the caller can apply back-pressure (benchmarks, batch
    /// importers). The proxy's request path uses [`AuditSink::emit`] or
    /// [`record`](AuditLog::record) instead.
    ///
    /// # Errors
    ///
    /// The event, when it was not queued.
    #[allow(clippy::result_large_err)]
    pub fn try_emit(&self, event: Event) -> Result<(), Event> {
        self.try_enqueue(event, None).map_err(|q| q.event)
    }

    /// Records an event according to its category's durability and failure policy.
    ///
    /// - `sync` categories: waits (up to `sync_timeout_ms`, including for room in the queue)
    ///   until the event is fsynced, and returns [`Recorded::Durable`] with its sequence number.
    /// - `async` categories: queues without waiting and returns [`Recorded::Queued`].
    ///
    /// If the event cannot be queued or made durable, the category's failure policy decides:
    /// `permit` returns [`Recorded::Lost`] (counted, and a gap entry is written once the log is
    /// writable again), `reject` returns [`AuditRejected`] and the caller must fail the request
    /// (fail closed).
    ///
    /// Must be awaited inside a tokio runtime with timers enabled.
    ///
    /// # Errors
    ///
    /// [`AuditRejected`] under the `reject` policy, as described.
    pub async fn record(&self, event: Event) -> Result<Recorded, AuditRejected> {
        let category = event.category;
        let policy = self.policy(category);
        if policy.durability == Durability::Async {
            return match self.try_enqueue(event, None) {
                Ok(()) => Ok(Recorded::Queued),
                Err(q) => self.lost(
                    category,
                    q.event.action,
                    &q.event.timestamp,
                    "audit queue full or closed".into(),
                ),
            };
        }
        let deadline = Instant::now() + self.inner.sync_timeout;
        let action = event.action.clone();
        let (tx, rx) = oneshot::channel();
        let mut pending = Queued {
            event,
            ack: Some(tx),
        };
        loop {
            match self.try_enqueue(pending.event, pending.ack) {
                Ok(()) => break,
                Err(q) => {
                    if self.inner.closed.load(Ordering::Acquire) || Instant::now() >= deadline {
                        return self.lost(
                            category,
                            q.event.action,
                            &q.event.timestamp,
                            "audit queue full or closed".into(),
                        );
                    }
                    pending = q;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, rx).await {
            Ok(Ok(Ok(seq))) => Ok(Recorded::Durable(seq)),
            Ok(Ok(Err(WriteFailed(reason)))) => {
                self.lost_after_queue(category, action.clone(), reason)
            }
            Ok(Err(_)) => {
                self.lost_after_queue(category, action.clone(), "audit sequencer stopped".into())
            }
            Err(_) => self.lost_after_queue(
                category,
                action.clone(),
                "timed out waiting for the audit log".into(),
            ),
        }
    }

    /// A queued sync event failed: the sequencer already counted it if the write failed.
    fn lost_after_queue(
        &self,
        category: Category,
        action: String,
        reason: String,
    ) -> Result<Recorded, AuditRejected> {
        tracing::warn!(category = %category, reason = %reason, "audit event not made durable");
        match self.policy(category).on_failure {
            FailurePolicy::Permit => Ok(Recorded::Lost),
            FailurePolicy::Reject => Err(AuditRejected {
                category,
                action,
                reason,
            }),
        }
    }

    async fn control<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .inner
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(make(tx))
            .is_ok();
        if !sent {
            return None;
        }
        rx.await.ok()
    }

    /// Signs a checkpoint now if the log grew since the last one, and returns the latest signed
    /// checkpoint note.
    ///
    /// # Errors
    ///
    /// [`WriteFailed`] if it cannot be written or the log is shut down.
    pub async fn checkpoint_now(&self) -> Result<String, WriteFailed> {
        self.control(Control::Checkpoint)
            .await
            .unwrap_or_else(|| Err(WriteFailed("audit log is shut down".into())))
    }

    /// Rotates the signing key: records a `key` / `audit.key.rotate` event naming the old and
    /// new verifier keys, seals it with a checkpoint signed by the old key, keeps the new
    /// verifier key in the store and replaces the key file. Returns the new verifier key.
    ///
    /// # Errors
    ///
    /// [`WriteFailed`] if any step fails (the old key stays in use).
    pub async fn rotate_key(&self) -> Result<VerifierKey, WriteFailed> {
        self.control(Control::Rotate)
            .await
            .unwrap_or_else(|| Err(WriteFailed("audit log is shut down".into())))
    }

    /// Stops accepting events, appends everything queued (and a gap entry if events were
    /// lost), signs a final checkpoint, fsyncs, and stops the sequencer thread.
    ///
    /// Events emitted afterwards are dropped and counted. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.control(Control::Shutdown).await;
        let handle = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

impl AuditSink for AuditLog {
    fn emit(&self, event: Event) -> EmitOutcome {
        match self.try_enqueue(event, None) {
            Ok(()) => EmitOutcome::Queued,
            Err(q) => {
                self.inner.counters.note_drop(&q.event.timestamp);
                EmitOutcome::Dropped
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    fn record(&self, event: Event) -> crate::sink::RecordFuture<'_> {
        Box::pin(AuditLog::record(self, event))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), OpenError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| OpenError::Dir {
        path: dir.to_path_buf(),
        source,
    })
}
